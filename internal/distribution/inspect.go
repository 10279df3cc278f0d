package distribution

import (
	"context"
	"encoding/json"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/moby/moby/api/types/registry"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Inspect returns the registry's descriptor for ref and the platforms it
// serves (GET /distribution/{name}/json, `docker buildx imagetools`,
// `docker pull` with content trust).
func (c *Client) Inspect(ctx context.Context, ref reference.Named, ac *registry.AuthConfig) (*registry.DistributionInspect, error) {
	ropts, err := c.remoteOptions(ctx, ref, ac)
	if err != nil {
		return nil, err
	}
	gref, err := c.ggcrRef(ref)
	if err != nil {
		return nil, err
	}
	rp, err := remote.NewPuller(ropts...)
	if err != nil {
		return nil, err
	}
	desc, err := rp.Get(ctx, gref)
	if err != nil {
		return nil, registryError("manifest", ref, err)
	}
	mt := string(desc.MediaType)
	if s := sniffMediaType(desc.Manifest); mt == "" && s != "" {
		mt = s
	}
	out := &registry.DistributionInspect{
		Descriptor: ocispec.Descriptor{MediaType: mt, Digest: digest.Digest(desc.Digest.String()), Size: desc.Size},
		Platforms:  []ocispec.Platform{},
	}
	switch {
	case isIndex(mt):
		var idx ocispec.Index
		if err := json.Unmarshal(desc.Manifest, &idx); err != nil {
			return nil, errdefs.ErrInvalidArgument.WithMessage("malformed manifest list: " + err.Error())
		}
		for _, m := range idx.Manifests {
			if m.Platform != nil && m.Annotations[dockerReferenceTypeAnnotation] != "attestation-manifest" {
				out.Platforms = append(out.Platforms, *m.Platform)
			}
		}
	case isManifest(mt):
		var m ocispec.Manifest
		if err := json.Unmarshal(desc.Manifest, &m); err != nil {
			return nil, errdefs.ErrInvalidArgument.WithMessage("malformed manifest: " + err.Error())
		}
		l, err := rp.Layer(ctx, gref.Context().Digest(m.Config.Digest.String()))
		if err != nil {
			return nil, registryError("blob", ref, err)
		}
		rc, err := l.Compressed()
		if err != nil {
			return nil, registryError("blob", ref, err)
		}
		defer rc.Close()
		var cfg ocispec.Image
		if err := json.NewDecoder(rc).Decode(&cfg); err == nil {
			out.Platforms = append(out.Platforms, ocispec.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant, OSVersion: cfg.OSVersion})
		}
	}
	return out, nil
}
