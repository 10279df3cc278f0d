package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
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

func load(t *testing.T, s *stores, data []byte) *archive.LoadResult {
	t.Helper()
	res, err := archive.Load(context.Background(), s.cs, s.is, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return res
}

func refNames(res archive.LoadedImage) []string {
	var out []string
	for _, r := range res.Refs {
		out = append(out, image.FamiliarString(r))
	}
	return out
}

// checkImage verifies an image is recorded as fx describes, its blobs are
// in the content store, and its layers read back as fx's layers.
func checkImage(t *testing.T, s *stores, fx *fixture, wantMediaTypes ...string) *image.Image {
	t.Helper()
	ctx := context.Background()
	img, err := s.is.Get(ctx, fx.id)
	if err != nil {
		t.Fatalf("Get %s: %v", fx.id, err)
	}
	raw, err := content.ReadBlob(ctx, s.cs, fx.id, image.MaxConfigSize)
	if err != nil || !bytes.Equal(raw, fx.config) {
		t.Errorf("config blob: %v (equal %v)", err, bytes.Equal(raw, fx.config))
	}
	if !reflect.DeepEqual(img.Config.RootFS.DiffIDs, fx.diffIDs) {
		t.Errorf("diff IDs %v, want %v", img.Config.RootFS.DiffIDs, fx.diffIDs)
	}
	if len(img.Layers) != len(fx.plain) {
		t.Fatalf("%d layers, want %d", len(img.Layers), len(fx.plain))
	}
	for i, l := range img.Layers {
		if len(wantMediaTypes) > i && l.MediaType != wantMediaTypes[i] {
			t.Errorf("layer %d media type %s, want %s", i, l.MediaType, wantMediaTypes[i])
		}
		info, err := s.cs.Info(ctx, l.Digest)
		if err != nil || info.Size != l.Size {
			t.Errorf("layer %d blob: %+v, %v (descriptor size %d)", i, info, err, l.Size)
		}
		rc, err := archive.OpenLayer(ctx, s.cs, l)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, fx.plain[i]) {
			t.Errorf("layer %d reads back differently (%v)", i, err)
		}
	}
	if img.Manifest == "" {
		t.Fatal("no manifest")
	}
	mraw, err := content.ReadBlob(ctx, s.cs, img.Manifest, image.MaxConfigSize)
	if err != nil {
		t.Fatalf("manifest blob: %v", err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mraw, &m); err != nil {
		t.Fatal(err)
	}
	if m.Config.Digest != fx.id || m.Config.Size != int64(len(fx.config)) || len(m.Layers) != len(img.Layers) {
		t.Errorf("manifest %s", mraw)
	}
	for i, l := range m.Layers {
		if l.Digest != img.Layers[i].Digest || l.Size != img.Layers[i].Size || l.MediaType != img.Layers[i].MediaType {
			t.Errorf("manifest layer %d = %+v, image layer %+v", i, l, img.Layers[i])
		}
	}
	if img.Added.IsZero() {
		t.Error("Added not set")
	}
	return img
}

func checkRefs(t *testing.T, s *stores, id digest.Digest, want ...string) {
	t.Helper()
	refs, err := s.is.References(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range refs {
		got = append(got, image.FamiliarString(r))
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("references of %s = %v, want %v", id, got, want)
	}
}

func TestLoadLegacyLayout(t *testing.T) {
	base := rootfs(t, "base")
	a := newFixture(t, "a", [][]byte{base, upper(t, "a")}, "busybox:latest", "busybox:1.36")
	b := newFixture(t, "b", [][]byte{base, upper(t, "b")}, "example.com:5000/team/app:v1")
	// The same layer twice: docker's legacy save links the second copy.
	c := newFixture(t, "c", [][]byte{upper(t, "c"), upper(t, "c")})
	data := legacySave(t, a, b, c)
	hdrs, _ := readTar(t, data)
	links := 0
	for _, h := range hdrs {
		if h.Typeflag == tar.TypeSymlink {
			links++
		}
	}
	if links != 1 {
		t.Fatalf("fixture: %d layer.tar symlinks, want 1", links)
	}

	s := newStores(t)
	res := load(t, s, data)
	if len(res.Images) != 3 || len(res.Moved) != 0 {
		t.Fatalf("result %+v", res)
	}
	wantTags := [][]string{{"busybox:latest", "busybox:1.36"}, {"example.com:5000/team/app:v1"}, nil}
	for i, fx := range []*fixture{a, b, c} {
		if res.Images[i].ID != fx.id || !reflect.DeepEqual(refNames(res.Images[i]), wantTags[i]) {
			t.Errorf("image %d: %s %v", i, res.Images[i].ID, refNames(res.Images[i]))
		}
		checkImage(t, s, fx, ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayer)
	}
	checkRefs(t, s, a.id, "busybox:1.36", "busybox:latest")
	img, err := s.is.Resolve(context.Background(), "example.com:5000/team/app:v1")
	if err != nil || img.ID != b.id {
		t.Errorf("Resolve = %v, %v", img, err)
	}
	// Blobs: 4 distinct layers (base shared), 3 configs, 3 manifests.
	if st := s.state(t); len(st.blobs) != 10 {
		t.Errorf("%d blobs: %v", len(st.blobs), st.blobs)
	}

	// Loading again changes nothing and moves nothing.
	before := s.state(t)
	res = load(t, s, data)
	if len(res.Moved) != 0 {
		t.Errorf("reload moved %v", res.Moved)
	}
	if after := s.state(t); after.String() != before.String() {
		t.Errorf("reload changed the stores:\n%s\n%s", before, after)
	}
}

func TestLoadDocker25Layout(t *testing.T) {
	a := newFixture(t, "a", [][]byte{rootfs(t, "a"), upper(t, "a")}, "busybox:latest")
	u := newFixture(t, "u", [][]byte{rootfs(t, "u")}) // untagged
	data := docker25Save(t, a, u)
	s := newStores(t)
	res := load(t, s, data)
	if len(res.Images) != 2 || res.Images[0].ID != a.id || res.Images[1].ID != u.id {
		t.Fatalf("result %+v", res)
	}
	if got := refNames(res.Images[0]); len(got) != 1 || got[0] != "busybox:latest" {
		t.Errorf("tags %v", got)
	}
	if len(res.Images[1].Refs) != 0 {
		t.Errorf("untagged image got %v", res.Images[1].Refs)
	}
	img := checkImage(t, s, a, ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayer)
	checkImage(t, s, u)
	// The archive's own manifest is kept, so its digest is stable.
	_, files := readTar(t, data)
	var idx ocispec.Index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	if img.Manifest != idx.Manifests[0].Digest {
		t.Errorf("manifest %s, archive's %s", img.Manifest, idx.Manifests[0].Digest)
	}
	// The legacy v1 layer configs in blobs/ are not stored.
	if st := s.state(t); len(st.blobs) != 7 {
		t.Errorf("%d blobs (want 3 layers, 2 configs, 2 manifests): %v", len(st.blobs), st.blobs)
	}
}

// Without manifest.json a Docker 25+ save is a plain OCI layout; tags then
// come from the index annotations.
func TestLoadDocker25WithoutManifestJSON(t *testing.T) {
	a := newFixture(t, "a", [][]byte{rootfs(t, "a")}, "busybox:latest", "team/app:2")
	data := rewriteTar(t, docker25Save(t, a), func(e *tarEntry) bool { return e.name != "manifest.json" })
	s := newStores(t)
	res := load(t, s, data)
	if len(res.Images) != 1 || strings.Join(refNames(res.Images[0]), ",") != "busybox:latest,team/app:2" {
		t.Fatalf("result %+v", res)
	}
	checkImage(t, s, a)
}

func TestLoadOCILayout(t *testing.T) {
	l0, l1 := rootfs(t, "oci"), upper(t, "oci")
	a := newFixture(t, "a", [][]byte{l0, l1})
	b := newFixture(t, "b", [][]byte{l0})
	c := newFixture(t, "c", [][]byte{upper(t, "c")})
	data := ociLayout(t,
		ociEntry{fx: a, compressed: [][]byte{gz(t, l0), zst(t, l1)},
			mediaTypes:  []string{ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd},
			annotations: map[string]string{"io.containerd.image.name": "docker.io/library/multi:1", ocispec.AnnotationRefName: "1"},
			multiArch:   true},
		ociEntry{fx: b, compressed: [][]byte{gz(t, l0)}, mediaTypes: []string{"application/vnd.docker.image.rootfs.diff.tar.gzip"},
			annotations: map[string]string{ocispec.AnnotationRefName: "example.com/app:2"}},
		// A bare tag names no repository: the image loads untagged.
		ociEntry{fx: c, compressed: [][]byte{upper(t, "c")}, mediaTypes: []string{ocispec.MediaTypeImageLayer},
			annotations: map[string]string{ocispec.AnnotationRefName: "latest"}},
	)
	s := newStores(t)
	res := load(t, s, data)
	if len(res.Images) != 3 {
		t.Fatalf("result %+v", res)
	}
	if got := refNames(res.Images[0]); strings.Join(got, ",") != "multi:1" {
		t.Errorf("a tags %v", got)
	}
	if got := refNames(res.Images[1]); strings.Join(got, ",") != "example.com/app:2" {
		t.Errorf("b tags %v", got)
	}
	if len(res.Images[2].Refs) != 0 {
		t.Errorf("c tags %v", res.Images[2].Refs)
	}
	checkImage(t, s, a, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd)
	checkImage(t, s, b, "application/vnd.docker.image.rootfs.diff.tar.gzip")
	checkImage(t, s, c, ocispec.MediaTypeImageLayer)
}

// Compressed layer.tar files in the legacy layout: gzip and zstd are kept
// as they are, bzip2 and xz (no OCI media type) are stored uncompressed.
func TestLoadCompressedLegacyLayers(t *testing.T) {
	l := [][]byte{rootfs(t, "g"), upper(t, "z"), upper(t, "b"), upper(t, "x")}
	fx := newFixture(t, "comp", l, "comp:1")
	fx.layers = [][]byte{gz(t, l[0]), zst(t, l[1]), viaCommand(t, l[2], "bzip2", "-c"), viaCommand(t, l[3], "xz", "-c")}
	s := newStores(t)
	load(t, s, legacySave(t, fx))
	checkImage(t, s, fx, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd, ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayer)
	img, _ := s.is.Get(context.Background(), fx.id)
	if img.Layers[0].Digest != digest.FromBytes(fx.layers[0]) || img.Layers[2].Digest != fx.diffIDs[2] {
		t.Errorf("layers %+v", img.Layers)
	}
	// No stray bzip2/xz copies: 4 layers, a config, a manifest.
	if st := s.state(t); len(st.blobs) != 6 || len(st.files) != 6 {
		t.Errorf("stores: %s", st)
	}
}

// Entries may come in any order.
func TestLoadAnyEntryOrder(t *testing.T) {
	a := newFixture(t, "a", [][]byte{rootfs(t, "a"), upper(t, "a")}, "a:1")
	for name, data := range map[string][]byte{"legacy": legacySave(t, a), "docker25": docker25Save(t, a)} {
		hdrs, files := readTar(t, data)
		var rev []tarEntry
		for i := len(hdrs) - 1; i >= 0; i-- {
			h := hdrs[i]
			rev = append(rev, tarEntry{name: h.Name, typ: h.Typeflag, data: files[h.Name], link: h.Linkname})
		}
		s := newStores(t)
		res := load(t, s, writeTar(t, rev))
		if len(res.Images) != 1 || res.Images[0].ID != a.id {
			t.Errorf("%s reversed: %+v", name, res)
		}
		checkImage(t, s, a)
	}
}

func TestLoadMovesTags(t *testing.T) {
	s := newStores(t)
	old := newFixture(t, "old", [][]byte{rootfs(t, "old")}, "busybox:latest", "keep:1")
	load(t, s, docker25Save(t, old))
	nu := newFixture(t, "new", [][]byte{rootfs(t, "new")}, "busybox:latest")
	res := load(t, s, docker25Save(t, nu))
	if len(res.Moved) != 1 || image.FamiliarString(res.Moved[0].Ref) != "busybox:latest" || res.Moved[0].OldID != old.id {
		t.Fatalf("Moved = %+v", res.Moved)
	}
	checkRefs(t, s, nu.id, "busybox:latest")
	checkRefs(t, s, old.id, "keep:1")
}

// badCase is an archive Load must refuse.
type badCase struct {
	name string
	data []byte
	msg  string // a substring the error must contain
}

func badArchives(t *testing.T) []badCase {
	a := newFixture(t, "a", [][]byte{rootfs(t, "a"), upper(t, "a")}, "busybox:latest")
	legacy := legacySave(t, a)
	d25 := docker25Save(t, a)
	var cases []badCase
	add := func(name string, data []byte, msg string) { cases = append(cases, badCase{name, data, msg}) }

	for _, cut := range []int{0, 100, 512, 1024, len(d25) / 3, len(d25) / 2, len(d25) - 1536, len(d25) - 700} {
		// Cut before the end-of-archive marker: some entry is incomplete
		// or a required file is missing.
		add(fmt.Sprintf("docker25 truncated at %d", cut), d25[:cut], "")
	}
	for _, cut := range []int{len(legacy) / 4, len(legacy) / 2} {
		add(fmt.Sprintf("legacy truncated at %d", cut), legacy[:cut], "")
	}
	add("not a tar", []byte("this is not a tarball at all, just some text that goes on for a while"), "not a tar archive")
	add("garbage block", bytes.Repeat([]byte{0x42}, 2048), "not a tar archive")
	add("empty tar", writeTar(t, nil), "neither manifest.json nor index.json")

	corrupt := func(data []byte, fn func(e *tarEntry) bool) []byte { return rewriteTar(t, data, fn) }
	flip := func(b []byte) []byte {
		c := append([]byte(nil), b...)
		i := bytes.Index(c, []byte("root:x:0:0"))
		copy(c[i:], "toor")
		return c
	}
	add("docker25 layer bytes changed", corrupt(d25, func(e *tarEntry) bool {
		if bytes.Contains(e.data, []byte("root:x:0:0")) {
			e.data = flip(e.data)
		}
		return true
	}), "digest mismatch")
	add("legacy layer bytes changed", corrupt(legacy, func(e *tarEntry) bool {
		if bytes.Contains(e.data, []byte("root:x:0:0")) {
			e.data = flip(e.data)
		}
		return true
	}), "digest mismatch")
	add("legacy config renamed", corrupt(legacy, func(e *tarEntry) bool {
		if e.name == a.id.Encoded()+".json" {
			e.name = digest.FromString("x").Encoded() + ".json"
		}
		if e.name == "manifest.json" {
			e.data = bytes.ReplaceAll(e.data, []byte(a.id.Encoded()), []byte(digest.FromString("x").Encoded()))
		}
		return true
	}), "digest mismatch")
	add("legacy config edited", corrupt(legacy, func(e *tarEntry) bool {
		if e.name == a.id.Encoded()+".json" {
			e.data = bytes.Replace(e.data, []byte("NAME=a"), []byte("NAME=b"), 1)
		}
		return true
	}), "digest mismatch")
	add("malformed manifest.json", corrupt(d25, func(e *tarEntry) bool {
		if e.name == "manifest.json" {
			e.data = []byte(`[{"Config": "blobs/sha256/`)
		}
		return true
	}), "manifest.json")
	add("null manifest.json", corrupt(d25, func(e *tarEntry) bool {
		if e.name == "manifest.json" {
			e.data = []byte("null")
		}
		return true
	}), "cannot be null")
	add("missing layer", corrupt(d25, func(e *tarEntry) bool {
		return e.name != "blobs/sha256/"+a.diffIDs[1].Encoded()
	}), "missing")
	add("missing config", corrupt(d25, func(e *tarEntry) bool {
		return e.name != "blobs/sha256/"+a.id.Encoded()
	}), "missing")
	add("manifest.json path escapes", corrupt(d25, func(e *tarEntry) bool {
		if e.name == "manifest.json" {
			e.data = bytes.Replace(e.data, []byte(`"blobs/sha256/`+a.diffIDs[0].Encoded()), []byte(`"../`+a.diffIDs[0].Encoded()), 1)
		}
		return true
	}), "leaves the archive")
	add("entry escapes", corrupt(d25, func(e *tarEntry) bool {
		if e.name == "oci-layout" {
			e.name = "../oci-layout"
		}
		return true
	}), "leaves the archive")
	add("absolute entry", corrupt(d25, func(e *tarEntry) bool {
		if e.name == "oci-layout" {
			e.name = "/etc/oci-layout"
		}
		return true
	}), "invalid path")
	add("symlink escapes", corrupt(legacy, func(e *tarEntry) bool {
		if strings.HasSuffix(e.name, "/layer.tar") && bytes.Contains(e.data, []byte("motd")) {
			e.typ, e.data, e.link = tar.TypeSymlink, nil, "../../../etc/passwd"
		}
		return true
	}), "leaves the archive")
	add("layer count mismatch", corrupt(d25, func(e *tarEntry) bool {
		if e.name == "manifest.json" {
			e.data = bytes.Replace(e.data, []byte(`,"blobs/sha256/`+a.diffIDs[1].Encoded()+`"`), nil, 1)
		}
		return true
	}), "layers length mismatch")
	add("invalid tag", corrupt(d25, func(e *tarEntry) bool {
		if e.name == "manifest.json" {
			e.data = bytes.Replace(e.data, []byte(`"busybox:latest"`), []byte(`"Busybox:latest"`), 1)
		}
		return true
	}), "invalid tag")
	add("tag without tag", corrupt(d25, func(e *tarEntry) bool {
		if e.name == "manifest.json" {
			e.data = bytes.Replace(e.data, []byte(`"busybox:latest"`), []byte(`"busybox"`), 1)
		}
		return true
	}), "invalid tag")
	add("duplicate entry", corrupt(d25, func(e *tarEntry) bool {
		if e.name == "repositories" {
			e.name = "oci-layout"
		}
		return true
	}), "two entries")
	add("docker25 unreferenced blob altered", corrupt(d25, func(e *tarEntry) bool {
		if strings.HasPrefix(e.name, "blobs/sha256/") && bytes.Contains(e.data, []byte(`"created":"1970-01-01T00:00:00Z"`)) {
			e.data = bytes.Replace(e.data, []byte("1970"), []byte("1971"), 1)
		}
		return true
	}), "digest mismatch")
	ociOnly := rewriteTar(t, d25, func(e *tarEntry) bool { return e.name != "manifest.json" })
	add("oci config altered in place", corrupt(ociOnly, func(e *tarEntry) bool {
		if e.name == "blobs/sha256/"+a.id.Encoded() {
			e.data = bytes.Replace(e.data, []byte("NAME=a"), []byte("NAME=b"), 1)
		}
		return true
	}), "digest mismatch")
	win := newFixture(t, "win", [][]byte{rootfs(t, "w")}, "win:1")
	win.config = bytes.Replace(win.config, []byte(`"os":"linux"`), []byte(`"os":"windows"`), 1)
	win.id = digest.FromBytes(win.config)
	add("windows image", docker25Save(t, win), "cannot load windows image")
	add("oci manifest size lies", corrupt(rewriteTar(t, d25, func(e *tarEntry) bool { return e.name != "manifest.json" }), func(e *tarEntry) bool {
		if e.name == "index.json" {
			var idx ocispec.Index
			_ = json.Unmarshal(e.data, &idx)
			idx.Manifests[0].Size++
			e.data, _ = json.Marshal(idx)
		}
		return true
	}), "descriptor says")
	return cases
}

// A load that fails changes nothing: no image, no tag, no new blob, no
// leftover ingest; blobs that were there before stay.
func TestLoadRejectsBadArchivesAndChangesNothing(t *testing.T) {
	s := newStores(t)
	// Something to keep: an earlier image sharing the base layer, and its tag.
	base := rootfs(t, "a")
	keep := newFixture(t, "keep", [][]byte{base}, "busybox:latest")
	load(t, s, docker25Save(t, keep))
	before := s.state(t)
	for _, tc := range badArchives(t) {
		_, err := archive.Load(context.Background(), s.cs, s.is, bytes.NewReader(tc.data))
		if err == nil {
			t.Errorf("%s: loaded", tc.name)
			continue
		}
		t.Logf("%s: %v", tc.name, err)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: error %v is not invalid argument", tc.name, err)
		}
		if tc.msg != "" && !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: error %q lacks %q", tc.name, err, tc.msg)
		}
		if after := s.state(t); after.String() != before.String() {
			t.Fatalf("%s changed the stores:\nbefore %s\nafter  %s", tc.name, before, after)
		}
	}
}

func TestLoadCancelled(t *testing.T) {
	s := newStores(t)
	a := newFixture(t, "a", [][]byte{rootfs(t, "a")}, "a:1")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := archive.Load(ctx, s.cs, s.is, bytes.NewReader(docker25Save(t, a)))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Load with a cancelled context = %v", err)
	}
	if st := s.state(t); len(st.files) != 0 || len(st.images) != 0 {
		t.Errorf("stores: %s", st)
	}
}

// A real busybox root filesystem, saved by docker 25 and by older docker,
// loads to the same image.
func TestLoadBusybox(t *testing.T) {
	bb := busyboxTar(t)
	fx := newFixture(t, "busybox", [][]byte{bb}, "busybox:latest")
	for name, data := range map[string][]byte{"legacy": legacySave(t, fx), "docker25": docker25Save(t, fx)} {
		s := newStores(t)
		res := load(t, s, data)
		if len(res.Images) != 1 || res.Images[0].ID != fx.id {
			t.Errorf("%s: %+v", name, res)
		}
		checkImage(t, s, fx)
	}
}

// Loading an image that is already here only adds tags: the record (and
// its compressed blobs from a pull) stay, nothing new is stored. A record
// whose blobs went missing is repaired.
func TestLoadExistingImage(t *testing.T) {
	ctx := context.Background()
	l0 := rootfs(t, "e")
	fx := newFixture(t, "e", [][]byte{l0})
	s := newStores(t)
	load(t, s, ociLayout(t, ociEntry{fx: fx, compressed: [][]byte{gz(t, l0)}, mediaTypes: []string{ocispec.MediaTypeImageLayerGzip}}))
	orig, _ := s.is.Get(ctx, fx.id)
	before := s.state(t)

	fx.tags = []string{"again:1"}
	res := load(t, s, docker25Save(t, fx))
	if len(res.Images) != 1 || strings.Join(refNames(res.Images[0]), ",") != "again:1" {
		t.Fatalf("result %+v", res)
	}
	got, _ := s.is.Get(ctx, fx.id)
	if got.Manifest != orig.Manifest || got.Layers[0].Digest != orig.Layers[0].Digest {
		t.Errorf("record changed: %+v", got)
	}
	if after := s.state(t); fmt.Sprint(after.blobs) != fmt.Sprint(before.blobs) {
		t.Errorf("blobs changed:\n%v\n%v", before.blobs, after.blobs)
	}

	// Lose the layer blob: the next load stores the image afresh.
	if err := s.cs.Delete(ctx, orig.Layers[0].Digest); err != nil {
		t.Fatal(err)
	}
	load(t, s, docker25Save(t, fx))
	checkImage(t, s, fx, ocispec.MediaTypeImageLayer)
}

// failingImages fails AddReference for one reference, to exercise the
// rollback of a load whose input was fine but whose store failed.
type failingImages struct {
	image.Store
	failOn string
}

func (f failingImages) AddReference(ctx context.Context, ref reference.Named, id digest.Digest) error {
	if image.FamiliarString(ref) == f.failOn {
		return errors.New("injected store failure")
	}
	return f.Store.AddReference(ctx, ref, id)
}

func TestLoadRollsBackOnStoreFailure(t *testing.T) {
	ctx := context.Background()
	s := newStores(t)
	old := newFixture(t, "old", [][]byte{rootfs(t, "old")}, "busybox:latest")
	load(t, s, docker25Save(t, old))
	before := s.state(t)

	nu := newFixture(t, "new", [][]byte{rootfs(t, "new"), upper(t, "new")}, "busybox:latest", "zzz:1")
	_, err := archive.Load(ctx, s.cs, failingImages{Store: s.is, failOn: "zzz:1"}, bytes.NewReader(docker25Save(t, nu)))
	if err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("Load = %v", err)
	}
	if errdefs.IsInvalidArgument(err) {
		t.Errorf("a store failure is reported as bad input: %v", err)
	}
	// busybox:latest went back to the old image; the new image and its
	// blobs are gone.
	if after := s.state(t); after.String() != before.String() {
		t.Errorf("stores after a failed load:\nbefore %s\nafter  %s", before, after)
	}
}
