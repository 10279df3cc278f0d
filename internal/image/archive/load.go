package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"strings"

	"github.com/berth-engine/berth/internal/content"
	"github.com/berth-engine/berth/internal/image"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/go-archive/compression"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Bounds on what a load may make berth hold, so a hostile tarball cannot
// exhaust memory or file descriptors.
const (
	// smallEntry: entries up to this size are kept in memory whatever
	// they are (VERSION files, oci-layout, tiny layers).
	smallEntry = 4 << 10
	// maxMetadataTotal bounds all in-memory entries together.
	maxMetadataTotal = 64 << 20
	// maxEntries bounds the number of tar entries.
	maxEntries = 1 << 17
	// maxIngests bounds the number of blobs streamed to the store (each
	// holds an open file until the load is decided).
	maxIngests = 10000
	// maxIndexDepth bounds nested image indexes.
	maxIndexDepth = 4
)

// LoadResult says what a load did, for docker's output lines.
type LoadResult struct {
	// Images are the loaded images in archive order.
	Images []LoadedImage
	// Moved are the references that pointed at another image before the
	// load ("The image busybox:latest already exists, renaming the old
	// one with ID sha256:… to empty string").
	Moved []MovedReference
}

// LoadedImage is one image a load recorded and the tags it now carries
// ("Loaded image: busybox:latest"; without tags, "Loaded image ID: …").
type LoadedImage struct {
	ID   digest.Digest
	Refs []reference.Named
}

// MovedReference is a tag that a load took from another image.
type MovedReference struct {
	Ref   reference.Named
	OldID digest.Digest
}

// Load reads a tarball written by docker save (Docker ≤24's legacy layout,
// Docker 25+'s OCI layout with manifest.json) or a plain OCI image layout,
// and records its images and tags. The tarball is read once, as a stream:
// small JSON files are held in memory, everything else goes straight into
// content-store ingests. Every blob is checked against its name, every
// config against its digest and every layer against its diffID. Only when
// all of it verifies are blobs committed, then image records put, then
// tags set. Any problem with the input fails with
// errdefs.ErrInvalidArgument and leaves no image, tag or new blob behind.
func Load(ctx context.Context, cs content.Store, is image.Store, src io.Reader) (*LoadResult, error) {
	l := &loader{cs: cs, is: is, entries: map[string]*entry{}}
	defer l.cleanup()
	if err := l.read(ctx, src); err != nil {
		return nil, l.classify(ctx, err)
	}
	plans, err := l.plan(ctx)
	if err != nil {
		return nil, l.classify(ctx, err)
	}
	res, err := l.commit(ctx, plans)
	if err != nil {
		return nil, l.classify(ctx, err)
	}
	return res, nil
}

// entry is one tar entry: a file (in memory or in an ingest) or a link.
type entry struct {
	name string
	link string // target of a symlink or hard link, relative to the root
	blob *blob
}

// blob is the content of a regular file entry.
type blob struct {
	size   int64
	digest digest.Digest
	data   []byte         // the bytes, for small entries
	w      content.Writer // the ingest, for large ones
	comp   compression.Compression

	// The uncompressed stream, as a layer: its digest and size, or why it
	// could not be decompressed. Computed while streaming for ingests and
	// on demand for in-memory blobs.
	diffDone bool
	diffID   digest.Digest
	diffSize int64
	diffErr  error
	// plain is an ingest of the uncompressed stream, for compressions OCI
	// has no media type for (bzip2, xz): those layers are stored plain.
	plain content.Writer

	stored *ocispec.Descriptor // set once committed as a layer
}

type loader struct {
	cs      content.Store
	is      image.Store
	entries map[string]*entry
	order   []string
	blobs   []*blob
	inMem   int64
	ingests int
	txn     *blobTxn
	// storeErr is set when the content store itself failed, so the error
	// is not blamed on the input.
	storeErr error
}

func (l *loader) cleanup() {
	for _, b := range l.blobs {
		if b.w != nil {
			b.w.Close()
		}
		if b.plain != nil {
			b.plain.Close()
		}
	}
}

// classify turns a failure into what the caller sees: the context's error
// when the request went away, the store's error when it failed, and
// otherwise an invalid-argument error about the input.
func (l *loader) classify(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("load: %w", ctx.Err())
	case l.storeErr != nil:
		return fmt.Errorf("load: %w", l.storeErr)
	case errdefs.IsInvalidArgument(err):
		return err
	case errdefs.IsNotFound(err) || errdefs.IsUnavailable(err) || errdefs.IsFailedPrecondition(err):
		return fmt.Errorf("load: %w", err)
	default:
		return invalidf("load: %v", err)
	}
}

// cleanPath normalises a path inside the archive and refuses any that
// would leave it.
func cleanPath(p string) (string, error) {
	if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "\\") {
		return "", invalidf("load: invalid path %q in the archive", p)
	}
	c := path.Clean(p)
	if c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", invalidf("load: invalid path %q in the archive: it leaves the archive", p)
	}
	return c, nil
}

// read streams the tarball once.
func (l *loader) read(ctx context.Context, src io.Reader) error {
	tr := tar.NewReader(ctxReader{ctx, src})
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if len(l.order) == 0 {
				return invalidf("load: the input is not a tar archive (%v)", err)
			}
			return invalidf("load: the archive is truncated or corrupt after %d entries (%v)", len(l.order), err)
		}
		if len(l.order) >= maxEntries {
			return invalidf("load: the archive has more than %d entries", maxEntries)
		}
		var name string
		switch hdr.Typeflag {
		case tar.TypeDir, tar.TypeXGlobalHeader:
			continue
		case tar.TypeReg, tar.TypeSymlink, tar.TypeLink:
			name, err = cleanPath(strings.TrimPrefix(hdr.Name, "./"))
			if err != nil {
				return err
			}
		default:
			continue // devices, fifos: never part of an image archive
		}
		if _, dup := l.entries[name]; dup {
			return invalidf("load: the archive has two entries named %s", name)
		}
		e := &entry{name: name}
		switch hdr.Typeflag {
		case tar.TypeSymlink:
			target := hdr.Linkname
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(name), target)
			}
			if e.link, err = cleanPath(strings.TrimPrefix(target, "/")); err != nil {
				return invalidf("load: link %s -> %s leaves the archive", name, hdr.Linkname)
			}
		case tar.TypeLink:
			if e.link, err = cleanPath(strings.TrimPrefix(hdr.Linkname, "./")); err != nil {
				return invalidf("load: link %s -> %s leaves the archive", name, hdr.Linkname)
			}
		default:
			if e.blob, err = l.readFile(ctx, hdr, tr); err != nil {
				return err
			}
		}
		l.entries[name] = e
		l.order = append(l.order, name)
	}
	return nil
}

// readFile takes in one regular file: small ones and JSON documents into
// memory, the rest into an ingest, hashing its uncompressed stream too.
func (l *loader) readFile(ctx context.Context, hdr *tar.Header, tr io.Reader) (*blob, error) {
	br := bufio.NewReaderSize(tr, 64<<10)
	head, _ := br.Peek(512)
	b := &blob{comp: compression.Detect(head)}
	l.blobs = append(l.blobs, b) // for cleanup
	if hdr.Size <= smallEntry || (hdr.Size <= image.MaxConfigSize && looksLikeJSON(head)) {
		if l.inMem+hdr.Size > maxMetadataTotal {
			return nil, invalidf("load: the archive holds more than %d bytes of metadata", maxMetadataTotal)
		}
		data, err := io.ReadAll(io.LimitReader(br, hdr.Size))
		if err != nil {
			return nil, invalidf("load: the archive is truncated or corrupt in %s (%v)", hdr.Name, err)
		}
		if int64(len(data)) != hdr.Size {
			return nil, invalidf("load: the archive is truncated in %s", hdr.Name)
		}
		l.inMem += hdr.Size
		b.data, b.size, b.digest = data, hdr.Size, digest.FromBytes(data)
		return b, nil
	}
	if l.ingests >= maxIngests {
		return nil, invalidf("load: the archive holds more than %d large files", maxIngests)
	}
	l.ingests++
	w, err := l.cs.Writer(ctx)
	if err != nil {
		l.storeErr = err
		return nil, err
	}
	b.w = w
	ew := &errWriter{w: w}
	var n int64
	if b.comp == compression.None {
		n, err = io.Copy(ew, br)
		b.diffDone, b.diffID, b.diffSize = true, w.Digest(), n
	} else {
		// Decompress alongside the copy to learn the layer's diffID in the
		// same pass. The decompressor drains its pipe even after an
		// error, so the copy never blocks on it.
		pr, pw := io.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			l.hashUncompressed(ctx, b, pr)
			_, _ = io.Copy(io.Discard, pr)
		}()
		n, err = io.Copy(io.MultiWriter(ew, pw), br)
		pw.Close()
		<-done
	}
	if ew.err != nil {
		l.storeErr = ew.err
		return nil, ew.err
	}
	if err != nil {
		return nil, invalidf("load: the archive is truncated or corrupt in %s (%v)", hdr.Name, err)
	}
	b.size, b.digest = n, w.Digest()
	return b, nil
}

// hashUncompressed reads the decompressed form of b's stream from r,
// recording its digest and size (and keeping a plain copy when needed).
func (l *loader) hashUncompressed(ctx context.Context, b *blob, r io.Reader) {
	b.diffDone = true
	dec, err := compression.DecompressStream(r)
	if err != nil {
		b.diffErr = err
		return
	}
	defer dec.Close()
	h := digest.SHA256.Digester()
	var dst io.Writer = h.Hash()
	if layerMediaType(b.comp) == "" {
		w, err := l.cs.Writer(ctx)
		if err != nil {
			b.diffErr = err
			l.storeErr = err
			return
		}
		b.plain = w
		dst = io.MultiWriter(dst, w)
	}
	n, err := io.Copy(dst, dec)
	if err != nil {
		b.diffErr = err
		return
	}
	b.diffID, b.diffSize = h.Digest(), n
}

// diff returns b's diffID, computing it for in-memory blobs.
func (l *loader) diff(ctx context.Context, b *blob) (digest.Digest, error) {
	if !b.diffDone {
		if b.comp == compression.None {
			b.diffDone, b.diffID, b.diffSize = true, b.digest, b.size
		} else {
			l.hashUncompressed(ctx, b, bytes.NewReader(b.data))
		}
	}
	if l.storeErr != nil {
		return "", l.storeErr
	}
	if b.diffErr != nil {
		return "", b.diffErr
	}
	return b.diffID, nil
}

func looksLikeJSON(head []byte) bool {
	t := bytes.TrimLeft(head, " \t\r\n")
	return len(t) > 0 && (t[0] == '{' || t[0] == '[')
}

// lookup finds the file at p, following links.
func (l *loader) lookup(p string) (*blob, error) {
	name, err := cleanPath(p)
	if err != nil {
		return nil, err
	}
	for hops := 0; hops < 40; hops++ {
		e, ok := l.entries[name]
		if !ok {
			return nil, invalidf("load: %s is missing from the archive", p)
		}
		if e.blob != nil {
			return e.blob, nil
		}
		name = e.link
	}
	return nil, invalidf("load: too many links resolving %s", p)
}

// blobByDigest finds the blob an OCI descriptor names.
func (l *loader) blobByDigest(d digest.Digest, size int64, what string) (*blob, error) {
	if err := d.Validate(); err != nil || d.Algorithm() != digest.SHA256 {
		return nil, invalidf("load: %s has an invalid or unsupported digest %q", what, d)
	}
	b, err := l.lookup(path.Join(ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded()))
	if err != nil {
		return nil, invalidf("load: %s %s is missing from the archive", what, d)
	}
	if b.size != size {
		return nil, invalidf("load: %s %s is %d bytes, its descriptor says %d", what, d, b.size, size)
	}
	return b, nil
}

// smallJSON returns the bytes of a blob meant to be a JSON document.
func smallJSON(b *blob, what string) ([]byte, error) {
	if b.data == nil {
		return nil, invalidf("load: %s is not a JSON document of at most %d bytes", what, image.MaxConfigSize)
	}
	return b.data, nil
}

// verifyBlobNames checks every blobs/sha256/<hex> file against its name.
func (l *loader) verifyBlobNames() error {
	prefix := ocispec.ImageBlobsDir + "/" + digest.SHA256.String() + "/"
	for _, name := range l.order {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		want := digest.NewDigestFromEncoded(digest.SHA256, strings.TrimPrefix(name, prefix))
		if err := want.Validate(); err != nil {
			return invalidf("load: %s is not named after a sha256 digest", name)
		}
		b, err := l.lookup(name)
		if err != nil {
			return err
		}
		if b.digest != want {
			return invalidf("load: %s: digest mismatch: the content hashes to %s", name, b.digest)
		}
	}
	return nil
}

// imagePlan is one verified image, ready to be committed.
type imagePlan struct {
	id     digest.Digest
	config dockerspec.DockerOCIImage
	rawCfg []byte
	layers []*blob
	// mediaTypes are the layer media types an OCI manifest gives; nil
	// means by compression.
	mediaTypes []string
	manifest   []byte // the archive's manifest when it fits; nil to synthesise
	parent     digest.Digest
	refs       []reference.Named
}

// manifestItem is an entry of docker's manifest.json.
type manifestItem struct {
	Config   string
	RepoTags []string
	Layers   []string
	Parent   digest.Digest `json:",omitempty"`
}

// plan verifies everything and decides what to record.
func (l *loader) plan(ctx context.Context) ([]*imagePlan, error) {
	if err := l.verifyBlobNames(); err != nil {
		return nil, err
	}
	if _, ok := l.entries["manifest.json"]; ok {
		return l.planDocker(ctx)
	}
	if _, ok := l.entries[ocispec.ImageIndexFile]; ok {
		return l.planOCI(ctx)
	}
	return nil, invalidf("load: the archive has neither manifest.json nor index.json: it is not an image archive, or it is truncated")
}

func (l *loader) planDocker(ctx context.Context) ([]*imagePlan, error) {
	mb, err := l.lookup("manifest.json")
	if err != nil {
		return nil, err
	}
	raw, err := smallJSON(mb, "manifest.json")
	if err != nil {
		return nil, err
	}
	var items []manifestItem
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, invalidf("load: manifest.json: %v", err)
	}
	if items == nil {
		return nil, invalidf("load: invalid manifest, manifest cannot be null (but can be [])")
	}
	index := l.indexManifests(ctx)
	var plans []*imagePlan
	byID := map[digest.Digest]*imagePlan{}
	for i, it := range items {
		cb, err := l.lookup(it.Config)
		if err != nil {
			return nil, err
		}
		rawCfg, err := smallJSON(cb, "config "+it.Config)
		if err != nil {
			return nil, err
		}
		// The legacy layout names configs <hex>.json: the name must match.
		if base := path.Base(it.Config); strings.HasSuffix(base, ".json") {
			named := digest.NewDigestFromEncoded(digest.SHA256, strings.TrimSuffix(base, ".json"))
			if named.Validate() == nil && named != cb.digest {
				return nil, invalidf("load: config %s: digest mismatch: the content hashes to %s", it.Config, cb.digest)
			}
		}
		p, err := l.planImage(ctx, cb.digest, rawCfg, len(it.Layers))
		if err != nil {
			return nil, err
		}
		for j, lp := range it.Layers {
			b, err := l.lookup(lp)
			if err != nil {
				return nil, err
			}
			if err := l.checkLayer(ctx, b, p.config.RootFS.DiffIDs[j], lp); err != nil {
				return nil, err
			}
			p.layers = append(p.layers, b)
		}
		for _, t := range it.RepoTags {
			named, err := reference.ParseNormalizedNamed(t)
			if err != nil {
				return nil, invalidf("load: manifest.json entry %d: invalid tag %q: %v", i, t, err)
			}
			tagged, ok := named.(reference.NamedTagged)
			if !ok {
				return nil, invalidf("load: manifest.json entry %d: invalid tag %q", i, t)
			}
			if _, digested := named.(reference.Digested); digested {
				return nil, invalidf("load: manifest.json entry %d: invalid tag %q", i, t)
			}
			if reference.FamiliarName(named) == string(digest.SHA256) {
				return nil, invalidf("load: manifest.json entry %d: refusing to create an ambiguous tag using digest algorithm as name", i)
			}
			p.refs = append(p.refs, tagged)
		}
		p.parent = it.Parent
		if prev, ok := byID[p.id]; ok {
			prev.refs = append(prev.refs, p.refs...)
			continue
		}
		p.manifest = index[p.id]
		byID[p.id] = p
		plans = append(plans, p)
	}
	// A parent counts only when it is in this archive and really is the
	// image below (its layers a prefix of this one's).
	for _, p := range plans {
		parent, ok := byID[p.parent]
		if !ok || parent == p || !isPrefix(parent.config.RootFS.DiffIDs, p.config.RootFS.DiffIDs) {
			p.parent = ""
		}
	}
	return plans, nil
}

func isPrefix(a, b []digest.Digest) bool {
	if len(a) >= len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// indexManifests maps config digests to the OCI manifests index.json
// lists for them, when Docker 25+ wrote both files: loading them keeps the
// manifest digest stable. Docker itself ignores index.json when
// manifest.json is there, so any problem here just means no manifest.
func (l *loader) indexManifests(ctx context.Context) map[digest.Digest][]byte {
	out := map[digest.Digest][]byte{}
	ib, err := l.lookup(ocispec.ImageIndexFile)
	if err != nil || ib.data == nil {
		return out
	}
	var idx ocispec.Index
	if json.Unmarshal(ib.data, &idx) != nil {
		return out
	}
	for _, d := range idx.Manifests {
		if d.MediaType != ocispec.MediaTypeImageManifest && d.MediaType != mediaTypeDockerManifest {
			continue
		}
		b, err := l.blobByDigest(d.Digest, d.Size, "manifest")
		if err != nil || b.data == nil {
			continue
		}
		var m ocispec.Manifest
		if json.Unmarshal(b.data, &m) != nil {
			continue
		}
		out[m.Config.Digest] = b.data
	}
	return out
}

// planImage parses and checks a config.
func (l *loader) planImage(ctx context.Context, id digest.Digest, raw []byte, layers int) (*imagePlan, error) {
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, invalidf("load: image config %s: %v", id, err)
	}
	if cfg.OS != "" && cfg.OS != "linux" {
		return nil, invalidf("load: cannot load %s image on linux", cfg.OS)
	}
	if cfg.RootFS.Type != "layers" {
		return nil, invalidf("load: image config %s: rootfs type %q is not \"layers\"", id, cfg.RootFS.Type)
	}
	for _, d := range cfg.RootFS.DiffIDs {
		if d.Validate() != nil || d.Algorithm() != digest.SHA256 {
			return nil, invalidf("load: image config %s: invalid diff ID %q", id, d)
		}
	}
	if n := len(cfg.RootFS.DiffIDs); n != layers {
		return nil, invalidf("load: invalid manifest, layers length mismatch: expected %d, got %d", layers, n)
	}
	return &imagePlan{id: id, config: cfg, rawCfg: raw}, nil
}

// checkLayer verifies a layer's uncompressed content against its diffID.
func (l *loader) checkLayer(ctx context.Context, b *blob, diffID digest.Digest, what string) error {
	got, err := l.diff(ctx, b)
	if err != nil {
		if l.storeErr != nil {
			return err
		}
		return invalidf("load: layer %s cannot be decompressed: %v", what, err)
	}
	if got != diffID {
		return invalidf("load: layer %s: digest mismatch: its content hashes to %s, the config's diff ID is %s", what, got, diffID)
	}
	return nil
}

func (l *loader) planOCI(ctx context.Context) ([]*imagePlan, error) {
	ib, err := l.lookup(ocispec.ImageIndexFile)
	if err != nil {
		return nil, err
	}
	raw, err := smallJSON(ib, ocispec.ImageIndexFile)
	if err != nil {
		return nil, err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, invalidf("load: index.json: %v", err)
	}
	if idx.SchemaVersion != 2 {
		return nil, invalidf("load: index.json: unsupported schema version %d", idx.SchemaVersion)
	}
	var plans []*imagePlan
	byID := map[digest.Digest]*imagePlan{}
	for _, d := range idx.Manifests {
		ref, err := refFromAnnotations(d.Annotations)
		if err != nil {
			return nil, err
		}
		mdesc, ok, err := l.selectManifest(d, 0)
		if err != nil {
			return nil, err
		}
		if !ok {
			slog.Debug("load: skipping index entry", "mediaType", d.MediaType, "digest", d.Digest)
			continue
		}
		p, err := l.planManifest(ctx, mdesc)
		if err != nil {
			return nil, err
		}
		if prev, ok := byID[p.id]; ok {
			p = prev
		} else {
			byID[p.id] = p
			plans = append(plans, p)
		}
		if ref != nil {
			p.refs = append(p.refs, ref)
		}
	}
	return plans, nil
}

// refFromAnnotations reads the name of an index entry: containerd's full
// name, else an OCI ref.name that is a whole reference (one that is only a
// tag, like "latest", names no repository and is ignored).
func refFromAnnotations(a map[string]string) (reference.Named, error) {
	name := a[annotationImageName]
	if name == "" {
		if rn := a[ocispec.AnnotationRefName]; strings.ContainsAny(rn, "/:") {
			name = rn
		}
	}
	if name == "" {
		return nil, nil
	}
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return nil, invalidf("load: index.json: invalid image name %q: %v", name, err)
	}
	if _, ok := named.(reference.Digested); ok {
		return nil, nil // a digest is not a tag
	}
	if reference.FamiliarName(named) == string(digest.SHA256) {
		return nil, invalidf("load: index.json: refusing to create an ambiguous tag using digest algorithm as name")
	}
	return reference.TagNameOnly(named), nil
}

// selectManifest follows an index entry to the image manifest for the host
// platform. ok is false for entries that are not images.
func (l *loader) selectManifest(d ocispec.Descriptor, depth int) (ocispec.Descriptor, bool, error) {
	switch d.MediaType {
	case ocispec.MediaTypeImageManifest, mediaTypeDockerManifest:
		return d, true, nil
	case ocispec.MediaTypeImageIndex, mediaTypeDockerManifestList:
	default:
		return d, false, nil
	}
	if depth >= maxIndexDepth {
		return d, false, invalidf("load: image indexes nested too deep at %s", d.Digest)
	}
	b, err := l.blobByDigest(d.Digest, d.Size, "image index")
	if err != nil {
		return d, false, err
	}
	raw, err := smallJSON(b, "image index "+d.Digest.String())
	if err != nil {
		return d, false, err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return d, false, invalidf("load: image index %s: %v", d.Digest, err)
	}
	host := hostPlatform()
	for _, m := range idx.Manifests {
		if m.Platform == nil || m.Platform.OS != host.OS || m.Platform.Architecture != host.Architecture {
			continue
		}
		if m.Platform.Variant != "" && host.Variant != "" && m.Platform.Variant != host.Variant {
			continue
		}
		if md, ok, err := l.selectManifest(m, depth+1); err != nil || ok {
			return md, ok, err
		}
	}
	return d, false, invalidf("load: image index %s has no image for %s/%s", d.Digest, host.OS, host.Architecture)
}

// planManifest verifies an OCI (or Docker schema 2) image manifest.
func (l *loader) planManifest(ctx context.Context, d ocispec.Descriptor) (*imagePlan, error) {
	b, err := l.blobByDigest(d.Digest, d.Size, "manifest")
	if err != nil {
		return nil, err
	}
	raw, err := smallJSON(b, "manifest "+d.Digest.String())
	if err != nil {
		return nil, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, invalidf("load: manifest %s: %v", d.Digest, err)
	}
	cb, err := l.blobByDigest(m.Config.Digest, m.Config.Size, "config")
	if err != nil {
		return nil, err
	}
	rawCfg, err := smallJSON(cb, "config "+m.Config.Digest.String())
	if err != nil {
		return nil, err
	}
	p, err := l.planImage(ctx, m.Config.Digest, rawCfg, len(m.Layers))
	if err != nil {
		return nil, err
	}
	for i, ld := range m.Layers {
		switch ld.MediaType {
		case ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd,
			mediaTypeDockerLayer, mediaTypeDockerLayerGzip, mediaTypeDockerLayerZstd:
		default:
			return nil, invalidf("load: manifest %s: layer %s has unsupported media type %q", d.Digest, ld.Digest, ld.MediaType)
		}
		lb, err := l.blobByDigest(ld.Digest, ld.Size, "layer")
		if err != nil {
			return nil, err
		}
		if layerMediaType(lb.comp) == "" {
			return nil, invalidf("load: layer %s uses a compression OCI images cannot use", ld.Digest)
		}
		if err := l.checkLayer(ctx, lb, p.config.RootFS.DiffIDs[i], ld.Digest.String()); err != nil {
			return nil, err
		}
		p.layers = append(p.layers, lb)
		p.mediaTypes = append(p.mediaTypes, ld.MediaType)
	}
	p.manifest = raw
	return p, nil
}

// commit stores the verified images: blobs, then records, then tags. On
// failure it undoes what it did.
func (l *loader) commit(ctx context.Context, plans []*imagePlan) (res *LoadResult, err error) {
	l.txn = newBlobTxn(l.cs)
	var created []digest.Digest
	type moved struct {
		ref reference.Named
		old digest.Digest // "" when the tag is new
	}
	var tagged []moved
	defer func() {
		if err == nil {
			return
		}
		// Undo in reverse: tags, records, blobs.
		bg := context.WithoutCancel(ctx)
		for i := len(tagged) - 1; i >= 0; i-- {
			if tagged[i].old != "" {
				_ = l.is.AddReference(bg, tagged[i].ref, tagged[i].old)
			} else {
				_ = l.is.DeleteReference(bg, tagged[i].ref)
			}
		}
		for _, id := range created {
			_ = l.is.Delete(bg, id)
		}
		l.txn.rollback(ctx)
	}()

	images := make([]*image.Image, len(plans))
	for i, p := range plans {
		// An image that is already here, whole, stays as it is (its blobs
		// may be compressed ones from a pull): loading it again only tags.
		if l.intact(ctx, p.id) {
			continue
		}
		img, err := l.commitBlobs(ctx, p)
		if err != nil {
			l.storeErr = err
			return nil, err
		}
		images[i] = img
	}
	for _, img := range images {
		if img == nil {
			continue
		}
		if _, err := l.is.Get(ctx, img.ID); errdefs.IsNotFound(err) {
			created = append(created, img.ID)
		}
		if err := l.is.Put(ctx, img); err != nil {
			l.storeErr = err
			return nil, err
		}
	}
	res = &LoadResult{}
	for _, p := range plans {
		li := LoadedImage{ID: p.id}
		seen := map[string]bool{}
		for _, ref := range p.refs {
			if seen[ref.String()] {
				continue
			}
			seen[ref.String()] = true
			old, err := l.is.Lookup(ctx, ref)
			if err != nil && !errdefs.IsNotFound(err) {
				l.storeErr = err
				return nil, err
			}
			if err := l.is.AddReference(ctx, ref, p.id); err != nil {
				l.storeErr = err
				return nil, err
			}
			tagged = append(tagged, moved{ref: ref, old: old})
			if old != "" && old != p.id {
				res.Moved = append(res.Moved, MovedReference{Ref: ref, OldID: old})
			}
			li.Refs = append(li.Refs, ref)
		}
		res.Images = append(res.Images, li)
	}
	return res, nil
}

// intact reports whether the store already has image id with all its
// blobs.
func (l *loader) intact(ctx context.Context, id digest.Digest) bool {
	img, err := l.is.Get(ctx, id)
	if err != nil {
		return false
	}
	need := []digest.Digest{img.ID}
	if img.Manifest != "" {
		need = append(need, img.Manifest)
	}
	for _, layer := range img.Layers {
		need = append(need, layer.Digest)
	}
	for _, d := range need {
		if _, err := l.cs.Info(ctx, d); err != nil {
			return false
		}
	}
	return true
}

// commitBlobs commits one image's layers, config and manifest.
func (l *loader) commitBlobs(ctx context.Context, p *imagePlan) (*image.Image, error) {
	img := &image.Image{ID: p.id, Config: p.config, Parent: p.parent}
	for i, b := range p.layers {
		desc, err := l.commitLayer(ctx, b)
		if err != nil {
			return nil, err
		}
		if i < len(p.mediaTypes) {
			desc.MediaType = p.mediaTypes[i]
		}
		img.Layers = append(img.Layers, desc)
	}
	if _, err := l.txn.put(ctx, p.rawCfg); err != nil {
		return nil, err
	}
	mfst := p.manifest
	if mfst != nil && !manifestMatches(mfst, p.id, img.Layers) {
		mfst = nil
	}
	if mfst == nil {
		var err error
		mfst, err = manifestJSON(ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: p.id, Size: int64(len(p.rawCfg))}, img.Layers)
		if err != nil {
			return nil, err
		}
	}
	md, err := l.txn.put(ctx, mfst)
	if err != nil {
		return nil, err
	}
	img.Manifest = md
	return img, nil
}

// manifestMatches reports whether an archive's manifest describes exactly
// the config and layer blobs berth stores for the image.
func manifestMatches(raw []byte, id digest.Digest, layers []ocispec.Descriptor) bool {
	var m ocispec.Manifest
	if json.Unmarshal(raw, &m) != nil || m.Config.Digest != id || len(m.Layers) != len(layers) {
		return false
	}
	for i, l := range m.Layers {
		if l.Digest != layers[i].Digest || l.Size != layers[i].Size {
			return false
		}
	}
	return true
}

// commitLayer stores a layer blob once, however many images use it.
func (l *loader) commitLayer(ctx context.Context, b *blob) (ocispec.Descriptor, error) {
	if b.stored != nil {
		return *b.stored, nil
	}
	var desc ocispec.Descriptor
	switch {
	case b.plain != nil:
		// bzip2 or xz: keep the uncompressed stream instead.
		desc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: b.diffID, Size: b.diffSize}
		if err := l.txn.commit(ctx, b.plain, b.diffID, b.diffSize); err != nil {
			return desc, err
		}
	case b.data != nil:
		desc = ocispec.Descriptor{MediaType: layerMediaType(b.comp), Digest: b.digest, Size: b.size}
		if _, err := l.txn.put(ctx, b.data); err != nil {
			return desc, err
		}
	default:
		desc = ocispec.Descriptor{MediaType: layerMediaType(b.comp), Digest: b.digest, Size: b.size}
		if err := l.txn.commit(ctx, b.w, b.digest, b.size); err != nil {
			return desc, err
		}
	}
	b.stored = &desc
	return desc, nil
}
