package engine

import (
	"context"
	"io"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/logs/jsonfile"
	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
)

// Logs implements GET /containers/{id}/logs.
func (s *ContainerService) Logs(ctx context.Context, id string, opts api.LogsOptions) (<-chan api.LogMessage, api.LogsInfo, error) {
	e, err := s.get(id)
	if err != nil {
		return nil, api.LogsInfo{}, err
	}
	e.smu.RLock()
	logPath, tty, running, exitCh := e.c.LogPath, e.c.Config.Tty, e.c.State.Running(), e.exitCh
	driver := logDriver(e.c.HostConfig)
	e.smu.RUnlock()
	info := api.LogsInfo{TTY: tty}
	if logPath == "" {
		return nil, info, errdefs.ErrNotImplemented.WithMessage("configured logging driver does not support reading: " + driver)
	}
	if !opts.Stdout && !opts.Stderr {
		return nil, info, errdefs.ErrInvalidArgument.WithMessage("Bad parameters: you must choose at least one stream")
	}
	done := exitCh
	if !running {
		closed := make(chan struct{})
		close(closed)
		done = closed
	}
	msgs, err := jsonfile.Read(ctx, logPath, jsonfile.ReadOptions{
		Tail:   opts.Tail,
		Since:  opts.Since,
		Until:  opts.Until,
		Follow: opts.Follow,
		Done:   done,
	})
	if err != nil {
		return nil, info, err
	}
	out := make(chan api.LogMessage, 64)
	go func() {
		defer close(out)
		for m := range msgs {
			if m.Err == nil && (m.Stream == "stdout" && !opts.Stdout || m.Stream == "stderr" && !opts.Stderr) {
				continue
			}
			select {
			case out <- api.LogMessage{Stream: m.Stream, Line: m.Line, Time: m.Time, Err: m.Err}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, info, nil
}

// replayLogs writes a container's past output into an attach stream
// (attach with logs=1), framed like the live stream.
func replayLogs(ctx context.Context, path string, tty bool, opts api.AttachOptions, out io.Writer) error {
	msgs, err := jsonfile.Read(ctx, path, jsonfile.ReadOptions{Tail: -1})
	if err != nil {
		return err
	}
	stdout, stderr := out, out
	if !tty {
		stdout, stderr = api.NewStdWriter(out, stdcopy.Stdout), api.NewStdWriter(out, stdcopy.Stderr)
	}
	for m := range msgs {
		if m.Err != nil {
			return m.Err
		}
		w := stdout
		if m.Stream == "stderr" {
			if !opts.Stderr {
				continue
			}
			w = stderr
		} else if !opts.Stdout {
			continue
		}
		if _, err := w.Write(m.Line); err != nil {
			return err
		}
	}
	return nil
}
