package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/berth-engine/berth/internal/content"
	"github.com/berth-engine/berth/internal/image"
	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// maxPrefetch bounds the layer a prefetch holds in memory; a larger COPY
// is done at its step, as usual.
const maxPrefetch = 64 << 20

// copyPrefetch is a COPY from the context done ahead of its step: its
// layer written (not yet committed) and extracted into a staging
// directory, which the COPY step then moves into the layer's snapshot (a
// rename). The RUN after the COPY then finds its root filesystem ready
// instead of extracting the layer first. Two kinds:
//
//   - during a RUN that runs, the COPY right after it: a RUN changes no
//     configuration, so the COPY sees the same WORKDIR and variables;
//     what the RUN may change in the filesystem (a --chown name, whether
//     a destination is a directory) is not prefetched;
//   - once a stage has made a new image, its later "static" COPYs (see
//     startStaticPrefetches), one after the other.
//
// Either way the COPY's parent is an image made in this build, so its
// cache lookup always misses, and the work is only wasted if the build
// fails first.
type copyPrefetch struct {
	cmd    *instructions.CopyCommand // the instruction, as parsed
	cfg    string                    // configDigest of the config it was planned with
	env    string                    // the variables it was expanded with
	static bool                      // its layer depends on nothing of the stage
	done   chan struct{}

	// Set before done is closed.
	err        error
	spec       copySpec
	dest       string
	contentSum string
	createdBy  string
	w          content.Writer // the layer, written, not committed
	staged     *snapshot.Staged
}

var errNoPrefetch = errors.New("not prefetched")

// maxStaticPrefetches bounds the COPYs a stage prepares ahead.
const maxStaticPrefetches = 16

// startStaticPrefetches starts, once per stage and only once no later
// step can hit the cache, preparing the stage's remaining COPYs whose
// layer depends on nothing the stage does before them: sources from the
// context, an absolute destination, no variables or quoting, no --chown
// by name. They run one after the other, in Dockerfile order, while the
// steps before them run.
func (r *run) startStaticPrefetches(ctx context.Context, st *stageState) {
	if st.staticStarted || len(st.rest) == 0 || !snapshot.CanStage(r.b.d.Snapshots) {
		return
	}
	st.staticStarted = true
	var todo []*copyPrefetch
	var cmds []instructions.CopyCommand
	for _, cmd := range st.rest {
		c, ok := cmd.(*instructions.CopyCommand)
		if !ok || !r.staticCopy(c) || st.prefetches[c] != nil || len(todo) == maxStaticPrefetches {
			continue
		}
		p := &copyPrefetch{cmd: c, static: true, done: make(chan struct{})}
		if st.prefetches == nil {
			st.prefetches = map[*instructions.CopyCommand]*copyPrefetch{}
		}
		st.prefetches[c] = p
		todo = append(todo, p)
		cc := *c
		cc.SourcePaths = slices.Clone(c.SourcePaths)
		cmds = append(cmds, cc)
	}
	if len(todo) == 0 {
		return
	}
	ctx = st.prefetchContext(ctx)
	go func() {
		for i, p := range todo {
			t0 := time.Now()
			p.err = r.prefetch(ctx, p, &cmds[i], shell.EnvsFromSlice(nil), "/", true)
			if r.b.log != nil {
				r.b.log.Debug("build COPY prefetched", "took", time.Since(t0), "static", true, "err", p.err)
			}
			close(p.done)
		}
	}()
}

// prefetchContext is the context of st's prefetches, which the stage
// cancels when it ends early.
func (st *stageState) prefetchContext(ctx context.Context) context.Context {
	if st.stopPrefetch == nil {
		st.pctx, st.stopPrefetch = context.WithCancel(ctx)
	}
	return st.pctx
}

// staticCopy says whether a COPY's layer is the same whatever the stage
// does before it (see startStaticPrefetches).
func (r *run) staticCopy(c *instructions.CopyCommand) bool {
	if c.From != "" || len(c.SourceContents) > 0 || !path.IsAbs(c.DestPath) {
		return false
	}
	if c.Chown != "" && !numericOwner(c.Chown) {
		return false
	}
	literal := func(w string) bool {
		return !strings.ContainsAny(w, "$'\"\\") && !strings.ContainsRune(w, r.escape)
	}
	for _, w := range append([]string{c.DestPath, c.Chown, c.Chmod}, c.SourcePaths...) {
		if !literal(w) {
			return false
		}
	}
	return true
}

// startPrefetch starts prefetching st.next when it is a COPY that can be.
func (r *run) startPrefetch(ctx context.Context, st *stageState) {
	c, ok := st.next.(*instructions.CopyCommand)
	if !ok || c.From != "" || st.prefetches[c] != nil || !snapshot.CanStage(r.b.d.Snapshots) {
		return
	}
	if c.Chown != "" && !numericOwner(c.Chown) {
		return
	}
	env := st.env()
	p := &copyPrefetch{cmd: c, cfg: configDigest(st.cfg.Config), env: envString(st), done: make(chan struct{})}
	if st.prefetches == nil {
		st.prefetches = map[*instructions.CopyCommand]*copyPrefetch{}
	}
	st.prefetches[c] = p
	ctx = st.prefetchContext(ctx)
	// The parsed instruction is expanded in place by dispatch later: work
	// on a copy.
	cc := *c
	cc.SourcePaths = slices.Clone(c.SourcePaths)
	cc.SourceContents = slices.Clone(c.SourceContents)
	workdir := st.cfg.Config.WorkingDir
	hasImage := st.id != ""
	go func() {
		defer close(p.done)
		t0 := time.Now()
		p.err = r.prefetch(ctx, p, &cc, env, workdir, hasImage)
		if r.b.log != nil {
			r.b.log.Debug("build COPY prefetched", "took", time.Since(t0), "err", p.err)
		}
	}()
}

func (r *run) prefetch(ctx context.Context, p *copyPrefetch, c *instructions.CopyCommand, env shell.EnvGetter, workdir string, hasImage bool) (err error) {
	defer recoverInto(r.b.log, "COPY prefetch", &err)
	if err := c.Expand(func(word string) (string, error) {
		w, _, err := r.newLex().ProcessWord(word, env)
		return w, err
	}); err != nil {
		return err
	}
	if c.Chown != "" && !numericOwner(c.Chown) {
		return errNoPrefetch
	}
	p.spec = copySpec{
		text: c.String(), srcs: c.SourcePaths, contents: c.SourceContents, dest: c.DestPath,
		chown: c.Chown, chmod: c.Chmod, name: "COPY",
	}
	uid, gid, err := r.chownIDs(ctx, nil, p.spec.chown)
	if err != nil {
		return err
	}
	fake := &stageState{}
	fake.cfg.Config.WorkingDir = workdir
	srcs, dest, destIsDir, mode, err := r.copyPlan(ctx, r.ctx.fs, fake, p.spec)
	if err != nil {
		return err
	}
	if !destIsDir && len(srcs) == 1 && (srcs[0].data != nil || !srcs[0].fi.IsDir()) && hasImage {
		// Whether the destination is a directory is up to the RUN.
		return errNoPrefetch
	}
	var buf limitedBuffer
	sum := sha256.New()
	tw := tar.NewWriter(&buf)
	cw := &copyWriter{tw: tw, sum: sum, uid: uid, gid: gid, mode: mode, now: time.Now()}
	for _, s := range srcs {
		if err := cw.copy(s, dest, destIsDir, false); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	p.dest = dest
	p.contentSum = hex.EncodeToString(sum.Sum(nil))
	p.createdBy = fmt.Sprintf("/bin/sh -c #(nop) %s %s:%s in %s ", "COPY", kindOf(srcs), p.contentSum, dest)
	w, err := r.b.d.Content.Writer(ctx)
	if err != nil {
		return err
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		w.Close()
		return err
	}
	p.w = w
	staged, err := snapshot.StageLayer(ctx, r.b.d.Snapshots, filepath.Join(r.b.d.DataRoot, "builder", "tmp"), w.Digest(), bytes.NewReader(buf.Bytes()))
	if err != nil {
		// The layer is still good; the RUN after it unpacks it.
		r.b.log.Debug("stage prefetched COPY", "err", err)
		return nil
	}
	p.staged = staged
	return nil
}

// takePrefetch returns st's prefetch of c, once it is done, if it is
// still valid (one started during a RUN was planned with the stage's
// configuration and variables then, which must not have changed).
func (r *run) takePrefetch(st *stageState, c *instructions.CopyCommand) *copyPrefetch {
	p := st.prefetches[c]
	if p == nil {
		return nil
	}
	delete(st.prefetches, c)
	<-p.done
	if p.err != nil || !p.static && (p.cfg != configDigest(st.cfg.Config) || p.env != envString(st)) {
		p.discard()
		return nil
	}
	return p
}

// discard drops what a prefetch made (after it is done).
func (p *copyPrefetch) discard() {
	<-p.done
	if p.w != nil {
		p.w.Close()
	}
	p.staged.Remove()
}

// copyPrefetched finishes a prefetched COPY: the layer committed, the
// image committed, the staged tree moved into the layer's snapshot.
func (r *run) copyPrefetched(ctx context.Context, st *stageState, p *copyPrefetch) error {
	defer p.discard()
	key := r.cacheKey(st, "copy", p.spec.name, p.contentSum, p.dest, p.spec.chown, p.spec.chmod, configDigest(st.cfg.Config))
	if r.useCache(ctx, st, key) {
		return nil
	}
	w := p.w
	p.w = nil
	d, size := w.Digest(), w.Size()
	l := &layer{desc: descLayer(d, size), diffID: d, finish: func(ctx context.Context) error {
		defer w.Close()
		if _, err := w.Commit(ctx, d, size); err != nil {
			return fmt.Errorf("store layer: %w", err)
		}
		return nil
	}}
	diffIDs := append(slices.Clone(st.cfg.RootFS.DiffIDs), d)
	// The staged tree goes into the layer's snapshot while the image is
	// stored (separate stores: their syncs overlap).
	staged := p.staged
	p.staged = nil
	done := make(chan struct{})
	go func() {
		defer close(done)
		if staged == nil {
			return
		}
		var err error
		defer recoverInto(r.b.log, "commit of a prefetched COPY", &err)
		chains := image.ChainIDs(diffIDs)
		parent := ""
		if len(chains) > 1 {
			parent = chains[len(chains)-2].String()
		}
		if err := snapshot.CommitStaged(ctx, r.b.d.Snapshots, parent, chains[len(chains)-1], staged); err != nil {
			// Unpacked when a container needs it instead.
			r.b.log.Debug("commit prefetched COPY", "err", err)
		}
	}()
	err := r.commit(ctx, st, key, p.createdBy, l, "")
	<-done
	return err
}

// numericOwner says whether a --chown needs no passwd/group lookup.
func numericOwner(s string) bool {
	_, _, ok := numericChown(s)
	return ok
}

// envString is the expansion environment of st, as a comparable string.
func envString(st *stageState) string {
	env := st.env()
	keys := env.Keys()
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		v, _ := env.Get(k)
		fmt.Fprintf(&b, "%d:%s=%d:%s\n", len(k), k, len(v), v)
	}
	return b.String()
}

// limitedBuffer is a bytes.Buffer that refuses to grow past maxPrefetch.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > maxPrefetch {
		return 0, errNoPrefetch
	}
	return b.Buffer.Write(p)
}
