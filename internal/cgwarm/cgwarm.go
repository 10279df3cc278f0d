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
// runtime's writes find it warm. It changes nothing: before every write it
// checks that the process is still in the cgroup it writes to (a write into
// a cgroup the process has been moved out of would move it back), and an
// error ends the warming.
package cgwarm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Interval is well below a grace period, so the lock never cools between
// two writes; each costs a few µs of CPU. Not longer: a warming write that
// finds the lock cold waits out a grace period holding the cgroup mutex,
// which every cgroup mkdir and move then waits behind.
const Interval = 2 * time.Millisecond

// retryAfter is how long a Warmer that could not write stays idle: the
// cause (a read-only /sys/fs/cgroup, no permission, a cgroup v2 cgroup
// with controllers enabled below it) rarely goes away.
const retryAfter = time.Minute

// Warmer writes into its own process's cgroup.procs every Interval until
// the deadline Keep sets, or until its stop condition holds.
type Warmer struct {
	stopWhen func() bool // optional: true ends the warming early

	mu          sync.Mutex
	deadline    time.Time
	running     bool
	failedUntil time.Time // no warming before then: the last attempt failed

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
	now := time.Now()
	if now.Before(w.failedUntil) {
		return
	}
	if until := now.Add(d); until.After(w.deadline) {
		w.deadline = until
	}
	if !w.running {
		w.running = true
		go w.loop()
	}
}

// Stop ends the warming (the writes that needed it are done). It does not
// wait: at most one more write may follow.
func (w *Warmer) Stop() {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.deadline = time.Time{}
	w.mu.Unlock()
}

// more reports whether to write again, and marks the warming stopped when
// not; failed says the last write failed.
func (w *Warmer) more(failed bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	if failed {
		w.failedUntil = now.Add(retryAfter)
	}
	if failed || !now.Before(w.deadline) {
		w.running = false
		return false
	}
	return true
}

func (w *Warmer) loop() {
	var p procsFile
	defer p.close()
	for failed := false; w.more(failed); {
		if err := p.write(); err != nil {
			failed = true
			continue
		}
		w.writes.Add(1)
		if w.stopWhen != nil && w.stopWhen() {
			w.Stop()
			continue
		}
		time.Sleep(Interval)
	}
}

// procsFile is the open cgroup.procs of the process's own cgroup, and the
// /proc/self/cgroup it was chosen from.
type procsFile struct {
	self   *os.File // /proc/self/cgroup, reread before every write
	procs  *os.File // nil until the first write
	chosen []byte   // self's content when procs was opened
	buf    []byte
}

// write moves the process into the cgroup it is in: "0" is the writer. If
// /proc/self/cgroup changed since the file was opened (someone moved the
// process), the file is chosen again first.
func (p *procsFile) write() error {
	if p.self == nil {
		f, err := os.Open("/proc/self/cgroup")
		if err != nil {
			return err
		}
		p.self, p.buf = f, make([]byte, 4096)
	}
	n, err := p.self.ReadAt(p.buf, 0)
	if n == len(p.buf) {
		return errTooLong
	}
	if n == 0 {
		return err
	}
	now := p.buf[:n]
	if p.procs == nil || !bytes.Equal(now, p.chosen) {
		if p.procs != nil {
			p.procs.Close()
			p.procs = nil
		}
		root, rel := ownCgroupFrom(now)
		if root == "" {
			return os.ErrNotExist
		}
		f, err := openProcs(filepath.Join(root, rel, "cgroup.procs"))
		if err != nil {
			return err
		}
		p.procs, p.chosen = f, slices.Clone(now)
	}
	_, err = p.procs.WriteAt([]byte("0"), 0)
	return err
}

func (p *procsFile) close() {
	for _, f := range []*os.File{p.self, p.procs} {
		if f != nil {
			f.Close()
		}
	}
}

var errTooLong = errors.New("/proc/self/cgroup longer than expected")

// openProcs opens a cgroup.procs file for writing, making sure it is one:
// on a cgroup or cgroup2 filesystem.
func openProcs(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil || (st.Type != unix.CGROUP_SUPER_MAGIC && st.Type != unix.CGROUP2_SUPER_MAGIC) {
		f.Close()
		return nil, fmt.Errorf("%s is not on a cgroup filesystem", path)
	}
	return f, nil
}

// OwnCgroup finds this process's own cgroup: the root of its hierarchy
// and its path there. The cgroup v2 tree comes first if there is one (pure
// v2, or the hybrid's unified mount), else the first v1 hierarchy whose
// mount point is found. "" when there is none, or when the process is
// outside its cgroup namespace's root (a path with ".." names no cgroup
// this process can find).
func OwnCgroup() (root, rel string) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", ""
	}
	return ownCgroupFrom(b)
}

func ownCgroupFrom(content []byte) (root, rel string) {
	type cand struct{ root, rel string }
	var v1 []cand
	sc := bufio.NewScanner(bytes.NewReader(content))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "/") || slices.Contains(strings.Split(parts[2], "/"), "..") {
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
