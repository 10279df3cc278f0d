package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"sort"
	"time"

	"github.com/berth-engine/berth/internal/content"
	"github.com/berth-engine/berth/internal/image"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/moby/go-archive/compression"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ociLayoutContent is the oci-layout file exactly as docker writes it.
const ociLayoutContent = `{"imageLayoutVersion": "` + ocispec.ImageLayoutVersion + `"}`

// SaveItem is one image to save and the tags to save it under (none
// saves it untagged, as when docker save is given an ID).
type SaveItem struct {
	Image *image.Image
	Refs  []reference.Named
}

// Save writes items as docker save does since Docker 25: an OCI image
// layout (oci-layout, index.json with one entry per tag, or one untagged
// entry, annotated with io.containerd.image.name and
// org.opencontainers.image.ref.name, and blobs/sha256/ holding manifests,
// configs and uncompressed layer tars) plus docker's manifest.json and
// repositories files, so older Docker loads it too. The output is
// deterministic: entries sorted, fixed times and owners.
func Save(ctx context.Context, cs content.Store, w io.Writer, items []SaveItem) error {
	s := &saver{cs: cs, blobs: map[digest.Digest]*saveBlob{}}
	images, err := mergeItems(items)
	if err != nil {
		return err
	}
	var (
		index    []ocispec.Descriptor
		manifest []manifestItem
		repos    = map[string]map[string]string{}
		hasRepos bool
	)
	for _, it := range images {
		if err := ctx.Err(); err != nil {
			return err
		}
		img := it.Image
		rawCfg, err := content.ReadBlob(ctx, cs, img.ID, image.MaxConfigSize)
		if err != nil {
			return fmt.Errorf("save %s: config: %w", img.ID, err)
		}
		if digest.FromBytes(rawCfg) != img.ID {
			return fmt.Errorf("save %s: the stored config does not match its digest: %w", img.ID, errdefs.ErrFailedPrecondition)
		}
		s.addBytes(img.ID, rawCfg)
		diffIDs := img.Config.RootFS.DiffIDs
		if len(diffIDs) != len(img.Layers) {
			return fmt.Errorf("save %s: %d layers but %d diff IDs: %w", img.ID, len(img.Layers), len(diffIDs), errdefs.ErrFailedPrecondition)
		}
		layers := make([]ocispec.Descriptor, len(img.Layers))
		layerPaths := []string{}
		for i, l := range img.Layers {
			size, err := s.addLayer(ctx, l, diffIDs[i])
			if err != nil {
				return fmt.Errorf("save %s: %w", img.ID, err)
			}
			layers[i] = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: diffIDs[i], Size: size}
			layerPaths = append(layerPaths, blobPath(diffIDs[i]))
		}
		mfst := s.storedManifest(ctx, img, layers)
		if mfst == nil {
			if mfst, err = manifestJSON(ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: img.ID, Size: int64(len(rawCfg))}, layers); err != nil {
				return err
			}
		}
		mdesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mfst), Size: int64(len(mfst))}
		s.addBytes(mdesc.Digest, mfst)

		var repoTags []string
		for _, ref := range it.Refs {
			tagged := ref.(reference.NamedTagged)
			d := mdesc
			d.Annotations = map[string]string{
				annotationImageName:       tagged.String(),
				ocispec.AnnotationRefName: tagged.Tag(),
			}
			index = append(index, d)
			repoTags = append(repoTags, reference.FamiliarString(tagged))
			if len(diffIDs) > 0 {
				name := reference.FamiliarName(tagged)
				if repos[name] == nil {
					repos[name] = map[string]string{}
				}
				repos[name][tagged.Tag()] = diffIDs[len(diffIDs)-1].Encoded()
				hasRepos = true
			}
		}
		if len(it.Refs) == 0 {
			index = append(index, mdesc)
		}
		manifest = append(manifest, manifestItem{Config: blobPath(img.ID), RepoTags: repoTags, Layers: layerPaths})
	}
	// Parents travel with their children, as in docker save.
	for i, it := range images {
		for _, other := range images {
			if it.Image.Parent != "" && other.Image.ID == it.Image.Parent {
				manifest[i].Parent = it.Image.Parent
			}
		}
	}

	var files []saveFile
	idx, err := json.Marshal(ocispec.Index{Versioned: ocispecVersioned(), MediaType: ocispec.MediaTypeImageIndex, Manifests: index})
	if err != nil {
		return err
	}
	files = append(files, saveFile{name: ocispec.ImageIndexFile, data: idx})
	mj, err := encodeJSONLine(manifest)
	if err != nil {
		return err
	}
	files = append(files, saveFile{name: "manifest.json", data: mj})
	files = append(files, saveFile{name: ocispec.ImageLayoutFile, data: []byte(ociLayoutContent)})
	if hasRepos {
		rj, err := encodeJSONLine(repos)
		if err != nil {
			return err
		}
		files = append(files, saveFile{name: "repositories", data: rj})
	}
	return s.write(ctx, w, files)
}

// mergeItems folds items naming the same image together and keeps only
// tags (a digest reference cannot be saved as a tag, as in docker).
func mergeItems(items []SaveItem) ([]SaveItem, error) {
	var out []SaveItem
	pos := map[digest.Digest]int{}
	seen := map[string]bool{}
	for _, it := range items {
		if it.Image == nil {
			return nil, invalidf("save: no image given")
		}
		i, ok := pos[it.Image.ID]
		if !ok {
			i = len(out)
			pos[it.Image.ID] = i
			out = append(out, SaveItem{Image: it.Image})
		}
		for _, ref := range it.Refs {
			if ref == nil {
				continue
			}
			if _, ok := ref.(reference.Canonical); ok {
				continue
			}
			tagged, ok := reference.TagNameOnly(ref).(reference.NamedTagged)
			if !ok || seen[tagged.String()] {
				continue
			}
			seen[tagged.String()] = true
			out[i].Refs = append(out[i].Refs, tagged)
		}
	}
	return out, nil
}

func blobPath(d digest.Digest) string {
	return path.Join(ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded())
}

func encodeJSONLine(v any) ([]byte, error) {
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// saveBlob is one file under blobs/sha256: bytes in memory, or a layer
// read (and decompressed) from the content store when written.
type saveBlob struct {
	data   []byte
	layer  ocispec.Descriptor // the stored blob
	diffID digest.Digest
	size   int64 // uncompressed size
}

type saveFile struct {
	name string
	data []byte
}

type saver struct {
	cs    content.Store
	blobs map[digest.Digest]*saveBlob
}

func (s *saver) addBytes(d digest.Digest, data []byte) {
	if _, ok := s.blobs[d]; !ok {
		s.blobs[d] = &saveBlob{data: data}
	}
}

// addLayer plans a layer's blob and returns its uncompressed size. A plain
// stored blob's size is known; a compressed one is decompressed once here
// to count (and check) it, and again when written, which spares a temp
// file as large as the layer.
func (s *saver) addLayer(ctx context.Context, l ocispec.Descriptor, diffID digest.Digest) (int64, error) {
	if b, ok := s.blobs[diffID]; ok {
		return b.size, nil
	}
	info, err := s.cs.Info(ctx, l.Digest)
	if err != nil {
		return 0, fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	rc, err := s.cs.Open(ctx, l.Digest)
	if err != nil {
		return 0, fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	comp := detect(bufio.NewReader(rc))
	rc.Close()
	b := &saveBlob{layer: l, diffID: diffID}
	if comp == compression.None {
		if l.Digest != diffID {
			return 0, fmt.Errorf("layer %s does not match its diff ID %s: %w", l.Digest, diffID, errdefs.ErrFailedPrecondition)
		}
		b.size = info.Size
	} else {
		dec, err := OpenLayer(ctx, s.cs, l)
		if err != nil {
			return 0, err
		}
		h := digest.SHA256.Digester()
		n, err := io.Copy(h.Hash(), ctxReader{ctx, dec})
		dec.Close()
		if err != nil {
			return 0, fmt.Errorf("layer %s: %w", l.Digest, err)
		}
		if h.Digest() != diffID {
			return 0, fmt.Errorf("layer %s decompresses to %s, not its diff ID %s: %w", l.Digest, h.Digest(), diffID, errdefs.ErrFailedPrecondition)
		}
		b.size = n
	}
	s.blobs[diffID] = b
	return b.size, nil
}

// storedManifest returns the image's own manifest blob when it describes
// exactly what Save writes (an uncompressed layer per diff ID), so the
// manifest digest survives a save and load; nil otherwise.
func (s *saver) storedManifest(ctx context.Context, img *image.Image, layers []ocispec.Descriptor) []byte {
	if img.Manifest == "" {
		return nil
	}
	raw, err := content.ReadBlob(ctx, s.cs, img.Manifest, image.MaxConfigSize)
	if err != nil {
		return nil
	}
	var m ocispec.Manifest
	if json.Unmarshal(raw, &m) != nil || m.Config.Digest != img.ID || len(m.Layers) != len(layers) {
		return nil
	}
	for i, l := range m.Layers {
		if l.MediaType != ocispec.MediaTypeImageLayer || l.Digest != layers[i].Digest || l.Size != layers[i].Size {
			return nil
		}
	}
	return raw
}

func ocispecVersioned() specs.Versioned {
	return specs.Versioned{SchemaVersion: 2}
}

// write emits the tarball: blobs sorted by digest, then the top-level
// files in name order, every header with the same fixed metadata.
func (s *saver) write(ctx context.Context, w io.Writer, files []saveFile) error {
	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0)
	header := func(name string, typ byte, size int64) *tar.Header {
		mode := int64(0o644)
		if typ == tar.TypeDir {
			mode = 0o755
		}
		return &tar.Header{Name: name, Typeflag: typ, Size: size, Mode: mode, ModTime: epoch, Format: tar.FormatPAX}
	}
	for _, dir := range []string{ocispec.ImageBlobsDir + "/", ocispec.ImageBlobsDir + "/sha256/"} {
		if err := tw.WriteHeader(header(dir, tar.TypeDir, 0)); err != nil {
			return err
		}
	}
	digests := make([]digest.Digest, 0, len(s.blobs))
	for d := range s.blobs {
		digests = append(digests, d)
	}
	sort.Slice(digests, func(i, j int) bool { return digests[i] < digests[j] })
	for _, d := range digests {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := s.blobs[d]
		if b.data != nil {
			if err := tw.WriteHeader(header(blobPath(d), tar.TypeReg, int64(len(b.data)))); err != nil {
				return err
			}
			if _, err := tw.Write(b.data); err != nil {
				return err
			}
			continue
		}
		if err := s.writeLayer(ctx, tw, header(blobPath(d), tar.TypeReg, b.size), b); err != nil {
			return err
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	for _, f := range files {
		if err := tw.WriteHeader(header(f.name, tar.TypeReg, int64(len(f.data)))); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// writeLayer streams one layer, uncompressed, checking it against its
// diff ID on the way.
func (s *saver) writeLayer(ctx context.Context, tw *tar.Writer, hdr *tar.Header, b *saveBlob) error {
	rc, err := OpenLayer(ctx, s.cs, b.layer)
	if err != nil {
		return fmt.Errorf("save layer %s: %w", b.diffID, err)
	}
	defer rc.Close()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	h := digest.SHA256.Digester()
	n, err := io.Copy(io.MultiWriter(tw, h.Hash()), io.LimitReader(ctxReader{ctx, rc}, b.size+1))
	if err != nil {
		return fmt.Errorf("save layer %s: %w", b.diffID, err)
	}
	if n != b.size || h.Digest() != b.diffID {
		return fmt.Errorf("save layer %s: the stored layer changed while saving: %w", b.diffID, errdefs.ErrFailedPrecondition)
	}
	return nil
}
