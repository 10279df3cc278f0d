package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/registry"
	"github.com/opencontainers/go-digest"
)

// postImagesCreate is POST /images/create: a pull (fromImage) or an import
// (fromSrc). Both answer with a JSON message stream; an error before the
// first message is a plain error response, later ones travel in the stream.
func (rt *router) postImagesCreate(c *call) error {
	var platform string
	if versionAtLeast(c.version, "1.32") {
		platform = c.str("platform")
	}
	w := newStreamWriter(c.w, true)
	c.w.Header().Set("Content-Type", "application/json")
	var err error
	switch img, src := c.str("fromImage"), c.str("fromSrc"); {
	case img != "":
		err = rt.pull(c, img, platform, w)
	case src == "-":
		var id string
		id, err = rt.b.Images.Import(c.ctx, c.r.Body, ImportOptions{
			Repo:     c.str("repo"),
			Tag:      c.str("tag"),
			Changes:  c.form["changes"],
			Message:  c.str("message"),
			Platform: platform,
		})
		if err == nil {
			err = writeJSONMessage(w, map[string]string{"status": id})
			if err != nil {
				return nil // client gone
			}
		}
	case src != "":
		err = errdefs.ErrNotImplemented.WithMessage("importing from a URL is not supported offline: download the file and import it from stdin (fromSrc=-)")
	default:
		err = invalidArg("either fromImage (pull) or fromSrc (import) is required")
	}
	if err == nil {
		return nil
	}
	if !w.started() {
		c.w.Header().Del("Content-Type")
		return err
	}
	_ = writeStreamError(w, err)
	return nil
}

func (rt *router) pull(c *call, img, platform string, w *streamWriter) error {
	// "pull -a" sends a trailing ":" (moby keeps accepting it).
	img = strings.TrimSuffix(img, ":")
	ref, err := reference.ParseNormalizedNamed(img)
	if err != nil {
		return invalidArg(fmt.Sprintf("invalid reference %q: %v", img, err))
	}
	tag := c.str("tag")
	if tag != "" {
		// The "tag" may be a digest.
		if d, derr := digest.Parse(tag); derr == nil {
			_, err = reference.WithDigest(reference.TrimNamed(ref), d)
		} else {
			_, err = reference.WithTag(ref, tag)
		}
		if err != nil {
			return invalidArg(fmt.Sprintf("invalid tag %q: %v", tag, err))
		}
	}
	if reference.FamiliarName(ref) == "scratch" {
		return errdefs.ErrPermissionDenied.WithMessage("'scratch' is a reserved name")
	}
	return rt.b.Images.Pull(c.ctx, img, PullOptions{
		Tag:          tag,
		Platform:     platform,
		RegistryAuth: c.r.Header.Get(registry.AuthHeader),
	}, w)
}

func (rt *router) postImagesLoad(c *call) error {
	quiet := boolValueOrDefault(c.form, "quiet", true)
	c.w.Header().Set("Content-Type", "application/json")
	w := newStreamWriter(c.w, true)
	if err := rt.b.Images.Load(c.ctx, c.r.Body, quiet, w); err != nil {
		// dockerd reports load errors in the stream, even the first one.
		_ = writeStreamError(w, err)
	}
	return nil
}

func (rt *router) getImagesGet(c *call) error {
	names := c.form["names"]
	if c.name != "" {
		names = []string{c.name}
	}
	c.w.Header().Set("Content-Type", "application/x-tar")
	w := newStreamWriter(c.w, false)
	if err := rt.b.Images.Save(c.ctx, names, w); err != nil {
		if !w.started() {
			c.w.Header().Del("Content-Type")
			return err
		}
		_ = writeStreamError(w, err)
	}
	return nil
}

func (rt *router) getImagesJSON(c *call) error {
	fs, err := c.filters()
	if err != nil {
		return err
	}
	if versionLess(c.version, "1.25") {
		if _, ok := fs["reference"]; !ok && c.str("filter") != "" {
			fs["reference"] = []string{c.str("filter")}
		}
	}
	opts := ImageListOptions{
		All:            c.bool("all"),
		Filters:        fs,
		SharedSize:     versionAtLeast(c.version, "1.42") && c.bool("shared-size"),
		ContainerCount: versionAtLeast(c.version, "1.51"),
		Digests:        boolValueOrDefault(c.form, "digests", true),
	}
	list, err := rt.b.Images.List(c.ctx, opts)
	if err != nil {
		return err
	}
	if list == nil {
		list = []image.Summary{}
	}
	manifests := versionAtLeast(c.version, "1.47") && c.bool("manifests")
	for i := range list {
		im := &list[i]
		if versionLess(c.version, "1.43") {
			if len(im.RepoTags) == 0 && len(im.RepoDigests) == 0 {
				im.RepoTags = []string{"<none>:<none>"}
				im.RepoDigests = []string{"<none>@<none>"}
			}
		}
		if im.RepoTags == nil {
			im.RepoTags = []string{}
		}
		if im.RepoDigests == nil {
			im.RepoDigests = []string{}
		}
		if !manifests {
			im.Manifests = nil
		}
		if versionLess(c.version, "1.48") {
			im.Descriptor = nil
		}
		if versionLess(c.version, "1.51") {
			im.Containers = -1
		}
	}
	if versionLess(c.version, "1.44") {
		out := make([]json.RawMessage, len(list))
		for i := range list {
			if out[i], err = withExtraFields(list[i], map[string]any{"VirtualSize": list[i].Size}); err != nil {
				return err
			}
		}
		return c.writeJSON(http.StatusOK, out)
	}
	return c.writeJSON(http.StatusOK, list)
}

func (rt *router) getImageInspect(c *call) error {
	resp, err := rt.b.Images.Inspect(c.ctx, c.name)
	if err != nil {
		return err
	}
	if resp == nil {
		return errdefs.ErrNotFound.WithMessage("No such image: " + c.name)
	}
	if resp.RepoTags == nil {
		resp.RepoTags = []string{}
	}
	if resp.RepoDigests == nil {
		resp.RepoDigests = []string{}
	}
	if !(versionAtLeast(c.version, "1.48") && c.bool("manifests")) {
		resp.Manifests = nil
	}
	if versionLess(c.version, "1.48") {
		resp.Descriptor = nil
	}
	if versionLess(c.version, "1.53") {
		resp.Identity = nil
	}
	extra := map[string]any{}
	if versionLess(c.version, "1.44") {
		extra["VirtualSize"] = resp.Size
		if resp.Created == "" {
			resp.Created = time.Time{}.Format(time.RFC3339Nano)
		}
	}
	if versionLess(c.version, "1.52") {
		// Omitted when empty since 1.52, always present before.
		extra["Comment"] = resp.Comment
		extra["Author"] = resp.Author
	}
	if len(extra) == 0 {
		return c.writeJSON(http.StatusOK, resp)
	}
	out, err := withExtraFields(resp, extra)
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, out)
}

func (rt *router) getImageHistory(c *call) error {
	h, err := rt.b.Images.History(c.ctx, c.name)
	if err != nil {
		return err
	}
	if h == nil {
		h = []image.HistoryResponseItem{}
	}
	return c.writeJSON(http.StatusOK, h)
}

func (rt *router) postImageTag(c *call) error {
	repo, tag := c.str("repo"), c.str("tag")
	if strings.TrimSpace(repo) == "" {
		return invalidArg("repository name must be given (repo parameter)")
	}
	if ref, err := reference.ParseNormalizedNamed(repo); err == nil && reference.FamiliarName(ref) == string(digest.Canonical) {
		return invalidArg("refusing to create an ambiguous tag using digest algorithm as name")
	}
	if err := rt.b.Images.Tag(c.ctx, c.name, repo, tag); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusCreated)
	return nil
}

func (rt *router) deleteImage(c *call) error {
	if strings.TrimSpace(c.name) == "" {
		return invalidArg("image name cannot be blank")
	}
	list, err := rt.b.Images.Remove(c.ctx, c.name, c.bool("force"), c.bool("noprune"))
	if err != nil {
		return err
	}
	if list == nil {
		list = []image.DeleteResponse{}
	}
	return c.writeJSON(http.StatusOK, list)
}

func (rt *router) postImagesPrune(c *call) error {
	fs, err := c.filters()
	if err != nil {
		return err
	}
	rep, err := rt.b.Images.Prune(c.ctx, fs)
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, rep)
}

// withExtraFields encodes v as a JSON object with extra top-level fields,
// for fields older API versions had and the current types dropped.
func withExtraFields(v any, extra map[string]any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, err
	}
	for k, x := range extra {
		if _, ok := obj[k]; ok {
			continue
		}
		xb, err := json.Marshal(x)
		if err != nil {
			return nil, err
		}
		obj[k] = xb
	}
	return json.Marshal(obj)
}
