package distribution

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/content"
	"github.com/berth-engine/berth/internal/image"
	"github.com/google/go-containerregistry/pkg/compression"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fakeStager records what a pull hands to an unpacker that stages layers:
// the bytes each extraction read, and which staged layers were committed
// (in which order, on which parent) or discarded.
type fakeStager struct {
	mu        sync.Mutex
	chains    map[digest.Digest]bool
	attempts  map[digest.Digest]int     // extractions started per blob
	readOK    map[digest.Digest]int     // extractions that read the whole, right blob
	readErrs  map[digest.Digest][]error // extractions whose stream failed
	commits   []string                  // "parent -> chain"
	discarded map[digest.Digest]int
	unpacks   int
}

func newFakeStager() *fakeStager {
	return &fakeStager{chains: map[digest.Digest]bool{}, attempts: map[digest.Digest]int{}, readOK: map[digest.Digest]int{},
		readErrs: map[digest.Digest][]error{}, discarded: map[digest.Digest]int{}}
}

func (f *fakeStager) HasLayer(ctx context.Context, chain digest.Digest) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.chains[chain]
}

func (f *fakeStager) UnpackLayer(ctx context.Context, parent string, chain, diffID digest.Digest, desc ocispec.Descriptor, wrap func(io.Reader) io.Reader) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unpacks++
	f.chains[chain] = true
	f.commits = append(f.commits, parent+" -> "+chain.String())
	return nil
}

func (f *fakeStager) StageLayer(ctx context.Context, diffID digest.Digest, desc ocispec.Descriptor, compressed io.Reader) (StagedLayer, error) {
	f.mu.Lock()
	f.attempts[desc.Digest]++
	f.mu.Unlock()
	h := digest.SHA256.Digester()
	buf := make([]byte, 4096)
	for {
		n, err := compressed.Read(buf)
		if n > 0 {
			h.Hash().Write(buf[:n])
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			f.mu.Lock()
			f.readErrs[desc.Digest] = append(f.readErrs[desc.Digest], err)
			f.mu.Unlock()
			return nil, err
		}
	}
	// Like the real stager: what was read is not trusted, but a stream
	// that ended cleanly is staged.
	if h.Digest() == desc.Digest {
		f.mu.Lock()
		f.readOK[desc.Digest]++
		f.mu.Unlock()
	}
	return &fakeStaged{f: f, desc: desc}, nil
}

type fakeStaged struct {
	f    *fakeStager
	desc ocispec.Descriptor
}

func (s *fakeStaged) Commit(ctx context.Context, parent string, chain digest.Digest) error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.chains[chain] = true
	s.f.commits = append(s.f.commits, parent+" -> "+chain.String())
	return nil
}

func (s *fakeStaged) Discard() {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.discarded[s.desc.Digest]++
}

func layerDescs(t *testing.T, img v1.Image) ([]digest.Digest, []digest.Digest) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var blobs, diffIDs []digest.Digest
	for _, l := range layers {
		d, _ := l.Digest()
		u, _ := l.DiffID()
		blobs = append(blobs, digest.Digest(d.String()))
		diffIDs = append(diffIDs, digest.Digest(u.String()))
	}
	return blobs, diffIDs
}

// stallHalfway serves one blob's first half, then waits until released
// before sending the rest.
type stallHalfway struct {
	h       http.Handler
	blob    string
	release chan struct{}
	sent    atomic.Bool // the first half went out
}

func (s *stallHalfway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+s.blob) {
		s.h.ServeHTTP(w, r)
		return
	}
	rec := &bufferedResponse{header: http.Header{}}
	s.h.ServeHTTP(rec, r)
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.WriteHeader(http.StatusOK)
	b := rec.body.Bytes()
	w.Write(b[:len(b)/2])
	w.(http.Flusher).Flush()
	s.sent.Store(true)
	select {
	case <-s.release:
	case <-time.After(time.Minute):
		// Only when the pull does not extract during the download: the
		// test then fails on what the stager saw.
	}
	w.Write(b[len(b)/2:])
}

type bufferedResponse struct {
	header http.Header
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header         { return b.header }
func (b *bufferedResponse) Write(p []byte) (int, error) { return b.body.Write(p) }
func (b *bufferedResponse) WriteHeader(int)             {}

func TestPullExtractsLayersWhileTheyDownload(t *testing.T) {
	ctx := context.Background()
	noise := make([]byte, 512<<10)
	rand.Read(noise)
	st := &stallHalfway{h: ggcrregistry.New(ggcrregistry.Logger(nopLogger())), release: make(chan struct{})}
	e := newEnv(t, st)
	img := testImage(t, hostV1Platform(), false,
		tarLayer(t, "a", "alpha", compression.GZip),
		tarLayer(t, "b", string(noise), compression.GZip),
		tarLayer(t, "c", strings.Repeat("gamma", 20000), compression.ZStd))
	write(t, e, "app:v1", img)
	blobs, diffIDs := layerDescs(t, img)
	st.blob = blobs[1].String()

	// The big layer's download stalls halfway until its extraction has
	// read something: only a pull that extracts while it downloads gets
	// past it at once.
	fs := newFakeStager()
	var readDuringDownload atomic.Bool
	stager := &gateStager{fakeStager: fs, blob: blobs[1], onRead: func() {
		if st.sent.Load() && !readDuringDownload.Swap(true) {
			close(st.release)
		}
	}}
	e.c.Unpacker = stager

	var buf bytes.Buffer
	if _, err := e.c.Pull(ctx, e.ref(t, "app:v1"), PullOptions{Progress: NewProgress(&buf)}); err != nil {
		t.Fatal(err)
	}
	if !readDuringDownload.Load() {
		t.Errorf("the layer was not extracted while its download was stalled halfway")
	}
	chains := image.ChainIDs(diffIDs)
	want := []string{" -> " + chains[0].String(), chains[0].String() + " -> " + chains[1].String(), chains[1].String() + " -> " + chains[2].String()}
	if strings.Join(fs.commits, "\n") != strings.Join(want, "\n") {
		t.Errorf("commits:\n%s\nwant:\n%s", strings.Join(fs.commits, "\n"), strings.Join(want, "\n"))
	}
	for _, b := range blobs {
		if fs.readOK[b] != 1 || fs.attempts[b] != 1 || fs.discarded[b] != 0 {
			t.Errorf("layer %s: %d extractions, %d read the whole blob, %d discarded", b, fs.attempts[b], fs.readOK[b], fs.discarded[b])
		}
	}
	if fs.unpacks != 0 {
		t.Errorf("%d layers unpacked the ordinary way", fs.unpacks)
	}
	// docker's order per layer: the extraction is shown after the download.
	for _, b := range blobs {
		id := shortID(b)
		var seq []string
		for _, m := range progressLines(&buf) {
			if m["id"] == id {
				if s, _ := m["status"].(string); len(seq) == 0 || seq[len(seq)-1] != s {
					seq = append(seq, s)
				}
			}
		}
		got := strings.Join(seq, ", ")
		dc, ex, pc := strings.Index(got, "Download complete"), strings.Index(got, "Extracting"), strings.Index(got, "Pull complete")
		if dc < 0 || ex < dc || pc < ex || strings.Contains(got[ex:], "Downloading") {
			t.Errorf("layer %s progress: %s", id, got)
		}
	}
}

// gateStager calls onRead whenever an extraction of blob reads data.
type gateStager struct {
	*fakeStager
	blob   digest.Digest
	onRead func()
}

func (g *gateStager) StageLayer(ctx context.Context, diffID digest.Digest, desc ocispec.Descriptor, compressed io.Reader) (StagedLayer, error) {
	if desc.Digest == g.blob {
		compressed = readHook{r: compressed, fn: g.onRead}
	}
	return g.fakeStager.StageLayer(ctx, diffID, desc, compressed)
}

type readHook struct {
	r  io.Reader
	fn func()
}

func (h readHook) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if n > 0 {
		h.fn()
	}
	return n, err
}

func TestPullNeverCommitsTheExtractionOfABadBlob(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []string{"flip", "truncate"} {
		t.Run(mode, func(t *testing.T) {
			l := &lying{h: ggcrregistry.New(ggcrregistry.Logger(nopLogger()))}
			e := newEnv(t, l)
			// Incompressible, so that a cut download's first half leaves
			// the server's buffers and reaches the extraction.
			noise := make([]byte, 256<<10)
			rand.Read(noise)
			img := testImage(t, hostV1Platform(), false, tarLayer(t, "a", "alpha", compression.GZip), tarLayer(t, "b", string(noise), compression.GZip))
			write(t, e, "app:v1", img)
			blobs, diffIDs := layerDescs(t, img)
			l.set(blobs[1].String(), mode)
			fs := newFakeStager()
			e.c.Unpacker = fs
			if _, err := e.c.Pull(ctx, e.ref(t, "app:v1"), PullOptions{}); err == nil {
				t.Fatal("pull succeeded")
			}
			chains := image.ChainIDs(diffIDs)
			if fs.chains[chains[1]] {
				t.Errorf("the layer of the bad blob was committed: %v", fs.commits)
			}
			// Every extraction of the bad blob that got anywhere was dropped.
			if fs.attempts[blobs[1]] == 0 {
				t.Errorf("the bad blob was never extracted while downloading")
			}
			if staged := fs.attempts[blobs[1]] - len(fs.readErrs[blobs[1]]); fs.discarded[blobs[1]] != staged {
				t.Errorf("%d extractions staged, %d discarded", staged, fs.discarded[blobs[1]])
			}
			if mode == "truncate" && len(fs.readErrs[blobs[1]]) == 0 {
				t.Errorf("an extraction of a cut download saw no error")
			}
			// The registry heals: the pull completes, each layer committed once.
			l.set("", "")
			fs2 := newFakeStager()
			e.c.Unpacker = fs2
			if _, err := e.c.Pull(ctx, e.ref(t, "app:v1"), PullOptions{}); err != nil {
				t.Fatalf("pull after the registry healed: %v", err)
			}
			if len(fs2.commits) != 2 {
				t.Errorf("commits after healing: %v", fs2.commits)
			}
		})
	}
}

func TestPullRetryDiscardsTheCutExtraction(t *testing.T) {
	l := &lying{h: ggcrregistry.New(ggcrregistry.Logger(nopLogger()))}
	e := newEnv(t, l)
	noise := make([]byte, 256<<10)
	rand.Read(noise)
	img := testImage(t, hostV1Platform(), false, tarLayer(t, "b", string(noise), compression.GZip))
	write(t, e, "app:v1", img)
	blobs, _ := layerDescs(t, img)
	l.set(blobs[0].String(), "truncate-once")
	fs := newFakeStager()
	e.c.Unpacker = fs
	if _, err := e.c.Pull(context.Background(), e.ref(t, "app:v1"), PullOptions{}); err != nil {
		t.Fatalf("pull with one cut download: %v", err)
	}
	b := blobs[0]
	if fs.attempts[b] != 2 || len(fs.readErrs[b]) != 1 || fs.readOK[b] != 1 || len(fs.commits) != 1 || fs.discarded[b] != 0 {
		t.Errorf("extractions %d (failed %d, whole %d), commits %v, discarded %d", fs.attempts[b], len(fs.readErrs[b]), fs.readOK[b], fs.commits, fs.discarded[b])
	}
}

// decliningStager can stage nothing (as on vfs) and says so up front.
type decliningStager struct{ *fakeStager }

func (decliningStager) CanStageLayers() bool { return false }

// A stager that cannot stage is handed no download to follow: every
// layer is unpacked the ordinary way, and no extraction starts only to
// decline (which showed as a stray "Extracting" line on vfs).
func TestPullDoesNotStageOnAStagerThatDeclines(t *testing.T) {
	e := newEnv(t, nil)
	img := testImage(t, hostV1Platform(), false, tarLayer(t, "a", "alpha", compression.GZip), tarLayer(t, "b", "beta", compression.GZip))
	write(t, e, "app:v1", img)
	blobs, _ := layerDescs(t, img)
	fs := newFakeStager()
	e.c.Unpacker = decliningStager{fs}
	var buf bytes.Buffer
	if _, err := e.c.Pull(context.Background(), e.ref(t, "app:v1"), PullOptions{Progress: NewProgress(&buf)}); err != nil {
		t.Fatal(err)
	}
	for _, b := range blobs {
		if fs.attempts[b] != 0 {
			t.Errorf("layer %s: %d extractions started", b, fs.attempts[b])
		}
	}
	if fs.unpacks != len(blobs) {
		t.Errorf("%d of %d layers unpacked", fs.unpacks, len(blobs))
	}
	for _, m := range progressLines(&buf) {
		if m["status"] == "Extracting" {
			t.Errorf("progress line %v", m)
		}
	}
}

// commitGate is a content store whose first commit of one of two layer
// blobs waits until the registry has been asked for the other one.
type commitGate struct {
	content.Store
	asked   map[digest.Digest]chan struct{} // blob → closed once it is requested
	other   map[digest.Digest]digest.Digest
	first   sync.Once
	overlap atomic.Bool // the other download started during the commit
}

func (g *commitGate) Writer(ctx context.Context) (content.Writer, error) {
	w, err := g.Store.Writer(ctx)
	if err != nil {
		return nil, err
	}
	return &gatedWriter{Writer: w, g: g}, nil
}

type gatedWriter struct {
	content.Writer
	g *commitGate
}

func (w *gatedWriter) Commit(ctx context.Context, expected digest.Digest, size int64) (digest.Digest, error) {
	if o, ok := w.g.other[expected]; ok {
		w.g.first.Do(func() {
			select {
			case <-w.g.asked[o]:
				w.g.overlap.Store(true)
			case <-time.After(time.Minute):
				// Only when the download slot is held through the
				// commit: the test then fails on overlap.
			}
		})
	}
	return w.Writer.Commit(ctx, expected, size)
}

// notifyGet closes asked[blob] when a blob is requested.
type notifyGet struct {
	h     http.Handler
	mu    sync.Mutex
	asked map[string]chan struct{}
}

func (n *notifyGet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if i := strings.LastIndex(r.URL.Path, "/blobs/"); r.Method == http.MethodGet && i >= 0 {
		n.mu.Lock()
		if ch, ok := n.asked[r.URL.Path[i+len("/blobs/"):]]; ok {
			select {
			case <-ch:
			default:
				close(ch)
			}
		}
		n.mu.Unlock()
	}
	n.h.ServeHTTP(w, r)
}

// A layer's download slot is free once its bytes have arrived and matched:
// the commit's fsync does not hold up the next layer's download.
func TestPullReleasesTheDownloadSlotBeforeTheCommit(t *testing.T) {
	ng := &notifyGet{h: ggcrregistry.New(ggcrregistry.Logger(nopLogger())), asked: map[string]chan struct{}{}}
	e := newEnv(t, ng)
	img := testImage(t, hostV1Platform(), false, tarLayer(t, "a", "alpha", compression.GZip), tarLayer(t, "b", "beta", compression.GZip))
	write(t, e, "app:v1", img)
	blobs, _ := layerDescs(t, img)
	gate := &commitGate{Store: e.cs, asked: map[digest.Digest]chan struct{}{}, other: map[digest.Digest]digest.Digest{blobs[0]: blobs[1], blobs[1]: blobs[0]}}
	ng.mu.Lock()
	for _, b := range blobs {
		ch := make(chan struct{})
		ng.asked[b.String()], gate.asked[b] = ch, ch
	}
	ng.mu.Unlock()
	e.c.Content = gate
	e.c.Jobs = 1
	fs := newFakeStager()
	e.c.Unpacker = fs
	if _, err := e.c.Pull(context.Background(), e.ref(t, "app:v1"), PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if !gate.overlap.Load() {
		t.Errorf("with one download slot, the second layer's download did not start during the first one's commit")
	}
	if len(fs.commits) != 2 {
		t.Errorf("commits: %v", fs.commits)
	}
}
