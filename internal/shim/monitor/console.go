package monitor

import (
	"encoding/binary"
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

// parseRights extracts the descriptors of SCM_RIGHTS control messages.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("receive console: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		// Not syscall.ParseUnixRights: it panics on a payload that is not
		// a multiple of four bytes (found by FuzzParseRights).
		if m.Header.Level != syscall.SOL_SOCKET || m.Header.Type != syscall.SCM_RIGHTS {
			continue
		}
		for i := 0; i+4 <= len(m.Data); i += 4 {
			fds = append(fds, int(int32(binary.NativeEndian.Uint32(m.Data[i:]))))
		}
	}
	if len(fds) == 0 {
		return nil, errors.New("receive console: no file descriptor in the message")
	}
	return fds, nil
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
