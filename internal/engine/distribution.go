package engine

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	eventtypes "github.com/moby/moby/api/types/events"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/distribution"
	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/berth-engine/berth/internal/version"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
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
		Unpacker:  unpackerAdapter{u: s.unpack, dataRoot: s.cfg.DataRoot},
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
		results, err := c.PullAllTags(ctx, named, popts)
		for _, r := range results {
			if r != nil && r.Image != nil {
				s.emitImage(eventtypes.ActionPull, reference.FamiliarName(named), reference.FamiliarName(named))
				break
			}
		}
		return err
	}
	if _, err = c.Pull(ctx, named, popts); err != nil {
		return err
	}
	// As docker: "image pull busybox:latest (name=busybox)".
	s.emitImage(eventtypes.ActionPull, reference.FamiliarString(named), reference.FamiliarName(named))
	return nil
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
	if _, err = s.distClient().Push(ctx, named, distribution.PushOptions{Auth: ac, Progress: distribution.NewProgress(progress)}); err != nil {
		return err
	}
	s.emitImage(eventtypes.ActionPush, reference.FamiliarString(named), reference.FamiliarName(named))
	return nil
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
type unpackerAdapter struct {
	u        *unpacker
	dataRoot string
}

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
	dec, err := decompress(r)
	if err != nil {
		return fmt.Errorf("layer %s: %w", desc.Digest, err)
	}
	defer dec.Close()
	return snapshot.Unpack(ctx, a.u.st.Snapshots, parent, chain, diffID, dec)
}

// decompress opens a layer stream whatever its compression (detected from
// its first bytes, so a wrong media type does no harm), with klauspost's
// gzip and zstd decoders, which are about twice as fast as the standard
// library's gzip and run the zstd decoder concurrently with its reader.
func decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	head, _ := br.Peek(4)
	switch {
	case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b:
		zr, err := kgzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		return zr, nil
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderLowmem(false))
		if err != nil {
			return nil, err
		}
		return zr.IOReadCloser(), nil
	}
	// Uncompressed, or a compression only go-archive knows (bzip2, xz).
	return compression.DecompressStream(br)
}

// stagingRoot is where layers are extracted ahead of their parents: on
// the data-root's filesystem, so moving them into a snapshot is a rename.
func (a unpackerAdapter) stagingRoot() string {
	return filepath.Join(a.dataRoot, "tmp", "unpack")
}

// CanStageLayers implements distribution.StagingChecker.
func (a unpackerAdapter) CanStageLayers() bool {
	return snapshot.CanStage(a.u.st.Snapshots) && a.dataRoot != ""
}

// StageLayer implements distribution.LayerStager on overlay2.
func (a unpackerAdapter) StageLayer(ctx context.Context, diffID digest.Digest, desc ocispec.Descriptor, compressed io.Reader) (distribution.StagedLayer, error) {
	if !snapshot.CanStage(a.u.st.Snapshots) || a.dataRoot == "" {
		return nil, errdefs.ErrNotImplemented.WithMessage("staged unpack needs overlay2")
	}
	stagingOnce.Do(func() {
		// Left over from a daemon that died mid-pull: nothing uses them.
		_ = os.RemoveAll(a.stagingRoot())
	})
	dec, err := decompress(compressed)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", desc.Digest, err)
	}
	defer dec.Close()
	st, err := snapshot.StageLayer(ctx, a.u.st.Snapshots, a.stagingRoot(), diffID, dec)
	if err != nil {
		return nil, err
	}
	return stagedLayer{a: a, st: st}, nil
}

var stagingOnce sync.Once

type stagedLayer struct {
	a  unpackerAdapter
	st *snapshot.Staged
}

func (s stagedLayer) Commit(ctx context.Context, parent string, chain digest.Digest) error {
	unlock := s.a.u.lock(chain)
	defer unlock()
	return snapshot.CommitStaged(ctx, s.a.u.st.Snapshots, parent, chain, s.st)
}

func (s stagedLayer) Discard() { s.st.Remove() }
