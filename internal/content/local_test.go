package content_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-engine/berth/internal/content"
	"github.com/berth-engine/berth/internal/content/contenttest"
	"github.com/opencontainers/go-digest"
)

func newStore(t *testing.T) content.Store {
	t.Helper()
	s, err := content.NewStore(filepath.Join(t.TempDir(), "content"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLocalStoreConformance(t *testing.T) {
	contenttest.Suite(t, newStore)
}

func put(t *testing.T, s content.Store, data string) digest.Digest {
	t.Helper()
	ctx := context.Background()
	w, err := s.Writer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	d, err := w.Commit(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The on-disk layout is part of the contract: other tools (and the
// integration tests) look at root/blobs/sha256/<hex>.
func TestLayout(t *testing.T) {
	root := filepath.Join(t.TempDir(), "content")
	s, err := content.NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	d := put(t, s, "layout")
	got := files(t, root)
	want := filepath.Join("blobs", "sha256", d.Encoded())
	if len(got) != 1 || got[0] != want {
		t.Fatalf("files under root = %v, want [%s]", got, want)
	}
	fi, err := os.Stat(filepath.Join(root, want))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o222 != 0 {
		t.Errorf("blob is writable: %v", fi.Mode())
	}
}

// An ingest leaves nothing behind, committed or not.
func TestNoIngestLeftovers(t *testing.T) {
	root := filepath.Join(t.TempDir(), "content")
	s, err := content.NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	put(t, s, "committed")
	w, _ := s.Writer(ctx)
	_, _ = w.Write([]byte("abandoned"))
	_ = w.Close()
	w, _ = s.Writer(ctx)
	_, _ = w.Write([]byte("bad digest"))
	_, _ = w.Commit(ctx, digest.FromString("other"), 0)
	w, _ = s.Writer(ctx)
	_, _ = w.Write([]byte("committed"))
	_, _ = w.Commit(ctx, "", 0) // an existing blob
	if left, _ := os.ReadDir(filepath.Join(root, "ingest")); len(left) != 0 {
		t.Errorf("ingest dir holds %d entries", len(left))
	}
	if got := files(t, root); len(got) != 1 {
		t.Errorf("files = %v", got)
	}
}

// What a crash leaves in root/ingest is removed on the next open; committed
// blobs survive.
func TestLeftoverIngestsRemovedOnOpen(t *testing.T) {
	root := filepath.Join(t.TempDir(), "content")
	s, err := content.NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	d := put(t, s, "survivor")
	// An ingest that was being written when the process died.
	w, err := s.Writer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("half a blob")); err != nil {
		t.Fatal(err)
	}
	// Plus odd leftovers a crash mid-commit can leave.
	if err := os.WriteFile(filepath.Join(root, "ingest", "ingest-stale"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "ingest", "dir"), 0o700); err != nil {
		t.Fatal(err)
	}

	s2, err := content.NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(filepath.Join(root, "ingest")); len(left) != 0 {
		t.Errorf("reopen left %d ingest entries", len(left))
	}
	if _, err := s2.Info(context.Background(), d); err != nil {
		t.Errorf("committed blob lost: %v", err)
	}
	_ = w.Close()
}

// Foreign files in the blob directory are not blobs.
func TestWalkSkipsForeignFiles(t *testing.T) {
	root := filepath.Join(t.TempDir(), "content")
	s, err := content.NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	d := put(t, s, "real")
	if err := os.WriteFile(filepath.Join(root, "blobs", "sha256", "not-a-digest"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var got []digest.Digest
	if err := s.Walk(context.Background(), func(i content.Info) error {
		got = append(got, i.Digest)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != d {
		t.Errorf("Walk = %v", got)
	}
}

func TestNewStoreFailsOnFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := content.NewStore(p); err == nil {
		t.Error("NewStore on a regular file succeeded")
	}
}

func TestOpenIngestFollowsTheWriter(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "content")
	s, err := content.NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, end := range []string{"commit", "close"} {
		t.Run(end, func(t *testing.T) {
			w, err := s.Writer(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			ir, ok := w.(content.IngestReader)
			if !ok {
				t.Fatal("the local store's writer cannot be followed")
			}
			f, err := ir.OpenIngest()
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			read := func(off int64, n int) string {
				t.Helper()
				b := make([]byte, n)
				k, err := f.ReadAt(b, off)
				if err != nil && k != n {
					t.Fatalf("read %d at %d: %d, %v", n, off, k, err)
				}
				return string(b[:k])
			}
			w.Write([]byte("hello "))
			if got := read(0, 6); got != "hello " {
				t.Fatalf("after the first write: %q", got)
			}
			w.Write([]byte("world"))
			if got := read(6, 5); got != "world" {
				t.Fatalf("after the second write: %q", got)
			}
			if end == "commit" {
				if _, err := w.Commit(ctx, digest.FromString("hello world"), 11); err != nil {
					t.Fatal(err)
				}
			} else if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			// The ingest's name is gone; what was opened still reads.
			if got := read(0, 11); got != "hello world" {
				t.Fatalf("after %s: %q", end, got)
			}
			if _, err := ir.OpenIngest(); err == nil {
				t.Errorf("a finished ingest could be opened")
			}
		})
	}
	if left := files(t, filepath.Join(root, "ingest")); len(left) != 0 {
		t.Errorf("ingests left: %v", left)
	}
}

// A blob larger than the writeback chunk, written in pieces of odd sizes
// (so the early writeback ranges start and end mid-write) and read through
// the ingest while it is written, commits whole and reads back unchanged.
func TestLocalStoreLargeBlobWithEarlyWriteback(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := make([]byte, 21<<20+12345)
	for i := range data {
		data[i] = byte(i*7 + i>>13)
	}
	w, err := s.Writer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	f, err := w.(content.IngestReader).OpenIngest()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for off, n := 0, 1; off < len(data); n = (n*3 + 1) % (3 << 20) {
		end := min(off+n+1, len(data))
		if _, err := w.Write(data[off:end]); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, end-off)
		if _, err := f.ReadAt(got, int64(off)); err != nil || string(got) != string(data[off:end]) {
			t.Fatalf("ingest at %d: %v", off, err)
		}
		off = end
	}
	want := digest.FromBytes(data)
	if d, err := w.Commit(ctx, want, int64(len(data))); err != nil || d != want {
		t.Fatalf("commit: %s, %v", d, err)
	}
	got, err := content.ReadBlob(ctx, s, want, int64(len(data)))
	if err != nil || string(got) != string(data) {
		t.Fatalf("read back: %d bytes, %v", len(got), err)
	}
}
