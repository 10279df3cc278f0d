package overlay_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/berth-engine/berth/internal/snapshot/overlay"
	st "github.com/berth-engine/berth/internal/snapshot/snapshottest"
	"github.com/berth-engine/berth/internal/testutil"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// lowerdirs returns the layer directories of an overlay mount, top first.
func lowerdirs(t *testing.T, mounts []snapshot.Mount) []string {
	t.Helper()
	if len(mounts) != 1 || mounts[0].Type != "overlay" {
		t.Fatalf("mounts %+v, want one overlay", mounts)
	}
	for _, o := range mounts[0].Options {
		if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
			return strings.Split(v, ":")
		}
	}
	t.Fatalf("no lowerdir in %v", mounts[0].Options)
	return nil
}

// Docker whiteouts must land in a layer as overlayfs whiteouts: a 0/0
// character device for a deleted name and trusted.overlay.opaque=y on an
// opaque directory, with no ".wh." files left.
func TestWhiteoutsBecomeOverlayWhiteouts(t *testing.T) {
	testutil.RequiresRoot(t)
	sn := newOverlay(t, t.TempDir())
	l1 := st.NewLayer(t, st.File("a", "a"), st.Dir("d"), st.File("d/x", "x"), st.Whiteout("never-existed"), st.Dir("gone"), st.File("gone/f", "f"))
	l2 := st.NewLayer(t, st.Whiteout("a"), st.Dir("d"), st.Opaque("d"), st.File("d/new", "new"), st.Whiteout("gone"))
	chains := st.UnpackChain(t, sn, l1, l2)
	mounts, err := sn.Prepare(t.Context(), "probe", chains[1].String())
	if err != nil {
		t.Fatal(err)
	}
	layers := lowerdirs(t, mounts)
	if len(layers) != 2 {
		t.Fatalf("lowerdirs %v, want 2", layers)
	}
	top, base := layers[0], layers[1]
	for _, name := range []string{"a", "gone"} {
		var s unix.Stat_t
		if err := unix.Lstat(filepath.Join(top, name), &s); err != nil {
			t.Fatalf("whiteout %s: %v", name, err)
		}
		if s.Mode&unix.S_IFMT != unix.S_IFCHR || s.Rdev != 0 {
			t.Errorf("whiteout %s: mode %#o rdev %d, want a 0/0 char device", name, s.Mode, s.Rdev)
		}
	}
	buf := make([]byte, 8)
	n, err := unix.Lgetxattr(filepath.Join(top, "d"), "trusted.overlay.opaque", buf)
	if err != nil || string(buf[:n]) != "y" {
		t.Errorf("d: trusted.overlay.opaque = %q, %v; want y", buf[:max(n, 0)], err)
	}
	// The base layer has nothing below it: whiteouts are simply applied.
	for _, dir := range []string{top, base} {
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && strings.HasPrefix(d.Name(), ".wh.") {
				t.Errorf("docker whiteout file left in a layer: %s", p)
			}
			return nil
		})
	}
	if _, err := os.Lstat(filepath.Join(base, "never-existed")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("base layer has a whiteout for never-existed: %v", err)
	}
}

// Past ~60 layers under a long root the lowerdir list no longer fits in the
// page mount(2) accepts; MountAll must still mount it.
func TestLongLowerdirMounts(t *testing.T) {
	testutil.RequiresRoot(t)
	root := filepath.Join(t.TempDir(), strings.Repeat("long-directory-name-", 4))
	sn := newOverlay(t, root)
	var layers []st.Layer
	for i := range 140 {
		layers = append(layers, st.NewLayer(t, st.File("n", strings.Repeat("x", i))))
	}
	chains := st.UnpackChain(t, sn, layers...)
	mounts, err := sn.Prepare(t.Context(), "ctr", chains[len(chains)-1].String())
	if err != nil {
		t.Fatal(err)
	}
	if l := len(strings.Join(mounts[0].Options, ",")); l < 2*os.Getpagesize() {
		t.Fatalf("options are only %d bytes: the test does not exercise long mounts", l)
	}
	m := st.MountT(t, mounts)
	if got := st.ReadFile(t, filepath.Join(m, "n")); len(got) != 139 {
		t.Errorf("n has %d bytes, want 139 (from the top layer)", len(got))
	}
	v, err := sn.View(t.Context(), "v", chains[len(chains)-1].String())
	if err != nil {
		t.Fatal(err)
	}
	vm := st.MountT(t, v)
	if got := st.ReadFile(t, filepath.Join(vm, "n")); len(got) != 139 {
		t.Errorf("view: n has %d bytes, want 139", len(got))
	}
}

func TestNewRejectsUnusableRoots(t *testing.T) {
	testutil.RequiresRoot(t)
	for _, root := range []string{"relative/root", filepath.Join(t.TempDir(), "a:b"), filepath.Join(t.TempDir(), "a,b")} {
		if sn, err := overlay.New(root); !errdefs.IsInvalidArgument(err) {
			if err == nil {
				sn.Close()
			}
			t.Errorf("New(%q): %v, want invalid argument", root, err)
		}
	}
}

// overlayfs cannot use an overlay as its upper layer: the probe must say so,
// and New must refuse, instead of failing at the first container.
func TestOverlayNotSupportedOnOverlay(t *testing.T) {
	testutil.RequiresRoot(t)
	dir := t.TempDir()
	for _, d := range []string{"l", "u", "w", "m"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	m := st.MountT(t, []snapshot.Mount{{Type: "overlay", Source: "overlay", Options: []string{
		"lowerdir=" + filepath.Join(dir, "l"), "upperdir=" + filepath.Join(dir, "u"), "workdir=" + filepath.Join(dir, "w"),
	}}})
	inner := filepath.Join(m, "root")
	err := snapshot.OverlaySupported(inner)
	if err == nil {
		t.Fatal("OverlaySupported on an overlay mount: nil, want an error")
	}
	t.Logf("probe: %v", err)
	if sn, err := overlay.New(inner); err == nil {
		sn.Close()
		t.Error("overlay.New on an overlay mount succeeded")
	}
	if err := snapshot.OverlaySupported(t.TempDir()); err != nil {
		t.Errorf("OverlaySupported on %s: %v", os.TempDir(), err)
	}
	// The probe cleans up after itself.
	if entries, _ := os.ReadDir(inner); len(entries) != 0 {
		t.Errorf("probe left %v", entries)
	}
}
