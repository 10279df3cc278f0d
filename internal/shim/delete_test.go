package shim_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// recordingRuntime wraps runc in a script that appends each command it is
// given to a file, so that a test can tell which ones the shim ran.
func recordingRuntime(t *testing.T, runc string) (path, record string) {
	t.Helper()
	dir := t.TempDir()
	record = filepath.Join(dir, "commands")
	path = filepath.Join(dir, "recording-runtime")
	script := "#!/bin/sh\necho \"$*\" >> " + record + "\nexec " + runc + " \"$@\"\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, record
}

// cgroupPaths reads the container's cgroup directories from the runtime's
// state.json (runc and berth-runtime share libcontainer's layout).
func cgroupPaths(t *testing.T, stateDir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stateDir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		CgroupPaths map[string]string `json:"cgroup_paths"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, p := range st.CgroupPaths {
		paths = append(paths, p)
	}
	if len(paths) == 0 {
		t.Fatal("state.json names no cgroups")
	}
	return paths
}

// With RuntimeState, the shim deletes an exited container itself: its
// cgroups (and a sub-cgroup the container made) and its runtime state are
// gone, and the runtime was never asked to delete it.
func TestDirectDelete(t *testing.T) {
	runc := requireRuntime(t)
	rt, record := recordingRuntime(t, runc)
	c := newContainer(t, spec{args: []string{"sh", "-c", "exit 3"}, noLog: true})
	c.cfg.Runtime = rt
	stateDir := filepath.Join(c.runRoot, c.cfg.ID)
	c.cfg.RuntimeState = stateDir
	ctx := testCtx(t)
	client, _ := c.spawn(ctx)
	paths := cgroupPaths(t, stateDir)
	// A sub-cgroup, as a container with cgroup rights may make: it must
	// go first, or its parent cannot be removed.
	sub := filepath.Join(paths[0], "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(sub) })
	if err := client.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if st, err := waitExit(ctx, c.cfg, client); err != nil || st.Code != 3 {
		t.Fatalf("Wait = %+v, %v; want exit 3", st, err)
	}
	// The shim exits once the container is deleted.
	waitShimsGone(c.cfg.Bundle)
	for _, p := range append(paths, sub) {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("cgroup %s left behind: %v", p, err)
		}
	}
	if _, err := os.Stat(stateDir); !os.IsNotExist(err) {
		t.Errorf("runtime state %s left behind: %v", stateDir, err)
	}
	b, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "delete") {
		t.Errorf("the runtime was asked to delete the container:\n%s", b)
	}
	if !strings.Contains(string(b), "create") {
		t.Errorf("the runtime's commands were not recorded:\n%s", b)
	}
}

// A state directory the shim cannot read is left to the runtime's delete,
// which then cleans up as before.
func TestDirectDeleteFallsBackToRuntime(t *testing.T) {
	runc := requireRuntime(t)
	rt, record := recordingRuntime(t, runc)
	c := newContainer(t, spec{args: []string{"true"}, noLog: true})
	c.cfg.Runtime = rt
	// Not where runc keeps this container: the shim finds no state.json.
	c.cfg.RuntimeState = filepath.Join(t.TempDir(), c.cfg.ID)
	ctx := testCtx(t)
	client, _ := c.spawn(ctx)
	stateDir := filepath.Join(c.runRoot, c.cfg.ID)
	paths := cgroupPaths(t, stateDir)
	if err := client.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if st, err := waitExit(ctx, c.cfg, client); err != nil || st.Code != 0 {
		t.Fatalf("Wait = %+v, %v", st, err)
	}
	waitShimsGone(c.cfg.Bundle)
	b, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "delete --force "+c.cfg.ID) {
		t.Errorf("the runtime's delete did not run:\n%s", b)
	}
	if c.runtimeState() != "" {
		t.Errorf("the container is still known to the runtime")
	}
	for _, p := range paths {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("cgroup %s left behind: %v", p, err)
		}
	}
}

// With RuntimeState (berth's runtime, the container's own pid namespace)
// a kill of the init goes straight through its pidfd; --all, and other
// runtimes, still go through the runtime's kill.
func TestDirectSignal(t *testing.T) {
	runc := requireRuntime(t)
	for _, direct := range []bool{true, false} {
		t.Run(map[bool]string{true: "direct", false: "runtime"}[direct], func(t *testing.T) {
			rt, record := recordingRuntime(t, runc)
			c := newContainer(t, spec{args: []string{"sh", "-c", "trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done"}})
			c.cfg.Runtime = rt
			if direct {
				c.cfg.RuntimeState = filepath.Join(c.runRoot, c.cfg.ID)
			}
			ctx := testCtx(t)
			client, _ := c.spawn(ctx)
			s := startAttached(ctx, t, client)
			s.waitFor(t, "ready")
			if err := client.Kill(ctx, syscall.SIGTERM, false); err != nil {
				t.Fatalf("Kill: %v", err)
			}
			st, err := waitExit(ctx, c.cfg, client)
			if err != nil || st.Code != 7 {
				t.Fatalf("Wait = %+v, %v; want exit 7 from the TERM trap", st, err)
			}
			if err := client.Kill(ctx, syscall.SIGTERM, false); err == nil {
				t.Errorf("Kill after the exit succeeded")
			}
			waitShimsGone(c.cfg.Bundle)
			b, err := os.ReadFile(record)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(string(b), " kill "); got == direct {
				t.Errorf("runtime kill ran = %v with direct = %v:\n%s", got, direct, b)
			}
		})
	}
}

// Start answers once the init has exec'd the user's process, not merely
// once it was told to: `docker top` right after `docker run -d` shows the
// command, never the runtime's init.
func TestStartReturnsAfterExec(t *testing.T) {
	requireRuntime(t)
	for i := 0; i < 10; i++ {
		c := newContainer(t, spec{args: []string{"sleep", "1000"}, noLog: true})
		ctx := testCtx(t)
		client, pid := c.spawn(ctx)
		if err := client.Start(ctx); err != nil {
			t.Fatalf("Start: %v", err)
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(b)); got != "sleep" {
			t.Errorf("start %d: the init is still %q after Start returned", i, got)
		}
		if err := client.Kill(ctx, syscall.SIGKILL, true); err != nil {
			t.Fatal(err)
		}
		if _, err := waitExit(ctx, c.cfg, client); err != nil {
			t.Fatal(err)
		}
	}
}
