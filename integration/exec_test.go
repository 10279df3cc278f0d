package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/testutil"
	"github.com/creack/pty"
)

// cliFlavours runs a test body with the berth CLI and, when installed,
// the stock docker CLI: the same expectations hold for both.
func cliFlavours(t *testing.T, d *testutil.Daemon, body func(t *testing.T, name string, run func(args ...string) testutil.Result, mk func(args ...string) *exec.Cmd)) {
	t.Run("berth", func(t *testing.T) {
		body(t, "berth", func(args ...string) testutil.Result { return d.Berth(t, args...) }, d.Cmd)
	})
	t.Run("docker", func(t *testing.T) {
		testutil.RequiresDockerCLI(t)
		body(t, "docker", func(args ...string) testutil.Result { return d.Docker(t, args...) }, d.DockerCmd)
	})
}

func TestExec(t *testing.T) {
	d := daemonWithBusybox(t)
	id := strings.TrimSpace(d.MustBerth(t, "run", "-d", "--name", "ex", "-e", "FROMRUN=1", "-w", "/etc", "busybox", "sleep", "1000"))
	cliFlavours(t, d, func(t *testing.T, cli string, run func(args ...string) testutil.Result, _ func(args ...string) *exec.Cmd) {
		// Output, stderr kept apart, exit code.
		r := run("exec", "ex", "sh", "-c", "echo out; echo err >&2; exit 3")
		if r.ExitCode != 3 || r.Stdout != "out\n" || r.Stderr != "err\n" {
			t.Fatalf("exec exit/streams: %s", r)
		}
		// The container's environment and working dir, overridable.
		r = run("exec", "ex", "sh", "-c", "echo $FROMRUN $PATH; pwd")
		if r.ExitCode != 0 || r.Stdout != "1 /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n/etc\n" {
			t.Fatalf("exec env: %s", r)
		}
		envFile := filepath.Join(t.TempDir(), "env")
		if err := os.WriteFile(envFile, []byte("FROMFILE=f\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		r = run("exec", "-e", "FROMRUN=2", "-e", "NEW=n", "--env-file", envFile, "-w", "/tmp", "-u", "nobody", "ex", "sh", "-c", "echo $FROMRUN $NEW $FROMFILE; pwd; id -u")
		if r.ExitCode != 0 || r.Stdout != "2 n f\n/tmp\n65534\n" {
			t.Fatalf("exec -e -w -u: %s", r)
		}
		// Same namespaces as the container: its hostname, its pid 1.
		r = run("exec", "ex", "sh", "-c", "hostname; cat /proc/1/cmdline | tr '\\0' ' '")
		if r.ExitCode != 0 || r.Stdout != id[:12]+"\nsleep 1000 " {
			t.Fatalf("exec namespaces: %s", r)
		}
		// And its cgroup.
		r = run("exec", "ex", "sh", "-c", "cat /proc/self/cgroup; echo --; cat /proc/1/cgroup")
		self, init, _ := strings.Cut(r.Stdout, "--\n")
		if r.ExitCode != 0 || self == "" || self != init {
			t.Fatalf("exec cgroup: %s", r)
		}
		// Stdin with -i; none without.
		if r := testutil.Run(t, cliCmd(d, cli, "exec", "-i", "ex", "sh", "-c", "tr a-z A-Z; exit 5"), "hello\n"); r.ExitCode != 5 || r.Stdout != "HELLO\n" {
			t.Fatalf("exec -i: %s", r)
		}
		if r := testutil.Run(t, cliCmd(d, cli, "exec", "ex", "sh", "-c", "cat; echo end"), "ignored\n"); r.Stdout != "end\n" {
			t.Fatalf("exec without -i read stdin: %s", r)
		}
		// --privileged gets every capability.
		r = run("exec", "--privileged", "ex", "grep", "CapEff", "/proc/self/status")
		if r.ExitCode != 0 || !strings.Contains(r.Stdout, "000001ff") && !strings.Contains(r.Stdout, "ffffffff") {
			t.Fatalf("exec --privileged: %s", r)
		}
		r = run("exec", "ex", "grep", "CapEff", "/proc/self/status")
		if r.ExitCode != 0 || !strings.Contains(r.Stdout, "00000000a80425fb") {
			t.Fatalf("exec default capabilities: %s", r)
		}
		// A command that does not exist: docker's message and 127.
		r = run("exec", "ex", "no-such-command")
		if r.ExitCode != 127 || !strings.Contains(r.Combined(), `exec: "no-such-command": executable file not found in $PATH`) {
			t.Fatalf("exec of a missing command: %s", r)
		}
		// -d: runs in the background.
		marker := "/tmp/detached-" + cli
		if r := run("exec", "-d", "ex", "sh", "-c", "echo done > "+marker); r.ExitCode != 0 || r.Stdout != "" {
			t.Fatalf("exec -d: %s", r)
		}
		eventually(t, "detached exec ran", func() bool {
			return run("exec", "ex", "cat", marker).Stdout == "done\n"
		})
	})
}

// cliCmd is the command of the named CLI against d.
func cliCmd(d *testutil.Daemon, cli string, args ...string) *exec.Cmd {
	if cli == "docker" {
		return d.DockerCmd(args...)
	}
	return d.Cmd(args...)
}

func TestExecBadInput(t *testing.T) {
	d := daemonWithBusybox(t)
	d.MustBerth(t, "create", "--name", "created", "busybox", "true")
	d.MustBerth(t, "run", "-d", "--name", "paused", "busybox", "sleep", "1000")
	d.MustBerth(t, "pause", "paused")
	cliFlavours(t, d, func(t *testing.T, cli string, run func(args ...string) testutil.Result, _ func(args ...string) *exec.Cmd) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"exec", "nosuch", "true"}, "No such container: nosuch"},
			{[]string{"exec", "created", "true"}, "is not running"},
			{[]string{"exec", "paused", "true"}, "is paused, unpause the container before exec"},
			{[]string{"exec", "-w", "relative", "paused", "true"}, "is paused"},
			{[]string{"exec", "paused"}, "requires at least 2 arguments"},
		} {
			r := run(tc.args...)
			if r.ExitCode == 0 || !strings.Contains(r.Stderr, tc.want) {
				t.Errorf("%s %v: want %q: %s", cli, tc.args, tc.want, r)
			}
		}
	})
	// Nothing was left running: only the paused container's sleep.
	d.MustBerth(t, "unpause", "paused")
	r := d.Berth(t, "top", "paused")
	if r.ExitCode != 0 || strings.Count(r.Stdout, "\n") != 2 {
		t.Fatalf("processes after refused execs: %s", r)
	}
	r = d.Berth(t, "exec", "-u", "nosuchuser", "paused", "true")
	if r.ExitCode != 126 || !strings.Contains(r.Combined(), "nosuchuser") {
		t.Fatalf("exec -u unknown user: %s", r)
	}
}

// TestExecDiesWithContainer: exec processes live in the container's pid
// namespace and go when it stops.
func TestExecDiesWithContainer(t *testing.T) {
	d := daemonWithBusybox(t)
	d.MustBerth(t, "run", "-d", "--name", "cc", "busybox", "sleep", "1000")
	d.MustBerth(t, "exec", "-d", "cc", "sleep", "1234")
	eventually(t, "exec'd sleep running", func() bool { return len(hostPids("sleep\x001234")) == 1 })
	pid := hostPids("sleep\x001234")[0]
	d.MustBerth(t, "kill", "cc")
	eventually(t, "exec'd process gone with its container", func() bool {
		_, err := os.Stat("/proc/" + strconv.Itoa(pid))
		return err != nil
	})
	if st, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); len(st) > 0 {
		t.Fatalf("exec process left as %s", st)
	}
	// Sharing the host's pid namespace, the daemon kills them itself.
	if r := d.Berth(t, "run", "-d", "--name", "hostpid", "--pid", "host", "busybox", "sleep", "1000"); r.ExitCode != 0 {
		t.Skipf("--pid host: %s", r)
	}
	d.MustBerth(t, "exec", "-d", "hostpid", "sleep", "4242")
	eventually(t, "exec'd sleep running", func() bool { return len(hostPids("sleep\x004242")) == 1 })
	d.MustBerth(t, "kill", "hostpid")
	eventually(t, "exec'd process gone with its --pid=host container", func() bool { return len(hostPids("sleep\x004242")) == 0 })
}

// hostPids lists the host processes whose command line contains cmdline.
func hostPids(cmdline string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(cmdline)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestExecTTY(t *testing.T) {
	d := daemonWithBusybox(t)
	d.MustBerth(t, "run", "-d", "--name", "tt", "busybox", "sleep", "1000")
	cliFlavours(t, d, func(t *testing.T, cli string, _ func(args ...string) testutil.Result, mk func(args ...string) *exec.Cmd) {
		s := startTTY(t, mk("exec", "-it", "tt", "sh"), 30, 100)
		s.send("stty size; echo TERM=$TERM; tty\r")
		s.expect("30 100")
		s.expect("TERM=xterm")
		s.expect("/dev/pts/")
		if err := pty.Setsize(s.pty, &pty.Winsize{Rows: 42, Cols: 120}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(s.seen.String(), "42 120") {
			if time.Now().After(deadline) {
				t.Fatalf("resize not seen: %q", s.seen.String())
			}
			s.send("stty size\r")
			time.Sleep(100 * time.Millisecond)
			for drained := false; !drained; {
				select {
				case chunk := <-s.out:
					s.seen.WriteString(chunk)
				default:
					drained = true
				}
			}
		}
		s.send("exit 9\r")
		if code := s.wait(); code != 9 {
			t.Fatalf("exit code through the exec TTY: %d\n%s", code, s.seen.String())
		}
	})
}

func TestAttachCommand(t *testing.T) {
	d := daemonWithBusybox(t)
	// Two clients attached at once both see the output; detaching leaves
	// the container running.
	d.MustBerth(t, "run", "-d", "-it", "--name", "att", "busybox", "sh")
	cliFlavours(t, d, func(t *testing.T, cli string, run func(args ...string) testutil.Result, mk func(args ...string) *exec.Cmd) {
		a := startTTY(t, mk("attach", "att"), 30, 100)
		b := startTTY(t, mk("attach", "att"), 30, 100)
		marker := "marker-" + cli
		// Both attaches may still be connecting: type until both see it.
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(a.seen.String(), marker+"-ok") || !strings.Contains(b.seen.String(), marker+"-ok") {
			if time.Now().After(deadline) {
				t.Fatalf("attach output: a=%q b=%q", a.seen.String(), b.seen.String())
			}
			a.send("echo " + marker + "-$((40+2))\r")
			time.Sleep(200 * time.Millisecond)
			for _, s := range []*ttySession{a, b} {
				for drained := false; !drained; {
					select {
					case chunk := <-s.out:
						s.seen.WriteString(strings.ReplaceAll(chunk, marker+"-42", marker+"-ok"))
					default:
						drained = true
					}
				}
			}
		}
		// ctrl-p ctrl-q detaches; a custom sequence too.
		// (The stock docker CLI reports the detach as "read escape
		// sequence", exit 1; berth's exits 0.)
		detached := func(s *ttySession) {
			t.Helper()
			code := s.wait()
			if cli == "berth" && code != 0 || cli == "docker" && code != 1 {
				t.Fatalf("detach: exit %d: %q", code, s.seen.String())
			}
		}
		a.send("\x10\x11")
		detached(a)
		b.send("\x10\x11")
		detached(b)
		c := startTTY(t, mk("attach", "--detach-keys", "ctrl-x", "att"), 30, 100)
		time.Sleep(300 * time.Millisecond)
		c.send("\x18")
		detached(c)
		if st := inspectField(t, d, "att", "{{.State.Status}}"); st != "running" {
			t.Fatalf("after detaching: %s", st)
		}
	})
	// The exit code comes back through attach.
	d.MustBerth(t, "run", "-d", "--name", "att2", "busybox", "sh", "-c", "sleep 1; echo bye; exit 6")
	r := d.Berth(t, "attach", "att2")
	if r.ExitCode != 6 || !strings.Contains(r.Stdout, "bye") {
		t.Fatalf("attach until exit: %s", r)
	}
	// A stopped container cannot be attached to.
	for _, cli := range []string{"berth", "docker"} {
		if cli == "docker" && testutil.DockerCLI() == "" {
			continue
		}
		r := testutil.Run(t, cliCmd(d, cli, "attach", "att2"), "")
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, "You cannot attach to a stopped container, start it first") {
			t.Fatalf("%s attach to a stopped container: %s", cli, r)
		}
	}
}
