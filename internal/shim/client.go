// Package shim is the daemon's side of berth-shim, the per-container
// monitor: Spawn starts a shim that creates the container; a Client (Dial)
// drives it through its unix socket — Start, Kill, Wait, Attach, Resize,
// State — and survives the daemon's restarts because the shim does.
// ReadExitFile reads the status a shim recorded when nobody was there to
// ask. The shim binary itself is cmd/berth-shim (internal/shim/monitor and
// internal/shim/initproc); this package is never linked into it.
package shim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/berth-engine/berth/internal/shim/wire"
	"github.com/containerd/errdefs"
)

// Config is a shim's configuration; Spawn writes it to <Bundle>/shim.json.
type Config = wire.Config

// ExitStatus is how a container ended: Code is the exit status or 128+N
// for signal N.
type ExitStatus = wire.ExitStatus

// State is a shim's view of its container: Status is "created", "running"
// or "stopped" (then Exit is set).
type State = wire.State

// AttachOptions selects the streams of an attach.
type AttachOptions = wire.AttachOptions

// Container statuses of State.Status.
const (
	StatusCreated = wire.StatusCreated
	StatusRunning = wire.StatusRunning
	StatusStopped = wire.StatusStopped
)

// Client talks to one shim. It holds no connection: each call dials the
// socket, so a Client is cheap, safe for concurrent use, and works across
// daemon restarts.
type Client struct {
	socket string
}

// Dial returns a client for the shim serving socket; it connects lazily,
// per call.
func Dial(socket string) *Client {
	return &Client{socket: socket}
}

// Socket is the path of the shim's control socket.
func (c *Client) Socket() string { return c.socket }

// Start starts the created container (`<runtime> start`).
func (c *Client) Start(ctx context.Context) error {
	_, err := c.call(ctx, wire.Request{Op: wire.OpStart})
	return err
}

// Kill signals the container's init, or with all every process in it.
// It fails with errdefs.ErrNotFound once the container has exited.
func (c *Client) Kill(ctx context.Context, sig syscall.Signal, all bool) error {
	_, err := c.call(ctx, wire.Request{Op: wire.OpKill, Signal: int(sig), All: all})
	return err
}

// Resize sets the size of the container's TTY; it does nothing for a
// container without one.
func (c *Client) Resize(ctx context.Context, height, width uint16) error {
	_, err := c.call(ctx, wire.Request{Op: wire.OpResize, Height: height, Width: width})
	return err
}

// State asks the shim for the container's state.
func (c *Client) State(ctx context.Context) (State, error) {
	resp, err := c.call(ctx, wire.Request{Op: wire.OpState})
	if err != nil {
		return State{}, err
	}
	if resp.State == nil {
		return State{}, fmt.Errorf("shim %s: state missing from the response", c.socket)
	}
	return *resp.State, nil
}

// Wait blocks until the container has exited (at once if it already has)
// and returns how. When the shim is gone (or goes away meanwhile) the
// error wraps errdefs.ErrUnavailable: the caller then reads the exit file.
func (c *Client) Wait(ctx context.Context) (ExitStatus, error) {
	resp, err := c.call(ctx, wire.Request{Op: wire.OpWait})
	if err != nil {
		return ExitStatus{}, err
	}
	if resp.Exit == nil {
		return ExitStatus{}, fmt.Errorf("shim %s: exit status missing from the response", c.socket)
	}
	return *resp.Exit, nil
}

// WaitDone is Wait that also tells when the shim is done with the
// container: the shim answers as soon as the container has exited, then
// has the runtime delete it (its cgroups and runtime state) and exits.
// done is closed when that is over (or the connection otherwise ends), so
// that the container is not created again while the old one still exists
// in the runtime.
func (c *Client) WaitDone(ctx context.Context) (st ExitStatus, done <-chan struct{}, err error) {
	conn, stop, err := c.dial(ctx)
	if err != nil {
		return ExitStatus{}, nil, err
	}
	ok := false
	defer func() {
		stop()
		if !ok {
			conn.Close()
		}
	}()
	if err := writeRequest(conn, wire.Request{Op: wire.OpWait}); err != nil {
		return ExitStatus{}, nil, c.lost(ctx, err)
	}
	br := bufio.NewReaderSize(conn, 1024)
	line, err := readLineLimited(br)
	if err != nil {
		return ExitStatus{}, nil, c.lost(ctx, err)
	}
	resp, err := c.decode(line)
	if err != nil {
		return ExitStatus{}, nil, err
	}
	if resp.Exit == nil {
		return ExitStatus{}, nil, fmt.Errorf("shim %s: exit status missing from the response", c.socket)
	}
	if !stop() {
		return ExitStatus{}, nil, ctx.Err()
	}
	ok = true
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		defer conn.Close()
		_, _ = io.Copy(io.Discard, br)
	}()
	return *resp.Exit, ch, nil
}

// Attach opens an attach stream. Reading the returned connection yields
// the container's output: raw bytes for a TTY container, docker's stdcopy
// frames otherwise; it ends (EOF) once the container's output is drained.
// Bytes written are the container's stdin (when opts.Stdin and the
// container keeps stdin open); CloseWrite is stdin's EOF. ctx bounds only
// the handshake, not the stream. An attach made before Start sees all the
// output.
func (c *Client) Attach(ctx context.Context, opts AttachOptions) (net.Conn, error) {
	conn, stop, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer stop()
	if err := writeRequest(conn, wire.Request{Op: wire.OpAttach, AttachOptions: opts}); err != nil {
		conn.Close()
		return nil, c.lost(ctx, err)
	}
	// Read the response a byte at a time: whatever follows it is the
	// stream, which must stay in the connection for the caller.
	line, err := readLineUnbuffered(conn)
	if err != nil {
		conn.Close()
		return nil, c.lost(ctx, err)
	}
	if _, err := c.decode(line); err != nil {
		conn.Close()
		return nil, err
	}
	if !stop() {
		// ctx ended just as the handshake finished: the deadline it set
		// must not leak into the stream.
		conn.Close()
		return nil, ctx.Err()
	}
	return conn, nil
}

// call sends one request and reads its response.
func (c *Client) call(ctx context.Context, req wire.Request) (wire.Response, error) {
	conn, stop, err := c.dial(ctx)
	if err != nil {
		return wire.Response{}, err
	}
	defer conn.Close()
	defer stop()
	if err := writeRequest(conn, req); err != nil {
		return wire.Response{}, c.lost(ctx, err)
	}
	line, err := readLineLimited(bufio.NewReaderSize(conn, 1024))
	if err != nil {
		return wire.Response{}, c.lost(ctx, err)
	}
	return c.decode(line)
}

// dial connects to the shim; the returned stop detaches ctx from the
// connection (it reports false when ctx had already fired).
func (c *Client) dial(ctx context.Context) (*net.UnixConn, func() bool, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("shim %s: %w: %v", c.socket, errdefs.ErrUnavailable, err)
	}
	conn := nc.(*net.UnixConn)
	// The end of ctx (cancel or deadline) unblocks whatever the call is
	// waiting for; by then ctx.Err() tells why.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	return conn, stop, nil
}

// lost turns a broken exchange into the caller's ctx error, or into
// ErrUnavailable: the shim went away (it exits right after recording the
// exit, so the exit file has the answer).
func (c *Client) lost(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("shim %s: %w: %v", c.socket, errdefs.ErrUnavailable, err)
}

func (c *Client) decode(line []byte) (wire.Response, error) {
	resp, err := wire.ParseResponse(line)
	if err != nil {
		return resp, fmt.Errorf("shim %s: %w", c.socket, err)
	}
	if resp.Error != "" {
		return resp, kindError(resp.Kind, resp.Error)
	}
	return resp, nil
}

// kindError maps the shim's error kinds back to errdefs sentinels.
func kindError(kind, msg string) error {
	switch kind {
	case wire.KindNotFound:
		return errdefs.ErrNotFound.WithMessage(msg)
	case wire.KindInvalidArgument:
		return errdefs.ErrInvalidArgument.WithMessage(msg)
	case wire.KindFailedPrecondition:
		return errdefs.ErrFailedPrecondition.WithMessage(msg)
	case wire.KindUnavailable:
		return errdefs.ErrUnavailable.WithMessage(msg)
	}
	return errors.New(msg)
}

func writeRequest(conn *net.UnixConn, req wire.Request) error {
	_, err := conn.Write(wire.AppendRequest(nil, req))
	return err
}

func readLineLimited(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > wire.MaxLine {
			return nil, errors.New("response too long")
		}
		if err == nil {
			return line, nil
		}
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

func readLineUnbuffered(conn *net.UnixConn) ([]byte, error) {
	var line []byte
	var b [1]byte
	for len(line) <= wire.MaxLine {
		n, err := conn.Read(b[:])
		if n == 1 {
			line = append(line, b[0])
			if b[0] == '\n' {
				return line, nil
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return nil, errors.New("response too long")
}

// ReadExitFile reads the exit status a shim recorded. The error wraps
// errdefs.ErrNotFound when there is none.
func ReadExitFile(path string) (ExitStatus, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return ExitStatus{}, fmt.Errorf("exit file %s: %w", path, errdefs.ErrNotFound)
	}
	if err != nil {
		return ExitStatus{}, fmt.Errorf("read exit file: %w", err)
	}
	st, err := wire.ParseExitFile(data)
	if err != nil {
		return ExitStatus{}, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}
