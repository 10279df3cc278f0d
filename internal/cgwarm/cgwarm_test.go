package cgwarm

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func needOwnCgroup(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root: writes cgroup.procs")
	}
	root, rel := OwnCgroup()
	path := filepath.Join(root, rel, "cgroup.procs")
	if root == "" || !IsCgroupFile(path) {
		t.Fatalf("OwnCgroup = %q, %q: no cgroup.procs", root, rel)
	}
	if !HasProcess(path) {
		t.Fatalf("%s lists no process, yet this process is in it", path)
	}
	return path
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

// The warming really writes, leaves this process's cgroups as they were,
// and ends at its deadline.
func TestWarmerWritesAndChangesNothing(t *testing.T) {
	needOwnCgroup(t)
	before, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	w := New(nil)
	w.Keep(30 * time.Millisecond)
	waitFor(t, "two writes", func() bool { return w.writes.Load() >= 2 })
	waitFor(t, "the deadline to end the warming", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return !w.running
	})
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
	w.Stop() // idempotent
	waitFor(t, "Stop to end the warming", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return !w.running
	})
}

// The stop condition ends the warming long before its deadline.
func TestWarmerStopWhen(t *testing.T) {
	needOwnCgroup(t)
	calls := 0
	w := New(func() bool { calls++; return calls == 3 })
	w.Keep(time.Hour)
	waitFor(t, "the stop condition to end the warming", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return !w.running
	})
	if got := w.writes.Load(); got != 3 {
		t.Errorf("%d writes, want 3 (one per check until the condition held)", got)
	}
}

// A nil Warmer (a service built without one) does nothing.
func TestNilWarmer(t *testing.T) {
	var w *Warmer
	w.Keep(time.Second)
	w.Stop()
}
