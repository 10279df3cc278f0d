package formatter

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/image"
)

const (
	defaultImageTableFormat           = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}"
	defaultImageTableFormatWithDigest = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}"
)

// NewImageFormat turns a --format value into the Format `images` uses.
func NewImageFormat(source string, quiet, digest bool) Format {
	switch source {
	case TableFormatKey, "":
		switch {
		case quiet:
			return DefaultQuietFormat
		case digest:
			return defaultImageTableFormatWithDigest
		default:
			return defaultImageTableFormat
		}
	case RawFormatKey:
		switch {
		case quiet:
			return `image_id: {{.ID}}`
		case digest:
			return "repository: {{ .Repository }}\ntag: {{.Tag}}\ndigest: {{.Digest}}\nimage_id: {{.ID}}\ncreated_at: {{.CreatedAt}}\nvirtual_size: {{.Size}}\n"
		default:
			return "repository: {{ .Repository }}\ntag: {{.Tag}}\nimage_id: {{.ID}}\ncreated_at: {{.CreatedAt}}\nvirtual_size: {{.Size}}\n"
		}
	}
	if quiet {
		return DefaultQuietFormat
	}
	f := Format(source)
	if f.IsTable() && digest && !f.Contains("{{.Digest}}") {
		f += "\t{{.Digest}}"
	}
	return f
}

// ImageContext is the rendering context of `images`.
type ImageContext struct {
	Context
	// Digest adds the DIGEST column (--digests).
	Digest bool
	// Now is "now" for the CREATED column.
	Now time.Time
}

func isDangling(img image.Summary) bool {
	if len(img.RepoTags) == 0 && len(img.RepoDigests) == 0 {
		return true
	}
	return len(img.RepoTags) == 1 && img.RepoTags[0] == "<none>:<none>" &&
		len(img.RepoDigests) == 1 && img.RepoDigests[0] == "<none>@<none>"
}

// ImageWrite renders images, one row per repository:tag (and per digest
// with --digests); untagged images show <none>.
func ImageWrite(ctx ImageContext, images []image.Summary) error {
	needDigest := ctx.Digest || ctx.Format.Contains("{{.Digest}}")
	return ctx.Write(newImageContext(), func(emit func(SubContext) error) error {
		for _, img := range images {
			var rows []*imageContext
			if isDangling(img) {
				rows = append(rows, &imageContext{trunc: ctx.Trunc, i: img, now: ctx.Now, repo: "<none>", tag: "<none>", digest: "<none>"})
			} else {
				rows = taggedRows(ctx, needDigest, img)
			}
			for _, r := range rows {
				if err := emit(r); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func taggedRows(ctx ImageContext, needDigest bool, img image.Summary) []*imageContext {
	repoTags := map[string][]string{}
	repoDigests := map[string][]string{}
	for _, s := range img.RepoTags {
		ref, err := reference.ParseNormalizedNamed(s)
		if err != nil {
			continue
		}
		if nt, ok := ref.(reference.NamedTagged); ok {
			name := reference.FamiliarName(ref)
			repoTags[name] = append(repoTags[name], nt.Tag())
		}
	}
	for _, s := range img.RepoDigests {
		ref, err := reference.ParseNormalizedNamed(s)
		if err != nil {
			continue
		}
		if c, ok := ref.(reference.Canonical); ok {
			name := reference.FamiliarName(ref)
			repoDigests[name] = append(repoDigests[name], c.Digest().String())
		}
	}
	var rows []*imageContext
	add := func(repo, tag, digest string) {
		rows = append(rows, &imageContext{trunc: ctx.Trunc, i: img, now: ctx.Now, repo: repo, tag: tag, digest: digest})
	}
	// Sorted, so one image's rows come out in a stable order (docker's
	// order follows Go's map iteration).
	for _, repo := range sortedKeys(repoTags) {
		tags := repoTags[repo]
		digests := repoDigests[repo]
		delete(repoDigests, repo)
		if !needDigest {
			digests = nil
		}
		sort.Strings(tags)
		for _, tag := range tags {
			if len(digests) == 0 {
				add(repo, tag, "<none>")
				continue
			}
			for _, d := range digests {
				add(repo, tag, d)
			}
		}
	}
	for _, repo := range sortedKeys(repoDigests) {
		if ctx.Digest {
			for _, d := range repoDigests[repo] {
				add(repo, "<none>", d)
			}
		} else {
			add(repo, "<none>", "")
		}
	}
	return rows
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

type imageContext struct {
	HeaderContext
	trunc  bool
	i      image.Summary
	now    time.Time
	repo   string
	tag    string
	digest string
}

func newImageContext() *imageContext {
	return &imageContext{HeaderContext: HeaderContext{Header: SubHeaderContext{
		"ID":           "IMAGE ID",
		"Repository":   "REPOSITORY",
		"Tag":          "TAG",
		"Digest":       "DIGEST",
		"CreatedSince": "CREATED",
		"CreatedAt":    "CREATED AT",
		"Size":         "SIZE",
		"Containers":   "CONTAINERS",
		"VirtualSize":  "SIZE",
		"SharedSize":   "SHARED SIZE",
		"UniqueSize":   "UNIQUE SIZE",
	}}}
}

// MarshalJSON renders the row for --format json.
func (c *imageContext) MarshalJSON() ([]byte, error) { return MarshalJSON(c) }

// ID is the image ID, shortened unless --no-trunc.
func (c *imageContext) ID() string {
	if c.trunc {
		return TruncateID(c.i.ID)
	}
	return c.i.ID
}

// Repository is the row's repository, or <none>.
func (c *imageContext) Repository() string { return c.repo }

// Tag is the row's tag, or <none>.
func (c *imageContext) Tag() string { return c.tag }

// Digest is the row's repository digest, or <none>.
func (c *imageContext) Digest() string { return c.digest }

// CreatedSince is how long ago the image was created.
func (c *imageContext) CreatedSince() string {
	if c.i.Created == 0 {
		return ""
	}
	return units.HumanDuration(c.now.UTC().Sub(time.Unix(c.i.Created, 0))) + " ago"
}

// CreatedAt is the creation time in Go's default layout.
func (c *imageContext) CreatedAt() string { return time.Unix(c.i.Created, 0).String() }

// Size is the image size with three significant digits ("4.26MB").
func (c *imageContext) Size() string { return units.HumanSizeWithPrecision(float64(c.i.Size), 3) }

// Containers is the number of containers using the image, or N/A.
func (c *imageContext) Containers() string {
	if c.i.Containers == -1 {
		return "N/A"
	}
	return strconv.FormatInt(c.i.Containers, 10)
}

// VirtualSize equals Size (kept for old templates).
func (c *imageContext) VirtualSize() string { return units.HumanSize(float64(c.i.Size)) }

// SharedSize is the size shared with other images, or N/A.
func (c *imageContext) SharedSize() string {
	if c.i.SharedSize == -1 {
		return "N/A"
	}
	return units.HumanSize(float64(c.i.SharedSize))
}

// UniqueSize is the size not shared with other images, or N/A.
func (c *imageContext) UniqueSize() string {
	if c.i.Size == -1 || c.i.SharedSize == -1 {
		return "N/A"
	}
	return units.HumanSize(float64(c.i.Size - c.i.SharedSize))
}

const (
	defaultHistoryTableFormat  = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
	nonHumanHistoryTableFormat = "table {{.ID}}\t{{.CreatedAt}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
)

// NewHistoryFormat turns a --format value into the Format `history` uses.
func NewHistoryFormat(source string, quiet, human bool) Format {
	if source == TableFormatKey || source == "" {
		switch {
		case quiet:
			return DefaultQuietFormat
		case !human:
			return nonHumanHistoryTableFormat
		default:
			return defaultHistoryTableFormat
		}
	}
	if quiet {
		return DefaultQuietFormat
	}
	return Format(source)
}

// HistoryWrite renders an image's history (newest layer first).
func HistoryWrite(ctx Context, human bool, now time.Time, items []image.HistoryResponseItem) error {
	header := &historyContext{HeaderContext: HeaderContext{Header: SubHeaderContext{
		"ID":           "IMAGE",
		"CreatedSince": "CREATED",
		"CreatedAt":    "CREATED AT",
		"CreatedBy":    "CREATED BY",
		"Size":         "SIZE",
		"Comment":      "COMMENT",
	}}}
	return ctx.Write(header, func(emit func(SubContext) error) error {
		for _, h := range items {
			if err := emit(&historyContext{trunc: ctx.Trunc, human: human, now: now, h: h}); err != nil {
				return err
			}
		}
		return nil
	})
}

type historyContext struct {
	HeaderContext
	trunc bool
	human bool
	now   time.Time
	h     image.HistoryResponseItem
}

// MarshalJSON renders the row for --format json.
func (c *historyContext) MarshalJSON() ([]byte, error) { return MarshalJSON(c) }

// ID is the layer's image ID ("<missing>" for intermediate layers).
func (c *historyContext) ID() string {
	if c.trunc {
		return TruncateID(c.h.ID)
	}
	return c.h.ID
}

// CreatedAt is the creation time in RFC 3339.
func (c *historyContext) CreatedAt() string {
	return time.Unix(c.h.Created, 0).UTC().Format(time.RFC3339)
}

// CreatedSince is how long ago the layer was created (RFC 3339 with -H=false).
func (c *historyContext) CreatedSince() string {
	if !c.human {
		return c.CreatedAt()
	}
	return units.HumanDuration(c.now.UTC().Sub(time.Unix(c.h.Created, 0))) + " ago"
}

// CreatedBy is the command that made the layer, shortened unless --no-trunc.
func (c *historyContext) CreatedBy() string {
	s := strings.ReplaceAll(c.h.CreatedBy, "\t", " ")
	if c.trunc {
		return Ellipsis(s, 45)
	}
	return s
}

// Size is the layer's size (bytes with -H=false).
func (c *historyContext) Size() string {
	if c.human {
		return units.HumanSizeWithPrecision(float64(c.h.Size), 3)
	}
	return strconv.FormatInt(c.h.Size, 10)
}

// Comment is the layer's comment (e.g. import's --message).
func (c *historyContext) Comment() string { return c.h.Comment }
