// Package image keeps berth's local images: records of image configs and
// their layers (whose bytes live in the content store), and the references
// (name:tag, name@digest) that point at them, with docker's naming rules.
package image

import (
	"context"
	"time"

	"github.com/distribution/reference"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// MaxConfigSize bounds the image config and manifest blobs berth will parse.
const MaxConfigSize = 8 << 20

// Image is an image known to the store.
type Image struct {
	// ID is the digest of the config blob, as in docker.
	ID digest.Digest
	// Config is the parsed config blob (OCI image config with docker's
	// extensions such as Healthcheck and OnBuild).
	Config dockerspec.DockerOCIImage
	// Layers are the layer blobs in the content store, bottom first, one per
	// entry of Config.RootFS.DiffIDs. A layer's blob may be compressed; its
	// MediaType says how.
	Layers []ocispec.Descriptor
	// Manifest is the digest of the manifest blob in the content store the
	// image came from or was given, if any.
	Manifest digest.Digest
	// Parent is the local parent image (set by commit and build), if any.
	Parent digest.Digest
	// Added is when the image was first stored locally.
	Added time.Time
	// LastTagTime is when a reference was last pointed at this image.
	LastTagTime time.Time
}

// ChainIDs returns the chain ID of each layer: the identity under which the
// snapshotter keeps the layer unpacked on top of all the layers below it.
func (img *Image) ChainIDs() []digest.Digest {
	return ChainIDs(img.Config.RootFS.DiffIDs)
}

// ChainIDs computes OCI chain IDs from layer diff IDs:
// ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
func ChainIDs(diffIDs []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		out[i] = digest.FromString(out[i-1].String() + " " + d.String())
	}
	return out
}

// Store records images and references. Implementations are safe for
// concurrent use and crash-consistent: a record or reference change is either
// fully persisted or not at all.
type Store interface {
	// Put records an image whose config and layer blobs are already
	// committed to the content store. Putting an existing ID updates it.
	Put(ctx context.Context, img *Image) error
	// Get returns the image with this exact ID, or errdefs.ErrNotFound.
	Get(ctx context.Context, id digest.Digest) (*Image, error)
	// List returns every image.
	List(ctx context.Context) ([]*Image, error)
	// Delete removes an image record and every reference to it. Blobs are
	// left to the caller.
	Delete(ctx context.Context, id digest.Digest) error

	// AddReference points ref at id. A reference that already points
	// elsewhere is moved (docker tag semantics); the image it left is
	// untouched.
	AddReference(ctx context.Context, ref reference.Named, id digest.Digest) error
	// DeleteReference removes one reference; errdefs.ErrNotFound if absent.
	DeleteReference(ctx context.Context, ref reference.Named) error
	// References returns every reference pointing at id, sorted.
	References(ctx context.Context, id digest.Digest) ([]reference.Named, error)
	// Lookup returns the image ID a reference points at.
	Lookup(ctx context.Context, ref reference.Named) (digest.Digest, error)

	// Resolve finds an image the way docker does from what a user typed:
	// a full or short (unique prefix) ID with or without "sha256:", a
	// name, name:tag (default tag latest) or name@digest, all normalised
	// ("busybox" is docker.io/library/busybox:latest). It fails with
	// errdefs.ErrNotFound and docker's message ("No such image: busybox:latest")
	// when nothing matches.
	Resolve(ctx context.Context, s string) (*Image, error)
}
