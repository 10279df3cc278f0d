package monitor

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// errNoFifo means the runtime does not keep runc's exec fifo where the
// fast start looks for it: use `<runtime> start`.
var errNoFifo = errors.New("no exec fifo")

// startViaFifo does what `runc start` (and berth-runtime's) does for a
// created container, without running the runtime: the container's init
// waits, blocked opening <root>/<id>/exec.fifo for writing, until a reader
// opens it; it then writes "0" and execs the user's process. The fifo is
// removed afterwards, which is how the runtime's `state` tells running
// from created. This saves a process start (a Go runtime's, ~4 ms) on
// every container start.
func startViaFifo(runtimeArgs []string, id string, initPid int) error {
	root := runtimeRoot(runtimeArgs)
	if root == "" || id == "" || strings.ContainsAny(id, "/\x00") {
		return errNoFifo
	}
	fifo := filepath.Join(root, id, "exec.fifo")
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		return errNoFifo
	}
	// The init's executable before the exec (the runtime's), to see the
	// exec happen (awaitExec). Read now: the open below releases the init.
	before, _ := os.Readlink("/proc/" + strconv.Itoa(initPid) + "/exe")
	// Non-blocking: the open succeeds at once and wakes the init's open.
	fd, err := syscall.Open(fifo, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return errNoFifo
	}
	defer syscall.Close(fd)
	var buf [8]byte
	for {
		n, err := syscall.Read(fd, buf[:])
		switch {
		case n > 0:
			if string(buf[:n]) != "0" {
				return errors.New("container process sent an unexpected start handshake")
			}
			_ = os.Remove(fifo)
			awaitExec(initPid, before)
			return nil
		case err == syscall.EAGAIN || err == syscall.EINTR || n == 0 && err == nil:
			// No data yet (n == 0: the init has not connected as a writer
			// yet, or died before it did).
		default:
			return err
		}
		if !waitReadable(fd, 100*time.Millisecond) && syscall.Kill(initPid, 0) == syscall.ESRCH {
			return errors.New("container process is already dead")
		}
		if n == 0 && err == nil {
			// EOF is reported until a writer connects: don't spin.
			time.Sleep(time.Millisecond)
		}
	}
}

// execWait bounds awaitExec: a runtime may run hooks between the handshake
// and the exec, and the start must not hang on them.
const execWait = time.Second

// awaitExec returns once the init has exec'd the user's process (or died,
// or execWait passed): its executable is then no longer the runtime's.
// The handshake comes just before the exec; without this wait, start could
// answer while the init still runs the runtime's code, and a `docker top`
// right after `docker run -d` would show that instead of the command.
// before is the init's executable as read at the handshake.
func awaitExec(initPid int, before string) {
	if before == "" {
		return
	}
	exe := "/proc/" + strconv.Itoa(initPid) + "/exe"
	deadline := time.Now().Add(execWait)
	for delay := 20 * time.Microsecond; time.Now().Before(deadline); delay = min(2*delay, time.Millisecond) {
		now, err := os.Readlink(exe)
		if err != nil || now != before {
			return // exec'd, or gone
		}
		time.Sleep(delay)
	}
}

// runtimeRoot is the --root the runtime was given (berth always gives one).
func runtimeRoot(args []string) string {
	for i, a := range args {
		if a == "--root" && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, "--root="); ok {
			return v
		}
	}
	return ""
}

// waitReadable polls fd for input for at most d.
func waitReadable(fd int, d time.Duration) bool {
	p := pollFd{fd: int32(fd), events: pollIn}
	ts := syscall.NsecToTimespec(d.Nanoseconds())
	n, _, errno := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&p)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	return errno == 0 && n == 1 && p.revents&pollIn != 0
}
