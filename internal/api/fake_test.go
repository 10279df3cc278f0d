package api

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/system"
)

// The HTTP layer is pure logic, so these tests drive it over small
// in-memory backends. A fake container runs a "program" chosen by its
// command:
//
//	["exit", N, lines...]  writes lines to stdout (lines starting with
//	                       "err:" to stderr) to attached clients, exits N
//	["cat"]                copies attached stdin to stdout until EOF, exits 0
//	["sleep"]              runs until stopped or killed

type fakeContainer struct {
	id, name  string
	cfg       *container.Config
	hc        *container.HostConfig
	running   bool
	exitCode  int
	created   time.Time
	attachers []*fakeAttacher
	exitWait  []chan int // next-exit / not-running waiters
	rmWait    []chan int // removed waiters
	logs      []LogMessage
}

type fakeAttacher struct {
	stdin  io.ReadCloser
	stdout io.Writer
	stderr io.Writer
	done   chan struct{}
	once   sync.Once
}

func (a *fakeAttacher) finish() { a.once.Do(func() { close(a.done) }) }

type fakeContainers struct {
	mu     sync.Mutex
	seq    int
	byID   map[string]*fakeContainer
	events []string // "create", "attach", "wait", "start", … in call order

	lastCreate ContainerCreateRequest
	lastList   ListOptions
	lastStop   StopOptions
	lastLogs   LogsOptions
	lastKill   string
	lastRemove RemoveOptions
	lastResize [2]uint
	lastPrune  Filters
	panicIn    string // method that panics, for the recovery test
}

func newFakeContainers() *fakeContainers {
	return &fakeContainers{byID: map[string]*fakeContainer{}}
}

func (f *fakeContainers) event(e string) {
	f.events = append(f.events, e)
}

// Events returns the calls seen so far.
func (f *fakeContainers) Events() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

func (f *fakeContainers) get(idOrName string) (*fakeContainer, error) {
	for _, c := range f.byID {
		if c.id == idOrName || c.name == idOrName || (len(idOrName) >= 3 && strings.HasPrefix(c.id, idOrName)) {
			return c, nil
		}
	}
	return nil, errdefs.ErrNotFound.WithMessage("No such container: " + idOrName)
}

func (f *fakeContainers) Create(ctx context.Context, req ContainerCreateRequest) (container.CreateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.event("create")
	f.lastCreate = req
	if f.panicIn == "Create" {
		panic("fake backend exploded")
	}
	if req.Config.Image == "" {
		return container.CreateResponse{}, errdefs.ErrInvalidArgument.WithMessage("no image specified")
	}
	if req.Config.Image == "missing" {
		return container.CreateResponse{}, errdefs.ErrNotFound.WithMessage("No such image: missing:latest")
	}
	f.seq++
	sum := sha256.Sum256([]byte(strconv.Itoa(f.seq)))
	id := hex.EncodeToString(sum[:])
	name := req.Name
	if name == "" {
		name = "fake_" + strconv.Itoa(f.seq)
	}
	for _, c := range f.byID {
		if c.name == name {
			return container.CreateResponse{}, errdefs.ErrConflict.WithMessage(fmt.Sprintf("Conflict. The container name %q is already in use", "/"+name))
		}
	}
	f.byID[id] = &fakeContainer{id: id, name: name, cfg: req.Config, hc: req.HostConfig, created: time.Unix(1700000000+int64(f.seq), 0)}
	return container.CreateResponse{ID: id}, nil
}

func (f *fakeContainers) Start(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.event("start")
	c, err := f.get(id)
	if err != nil {
		return err
	}
	if c.running {
		return errdefs.ErrNotModified.WithMessage("container already started")
	}
	c.running = true
	cmd := c.cfg.Cmd
	if len(cmd) == 0 {
		cmd = []string{"exit", "0"}
	}
	switch cmd[0] {
	case "exit":
		code, _ := strconv.Atoi(cmd[1])
		for _, a := range c.attachers {
			for _, l := range cmd[2:] {
				if s, ok := strings.CutPrefix(l, "err:"); ok {
					_, _ = io.WriteString(a.stderr, s+"\n")
				} else {
					_, _ = io.WriteString(a.stdout, l+"\n")
				}
			}
		}
		f.exitLocked(c, code)
	case "cat":
		atts := slices.Clone(c.attachers)
		go func() {
			for _, a := range atts {
				if a.stdin != nil {
					_, _ = io.Copy(a.stdout, a.stdin)
				}
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			f.exitLocked(c, 0)
		}()
	}
	return nil
}

// exitLocked ends the container's run: attach streams end, waiters get
// the code, --rm containers go away.
func (f *fakeContainers) exitLocked(c *fakeContainer, code int) {
	c.running, c.exitCode = false, code
	for _, a := range c.attachers {
		a.finish()
	}
	c.attachers = nil
	for _, w := range c.exitWait {
		w <- code
	}
	c.exitWait = nil
	if c.hc != nil && c.hc.AutoRemove {
		f.removeLocked(c)
	}
}

func (f *fakeContainers) removeLocked(c *fakeContainer) {
	delete(f.byID, c.id)
	for _, w := range c.rmWait {
		w <- c.exitCode
	}
	c.rmWait = nil
}

func (f *fakeContainers) Stop(ctx context.Context, id string, opts StopOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.event("stop")
	f.lastStop = opts
	c, err := f.get(id)
	if err != nil {
		return err
	}
	if !c.running {
		return errdefs.ErrNotModified.WithMessage("container is already stopped")
	}
	f.exitLocked(c, 143)
	return nil
}

func (f *fakeContainers) Restart(ctx context.Context, id string, opts StopOptions) error {
	f.mu.Lock()
	f.lastStop = opts
	c, err := f.get(id)
	if err == nil && c.running {
		f.exitLocked(c, 143)
	}
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.Start(ctx, id)
}

func (f *fakeContainers) Kill(ctx context.Context, id, signal string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastKill = signal
	c, err := f.get(id)
	if err != nil {
		return err
	}
	if !c.running {
		return errdefs.ErrConflict.WithMessage("container " + c.id + " is not running")
	}
	f.exitLocked(c, 137)
	return nil
}

func (f *fakeContainers) Remove(ctx context.Context, id string, opts RemoveOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastRemove = opts
	c, err := f.get(id)
	if err != nil {
		return err
	}
	if c.running && !opts.Force {
		return errdefs.ErrConflict.WithMessage("cannot remove container " + c.name + ": container is running: stop the container before removing or force remove")
	}
	if c.running {
		f.exitLocked(c, 137)
	}
	f.removeLocked(c)
	return nil
}

func (f *fakeContainers) Wait(ctx context.Context, id string, cond container.WaitCondition) (<-chan container.WaitResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.event("wait:" + string(cond))
	c, err := f.get(id)
	if err != nil {
		return nil, err
	}
	out := make(chan container.WaitResponse, 1)
	if cond == container.WaitConditionNotRunning && !c.running {
		out <- container.WaitResponse{StatusCode: int64(c.exitCode)}
		close(out)
		return out, nil
	}
	ch := make(chan int, 1)
	if cond == container.WaitConditionRemoved {
		c.rmWait = append(c.rmWait, ch)
	} else {
		c.exitWait = append(c.exitWait, ch)
	}
	go func() {
		defer close(out)
		select {
		case code := <-ch:
			out <- container.WaitResponse{StatusCode: int64(code)}
		case <-ctx.Done():
		}
	}()
	return out, nil
}

func (f *fakeContainers) Inspect(ctx context.Context, id string, size bool) (*container.InspectResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err != nil {
		return nil, err
	}
	status := container.StateExited
	if c.running {
		status = container.StateRunning
	}
	resp := &container.InspectResponse{
		ID:         c.id,
		Name:       "/" + c.name,
		Created:    c.created.UTC().Format(time.RFC3339Nano),
		State:      &container.State{Status: status, Running: c.running, ExitCode: c.exitCode},
		Config:     c.cfg,
		HostConfig: c.hc,
		Image:      "sha256:" + strings.Repeat("ab", 32),
	}
	if size {
		sz := int64(4096)
		resp.SizeRw = &sz
	}
	return resp, nil
}

func (f *fakeContainers) List(ctx context.Context, opts ListOptions) ([]container.Summary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastList = opts
	var out []container.Summary
	for _, c := range f.byID {
		state := container.StateExited
		status := "Exited (" + strconv.Itoa(c.exitCode) + ") 1 second ago"
		if c.running {
			state, status = container.StateRunning, "Up 1 second"
		}
		if !opts.All && !c.running {
			continue
		}
		if want, ok := opts.Filters["status"]; ok && !slices.Contains(want, string(state)) {
			continue
		}
		if want, ok := opts.Filters["name"]; ok && !slices.Contains(want, c.name) {
			continue
		}
		out = append(out, container.Summary{
			ID: c.id, Names: []string{"/" + c.name}, Image: c.cfg.Image,
			Command: strings.Join(c.cfg.Cmd, " "), Created: c.created.Unix(), State: state, Status: status,
		})
	}
	slices.SortFunc(out, func(a, b container.Summary) int { return strings.Compare(a.Names[0], b.Names[0]) })
	if opts.Limit > 0 && len(out) > opts.Limit {
		out = out[:opts.Limit]
	}
	return out, nil
}

func (f *fakeContainers) Rename(ctx context.Context, id, newName string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err != nil {
		return err
	}
	c.name = newName
	return nil
}

func (f *fakeContainers) Prune(ctx context.Context, filters Filters) (container.PruneReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastPrune = filters
	var rep container.PruneReport
	for _, c := range f.byID {
		if !c.running {
			rep.ContainersDeleted = append(rep.ContainersDeleted, c.id)
			f.removeLocked(c)
		}
	}
	return rep, nil
}

func (f *fakeContainers) Logs(ctx context.Context, id string, opts LogsOptions) (<-chan LogMessage, LogsInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastLogs = opts
	if f.panicIn == "Logs" {
		panic("logs exploded")
	}
	c, err := f.get(id)
	if err != nil {
		return nil, LogsInfo{}, err
	}
	msgs := slices.Clone(c.logs)
	if opts.Tail >= 0 && opts.Tail < len(msgs) {
		msgs = msgs[len(msgs)-opts.Tail:]
	}
	out := make(chan LogMessage)
	go func() {
		defer close(out)
		for _, m := range msgs {
			select {
			case out <- m:
			case <-ctx.Done():
				return
			}
		}
		if opts.Follow {
			<-ctx.Done()
		}
	}()
	return out, LogsInfo{TTY: c.cfg.Tty}, nil
}

func (f *fakeContainers) Attach(ctx context.Context, id string, opts AttachOptions) error {
	f.mu.Lock()
	f.event("attach")
	c, err := f.get(id)
	if err != nil {
		f.mu.Unlock()
		return err
	}
	if !c.running && c.exitCode != 0 && opts.Stream {
		f.mu.Unlock()
		return errdefs.ErrConflict.WithMessage("You cannot attach to a stopped container, start it first")
	}
	tty := c.cfg.Tty
	// The lock is held until the attacher is registered, as the engine
	// connects an attach before it answers: the client starts the
	// container as soon as the hijack answers, and output written before
	// the registration would be lost (the CLI then waits forever).
	stdin, out, err := opts.Hijack(!tty)
	if err != nil {
		f.mu.Unlock()
		return err
	}
	if stdin != nil {
		defer stdin.Close()
	}
	a := &fakeAttacher{stdin: stdin, stdout: out, stderr: out, done: make(chan struct{})}
	if !tty {
		a.stdout, a.stderr = NewStdWriter(out, stdcopy.Stdout), NewStdWriter(out, stdcopy.Stderr)
	}
	if opts.Logs {
		for _, m := range c.logs {
			w := a.stdout
			if m.Stream == "stderr" {
				w = a.stderr
			}
			if _, err := w.Write(m.Line); err != nil {
				f.mu.Unlock()
				return err
			}
		}
	}
	if !opts.Stream {
		f.mu.Unlock()
		return nil
	}
	c.attachers = append(c.attachers, a)
	f.mu.Unlock()
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		f.mu.Lock()
		defer f.mu.Unlock()
		f.event("attach-cancelled")
		c.attachers = slices.DeleteFunc(c.attachers, func(x *fakeAttacher) bool { return x == a })
		return ctx.Err()
	}
}

func (f *fakeContainers) Resize(ctx context.Context, id string, height, width uint) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.get(id); err != nil {
		return err
	}
	f.lastResize = [2]uint{height, width}
	return nil
}

// fakeImages keeps images as name → ID and ID → content.
type fakeImages struct {
	mu         sync.Mutex
	tags       map[string]string // "repo:tag" → ID
	ids        map[string][]byte // ID → content
	lastImport ImportOptions
	lastPull   PullOptions
	lastList   ImageListOptions
	lastLoad   bool
	lastRemove [2]bool
}

func newFakeImages() *fakeImages {
	return &fakeImages{tags: map[string]string{}, ids: map[string][]byte{}}
}

func (f *fakeImages) add(name string, content []byte) string {
	sum := sha256.Sum256(content)
	id := "sha256:" + hex.EncodeToString(sum[:])
	f.ids[id] = content
	if name != "" {
		f.tags[name] = id
	}
	return id
}

func (f *fakeImages) resolve(name string) (string, error) {
	if id, ok := f.tags[name]; ok {
		return id, nil
	}
	if id, ok := f.tags[name+":latest"]; ok {
		return id, nil
	}
	for id := range f.ids {
		if id == name || strings.TrimPrefix(id, "sha256:") == name || (len(name) >= 6 && strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), name)) {
			return id, nil
		}
	}
	return "", errdefs.ErrNotFound.WithMessage("No such image: " + name)
}

func (f *fakeImages) Import(ctx context.Context, src io.Reader, opts ImportOptions) (string, error) {
	content, err := io.ReadAll(src)
	if err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastImport = opts
	if len(content) == 0 {
		return "", errdefs.ErrInvalidArgument.WithMessage("empty rootfs tarball")
	}
	name := ""
	if opts.Repo != "" {
		tag := opts.Tag
		last := opts.Repo[strings.LastIndex(opts.Repo, "/")+1:]
		switch {
		case tag == "" && strings.Contains(last, ":"):
			name = opts.Repo // "repo:tag" in one parameter
		case tag == "":
			name = opts.Repo + ":latest"
		default:
			name = opts.Repo + ":" + tag
		}
	}
	return f.add(name, content), nil
}

func (f *fakeImages) Pull(ctx context.Context, ref string, opts PullOptions, progress io.Writer) error {
	f.mu.Lock()
	f.lastPull = opts
	f.mu.Unlock()
	switch ref = strings.TrimPrefix(ref, "docker.io/library/"); ref {
	case "denied":
		return errdefs.ErrPermissionDenied.WithMessage("pull access denied for denied")
	case "midfail":
		_ = json.NewEncoder(progress).Encode(map[string]string{"status": "Pulling from library/midfail"})
		return errors.New("connection reset while downloading layer")
	}
	enc := json.NewEncoder(progress)
	_ = enc.Encode(map[string]string{"status": "Pulling from library/" + ref, "id": opts.Tag})
	f.mu.Lock()
	f.add(ref+":"+opts.Tag, []byte("pulled "+ref))
	f.mu.Unlock()
	return enc.Encode(map[string]string{"status": "Status: Downloaded newer image for " + ref + ":" + opts.Tag})
}

func (f *fakeImages) Load(ctx context.Context, src io.Reader, quiet bool, progress io.Writer) error {
	f.mu.Lock()
	f.lastLoad = quiet
	f.mu.Unlock()
	tr := tar.NewReader(src)
	var loaded []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return errdefs.ErrInvalidArgument.WithMessage("invalid docker-save tarball: " + err.Error())
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		f.mu.Lock()
		f.add(h.Name, content)
		f.mu.Unlock()
		loaded = append(loaded, h.Name)
	}
	if len(loaded) == 0 {
		return errdefs.ErrInvalidArgument.WithMessage("no images found in the tarball")
	}
	for _, n := range loaded {
		if err := json.NewEncoder(progress).Encode(map[string]string{"stream": "Loaded image: " + n + "\n"}); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeImages) Save(ctx context.Context, names []string, w io.Writer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(names) == 0 {
		return errdefs.ErrInvalidArgument.WithMessage("no image names given")
	}
	var ids []string
	for _, n := range names {
		id, err := f.resolve(n)
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	tw := tar.NewWriter(w)
	for i, id := range ids {
		content := f.ids[id]
		if err := tw.WriteHeader(&tar.Header{Name: names[i], Mode: 0o644, Size: int64(len(content))}); err != nil {
			return err
		}
		if _, err := tw.Write(content); err != nil {
			return err
		}
	}
	return tw.Close()
}

func (f *fakeImages) tagsOf(id string) []string {
	var tags []string
	for n, i := range f.tags {
		if i == id {
			tags = append(tags, n)
		}
	}
	slices.Sort(tags)
	return tags
}

func (f *fakeImages) List(ctx context.Context, opts ImageListOptions) ([]image.Summary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastList = opts
	var out []image.Summary
	for id, content := range f.ids {
		tags := f.tagsOf(id)
		if want, ok := opts.Filters["reference"]; ok && !slices.ContainsFunc(tags, func(t string) bool { return slices.Contains(want, t) }) {
			continue
		}
		out = append(out, image.Summary{ID: id, RepoTags: tags, Size: int64(len(content)), Created: 1700000000, Containers: 2})
	}
	slices.SortFunc(out, func(a, b image.Summary) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (f *fakeImages) Inspect(ctx context.Context, name string) (*image.InspectResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, err := f.resolve(name)
	if err != nil {
		return nil, err
	}
	return &image.InspectResponse{ID: id, RepoTags: f.tagsOf(id), Size: int64(len(f.ids[id])), Os: "linux", Architecture: "amd64"}, nil
}

func (f *fakeImages) History(ctx context.Context, name string) ([]image.HistoryResponseItem, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, err := f.resolve(name)
	if err != nil {
		return nil, err
	}
	return []image.HistoryResponseItem{{ID: id, CreatedBy: "berth import", Tags: f.tagsOf(id), Size: int64(len(f.ids[id]))}}, nil
}

func (f *fakeImages) Tag(ctx context.Context, source, repo, tag string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, err := f.resolve(source)
	if err != nil {
		return err
	}
	if tag == "" {
		tag = "latest"
	}
	f.tags[repo+":"+tag] = id
	return nil
}

func (f *fakeImages) Remove(ctx context.Context, name string, force, noPrune bool) ([]image.DeleteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastRemove = [2]bool{force, noPrune}
	id, err := f.resolve(name)
	if err != nil {
		return nil, err
	}
	var out []image.DeleteResponse
	if _, ok := f.tags[name]; ok {
		delete(f.tags, name)
		out = append(out, image.DeleteResponse{Untagged: name})
		if len(f.tagsOf(id)) > 0 {
			return out, nil
		}
	} else if tags := f.tagsOf(id); len(tags) > 1 && !force {
		return nil, errdefs.ErrConflict.WithMessage("conflict: unable to delete " + name + " (must be forced) - image is referenced in multiple repositories")
	}
	for _, t := range f.tagsOf(id) {
		delete(f.tags, t)
		out = append(out, image.DeleteResponse{Untagged: t})
	}
	delete(f.ids, id)
	return append(out, image.DeleteResponse{Deleted: id}), nil
}

func (f *fakeImages) Prune(ctx context.Context, filters Filters) (image.PruneReport, error) {
	return image.PruneReport{SpaceReclaimed: 42}, nil
}

type fakeSystem struct{}

func (fakeSystem) Info(ctx context.Context) (*system.Info, error) {
	return &system.Info{ID: "FAKE:ID", Name: "fakehost", ServerVersion: "0.0.0-test", OSType: "linux", Architecture: "x86_64", Driver: "overlay2", NCPU: 2}, nil
}

func (fakeSystem) Version(ctx context.Context) system.VersionResponse {
	return system.VersionResponse{
		Platform:      system.PlatformInfo{Name: "berth test engine"},
		Version:       "0.0.0-test",
		APIVersion:    APIVersion,
		MinAPIVersion: MinAPIVersion,
		Os:            "linux",
		Arch:          "amd64",
		GoVersion:     "go1.26.8",
		KernelVersion: "6.18",
		GitCommit:     "fake",
		Components:    []system.ComponentVersion{{Name: "Engine", Version: "0.0.0-test", Details: map[string]string{"ApiVersion": APIVersion, "MinAPIVersion": MinAPIVersion, "Os": "linux", "Arch": "amd64"}}},
	}
}

type fakes struct {
	c *fakeContainers
	i *fakeImages
}

func newFakes() (fakes, Backends) {
	f := fakes{c: newFakeContainers(), i: newFakeImages()}
	return f, Backends{Containers: f.c, Images: f.i, System: fakeSystem{}}
}
