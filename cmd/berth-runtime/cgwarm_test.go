package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/cgwarm"
)

// The warming writes this process into the cgroup it is already in: its
// cgroups are the same afterwards, and the file it writes is a real
// cgroup.procs that lists it.
func TestCgroupWarmIsNoOp(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("requires root: writes cgroup.procs")
	}
	root, rel := cgwarm.OwnCgroup()
	path := filepath.Join(root, rel, "cgroup.procs")
	if root == "" || !cgwarm.IsCgroupFile(path) {
		t.Fatalf("OwnCgroup = %q, %q", root, rel)
	}
	if !cgwarm.HasProcess(path) {
		t.Fatalf("%s lists no process", path)
	}
	before, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	// The target is our own cgroup, which has a process: the warming may
	// stop at once, and stopping again is harmless.
	stop := startCgroupWarm(rel)
	// One write of our own, as the goroutine does, so that the test does
	// not depend on when it runs.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("0"), 0); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	f.Close()
	stop()
	stop() // idempotent
	after, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Fatalf("cgroups changed:\n%s\nbecame\n%s", before, after)
	}
	procs, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains("\n"+string(procs), "\n"+strconv.Itoa(os.Getpid())+"\n") {
		t.Fatalf("%s does not list this process", path)
	}
}
