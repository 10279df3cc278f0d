package daemon

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// diskDir makes a directory on a disk filesystem, unmounting whatever the
// test mounts below it at the end.
func diskDir(t *testing.T) string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to mount")
	}
	base := t.TempDir()
	var fs unix.Statfs_t
	if err := unix.Statfs(base, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC || fs.Type == unix.RAMFS_MAGIC {
		t.Skip("the test's temp dir is already in memory")
	}
	return base
}

func fsType(t *testing.T, dir string) int64 {
	t.Helper()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	return fs.Type
}

func TestMemoryBackExecRoot(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	base := diskDir(t)

	// An empty exec-root on a disk gets a tmpfs with the daemon's mode,
	// and a second daemon start finds it and mounts nothing more.
	empty := filepath.Join(base, "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for unix.Unmount(empty, unix.MNT_DETACH) == nil {
		}
	})
	for i := 0; i < 2; i++ {
		if err := memoryBackExecRoot(empty, 0o711, log); err != nil {
			t.Fatal(err)
		}
	}
	if fsType(t, empty) != unix.TMPFS_MAGIC {
		t.Fatalf("empty exec-root not on a tmpfs")
	}
	if st, err := os.Stat(empty); err != nil || st.Mode().Perm() != 0o711 {
		t.Errorf("tmpfs mode %v, %v; want 0711", st.Mode().Perm(), err)
	}
	if err := unix.Unmount(empty, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(empty, 0); err == nil {
		t.Errorf("the second start stacked a second tmpfs on the exec-root")
	}

	// An exec-root in use (an older daemon's running containers: their
	// bundles, sockets, runtime state) is left on the disk: a tmpfs would
	// hide their state.
	used := filepath.Join(base, "used")
	if err := os.MkdirAll(filepath.Join(used, "containers", "abc"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(used, "containers", "abc", "shim.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := memoryBackExecRoot(used, 0o700, log); err != nil {
		t.Fatal(err)
	}
	if fsType(t, used) == unix.TMPFS_MAGIC {
		unix.Unmount(used, unix.MNT_DETACH)
		t.Fatalf("tmpfs mounted over a non-empty exec-root")
	}

	// What an earlier daemon on the disk leaves once its containers are
	// gone, empty directories, is hidden under the tmpfs.
	left := filepath.Join(base, "left")
	for _, d := range []string{"containers", "shims", "runtime/berth"} {
		if err := os.MkdirAll(filepath.Join(left, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for unix.Unmount(left, unix.MNT_DETACH) == nil {
		}
	})
	if err := memoryBackExecRoot(left, 0o700, log); err != nil {
		t.Fatal(err)
	}
	if fsType(t, left) != unix.TMPFS_MAGIC {
		t.Errorf("an exec-root of empty directories not on a tmpfs")
	}

	// A mount point below the exec-root (a container's rootfs still
	// mounted) keeps it on the disk.
	busy := filepath.Join(base, "busy")
	rootfs := filepath.Join(busy, "containers", "abc", "rootfs")
	if err := os.MkdirAll(rootfs, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(rootfs, rootfs, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for unix.Unmount(rootfs, unix.MNT_DETACH) == nil {
		}
		for unix.Unmount(busy, unix.MNT_DETACH) == nil {
		}
	})
	if err := memoryBackExecRoot(busy, 0o700, log); err != nil {
		t.Fatal(err)
	}
	if fsType(t, busy) == unix.TMPFS_MAGIC {
		t.Errorf("tmpfs mounted over an exec-root with a mount below it")
	}

	// A mount point the admin put there is left alone.
	own := filepath.Join(base, "own")
	if err := os.Mkdir(own, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(own, own, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for unix.Unmount(own, unix.MNT_DETACH) == nil {
		}
	})
	if err := memoryBackExecRoot(own, 0o700, log); err != nil {
		t.Fatal(err)
	}
	if fsType(t, own) == unix.TMPFS_MAGIC {
		t.Fatalf("tmpfs mounted over an existing mount point")
	}
}
