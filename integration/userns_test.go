package integration

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-engine/berth/internal/testutil"
)

// remapUser creates a system user (and its group) for --userns-remap with
// one subordinate uid and gid range, and removes the user, the group and
// exactly the lines it added to /etc/subuid and /etc/subgid at the end.
// It returns the user's name and the range's first host id.
func remapUser(t *testing.T) (string, int) {
	t.Helper()
	name := "btu-" + randHex(t, 4)
	files := []string{"/etc/subuid", "/etc/subgid"}
	existed := map[string]bool{}
	for _, f := range files {
		_, err := os.Stat(f)
		existed[f] = err == nil
	}
	// A range above everything the files hold, so the test never shares
	// ids with another user.
	start := 1 << 30
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, l := range strings.Split(string(b), "\n") {
			p := strings.Split(l, ":")
			if len(p) != 3 {
				continue
			}
			s, err1 := strconv.Atoi(p[1])
			n, err2 := strconv.Atoi(p[2])
			if err1 == nil && err2 == nil && s+n > start {
				start = s + n
			}
		}
	}
	t.Cleanup(func() {
		if _, err := user.Lookup(name); err == nil {
			if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
				t.Errorf("userdel %s: %v: %s", name, err, out)
			}
		}
		if _, err := user.LookupGroup(name); err == nil {
			_ = exec.Command("groupdel", name).Run()
		}
		// userdel drops the user's subordinate ranges; make sure of it,
		// touching no other line.
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			var keep []string
			for _, l := range strings.SplitAfter(string(b), "\n") {
				if !strings.HasPrefix(l, name+":") {
					keep = append(keep, l)
				}
			}
			rest := strings.Join(keep, "")
			if rest != string(b) {
				if err := os.WriteFile(f, []byte(rest), 0o644); err != nil {
					t.Errorf("restore %s: %v", f, err)
				}
			}
			if !existed[f] && strings.TrimSpace(rest) == "" {
				_ = os.Remove(f)
				_ = os.Remove(f + "-")
			}
		}
	})
	if out, err := exec.Command("useradd", "--system", "--user-group", "--no-create-home", "--shell", "/bin/false", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v: %s", err, out)
	}
	r := fmt.Sprintf("%d-%d", start, start+65535)
	if out, err := exec.Command("usermod", "--add-subuids", r, "--add-subgids", r, name).CombinedOutput(); err != nil {
		t.Fatalf("usermod: %v: %s", err, out)
	}
	return name, start
}

func ownerOf(t *testing.T, path string) (int, int) {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	return int(sys.Uid), int(sys.Gid)
}

// TestUsernsRemap: with --userns-remap, container root is the first id
// of the user's subordinate range on the host: image files owned by root
// are root's inside (idmapped layers, unchanged on disk), what the
// container writes is owned by the mapped id on disk, volumes are
// writable, root-only host files reached through a bind mount are out of
// reach, and --userns=host opts out.
func TestUsernsRemap(t *testing.T) {
	testutil.RequiresBusybox(t)
	testutil.RequiresDockerCLI(t)
	name, base := remapUser(t)
	d := testutil.NewDaemon(t, binDir, "--userns-remap", name)
	// The test root is 0700; the remapped root must be able to walk to
	// the exec-root below it, as it can to /run/berth.
	if err := os.Chmod(d.Root, 0o711); err != nil {
		t.Fatal(err)
	}
	d.Start(t)
	d.ImportBusybox(t, "busybox:latest")
	mapped := fmt.Sprintf("%d.%d", base, base)
	remappedRoot := filepath.Join(d.DataRoot, mapped)

	info := d.MustDocker(t, "info", "--format", "{{json .SecurityOptions}}|{{.DockerRootDir}}")
	if !strings.Contains(info, `"name=userns"`) || !strings.HasSuffix(strings.TrimSpace(info), "|"+remappedRoot) {
		t.Errorf("docker info: %q, want name=userns and root %s", info, remappedRoot)
	}
	if uid, gid := ownerOf(t, remappedRoot); uid != 0 || gid != base {
		t.Errorf("%s owned by %d:%d, want 0:%d", remappedRoot, uid, gid, base)
	}

	// Inside: root, and the image's root-owned files are root's.
	out := d.MustDocker(t, "run", "--rm", "busybox", "sh", "-c",
		`id -u; stat -c %u:%g / /bin/busybox /etc/hosts; cat /proc/self/uid_map; touch /etc/hosts && echo hosts-writable`)
	want := fmt.Sprintf("0\n0:0\n0:0\n0:0\n0 %d 65536\nhosts-writable\n", base)
	if got := strings.Join(strings.Fields(out), " "); got != strings.Join(strings.Fields(want), " ") {
		t.Errorf("inside a remapped container:\n%s\nwant:\n%s", out, want)
	}

	// Outside: the process and what it writes are the mapped ids; the
	// layer on disk still says root.
	id := strings.TrimSpace(d.MustBerth(t, "run", "-d", "--name", "c1", "busybox", "sh", "-c", "echo hi > /created; touch /bin/busybox; mkdir /d; sleep 1000"))
	pid := inspectField(t, d, id, "{{.State.Pid}}")
	if got := inspectField(t, d, id, "{{.BerthSecurity.UserNamespace}}"); !strings.HasPrefix(got, "remapped: uid 0->") {
		t.Errorf("inspect's user namespace: %q", got)
	}
	eventually(t, "the container to write its files", func() bool {
		_, err := os.Stat("/proc/" + pid + "/root/d")
		return err == nil
	})
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), fmt.Sprintf("Uid:\t%d\t%d", base, base)) {
		t.Errorf("container process is not uid %d on the host:\n%s", base, status)
	}
	var upperCreated, upperBusybox, lowerBusybox []string
	_ = filepath.WalkDir(filepath.Join(remappedRoot, "overlay2"), func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		switch {
		case strings.HasSuffix(p, "/fs/created"):
			upperCreated = append(upperCreated, p)
		case strings.HasSuffix(p, "/fs/bin/busybox"):
			if strings.Contains(p, "/fs/bin/busybox") && len(upperBusybox)+len(lowerBusybox) < 8 {
				if uid, _ := ownerOf(t, p); uid == base {
					upperBusybox = append(upperBusybox, p)
				} else {
					lowerBusybox = append(lowerBusybox, p)
				}
			}
		}
		return nil
	})
	if d.MustBerth(t, "info", "--format", "{{.Driver}}") != "overlay2\n" {
		t.Skip("the rest checks overlay2's on-disk layout")
	}
	if len(upperCreated) != 1 {
		t.Fatalf("found %v for the container's new file", upperCreated)
	}
	if uid, gid := ownerOf(t, upperCreated[0]); uid != base || gid != base {
		t.Errorf("the container's file is %d:%d on disk, want %d:%d", uid, gid, base, base)
	}
	if len(lowerBusybox) != 1 || len(upperBusybox) != 1 {
		t.Errorf("busybox in the layer %v (want owned by 0) and copied up %v (want owned by %d)", lowerBusybox, upperBusybox, base)
	} else if uid, _ := ownerOf(t, lowerBusybox[0]); uid != 0 {
		t.Errorf("the image layer was changed on disk: %s owned by %d", lowerBusybox[0], uid)
	}
	// exec joins the user namespace.
	if out := d.MustDocker(t, "exec", "c1", "sh", "-c", "id -u; stat -c %u /created"); strings.Join(strings.Fields(out), " ") != "0 0" {
		t.Errorf("exec in a remapped container: %q", out)
	}

	// cp in and out, commit and build carry the container's ids, not
	// the host's.
	local := filepath.Join(t.TempDir(), "cpfile")
	if err := os.WriteFile(local, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(local, 7, 8); err != nil {
		t.Fatal(err)
	}
	d.MustDocker(t, "cp", local, "c1:/cpfile")
	if out := d.MustDocker(t, "exec", "c1", "stat", "-c", "%u:%g", "/cpfile"); strings.TrimSpace(out) != "7:8" {
		t.Errorf("cp into a remapped container: owner %q inside, want 7:8", out)
	}
	if uid, gid := ownerOf(t, "/proc/"+pid+"/root/cpfile"); uid != base+7 || gid != base+8 {
		t.Errorf("cp into a remapped container: owner %d:%d on the host, want %d:%d", uid, gid, base+7, base+8)
	}
	d.MustDocker(t, "exec", "c1", "chown", "3:4", "/created")
	r := testutil.Run(t, d.DockerCmd("cp", "c1:/created", "-"), "")
	if r.ExitCode != 0 {
		t.Fatalf("cp out: %s", r)
	}
	hdr, err := tar.NewReader(strings.NewReader(r.Stdout)).Next()
	if err != nil || hdr.Uid != 3 || hdr.Gid != 4 {
		t.Errorf("cp out of a remapped container: %+v %v, want owner 3:4", hdr, err)
	}
	d.MustDocker(t, "commit", "c1", "committed:1")
	if out := d.MustDocker(t, "run", "--rm", "--userns=host", "committed:1", "stat", "-c", "%u:%g", "/created", "/cpfile", "/bin/busybox"); strings.Join(strings.Fields(out), " ") != "3:4 7:8 0:0" {
		t.Errorf("committed layer owners: %q, want the container's ids", out)
	}
	ctx := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM busybox\nRUN touch /built && chown 5:6 /built\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.MustDocker(t, "build", "-q", "-t", "built:1", ctx)
	for _, mode := range []string{"--userns=host", "--userns="} {
		if out := d.MustDocker(t, "run", "--rm", mode, "built:1", "stat", "-c", "%u:%g", "/built"); strings.TrimSpace(out) != "5:6" {
			t.Errorf("built layer seen with %s: owner %q, want 5:6", mode, out)
		}
	}

	// A daemon restart keeps the remapped container and its namespace.
	d.Stop(t)
	d.Start(t)
	if out := d.MustBerth(t, "exec", "c1", "cat", "/proc/self/uid_map"); strings.Join(strings.Fields(out), " ") != fmt.Sprintf("0 %d 65536", base) {
		t.Errorf("exec after a daemon restart: %q", out)
	}

	// Volumes: root inside can write, the file is the mapped id outside.
	out = d.MustBerth(t, "run", "--rm", "-v", "vol1:/data", "busybox", "sh", "-c", "touch /data/f && stat -c %u:%g /data /data/f")
	if strings.Join(strings.Fields(out), " ") != "0:0 0:0" {
		t.Errorf("volume inside: %q", out)
	}
	mp := strings.TrimSpace(d.MustBerth(t, "volume", "inspect", "-f", "{{.Mountpoint}}", "vol1"))
	if uid, gid := ownerOf(t, filepath.Join(mp, "f")); uid != base || gid != base {
		t.Errorf("volume file owned by %d:%d on disk, want %d:%d", uid, gid, base, base)
	}

	// A root-only host file through a bind mount: no read, no write.
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("host secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = d.Docker(t, "run", "--rm", "-v", secret+":/secret", "busybox", "sh", "-c", "cat /secret; echo pwned >> /secret; chmod 666 /secret; chown 0 /secret")
	if strings.Contains(r.Stdout, "host secret") || !strings.Contains(r.Stderr, "Permission denied") && !strings.Contains(r.Stdout+r.Stderr, "ermission denied") {
		t.Errorf("remapped root reached a root-only host file: %s", r)
	}
	if b, _ := os.ReadFile(secret); !bytes.Equal(b, []byte("host secret\n")) {
		t.Errorf("host file changed: %q", b)
	}
	if st, _ := os.Stat(secret); st.Mode().Perm() != 0o600 {
		t.Errorf("host file mode changed: %v", st.Mode())
	}
	// A missing -v source is created for the remapped root.
	newSrc := filepath.Join(dir, "made", "sub")
	d.MustDocker(t, "run", "--rm", "-v", newSrc+":/m", "busybox", "touch", "/m/f")
	for _, p := range []string{filepath.Join(dir, "made"), newSrc, filepath.Join(newSrc, "f")} {
		if uid, gid := ownerOf(t, p); uid != base || gid != base {
			t.Errorf("%s owned by %d:%d, want %d:%d", p, uid, gid, base, base)
		}
	}
	if uid, _ := ownerOf(t, dir); uid != 0 {
		t.Errorf("the existing parent %s was chowned to %d", dir, uid)
	}

	// What a user namespace cannot do is refused at create, in dockerd's words.
	for _, args := range [][]string{{"--network", "host"}, {"--pid", "host"}, {"--privileged"}} {
		r := d.Docker(t, append(append([]string{"create"}, args...), "busybox", "true")...)
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, "user namespaces") {
			t.Errorf("create %v in a remapping daemon: %s", args, r)
		}
	}
	d.MustDocker(t, "run", "--rm", "--userns=host", "--network", "host", "busybox", "true")
	if out := d.MustDocker(t, "ps", "-aq"); strings.TrimSpace(out) != strings.TrimSpace(d.MustDocker(t, "ps", "-q")) {
		t.Errorf("refused creates left containers: %q", out)
	}

	// The same container with --userns=host is real root: the control
	// that shows the refusal above comes from the mapping.
	out = d.MustDocker(t, "run", "--rm", "--userns=host", "-v", secret+":/secret", "busybox", "sh", "-c", "cat /secret; cat /proc/self/uid_map; stat -c %u /bin/busybox")
	if strings.Join(strings.Fields(out), " ") != "host secret 0 0 4294967295 0" {
		t.Errorf("--userns=host: %q", out)
	}
}

// TestUsernsRemapVFS: without overlayfs the writable copy of the image is
// chowned into the mapping (a chowned copy per container).
func TestUsernsRemapVFS(t *testing.T) {
	testutil.RequiresBusybox(t)
	name, base := remapUser(t)
	d := testutil.NewDaemon(t, binDir, "--userns-remap", name, "--storage-driver", "vfs")
	if err := os.Chmod(d.Root, 0o711); err != nil {
		t.Fatal(err)
	}
	d.Start(t)
	d.ImportBusybox(t, "busybox:latest")
	out := d.MustBerth(t, "run", "--name", "v1", "busybox", "sh", "-c", "stat -c %u:%g / /bin/busybox; touch /new; stat -c %u /new; cat /proc/self/uid_map")
	if got := strings.Join(strings.Fields(out), " "); got != fmt.Sprintf("0:0 0:0 0 0 %d 65536", base) {
		t.Errorf("inside a remapped vfs container: %q", out)
	}
	var found int
	_ = filepath.WalkDir(filepath.Join(d.DataRoot, fmt.Sprintf("%d.%d", base, base), "vfs"), func(p string, de fs.DirEntry, err error) error {
		if err != nil || !strings.HasSuffix(p, "/bin/busybox") {
			return nil
		}
		found++
		uid, _ := ownerOf(t, p)
		// The layer keeps root; the container's copy is shifted.
		if uid != 0 && uid != base {
			t.Errorf("%s owned by %d", p, uid)
		}
		return nil
	})
	if found < 2 {
		t.Errorf("found %d copies of busybox under vfs, want the layer's and the container's", found)
	}
	if out := d.MustBerth(t, "run", "--rm", "--userns=host", "busybox", "stat", "-c", "%u", "/bin/busybox"); strings.TrimSpace(out) != "0" {
		t.Errorf("--userns=host on vfs: %q", out)
	}
}

// TestUsernsRemapDefault: "default" creates the berthremap user with
// subordinate ranges when missing (removed again by the test if it made
// them) and maps container root to the start of that range.
func TestUsernsRemapDefault(t *testing.T) {
	testutil.RequiresBusybox(t)
	_, had := user.Lookup("berthremap")
	if had == nil {
		t.Log("berthremap exists already; the test leaves it alone")
	} else {
		before := map[string][]byte{}
		for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
			b, err := os.ReadFile(f)
			if err == nil {
				before[f] = b
			}
		}
		t.Cleanup(func() {
			if _, err := user.Lookup("berthremap"); err == nil {
				if out, err := exec.Command("userdel", "berthremap").CombinedOutput(); err != nil {
					t.Errorf("userdel berthremap: %v: %s", err, out)
				}
			}
			if _, err := user.LookupGroup("berthremap"); err == nil {
				_ = exec.Command("groupdel", "berthremap").Run()
			}
			for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
				b, err := os.ReadFile(f)
				if err != nil {
					continue
				}
				var keep []string
				for _, l := range strings.SplitAfter(string(b), "\n") {
					if !strings.HasPrefix(l, "berthremap:") {
						keep = append(keep, l)
					}
				}
				if rest := strings.Join(keep, ""); rest != string(b) {
					_ = os.WriteFile(f, []byte(rest), 0o644)
				}
				if _, existed := before[f]; !existed {
					_ = os.Remove(f)
				}
			}
		})
	}
	d := testutil.NewDaemon(t, binDir, "--userns-remap", "default")
	if err := os.Chmod(d.Root, 0o711); err != nil {
		t.Fatal(err)
	}
	d.Start(t)
	if _, err := user.Lookup("berthremap"); err != nil {
		t.Fatalf("berthremap was not created: %v", err)
	}
	b, _ := os.ReadFile("/etc/subuid")
	start := -1
	for _, l := range strings.Split(string(b), "\n") {
		if p := strings.Split(l, ":"); len(p) == 3 && p[0] == "berthremap" {
			start, _ = strconv.Atoi(p[1])
			break
		}
	}
	if start < 100000 {
		t.Fatalf("no subordinate uids for berthremap in /etc/subuid:\n%s", b)
	}
	d.ImportBusybox(t, "busybox:latest")
	out := d.MustBerth(t, "run", "--rm", "busybox", "cat", "/proc/self/uid_map")
	if f := strings.Fields(out); len(f) != 3 || f[0] != "0" || f[1] != strconv.Itoa(start) || f[2] != "65536" {
		t.Errorf("uid_map %q, want 0 %d 65536", out, start)
	}
	info := d.MustBerth(t, "info", "--format", "{{.DockerRootDir}}")
	if !strings.HasPrefix(info, fmt.Sprintf("%s/%d.", d.DataRoot, start)) {
		t.Errorf("info root %q, want %s/%d.<gid>", info, d.DataRoot, start)
	}
}
