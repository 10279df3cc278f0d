package cli

import (
	"errors"
	"io"
	"os"

	"github.com/moby/term"
)

// inStream is the CLI's standard input, with what the attach code needs to
// know about it: is it a terminal, and how to put it in raw mode.
type inStream struct {
	r      io.Reader
	fd     uintptr
	isTerm bool
	state  *term.State
}

func newInStream(r io.Reader) *inStream {
	fd, isTerm := term.GetFdInfo(r)
	return &inStream{r: r, fd: fd, isTerm: isTerm}
}

func (s *inStream) Read(p []byte) (int, error) { return s.r.Read(p) }

// Close closes the underlying reader when it can be closed; the attach
// code uses it to unblock a goroutine stuck reading stdin.
func (s *inStream) Close() error {
	if c, ok := s.r.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// IsTerminal reports whether stdin is a terminal.
func (s *inStream) IsTerminal() bool { return s.isTerm }

// SetRawTerminal puts a terminal stdin in raw mode, so that keys (^C,
// ^D…) go to the container instead of the CLI. NORAW=1 disables it, as
// in docker.
func (s *inStream) SetRawTerminal() error {
	if !s.isTerm || os.Getenv("NORAW") != "" {
		return nil
	}
	st, err := term.SetRawTerminal(s.fd)
	if err != nil {
		return err
	}
	s.state = st
	return nil
}

// RestoreTerminal undoes SetRawTerminal.
func (s *inStream) RestoreTerminal() {
	if s.state != nil {
		_ = term.RestoreTerminal(s.fd, s.state)
		s.state = nil
	}
}

// CheckTty refuses -it when stdin is not a terminal, with docker's message.
func (s *inStream) CheckTty(attachStdin, ttyMode bool) error {
	if ttyMode && attachStdin && !s.isTerm {
		return errors.New("the input device is not a TTY")
	}
	return nil
}

// outStream is the CLI's standard output.
type outStream struct {
	w      io.Writer
	fd     uintptr
	isTerm bool
	state  *term.State
}

func newOutStream(w io.Writer) *outStream {
	fd, isTerm := term.GetFdInfo(w)
	return &outStream{w: w, fd: fd, isTerm: isTerm}
}

func (s *outStream) Write(p []byte) (int, error) { return s.w.Write(p) }

// IsTerminal reports whether stdout is a terminal.
func (s *outStream) IsTerminal() bool { return s.isTerm }

// FD is stdout's file descriptor (meaningful when IsTerminal).
func (s *outStream) FD() uintptr { return s.fd }

// SetRawTerminal puts a terminal stdout in raw output mode.
func (s *outStream) SetRawTerminal() error {
	if !s.isTerm || os.Getenv("NORAW") != "" {
		return nil
	}
	st, err := term.SetRawTerminalOutput(s.fd)
	if err != nil {
		return err
	}
	s.state = st
	return nil
}

// RestoreTerminal undoes SetRawTerminal.
func (s *outStream) RestoreTerminal() {
	if s.state != nil {
		_ = term.RestoreTerminal(s.fd, s.state)
		s.state = nil
	}
}

// GetTtySize returns the terminal's rows and columns, or zeros.
func (s *outStream) GetTtySize() (height, width uint) {
	if !s.isTerm {
		return 0, 0
	}
	ws, err := term.GetWinsize(s.fd)
	if err != nil || ws == nil {
		return 0, 0
	}
	return uint(ws.Height), uint(ws.Width)
}
