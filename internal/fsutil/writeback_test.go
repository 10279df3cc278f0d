package fsutil

import (
	"os"
	"path/filepath"
	"testing"
)

// StartWriteback hands over whole 64 KiB pages while a file grows, the
// rest once it is complete, and nothing twice.
func TestStartWriteback(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "blob"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, 200_000)); err != nil {
		t.Fatal(err)
	}
	fd := int(f.Fd())
	if got := StartWriteback(fd, 0, 200_000, false); got != 196_608 {
		t.Errorf("growing file: handed over up to %d, want 196608 (3 × 64 KiB)", got)
	}
	if got := StartWriteback(fd, 196_608, 200_000, false); got != 196_608 {
		t.Errorf("growing file, less than a page more: %d, want 196608", got)
	}
	if got := StartWriteback(fd, 196_608, 200_000, true); got != 200_000 {
		t.Errorf("complete file: %d, want 200000", got)
	}
	if got := StartWriteback(fd, 200_000, 100, true); got != 200_000 {
		t.Errorf("a range before from: %d, want from (200000)", got)
	}
}
