package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/berth-engine/berth/internal/image/archive"
	"io"
	"log/slog"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/image"
	"github.com/containerd/errdefs"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// proxyArgs are the build args docker accepts without an ARG.
var proxyArgs = map[string]bool{
	"HTTP_PROXY": true, "http_proxy": true, "HTTPS_PROXY": true, "https_proxy": true,
	"FTP_PROXY": true, "ftp_proxy": true, "NO_PROXY": true, "no_proxy": true,
	"ALL_PROXY": true, "all_proxy": true,
}

// run is one build in progress.
type run struct {
	b      *Builder
	opts   api.BuildOptions
	out    io.Writer
	ctx    *buildContext
	escape rune // the Dockerfile's escape character, for newLex
	stages []instructions.Stage
	meta   map[string]*string  // ARGs before the first FROM
	used   map[string]bool     // build args consumed (under mu)
	built  map[int]*stageState // finished stages (under mu)
	mu     *sync.Mutex         // shared by the per-stage copies of a run
	step   int
	total  int
}

func (r *run) markUsed(k string) {
	r.mu.Lock()
	r.used[k] = true
	r.mu.Unlock()
}

func (r *run) stage(i int) *stageState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.built[i]
}

// deps lists the earlier stages stage i needs (its base and COPY --from).
func (r *run) deps(i int) []int {
	var out []int
	add := func(name string) {
		if j, ok := r.stageByName(name, i); ok {
			out = append(out, j)
		}
	}
	if base, err := r.expandMeta(r.stages[i].BaseName); err == nil {
		add(base)
	}
	for _, c := range r.stages[i].Commands {
		if cp, ok := c.(*instructions.CopyCommand); ok && cp.From != "" {
			if from, err := r.expandMeta(cp.From); err == nil {
				add(from)
			}
		}
	}
	return out
}

// buildStages builds the needed stages, each as soon as the stages it
// depends on are done, so independent stages run in parallel. Each stage
// writes into its own buffer and the buffers are streamed out in stage
// order, so the output reads as docker's sequential one; step numbers are
// fixed up front. The first failure cancels the other stages.
func (r *run) buildStages(ctx context.Context, needed []int) error {
	base := map[int]int{}
	total := 0
	for _, i := range needed {
		base[i] = total
		total += 1 + len(r.stages[i].Commands)
	}
	g, gctx := errgroup.WithContext(ctx)
	done := map[int]chan struct{}{}
	outs := map[int]*stageOutput{}
	for _, i := range needed {
		done[i] = make(chan struct{})
		outs[i] = newStageOutput()
	}
	for _, i := range needed {
		sr := *r
		sr.out, sr.step, sr.total = outs[i], base[i], total
		g.Go(func() (err error) {
			// A stage stopped because another failed is not the failure
			// to show: the output goes on to the one that failed.
			defer func() {
				outs[i].close(err != nil && !errors.Is(err, errCancelled) && !errors.Is(err, context.Canceled))
			}()
			defer recoverInto(sr.b.log, fmt.Sprintf("build stage %d", i), &err)
			for _, j := range sr.deps(i) {
				select {
				case <-done[j]:
				case <-gctx.Done():
					return errCancelled
				}
			}
			if err := sr.buildStage(gctx, i); err != nil {
				return err
			}
			close(done[i])
			return nil
		})
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for _, i := range needed {
			if failed := outs[i].copyTo(r.out); failed {
				return
			}
		}
	}()
	err := g.Wait()
	<-drained
	return err
}

// stageOutput is an unbounded buffer a stage writes its output into while
// another goroutine streams it out.
type stageOutput struct {
	mu     sync.Mutex
	cond   *sync.Cond
	buf    bytes.Buffer
	closed bool
	failed bool
}

func newStageOutput() *stageOutput {
	o := &stageOutput{}
	o.cond = sync.NewCond(&o.mu)
	return o
}

func (o *stageOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	o.cond.Broadcast()
	return len(p), nil
}

func (o *stageOutput) close(failed bool) {
	o.mu.Lock()
	o.closed, o.failed = true, failed
	o.cond.Broadcast()
	o.mu.Unlock()
}

// copyTo streams everything written until close to w and reports whether
// the stage failed.
func (o *stageOutput) copyTo(w io.Writer) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for {
		if o.buf.Len() > 0 {
			b := append([]byte(nil), o.buf.Bytes()...)
			o.buf.Reset()
			o.mu.Unlock()
			_, _ = w.Write(b)
			o.mu.Lock()
			continue
		}
		if o.closed {
			return o.failed
		}
		o.cond.Wait()
	}
}

// stageState is a stage being built: the image so far and its args.
type stageState struct {
	id       digest.Digest // "" until something is committed (FROM scratch)
	img      *image.Image
	cfg      dockerspec.DockerOCIImage
	args     map[string]*string // ARGs declared in this stage, in effect
	argOrder []string
	cmdSet   bool // a CMD was given in this stage (ENTRYPOINT then keeps it)
	// next is the instruction after the one being dispatched (nil: none,
	// or an ONBUILD trigger runs), rest all those after it; prefetches
	// are COPYs started early (see prefetch.go).
	next          instructions.Command
	rest          []instructions.Command
	prefetches    map[*instructions.CopyCommand]*copyPrefetch
	staticStarted bool
	pctx          context.Context    // the prefetches' context
	stopPrefetch  context.CancelFunc // stops them (set with the first)
	// queue holds the stage's image records being written (see commit).
	queue *commitQueue
}

func (r *run) metaArgs(args []instructions.ArgCommand) error {
	r.meta = map[string]*string{}
	for _, a := range args {
		for _, kv := range a.Args {
			var v *string
			if kv.Value != nil {
				s, _, err := r.newLex().ProcessWord(*kv.Value, r.metaEnv())
				if err != nil {
					return errdefs.ErrInvalidArgument.WithMessage(err.Error())
				}
				v = &s
			}
			if bv, ok := r.opts.BuildArgs[kv.Key]; ok && bv != nil {
				v = bv
				r.markUsed(kv.Key)
			}
			r.meta[kv.Key] = v
		}
	}
	return nil
}

func (r *run) metaEnv() shell.EnvGetter {
	var env []string
	for k, v := range r.meta {
		if v != nil {
			env = append(env, k+"="+*v)
		}
	}
	return shell.EnvsFromSlice(env)
}

// newLex returns a word expander. shell.Lex keeps state while it works,
// and stages build in parallel, so each expansion gets its own.
func (r *run) newLex() *shell.Lex { return shell.NewLex(r.escape) }

func (r *run) expandMeta(s string) (string, error) {
	out, _, err := r.newLex().ProcessWord(s, r.metaEnv())
	if err != nil {
		return "", errdefs.ErrInvalidArgument.WithMessage(err.Error())
	}
	return out, nil
}

func (r *run) printStep(text string) {
	r.step++
	fmt.Fprintf(r.out, "Step %d/%d : %s\n", r.step, r.total, text)
}

// buildStage runs stage i; the stages it depends on are built already.
func (r *run) buildStage(ctx context.Context, i int) error {
	s := r.stages[i]
	r.printStep(s.SourceCode)
	st, err := r.from(ctx, i)
	if err != nil {
		return fmt.Errorf("%w (Dockerfile line %d: FROM)", err, fromLine(s))
	}
	st.queue = &commitQueue{}
	// Whatever happens, the records of the steps done are written (the
	// cache of the next build) before the stage returns.
	defer func() { _ = st.flush() }()
	if st.id != "" {
		fmt.Fprintf(r.out, " ---> %s\n", shortID(st.id))
	}
	defer func() {
		// Left only when the stage stops early: they are not needed.
		if st.stopPrefetch != nil {
			st.stopPrefetch()
		}
		for c, p := range st.prefetches {
			delete(st.prefetches, c)
			p.discard()
		}
	}()
	// ONBUILD triggers of the base image run first.
	for _, trig := range st.cfg.Config.OnBuild {
		fmt.Fprintf(r.out, "# Executing 1 build trigger\n")
		cmd, err := parseOne(trig)
		if err != nil {
			return err
		}
		if err := r.dispatch(ctx, i, st, cmd); err != nil {
			return lineErr(cmd, err)
		}
	}
	if len(st.cfg.Config.OnBuild) > 0 {
		st.cfg.Config.OnBuild = nil
	}
	for n, cmd := range s.Commands {
		if ctx.Err() != nil {
			return errCancelled
		}
		st.next, st.rest = nil, s.Commands[n+1:]
		if n+1 < len(s.Commands) {
			st.next = s.Commands[n+1]
		}
		r.printStep(cmd.(fmt.Stringer).String())
		t0 := time.Now()
		if err := r.dispatch(ctx, i, st, cmd); err != nil {
			return lineErr(cmd, err)
		}
		if r.b.log != nil {
			r.b.log.Debug("build step", "stage", i, "instruction", cmd.Name(), "duration", time.Since(t0))
		}
	}
	if st.id == "" {
		// A stage other stages read from (COPY --from) needs an image even
		// when it is an empty scratch.
		if err := r.commit(ctx, st, "", "/bin/sh -c #(nop)  FROM scratch", nil, ""); err != nil {
			return err
		}
	}
	if err := st.flush(); err != nil {
		return err
	}
	r.mu.Lock()
	r.built[i] = st
	r.mu.Unlock()
	return nil
}

func fromLine(s instructions.Stage) int {
	if len(s.Location) > 0 {
		return s.Location[0].Start.Line
	}
	return 0
}

// from resolves a stage's base: scratch, an earlier stage, or an image
// (pulled if missing, or always with --pull).
func (r *run) from(ctx context.Context, i int) (*stageState, error) {
	s := r.stages[i]
	base, err := r.expandMeta(s.BaseName)
	if err != nil {
		return nil, err
	}
	st := &stageState{args: map[string]*string{}}
	if j, ok := r.stageByName(base, i); ok {
		prev := r.stage(j)
		st.id, st.img = prev.id, prev.img
		st.cfg = cloneImageConfig(prev.cfg)
		return st, nil
	}
	if strings.EqualFold(base, "scratch") {
		now := time.Now().UTC()
		st.cfg = dockerspec.DockerOCIImage{Image: ocispec.Image{
			Created:  &now,
			Platform: ocispec.Platform{OS: "linux", Architecture: hostArch()},
			RootFS:   ocispec.RootFS{Type: "layers"},
		}}
		return st, nil
	}
	img, err := r.b.d.Images.Resolve(ctx, base)
	if (err != nil && errdefs.IsNotFound(err)) || (r.opts.Pull && !strings.HasPrefix(base, "sha256:")) {
		if perr := r.b.d.Puller.Pull(ctx, base, api.PullOptions{Platform: r.opts.Platform}, io.Discard); perr != nil {
			if err == nil {
				return nil, perr
			}
			return nil, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("pull access denied or image not found: %s: %v", base, perr))
		}
		img, err = r.b.d.Images.Resolve(ctx, base)
	}
	if err != nil {
		return nil, err
	}
	st.id, st.img = img.ID, img
	st.cfg = cloneImageConfig(img.Config)
	return st, nil
}

// env is what ${VAR} expands from in a stage: its ENV, then its ARGs.
func (st *stageState) env() shell.EnvGetter {
	env := append([]string(nil), st.cfg.Config.Env...)
	have := map[string]bool{}
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		have[k] = true
	}
	for _, k := range st.argOrder {
		if v := st.args[k]; v != nil && !have[k] {
			env = append(env, k+"="+*v)
		}
	}
	return shell.EnvsFromSlice(env)
}

// runArgs are the build args a RUN sees in its environment (those not
// overridden by ENV), sorted, and the proxy args given.
func (r *run) runArgs(st *stageState) []string {
	have := map[string]bool{}
	for _, e := range st.cfg.Config.Env {
		k, _, _ := strings.Cut(e, "=")
		have[k] = true
	}
	var out []string
	for _, k := range st.argOrder {
		if v := st.args[k]; v != nil && !have[k] {
			out = append(out, k+"="+*v)
		}
	}
	for k, v := range r.opts.BuildArgs {
		if proxyArgs[k] && v != nil && st.args[k] == nil {
			out = append(out, k+"="+*v)
			r.markUsed(k)
		}
	}
	sort.Strings(out)
	return out
}

func (r *run) warnUnusedArgs() {
	var unused []string
	for k := range r.opts.BuildArgs {
		if !r.used[k] && !proxyArgs[k] {
			unused = append(unused, k)
		}
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		fmt.Fprintf(r.out, "[Warning] One or more build-args [%s] were not consumed\n", strings.Join(unused, " "))
	}
}

// dispatch runs one instruction.
func (r *run) dispatch(ctx context.Context, stage int, st *stageState, cmd instructions.Command) error {
	if p, ok := cmd.(instructions.PlatformSpecific); ok {
		if err := p.CheckPlatform("linux"); err != nil {
			return errdefs.ErrInvalidArgument.WithMessage(err.Error())
		}
	}
	if ex, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
		env := st.env()
		if err := ex.Expand(func(word string) (string, error) {
			w, _, err := r.newLex().ProcessWord(word, env)
			return w, err
		}); err != nil {
			return errdefs.ErrInvalidArgument.WithMessage(err.Error())
		}
	}
	cfg := &st.cfg.Config
	text := cmd.(fmt.Stringer).String()
	switch c := cmd.(type) {
	case *instructions.ArgCommand:
		for _, kv := range c.Args {
			v := kv.Value
			if mv, ok := r.meta[kv.Key]; ok && v == nil {
				v = mv
			}
			if bv, ok := r.opts.BuildArgs[kv.Key]; ok && bv != nil {
				v = bv
				r.markUsed(kv.Key)
			} else if ok {
				r.markUsed(kv.Key)
			}
			if _, seen := st.args[kv.Key]; !seen {
				st.argOrder = append(st.argOrder, kv.Key)
			}
			st.args[kv.Key] = v
		}
		// ARG changes no image; its values enter the cache key of the RUNs
		// that see them.
		fmt.Fprintf(r.out, " ---> %s\n", r.currentID(st))
		return nil
	case *instructions.RunCommand:
		return r.runStep(ctx, st, c)
	case *instructions.CopyCommand:
		if p := r.takePrefetch(st, c); p != nil {
			return r.copyPrefetched(ctx, st, p)
		}
		return r.copyStep(ctx, stage, st, copySpec{
			text: text, srcs: c.SourcePaths, contents: c.SourceContents, dest: c.DestPath,
			from: c.From, chown: c.Chown, chmod: c.Chmod, name: "COPY",
		})
	case *instructions.AddCommand:
		return r.copyStep(ctx, stage, st, copySpec{
			text: text, srcs: c.SourcePaths, contents: c.SourceContents, dest: c.DestPath,
			chown: c.Chown, chmod: c.Chmod, name: "ADD", add: true,
		})
	case *instructions.ShellCommand:
		cfg.Shell = append([]string(nil), c.Shell...)
	case *instructions.MaintainerCommand:
		st.cfg.Author = c.Maintainer
	default:
		err := archive.ApplyMetadata(cfg, cmd, r.newLex(), st.env(), &st.cmdSet)
		if errors.Is(err, archive.ErrNotMetadata) {
			return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("%s is not supported by berth's builder", strings.ToUpper(cmd.Name())))
		}
		if err != nil {
			return errdefs.ErrInvalidArgument.WithMessage(err.Error())
		}
	}
	return r.commitMeta(ctx, st, text)
}

func shellOf(cfg *dockerspec.DockerOCIImageConfig) []string {
	if len(cfg.Shell) > 0 {
		return append([]string(nil), cfg.Shell...)
	}
	return []string{"/bin/sh", "-c"}
}

func (r *run) currentID(st *stageState) string {
	if st.id == "" {
		return "<scratch>"
	}
	return shortID(st.id)
}

// commitMeta records a metadata-only step as an image without a new layer.
func (r *run) commitMeta(ctx context.Context, st *stageState, text string) error {
	createdBy := "/bin/sh -c #(nop)  " + text
	key := r.cacheKey(st, "meta", text, configDigest(st.cfg.Config))
	if r.useCache(ctx, st, key) {
		return nil
	}
	return r.commit(ctx, st, key, createdBy, nil, "")
}

func configDigest(c dockerspec.DockerOCIImageConfig) string {
	b, _ := json.Marshal(c)
	return digest.FromBytes(b).String()
}

func cloneImageConfig(c dockerspec.DockerOCIImage) dockerspec.DockerOCIImage {
	b, err := json.Marshal(c)
	if err != nil {
		return c
	}
	var out dockerspec.DockerOCIImage
	if err := json.Unmarshal(b, &out); err != nil {
		return c
	}
	return out
}

// finish makes sure the target stage has an image (FROM scratch with only
// ARGs commits an empty one) and applies --label.
func (r *run) finish(ctx context.Context, st *stageState) (digest.Digest, error) {
	if len(r.opts.Labels) > 0 {
		if st.cfg.Config.Labels == nil {
			st.cfg.Config.Labels = map[string]string{}
		}
		keys := make([]string, 0, len(r.opts.Labels))
		for k, v := range r.opts.Labels {
			st.cfg.Config.Labels[k] = v
			keys = append(keys, k+"="+v)
		}
		sort.Strings(keys)
		if err := r.commitMeta(ctx, st, "LABEL "+strings.Join(keys, " ")); err != nil {
			return "", err
		}
	}
	if st.id == "" {
		if err := r.commitMeta(ctx, st, "FROM scratch"); err != nil {
			return "", err
		}
	}
	if err := st.flush(); err != nil {
		return "", err
	}
	return st.id, nil
}

// recoverInto, deferred in a build goroutine, turns a panic into *err (and
// a log line with the stack): a bug must fail the build, not take the
// daemon and every running build down with it.
func recoverInto(log *slog.Logger, what string, err *error) {
	if p := recover(); p != nil {
		if log != nil {
			log.Error("panic in "+what, "panic", p, "stack", string(debug.Stack()))
		}
		*err = fmt.Errorf("internal error in %s: %v", what, p)
	}
}
