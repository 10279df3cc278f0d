package snapshot_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/berth-engine/berth/internal/snapshot/overlay"
	st "github.com/berth-engine/berth/internal/snapshot/snapshottest"
	"github.com/berth-engine/berth/internal/testutil"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// Layers staged in reverse order and committed in order give the same tree
// as unpacking them one after the other: whiteouts and opaque directories
// do not depend on the layers below.
func TestStageLayersOutOfOrder(t *testing.T) {
	testutil.RequiresRoot(t)
	root := t.TempDir()
	sn, err := overlay.New(filepath.Join(root, "overlay2"))
	if err != nil {
		t.Skip("overlay2 unavailable:", err)
	}
	defer sn.Close()
	layers := []st.Layer{
		st.NewLayer(t, st.Dir("a"), st.File("a/x", "x1"), st.File("a/keep", "k"), st.Dir("d"), st.File("d/y", "y")),
		st.NewLayer(t, st.Dir("a"), st.Whiteout("a/x"), st.Opaque("d"), st.File("d/z", "z")),
		st.NewLayer(t, st.File("top", "t")),
	}
	staging := filepath.Join(root, "staging")
	staged := make([]*snapshot.Staged, len(layers))
	for i := len(layers) - 1; i >= 0; i-- {
		s, err := snapshot.StageLayer(t.Context(), sn, staging, layers[i].DiffID, bytes.NewReader(layers[i].Tar))
		if err != nil {
			t.Fatal(err)
		}
		staged[i] = s
	}
	parent := digest.Digest("")
	for i, l := range layers {
		chain := st.ChainID(parent, l.DiffID)
		p := ""
		if parent != "" {
			p = parent.String()
		}
		if err := snapshot.CommitStaged(t.Context(), sn, p, chain, staged[i]); err != nil {
			t.Fatal(err)
		}
		parent = chain
	}
	mounts, err := sn.View(t.Context(), "view", parent.String())
	if err != nil {
		t.Fatal(err)
	}
	dir := st.MountT(t, mounts)
	defer st.UnmountT(t, dir)
	for p, want := range map[string]string{"a/keep": "k", "d/z": "z", "top": "t"} {
		if got := st.ReadFile(t, filepath.Join(dir, p)); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	for _, gone := range []string{"a/x", "d/y"} {
		if _, err := os.Lstat(filepath.Join(dir, gone)); err == nil {
			t.Errorf("%s survived its whiteout", gone)
		}
	}
	if entries, _ := os.ReadDir(staging); len(entries) != 0 {
		t.Errorf("staging left %d entries", len(entries))
	}

	// A stream that does not match its diff ID stages nothing.
	_, err = snapshot.StageLayer(t.Context(), sn, staging, digest.FromString("other"), bytes.NewReader(layers[0].Tar))
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("mismatched diff ID: %v", err)
	}
	if entries, _ := os.ReadDir(staging); len(entries) != 0 {
		t.Errorf("a failed stage left %d entries", len(entries))
	}
}
