package builder

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/image/archive"
	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	goarchive "github.com/moby/go-archive"
	containertypes "github.com/moby/moby/api/types/container"
	eventtypes "github.com/moby/moby/api/types/events"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// ContainerInfo is what commit and diff need to know about a container.
type ContainerInfo interface {
	Inspect(ctx context.Context, id string, size bool) (*containertypes.InspectResponse, error)
}

// Pauser freezes a container while it is committed (commit --pause).
type Pauser interface {
	Pause(ctx context.Context, id string) error
	Unpause(ctx context.Context, id string) error
}

// Changes lists the changes in a container's writable layer as docker's
// GET /containers/{id}/changes does (sorted by path; kind 0 modified,
// 1 added, 2 deleted).
func (b *Builder) Changes(ctx context.Context, idOrName string) ([]containertypes.FilesystemChange, error) {
	c, err := b.inspect(ctx, idOrName)
	if err != nil {
		return nil, err
	}
	mounts, err := b.d.Snapshots.Mounts(ctx, c.ID)
	if err != nil {
		return nil, fmt.Errorf("changes of %s: %w", c.ID[:12], err)
	}
	var out []containertypes.FilesystemChange
	if upper, ok := snapshot.UpperDir(mounts); ok {
		out, err = overlayChanges(upper, lowerDirs(mounts[0].Options))
	} else {
		out, err = b.copyChanges(ctx, c.ID, mounts)
	}
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func (b *Builder) inspect(ctx context.Context, idOrName string) (*containertypes.InspectResponse, error) {
	info, ok := b.d.Containers.(ContainerInfo)
	if !ok {
		return nil, errdefs.ErrNotImplemented.WithMessage("container inspection is not available")
	}
	return info.Inspect(ctx, idOrName, false)
}

func lowerDirs(options []string) []string {
	for _, o := range options {
		if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
			return strings.Split(v, ":")
		}
	}
	return nil
}

// overlayChanges reads an overlay upper directory: whiteouts are
// deletions, paths present below are modifications, the rest additions.
func overlayChanges(upper string, lowers []string) ([]containertypes.FilesystemChange, error) {
	skip := map[string]bool{}
	for _, p := range mountPoints(upper) {
		skip[p] = true
	}
	inLower := func(rel string) bool {
		for _, l := range lowers {
			if _, err := os.Lstat(filepath.Join(l, rel)); err == nil {
				return true
			}
		}
		return false
	}
	var out []containertypes.FilesystemChange
	err := filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(upper, p)
		if rel == "." {
			return nil
		}
		if skip[rel] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeCharDevice != 0 {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Rdev == 0 {
				out = append(out, containertypes.FilesystemChange{Path: "/" + rel, Kind: containertypes.ChangeDelete})
				return nil
			}
		}
		kind := containertypes.ChangeAdd
		if inLower(rel) {
			kind = containertypes.ChangeModify
		}
		out = append(out, containertypes.FilesystemChange{Path: "/" + rel, Kind: kind})
		if d.IsDir() && kind == containertypes.ChangeModify && isOpaque(p) {
			// An opaque directory replaced everything below it.
			for _, l := range lowers {
				ents, _ := os.ReadDir(filepath.Join(l, rel))
				for _, e := range ents {
					if _, err := os.Lstat(filepath.Join(p, e.Name())); errors.Is(err, fs.ErrNotExist) {
						out = append(out, containertypes.FilesystemChange{Path: "/" + filepath.Join(rel, e.Name()), Kind: containertypes.ChangeDelete})
					}
				}
			}
		}
		return nil
	})
	return dedupe(out), err
}

func isOpaque(dir string) bool {
	buf := make([]byte, 4)
	for _, attr := range []string{"trusted.overlay.opaque", "user.overlay.opaque"} {
		if n, err := unix.Lgetxattr(dir, attr, buf); err == nil && n == 1 && buf[0] == 'y' {
			return true
		}
	}
	return false
}

func dedupe(in []containertypes.FilesystemChange) []containertypes.FilesystemChange {
	seen := map[string]bool{}
	out := in[:0]
	for _, c := range in {
		if !seen[c.Path] {
			seen[c.Path] = true
			out = append(out, c)
		}
	}
	return out
}

// copyChanges compares a copy-based (vfs) writable layer with its parent.
func (b *Builder) copyChanges(ctx context.Context, key string, mounts []snapshot.Mount) ([]containertypes.FilesystemChange, error) {
	if len(mounts) != 1 || mounts[0].Type != "bind" {
		return nil, fmt.Errorf("cannot compute the changes of %s", key)
	}
	info, err := b.d.Snapshots.Stat(ctx, key)
	if err != nil {
		return nil, err
	}
	old := ""
	if info.Parent != "" {
		vkey := "diff-" + key
		_ = b.d.Snapshots.Remove(ctx, vkey)
		vm, err := b.d.Snapshots.View(ctx, vkey, info.Parent)
		if err != nil {
			return nil, err
		}
		defer b.d.Snapshots.Remove(context.WithoutCancel(ctx), vkey)
		old = vm[0].Source
	} else {
		old, err = os.MkdirTemp(filepath.Join(b.d.DataRoot, "builder", "tmp"), "empty-")
		if err != nil {
			return nil, err
		}
		defer os.Remove(old)
	}
	changes, err := goarchive.ChangesDirs(mounts[0].Source, old)
	if err != nil {
		return nil, err
	}
	skip := map[string]bool{}
	for _, p := range mountPoints(mounts[0].Source) {
		skip["/"+p] = true
	}
	var out []containertypes.FilesystemChange
	for _, c := range changes {
		if skip[c.Path] {
			continue
		}
		out = append(out, containertypes.FilesystemChange{Path: c.Path, Kind: containertypes.ChangeType(c.Kind)})
	}
	return out, nil
}

// Commit makes an image from a container's changes, as docker commit.
func (b *Builder) Commit(ctx context.Context, opts api.CommitOptions) (string, error) {
	c, err := b.inspect(ctx, opts.Container)
	if err != nil {
		return "", err
	}
	var ref reference.Named
	if opts.Repo != "" {
		s := opts.Repo
		if opts.Tag != "" {
			s += ":" + opts.Tag
		}
		ref, err = reference.ParseNormalizedNamed(s)
		if err != nil {
			return "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid reference format: %s", s))
		}
		if _, ok := ref.(reference.Digested); ok {
			return "", errdefs.ErrInvalidArgument.WithMessage("refusing to create a tag with a digest reference")
		}
		ref = reference.TagNameOnly(ref)
	} else if opts.Tag != "" {
		return "", errdefs.ErrInvalidArgument.WithMessage("tag is specified without a repository")
	}
	parent, err := b.d.Images.Get(ctx, digestOf(c.Image))
	if err != nil {
		return "", fmt.Errorf("image of container %s: %w", c.ID[:12], err)
	}
	if opts.Pause && c.State != nil && c.State.Running && !c.State.Paused {
		if p, ok := b.d.Containers.(Pauser); ok {
			if err := p.Pause(ctx, c.ID); err == nil {
				defer func() { _ = p.Unpause(context.WithoutCancel(ctx), c.ID) }()
			}
		}
	}
	cfg := imageConfigFrom(c.Config)
	if opts.Config != nil {
		mergeCommitConfig(&cfg, opts.Config)
	}
	if err := archive.ApplyChanges(&cfg, opts.Changes); err != nil {
		return "", err
	}
	rc, err := b.ChangesTar(ctx, c.ID)
	if err != nil {
		return "", err
	}
	l, err := b.storeLayer(ctx, rc)
	rc.Close()
	if err != nil {
		return "", err
	}
	st := &stageState{id: parent.ID, img: parent, cfg: cloneImageConfig(parent.Config)}
	st.cfg.Config = cfg
	if opts.Author != "" {
		st.cfg.Author = opts.Author
	}
	r := &run{b: b, out: discard{}}
	createdBy := strings.TrimSpace(c.Path + " " + strings.Join(c.Args, " "))
	if err := r.commit(ctx, st, "", createdBy, l, opts.Comment); err != nil {
		return "", err
	}
	if ref != nil {
		if err := b.d.Images.AddReference(ctx, ref, st.id); err != nil {
			return "", err
		}
		b.emit(eventtypes.ActionTag, st.id.String(), reference.FamiliarString(ref))
	}
	if b.d.Events != nil {
		attrs := map[string]string{"comment": opts.Comment, "imageID": st.id.String(), "name": c.Name}
		if ref != nil {
			attrs["imageRef"] = reference.FamiliarString(ref)
		}
		b.d.Events.Publish(eventtypes.Message{
			Type: eventtypes.ContainerEventType, Action: eventtypes.ActionCommit,
			Actor: eventtypes.Actor{ID: c.ID, Attributes: attrs}, TimeNano: time.Now().UnixNano(),
		})
	}
	return st.id.String(), nil
}

func digestOf(s string) digest.Digest {
	if !strings.Contains(s, ":") {
		s = "sha256:" + s
	}
	return digest.Digest(s)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func imageConfigFrom(c *containertypes.Config) dockerspec.DockerOCIImageConfig {
	var out dockerspec.DockerOCIImageConfig
	if c == nil {
		return out
	}
	out.User = c.User
	out.Env = append([]string(nil), c.Env...)
	out.Entrypoint = append([]string(nil), c.Entrypoint...)
	out.Cmd = append([]string(nil), c.Cmd...)
	out.WorkingDir = c.WorkingDir
	out.StopSignal = c.StopSignal
	out.Shell = append([]string(nil), c.Shell...)
	out.OnBuild = append([]string(nil), c.OnBuild...)
	if len(c.Labels) > 0 {
		out.Labels = map[string]string{}
		for k, v := range c.Labels {
			out.Labels[k] = v
		}
	}
	if len(c.ExposedPorts) > 0 {
		out.ExposedPorts = map[string]struct{}{}
		for p := range c.ExposedPorts {
			out.ExposedPorts[p.String()] = struct{}{}
		}
	}
	if len(c.Volumes) > 0 {
		out.Volumes = map[string]struct{}{}
		for v := range c.Volumes {
			out.Volumes[v] = struct{}{}
		}
	}
	if h := c.Healthcheck; h != nil {
		out.Healthcheck = &dockerspec.HealthcheckConfig{
			Test: h.Test, Interval: h.Interval, Timeout: h.Timeout,
			StartPeriod: h.StartPeriod, StartInterval: h.StartInterval, Retries: h.Retries,
		}
	}
	return out
}

// mergeCommitConfig lays the config given with the commit request over
// the container's.
func mergeCommitConfig(cfg *dockerspec.DockerOCIImageConfig, c *containertypes.Config) {
	in := imageConfigFrom(c)
	if in.User != "" {
		cfg.User = in.User
	}
	if len(in.Env) > 0 {
		cfg.Env = in.Env
	}
	if len(in.Cmd) > 0 {
		cfg.Cmd = in.Cmd
	}
	if len(in.Entrypoint) > 0 {
		cfg.Entrypoint = in.Entrypoint
	}
	if in.WorkingDir != "" {
		cfg.WorkingDir = in.WorkingDir
	}
	for k, v := range in.Labels {
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		cfg.Labels[k] = v
	}
	for p := range in.ExposedPorts {
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = map[string]struct{}{}
		}
		cfg.ExposedPorts[p] = struct{}{}
	}
	if in.StopSignal != "" {
		cfg.StopSignal = in.StopSignal
	}
}
