package testutil

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/network"
	"golang.org/x/sys/unix"
)

// Daemon is a berth daemon started for a test on its own data-root,
// exec-root, socket and cgroup parent.
type Daemon struct {
	BinDir       string
	Root         string // holds data, exec and the socket
	DataRoot     string
	ExecRoot     string
	Socket       string
	Host         string // unix://…
	CgroupParent string
	LogPath      string
	ExtraArgs    []string
	// Bridge and NFTable are this daemon's default bridge and nftables
	// table: unique, so daemons of parallel test runs never share them.
	Bridge, NFTable string

	cmd  *exec.Cmd
	done chan struct{}
}

// NewDaemon prepares (but does not start) a daemon whose state lives in a
// fresh short temp directory; everything it makes is cleaned up at the end
// of the test, even if the test fails.
func NewDaemon(t testing.TB, binDir string, extraArgs ...string) *Daemon {
	t.Helper()
	RequiresRoot(t)
	// Short paths: unix socket paths are limited to 108 bytes.
	root, err := os.MkdirTemp("", "bt-")
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{
		BinDir:       binDir,
		Root:         root,
		DataRoot:     filepath.Join(root, "data"),
		ExecRoot:     filepath.Join(root, "exec"),
		Socket:       filepath.Join(root, "berth.sock"),
		CgroupParent: "/" + filepath.Base(root),
		LogPath:      filepath.Join(root, "daemon.log"),
	}
	sfx := strings.ToLower(strings.TrimPrefix(filepath.Base(root), "bt-"))
	if len(sfx) > 10 {
		sfx = sfx[len(sfx)-10:]
	}
	d.Bridge, d.NFTable = "bt"+sfx, "berth_t"+sfx
	var netArgs []string
	if !slices.Contains(extraArgs, "--bridge") {
		netArgs = append(netArgs, "--bridge", d.Bridge)
	}
	if !slices.Contains(extraArgs, "--nftables-table") {
		netArgs = append(netArgs, "--nftables-table", d.NFTable)
	}
	if !slices.Contains(extraArgs, "--bip") && !slices.Contains(extraArgs, "--default-address-pool") {
		// A random 10.x/16 split in /24s: the daemon still avoids every
		// subnet already routed on the host.
		netArgs = append(netArgs, "--default-address-pool", fmt.Sprintf("base=10.%d.0.0/16,size=24", 100+rand.IntN(150)))
	}
	d.ExtraArgs = append(netArgs, extraArgs...)
	d.Host = "unix://" + d.Socket
	t.Cleanup(func() { d.cleanup(t) })
	return d
}

// StartDaemon prepares and starts a daemon, waiting until it answers.
func StartDaemon(t testing.TB, binDir string, extraArgs ...string) *Daemon {
	t.Helper()
	d := NewDaemon(t, binDir, extraArgs...)
	d.Start(t)
	return d
}

// Start runs `berth daemon` and waits for /_ping.
func (d *Daemon) Start(t testing.TB) {
	t.Helper()
	if err := d.TryStart(); err != nil {
		t.Fatalf("start daemon: %v\n%s", err, d.Log())
	}
}

// TryStart starts the daemon and returns an error if it does not come up.
func (d *Daemon) TryStart() error {
	args := append([]string{"daemon",
		"--data-root", d.DataRoot,
		"--exec-root", d.ExecRoot,
		"-H", d.Host,
		"--cgroup-parent", d.CgroupParent,
		"--log-level", "debug",
		// Leave the socket root:root rather than creating the host's
		// "berth" group; tests that need a group pass their own --group.
		"--group", "",
	}, d.ExtraArgs...)
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(d.BinDir, "berth"), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	logf.Close()
	d.cmd = cmd
	d.done = make(chan struct{})
	go func() { _ = cmd.Wait(); close(d.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			return fmt.Errorf("daemon exited: %v", cmd.ProcessState)
		default:
		}
		if d.ping() == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("daemon did not answer /_ping within 30s")
}

func (d *Daemon) ping() error {
	c := d.HTTPClient()
	resp, err := c.Get("http://berth/_ping")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("ping: %s", resp.Status)
	}
	return nil
}

// HTTPClient talks raw HTTP to the daemon's socket.
func (d *Daemon) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", d.Socket)
		},
	}}
}

// Running reports whether the daemon process is alive.
func (d *Daemon) Running() bool {
	if d.cmd == nil {
		return false
	}
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM and waits for the daemon to exit.
func (d *Daemon) Stop(t testing.TB) {
	t.Helper()
	if !d.Running() {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		t.Fatalf("daemon did not stop within 30s of SIGTERM\n%s", d.Log())
	}
}

// Kill9 kills the daemon with SIGKILL, as a crash would.
func (d *Daemon) Kill9(t testing.TB) {
	t.Helper()
	if !d.Running() {
		return
	}
	_ = d.cmd.Process.Kill()
	<-d.done
}

// Pid is the daemon's process ID (0 before it started).
func (d *Daemon) Pid() int {
	if d.cmd == nil || d.cmd.Process == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// ExitCode is the daemon's exit status after it stopped.
func (d *Daemon) ExitCode() int {
	if d.cmd == nil || d.cmd.ProcessState == nil {
		return -1
	}
	return d.cmd.ProcessState.ExitCode()
}

// Log returns the daemon's log so far.
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(d.LogPath)
	return string(b)
}

// Result is what a CLI invocation did.
type Result struct {
	Stdout, Stderr string
	ExitCode       int
}

// Combined is stdout and stderr together.
func (r Result) Combined() string { return r.Stdout + r.Stderr }

func (r Result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.ExitCode, r.Stdout, r.Stderr)
}

// Cmd prepares a berth CLI command aimed at this daemon.
func (d *Daemon) Cmd(args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(d.BinDir, "berth"), args...)
	cmd.Env = append(cleanEnv(), "BERTH_HOST="+d.Host)
	return cmd
}

// DockerCmd prepares a stock docker CLI command aimed at this daemon.
func (d *Daemon) DockerCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(DockerCLI(), args...)
	home := filepath.Join(d.Root, "dockercfg")
	_ = os.MkdirAll(home, 0o700)
	cmd.Env = append(cleanEnv(), "DOCKER_HOST="+d.Host, "DOCKER_CONFIG="+home, "DOCKER_CLI_HINTS=false")
	return cmd
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DOCKER_") || strings.HasPrefix(kv, "BERTH_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// DockerCLI is the stock docker client to test compatibility with.
func DockerCLI() string {
	if p, err := exec.LookPath("docker"); err == nil {
		return p
	}
	return "/usr/local/bin/docker"
}

// RequiresDockerCLI skips a test when the docker CLI is not installed.
func RequiresDockerCLI(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(DockerCLI()); err != nil {
		t.Skip("requires the docker CLI (/usr/local/bin/docker)")
	}
}

// Run runs a prepared command with optional stdin and collects the result.
func Run(t testing.TB, cmd *exec.Cmd, stdin string) Result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.ExitCode = ee.ExitCode()
	default:
		t.Fatalf("run %v: %v", cmd.Args, err)
	}
	return r
}

// Berth runs the berth CLI against the daemon.
func (d *Daemon) Berth(t testing.TB, args ...string) Result {
	t.Helper()
	return Run(t, d.Cmd(args...), "")
}

// Docker runs the stock docker CLI against the daemon.
func (d *Daemon) Docker(t testing.TB, args ...string) Result {
	t.Helper()
	return Run(t, d.DockerCmd(args...), "")
}

// MustBerth runs the berth CLI and fails the test unless it exits 0.
func (d *Daemon) MustBerth(t testing.TB, args ...string) string {
	t.Helper()
	r := d.Berth(t, args...)
	if r.ExitCode != 0 {
		t.Fatalf("berth %s: %s", strings.Join(args, " "), r)
	}
	return r.Stdout
}

// MustDocker runs the docker CLI and fails the test unless it exits 0.
func (d *Daemon) MustDocker(t testing.TB, args ...string) string {
	t.Helper()
	r := d.Docker(t, args...)
	if r.ExitCode != 0 {
		t.Fatalf("docker %s: %s", strings.Join(args, " "), r)
	}
	return r.Stdout
}

// ImportBusybox imports the busybox rootfs as ref (e.g. "busybox:latest").
func (d *Daemon) ImportBusybox(t testing.TB, ref string) string {
	t.Helper()
	tarPath := BusyboxTarFile(t, d.Root)
	return strings.TrimSpace(d.MustBerth(t, "import", tarPath, ref))
}

// cleanup removes everything the daemon and its containers made: containers
// (through the API while the daemon lives), then any process, mount and
// cgroup left under this daemon's roots, then the directories.
func (d *Daemon) cleanup(t testing.TB) {
	if d.Running() {
		if r := Run(t, d.Cmd("ps", "-aq", "--no-trunc"), ""); r.ExitCode == 0 {
			for _, id := range strings.Fields(r.Stdout) {
				Run(t, d.Cmd("rm", "-f", id), "")
			}
		}
		d.Stop(t)
		// Shims of removed containers finish their runtime delete and
		// exit by themselves; killing them mid-way would leave that
		// delete behind.
		waitGoneUnder(d.Root)
	}
	killUnder(d.Root)
	killCgroup(d.CgroupParent)
	unmountUnder(d.Root)
	if err := network.Cleanup(d.DataRoot, d.Bridge, d.NFTable); err != nil {
		t.Errorf("remove the daemon's bridges and nftables table: %v", err)
	}
	removeCgroup(d.CgroupParent)
	if t.Failed() {
		t.Logf("daemon log (%s):\n%s", d.LogPath, tail(d.Log(), 200))
	}
	if err := os.RemoveAll(d.Root); err != nil {
		t.Errorf("remove %s: %v", d.Root, err)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// killUnder kills processes whose command line mentions root: the shims of
// this daemon (their config lives under its exec-root).
func killUnder(root string) {
	for _, pid := range pidsUnder(root) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// pidsUnder lists the processes whose command line mentions root.
func pidsUnder(root string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(root+"/")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitGoneUnder waits a little for the processes under root to exit by
// themselves (the bound only keeps a stuck one from holding the cleanup,
// which then kills it).
func waitGoneUnder(root string) {
	for i := 0; i < 500 && len(pidsUnder(root)) > 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
}

// cgroupDirs are the directories a cgroup path has in each hierarchy.
func cgroupDirs(parent string) []string {
	var dirs []string
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		p := filepath.Join("/sys/fs/cgroup", e.Name(), parent)
		if _, err := os.Stat(p); err == nil {
			dirs = append(dirs, p)
		}
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", "cgroup.controllers")); err == nil {
		p := filepath.Join("/sys/fs/cgroup", parent)
		if _, err := os.Stat(p); err == nil {
			dirs = append(dirs, p)
		}
	}
	return dirs
}

// killCgroup kills every process left in the cgroup tree.
func killCgroup(parent string) {
	for _, dir := range cgroupDirs(parent) {
		_ = filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
			if err != nil || de.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			return nil
		})
	}
	time.Sleep(50 * time.Millisecond)
}

// removeCgroup removes the cgroup tree deepest first.
func removeCgroup(parent string) {
	for _, dir := range cgroupDirs(parent) {
		var dirs []string
		_ = filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
			if err == nil && de.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
		for _, p := range dirs {
			for i := 0; i < 50; i++ {
				if err := unix.Rmdir(p); err == nil || errors.Is(err, unix.ENOENT) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
}

// unmountUnder unmounts every mount point below root, deepest first.
func unmountUnder(root string) {
	for i := 0; i < 3; i++ {
		points := MountsUnder(root)
		if len(points) == 0 {
			return
		}
		for _, p := range points {
			if err := unix.Unmount(p, 0); err != nil {
				_ = unix.Unmount(p, unix.MNT_DETACH)
			}
		}
	}
}

// MountsUnder lists mount points at or below root, deepest first.
func MountsUnder(root string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == root || strings.HasPrefix(mp, root+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	return points
}

// MountsBelow lists mount points strictly below root, deepest first: for
// a daemon's exec-root, which is itself a tmpfs the daemon mounted when
// it lay on a disk.
func MountsBelow(root string) []string {
	var points []string
	for _, p := range MountsUnder(root) {
		if p != root {
			points = append(points, p)
		}
	}
	return points
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}
