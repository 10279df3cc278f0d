package integration

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A daemon killed with SIGKILL leaves running containers running; when it
// comes back, ps, logs -f, stop and wait work on them, and exits that
// happened while it was down are recorded with the right code.
func TestLiveRestoreAfterKill9(t *testing.T) {
	d := daemonWithBusybox(t)
	long := strings.TrimSpace(d.MustBerth(t, "run", "-d", "--name", "long", "busybox", "sh", "-c", "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.2; done"))
	short := strings.TrimSpace(d.MustBerth(t, "run", "-d", "--name", "short", "busybox", "sh", "-c", "sleep 2; echo done; exit 5"))
	waiter := strings.TrimSpace(d.MustBerth(t, "run", "-d", "--name", "waiter", "busybox", "sleep", "1000"))
	longPid := inspectField(t, d, long, "{{.State.Pid}}")

	d.Kill9(t)
	if _, err := os.Stat("/proc/" + longPid); err != nil {
		t.Fatalf("container died with the daemon: %v", err)
	}
	// "short" exits while the daemon is down.
	time.Sleep(3 * time.Second)
	d.Start(t)

	if got := inspectField(t, d, short, "{{.State.Status}} {{.State.ExitCode}}"); got != "exited 5" {
		t.Errorf("exit while down: %q", got)
	}
	if logs := d.MustBerth(t, "logs", short); logs != "done\n" {
		t.Errorf("logs of a container that exited while down: %q", logs)
	}
	if got := inspectField(t, d, long, "{{.State.Status}} {{.State.Pid}}"); got != "running "+longPid {
		t.Fatalf("long-running container after restart: %q", got)
	}
	ps := d.MustBerth(t, "ps", "--format", "{{.Names}}")
	if !strings.Contains(ps, "long") || !strings.Contains(ps, "waiter") || strings.Contains(ps, "short") {
		t.Errorf("ps after restart:\n%s", ps)
	}
	// logs -f of a reattached container streams new output.
	cmd := d.Cmd("logs", "-f", "--tail", "0", long)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "tick") {
		t.Errorf("logs -f after restart: %q %v", line, err)
	}
	// wait on a reattached container returns its code once it exits.
	done := make(chan string, 1)
	go func() { done <- strings.TrimSpace(d.MustBerth(t, "wait", waiter)) }()
	d.MustBerth(t, "kill", "-s", "KILL", waiter)
	if code := <-done; code != "137" {
		t.Errorf("wait on a reattached container: %q", code)
	}
	// stop of a reattached container works and ends logs -f.
	d.MustBerth(t, "stop", "-t", "1", long)
	if err := cmd.Wait(); err != nil {
		t.Errorf("logs -f did not end cleanly when the container stopped: %v", err)
	}
	if got := inspectField(t, d, long, "{{.State.Status}}"); got != "exited" {
		t.Errorf("after stop: %s", got)
	}
	if _, err := os.Stat("/proc/" + longPid); err == nil {
		t.Errorf("process %s still alive after stop", longPid)
	}
}

// A shim killed behind the daemon's back does not leave the container
// "running" forever: the daemon notices and records an exit.
func TestShimDeathIsNoticed(t *testing.T) {
	d := daemonWithBusybox(t)
	id := strings.TrimSpace(d.MustBerth(t, "run", "-d", "busybox", "sleep", "1000"))
	shimPid := findShim(t, id)
	if err := killPid(shimPid); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the daemon to notice the shim died", func() bool {
		return inspectField(t, d, id, "{{.State.Status}}") == "exited"
	})
	d.MustBerth(t, "rm", "-f", id)
}

// A daemon that crashes in the middle of a start or a remove leaves a
// shim and a container process that no record says are running. At the
// next start-up the daemon must stop them, or nothing ever would. The two
// crash windows are recreated deterministically by editing the stores of
// a stopped daemon: a record rolled back to "created" (crash before the
// start was recorded), and a record deleted (crash in the middle of rm).
func TestRestartStopsProcessesNoRecordOwns(t *testing.T) {
	d := daemonWithBusybox(t)
	rolledBack := strings.TrimSpace(d.MustBerth(t, "run", "-d", "--name", "rolledback", "busybox", "sleep", "1000"))
	unrecorded := strings.TrimSpace(d.MustBerth(t, "run", "-d", "busybox", "sleep", "1000"))
	pids := map[string]string{}
	for _, id := range []string{rolledBack, unrecorded} {
		pids[id] = inspectField(t, d, id, "{{.State.Pid}}")
	}
	d.Kill9(t)

	record := func(id string) string { return filepath.Join(d.DataRoot, "containers", id, "container.json") }
	var c map[string]any
	b, err := os.ReadFile(record(rolledBack))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	state, ok := c["State"].(map[string]any)
	if !ok {
		t.Fatalf("record has no State: %s", b)
	}
	state["Status"], state["Pid"], state["StartedAt"] = "created", 0, time.Time{}
	if b, err = json.Marshal(c); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(record(rolledBack), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Dir(record(unrecorded))); err != nil {
		t.Fatal(err)
	}

	d.Start(t)
	for id, pid := range pids {
		if _, err := os.Stat("/proc/" + pid); err == nil {
			t.Errorf("process %s of %s survived the restart", pid, id[:12])
		}
		if pid := findShimPid(id); pid != 0 {
			t.Errorf("shim %d of %s survived the restart", pid, id[:12])
		}
		if _, err := os.Stat(filepath.Join(d.ExecRoot, "containers", id)); err == nil {
			t.Errorf("bundle of %s left in the exec-root", id[:12])
		}
	}
	if got := inspectField(t, d, "rolledback", "{{.State.Status}}"); got != "created" {
		t.Errorf("rolled-back container: %s", got)
	}
	if r := d.Berth(t, "inspect", unrecorded); r.ExitCode == 0 {
		t.Errorf("a container without a record came back: %s", r.Stdout)
	}
	// And it starts again normally.
	d.MustBerth(t, "start", "rolledback")
	d.MustBerth(t, "rm", "-f", "rolledback")
}
