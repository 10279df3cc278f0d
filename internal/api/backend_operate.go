package api

import (
	"context"
	"io"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
)

// ExecBackend serves the exec endpoints: POST /containers/{id}/exec and
// /exec/{id}/….
type ExecBackend interface {
	// ExecCreate registers a process to run in a running container and
	// returns its ID; nothing runs until ExecStart.
	ExecCreate(ctx context.Context, container string, req container.ExecCreateRequest) (string, error)
	// ExecStart runs the process. Unless opts.Detach it validates the
	// request, calls opts.Hijack, streams until the process's output ends
	// (or the client goes away) and returns; errors after the hijack are
	// written into the stream by the backend.
	ExecStart(ctx context.Context, id string, opts ExecStartOptions) error
	ExecResize(ctx context.Context, id string, height, width uint) error
	ExecInspect(ctx context.Context, id string) (*container.ExecInspectResponse, error)
}

// ExecStartOptions are the body of POST /exec/{id}/start.
type ExecStartOptions struct {
	Detach      bool
	Tty         bool
	ConsoleSize *[2]uint
	// Hijack takes over the client connection (see AttachOptions.Hijack).
	Hijack func(multiplexed bool) (stdin io.ReadCloser, out io.Writer, err error)
}

// ContainerOpsBackend serves the operations on running containers: pause,
// unpause, top, stats and update.
type ContainerOpsBackend interface {
	Pause(ctx context.Context, id string) error
	Unpause(ctx context.Context, id string) error
	// Top lists the container's processes with ps (psArgs "" = "-ef").
	Top(ctx context.Context, id, psArgs string) (*container.TopResponse, error)
	// Stats sends samples of the container's resource usage to send,
	// once (opts.Stream false) or until ctx ends or send fails.
	Stats(ctx context.Context, id string, opts StatsOptions, send func(*container.StatsResponse) error) error
	// Update changes the resources and restart policy of a container.
	Update(ctx context.Context, id string, cfg container.UpdateConfig) (*container.UpdateResponse, error)
}

// StatsOptions are the query parameters of GET /containers/{id}/stats.
type StatsOptions struct {
	Stream  bool
	OneShot bool // with !Stream: one sample, without a previous one for CPU deltas
}

// EventsBackend serves GET /events.
type EventsBackend interface {
	// Events returns the recorded events that match opts (oldest first)
	// and, unless opts.Until is in the past, a channel of the new ones,
	// closed when ctx ends (or the subscriber falls too far behind).
	Events(ctx context.Context, opts EventsOptions) ([]events.Message, <-chan events.Message, error)
}

// EventsOptions are the query parameters of GET /events.
type EventsOptions struct {
	Since, Until time.Time // zero = unbounded
	Filters      Filters
}
