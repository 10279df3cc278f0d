package archive

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/berth-engine/berth/internal/content"
	"github.com/berth-engine/berth/internal/image"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/go-archive/compression"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ImportOptions are the knobs of docker import.
type ImportOptions struct {
	// Ref tags the new image; nil leaves it untagged.
	Ref reference.Named
	// Changes are Dockerfile instructions applied to the config (--change).
	Changes []string
	// Message is the history comment; empty means "Imported from -".
	Message string
	// Platform is the image's platform; nil means the host's.
	Platform *ocispec.Platform
}

// Import makes a one-layer image from a root filesystem tarball, as docker
// import does. src may be a plain tar or gzip, bzip2, xz or zstd
// compressed; the layer is stored uncompressed (its diffID is its digest),
// with a config and an OCI manifest. Input that is not a complete tar
// archive fails with errdefs.ErrInvalidArgument and stores nothing.
func Import(ctx context.Context, cs content.Store, is image.Store, src io.Reader, opts ImportOptions) (*image.Image, error) {
	platform := hostPlatform()
	if opts.Platform != nil {
		platform = *opts.Platform
		if platform.OS == "" {
			platform.OS = "linux"
		}
		if platform.Architecture == "" {
			platform.Architecture = hostPlatform().Architecture
		}
	}
	if platform.OS != "linux" {
		return nil, invalidf("image operating system %q cannot be used on this platform", platform.OS)
	}
	if opts.Ref != nil {
		// Check the name now: a bad one must fail before anything is stored.
		if _, ok := opts.Ref.(reference.Digested); ok {
			return nil, invalidf("refusing to create a tag with a digest reference")
		}
		if _, err := image.ParseReference(opts.Ref.String()); err != nil {
			return nil, err
		}
		if reference.FamiliarName(opts.Ref) == string(digest.SHA256) {
			return nil, invalidf("refusing to create an ambiguous tag using digest algorithm as name")
		}
	}
	var cfg dockerspec.DockerOCIImageConfig
	if err := ApplyChanges(&cfg, opts.Changes); err != nil {
		return nil, err
	}
	msg := opts.Message
	if msg == "" {
		msg = "Imported from -"
	}

	txn := newBlobTxn(cs)
	img, existed, err := doImport(ctx, txn, is, src, cfg, platform, msg)
	if err != nil {
		txn.rollback(ctx)
		return nil, err
	}
	if opts.Ref != nil {
		if err := is.AddReference(ctx, opts.Ref, img.ID); err != nil {
			if !existed {
				_ = is.Delete(context.WithoutCancel(ctx), img.ID)
				txn.rollback(ctx)
			}
			return nil, fmt.Errorf("tag imported image: %w", err)
		}
	}
	return img, nil
}

// doImport stores the blobs and the record; existed reports whether an
// image with the same ID was already recorded.
func doImport(ctx context.Context, txn *blobTxn, is image.Store, src io.Reader, cfg dockerspec.DockerOCIImageConfig, platform ocispec.Platform, msg string) (img *image.Image, existed bool, err error) {
	layer, err := ingestRootfs(ctx, txn, src)
	if err != nil {
		return nil, false, err
	}
	created := time.Now().UTC()
	config := dockerspec.DockerOCIImage{
		Image: ocispec.Image{
			Created:  &created,
			Platform: platform,
			RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layer.Digest}},
			History:  []ocispec.History{{Created: &created, Comment: msg}},
		},
		Config: cfg,
	}
	// docker also writes the message as the config's top-level comment
	// (what `docker inspect` shows as .Comment).
	raw, err := json.Marshal(struct {
		dockerspec.DockerOCIImage
		Comment string `json:"comment,omitempty"`
	}{config, msg})
	if err != nil {
		return nil, false, fmt.Errorf("import: %w", err)
	}
	id, err := txn.put(ctx, raw)
	if err != nil {
		return nil, false, fmt.Errorf("import: store config: %w", err)
	}
	layers := []ocispec.Descriptor{layer}
	mfst, err := manifestJSON(ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: id, Size: int64(len(raw))}, layers)
	if err != nil {
		return nil, false, err
	}
	mdgst, err := txn.put(ctx, mfst)
	if err != nil {
		return nil, false, fmt.Errorf("import: store manifest: %w", err)
	}
	_, err = is.Get(ctx, id)
	existed = err == nil
	img = &image.Image{ID: id, Config: config, Layers: layers, Manifest: mdgst}
	if err := is.Put(ctx, img); err != nil {
		return nil, false, fmt.Errorf("import: record image: %w", err)
	}
	return img, existed, nil
}

// ingestRootfs stores the uncompressed tar from src as a layer blob, after
// reading it through as a tar archive to make sure it is one, and whole.
func ingestRootfs(ctx context.Context, txn *blobTxn, src io.Reader) (ocispec.Descriptor, error) {
	dec, err := compression.DecompressStream(ctxReader{ctx, src})
	if err != nil {
		if ctx.Err() != nil {
			return ocispec.Descriptor{}, ctx.Err()
		}
		return ocispec.Descriptor{}, invalidf("import: cannot read the input: %v", err)
	}
	defer dec.Close()
	w, err := txn.cs.Writer(ctx)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("import: %w", err)
	}
	defer w.Close()
	ew := &errWriter{w: w}
	tee := io.TeeReader(dec, ew)
	tr := tar.NewReader(tee)
	entries := 0
	for {
		_, err := tr.Next()
		if err == nil {
			_, err = io.Copy(io.Discard, tr)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return ocispec.Descriptor{}, importReadError(ctx, ew, err, entries)
		}
		entries++
	}
	// Keep what follows the end-of-archive marker (tar's record padding):
	// the layer is the input, byte for byte.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return ocispec.Descriptor{}, importReadError(ctx, ew, err, entries)
	}
	if w.Size() == 0 {
		return ocispec.Descriptor{}, invalidf("import: the input is empty, not a tar archive")
	}
	d := w.Digest()
	size := w.Size()
	if err := txn.commit(ctx, w, d, size); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("import: store layer: %w", err)
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: size}, nil
}

// importReadError classifies a failure while reading the input: a
// cancelled request, a failing content store, or bad input.
func importReadError(ctx context.Context, ew *errWriter, err error, entries int) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case ew.err != nil:
		return fmt.Errorf("import: store layer: %w", ew.err)
	case errdefs.IsInvalidArgument(err):
		return err
	case entries == 0:
		return invalidf("import: the input is not a tar archive (%v)", err)
	default:
		return invalidf("import: the tar archive is truncated or corrupt after %d entries (%v)", entries, err)
	}
}

// manifestJSON is the OCI manifest for a config and layers, encoded the
// way docker encodes the manifests it saves, so that berth's manifest for
// an image is byte-for-byte what Save writes for it.
func manifestJSON(config ocispec.Descriptor, layers []ocispec.Descriptor) ([]byte, error) {
	m := ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    config,
		Layers:    make([]ocispec.Descriptor, 0, len(layers)),
	}
	m.SchemaVersion = 2
	for _, l := range layers {
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size})
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return b, nil
}
