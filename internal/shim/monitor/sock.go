package monitor

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// The shim's unix sockets are plain descriptors in *os.File: the Go poller
// serves them like the pipes, and the net package (its initialisation,
// its resolver) stays out of a process that exists once per container.

// listener is a listening unix socket.
type listener struct {
	f    *os.File
	path string
	// dev and ino identify the socket file this listener bound (0: not
	// known), so that close removes that file and never one a newer shim
	// has bound at the same path since.
	dev, ino uint64
	closed   atomic.Bool
}

// newListener wraps a listening socket bound at path, which must still be
// the socket file it bound.
func newListener(f *os.File, path string) *listener {
	l := &listener{f: f, path: path}
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err == nil && st.Mode&syscall.S_IFMT == syscall.S_IFSOCK {
		l.dev, l.ino = uint64(st.Dev), st.Ino
	}
	return l
}

// errListenerClosed ends an accept loop.
var errListenerClosed = errors.New("listener closed")

func listenUnix(path string) (*listener, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("bind %s: %w", path, err)
	}
	// Only root may drive the shim.
	if err := os.Chmod(path, 0o600); err != nil {
		syscall.Close(fd)
		os.Remove(path)
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := syscall.Listen(fd, 128); err != nil {
		syscall.Close(fd)
		os.Remove(path)
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	return newListener(os.NewFile(uintptr(fd), path), path), nil
}

// accept waits for a connection; after close it returns errListenerClosed.
func (l *listener) accept() (*os.File, error) {
	rc, err := l.f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var nfd int
	var aerr error
	err = rc.Read(func(fd uintptr) bool {
		nfd, _, aerr = syscall.Accept4(int(fd), syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		return aerr != syscall.EAGAIN
	})
	if l.closed.Load() {
		if err == nil && aerr == nil {
			syscall.Close(nfd)
		}
		return nil, errListenerClosed
	}
	if err == nil {
		err = aerr
	}
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(nfd), "conn"), nil
}

// setDeadline bounds a pending or future accept.
func (l *listener) setDeadline(t time.Time) error { return l.f.SetReadDeadline(t) }

// close stops accepting and removes the socket file if it is still this
// listener's. The file goes first: while this listener still listens, no
// new shim can take the path (it refuses a socket someone serves), so the
// file checked is the file removed.
func (l *listener) close() {
	if l.closed.Swap(true) {
		return
	}
	l.removeFile()
	l.f.Close()
}

// removeFile removes the socket file at l.path if it is the one l bound.
func (l *listener) removeFile() {
	if l.ino == 0 {
		return
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(l.path, &st); err != nil || uint64(st.Dev) != l.dev || st.Ino != l.ino {
		return
	}
	_ = syscall.Unlink(l.path)
}

// probeUnix reports whether something accepts connections at path.
func probeUnix(path string) bool {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer syscall.Close(fd)
	err = syscall.Connect(fd, &syscall.SockaddrUnix{Name: path})
	// EAGAIN: the backlog is full, so someone is listening.
	return err == nil || err == syscall.EAGAIN
}

// closeWrite half-closes a connection: the peer reads EOF.
func closeWrite(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.Shutdown(int(fd), syscall.SHUT_WR) }); err != nil {
		return err
	}
	return serr
}

// recvFd receives one message carrying a descriptor (SCM_RIGHTS) and
// returns the descriptor.
func recvFd(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	buf := make([]byte, 4096) // the runtime sends the pty's name as data
	oob := make([]byte, syscall.CmsgSpace(4*4))
	var oobn int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		_, oobn, _, _, rerr = syscall.Recvmsg(int(fd), buf, oob, syscall.MSG_CMSG_CLOEXEC)
		return rerr != syscall.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return -1, err
	}
	fds, err := parseRights(oob[:oobn])
	if err != nil {
		return -1, err
	}
	// One was expected; close any extra a confused sender passed.
	for _, fd := range fds[1:] {
		syscall.Close(fd)
	}
	return fds[0], nil
}

// closeInherited closes the descriptors above the sync pipe that the shim
// inherited without close-on-exec from whoever started it: they would
// otherwise leak into every runtime process, and a long-lived shim would
// keep its spawner's pipes open (a caller waiting for EOF on one would
// wait for the container). The Go runtime's own descriptors always have
// close-on-exec, so none of them is touched.
func closeInherited() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= syncFd {
			continue
		}
		flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
		if errno == 0 && flags&syscall.FD_CLOEXEC == 0 {
			syscall.Close(fd)
		}
	}
}
