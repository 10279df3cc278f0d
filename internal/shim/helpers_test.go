package shim_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-engine/berth/internal/shim"
)

// Set by TestMain.
var (
	shimBin   string // the berth-shim binary built for this run
	rootfsDir string // a read-only busybox root filesystem shared by the containers
	setupErr  error
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(spawnHelper())
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "berth-shim-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if os.Geteuid() == 0 {
		setupErr = setup(dir)
		// Shims orphaned by TestSurvivesParentKill come to this process,
		// which reaps them (this machine's PID 1 does not).
		_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, 36 /* PR_SET_CHILD_SUBREAPER */, 1, 0)
	}
	return m.Run()
}

func setup(dir string) error {
	shimBin = filepath.Join(dir, "berth-shim")
	if prebuilt := os.Getenv("BERTH_SHIM_TEST_BIN"); prebuilt != "" {
		// A shim built some other way (e.g. with debug tags).
		b, err := os.ReadFile(prebuilt)
		if err != nil {
			return err
		}
		if err := os.WriteFile(shimBin, b, 0o755); err != nil {
			return err
		}
	} else if err := buildShim(); err != nil {
		return err
	}
	return makeRootfs(dir)
}

func buildShim() error {
	cmd := exec.Command("go", "build", "-ldflags", "-s -w", "-o", shimBin, "github.com/berth-engine/berth/cmd/berth-shim")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build berth-shim: %v\n%s", err, out)
	}
	return nil
}

// makeRootfs builds the busybox root filesystem the test containers share
// (read-only).
func makeRootfs(dir string) error {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		return fmt.Errorf("requires /bin/busybox (apt-get install busybox-static)")
	}
	rootfsDir = filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "etc", "sbin"} {
		if err := os.MkdirAll(filepath.Join(rootfsDir, d), 0o755); err != nil {
			return err
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rootfsDir, "bin", "busybox"), bb, 0o755); err != nil {
		return err
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, a := range strings.Fields(string(out)) {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(rootfsDir, "bin", a)); err != nil {
			return err
		}
	}
	// Mount point for the --init binary.
	return os.WriteFile(filepath.Join(rootfsDir, "sbin", "docker-init"), nil, 0o755)
}

// requireRuntime skips unless the test can run containers: root, runc,
// and the shim built.
func requireRuntime(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root: runs containers with runc")
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("requires runc (apt-get install -y runc)")
	}
	if setupErr != nil {
		t.Fatalf("test setup: %v", setupErr)
	}
	return runc
}

// container is one test container: its bundle and the shim config for it.
type container struct {
	t       *testing.T
	runc    string
	runRoot string
	cfg     shim.Config
}

type spec struct {
	args       []string
	tty        bool
	init       bool  // bind-mount the shim as /sbin/docker-init
	memLimit   int64 // bytes; 0 = none
	stdin      bool
	stdinOnce  bool
	height     uint16
	width      uint16
	noLog      bool
	logMaxSize int64
	logFiles   int
}

func randomID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newContainer writes a bundle for s and registers cleanups that leave
// nothing behind: the runtime's container, the shim, sockets, cgroups.
func newContainer(t *testing.T, s spec) *container {
	t.Helper()
	runc := requireRuntime(t)
	id := "bst-" + randomID()
	bundle := t.TempDir()
	runRoot := t.TempDir()
	// sun_path is 108 bytes: keep the socket in a short directory.
	sockDir, err := os.MkdirTemp("", "bs")
	if err != nil {
		t.Fatal(err)
	}
	c := &container{t: t, runc: runc, runRoot: runRoot, cfg: shim.Config{
		ID:            id,
		Bundle:        bundle,
		Runtime:       runc,
		RuntimeArgs:   []string{"--root", runRoot},
		Socket:        filepath.Join(sockDir, "s.sock"),
		ExitFile:      filepath.Join(bundle, "exit.json"),
		LogPath:       filepath.Join(bundle, id+"-json.log"),
		LogMaxSize:    s.logMaxSize,
		LogMaxFiles:   s.logFiles,
		Stdin:         s.stdin,
		StdinOnce:     s.stdinOnce,
		Tty:           s.tty,
		ConsoleHeight: s.height,
		ConsoleWidth:  s.width,
	}}
	if s.noLog {
		c.cfg.LogPath = ""
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), ociSpec(id, s), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A shim whose container has exited (the exit file is written
		// first) is still having the runtime delete it: let it finish, or
		// that delete would run on behind this cleanup. Kill any shim a
		// failed test left, then the container.
		if _, err := os.Stat(c.cfg.ExitFile); err == nil {
			waitShimsGone(bundle)
		}
		for _, pid := range shimPids(bundle) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if out, err := exec.Command(runc, "--root", runRoot, "delete", "--force", id).CombinedOutput(); err != nil &&
			!strings.Contains(string(out), "does not exist") && !strings.Contains(string(out), "not exist") {
			t.Logf("runc delete %s: %v: %s", id, err, out)
		}
		os.RemoveAll(sockDir)
		for _, ctrl := range []string{"memory", "cpu", "pids", "devices", "freezer", "blkio", "cpuset", "cpuacct", "systemd", "unified"} {
			_ = os.Remove(filepath.Join("/sys/fs/cgroup", ctrl, "berth-shimtest-"+id))
		}
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(bundle, "shim.log")); err == nil && len(b) > 0 {
				t.Logf("shim.log:\n%s", b)
			}
		}
	})
	return c
}

// ociSpec is a minimal hand-written OCI runtime config for a busybox
// container.
func ociSpec(id string, s spec) []byte {
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}
	mounts := []map[string]any{
		{"destination": "/proc", "type": "proc", "source": "proc"},
		{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		{"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": []string{"nosuid", "noexec", "nodev", "ro"}},
		{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "nodev", "mode=1777"}},
	}
	if s.init {
		mounts = append(mounts, map[string]any{"destination": "/sbin/docker-init", "type": "bind", "source": shimBin, "options": []string{"bind", "ro"}})
	}
	resources := map[string]any{"devices": []map[string]any{{"allow": false, "access": "rwm"}}}
	if s.memLimit > 0 {
		resources["memory"] = map[string]any{"limit": s.memLimit, "swap": s.memLimit}
	}
	cfg := map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"terminal": s.tty,
			"user":     map[string]any{"uid": 0, "gid": 0},
			"args":     s.args,
			"env":      []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"},
			"cwd":      "/",
			"capabilities": map[string]any{
				"bounding": caps, "effective": caps, "permitted": caps,
			},
			"noNewPrivileges": true,
		},
		"root":     map[string]any{"path": rootfsDir, "readonly": true},
		"hostname": "shimtest",
		"mounts":   mounts,
		"linux": map[string]any{
			"cgroupsPath": "/berth-shimtest-" + id,
			"resources":   resources,
			"namespaces": []map[string]any{
				{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"},
			},
			"maskedPaths":   []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"},
			"readonlyPaths": []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		panic(err)
	}
	return b
}

func (c *container) spawn(ctx context.Context) (*shim.Client, int) {
	c.t.Helper()
	client, pid, err := shim.Spawn(ctx, shimBin, c.cfg)
	if err != nil {
		c.t.Fatalf("Spawn: %v", err)
	}
	if pid <= 0 {
		c.t.Fatalf("Spawn returned pid %d", pid)
	}
	return client, pid
}

// runtimeState is what `runc state` says about the container ("" when it
// does not exist).
func (c *container) runtimeState() string {
	out, err := exec.Command(c.runc, "--root", c.runRoot, "state", c.cfg.ID).Output()
	if err != nil {
		return ""
	}
	var st struct {
		Status string `json:"status"`
	}
	_ = json.Unmarshal(out, &st)
	return st.Status
}

// shimPids lists live shims whose command line names something in bundle.
// waitShimsGone waits for the shims of bundle to exit by themselves: a
// shim whose container exited does so once the runtime has deleted it and
// its clients had their grace. The bound only keeps a broken shim from
// hanging the cleanup (which then kills it).
func waitShimsGone(bundle string) {
	for i := 0; i < 3000 && len(shimPids(bundle)) > 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
}

func shimPids(bundle string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte(bundle+"/shim.json")) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			if i := bytes.LastIndexByte(stat, ')'); i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
				continue // a zombie waiting for its parent: not running
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// eventually polls cond until it holds or the bound passes; the bound only
// turns a hang into a failure.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// streamReader collects what an attach stream delivers and lets a test
// wait for a substring.
type streamReader struct {
	mu   sync.Mutex
	cond *sync.Cond
	buf  bytes.Buffer
	done bool
	err  error
}

// startAttached attaches to the container's stdout, starts it, and returns
// a reader of what it prints; the attachment is closed with the test.
func startAttached(ctx context.Context, t *testing.T, client *shim.Client) *streamReader {
	t.Helper()
	conn, err := client.Attach(ctx, shim.AttachOptions{Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s := readStream(conn)
	if err := client.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return s
}

func readStream(r io.Reader) *streamReader {
	s := &streamReader{}
	s.cond = sync.NewCond(&s.mu)
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := r.Read(b)
			s.mu.Lock()
			s.buf.Write(b[:n])
			if err != nil {
				s.done = true
				if err != io.EOF {
					s.err = err
				}
			}
			s.cond.Broadcast()
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return s
}

// waitFor blocks until the stream contains want (returning everything so
// far) or ends without it.
func (s *streamReader) waitFor(t *testing.T, want string) string {
	t.Helper()
	timer := time.AfterFunc(30*time.Second, func() {
		s.mu.Lock()
		s.done = true
		s.err = fmt.Errorf("timed out")
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer timer.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for !strings.Contains(s.buf.String(), want) && !s.done {
		s.cond.Wait()
	}
	if !strings.Contains(s.buf.String(), want) {
		t.Fatalf("stream ended (%v) without %q; got %q", s.err, want, s.buf.String())
	}
	return s.buf.String()
}

// all waits for the end of the stream.
func (s *streamReader) all(t *testing.T) []byte {
	t.Helper()
	timer := time.AfterFunc(30*time.Second, func() {
		s.mu.Lock()
		s.done = true
		s.err = fmt.Errorf("timed out")
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer timer.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.done {
		s.cond.Wait()
	}
	if s.err != nil {
		t.Fatalf("attach stream: %v (got %q)", s.err, s.buf.String())
	}
	return append([]byte(nil), s.buf.Bytes()...)
}

func closeWrite(t *testing.T, c net.Conn) {
	t.Helper()
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		t.Fatalf("attach conn %T has no CloseWrite", c)
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
}

// waitExit is client.Wait for tests whose container may be gone before
// the Wait reaches the shim (it removes its socket once the exit is
// recorded and its clients are served): then the exit file the shim left
// is the answer, as the daemon does. Safe from any goroutine.
func waitExit(ctx context.Context, cfg shim.Config, client *shim.Client) (shim.ExitStatus, error) {
	st, err := client.Wait(ctx)
	if err == nil || !errdefs.IsUnavailable(err) {
		return st, err
	}
	for len(shimPids(cfg.Bundle)) > 0 {
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return shim.ReadExitFile(cfg.ExitFile)
}
