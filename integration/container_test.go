package integration

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/testutil"
)

func TestRunForegroundOutputAndExitCodes(t *testing.T) {
	d := daemonWithBusybox(t)

	r := d.Berth(t, "run", "--rm", "busybox", "echo", "hello world")
	if r.ExitCode != 0 || r.Stdout != "hello world\n" {
		t.Fatalf("echo: %s", r)
	}
	r = d.Berth(t, "run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
	if r.ExitCode != 3 || r.Stdout != "out\n" || r.Stderr != "err\n" {
		t.Fatalf("exit 3: %s", r)
	}
	// A process killed by a signal exits 128+n. (Inside the container pid 1
	// is immune to its own SIGKILL, as in docker, so it comes from outside.)
	killed := strings.TrimSpace(d.MustBerth(t, "run", "-d", "busybox", "sleep", "1000"))
	d.MustBerth(t, "kill", killed)
	if code := strings.TrimSpace(d.MustBerth(t, "wait", killed)); code != "137" {
		t.Fatalf("SIGKILL: exit %s", code)
	}
	d.MustBerth(t, "rm", killed)
	r = d.Berth(t, "run", "--rm", "busybox", "sh", "-c", "kill -9 $$; echo survived")
	if r.ExitCode != 0 || r.Stdout != "survived\n" {
		t.Fatalf("pid 1 killing itself: %s", r)
	}
	r = d.Berth(t, "run", "--rm", "busybox", "no-such-command")
	if r.ExitCode != 127 || !strings.Contains(r.Stderr, "executable file not found") {
		t.Fatalf("missing executable: %s", r)
	}
	r = d.Berth(t, "run", "--rm", "busybox", "/etc/passwd")
	if r.ExitCode != 126 {
		t.Fatalf("not executable: %s", r)
	}
	r = d.Berth(t, "run", "--rm", "no-such-image")
	if r.ExitCode != 125 || !strings.Contains(r.Stderr, "no-such-image") {
		t.Fatalf("unknown image: %s", r)
	}
	// --rm containers are gone afterwards, whatever happened.
	if out := d.MustBerth(t, "ps", "-aq"); strings.TrimSpace(out) != "" {
		t.Fatalf("--rm left containers: %q", out)
	}
}

func TestRunOptions(t *testing.T) {
	d := daemonWithBusybox(t)
	envFile := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(envFile, []byte("# comment\nFROM_FILE=yes\nPASSTHRU\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := d.Cmd("run", "--rm", "-e", "A=1", "-e", "PASSTHRU", "--env-file", envFile, "busybox", "env")
	cmd.Env = append(cmd.Env, "PASSTHRU=from-cli")
	r := testutil.Run(t, cmd, "")
	for _, want := range []string{"A=1", "FROM_FILE=yes", "PASSTHRU=from-cli", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"} {
		if !strings.Contains(r.Stdout, want+"\n") {
			t.Errorf("env lacks %s:\n%s", want, r.Stdout)
		}
	}
	// The shim runs the runtime with GOMAXPROCS=1, which reaches the
	// container's init but never the user's process.
	if strings.Contains(r.Stdout, "GOMAXPROCS") {
		t.Errorf("the runtime's environment leaked into the container:\n%s", r.Stdout)
	}

	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-w", "/tmp", "busybox", "pwd"}, "/tmp"},
		{[]string{"-u", "alice", "busybox", "id"}, "uid=1000(alice) gid=1000(alice) groups=10(wheel),100(users),1000(alice)"},
		{[]string{"-u", "1000:100", "busybox", "id", "-u"}, "1000"},
		{[]string{"-u", "nobody", "busybox", "sh", "-c", "echo $HOME"}, "/nonexistent"},
		{[]string{"--entrypoint", "echo", "busybox", "via", "entrypoint"}, "via entrypoint"},
		{[]string{"-h", "myhost", "busybox", "hostname"}, "myhost"},
		{[]string{"-h", "myhost", "busybox", "cat", "/etc/hostname"}, "myhost"},
		{[]string{"busybox", "sh", "-c", "echo $$"}, "1"},
		{[]string{"--init", "busybox", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"}, "/sbin/docker-init -- sh -c cat /proc/1/cmdline | tr '\\0' ' '"},
	}
	for _, c := range cases {
		r := d.Berth(t, append([]string{"run", "--rm"}, c.args...)...)
		if r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != c.want {
			t.Errorf("run %v: got %s, want %q", c.args, r, c.want)
		}
	}
	r = d.Berth(t, "run", "--rm", "-u", "nosuchuser", "busybox", "true")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "nosuchuser") {
		t.Errorf("unknown user: %s", r)
	}

	id := strings.TrimSpace(d.MustBerth(t, "run", "-d", "--name", "labelled", "-l", "team=core", "--label", "tier=db", "busybox", "true"))
	d.MustBerth(t, "wait", id)
	if got := inspectField(t, d, "labelled", `{{index .Config.Labels "team"}} {{index .Config.Labels "tier"}} {{.Name}}`); got != "core db /labelled" {
		t.Errorf("labels/name: %q", got)
	}
}

func TestRunIsolation(t *testing.T) {
	d := daemonWithBusybox(t)
	script := strings.Join([]string{
		"echo pid1=$(cat /proc/1/comm)",
		"echo procs=$(ls /proc | grep -c '^[0-9]')",
		"echo links=$(ls /sys/class/net | tr '\\n' ' ')",
		"touch /sys/x 2>/dev/null && echo sys=rw || echo sys=ro",
		"echo dev=$(ls /dev | tr '\\n' ' ')",
		"grep -q ' /dev/pts ' /proc/mounts && echo pts=yes",
		"grep -q ' /dev/shm ' /proc/mounts && echo shm=yes",
		"grep -q ' /dev/mqueue ' /proc/mounts && echo mqueue=yes",
		"grep -q ' /etc/resolv.conf ' /proc/mounts && echo resolv=mounted",
		"grep -q 127.0.0.1 /etc/hosts && echo hosts=ok",
		"echo cgroup=$(cat /proc/self/cgroup | head -1)",
		"echo uts=$(hostname)",
	}, "; ")
	out := d.MustBerth(t, "run", "--rm", "-h", "isolated", "busybox", "sh", "-c", script)
	for _, want := range []string{"pid1=sh", "procs=", "links=eth0 lo\n", "sys=ro", "pts=yes", "shm=yes", "mqueue=yes", "resolv=mounted", "hosts=ok", "uts=isolated"} {
		if !strings.Contains(out, want) {
			t.Errorf("isolation check %q missing in:\n%s", want, out)
		}
	}
	// Only the container's own processes are visible (sh + the ls pipeline).
	for _, l := range lines(out) {
		if n, ok := strings.CutPrefix(l, "procs="); ok && len(n) > 1 {
			t.Errorf("container sees %s processes: pid namespace leaks", n)
		}
		if devs, ok := strings.CutPrefix(l, "dev="); ok {
			for _, dev := range strings.Fields(devs) {
				if strings.HasPrefix(dev, "sd") || strings.HasPrefix(dev, "vd") || strings.HasPrefix(dev, "nvme") || dev == "mem" || dev == "kmsg" {
					t.Errorf("host device /dev/%s visible in the container", dev)
				}
			}
		}
		if cg, ok := strings.CutPrefix(l, "cgroup="); ok && strings.Contains(cg, d.CgroupParent) {
			t.Errorf("cgroup namespace not private: %s", cg)
		}
	}
	// The container's root is its own: a write does not touch the image.
	d.MustBerth(t, "run", "--name", "writer", "busybox", "sh", "-c", "echo data > /etc/written")
	if r := d.Berth(t, "run", "--rm", "busybox", "cat", "/etc/written"); r.ExitCode == 0 {
		t.Errorf("a container's write leaked into the image: %s", r)
	}
	// --read-only refuses writes.
	if r := d.Berth(t, "run", "--rm", "--read-only", "busybox", "touch", "/x"); r.ExitCode == 0 {
		t.Errorf("--read-only allowed a write")
	}
}

// cgroupV1File reads a v1 controller file of a running container.
func cgroupV1File(t *testing.T, d *testutil.Daemon, id, ctrl, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", ctrl, d.CgroupParent, id, file))
	if err != nil {
		t.Fatalf("read %s/%s of %s: %v", ctrl, file, id, err)
	}
	return strings.TrimSpace(string(b))
}

func TestRunResourceLimits(t *testing.T) {
	d := daemonWithBusybox(t)
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err != nil {
		t.Skip("cgroup v1 memory controller not mounted; the v2 spec is unit-tested in internal/oci")
	}
	id := strings.TrimSpace(d.MustBerth(t, "run", "-d", "--memory", "64m", "--cpus", "0.5", "--cpu-shares", "512", "--pids-limit", "42", "busybox", "sleep", "1000"))
	if got := cgroupV1File(t, d, id, "memory", "memory.limit_in_bytes"); got != "67108864" {
		t.Errorf("memory limit on host: %s", got)
	}
	if got := cgroupV1File(t, d, id, "cpu", "cpu.cfs_quota_us"); got != "50000" {
		t.Errorf("cpu quota: %s", got)
	}
	if got := cgroupV1File(t, d, id, "cpu", "cpu.shares"); got != "512" {
		t.Errorf("cpu shares: %s", got)
	}
	if got := cgroupV1File(t, d, id, "pids", "pids.max"); got != "42" {
		t.Errorf("pids max: %s", got)
	}
	// And visible inside, through the container's cgroup namespace.
	out := d.MustBerth(t, "run", "--rm", "--memory", "32m", "--pids-limit", "7", "busybox", "sh", "-c",
		"cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max")
	if got := lines(out); len(got) != 2 || got[0] != "33554432" || got[1] != "7" {
		t.Errorf("limits inside the container: %q", out)
	}
	// The pids limit is enforced.
	r := d.Berth(t, "run", "--rm", "--pids-limit", "5", "busybox", "sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait")
	if r.ExitCode == 0 && !strings.Contains(r.Stderr, "fork") && !strings.Contains(r.Stderr, "Resource") {
		t.Errorf("pids limit not enforced: %s", r)
	}
	d.MustBerth(t, "rm", "-f", id)
	for _, ctrl := range []string{"memory", "cpu", "pids"} {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", ctrl, d.CgroupParent, id)); !os.IsNotExist(err) {
			t.Errorf("cgroup %s of removed container left behind", ctrl)
		}
	}
}

func TestContainerLifecycle(t *testing.T) {
	d := daemonWithBusybox(t)

	id := strings.TrimSpace(d.MustBerth(t, "create", "--name", "web", "busybox", "sh", "-c", "trap 'echo bye; exit 0' TERM; echo up; while true; do sleep 0.1; done"))
	if len(id) != 64 {
		t.Fatalf("create printed %q, want a 64-hex ID", id)
	}
	if got := inspectField(t, d, "web", "{{.State.Status}}"); got != "created" {
		t.Fatalf("status after create: %s", got)
	}
	// Short, unique ID prefixes work everywhere.
	d.MustBerth(t, "start", id[:8])
	eventually(t, "container output", func() bool { return strings.Contains(d.MustBerth(t, "logs", "web"), "up") })
	ps := d.MustBerth(t, "ps")
	if !strings.Contains(ps, id[:12]) || !strings.Contains(ps, "web") || !strings.Contains(ps, "Up ") {
		t.Fatalf("ps:\n%s", ps)
	}
	// Removing a running container needs -f, with docker's message.
	r := d.Berth(t, "rm", "web")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "container is running: stop the container before removing or force remove") {
		t.Fatalf("rm running: %s", r)
	}
	d.MustBerth(t, "stop", "web")
	if got := inspectField(t, d, "web", "{{.State.Status}} {{.State.ExitCode}}"); got != "exited 0" {
		t.Fatalf("after stop: %s", got)
	}
	if logs := d.MustBerth(t, "logs", "web"); !strings.Contains(logs, "bye") {
		t.Fatalf("stop signal not delivered (no trap output): %q", logs)
	}
	// restart runs it again.
	d.MustBerth(t, "restart", "-t", "1", "web")
	if got := inspectField(t, d, "web", "{{.State.Status}}"); got != "running" {
		t.Fatalf("after restart: %s", got)
	}
	// "up" is printed once the trap is set: a TERM before that would be
	// ignored by the shell as PID 1, and wait would never return.
	eventually(t, "second run's output", func() bool { return strings.Count(d.MustBerth(t, "logs", "web"), "up") >= 2 })
	// kill -s sends that signal.
	d.MustBerth(t, "kill", "-s", "TERM", "web")
	if out := strings.TrimSpace(d.MustBerth(t, "wait", "web")); out != "0" {
		t.Fatalf("wait after kill -s TERM: %q", out)
	}
	r = d.Berth(t, "kill", "web")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "is not running") {
		t.Fatalf("kill of a stopped container: %s", r)
	}
	// rename, and the old name is free again.
	d.MustBerth(t, "rename", "web", "web2")
	if got := inspectField(t, d, "web2", "{{.Name}}"); got != "/web2" {
		t.Fatalf("rename: %s", got)
	}
	d.MustBerth(t, "create", "--name", "web", "busybox", "true")
	r = d.Berth(t, "create", "--name", "web", "busybox", "true")
	// docker's CLI exits 1 (not run's 125) when create fails.
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, `The container name "/web" is already in use`) {
		t.Fatalf("name conflict: %s", r)
	}
	r = d.Berth(t, "rename", "web2", "web")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "already in use") {
		t.Fatalf("rename onto a used name: %s", r)
	}
	// rm of several at once.
	d.MustBerth(t, "rm", "web", "web2")
	if out := d.MustBerth(t, "ps", "-aq"); strings.TrimSpace(out) != "" {
		t.Fatalf("containers left: %q", out)
	}
}

func TestStopTimeoutAndSignal(t *testing.T) {
	d := daemonWithBusybox(t)
	// A process that ignores SIGTERM is killed after the timeout: 137.
	id := strings.TrimSpace(d.MustBerth(t, "run", "-d", "busybox", "sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"))
	d.MustBerth(t, "stop", "-t", "1", id)
	if got := inspectField(t, d, id, "{{.State.ExitCode}}"); got != "137" {
		t.Fatalf("exit code after stop timeout: %s", got)
	}
	// --stop-signal picks the signal stop sends.
	id = strings.TrimSpace(d.MustBerth(t, "run", "-d", "--stop-signal", "USR1", "--stop-timeout", "30", "busybox", "sh", "-c", "trap 'exit 7' USR1; echo ready; while true; do sleep 0.1; done"))
	// PID 1 ignores a signal it has no handler for: stop once the trap is set.
	eventually(t, "the trap", func() bool { return strings.Contains(d.MustBerth(t, "logs", id), "ready") })
	d.MustBerth(t, "stop", id)
	if got := inspectField(t, d, id, "{{.State.ExitCode}} {{.Config.StopSignal}}"); got != "7 USR1" {
		t.Fatalf("stop with --stop-signal: %s", got)
	}
}

func TestPsFiltersAndFormats(t *testing.T) {
	d := daemonWithBusybox(t)
	d.MustBerth(t, "tag", "busybox", "other:1")
	running := strings.TrimSpace(d.MustBerth(t, "run", "-d", "--name", "runner", "-l", "role=a", "busybox", "sleep", "1000"))
	if r := d.Berth(t, "run", "--name", "three", "-l", "role=b", "busybox", "sh", "-c", "exit 3"); r.ExitCode != 3 {
		t.Fatalf("run three: %s", r)
	}
	d.MustBerth(t, "create", "--name", "fresh", "other:1", "true")

	check := func(args []string, want ...string) {
		t.Helper()
		got := lines(d.MustBerth(t, append([]string{"ps", "--format", "{{.Names}}"}, args...)...))
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("ps %v: got %v, want %v", args, got, want)
		}
	}
	check(nil, "runner")
	check([]string{"-a"}, "fresh", "three", "runner")
	check([]string{"-a", "--filter", "status=exited"}, "three")
	check([]string{"-a", "--filter", "status=created"}, "fresh")
	check([]string{"-a", "--filter", "exited=3"}, "three")
	check([]string{"-a", "--filter", "label=role=b"}, "three")
	check([]string{"-a", "--filter", "label=role"}, "three", "runner")
	check([]string{"-a", "--filter", "name=run"}, "runner")
	check([]string{"-a", "--filter", "id=" + running[:10]}, "runner")
	// other:1 is another name for busybox's image: docker's ancestor
	// filter matches by image ID, so all three match; nosuch matches none.
	check([]string{"-a", "--filter", "ancestor=other:1"}, "fresh", "three", "runner")
	check([]string{"-n", "1"}, "fresh")
	check([]string{"-l"}, "fresh")

	if q := lines(d.MustBerth(t, "ps", "-q")); len(q) != 1 || q[0] != running[:12] {
		t.Errorf("ps -q: %v", q)
	}
	if q := lines(d.MustBerth(t, "ps", "-q", "--no-trunc")); len(q) != 1 || q[0] != running {
		t.Errorf("ps -q --no-trunc: %v", q)
	}
	table := d.MustBerth(t, "ps", "-a")
	header := lines(table)[0]
	for _, col := range []string{"CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"} {
		if !strings.Contains(header, col) {
			t.Errorf("ps header lacks %s: %q", col, header)
		}
	}
	if !strings.Contains(table, "Exited (3)") || !strings.Contains(table, "Created") {
		t.Errorf("ps statuses:\n%s", table)
	}
	js := d.MustBerth(t, "ps", "--format", "json")
	if !strings.Contains(js, `"Names":"runner"`) {
		t.Errorf("ps --format json: %s", js)
	}
	custom := d.MustBerth(t, "ps", "--format", "table {{.ID}}\t{{.Status}}")
	if !strings.HasPrefix(custom, "CONTAINER ID") {
		t.Errorf("table format: %q", custom)
	}
	if out := d.MustBerth(t, "ps", "-s", "--format", "{{.Size}}"); !strings.Contains(out, "virtual") {
		t.Errorf("ps -s: %q", out)
	}
	// container prune removes the stopped ones only.
	out := d.MustBerth(t, "container", "prune", "-f")
	if !strings.Contains(out, "Total reclaimed space") {
		t.Errorf("prune output: %q", out)
	}
	check([]string{"-a"}, "runner")
}

func TestLogsOptions(t *testing.T) {
	d := daemonWithBusybox(t)
	id := strings.TrimSpace(d.MustBerth(t, "run", "-d", "busybox", "sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; echo oops >&2"))
	d.MustBerth(t, "wait", id)
	r := d.Berth(t, "logs", id)
	if r.Stdout != "line1\nline2\nline3\nline4\nline5\n" || r.Stderr != "oops\n" {
		t.Fatalf("logs: %s", r)
	}
	// The last two log entries are line5 and oops, unless the shim read the
	// stderr pipe before the stdout one's last chunk (as in docker, the two
	// pipes are not ordered with each other).
	if r := d.Berth(t, "logs", "--tail", "2", id); r.Stdout+r.Stderr != "line5\noops\n" && r.Stdout != "line4\nline5\n" {
		t.Fatalf("logs --tail 2: %s", r)
	}
	if out := d.MustBerth(t, "logs", "-t", id); !strings.Contains(out, "Z line1") {
		t.Fatalf("logs -t: %q", out)
	}
	if out := d.MustBerth(t, "logs", "--since", "1h", id); !strings.Contains(out, "line1") {
		t.Fatalf("logs --since 1h: %q", out)
	}
	if out := d.MustBerth(t, "logs", "--until", "2000-01-01T00:00:00Z", id); out != "" {
		t.Fatalf("logs --until 2000: %q", out)
	}
	// -f follows a running container until it exits.
	id = strings.TrimSpace(d.MustBerth(t, "run", "-d", "busybox", "sh", "-c", "echo first; sleep 1; echo second"))
	out := d.MustBerth(t, "logs", "-f", id)
	if out != "first\nsecond\n" {
		t.Fatalf("logs -f: %q", out)
	}
	// Rotation with --log-opt keeps the tail readable.
	id = strings.TrimSpace(d.MustBerth(t, "run", "-d", "--log-opt", "max-size=1k", "--log-opt", "max-file=2", "busybox", "sh", "-c", "i=0; while [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); done"))
	d.MustBerth(t, "wait", id)
	logPath := inspectField(t, d, id, "{{.LogPath}}")
	if _, err := os.Stat(logPath + ".1"); err != nil {
		t.Errorf("no rotated log file: %v", err)
	}
	if _, err := os.Stat(logPath + ".2"); err == nil {
		t.Errorf("max-file=2 kept more than 2 files")
	}
	if out := d.MustBerth(t, "logs", "--tail", "1", id); out != "line-199\n" {
		t.Errorf("tail after rotation: %q", out)
	}
	if r := d.Berth(t, "run", "--rm", "--log-opt", "max-size=lots", "busybox", "true"); r.ExitCode != 125 {
		t.Errorf("bad max-size accepted: %s", r)
	}
}

func TestRuntimeRunc(t *testing.T) {
	if _, err := os.Stat("/usr/sbin/runc"); err != nil {
		t.Skip("runc is not installed (apt-get install runc)")
	}
	d := daemonWithBusybox(t)
	r := d.Berth(t, "run", "--rm", "--runtime", "runc", "busybox", "sh", "-c", "echo via runc; exit 4")
	if r.ExitCode != 4 || r.Stdout != "via runc\n" {
		t.Fatalf("--runtime runc: %s", r)
	}
	r = d.Berth(t, "run", "--rm", "--runtime", "nosuch", "busybox", "true")
	if r.ExitCode != 125 || !strings.Contains(r.Stderr, "unknown or invalid runtime name: nosuch") {
		t.Fatalf("unknown runtime: %s", r)
	}
	info := d.MustBerth(t, "info", "--format", "{{.DefaultRuntime}} {{range $k, $v := .Runtimes}}{{$k}},{{end}}")
	if !strings.HasPrefix(info, "berth ") || !strings.Contains(info, "runc,") {
		t.Errorf("info runtimes: %q", info)
	}
}

// Behaviours checked against docker's where berth once differed.
func TestDockerParityEdges(t *testing.T) {
	d := daemonWithBusybox(t)

	// An unknown network is found missing at start, not at create (a 404
	// from create would send the CLI looking for the image).
	r := d.Berth(t, "run", "--name", "nonet", "--network", "nosuch", "busybox", "true")
	if r.ExitCode != 125 || !strings.Contains(r.Stderr, "network nosuch not found") || strings.Contains(r.Stderr, "Unable to find image") {
		t.Fatalf("run --network nosuch: %s", r)
	}
	// A container whose first start failed is still "created", with the
	// start's error and exit code, as in docker.
	r = d.Berth(t, "run", "--name", "nocmd", "busybox", "no-such-command")
	if r.ExitCode != 127 {
		t.Fatalf("run of a missing command: %s", r)
	}
	if got := inspectField(t, d, "nocmd", "{{.State.Status}} {{.State.ExitCode}}"); got != "created 127" {
		t.Errorf("after a failed first start: %q", got)
	}

	// start -a of an exited container runs it again and streams its output.
	d.MustBerth(t, "run", "--name", "again", "busybox", "echo", "hi")
	r = d.Berth(t, "start", "-a", "again")
	if r.ExitCode != 0 || r.Stdout != "hi\n" {
		t.Fatalf("start -a of an exited container: %s", r)
	}

	// kill of a stopped container: one prefix, docker's wording.
	r = d.Berth(t, "kill", "again")
	if r.ExitCode == 0 || strings.Count(r.Stderr, "cannot kill container") != 1 || !strings.Contains(r.Stderr, "is not running") {
		t.Errorf("kill of a stopped container: %s", r)
	}

	// ps filters on things berth containers do not have match as docker's do.
	ps := func(filter string) string {
		t.Helper()
		return strings.Join(lines(d.MustBerth(t, "ps", "-a", "--format", "{{.Names}}", "--filter", "name=again", "--filter", filter)), ",")
	}
	for filter, want := range map[string]string{
		"network=bridge": "again", "network=host": "",
		"is-task=false": "again", "is-task=true": "",
		"health=none": "again", "health=healthy": "", "health=starting": "",
		"volume=data": "", "publish=80": "", "expose=80": "",
		"isolation=default": "again",
	} {
		if got := ps(filter); got != want {
			t.Errorf("ps --filter %s: %q, want %q", filter, got, want)
		}
	}
	if r := d.Berth(t, "ps", "--filter", "health=bogus"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "Unrecognised filter value for health") {
		t.Errorf("ps --filter health=bogus: %s", r)
	}

	// image prune's label!= keeps the images that carry the label.
	tarPath := testutil.BusyboxTarFile(t, d.Root)
	kept := strings.TrimSpace(d.MustBerth(t, "import", "-c", "LABEL keep=yes", tarPath))
	pruned := strings.TrimSpace(d.MustBerth(t, "import", "-c", "LABEL other=yes", tarPath))
	d.MustBerth(t, "image", "prune", "-f", "--filter", "label!=keep")
	if r := d.Berth(t, "image", "inspect", kept); r.ExitCode != 0 {
		t.Errorf("image prune --filter label!=keep removed the labelled image: %s", r)
	}
	if r := d.Berth(t, "image", "inspect", pruned); r.ExitCode == 0 {
		t.Errorf("image prune --filter label!=keep kept an unlabelled dangling image")
	}

	// Only the default isolation exists on Linux.
	if r := d.Berth(t, "create", "--isolation", "hyperv", "busybox", "true"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "linux only supports 'default'") {
		t.Errorf("create --isolation hyperv: %s", r)
	}
	// Checkpoints are experimental in docker and absent here.
	if r := d.Berth(t, "start", "--checkpoint", "cp1", "again"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "experimental") {
		t.Errorf("start --checkpoint: %s", r)
	}
	// A per-device block IO weight the host cannot apply is dropped with a
	// warning, as docker does, and the container runs.
	if _, err := os.Stat("/sys/fs/cgroup/blkio/blkio.weight_device"); errors.Is(err, os.ErrNotExist) {
		dev := ""
		for _, p := range []string{"/dev/vda", "/dev/sda", "/dev/nvme0n1", "/dev/xvda"} {
			if _, err := os.Stat(p); err == nil {
				dev = p
				break
			}
		}
		if dev != "" {
			r := d.Berth(t, "run", "--rm", "--blkio-weight-device", dev+":300", "busybox", "true")
			if r.ExitCode != 0 || !strings.Contains(r.Stderr, "Weight-device discarded") {
				t.Errorf("run --blkio-weight-device on a host without it: %s", r)
			}
		}
	}
}

// TestVolatileRootfs: --rm containers (and build steps) get a volatile
// overlay, whose unmount does not sync the disk; kept containers do not,
// so that fsync inside them still means something.
func TestVolatileRootfs(t *testing.T) {
	d := daemonWithBusybox(t)
	if drv := strings.TrimSpace(d.MustBerth(t, "info", "--format", "{{.Driver}}")); drv != "overlay2" {
		t.Skip("volatile applies to overlay2")
	}
	rootOpts := "awk '$2 == \"/\" {print $4}' /proc/mounts"
	if out := d.MustBerth(t, "run", "--rm", "busybox", "sh", "-c", rootOpts); !strings.Contains(out, "volatile") {
		t.Errorf("--rm container's root is not volatile: %q", out)
	}
	if out := d.MustDocker(t, "run", "--name", "kept", "busybox", "sh", "-c", rootOpts); strings.Contains(out, "volatile") || !strings.Contains(out, "upperdir=") {
		t.Errorf("kept container's root: %q", out)
	}
	// The kept container starts again (its work directory has no mark).
	if out := d.MustDocker(t, "start", "-a", "kept"); strings.Contains(out, "volatile") || !strings.Contains(out, "upperdir=") {
		t.Errorf("kept container's root on restart: %q", out)
	}
}

// The shim reports a container's exit before the runtime has deleted it;
// starting the container again at once (restart does: stop, then start in
// the same call) must wait for that delete instead of failing on a
// container the runtime still holds. A runtime whose delete is slow makes
// the window wide.
func TestRestartRightAfterExit(t *testing.T) {
	wrapper := filepath.Join(t.TempDir(), "slow-delete-runtime")
	script := "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = delete ] && sleep 0.3 && break; done\nexec " + filepath.Join(binDir, "berth-runtime") + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	d := daemonWithBusybox(t, "--add-runtime", "slowdelete="+wrapper)
	id := strings.TrimSpace(d.MustBerth(t, "run", "-d", "--runtime", "slowdelete", "busybox", "sleep", "1000"))
	for i := 0; i < 3; i++ {
		if r := d.Berth(t, "restart", "-t", "0", id); r.ExitCode != 0 {
			t.Fatalf("restart %d: %s", i, r)
		}
	}
	if st := strings.TrimSpace(d.MustBerth(t, "inspect", "-f", "{{.State.Status}}", id)); st != "running" {
		t.Fatalf("after the restarts: %s", st)
	}
	d.MustBerth(t, "rm", "-f", id)
}
