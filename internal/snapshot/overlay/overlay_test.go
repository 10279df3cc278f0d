package overlay_test

import (
	"testing"

	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/berth-engine/berth/internal/snapshot/overlay"
	"github.com/berth-engine/berth/internal/snapshot/snapshottest"
)

func newOverlay(t *testing.T, root string) snapshot.Snapshotter {
	t.Helper()
	sn, err := overlay.New(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sn.Close() })
	return sn
}

func TestOverlay(t *testing.T) {
	snapshottest.Suite(t, "overlay2", newOverlay)
}
