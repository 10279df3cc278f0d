// Package snapshot keeps filesystem trees: image layers unpacked once per
// chain ID and shared by every image and container that uses them, and the
// private writable layer of each container.
//
// A layer is unpacked like this (see Unpack):
//
//	mounts, _ := s.Prepare(ctx, "extract-<random> <chainID>", parentChainID)
//	// apply the layer tarball to the prepared tree
//	s.Commit(ctx, chainID, "extract-<random> <chainID>")
//
// and a container gets its writable root with
//
//	mounts, _ := s.Prepare(ctx, containerID, topChainID)
//	snapshot.MountAll(mounts, rootfsDir)
//
// Committed snapshots are read-only and immutable; active snapshots are
// writable and can be committed once. A snapshot with children cannot be
// removed.
//
// Drivers: overlay (overlay2, the default) and vfs (a full copy per active
// snapshot, where overlayfs cannot be mounted), both built on storage, which
// keeps the metadata and recovers from crashes. snapshottest.Suite is the
// conformance suite every driver runs.
//
// Exporting changes as a layer (docker commit / build) is not built yet.
// Its seam: a differ compares an active snapshot's Mounts with a View of its
// parent; on overlay2, UpperDir(mounts) is already the change set, with
// overlay whiteouts to turn back into ".wh." entries (go-archive's
// OverlayWhiteoutFormat does that when packing).
package snapshot

import (
	"context"
	"time"
)

// Kind says what a snapshot is.
type Kind string

const (
	KindActive    Kind = "active"    // writable, from Prepare
	KindView      Kind = "view"      // read-only, from View
	KindCommitted Kind = "committed" // immutable, from Commit
)

// Info describes a snapshot.
type Info struct {
	Name    string
	Parent  string // "" for a base layer
	Kind    Kind
	Created time.Time
	Labels  map[string]string
}

// Usage is the disk space a snapshot adds on top of its parent.
type Usage struct {
	Size   int64 // bytes
	Inodes int64
}

// Mount is one mount(2) call that makes a snapshot's tree appear at a target.
type Mount struct {
	Type    string   // "overlay", "bind"
	Source  string   // device or directory
	Options []string // mount options, e.g. lowerdir=…,upperdir=…,workdir=… or rbind,ro
}

// Opt sets an option on Prepare, View or Commit.
type Opt func(*Info)

// WithLabels attaches labels to a snapshot.
func WithLabels(labels map[string]string) Opt {
	return func(i *Info) {
		if i.Labels == nil {
			i.Labels = map[string]string{}
		}
		for k, v := range labels {
			i.Labels[k] = v
		}
	}
}

// Snapshotter is a store of snapshots. Implementations are safe for
// concurrent use and crash-consistent: metadata and directories are never
// left half-made in a way that a later Open cannot clean up.
type Snapshotter interface {
	// Name is the storage driver name shown to users ("overlay2", "vfs").
	Name() string
	// Stat returns a snapshot's Info, or errdefs.ErrNotFound.
	Stat(ctx context.Context, key string) (Info, error)
	// Mounts returns the mounts of an active or view snapshot.
	Mounts(ctx context.Context, key string) ([]Mount, error)
	// Prepare creates an active snapshot named key on top of the committed
	// snapshot parent ("" for none) and returns its mounts. A key that
	// exists fails with errdefs.ErrAlreadyExists.
	Prepare(ctx context.Context, key, parent string, opts ...Opt) ([]Mount, error)
	// View creates a read-only snapshot of parent.
	View(ctx context.Context, key, parent string, opts ...Opt) ([]Mount, error)
	// Commit turns the active snapshot key into the committed snapshot
	// name; key no longer exists afterwards. A name that exists fails with
	// errdefs.ErrAlreadyExists (and key is left as it was).
	Commit(ctx context.Context, name, key string, opts ...Opt) error
	// Remove deletes a snapshot; errdefs.ErrFailedPrecondition if it has
	// children, errdefs.ErrNotFound if absent.
	Remove(ctx context.Context, key string) error
	// Walk calls fn for every snapshot.
	Walk(ctx context.Context, fn func(Info) error) error
	// Usage returns the space a snapshot adds on top of its parent.
	Usage(ctx context.Context, key string) (Usage, error)
	// Close releases the store.
	Close() error
}
