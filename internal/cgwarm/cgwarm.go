// Package cgwarm keeps the kernel's cgroup migration lock warm while a
// container is being created, so that moving its first process into its
// cgroups does not wait for an RCU grace period.
//
// Moving a process into a cgroup (a write to cgroup.procs, which a runtime
// does once per hierarchy for every new container and exec) takes the
// kernel's global cgroup_threadgroup_rwsem for writing. When nobody has done
// so for a while, that first waits for a whole RCU grace period
// (rcu_sync_enter: 7–15 ms measured on the CI machine kind, more under
// load); writes within about one grace period of the previous one are
// cheap. A Warmer "moves" its own process into the cgroup it is already in
// every Interval — a no-op migration that takes the same lock — so that the
// runtime's writes find it warm. It changes nothing: the process stays
// where it was, and errors only end the warming.
package cgwarm

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Interval is well below a grace period, so the lock never cools between
// two writes; each costs a few µs of CPU.
const Interval = 2 * time.Millisecond

// Warmer writes into its own process's cgroup.procs every Interval until
// the deadline Keep sets, or until its stop condition holds.
type Warmer struct {
	stopWhen func() bool // optional: true ends the warming early

	mu       sync.Mutex
	deadline time.Time
	running  bool

	writes atomic.Int64 // successful writes, for tests
}

// New returns a Warmer for the calling process's own cgroup. stopWhen, if
// not nil, is checked after every write; when it reports true the warming
// ends before its deadline (say, once the new container's cgroup has a
// process).
func New(stopWhen func() bool) *Warmer {
	return &Warmer{stopWhen: stopWhen}
}

// Keep keeps the lock warm for at least d from now, starting the warming
// if it is not running.
func (w *Warmer) Keep(d time.Duration) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if until := time.Now().Add(d); until.After(w.deadline) {
		w.deadline = until
	}
	if !w.running {
		w.running = true
		go w.loop()
	}
}

// Stop ends the warming (the writes that needed it are done).
func (w *Warmer) Stop() {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.deadline = time.Time{}
	w.mu.Unlock()
}

func (w *Warmer) loop() {
	// The cgroup is looked up afresh each time: writing "0" into a cgroup
	// the process has since been moved out of would move it back.
	var f *os.File
	root, rel := OwnCgroup()
	err := os.ErrNotExist
	if root != "" {
		f, err = os.OpenFile(filepath.Join(root, rel, "cgroup.procs"), os.O_WRONLY, 0)
	}
	if err == nil {
		defer f.Close()
	}
	for {
		w.mu.Lock()
		more := err == nil && time.Now().Before(w.deadline)
		if !more {
			w.running = false
		}
		w.mu.Unlock()
		if !more {
			return
		}
		// "0" is the writing process: it is already in this cgroup.
		if _, err = f.WriteAt([]byte("0"), 0); err != nil {
			continue // ends the loop above
		}
		w.writes.Add(1)
		if w.stopWhen != nil && w.stopWhen() {
			w.Stop()
			continue
		}
		time.Sleep(Interval)
	}
}

// OwnCgroup finds this process's own cgroup: the root of its hierarchy
// and its path there. The cgroup v2 tree comes first if there is one (pure
// v2, or the hybrid's unified mount), else the first v1 hierarchy whose
// mount point is found.
func OwnCgroup() (root, rel string) {
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
				if IsCgroupFile(filepath.Join(root, rel, "cgroup.procs")) {
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
		if IsCgroupFile(filepath.Join(c.root, c.rel, "cgroup.procs")) {
			return c.root, c.rel
		}
	}
	return "", ""
}

// IsCgroupFile reports whether p is a regular file (a cgroup's file).
func IsCgroupFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// HasProcess reports whether a cgroup.procs file lists any process.
func HasProcess(procs string) bool {
	f, err := os.Open(procs)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [1]byte
	n, _ := f.Read(b[:])
	return n > 0
}
