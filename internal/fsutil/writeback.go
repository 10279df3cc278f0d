package fsutil

import "golang.org/x/sys/unix"

// writebackAlign is the unit ranges handed to writeback are rounded down
// to: whole pages of any size a kernel uses.
const writebackAlign = 64 << 10

// StartWriteback hands bytes [from, to) of the file fd to writeback
// (sync_file_range SYNC_FILE_RANGE_WRITE) and returns how far the file is
// now handed over: the next call's from. It waits for no I/O and promises
// no durability (an fsync or syncfs stays the barrier): it only starts the
// writes early so that the barrier finds them done. While the file is
// still being appended to (!complete), only whole pages go: the next write
// lands in the last one, and a page under writeback may make it wait
// (devices that need stable pages). Best effort.
func StartWriteback(fd int, from, to int64, complete bool) int64 {
	if !complete {
		to &^= writebackAlign - 1
	}
	if to <= from {
		return from
	}
	_ = unix.SyncFileRange(fd, from, to-from, unix.SYNC_FILE_RANGE_WRITE)
	return to
}
