package engine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth-engine/berth/internal/container"
	"github.com/berth-engine/berth/internal/stringid"
	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	containertypes "github.com/moby/moby/api/types/container"
	eventtypes "github.com/moby/moby/api/types/events"
)

// Docker's health check defaults.
const (
	defaultProbeInterval      = 30 * time.Second
	defaultProbeTimeout       = 30 * time.Second
	defaultProbeStartInterval = 5 * time.Second
	defaultProbeRetries       = 3
	maxHealthLog              = 5
	maxProbeOutput            = 4096
)

// healthMonitors are the running health checks, one per container.
type healthMonitors struct {
	mu    sync.Mutex
	stops map[string]chan struct{}
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

// startHealth starts the health check of a container that just started;
// callers hold e.smu.
func (s *ContainerService) startHealth(e *entry, gen int) {
	c := e.c
	if c.Config == nil || probeCommand(c.Config.Healthcheck) == nil {
		c.State.Health = nil
		return
	}
	c.State.Health = &containertypes.Health{Status: containertypes.Starting, Log: []*containertypes.HealthcheckResult{}}
	stop := make(chan struct{})
	h := &s.health
	h.mu.Lock()
	if h.stops == nil {
		h.stops = map[string]chan struct{}{}
	}
	if old := h.stops[c.ID]; old != nil {
		close(old)
	}
	h.stops[c.ID] = stop
	h.mu.Unlock()
	go s.healthLoop(e, gen, *c.Config.Healthcheck, stop)
}

// stopHealth ends a container's health check (at its exit).
func (s *ContainerService) stopHealth(id string) {
	h := &s.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if stop := h.stops[id]; stop != nil {
		close(stop)
		delete(h.stops, id)
	}
}

func (s *ContainerService) healthLoop(e *entry, gen int, cfg containertypes.HealthConfig, stop <-chan struct{}) {
	interval := durationOr(cfg.Interval, defaultProbeInterval)
	startInterval := durationOr(cfg.StartInterval, defaultProbeStartInterval)
	timeout := durationOr(cfg.Timeout, defaultProbeTimeout)
	retries := cfg.Retries
	if retries <= 0 {
		retries = defaultProbeRetries
	}
	e.smu.RLock()
	started := e.c.State.StartedAt
	e.smu.RUnlock()
	inStartPeriod := func(now time.Time) bool { return cfg.StartPeriod > 0 && now.Sub(started) < cfg.StartPeriod }
	t := time.NewTimer(interval)
	if inStartPeriod(time.Now()) {
		t.Reset(min(startInterval, interval))
	}
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		res := s.probe(e, probeCommand(&cfg), timeout)
		if !s.recordProbe(e, gen, res, retries, inStartPeriod(res.Start)) {
			return
		}
		next := interval
		e.smu.RLock()
		starting := e.c.State.Health != nil && e.c.State.Health.Status == containertypes.Starting
		e.smu.RUnlock()
		if starting && inStartPeriod(time.Now()) {
			next = min(startInterval, interval)
		}
		t.Reset(next)
	}
}

func durationOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// probe runs the check once as an exec in the container; one that
// outlives timeout is killed.
func (s *ContainerService) probe(e *entry, cmd []string, timeout time.Duration) *containertypes.HealthcheckResult {
	res := &containertypes.HealthcheckResult{Start: time.Now()}
	c := e.snapshot()
	fail := func(code int, msg string) *containertypes.HealthcheckResult {
		res.End, res.ExitCode, res.Output = time.Now(), code, msg
		return res
	}
	if c.State.Status != container.StatusRunning {
		return fail(-1, "container is not running")
	}
	req := containertypes.ExecCreateRequest{Cmd: cmd, AttachStdout: true, AttachStderr: true, User: c.Config.User}
	p := &execProc{id: stringid.Generate(), cid: c.ID, req: req, done: make(chan struct{}), quiet: true, started: true}
	proc, err := s.execProcessSpec(e, s.cfg.bundleDir(c.ID), c, req, nil)
	if err != nil {
		return fail(-1, err.Error())
	}
	var framed limitedBuffer
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	run, err := s.runExec(ctx, c, p, proc, false, nil, &framed)
	if err != nil {
		return fail(-1, err.Error())
	}
	done := make(chan struct{})
	go func() { run(); close(done) }()
	timedOut := false
	select {
	case <-done:
	case <-ctx.Done():
		timedOut = true
		p.mu.Lock()
		pid := p.pid
		p.mu.Unlock()
		if pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		<-done
	}
	var out bytes.Buffer
	_, _ = stdcopy.StdCopy(&out, &out, bytes.NewReader(framed.Bytes()))
	if timedOut {
		return fail(-1, fmt.Sprintf("Health check exceeded timeout (%v)", timeout))
	}
	p.mu.Lock()
	code := -1
	if p.exitCode != nil {
		code = *p.exitCode
	}
	p.mu.Unlock()
	return fail(code, out.String())
}

// recordProbe updates the health state with a result, emitting an event
// when the status changes. It reports false once the run it watched is over.
func (s *ContainerService) recordProbe(e *entry, gen int, res *containertypes.HealthcheckResult, retries int, inStartPeriod bool) bool {
	e.smu.Lock()
	h := e.c.State.Health
	if e.runGen != gen || h == nil || !e.c.State.Running() {
		e.smu.Unlock()
		return false
	}
	old := h.Status
	h.Log = append(h.Log, res)
	if len(h.Log) > maxHealthLog {
		h.Log = slices.Clone(h.Log[len(h.Log)-maxHealthLog:])
	}
	if res.ExitCode == 0 {
		h.Status, h.FailingStreak = containertypes.Healthy, 0
	} else if !inStartPeriod || h.Status != containertypes.Starting {
		h.FailingStreak++
		if h.FailingStreak >= retries {
			h.Status = containertypes.Unhealthy
		}
	}
	changed := h.Status != old
	c := e.c.Clone()
	e.smu.Unlock()
	if changed {
		s.emitContainer(c, eventtypes.Action(string(eventtypes.ActionHealthStatus)+": "+string(h.Status)), nil)
		e.op.Lock()
		_ = s.persist(e)
		e.op.Unlock()
	}
	return true
}

// limitedBuffer keeps the first maxProbeOutput bytes (plus frame headers)
// of a probe's output and discards the rest.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() < maxProbeOutput+64 {
		b.buf.Write(p)
	}
	return len(p), nil
}

func (b *limitedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Bytes()
}

var _ io.Writer = (*limitedBuffer)(nil)

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
