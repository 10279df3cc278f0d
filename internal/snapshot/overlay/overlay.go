// Package overlay is the overlay2 storage driver: committed snapshots are
// overlayfs lower layers, an active snapshot is an overlay mount with its own
// upper and work directories, like docker's overlay2 and containerd's
// overlayfs snapshotter.
package overlay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/berth-engine/berth/internal/snapshot/storage"
	"github.com/containerd/errdefs"
)

// New opens (creating if needed) an overlay2 snapshotter whose layers live
// under root. It fails if overlayfs cannot be used on root's filesystem
// (see snapshot.OverlaySupported).
func New(root string) (snapshot.Snapshotter, error) {
	// Layer paths go into lowerdir=a:b:… lists, where these characters
	// are separators or escapes.
	if strings.ContainsAny(root, `:,\`) {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("overlay2 root %q must not contain ':', ',' or '\\'", root))
	}
	if err := snapshot.OverlaySupported(root); err != nil {
		return nil, fmt.Errorf("overlay2 on %s: %w", root, err)
	}
	d := &driver{}
	// index=off lets a lower layer be shared by many overlays without the
	// kernel's inode index tying it to one of them (docker does the same).
	// redirect_dir=off and metacopy=off keep a container's upper directory
	// a plain change set (renamed directories and chmods are full copies,
	// not kernel-private xattrs), so that it can be exported as a layer
	// tarball (docker commit / build), whatever the distribution's defaults.
	for _, o := range []string{"index", "redirect_dir", "metacopy"} {
		if _, err := os.Stat("/sys/module/overlay/parameters/" + o); err == nil {
			d.options = append(d.options, o+"=off")
		}
	}
	return storage.New(root, d)
}

type driver struct {
	options []string // added to every overlay mount
}

func (d *driver) Name() string { return "overlay2" }

// Create makes the work directory overlay needs next to an active
// snapshot's upper directory (fs).
func (d *driver) Create(ctx context.Context, dir string, kind snapshot.Kind, parents []string) error {
	if kind != snapshot.KindActive {
		return nil
	}
	if err := os.Mkdir(filepath.Join(dir, "work"), 0o700); err != nil {
		return fmt.Errorf("overlay2: %w", err)
	}
	return nil
}

// Mounts returns, for an active snapshot, a bind mount of its empty upper
// directory when it has no parent and an overlay on its parents otherwise;
// for a view, a read-only bind of its only layer or a read-only overlay
// (lowerdirs only) of several.
func (d *driver) Mounts(dir string, kind snapshot.Kind, parents []string) []snapshot.Mount {
	fs := filepath.Join(dir, "fs")
	if kind == snapshot.KindView {
		switch len(parents) {
		case 0:
			return []snapshot.Mount{bind(fs, "ro")}
		case 1:
			return []snapshot.Mount{bind(filepath.Join(parents[0], "fs"), "ro")}
		}
		return []snapshot.Mount{d.overlay("lowerdir=" + lowerdir(parents))}
	}
	if len(parents) == 0 {
		return []snapshot.Mount{bind(fs, "rw")}
	}
	return []snapshot.Mount{d.overlay(
		"workdir="+filepath.Join(dir, "work"),
		"upperdir="+fs,
		"lowerdir="+lowerdir(parents),
	)}
}

func (d *driver) overlay(opts ...string) snapshot.Mount {
	return snapshot.Mount{
		Type:    "overlay",
		Source:  "overlay",
		Options: append(append([]string(nil), d.options...), opts...),
	}
}

func bind(source, mode string) snapshot.Mount {
	return snapshot.Mount{Type: "bind", Source: source, Options: []string{"rbind", mode}}
}

// lowerdir lists the parents' trees, nearest (uppermost) first.
func lowerdir(parents []string) string {
	dirs := make([]string, len(parents))
	for i, p := range parents {
		dirs[i] = filepath.Join(p, "fs")
	}
	return strings.Join(dirs, ":")
}
