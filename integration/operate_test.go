package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/testutil"
)

func TestRestartPolicies(t *testing.T) {
	d := daemonWithBusybox(t)
	// on-failure:2 — two restarts, then the exit stays.
	d.MustBerth(t, "run", "-d", "--name", "onfail", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 3")
	eventually(t, "on-failure:2 gives up after 2 restarts", func() bool {
		return inspectField(t, d, "onfail", "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}") == "2 exited 3"
	})
	// on-failure does not restart a success.
	d.MustBerth(t, "run", "-d", "--name", "onfail0", "--restart", "on-failure", "busybox", "true")
	d.MustBerth(t, "wait", "onfail0")
	// always — restarted after each exit, whatever the code.
	d.MustBerth(t, "run", "-d", "--name", "always", "--restart", "always", "busybox", "true")
	eventually(t, "always restarts", func() bool {
		n, _ := strconv.Atoi(inspectField(t, d, "always", "{{.RestartCount}}"))
		return n >= 2
	})
	// A user stop is final.
	d.MustBerth(t, "stop", "always")
	st := inspectField(t, d, "always", "{{.State.Status}}")
	n1 := inspectField(t, d, "always", "{{.RestartCount}}")
	if st != "exited" {
		t.Fatalf("always after stop: %s", st)
	}
	// unless-stopped, long-running: stays up; kill by the user is final too.
	d.MustBerth(t, "run", "-d", "--name", "unless", "--restart", "unless-stopped", "busybox", "sleep", "1000")
	d.MustBerth(t, "kill", "unless")
	d.MustBerth(t, "wait", "unless")
	if got := inspectField(t, d, "onfail0", "{{.RestartCount}} {{.State.Status}}"); got != "0 exited" {
		t.Fatalf("on-failure after exit 0: %s", got)
	}
	if got := inspectField(t, d, "always", "{{.RestartCount}} {{.State.Status}}"); got != n1+" exited" {
		t.Fatalf("always restarted after a user stop: %s (was %s)", got, n1)
	}
	if got := inspectField(t, d, "unless", "{{.RestartCount}} {{.State.Status}}"); got != "0 exited" {
		t.Fatalf("unless-stopped restarted after a user kill: %s", got)
	}
	// The policy is in inspect, and docker's CLI sees it the same.
	if got := inspectField(t, d, "onfail", "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"); got != "on-failure:2" {
		t.Fatalf("policy in inspect: %s", got)
	}
	// Invalid policies: docker's errors, nothing created.
	for _, tc := range []struct{ policy, want string }{
		{"sometimes", "invalid restart policy"},
		{"always:3", "maximum retry count can only be used with 'on-failure'"},
		{"on-failure:-1", "maximum retry count cannot be negative"},
	} {
		r := d.Berth(t, "run", "-d", "--name", "bad", "--restart", tc.policy, "busybox", "true")
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("--restart %s: want %q: %s", tc.policy, tc.want, r)
		}
	}
	if r := d.Berth(t, "run", "--rm", "--restart", "always", "busybox", "true"); r.ExitCode == 0 {
		t.Errorf("--rm with --restart accepted: %s", r)
	}
	if r := d.Berth(t, "inspect", "bad"); r.ExitCode == 0 {
		t.Fatalf("a refused run left a container: %s", r)
	}
}

// TestRestartAtDaemonStart: after a host reboot (the daemon down, every
// container process and shim gone), `always` and `unless-stopped`
// containers come back; a stopped `unless-stopped` one and a `no` one do
// not.
func TestRestartAtDaemonStart(t *testing.T) {
	d := daemonWithBusybox(t)
	d.MustBerth(t, "run", "-d", "--name", "always", "--restart", "always", "busybox", "sleep", "1000")
	d.MustBerth(t, "run", "-d", "--name", "unless", "--restart", "unless-stopped", "busybox", "sleep", "1000")
	d.MustBerth(t, "run", "-d", "--name", "unless-stopped", "--restart", "unless-stopped", "busybox", "sleep", "1000")
	d.MustBerth(t, "run", "-d", "--name", "plain", "busybox", "sleep", "1000")
	d.MustBerth(t, "run", "-d", "--name", "always-stopped", "--restart", "always", "busybox", "sleep", "1000")
	d.MustBerth(t, "stop", "-t", "0", "unless-stopped", "always-stopped")
	ids := map[string]string{}
	for _, n := range []string{"always", "unless", "plain"} {
		ids[n] = inspectField(t, d, n, "{{.ID}}")
	}
	d.Stop(t)
	// The reboot: shims and containers die.
	for _, id := range ids {
		if pid := findShimPid(id); pid > 0 {
			_ = killPid(pid)
		}
	}
	for _, n := range []string{"always", "unless", "plain"} {
		eventually(t, "container of "+n+" gone", func() bool { return findShimPid(ids[n]) == 0 })
	}
	killCgroupProcs(d.CgroupParent)
	d.Start(t)
	for _, n := range []string{"always", "unless", "always-stopped"} {
		eventually(t, n+" running again", func() bool {
			return inspectField(t, d, n, "{{.State.Status}}") == "running"
		})
	}
	for _, n := range []string{"plain", "unless-stopped"} {
		if st := inspectField(t, d, n, "{{.State.Status}}"); st != "exited" {
			t.Fatalf("%s after the reboot: %s", n, st)
		}
	}
	if r := d.MustBerth(t, "exec", "always", "echo", "up"); r != "up\n" {
		t.Fatalf("exec in the restarted container: %q", r)
	}
}

// killCgroupProcs kills every process left in the containers' cgroups.
func killCgroupProcs(parent string) {
	for _, ctrl := range []string{"pids", "memory", "unified", ""} {
		dir := filepath.Join("/sys/fs/cgroup", ctrl, parent)
		_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err != nil || fi.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					_ = killPid(pid)
				}
			}
			return nil
		})
	}
}

func TestPauseTopStatsUpdate(t *testing.T) {
	d := daemonWithBusybox(t)
	d.MustBerth(t, "run", "-d", "--name", "pp", "-m", "64m", "busybox", "sleep", "1000")
	cliFlavours(t, d, func(t *testing.T, cli string, run func(args ...string) testutil.Result, _ func(args ...string) *exec.Cmd) {
		// top: ps's columns, the container's processes only.
		r := run("top", "pp")
		if r.ExitCode != 0 || !strings.HasPrefix(r.Stdout, "UID") || !strings.Contains(r.Stdout, "sleep 1000") || strings.Count(r.Stdout, "\n") != 2 {
			t.Fatalf("top: %s", r)
		}
		r = run("top", "pp", "-o", "pid,comm")
		if r.ExitCode != 0 || !strings.Contains(r.Stdout, "PID") || !strings.Contains(r.Stdout, "sleep") {
			t.Fatalf("top with ps options: %s", r)
		}
		// pause/unpause: the freezer; ps shows it; exec refused.
		if r := run("pause", "pp"); r.ExitCode != 0 || r.Stdout != "pp\n" {
			t.Fatalf("pause: %s", r)
		}
		if st := inspectField(t, d, "pp", "{{.State.Status}} {{.State.Paused}}"); st != "paused true" {
			t.Fatalf("after pause: %s", st)
		}
		if r := run("ps", "--format", "{{.Status}}", "-f", "name=pp"); !strings.Contains(r.Stdout, "(Paused)") {
			t.Fatalf("ps of a paused container: %s", r)
		}
		if r := run("pause", "pp"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "already paused") {
			t.Fatalf("pause twice: %s", r)
		}
		if r := run("unpause", "pp"); r.ExitCode != 0 || r.Stdout != "pp\n" {
			t.Fatalf("unpause: %s", r)
		}
		if r := run("unpause", "pp"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "is not paused") {
			t.Fatalf("unpause twice: %s", r)
		}
		// stats --no-stream: the memory limit and one pid, from the cgroup.
		r = run("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}} {{.PIDs}} {{.CPUPerc}}", "pp")
		if r.ExitCode != 0 || !strings.HasPrefix(r.Stdout, "pp ") || !strings.Contains(r.Stdout, "/ 64MiB 1 ") || !strings.HasSuffix(r.Stdout, "%\n") {
			t.Fatalf("stats --no-stream: %s", r)
		}
		r = run("stats", "--no-stream")
		if r.ExitCode != 0 || !strings.HasPrefix(r.Stdout, "CONTAINER ID   NAME") || !strings.Contains(r.Stdout, " pp ") {
			t.Fatalf("stats table: %s", r)
		}
		// update: memory and pids on the running container, and the policy.
		if r := run("update", "-m", "96m", "--memory-swap", "192m", "--pids-limit", "50", "--restart", "on-failure:4", "pp"); r.ExitCode != 0 || r.Stdout != "pp\n" {
			t.Fatalf("update: %s", r)
		}
		if got := inspectField(t, d, "pp", "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"); got != "100663296 50 on-failure:4" {
			t.Fatalf("inspect after update: %s", got)
		}
		r = run("stats", "--no-stream", "--format", "{{.MemUsage}}", "pp")
		if !strings.Contains(r.Stdout, "/ 96MiB") {
			t.Fatalf("stats after update: %s", r)
		}
		// Restore for the other CLI flavour.
		d.MustBerth(t, "update", "-m", "64m", "--memory-swap", "128m", "pp")
		// Bad input: clear errors, nothing changed.
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"update", "-m", "1m", "pp"}, "Minimum memory limit allowed is 6MB"},
			{[]string{"update", "--restart", "sometimes", "pp"}, "invalid restart policy"},
			{[]string{"update", "pp"}, "you must provide one or more flags"},
			{[]string{"pause", "nosuch"}, "No such container: nosuch"},
			{[]string{"top", "nosuch"}, "No such container: nosuch"},
		} {
			r := run(tc.args...)
			if r.ExitCode == 0 || !strings.Contains(r.Stderr, tc.want) {
				t.Errorf("%v: want %q: %s", tc.args, tc.want, r)
			}
		}
		if got := inspectField(t, d, "pp", "{{.HostConfig.Memory}}"); got != "67108864" {
			t.Fatalf("memory after refused updates: %s", got)
		}
	})
	// Below current usage: the kernel cannot reclaim, the update fails and
	// the limit stays.
	// In /dev/shm (tmpfs, charged to the container): the seccomp filter
	// denies mount even to a privileged exec, as docker's.
	d.MustBerth(t, "exec", "-d", "pp", "sh", "-c", "dd if=/dev/zero of=/dev/shm/f bs=1M count=40 && sleep 1000")
	eventually(t, "40 MiB in use", func() bool { return memUsage(d) > 40<<20 })
	if r := d.Berth(t, "update", "-m", "8m", "--memory-swap", "16m", "pp"); r.ExitCode == 0 {
		t.Logf("update below usage accepted (the kernel swapped): %s", r)
	} else if !strings.Contains(r.Stderr, "Cannot update container") {
		t.Fatalf("update below usage: %s", r)
	} else if got := inspectField(t, d, "pp", "{{.HostConfig.Memory}}"); got != "67108864" {
		t.Fatalf("memory after a refused update: %s", got)
	}
	// A stopped container: top and pause refused.
	d.MustBerth(t, "create", "--name", "stopped", "busybox", "true")
	for _, args := range [][]string{{"top", "stopped"}, {"pause", "stopped"}, {"unpause", "stopped"}} {
		if r := d.Berth(t, args...); r.ExitCode == 0 {
			t.Errorf("%v on a stopped container: %s", args, r)
		}
	}
}

// memUsage reads the container's memory usage from the API.
func memUsage(d *testutil.Daemon) uint64 {
	resp, err := d.HTTPClient().Get("http://berth/containers/pp/stats?stream=false&one-shot=true")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var s struct {
		MemoryStats struct {
			Usage uint64 `json:"usage"`
		} `json:"memory_stats"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&s)
	return s.MemoryStats.Usage
}

func TestEvents(t *testing.T) {
	d := daemonWithBusybox(t)
	start := time.Now()
	id := strings.TrimSpace(d.MustBerth(t, "run", "-d", "--name", "ev", "--label", "team=a", "busybox", "sh", "-c", "exit 4"))
	d.MustBerth(t, "wait", "ev")
	d.MustBerth(t, "rename", "ev", "ev2")
	d.MustBerth(t, "rm", "ev2")
	d.MustBerth(t, "tag", "busybox", "other:1")
	d.MustBerth(t, "rmi", "other:1")
	until := strconv.FormatInt(time.Now().Add(time.Second).Unix(), 10)
	since := strconv.FormatInt(start.Add(-time.Second).Unix(), 10)
	cliFlavours(t, d, func(t *testing.T, cli string, run func(args ...string) testutil.Result, _ func(args ...string) *exec.Cmd) {
		r := run("events", "--since", since, "--until", until, "--filter", "container="+id, "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}")
		want := "container create ev\ncontainer start ev\ncontainer die ev\ncontainer rename ev2\ncontainer destroy ev2\n"
		if r.ExitCode != 0 || r.Stdout != want {
			t.Fatalf("container events: %s\nwant:\n%s", r, want)
		}
		r = run("events", "--since", since, "--until", until, "--filter", "event=die", "--format", "{{.Actor.Attributes.exitCode}} {{.Actor.Attributes.team}} {{.Actor.Attributes.image}}")
		if r.ExitCode != 0 || r.Stdout != "4 a busybox\n" {
			t.Fatalf("die event: %s", r)
		}
		r = run("events", "--since", since, "--until", until, "--filter", "type=image", "--format", "{{.Action}} {{.Actor.Attributes.name}}")
		if r.ExitCode != 0 || r.Stdout != "import busybox:latest\ntag other:1\nuntag other:1\n" {
			t.Fatalf("image events: %s", r)
		}
		r = run("events", "--since", since, "--until", until, "--filter", "label=team=b")
		if r.ExitCode != 0 || r.Stdout != "" {
			t.Fatalf("label filter: %s", r)
		}
		// The default format: time, type, action, ID, attributes.
		r = run("events", "--since", since, "--until", until, "--filter", "event=create")
		if r.ExitCode != 0 || !strings.Contains(r.Stdout, " container create "+id+" (image=busybox, name=ev, team=a)\n") {
			t.Fatalf("default format: %s", r)
		}
		// Bad input.
		if r := run("events", "--filter", "bogus=1", "--until", until); r.ExitCode == 0 || !strings.Contains(r.Stderr, "invalid filter 'bogus'") {
			t.Fatalf("bad filter: %s", r)
		}
	})
	// Past events survive a daemon restart (the on-disk log).
	d.Stop(t)
	d.Start(t)
	r := d.Berth(t, "events", "--since", since, "--until", until, "--filter", "event=destroy", "--format", "{{.Actor.ID}}")
	if r.ExitCode != 0 || r.Stdout != id+"\n" {
		t.Fatalf("events after a daemon restart: %s", r)
	}
	// Live: a stream sees a new event as it happens.
	cmd := d.Cmd("events", "--filter", "event=start", "--format", "{{.Actor.Attributes.name}}")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	buf := make([]byte, 64)
	got := make(chan string, 1)
	go func() {
		var s string
		for !strings.Contains(s, "\n") {
			n, err := out.Read(buf)
			s += string(buf[:n])
			if err != nil {
				break
			}
		}
		got <- s
	}()
	// The subscription may not be registered yet: start until one is seen.
	for i := 0; ; i++ {
		d.MustBerth(t, "run", "--rm", "--name", "live"+strconv.Itoa(i), "busybox", "true")
		select {
		case s := <-got:
			if !strings.HasPrefix(s, "live") {
				t.Fatalf("live event: %q", s)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func TestHealthcheck(t *testing.T) {
	d := daemonWithBusybox(t)
	since := strconv.FormatInt(time.Now().Add(-time.Second).Unix(), 10)
	d.MustBerth(t, "run", "-d", "--name", "hc", "--health-cmd", "cat /tmp/ok", "--health-interval", "100ms", "--health-retries", "2", "busybox", "sleep", "1000")
	eventually(t, "unhealthy after 2 failures", func() bool {
		return inspectField(t, d, "hc", "{{.State.Health.Status}}") == "unhealthy"
	})
	if st := d.MustBerth(t, "ps", "--format", "{{.Status}}", "-f", "name=hc"); !strings.HasSuffix(st, "(unhealthy)\n") {
		t.Fatalf("ps of an unhealthy container: %q", st)
	}
	d.MustBerth(t, "exec", "hc", "sh", "-c", "echo fine > /tmp/ok")
	eventually(t, "healthy once the check passes", func() bool {
		return inspectField(t, d, "hc", "{{.State.Health.Status}} {{.State.Health.FailingStreak}}") == "healthy 0"
	})
	// ps filters by health: a container without a check is "none".
	d.MustBerth(t, "run", "-d", "--name", "nohc", "busybox", "sleep", "1000")
	for filter, want := range map[string]string{"health=healthy": "hc", "health=unhealthy": "", "health=none": "nohc"} {
		if got := strings.TrimSpace(d.MustBerth(t, "ps", "--format", "{{.Names}}", "--filter", filter)); got != want {
			t.Errorf("ps --filter %s: %q, want %q", filter, got, want)
		}
	}
	d.MustBerth(t, "rm", "-f", "nohc")
	logs := inspectField(t, d, "hc", "{{range .State.Health.Log}}{{.ExitCode}}:{{.Output}}|{{end}}")
	if !strings.HasSuffix(logs, "0:fine\n|") || strings.Count(logs, "|") > 5 {
		t.Fatalf("health log: %q", logs)
	}
	until := strconv.FormatInt(time.Now().Add(time.Second).Unix(), 10)
	r := d.MustBerth(t, "events", "--since", since, "--until", until, "--filter", "event=health_status", "--format", "{{.Action}}")
	if r != "health_status: unhealthy\nhealth_status: healthy\n" {
		t.Fatalf("health events: %q", r)
	}
	// A check that hangs is killed at its timeout.
	d.MustBerth(t, "run", "-d", "--name", "hang", "--health-cmd", "sleep 4321", "--health-timeout", "200ms", "--health-interval", "100ms", "--health-retries", "1", "busybox", "sleep", "1000")
	eventually(t, "hung check times out", func() bool {
		return inspectField(t, d, "hang", "{{.State.Health.Status}}") == "unhealthy"
	})
	if out := inspectField(t, d, "hang", "{{(index .State.Health.Log 0).Output}} {{(index .State.Health.Log 0).ExitCode}}"); out != "Health check exceeded timeout (200ms) -1" {
		t.Fatalf("timed-out check: %q", out)
	}
	eventually(t, "no hung check left running", func() bool { return len(hostPids("sleep\x004321")) == 0 })
	// --no-healthcheck, and the image's HEALTHCHECK through --change.
	d.MustBerth(t, "run", "-d", "--name", "none", "--no-healthcheck", "busybox", "sleep", "1000")
	if h := inspectField(t, d, "none", "{{.State.Health}}"); h != "<nil>" {
		t.Fatalf("--no-healthcheck: %s", h)
	}
	tar := testutil.BusyboxTarFile(t, d.Root)
	d.MustBerth(t, "import", "--change", `HEALTHCHECK --interval=100ms CMD true`, tar, "withhc:1")
	d.MustBerth(t, "run", "-d", "--name", "img", "withhc:1", "sleep", "1000")
	eventually(t, "image health check", func() bool {
		return inspectField(t, d, "img", "{{.State.Health.Status}}") == "healthy"
	})
	// Bad input.
	if r := d.Berth(t, "run", "-d", "--health-cmd", "true", "--health-retries", "-1", "busybox", "true"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "cannot be negative") {
		t.Fatalf("negative retries: %s", r)
	}
	// Stopped: not healthy any more.
	d.MustBerth(t, "kill", "hc")
	d.MustBerth(t, "wait", "hc")
	if st := inspectField(t, d, "hc", "{{.State.Health.Status}}"); st != "unhealthy" {
		t.Fatalf("health of a stopped container: %s", st)
	}
}

func TestOOMKilled(t *testing.T) {
	d := daemonWithBusybox(t)
	since := strconv.FormatInt(time.Now().Add(-time.Second).Unix(), 10)
	r := d.Berth(t, "run", "--name", "oom", "-m", "8m", "--memory-swap", "8m", "busybox", "sh", "-c", `x=$(head -c 64000000 /dev/zero | tr "\0" a); echo survived`)
	if r.ExitCode != 137 || strings.Contains(r.Stdout, "survived") {
		t.Fatalf("run over its memory limit: %s", r)
	}
	if got := inspectField(t, d, "oom", "{{.State.OOMKilled}} {{.State.ExitCode}}"); got != "true 137" {
		t.Fatalf("inspect after OOM: %s", got)
	}
	until := strconv.FormatInt(time.Now().Add(time.Second).Unix(), 10)
	if ev := d.MustBerth(t, "events", "--since", since, "--until", until, "--filter", "container=oom", "--filter", "event=oom", "--filter", "event=die", "--format", "{{.Action}} {{.Actor.Attributes.exitCode}}"); ev != "oom <no value>\ndie 137\n" {
		t.Fatalf("oom events: %q", ev)
	}
}

func TestPortAndUlimit(t *testing.T) {
	d := daemonWithBusybox(t)
	d.MustBerth(t, "run", "-d", "--name", "pu", "--ulimit", "nofile=1024:2048", "busybox", "sleep", "1000")
	if out := d.MustBerth(t, "exec", "pu", "sh", "-c", "ulimit -n; ulimit -Hn"); out != "1024\n2048\n" {
		t.Fatalf("--ulimit in an exec: %q", out)
	}
	// No published ports yet (berth has no networks): nothing to list.
	if r := d.Berth(t, "port", "pu"); r.ExitCode != 0 || r.Stdout != "" {
		t.Fatalf("port: %s", r)
	}
	if r := d.Berth(t, "port", "pu", "80"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "No public port '80/tcp' published for pu") {
		t.Fatalf("port 80: %s", r)
	}
}
