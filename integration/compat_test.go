package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/testutil"
)

// The stock docker CLI, pointed at berth's socket, runs the everyday
// scenarios with docker's output and exit codes.
func TestDockerCLICompat(t *testing.T) {
	testutil.RequiresDockerCLI(t)
	testutil.RequiresBusybox(t)
	d := testutil.StartDaemon(t, binDir)
	tarPath := testutil.BusyboxTarFile(t, d.Root)

	// import, images, tag, history, inspect
	id := strings.TrimSpace(d.MustDocker(t, "import", "-c", `CMD ["sh"]`, tarPath, "busybox:latest"))
	if !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("docker import printed %q", id)
	}
	if out := d.MustDocker(t, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"); strings.TrimSpace(out) != "busybox:latest "+id[7:19] {
		t.Errorf("docker images: %q", out)
	}
	d.MustDocker(t, "tag", "busybox", "bb:2")
	if out := d.MustDocker(t, "history", "--format", "{{.ID}}", "bb:2"); !strings.Contains(out, id[7:19]) {
		t.Errorf("docker history: %q", out)
	}
	var imgs []map[string]any
	if err := json.Unmarshal([]byte(d.MustDocker(t, "image", "inspect", "bb:2")), &imgs); err != nil || len(imgs) != 1 || imgs[0]["Id"] != id {
		t.Errorf("docker image inspect: %v %v", imgs, err)
	}

	// run: foreground output and exit codes
	if r := d.Docker(t, "run", "--rm", "busybox", "echo", "hi from docker cli"); r.ExitCode != 0 || r.Stdout != "hi from docker cli\n" {
		t.Errorf("docker run: %s", r)
	}
	if r := d.Docker(t, "run", "--rm", "busybox", "sh", "-c", "echo e >&2; exit 3"); r.ExitCode != 3 || r.Stderr != "e\n" {
		t.Errorf("docker run exit 3: %s", r)
	}
	if r := d.Docker(t, "run", "--rm", "busybox", "nosuchcmd"); r.ExitCode != 127 {
		t.Errorf("docker run missing executable: %s", r)
	}
	if r := d.Docker(t, "run", "--rm", "busybox", "/etc"); r.ExitCode != 126 {
		t.Errorf("docker run of a directory: %s", r)
	}
	if r := testutil.Run(t, d.DockerCmd("run", "-i", "--rm", "busybox", "tr", "a-z", "A-Z"), "stdin ok\n"); r.Stdout != "STDIN OK\n" {
		t.Errorf("docker run -i: %s", r)
	}

	// run -d, ps, logs, inspect, rename, stop, kill, wait, rm
	cid := strings.TrimSpace(d.MustDocker(t, "run", "-d", "--name", "svc", "busybox", "sh", "-c", "echo ready; trap 'exit 0' TERM; while true; do sleep 0.1; done"))
	if len(cid) != 64 {
		t.Fatalf("docker run -d printed %q", cid)
	}
	eventually(t, "docker logs", func() bool { return d.MustDocker(t, "logs", "svc") == "ready\n" })
	if out := d.MustDocker(t, "ps", "--format", "{{.Names}} {{.Status}}"); !strings.HasPrefix(out, "svc Up") {
		t.Errorf("docker ps: %q", out)
	}
	if out := strings.TrimSpace(d.MustDocker(t, "inspect", "-f", "{{.State.Running}} {{.Config.Image}} {{.Name}}", "svc")); out != "true busybox /svc" {
		t.Errorf("docker inspect: %q", out)
	}
	d.MustDocker(t, "rename", "svc", "svc2")
	d.MustDocker(t, "stop", "svc2")
	if out := strings.TrimSpace(d.MustDocker(t, "wait", "svc2")); out != "0" {
		t.Errorf("docker wait: %q", out)
	}
	d.MustDocker(t, "start", "svc2")
	d.MustDocker(t, "kill", "svc2")
	if out := strings.TrimSpace(d.MustDocker(t, "inspect", "-f", "{{.State.ExitCode}}", "svc2")); out != "137" {
		t.Errorf("exit code after docker kill: %q", out)
	}
	if r := d.Docker(t, "rm", "nosuch"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "No such container: nosuch") {
		t.Errorf("docker rm unknown: %s", r)
	}
	d.MustDocker(t, "rm", "svc2")
	if out := d.MustDocker(t, "ps", "-aq"); out != "" {
		t.Errorf("containers left: %q", out)
	}

	// save, rmi, load
	saved := filepath.Join(t.TempDir(), "bb.tar")
	d.MustDocker(t, "save", "-o", saved, "bb:2")
	if out := d.MustDocker(t, "rmi", "bb:2"); !strings.Contains(out, "Untagged: bb:2") {
		t.Errorf("docker rmi (untag): %q", out)
	}
	if out := d.MustDocker(t, "rmi", "busybox"); !strings.Contains(out, "Deleted: "+id) {
		t.Errorf("docker rmi (delete): %q", out)
	}
	if out := d.MustDocker(t, "load", "-i", saved); !strings.Contains(out, "Loaded image: bb:2") {
		t.Errorf("docker load: %q", out)
	}
	if r := d.Docker(t, "run", "--rm", "bb:2", "echo", "loaded"); r.Stdout != "loaded\n" {
		t.Errorf("run after docker load: %s", r)
	}
	if _, err := os.Stat(saved); err != nil {
		t.Fatal(err)
	}
}

func TestDockerCLIInteractiveTTY(t *testing.T) {
	testutil.RequiresDockerCLI(t)
	d := daemonWithBusybox(t)
	testInteractiveTTY(t, d, d.DockerCmd)
}

func TestDockerCLIRunRemovesOnFailedStart(t *testing.T) {
	testutil.RequiresDockerCLI(t)
	d := daemonWithBusybox(t)
	// docker's CLI waits for the removal of an --rm container whose start
	// failed; the daemon must remove it or the CLI would hang.
	r := d.Docker(t, "run", "--rm", "busybox", "nosuchcmd")
	if r.ExitCode != 127 {
		t.Fatalf("exit %d: %s", r.ExitCode, r)
	}
	if out := d.MustDocker(t, "ps", "-aq"); out != "" {
		t.Fatalf("failed --rm container left behind: %q", out)
	}
}
