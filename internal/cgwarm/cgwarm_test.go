package cgwarm

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// needOwnCgroup skips unless this process can do what a Warmer does:
// write itself into its own cgroup.procs (root, a writable cgroupfs, a
// cgroup that may hold processes).
func needOwnCgroup(t *testing.T) (root, rel string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root: writes cgroup.procs")
	}
	root, rel = OwnCgroup()
	path := filepath.Join(root, rel, "cgroup.procs")
	if root == "" || !IsCgroupFile(path) {
		t.Skipf("OwnCgroup = %q, %q: no cgroup.procs of our own", root, rel)
	}
	if !HasProcess(path) {
		t.Fatalf("%s lists no process, yet this process is in it", path)
	}
	f, err := openProcs(path)
	if err == nil {
		_, err = f.WriteAt([]byte("0"), 0)
		f.Close()
	}
	if err != nil {
		t.Skipf("cannot write %s: %v", path, err)
	}
	return root, rel
}

// waitFor polls cond for up to a generous bound; the warming runs on its
// own goroutine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 2000; i++ {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func (w *Warmer) isRunning() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.running
}

// The warming really writes, leaves this process's cgroups as they were,
// and Stop ends it.
func TestWarmerWritesAndChangesNothing(t *testing.T) {
	needOwnCgroup(t)
	before, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	w := New(nil)
	w.Keep(time.Hour)
	waitFor(t, "two writes", func() bool { return w.writes.Load() >= 2 })
	w.Stop()
	w.Stop() // idempotent
	waitFor(t, "Stop to end the warming", func() bool { return !w.isRunning() })
	n := w.writes.Load()
	time.Sleep(5 * Interval)
	if w.writes.Load() != n {
		t.Fatalf("writes went on after the warming ended")
	}
	after, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Fatalf("cgroups changed:\n%s\nbecame\n%s", before, after)
	}
	// Keep after the end starts it again.
	w.Keep(time.Hour)
	waitFor(t, "a write after restarting", func() bool { return w.writes.Load() > n })
	w.Stop()
	waitFor(t, "Stop to end the warming", func() bool { return !w.isRunning() })
}

// The warming ends by itself at its deadline.
func TestWarmerDeadline(t *testing.T) {
	needOwnCgroup(t)
	w := New(nil)
	w.Keep(30 * time.Millisecond)
	waitFor(t, "the deadline to end the warming", func() bool { return !w.isRunning() })
}

// The stop condition ends the warming long before its deadline.
func TestWarmerStopWhen(t *testing.T) {
	needOwnCgroup(t)
	calls := 0
	w := New(func() bool { calls++; return calls == 3 })
	w.Keep(time.Hour)
	waitFor(t, "the stop condition to end the warming", func() bool { return !w.isRunning() })
	if got := w.writes.Load(); got != 3 {
		t.Errorf("%d writes, want 3 (one per check until the condition held)", got)
	}
}

// A process moved to another cgroup while the warming runs stays there:
// the warming follows it instead of writing it back.
func TestWarmerFollowsAMove(t *testing.T) {
	root, rel := needOwnCgroup(t)
	own := filepath.Join(root, rel)
	child := filepath.Join(own, fmt.Sprintf("berth-cgwarm-unit-%d", os.Getpid()))
	if err := os.Mkdir(child, 0o755); err != nil {
		t.Skipf("cannot make a child cgroup: %v", err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	w := New(nil)
	t.Cleanup(func() {
		w.Stop()
		for w.isRunning() {
			time.Sleep(Interval)
		}
		if err := os.WriteFile(filepath.Join(own, "cgroup.procs"), pid, 0); err != nil {
			t.Errorf("move back to %s: %v", own, err)
		}
		if err := os.Remove(child); err != nil {
			t.Errorf("remove %s: %v", child, err)
		}
	})
	w.Keep(time.Hour)
	waitFor(t, "a first write", func() bool { return w.writes.Load() >= 1 })
	if err := os.WriteFile(filepath.Join(child, "cgroup.procs"), pid, 0); err != nil {
		t.Skipf("cannot move into %s: %v", child, err)
	}
	n := w.writes.Load()
	waitFor(t, "writes after the move", func() bool { return w.writes.Load() >= n+3 })
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimPrefix(child, root); !strings.Contains(string(b), ":"+want+"\n") {
		t.Fatalf("the warming moved the process out of %s:\n%s", child, b)
	}
}

// Paths outside the cgroup namespace's root ("/../x") name no cgroup the
// process can find; cleaning them would name a different one.
func TestOwnCgroupRejectsDotDot(t *testing.T) {
	if root, rel := ownCgroupFrom([]byte("0::/../../system.slice\n")); root != "" {
		t.Errorf("ownCgroupFrom(/../..) = %q, %q, want none", root, rel)
	}
}

// Only a file on a cgroup filesystem is written to.
func TestOpenProcsRefusesOtherFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cgroup.procs")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if f, err := openProcs(path); err == nil {
		f.Close()
		t.Fatalf("openProcs(%s) accepted a file that is not a cgroup's", path)
	}
}

// A nil Warmer (a service built without one) does nothing.
func TestNilWarmer(t *testing.T) {
	var w *Warmer
	w.Keep(time.Second)
	w.Stop()
}
