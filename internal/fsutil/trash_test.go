package fsutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTrashRemove(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "victim")
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "b", "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	var tr Trash
	if err := tr.Remove(dir); err != nil {
		t.Fatal(err)
	}
	// The name is free at once, whether or not the deletion has finished.
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s still there after Remove: %v", dir, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatalf("name not free: %v", err)
	}
	tr.Wait()
	entries, _ := os.ReadDir(root)
	if len(entries) != 1 || entries[0].Name() != "victim" {
		t.Fatalf("after Wait: %v, want only the new victim", entries)
	}
	// A missing directory is no error.
	if err := tr.Remove(filepath.Join(root, "missing")); err != nil {
		t.Fatal(err)
	}
}

// A crash leaves trash behind; EmptyTrash deletes it and nothing else.
func TestEmptyTrash(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{TrashPrefix + "old-1", TrashPrefix + "old-2/sub", "keep", ".other"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := EmptyTrash(root); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(root)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, ","); got != ".other,keep" {
		t.Fatalf("left %s, want .other,keep", got)
	}
	if err := EmptyTrash(filepath.Join(root, "missing")); err != nil {
		t.Fatalf("missing dir: %v", err)
	}
}
