package engine

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/distribution"
	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/berth-engine/berth/internal/version"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/moby/go-archive/compression"
	"github.com/moby/moby/api/types/registry"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var _ api.DistributionBackend = (*ImageService)(nil)

// distClient is the registry client over the service's stores.
func (s *ImageService) distClient() *distribution.Client {
	hosts := s.cfg.Registries
	return &distribution.Client{
		Hosts:     &hosts,
		Content:   s.st.Content,
		Images:    s.st.Images,
		Unpacker:  unpackerAdapter{u: s.unpack},
		Backoff:   s.cfg.RegistryBackoff,
		UserAgent: "berth/" + version.Version,
	}
}

// pull implements POST /images/create?fromImage=…: name:tag, name@digest,
// or a bare name with no tag (every tag, `docker pull -a`).
func (s *ImageService) pull(ctx context.Context, name string, opts api.PullOptions, progress io.Writer) error {
	named, err := reference.ParseNormalizedNamed(strings.TrimSuffix(name, ":"))
	if err != nil {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid reference format: %v", strings.TrimPrefix(err.Error(), "invalid reference format: ")))
	}
	if opts.Tag != "" {
		if d, derr := digest.Parse(opts.Tag); derr == nil {
			named, err = reference.WithDigest(reference.TrimNamed(named), d)
		} else {
			named, err = reference.WithTag(reference.TrimNamed(named), opts.Tag)
		}
		if err != nil {
			return errdefs.ErrInvalidArgument.WithMessage(err.Error())
		}
	}
	ac, err := distribution.DecodeAuthHeader(opts.RegistryAuth)
	if err != nil {
		return err
	}
	popts := distribution.PullOptions{Auth: ac, Progress: distribution.NewProgress(progress)}
	if opts.Platform != "" {
		p, err := distribution.ParsePlatform(opts.Platform)
		if err != nil {
			return err
		}
		popts.Platform = &p
	}
	// Blobs being pulled are not referenced by an image yet: hold off
	// the sweeps of deletes until the image is recorded.
	s.gc.RLock()
	defer s.gc.RUnlock()
	c := s.distClient()
	if reference.IsNameOnly(named) {
		_, err = c.PullAllTags(ctx, named, popts)
		return err
	}
	_, err = c.Pull(ctx, named, popts)
	return err
}

// Push implements POST /images/{name}/push.
func (s *ImageService) Push(ctx context.Context, name string, opts api.PushOptions, progress io.Writer) error {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid reference format: %v", strings.TrimPrefix(err.Error(), "invalid reference format: ")))
	}
	if opts.Tag != "" {
		if named, err = reference.WithTag(reference.TrimNamed(named), opts.Tag); err != nil {
			return errdefs.ErrInvalidArgument.WithMessage(err.Error())
		}
	}
	ac, err := distribution.DecodeAuthHeader(opts.RegistryAuth)
	if err != nil {
		return err
	}
	s.gc.RLock()
	defer s.gc.RUnlock()
	_, err = s.distClient().Push(ctx, named, distribution.PushOptions{Auth: ac, Progress: distribution.NewProgress(progress)})
	return err
}

// DistributionInspect implements GET /distribution/{name}/json.
func (s *ImageService) DistributionInspect(ctx context.Context, name, registryAuth string) (*registry.DistributionInspect, error) {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid reference format: %v", strings.TrimPrefix(err.Error(), "invalid reference format: ")))
	}
	ac, err := distribution.DecodeAuthHeader(registryAuth)
	if err != nil {
		return nil, err
	}
	return s.distClient().Inspect(ctx, reference.TagNameOnly(named), ac)
}

// Login implements POST /auth.
func (s *ImageService) Login(ctx context.Context, ac *registry.AuthConfig) (registry.AuthResponse, error) {
	status, err := s.distClient().Login(ctx, ac)
	if err != nil {
		return registry.AuthResponse{}, err
	}
	return registry.AuthResponse{Status: status}, nil
}

// unpackerAdapter lets the distribution client unpack layers as they
// arrive, through the engine's unpacker (one unpack per chain at a time).
type unpackerAdapter struct{ u *unpacker }

func (a unpackerAdapter) HasLayer(ctx context.Context, chain digest.Digest) bool {
	_, err := a.u.st.Snapshots.Stat(ctx, chain.String())
	return err == nil
}

func (a unpackerAdapter) UnpackLayer(ctx context.Context, parent string, chain, diffID digest.Digest, desc ocispec.Descriptor, wrap func(io.Reader) io.Reader) error {
	unlock := a.u.lock(chain)
	defer unlock()
	if a.HasLayer(ctx, chain) {
		return nil
	}
	blob, err := a.u.st.Content.Open(ctx, desc.Digest)
	if err != nil {
		return err
	}
	defer blob.Close()
	var r io.Reader = blob
	if wrap != nil {
		r = wrap(r)
	}
	dec, err := compression.DecompressStream(r)
	if err != nil {
		return fmt.Errorf("layer %s: %w", desc.Digest, err)
	}
	defer dec.Close()
	return snapshot.Unpack(ctx, a.u.st.Snapshots, parent, chain, diffID, dec)
}
