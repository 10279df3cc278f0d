package api

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/moby/moby/api/types"
)

func (rt *router) postContainerAttach(c *call) error {
	_, upgrade := c.r.Header["Upgrade"]
	var (
		conn     net.Conn
		hijacked bool
	)
	opts := AttachOptions{
		Stdin:      c.bool("stdin"),
		Stdout:     c.bool("stdout"),
		Stderr:     c.bool("stderr"),
		Logs:       c.bool("logs"),
		Stream:     c.bool("stream"),
		DetachKeys: c.str("detachKeys"),
	}
	wantStdin := opts.Stdin
	opts.Hijack = func(multiplexed bool) (io.ReadCloser, io.Writer, error) {
		if hijacked {
			return nil, nil, errors.New("attach: connection already hijacked")
		}
		cn, brw, err := c.w.hijack()
		if err != nil {
			return nil, nil, fmt.Errorf("attach: hijack connection: %w", err)
		}
		hijacked, conn = true, cn
		contentType := types.MediaTypeRawStream
		if multiplexed && versionAtLeast(c.version, "1.42") {
			contentType = types.MediaTypeMultiplexedStream
		}
		var hdr bytes.Buffer
		if upgrade {
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
		var stdin io.ReadCloser
		if wantStdin {
			stdin = &attachInput{r: brw.Reader, conn: cn}
		}
		return stdin, cn, nil
	}

	err := rt.b.Containers.Attach(c.ctx, c.name, opts)
	if !hijacked {
		if err == nil && !opts.Stream && !opts.Logs {
			// Nothing to stream: answer like a hijack would have.
			return nil
		}
		if err == nil {
			return errors.New("attach: the backend did not take over the connection")
		}
		return err
	}
	// The stream is over (container output ended, client detached or
	// went away): closing tells the client. An error here can only be
	// logged; the status line went out long ago.
	if cerr := conn.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		c.log.Debug("close attach connection", "err", cerr)
	}
	if err != nil && !clientGone(c.ctx, err) {
		c.log.Warn("attach stream ended with an error", "container", c.name, "err", err)
	}
	return nil
}

// attachInput is the client's side of an attach: bytes it sent right
// after the request header are still in the server's bufio.Reader, the
// rest comes from the connection. A read of io.EOF means the client closed
// its write side (e.g. `echo hi | docker attach`), not that it left: the
// output keeps flowing until the backend is done. Close only shuts the
// read side, so a backend that closes stdin early cannot cut the output.
type attachInput struct {
	r      *bufio.Reader
	conn   net.Conn
	mu     sync.Mutex
	closed bool
}

func (a *attachInput) Read(p []byte) (int, error) {
	a.mu.Lock()
	closed := a.closed
	a.mu.Unlock()
	if closed {
		return 0, io.EOF
	}
	n, err := a.r.Read(p)
	if err != nil && n == 0 && errors.Is(err, net.ErrClosed) {
		err = io.EOF
	}
	return n, err
}

// Close stops reading: a pending Read returns.
func (a *attachInput) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	if cr, ok := a.conn.(interface{ CloseRead() error }); ok {
		_ = cr.CloseRead()
	}
	return nil
}
