package api

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/moby/moby/api/types"
	"golang.org/x/sys/unix"
)

func (rt *router) postContainerAttach(c *call) error {
	opts := AttachOptions{
		Stdin:      c.bool("stdin"),
		Stdout:     c.bool("stdout"),
		Stderr:     c.bool("stderr"),
		Logs:       c.bool("logs"),
		Stream:     c.bool("stream"),
		DetachKeys: c.str("detachKeys"),
	}
	h := newHijacker(c, opts.Stdin)
	defer h.cancel()
	opts.Hijack = h.hijack
	err := rt.b.Containers.Attach(h.ctx, c.name, opts)
	return h.finish(err, !opts.Stream && !opts.Logs, "container", c.name)
}

// hijacker takes over a request's connection for a raw stream (attach,
// exec start), once the backend has validated the request.
type hijacker struct {
	c         *call
	upgrade   bool
	wantStdin bool
	// ctx is the backend's context. It also ends when the client is gone
	// for good (not when it only closed its write side), so that a
	// backend blocked on a silent container can stop.
	//
	// Not derived from the request's context: net/http cancels that when
	// its background read sees EOF, which a client that half-closes before
	// the hijack (docker run with no stdin to send) causes.
	ctx    context.Context
	cancel context.CancelFunc

	// Set by hijack, which the backend may call from another goroutine.
	mu        sync.Mutex
	conn      net.Conn
	hijacked  bool
	stopWatch func()
}

func newHijacker(c *call, wantStdin bool) *hijacker {
	_, upgrade := c.r.Header["Upgrade"]
	ctx, cancel := context.WithCancel(context.WithoutCancel(c.ctx))
	return &hijacker{c: c, upgrade: upgrade, wantStdin: wantStdin, ctx: ctx, cancel: cancel, stopWatch: func() {}}
}

func (h *hijacker) hijack(multiplexed bool) (io.ReadCloser, io.Writer, error) {
	c := h.c
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hijacked {
		return nil, nil, errors.New("attach: connection already hijacked")
	}
	cn, brw, err := c.w.hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("attach: hijack connection: %w", err)
	}
	h.hijacked, h.conn = true, cn
	contentType := types.MediaTypeRawStream
	if multiplexed && versionAtLeast(c.version, "1.42") {
		contentType = types.MediaTypeMultiplexedStream
	}
	var hdr bytes.Buffer
	if h.upgrade {
		fmt.Fprintf(&hdr, "HTTP/1.1 101 UPGRADED\r\nContent-Type: %s\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n", contentType)
	} else {
		fmt.Fprintf(&hdr, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n", contentType)
	}
	// The headers set so far (Api-Version, Server, …) were not sent.
	_ = c.w.Header().WriteSubset(&hdr, map[string]bool{"Content-Type": true, "Content-Length": true, "Connection": true, "Upgrade": true})
	hdr.WriteString("\r\n")
	if _, err := cn.Write(hdr.Bytes()); err != nil {
		return nil, nil, fmt.Errorf("attach: write response header: %w", err)
	}
	h.stopWatch = watchHangup(cn, h.cancel)
	if !h.wantStdin {
		return nil, cn, nil
	}
	return &attachInput{r: brw.Reader, conn: cn, gone: h.cancel}, cn, nil
}

// finish ends the request once the backend returned: the error becomes the
// response when the connection was not hijacked (nothingToStream: a
// backend that succeeded without hijacking answered correctly), else the
// connection is closed.
func (h *hijacker) finish(err error, nothingToStream bool, what, name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.hijacked {
		if err == nil && nothingToStream {
			// Nothing to stream: answer like a hijack would have.
			return nil
		}
		if err == nil {
			return errors.New("attach: the backend did not take over the connection")
		}
		return err
	}
	// The stream is over (output ended, client detached or went away):
	// closing tells the client. An error here can only be logged; the
	// status line went out long ago.
	h.stopWatch()
	if cerr := h.conn.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		h.c.log.Debug("close attach connection", "err", cerr)
	}
	if err != nil && !clientGone(h.ctx, err) {
		h.c.log.Warn("attach stream ended with an error", what, name, "err", err)
	}
	return nil
}

// attachInput is the client's side of an attach: bytes it sent right
// after the request header are still in the server's bufio.Reader, the
// rest comes from the connection. A read of io.EOF means the client closed
// its write side (`docker run` does that at once when it has no stdin to
// send), not that it left: the output keeps flowing. Close only shuts the
// read side, so a backend that closes stdin early cannot cut the output.
type attachInput struct {
	r    *bufio.Reader
	conn net.Conn
	gone context.CancelFunc // the client is gone for good
}

func (a *attachInput) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		err = io.EOF
	default:
		a.gone() // a reset or similar: the client is gone
	}
	return n, err
}

// Close stops reading: a pending Read returns io.EOF.
func (a *attachInput) Close() error {
	if cr, ok := a.conn.(interface{ CloseRead() error }); ok {
		_ = cr.CloseRead()
	}
	return nil
}

// watchHangup calls gone when the peer of a unix socket has closed the
// connection completely: the socket then reports POLLHUP, while a peer
// that only shut its write side leaves POLLRDHUP. (Over TCP a close looks
// like a half-close until a write fails, which the backend sees.)
//
// The watch runs on a duplicate of the socket, registered with the
// runtime poller on its own, so that it never competes with the reader of
// stdin and costs no thread while it waits. stop ends it.
func watchHangup(conn net.Conn, gone func()) (stop func()) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return func() {}
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return func() {}
	}
	dup := -1
	if cerr := rc.Control(func(fd uintptr) {
		dup, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); cerr != nil || err != nil {
		return func() {}
	}
	f := os.NewFile(uintptr(dup), "attach-watch") // non-blocking: pollable
	frc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return func() {}
	}
	go func() {
		hup := false
		// RawConn.Read calls the function again each time the poller
		// reports the socket readable (edge-triggered), until it returns
		// true or f is closed.
		_ = frc.Read(func(fd uintptr) bool {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
			n, err := unix.Poll(fds, 0)
			if err != nil {
				return err != unix.EINTR
			}
			if n > 0 && fds[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
				hup = true
				return true
			}
			return false
		})
		if hup {
			gone()
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { f.Close() }) }
}
