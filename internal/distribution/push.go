package distribution

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"

	"github.com/berth-engine/berth/internal/content"
	"github.com/berth-engine/berth/internal/image"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/moby/moby/api/types/registry"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// PushOptions configure a push.
type PushOptions struct {
	Auth     *registry.AuthConfig
	Progress *Progress
}

// PushResult is one pushed tag.
type PushResult struct {
	Tag    string
	Digest digest.Digest
	Size   int
}

// Push uploads local images to their registry: ref is name:tag (that tag)
// or a bare name (every local tag of the repository, `docker push -a`).
// Layers already in the repository are skipped, layers of images pulled
// from another repository of the same registry are mounted from there, the
// rest upload in parallel; the manifest goes last.
func (c *Client) Push(ctx context.Context, ref reference.Named, opts PushOptions) ([]PushResult, error) {
	p := opts.Progress
	var tags []reference.NamedTagged
	if t, ok := ref.(reference.NamedTagged); ok {
		if _, err := c.Images.Lookup(ctx, t); err != nil {
			return nil, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("An image does not exist locally with the tag: %s", reference.FamiliarName(ref)))
		}
		tags = append(tags, t)
	} else {
		all, err := c.localTags(ctx, ref)
		if err != nil {
			return nil, err
		}
		if len(all) == 0 {
			return nil, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("An image does not exist locally with the tag: %s", reference.FamiliarName(ref)))
		}
		tags = all
	}
	ropts, err := c.remoteOptions(ctx, ref, opts.Auth)
	if err != nil {
		return nil, err
	}
	// Watch the wire for cross-repository mounts, to report them as
	// docker does ("Mounted from …").
	base, err := c.hosts().Transport(reference.Domain(ref))
	if err != nil {
		return nil, err
	}
	obs := &mountObserver{rt: base, mounted: map[string]string{}}
	pusher, err := remote.NewPusher(append(ropts, remote.WithTransport(obs))...)
	if err != nil {
		return nil, err
	}
	repo, err := c.ggcrRepo(ref)
	if err != nil {
		return nil, err
	}
	p.Status("The push refers to repository [%s]", reference.TrimNamed(ref).String())
	var out []PushResult
	for _, t := range tags {
		res, err := c.pushTag(ctx, pusher, repo, t, p, obs)
		if err != nil {
			return out, err
		}
		p.Status("%s: digest: %s size: %d", res.Tag, res.Digest, res.Size)
		p.Aux(map[string]any{"Tag": res.Tag, "Digest": res.Digest.String(), "Size": res.Size})
		out = append(out, res)
	}
	return out, nil
}

// localTags lists the local tags of a repository, sorted.
func (c *Client) localTags(ctx context.Context, repo reference.Named) ([]reference.NamedTagged, error) {
	imgs, err := c.Images.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []reference.NamedTagged
	for _, img := range imgs {
		refs, err := c.Images.References(ctx, img.ID)
		if err != nil {
			return nil, err
		}
		for _, r := range refs {
			if t, ok := r.(reference.NamedTagged); ok && r.Name() == repo.Name() {
				out = append(out, t)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tag() < out[j].Tag() })
	return out, nil
}

func (c *Client) pushTag(ctx context.Context, pusher *remote.Pusher, repo name.Repository, ref reference.NamedTagged, p *Progress, obs *mountObserver) (PushResult, error) {
	id, err := c.Images.Lookup(ctx, ref)
	if err != nil {
		return PushResult{}, err
	}
	img, err := c.Images.Get(ctx, id)
	if err != nil {
		return PushResult{}, err
	}
	mbytes, mt, err := c.manifestFor(ctx, img)
	if err != nil {
		return PushResult{}, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mbytes, &m); err != nil {
		return PushResult{}, err
	}
	mounts := c.mountSources(ctx, img, ref)

	// Layers (top first in docker's output), then the config.
	diffIDs := img.Config.RootFS.DiffIDs
	for i := len(m.Layers) - 1; i >= 0; i-- {
		if isForeign(m.Layers[i].MediaType) {
			continue
		}
		p.Layer(shortID(diffIDs[i]), "Preparing")
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.jobs())
	var once sync.Map
	for i := len(m.Layers) - 1; i >= 0; i-- {
		l := m.Layers[i]
		if isForeign(l.MediaType) {
			continue // docker never pushes foreign layers
		}
		id := shortID(diffIDs[i])
		if _, dup := once.LoadOrStore(l.Digest, true); dup {
			continue
		}
		g.Go(func() error {
			bl := &blobLayer{cs: c.Content, desc: l, diffID: diffIDs[i], p: p, id: id}
			var layer v1.Layer = bl
			if src, ok := mounts[l.Digest]; ok {
				if d, err := name.NewDigest(src + "@" + l.Digest.String()); err == nil {
					layer = &remote.MountableLayer{Layer: bl, Reference: d}
				}
			}
			if err := pusher.Upload(gctx, repo, layer); err != nil {
				return registryError("push", ref, err)
			}
			switch from, mounted := obs.mountedFrom(l.Digest.String()); {
			case bl.opened():
				p.Layer(id, "Pushed")
			case mounted:
				p.Layer(id, "Mounted from "+from)
			default:
				p.Layer(id, "Layer already exists")
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return PushResult{}, err
	}
	cfg := &blobLayer{cs: c.Content, desc: m.Config}
	if err := pusher.Upload(ctx, repo, cfg); err != nil {
		return PushResult{}, registryError("push", ref, err)
	}
	tagRef := repo.Tag(ref.Tag())
	if err := pusher.Put(ctx, tagRef, rawManifest{b: mbytes, mt: types.MediaType(mt)}); err != nil {
		return PushResult{}, registryError("push", ref, err)
	}
	md := digest.FromBytes(mbytes)
	// Record the repo digest as docker does after a push.
	if canonical, err := reference.WithDigest(reference.TrimNamed(ref), md); err == nil {
		_ = c.Images.AddReference(ctx, canonical, img.ID)
	}
	if img.Manifest != md {
		if _, err := commitBytes(ctx, c.Content, mbytes); err == nil && img.Manifest == "" {
			img.Manifest = md
			_ = c.Images.Put(ctx, img)
		}
	}
	return PushResult{Tag: ref.Tag(), Digest: md, Size: len(mbytes)}, nil
}

// manifestFor returns the manifest to push for img: the one it was pulled
// or loaded with when that still describes it, else a new one (Docker
// schema 2, or OCI when a layer is zstd-compressed).
func (c *Client) manifestFor(ctx context.Context, img *image.Image) ([]byte, string, error) {
	if img.Manifest != "" {
		if b, err := content.ReadBlob(ctx, c.Content, img.Manifest, MaxManifestSize); err == nil {
			var m ocispec.Manifest
			if json.Unmarshal(b, &m) == nil && m.Config.Digest == img.ID && len(m.Layers) == len(img.Layers) {
				same := true
				for i := range m.Layers {
					if m.Layers[i].Digest != img.Layers[i].Digest {
						same = false
					}
				}
				mt := m.MediaType
				if mt == "" {
					mt = ocispec.MediaTypeImageManifest
				}
				if same && isManifest(mt) {
					return b, mt, nil
				}
			}
		}
	}
	cfgInfo, err := c.Content.Info(ctx, img.ID)
	if err != nil {
		return nil, "", fmt.Errorf("image config %s: %w", img.ID, err)
	}
	oci := false
	for _, l := range img.Layers {
		if l.MediaType == ocispec.MediaTypeImageLayerZstd {
			oci = true
		}
	}
	m := ocispec.Manifest{}
	m.SchemaVersion = 2
	if oci {
		m.MediaType = ocispec.MediaTypeImageManifest
		m.Config = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: img.ID, Size: cfgInfo.Size}
	} else {
		m.MediaType = MediaTypeDockerManifest
		m.Config = ocispec.Descriptor{MediaType: MediaTypeDockerConfig, Digest: img.ID, Size: cfgInfo.Size}
	}
	for _, l := range img.Layers {
		d := ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size, URLs: l.URLs}
		if d.Size == 0 {
			if info, err := c.Content.Info(ctx, l.Digest); err == nil {
				d.Size = info.Size
			}
		}
		if !oci {
			switch d.MediaType {
			case ocispec.MediaTypeImageLayerGzip, "":
				d.MediaType = MediaTypeDockerLayer
			case ocispec.MediaTypeImageLayer:
				d.MediaType = MediaTypeDockerLayerPlain
			}
		}
		m.Layers = append(m.Layers, d)
	}
	b, err := json.MarshalIndent(m, "", "   ")
	if err != nil {
		return nil, "", err
	}
	return b, m.MediaType, nil
}

// mountSources maps layer digests to another repository on the same
// registry that has them (from the image's RepoDigests), for cross-repository
// blob mounts.
func (c *Client) mountSources(ctx context.Context, img *image.Image, target reference.Named) map[digest.Digest]string {
	out := map[digest.Digest]string{}
	refs, err := c.Images.References(ctx, img.ID)
	if err != nil {
		return out
	}
	for _, r := range refs {
		if _, ok := r.(reference.Canonical); !ok {
			continue
		}
		if reference.Domain(r) != reference.Domain(target) || r.Name() == target.Name() {
			continue
		}
		for _, l := range img.Layers {
			if _, ok := out[l.Digest]; !ok {
				out[l.Digest] = r.Name()
			}
		}
	}
	return out
}

// rawManifest is a manifest pushed as the exact bytes given.
type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.b, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// blobLayer is a blob of the content store as a go-containerregistry
// layer. Reading it reports docker's "Pushing" progress; opened says
// whether the registry needed the bytes.
type blobLayer struct {
	cs     content.Store
	desc   ocispec.Descriptor
	diffID digest.Digest
	p      *Progress
	id     string

	mu   sync.Mutex
	read bool
}

func (l *blobLayer) opened() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.read
}

func (l *blobLayer) Digest() (v1.Hash, error) { return v1.NewHash(l.desc.Digest.String()) }
func (l *blobLayer) DiffID() (v1.Hash, error) {
	if l.diffID == "" {
		return l.Digest()
	}
	return v1.NewHash(l.diffID.String())
}
func (l *blobLayer) Size() (int64, error) { return l.desc.Size, nil }
func (l *blobLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(l.desc.MediaType), nil
}

func (l *blobLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.cs.Open(context.Background(), l.desc.Digest)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.read = true
	l.mu.Unlock()
	if l.id == "" {
		return rc, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{&progressReader{r: rc, p: l.p, id: l.id, status: "Pushing", total: l.desc.Size}, rc}, nil
}

func (l *blobLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, fmt.Errorf("uncompressed stream of %s: not needed for a push", l.desc.Digest)
}

// mountObserver is the push's base transport: it notes the blobs a
// registry mounted from another repository (a 201 to POST
// …/blobs/uploads/?mount=DIGEST&from=REPO).
type mountObserver struct {
	rt      http.RoundTripper
	mu      sync.Mutex
	mounted map[string]string // digest → source repository
}

func (o *mountObserver) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := o.rt.RoundTrip(r)
	if err == nil && r.Method == http.MethodPost && resp.StatusCode == http.StatusCreated {
		q := r.URL.Query()
		if d := q.Get("mount"); d != "" && q.Get("from") != "" {
			o.mu.Lock()
			o.mounted[d] = q.Get("from")
			o.mu.Unlock()
		}
	}
	return resp, err
}

func (o *mountObserver) mountedFrom(d string) (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	from, ok := o.mounted[d]
	return from, ok
}
