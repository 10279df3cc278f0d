package fsutil

import (
	"sync"

	"golang.org/x/sys/unix"
)

// fsTopDirFlag is FS_TOPDIR_FL (chattr +T): ext2/3/4 place each directory
// made in such a directory in a block group of its own choosing (Orlov's
// spread), as they do at the filesystem's root, instead of next to its
// parent.
const fsTopDirFlag = 0x00020000

// spreadMarked holds the directories SpreadDirs has marked in this process
// (the flag stays on the directory, so once is enough).
var spreadMarked sync.Map

// SpreadDirs marks dir so that ext4 spreads the directories made in it (and
// the files made in those) over block groups. For directories with a high
// turnover of short-lived subdirectories: containers, snapshots, staged
// layers. ext4 without a journal (this project's CI hosts) will not reuse an
// inode freed in the last 30 s and skips such inodes one by one, from the
// start of the group, on every allocation; with every container's files in
// one group, each new file walked the thousands its predecessors freed —
// 10–15 % of all CPU at berth's start rate. Best effort: other filesystems
// have no such flag and are left as they are.
func SpreadDirs(dir string) {
	if _, done := spreadMarked.LoadOrStore(dir, true); done {
		return
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		spreadMarked.Delete(dir)
		return
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil || flags&fsTopDirFlag != 0 {
		return
	}
	_ = unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags|fsTopDirFlag))
}

// HasSpreadFlag reports whether dir carries the flag SpreadDirs sets, and
// whether its filesystem honours the flag at all (ext2/3/4; xfs and btrfs
// have inode flags but ignore this one). For tests.
func HasSpreadFlag(dir string) (marked, supported bool) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, false
	}
	defer unix.Close(fd)
	var st unix.Statfs_t
	if unix.Fstatfs(fd, &st) != nil || st.Type != unix.EXT4_SUPER_MAGIC {
		return false, false
	}
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		return false, false
	}
	return flags&fsTopDirFlag != 0, true
}
