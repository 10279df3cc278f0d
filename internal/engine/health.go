package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/berth-engine/berth/internal/container"
	"github.com/berth-engine/berth/internal/shim"
	"github.com/berth-engine/berth/internal/shim/wire"
	"github.com/containerd/errdefs"
	containertypes "github.com/moby/moby/api/types/container"
	eventtypes "github.com/moby/moby/api/types/events"
)

// Docker's health check defaults.
const (
	defaultProbeInterval      = 30 * time.Second
	defaultProbeTimeout       = 30 * time.Second
	defaultProbeStartInterval = 5 * time.Second
	defaultProbeRetries       = 3
)

// Health checks run in each container's shim (internal/shim/monitor's
// health.go), not here: the daemon writes the probe's configuration and
// process into the bundle before it spawns the shim, and from then on
// hears only of status changes, as datagrams on one socket
// (<exec-root>/health.sock) that a single goroutine reads. inspect asks
// the shim for the live results; at the exit the shim leaves its last
// state in the bundle. So 100 containers probed every second cost the
// daemon nothing, and probing goes on while the daemon is down: a
// restarted daemon asks each shim for its status.
//
// Unlike dockerd, berth emits no exec_create/exec_start/exec_die events
// for probes (dockerd does, for every probe): they would have to travel
// from the shim to the daemon once per probe, the cost this design
// removes. health_status events are emitted as dockerd does.

// healthMonitors is the daemon's end of the shims' status notices.
type healthMonitors struct {
	sock string // "" when notices cannot be received
	conn *net.UnixConn
}

// healthSocket is where shims send their health status notices.
func (c Config) healthSocket() string {
	return filepath.Join(c.ExecRoot, "health.sock")
}

// listenHealth opens the notice socket and serves it for the daemon's life.
func (s *ContainerService) listenHealth() {
	path := s.cfg.healthSocket()
	if len(path) > wire.MaxSocketPath {
		s.log.Warn("health check status changes will not be reported: exec root path too long", "socket", path)
		return
	}
	_ = os.Remove(path)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		s.log.Warn("health check status changes will not be reported", "err", err)
		return
	}
	// Only root's shims may report.
	if err := os.Chmod(path, 0o600); err != nil {
		conn.Close()
		s.log.Warn("health check status changes will not be reported", "err", err)
		return
	}
	s.health = healthMonitors{sock: path, conn: conn}
	go s.serveHealth(conn)
}

func (s *ContainerService) serveHealth(conn *net.UnixConn) {
	buf := make([]byte, 4096)
	for {
		n, _, err := conn.ReadFromUnix(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("health notice socket", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		notice, err := shim.ParseHealthNotice(buf[:n])
		if err != nil {
			s.log.Warn("bad health notice", "err", err)
			continue
		}
		e, err := s.get(notice.ID)
		if err != nil || e.snapshot().ID != notice.ID {
			continue // removed meanwhile, or not a full ID
		}
		s.setHealth(e, notice.Status, notice.FailingStreak, nil)
	}
}

// setHealth records a running container's health status (and log, when
// given), emitting health_status and persisting when the status changed.
func (s *ContainerService) setHealth(e *entry, status string, streak int, log []shim.HealthResult) {
	e.smu.Lock()
	h := e.c.State.Health
	if h == nil || !e.c.State.Running() {
		e.smu.Unlock()
		return
	}
	old := h.Status
	h.Status, h.FailingStreak = containertypes.HealthStatus(status), streak
	if log != nil {
		h.Log = healthLog(log)
	}
	changed := h.Status != old
	c := e.c.Clone()
	e.smu.Unlock()
	if changed {
		s.emitContainer(c, eventtypes.Action(string(eventtypes.ActionHealthStatus)+": "+status), nil)
		e.op.Lock()
		_ = s.persist(e)
		e.op.Unlock()
	}
}

func healthLog(log []shim.HealthResult) []*containertypes.HealthcheckResult {
	out := make([]*containertypes.HealthcheckResult, 0, len(log))
	for _, r := range log {
		out = append(out, &containertypes.HealthcheckResult{Start: r.Start, End: r.End, ExitCode: r.ExitCode, Output: r.Output})
	}
	return out
}

// writeHealthConfig puts the container's health check into its bundle
// for the shim, or removes a stale one; config.json must be written.
func (s *ContainerService) writeHealthConfig(e *entry, c *container.Container, bundle string) error {
	for _, name := range []string{wire.HealthConfigFile, wire.HealthProcessFile, wire.HealthStateFile} {
		_ = os.Remove(filepath.Join(bundle, name))
	}
	if c.Config == nil || probeCommand(c.Config.Healthcheck) == nil {
		return nil
	}
	hc := c.Config.Healthcheck
	req := containertypes.ExecCreateRequest{Cmd: probeCommand(hc), AttachStdout: true, AttachStderr: true, User: c.Config.User}
	// A throwaway entry: execBase would otherwise cache the spec process
	// under the run that is ending, where no exec would use it.
	proc, err := s.execProcessSpec(&entry{runGen: -1}, bundle, c, req, nil)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	b, err := json.Marshal(proc)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	retries := hc.Retries
	if retries <= 0 {
		retries = defaultProbeRetries
	}
	return shim.WriteHealthConfig(bundle, shim.HealthConfig{
		Interval:      durationOr(hc.Interval, defaultProbeInterval),
		Timeout:       durationOr(hc.Timeout, defaultProbeTimeout),
		StartPeriod:   hc.StartPeriod,
		StartInterval: durationOr(hc.StartInterval, defaultProbeStartInterval),
		Retries:       retries,
		Notify:        s.health.sock,
	}, b)
}

// startHealth marks a container that just started as starting its health
// check (its shim runs it); callers hold e.smu.
func (s *ContainerService) startHealth(e *entry, gen int) {
	c := e.c
	if c.Config == nil || probeCommand(c.Config.Healthcheck) == nil {
		c.State.Health = nil
		return
	}
	c.State.Health = &containertypes.Health{Status: containertypes.Starting, Log: []*containertypes.HealthcheckResult{}}
}

// restoreHealth re-reads the health status of a container reattached at
// start-up from its shim, which kept probing while the daemon was down.
func (s *ContainerService) restoreHealth(ctx context.Context, e *entry, client *shim.Client) {
	if e.c.Config == nil || probeCommand(e.c.Config.Healthcheck) == nil {
		e.c.State.Health = nil
		return
	}
	if e.c.State.Health == nil {
		e.c.State.Health = &containertypes.Health{Status: containertypes.Starting, Log: []*containertypes.HealthcheckResult{}}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := client.Health(ctx)
	if err != nil {
		s.log.Warn("health state of a reattached container", "id", e.c.ID, "err", err)
		return
	}
	h := e.c.State.Health
	h.Status, h.FailingStreak, h.Log = containertypes.HealthStatus(st.Status), st.FailingStreak, healthLog(st.Log)
}

// stopHealth keeps the last results the shim left when the container
// exited; callers hold e.smu.
func (s *ContainerService) stopHealth(e *entry) {
	h := e.c.State.Health
	if h == nil {
		return
	}
	if st, err := shim.ReadHealthState(s.cfg.bundleDir(e.c.ID)); err == nil {
		h.Log = healthLog(st.Log)
	}
}

// liveHealth fills inspect's health with the shim's current results.
func (s *ContainerService) liveHealth(ctx context.Context, e *entry, c *container.Container) {
	if c.State.Health == nil || !c.State.Running() {
		return
	}
	e.smu.RLock()
	client := e.shim
	e.smu.RUnlock()
	if client == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := client.Health(ctx)
	if err != nil {
		return
	}
	c.State.Health = &containertypes.Health{Status: containertypes.HealthStatus(st.Status), FailingStreak: st.FailingStreak, Log: healthLog(st.Log)}
}

func durationOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// validateHealthcheck refuses what dockerd refuses, with its messages.
func validateHealthcheck(hc *containertypes.HealthConfig) error {
	if hc == nil {
		return nil
	}
	const minimum = time.Millisecond
	bad := func(msg string) error { return errdefs.ErrInvalidArgument.WithMessage(msg) }
	switch {
	case hc.Interval != 0 && hc.Interval < minimum:
		return bad("Interval in Healthcheck cannot be less than 1ms")
	case hc.Timeout != 0 && hc.Timeout < minimum:
		return bad("Timeout in Healthcheck cannot be less than 1ms")
	case hc.Retries < 0:
		return bad("Retries in Healthcheck cannot be negative")
	case hc.StartPeriod != 0 && hc.StartPeriod < minimum:
		return bad("StartPeriod in Healthcheck cannot be less than 1ms")
	case hc.StartInterval != 0 && hc.StartInterval < minimum:
		return bad("StartInterval in Healthcheck cannot be less than 1ms")
	}
	return nil
}

// probeCommand is the health check's command, nil when there is none.
func probeCommand(hc *containertypes.HealthConfig) []string {
	if hc == nil || len(hc.Test) == 0 {
		return nil
	}
	switch hc.Test[0] {
	case "CMD":
		if len(hc.Test) > 1 {
			return slices.Clone(hc.Test[1:])
		}
	case "CMD-SHELL":
		if len(hc.Test) > 1 {
			return []string{"/bin/sh", "-c", strings.Join(hc.Test[1:], " ")}
		}
	}
	return nil // NONE, or nothing to run
}
