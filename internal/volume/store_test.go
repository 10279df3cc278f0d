package volume

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
)

func TestValidateName(t *testing.T) {
	for name, ok := range map[string]bool{
		"data": true, "a1": true, "my_vol.1-x": true,
		"a": false, "": false, "-x": false, "bad/name": false, "./rel": false, "a b": false, "a:b": false,
	} {
		if err := ValidateName(name); (err == nil) != ok {
			t.Errorf("ValidateName(%q) = %v", name, err)
		}
	}
}

func TestStoreLifecycle(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	v, created, err := s.Create("data", nil, map[string]string{"k": "v"})
	if err != nil || !created || v.Name != "data" {
		t.Fatalf("create: %v %v %v", v, created, err)
	}
	if _, created, err := s.Create("data", nil, nil); err != nil || created {
		t.Errorf("second create: %v %v", created, err)
	}
	if _, _, err := s.Create("data", map[string]string{"type": "tmpfs"}, nil); !errdefs.IsConflict(err) {
		t.Errorf("create with other options: %v", err)
	}
	if _, _, err := s.Create("x1", map[string]string{"bogus": "1"}, nil); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad option: %v", err)
	}
	anon, _, err := s.Create("", nil, map[string]string{AnonymousLabel: ""})
	if err != nil || len(anon.Name) != 64 || !anon.Anonymous() {
		t.Fatalf("anonymous: %+v %v", anon, err)
	}
	if err := os.WriteFile(filepath.Join(s.Path("data"), "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s.Empty("data") || !s.Empty(anon.Name) {
		t.Errorf("Empty")
	}

	// A crash mid-create and mid-remove leaves temp and trash dirs: Open
	// removes them and keeps the whole volumes.
	os.MkdirAll(filepath.Join(root, ".tmp-dead", "_data"), 0o755)
	os.MkdirAll(filepath.Join(root, ".trash-dead", "_data"), 0o755)
	os.MkdirAll(filepath.Join(root, "norecord", "_data"), 0o755)
	s2, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, v := range s2.List() {
		names = append(names, v.Name)
	}
	// Two volumes, in whatever order the anonymous one's random name sorts.
	if len(names) != 2 || !slices.Contains(names, "data") || !slices.Contains(names, anon.Name) {
		t.Errorf("reopened: %v", names)
	}
	if got, _ := s2.Get("data"); got.Labels["k"] != "v" {
		t.Errorf("labels after reopen: %+v", got)
	}
	for _, d := range []string{".tmp-dead", ".trash-dead"} {
		if _, err := os.Stat(filepath.Join(root, d)); !os.IsNotExist(err) {
			t.Errorf("%s left: %v", d, err)
		}
	}
	if err := s2.Remove("data"); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Get("data"); !errdefs.IsNotFound(err) {
		t.Errorf("get after remove: %v", err)
	}
	if err := s2.Remove("data"); !errdefs.IsNotFound(err) {
		t.Errorf("remove twice: %v", err)
	}
}
