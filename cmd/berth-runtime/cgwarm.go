package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Moving a process into a cgroup (a write to cgroup.procs, which create
// and exec do once per hierarchy) takes the kernel's global
// cgroup_threadgroup_rwsem for writing. When nobody has done so for a
// while, that first waits for a whole RCU grace period (rcu_sync_enter:
// ~7 ms measured on the CI machine kind, far more under load); writes that
// follow within about one grace period of the last one are cheap. So while
// berth-runtime parses the spec, starts its child and waits for it, a
// goroutine keeps that state warm by "moving" this process into the cgroup
// it is already in (a no-op migration that takes the same lock), and
// libcontainer's own writes find it warm. It changes nothing: the process
// stays where it was, and errors are ignored.

// cgWarmInterval is well below a grace period, so the state never cools
// between two writes (each costs a few µs of CPU); cgWarmMax bounds the
// whole thing.
const (
	cgWarmInterval = 2 * time.Millisecond
	cgWarmMax      = 100 * time.Millisecond
)

// startCgroupWarm starts the warming and returns the function that stops
// it (call it once the container's processes are in their cgroups). With
// a target (the new container's cgroup, relative to the hierarchy root),
// it also stops by itself as soon as that cgroup has a process: the writes
// that needed the warm lock are done.
func startCgroupWarm(target string) (stop func()) {
	root, rel := ownCgroup()
	if root == "" {
		return func() {}
	}
	path := filepath.Join(root, rel, "cgroup.procs")
	var targetProcs string
	if filepath.IsAbs(target) {
		targetProcs = filepath.Join(root, target, "cgroup.procs")
	}
	done := make(chan struct{})
	go func() {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer f.Close()
		deadline := time.NewTimer(cgWarmMax)
		defer deadline.Stop()
		tick := time.NewTicker(cgWarmInterval)
		defer tick.Stop()
		for {
			// "0" is the writing process: it is already in this cgroup.
			if _, err := f.WriteAt([]byte("0"), 0); err != nil {
				return
			}
			if targetProcs != "" && hasProcess(targetProcs) {
				return
			}
			select {
			case <-done:
				return
			case <-deadline.C:
				return
			case <-tick.C:
			}
		}
	}()
	var stopped bool
	return func() {
		if !stopped {
			stopped = true
			close(done)
		}
	}
}

// ownCgroup finds this process's own cgroup: the root of its hierarchy
// and its path there. The cgroup v2 tree comes first if there is one (pure
// v2, or the hybrid's unified mount), else the first v1 hierarchy whose
// mount point is found.
func ownCgroup() (root, rel string) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", ""
	}
	defer f.Close()
	type cand struct{ root, rel string }
	var v1 []cand
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "/") {
			continue
		}
		rel := filepath.Clean(parts[2])
		if parts[0] == "0" && parts[1] == "" {
			for _, root := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
				if isCgroupFile(filepath.Join(root, rel, "cgroup.procs")) {
					return root, rel
				}
			}
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			v1 = append(v1, cand{filepath.Join("/sys/fs/cgroup", strings.TrimPrefix(c, "name=")), rel})
		}
		v1 = append(v1, cand{filepath.Join("/sys/fs/cgroup", strings.ReplaceAll(parts[1], "name=", "")), rel})
	}
	for _, c := range v1 {
		if isCgroupFile(filepath.Join(c.root, c.rel, "cgroup.procs")) {
			return c.root, c.rel
		}
	}
	return "", ""
}

func isCgroupFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// hasProcess reports whether a cgroup.procs file lists any process.
func hasProcess(procs string) bool {
	f, err := os.Open(procs)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [1]byte
	n, _ := f.Read(b[:])
	return n > 0
}
