package integration

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestDaemonPingVersionInfo(t *testing.T) {
	d := testutil.StartDaemon(t, binDir)

	resp, err := d.HTTPClient().Get("http://berth/_ping")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "OK" || resp.Header.Get("Api-Version") == "" || resp.Header.Get("Ostype") != "linux" {
		t.Fatalf("ping: %q headers %v", body, resp.Header)
	}
	resp, err = d.HTTPClient().Get("http://berth/v1.24/version")
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ ApiVersion, MinAPIVersion, Version, Os string }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if v.MinAPIVersion != "1.24" || v.ApiVersion < "1.47" || v.Os != "linux" {
		t.Fatalf("version: %+v", v)
	}
	resp, err = d.HTTPClient().Get("http://berth/v1.12/version")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(b), "too old") {
		t.Fatalf("old client version: %d %s", resp.StatusCode, b)
	}

	out := d.MustBerth(t, "version")
	for _, want := range []string{"Client:", "Server:", "API version:"} {
		if !strings.Contains(out, want) {
			t.Errorf("berth version lacks %q:\n%s", want, out)
		}
	}
	info := d.MustBerth(t, "info", "--format", "{{.Driver}} {{.DockerRootDir}} {{.CgroupDriver}} {{.OSType}}")
	if f := strings.Fields(info); len(f) != 4 || (f[0] != "overlay2" && f[0] != "vfs") || f[1] != d.DataRoot || f[2] != "cgroupfs" || f[3] != "linux" {
		t.Fatalf("berth info: %q", info)
	}

	st, err := os.Stat(d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want 0660", st.Mode().Perm())
	}
}

func TestDaemonSecondInstanceRefused(t *testing.T) {
	d := testutil.StartDaemon(t, binDir)
	second := testutil.NewDaemon(t, binDir)
	second.DataRoot = d.DataRoot
	err := second.TryStart()
	if err == nil {
		t.Fatal("a second daemon on the same data-root started")
	}
	if second.Running() {
		t.Fatal("second daemon still running")
	}
	if log := second.Log(); !strings.Contains(log, "already running with data-root "+d.DataRoot) {
		t.Fatalf("second daemon's message does not explain: %s", log)
	}
	// The first one is unaffected.
	d.MustBerth(t, "version")
}

func TestDaemonStopKeepsContainersRunning(t *testing.T) {
	d := daemonWithBusybox(t)
	id := strings.TrimSpace(d.MustBerth(t, "run", "-d", "busybox", "sh", "-c", "echo started; sleep 1000"))
	pid := inspectField(t, d, id, "{{.State.Pid}}")

	d.Stop(t)
	if code := d.ExitCode(); code != 0 {
		t.Fatalf("daemon exit code after SIGTERM: %d", code)
	}
	if _, err := os.Stat("/proc/" + pid); err != nil {
		t.Fatalf("container process %s died with the daemon", pid)
	}
	if _, err := os.Stat(d.Socket); !os.IsNotExist(err) {
		t.Errorf("socket left behind after a clean stop: %v", err)
	}
	d.Start(t)
	if got := inspectField(t, d, id, "{{.State.Status}} {{.State.Pid}}"); got != "running "+pid {
		t.Fatalf("after restart: %q, want running %s", got, pid)
	}
	d.MustBerth(t, "stop", "-t", "1", id)
}

func TestDaemonLogLevel(t *testing.T) {
	d := testutil.NewDaemon(t, binDir, "--log-level", "bogus")
	if err := d.TryStart(); err == nil {
		t.Fatal("daemon started with --log-level bogus")
	}
	if !strings.Contains(d.Log(), "invalid log level") {
		t.Fatalf("no clear message: %s", d.Log())
	}
}

// Where overlayfs cannot be mounted (here: a data-root that is itself on
// overlayfs, as in docker-in-docker), the daemon falls back to the
// copy-based vfs driver, says so in info, and containers work.
func TestStorageFallsBackToVFS(t *testing.T) {
	testutil.RequiresBusybox(t)
	base := t.TempDir()
	dirs := map[string]string{}
	for _, n := range []string{"lower", "upper", "work", "merged"} {
		dirs[n] = filepath.Join(base, n)
		if err := os.Mkdir(dirs[n], 0o700); err != nil {
			t.Fatal(err)
		}
	}
	opts := "lowerdir=" + dirs["lower"] + ",upperdir=" + dirs["upper"] + ",workdir=" + dirs["work"]
	if err := unix.Mount("overlay", dirs["merged"], "overlay", 0, opts); err != nil {
		t.Skipf("cannot mount overlayfs here: %v", err)
	}
	// Registered before the daemon's cleanup, so it runs after it.
	t.Cleanup(func() {
		if err := unix.Unmount(dirs["merged"], unix.MNT_DETACH); err != nil {
			t.Errorf("unmount test overlay: %v", err)
		}
	})
	d := testutil.NewDaemon(t, binDir)
	d.DataRoot = filepath.Join(dirs["merged"], "data")
	d.Start(t)
	d.ImportBusybox(t, "busybox:latest")

	info := d.MustBerth(t, "info", "--format", "{{.Driver}}|{{json .Warnings}}")
	if !strings.HasPrefix(info, "vfs|") || !strings.Contains(info, "overlayfs is not usable") {
		t.Fatalf("info on an overlayfs data-root: %s", info)
	}
	out := d.MustBerth(t, "run", "--rm", "busybox", "sh", "-c", "echo changed > /etc/motd; cat /etc/motd; ls /bin/busybox")
	if out != "changed\n/bin/busybox\n" {
		t.Fatalf("container on vfs: %q", out)
	}
	// The image is untouched by the container's writes.
	if out := d.MustBerth(t, "run", "--rm", "busybox", "sh", "-c", "cat /etc/motd 2>&1 || echo none"); strings.Contains(out, "changed") {
		t.Fatalf("a container's write reached the image: %q", out)
	}
}
