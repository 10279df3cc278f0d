package engine

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-engine/berth/internal/container"
	containertypes "github.com/moby/moby/api/types/container"
)

type tarEntry struct {
	name, link string
	typ        byte
	body       string
}

func makeTar(entries []tarEntry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		_ = tw.WriteHeader(h)
		if e.typ == tar.TypeReg {
			_, _ = tw.Write([]byte(e.body))
		}
	}
	_ = tw.Close()
	return buf.Bytes()
}

// newTestView is a view over a plain directory, beside an "outside"
// directory that must stay empty whatever the archive holds.
func newTestView(t testing.TB) (v *fsView, outside string) {
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	outside = filepath.Join(parent, "outside")
	for _, d := range []string{root, outside, filepath.Join(root, "dst")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Links in the container that point out of it, by every route.
	_ = os.Symlink("/", filepath.Join(root, "dst", "abs"))
	_ = os.Symlink("../../..", filepath.Join(root, "dst", "up"))
	_ = os.Symlink(outside, filepath.Join(root, "dst", "host"))
	return &fsView{root: root, c: &container.Container{Config: &containertypes.Config{}, HostConfig: &containertypes.HostConfig{}}}, outside
}

func assertEmpty(t testing.TB, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Fatalf("extraction wrote outside the container root: %v", ents)
	}
}

func TestExtractTarConfined(t *testing.T) {
	for name, entries := range map[string][]tarEntry{
		"dotdot":            {{name: "../../../outside/x", typ: tar.TypeReg, body: "x"}},
		"through abs link":  {{name: "abs/../outside/x", typ: tar.TypeReg, body: "x"}},
		"through up link":   {{name: "up/outside/x", typ: tar.TypeReg, body: "x"}},
		"through host link": {{name: "host/x", typ: tar.TypeReg, body: "x"}},
		"link then file": {
			{name: "l", typ: tar.TypeSymlink, link: "../../../outside"},
			{name: "l/x", typ: tar.TypeReg, body: "x"},
		},
		"replace link": {{name: "host", typ: tar.TypeReg, body: "x"}},
		"hardlink out": {
			{name: "h", typ: tar.TypeLink, link: "../../../outside/none"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			v, outside := newTestView(t)
			_ = extractTar(bytes.NewReader(makeTar(entries)), v, "/dst", false, -1, -1)
			assertEmpty(t, outside)
		})
	}
}

func TestWriteTarNames(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "d", "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "d", "sub", "f"), []byte("f"), 0o644)
	os.Symlink("/etc", filepath.Join(dir, "d", "l"))
	var buf bytes.Buffer
	if err := writeTar(&buf, filepath.Join(dir, "d"), "renamed"); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	var got []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		got = append(got, h.Name+"|"+h.Linkname)
	}
	want := []string{"renamed/|", "renamed/l|/etc", "renamed/sub/|", "renamed/sub/f|"}
	if len(got) != len(want) {
		t.Fatalf("entries %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func FuzzExtractTar(f *testing.F) {
	f.Add(makeTar([]tarEntry{{name: "../x", typ: tar.TypeReg, body: "x"}}))
	f.Add(makeTar([]tarEntry{{name: "l", typ: tar.TypeSymlink, link: "/"}, {name: "l/x", typ: tar.TypeReg, body: "x"}}))
	f.Add(makeTar([]tarEntry{{name: "a/", typ: tar.TypeDir}, {name: "a/b", typ: tar.TypeLink, link: "../../x"}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, outside := newTestView(t)
		_ = extractTar(bytes.NewReader(data), v, "/dst", false, -1, -1)
		assertEmpty(t, outside)
	})
}
