package daemon

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// memoryBackExecRoot puts a tmpfs on the exec-root when it lies on a disk
// filesystem and is unused. The exec-root holds only what a reboot ends
// anyway (runtime state, shim sockets, bundles, netns files), as docker's
// /var/run/docker on a tmpfs /run does. On hosts whose /run is a disk
// (this happens: journal-less ext4 here), every container start creates
// and deletes a dozen inodes there, and ext4 without a journal scans past
// each inode deleted in the last dirty_expire interval on every inode
// allocation, which at berth's start rate cost ~15 % of container starts
// per second. The mount stays when the daemon exits: running containers
// keep their state across a daemon restart, and the next daemon finds
// the tmpfs already there. An exec-root in use (anything but empty
// directories: an older daemon's containers may be running) or an existing
// mount point is left alone.
func memoryBackExecRoot(dir string, mode os.FileMode, log *slog.Logger) error {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return fmt.Errorf("exec-root %s: %w", dir, err)
	}
	if fs.Type == unix.TMPFS_MAGIC || fs.Type == unix.RAMFS_MAGIC {
		return nil
	}
	mounted, err := mountinfo.Mounted(dir)
	if err != nil {
		return fmt.Errorf("exec-root %s: %w", dir, err)
	}
	if mounted {
		return nil
	}
	unused, err := onlyEmptyDirs(dir)
	if err != nil {
		return fmt.Errorf("exec-root %s: %w", dir, err)
	}
	if !unused {
		log.Info("exec-root is on a disk and in use; not putting a tmpfs over it", "exec-root", dir)
		return nil
	}
	data := fmt.Sprintf("mode=%04o", mode.Perm())
	if err := unix.Mount("berth-exec", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		// Not fatal: the disk works, only slower.
		log.Warn("could not mount a tmpfs on the exec-root", "exec-root", dir, "err", err)
		return nil
	}
	log.Info("exec-root on a tmpfs", "exec-root", dir)
	return nil
}

// onlyEmptyDirs reports whether dir's tree holds nothing but directories,
// none of them a mount point: what an earlier daemon that ran on the disk
// leaves once its containers are gone (containers/, shims/, runtime/…),
// which the tmpfs may hide.
func onlyEmptyDirs(dir string) (bool, error) {
	unused := true
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			unused = false
			return filepath.SkipAll
		}
		if path != dir {
			if m, err := mountinfo.Mounted(path); err != nil || m {
				unused = false
				return filepath.SkipAll
			}
		}
		return nil
	})
	return unused && err == nil, err
}
