package integration

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/testutil"
)

// debianRegistry is the CNCF distribution registry from Debian's
// docker-registry package, run on 127.0.0.1 as a foreign peer.
const debianRegistry = "/usr/bin/docker-registry"

// startDebianRegistry runs docker-registry on a free loopback port with its
// storage in dir; proxyURL, when set, makes it a pull-through cache of that
// registry (so distribution's own client reads from the upstream).
func startDebianRegistry(t *testing.T, dir, proxyURL string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)
	if proxyURL != "" {
		cfg += "proxy:\n  remoteurl: " + proxyURL + "\n"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(debianRegistry, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			return addr
		}
		select {
		case <-done:
			b, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Fatalf("docker-registry exited: %s", b)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestForeignRegistryInterop(t *testing.T) {
	if _, err := os.Stat(debianRegistry); err != nil {
		t.Skip("requires Debian's docker-registry package (apt-get install docker-registry)")
	}
	d := daemonWithBusybox(t)
	ours := testutil.StartRegistry(t, binDir)
	dir := t.TempDir()
	foreign := startDebianRegistry(t, filepath.Join(dir, "foreign"), "")

	// berth → distribution registry → berth.
	mustCfgBerth(t, d, "tag", "busybox", foreign+"/bb:v1")
	out := mustCfgBerth(t, d, "push", foreign+"/bb:v1")
	assertContains(t, "push to docker-registry", out, "v1: digest: sha256:")
	mustCfgBerth(t, d, "rmi", "busybox", foreign+"/bb:v1")
	mustCfgBerth(t, d, "pull", foreign+"/bb:v1")

	// From the foreign registry into berth's, and out again.
	mustCfgBerth(t, d, "tag", foreign+"/bb:v1", ours.Addr+"/bb:v1")
	mustCfgBerth(t, d, "push", ours.Addr+"/bb:v1")
	mustCfgBerth(t, d, "rmi", foreign+"/bb:v1", ours.Addr+"/bb:v1")
	mustCfgBerth(t, d, "pull", ours.Addr+"/bb:v1")
	if got := mustCfgBerth(t, d, "run", "--rm", ours.Addr+"/bb:v1", "echo", "ok"); got != "ok\n" {
		t.Errorf("run: %q", got)
	}

	// distribution's own client reading berth's registry: docker-registry
	// as a pull-through cache in front of it.
	proxy := startDebianRegistry(t, filepath.Join(dir, "proxy"), "http://"+ours.Addr)
	out = mustCfgBerth(t, d, "pull", proxy+"/bb:v1")
	assertContains(t, "pull through the distribution proxy", out, "Digest: sha256:")
	if id1, id2 := mustCfgBerth(t, d, "image", "inspect", "-f", "{{.Id}}", proxy+"/bb:v1"), mustCfgBerth(t, d, "image", "inspect", "-f", "{{.Id}}", ours.Addr+"/bb:v1"); id1 != id2 {
		t.Errorf("the image changed on its way through distribution: %s vs %s", id1, id2)
	}
	if strings.Contains(out, "Pull complete") {
		t.Errorf("layers downloaded again although present:\n%s", out)
	}
}
