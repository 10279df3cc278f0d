package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/image"
	"github.com/berth-engine/berth/internal/image/archive"
	"github.com/berth-engine/berth/internal/stringid"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	eventtypes "github.com/moby/moby/api/types/events"
	imagetypes "github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/storage"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ImageUsers tells the image service which containers use an image.
type ImageUsers interface {
	ImageUsers(id digest.Digest) (running, stopped []string)
}

// ImageService implements api.ImageBackend.
type ImageService struct {
	cfg    Config
	st     Stores
	log    *slog.Logger
	users  ImageUsers
	unpack *unpacker

	// gc is held shared by everything that adds blobs and exclusively by
	// deletes, so a delete's blob sweep never removes the blobs of an image
	// that is being imported or loaded but not recorded yet.
	gc sync.RWMutex

	sizeMu sync.Mutex
	sizes  map[digest.Digest]int64 // chain ID → unpacked size; committed layers never change
}

var _ api.ImageBackend = (*ImageService)(nil)

// NewImageService returns the image service; users reports which containers
// use an image.
func NewImageService(cfg Config, st Stores, users ImageUsers, u *unpacker) *ImageService {
	return &ImageService{cfg: cfg, st: st, log: cfg.logger(), users: users, unpack: u, sizes: map[digest.Digest]int64{}}
}

// Import implements POST /images/create?fromSrc=-.
func (s *ImageService) Import(ctx context.Context, src io.Reader, opts api.ImportOptions) (string, error) {
	var ref reference.Named
	if opts.Repo != "" {
		r, err := parseRepoTag(opts.Repo, opts.Tag)
		if err != nil {
			return "", err
		}
		ref = r
	}
	var platform *ocispec.Platform
	if opts.Platform != "" {
		p, err := parsePlatform(opts.Platform)
		if err != nil {
			return "", err
		}
		platform = p
	}
	s.gc.RLock()
	defer s.gc.RUnlock()
	img, err := archive.Import(ctx, s.st.Content, s.st.Images, src, archive.ImportOptions{
		Ref: ref, Changes: opts.Changes, Message: opts.Message, Platform: platform,
	})
	if err != nil {
		return "", err
	}
	// Unpack now so the first run of the image is fast.
	if _, err := s.unpack.ensure(ctx, img); err != nil {
		s.log.Warn("unpack imported image", "id", img.ID, "err", err)
	}
	name := ""
	if ref != nil {
		name = reference.FamiliarString(ref)
	}
	s.emitImage(eventtypes.ActionImport, img.ID.String(), name)
	return img.ID.String(), nil
}

// Pull implements POST /images/create?fromImage=….
func (s *ImageService) Pull(ctx context.Context, ref string, opts api.PullOptions, progress io.Writer) error {
	return s.pull(ctx, ref, opts, progress)
}

// Load implements POST /images/load.
func (s *ImageService) Load(ctx context.Context, src io.Reader, quiet bool, progress io.Writer) error {
	s.gc.RLock()
	res, err := archive.Load(ctx, s.st.Content, s.st.Images, src)
	s.gc.RUnlock()
	if err != nil {
		return err
	}
	enc := json.NewEncoder(progress)
	for _, moved := range res.Moved {
		_ = enc.Encode(jsonstream.Message{Stream: fmt.Sprintf("The image %s already exists, renaming the old one with ID %s to empty string\n", image.FamiliarString(moved.Ref), moved.OldID)})
	}
	for _, li := range res.Images {
		img, err := s.st.Images.Get(ctx, li.ID)
		if err == nil {
			if _, err := s.unpack.ensure(ctx, img); err != nil {
				s.log.Warn("unpack loaded image", "id", li.ID, "err", err)
			}
		}
		if len(li.Refs) == 0 {
			_ = enc.Encode(jsonstream.Message{Stream: "Loaded image ID: " + li.ID.String() + "\n"})
			s.emitImage(eventtypes.ActionLoad, li.ID.String(), "")
			continue
		}
		for _, r := range li.Refs {
			s.emitImage(eventtypes.ActionLoad, image.FamiliarString(r), image.FamiliarString(r))
			_ = enc.Encode(jsonstream.Message{Stream: "Loaded image: " + image.FamiliarString(r) + "\n"})
		}
	}
	return nil
}

// Save implements GET /images/get.
func (s *ImageService) Save(ctx context.Context, names []string, w io.Writer) error {
	if len(names) == 0 {
		return errdefs.ErrInvalidArgument.WithMessage("no images specified")
	}
	byID := map[digest.Digest]*archive.SaveItem{}
	var order []digest.Digest
	for _, n := range names {
		img, err := s.st.Images.Resolve(ctx, n)
		if err != nil {
			return err
		}
		item, ok := byID[img.ID]
		if !ok {
			item = &archive.SaveItem{Image: img}
			byID[img.ID] = item
			order = append(order, img.ID)
		}
		// A name saves that tag; an ID saves the image untagged, as docker.
		if !isIDReference(n, img.ID) {
			ref, err := image.ParseReference(n)
			if err == nil {
				item.Refs = append(item.Refs, ref)
			}
		}
	}
	items := make([]archive.SaveItem, 0, len(order))
	for _, id := range order {
		items = append(items, *byID[id])
	}
	return archive.Save(ctx, s.st.Content, w, items)
}

// isIDReference reports whether what the user typed names img by its ID.
func isIDReference(s string, id digest.Digest) bool {
	s = strings.TrimPrefix(s, "sha256:")
	return stringid.IsHexPrefix(s) && strings.HasPrefix(id.Encoded(), s)
}

// imageSize is the unpacked size of an image's layers.
func (s *ImageService) imageSize(ctx context.Context, img *image.Image) int64 {
	var total int64
	for i, chain := range img.ChainIDs() {
		s.sizeMu.Lock()
		sz, ok := s.sizes[chain]
		s.sizeMu.Unlock()
		if !ok {
			if u, err := s.st.Snapshots.Usage(ctx, chain.String()); err == nil {
				sz = u.Size
				s.sizeMu.Lock()
				s.sizes[chain] = sz
				s.sizeMu.Unlock()
			} else if i < len(img.Layers) {
				sz = img.Layers[i].Size
			}
		}
		total += sz
	}
	return total
}

// layerSizes is the unpacked size of each layer on its own.
func (s *ImageService) layerSizes(ctx context.Context, img *image.Image) []int64 {
	out := make([]int64, len(img.Layers))
	for i, chain := range img.ChainIDs() {
		if u, err := s.st.Snapshots.Usage(ctx, chain.String()); err == nil {
			out[i] = u.Size
		} else {
			out[i] = img.Layers[i].Size
		}
	}
	return out
}

func (s *ImageService) repoTagsAndDigests(ctx context.Context, id digest.Digest) (tags, digests []string) {
	refs, _ := s.st.Images.References(ctx, id)
	tags, digests = []string{}, []string{}
	for _, r := range refs {
		if _, ok := r.(reference.Canonical); ok {
			digests = append(digests, reference.FamiliarString(r))
		} else {
			tags = append(tags, reference.FamiliarString(r))
		}
	}
	return tags, digests
}

// List implements GET /images/json.
func (s *ImageService) List(ctx context.Context, opts api.ImageListOptions) ([]imagetypes.Summary, error) {
	f, err := s.newImageFilter(ctx, opts.Filters)
	if err != nil {
		return nil, err
	}
	imgs, err := s.st.Images.List(ctx)
	if err != nil {
		return nil, err
	}
	parents := map[digest.Digest]bool{}
	for _, img := range imgs {
		if img.Parent != "" {
			parents[img.Parent] = true
		}
	}
	out := []imagetypes.Summary{}
	for _, img := range imgs {
		tags, digests := s.repoTagsAndDigests(ctx, img.ID)
		if !opts.All && len(tags) == 0 && len(digests) == 0 && parents[img.ID] {
			continue // an intermediate image, shown only with -a
		}
		if !f.match(img, tags, digests) {
			continue
		}
		if len(f.refs) > 0 {
			// As docker: only the references that matched are listed.
			tags = slices.DeleteFunc(tags, func(t string) bool { return !f.matchRef(t) })
			digests = slices.DeleteFunc(digests, func(d string) bool { return !f.matchRef(d) })
		}
		created := int64(0)
		if img.Config.Created != nil {
			created = img.Config.Created.Unix()
		}
		sum := imagetypes.Summary{
			ID:          img.ID.String(),
			ParentID:    img.Parent.String(),
			RepoTags:    tags,
			RepoDigests: digests,
			Created:     created,
			Size:        s.imageSize(ctx, img),
			SharedSize:  -1,
			Containers:  -1,
			Labels:      img.Config.Config.Labels,
		}
		if sum.Labels == nil {
			sum.Labels = map[string]string{}
		}
		if opts.ContainerCount && s.users != nil {
			running, stopped := s.users.ImageUsers(img.ID)
			sum.Containers = int64(len(running) + len(stopped))
		}
		out = append(out, sum)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Created == out[j].Created {
			return out[i].ID < out[j].ID
		}
		return out[i].Created > out[j].Created
	})
	return out, nil
}

type imageFilter struct {
	refs          []string
	dangling      *bool
	labels        []string
	before, since *image.Image
	until         time.Time
}

func (s *ImageService) newImageFilter(ctx context.Context, fs api.Filters) (*imageFilter, error) {
	f := &imageFilter{}
	for k, vs := range fs {
		switch k {
		case "reference":
			for _, v := range vs {
				if _, err := path.Match(v, ""); err != nil {
					return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid filter 'reference=%s': %v", v, err))
				}
			}
			f.refs = vs
		case "dangling":
			if len(vs) != 1 || (vs[0] != "true" && vs[0] != "false" && vs[0] != "1" && vs[0] != "0") {
				return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid filter 'dangling=%s'", strings.Join(vs, ",")))
			}
			d := vs[0] == "true" || vs[0] == "1"
			f.dangling = &d
		case "label":
			f.labels = vs
		case "before", "since":
			if len(vs) != 1 {
				return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid filter '%s': one value only", k))
			}
			img, err := s.st.Images.Resolve(ctx, vs[0])
			if err != nil {
				return nil, err
			}
			if k == "before" {
				f.before = img
			} else {
				f.since = img
			}
		case "until":
			t, err := untilFilter(vs)
			if err != nil {
				return nil, err
			}
			f.until = t
		default:
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid filter '%s'", k))
		}
	}
	return f, nil
}

func created(img *image.Image) time.Time {
	if img.Config.Created != nil {
		return *img.Config.Created
	}
	return img.Added
}

func (f *imageFilter) match(img *image.Image, tags, digests []string) bool {
	if f.dangling != nil && *f.dangling != (len(tags) == 0) {
		return false
	}
	if !matchLabels(f.labels, img.Config.Config.Labels) {
		return false
	}
	if f.before != nil && !created(img).Before(created(f.before)) {
		return false
	}
	if f.since != nil && !created(img).After(created(f.since)) {
		return false
	}
	if !f.until.IsZero() && !created(img).Before(f.until) {
		return false
	}
	if len(f.refs) > 0 && !slices.ContainsFunc(tags, f.matchRef) && !slices.ContainsFunc(digests, f.matchRef) {
		return false
	}
	return true
}

// matchRef reports whether a familiar reference (name:tag or name@digest)
// matches one of the reference filters, by whole reference or by name.
func (f *imageFilter) matchRef(ref string) bool {
	name, _, _ := strings.Cut(ref, "@")
	repo := name
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		repo = name[:i]
	}
	for _, pattern := range f.refs {
		if m, _ := path.Match(pattern, ref); m {
			return true
		}
		if m, _ := path.Match(pattern, repo); m {
			return true
		}
	}
	return false
}

// Inspect implements GET /images/{name}/json.
func (s *ImageService) Inspect(ctx context.Context, name string) (*imagetypes.InspectResponse, error) {
	img, err := s.st.Images.Resolve(ctx, name)
	if err != nil {
		return nil, err
	}
	tags, digests := s.repoTagsAndDigests(ctx, img.ID)
	cfg := img.Config
	r := &imagetypes.InspectResponse{
		ID:           img.ID.String(),
		RepoTags:     tags,
		RepoDigests:  digests,
		Author:       cfg.Author,
		Config:       &cfg.Config,
		Architecture: cfg.Architecture,
		Variant:      cfg.Variant,
		Os:           cfg.OS,
		OsVersion:    cfg.OSVersion,
		Size:         s.imageSize(ctx, img),
		GraphDriver:  &storage.DriverData{Name: s.st.Snapshots.Name(), Data: map[string]string{}},
		RootFS:       imagetypes.RootFS{Type: cfg.RootFS.Type},
		Metadata:     imagetypes.Metadata{LastTagTime: img.LastTagTime},
	}
	if cfg.Created != nil {
		r.Created = cfg.Created.UTC().Format(time.RFC3339Nano)
	}
	if n := len(cfg.History); n > 0 {
		r.Comment = cfg.History[n-1].Comment
	}
	for _, d := range cfg.RootFS.DiffIDs {
		r.RootFS.Layers = append(r.RootFS.Layers, d.String())
	}
	return r, nil
}

// History implements GET /images/{name}/history.
func (s *ImageService) History(ctx context.Context, name string) ([]imagetypes.HistoryResponseItem, error) {
	img, err := s.st.Images.Resolve(ctx, name)
	if err != nil {
		return nil, err
	}
	sizes := s.layerSizes(ctx, img)
	tags, _ := s.repoTagsAndDigests(ctx, img.ID)
	var out []imagetypes.HistoryResponseItem
	layer := 0
	for _, h := range img.Config.History {
		item := imagetypes.HistoryResponseItem{ID: "<missing>", CreatedBy: h.CreatedBy, Comment: h.Comment, Tags: []string{}}
		if h.Created != nil {
			item.Created = h.Created.Unix()
		}
		if !h.EmptyLayer {
			if layer < len(sizes) {
				item.Size = sizes[layer]
			}
			layer++
		}
		out = append(out, item)
	}
	if len(out) == 0 {
		// An image without history still has its layers.
		for _, sz := range sizes {
			out = append(out, imagetypes.HistoryResponseItem{ID: "<missing>", Size: sz, Tags: []string{}})
		}
	}
	// docker lists newest first, the top entry carrying the image ID and tags.
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	if len(out) > 0 {
		out[0].ID = img.ID.String()
		out[0].Tags = tags
	}
	// Built and committed images have local parents (docker's classic
	// builder chain): each parent is the entry at its own history length.
	seen := map[digest.Digest]bool{img.ID: true}
	for p := img.Parent; p != "" && !seen[p]; {
		seen[p] = true
		parent, err := s.st.Images.Get(ctx, p)
		if err != nil {
			break
		}
		i := len(out) - len(parent.Config.History)
		if i <= 0 || i >= len(out) {
			break
		}
		out[i].ID = parent.ID.String()
		out[i].Tags, _ = s.repoTagsAndDigests(ctx, parent.ID)
		if out[i].Tags == nil {
			out[i].Tags = []string{}
		}
		p = parent.Parent
	}
	return out, nil
}

// Tag implements POST /images/{name}/tag.
func (s *ImageService) Tag(ctx context.Context, source, repo, tag string) error {
	img, err := s.st.Images.Resolve(ctx, source)
	if err != nil {
		return err
	}
	ref, err := parseRepoTag(repo, tag)
	if err != nil {
		return err
	}
	if err := s.st.Images.AddReference(ctx, ref, img.ID); err != nil {
		return err
	}
	s.emitImage(eventtypes.ActionTag, img.ID.String(), reference.FamiliarString(ref))
	return nil
}

// parseRepoTag parses the repo and tag query parameters docker sends.
func parseRepoTag(repo, tag string) (reference.Named, error) {
	named, err := reference.ParseNormalizedNamed(repo)
	if err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid reference format: %v", strings.TrimPrefix(err.Error(), "invalid reference format: ")))
	}
	if _, ok := named.(reference.Digested); ok {
		return nil, errdefs.ErrInvalidArgument.WithMessage("refusing to create a tag with a digest reference")
	}
	if tag != "" {
		if _, ok := named.(reference.Tagged); ok {
			return nil, errdefs.ErrInvalidArgument.WithMessage("invalid reference format: both a tag in the repository and a tag parameter were given")
		}
		tagged, err := reference.WithTag(named, tag)
		if err != nil {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid tag format: %q", tag))
		}
		return tagged, nil
	}
	return reference.TagNameOnly(named), nil
}

func parsePlatform(s string) (*ocispec.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid platform %q: want os/arch[/variant]", s))
	}
	p := &ocispec.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}
