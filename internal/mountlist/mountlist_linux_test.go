package mountlist

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/testutil"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

func requires(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root: this test mounts filesystems")
	}
	if !Supported() {
		t.Skip("kernel without listmount/statmount (Linux 6.8+)")
	}
}

func mount(t *testing.T, src, dst, fstype string, flags uintptr, data string) bool {
	t.Helper()
	if err := unix.Mount(src, dst, fstype, flags, data); err != nil {
		t.Errorf("mount %s at %s: %v", fstype, dst, err)
		return false
	}
	return true
}

// buildTree mounts under dir: a tmpfs at dir, a tmpfs at dir/a, a bind of
// a file at dir/a/f, a tmpfs at dir/a/b, two tmpfs stacked at dir/c (a
// directory of the first one, the second holding dir/c/d), and returns the
// mount points mountinfo lists there.
func buildTree(t *testing.T, dir string) bool {
	t.Helper()
	if !mount(t, "tmpfs", dir, "tmpfs", 0, "size=1m,mode=755") {
		return false
	}
	for _, d := range []string{"a/b", "c"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Error(err)
			return false
		}
	}
	if !mount(t, "tmpfs", filepath.Join(dir, "a"), "tmpfs", 0, "size=1m,nr_inodes=100") {
		return false
	}
	for _, d := range []string{"a/b"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Error(err)
			return false
		}
	}
	src := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(src, []byte("x"), 0o644); err != nil {
		t.Error(err)
		return false
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "f"), nil, 0o644); err != nil {
		t.Error(err)
		return false
	}
	return mount(t, src, filepath.Join(dir, "a", "f"), "", unix.MS_BIND, "") &&
		mount(t, "tmpfs", filepath.Join(dir, "a", "b"), "tmpfs", unix.MS_RDONLY, "size=2m") &&
		mount(t, "tmpfs", filepath.Join(dir, "c"), "tmpfs", 0, "size=3m") &&
		mount(t, "tmpfs", filepath.Join(dir, "c"), "tmpfs", unix.MS_NOSUID, "size=4m") &&
		os.Mkdir(filepath.Join(dir, "c", "d"), 0o755) == nil &&
		mount(t, "tmpfs", filepath.Join(dir, "c", "d"), "tmpfs", 0, "size=5m")
}

// key is what mountinfo and statmount both tell about a mount.
func keyOfMountinfo(m *mountinfo.Info) string {
	_, opts, _ := strings.Cut(m.VFSOptions, ",")
	return fmt.Sprintf("%d %d %d:%d %s %s %s %s %s", m.ID, m.Parent, m.Major, m.Minor, m.Root, m.Mountpoint, m.FSType, strings.SplitN(m.VFSOptions, ",", 2)[0], opts)
}

func keyOfInfo(i Info) string {
	ro := "rw"
	if i.ReadOnlySB {
		ro = "ro"
	}
	return fmt.Sprintf("%d %d %d:%d %s %s %s %s %s", i.OldID, i.OldParentID, i.Major, i.Minor, i.Root, i.Mountpoint, i.FSType, ro, i.Options)
}

// TestAgreesWithMountinfo lists every mount of a namespace both ways,
// after adding nested, stacked and file mounts to it.
func TestAgreesWithMountinfo(t *testing.T) {
	requires(t)
	dir := t.TempDir()
	testutil.InPrivateMountNS(t, func() {
		if !buildTree(t, dir) {
			return
		}
		want, err := mountinfo.GetMounts(nil)
		if err != nil {
			t.Error(err)
			return
		}
		rootID, isRoot, err := Lookup("/")
		if err != nil || !isRoot {
			t.Errorf("Lookup(/) = %d, %v, %v", rootID, isRoot, err)
			return
		}
		infos, err := Descendants(rootID)
		if err != nil {
			t.Error(err)
			return
		}
		root, err := Stat(rootID, WithOptions)
		if err != nil {
			t.Error(err)
			return
		}
		got := []string{keyOfInfo(root)}
		var order, wantOrder []uint32
		for _, i := range infos {
			info, err := Stat(i.ID, WithOptions)
			if err != nil {
				t.Error(err)
				return
			}
			if info.ID != i.ID || info.Mountpoint != i.Mountpoint || info.ParentID != i.ParentID {
				t.Errorf("Stat(%d) = %+v, Descendants had %+v", i.ID, info, i)
			}
			got = append(got, keyOfInfo(info))
			order = append(order, info.OldID)
		}
		var wantKeys []string
		for _, m := range want {
			wantKeys = append(wantKeys, keyOfMountinfo(m))
			if uint32(m.ID) != root.OldID {
				wantOrder = append(wantOrder, uint32(m.ID))
			}
		}
		// mountinfo lists parents before children, as Descendants does;
		// on kernels that list whole subtrees both follow the mount tree.
		slices.Sort(got)
		slices.Sort(wantKeys)
		if !slices.Equal(got, wantKeys) {
			t.Errorf("listmount/statmount and mountinfo disagree:\n got  %q\n want %q", got, wantKeys)
		}
		if !slices.Equal(order, wantOrder) {
			t.Logf("order differs (children-only listmount): %v vs %v", order, wantOrder)
		}
	})
}

// TestLookupAndDescendants checks the subtree of one mount and what
// Lookup says of mount points, stacked mounts and plain directories.
func TestLookupAndDescendants(t *testing.T) {
	requires(t)
	dir := t.TempDir()
	testutil.InPrivateMountNS(t, func() {
		if !buildTree(t, dir) {
			return
		}
		top, isRoot, err := Lookup(dir)
		if err != nil || !isRoot {
			t.Errorf("Lookup(%s) = %v, %v", dir, isRoot, err)
			return
		}
		infos, err := Descendants(top)
		if err != nil {
			t.Error(err)
			return
		}
		var got []string
		for _, info := range infos {
			got = append(got, strings.TrimPrefix(info.Mountpoint, dir))
		}
		slices.Sort(got)
		want := []string{"/a", "/a/b", "/a/f", "/c", "/c", "/c/d"}
		if !slices.Equal(got, want) {
			t.Errorf("mounts below %s: %q, want %q", dir, got, want)
		}
		// The topmost of the two stacked at c, which holds c/d.
		c, isRoot, err := Lookup(filepath.Join(dir, "c"))
		if err != nil || !isRoot {
			t.Errorf("Lookup(c) = %v, %v", isRoot, err)
			return
		}
		if info, err := Stat(c, WithOptions); err != nil || !strings.Contains(info.Options, "size=4096k") || info.Attr&unix.MOUNT_ATTR_NOSUID == 0 {
			t.Errorf("Stat(c) = %+v, %v; want the nosuid size=4m tmpfs on top", info, err)
		}
		if below, err := Descendants(c); err != nil || len(below) != 1 || below[0].Mountpoint != filepath.Join(dir, "c", "d") {
			t.Errorf("Descendants(c) = %+v, %v; want c/d", below, err)
		}
		// A directory that is no mount point: on its parent's mount.
		a, _, _ := Lookup(filepath.Join(dir, "a"))
		// a/b is a mount point of its own, on top of a.
		id, isRoot, err := Lookup(filepath.Join(dir, "a", "b", "."))
		if err != nil || !isRoot || id == a {
			t.Errorf("Lookup(a/b/.) = %d, %v, %v; want a mount root other than a's %d", id, isRoot, err, a)
		}
		if err := os.Mkdir(filepath.Join(dir, "a", "plain"), 0o755); err != nil {
			t.Error(err)
			return
		}
		id, isRoot, err = Lookup(filepath.Join(dir, "a", "plain"))
		if err != nil || isRoot || id != a {
			t.Errorf("Lookup(a/plain) = %d, %v, %v; want %d (a's), false", id, isRoot, err, a)
		}
		if _, _, err := Lookup(filepath.Join(dir, "missing")); !errors.Is(err, unix.ENOENT) {
			t.Errorf("Lookup(missing) = %v, want ENOENT", err)
		}
		if _, err := Stat(1); err == nil {
			t.Error("Stat of a mount ID that no mount has succeeded")
		}
	})
}

// Below lists what listmount gives below a mount, each with the source
// mountinfo shows when asked WithSource.
func TestBelowWithSource(t *testing.T) {
	requires(t)
	dir := t.TempDir()
	testutil.InPrivateMountNS(t, func() {
		if !buildTree(t, dir) {
			return
		}
		want, err := mountinfo.GetMounts(nil)
		if err != nil {
			t.Error(err)
			return
		}
		byOld := map[uint32]*mountinfo.Info{}
		for _, m := range want {
			byOld[uint32(m.ID)] = m
		}
		id, _, err := Lookup(dir)
		if err != nil {
			t.Error(err)
			return
		}
		below, err := Below(id, WithSource)
		if err != nil {
			t.Error(err)
			return
		}
		if len(below) == 0 {
			t.Errorf("Below(%s) listed nothing; buildTree mounts below it", dir)
		}
		for _, i := range below {
			m := byOld[i.OldID]
			if m == nil {
				t.Errorf("Below listed mount %d (%s), which mountinfo does not have", i.OldID, i.Mountpoint)
				continue
			}
			if i.Mountpoint != m.Mountpoint || (i.Source != "" && i.Source != m.Source) {
				t.Errorf("mount %d: Below says %s from %q, mountinfo %s from %q", i.OldID, i.Mountpoint, i.Source, m.Mountpoint, m.Source)
			}
			if !strings.HasPrefix(i.Mountpoint, dir+"/") {
				t.Errorf("Below(%s) listed %s", dir, i.Mountpoint)
			}
		}
	})
}
