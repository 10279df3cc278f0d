package monitor

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// listenConsole opens the console socket the runtime sends the pty master
// over (runc's --console-socket contract).
func listenConsole(path string) (*listener, error) {
	_ = os.Remove(path)
	l, err := listenUnix(path)
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	return l, nil
}

// recvConsole accepts the runtime's connection and receives the pty master
// as SCM_RIGHTS. The master is set non-blocking so the Go poller can wait
// on it without a thread.
func recvConsole(l *listener, deadline time.Time) (*os.File, error) {
	if err := l.setDeadline(deadline); err != nil {
		return nil, err
	}
	conn, err := l.accept()
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(deadline)
	fd, err := recvFd(conn)
	if err != nil {
		return nil, fmt.Errorf("receive console: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("console: %w", err)
	}
	return os.NewFile(uintptr(fd), "console"), nil
}

// parseRights takes the single descriptor out of a control message,
// closing any extra ones a confused sender passed.
func parseRights(oob []byte) (int, error) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return -1, fmt.Errorf("receive console: %w", err)
	}
	fd := -1
	for i := range msgs {
		fds, err := syscall.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		for _, f := range fds {
			if fd < 0 {
				fd = f
			} else {
				syscall.Close(f)
			}
		}
	}
	if fd < 0 {
		return -1, errors.New("receive console: no file descriptor in the message")
	}
	return fd, nil
}

type winsize struct {
	Row, Col, Xpixel, Ypixel uint16
}

// setWinsize sets the terminal size the container's processes see
// (TIOCSWINSZ also sends them SIGWINCH).
func setWinsize(f *os.File, height, width uint16) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	ws := winsize{Row: height, Col: width}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCSWINSZ, uintptr(unsafe.Pointer(&ws)))
	}); err != nil {
		return err
	}
	if errno != 0 {
		return fmt.Errorf("resize console: %w", errno)
	}
	return nil
}
