// Package container holds berth's container records: what a container is
// (config, host config, image, name), its lifecycle state, and the on-disk
// store that keeps them across daemon restarts.
package container

import (
	"fmt"
	"strings"
	"time"

	"github.com/docker/go-units"
	containertypes "github.com/moby/moby/api/types/container"
	"github.com/opencontainers/go-digest"
)

// Status values, as docker reports them.
const (
	StatusCreated    = "created"
	StatusRunning    = "running"
	StatusPaused     = "paused"
	StatusRestarting = "restarting"
	StatusRemoving   = "removing"
	StatusExited     = "exited"
	StatusDead       = "dead"
)

// State is a container's lifecycle state.
type State struct {
	Status     string
	Pid        int
	ExitCode   int
	Error      string
	OOMKilled  bool
	StartedAt  time.Time
	FinishedAt time.Time
	// StoppedByUser records that the last exit was asked for by stop or
	// kill, which restart policies must respect.
	StoppedByUser bool
	// Health is the health check's state while a container with one runs.
	Health *containertypes.Health `json:",omitempty"`
}

// Running reports whether the container has a live process.
func (s State) Running() bool {
	return s.Status == StatusRunning || s.Status == StatusPaused || s.Status == StatusRestarting
}

// Container is one container's persistent record.
type Container struct {
	ID         string
	Name       string // without docker's leading "/"
	Created    time.Time
	Path       string
	Args       []string
	Config     *containertypes.Config
	HostConfig *containertypes.HostConfig
	// ImageID is the image the container was created from.
	ImageID digest.Digest
	// Driver is the snapshotter holding the container's writable layer.
	Driver string
	// Runtime is the OCI runtime name it runs with.
	Runtime      string
	State        State
	RestartCount int

	LogPath        string
	HostnamePath   string
	HostsPath      string
	ResolvConfPath string

	// MountPoints are the container's volumes, binds and tmpfs mounts
	// (-v, --mount, --volumes-from, image VOLUMEs), resolved at create.
	MountPoints []MountPoint `json:",omitempty"`

	// Ephemeral containers (build steps) have their writable layer thrown
	// away after one run, like --rm ones.
	Ephemeral bool `json:",omitempty"`
	// NetworkSettings are the container's network attachments as docker
	// keeps them: the requested endpoint settings by network name, with
	// addresses, the namespace path and published ports filled in while it
	// runs. Replaced, never changed in place, so a shallow Clone is safe.
	NetworkSettings *containertypes.NetworkSettings `json:",omitempty"`
}

// MountPoint is one mount of a container, as recorded at create.
type MountPoint struct {
	Type        string // "bind", "volume" or "tmpfs"
	Name        string `json:",omitempty"` // the volume's name
	Source      string `json:",omitempty"` // a bind's host path
	Destination string
	RW          bool
	Mode        string `json:",omitempty"` // as the user gave it (-v's third field)
	Propagation string `json:",omitempty"`
	// NonRecursive binds without submounts (--mount bind-recursive=disabled).
	NonRecursive bool `json:",omitempty"`
	// Anonymous volumes were made for this container and go with rm -v.
	Anonymous bool `json:",omitempty"`
	// CopyData: the image's content at Destination is copied into the
	// volume at the next start if the volume is empty.
	CopyData bool `json:",omitempty"`
	// Subpath mounts a directory inside the volume (--mount volume-subpath).
	Subpath string `json:",omitempty"`
	// TmpfsOptions are a tmpfs mount's options (size=, mode=).
	TmpfsOptions []string `json:",omitempty"`
}

// Clone returns a deep enough copy for readers that must not race with
// writers: the config structs are copied by JSON round trip in the store, so
// here only the top-level value and slices that the engine mutates.
func (c *Container) Clone() *Container {
	cp := *c
	cp.Args = append([]string(nil), c.Args...)
	cp.MountPoints = append([]MountPoint(nil), c.MountPoints...)
	if h := c.State.Health; h != nil {
		hc := *h
		hc.Log = append([]*containertypes.HealthcheckResult(nil), h.Log...)
		cp.State.Health = &hc
	}
	return &cp
}

// StatusString is the human status docker shows in `ps`
// ("Up 3 minutes", "Exited (0) 2 seconds ago", "Created").
func (c *Container) StatusString(now time.Time) string {
	s := c.State
	switch s.Status {
	case StatusRunning:
		up := "Up " + units.HumanDuration(now.Sub(s.StartedAt))
		if h := s.Health; h != nil {
			switch h.Status {
			case containertypes.Starting:
				up += " (health: starting)"
			case containertypes.Healthy, containertypes.Unhealthy:
				up += " (" + string(h.Status) + ")"
			}
		}
		return up
	case StatusPaused:
		return "Up " + units.HumanDuration(now.Sub(s.StartedAt)) + " (Paused)"
	case StatusRestarting:
		return fmt.Sprintf("Restarting (%d) %s ago", s.ExitCode, units.HumanDuration(now.Sub(s.FinishedAt)))
	case StatusRemoving:
		return "Removal In Progress"
	case StatusDead:
		return "Dead"
	case StatusExited:
		if s.FinishedAt.IsZero() {
			return fmt.Sprintf("Exited (%d)", s.ExitCode)
		}
		return fmt.Sprintf("Exited (%d) %s ago", s.ExitCode, units.HumanDuration(now.Sub(s.FinishedAt)))
	}
	return "Created"
}

// CommandString is the command as `ps` shows it: path and args joined.
func (c *Container) CommandString() string {
	return strings.TrimSpace(strings.Join(append([]string{c.Path}, c.Args...), " "))
}
