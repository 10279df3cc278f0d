package oci

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

func TestResolveUser(t *testing.T) {
	root := fixtureRootfs(t)
	tests := []struct {
		spec     string
		groupAdd []string
		uid, gid uint32
		gids     []uint32
		home     string
		err      string
	}{
		{spec: "", uid: 0, gid: 0, gids: []uint32{0}, home: "/root"},
		{spec: "root", uid: 0, gid: 0, gids: []uint32{0}, home: "/root"},
		{spec: "alice", uid: 1000, gid: 1000, gids: []uint32{1000, 10, 100}, home: "/home/alice"},
		{spec: "1000", uid: 1000, gid: 1000, gids: []uint32{1000, 10, 100}, home: "/home/alice"},
		// An explicit group replaces the primary one and drops the
		// implicit supplementary groups, as in docker.
		{spec: "alice:users", uid: 1000, gid: 100, gids: []uint32{100}, home: "/home/alice"},
		{spec: "alice:4242", uid: 1000, gid: 4242, gids: []uint32{4242}, home: "/home/alice"},
		{spec: "nobody:nogroup", uid: 65534, gid: 65534, gids: []uint32{65534}, home: "/nonexistent"},
		// Numeric IDs need not exist.
		{spec: "4242", uid: 4242, gid: 0, gids: []uint32{0}},
		{spec: "4242:4343", uid: 4242, gid: 4343, gids: []uint32{4343}},
		{spec: "daemon", groupAdd: []string{"wheel", "5000", "users", "wheel"}, uid: 1, gid: 1, gids: []uint32{1, 10, 100, 5000}, home: "/usr/sbin"},
		{spec: "alice", groupAdd: []string{"users"}, uid: 1000, gid: 1000, gids: []uint32{1000, 10, 100}, home: "/home/alice"},
		{spec: "foo", err: "unable to find user foo: no matching entries in passwd file"},
		{spec: "alice:staff", err: "unable to find group staff: no matching entries in group file"},
		{spec: "", groupAdd: []string{"staff"}, err: "unable to find group staff: no matching entries in group file"},
		{spec: "root", groupAdd: []string{""}, err: "invalid group to add: empty name"},
		{spec: "99999999999", err: "uids and gids must be in range"},
	}
	for _, tc := range tests {
		t.Run(tc.spec+"+"+strings.Join(tc.groupAdd, ","), func(t *testing.T) {
			u, home, err := ResolveUser(root, tc.spec, tc.groupAdd)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err && !strings.Contains(err.Error(), tc.err) || !errdefs.IsInvalidArgument(err) {
					t.Fatalf("err = %v, want invalid argument %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.UID != tc.uid || u.GID != tc.gid || !slices.Equal(u.AdditionalGids, tc.gids) || home != tc.home {
				t.Errorf("got %d:%d %v home %q; want %d:%d %v home %q", u.UID, u.GID, u.AdditionalGids, home, tc.uid, tc.gid, tc.gids, tc.home)
			}
		})
	}
}

func TestResolveUserMissingFiles(t *testing.T) {
	root := t.TempDir() // no /etc at all
	if u, home, err := ResolveUser(root, "", nil); err != nil || u.UID != 0 || home != "" {
		t.Errorf("default user without passwd: %+v %q %v", u, home, err)
	}
	if u, _, err := ResolveUser(root, "1000:1000", []string{"10"}); err != nil || u.UID != 1000 || !slices.Equal(u.AdditionalGids, []uint32{1000, 10}) {
		t.Errorf("numeric user without passwd: %+v %v", u, err)
	}
	if _, _, err := ResolveUser(root, "alice", nil); err == nil || err.Error() != "unable to find user alice: no matching entries in passwd file" {
		t.Errorf("named user without passwd: %v", err)
	}
}

// An image's /etc/passwd is untrusted: a symlink out of the rootfs is
// resolved inside it, and a FIFO or device is no passwd file.
func TestResolveUserHostileFiles(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(dir, "outside")
	if err := os.WriteFile(outside, []byte("evil:x:0:0::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../outside", filepath.Join(root, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ResolveUser(root, "evil", nil); err == nil {
		t.Error("a passwd symlink escaped the root filesystem")
	}
	// An absolute symlink is relative to the rootfs too.
	os.Remove(filepath.Join(root, "etc", "passwd"))
	if err := os.Symlink(outside, filepath.Join(root, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ResolveUser(root, "evil", nil); err == nil {
		t.Error("an absolute passwd symlink escaped the root filesystem")
	}
	os.Remove(filepath.Join(root, "etc", "passwd"))
	if err := unix.Mkfifo(filepath.Join(root, "etc", "passwd"), 0o644); err != nil {
		t.Fatal(err)
	}
	if u, _, err := ResolveUser(root, "123", nil); err != nil || u.UID != 123 {
		t.Errorf("FIFO passwd: %+v %v", u, err)
	}
}

// FuzzResolveUser: the passwd and group files come from images and the
// user spec from the API. No input may panic or resolve a name that is
// not in the files.
func FuzzResolveUser(f *testing.F) {
	f.Add("alice:x:1000:1000::/home/alice:/bin/sh\n", "users:x:100:alice\n", "alice", "users")
	f.Add("::::::\n:x:-1:-1\n", "g:x:99999999999:\n", ":", "-1")
	f.Add("a:x:1:1\n", "", "a:b:c", "")
	f.Fuzz(func(t *testing.T, passwd, group, spec, add string) {
		root := t.TempDir()
		if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(passwd), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "etc/group"), []byte(group), 0o644); err != nil {
			t.Fatal(err)
		}
		var groupAdd []string
		if add != "" {
			groupAdd = strings.Split(add, ",")
		}
		u, _, err := ResolveUser(root, spec, groupAdd)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("error of another kind: %v", err)
			}
			return
		}
		if len(u.AdditionalGids) == 0 || u.AdditionalGids[0] != u.GID {
			t.Fatalf("supplementary groups %v do not start with the primary %d", u.AdditionalGids, u.GID)
		}
		name, _, _ := strings.Cut(spec, ":")
		if name != "" && !strings.Contains(passwd, name) && strings.Trim(name, "0123456789") != "" {
			t.Fatalf("user %q resolved though passwd does not name it", name)
		}
	})
}
