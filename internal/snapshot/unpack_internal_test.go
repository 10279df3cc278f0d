package snapshot

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Mounts that are neither an overlay with an upper dir nor a plain bind
// are unpacked through a temporary mount.
func TestApplyLayerThroughTemporaryMount(t *testing.T) {
	requiresRoot(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "old"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []tar.Header{
		{Name: "new", Typeflag: tar.TypeReg, Mode: 0o640, Size: 3},
		{Name: ".wh.old", Typeflag: tar.TypeReg, Mode: 0o600},
	} {
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("new"))
		}
	}
	tw.Close()
	mounts := []Mount{{Type: "none", Source: dir, Options: []string{"rbind", "rw"}}}
	if _, ok := UpperDir(mounts); ok {
		t.Fatal("UpperDir of a bind mount")
	}
	if err := applyLayer(mounts, &buf); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "new")); err != nil || string(b) != "new" {
		t.Errorf("new: %q %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "old")); !os.IsNotExist(err) {
		t.Errorf("old survived its whiteout: %v", err)
	}
}

func TestUpperDir(t *testing.T) {
	m := []Mount{{Type: "overlay", Source: "overlay", Options: []string{"index=off", "workdir=/w", "upperdir=/u", "lowerdir=/l"}}}
	if u, ok := UpperDir(m); !ok || u != "/u" {
		t.Errorf("UpperDir = %q %v", u, ok)
	}
	if _, ok := UpperDir([]Mount{{Type: "overlay", Options: []string{"lowerdir=/a:/b"}}}); ok {
		t.Error("UpperDir of a read-only overlay")
	}
	if _, ok := UpperDir(append(m, m...)); ok {
		t.Error("UpperDir of two mounts")
	}
}
