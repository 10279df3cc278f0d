package integration

import (
	"archive/tar"
	"bytes"
	"io"
	"runtime"
	"strings"
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
