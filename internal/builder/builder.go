// Package builder turns a Dockerfile and a build context into an image, as
// docker's classic builder does (POST /build): buildkit's parser reads the
// Dockerfile, each RUN runs in a real container through the engine's
// ContainerBackend, its filesystem changes become a layer taken from the
// container's snapshot, COPY/ADD layers are written straight from the
// context, and every step is committed as an intermediate image so that a
// persistent cache (parent image + instruction + args + source content)
// makes a rebuild nearly free.
package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/content"
	"github.com/berth-engine/berth/internal/events"
	"github.com/berth-engine/berth/internal/image"
	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	containertypes "github.com/moby/moby/api/types/container"
	eventtypes "github.com/moby/moby/api/types/events"
	"github.com/moby/sys/user"
	"github.com/opencontainers/go-digest"
)

// Containers is the part of the container service a build uses to run RUN
// steps (and to reach an image's root filesystem).
type Containers interface {
	Create(ctx context.Context, req api.ContainerCreateRequest) (containertypes.CreateResponse, error)
	Start(ctx context.Context, id string) error
	Wait(ctx context.Context, id string, cond containertypes.WaitCondition) (<-chan containertypes.WaitResponse, error)
	Remove(ctx context.Context, id string, opts api.RemoveOptions) error
	Logs(ctx context.Context, id string, opts api.LogsOptions) (<-chan api.LogMessage, api.LogsInfo, error)
}

// StepRunner runs a RUN step's process without a container record (the
// engine's ContainerService.RunBuildStep): same runtime and confinement,
// no shim. errdefs.ErrNotImplemented, returned before anything ran, means
// the step needs a container.
type StepRunner interface {
	RunBuildStep(ctx context.Context, req api.BuildStepRequest, img *image.Image) (int, error)
}

// Puller fetches an image that is not present (FROM of a missing image).
type Puller interface {
	Pull(ctx context.Context, ref string, opts api.PullOptions, progress io.Writer) error
}

// Deps are what a Builder works with.
type Deps struct {
	DataRoot   string
	Content    content.Store
	Images     image.Store
	Snapshots  snapshot.Snapshotter
	Containers Containers
	Puller     Puller
	Events     *events.Bus
	Logger     *slog.Logger
	// IDMapping is a container's --userns-remap mapping (nil, or an empty
	// mapping: none); its writable layer holds host ids that become the
	// container's in the layers built from it.
	IDMapping func(containerID string) user.IdentityMapping

	// Steps runs RUN steps directly (nil: every step is a container).
	Steps StepRunner
}

// Builder serves builds. It is safe for concurrent use.
type Builder struct {
	d     Deps
	cache *cache
	log   *slog.Logger
	mu    sync.Mutex // serialises tag moves at the end of builds
}

// New returns a Builder keeping its cache under <data-root>/builder.
func New(d Deps) (*Builder, error) {
	log := d.Logger
	if log == nil {
		log = slog.Default()
	}
	c, err := openCache(filepath.Join(d.DataRoot, "builder", "cache"))
	if err != nil {
		return nil, err
	}
	tmp := filepath.Join(d.DataRoot, "builder", "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, err
	}
	// What a crash in the middle of a build left: contexts and image
	// mounts (unmounted first, so RemoveAll never walks into a rootfs).
	if ents, err := os.ReadDir(tmp); err == nil {
		for _, e := range ents {
			p := filepath.Join(tmp, e.Name())
			if strings.HasPrefix(e.Name(), "root-") {
				if err := snapshot.UnmountAll(p); err != nil {
					log.Warn("builder: leftover mount", "path", p, "err", err)
					continue
				}
				_ = os.Remove(p)
				continue
			}
			_ = os.RemoveAll(p)
		}
	}
	// Writable snapshots of steps a crash cut short (their mounts and
	// processes are gone: the engine started first).
	if d.Snapshots != nil {
		_ = d.Snapshots.Walk(context.Background(), func(info snapshot.Info) error {
			if info.Kind == snapshot.KindActive && strings.HasPrefix(info.Name, stepSnapshotPrefix) {
				if err := d.Snapshots.Remove(context.Background(), info.Name); err != nil {
					log.Warn("builder: leftover step snapshot", "key", info.Name, "err", err)
				}
			}
			return nil
		})
	}
	return &Builder{d: d, cache: c, log: log}, nil
}

// Build reads a build context (a tar, possibly compressed, or a bare
// Dockerfile) from src, builds it and returns the image ID. Progress text
// (docker's "Step N/M : …" lines and RUN output) goes to out.
func (b *Builder) Build(ctx context.Context, src io.Reader, opts api.BuildOptions, out io.Writer) (string, error) {
	tags, err := parseTags(opts.Tags)
	if err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Join(b.d.DataRoot, "builder", "tmp"), "ctx-")
	if err != nil {
		return "", err
	}
	// The spooled context goes after the build has answered (New removes
	// what a crash leaves).
	defer func() { go os.RemoveAll(tmp) }()
	t0 := time.Now()
	bc, err := readContext(ctx, src, tmp, opts.Dockerfile)
	if err != nil {
		return "", err
	}
	defer bc.close()
	tContext := time.Since(t0)
	res, err := parser.Parse(strings.NewReader(string(bc.dockerfile)))
	if err == nil && len(res.AST.Children) == 0 || err != nil && strings.Contains(err.Error(), "file with no instructions") {
		return "", errdefs.ErrInvalidArgument.WithMessage("the Dockerfile (" + bc.name + ") cannot be empty")
	}
	if err != nil {
		return "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("dockerfile parse error %v", err))
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(out, "[WARNING]: %s\n", w.Short)
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		msg := err.Error()
		if !strings.HasPrefix(msg, "dockerfile parse error") {
			msg = "dockerfile parse error " + msg
		}
		return "", errdefs.ErrInvalidArgument.WithMessage(msg)
	}
	if len(stages) == 0 {
		return "", errdefs.ErrInvalidArgument.WithMessage("the Dockerfile (" + bc.name + ") cannot be empty")
	}
	r := &run{
		b:      b,
		opts:   opts,
		out:    out,
		ctx:    bc,
		escape: res.EscapeToken,
		stages: stages,
		used:   map[string]bool{},
		mu:     &sync.Mutex{},
		built:  map[int]*stageState{},
	}
	if err := r.metaArgs(metaArgs); err != nil {
		return "", err
	}
	target, err := r.targetIndex()
	if err != nil {
		return "", err
	}
	needed, err := r.neededStages(target)
	if err != nil {
		return "", err
	}
	if err := r.buildStages(ctx, needed); err != nil {
		return "", err
	}
	final := r.built[target]
	id, err := r.finish(ctx, final)
	if err != nil {
		return "", err
	}
	tSteps := time.Since(t0) - tContext
	r.warnUnusedArgs()
	fmt.Fprintf(out, "Successfully built %s\n", shortID(id))
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, t := range tags {
		if err := b.d.Images.AddReference(context.WithoutCancel(ctx), t, id); err != nil {
			return "", fmt.Errorf("tag %s: %w", reference.FamiliarString(t), err)
		}
		b.emit(eventtypes.ActionTag, id.String(), reference.FamiliarString(t))
		fmt.Fprintf(out, "Successfully tagged %s\n", reference.FamiliarString(t))
	}
	b.log.Debug("build done", "id", id, "context", tContext, "steps", tSteps, "total", time.Since(t0))
	return id.String(), nil
}

func (b *Builder) emit(action eventtypes.Action, id, name string) {
	if b.d.Events == nil {
		return
	}
	attrs := map[string]string{}
	if name != "" {
		attrs["name"] = name
	}
	b.d.Events.Publish(eventtypes.Message{
		Type:   eventtypes.ImageEventType,
		Action: action,
		Actor:  eventtypes.Actor{ID: id, Attributes: attrs},
	})
}

func parseTags(in []string) ([]reference.Named, error) {
	var out []reference.Named
	for _, t := range in {
		if t == "" {
			continue
		}
		ref, err := reference.ParseNormalizedNamed(t)
		if err != nil {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid reference format: %s", t))
		}
		if _, ok := ref.(reference.Digested); ok {
			return nil, errdefs.ErrInvalidArgument.WithMessage("refusing to create a tag with a digest reference")
		}
		out = append(out, reference.TagNameOnly(ref))
	}
	return out, nil
}

func shortID(id digest.Digest) string {
	h := id.Encoded()
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// lineErr prefixes a step's error with the Dockerfile line it comes from.
func lineErr(cmd instructions.Command, err error) error {
	if err == nil {
		return nil
	}
	if errdefs.IsInvalidArgument(err) || errdefs.IsNotFound(err) {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("%s (Dockerfile line %d: %s)", err.Error(), line(cmd), cmd.Name()))
	}
	return &stepError{err: err, line: line(cmd), name: cmd.Name()}
}

// stepError is a step's failure with the Dockerfile line it comes from.
type stepError struct {
	err  error
	line int
	name string
}

func (e *stepError) Error() string {
	return fmt.Sprintf("%v (Dockerfile line %d: %s)", e.err, e.line, e.name)
}

func (e *stepError) Unwrap() error { return e.err }

// ExitCode is the exit code of a failed RUN (0 for other failures).
func (e *stepError) ExitCode() int {
	var re *RunError
	if errors.As(e.err, &re) {
		return re.Code
	}
	return 0
}

func line(cmd instructions.Command) int {
	if l, ok := cmd.(interface{ Location() []parser.Range }); ok {
		if r := l.Location(); len(r) > 0 {
			return r[0].Start.Line
		}
	}
	return 0
}

// targetIndex is the stage --target names, or the last one.
func (r *run) targetIndex() (int, error) {
	if r.opts.Target == "" {
		return len(r.stages) - 1, nil
	}
	for i, s := range r.stages {
		if strings.EqualFold(s.Name, r.opts.Target) {
			return i, nil
		}
	}
	return 0, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("failed to reach build target %s in Dockerfile", r.opts.Target))
}

// stageByName finds an earlier stage by name or index.
func (r *run) stageByName(name string, before int) (int, bool) {
	for i := 0; i < before && i < len(r.stages); i++ {
		if r.stages[i].Name != "" && strings.EqualFold(r.stages[i].Name, name) {
			return i, true
		}
	}
	var n int
	if _, err := fmt.Sscanf(name, "%d", &n); err == nil && fmt.Sprint(n) == name && n >= 0 && n < before {
		return n, true
	}
	return 0, false
}

// neededStages lists, in order, the stages the target depends on.
func (r *run) neededStages(target int) ([]int, error) {
	need := map[int]bool{}
	var visit func(i int) error
	visit = func(i int) error {
		if need[i] {
			return nil
		}
		need[i] = true
		base, err := r.expandMeta(r.stages[i].BaseName)
		if err != nil {
			return err
		}
		if j, ok := r.stageByName(base, i); ok {
			if err := visit(j); err != nil {
				return err
			}
		}
		for _, c := range r.stages[i].Commands {
			if cp, ok := c.(*instructions.CopyCommand); ok && cp.From != "" {
				from, err := r.expandMeta(cp.From)
				if err != nil {
					return err
				}
				if j, ok := r.stageByName(from, i); ok {
					if err := visit(j); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}
	if err := visit(target); err != nil {
		return nil, err
	}
	var out []int
	for i := range r.stages {
		if need[i] {
			out = append(out, i)
		}
	}
	sort.Ints(out)
	return out, nil
}

var errCancelled = errors.New("build cancelled")
