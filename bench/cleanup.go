package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The runner makes itself a child subreaper: shims and conmon daemonize
// (double fork), and instead of being re-parented to PID 1 they become the
// runner's children. That makes "which processes did this engine add"
// answerable from ppid chains, and guarantees that everything the engines
// leave behind can be found and killed at the end. The price is reaping
// them, which reapOrphans does at quiet moments.

func becomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
	}
	return nil
}

// childSet is the set of children the runner waits for through os/exec
// (the daemons). reapOrphans must not reap those: their exec.Cmd.Wait does.
type childSet struct {
	mu sync.Mutex
	m  map[int]bool
}

var children = &childSet{m: map[int]bool{}}

func (c *childSet) add(pid int)    { c.mu.Lock(); c.m[pid] = true; c.mu.Unlock() }
func (c *childSet) remove(pid int) { c.mu.Lock(); delete(c.m, pid); c.mu.Unlock() }
func (c *childSet) has(pid int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[pid]
}

// reapOrphans waits for every zombie child of the runner that os/exec does
// not wait for: re-parented shims and conmons that exited. It must only be
// called when no CLI started through os/exec is running, since their zombies
// belong to exec.Cmd.Wait.
func reapOrphans() {
	self := os.Getpid()
	procs, err := listProcs()
	if err != nil {
		return
	}
	for pid, p := range procs {
		if p.PPID != self || p.State != 'Z' || children.has(pid) {
			continue
		}
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	}
}

// ownedBelow lists the processes below the runner that o claims, plus all
// their descendants (a shim's container, a daemon's helpers).
func ownedBelow(procs map[int]procInfo, owns func(procInfo) bool) []int {
	self := os.Getpid()
	claimed := map[int]bool{}
	for pid, p := range procs {
		if pid != self && descendsFrom(procs, pid, self) && owns(p) {
			claimed[pid] = true
		}
	}
	var out []int
	for pid := range procs {
		if claimed[pid] {
			out = append(out, pid)
			continue
		}
		for c := range claimed {
			if descendsFrom(procs, pid, c) {
				out = append(out, pid)
				break
			}
		}
	}
	sort.Ints(out)
	return out
}

// killOwned waits (up to 10 s) for what is left of the engine below the
// runner to exit by itself — conmons and shims finish a moment after the
// last `rm -f` returned — then SIGKILLs the rest and waits (up to 10 s more)
// for it to be gone.
func killOwned(name string) error {
	var left []int
	for i := 0; i < 200; i++ {
		procs, err := listProcs()
		if err != nil {
			return err
		}
		left = left[:0]
		for _, pid := range ownedBelow(procs, func(p procInfo) bool { return ownerOf(procs, p) == name }) {
			if procs[pid].State == 'Z' || children.has(pid) {
				continue
			}
			left = append(left, pid)
			if i >= 100 {
				if i == 100 {
					slog.Warn("killing a leftover process", "engine", name, "pid", pid, "exe", procs[pid].Exe)
				}
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		reapOrphans()
		if len(left) == 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("processes still alive after SIGKILL: %v", left)
}

// killAllDescendants is the last sweep: after every engine stopped, nothing
// below the runner should be left. Anything that is gets killed and reaped.
func killAllDescendants() {
	self := os.Getpid()
	for i := 0; i < 50; i++ {
		procs, err := listProcs()
		if err != nil {
			return
		}
		n := 0
		for pid, p := range procs {
			if pid == self || !descendsFrom(procs, pid, self) || p.State == 'Z' || children.has(pid) {
				continue
			}
			n++
			if i == 0 {
				slog.Warn("killing a leftover process", "pid", pid, "exe", p.Exe, "cmdline", p.Cmdline)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		reapOrphans()
		if n == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mountPoints lists the mount points of the runner's mount namespace (field
// 5 of /proc/self/mountinfo, octal escapes decoded) with their fs types.
func mountPoints() ([][2]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][2]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		pre, post, ok := strings.Cut(line, " - ")
		fields := strings.Fields(pre)
		if !ok || len(fields) < 5 {
			continue
		}
		fstype := ""
		if pf := strings.Fields(post); len(pf) > 0 {
			fstype = pf[0]
		}
		out = append(out, [2]string{unescapeMount(fields[4]), fstype})
	}
	return out, sc.Err()
}

// unescapeMount decodes mountinfo's \ooo octal escapes (space, tab, newline,
// backslash).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder lazily unmounts every mount at or below dir, deepest first,
// and fails if any remains (the caller must not then remove dir: deleting
// through a live mount could reach outside it).
func unmountUnder(dir string) error {
	for try := 0; try < 5; try++ {
		mps, err := mountPoints()
		if err != nil {
			return fmt.Errorf("read mounts: %w", err)
		}
		var under []string
		for _, m := range mps {
			if m[0] == dir || strings.HasPrefix(m[0], dir+"/") {
				under = append(under, m[0])
			}
		}
		if len(under) == 0 {
			return nil
		}
		sort.Slice(under, func(i, j int) bool { return len(under[i]) > len(under[j]) })
		for _, mp := range under {
			if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				slog.Warn("unmount", "path", mp, "err", err)
			}
		}
	}
	return fmt.Errorf("mounts remain under %s", dir)
}

// removeCgroups removes the cgroup parent (and everything below it) from
// every cgroup hierarchy: each v1 controller and the v2 tree. Processes
// still inside are the runner's own (the parent is private), so they are
// killed first.
func removeCgroups(parent string) error {
	if parent == "" || parent == "/" {
		return nil
	}
	mps, err := mountPoints()
	if err != nil {
		return fmt.Errorf("read mounts: %w", err)
	}
	var errs []error
	for _, m := range mps {
		if m[1] != "cgroup" && m[1] != "cgroup2" {
			continue
		}
		top := filepath.Join(m[0], parent)
		if _, err := os.Stat(top); err != nil {
			continue
		}
		if err := removeCgroupTree(top); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func removeCgroupTree(top string) error {
	var dirs []string
	_ = filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		var err error
		for try := 0; try < 50; try++ {
			if err = unix.Rmdir(d); err == nil || errors.Is(err, unix.ENOENT) {
				err = nil
				break
			}
			if !errors.Is(err, unix.EBUSY) {
				break
			}
			killCgroupProcs(d)
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("remove cgroup %s: %w", d, err)
		}
	}
	return nil
}

func killCgroupProcs(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	reapOrphans()
}

// hostPath is a path outside an engine's state directory that the engine
// creates on first use (a lock file, a cache, a runtime dir). The runner
// removes it afterwards only if it did not exist before the run, and only if
// no other instance of that engine is running on the host.
type hostPath struct {
	Path string
	Dir  bool // removed only when empty
}

// footprint is an engine's host paths, in removal order (files before the
// directories that hold them), with the ones that existed before the run.
type footprint struct {
	paths    []hostPath
	existed  map[string]bool
	peerExes []string // executables whose presence elsewhere means "in use"
}

func newFootprint(peerExes []string, paths ...hostPath) footprint {
	fp := footprint{paths: paths, existed: map[string]bool{}, peerExes: peerExes}
	for _, p := range paths {
		if _, err := os.Lstat(p.Path); err == nil {
			fp.existed[p.Path] = true
		}
	}
	return fp
}

// cleanup removes the footprint paths the run created. dir is the engine's
// state directory: a peer process counts as foreign when it is not below
// the runner and does not mention dir.
func (fp *footprint) cleanup(dir string) error {
	if len(fp.paths) == 0 {
		return nil
	}
	procs, err := listProcs()
	if err != nil {
		return err
	}
	self := os.Getpid()
	for _, p := range procs {
		if p.State == 'Z' || descendsFrom(procs, p.PID, self) || strings.Contains(p.Cmdline, dir) {
			continue
		}
		for _, n := range fp.peerExes {
			if p.Exe == n {
				slog.Warn("another instance is running; leaving its shared host paths alone", "exe", n, "pid", p.PID)
				return nil
			}
		}
	}
	var errs []error
	for _, hp := range fp.paths {
		if fp.existed[hp.Path] {
			continue
		}
		var err error
		if hp.Dir {
			err = unix.Rmdir(hp.Path)
			if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
				slog.Warn("created by the run but not empty; left in place", "path", hp.Path)
				err = nil
			}
		} else {
			err = os.Remove(hp.Path)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
