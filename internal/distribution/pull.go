package distribution

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/berth-engine/berth/internal/content"
	"github.com/berth-engine/berth/internal/image"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/registry"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// MaxManifestSize bounds manifests and indexes berth accepts.
const MaxManifestSize = 4 << 20

// PullOptions configure a pull.
type PullOptions struct {
	// Platform is the platform to pick from a multi-platform index; nil
	// means the host's. When set, a single-platform image must match it.
	Platform *ocispec.Platform
	Auth     *registry.AuthConfig
	Progress *Progress
}

// PullResult says what a pull did.
type PullResult struct {
	Image *image.Image
	// Digest is the digest of the manifest or index the reference named:
	// what the image's RepoDigest records.
	Digest digest.Digest
	// Updated is false when the reference already pointed at this image.
	Updated bool
}

// puller is one pull's state: its remote session and its reference.
type puller struct {
	c    *Client
	ref  reference.Named
	repo name.Repository
	rp   *remote.Puller
	opts PullOptions
	p    *Progress

	// Blobs are fetched on a client of their own (same auth, retries and
	// TLS rules): go-containerregistry's blob reader hashes what it reads,
	// and the content store's ingest hashes it again; one is enough.
	blobOnce   sync.Once
	blobClient *http.Client
	blobScheme string
	blobErr    error
}

func (c *Client) newPuller(ctx context.Context, ref reference.Named, opts PullOptions) (*puller, error) {
	ropts, err := c.remoteOptions(ctx, ref, opts.Auth)
	if err != nil {
		return nil, err
	}
	rp, err := remote.NewPuller(ropts...)
	if err != nil {
		return nil, err
	}
	repo, err := c.ggcrRepo(ref)
	if err != nil {
		return nil, err
	}
	return &puller{c: c, ref: ref, repo: repo, rp: rp, opts: opts, p: opts.Progress}, nil
}

// Pull fetches one image: ref is name:tag or name@digest. Blobs are
// committed to the content store as they are verified; the image and its
// references are recorded last, so an interrupted pull leaves no image,
// and pulling again reuses every blob that was completed.
func (c *Client) Pull(ctx context.Context, ref reference.Named, opts PullOptions) (*PullResult, error) {
	p, err := c.newPuller(ctx, ref, opts)
	if err != nil {
		return nil, err
	}
	res, err := p.pullOne(ctx, ref)
	if err != nil {
		return nil, err
	}
	p.p.Status("Digest: %s", res.Digest)
	if res.Updated {
		p.p.Status("Status: Downloaded newer image for %s", reference.FamiliarString(ref))
	} else {
		p.p.Status("Status: Image is up to date for %s", reference.FamiliarString(ref))
	}
	return res, nil
}

// PullAllTags pulls every tag of a repository (`docker pull -a`).
func (c *Client) PullAllTags(ctx context.Context, repo reference.Named, opts PullOptions) ([]*PullResult, error) {
	repo = reference.TrimNamed(repo)
	p, err := c.newPuller(ctx, repo, opts)
	if err != nil {
		return nil, err
	}
	tags, err := p.rp.List(ctx, p.repo)
	if err != nil {
		return nil, registryError("tags", repo, err)
	}
	sort.Strings(tags)
	var out []*PullResult
	updated := false
	for _, t := range tags {
		tagged, err := reference.WithTag(repo, t)
		if err != nil {
			continue
		}
		res, err := p.pullOne(ctx, tagged)
		if err != nil {
			return out, err
		}
		p.p.Status("Digest: %s", res.Digest)
		updated = updated || res.Updated
		out = append(out, res)
	}
	if updated {
		p.p.Status("Status: Downloaded newer image for %s", reference.FamiliarName(repo))
	} else {
		p.p.Status("Status: Image is up to date for %s", reference.FamiliarName(repo))
	}
	return out, nil
}

func tagOrDigest(ref reference.Named) string {
	if d, ok := ref.(reference.Digested); ok {
		return d.Digest().String()
	}
	if t, ok := ref.(reference.Tagged); ok {
		return t.Tag()
	}
	return "latest"
}

func (p *puller) pullOne(ctx context.Context, ref reference.Named) (*PullResult, error) {
	gref, err := p.c.ggcrRef(ref)
	if err != nil {
		return nil, err
	}
	top, err := p.rp.Get(ctx, gref)
	if err != nil {
		return nil, registryError("manifest", ref, err)
	}
	// As dockerd: nothing is streamed before the manifest is found, so a
	// wrong name or tag is a plain error response.
	p.p.IDStatus(tagOrDigest(ref), "Pulling from "+reference.Path(ref))
	topDigest := digest.Digest(top.Digest.String())
	mt := string(top.MediaType)
	if !isIndex(mt) && !isManifest(mt) {
		if s := sniffMediaType(top.Manifest); s != "" {
			mt = s
		}
	}
	if len(top.Manifest) > MaxManifestSize {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("manifest for %s is too large (%d bytes, at most %d)", reference.FamiliarString(ref), len(top.Manifest), MaxManifestSize))
	}
	want := HostPlatform()
	if p.opts.Platform != nil {
		want = normalizePlatform(*p.opts.Platform)
	}

	var toCommit [][]byte // manifests to keep, committed with the image
	manifestBytes, manifestDigest := top.Manifest, topDigest
	switch {
	case isIndex(mt):
		var idx ocispec.Index
		if err := json.Unmarshal(top.Manifest, &idx); err != nil {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("malformed manifest list for %s: %v", reference.FamiliarString(ref), err))
		}
		d, ok := selectManifest(&idx, want)
		if !ok {
			return nil, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("no matching manifest for %s in the manifest list entries", formatPlatform(want)))
		}
		if d.Size > MaxManifestSize {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("manifest %s is too large (%d bytes)", d.Digest, d.Size))
		}
		child, err := p.rp.Get(ctx, p.repo.Digest(d.Digest.String()))
		if err != nil {
			return nil, registryError("manifest", ref, err)
		}
		if len(child.Manifest) > MaxManifestSize {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("manifest %s is too large", d.Digest))
		}
		if digest.FromBytes(child.Manifest) != d.Digest {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("manifest verification failed for digest %s", d.Digest))
		}
		// The index itself is not kept: images record the platform
		// manifest, and the index digest lives on as the RepoDigest.
		manifestBytes, manifestDigest = child.Manifest, d.Digest
		if cm := sniffMediaType(child.Manifest); cm != "" && !isManifest(cm) {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("unsupported manifest media type %q in manifest list", cm))
		}
	case isManifest(mt):
	case mt == MediaTypeDockerSchema1 || mt == MediaTypeDockerSchema1Signed:
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("[DEPRECATION NOTICE] Docker Image Format v1 and Docker Image manifest version 2, schema 1 support has been removed. Suggest the author of %s to upgrade the image to the OCI Format or Docker Image manifest v2, schema 2. More information at https://docs.docker.com/go/deprecated-image-specs/", reference.FamiliarString(ref)))
	default:
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("unsupported manifest media type %q for %s", mt, reference.FamiliarString(ref)))
	}
	toCommit = append(toCommit, manifestBytes)

	var m ocispec.Manifest
	if err := json.Unmarshal(manifestBytes, &m); err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("malformed manifest %s: %v", manifestDigest, err))
	}
	if err := validateManifest(&m); err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("manifest %s: %v", manifestDigest, err))
	}

	cfgBytes, err := p.fetchSmall(ctx, ref, m.Config)
	if err != nil {
		return nil, err
	}
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(cfgBytes, &cfg); err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("malformed image config %s: %v", m.Config.Digest, err))
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("image config %s has %d diff IDs for %d layers", m.Config.Digest, len(cfg.RootFS.DiffIDs), len(m.Layers)))
	}
	for _, d := range cfg.RootFS.DiffIDs {
		if err := d.Validate(); err != nil {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("image config %s: invalid diff ID %q", m.Config.Digest, d))
		}
	}
	if p.opts.Platform != nil && !isIndex(mt) {
		have := normalizePlatform(ocispec.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant})
		if have.OS != want.OS || have.Architecture != want.Architecture || (want.Variant != "" && have.Variant != want.Variant) {
			return nil, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("image with reference %s was found but does not match the specified platform: wanted %s, actual: %s", reference.FamiliarString(ref), formatPlatform(want), formatPlatform(have)))
		}
	}

	if err := p.fetchLayers(ctx, ref, m.Layers, cfg.RootFS.DiffIDs); err != nil {
		return nil, err
	}
	for _, b := range toCommit {
		if _, err := commitBytes(ctx, p.c.Content, b); err != nil {
			return nil, err
		}
	}

	id := m.Config.Digest
	img, err := p.c.Images.Get(ctx, id)
	if err != nil {
		if !errdefs.IsNotFound(err) {
			return nil, err
		}
		layers := make([]ocispec.Descriptor, len(m.Layers))
		for i, l := range m.Layers {
			layers[i] = ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size, URLs: l.URLs}
		}
		img = &image.Image{ID: id, Config: cfg, Layers: layers, Manifest: manifestDigest, Added: time.Now().UTC()}
		if err := p.c.Images.Put(ctx, img); err != nil {
			return nil, err
		}
	} else if img.Manifest == "" {
		img.Manifest = manifestDigest
		if err := p.c.Images.Put(ctx, img); err != nil {
			return nil, err
		}
	}

	res := &PullResult{Image: img, Digest: topDigest}
	name := reference.TrimNamed(ref)
	if _, ok := ref.(reference.Tagged); ok {
		prev, _ := p.c.Images.Lookup(ctx, ref)
		res.Updated = prev != id
		if err := p.c.Images.AddReference(ctx, ref, id); err != nil {
			return nil, err
		}
	}
	canonical, err := reference.WithDigest(name, topDigest)
	if err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(err.Error())
	}
	if _, ok := ref.(reference.Tagged); !ok {
		prev, _ := p.c.Images.Lookup(ctx, canonical)
		res.Updated = prev != id
	}
	if err := p.c.Images.AddReference(ctx, canonical, id); err != nil {
		return nil, err
	}
	return res, nil
}

// validateManifest checks the parts of an image manifest berth relies on.
func validateManifest(m *ocispec.Manifest) error {
	if m.SchemaVersion != 2 {
		return fmt.Errorf("unsupported schema version %d", m.SchemaVersion)
	}
	if !isConfig(m.Config.MediaType) {
		return fmt.Errorf("encountered unknown config media type %q (not a container image)", m.Config.MediaType)
	}
	if err := m.Config.Digest.Validate(); err != nil {
		return fmt.Errorf("invalid config digest %q", m.Config.Digest)
	}
	if m.Config.Size < 0 || m.Config.Size > image.MaxConfigSize {
		return fmt.Errorf("config of %d bytes is out of bounds", m.Config.Size)
	}
	for _, l := range m.Layers {
		if !isLayer(l.MediaType) {
			return fmt.Errorf("unsupported layer media type %q", l.MediaType)
		}
		if err := l.Digest.Validate(); err != nil || l.Digest.Algorithm() != digest.SHA256 {
			return fmt.Errorf("invalid layer digest %q", l.Digest)
		}
		if l.Size < 0 {
			return fmt.Errorf("layer %s has a negative size", l.Digest)
		}
	}
	return nil
}

// commitBytes stores b in the content store under its digest.
func commitBytes(ctx context.Context, cs content.Store, b []byte) (digest.Digest, error) {
	d := digest.FromBytes(b)
	if _, err := cs.Info(ctx, d); err == nil {
		return d, nil
	}
	w, err := cs.Writer(ctx)
	if err != nil {
		return "", err
	}
	defer w.Close()
	if _, err := w.Write(b); err != nil {
		return "", err
	}
	return w.Commit(ctx, d, int64(len(b)))
}

// fetchSmall fetches a config blob (bounded in size) into the content store.
func (p *puller) fetchSmall(ctx context.Context, ref reference.Named, desc ocispec.Descriptor) ([]byte, error) {
	if _, err := p.c.Content.Info(ctx, desc.Digest); err == nil {
		return content.ReadBlob(ctx, p.c.Content, desc.Digest, image.MaxConfigSize)
	}
	if _, err := p.download(ctx, ref, desc, "", false, nil, nil); err != nil {
		return nil, err
	}
	return content.ReadBlob(ctx, p.c.Content, desc.Digest, image.MaxConfigSize)
}

// download streams one blob into the content store, verifying its digest
// and size; with a progress id it reports docker's per-layer lines. With
// stage set, the layer is also extracted from the ingest as it arrives
// (see follower): the returned run delivers the extraction, which belongs
// to a verified, committed blob; on error there is no run and nothing of
// the extraction is left.
//
// received, when set, is called once the whole blob has arrived and
// matched its digest, before the commit's fsync: the caller's download
// slot is free from then on.
func (p *puller) download(ctx context.Context, ref reference.Named, desc ocispec.Descriptor, id string, foreign bool, stage stageFunc, received func()) (run *stageRun, retErr error) {
	rc, err := p.openBlob(ctx, ref, desc, foreign)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	w, err := p.c.Content.Writer(ctx)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	var dst io.Writer = w
	if ir, ok := w.(content.IngestReader); ok && stage != nil {
		if f, err := ir.OpenIngest(); err == nil {
			sr := startStage(f, stage, p.p, id, desc.Size)
			defer func() {
				if retErr != nil {
					sr.abandon(retErr)
				}
			}()
			run = sr
			// The ingest's write first, then the follower hears of it.
			dst = io.MultiWriter(w, sr.fl)
		}
	}
	var r io.Reader = io.LimitReader(rc, desc.Size+1)
	if id != "" {
		r = &progressReader{r: r, p: p.p, id: id, status: "Downloading", total: desc.Size}
	}
	buf := make([]byte, 1<<20)
	if _, err := io.CopyBuffer(dst, r, buf); err != nil {
		if errors.Is(err, context.Canceled) {
			return nil, err
		}
		if w.Size() <= desc.Size && w.Digest() != desc.Digest && isVerifyError(err) {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("filesystem layer verification failed for digest %s", desc.Digest))
		}
		return nil, errdefs.ErrUnavailable.WithMessage(fmt.Sprintf("failed to download %s: %v", desc.Digest, err))
	}
	if id != "" {
		p.p.Layer(id, "Verifying Checksum")
	}
	if w.Size() != desc.Size || w.Digest() != desc.Digest {
		if w.Size() < desc.Size {
			return nil, errdefs.ErrUnavailable.WithMessage(fmt.Sprintf("failed to download %s: unexpected EOF after %d of %d bytes", desc.Digest, w.Size(), desc.Size))
		}
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("filesystem layer verification failed for digest %s", desc.Digest))
	}
	if run != nil {
		// Verified: the extraction may read to the end while the
		// commit syncs. Its result is used only if the commit succeeds.
		run.fl.end(nil)
	}
	if received != nil {
		received()
	}
	if _, err := w.Commit(ctx, desc.Digest, desc.Size); err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("filesystem layer verification failed for digest %s", desc.Digest))
	}
	return run, nil
}

// stageResult is a layer extracted ahead of its parent, or why not.
type stageResult struct {
	st  StagedLayer
	err error
}

// stageFunc extracts a layer from its compressed stream.
type stageFunc func(compressed io.Reader) (StagedLayer, error)

// downloadRetries is how often a layer download cut short (a reset
// connection, a registry that went away) is restarted, as dockerd does.
const downloadRetries = 5

// downloadWithRetries downloads a layer (see download), restarting it with
// backoff when the transfer breaks; wrong content (a digest mismatch) and
// registry refusals are not retried.
func (p *puller) downloadWithRetries(ctx context.Context, ref reference.Named, l ocispec.Descriptor, id string, stage stageFunc, received func()) (*stageRun, error) {
	delay := time.Second
	if p.c.Backoff != nil {
		delay = p.c.Backoff.Duration
	}
	for attempt := 1; ; attempt++ {
		run, err := p.download(ctx, ref, l, id, isForeign(l.MediaType), stage, received)
		if err == nil || !errdefs.IsUnavailable(err) || attempt > downloadRetries || ctx.Err() != nil {
			return run, err
		}
		secs := int(delay.Round(time.Second) / time.Second)
		p.p.Layer(id, fmt.Sprintf("Retrying in %d second%s", max(secs, 1), map[bool]string{true: "", false: "s"}[max(secs, 1) == 1]))
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		delay *= 2
	}
}

// isVerifyError recognises go-containerregistry's digest check failing at
// the end of a blob (the bytes were complete but wrong).
func isVerifyError(err error) bool {
	return strings.Contains(err.Error(), "error verifying")
}

// openBlob opens a blob from the registry, or for a foreign layer the
// registry does not have, from the layer's URLs.
func (p *puller) openBlob(ctx context.Context, ref reference.Named, desc ocispec.Descriptor, foreign bool) (io.ReadCloser, error) {
	rc, err := p.getBlob(ctx, desc.Digest)
	if err == nil {
		return rc, nil
	}
	if foreign && len(desc.URLs) > 0 {
		for _, u := range desc.URLs {
			req, rerr := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if rerr != nil {
				continue
			}
			resp, rerr := http.DefaultClient.Do(req)
			if rerr != nil {
				continue
			}
			if resp.StatusCode == http.StatusOK {
				return resp.Body, nil
			}
			resp.Body.Close()
		}
	}
	return nil, registryError("blob", ref, err)
}

// initBlobClient sets up the authenticated transport for blob GETs: the
// registry's TLS rules, retries on transient errors, and the scheme the
// ping found (plain HTTP only for insecure registries).
func (p *puller) initBlobClient(ctx context.Context) {
	p.blobOnce.Do(func() {
		reg := p.repo.Registry
		base, err := p.c.hosts().Transport(reg.RegistryStr())
		if err != nil {
			p.blobErr = err
			return
		}
		backoff := transport.Backoff{Duration: time.Second, Factor: 3, Jitter: 0.1, Steps: 3}
		if p.c.Backoff != nil {
			backoff = *p.c.Backoff
		}
		rt := transport.NewRetry(base, transport.WithRetryBackoff(backoff),
			transport.WithRetryStatusCodes(http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
				http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout))
		if p.c.UserAgent != "" {
			rt = transport.NewUserAgent(rt, p.c.UserAgent)
		}
		ch, err := transport.Ping(ctx, reg, rt)
		if err != nil {
			p.blobErr = err
			return
		}
		p.blobScheme = "https"
		if ch.Insecure {
			p.blobScheme = "http"
		}
		auth, err := Authenticator(p.opts.Auth)
		if err != nil {
			p.blobErr = err
			return
		}
		t, err := transport.NewWithContext(ctx, reg, auth, rt, []string{p.repo.Scope(transport.PullScope)})
		if err != nil {
			p.blobErr = err
			return
		}
		p.blobClient = &http.Client{Transport: t}
	})
}

// getBlob opens a blob of the repository; the caller verifies it.
func (p *puller) getBlob(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	p.initBlobClient(ctx)
	if p.blobErr != nil {
		return nil, p.blobErr
	}
	u := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", p.blobScheme, p.repo.RegistryStr(), p.repo.RepositoryStr(), d)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.blobClient.Do(req)
	if err != nil {
		return nil, err
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		resp.Body.Close()
		return nil, err
	}
	return resp.Body, nil
}

// fetchLayers downloads the missing layers in parallel (those beyond the
// job limit report "Waiting", as docker's) and unpacks them: where the
// unpacker can stage layers ahead of their parents (overlay2), each
// downloaded layer is extracted while it streams in, the others (blobs
// already stored, chains not unpacked yet) in parallel from the content
// store; staged layers are committed in order, each only after its blob was
// verified. Other unpackers unpack in order once a layer is stored.
func (p *puller) fetchLayers(ctx context.Context, ref reference.Named, layers []ocispec.Descriptor, diffIDs []digest.Digest) error {
	chains := image.ChainIDs(diffIDs)
	n := len(layers)
	done := make([]chan struct{}, n)
	fetched := make([]bool, n)
	seen := map[digest.Digest]int{}
	for i, l := range layers {
		done[i] = make(chan struct{})
		if _, err := p.c.Content.Info(ctx, l.Digest); err == nil {
			p.p.Layer(shortID(l.Digest), "Already exists")
			close(done[i])
			continue
		}
		if j, dup := seen[l.Digest]; dup {
			// The same blob twice in one image: fetched once.
			go func(i, j int) {
				<-done[j]
				close(done[i])
			}(i, j)
			continue
		}
		seen[l.Digest] = i
		fetched[i] = true
		p.p.Layer(shortID(l.Digest), "Pulling fs layer")
	}

	stager, _ := p.c.Unpacker.(LayerStager)
	if sc, ok := stager.(StagingChecker); ok && !sc.CanStageLayers() {
		// Told up front (vfs): no extraction starts only to decline.
		stager = nil
	}
	// staged[i] receives layer i's staged extraction (or nothing to
	// commit: already unpacked, or the stager declined).
	staged := make([]chan stageResult, n)
	// unpacked[i]: the chain is there already; streamed[i]: layer i is
	// extracted from its download as it arrives.
	unpacked := make([]bool, n)
	streamed := make([]bool, n)
	for i := range staged {
		staged[i] = make(chan stageResult, 1)
		if stager == nil {
			continue
		}
		if p.c.Unpacker.HasLayer(ctx, chains[i]) {
			unpacked[i] = true
			staged[i] <- stageResult{}
			continue
		}
		streamed[i] = fetched[i]
	}

	wrapFor := func(i int) func(io.Reader) io.Reader {
		return func(r io.Reader) io.Reader {
			if !fetched[i] {
				return r
			}
			return &progressReader{r: r, p: p.p, id: shortID(layers[i].Digest), status: "Extracting", total: layers[i].Size}
		}
	}
	// stageFromStore stages layer i from its committed blob.
	stageFromStore := func(ctx context.Context, i int) stageResult {
		blob, err := p.c.Content.Open(ctx, layers[i].Digest)
		if err != nil {
			return stageResult{err: err}
		}
		defer blob.Close()
		st, err := stager.StageLayer(ctx, diffIDs[i], layers[i], wrapFor(i)(blob))
		return stageResult{st: st, err: err}
	}

	g, gctx := errgroup.WithContext(ctx)
	sem := make(chan struct{}, p.c.jobs())
	// Extractions at once: each holds a few MiB of buffers and a thread.
	// Enough for every download in flight and then some, so that a layer
	// whose download starts late (beyond the job limit) does not also wait
	// for an extraction to end: layers that extract side by side finish
	// together, where one left for last would run alone on idle cores.
	stageSem := make(chan struct{}, p.c.jobs()+2*runtime.NumCPU())
	acquireStage := func() bool {
		select {
		case stageSem <- struct{}{}:
			return true
		case <-gctx.Done():
			return false
		}
	}
	for i, l := range layers {
		if !fetched[i] {
			continue
		}
		g.Go(func() error {
			id := shortID(l.Digest)
			select {
			case sem <- struct{}{}:
			default:
				p.p.Layer(id, "Waiting")
				select {
				case sem <- struct{}{}:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			var stage stageFunc
			if streamed[i] {
				// The extraction runs under the group's context, so that
				// any failure of the pull stops it.
				stage = func(r io.Reader) (StagedLayer, error) {
					// Waiting for a slot loses nothing: the extraction
					// reads the ingest from the start, however far the
					// download got.
					if !acquireStage() {
						return nil, gctx.Err()
					}
					defer func() { <-stageSem }()
					return stager.StageLayer(gctx, diffIDs[i], l, r)
				}
			}
			// The slot is for downloads: neither the commit's fsync
			// nor an extraction still running holds up the next
			// layer's download.
			var releaseOnce sync.Once
			release := func() { releaseOnce.Do(func() { <-sem }) }
			run, err := p.downloadWithRetries(gctx, ref, l, id, stage, release)
			release()
			if err != nil {
				return err
			}
			p.p.Layer(id, "Download complete")
			if streamed[i] {
				var sr stageResult
				if run != nil {
					run.fl.reportProgress()
					sr = <-run.res
				} else if acquireStage() {
					// The ingest could not be followed: from the store.
					sr = stageFromStore(gctx, i)
					<-stageSem
				} else {
					return gctx.Err()
				}
				staged[i] <- sr
			}
			close(done[i])
			return nil
		})
	}
	if stager != nil {
		// Layers whose blob is stored but whose chain is not unpacked:
		// staged from the content store as soon as their blob is there.
		for i := range layers {
			if streamed[i] || unpacked[i] {
				continue
			}
			g.Go(func() error {
				select {
				case <-done[i]:
				case <-gctx.Done():
					return nil
				}
				if !acquireStage() {
					return nil
				}
				defer func() { <-stageSem }()
				staged[i] <- stageFromStore(gctx, i)
				return nil
			})
		}
	}
	g.Go(func() error {
		parent := ""
		for i, l := range layers {
			select {
			case <-done[i]:
			case <-gctx.Done():
				return gctx.Err()
			}
			if p.c.Unpacker != nil {
				var sr stageResult
				if stager != nil {
					select {
					case sr = <-staged[i]:
					case <-gctx.Done():
						return gctx.Err()
					}
				}
				if sr.err != nil && !errdefs.IsNotImplemented(sr.err) {
					return fmt.Errorf("failed to register layer: %w", sr.err)
				}
				switch {
				case p.c.Unpacker.HasLayer(gctx, chains[i]):
					if sr.st != nil {
						sr.st.Discard()
					}
				case sr.st != nil:
					err := sr.st.Commit(gctx, parent, chains[i])
					if err != nil && !errdefs.IsNotImplemented(err) {
						return fmt.Errorf("failed to register layer: %w", err)
					}
					if err != nil {
						if err := p.c.Unpacker.UnpackLayer(gctx, parent, chains[i], diffIDs[i], l, wrapFor(i)); err != nil {
							return fmt.Errorf("failed to register layer: %w", err)
						}
					}
				default:
					if err := p.c.Unpacker.UnpackLayer(gctx, parent, chains[i], diffIDs[i], l, wrapFor(i)); err != nil {
						return fmt.Errorf("failed to register layer: %w", err)
					}
				}
			}
			if fetched[i] {
				p.p.Layer(shortID(l.Digest), "Pull complete")
			}
			parent = chains[i].String()
		}
		return nil
	})
	err := g.Wait()
	// Staged layers never committed (an error ended the pull).
	for i := range staged {
		select {
		case r := <-staged[i]:
			if r.st != nil {
				r.st.Discard()
			}
		default:
		}
	}
	return err
}
