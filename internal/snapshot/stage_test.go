package snapshot_test

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-engine/berth/internal/fsutil"
	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/berth-engine/berth/internal/snapshot/overlay"
	st "github.com/berth-engine/berth/internal/snapshot/snapshottest"
	"github.com/berth-engine/berth/internal/testutil"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// overlayIn makes an overlay2 snapshotter in a temp dir and returns the dir.
func overlayIn(t *testing.T) (string, snapshot.Snapshotter) {
	t.Helper()
	testutil.RequiresRoot(t)
	root := t.TempDir()
	sn, err := overlay.New(filepath.Join(root, "overlay2"))
	if err != nil {
		t.Skip("overlay2 unavailable:", err)
	}
	t.Cleanup(func() { sn.Close() })
	return root, sn
}

// Layers staged in reverse order and committed in order give the same tree
// as unpacking them one after the other: whiteouts and opaque directories
// do not depend on the layers below.
func TestStageLayersOutOfOrder(t *testing.T) {
	root, sn := overlayIn(t)
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
	// Staged layers are spread over ext4's block groups, away from the
	// inodes of the layers removed last (fsutil.SpreadDirs).
	if marked, supported := fsutil.HasSpreadFlag(staging); supported && !marked {
		t.Errorf("staging root %s not marked to spread staged layers", staging)
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

// A layer big enough for writeback passes during its extraction, in which
// later entries replace a regular file by a fifo and add a fifo and a
// device node, stages and commits whole: the passes open nothing but
// regular files (a fifo opened for reading would block).
func TestStageLayerWithWritebackPasses(t *testing.T) {
	root, sn := overlayIn(t)
	big := func(seed byte) []byte {
		b := make([]byte, 9<<20+77)
		for i := range b {
			b[i] = byte(i>>9) ^ seed
		}
		return b
	}
	a, b := big(1), big(2)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body []byte) {
		h.Size = int64(len(body))
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	add(&tar.Header{Name: "a", Typeflag: tar.TypeReg}, a)
	add(&tar.Header{Name: "a", Typeflag: tar.TypeFifo}, nil)
	add(&tar.Header{Name: "p", Typeflag: tar.TypeFifo}, nil)
	add(&tar.Header{Name: "null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}, nil)
	add(&tar.Header{Name: "b", Typeflag: tar.TypeReg}, b)
	add(&tar.Header{Name: "c", Typeflag: tar.TypeReg}, a)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	diffID := digest.FromBytes(buf.Bytes())
	staged, err := snapshot.StageLayer(t.Context(), sn, filepath.Join(root, "staging"), diffID, bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if err := snapshot.CommitStaged(t.Context(), sn, "", diffID, staged); err != nil {
		t.Fatal(err)
	}
	mounts, err := sn.View(t.Context(), "view", diffID.String())
	if err != nil {
		t.Fatal(err)
	}
	dir := st.MountT(t, mounts)
	defer st.UnmountT(t, dir)
	if got := st.ReadFile(t, filepath.Join(dir, "b")); got != string(b) {
		t.Errorf("b: %d bytes differ", len(got))
	}
	if got := st.ReadFile(t, filepath.Join(dir, "c")); got != string(a) {
		t.Errorf("c: %d bytes differ", len(got))
	}
	for name, typ := range map[string]os.FileMode{"a": os.ModeNamedPipe, "p": os.ModeNamedPipe, "null": os.ModeDevice | os.ModeCharDevice} {
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Type() != typ {
			t.Errorf("%s: %v, %v", name, fi, err)
		}
	}
}
