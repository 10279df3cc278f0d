package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/container"
	"github.com/berth-engine/berth/internal/oci"
	"github.com/berth-engine/berth/internal/runtime"
	"github.com/berth-engine/berth/internal/shim"
	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/containerd/errdefs"
	containertypes "github.com/moby/moby/api/types/container"
	eventtypes "github.com/moby/moby/api/types/events"
	"github.com/moby/sys/signal"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// startTimeout bounds how long a start may take once begun; a client that
// goes away mid-start does not leave a half-started container behind.
const startTimeout = 2 * time.Minute

// Start implements POST /containers/{id}/start.
func (s *ContainerService) Start(ctx context.Context, id string) error {
	e, err := s.get(id)
	if err != nil {
		return err
	}
	e.op.Lock()
	switch st := e.status(); st {
	case container.StatusRunning, container.StatusPaused, container.StatusRestarting:
		e.op.Unlock()
		return errdefs.ErrNotModified.WithMessage("container already started")
	case container.StatusRemoving, container.StatusDead:
		e.op.Unlock()
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("cannot start container %s: container is marked for removal", id))
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), startTimeout)
	err = s.start(sctx, e)
	cancel()
	if err == nil {
		e.op.Unlock()
		return nil
	}
	// Record the failure as docker does: the container stays, with the
	// error and the exit code docker's CLI would derive from it; one that
	// never ran is still "created".
	e.smu.Lock()
	if e.c.State.StartedAt.IsZero() {
		e.c.State.Status = container.StatusCreated
	} else {
		e.c.State.Status = container.StatusExited
	}
	e.c.State.Error = err.Error()
	e.c.State.ExitCode = startErrorCode(err.Error())
	e.c.State.FinishedAt = time.Now().UTC()
	e.c.State.Pid = 0
	failedPending := e.pending
	e.pending = nil
	autoRemove := e.c.HostConfig.AutoRemove
	e.smu.Unlock()
	for _, p := range failedPending {
		p.fail(err)
	}
	if perr := s.persist(e); perr != nil {
		s.log.Error("persist container after failed start", "id", e.c.ID, "err", perr)
	}
	e.op.Unlock()
	if autoRemove {
		// docker's CLI waits for removal of an --rm container whose start
		// failed, so remove it before answering.
		if rerr := s.Remove(context.WithoutCancel(ctx), e.c.ID, api.RemoveOptions{Force: true, RemoveVolumes: true}); rerr != nil {
			s.log.Warn("auto-remove after failed start", "id", e.c.ID, "err", rerr)
		}
	}
	return err
}

// startErrorCode maps a start failure to the exit code docker records.
func startErrorCode(msg string) int {
	switch {
	case strings.Contains(msg, "executable file not found"), strings.Contains(msg, "no such file or directory"):
		return 127
	case strings.Contains(msg, "permission denied"), strings.Contains(msg, "is a directory"):
		return 126
	}
	return 128
}

// start brings a created or exited container up; callers hold e.op.
func (s *ContainerService) start(ctx context.Context, e *entry) (retErr error) {
	s.cgwarm.Keep(cgWarmFor)
	c := e.snapshot()
	if s.st.Networks == nil {
		if err := checkNetwork(c.HostConfig); err != nil {
			return err
		}
	}
	s.awaitPreviousShim(ctx, e)
	bundle := s.cfg.bundleDir(c.ID)
	rootfs := filepath.Join(bundle, "rootfs")
	if err := os.MkdirAll(rootfs, 0o700); err != nil {
		return fmt.Errorf("create bundle: %w", err)
	}
	defer func() {
		if retErr != nil {
			if err := unmountRootfs(bundle); err != nil {
				s.log.Warn("unmount rootfs after failed start", "id", c.ID, "err", err)
			}
			_ = os.RemoveAll(bundle)
		}
	}()
	mounts, err := s.st.Snapshots.Mounts(ctx, c.ID)
	if err != nil {
		return fmt.Errorf("root filesystem of %s: %w", c.ID, err)
	}
	if c.HostConfig.AutoRemove || c.Ephemeral {
		mounts = snapshot.Volatile(mounts)
	}
	if err := s.mountRootfs(c, mounts, rootfs); err != nil {
		return fmt.Errorf("mount root filesystem: %w", err)
	}
	netnsPath, err := s.setUpNetwork(e, c)
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			s.tearDownNetwork(e)
		}
	}()
	etc, err := s.etcFiles(c)
	if err != nil {
		return err
	}
	if err := s.remapContainerFiles(c, bundle); err != nil {
		return fmt.Errorf("prepare files for the remapped root: %w", err)
	}
	userMounts, mpChanged, err := s.specMounts(c, rootfs)
	if err != nil {
		s.releaseMounts(c)
		return err
	}
	defer func() {
		if retErr != nil {
			s.releaseMounts(c)
		}
	}()
	if mpChanged {
		e.smu.Lock()
		e.c.MountPoints = c.MountPoints
		e.smu.Unlock()
		if err := s.persist(e); err != nil {
			return err
		}
	}
	rt, err := s.st.Runtimes.Get(c.Runtime)
	if err != nil {
		return err
	}
	spec, err := s.writeBundleSpec(c, bundle, rootfs, etc, netnsPath, userMounts)
	if err != nil {
		return err
	}
	if err := s.writeHealthConfig(e, c, bundle); err != nil {
		return err
	}
	maxSize, maxFiles, err := logRotation(&c.HostConfig.LogConfig)
	if err != nil {
		return err
	}
	var height, width uint16
	if c.Config.Tty {
		height, width = uint16(c.HostConfig.ConsoleSize[0]), uint16(c.HostConfig.ConsoleSize[1])
	}
	exitFile := filepath.Join(bundle, "exit.json")
	_ = os.Remove(exitFile)
	client, pid, err := shim.Spawn(ctx, s.cfg.ShimPath, shim.Config{
		ID:          c.ID,
		Bundle:      bundle,
		Runtime:     rt.Path,
		RuntimeArgs: rt.Args,
		Socket:      s.cfg.shimSocket(c.ID),
		ExitFile:    exitFile,
		LogPath:     c.LogPath,
		LogMaxSize:  maxSize,
		LogMaxFiles: maxFiles,
		// docker's mode=non-blocking: drop output rather than stall the
		// process when the log cannot keep up.
		LogNonBlocking: c.HostConfig.LogConfig.Config["mode"] == "non-blocking",
		Stdin:          c.Config.OpenStdin,
		StdinOnce:      c.Config.StdinOnce,
		Tty:            c.Config.Tty,
		ConsoleHeight:  height,
		ConsoleWidth:   width,
		RuntimeState:   directDeleteState(rt, c.ID, spec),
	})
	if err != nil {
		return err
	}

	// Attach clients that were waiting for the start (docker run attaches
	// before it starts) are connected before the process runs, so they see
	// its output from the first byte.
	e.smu.Lock()
	e.shim = client
	pending := e.pending
	e.pending = nil
	e.smu.Unlock()
	for _, p := range pending {
		p.connect(ctx, client)
	}

	if err := client.Start(ctx); err != nil {
		_ = client.Kill(ctx, syscall.SIGKILL, true)
		_, _ = client.Wait(ctx)
		e.smu.Lock()
		e.shim = nil
		e.smu.Unlock()
		return err
	}
	e.smu.Lock()
	e.runGen++
	gen := e.runGen
	e.c.State = container.State{
		Status:    container.StatusRunning,
		Pid:       pid,
		StartedAt: time.Now().UTC(),
	}
	s.startHealth(e, gen)
	e.smu.Unlock()
	if err := s.persistState(e); err != nil {
		s.log.Error("persist running container", "id", c.ID, "err", err)
	}
	s.emitContainer(c, eventtypes.ActionStart, nil)
	go s.monitor(e, client, gen, exitFile)
	s.log.Debug("container started", "id", c.ID, "pid", pid)
	return nil
}

// directDeleteState is the runtime state directory the shim may delete
// itself once the container has exited (see wire.Config.RuntimeState):
// berth's own runtime, a pid namespace of the container's own (so nothing
// outlives its init) and nothing but cgroups and the state directory to
// undo (no hooks, no Intel RDT group). "" leaves it to `<runtime> delete`.
func directDeleteState(rt runtime.Runtime, id string, spec *specs.Spec) string {
	if spec.Hooks != nil || spec.Linux == nil || spec.Linux.IntelRdt != nil {
		return ""
	}
	ownPid := false
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace && ns.Path == "" {
			ownPid = true
		}
	}
	if !ownPid {
		return ""
	}
	return rt.StateDir(id)
}

// monitor waits for the container's exit through its shim and records it.
func (s *ContainerService) monitor(e *entry, client *shim.Client, gen int, exitFile string) {
	st, done, err := client.WaitDone(context.Background())
	if err != nil {
		st = s.exitFromFile(e.snapshot(), exitFile, err)
	} else {
		e.smu.Lock()
		if e.runGen == gen {
			e.shimDone = done
		}
		e.smu.Unlock()
	}
	s.handleExit(e, gen, st)
}

// shimDoneTimeout bounds how long a start waits for the previous run's
// shim to finish deleting the container in the runtime.
const shimDoneTimeout = 10 * time.Second

// awaitPreviousShim waits until the shim of the container's previous run
// is done with it; callers hold e.op.
func (s *ContainerService) awaitPreviousShim(ctx context.Context, e *entry) {
	e.smu.RLock()
	done := e.shimDone
	e.smu.RUnlock()
	if done == nil {
		return
	}
	t := time.NewTimer(shimDoneTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-ctx.Done():
	case <-t.C:
		s.log.Warn("previous shim still busy with the container; starting anyway", "id", e.c.ID)
	}
}

// exitFromFile reads the status the shim recorded when it is gone. If the
// shim died without recording one (killed behind berth's back), nothing is
// left to watch the container: it is killed and its runtime state deleted,
// as containerd does when a shim dies.
func (s *ContainerService) exitFromFile(c *container.Container, exitFile string, cause error) shim.ExitStatus {
	st, err := shim.ReadExitFile(exitFile)
	if err == nil {
		return st
	}
	s.log.Warn("container monitor lost; killing the container and recording an unknown exit", "id", c.ID, "err", cause)
	s.forceDelete(context.Background(), c.Runtime, c.ID)
	return shim.ExitStatus{Code: 255, ExitedAt: time.Now().UTC(), Error: errShimGone.Error()}
}

// forceDelete makes the runtime forget a container and kill what is left
// of it (`<runtime> delete --force`), for when no shim will.
func (s *ContainerService) forceDelete(ctx context.Context, runtimeName, id string) {
	rt, err := s.st.Runtimes.Get(runtimeName)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if out, err := rt.Command(ctx, "delete", "--force", id).CombinedOutput(); err != nil {
		s.log.Warn("runtime delete --force", "id", id, "err", err, "output", string(out))
	}
}

// handleExit records an exit and cleans up the runtime side of the container.
func (s *ContainerService) handleExit(e *entry, gen int, st shim.ExitStatus) {
	e.op.Lock()
	e.smu.Lock()
	if e.runGen != gen || !e.c.State.Running() {
		e.smu.Unlock()
		e.op.Unlock()
		return
	}
	id := e.c.ID
	finished := st.ExitedAt
	if finished.IsZero() {
		finished = time.Now().UTC()
	}
	e.c.State.Status = container.StatusExited
	e.c.State.Pid = 0
	e.c.State.ExitCode = st.Code
	e.c.State.OOMKilled = st.OOMKilled
	e.c.State.Error = st.Error
	e.c.State.FinishedAt = finished.UTC()
	if h := e.c.State.Health; h != nil {
		// As dockerd: a stopped container is not healthy.
		h.Status, h.FailingStreak = containertypes.Unhealthy, 0
	}
	s.stopHealth(e)
	s.execs.killContainer(id)
	e.shim = nil
	exitCh := e.exitCh
	e.exitCh = make(chan struct{})
	autoRemove := e.c.HostConfig.AutoRemove
	restart, delay := s.shouldRestart(e.c, finished.Sub(e.c.State.StartedAt))
	if restart {
		e.c.State.Status = container.StatusRestarting
		e.c.RestartCount++
	}
	exited := e.c.Clone()
	e.smu.Unlock()
	if st.OOMKilled {
		s.emitContainer(exited, eventtypes.ActionOOM, nil)
	}
	s.emitContainer(exited, eventtypes.ActionDie, map[string]string{"exitCode": strconv.Itoa(st.Code)})

	// An --rm container's record is deleted right below; if the daemon dies
	// first, start-up finds it "running" with its shim gone, records the
	// exit (from the exit file, still in the bundle) and removes it then.
	if !autoRemove || restart {
		if err := s.persistState(e); err != nil {
			s.log.Error("persist exited container", "id", id, "err", err)
		}
	}
	// Waiters (wait, stop, kill, docker run) have their answer now; whatever
	// they do next with the container takes e.op, held until the cleanup
	// below is done.
	close(exitCh)

	bundle := s.cfg.bundleDir(id)
	if err := unmountRootfs(bundle); err != nil {
		s.log.Error("unmount rootfs after exit", "id", id, "err", err)
		_ = os.RemoveAll(bundle)
	} else {
		_ = s.trash.Remove(bundle)
	}
	s.releaseMounts(exited)
	s.tearDownNetwork(e)
	_ = os.Remove(s.cfg.shimSocket(id))
	e.op.Unlock()
	s.log.Debug("container exited", "id", id, "code", st.Code, "restart", restart)
	if restart {
		s.scheduleRestart(e, delay)
		return
	}
	if autoRemove {
		if err := s.remove(context.Background(), id, api.RemoveOptions{Force: true, RemoveVolumes: true}, false); err != nil && !errdefs.IsNotFound(err) {
			s.log.Error("auto-remove", "id", id, "err", err)
		}
	}
}

// restore reattaches a container found at start-up to its shim, or records
// the exit that happened while the daemon was down.
func (s *ContainerService) restore(ctx context.Context, e *entry) {
	c := e.c
	bundle := s.cfg.bundleDir(c.ID)
	if !c.State.Running() {
		// Nothing should be mounted or left for a stopped container (what
		// might still run was stopped by stopStrayShims).
		if err := unmountRootfs(bundle); err != nil {
			s.log.Warn("unmount stale rootfs", "id", c.ID, "err", err)
		}
		_ = os.RemoveAll(bundle)
		return
	}
	client := shim.Dial(s.cfg.shimSocket(c.ID))
	exitFile := filepath.Join(bundle, "exit.json")
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	state, err := client.State(sctx)
	cancel()
	e.runGen++
	gen := e.runGen
	if err == nil && state.Status != "stopped" {
		e.shim = client
		s.reacquireMounts(c)
		s.restoreNetwork(c)
		s.restoreHealth(ctx, e, client)
		s.log.Info("reattached running container", "id", c.ID, "pid", state.Pid)
		go s.monitor(e, client, gen, exitFile)
		return
	}
	var st shim.ExitStatus
	if err == nil && state.Exit != nil {
		st = *state.Exit
	} else {
		st = s.exitFromFile(c, exitFile, err)
	}
	s.log.Info("container exited while the daemon was down", "id", c.ID, "code", st.Code)
	go s.handleExit(e, gen, st)
}

// Stop implements POST /containers/{id}/stop: the stop signal, then SIGKILL
// after the timeout.
func (s *ContainerService) Stop(ctx context.Context, id string, opts api.StopOptions) error {
	e, err := s.get(id)
	if err != nil {
		return err
	}
	return s.stop(ctx, e, opts)
}

func (s *ContainerService) stop(ctx context.Context, e *entry, opts api.StopOptions) (retErr error) {
	if s.cancelRestart(e) {
		e.smu.Lock()
		e.c.State.StoppedByUser = true
		e.smu.Unlock()
		_ = s.persist(e)
		return nil
	}
	e.smu.Lock()
	if !e.c.State.Running() || e.shim == nil {
		e.smu.Unlock()
		return errdefs.ErrNotModified.WithMessage("container already stopped")
	}
	client, exitCh := e.shim, e.exitCh
	e.c.State.StoppedByUser = true
	sigName := opts.Signal
	if sigName == "" {
		sigName = e.c.Config.StopSignal
	}
	timeout := 10
	if e.c.Config.StopTimeout != nil {
		timeout = *e.c.Config.StopTimeout
	}
	if opts.Timeout != nil {
		timeout = *opts.Timeout
	}
	e.smu.Unlock()

	sig := syscall.SIGTERM
	if sigName != "" {
		parsed, err := signal.ParseSignal(sigName)
		if err != nil {
			return errdefs.ErrInvalidArgument.WithMessage(err.Error())
		}
		sig = parsed
	}
	c := e.snapshot()
	s.emitContainer(c, eventtypes.ActionKill, map[string]string{"signal": strconv.Itoa(int(sig))})
	if err := client.Kill(ctx, sig, false); err != nil {
		s.log.Debug("stop signal not delivered", "id", e.c.ID, "err", err)
	}
	s.thawIfPaused(ctx, e)
	defer func() {
		if retErr == nil {
			s.emitContainer(c, eventtypes.ActionStop, nil)
		}
	}()
	if timeout >= 0 {
		t := time.NewTimer(time.Duration(timeout) * time.Second)
		defer t.Stop()
		select {
		case <-exitCh:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		s.log.Info("container did not stop in time; killing it", "id", e.c.ID, "timeout", timeout)
		s.emitContainer(c, eventtypes.ActionKill, map[string]string{"signal": "9"})
		if err := client.Kill(ctx, syscall.SIGKILL, true); err != nil {
			s.log.Debug("SIGKILL not delivered", "id", e.c.ID, "err", err)
		}
	}
	select {
	case <-exitCh:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Restart implements POST /containers/{id}/restart.
func (s *ContainerService) Restart(ctx context.Context, id string, opts api.StopOptions) error {
	e, err := s.get(id)
	if err != nil {
		return err
	}
	if err := s.stop(ctx, e, opts); err != nil && !errdefs.IsNotModified(err) {
		return fmt.Errorf("cannot restart container %s: %w", id, err)
	}
	if err := s.Start(ctx, e.c.ID); err != nil && !errdefs.IsNotModified(err) {
		return err
	}
	s.emitContainer(e.snapshot(), eventtypes.ActionRestart, nil)
	return nil
}

// Kill implements POST /containers/{id}/kill.
func (s *ContainerService) Kill(ctx context.Context, id, sigName string) error {
	e, err := s.get(id)
	if err != nil {
		return err
	}
	sig := syscall.SIGKILL
	if sigName != "" {
		parsed, err := signal.ParseSignal(sigName)
		if err != nil {
			return errdefs.ErrInvalidArgument.WithMessage(err.Error())
		}
		sig = parsed
	}
	if s.cancelRestart(e) {
		e.smu.Lock()
		e.c.State.StoppedByUser = true
		e.smu.Unlock()
		_ = s.persist(e)
		return nil
	}
	e.smu.Lock()
	if !e.c.State.Running() || e.shim == nil {
		e.smu.Unlock()
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("container %s is not running", e.c.ID))
	}
	client := e.shim
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM || sig == syscall.SIGINT {
		e.c.State.StoppedByUser = true
	}
	c := e.c.Clone()
	exitCh := e.exitCh
	e.smu.Unlock()
	if err := client.Kill(ctx, sig, sig == syscall.SIGKILL); err != nil {
		return err
	}
	s.emitContainer(c, eventtypes.ActionKill, map[string]string{"signal": strconv.Itoa(int(sig))})
	if sig == syscall.SIGKILL {
		s.thawIfPaused(ctx, e)
		// As dockerd: a SIGKILL is answered once the exit is recorded, so
		// an inspect right after `kill` sees the container stopped.
		select {
		case <-exitCh:
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
		}
	}
	return nil
}

// Remove implements DELETE /containers/{id}. As docker's, it returns once
// the runtime has let go of the container too (its cgroups and state): the
// shim reports an exit before that (see awaitPreviousShim).
func (s *ContainerService) Remove(ctx context.Context, id string, opts api.RemoveOptions) error {
	return s.remove(ctx, id, opts, true)
}

// remove removes a container; with awaitShim it also waits for the shim of
// its last run to finish deleting it in the runtime. An --rm container's
// removal does not: `docker run --rm` is answered once the record is gone,
// and the runtime's delete finishes on its own.
func (s *ContainerService) remove(ctx context.Context, id string, opts api.RemoveOptions, awaitShim bool) error {
	e, err := s.get(id)
	if err != nil {
		return err
	}
	if opts.RemoveLink {
		return errdefs.ErrInvalidArgument.WithMessage("links are not supported by berth")
	}
	if e.status() == container.StatusRestarting && e.snapshot().State.Pid == 0 {
		if !opts.Force {
			return errdefs.ErrConflict.WithMessage(fmt.Sprintf("cannot remove container %q: container is restarting: stop the container before removing or force remove", "/"+e.c.Name))
		}
		s.cancelRestart(e)
	}
	for {
		e.smu.RLock()
		running, client, exitCh, status := e.c.State.Running(), e.shim, e.exitCh, e.c.State.Status
		e.smu.RUnlock()
		if status == container.StatusRemoving {
			return errdefs.ErrConflict.WithMessage(fmt.Sprintf("removal of container %s is already in progress", id))
		}
		if !running {
			break
		}
		if !opts.Force {
			return errdefs.ErrConflict.WithMessage(fmt.Sprintf("cannot remove container %q: container is running: stop the container before removing or force remove", "/"+e.c.Name))
		}
		// No restart policy may bring it back while it is removed.
		e.smu.Lock()
		e.c.State.StoppedByUser = true
		e.smu.Unlock()
		if client == nil && s.cancelRestart(e) {
			continue
		}
		if client != nil {
			if err := client.Kill(ctx, syscall.SIGKILL, true); err != nil {
				s.log.Debug("SIGKILL for remove not delivered", "id", e.c.ID, "err", err)
			}
			s.thawIfPaused(ctx, e)
		}
		select {
		case <-exitCh:
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	e.op.Lock()
	defer e.op.Unlock()
	e.smu.Lock()
	if e.c.State.Running() { // started again between the check and the lock
		e.smu.Unlock()
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("cannot remove container %q: container is running: stop the container before removing or force remove", "/"+e.c.Name))
	}
	if e.c.State.Status == container.StatusRemoving {
		e.smu.Unlock()
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("removal of container %s is already in progress", id))
	}
	e.c.State.Status = container.StatusRemoving
	pending := e.pending
	e.pending = nil
	e.smu.Unlock()
	for _, p := range pending {
		p.fail(errdefs.ErrNotFound.WithMessage("container removed"))
	}

	cid := e.c.ID
	bundle := s.cfg.bundleDir(cid)
	if err := unmountRootfs(bundle); err != nil {
		return s.failRemove(e, fmt.Errorf("unmount root filesystem: %w", err))
	}
	_ = s.trash.Remove(bundle)
	if err := s.st.Snapshots.Remove(ctx, cid); err != nil && !errdefs.IsNotFound(err) {
		return s.failRemove(e, fmt.Errorf("remove root filesystem: %w", err))
	}
	if err := s.st.Containers.Delete(cid); err != nil {
		return s.failRemove(e, err)
	}
	s.mu.Lock()
	delete(s.entries, cid)
	s.mu.Unlock()
	s.index.Release(cid)
	close(e.removedCh)
	s.forgetRestart(cid)
	s.execs.dropContainer(cid)
	s.emitContainer(e.snapshot(), eventtypes.ActionDestroy, nil)
	if opts.RemoveVolumes {
		s.removeAnonymousVolumes(ctx, e.snapshot())
	}
	if _, err := s.st.Images.Get(ctx, e.c.ImageID); errdefs.IsNotFound(err) {
		// The image was force-removed while this container used it; its
		// layers are no longer needed by anyone.
		gcSnapshots(ctx, s.st)
	}
	if awaitShim {
		s.awaitPreviousShim(ctx, e)
	}
	s.log.Debug("container removed", "id", cid)
	return nil
}

// failRemove marks a container docker's "dead" state when its removal
// failed half-way, so the user can retry rm -f.
func (s *ContainerService) failRemove(e *entry, err error) error {
	e.smu.Lock()
	e.c.State.Status = container.StatusDead
	e.smu.Unlock()
	_ = s.persist(e)
	return fmt.Errorf("cannot remove container %q: %w", "/"+e.c.Name, err)
}

// Wait implements POST /containers/{id}/wait.
func (s *ContainerService) Wait(ctx context.Context, id string, cond containertypes.WaitCondition) (<-chan containertypes.WaitResponse, error) {
	e, err := s.get(id)
	if err != nil {
		return nil, err
	}
	e.smu.RLock()
	running, exitCh, removedCh := e.c.State.Running(), e.exitCh, e.removedCh
	e.smu.RUnlock()
	var done <-chan struct{}
	switch cond {
	case "", containertypes.WaitConditionNotRunning:
		if running {
			done = exitCh
		}
	case containertypes.WaitConditionNextExit:
		done = exitCh
	case containertypes.WaitConditionRemoved:
		done = removedCh
	default:
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid condition: %q", cond))
	}
	ch := make(chan containertypes.WaitResponse, 1)
	if done == nil {
		ch <- waitResponse(e)
		close(ch)
		return ch, nil
	}
	go func() {
		defer close(ch)
		select {
		case <-done:
			ch <- waitResponse(e)
		case <-ctx.Done():
		}
	}()
	return ch, nil
}

func waitResponse(e *entry) containertypes.WaitResponse {
	e.smu.RLock()
	defer e.smu.RUnlock()
	r := containertypes.WaitResponse{StatusCode: int64(e.c.State.ExitCode)}
	if e.c.State.Error != "" {
		r.Error = &containertypes.WaitExitError{Message: e.c.State.Error}
	}
	return r
}

// Rename implements POST /containers/{id}/rename.
func (s *ContainerService) Rename(ctx context.Context, id, newName string) error {
	e, err := s.get(id)
	if err != nil {
		return err
	}
	newName = strings.TrimPrefix(newName, "/")
	if newName == "" {
		return errdefs.ErrInvalidArgument.WithMessage("Neither old nor new names may be empty")
	}
	e.op.Lock()
	defer e.op.Unlock()
	e.smu.RLock()
	old := e.c.Name
	e.smu.RUnlock()
	if old == newName {
		return errdefs.ErrInvalidArgument.WithMessage("Renaming a container with the same name as its current name")
	}
	if err := s.index.Reserve(newName, e.c.ID); err != nil {
		return err
	}
	e.smu.Lock()
	e.c.Name = newName
	e.smu.Unlock()
	if err := s.persist(e); err != nil {
		e.smu.Lock()
		e.c.Name = old
		e.smu.Unlock()
		_ = s.index.Reserve(old, e.c.ID)
		return err
	}
	s.emitContainer(e.snapshot(), eventtypes.ActionRename, map[string]string{"oldName": "/" + old})
	return nil
}

// Resize implements POST /containers/{id}/resize.
func (s *ContainerService) Resize(ctx context.Context, id string, height, width uint) error {
	e, err := s.get(id)
	if err != nil {
		return err
	}
	e.smu.RLock()
	client, tty := e.shim, e.c.Config.Tty
	e.smu.RUnlock()
	if client == nil {
		return errNotRunning(id)
	}
	if !tty {
		return nil
	}
	return client.Resize(ctx, uint16(height), uint16(width))
}

// unmountRootfs unmounts a bundle's rootfs if it is mounted.
func unmountRootfs(bundle string) error {
	rootfs := filepath.Join(bundle, "rootfs")
	if _, err := os.Stat(rootfs); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return snapshot.UnmountAll(rootfs)
}

// writeBundleSpec writes the OCI runtime spec of c into bundle/config.json:
// for a container's start and for a build step run directly.
func (s *ContainerService) writeBundleSpec(c *container.Container, bundle, rootfs string, etc etcPaths, netnsPath string, mounts []specs.Mount) (*specs.Spec, error) {
	uidMaps, gidMaps := s.idMappings()
	spec, err := oci.Spec(oci.Options{
		ID:             c.ID,
		Config:         c.Config,
		HostConfig:     c.HostConfig,
		RootfsPath:     rootfs,
		HostsPath:      etc.hosts,
		HostnamePath:   etc.hostname,
		ResolvConfPath: etc.resolv,
		Mounts:         mounts,
		InitPath:       s.cfg.ShimPath,
		NetNSPath:      netnsPath,
		CgroupParent:   s.cfg.CgroupParent,
		CgroupV2:       oci.DetectCgroupV2(),
		UIDMappings:    uidMaps,
		GIDMappings:    gidMaps,
	})
	if err != nil {
		return nil, err
	}
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encode runtime spec: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), specJSON, 0o600); err != nil {
		return nil, fmt.Errorf("write runtime spec: %w", err)
	}
	return spec, nil
}
