package engine

import (
	"context"
	"errors"
	"fmt"
	"github.com/moby/sys/signal"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/cgwarm"
	"github.com/berth-engine/berth/internal/container"
	"github.com/berth-engine/berth/internal/events"
	"github.com/berth-engine/berth/internal/fsutil"
	"github.com/berth-engine/berth/internal/shim"
	"github.com/berth-engine/berth/internal/stringid"
	"github.com/containerd/errdefs"
	containertypes "github.com/moby/moby/api/types/container"
	eventtypes "github.com/moby/moby/api/types/events"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ContainerService implements api.ContainerBackend: the container lifecycle.
type ContainerService struct {
	cfg    Config
	st     Stores
	log    *slog.Logger
	index  *container.Index
	unpack *unpacker

	mu      sync.RWMutex
	entries map[string]*entry
	// creating counts the volumes of creates in flight, whose records
	// are not written yet: volume rm and prune must not take them.
	creating map[string]int

	execs execTable
	ev    *events.Bus
	// restarts is the restart manager's state (restart.go).
	restarts restartState
	// health runs the containers' health checks (health.go).
	health healthMonitors
	// userns is the --userns-remap namespace for idmapped mounts (userns.go).
	userns usernsState
	// trash deletes the bundles of exited containers in the background
	// (start-up removes what a crash leaves: bundles without records).
	trash fsutil.Trash
	// cgwarm keeps the cgroup migration lock warm from the moment a
	// container is on its way to running, so the runtime's moves into its
	// cgroups do not wait for an RCU grace period (package cgwarm).
	cgwarm *cgwarm.Warmer
}

// cgWarmFor is how long one create, start, exec or build step keeps the
// cgroup migration lock warm: until berth-runtime, once started, keeps it
// warm itself (~20 ms after a create in a sequential run). Not longer: the
// lock is global, and while it is warm every fork and exit on the host
// takes its slower path. A steady stream of requests keeps the warming
// going; the runtimes those requests start hold the lock in the same state
// anyway.
const cgWarmFor = 100 * time.Millisecond

var _ api.ContainerBackend = (*ContainerService)(nil)

// entry is a container and its in-memory runtime state.
//
// Locking: op serialises lifecycle operations (start, stop's signalling,
// remove, exit handling, rename) and is never held while waiting for the
// container to exit; smu guards the record and the runtime fields, and is
// held only briefly, so reads (inspect, ps) never wait behind a slow stop.
type entry struct {
	op  sync.Mutex
	smu sync.RWMutex
	c   *container.Container

	shim      *shim.Client  // set while the container has a live shim
	exitCh    chan struct{} // closed at the next exit, then replaced
	removedCh chan struct{} // closed once the container is removed
	pending   []*pendingAttach
	// runGen counts starts, so a stale monitor can't clobber a newer run.
	runGen int
	// execBase is the running container's spec process (from its bundle's
	// config.json), parsed once per run for execs and health probes.
	execBase    *specs.Process
	execBaseGen int
	// shimDone is closed once the shim of the last run has finished with
	// the container (the runtime has deleted it); nil when unknown. The
	// shim reports the exit before that, so a new start waits for it.
	shimDone <-chan struct{}
}

func newEntry(c *container.Container) *entry {
	return &entry{c: c, exitCh: make(chan struct{}), removedCh: make(chan struct{})}
}

// snapshot returns a copy of the record that is safe to read without locks.
func (e *entry) snapshot() *container.Container {
	e.smu.RLock()
	defer e.smu.RUnlock()
	return e.c.Clone()
}

func (e *entry) status() string {
	e.smu.RLock()
	defer e.smu.RUnlock()
	return e.c.State.Status
}

// NewContainerService loads every container record and reconciles it with
// what is actually running: live shims are reattached, exits that happened
// while the daemon was down are recorded, and leftovers are cleaned up.
func NewContainerService(ctx context.Context, cfg Config, st Stores) (*ContainerService, error) {
	s := &ContainerService{
		cfg:     cfg,
		st:      st,
		log:     cfg.logger(),
		index:   container.NewIndex(),
		unpack:  newUnpacker(st),
		entries: map[string]*entry{},
		ev:      st.Events,
		cgwarm:  cgwarm.New(nil),
	}
	if err := setSubreaper(); err != nil {
		s.log.Warn("cannot become a child subreaper; exec exit codes will be lost", "err", err)
	}
	for _, dir := range []string{filepath.Join(cfg.ExecRoot, "containers"), filepath.Join(cfg.ExecRoot, "shims")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("container service: %w", err)
		}
	}
	s.listenHealth()
	records, orphans, errs := st.Containers.LoadAll()
	for _, err := range errs {
		s.log.Error("skipping unreadable container record", "err", err)
	}
	for _, id := range orphans {
		s.log.Warn("removing leftovers of a container whose record is missing", "id", id)
		s.removeLeftovers(ctx, id)
	}
	for _, c := range records {
		if err := s.index.Reserve(c.Name, c.ID); err != nil {
			s.log.Error("container name clash at load; renaming", "id", c.ID, "name", c.Name, "err", err)
			c.Name = stringid.Truncate(c.ID) + "_" + c.Name
			_ = s.index.Reserve(c.Name, c.ID)
		}
		e := newEntry(c)
		s.entries[c.ID] = e
	}
	// Strays first, while the records still say what was running: once
	// restore runs, restart policies may start containers (new shims).
	s.stopStrayShims(ctx)
	s.cleanBuildSteps()
	var stopped []*entry
	for _, e := range s.entries {
		if !e.c.State.Running() {
			stopped = append(stopped, e)
		}
		s.restore(ctx, e)
	}
	// Bundles of containers that have no record any more.
	bundles, _ := filepath.Glob(filepath.Join(cfg.ExecRoot, "containers", "*"))
	for _, b := range bundles {
		if _, ok := s.entries[filepath.Base(b)]; ok {
			continue
		}
		if err := unmountRootfs(b); err != nil {
			s.log.Warn("unmount leftover rootfs", "bundle", b, "err", err)
			continue
		}
		_ = os.RemoveAll(b)
	}
	s.reconcileNetworks()
	s.startAtBoot(stopped)
	gcSnapshots(ctx, st)
	return s, nil
}

// get resolves what a user typed to a container.
func (s *ContainerService) get(idOrName string) (*entry, error) {
	id, err := s.index.Lookup(idOrName)
	if err != nil {
		return nil, err
	}
	s.mu.RLock()
	e := s.entries[id]
	s.mu.RUnlock()
	if e == nil {
		return nil, errdefs.ErrNotFound.WithMessage("No such container: " + idOrName)
	}
	return e, nil
}

func (s *ContainerService) all() []*entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*entry, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		ci, cj := out[i].c, out[j].c
		if ci.Created.Equal(cj.Created) {
			return ci.ID < cj.ID
		}
		return ci.Created.After(cj.Created)
	})
	return out
}

// persist writes the record; callers hold e.op.
func (s *ContainerService) persist(e *entry) error {
	e.smu.RLock()
	defer e.smu.RUnlock()
	return s.st.Containers.Save(e.c)
}

// persistState persists a change of the run state only (started, exited):
// see container.Store.SaveState.
func (s *ContainerService) persistState(e *entry) error {
	e.smu.RLock()
	defer e.smu.RUnlock()
	return s.st.Containers.SaveState(e.c)
}

// Create implements POST /containers/create.
func (s *ContainerService) Create(ctx context.Context, req api.ContainerCreateRequest) (containertypes.CreateResponse, error) {
	if req.Config == nil {
		return containertypes.CreateResponse{}, errdefs.ErrInvalidArgument.WithMessage("config cannot be empty in order to create a container")
	}
	cfg := *req.Config
	var hc containertypes.HostConfig
	if req.HostConfig != nil {
		hc = *req.HostConfig
	}
	if cfg.Image == "" {
		return containertypes.CreateResponse{}, errdefs.ErrInvalidArgument.WithMessage("no image specified")
	}
	img, err := s.st.Images.Resolve(ctx, cfg.Image)
	if err != nil {
		return containertypes.CreateResponse{}, err
	}
	// `run` starts right after create: warm now, a grace period ahead.
	s.cgwarm.Keep(cgWarmFor)
	warnings, err := s.validateHostConfig(&hc)
	if err != nil {
		return containertypes.CreateResponse{}, err
	}
	netSettings, err := initialNetworkSettings(&hc, req.NetworkingConfig)
	if err != nil {
		return containertypes.CreateResponse{}, err
	}
	mergeImageConfig(&cfg, &img.Config.Config)
	if err := validateHealthcheck(cfg.Healthcheck); err != nil {
		return containertypes.CreateResponse{}, err
	}
	if cfg.StopSignal != "" {
		if _, err := signal.ParseSignal(cfg.StopSignal); err != nil {
			return containertypes.CreateResponse{}, errdefs.ErrInvalidArgument.WithMessage(err.Error())
		}
	}
	path, args, err := commandOf(&cfg)
	if err != nil {
		return containertypes.CreateResponse{}, err
	}
	rt, err := s.st.Runtimes.Get(hc.Runtime)
	if err != nil {
		return containertypes.CreateResponse{}, err
	}
	hc.Runtime = rt.Name
	mountPoints, err := s.planMounts(&cfg, &hc)
	if err != nil {
		return containertypes.CreateResponse{}, err
	}

	id := s.newID()
	if cfg.Hostname == "" {
		cfg.Hostname = id[:stringid.ShortLen]
	}
	name := req.Name
	if name != "" {
		if err := s.index.Reserve(name, id); err != nil {
			return containertypes.CreateResponse{}, err
		}
	} else {
		for i := 0; ; i++ {
			name = container.GenerateName(i)
			if err := s.index.Reserve(name, id); err == nil {
				break
			}
		}
	}
	ok := false
	defer func() {
		if !ok {
			s.index.Release(id)
		}
	}()

	top, err := s.unpack.ensure(ctx, img)
	if err != nil {
		return containertypes.CreateResponse{}, fmt.Errorf("unpack image %s: %w", img.ID, err)
	}
	if _, err := s.st.Snapshots.Prepare(ctx, id, top); err != nil {
		return containertypes.CreateResponse{}, fmt.Errorf("prepare root filesystem: %w", err)
	}
	defer func() {
		if !ok {
			_ = s.st.Snapshots.Remove(context.WithoutCancel(ctx), id)
			_ = s.st.Containers.Delete(id)
		}
	}()
	if err := s.remapNewLayer(ctx, id, &hc); err != nil {
		return containertypes.CreateResponse{}, err
	}

	undoMounts, release, err := s.prepareMounts(mountPoints, &hc)
	if err != nil {
		return containertypes.CreateResponse{}, err
	}
	defer func() {
		if !ok {
			undoMounts()
		}
		release()
	}()

	dir := s.st.Containers.Dir(id)
	c := &container.Container{
		MountPoints:    mountPoints,
		ID:             id,
		Name:           name,
		Created:        time.Now().UTC(),
		Path:           path,
		Args:           args,
		Config:         &cfg,
		HostConfig:     &hc,
		ImageID:        img.ID,
		Driver:         s.st.Snapshots.Name(),
		Runtime:        rt.Name,
		State:          container.State{Status: container.StatusCreated},
		HostnamePath:   filepath.Join(dir, "hostname"),
		HostsPath:      filepath.Join(dir, "hosts"),
		ResolvConfPath: filepath.Join(dir, "resolv.conf"),
		Ephemeral:      req.Ephemeral,
	}
	c.NetworkSettings = netSettings
	if logDriver(&hc) == "json-file" {
		c.LogPath = filepath.Join(dir, id+"-json.log")
	}
	if err := os.MkdirAll(dir, 0o710); err != nil {
		return containertypes.CreateResponse{}, fmt.Errorf("create container dir: %w", err)
	}
	if err := writeEtcFiles(c); err != nil {
		return containertypes.CreateResponse{}, err
	}
	// The record is written last: a crash before this point leaves only
	// leftovers that start-up removes, never a record without its layer.
	if err := s.st.Containers.Save(c); err != nil {
		return containertypes.CreateResponse{}, err
	}
	s.mu.Lock()
	s.entries[id] = newEntry(c)
	s.mu.Unlock()
	ok = true
	s.emitContainer(c, eventtypes.ActionCreate, nil)
	if warnings == nil {
		warnings = []string{}
	}
	s.log.Debug("container created", "id", id, "name", name, "image", img.ID)
	return containertypes.CreateResponse{ID: id, Warnings: warnings}, nil
}

// newID returns a fresh container ID whose shim-socket prefix is unique.
func (s *ContainerService) newID() string {
	for {
		id := stringid.Generate()
		if !s.index.ShortIDTaken(id, shimSocketIDLen) {
			return id
		}
	}
}

// commandOf is the process the container runs: entrypoint then cmd.
func commandOf(cfg *containertypes.Config) (string, []string, error) {
	argv := append(append([]string{}, cfg.Entrypoint...), cfg.Cmd...)
	if len(argv) == 0 {
		return "", nil, errdefs.ErrInvalidArgument.WithMessage("no command specified")
	}
	return argv[0], argv[1:], nil
}

// stopStrayShims kills the containers of shims that no running container
// owns (a start or remove cut short by a crash, whose record has gone or
// never said running): nothing would ever stop them. Each shim then deletes
// its container from the runtime and exits, as after any exit.
func (s *ContainerService) stopStrayShims(ctx context.Context) {
	ownedSocks, ownedIDs := map[string]bool{}, map[string]bool{}
	for _, e := range s.all() {
		if c := e.snapshot(); c.State.Running() {
			ownedSocks[s.cfg.shimSocket(c.ID)] = true
			ownedIDs[c.ID] = true
		}
	}
	socks, _ := filepath.Glob(filepath.Join(s.cfg.ExecRoot, "shims", "*.sock"))
	for _, sock := range socks {
		if ownedSocks[sock] {
			continue
		}
		client := shim.Dial(sock)
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if st, err := client.State(sctx); err == nil && st.Status != "stopped" {
			s.log.Warn("killing a container no record owns", "shim", sock, "pid", st.Pid)
			if err := client.Kill(sctx, syscall.SIGKILL, true); err != nil && st.Pid > 0 {
				// The runtime could not (its bundle may be gone): the
				// container's init is the shim's child, kill it directly.
				_ = syscall.Kill(st.Pid, syscall.SIGKILL)
			}
			_, _ = client.Wait(sctx)
		}
		cancel()
		_ = os.Remove(sock)
	}
	// Containers the runtimes still hold without a shim (it died mid-start)
	// and without a running record: delete them, processes and cgroups.
	states, _ := filepath.Glob(filepath.Join(s.cfg.ExecRoot, "runtime", "*", "*"))
	for _, dir := range states {
		id, name := filepath.Base(dir), filepath.Base(filepath.Dir(dir))
		if ownedIDs[id] {
			continue
		}
		s.log.Warn("deleting a runtime container no record owns", "runtime", name, "id", id)
		s.forceDelete(ctx, name, id)
	}
}

// removeLeftovers deletes what a crashed create or remove left of a container
// whose record is gone. It never touches anything else.
func (s *ContainerService) removeLeftovers(ctx context.Context, id string) {
	bundle := s.cfg.bundleDir(id)
	if err := unmountRootfs(bundle); err != nil {
		s.log.Warn("unmount leftover rootfs", "id", id, "err", err)
	}
	_ = os.RemoveAll(bundle)
	if err := s.st.Snapshots.Remove(ctx, id); err != nil && !errdefs.IsNotFound(err) {
		s.log.Warn("remove leftover snapshot", "id", id, "err", err)
	}
	if err := s.st.Containers.Delete(id); err != nil {
		s.log.Warn("remove leftover container dir", "id", id, "err", err)
	}
}

// ImageUsers lists the containers created from an image, split by whether
// they are running; the image service refuses to delete images in use.
func (s *ContainerService) ImageUsers(id digest.Digest) (running, stopped []string) {
	for _, e := range s.all() {
		c := e.snapshot()
		if c.ImageID != id {
			continue
		}
		if c.State.Running() {
			running = append(running, c.ID)
		} else {
			stopped = append(stopped, c.ID)
		}
	}
	return running, stopped
}

// Counts returns how many containers exist in each state (for info).
func (s *ContainerService) Counts() (total, running, paused, stopped int) {
	for _, e := range s.all() {
		total++
		switch e.status() {
		case container.StatusRunning, container.StatusRestarting:
			running++
		case container.StatusPaused:
			paused++
		default:
			stopped++
		}
	}
	return
}

// errNotRunning is docker's conflict for operations that need a process.
func errNotRunning(id string) error {
	return errdefs.ErrConflict.WithMessage(fmt.Sprintf("container %s is not running", id))
}

var errShimGone = errors.New("the container's monitor (berth-shim) is gone")
