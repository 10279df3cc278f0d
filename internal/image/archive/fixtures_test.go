package archive_test

// Fixtures: docker-save tarballs built the way docker writes them
// (moby's image/tarexport), from small root filesystems.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/content"
	"github.com/berth-engine/berth/internal/image"
	"github.com/berth-engine/berth/internal/testutil"
	"github.com/klauspost/compress/zstd"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

type tarEntry struct {
	name string
	typ  byte
	data []byte
	link string
	mode int64
}

func file(name, data string) tarEntry {
	return tarEntry{name: name, typ: tar.TypeReg, data: []byte(data)}
}

func dir(name string) tarEntry { return tarEntry{name: name, typ: tar.TypeDir} }

func symlink(name, target string) tarEntry {
	return tarEntry{name: name, typ: tar.TypeSymlink, link: target}
}

// writeTar writes entries in the given order with fixed metadata.
func writeTar(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
			if e.typ == tar.TypeDir {
				mode = 0o755
			}
			if e.typ == tar.TypeSymlink {
				mode = 0o777
			}
		}
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: mode, Size: int64(len(e.data)), Linkname: e.link, ModTime: time.Unix(0, 0)}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// rootfs is a small root filesystem: directories, files, a symlink. seed
// varies the content so layers differ.
func rootfs(t testing.TB, seed string) []byte {
	return writeTar(t, []tarEntry{
		dir("bin/"), dir("etc/"), dir("var/"), dir("var/lib/"),
		file("bin/hello", "#!/bin/sh\necho hello from "+seed+"\n"),
		symlink("bin/hi", "hello"),
		file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
		file("etc/hostname", seed+"\n"),
		file("var/lib/data", strings.Repeat(seed, 3000)), // big enough to be streamed
	})
}

// upper is a second layer on top of rootfs.
func upper(t testing.TB, seed string) []byte {
	return writeTar(t, []tarEntry{
		dir("etc/"), file("etc/motd", "welcome to "+seed+"\n"), file("etc/.wh.hostname", ""),
	})
}

func gz(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func zst(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := zstd.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// viaCommand compresses with an external tool (bzip2, xz), which Go's
// library cannot write.
func viaCommand(t testing.TB, data []byte, name string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed", name)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out
}

// fixture is an image as a docker save tarball carries it.
type fixture struct {
	config  []byte
	id      digest.Digest
	diffIDs []digest.Digest
	layers  [][]byte // the layer files as they appear in the archive
	plain   [][]byte // the uncompressed layers
	tags    []string
}

// newFixture makes an image of the given uncompressed layers; stored, if
// not nil, replaces how each layer appears in the archive.
func newFixture(t testing.TB, name string, layers [][]byte, tags ...string) *fixture {
	t.Helper()
	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	cfg := dockerspec.DockerOCIImage{}
	cfg.Created = &created
	cfg.OS, cfg.Architecture = "linux", hostArch()
	cfg.Config.Cmd = []string{"/bin/hello"}
	cfg.Config.Env = []string{"PATH=/bin", "NAME=" + name}
	cfg.RootFS.Type = "layers"
	f := &fixture{layers: append([][]byte(nil), layers...), plain: layers, tags: tags}
	for i, l := range layers {
		d := digest.FromBytes(l)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, d)
		cfg.History = append(cfg.History, ocispec.History{Created: &created, CreatedBy: fmt.Sprintf("ADD layer %d of %s", i, name)})
		f.diffIDs = append(f.diffIDs, d)
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.config, f.id = raw, digest.FromBytes(raw)
	return f
}

func hostArch() string { return runtime.GOARCH }

func chainIDs(diffIDs []digest.Digest) []digest.Digest { return image.ChainIDs(diffIDs) }

// legacySave writes what docker save wrote up to Docker 24: per layer a
// directory named by its v1 ID with VERSION, json and layer.tar (a symlink
// to an earlier copy when the same layer content repeats), the config as
// <id>.json, manifest.json and repositories.
func legacySave(t testing.TB, fxs ...*fixture) []byte {
	t.Helper()
	files := map[string]tarEntry{}
	type mitem struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var manifest []mitem
	repos := map[string]map[string]string{}
	diffPaths := map[digest.Digest]string{}
	for _, f := range fxs {
		var parent string
		var layerPaths []string
		chains := chainIDs(f.diffIDs)
		for i := range f.layers {
			v1 := digest.FromString(fmt.Sprintf(`{"layer_id":%q,"parent":%q,"top":%v,"cfg":%q}`, chains[i], parent, i == len(f.layers)-1, f.id)).Encoded()
			if i < len(f.layers)-1 {
				// Lower layers' v1 IDs depend on the chain only, so
				// images sharing a base share these directories.
				v1 = digest.FromString(fmt.Sprintf(`{"layer_id":%q,"parent":%q}`, chains[i], parent)).Encoded()
			}
			v1json := fmt.Sprintf(`{"id":%q,`, v1)
			if parent != "" {
				v1json += fmt.Sprintf(`"parent":%q,`, parent)
			}
			v1json += `"created":"1970-01-01T00:00:00Z","container_config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},"os":"linux"}`
			files[v1+"/"] = dir(v1 + "/")
			files[v1+"/VERSION"] = file(v1+"/VERSION", "1.0")
			files[v1+"/json"] = file(v1+"/json", v1json)
			lp := v1 + "/layer.tar"
			if old, ok := diffPaths[f.diffIDs[i]]; ok && old != lp {
				files[lp] = symlink(lp, "../"+old)
			} else {
				files[lp] = tarEntry{name: lp, typ: tar.TypeReg, data: f.layers[i]}
				diffPaths[f.diffIDs[i]] = lp
			}
			layerPaths = append(layerPaths, lp)
			parent = v1
		}
		cfgName := f.id.Encoded() + ".json"
		files[cfgName] = tarEntry{name: cfgName, typ: tar.TypeReg, data: f.config}
		manifest = append(manifest, mitem{Config: cfgName, RepoTags: f.tags, Layers: layerPaths})
		for _, tag := range f.tags {
			repo, tg, _ := strings.Cut(tag, ":")
			if repos[repo] == nil {
				repos[repo] = map[string]string{}
			}
			repos[repo][tg] = parent
		}
	}
	mj, _ := json.Marshal(manifest)
	files["manifest.json"] = tarEntry{name: "manifest.json", typ: tar.TypeReg, data: append(mj, '\n')}
	if len(repos) > 0 {
		rj, _ := json.Marshal(repos)
		files["repositories"] = tarEntry{name: "repositories", typ: tar.TypeReg, data: append(rj, '\n')}
	}
	return writeTar(t, sorted(files))
}

func sorted(files map[string]tarEntry) []tarEntry {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]tarEntry, 0, len(names))
	for _, n := range names {
		out = append(out, files[n])
	}
	return out
}

// docker25Save writes what docker save writes since Docker 25: an OCI
// layout whose blobs include the uncompressed layers, the config, the
// manifest and the legacy v1 layer configs, plus manifest.json and
// repositories pointing into blobs/.
func docker25Save(t testing.TB, fxs ...*fixture) []byte {
	t.Helper()
	files := map[string]tarEntry{"blobs/": dir("blobs/"), "blobs/sha256/": dir("blobs/sha256/")}
	blob := func(data []byte) digest.Digest {
		d := digest.FromBytes(data)
		files["blobs/sha256/"+d.Encoded()] = tarEntry{name: "blobs/sha256/" + d.Encoded(), typ: tar.TypeReg, data: data}
		return d
	}
	type mitem struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var manifest []mitem
	var index []ocispec.Descriptor
	repos := map[string]map[string]string{}
	for _, f := range fxs {
		var layers []ocispec.Descriptor
		var paths []string
		for i, l := range f.layers {
			d := blob(l)
			blob([]byte(fmt.Sprintf(`{"id":%q,"created":"1970-01-01T00:00:00Z","os":"linux"}`, chainIDs(f.diffIDs)[i].Encoded())))
			layers = append(layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: int64(len(l))})
			paths = append(paths, "blobs/sha256/"+d.Encoded())
		}
		blob(f.config)
		m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: f.id, Size: int64(len(f.config)),
				Platform: &ocispec.Platform{OS: "linux", Architecture: hostArch()}},
			Layers: layers}
		mraw, _ := json.Marshal(m)
		md := blob(mraw)
		for _, tag := range f.tags {
			repo, tg, _ := strings.Cut(tag, ":")
			full := tag
			if !strings.Contains(repo, "/") {
				full = "docker.io/library/" + tag
			}
			index = append(index, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(mraw)),
				Annotations: map[string]string{"io.containerd.image.name": full, ocispec.AnnotationRefName: tg}})
			if repos[repo] == nil {
				repos[repo] = map[string]string{}
			}
			repos[repo][tg] = f.diffIDs[len(f.diffIDs)-1].Encoded()
		}
		if len(f.tags) == 0 {
			index = append(index, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(mraw))})
		}
		manifest = append(manifest, mitem{Config: "blobs/sha256/" + f.id.Encoded(), RepoTags: f.tags, Layers: paths})
	}
	ij, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: index})
	files["index.json"] = tarEntry{name: "index.json", typ: tar.TypeReg, data: ij}
	mj, _ := json.Marshal(manifest)
	files["manifest.json"] = tarEntry{name: "manifest.json", typ: tar.TypeReg, data: append(mj, '\n')}
	files["oci-layout"] = file("oci-layout", `{"imageLayoutVersion": "1.0.0"}`)
	if len(repos) > 0 {
		rj, _ := json.Marshal(repos)
		files["repositories"] = tarEntry{name: "repositories", typ: tar.TypeReg, data: append(rj, '\n')}
	}
	return writeTar(t, sorted(files))
}

// ociEntry describes one top-level entry of an OCI layout fixture.
type ociEntry struct {
	fx          *fixture
	compressed  [][]byte // the layer blobs (compressed) in manifest order
	mediaTypes  []string
	annotations map[string]string
	multiArch   bool // wrap the manifest in an image index with a foreign platform too
}

// ociLayout writes a plain OCI image layout (no manifest.json), as
// buildx/skopeo/containerd export it, with compressed layers.
func ociLayout(t testing.TB, entries ...ociEntry) []byte {
	t.Helper()
	files := map[string]tarEntry{}
	blob := func(data []byte) digest.Digest {
		d := digest.FromBytes(data)
		files["blobs/sha256/"+d.Encoded()] = tarEntry{name: "blobs/sha256/" + d.Encoded(), typ: tar.TypeReg, data: data}
		return d
	}
	var index []ocispec.Descriptor
	for _, e := range entries {
		var layers []ocispec.Descriptor
		for i, c := range e.compressed {
			layers = append(layers, ocispec.Descriptor{MediaType: e.mediaTypes[i], Digest: blob(c), Size: int64(len(c))})
		}
		blob(e.fx.config)
		m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: e.fx.id, Size: int64(len(e.fx.config))},
			Layers: layers}
		mraw, _ := json.Marshal(m)
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: blob(mraw), Size: int64(len(mraw))}
		if e.multiArch {
			// A foreign-platform manifest whose blobs are absent, as in a
			// single-platform export of a multi-platform image.
			foreign := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("foreign"), Size: 123,
				Platform: &ocispec.Platform{OS: "linux", Architecture: "s390x"}}
			desc.Platform = &ocispec.Platform{OS: "linux", Architecture: hostArch()}
			idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
				Manifests: []ocispec.Descriptor{foreign, desc}}
			iraw, _ := json.Marshal(idx)
			desc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: blob(iraw), Size: int64(len(iraw))}
		}
		desc.Annotations = e.annotations
		index = append(index, desc)
	}
	ij, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: index})
	files["index.json"] = tarEntry{name: "index.json", typ: tar.TypeReg, data: ij}
	files["oci-layout"] = file("oci-layout", `{"imageLayoutVersion":"1.0.0"}`)
	return writeTar(t, sorted(files))
}

// readTar lists a tarball's entries in order.
func readTar(t testing.TB, data []byte) ([]*tar.Header, map[string][]byte) {
	t.Helper()
	var hdrs []*tar.Header
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hdrs, files
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, h)
		files[h.Name] = b
	}
}

// rewriteTar rebuilds a tarball with fn applied to each entry; fn returns
// false to drop one.
func rewriteTar(t testing.TB, data []byte, fn func(e *tarEntry) bool) []byte {
	t.Helper()
	hdrs, files := readTar(t, data)
	var out []tarEntry
	for _, h := range hdrs {
		e := tarEntry{name: h.Name, typ: h.Typeflag, data: files[h.Name], link: h.Linkname, mode: h.Mode}
		if fn(&e) {
			out = append(out, e)
		}
	}
	return writeTar(t, out)
}

type stores struct {
	cs   content.Store
	is   image.Store
	root string
}

func newStores(t testing.TB) *stores {
	t.Helper()
	root := t.TempDir()
	cs, err := content.NewStore(filepath.Join(root, "content"))
	if err != nil {
		t.Fatal(err)
	}
	is, err := image.NewStore(filepath.Join(root, "image"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { is.(io.Closer).Close() })
	return &stores{cs: cs, is: is, root: root}
}

// state is everything a load or import may change, for before/after
// comparisons.
type state struct {
	blobs  []string
	images []string
	refs   []string
	files  []string // everything on disk under the content store
}

func (s *stores) state(t testing.TB) state {
	t.Helper()
	ctx := context.Background()
	var st state
	_ = s.cs.Walk(ctx, func(i content.Info) error {
		st.blobs = append(st.blobs, i.Digest.String())
		return nil
	})
	imgs, err := s.is.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range imgs {
		st.images = append(st.images, img.ID.String())
		refs, _ := s.is.References(ctx, img.ID)
		for _, r := range refs {
			st.refs = append(st.refs, r.String()+"="+img.ID.String())
		}
	}
	_ = filepath.Walk(filepath.Join(s.root, "content"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			st.files = append(st.files, path.Base(p))
		}
		return nil
	})
	sort.Strings(st.blobs)
	sort.Strings(st.images)
	sort.Strings(st.refs)
	sort.Strings(st.files)
	return st
}

func (a state) String() string {
	return fmt.Sprintf("blobs=%v images=%v refs=%v files=%v", a.blobs, a.images, a.refs, a.files)
}

// busyboxTar is the busybox root filesystem the integration tests use,
// skipping when busybox-static is not installed.
func busyboxTar(t testing.TB) []byte {
	t.Helper()
	testutil.RequiresBusybox(t)
	var b bytes.Buffer
	if err := testutil.BusyboxRootfsTar(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
