package builder

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// srcFS is where COPY/ADD sources are read: the build context (an indexed
// tar, never extracted) or an image's mounted root filesystem. Paths are
// clean, slash-separated and relative to the root ("" is the root).
type srcFS interface {
	// Stat follows symlinks (within the root).
	Stat(rel string) (fs.FileInfo, string, error)
	// Lstat does not follow a final symlink; link is its target.
	Lstat(rel string) (fi fs.FileInfo, link string, err error)
	// ReadDir lists a directory's entries' names, sorted.
	ReadDir(rel string) ([]string, error)
	// Open opens a regular file.
	Open(rel string) (io.ReadSeekCloser, error)
	// Glob matches a pattern against the paths, as filepath.Match.
	Glob(pattern string) ([]string, error)
}

// dirFS is a directory on disk.
type dirFS struct{ root string }

func (d dirFS) join(rel string) (string, error) { return securejoin.SecureJoin(d.root, rel) }

func (d dirFS) Stat(rel string) (fs.FileInfo, string, error) {
	p, err := d.join(rel)
	if err != nil {
		return nil, "", err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, "", err
	}
	r, _ := filepath.Rel(d.root, p)
	if r == "." {
		r = ""
	}
	return fi, filepath.ToSlash(r), nil
}

func (d dirFS) Lstat(rel string) (fs.FileInfo, string, error) {
	p := filepath.Join(d.root, rel)
	fi, err := os.Lstat(p)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		return fi, "", err
	}
	link, err := os.Readlink(p)
	return fi, link, err
}

func (d dirFS) ReadDir(rel string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(d.root, rel))
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ents))
	for i, e := range ents {
		out[i] = e.Name()
	}
	return out, nil
}

func (d dirFS) Open(rel string) (io.ReadSeekCloser, error) {
	return os.Open(filepath.Join(d.root, rel))
}

func (d dirFS) Glob(pattern string) ([]string, error) {
	ms, err := filepath.Glob(filepath.Join(d.root, pattern))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		r, err := filepath.Rel(d.root, m)
		if err != nil || strings.HasPrefix(r, "..") {
			continue
		}
		out = append(out, filepath.ToSlash(r))
	}
	return out, nil
}

// tarFS is a build context kept as the (uncompressed) tar it came in,
// spooled to one file and indexed: no per-file extraction, so reading a
// context of many small files costs one sequential write.
type tarFS struct {
	f        *os.File
	entries  map[string]*tarEntry
	children map[string][]string
}

type tarEntry struct {
	hdr *tar.Header
	off int64
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// newTarFS spools the tar from r into file f and indexes it.
func newTarFS(r io.Reader, f *os.File) (*tarFS, error) {
	t := &tarFS{f: f, entries: map[string]*tarEntry{}, children: map[string][]string{}}
	cr := &countingReader{r: io.TeeReader(r, f)}
	tr := tar.NewReader(cr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		off := cr.n
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		if name == "" {
			continue
		}
		t.add(name, &tarEntry{hdr: hdr, off: off})
	}
	for k := range t.children {
		sort.Strings(t.children[k])
	}
	return t, nil
}

func (t *tarFS) add(name string, e *tarEntry) {
	if _, ok := t.entries[name]; !ok {
		parent := path.Dir(name)
		if parent == "." {
			parent = ""
		}
		t.children[parent] = append(t.children[parent], path.Base(name))
		if parent != "" {
			if _, ok := t.entries[parent]; !ok {
				// A directory the tar only implies.
				t.add(parent, &tarEntry{hdr: &tar.Header{Typeflag: tar.TypeDir, Name: parent + "/", Mode: 0o755, ModTime: time.Unix(0, 0)}})
			}
		}
	}
	t.entries[name] = e
}

// remove drops an entry (and, for a directory, what is below it).
func (t *tarFS) remove(name string) {
	delete(t.entries, name)
	parent := path.Dir(name)
	if parent == "." {
		parent = ""
	}
	kids := t.children[parent]
	for i, k := range kids {
		if k == path.Base(name) {
			t.children[parent] = append(kids[:i:i], kids[i+1:]...)
			break
		}
	}
}

func notExist(rel string) error {
	return &fs.PathError{Op: "stat", Path: rel, Err: fs.ErrNotExist}
}

// resolve follows the symlinks in rel's directories (and in its last
// element too when follow is set), staying inside the context.
func (t *tarFS) resolve(rel string, follow bool) (string, error) {
	parts := strings.Split(rel, "/")
	cur := ""
	hops := 0
	for i := 0; i < len(parts); i++ {
		if parts[i] == "" || parts[i] == "." {
			continue
		}
		next := path.Join(cur, parts[i])
		e, ok := t.entries[next]
		if ok && e.hdr.Typeflag == tar.TypeSymlink && (i < len(parts)-1 || follow) {
			if hops++; hops > 32 {
				return "", fmt.Errorf("stat %s: too many levels of symbolic links", rel)
			}
			base := cur
			if path.IsAbs(e.hdr.Linkname) {
				base = ""
			}
			target := strings.TrimPrefix(path.Clean("/"+path.Join(base, e.hdr.Linkname)), "/")
			parts = append(strings.Split(target, "/"), parts[i+1:]...)
			cur, i = "", -1
			continue
		}
		cur = next
	}
	return cur, nil
}

func (t *tarFS) Lstat(rel string) (fs.FileInfo, string, error) {
	rel, err := t.resolve(rel, false)
	if err != nil {
		return nil, "", err
	}
	if rel == "" {
		return rootInfo{}, "", nil
	}
	e, ok := t.entries[rel]
	if !ok {
		return nil, "", notExist(rel)
	}
	if e.hdr.Typeflag == tar.TypeLink {
		if target, ok := t.entries[strings.TrimPrefix(path.Clean("/"+e.hdr.Linkname), "/")]; ok {
			h := *target.hdr
			h.Name = e.hdr.Name
			return h.FileInfo(), "", nil
		}
	}
	return e.hdr.FileInfo(), e.hdr.Linkname, nil
}

func (t *tarFS) Stat(rel string) (fs.FileInfo, string, error) {
	real, err := t.resolve(rel, true)
	if err != nil {
		return nil, "", err
	}
	fi, _, err := t.Lstat(real)
	if err != nil {
		return nil, "", err
	}
	return fi, real, nil
}

func (t *tarFS) ReadDir(rel string) ([]string, error) {
	if _, ok := t.entries[rel]; !ok && rel != "" {
		return nil, notExist(rel)
	}
	return append([]string(nil), t.children[rel]...), nil
}

func (t *tarFS) Open(rel string) (io.ReadSeekCloser, error) {
	e, ok := t.entries[rel]
	if !ok {
		return nil, notExist(rel)
	}
	if e.hdr.Typeflag == tar.TypeLink {
		if target, ok := t.entries[strings.TrimPrefix(path.Clean("/"+e.hdr.Linkname), "/")]; ok {
			e = target
		}
	}
	return nopCloser{io.NewSectionReader(t.f, e.off, e.hdr.Size)}, nil
}

func (t *tarFS) Glob(pattern string) ([]string, error) {
	if _, err := path.Match(pattern, ""); err != nil {
		return nil, err
	}
	var out []string
	for name := range t.entries {
		if ok, _ := path.Match(pattern, name); ok {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}

type nopCloser struct{ *io.SectionReader }

func (nopCloser) Close() error { return nil }

// rootInfo is the context root: a directory.
type rootInfo struct{}

func (rootInfo) Name() string       { return "." }
func (rootInfo) Size() int64        { return 0 }
func (rootInfo) Mode() fs.FileMode  { return fs.ModeDir | 0o755 }
func (rootInfo) ModTime() time.Time { return time.Unix(0, 0) }
func (rootInfo) IsDir() bool        { return true }
func (rootInfo) Sys() any           { return nil }
