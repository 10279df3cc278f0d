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
// makes about 14, with it 60–90. The daemon is moved into a cgroup the
// test makes before the create and into another one while the warming
// runs: the warming must follow it, never write it back.
func TestCreateWarmsCgroupLock(t *testing.T) {
	d := testutil.StartDaemon(t, binDir)
	d.ImportBusybox(t, "busybox:latest")

	root, rel := cgwarm.OwnCgroup()
	if root == "" {
		t.Skip("no cgroup.procs of our own found")
	}
	own := filepath.Join(root, rel)
	var made []string
	moveDaemon := func(dir string) error {
		return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(d.Pid())), 0)
	}
	t.Cleanup(func() {
		// Back where it was, so the daemon's own cleanup finds it there and
		// the cgroups can go. Retried past the end of any warming.
		for _, dir := range made {
			var err error
			for i := 0; i < 50; i++ {
				if d.Running() {
					_ = moveDaemon(own)
				}
				if err = os.Remove(dir); err == nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err != nil {
				t.Errorf("remove test cgroup: %v", err)
			}
		}
	})
	mkcg := func(name string) string {
		dir := filepath.Join(own, fmt.Sprintf("berth-cgwarm-%s-%d", name, os.Getpid()))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Skipf("cannot make a cgroup for the daemon: %v", err)
		}
		made = append(made, dir)
		return dir
	}
	first, second := mkcg("a"), mkcg("b")
	inCgroup := func(dir string) bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", d.Pid()))
		return err == nil && strings.Contains(string(b), ":"+strings.TrimPrefix(dir, root)+"\n")
	}
	if err := moveDaemon(first); err != nil {
		t.Skipf("cannot move the daemon into %s: %v", first, err)
	}
	if !inCgroup(first) {
		t.Fatalf("the daemon is not in %s after the move", first)
	}

	before := syscw(t, d.Pid())
	d.MustBerth(t, "create", "--network", "none", "busybox", "true")
	if err := moveDaemon(second); err != nil {
		t.Fatalf("move the daemon into %s: %v", second, err)
	}
	// Wait for the writes to stop (the warming lasts 100 ms).
	after := syscw(t, d.Pid())
	for i := 0; i < 100; i++ {
		time.Sleep(100 * time.Millisecond)
		n := syscw(t, d.Pid())
		if n == after {
			break
		}
		after = n
	}
	t.Logf("%d write calls by the daemon for a create", after-before)
	if got := after - before; got < 22 {
		t.Errorf("%d write calls by the daemon for a create: the warming's writes are missing", got)
	}
	if !inCgroup(second) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", d.Pid()))
		t.Errorf("the warming moved the daemon out of the cgroup it was moved to:\n%s", b)
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
