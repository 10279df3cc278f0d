package archive_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/image/archive"
	"github.com/berth-engine/berth/internal/testutil"
)

// podman runs a podman with its own storage in dir (vfs: no mounts), so
// the test touches nothing outside it.
func podman(t *testing.T, dir string, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("podman")
	if err != nil {
		t.Skip("podman not installed")
	}
	base := []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
		"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"}
	cmd := exec.Command(bin, append(base, args...)...)
	cmd.Env = append(os.Environ(), "TMPDIR="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("podman %v: %v\n%s", args, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// Real tarballs from another engine: podman's docker-archive (the legacy
// docker layout, with layer.tar links) and oci-archive (gzip layers) load
// with podman's image ID and name, and podman loads what berth saves, in
// both of its readers.
func TestPodmanInterop(t *testing.T) {
	testutil.RequiresRoot(t)
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skip("podman not installed")
	}
	ctx := context.Background()
	dir := t.TempDir()
	bbPath := filepath.Join(dir, "bb.tar")
	bb := busyboxTar(t)
	if err := os.WriteFile(bbPath, bb, 0o644); err != nil {
		t.Fatal(err)
	}
	podman(t, dir, "import", "-q", "-c", `CMD ["sh"]`, bbPath, "pbusy:1")
	pid := podman(t, dir, "image", "inspect", "--format", "{{.Id}}", "pbusy:1")

	for _, format := range []string{"docker-archive", "oci-archive"} {
		out := filepath.Join(dir, format+".tar")
		podman(t, dir, "save", "-q", "--format", format, "-o", out, "pbusy:1")
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		s := newStores(t)
		res := load(t, s, data)
		if len(res.Images) != 1 || res.Images[0].ID.Encoded() != pid || strings.Join(refNames(res.Images[0]), ",") != "localhost/pbusy:1" {
			t.Errorf("%s: loaded %+v, podman's ID %s", format, res.Images, pid)
		}
	}

	// berth → podman.
	s := newStores(t)
	img := importTar(t, s, gz(t, bb), archive.ImportOptions{Ref: mustParse(t, "berthbusy:1"), Changes: []string{`CMD ["echo", "from berth"]`}})
	saved := filepath.Join(dir, "berth.tar")
	var b bytes.Buffer
	if err := archive.Save(ctx, s.cs, &b, []archive.SaveItem{{Image: img, Refs: refs(t, "berthbusy:1")}}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(saved, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	podman(t, dir, "load", "-q", "-i", saved)
	got := podman(t, dir, "image", "inspect", "--format", "{{.Id}} {{.Config.Cmd}}", "berthbusy:1")
	if got != img.ID.Encoded()+" [echo from berth]" {
		t.Errorf("podman load (docker-archive reader): %q, want ID %s", got, img.ID)
	}
	podman(t, dir, "rmi", "berthbusy:1")
	podman(t, dir, "pull", "-q", "oci-archive:"+saved)
	if got := podman(t, dir, "image", "inspect", "--format", "{{.Id}}", img.ID.Encoded()); got != img.ID.Encoded() {
		t.Errorf("podman pull oci-archive: %q", got)
	}
}
