package integration

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/testutil"
)

func tarNames(t *testing.T, b []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("tar: %v", err)
		}
		names = append(names, h.Name)
	}
	sort.Strings(names)
	return names
}

// cp in both directions on stopped and running containers, docker's
// rules for existing directories and trailing slashes, paths in volumes,
// tar streams, and export.
func TestCp(t *testing.T) {
	d := daemonWithBusybox(t)
	tmp := t.TempDir()
	id := strings.TrimSpace(d.MustBerth(t, "create", "--name", "cpbox", "-v", "cpvol:/vol", "busybox", "sleep", "1000"))

	// Into a stopped container: a file to a new name, a dir into an
	// existing dir, a file into a volume.
	src := filepath.Join(tmp, "src")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("A\n"), 0o640)
	os.WriteFile(filepath.Join(src, "sub", "b.txt"), []byte("B\n"), 0o600)
	d.MustBerth(t, "cp", filepath.Join(src, "a.txt"), "cpbox:/tmp/renamed.txt")
	d.MustBerth(t, "cp", src, "cpbox:/tmp")
	d.MustBerth(t, "cp", filepath.Join(src, "a.txt"), "cpbox:/vol/")
	r := d.Berth(t, "cp", filepath.Join(src, "a.txt"), "cpbox:/nonexistent/")
	if r.ExitCode == 0 {
		t.Errorf("cp to a missing dir with a trailing slash: %s", r)
	}
	d.MustBerth(t, "start", id)
	if got := d.MustBerth(t, "exec", id, "sh", "-c", "cat /tmp/renamed.txt /tmp/src/sub/b.txt /vol/a.txt; stat -c %a /tmp/src/sub/b.txt"); got != "A\nB\nA\n600\n" {
		t.Errorf("files in the container: %q", got)
	}

	// Out of a running container: a dir's contents with "/.", a file to
	// a directory, a file from a volume.
	d.MustBerth(t, "exec", id, "sh", "-c", "mkdir -p /out/d && echo X > /out/d/x && echo V > /vol/v")
	outDir := filepath.Join(tmp, "out")
	os.Mkdir(outDir, 0o755)
	d.MustBerth(t, "cp", "cpbox:/out/d/.", outDir)
	d.MustBerth(t, "cp", "cpbox:/vol/v", outDir)
	for f, want := range map[string]string{"x": "X\n", "v": "V\n"} {
		if b, err := os.ReadFile(filepath.Join(outDir, f)); err != nil || string(b) != want {
			t.Errorf("copied out %s: %q %v", f, b, err)
		}
	}
	// A tar stream both ways.
	stream := d.MustBerth(t, "cp", "cpbox:/out", "-")
	if got := tarNames(t, []byte(stream)); strings.Join(got, " ") != "out/ out/d/ out/d/x" {
		t.Errorf("cp to -: %v", got)
	}
	cmd := d.Cmd("cp", "-", "cpbox:/tmp")
	cmd.Stdin = strings.NewReader(stream)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cp - : %v %s", err, out)
	}
	if got := d.MustBerth(t, "exec", id, "cat", "/tmp/out/d/x"); got != "X\n" {
		t.Errorf("cp from -: %q", got)
	}
	// -L follows a symlink in the container.
	d.MustBerth(t, "exec", id, "ln", "-s", "/out/d/x", "/link")
	d.MustBerth(t, "cp", "-L", "cpbox:/link", filepath.Join(tmp, "followed"))
	if b, _ := os.ReadFile(filepath.Join(tmp, "followed")); string(b) != "X\n" {
		t.Errorf("cp -L: %q", b)
	}
	d.MustBerth(t, "cp", "cpbox:/link", filepath.Join(tmp, "kept"))
	if l, err := os.Readlink(filepath.Join(tmp, "kept")); err != nil || l != "/out/d/x" {
		t.Errorf("cp without -L: %q %v", l, err)
	}

	// The /etc files berth provides, as the container sees them.
	d.MustBerth(t, "cp", "cpbox:/etc/hostname", filepath.Join(tmp, "hostname"))
	if b, _ := os.ReadFile(filepath.Join(tmp, "hostname")); string(b) != id[:12]+"\n" {
		t.Errorf("cp of /etc/hostname: %q", b)
	}

	// export: the root filesystem, without the volume's content.
	exp := d.MustBerth(t, "export", id)
	names := strings.Join(tarNames(t, []byte(exp)), " ")
	if !strings.Contains(names, "bin/busybox") || !strings.Contains(names, "tmp/renamed.txt") || strings.Contains(names, "vol/v") {
		t.Errorf("export entries: %.400s", names)
	}
	d.MustBerth(t, "rm", "-f", id)
	d.MustBerth(t, "volume", "rm", "cpvol")
}

// Symlinks in the container pointing at / or ../.. never let cp read or
// write outside the container.
func TestCpSymlinkEscape(t *testing.T) {
	d := daemonWithBusybox(t)
	hostDir := t.TempDir()
	secret := filepath.Join(hostDir, "secret")
	os.WriteFile(secret, []byte("host secret\n"), 0o600)
	id := strings.TrimSpace(d.MustBerth(t, "run", "-d", "busybox", "sh", "-c",
		"ln -s / /rootlink; ln -s ../../../../../../.. /uplink; ln -s "+hostDir+" /hostlink; mkdir -p "+hostDir+"; mkdir /box; sleep 1000"))
	eventually(t, "links made", func() bool {
		return d.Berth(t, "exec", id, "test", "-d", "/box").ExitCode == 0
	})
	// Reading through the links reaches the container's files, not the host's.
	for _, p := range []string{"/rootlink" + secret, "/uplink" + secret, "/hostlink/secret"} {
		r := d.Berth(t, "cp", id+":"+p, filepath.Join(hostDir, "got"))
		if r.ExitCode == 0 {
			t.Errorf("cp of %s read outside the container", p)
		}
	}
	// Writing through them lands inside the container.
	src := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(src, []byte("evil\n"), 0o644)
	for _, p := range []string{"/hostlink/", "/rootlink" + hostDir + "/", "/uplink" + hostDir + "/"} {
		d.Berth(t, "cp", src, id+":"+p)
	}
	if b, _ := os.ReadFile(secret); string(b) != "host secret\n" {
		t.Fatalf("cp wrote outside the container: %q", b)
	}
	if got := d.MustBerth(t, "exec", id, "cat", hostDir+"/secret"); got != "evil\n" {
		t.Errorf("write through a link should land inside the container: %q", got)
	}
	// A tar with ../ names is confined too.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := []byte("evil\n")
	tw.WriteHeader(&tar.Header{Name: "../../../../../../.." + hostDir + "/secret", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	tw.Write(body)
	tw.Close()
	cmd := d.Cmd("cp", "-", id+":/box")
	cmd.Stdin = &buf
	_ = cmd.Run()
	if b, _ := os.ReadFile(secret); string(b) != "host secret\n" {
		t.Fatalf("tar with ../ wrote outside the container: %q", b)
	}
	// The running container's rootfs and network namespace stay mounted.
	if mounts := testutil.MountsBelow(d.ExecRoot); len(mounts) > 2 {
		t.Errorf("mounts left under the exec-root: %v", mounts)
	}
	d.MustBerth(t, "rm", "-f", id)
}

// The stock docker CLI's cp and export work through berth.
func TestCpDockerCLI(t *testing.T) {
	testutil.RequiresDockerCLI(t)
	d := daemonWithBusybox(t)
	tmp := t.TempDir()
	id := strings.TrimSpace(d.MustDocker(t, "run", "-d", "busybox", "sh", "-c", "echo hi > /hi; sleep 1000"))
	eventually(t, "file made", func() bool { return d.Docker(t, "exec", id, "test", "-f", "/hi").ExitCode == 0 })
	d.MustDocker(t, "cp", id+":/hi", tmp)
	if b, _ := os.ReadFile(filepath.Join(tmp, "hi")); string(b) != "hi\n" {
		t.Errorf("docker cp out: %q", b)
	}
	os.WriteFile(filepath.Join(tmp, "in"), []byte("in\n"), 0o644)
	d.MustDocker(t, "cp", filepath.Join(tmp, "in"), id+":/tmp/")
	if got := d.MustDocker(t, "exec", id, "cat", "/tmp/in"); got != "in\n" {
		t.Errorf("docker cp in: %q", got)
	}
	r := d.Docker(t, "cp", id+":/nope", tmp)
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "Could not find the file /nope") {
		t.Errorf("docker cp of a missing file: %s", r)
	}
	out, err := exec.Command(testutil.DockerCLI(), "-H", d.Host, "export", id).Output()
	if err != nil || !strings.Contains(strings.Join(tarNames(t, out), " "), "hi") {
		t.Errorf("docker export: %v", err)
	}
	d.MustDocker(t, "rm", "-f", id)
}

// cp refuses to write into a read-only volume or a read-only root, and
// leaves them unchanged; a writable volume under a read-only root works.
func TestCpReadOnly(t *testing.T) {
	d := daemonWithBusybox(t)
	src := filepath.Join(t.TempDir(), "f")
	os.WriteFile(src, []byte("f\n"), 0o644)
	id := strings.TrimSpace(d.MustBerth(t, "run", "-d", "--read-only", "-v", "rov:/ro:ro", "-v", "rwv:/rw", "busybox", "sleep", "1000"))
	for _, dst := range []string{"/ro/", "/tmp/"} {
		r := d.Berth(t, "cp", src, id+":"+dst)
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, "read-only") {
			t.Errorf("cp into %s: %s", dst, r)
		}
	}
	d.MustBerth(t, "cp", src, id+":/rw/")
	if got := d.MustBerth(t, "exec", id, "cat", "/rw/f"); got != "f\n" {
		t.Errorf("cp into a writable volume under a read-only root: %q", got)
	}
	if got := d.MustBerth(t, "exec", id, "ls", "/ro"); got != "" {
		t.Errorf("read-only volume changed: %q", got)
	}
	d.MustBerth(t, "rm", "-fv", id)
	d.MustBerth(t, "volume", "rm", "rov", "rwv")
}
