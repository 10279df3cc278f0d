package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	gosignal "os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/moby/sys/signal"
	"github.com/moby/term"
)

// defaultEscapeKeys is docker's detach sequence: ctrl-p, ctrl-q.
var defaultEscapeKeys = []byte{16, 17}

// hijackedIOStreamer copies the local streams to and from an attach
// connection: stdin to the container, its output (demultiplexed with
// stdcopy unless it is a TTY) to stdout/stderr.
type hijackedIOStreamer struct {
	in  *inStream
	out *outStream

	inputStream  io.ReadCloser
	outputStream io.Writer
	errorStream  io.Writer

	resp       client.HijackedResponse
	tty        bool
	detachKeys string
}

// stream runs until the container's output ends, the user types the
// detach keys (TTY), or ctx is canceled. The terminal is restored before
// it returns.
func (h *hijackedIOStreamer) stream(ctx context.Context) error {
	restoreInput, err := h.setupInput()
	if err != nil {
		return fmt.Errorf("unable to setup input stream: %w", err)
	}
	defer restoreInput()

	outputDone := h.beginOutputStream(restoreInput)
	inputDone, detached := h.beginInputStream(restoreInput)

	select {
	case err := <-outputDone:
		return err
	case <-inputDone:
		if h.outputStream != nil || h.errorStream != nil {
			select {
			case err := <-outputDone:
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	case err := <-detached:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *hijackedIOStreamer) setupInput() (func(), error) {
	if h.inputStream == nil || !h.tty {
		return func() {}, nil
	}
	if err := h.in.SetRawTerminal(); err != nil {
		return nil, fmt.Errorf("unable to set IO streams as raw terminal: %w", err)
	}
	if err := h.out.SetRawTerminal(); err != nil {
		h.in.RestoreTerminal()
		return nil, fmt.Errorf("unable to set IO streams as raw terminal: %w", err)
	}
	var once sync.Once
	restore := func() {
		once.Do(func() {
			h.in.RestoreTerminal()
			h.out.RestoreTerminal()
			// Closing stdin unblocks the goroutine still reading it.
			_ = h.inputStream.Close()
		})
	}
	keys := defaultEscapeKeys
	if h.detachKeys != "" {
		k, err := term.ToBytes(h.detachKeys)
		if err != nil {
			slog.Warn("invalid detach escape keys, using default", "error", err)
		} else {
			keys = k
		}
	}
	h.inputStream = readCloser{Reader: term.NewEscapeProxy(h.inputStream, keys), close: h.inputStream.Close}
	return restore, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

func (h *hijackedIOStreamer) beginOutputStream(restoreInput func()) <-chan error {
	if h.outputStream == nil && h.errorStream == nil {
		return nil
	}
	done := make(chan error, 1)
	go func() {
		var err error
		if h.tty {
			dst := h.outputStream
			if dst == nil {
				dst = h.errorStream
			}
			_, err = io.Copy(dst, h.resp.Reader)
			// Restore the terminal as soon as the output ends, so that
			// what the CLI prints next is not in raw mode.
			restoreInput()
		} else {
			// A stream the user did not attach is discarded (the daemon
			// should not send it, but must not crash us if it does).
			stdout, stderr := h.outputStream, h.errorStream
			if stdout == nil {
				stdout = io.Discard
			}
			if stderr == nil {
				stderr = io.Discard
			}
			_, err = stdcopy.StdCopy(stdout, stderr, h.resp.Reader)
		}
		slog.Debug("[hijack] end of output", "error", err)
		done <- err
	}()
	return done
}

func (h *hijackedIOStreamer) beginInputStream(restoreInput func()) (<-chan struct{}, <-chan error) {
	done := make(chan struct{})
	detached := make(chan error, 1)
	go func() {
		if h.inputStream != nil {
			_, err := io.Copy(h.resp.Conn, h.inputStream)
			restoreInput()
			var esc term.EscapeError
			if errors.As(err, &esc) {
				detached <- err
				return
			}
			if err != nil {
				slog.Debug("[hijack] error sending stdin", "error", err)
			}
		}
		if err := h.resp.CloseWrite(); err != nil {
			slog.Debug("[hijack] could not send EOF", "error", err)
		}
		close(done)
	}()
	return done, detached
}

// attachContainer attaches to a container and starts streaming in the
// background; the returned channel yields the streaming's result.
func (c *berthCLI) attachContainer(ctx context.Context, id string, cfg *container.Config, o client.ContainerAttachOptions) (<-chan error, func(), error) {
	api, err := c.Client()
	if err != nil {
		return nil, nil, err
	}
	resp, err := api.ContainerAttach(ctx, id, o)
	if err != nil {
		return nil, nil, err
	}
	var (
		out, errw io.Writer
		in        io.ReadCloser
	)
	if o.Stdin {
		in = c.in
	}
	if o.Stdout {
		out = c.out
	}
	if o.Stderr {
		if cfg.Tty {
			errw = c.out
		} else {
			errw = c.err
		}
	}
	ch := make(chan error, 1)
	go func() {
		s := hijackedIOStreamer{in: c.in, out: c.out, inputStream: in, outputStream: out, errorStream: errw,
			resp: resp.HijackedResponse, tty: cfg.Tty, detachKeys: o.DetachKeys}
		ch <- s.stream(ctx)
	}()
	return ch, resp.HijackedResponse.Close, nil
}

// waitExitOrRemoved posts the wait request (next-exit, or removed for
// --rm containers) and returns a channel that yields the exit code; 125 if
// waiting failed. Call it before starting the container so that a quick
// exit is not missed.
func (c *berthCLI) waitExitOrRemoved(ctx context.Context, api client.ContainerAPIClient, id string, waitRemove bool) <-chan int {
	cond := container.WaitConditionNextExit
	if waitRemove {
		cond = container.WaitConditionRemoved
	}
	res := api.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: cond})
	statusC := make(chan int, 1)
	go func() {
		defer close(statusC)
		select {
		case <-ctx.Done():
		case r := <-res.Result:
			if r.Error != nil {
				fmt.Fprintf(c.err, "Error waiting for container: %v\n", r.Error.Message)
				statusC <- 125
				return
			}
			statusC <- int(r.StatusCode)
		case err := <-res.Error:
			if errors.Is(err, context.Canceled) {
				return
			}
			fmt.Fprintf(c.err, "Error waiting for container: %v\n", err)
			statusC <- 125
		}
	}()
	return statusC
}

// monitorTtySize keeps the container's TTY the size of the user's
// terminal. It listens for SIGWINCH from the moment it is called (a resize
// between the start and the first output must not be lost) and sends sizes
// once the returned function reports the container started, until ctx ends.
func (c *berthCLI) monitorTtySize(ctx context.Context, api client.ContainerAPIClient, id string) (started func()) {
	resize := func() error {
		h, w := c.out.GetTtySize()
		if h == 0 && w == 0 {
			return nil
		}
		_, err := api.ContainerResize(ctx, id, client.ContainerResizeOptions{Height: h, Width: w})
		return err
	}
	sigchan := make(chan os.Signal, 1)
	gosignal.Notify(sigchan, syscall.SIGWINCH)
	startedC := make(chan struct{})
	go func() {
		defer gosignal.Stop(sigchan)
		select {
		case <-ctx.Done():
			return
		case <-startedC:
		}
		// The process may not be ready for a resize yet: retry a few times.
		var err error
		for i := 0; i < 10; i++ {
			if err = resize(); err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(i+1) * 10 * time.Millisecond):
			}
		}
		if err != nil {
			fmt.Fprintln(c.err, "failed to resize tty, using default size")
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-sigchan:
				if err := resize(); err != nil {
					slog.Debug("resize", "error", err)
				}
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(startedC) }) }
}

// forwardAllSignals relays the signals the CLI receives to the container
// (--sig-proxy), so that ^C in a non-TTY `run` reaches the process.
func forwardAllSignals(ctx context.Context, api client.ContainerAPIClient, id string, sc *signalCatch) {
	for {
		var s os.Signal
		select {
		case <-ctx.Done():
			return
		case <-sc.quit:
			return
		case sig, ok := <-sc.c:
			if !ok {
				return
			}
			s = sig
		}
		if s == syscall.SIGCHLD || s == syscall.SIGPIPE || s == syscall.SIGURG {
			continue
		}
		var name string
		for n, v := range signal.SignalMap {
			if v == s {
				name = n
				break
			}
		}
		if name == "" {
			continue
		}
		if _, err := api.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: name}); err != nil {
			slog.Debug("error sending signal", "signal", name, "error", err)
		}
	}
}

// signalCatch receives every signal the CLI gets, for forwarding to a
// container. Starting and stopping it each cost the Go runtime a round
// trip per signal (~65 of them: 5–10 ms measured on the CI machine kind,
// a large part of a `run --rm … true`), so both happen in the background:
// the registration overlaps the requests that precede the start (wait for
// it with ready), and the deregistration the CLI's exit.
type signalCatch struct {
	c     chan os.Signal
	ready chan struct{} // closed once every signal is caught
	quit  chan struct{} // closed by stop: forward no more
	once  sync.Once
}

func notifyAllSignals() *signalCatch {
	sc := &signalCatch{c: make(chan os.Signal, 128), ready: make(chan struct{}), quit: make(chan struct{})}
	go func() {
		gosignal.Notify(sc.c)
		close(sc.ready)
	}()
	return sc
}

// wait returns once every signal is caught.
func (sc *signalCatch) wait() { <-sc.ready }

// stop ends the forwarding at once and the catching in the background.
func (sc *signalCatch) stop() {
	sc.once.Do(func() {
		close(sc.quit)
		go func() {
			<-sc.ready
			gosignal.Stop(sc.c)
		}()
	})
}
