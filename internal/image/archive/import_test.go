package archive_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/content"
	"github.com/berth-engine/berth/internal/image"
	"github.com/berth-engine/berth/internal/image/archive"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func sortStrings(s []string) { sort.Strings(s) }

func mustParse(t *testing.T, s string) reference.Named {
	t.Helper()
	r, err := image.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func importTar(t *testing.T, s *stores, data []byte, opts archive.ImportOptions) *image.Image {
	t.Helper()
	img, err := archive.Import(context.Background(), s.cs, s.is, bytes.NewReader(data), opts)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	return img
}

func TestImport(t *testing.T) {
	ctx := context.Background()
	plain := rootfs(t, "import")
	diffID := digest.FromBytes(plain)
	for name, data := range map[string][]byte{
		"plain": plain,
		"gzip":  gz(t, plain),
		"zstd":  zst(t, plain),
		"bzip2": viaCommand(t, plain, "bzip2", "-c"),
		"xz":    viaCommand(t, plain, "xz", "-c"),
	} {
		t.Run(name, func(t *testing.T) {
			s := newStores(t)
			img := importTar(t, s, data, archive.ImportOptions{Ref: mustParse(t, "imported:"+name)})
			// The layer is the uncompressed tar, byte for byte.
			if len(img.Layers) != 1 || img.Layers[0].Digest != diffID || img.Layers[0].MediaType != ocispec.MediaTypeImageLayer || img.Layers[0].Size != int64(len(plain)) {
				t.Errorf("layers %+v", img.Layers)
			}
			rc, err := s.cs.Open(ctx, diffID)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if !bytes.Equal(got, plain) {
				t.Error("stored layer differs from the input tar")
			}
			cfg := img.Config
			if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH || cfg.Created == nil ||
				cfg.RootFS.Type != "layers" || len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != diffID ||
				len(cfg.History) != 1 || cfg.History[0].Comment != "Imported from -" || cfg.History[0].EmptyLayer {
				t.Errorf("config %+v", cfg)
			}
			// The record, the config blob and the manifest agree.
			raw, err := content.ReadBlob(ctx, s.cs, img.ID, image.MaxConfigSize)
			if err != nil || digest.FromBytes(raw) != img.ID {
				t.Fatalf("config blob: %v", err)
			}
			var m ocispec.Manifest
			mraw, err := content.ReadBlob(ctx, s.cs, img.Manifest, image.MaxConfigSize)
			if err != nil || json.Unmarshal(mraw, &m) != nil {
				t.Fatalf("manifest blob: %v", err)
			}
			if m.MediaType != ocispec.MediaTypeImageManifest || m.Config.Digest != img.ID || m.Config.MediaType != ocispec.MediaTypeImageConfig ||
				len(m.Layers) != 1 || m.Layers[0].Digest != diffID || m.Layers[0].Size != int64(len(plain)) {
				t.Errorf("manifest %s", mraw)
			}
			got2, err := s.is.Resolve(ctx, "imported:"+name)
			if err != nil || got2.ID != img.ID {
				t.Errorf("Resolve: %v, %v", got2, err)
			}
			if st := s.state(t); len(st.blobs) != 3 || len(st.files) != 3 {
				t.Errorf("stores: %s", st)
			}
		})
	}
}

func TestImportOptions(t *testing.T) {
	s := newStores(t)
	img := importTar(t, s, rootfs(t, "opts"), archive.ImportOptions{
		Changes:  []string{`CMD ["echo", "from cmd"]`, "ENV GREETING=hi", "WORKDIR /tmp", "LABEL a=b"},
		Message:  "my message",
		Platform: &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"},
	})
	c := img.Config
	if strings.Join(c.Config.Cmd, " ") != "echo from cmd" || c.Config.Env[0] != "GREETING=hi" || c.Config.WorkingDir != "/tmp" ||
		c.Config.Labels["a"] != "b" || c.History[0].Comment != "my message" || c.Architecture != "arm64" || c.Variant != "v8" {
		t.Errorf("config %+v", c)
	}
	if refs, _ := s.is.References(context.Background(), img.ID); len(refs) != 0 {
		t.Errorf("untagged import has refs %v", refs)
	}
	// Importing the same tar again shares the layer blob.
	img2 := importTar(t, s, rootfs(t, "opts"), archive.ImportOptions{})
	if img2.Layers[0].Digest != img.Layers[0].Digest || img2.ID == img.ID {
		t.Errorf("second import: %s %s", img2.ID, img2.Layers[0].Digest)
	}
}

// Bad input fails with invalid argument and stores nothing.
func TestImportRejects(t *testing.T) {
	good := rootfs(t, "bad")
	digestRef, _ := reference.ParseNormalizedNamed("busybox@" + digest.FromString("x").String())
	cases := []struct {
		name string
		data []byte
		opts archive.ImportOptions
		msg  string
	}{
		{"text", []byte("definitely not a tar archive, just text\n"), archive.ImportOptions{}, "not a tar archive"},
		{"garbage", bytes.Repeat([]byte("x"), 5000), archive.ImportOptions{}, "not a tar archive"},
		{"empty", nil, archive.ImportOptions{}, "empty"},
		{"truncated", good[:len(good)/2], archive.ImportOptions{}, "truncated"},
		{"truncated gzip", gz(t, good)[:300], archive.ImportOptions{}, ""},
		{"corrupt gzip", append(gz(t, good)[:20], bytes.Repeat([]byte{0}, 100)...), archive.ImportOptions{}, ""},
		{"bad change", good, archive.ImportOptions{Changes: []string{"RUN echo no"}}, "RUN is not a valid change command"},
		{"windows", good, archive.ImportOptions{Platform: &ocispec.Platform{OS: "windows", Architecture: "amd64"}}, "cannot be used on this platform"},
		{"digest ref", good, archive.ImportOptions{Ref: digestRef}, "digest"},
		{"sha256 name", good, archive.ImportOptions{Ref: mustParse(t, "sha256:1")}, "ambiguous"},
	}
	s := newStores(t)
	for _, tc := range cases {
		_, err := archive.Import(context.Background(), s.cs, s.is, bytes.NewReader(tc.data), tc.opts)
		t.Logf("%s: %v", tc.name, err)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: error %v, want invalid argument", tc.name, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: error %q lacks %q", tc.name, err, tc.msg)
		}
		if st := s.state(t); len(st.files) != 0 || len(st.images) != 0 {
			t.Fatalf("%s left state: %s", tc.name, st)
		}
	}
}

func TestOpenLayer(t *testing.T) {
	ctx := context.Background()
	s := newStores(t)
	plain := rootfs(t, "open")
	for _, blob := range [][]byte{plain, gz(t, plain), zst(t, plain)} {
		w, err := s.cs.Writer(ctx)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(blob)
		d, err := w.Commit(ctx, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		// The media type is ignored: the content says what it is.
		rc, err := archive.OpenLayer(ctx, s.cs, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: int64(len(blob))})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		if err != nil || !bytes.Equal(got, plain) {
			t.Errorf("OpenLayer of %s: %v", d, err)
		}
		if err := rc.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	if _, err := archive.OpenLayer(ctx, s.cs, ocispec.Descriptor{Digest: digest.FromString("missing")}); !errdefs.IsNotFound(err) {
		t.Errorf("OpenLayer of a missing blob = %v", err)
	}
}

// The config carries docker's top-level comment, and reads back as the
// same DockerOCIImage the record holds.
func TestImportConfigJSON(t *testing.T) {
	s := newStores(t)
	img := importTar(t, s, rootfs(t, "json"), archive.ImportOptions{Message: "hello", Changes: []string{"CMD [\"sh\"]"}})
	raw, err := content.ReadBlob(context.Background(), s.cs, img.ID, image.MaxConfigSize)
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]any
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"created", "architecture", "os", "config", "rootfs", "history"} {
		if _, ok := top[k]; !ok {
			t.Errorf("config lacks %q: %s", k, raw)
		}
	}
	if top["comment"] != "hello" {
		t.Errorf("comment %v", top["comment"])
	}
	var back image.Image
	if err := json.Unmarshal(raw, &back.Config); err != nil {
		t.Fatal(err)
	}
	if back.Config.Config.Cmd[0] != "sh" || back.Config.RootFS.DiffIDs[0] != img.Config.RootFS.DiffIDs[0] || !back.Config.Created.Equal(*img.Config.Created) {
		t.Errorf("config reads back as %+v", back.Config)
	}
}
