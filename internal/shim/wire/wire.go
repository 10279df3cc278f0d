// Package wire holds what the daemon and berth-shim exchange: the shim's
// configuration file, its control protocol (one JSON request line per
// connection, one JSON response line) and the exit file. It imports only the
// standard library because the shim binary, which is paid once per
// container, links it.
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Config is the shim's configuration, written by the daemon to
// <Bundle>/shim.json and read once by the shim at start-up.
type Config struct {
	ID          string   `json:"id"`
	Bundle      string   `json:"bundle"`       // dir with config.json and rootfs; shim.json, runtime.log, init.pid live here
	Runtime     string   `json:"runtime"`      // path of the OCI runtime binary
	RuntimeArgs []string `json:"runtime_args"` // global args before the command, e.g. ["--root", "/run/berth/runtime/berth"]
	Socket      string   `json:"socket"`       // unix socket the shim serves (sun_path is 108 bytes)
	ExitFile    string   `json:"exit_file"`    // where the exit status is recorded (atomically)
	LogPath     string   `json:"log_path"`     // json-file log path; "" = no log (--log-driver none)
	LogMaxSize  int64    `json:"log_max_size"` // bytes; 0 = unlimited
	LogMaxFiles int      `json:"log_max_files"`
	Stdin       bool     `json:"stdin"`      // OpenStdin: keep a stdin pipe to the container
	StdinOnce   bool     `json:"stdin_once"` // close the container's stdin when the first stdin-attached client ends its input
	Tty         bool     `json:"tty"`
	// ConsoleHeight and ConsoleWidth are the initial pty size.
	ConsoleHeight uint16 `json:"console_height"`
	ConsoleWidth  uint16 `json:"console_width"`
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
	}
	return nil
}

// ExitStatus is how a container ended.
type ExitStatus struct {
	Code      int       `json:"code"`                 // exit status, or 128+N when killed by signal N
	ExitedAt  time.Time `json:"exited_at"`            // when the shim reaped the container's init
	Signal    int       `json:"signal,omitempty"`     // 0 unless killed by a signal
	OOMKilled bool      `json:"oom_killed,omitempty"` // the kernel's OOM killer acted in the container's cgroup
	Error     string    `json:"error,omitempty"`      // what went wrong around the exit, if anything
}

// State is a shim's view of its container.
type State struct {
	Pid    int         `json:"pid"`
	Status string      `json:"status"` // StatusCreated, StatusRunning or StatusStopped
	Exit   *ExitStatus `json:"exit,omitempty"`
}

// Container statuses reported by State.
const (
	StatusCreated = "created"
	StatusRunning = "running"
	StatusStopped = "stopped"
)

// AttachOptions selects the streams of an attach.
type AttachOptions struct {
	Stdin  bool `json:"stdin,omitempty"`
	Stdout bool `json:"stdout,omitempty"`
	Stderr bool `json:"stderr,omitempty"`
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
	Op     string `json:"op"`
	Signal int    `json:"signal,omitempty"` // kill
	All    bool   `json:"all,omitempty"`    // kill: every process of the container
	AttachOptions
	Height uint16 `json:"height,omitempty"` // resize
	Width  uint16 `json:"width,omitempty"`  // resize
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
	Error string      `json:"error,omitempty"`
	Kind  string      `json:"kind,omitempty"`
	State *State      `json:"state,omitempty"`
	Exit  *ExitStatus `json:"exit,omitempty"`
}

// MaxLine bounds a request or response line; anything longer is refused,
// so a confused peer cannot make either side buffer without limit.
const MaxLine = 64 << 10

// ParseRequest decodes and checks one request line.
func ParseRequest(line []byte) (Request, error) {
	var r Request
	line = bytes.TrimSpace(line)
	if len(line) > MaxLine {
		return r, errors.New("request too long")
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return r, fmt.Errorf("decode request: %w", err)
	}
	switch r.Op {
	case OpStart, OpWait, OpAttach, OpState:
	case OpKill:
		if r.Signal <= 0 || r.Signal > 64 {
			return r, fmt.Errorf("invalid signal %d", r.Signal)
		}
	case OpResize:
		if r.Height == 0 || r.Width == 0 {
			return r, fmt.Errorf("invalid console size %dx%d", r.Height, r.Width)
		}
	default:
		return r, fmt.Errorf("unknown operation %q", r.Op)
	}
	return r, nil
}

// ParseResponse decodes one response line.
func ParseResponse(line []byte) (Response, error) {
	var r Response
	if len(line) > MaxLine {
		return r, errors.New("response too long")
	}
	if err := json.Unmarshal(bytes.TrimSpace(line), &r); err != nil {
		return r, fmt.Errorf("decode shim response: %w", err)
	}
	return r, nil
}

// ParseExitFile decodes the content of an exit file.
func ParseExitFile(data []byte) (ExitStatus, error) {
	var st ExitStatus
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("decode exit file: %w", err)
	}
	return st, nil
}

// SyncMessage is what the shim reports on its sync pipe (fd 3) once the
// container is created, or when creating it failed.
type SyncMessage struct {
	Pid   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
}

// ParseSync decodes the sync pipe's message.
func ParseSync(line []byte) (SyncMessage, error) {
	var m SyncMessage
	if err := json.Unmarshal(bytes.TrimSpace(line), &m); err != nil {
		return m, fmt.Errorf("decode shim report %q: %w", truncate(line, 200), err)
	}
	if m.Error == "" && m.Pid <= 0 {
		return m, fmt.Errorf("shim reported neither a pid nor an error: %q", truncate(line, 200))
	}
	return m, nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
