package engine

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/berth-engine/berth/internal/container"
	containertypes "github.com/moby/moby/api/types/container"
	eventtypes "github.com/moby/moby/api/types/events"
)

// Restart back-off, as dockerd's restart manager: 100 ms, doubling at
// each restart up to a minute, back to 100 ms once a run lasted 10 s.
const (
	restartBackoffMin   = 100 * time.Millisecond
	restartBackoffMax   = time.Minute
	restartBackoffReset = 10 * time.Second
)

// restartState is the restart manager: the back-off of each container and
// the restarts waiting for their delay.
type restartState struct {
	mu      sync.Mutex
	backoff map[string]time.Duration
	pending map[string]*time.Timer
}

// shouldRestart applies the restart policy to an exit, with docker's
// rules; callers hold e.smu. It returns the delay before the restart.
func (s *ContainerService) shouldRestart(c *container.Container, ranFor time.Duration) (bool, time.Duration) {
	if c.HostConfig == nil || c.State.StoppedByUser {
		return false, 0
	}
	p := c.HostConfig.RestartPolicy
	restart := false
	switch p.Name {
	case containertypes.RestartPolicyAlways, containertypes.RestartPolicyUnlessStopped:
		restart = true
	case containertypes.RestartPolicyOnFailure:
		restart = c.State.ExitCode != 0 && (p.MaximumRetryCount == 0 || c.RestartCount < p.MaximumRetryCount)
	}
	if !restart {
		return false, 0
	}
	r := &s.restarts
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.backoff == nil {
		r.backoff = map[string]time.Duration{}
	}
	d := r.backoff[c.ID]
	switch {
	case ranFor >= restartBackoffReset || d == 0:
		d = restartBackoffMin
	default:
		d = min(2*d, restartBackoffMax)
	}
	r.backoff[c.ID] = d
	return true, d
}

// scheduleRestart starts the container again after delay, unless the
// restart is cancelled first (stop, kill, rm, start by the user).
func (s *ContainerService) scheduleRestart(e *entry, delay time.Duration) {
	id := e.c.ID
	r := &s.restarts
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending == nil {
		r.pending = map[string]*time.Timer{}
	}
	if t := r.pending[id]; t != nil {
		t.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(delay, func() {
		r.mu.Lock()
		if r.pending[id] != t {
			r.mu.Unlock()
			return // cancelled or replaced
		}
		delete(r.pending, id)
		r.mu.Unlock()
		s.restartNow(e)
	})
	r.pending[id] = t
}

// cancelRestart drops a pending restart; a container waiting for one is
// recorded as exited. It reports whether one was pending.
func (s *ContainerService) cancelRestart(e *entry) bool {
	r := &s.restarts
	r.mu.Lock()
	t := r.pending[e.c.ID]
	delete(r.pending, e.c.ID)
	r.mu.Unlock()
	if t != nil {
		t.Stop()
	}
	e.smu.Lock()
	wasRestarting := e.c.State.Status == container.StatusRestarting && e.shim == nil
	if wasRestarting {
		e.c.State.Status = container.StatusExited
	}
	e.smu.Unlock()
	if wasRestarting {
		if err := s.persist(e); err != nil {
			s.log.Warn("persist container after cancelled restart", "id", e.c.ID, "err", err)
		}
	}
	return t != nil || wasRestarting
}

// forgetRestart drops the restart state of a removed container.
func (s *ContainerService) forgetRestart(id string) {
	r := &s.restarts
	r.mu.Lock()
	defer r.mu.Unlock()
	if t := r.pending[id]; t != nil {
		t.Stop()
	}
	delete(r.pending, id)
	delete(r.backoff, id)
}

// restartNow starts a container whose restart delay is over.
func (s *ContainerService) restartNow(e *entry) {
	e.op.Lock()
	e.smu.Lock()
	if e.c.State.Status != container.StatusRestarting || e.shim != nil {
		e.smu.Unlock()
		e.op.Unlock()
		return
	}
	e.smu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	err := s.start(ctx, e)
	cancel()
	if err == nil {
		e.op.Unlock()
		return
	}
	s.log.Warn("restart failed", "id", e.c.ID, "err", err)
	e.smu.Lock()
	e.c.State.Status = container.StatusExited
	e.c.State.Error = err.Error()
	e.c.State.ExitCode = startErrorCode(err.Error())
	e.c.State.FinishedAt = time.Now().UTC()
	c := e.c.Clone()
	again, delay := s.shouldRestart(c, 0)
	if again {
		e.c.State.Status = container.StatusRestarting
		e.c.RestartCount++
	}
	e.smu.Unlock()
	_ = s.persist(e)
	e.op.Unlock()
	s.emitContainer(c, eventtypes.ActionDie, map[string]string{"exitCode": strconv.Itoa(c.State.ExitCode)})
	if again {
		s.scheduleRestart(e, delay)
	}
}

// startAtBoot starts, once the daemon is up, the stopped containers whose
// policy asks for it: `always` ones, and `unless-stopped` ones the user did
// not stop (docker's daemon start-up).
func (s *ContainerService) startAtBoot(entries []*entry) {
	for _, e := range entries {
		e.smu.RLock()
		st, hc := e.c.State, e.c.HostConfig
		e.smu.RUnlock()
		if st.Running() || hc == nil || st.Status == container.StatusRemoving || st.Status == container.StatusDead {
			continue
		}
		switch hc.RestartPolicy.Name {
		case containertypes.RestartPolicyAlways:
		case containertypes.RestartPolicyUnlessStopped:
			if st.StoppedByUser {
				continue
			}
		default:
			continue
		}
		if st.Status == container.StatusCreated {
			continue
		}
		go func() {
			if err := s.Start(context.Background(), e.c.ID); err != nil {
				s.log.Warn("start at daemon start-up (restart policy)", "id", e.c.ID, "err", err)
			}
		}()
	}
}
