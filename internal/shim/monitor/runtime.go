package monitor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/berth-engine/berth/internal/logs/jsonlite"
)

// runtimeCLI drives an OCI runtime through runc's command line, the
// contract runc, crun and berth-runtime share.
type runtimeCLI struct {
	path    string
	args    []string // global args before the command
	logPath string   // <bundle>/runtime.log: the runtime's JSON log, where its errors are
	// logFile is logPath held open. Once logByFd is set (the container has
	// exited, and the daemon may remove the bundle at any moment) the
	// runtime gets it as its fd 3 and writes its log to /proc/self/fd/3.
	logFile *os.File
	logByFd bool
	id      string
	reaper  *reaper
	null    *os.File
}

// argv builds `<runtime> <args…> --log <log> --log-format json <cmd…>`.
func (rt *runtimeCLI) argv(cmd ...string) []string {
	argv := make([]string, 0, 1+len(rt.args)+4+len(cmd))
	argv = append(argv, rt.path)
	argv = append(argv, rt.args...)
	log := rt.logPath
	if rt.logByFd {
		log = "/proc/self/fd/3"
	}
	argv = append(argv, "--log", log, "--log-format", "json")
	return append(argv, cmd...)
}

// outputFile is an anonymous file for what a runtime command prints: a
// memfd (no directory entry to create and unlink, no inode churn in the
// bundle's file system), else an unlinked temporary file in dir.
func outputFile(dir string) (*os.File, error) {
	if sysMemfdCreate > 0 {
		name := []byte("runtime-out\x00")
		const mfdCloexec = 1
		fd, _, errno := syscall.Syscall(uintptr(sysMemfdCreate), uintptr(unsafe.Pointer(&name[0])), mfdCloexec, 0)
		if errno == 0 {
			return os.NewFile(fd, "runtime-out"), nil
		}
	}
	f, err := os.CreateTemp(dir, ".runtime-out-*")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	return f, nil
}

// run executes one runtime command with its stdout and stderr in an
// anonymous file (no pipe, so a stray grandchild holding it can never hang
// the shim) and returns the runtime's own error message when it fails.
func (rt *runtimeCLI) run(cmd ...string) error {
	out, err := outputFile(filepath.Dir(rt.logPath))
	if err != nil {
		return fmt.Errorf("runtime %s: %w", cmd[0], err)
	}
	defer out.Close()
	ws, logOff, err := rt.exec([3]*os.File{rt.null, out, out}, cmd...)
	if err != nil {
		return err
	}
	if ws.Exited() && ws.ExitStatus() == 0 {
		return nil
	}
	var printed []byte
	if _, err := out.Seek(0, io.SeekStart); err == nil {
		printed, _ = io.ReadAll(io.LimitReader(out, 4<<10))
	}
	return errors.New(rt.failure(logOff, printed, ws))
}

// exec executes one runtime command with the given stdio and waits for
// it. logOff is where the runtime's log ended before, so that only this
// command's errors are looked at.
func (rt *runtimeCLI) exec(stdio [3]*os.File, cmd ...string) (ws syscall.WaitStatus, logOff int64, err error) {
	logOff = fileSize(rt.logPath)
	files := stdio[:]
	if rt.logByFd && rt.logFile != nil {
		files = append(files, rt.logFile)
	}
	_, ch, err := rt.reaper.start(rt.argv(cmd...), files)
	if err != nil {
		return 0, logOff, fmt.Errorf("run runtime %s: %w", rt.path, err)
	}
	return <-ch, logOff, nil
}

// failure composes the message for a failed runtime command: the last
// error the runtime logged, else what it printed, else its exit status.
func (rt *runtimeCLI) failure(logOff int64, printed []byte, ws syscall.WaitStatus) string {
	if msg := lastRuntimeError(readFrom(rt.logPath, logOff, 1<<20)); msg != "" {
		return msg
	}
	if msg := strings.TrimSpace(string(printed)); msg != "" {
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = strings.TrimSpace(msg[i+1:])
		}
		return msg
	}
	code, sig := exitCode(ws)
	if sig != 0 {
		return fmt.Sprintf("%s killed by signal %d", filepath.Base(rt.path), sig)
	}
	return fmt.Sprintf("%s exited with status %d", filepath.Base(rt.path), code)
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readFrom reads at most max bytes of path from off on.
func readFrom(path string, off, max int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size()-off > max {
		off = fi.Size() - max
	}
	b, _ := io.ReadAll(io.NewSectionReader(f, off, max))
	return b
}

// lastRuntimeError extracts the message of the last error (or fatal)
// entry of a runtime's JSON log, the form runc and crun write with
// --log-format json: {"level":"error","msg":"…","time":"…"}. Non-JSON lines
// are ignored: the log is the runtime's, not ours.
func lastRuntimeError(log []byte) string {
	var msg string
	for len(log) > 0 {
		line := log
		if i := bytes.IndexByte(log, '\n'); i >= 0 {
			line, log = log[:i], log[i+1:]
		} else {
			log = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var level, m string
		err := jsonlite.Members(line, func(k string, v jsonlite.Value) error {
			var err error
			switch k {
			case "level":
				level, err = v.Str()
			case "msg":
				m, err = v.Str()
			}
			return err
		})
		if err == nil && (level == "error" || level == "fatal") && m != "" {
			msg = m
		}
	}
	return msg
}

// lookPath resolves a runtime given by name through PATH, as exec.LookPath
// would, without linking os/exec into the shim.
func lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("runtime %q: executable file not found in $PATH", name)
}

// readPidFile reads the pid the runtime wrote for the container's init.
func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: bad content %q", path, truncate(b, 40))
	}
	return pid, nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
