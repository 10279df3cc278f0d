package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/cgwarm"
	"github.com/berth-engine/berth/internal/testutil"
)

// A create request makes the daemon keep the cgroup migration lock warm
// (package cgwarm): it writes "0" into its own cgroup.procs every 2 ms for
// a tenth of a second. cgroupfs sends no inotify events, so the writes
// are counted in /proc/<pid>/io (syscw): a create without the warming
// makes about 14, with it 60–90. The daemon is first moved into a cgroup the test makes:
// the warming must write into the cgroup the daemon is in now, not the one
// it started in, which would move it back.
func TestCreateWarmsCgroupLock(t *testing.T) {
	d := testutil.StartDaemon(t, binDir)
	d.ImportBusybox(t, "busybox:latest")

	root, rel := cgwarm.OwnCgroup()
	if root == "" {
		t.Skip("no cgroup.procs of our own found")
	}
	own := filepath.Join(root, rel)
	mine := filepath.Join(own, fmt.Sprintf("berth-cgwarm-test-%d", os.Getpid()))
	if err := os.Mkdir(mine, 0o755); err != nil {
		t.Skipf("cannot make a cgroup for the daemon: %v", err)
	}
	moveDaemon := func(dir string) error {
		return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(d.Pid())), 0)
	}
	t.Cleanup(func() {
		// Back where it was, so the daemon's own cleanup finds it there and
		// the cgroup can go.
		if d.Running() {
			if err := moveDaemon(own); err != nil {
				t.Errorf("move the daemon back to %s: %v", own, err)
			}
		}
		if err := os.Remove(mine); err != nil {
			t.Errorf("remove test cgroup: %v", err)
		}
	})
	if err := moveDaemon(mine); err != nil {
		t.Skipf("cannot move the daemon into %s: %v", mine, err)
	}
	inMine := func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", d.Pid()))
		return err == nil && strings.Contains(string(b), ":"+strings.TrimPrefix(mine, root)+"\n")
	}
	if !inMine() {
		t.Fatalf("the daemon is not in %s after the move", mine)
	}

	before := syscw(t, d.Pid())
	d.MustBerth(t, "create", "--network", "none", "busybox", "true")
	// Wait for the writes to stop (the warming lasts 100 ms).
	after := syscw(t, d.Pid())
	for i := 0; i < 100; i++ {
		time.Sleep(100 * time.Millisecond)
		n := syscw(t, d.Pid())
		if n == after && n-before > 0 {
			break
		}
		after = n
	}
	t.Logf("%d write calls by the daemon for a create", after-before)
	if got := after - before; got < 22 {
		t.Errorf("%d write calls by the daemon for a create: the warming's writes are missing", got)
	}
	if !inMine() {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", d.Pid()))
		t.Errorf("the warming moved the daemon out of the cgroup it was in:\n%s", b)
	}
}

// syscw is the number of write system calls pid has made.
func syscw(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no syscw in /proc/%d/io", pid)
	return 0
}
