package monitor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/berth-engine/berth/internal/logs/jsonlite"
)

// deleteContainer deletes the exited container in the runtime: its
// cgroups and runtime state. With cfg.RuntimeState (berth's own runtime,
// a pid namespace of the container's own, no hooks) the shim does it
// itself, saving a Go process start per container (~6 ms of CPU here,
// most of it libcontainer decoding state.json through reflection);
// anything it cannot do that way is left to `<runtime> delete --force`.
func (m *monitor) deleteContainer() error {
	if dir := m.cfg.RuntimeState; dir != "" {
		err := deleteDirect(dir)
		if err == nil {
			return nil
		}
		logWarn("delete container directly; falling back to the runtime", "err", err)
	}
	return m.rt.run("delete", "--force", m.cfg.ID)
}

// deleteDirect is what libcontainer's destroy does to a stopped container
// that had a pid namespace of its own (when its init died, the kernel
// killed every other process in it, so there is nothing left to kill) and
// no poststop hooks: remove its cgroups, sub-cgroups first, then its state
// directory. The cgroups go first, so that a crash in between leaves a
// state directory for `<runtime> delete` at the daemon's next start-up.
func deleteDirect(stateDir string) error {
	data, err := os.ReadFile(filepath.Join(stateDir, "state.json"))
	if err != nil {
		return err
	}
	paths, err := stateCgroupPaths(data)
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(stateDir, "state.json"), err)
	}
	for _, p := range paths {
		if err := removeCgroup(p); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(stateDir); err != nil {
		return fmt.Errorf("remove runtime state: %w", err)
	}
	return nil
}

// stateCgroupPaths reads the cgroup paths out of libcontainer's state.json
// ("cgroup_paths": {"memory": "/sys/fs/cgroup/memory/…", "": "…"}). Each
// must be a clean path strictly below the cgroup mount.
func stateCgroupPaths(data []byte) ([]string, error) {
	var paths []string
	found := false
	err := jsonlite.Members(data, func(k string, v jsonlite.Value) error {
		if k != "cgroup_paths" {
			return nil
		}
		found = true
		if v.Kind() == jsonlite.Null {
			return nil
		}
		return v.Members(func(_ string, pv jsonlite.Value) error {
			p, err := pv.Str()
			if err != nil {
				return err
			}
			if filepath.Clean(p) != p || !strings.HasPrefix(p, cgroupRoot+"/") {
				return fmt.Errorf("cgroup path %q is not below %s", p, cgroupRoot)
			}
			paths = append(paths, p)
			return nil
		})
	})
	if err == nil && !found {
		err = errors.New("no cgroup_paths")
	}
	return paths, err
}

// removeCgroup removes a cgroup directory and its sub-cgroups, as
// libcontainer's cgroups.RemovePath: a gone directory is fine, and EBUSY
// (tasks that have exited but not yet left the cgroup) is retried with a
// growing delay, ~1 s in all.
func removeCgroup(path string) error {
	if err := syscall.Rmdir(path); err == nil || errors.Is(err, syscall.ENOENT) {
		return nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeCgroup(filepath.Join(path, e.Name())); err != nil {
				return err
			}
		}
	}
	delay := time.Millisecond
	for tries := 0; ; tries++ {
		err := syscall.Rmdir(path)
		switch {
		case err == nil || errors.Is(err, syscall.ENOENT):
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EBUSY) && tries < 10:
			time.Sleep(delay)
			delay *= 2
			continue
		}
		return &os.PathError{Op: "rmdir", Path: path, Err: err}
	}
}
