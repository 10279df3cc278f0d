package builder

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"time"

	"github.com/berth-engine/berth/internal/fsutil"
	"github.com/berth-engine/berth/internal/image"
	"github.com/containerd/errdefs"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func hostArch() string { return goruntime.GOARCH }

// layer is a layer blob written to the content store for a step.
type layer struct {
	desc   ocispec.Descriptor
	diffID digest.Digest
	// finish, when set, commits the written blob: commit runs it while it
	// writes the image's config and manifest (their syncs overlap) and
	// records the image only once all three are stored.
	finish func(ctx context.Context) error
}

// writeLayer is storeLayer with the blob's commit (its sync) left to the
// layer's finish; the writer is closed by finish.
func (b *Builder) writeLayer(ctx context.Context, r io.Reader) (*layer, error) {
	w, err := b.d.Content.Writer(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Close()
		return nil, fmt.Errorf("write layer: %w", err)
	}
	d, size := w.Digest(), w.Size()
	return &layer{
		desc:   ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: size},
		diffID: d,
		finish: func(ctx context.Context) error {
			defer w.Close()
			if _, err := w.Commit(ctx, d, size); err != nil {
				return fmt.Errorf("store layer: %w", err)
			}
			return nil
		},
	}, nil
}

// storeLayer writes an uncompressed layer tar from r into the content
// store; its digest is its diff ID.
func (b *Builder) storeLayer(ctx context.Context, r io.Reader) (*layer, error) {
	w, err := b.d.Content.Writer(ctx)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	if _, err := io.Copy(w, r); err != nil {
		return nil, fmt.Errorf("write layer: %w", err)
	}
	d, size := w.Digest(), w.Size()
	if _, err := w.Commit(ctx, d, size); err != nil {
		return nil, fmt.Errorf("store layer: %w", err)
	}
	return &layer{desc: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: size}, diffID: d}, nil
}

func (b *Builder) putBlob(ctx context.Context, data []byte) (digest.Digest, error) {
	w, err := b.d.Content.Writer(ctx)
	if err != nil {
		return "", err
	}
	defer w.Close()
	if _, err := w.Write(data); err != nil {
		return "", err
	}
	d := digest.FromBytes(data)
	if _, err := w.Commit(ctx, d, int64(len(data))); err != nil {
		return "", err
	}
	return d, nil
}

// commit records the stage's config (plus a layer, if l is not nil) as a
// new image whose parent is the stage's current image, caches it under
// key and makes it the stage's current image.
//
// The layer blob is committed first (a later step may unpack it). The
// rest — config and manifest blobs, the image record, the cache entry —
// is queued on the stage's commitQueue when it has one: those writes (and
// their syncs) then run while the next steps do, in step order, each
// record after its blobs and each cache entry after its record, so a crash
// at any point loses the newest entries and corrupts none. What reads the
// stage's images from the stores waits for the queue (stageState.flush);
// RUN steps get the image itself.
func (r *run) commit(ctx context.Context, st *stageState, key, createdBy string, l *layer, comment string) error {
	// A new image: no later step of the stage can hit the cache (their
	// parents are new), so its COPYs can be prepared now.
	r.startStaticPrefetches(ctx, st)
	if l != nil && l.finish != nil {
		if err := l.finish(ctx); err != nil {
			return err
		}
	}
	now := time.Now().UTC()
	cfg := cloneImageConfig(st.cfg)
	cfg.Created = &now
	if cfg.OS == "" {
		cfg.OS = "linux"
	}
	if cfg.Architecture == "" {
		cfg.Architecture = hostArch()
	}
	cfg.RootFS.Type = "layers"
	var layers []ocispec.Descriptor
	if st.img != nil {
		layers = append(layers, st.img.Layers...)
	}
	h := ocispec.History{Created: &now, CreatedBy: createdBy, Comment: comment, EmptyLayer: l == nil}
	if l != nil {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.diffID)
		layers = append(layers, l.desc)
	}
	cfg.History = append(cfg.History, h)
	raw, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	id := digest.FromBytes(raw)
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: id, Size: int64(len(raw))}, Layers: layers}
	m.SchemaVersion = 2
	if m.Layers == nil {
		m.Layers = []ocispec.Descriptor{}
	}
	mraw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	img := &image.Image{ID: id, Config: cfg, Layers: layers, Manifest: digest.FromBytes(mraw), Parent: st.id}
	rec := *img // the store may set fields of what it is given
	record := func(ctx context.Context) error {
		// The two blobs are stored at once: their syncs overlap (the
		// filesystem commits them in one journal transaction) instead of
		// queueing. Both are there before the image record names them.
		var cerr error
		var wg sync.WaitGroup
		wg.Go(func() {
			if _, err := r.b.putBlob(ctx, raw); err != nil {
				cerr = fmt.Errorf("store image config: %w", err)
			}
		})
		_, merr := r.b.putBlob(ctx, mraw)
		wg.Wait()
		if cerr != nil {
			return cerr
		}
		if merr != nil {
			return fmt.Errorf("store manifest: %w", merr)
		}
		if err := r.b.d.Images.Put(ctx, &rec); err != nil {
			return fmt.Errorf("record image: %w", err)
		}
		if key != "" {
			r.b.cache.put(key, id)
		}
		return nil
	}
	if st.queue != nil {
		st.queue.add(context.WithoutCancel(ctx), record)
	} else if err := record(ctx); err != nil {
		return err
	}
	st.id, st.img, st.cfg = id, img, cloneImageConfig(cfg)
	fmt.Fprintf(r.out, " ---> %s\n", shortID(id))
	return nil
}

// commitQueue runs a stage's image records in order, behind its steps.
type commitQueue struct {
	mu   sync.Mutex
	last chan struct{} // closed when the last job queued is done
	err  error         // the first failure; later jobs are skipped
}

func (q *commitQueue) add(ctx context.Context, job func(context.Context) error) {
	q.mu.Lock()
	prev := q.last
	done := make(chan struct{})
	q.last = done
	q.mu.Unlock()
	go func() {
		defer close(done)
		if prev != nil {
			<-prev
		}
		q.mu.Lock()
		failed := q.err != nil
		q.mu.Unlock()
		if failed {
			// Its parent's record is missing: record nothing after it.
			return
		}
		if err := runJob(ctx, job); err != nil {
			q.mu.Lock()
			q.err = err
			q.mu.Unlock()
		}
	}()
}

// runJob runs a queued job; a panic in it fails it (and the build).
func runJob(ctx context.Context, job func(context.Context) error) (err error) {
	defer recoverInto(nil, "build commit", &err)
	return job(ctx)
}

// wait returns once every job queued so far is done, with the first
// failure.
func (q *commitQueue) wait() error {
	q.mu.Lock()
	last := q.last
	q.mu.Unlock()
	if last != nil {
		<-last
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

// flush waits until the stage's images are all in the stores.
func (st *stageState) flush() error {
	if st == nil || st.queue == nil {
		return nil
	}
	return st.queue.wait()
}

// cache maps step keys to image IDs, one small file per key, so it
// survives restarts; an entry whose image is gone is a miss.
type cache struct{ dir string }

func openCache(dir string) (*cache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &cache{dir: dir}, nil
}

func (c *cache) get(key string) digest.Digest {
	b, err := os.ReadFile(filepath.Join(c.dir, key))
	if err != nil {
		return ""
	}
	d, err := digest.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return ""
	}
	return d
}

// put records key → id. The entry is renamed into place but not synced:
// a crash of the host may lose it (a miss next time) or leave it empty
// (unparsable: a miss too), never point it at a wrong image, since an
// entry is only its image ID and get checks that the image exists.
func (c *cache) put(key string, id digest.Digest) {
	_ = fsutil.WriteFileAtomicSync(filepath.Join(c.dir, key), []byte(id.String()), 0o600, fsutil.SyncNone)
}

// cacheKey is the identity of a step: its parent image, its kind, its
// text (after expansion) and whatever else decides its result.
func (r *run) cacheKey(st *stageState, parts ...string) string {
	h := digest.Canonical.Digester()
	fmt.Fprintf(h.Hash(), "parent=%s\n", st.id)
	for _, p := range parts {
		fmt.Fprintf(h.Hash(), "%d:%s\n", len(p), p)
	}
	return h.Digest().Encoded()
}

// useCache takes a cached result for key when allowed and present.
func (r *run) useCache(ctx context.Context, st *stageState, key string) bool {
	if r.opts.NoCache {
		return false
	}
	id := r.b.cache.get(key)
	if id == "" {
		return false
	}
	img, err := r.b.d.Images.Get(ctx, id)
	if err != nil {
		return false
	}
	st.id, st.img, st.cfg = img.ID, img, cloneImageConfig(img.Config)
	fmt.Fprintf(r.out, " ---> Using cache\n ---> %s\n", shortID(id))
	return true
}

// parseOne parses a single Dockerfile instruction (an ONBUILD trigger).
func parseOne(text string) (instructions.Command, error) {
	res, err := parser.Parse(strings.NewReader(text))
	if err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(err.Error())
	}
	if len(res.AST.Children) != 1 {
		return nil, errdefs.ErrInvalidArgument.WithMessage("invalid ONBUILD trigger: " + text)
	}
	c, err := instructions.ParseCommand(res.AST.Children[0])
	if err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(err.Error())
	}
	return c, nil
}

func descLayer(d digest.Digest, size int64) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: size}
}
