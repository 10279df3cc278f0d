package snapshot

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/berth-engine/berth/internal/mountlist"
	"github.com/berth-engine/berth/internal/testutil"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// bothWays runs fn with mountlist (where the kernel has it) and with the
// mountinfo fallback.
func bothWays(t *testing.T, fn func(t *testing.T)) {
	for _, ml := range []bool{true, false} {
		name := "mountinfo"
		if ml {
			name = "mountlist"
			if !mountlist.Supported() {
				t.Log("kernel without listmount: mountinfo only")
				continue
			}
		}
		t.Run(name, func(t *testing.T) {
			useMountlist = ml
			defer func() { useMountlist = true }()
			fn(t)
		})
	}
}

func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		t.Error(err)
		return nil
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Mountpoint)
	}
	return out
}

type testMount struct {
	src, rel, fstype string // src "" for a tmpfs; rel "" for dir itself
	flags            uintptr
	mkdir, mkfile    string // made (relative to dir) before mounting
}

func makeMounts(t *testing.T, dir string, ms []testMount) bool {
	t.Helper()
	for _, m := range ms {
		if m.mkdir != "" {
			if err := os.MkdirAll(filepath.Join(dir, m.mkdir), 0o755); err != nil {
				t.Error(err)
				return false
			}
		}
		if m.mkfile != "" {
			if err := os.WriteFile(filepath.Join(dir, m.mkfile), nil, 0o644); err != nil {
				t.Error(err)
				return false
			}
		}
		src, fstype, flags := m.src, m.fstype, m.flags
		if src == "" {
			src, fstype = "tmpfs", "tmpfs"
		} else {
			flags |= unix.MS_BIND
		}
		if err := unix.Mount(src, filepath.Join(dir, m.rel), fstype, flags, ""); err != nil {
			t.Errorf("mount %s at %s: %v", src, m.rel, err)
			return false
		}
	}
	return true
}

// TestUnmountAllTree unmounts nested, stacked and file mounts at and
// below a mounted target, and mounts below a target that is no mount
// point, and checks that what was bind-mounted is untouched.
func TestUnmountAllTree(t *testing.T) {
	requiresRoot(t)
	bothWays(t, func(t *testing.T) {
		precious := t.TempDir()
		if err := os.WriteFile(filepath.Join(precious, "keep"), []byte("keep"), 0o600); err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name   string
			mounts []testMount
		}{
			{"mounted", []testMount{
				{rel: ""},
				{rel: "a", mkdir: "a"},
				{rel: "a/b", mkdir: "a/b"},
				{src: filepath.Join(precious, "keep"), rel: "a/f", mkfile: "a/f"},
				{src: precious, rel: "a/p", mkdir: "a/p"},
				{rel: "c", mkdir: "c"},
				{rel: "c"},
				{rel: "c/d", mkdir: "c/d"},
				{rel: ""}, // stacked on the target, hiding a and c
				{rel: "e", mkdir: "e"},
			}},
			{"not mounted", []testMount{
				{rel: "x/y", mkdir: "x/y"},
				{rel: "x/y/z", mkdir: "x/y/z"},
				{src: precious, rel: "p", mkdir: "p"},
				{src: filepath.Join(precious, "keep"), rel: "x/f", mkfile: "x/f"},
			}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				dir := t.TempDir()
				testutil.InPrivateMountNS(t, func() {
					if !makeMounts(t, dir, tc.mounts) {
						return
					}
					if got := mountsUnder(t, dir); len(got) != len(tc.mounts) {
						t.Errorf("made %d mounts, mountinfo shows %q", len(tc.mounts), got)
						return
					}
					if err := UnmountAll(dir); err != nil {
						t.Errorf("UnmountAll: %v", err)
						return
					}
					if got := mountsUnder(t, dir); len(got) != 0 {
						t.Errorf("still mounted after UnmountAll: %q", got)
					}
					if err := os.RemoveAll(dir); err != nil {
						t.Errorf("remove the unmounted tree: %v", err)
					}
					if err := UnmountAll(dir); err != nil {
						t.Errorf("UnmountAll of a missing dir: %v", err)
					}
				})
				if b, err := os.ReadFile(filepath.Join(precious, "keep")); err != nil || string(b) != "keep" {
					t.Errorf("bind-mounted file after UnmountAll: %q, %v", b, err)
				}
			})
		}
	})
}

// TestUnmountDirs unmounts directories mounted in a tree and leaves
// mounted files to the caller's EBUSY.
func TestUnmountDirs(t *testing.T) {
	requiresRoot(t)
	bothWays(t, func(t *testing.T) {
		precious := t.TempDir()
		if err := os.WriteFile(filepath.Join(precious, "keep"), []byte("keep"), 0o600); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		testutil.InPrivateMountNS(t, func() {
			if !makeMounts(t, dir, []testMount{
				{rel: "fs/mnt", mkdir: "fs/mnt"},
				{src: precious, rel: "fs/mnt/p", mkdir: "fs/mnt/p"},
				{rel: "work", mkdir: "work"},
				{src: filepath.Join(precious, "keep"), rel: "fs/f", mkfile: "fs/f"},
			}) {
				return
			}
			if err := UnmountDirs(dir); err != nil {
				t.Errorf("UnmountDirs: %v", err)
				return
			}
			got := mountsUnder(t, dir)
			want := []string{filepath.Join(dir, "fs/f")}
			if !useMountlist {
				want = nil // the fallback unmounts everything
			}
			if !slices.Equal(got, want) {
				t.Errorf("after UnmountDirs: %q, want %q", got, want)
			}
			if err := UnmountAll(dir); err != nil {
				t.Error(err)
			}
		})
		if b, err := os.ReadFile(filepath.Join(precious, "keep")); err != nil || string(b) != "keep" {
			t.Errorf("bind-mounted file: %q, %v", b, err)
		}
	})
}
