package integration

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/testutil"
)

// stallingProxy forwards to a registry, but serves only the first half of
// one blob and then stalls until released, so a test can interrupt a pull
// at a known point without timing anything.
type stallingProxy struct {
	upstream string
	blob     string // digest whose download stalls
	halfway  chan struct{}
	release  chan struct{}
	once     sync.Once
	mu       sync.Mutex
	stalling bool
}

func (p *stallingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, "http://"+p.upstream+r.URL.RequestURI(), r.Body)
	req.Header = r.Header.Clone()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	p.mu.Lock()
	stall := p.stalling && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+p.blob)
	p.mu.Unlock()
	w.WriteHeader(resp.StatusCode)
	if !stall {
		_, _ = io.Copy(w, resp.Body)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	_, _ = w.Write(body[:len(body)/2])
	w.(http.Flusher).Flush()
	p.once.Do(func() { close(p.halfway) })
	<-p.release
	panic(http.ErrAbortHandler) // the connection ends short
}

func TestPullInterruptedByDaemonKill9(t *testing.T) {
	d := daemonWithBusybox(t)
	pullKilledMidway(t, d, "busybox", "echo whole", "whole\n", 0)
}

// The same with a layer of 32 MiB of random bytes, killed once more than
// 8 MiB of it are extracted, so that writeback passes over the staged
// layer have started when the daemon dies: a re-pull still completes and
// the file is whole. (busybox stays: its layer is "Already exists", only
// the big one is pulled.)
func TestPullOfABigLayerInterruptedByDaemonKill9(t *testing.T) {
	d := daemonWithBusybox(t)
	mustCfgBerth(t, d, "run", "--name", "big", "busybox", "sh", "-c", "dd if=/dev/urandom of=/big bs=1M count=32 2>/dev/null && md5sum /big > /big.md5")
	mustCfgBerth(t, d, "commit", "big", "bigimg")
	mustCfgBerth(t, d, "rm", "big")
	want := mustCfgBerth(t, d, "run", "--rm", "bigimg", "cat", "/big.md5")
	pullKilledMidway(t, d, "bigimg", "md5sum /big", want, 8<<20)
}

// pullKilledMidway pushes image to a registry, removes it, pulls it back
// through a proxy that stalls halfway through its biggest blob, kills the
// daemon there, and checks that the restarted daemon has no image and no
// half blob, and that a second pull completes: `run --rm IMAGE sh -c cmd`
// then prints want. With extracted > 0 the kill waits until the staged
// files hold at least that many bytes.
func pullKilledMidway(t *testing.T, d *testutil.Daemon, image, cmd, want string, extracted int64) {
	t.Helper()
	reg := testutil.StartRegistry(t, binDir)
	mustCfgBerth(t, d, "tag", image, reg.Addr+"/bb:v1")
	mustCfgBerth(t, d, "push", reg.Addr+"/bb:v1")
	mustCfgBerth(t, d, "rmi", image, reg.Addr+"/bb:v1")

	// The layer blob is the biggest file in the registry's storage.
	entries, _ := os.ReadDir(filepath.Join(reg.Root, "blobs", "sha256"))
	var blob string
	var size int64
	for _, e := range entries {
		if fi, _ := e.Info(); fi.Size() > size {
			blob, size = e.Name(), fi.Size()
		}
	}
	p := &stallingProxy{upstream: reg.Addr, blob: "sha256:" + blob, halfway: make(chan struct{}), release: make(chan struct{}), stalling: true}
	srv := httptest.NewServer(p)
	defer srv.Close()
	defer func() {
		select {
		case <-p.release:
		default:
			close(p.release)
		}
	}()
	name := strings.TrimPrefix(srv.URL, "http://") + "/bb:v1"

	pull := d.Cmd("pull", name)
	var out bytes.Buffer
	pull.Stdout, pull.Stderr = &out, &out
	if err := pull.Start(); err != nil {
		t.Fatal(err)
	}
	pullDone := make(chan error, 1)
	go func() { pullDone <- pull.Wait() }()
	select {
	case <-p.halfway:
	case err := <-pullDone:
		t.Fatalf("pull ended before the stall: %v\n%s", err, out.String())
	}
	// Half the layer is in the daemon's ingest, and its extraction follows
	// it into a staging directory: crash it there.
	staging := filepath.Join(d.DataRoot, "tmp", "unpack")
	stagedBytes := func() (n int64) {
		_ = filepath.WalkDir(staging, func(_ string, e os.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				if fi, err := e.Info(); err == nil {
					n += fi.Size()
				}
			}
			return nil
		})
		return n
	}
	for stagedBytes() < extracted {
		select {
		case err := <-pullDone:
			t.Fatalf("pull ended before %d bytes were extracted: %v\n%s", extracted, err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	ents, _ := os.ReadDir(staging)
	t.Logf("layers being extracted at the crash: %d (%d bytes staged)", len(ents), stagedBytes())
	d.Kill9(t)
	close(p.release)
	if err := <-pullDone; err == nil {
		t.Fatalf("pull succeeded although the daemon died:\n%s", out.String())
	}

	d.Start(t)
	if out := mustCfgBerth(t, d, "images", "-q", name); strings.TrimSpace(out) != "" {
		t.Errorf("an interrupted pull left an image: %s", out)
	}
	if ents, _ := os.ReadDir(filepath.Join(d.DataRoot, "content", "ingest")); len(ents) != 0 {
		t.Errorf("ingests left after restart: %d", len(ents))
	}
	if _, err := os.Stat(filepath.Join(d.DataRoot, "content", "blobs", "sha256", blob)); err == nil {
		t.Errorf("the half-downloaded blob is visible")
	}
	// Pulling again completes.
	p.mu.Lock()
	p.stalling = false
	p.mu.Unlock()
	o := mustCfgBerth(t, d, "pull", name)
	assertContains(t, "pull after the crash", o, "Pull complete", "Status: Downloaded newer image")
	if got := mustCfgBerth(t, d, "run", "--rm", name, "sh", "-c", cmd); got != want {
		t.Errorf("run: %q, want %q", got, want)
	}
	// The crashed extraction's directory went with the next pull.
	if ents, _ := os.ReadDir(staging); len(ents) != 0 {
		t.Errorf("staged layers left: %d", len(ents))
	}
}

func TestPullInterruptedByRegistryDeath(t *testing.T) {
	d := daemonWithBusybox(t)
	reg := testutil.StartRegistry(t, binDir)
	mustCfgBerth(t, d, "tag", "busybox", reg.Addr+"/bb:v1")
	mustCfgBerth(t, d, "push", reg.Addr+"/bb:v1")
	mustCfgBerth(t, d, "rmi", "busybox", reg.Addr+"/bb:v1")
	entries, _ := os.ReadDir(filepath.Join(reg.Root, "blobs", "sha256"))
	var blob string
	var size int64
	for _, e := range entries {
		if fi, _ := e.Info(); fi.Size() > size {
			blob, size = e.Name(), fi.Size()
		}
	}
	p := &stallingProxy{upstream: reg.Addr, blob: "sha256:" + blob, halfway: make(chan struct{}), release: make(chan struct{}), stalling: true}
	srv := httptest.NewServer(p)
	defer srv.Close()
	name := strings.TrimPrefix(srv.URL, "http://") + "/bb:v1"
	cmd := d.Cmd("pull", name)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pullDone := make(chan error, 1)
	go func() { pullDone <- cmd.Wait() }()
	select {
	case <-p.halfway:
	case err := <-pullDone:
		t.Fatalf("pull ended before the stall: %v\n%s", err, out.String())
	}
	// The registry goes away mid-blob (the connection is cut).
	p.mu.Lock()
	p.stalling = false
	p.mu.Unlock()
	close(p.release)
	err := <-pullDone
	if err == nil {
		// A retry may complete the pull through the healed proxy; that
		// is fine too, as long as the image is whole.
		mustCfgBerth(t, d, "run", "--rm", name, "true")
		return
	}
	if o := mustCfgBerth(t, d, "images", "-aq"); strings.TrimSpace(o) != "" {
		t.Errorf("a failed pull left an image: %s", o)
	}
	mustCfgBerth(t, d, "pull", name)
	mustCfgBerth(t, d, "run", "--rm", name, "true")
}
