package daemon

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"
)

// memoryBackExecRoot puts a tmpfs on the exec-root when it lies on a disk
// filesystem and is empty. The exec-root holds only what a reboot ends
// anyway (runtime state, shim sockets, bundles, netns files), as docker's
// /var/run/docker on a tmpfs /run does. On hosts whose /run is a disk
// (this happens: journal-less ext4 here), every container start creates
// and deletes a dozen inodes there, and ext4 without a journal scans past
// each inode deleted in the last dirty_expire interval on every inode
// allocation, which at berth's start rate cost ~15 % of container starts
// per second. The mount stays when the daemon exits: running containers
// keep their state across a daemon restart, and the next daemon finds
// the tmpfs already there. A non-empty exec-root (an older daemon's
// containers may be running) or an existing mount point is left alone.
func memoryBackExecRoot(dir string, mode os.FileMode, log *slog.Logger) error {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return fmt.Errorf("exec-root %s: %w", dir, err)
	}
	if fs.Type == unix.TMPFS_MAGIC || fs.Type == unix.RAMFS_MAGIC {
		return nil
	}
	mounted, err := isMountPoint(dir)
	if err != nil {
		return fmt.Errorf("exec-root %s: %w", dir, err)
	}
	if mounted {
		return nil
	}
	empty, err := isEmptyDir(dir)
	if err != nil {
		return fmt.Errorf("exec-root %s: %w", dir, err)
	}
	if !empty {
		log.Info("exec-root is on a disk and not empty; not putting a tmpfs over it", "exec-root", dir)
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

// isMountPoint reports whether dir is the root of a mount: its mount ID
// differs from its parent's.
func isMountPoint(dir string) (bool, error) {
	var st, parent unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, dir, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &st); err != nil {
		return false, err
	}
	if err := unix.Statx(unix.AT_FDCWD, dir+"/..", 0, unix.STATX_MNT_ID, &parent); err != nil {
		return false, err
	}
	return st.Mnt_id != parent.Mnt_id, nil
}

func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); errors.Is(err, io.EOF) {
		return true, nil
	} else if err != nil {
		return false, err
	}
	return false, nil
}
