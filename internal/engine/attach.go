package engine

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/container"
	"github.com/berth-engine/berth/internal/shim"
	"github.com/containerd/errdefs"
)

// pendingAttach is an attach to a created container, waiting for its start.
type pendingAttach struct {
	opts shim.AttachOptions
	once sync.Once
	ch   chan attachResult
}

type attachResult struct {
	conn net.Conn
	err  error
}

func (p *pendingAttach) connect(ctx context.Context, client *shim.Client) {
	conn, err := client.Attach(ctx, p.opts)
	sent := false
	p.once.Do(func() { p.ch <- attachResult{conn, err}; sent = true })
	if !sent && conn != nil {
		conn.Close() // the attacher gave up before the start
	}
}

func (p *pendingAttach) fail(err error) {
	p.once.Do(func() { p.ch <- attachResult{nil, err} })
}

// Attach implements POST /containers/{id}/attach.
func (s *ContainerService) Attach(ctx context.Context, id string, opts api.AttachOptions) error {
	e, err := s.get(id)
	if err != nil {
		return err
	}
	e.smu.RLock()
	status, tty, logPath := e.c.State.Status, e.c.Config.Tty, e.c.LogPath
	e.smu.RUnlock()
	// As dockerd: a stream to a created or exited container waits for its
	// next start (`start -a` attaches first); only a container on its way
	// out cannot be attached to.
	switch status {
	case container.StatusDead, container.StatusRemoving:
		if opts.Stream {
			return errdefs.ErrConflict.WithMessage("You cannot attach to a stopped container, start it first")
		}
	case container.StatusPaused:
		return errdefs.ErrConflict.WithMessage("You cannot attach to a paused container, unpause it first")
	}
	if opts.Stdin && !e.c.Config.OpenStdin {
		opts.Stdin = false
	}
	stdin, out, err := opts.Hijack(!tty)
	if err != nil {
		return err
	}
	if stdin != nil {
		defer stdin.Close()
	}
	if opts.Logs && logPath != "" {
		if err := replayLogs(ctx, logPath, tty, opts, out); err != nil {
			return err
		}
	}
	if !opts.Stream {
		return nil
	}
	conn, err := s.attachConn(ctx, e, shim.AttachOptions{Stdin: opts.Stdin, Stdout: opts.Stdout, Stderr: opts.Stderr})
	if err != nil {
		return err
	}
	defer conn.Close()
	// The API cancels ctx when the client hangs up: end the copy then, or
	// it would last as long as the container's output.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if opts.Stdin && stdin != nil {
		go func() {
			_, _ = io.Copy(conn, stdin)
			if cw, ok := conn.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
		}()
	}
	_, err = io.Copy(out, conn)
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// attachConn connects to the container's shim, waiting for the start of a
// created container.
func (s *ContainerService) attachConn(ctx context.Context, e *entry, opts shim.AttachOptions) (net.Conn, error) {
	e.smu.Lock()
	client, status := e.shim, e.c.State.Status
	if client != nil {
		e.smu.Unlock()
		return client.Attach(ctx, opts)
	}
	if status != container.StatusCreated && status != container.StatusExited {
		e.smu.Unlock()
		return nil, errdefs.ErrConflict.WithMessage("You cannot attach to a stopped container, start it first")
	}
	p := &pendingAttach{opts: opts, ch: make(chan attachResult, 1)}
	e.pending = append(e.pending, p)
	removed := e.removedCh
	e.smu.Unlock()
	select {
	case r := <-p.ch:
		return r.conn, r.err
	case <-removed:
		return nil, errdefs.ErrNotFound.WithMessage("container removed")
	case <-ctx.Done():
		e.smu.Lock()
		for i, q := range e.pending {
			if q == p {
				e.pending = append(e.pending[:i], e.pending[i+1:]...)
				break
			}
		}
		e.smu.Unlock()
		p.fail(ctx.Err())
		if r := <-p.ch; r.conn != nil {
			r.conn.Close()
		}
		return nil, ctx.Err()
	}
}
