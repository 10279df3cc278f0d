// Package wire holds what the daemon and berth-shim exchange: the shim's
// configuration file, its control protocol (one JSON request line per
// connection, one JSON response line), the sync report and the exit file.
// The shim binary, which is paid once per container, links it: it uses
// only the standard library and jsonlite, no reflection (see codec.go).
package wire

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// Config is the shim's configuration, written by the daemon to
// <Bundle>/shim.json and read once by the shim at start-up.
type Config struct {
	ID          string
	Bundle      string   // dir with config.json and rootfs; shim.json, runtime.log, init.pid live here
	Runtime     string   // path of the OCI runtime binary
	RuntimeArgs []string // global args before the command, e.g. ["--root", "/run/berth/runtime/berth"]
	Socket      string   // unix socket the shim serves (sun_path is 108 bytes)
	ExitFile    string   // where the exit status is recorded (atomically)
	LogPath     string   // json-file log path; "" = no log (--log-driver none)
	LogMaxSize  int64    // bytes; 0 = unlimited
	LogMaxFiles int      // ≥ 1
	// LogNonBlocking drops output the log cannot take in time instead of
	// slowing the container (docker's --log-opt mode=non-blocking).
	LogNonBlocking bool
	Stdin          bool // OpenStdin: keep a stdin pipe to the container
	StdinOnce      bool // close the container's stdin when the first stdin-attached client ends its input
	Tty            bool
	// ConsoleHeight and ConsoleWidth are the initial pty size.
	ConsoleHeight uint16
	ConsoleWidth  uint16
	// RuntimeState is the container's state directory in berth's own
	// runtime (<root>/<id>), set only when that runtime runs it with a
	// pid namespace of its own and no hooks. The shim then deletes the
	// exited container itself, as `berth-runtime delete` would (its
	// cgroups, then this directory), instead of starting the runtime
	// for it; on any trouble it falls back to `<runtime> delete`.
	RuntimeState string
}

// MaxSocketPath is the longest unix socket path the kernel accepts
// (sun_path is 108 bytes including the terminating NUL).
const MaxSocketPath = 107

// Validate reports the first thing that makes cfg unusable.
func (c *Config) Validate() error {
	switch {
	case c.ID == "":
		return errors.New("shim config: empty container ID")
	case c.Bundle == "" || c.Bundle[0] != '/':
		return fmt.Errorf("shim config: bundle %q is not an absolute path", c.Bundle)
	case c.Runtime == "":
		return errors.New("shim config: no runtime")
	case c.Socket == "":
		return errors.New("shim config: no socket path")
	case len(c.Socket)+len(".con") > MaxSocketPath:
		return fmt.Errorf("shim config: socket path %q is too long for a unix socket", c.Socket)
	case c.ExitFile == "":
		return errors.New("shim config: no exit file")
	case c.LogMaxSize < 0:
		return fmt.Errorf("shim config: negative log max size %d", c.LogMaxSize)
	case c.RuntimeState != "" && (c.RuntimeState[0] != '/' || filepath.Clean(c.RuntimeState) != c.RuntimeState || filepath.Base(c.RuntimeState) != c.ID):
		return fmt.Errorf("shim config: runtime state %q is not a clean absolute path ending in the container's ID", c.RuntimeState)
	}
	return nil
}

// ExitStatus is how a container ended.
type ExitStatus struct {
	Code      int       // exit status, or 128+N when killed by signal N
	ExitedAt  time.Time // when the shim reaped the container's init
	Signal    int       // 0 unless killed by a signal
	OOMKilled bool      // the kernel's OOM killer acted in the container's cgroup
	Error     string    // what went wrong around the exit, if anything
}

// State is a shim's view of its container.
type State struct {
	Pid    int
	Status string // StatusCreated, StatusRunning or StatusStopped
	Exit   *ExitStatus
}

// Container statuses reported by State.
const (
	StatusCreated = "created"
	StatusRunning = "running"
	StatusStopped = "stopped"
)

// AttachOptions selects the streams of an attach.
type AttachOptions struct {
	Stdin  bool
	Stdout bool
	Stderr bool
}

// Operations of the control protocol.
const (
	OpStart  = "start"
	OpKill   = "kill"
	OpWait   = "wait"
	OpAttach = "attach"
	OpResize = "resize"
	OpState  = "state"
)

// Request is the single line a client sends on a fresh connection.
type Request struct {
	Op     string
	Signal int  // kill
	All    bool // kill: every process of the container
	AttachOptions
	Height uint16 // resize
	Width  uint16 // resize
}

// Error kinds carried in responses so the client can map them back to the
// errdefs sentinels without the shim linking errdefs.
const (
	KindNotFound           = "not_found"
	KindInvalidArgument    = "invalid_argument"
	KindFailedPrecondition = "failed_precondition"
	KindUnavailable        = "unavailable"
)

// Response is the single line the shim answers with. For attach, the
// stream follows it on the same connection.
type Response struct {
	Error string
	Kind  string
	State *State
	Exit  *ExitStatus
}

// MaxLine bounds a request or response line; anything longer is refused,
// so a confused peer cannot make either side buffer without limit.
const MaxLine = 64 << 10

// SyncMessage is what the shim reports on its sync pipe (fd 3) once the
// container is created, or when creating it failed.
type SyncMessage struct {
	Pid   int
	Error string
}
