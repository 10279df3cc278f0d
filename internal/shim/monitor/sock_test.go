package monitor

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// close removes the listener's own socket file, and never one that a newer
// shim bound at the same path since (the old shim's close must not cut the
// new one off).
func TestListenerCloseRemovesOnlyItsOwnFile(t *testing.T) {
	dir, err := os.MkdirTemp("", "bsk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s.sock")

	own, err := listenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	own.close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("own socket file left after close: %v", err)
	}

	old, err := listenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	// Someone (a restarted daemon's cleanup) removed the file, and a new
	// shim listens at the same path now.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	newer, err := listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer newer.close()
	var before syscall.Stat_t
	if err := syscall.Lstat(path, &before); err != nil {
		t.Fatal(err)
	}
	old.close()
	var after syscall.Stat_t
	if err := syscall.Lstat(path, &after); err != nil {
		t.Fatalf("the old listener's close removed the new socket: %v", err)
	}
	if after.Ino != before.Ino {
		t.Fatalf("socket file changed: inode %d, want %d", after.Ino, before.Ino)
	}
	if !probeUnix(path) {
		t.Fatal("the new listener no longer answers at its path")
	}
}

// A listener rebuilt from a descriptor (the second stage) knows its file too.
func TestNewListenerFromDescriptor(t *testing.T) {
	dir, err := os.MkdirTemp("", "bsk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s.sock")
	l, err := listenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Dup(int(l.f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	l.f.Close() // as the first stage does: the file stays
	l2 := newListener(os.NewFile(uintptr(fd), path), path)
	if l2.ino == 0 {
		t.Fatal("inode of the socket file not recorded")
	}
	l2.close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("socket file left after close: %v", err)
	}
}
