package integration

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/berth-engine/berth/internal/testutil"
	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type tarEntry struct {
	name, body string
	dir        bool
}

func layerOf(t *testing.T, comp compression.Compression, entries ...tarEntry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg}
		if e.dir {
			h = &tar.Header{Name: e.name, Mode: 0o755, Typeflag: tar.TypeDir}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if !e.dir {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	b := buf.Bytes()
	opts := []tarball.LayerOption{tarball.WithCompression(comp)}
	if comp == compression.None {
		opts = append(opts, tarball.WithMediaType(types.OCIUncompressedLayer))
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestPullLayersWithWhiteouts pulls an OCI image whose layers (gzip, zstd,
// uncompressed, extracted in parallel) delete files and make a directory
// opaque, and checks the container sees the result of applying them in order.
func TestPullLayersWithWhiteouts(t *testing.T) {
	d := daemonWithBusybox(t)
	reg := testutil.StartRegistry(t, binDir)
	bb, err := tarball.LayerFromFile(testutil.BusyboxTarFile(t, d.Root))
	if err != nil {
		t.Fatal(err)
	}
	l1 := layerOf(t, compression.GZip,
		tarEntry{name: "a/", dir: true}, tarEntry{name: "a/x", body: "x1"}, tarEntry{name: "a/keep", body: "keep"},
		tarEntry{name: "d/", dir: true}, tarEntry{name: "d/y", body: "y1"})
	l2 := layerOf(t, compression.ZStd,
		tarEntry{name: "a/", dir: true}, tarEntry{name: "a/.wh.x"},
		tarEntry{name: "d/", dir: true}, tarEntry{name: "d/.wh..wh..opq"}, tarEntry{name: "d/z", body: "z2"})
	l3 := layerOf(t, compression.None, tarEntry{name: "top", body: "t3"}, tarEntry{name: "a/x2", body: "again"})
	img, err := mutate.ConfigFile(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON),
		&v1.ConfigFile{OS: "linux", Architecture: hostArch(), Config: v1.Config{Cmd: []string{"sh"}}, RootFS: v1.RootFS{Type: "layers"}})
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.AppendLayers(img, bb, l1, l2, l3); err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(reg.Addr+"/layers:v1", name.Insecure)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	out := mustCfgBerth(t, d, "pull", reg.Addr+"/layers:v1")
	if strings.Count(out, "Pull complete") != 4 {
		t.Errorf("pull output:\n%s", out)
	}
	got := mustCfgBerth(t, d, "run", "--rm", reg.Addr+"/layers:v1", "sh", "-c", "ls /a; echo -; ls /d; echo -; cat /top /a/x2")
	if want := "keep\nx2\n-\nz\n-\nt3again"; got != want {
		t.Errorf("container sees:\n%q\nwant\n%q", got, want)
	}
}

func hostArch() string {
	if runtime.GOARCH == "arm64" {
		return "arm64"
	}
	return runtime.GOARCH
}

// TestConcurrentPullsShareLayers pulls two images that share their lower
// layers at the same time: each layer is extracted while it downloads, by
// both pulls, and must be stored once (one blob, one snapshot per chain),
// with nothing left in the staging area and both images whole.
func TestConcurrentPullsShareLayers(t *testing.T) {
	d := daemonWithBusybox(t)
	reg := testutil.StartRegistry(t, binDir)
	// The busybox layer is unpacked before, like a base image in use.
	mustCfgBerth(t, d, "run", "--rm", "--network", "none", "busybox", "true")
	bb, err := tarball.LayerFromFile(testutil.BusyboxTarFile(t, d.Root))
	if err != nil {
		t.Fatal(err)
	}
	noise := make([]byte, 2<<20)
	rand.Read(noise)
	shared := layerOf(t, compression.GZip, tarEntry{name: "shared", body: string(noise)})
	push := func(tag string, top v1.Layer) {
		img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{OS: "linux", Architecture: hostArch(), Config: v1.Config{Cmd: []string{"sh"}}, RootFS: v1.RootFS{Type: "layers"}})
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, bb, shared, top); err != nil {
			t.Fatal(err)
		}
		ref, _ := name.ParseReference(reg.Addr+"/share:"+tag, name.Insecure)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
	}
	push("one", layerOf(t, compression.ZStd, tarEntry{name: "which", body: "one"}))
	push("two", layerOf(t, compression.GZip, tarEntry{name: "which", body: "two"}))

	snapshots := func() int {
		ents, _ := os.ReadDir(filepath.Join(d.DataRoot, "overlay2", "snapshots"))
		n := 0
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), ".") {
				n++
			}
		}
		return n
	}
	blobs := func() int {
		ents, _ := os.ReadDir(filepath.Join(d.DataRoot, "content", "blobs", "sha256"))
		return len(ents)
	}
	if info := mustCfgBerth(t, d, "info", "--format", "{{.Driver}}"); strings.TrimSpace(info) != "overlay2" {
		t.Skipf("storage driver %s: layers are not staged", strings.TrimSpace(info))
	}
	snapsBefore, blobsBefore := snapshots(), blobs()

	var wg sync.WaitGroup
	errs := make([]string, 2)
	for i, tag := range []string{"one", "two"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := cfgBerth(t, d, "", "pull", reg.Addr+"/share:"+tag); r.ExitCode != 0 {
				errs[i] = r.String()
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			t.Fatalf("pull: %s", e)
		}
	}
	for _, tag := range []string{"one", "two"} {
		if got := mustCfgBerth(t, d, "run", "--rm", "--network", "none", reg.Addr+"/share:"+tag, "sh", "-c", "cat /which; wc -c < /shared"); got != tag+"2097152\n" {
			t.Errorf("%s sees %q", tag, got)
		}
	}
	// New: the shared layer's chain and one top chain per image (the
	// busybox chain is there); blobs: busybox gzipped (imported, it is
	// stored uncompressed), the shared layer, two tops, two configs, two
	// manifests.
	if got := snapshots() - snapsBefore; got != 3 {
		t.Errorf("%d snapshots added, want 3", got)
	}
	if got := blobs() - blobsBefore; got != 8 {
		t.Errorf("%d blobs added, want 8", got)
	}
	if ents, _ := os.ReadDir(filepath.Join(d.DataRoot, "tmp", "unpack")); len(ents) != 0 {
		t.Errorf("staged layers left: %d", len(ents))
	}
}

// On vfs, where layers cannot be staged ahead of their parents, a pull
// unpacks in order and starts no extraction that then declines: in the
// progress stream (POST /images/create, as the docker CLI reads it) each
// layer's extraction comes after its download and shows no "Extracting"
// at 0 bytes (the extraction that declined used to show one before the
// real one started), and the image runs.
func TestPullOnVfs(t *testing.T) {
	d := daemonWithBusybox(t, "--storage-driver", "vfs")
	reg := testutil.StartRegistry(t, binDir)
	name := reg.Addr + "/bb:vfs"
	mustCfgBerth(t, d, "tag", "busybox", name)
	mustCfgBerth(t, d, "push", name)
	mustCfgBerth(t, d, "rmi", "busybox", name)
	req, _ := http.NewRequest(http.MethodPost, "http://berth/v1.47/images/create?fromImage="+url.QueryEscape(reg.Addr+"/bb")+"&tag=vfs", nil)
	resp, err := d.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Downloaded newer image") {
		t.Fatalf("pull: %d\n%s", resp.StatusCode, body)
	}
	seen := map[string]string{} // layer ID → last status
	extracted := 0
	for _, l := range lines(string(body)) {
		var m struct {
			ID, Status     string
			ProgressDetail struct{ Current int64 }
		}
		if json.Unmarshal([]byte(l), &m) != nil || len(m.ID) != 12 {
			continue
		}
		if m.Status == "Extracting" {
			if prev := seen[m.ID]; prev != "Download complete" && prev != "Extracting" {
				t.Errorf("layer %s: Extracting after %q", m.ID, prev)
			}
			if m.ProgressDetail.Current == 0 {
				t.Errorf("layer %s: an extraction at 0 bytes: %s", m.ID, l)
			}
			extracted++
		}
		seen[m.ID] = m.Status
	}
	if extracted == 0 {
		t.Errorf("no extraction progress:\n%s", body)
	}
	if got := mustCfgBerth(t, d, "run", "--rm", name, "echo", "vfs"); got != "vfs\n" {
		t.Errorf("run: %q", got)
	}
}
