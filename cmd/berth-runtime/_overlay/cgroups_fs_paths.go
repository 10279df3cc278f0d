// This file is github.com/opencontainers/cgroups v0.1.0's fs/paths.go
// (Copyright The runc Authors, Apache License 2.0), swapped in by
// berth-runtime's build (scripts/runtime-overlay.sh) with two changes,
// both so that creating a container on a v1 or hybrid host
// does not parse /proc/self/mountinfo (~3.5 ms of CPU per container here,
// more the more mounts the host has): tryDefaultCgroupRoot accepts
// /sys/fs/cgroup when any of its entries is a cgroup v1 hierarchy, not
// only the first (on a hybrid host the first is often "unified", cgroup2),
// and subsysPath answers "not found" for a controller that
// /proc/self/cgroup does not list instead of searching mountinfo for it.

package fs

import (
	"errors"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/internal/path"
)

// The absolute path to the root of the cgroup hierarchies.
var (
	cgroupRootLock sync.Mutex
	cgroupRoot     string
)

const defaultCgroupRoot = "/sys/fs/cgroup"

func initPaths(cg *cgroups.Cgroup) (map[string]string, error) {
	root, err := rootPath()
	if err != nil {
		return nil, err
	}

	inner, err := path.Inner(cg)
	if err != nil {
		return nil, err
	}

	paths := make(map[string]string)
	for _, sys := range subsystems {
		name := sys.Name()
		path, err := subsysPath(root, inner, name)
		if err != nil {
			// The non-presence of the devices subsystem
			// is considered fatal for security reasons.
			if cgroups.IsNotFound(err) && (cg.SkipDevices || name != "devices") {
				continue
			}

			return nil, err
		}
		paths[name] = path
	}

	return paths, nil
}

func tryDefaultCgroupRoot() string {
	var st, pst unix.Stat_t

	// (1) it should be a directory...
	err := unix.Lstat(defaultCgroupRoot, &st)
	if err != nil || st.Mode&unix.S_IFDIR == 0 {
		return ""
	}

	// (2) ... and a mount point ...
	err = unix.Lstat(filepath.Dir(defaultCgroupRoot), &pst)
	if err != nil {
		return ""
	}

	if st.Dev == pst.Dev {
		// parent dir has the same dev -- not a mount point
		return ""
	}

	// (3) ... of 'tmpfs' fs type.
	var fst unix.Statfs_t
	err = unix.Statfs(defaultCgroupRoot, &fst)
	if err != nil || fst.Type != unix.TMPFS_MAGIC {
		return ""
	}

	// (4) it should have entries ...
	dir, err := os.Open(defaultCgroupRoot)
	if err != nil {
		return ""
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return ""
	}
	// ... one of which is a cgroup (v1) mount point. (berth: any, not
	// only the first; a hybrid host's "unified" is cgroup2.)
	for _, name := range names {
		err = unix.Statfs(filepath.Join(defaultCgroupRoot, name), &fst)
		if err == nil && fst.Type == unix.CGROUP_SUPER_MAGIC {
			return defaultCgroupRoot
		}
	}
	return ""
}

// rootPath finds and returns path to the root of the cgroup hierarchies.
func rootPath() (string, error) {
	cgroupRootLock.Lock()
	defer cgroupRootLock.Unlock()

	if cgroupRoot != "" {
		return cgroupRoot, nil
	}

	// fast path
	cgroupRoot = tryDefaultCgroupRoot()
	if cgroupRoot != "" {
		return cgroupRoot, nil
	}

	// slow path: parse mountinfo
	mi, err := cgroups.GetCgroupMounts(false)
	if err != nil {
		return "", err
	}
	if len(mi) < 1 {
		return "", errors.New("no cgroup mount found in mountinfo")
	}

	// Get the first cgroup mount (e.g. "/sys/fs/cgroup/memory"),
	// use its parent directory.
	root := filepath.Dir(mi[0].Mountpoint)

	if _, err := os.Stat(root); err != nil {
		return "", err
	}

	cgroupRoot = root
	return cgroupRoot, nil
}

func subsysPath(root, inner, subsystem string) (string, error) {
	// If the cgroup name/path is absolute do not look relative to the cgroup of the init process.
	if filepath.IsAbs(inner) {
		// berth: a controller that is in no v1 hierarchy of ours is
		// mounted nowhere; say so without parsing mountinfo.
		if !inOwnHierarchies(subsystem) {
			return "", cgroups.NewNotFoundError(subsystem)
		}
		mnt, err := cgroups.FindCgroupMountpoint(root, subsystem)
		// If we didn't mount the subsystem, there is no point we make the path.
		if err != nil {
			return "", err
		}

		// Sometimes subsystems can be mounted together as 'cpu,cpuacct'.
		return filepath.Join(root, filepath.Base(mnt), inner), nil
	}

	// Use GetOwnCgroupPath for dind-like cases, when cgroupns is not
	// available. This is ugly.
	parentPath, err := cgroups.GetOwnCgroupPath(subsystem)
	if err != nil {
		return "", err
	}

	return filepath.Join(parentPath, inner), nil
}

// ownHierarchies are the controllers (and name=… hierarchies) that
// /proc/self/cgroup lists, read once; nil if it could not be read.
var ownHierarchies = sync.OnceValue(func() map[string]string {
	m, err := cgroups.ParseCgroupFile("/proc/self/cgroup")
	if err != nil {
		return nil
	}
	return m
})

// inOwnHierarchies reports whether subsystem may have a v1 mount: it is
// listed in /proc/self/cgroup, or that file could not be read (berth).
// A v1 controller that no hierarchy has is not mounted anywhere, and the
// stock lookup would parse mountinfo only to find that out: on this
// kernel hugetlb, net_cls, net_prio, perf_event, rdma and misc often are.
func inOwnHierarchies(subsystem string) bool {
	m := ownHierarchies()
	if m == nil {
		return true
	}
	_, ok := m[subsystem]
	return ok
}

func apply(path string, pid int) error {
	if path == "" {
		return nil
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return err
	}
	return cgroups.WriteCgroupProc(path, pid)
}
