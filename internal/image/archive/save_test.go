package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/image"
	"github.com/berth-engine/berth/internal/image/archive"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func save(t *testing.T, s *stores, items ...archive.SaveItem) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := archive.Save(context.Background(), s.cs, &b, items); err != nil {
		t.Fatalf("Save: %v", err)
	}
	return b.Bytes()
}

func refs(t *testing.T, names ...string) []reference.Named {
	var out []reference.Named
	for _, n := range names {
		out = append(out, mustParse(t, n))
	}
	return out
}

func TestSaveFormat(t *testing.T) {
	s := newStores(t)
	a := importTar(t, s, rootfs(t, "a"), archive.ImportOptions{Ref: mustParse(t, "busybox")})
	b := importTar(t, s, rootfs(t, "b"), archive.ImportOptions{})
	data := save(t, s,
		archive.SaveItem{Image: a, Refs: refs(t, "busybox:latest", "example.com:5000/team/app:v1")},
		archive.SaveItem{Image: b},
		archive.SaveItem{Image: a, Refs: refs(t, "busybox")}, // same image and tag again: merged
	)
	hdrs, files := readTar(t, data)

	// Entry order and headers: sorted, fixed metadata.
	var names []string
	for _, h := range hdrs {
		names = append(names, h.Name)
		if !h.ModTime.Equal(time.Unix(0, 0)) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: header %+v", h.Name, h)
		}
		if (h.Typeflag == tar.TypeDir) != strings.HasSuffix(h.Name, "/") {
			t.Errorf("%s: type %c", h.Name, h.Typeflag)
		}
	}
	blobs := []string{a.ID.Encoded(), a.Manifest.Encoded(), a.Layers[0].Digest.Encoded(), b.ID.Encoded(), b.Manifest.Encoded(), b.Layers[0].Digest.Encoded()}
	sort.Strings(blobs)
	want := []string{"blobs/", "blobs/sha256/"}
	for _, d := range blobs {
		want = append(want, "blobs/sha256/"+d)
	}
	want = append(want, "index.json", "manifest.json", "oci-layout", "repositories")
	if strings.Join(names, "\n") != strings.Join(want, "\n") {
		t.Fatalf("entries:\n%s\nwant:\n%s", strings.Join(names, "\n"), strings.Join(want, "\n"))
	}
	for name, content := range files {
		if strings.HasPrefix(name, "blobs/sha256/") && len(name) > len("blobs/sha256/") {
			if digest.FromBytes(content).Encoded() != strings.TrimPrefix(name, "blobs/sha256/") {
				t.Errorf("%s does not hash to its name", name)
			}
		}
	}

	if got := string(files["oci-layout"]); got != `{"imageLayoutVersion": "1.0.0"}` {
		t.Errorf("oci-layout %q", got)
	}
	wantManifest := fmt.Sprintf(`[{"Config":"blobs/sha256/%s","RepoTags":["busybox:latest","example.com:5000/team/app:v1"],"Layers":["blobs/sha256/%s"]},{"Config":"blobs/sha256/%s","RepoTags":null,"Layers":["blobs/sha256/%s"]}]`+"\n",
		a.ID.Encoded(), a.Layers[0].Digest.Encoded(), b.ID.Encoded(), b.Layers[0].Digest.Encoded())
	if got := string(files["manifest.json"]); got != wantManifest {
		t.Errorf("manifest.json\n%s\nwant\n%s", got, wantManifest)
	}
	wantRepos := fmt.Sprintf(`{"busybox":{"latest":"%s"},"example.com:5000/team/app":{"v1":"%s"}}`+"\n", a.Layers[0].Digest.Encoded(), a.Layers[0].Digest.Encoded())
	if got := string(files["repositories"]); got != wantRepos {
		t.Errorf("repositories %s, want %s", got, wantRepos)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	if idx.SchemaVersion != 2 || idx.MediaType != ocispec.MediaTypeImageIndex || len(idx.Manifests) != 3 {
		t.Fatalf("index.json %s", files["index.json"])
	}
	wantAnn := []map[string]string{
		{"io.containerd.image.name": "docker.io/library/busybox:latest", "org.opencontainers.image.ref.name": "latest"},
		{"io.containerd.image.name": "example.com:5000/team/app:v1", "org.opencontainers.image.ref.name": "v1"},
		nil,
	}
	wantMfst := []digest.Digest{a.Manifest, a.Manifest, b.Manifest}
	for i, d := range idx.Manifests {
		if d.MediaType != ocispec.MediaTypeImageManifest || d.Digest != wantMfst[i] || d.Size != int64(len(files["blobs/sha256/"+d.Digest.Encoded()])) ||
			fmt.Sprint(d.Annotations) != fmt.Sprint(wantAnn[i]) {
			t.Errorf("index entry %d: %+v", i, d)
		}
	}

	// Deterministic: the same save gives the same bytes.
	again := save(t, s,
		archive.SaveItem{Image: a, Refs: refs(t, "busybox:latest", "example.com:5000/team/app:v1")},
		archive.SaveItem{Image: b})
	if !bytes.Equal(again, data) {
		t.Error("a second save differs")
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	src := newStores(t)
	a := importTar(t, src, rootfs(t, "a"), archive.ImportOptions{Ref: mustParse(t, "busybox"), Changes: []string{"CMD [\"sh\"]"}})
	b := importTar(t, src, rootfs(t, "b"), archive.ImportOptions{})
	data := save(t, src, archive.SaveItem{Image: a, Refs: refs(t, "busybox", "copy:1")}, archive.SaveItem{Image: b})

	variants := map[string][]byte{
		"as saved":           data,
		"OCI only":           rewriteTar(t, data, func(e *tarEntry) bool { return e.name != "manifest.json" && e.name != "repositories" }),
		"manifest.json only": rewriteTar(t, data, func(e *tarEntry) bool { return e.name != "index.json" && e.name != "oci-layout" }),
	}
	for name, d := range variants {
		t.Run(name, func(t *testing.T) {
			dst := newStores(t)
			res := load(t, dst, d)
			if len(res.Images) != 2 || res.Images[0].ID != a.ID || res.Images[1].ID != b.ID {
				t.Fatalf("result %+v", res)
			}
			if got := strings.Join(refNames(res.Images[0]), ","); got != "busybox:latest,copy:1" {
				t.Errorf("tags %s", got)
			}
			if len(res.Images[1].Refs) != 0 {
				t.Errorf("untagged image got %v", res.Images[1].Refs)
			}
			for _, orig := range []*image.Image{a, b} {
				got, err := dst.is.Get(context.Background(), orig.ID)
				if err != nil {
					t.Fatal(err)
				}
				if got.Manifest != orig.Manifest || fmt.Sprint(got.Layers) != fmt.Sprint(orig.Layers) {
					t.Errorf("loaded %+v, saved %+v", got, orig)
				}
			}
			// And saving the loaded images gives the same tarball.
			if name == "as saved" {
				a2, _ := dst.is.Get(context.Background(), a.ID)
				b2, _ := dst.is.Get(context.Background(), b.ID)
				if again := save(t, dst, archive.SaveItem{Image: a2, Refs: refs(t, "busybox", "copy:1")}, archive.SaveItem{Image: b2}); !bytes.Equal(again, data) {
					t.Error("save after load differs")
				}
			}
		})
	}
}

// Layers stored compressed (from a pull or an OCI archive) are saved
// uncompressed, under their diff IDs.
func TestSaveDecompressesLayers(t *testing.T) {
	l0, l1 := rootfs(t, "c"), upper(t, "c")
	fx := newFixture(t, "c", [][]byte{l0, l1})
	shared := newFixture(t, "s", [][]byte{l0})
	src := newStores(t)
	load(t, src, ociLayout(t,
		ociEntry{fx: fx, compressed: [][]byte{gz(t, l0), zst(t, l1)}, mediaTypes: []string{ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd},
			annotations: map[string]string{"io.containerd.image.name": "docker.io/library/c:1"}},
		ociEntry{fx: shared, compressed: [][]byte{gz(t, l0)}, mediaTypes: []string{ocispec.MediaTypeImageLayerGzip}},
	))
	img, err := src.is.Get(context.Background(), fx.id)
	if err != nil {
		t.Fatal(err)
	}
	simg, _ := src.is.Get(context.Background(), shared.id)
	data := save(t, src, archive.SaveItem{Image: img, Refs: refs(t, "c:1")}, archive.SaveItem{Image: simg})
	_, files := readTar(t, data)
	for i, d := range fx.diffIDs {
		if !bytes.Equal(files["blobs/sha256/"+d.Encoded()], fx.plain[i]) {
			t.Errorf("layer %d not saved uncompressed under its diff ID", i)
		}
	}
	// The shared base layer is written once; 2 layers, 2 configs, 2 manifests.
	blobs := 0
	for name := range files {
		if strings.HasPrefix(name, "blobs/sha256/") && name != "blobs/sha256/" {
			blobs++
		}
	}
	if blobs != 6 {
		t.Errorf("%d blobs", blobs)
	}
	dst := newStores(t)
	res := load(t, dst, data)
	if res.Images[0].ID != fx.id || res.Images[1].ID != shared.id {
		t.Errorf("reloaded %+v", res)
	}
	checkImage(t, dst, fx, ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayer)
}

func TestSaveErrors(t *testing.T) {
	ctx := context.Background()
	s := newStores(t)
	a := importTar(t, s, rootfs(t, "a"), archive.ImportOptions{})
	var b bytes.Buffer
	if err := archive.Save(ctx, s.cs, &b, []archive.SaveItem{{}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("nil image: %v", err)
	}
	// A missing layer blob.
	broken := *a
	broken.Layers = []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromString("gone"), Size: 4}}
	if err := archive.Save(ctx, s.cs, &b, []archive.SaveItem{{Image: &broken}}); !errdefs.IsNotFound(err) {
		t.Errorf("missing layer: %v", err)
	}
	// A layer that is not what the config says.
	other := importTar(t, s, rootfs(t, "other"), archive.ImportOptions{})
	broken = *a
	broken.Layers = other.Layers
	if err := archive.Save(ctx, s.cs, &b, []archive.SaveItem{{Image: &broken}}); err == nil || !strings.Contains(err.Error(), "diff ID") {
		t.Errorf("wrong layer: %v", err)
	}
	// A missing config blob.
	if err := s.cs.Delete(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if err := archive.Save(ctx, s.cs, &b, []archive.SaveItem{{Image: a}}); !errdefs.IsNotFound(err) {
		t.Errorf("missing config: %v", err)
	}
}

// A real busybox image survives import → save → load → save unchanged.
func TestBusyboxRoundTrip(t *testing.T) {
	bb := busyboxTar(t)
	src := newStores(t)
	img := importTar(t, src, gz(t, bb), archive.ImportOptions{Ref: mustParse(t, "busybox")})
	data := save(t, src, archive.SaveItem{Image: img, Refs: refs(t, "busybox")})
	if !bytes.Contains(data, []byte("root:x:0:0")) {
		t.Error("saved layers are not plain tar")
	}
	dst := newStores(t)
	res := load(t, dst, data)
	if len(res.Images) != 1 || res.Images[0].ID != img.ID {
		t.Fatalf("%+v", res)
	}
	got, _ := dst.is.Resolve(context.Background(), "busybox:latest")
	if got == nil || got.ID != img.ID {
		t.Fatalf("Resolve: %v", got)
	}
	if again := save(t, dst, archive.SaveItem{Image: got, Refs: refs(t, "busybox")}); !bytes.Equal(again, data) {
		t.Error("second save differs")
	}
}
