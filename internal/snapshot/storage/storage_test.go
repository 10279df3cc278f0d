package storage

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-engine/berth/internal/fsutil"
	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

func requiresRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root: this test mounts filesystems")
	}
}

// testDriver binds a snapshot's own tree; enough to test the metadata side.
type testDriver struct{}

func (testDriver) Name() string { return "test" }
func (testDriver) Create(context.Context, string, snapshot.Kind, []string) error {
	return nil
}
func (testDriver) Mounts(dir string, _ snapshot.Kind, _ []string) []snapshot.Mount {
	return []snapshot.Mount{{Type: "bind", Source: filepath.Join(dir, "fs"), Options: []string{"rbind", "rw"}}}
}

func open(t *testing.T, root string) *Snapshotter {
	t.Helper()
	s, err := New(root, testDriver{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestNewRejectsRelativeRoot(t *testing.T) {
	if _, err := New("relative", testDriver{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("New(relative): %v, want invalid argument", err)
	}
}

func TestSecondOpenIsUnavailable(t *testing.T) {
	root := t.TempDir()
	s := open(t, root)
	if _, err := New(root, testDriver{}); !errdefs.IsUnavailable(err) {
		t.Errorf("second New on %s: %v, want unavailable", root, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Stat(t.Context(), "x"); err == nil {
		t.Error("Stat after Close succeeded")
	}
	open(t, root)
}

func TestIDsAreShortAndNotReused(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := t.Context()
	seen := map[string]bool{}
	for i := range 5 {
		name := string(rune('a' + i))
		m, err := s.Prepare(ctx, name, "")
		if err != nil {
			t.Fatal(err)
		}
		id := filepath.Base(filepath.Dir(m[0].Source))
		if len(id) > 2 || seen[id] {
			t.Errorf("snapshot dir id %q (seen before: %v)", id, seen[id])
		}
		seen[id] = true
		if err := s.Remove(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
}

// A crash can leave a snapshot directory with something mounted inside
// it. Cleaning it up must detach the mount, not delete through it.
func TestRecoverDoesNotDeleteThroughMounts(t *testing.T) {
	requiresRoot(t)
	root := t.TempDir()
	s := open(t, root)
	precious := t.TempDir()
	if err := os.WriteFile(filepath.Join(precious, "keep"), []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(root, "snapshots", "77", "fs", "mnt")
	if err := os.MkdirAll(stray, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(precious, stray, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = snapshot.UnmountAll(stray) })
	// A mounted file too, which only the EBUSY of deleting it reveals.
	strayFile := filepath.Join(root, "snapshots", "77", "fs", "file")
	if err := os.WriteFile(strayFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(filepath.Join(precious, "keep"), strayFile, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = snapshot.UnmountAll(strayFile) })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	open(t, root)
	if _, err := os.Stat(filepath.Join(root, "snapshots", "77")); !os.IsNotExist(err) {
		t.Errorf("stray directory survived: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(precious, "keep")); err != nil || string(b) != "keep" {
		t.Errorf("cleanup deleted through a mount: %q %v", b, err)
	}
}

func TestCorruptParentChainFails(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := t.Context()
	if _, err := s.Prepare(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, "base", "a"); err != nil {
		t.Fatal(err)
	}
	// Make base its own parent: a loop must fail, not hang.
	err := s.db.Update(func(tx *bolt.Tx) error {
		r, err := getRecord(tx, "base")
		if err != nil {
			return err
		}
		r.Parent = "base"
		return putRecord(tx, "base", r)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prepare(ctx, "b", "base"); err == nil {
		t.Error("Prepare on a parent loop succeeded")
	}
}

// Remove frees the snapshot's name and directory at once and deletes the
// directory in the background (Close waits for it); a crash mid-way leaves
// a trash directory that the next New deletes.
func TestRemoveTrashesDirectory(t *testing.T) {
	root := t.TempDir()
	s := open(t, root)
	ctx := t.Context()
	if _, err := s.Prepare(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "snapshots", "1", "fs", "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "snapshots", "1")); !os.IsNotExist(err) {
		t.Errorf("snapshot directory still under its name: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(filepath.Join(root, "snapshots")); len(entries) != 0 {
		t.Errorf("left after Close: %v", entries)
	}
	leftover := filepath.Join(root, "snapshots", fsutil.TrashPrefix+"7-x", "fs")
	if err := os.MkdirAll(leftover, 0o700); err != nil {
		t.Fatal(err)
	}
	open(t, root)
	if entries, _ := os.ReadDir(filepath.Join(root, "snapshots")); len(entries) != 0 {
		t.Errorf("trash survived New: %v", entries)
	}
}

// Snapshot directories (a container's writable layer is one) are spread
// over ext4's block groups (see fsutil.SpreadDirs).
func TestSnapshotsDirHasSpreadFlag(t *testing.T) {
	root := t.TempDir()
	if _, supported := fsutil.HasSpreadFlag(root); !supported {
		t.Skipf("%s: not on ext2/3/4", root)
	}
	open(t, root)
	if marked, _ := fsutil.HasSpreadFlag(filepath.Join(root, "snapshots")); !marked {
		t.Errorf("New(%s) did not mark snapshots/ to spread snapshot directories", root)
	}
}
