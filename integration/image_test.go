package integration

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/testutil"
)

func TestImportAndImageCommands(t *testing.T) {
	testutil.RequiresBusybox(t)
	d := testutil.StartDaemon(t, binDir)
	tarPath := testutil.BusyboxTarFile(t, d.Root)

	// From a file, with --change and -m.
	id := strings.TrimSpace(d.MustBerth(t, "import", "-c", `CMD ["echo", "from cmd"]`, "-c", "ENV GREETING=hi", "-c", "WORKDIR /tmp", "-c", "LABEL a=b", "-m", "my message", tarPath, "bb:v1"))
	if !strings.HasPrefix(id, "sha256:") || len(id) != 71 {
		t.Fatalf("import printed %q", id)
	}
	if out := d.MustBerth(t, "run", "--rm", "bb:v1"); out != "from cmd\n" {
		t.Errorf("CMD from --change: %q", out)
	}
	if out := d.MustBerth(t, "run", "--rm", "bb:v1", "sh", "-c", "echo $GREETING $(pwd)"); out != "hi /tmp\n" {
		t.Errorf("ENV/WORKDIR from --change: %q", out)
	}
	got := strings.TrimSpace(d.MustBerth(t, "image", "inspect", "-f", "{{.Id}} {{index .Config.Labels \"a\"}} {{.Comment}} {{.Os}}", "bb:v1"))
	if got != id+" b my message linux" {
		t.Errorf("image inspect: %q", got)
	}
	// From stdin, untagged.
	f, err := os.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := d.Cmd("import", "-")
	cmd.Stdin = f
	r := testutil.Run(t, cmd, "")
	f.Close()
	if r.ExitCode != 0 {
		t.Fatalf("import -: %s", r)
	}
	// A bad --change fails cleanly.
	if r := d.Berth(t, "import", "-c", "RUN echo no", tarPath); r.ExitCode == 0 {
		t.Errorf("import accepted RUN as a change: %s", r)
	}

	d.MustBerth(t, "tag", "bb:v1", "example.com:5000/team/bb:prod")
	d.MustBerth(t, "tag", id, "bb:latest")
	imgs := d.MustBerth(t, "images")
	for _, want := range []string{"REPOSITORY", "bb", "v1", "example.com:5000/team/bb", "prod", id[7:19]} {
		if !strings.Contains(imgs, want) {
			t.Errorf("images lacks %q:\n%s", want, imgs)
		}
	}
	if q := lines(d.MustBerth(t, "images", "-q")); len(q) == 0 || q[0] != id[7:19] && q[len(q)-1] != id[7:19] {
		t.Errorf("images -q: %v", q)
	}
	if out := lines(d.MustBerth(t, "images", "--filter", "reference=bb", "--format", "{{.Repository}}:{{.Tag}}")); strings.Join(out, ",") != "bb:latest,bb:v1" && strings.Join(out, ",") != "bb:v1,bb:latest" {
		t.Errorf("reference filter: %v", out)
	}
	if out := lines(d.MustBerth(t, "images", "--filter", "dangling=true", "-q")); len(out) != 1 {
		t.Errorf("dangling filter (the untagged stdin import): %v", out)
	}
	if out := d.MustBerth(t, "images", "--digests"); !strings.Contains(out, "DIGEST") {
		t.Errorf("--digests: %s", out)
	}
	if h := d.MustBerth(t, "history", "bb:v1"); !strings.Contains(h, "IMAGE") || !strings.Contains(h, id[7:19]) || !strings.Contains(h, "my message") {
		t.Errorf("history:\n%s", h)
	}
	if h := d.MustBerth(t, "image", "history", "-q", "bb:v1"); strings.TrimSpace(h) != id[7:19] {
		t.Errorf("history -q: %q", h)
	}

	// rmi untags while other names remain, then deletes.
	if out := d.MustBerth(t, "rmi", "example.com:5000/team/bb:prod"); strings.TrimSpace(out) != "Untagged: example.com:5000/team/bb:prod" {
		t.Errorf("rmi untag: %q", out)
	}
	// An ID with several names needs -f.
	if r := d.Berth(t, "rmi", id[7:19]); r.ExitCode == 0 || !strings.Contains(r.Stderr, "must be forced") {
		t.Errorf("rmi by ID with several tags: %s", r)
	}
	// An image used by a container needs -f to lose its last name.
	cid := strings.TrimSpace(d.MustBerth(t, "create", "bb:v1"))
	d.MustBerth(t, "rmi", "bb:latest")
	r = d.Berth(t, "rmi", "bb:v1")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "is using its referenced image") {
		t.Errorf("rmi of an image in use: %s", r)
	}
	d.MustBerth(t, "rm", cid)
	out := d.MustBerth(t, "rmi", "bb:v1")
	if !strings.Contains(out, "Untagged: bb:v1") || !strings.Contains(out, "Deleted: "+id) {
		t.Errorf("rmi: %q", out)
	}
	if r := d.Berth(t, "image", "inspect", "bb:v1"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "No such image: bb:v1") {
		t.Errorf("inspect after rmi: %s", r)
	}
	if r := d.Berth(t, "rmi", "nosuch"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "No such image: nosuch:latest") {
		t.Errorf("rmi unknown: %s", r)
	}
}

// tarEntries lists the names in a tarball.
func tarEntries(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var b []byte
		if h.Size < 1<<20 {
			b, _ = io.ReadAll(tr)
		}
		out[h.Name] = b
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	d := daemonWithBusybox(t)
	id := strings.TrimSpace(d.MustBerth(t, "image", "inspect", "-f", "{{.Id}}", "busybox"))
	d.MustBerth(t, "tag", "busybox", "copy:1")
	saved := filepath.Join(t.TempDir(), "saved.tar")
	d.MustBerth(t, "save", "-o", saved, "busybox", "copy:1")

	entries := tarEntries(t, saved)
	for _, name := range []string{"manifest.json", "index.json", "oci-layout", "repositories", "blobs/sha256/" + id[7:]} {
		if _, ok := entries[name]; !ok {
			t.Errorf("saved tarball lacks %s", name)
		}
	}
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(entries["manifest.json"], &manifest); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(manifest) != 1 || len(manifest[0].RepoTags) != 2 || manifest[0].Config != "blobs/sha256/"+id[7:] {
		t.Errorf("manifest.json: %+v", manifest)
	}

	// Load into a fresh daemon: same ID, same tags, runnable.
	d2 := testutil.StartDaemon(t, binDir)
	out := d2.MustBerth(t, "load", "-i", saved)
	if !strings.Contains(out, "Loaded image: busybox:latest") || !strings.Contains(out, "Loaded image: copy:1") {
		t.Errorf("load output: %q", out)
	}
	if got := strings.TrimSpace(d2.MustBerth(t, "image", "inspect", "-f", "{{.Id}}", "copy:1")); got != id {
		t.Errorf("loaded ID %s, saved %s", got, id)
	}
	if out := d2.MustBerth(t, "run", "--rm", "copy:1", "echo", "loaded"); out != "loaded\n" {
		t.Errorf("run loaded image: %q", out)
	}
	// Load from stdin, and a save to stdout.
	cmd := d2.Cmd("save", id)
	var buf bytes.Buffer
	cmd.Stdout = &buf
	if err := cmd.Run(); err != nil {
		t.Fatalf("save to stdout: %v", err)
	}
	d3 := testutil.StartDaemon(t, binDir)
	r := testutil.Run(t, d3.Cmd("load"), buf.String())
	if r.ExitCode != 0 || !strings.Contains(r.Stdout, "Loaded image ID: "+id) {
		t.Errorf("load of an untagged save: %s", r)
	}
}

func TestLoadBadTarballsChangeNothing(t *testing.T) {
	d := daemonWithBusybox(t)
	saved := filepath.Join(t.TempDir(), "good.tar")
	d.MustBerth(t, "save", "-o", saved, "busybox")
	good, err := os.ReadFile(saved)
	if err != nil {
		t.Fatal(err)
	}
	// Not the table: its CREATED column ages while the test runs.
	listing := []string{"images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}} {{.Size}}"}
	before := d.MustBerth(t, listing...)

	d2 := testutil.StartDaemon(t, binDir)
	blobs := func() int {
		n := 0
		_ = filepath.Walk(filepath.Join(d2.DataRoot, "content"), func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				n++
			}
			return nil
		})
		return n
	}
	// Truncated in the middle of the layer.
	trunc := filepath.Join(t.TempDir(), "trunc.tar")
	if err := os.WriteFile(trunc, good[:len(good)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	r := d2.Berth(t, "load", "-i", trunc)
	if r.ExitCode == 0 {
		t.Errorf("truncated tarball loaded: %s", r)
	}
	// A layer whose bytes don't match its digest.
	corrupt := append([]byte(nil), good...)
	if i := bytes.Index(corrupt, []byte("root:x:0:0")); i > 0 {
		copy(corrupt[i:], "toor")
	} else {
		t.Fatal("fixture: passwd not found in the saved tarball")
	}
	bad := filepath.Join(t.TempDir(), "corrupt.tar")
	if err := os.WriteFile(bad, corrupt, 0o644); err != nil {
		t.Fatal(err)
	}
	r = d2.Berth(t, "load", "-i", bad)
	if r.ExitCode == 0 || !strings.Contains(strings.ToLower(r.Stderr), "digest") {
		t.Errorf("corrupt tarball: %s", r)
	}
	r = testutil.Run(t, d2.Cmd("load"), "this is not a tarball")
	if r.ExitCode == 0 {
		t.Errorf("garbage loaded: %s", r)
	}
	if imgs := lines(d2.MustBerth(t, "images", "-aq")); len(imgs) != 0 {
		t.Errorf("failed loads left images: %v", imgs)
	}
	if n := blobs(); n != 0 {
		t.Errorf("failed loads left %d blobs in the content store", n)
	}
	if after := d.MustBerth(t, listing...); after != before {
		t.Errorf("source daemon changed:\n%s\nthen:\n%s", before, after)
	}
	// And the good one still loads after all that.
	d2.MustBerth(t, "load", "-i", saved)
}
