package api

import (
	"context"
	"io"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/system"
)

// Filters are the parsed "filters" query parameter: term → accepted values.
// The API accepts both encodings docker clients send ({"t":{"v":true}} and
// the legacy {"t":["v"]}).
type Filters map[string][]string

// Each API area has its own small backend; the daemon wires one service per
// area at start-up. Backends return errors matching containerd/errdefs
// sentinels; the router maps them to docker's status codes.

// ContainerBackend serves /containers/….
type ContainerBackend interface {
	Create(ctx context.Context, req ContainerCreateRequest) (container.CreateResponse, error)
	Start(ctx context.Context, id string) error
	Stop(ctx context.Context, id string, opts StopOptions) error
	Restart(ctx context.Context, id string, opts StopOptions) error
	Kill(ctx context.Context, id, signal string) error
	Remove(ctx context.Context, id string, opts RemoveOptions) error
	// Wait returns once the wait is registered (so that a client that
	// attaches, waits and then starts never misses the exit); the channel
	// then yields one response when the condition is met, or is closed
	// without a value if ctx ends first.
	Wait(ctx context.Context, id string, cond container.WaitCondition) (<-chan container.WaitResponse, error)
	Inspect(ctx context.Context, id string, size bool) (*container.InspectResponse, error)
	List(ctx context.Context, opts ListOptions) ([]container.Summary, error)
	Rename(ctx context.Context, id, newName string) error
	Prune(ctx context.Context, filters Filters) (container.PruneReport, error)
	// Logs returns the container's log messages. With Follow the channel
	// stays open until the container stops or ctx ends.
	Logs(ctx context.Context, id string, opts LogsOptions) (<-chan LogMessage, LogsInfo, error)
	// Attach validates the request, then calls opts.Hijack to take over the
	// client connection, and copies streams until the container's output
	// ends, the client goes away or the client detaches.
	Attach(ctx context.Context, id string, opts AttachOptions) error
	Resize(ctx context.Context, id string, height, width uint) error
}

// ContainerCreateRequest is POST /containers/create.
type ContainerCreateRequest struct {
	Name             string
	Platform         string
	Config           *container.Config
	HostConfig       *container.HostConfig
	NetworkingConfig *network.NetworkingConfig
	// APIVersion is the version the client speaks; older versions get
	// docker's defaults for fields they did not know.
	APIVersion string
	// Ephemeral marks a container whose writable layer is thrown away
	// after one run (a build step): it is mounted without syncs, as --rm
	// containers are. Internal callers only; not part of the HTTP API.
	Ephemeral bool
}

// BuildStepRequest is a build's RUN step run without a container record:
// the process runs through the container's runtime with the confinement
// of `run`, straight from the daemon (no shim, no log file). Internal
// callers only; not part of the HTTP API.
type BuildStepRequest struct {
	// ID names the step's runtime container and cgroup; it is a fresh
	// container-style ID ("Running in" shows its first 12 digits).
	ID string
	// Image is the image the step runs on (an ID).
	Image string
	// SnapshotKey is the key of the writable snapshot the step's root
	// filesystem is prepared as; it is left for the caller, which takes
	// the step's changes from it and then commits or removes it.
	SnapshotKey string
	// Config is the step's process: Cmd (Entrypoint is ignored), Env,
	// User, WorkingDir; merged with the image's config as create does.
	Config *container.Config
	// NetworkMode is the build's --network ("" = the default bridge).
	NetworkMode container.NetworkMode
	// Output receives the process's stdout and stderr, in order.
	Output io.Writer
	// Starting, if set, is called once the step's checks have passed,
	// right before its process runs.
	Starting func()
}

// StopOptions are the query parameters of stop and restart.
type StopOptions struct {
	Signal  string // "" = the container's stop signal
	Timeout *int   // nil = the container's stop timeout (default 10s); -1 = wait forever
}

// RemoveOptions are the query parameters of DELETE /containers/{id}.
type RemoveOptions struct {
	Force         bool
	RemoveVolumes bool
	RemoveLink    bool
}

// ListOptions are the query parameters of GET /containers/json.
type ListOptions struct {
	All     bool
	Limit   int // 0 = no limit; also set by "last"
	Size    bool
	Filters Filters
}

// LogsOptions are the query parameters of GET /containers/{id}/logs.
type LogsOptions struct {
	Stdout, Stderr bool
	Follow         bool
	Since, Until   time.Time // zero = unbounded
	Timestamps     bool
	Tail           int // -1 = all
	Details        bool
}

// LogsInfo says how to frame the log stream.
type LogsInfo struct {
	TTY bool // raw stream instead of stdcopy frames
}

// LogMessage is one log line.
type LogMessage struct {
	Stream string // "stdout" or "stderr"
	Line   []byte // including the trailing newline, if the line had one
	Time   time.Time
	Attrs  map[string]string
	Err    error // a read error ends the stream
}

// AttachOptions are the query parameters of POST /containers/{id}/attach.
type AttachOptions struct {
	Stdin, Stdout, Stderr bool
	Logs, Stream          bool
	DetachKeys            string
	// Hijack takes over the client connection once the backend has
	// validated the request. multiplexed is true when output is framed with
	// stdcopy headers (no TTY). It returns the client's input (nil unless
	// Stdin) and the writer for output; closing input tells the client is
	// gone.
	Hijack func(multiplexed bool) (stdin io.ReadCloser, out io.Writer, err error)
}

// ImageBackend serves /images/….
type ImageBackend interface {
	// Import creates an image from a rootfs tarball (POST /images/create
	// with fromSrc=-) and returns its ID.
	Import(ctx context.Context, src io.Reader, opts ImportOptions) (string, error)
	// Pull fetches an image from a registry (POST /images/create with
	// fromImage), writing docker's JSON progress messages to progress.
	Pull(ctx context.Context, ref string, opts PullOptions, progress io.Writer) error
	// Load reads a docker-save tarball; progress gets docker's JSON
	// messages ("Loaded image: …").
	Load(ctx context.Context, src io.Reader, quiet bool, progress io.Writer) error
	// Save writes the named images as one docker-save tarball.
	Save(ctx context.Context, names []string, w io.Writer) error
	List(ctx context.Context, opts ImageListOptions) ([]image.Summary, error)
	Inspect(ctx context.Context, name string) (*image.InspectResponse, error)
	History(ctx context.Context, name string) ([]image.HistoryResponseItem, error)
	Tag(ctx context.Context, source, repo, tag string) error
	Remove(ctx context.Context, name string, force, noPrune bool) ([]image.DeleteResponse, error)
	Prune(ctx context.Context, filters Filters) (image.PruneReport, error)
}

// ImportOptions are the query parameters of an import.
type ImportOptions struct {
	Repo, Tag string   // where to tag the new image ("" = untagged)
	Changes   []string // Dockerfile instructions applied to the config
	Message   string
	Platform  string
}

// PullOptions are the query parameters and auth of a pull.
type PullOptions struct {
	Tag          string
	Platform     string
	RegistryAuth string // the X-Registry-Auth header, base64url JSON
}

// ImageListOptions are the query parameters of GET /images/json.
type ImageListOptions struct {
	All            bool
	Filters        Filters
	SharedSize     bool
	ContainerCount bool
	Digests        bool
}

// SystemBackend serves /info, /version and /system/df.
type SystemBackend interface {
	Info(ctx context.Context) (*system.Info, error)
	Version(ctx context.Context) system.VersionResponse
}
