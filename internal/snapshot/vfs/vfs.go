// Package vfs is the copy-based storage driver, for filesystems where
// overlayfs cannot be mounted: an active snapshot starts as a full copy of
// its parent's tree and is bind-mounted. Slow and disk-hungry, but works
// everywhere (docker's vfs, containerd's native snapshotter).
package vfs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/berth-engine/berth/internal/snapshot/storage"
	"golang.org/x/sys/unix"
)

// New opens (creating if needed) a vfs snapshotter under root.
func New(root string) (snapshot.Snapshotter, error) {
	return storage.New(root, driver{})
}

type driver struct{}

func (driver) Name() string { return "vfs" }

// Create copies the parent's whole tree into a new active snapshot. Views
// need no copy: they bind the parent read-only.
func (driver) Create(ctx context.Context, dir string, kind snapshot.Kind, parents []string) error {
	if kind != snapshot.KindActive || len(parents) == 0 {
		return nil
	}
	dst := filepath.Join(dir, "fs")
	if err := CopyTree(ctx, filepath.Join(parents[0], "fs"), dst); err != nil {
		return fmt.Errorf("vfs: %w", err)
	}
	// The copy must be on disk before the metadata that says it exists.
	f, err := os.Open(dst)
	if err != nil {
		return fmt.Errorf("vfs: %w", err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("vfs: syncfs %s: %w", dst, err)
	}
	return nil
}

// Mounts binds an active snapshot's own tree read-write, and a view's
// parent tree (or its own empty one) read-only.
func (driver) Mounts(dir string, kind snapshot.Kind, parents []string) []snapshot.Mount {
	source, mode := filepath.Join(dir, "fs"), "rw"
	if kind == snapshot.KindView {
		mode = "ro"
		if len(parents) > 0 {
			source = filepath.Join(parents[0], "fs")
		}
	}
	return []snapshot.Mount{{Type: "bind", Source: source, Options: []string{"rbind", mode}}}
}
