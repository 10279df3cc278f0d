// Package fsutil holds the small filesystem helpers every store needs to stay
// crash-consistent.
package fsutil

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFileAtomic replaces path with data so that a crash at any moment leaves
// either the old or the new content: write a temp file in the same directory,
// fsync it, rename it over path, fsync the directory.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return WriteFileAtomicSync(path, data, perm, SyncAll)
}

// Sync says how durable WriteFileAtomicSync makes a write. Every mode is
// atomic against a crash of the process (the rename replaces the file
// whole); they differ in what a crash of the host may lose.
type Sync int

const (
	// SyncAll fsyncs the file and then its directory: after return the new
	// content survives a host crash.
	SyncAll Sync = iota
	// SyncData fsyncs the file but not the directory: a host crash leaves
	// the old or the new content, never a torn or empty file, but may
	// forget the replacement. For state that start-up reconciles anyway.
	SyncData
	// SyncNone fsyncs nothing: for files that do not outlive the host's
	// uptime (the exec-root, normally a tmpfs).
	SyncNone
)

// WriteFileAtomicSync is WriteFileAtomic with the durability chosen by mode.
func WriteFileAtomicSync(path string, data []byte, perm os.FileMode, mode Sync) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if mode != SyncNone {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok = true
	if mode != SyncAll {
		return nil
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory so that a rename or create inside it is durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
