package vfs_test

import (
	"testing"

	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/berth-engine/berth/internal/snapshot/snapshottest"
	"github.com/berth-engine/berth/internal/snapshot/vfs"
)

func newVFS(t *testing.T, root string) snapshot.Snapshotter {
	t.Helper()
	sn, err := vfs.New(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sn.Close() })
	return sn
}

func TestVFS(t *testing.T) {
	snapshottest.Suite(t, "vfs", newVFS)
}
