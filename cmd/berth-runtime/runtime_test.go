package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/oci"
	"github.com/moby/moby/api/types/container"
	"golang.org/x/sys/unix"
)

// Binaries built once by TestMain (root only).
var (
	runtimeBin string // berth-runtime
	runtimeMod string // the go.mod it was built with (scripts/runtime-overlay.sh)
	shimBin    string // berth-shim, the --init binary ("" if it did not build)
	buildErr   error
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	flag.Parse()
	if os.Geteuid() == 0 && !testing.Short() {
		dir, err := os.MkdirTemp("", "berth-runtime-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		runtimeBin = filepath.Join(dir, "berth-runtime")
		// As the Makefile builds it: with seccomp and its program cache.
		modfile, err := exec.Command("../../scripts/runtime-overlay.sh", filepath.Join(dir, "build")).Output()
		runtimeMod = strings.TrimSpace(string(modfile))
		if err != nil {
			buildErr = fmt.Errorf("runtime-overlay.sh: %v", err)
		} else if out, err := exec.Command("go", "build", "-tags", "seccomp,berthseccompcache,netgo,osusergo", "-ldflags", "-linkmode external -extldflags -static", "-modfile", runtimeMod,
			"-o", runtimeBin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build berth-runtime: %v\n%s", err, out)
		}
		sb := filepath.Join(dir, "berth-shim")
		cmd := exec.Command("go", "build", "-o", sb, "../berth-shim")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if err := cmd.Run(); err == nil {
			shimBin = sb
		}
		// Containers outlive the runtime process that creates them and
		// are reparented to the nearest subreaper: this process, as they
		// would be to the shim.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			fmt.Fprintln(os.Stderr, "PR_SET_CHILD_SUBREAPER:", err)
			return 1
		}
	}
	return m.Run()
}

// requireRuntime skips unless the integration tests can run.
func requireRuntime(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root: runs containers with real namespaces and cgroups")
	}
	if testing.Short() {
		t.Skip("integration test (not with -short)")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("requires /bin/busybox (apt-get install busybox-static)")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// runtimes are the OCI runtimes a test can be run against: berth-runtime
// always, Debian's runc when installed (to prove the spec is neutral).
func runtimes(t *testing.T) map[string]string {
	rts := map[string]string{"berth": runtimeBin}
	if p, err := exec.LookPath("runc"); err == nil {
		rts["runc"] = p
	} else {
		t.Log("runc not installed (apt-get install -y runc): only berth-runtime is tested")
	}
	return rts
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

const (
	testPasswd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\n"
	testGroup  = "root:x:0:\nwheel:x:10:alice\nusers:x:100:alice\nalice:x:1000:\nnogroup:x:65534:\n"
)

// busyboxRootfs makes a busybox root filesystem in a temporary directory:
// bin/busybox, a symlink per applet, passwd and group.
func busyboxRootfs(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "dev", "etc", "home/alice", "proc", "root", "sys", "tmp", "sbin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range strings.Fields(string(out)) {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range map[string]string{"etc/passwd": testPasswd, "etc/group": testGroup} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// ctr is one test container driven through a runtime's command line, the
// way the shim drives it.
type ctr struct {
	t       *testing.T
	bin     string // the runtime
	root    string // its --root
	id      string
	bundle  string
	logPath string
	parent  string // cgroup parent, unique to the test
	pid     int
}

// newCtr writes a bundle (busybox rootfs, config.json from oci.Spec) for
// cmd; edit adjusts the spec options first. Cleanup force-deletes the
// container and removes the cgroup parent the runtime made.
func newCtr(t *testing.T, bin string, cmd []string, edit func(o *oci.Options)) *ctr {
	t.Helper()
	dir := t.TempDir()
	c := &ctr{
		t:       t,
		bin:     bin,
		root:    filepath.Join(dir, "state"),
		id:      "berth-test-" + randHex(8),
		bundle:  filepath.Join(dir, "bundle"),
		logPath: filepath.Join(dir, "runtime.log"),
		parent:  "/berth-test-" + randHex(6),
	}
	if err := os.MkdirAll(c.bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	opts := oci.Options{
		ID:           c.id,
		Config:       &container.Config{Cmd: cmd, Hostname: "berthtest"},
		HostConfig:   &container.HostConfig{},
		RootfsPath:   busyboxRootfs(t),
		CgroupParent: c.parent,
		CgroupV2:     oci.DetectCgroupV2(),
	}
	if edit != nil {
		edit(&opts)
	}
	spec, err := oci.Spec(opts)
	if err != nil {
		t.Fatalf("oci.Spec: %v", err)
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.bundle, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.cleanup)
	return c
}

func (c *ctr) cleanup() {
	if out, err := c.cmd("delete", "--force", c.id).CombinedOutput(); err != nil && !strings.Contains(string(out), "does not exist") {
		c.t.Errorf("cleanup: delete --force %s: %v: %s", c.id, err, out)
	}
	if c.pid > 0 {
		// Reap the init if it is still ours to reap.
		var ws unix.WaitStatus
		_, _ = unix.Wait4(c.pid, &ws, unix.WNOHANG, nil)
	}
	for _, d := range cgroupDirs(c.parent) {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			c.t.Errorf("cleanup: remove cgroup %s: %v", d, err)
		}
	}
}

// cgroupDirs lists the directories of a cgroup path in every mounted
// hierarchy (v1 controllers and the unified one).
func cgroupDirs(path string) []string {
	var dirs []string
	if oci.DetectCgroupV2() {
		return []string{filepath.Join("/sys/fs/cgroup", path)}
	}
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range ents {
		if e.IsDir() || e.Type()&os.ModeSymlink != 0 {
			dirs = append(dirs, filepath.Join("/sys/fs/cgroup", e.Name(), path))
		}
	}
	return dirs
}

func (c *ctr) cmd(args ...string) *exec.Cmd {
	return exec.Command(c.bin, append([]string{"--root", c.root, "--log", c.logPath, "--log-format", "json"}, args...)...)
}

// run runs a runtime command and fails the test if it fails.
func (c *ctr) run(args ...string) string {
	c.t.Helper()
	out, err := c.cmd(args...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("%s %s: %v: %s (log: %s)", filepath.Base(c.bin), strings.Join(args, " "), err, out, c.lastError())
	}
	return string(out)
}

// lastError is the message of the last error the runtime logged.
func (c *ctr) lastError() string {
	b, _ := os.ReadFile(c.logPath)
	var msg string
	for _, line := range bytes.Split(b, []byte("\n")) {
		var e struct{ Level, Msg string }
		if json.Unmarshal(line, &e) == nil && (e.Level == "error" || e.Level == "fatal") {
			msg = e.Msg
		}
	}
	return msg
}

// stdio are the test's ends of a container's pipes.
type stdio struct {
	stdin          *os.File // nil unless asked
	stdout, stderr *os.File
}

// create creates the container with pipes for its stdio; its error is the
// runtime's logged error.
func (c *ctr) create(withStdin bool) (*stdio, error) {
	c.t.Helper()
	var pipes stdio
	var inR *os.File
	if withStdin {
		r, w, err := os.Pipe()
		if err != nil {
			c.t.Fatal(err)
		}
		inR, pipes.stdin = r, w
		c.t.Cleanup(func() { w.Close() })
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		c.t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { outR.Close(); errR.Close() })
	pipes.stdout, pipes.stderr = outR, errR
	pidFile := filepath.Join(c.bundle, "pid")
	cmd := c.cmd("create", "--bundle", c.bundle, "--pid-file", pidFile, c.id)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	err = cmd.Run()
	outW.Close()
	errW.Close()
	if inR != nil {
		inR.Close()
	}
	if err != nil {
		msg := c.lastError()
		if msg == "" {
			msg = err.Error()
		}
		return &pipes, errors.New(msg)
	}
	c.pid = c.readPid(pidFile)
	return &pipes, nil
}

func (c *ctr) readPid(path string) int {
	c.t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		c.t.Fatalf("pid file: %v", err)
	}
	pid, err := strconv.Atoi(string(b))
	if err != nil || pid <= 0 {
		c.t.Fatalf("pid file holds %q", b)
	}
	return pid
}

func (c *ctr) mustCreate(withStdin bool) *stdio {
	c.t.Helper()
	pipes, err := c.create(withStdin)
	if err != nil {
		c.t.Fatalf("create: %v", err)
	}
	return pipes
}

// wait reaps the container's init (ours, as the subreaper) and returns its
// wait status. The timeout guards against a hang; it is no assertion.
func (c *ctr) wait() unix.WaitStatus {
	c.t.Helper()
	type res struct {
		ws  unix.WaitStatus
		err error
	}
	ch := make(chan res, 1)
	go func() {
		var ws unix.WaitStatus
		_, err := unix.Wait4(c.pid, &ws, 0, nil)
		ch <- res{ws, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			c.t.Fatalf("wait4 %d: %v", c.pid, r.err)
		}
		return r.ws
	case <-time.After(60 * time.Second):
		c.t.Fatalf("container %s (pid %d) did not exit", c.id, c.pid)
		return 0
	}
}

type state struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
	Bundle string `json:"bundle"`
	Rootfs string `json:"rootfs"`
}

func (c *ctr) state() state {
	c.t.Helper()
	var st state
	out := c.run("state", c.id)
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		c.t.Fatalf("state output %q: %v", out, err)
	}
	return st
}

func readAll(t *testing.T, f *os.File) string {
	t.Helper()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// runToEnd creates, starts and waits for a container and deletes it,
// returning its output and exit code.
func (c *ctr) runToEnd() (stdout, stderr string, code int) {
	c.t.Helper()
	pipes := c.mustCreate(false)
	c.run("start", c.id)
	done := make(chan string)
	go func() { b, _ := readAllErr(pipes.stderr); done <- b }()
	stdout = readAll(c.t, pipes.stdout)
	stderr = <-done
	ws := c.wait()
	if !ws.Exited() {
		c.t.Fatalf("container did not exit normally: %v", ws)
	}
	c.run("delete", c.id)
	return stdout, stderr, ws.ExitStatus()
}

func readAllErr(f *os.File) (string, error) {
	b, err := io.ReadAll(f)
	return string(b), err
}

func TestOutputAndExitCode(t *testing.T) {
	requireRuntime(t)
	for name, bin := range runtimes(t) {
		t.Run(name, func(t *testing.T) {
			c := newCtr(t, bin, []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, nil)
			out, errOut, code := c.runToEnd()
			if out != "out\n" || errOut != "err\n" || code != 3 {
				t.Errorf("stdout %q, stderr %q, exit %d; want out, err, 3", out, errOut, code)
			}
		})
	}
}

func TestLifecycleStateKillDelete(t *testing.T) {
	requireRuntime(t)
	for name, bin := range runtimes(t) {
		t.Run(name, func(t *testing.T) {
			c := newCtr(t, bin, []string{"sleep", "1000"}, nil)
			c.mustCreate(false)
			st := c.state()
			if st.Status != "created" || st.Pid != c.pid || st.ID != c.id || st.Bundle != c.bundle {
				t.Errorf("state after create = %+v (pid file %d, bundle %s)", st, c.pid, c.bundle)
			}
			// The cgroup exists while the container does.
			dirs := cgroupDirs(filepath.Join(c.parent, c.id))
			for _, d := range dirs {
				if _, err := os.Stat(d); err != nil {
					t.Errorf("cgroup %s: %v", d, err)
				}
			}
			c.run("start", c.id)
			if st := c.state(); st.Status != "running" {
				t.Errorf("state after start = %+v", st)
			}
			if out, err := c.cmd("start", c.id).CombinedOutput(); err == nil {
				t.Errorf("a second start succeeded: %s", out)
			} else if msg := c.lastError(); !strings.Contains(msg, "cannot start an already running container") {
				t.Errorf("second start error = %q", msg)
			}
			if out, err := c.cmd("delete", c.id).CombinedOutput(); err == nil {
				t.Errorf("delete of a running container without --force succeeded: %s", out)
			}
			c.run("kill", c.id, "KILL")
			ws := c.wait()
			if !ws.Signaled() || ws.Signal() != unix.SIGKILL {
				t.Errorf("wait status %v, want killed by SIGKILL", ws)
			}
			if st := c.state(); st.Status != "stopped" || st.Pid != 0 {
				t.Errorf("state after exit = %+v", st)
			}
			if out, err := c.cmd("kill", c.id, "KILL").CombinedOutput(); err == nil {
				t.Errorf("kill of a stopped container succeeded: %s", out)
			}
			c.run("kill", "--all", c.id, "KILL") // --all: not running is no error
			c.run("delete", c.id)
			for _, d := range dirs {
				if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("cgroup %s after delete: %v", d, err)
				}
			}
			if out, err := c.cmd("state", c.id).CombinedOutput(); err == nil {
				t.Errorf("state after delete succeeded: %s", out)
			} else if msg := c.lastError(); !strings.Contains(msg, "does not exist") {
				t.Errorf("state after delete: %q", msg)
			}
		})
	}
}

func TestKillDefaultSignal(t *testing.T) {
	requireRuntime(t)
	c := newCtr(t, runtimeBin, []string{"sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done"}, nil)
	pipes := c.mustCreate(false)
	c.run("start", c.id)
	line, err := bufio.NewReader(pipes.stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("read %q, %v", line, err)
	}
	c.run("kill", c.id) // SIGTERM
	if ws := c.wait(); !ws.Exited() || ws.ExitStatus() != 42 {
		t.Errorf("wait status %v, want exit 42 from the TERM trap", ws)
	}
}

func TestDeleteCreated(t *testing.T) {
	requireRuntime(t)
	c := newCtr(t, runtimeBin, []string{"true"}, nil)
	c.mustCreate(false)
	c.run("delete", c.id) // a created container is killed and deleted
	if ws := c.wait(); !ws.Signaled() || ws.Signal() != unix.SIGKILL {
		t.Errorf("wait status %v, want SIGKILL", ws)
	}
	for _, d := range cgroupDirs(filepath.Join(c.parent, c.id)) {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s after delete: %v", d, err)
		}
	}
	if _, err := os.Stat(filepath.Join(c.root, c.id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir after delete: %v", err)
	}
}

func TestStdin(t *testing.T) {
	requireRuntime(t)
	c := newCtr(t, runtimeBin, []string{"sh", "-c", "read x; echo got:$x"}, nil)
	pipes := c.mustCreate(true)
	c.run("start", c.id)
	if _, err := pipes.stdin.WriteString("hello\n"); err != nil {
		t.Fatal(err)
	}
	pipes.stdin.Close()
	if out := readAll(t, pipes.stdout); out != "got:hello\n" {
		t.Errorf("output %q", out)
	}
	if ws := c.wait(); ws.ExitStatus() != 0 {
		t.Errorf("exit %v", ws)
	}
}

// recvConsole accepts one connection on l and receives the pty master the
// runtime sends over it (runc's console-socket protocol: one fd in
// SCM_RIGHTS).
func recvConsole(t *testing.T, l *net.UnixListener) (*os.File, error) {
	conn, err := l.AcceptUnix()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("control messages: %v (%d)", err, len(msgs))
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("rights: %v (%d)", err, len(fds))
	}
	return os.NewFile(uintptr(fds[0]), "pty-master"), nil
}

func TestTTYConsoleSocket(t *testing.T) {
	requireRuntime(t)
	for name, bin := range runtimes(t) {
		t.Run(name, func(t *testing.T) {
			c := newCtr(t, bin, []string{"sh", "-c", "tty; stty size; echo TERM=$TERM"}, func(o *oci.Options) {
				o.Config.Tty = true
				o.HostConfig.ConsoleSize = [2]uint{33, 101}
			})
			sock := filepath.Join(t.TempDir(), "console.sock")
			l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			type res struct {
				f   *os.File
				err error
			}
			got := make(chan res, 1)
			go func() { f, err := recvConsole(t, l); got <- res{f, err} }()
			pidFile := filepath.Join(c.bundle, "pid")
			if out, err := c.cmd("create", "--bundle", c.bundle, "--pid-file", pidFile, "--console-socket", sock, c.id).CombinedOutput(); err != nil {
				t.Fatalf("create: %v: %s (%s)", err, out, c.lastError())
			}
			c.pid = c.readPid(pidFile)
			r := <-got
			if r.err != nil {
				t.Fatalf("console: %v", r.err)
			}
			defer r.f.Close()
			c.run("start", c.id)
			var out bytes.Buffer
			_, _ = io.Copy(&out, r.f) // EIO once the container's side is closed
			if ws := c.wait(); ws.ExitStatus() != 0 {
				t.Errorf("exit %v", ws)
			}
			s := strings.ReplaceAll(out.String(), "\r", "")
			if !strings.Contains(s, "/dev/pts/0\n") || !strings.Contains(s, "33 101\n") || !strings.Contains(s, "TERM=xterm\n") {
				t.Errorf("terminal output %q", s)
			}
		})
	}
}

func TestHostnameCmdlineEnvUser(t *testing.T) {
	requireRuntime(t)
	for name, bin := range runtimes(t) {
		t.Run(name, func(t *testing.T) {
			c := newCtr(t, bin, []string{"sh", "-c", `hostname; tr '\0' ' ' < /proc/1/cmdline; echo; id; echo $HOME $PATH $HOSTNAME; pwd`}, func(o *oci.Options) {
				o.Config.User = "alice"
				o.Config.WorkingDir = "/home/alice"
				o.HostConfig.GroupAdd = []string{"nogroup", "4242"}
			})
			out, errOut, code := c.runToEnd()
			// The kernel keeps supplementary groups sorted.
			want := "berthtest\n" +
				`sh -c hostname; tr '\0' ' ' < /proc/1/cmdline; echo; id; echo $HOME $PATH $HOSTNAME; pwd ` + "\n" +
				"uid=1000(alice) gid=1000(alice) groups=10(wheel),100(users),1000(alice),4242,65534(nogroup)\n" +
				"/home/alice " + oci.DefaultPathEnv + " berthtest\n" +
				"/home/alice\n"
			if out != want || code != 0 {
				t.Errorf("output (exit %d, stderr %q):\n%s\nwant:\n%s", code, errOut, out, want)
			}
		})
	}
}

func TestCgroupLimits(t *testing.T) {
	requireRuntime(t)
	v2 := oci.DetectCgroupV2()
	script := "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.shares"
	want := "67108864\n42\n50000\n512\n"
	if v2 {
		script = "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max"
		want = "67108864\n42\n50000 100000\n"
	}
	for name, bin := range runtimes(t) {
		t.Run(name, func(t *testing.T) {
			c := newCtr(t, bin, []string{"sh", "-c", script}, func(o *oci.Options) {
				o.HostConfig.Memory = 64 << 20
				o.HostConfig.NanoCPUs = 5e8
				o.HostConfig.CPUShares = 512
				pids := int64(42)
				o.HostConfig.PidsLimit = &pids
			})
			out, errOut, code := c.runToEnd()
			if out != want || code != 0 {
				t.Errorf("limits inside (exit %d, stderr %q): %q, want %q", code, errOut, out, want)
			}
		})
	}
	if !v2 {
		// And on the host, while the container lives.
		c := newCtr(t, runtimeBin, []string{"sleep", "1000"}, func(o *oci.Options) {
			o.HostConfig.Memory = 32 << 20
			o.HostConfig.MemorySwap = -1
		})
		c.mustCreate(false)
		b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", c.parent, c.id, "memory.limit_in_bytes"))
		if err != nil || strings.TrimSpace(string(b)) != "33554432" {
			t.Errorf("host memory.limit_in_bytes = %q, %v", b, err)
		}
		if sw, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", c.parent, c.id, "memory.memsw.limit_in_bytes")); err == nil {
			if strings.TrimSpace(string(sw)) != "9223372036854771712" {
				t.Errorf("memsw with --memory-swap -1 = %q, want unlimited", sw)
			}
		}
	}
}

func TestReadonlyRootfs(t *testing.T) {
	requireRuntime(t)
	for name, bin := range runtimes(t) {
		t.Run(name, func(t *testing.T) {
			c := newCtr(t, bin, []string{"sh", "-c", "touch /tmp/ok && echo tmpfs-ok; touch /dev/shm/ok && echo shm-ok; touch /x"}, func(o *oci.Options) {
				o.HostConfig.ReadonlyRootfs = true
				o.HostConfig.Tmpfs = map[string]string{"/tmp": "size=1m"}
			})
			out, errOut, code := c.runToEnd()
			if out != "tmpfs-ok\nshm-ok\n" || code == 0 || !strings.Contains(errOut, "Read-only file system") {
				t.Errorf("stdout %q, stderr %q, exit %d", out, errOut, code)
			}
		})
	}
}

func TestExecErrors(t *testing.T) {
	requireRuntime(t)
	for name, bin := range runtimes(t) {
		t.Run(name, func(t *testing.T) {
			for _, tc := range []struct{ cmd, want string }{
				{"nonexistent", `exec: "nonexistent": executable file not found in $PATH`},
				{"/etc/passwd", "permission denied"},
			} {
				c := newCtr(t, bin, []string{tc.cmd}, nil)
				_, err := c.create(false)
				if err == nil {
					t.Errorf("create of %s succeeded", tc.cmd)
					continue
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("create %s: %q, want it to contain %q", tc.cmd, err, tc.want)
				}
				// Nothing is left behind.
				if _, err := os.Stat(filepath.Join(c.root, c.id)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("state dir after failed create: %v", err)
				}
				for _, d := range cgroupDirs(filepath.Join(c.parent, c.id)) {
					if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("cgroup %s after failed create: %v", d, err)
					}
				}
			}
		})
	}
}

func TestPauseResume(t *testing.T) {
	requireRuntime(t)
	c := newCtr(t, runtimeBin, []string{"sleep", "1000"}, nil)
	c.mustCreate(false)
	c.run("start", c.id)
	c.run("pause", c.id)
	if st := c.state(); st.Status != "paused" {
		t.Errorf("state after pause: %+v", st)
	}
	c.run("resume", c.id)
	if st := c.state(); st.Status != "running" {
		t.Errorf("state after resume: %+v", st)
	}
	c.run("pause", c.id)
	c.run("delete", "--force", c.id) // kills a paused container too
	if ws := c.wait(); !ws.Signaled() {
		t.Errorf("wait status %v", ws)
	}
}

func TestInit(t *testing.T) {
	requireRuntime(t)
	if shimBin == "" {
		t.Skip("berth-shim (the --init binary) did not build")
	}
	c := newCtr(t, runtimeBin, []string{"sh", "-c", `tr '\0' ' ' < /proc/1/cmdline; echo; exit 5`}, func(o *oci.Options) {
		yes := true
		o.HostConfig.Init = &yes
		o.InitPath = shimBin
	})
	out, errOut, code := c.runToEnd()
	if !strings.HasPrefix(out, oci.InitPathInContainer+" -- sh -c") || code != 5 {
		t.Errorf("stdout %q, stderr %q, exit %d", out, errOut, code)
	}
}

func TestHostNetwork(t *testing.T) {
	requireRuntime(t)
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	c := newCtr(t, runtimeBin, []string{"readlink", "/proc/self/ns/net"}, func(o *oci.Options) {
		o.HostConfig.NetworkMode = "host"
	})
	out, errOut, code := c.runToEnd()
	if strings.TrimSpace(out) != host || code != 0 {
		t.Errorf("netns %q (stderr %q, exit %d), want the host's %q", out, errOut, code, host)
	}
	// And a private one by default.
	c = newCtr(t, runtimeBin, []string{"readlink", "/proc/self/ns/net"}, nil)
	if out, _, _ := c.runToEnd(); strings.TrimSpace(out) == host {
		t.Errorf("default network namespace is the host's")
	}
}

func TestJSONLogAndStderr(t *testing.T) {
	requireRuntime(t)
	c := newCtr(t, runtimeBin, []string{"true"}, nil)
	out, err := c.cmd("state", "no-such-"+c.id).CombinedOutput()
	if err == nil {
		t.Fatalf("state of a missing container succeeded: %s", out)
	}
	if !strings.Contains(string(out), "does not exist") {
		t.Errorf("stderr %q", out)
	}
	b, _ := os.ReadFile(c.logPath)
	var e map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(b), &e); err != nil {
		t.Fatalf("log is not one JSON object a line: %q: %v", b, err)
	}
	if e["level"] != "error" || !strings.Contains(fmt.Sprint(e["msg"]), "does not exist") || e["time"] == nil {
		t.Errorf("log entry %v", e)
	}
}

// TestLatency measures what a container start costs in runtime calls:
// create+start+wait+delete of `true`, 30 times, and `--version`. It is a
// measurement, run on demand (BERTH_RUNTIME_BENCH=1), never an assertion.
func TestLatency(t *testing.T) {
	requireRuntime(t)
	if os.Getenv("BERTH_RUNTIME_BENCH") == "" {
		t.Skip("set BERTH_RUNTIME_BENCH=1 to measure")
	}
	for name, bin := range runtimes(t) {
		var ds, creates, starts, waits, deletes []time.Duration
		for i := 0; i < 30; i++ {
			c := newCtr(t, bin, []string{"true"}, nil)
			t0 := time.Now()
			c.mustCreate(false)
			t1 := time.Now()
			c.run("start", c.id)
			t2 := time.Now()
			c.wait()
			t3 := time.Now()
			c.run("delete", c.id)
			t4 := time.Now()
			ds = append(ds, t4.Sub(t0))
			creates, starts, waits, deletes = append(creates, t1.Sub(t0)), append(starts, t2.Sub(t1)), append(waits, t3.Sub(t2)), append(deletes, t4.Sub(t3))
		}
		t.Logf("%s: medians: create %v, start %v, wait %v, delete %v", name, median(creates), median(starts), median(waits), median(deletes))
		var vs []time.Duration
		for i := 0; i < 30; i++ {
			t0 := time.Now()
			if err := exec.Command(bin, "--version").Run(); err != nil {
				t.Fatal(err)
			}
			vs = append(vs, time.Since(t0))
		}
		t.Logf("%s: create+start+wait+delete median %v (min %v, max %v); --version median %v", name, median(ds), minD(ds), maxD(ds), median(vs))
	}
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

func minD(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = min(m, d)
	}
	return m
}

func maxD(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// TestSeccompProgramTravelsToExec: berth-runtime exec hands the exec's
// init the compiled seccomp program from the container's state. That init
// already sees only the container's filesystem when its Go code starts,
// so the host's program cache is out of its reach and it would otherwise
// compile the profile again (~17 ms); and the state keeps the program
// only, not the rules (~25 KiB of JSON every exec would decode twice).
// The test gives its container a profile of its own, checks the state
// holds the program and no rules, then replaces the program in the state
// with one that denies everything: an exec that fails proves its init
// loaded the program the state handed it, not one compiled or cached.
func TestSeccompProgramTravelsToExec(t *testing.T) {
	requireRuntime(t)
	errno := 1000 + int(time.Now().UnixNano()%3000)
	profile := fmt.Sprintf(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["uselib"],"action":"SCMP_ACT_ERRNO","errnoRet":%d}]}`, errno)
	c := newCtr(t, runtimeBin, []string{"sleep", "1000"}, func(o *oci.Options) {
		o.HostConfig.SecurityOpt = []string{"seccomp=" + profile}
	})
	c.mustCreate(false)
	c.run("start", c.id)
	process := func(args ...string) string {
		b, err := json.Marshal(specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "process.json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if out := c.run("exec", "--process", process("grep", "^Seccomp:", "/proc/self/status"), c.id); !strings.Contains(out, "Seccomp:\t2") {
		t.Fatalf("exec is not under a filter: %q", out)
	}
	// The container's state carries the program, and no rules.
	statePath := filepath.Join(c.root, c.id, "state.json")
	b, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // the state is written back: keep its numbers exact
	if err := dec.Decode(&st); err != nil {
		t.Fatal(err)
	}
	sc, _ := st["config"].(map[string]any)["seccomp"].(map[string]any)
	prog, _ := sc["berth_program"].(string) // base64
	if len(prog) < 16 {
		t.Fatalf("state.json carries no compiled program: %v", sc)
	}
	if rules, _ := sc["syscalls"].([]any); len(rules) > 0 {
		t.Errorf("state.json still carries %d seccomp rules beside the program", len(rules))
	}
	// flags 0, then one instruction: return SECCOMP_RET_ERRNO|EPERM.
	deny := make([]byte, 16)
	binary.LittleEndian.PutUint16(deny[8:], unix.BPF_RET|unix.BPF_K)
	binary.LittleEndian.PutUint32(deny[12:], unix.SECCOMP_RET_ERRNO|1)
	sc["berth_program"] = deny // encoded as base64, as libcontainer's []byte
	b, err = json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(statePath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := c.cmd("exec", "--process", process("true"), c.id).CombinedOutput(); err == nil {
		t.Fatalf("exec ran although the program it was handed denies everything: %s", out)
	}
}

// TestCreateParsesNoMountinfo: berth-runtime finds the cgroup v1 root and
// the controllers it may join without parsing /proc/self/mountinfo (the
// cgroups module's fs/paths.go as patched by runtime-overlay.sh). Stock,
// on a hybrid host whose /sys/fs/cgroup lists "unified" first, or with a
// controller no hierarchy has (hugetlb here), every create parses it:
// ~3.5 ms of CPU per container. The runtime runs a container under
// strace -f; no thread of berth-runtime itself may open mountinfo through
// moby/sys/mountinfo (/proc/thread-self/…). The Go runtime's own start-up
// read of /proc/self/mountinfo (GOMAXPROCS from the cgroup) and the
// container's init (another comm) are not the runtime's cgroup work.
func TestCreateParsesNoMountinfo(t *testing.T) {
	requireRuntime(t)
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("requires strace (apt-get install strace)")
	}
	c := newCtr(t, runtimeBin, []string{"true"}, nil)
	trace := filepath.Join(t.TempDir(), "trace")
	args := append([]string{"-f", "-qq", "-Y", "-e", "trace=openat", "-o", trace, c.bin}, c.cmd("run", "--bundle", c.bundle, c.id).Args[1:]...)
	if out, err := exec.Command(strace, args...).CombinedOutput(); err != nil {
		t.Fatalf("strace berth-runtime run: %v: %s (log: %s)", err, out, c.lastError())
	}
	b, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	self := "<" + filepath.Base(c.bin) + ">"
	var opens int
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, "openat(") {
			continue
		}
		opens++
		if strings.Contains(line, self) && strings.Contains(line, "/proc/thread-self/mountinfo") {
			t.Errorf("berth-runtime parsed mountinfo: %s", line)
		}
	}
	// The trace must have seen the runtime at work (not an empty file).
	if !strings.Contains(string(b), self) || opens < 5 {
		t.Fatalf("strace saw too little of berth-runtime (%d opens): %.2000s", opens, b)
	}
}
