// Package contenttest is the conformance suite every content.Store
// implementation runs: it pins down the lifecycle and invariants the rest of
// berth relies on (invisible until committed, digest-verified commits,
// idempotent and concurrent commits of the same blob, not-found errors).
package contenttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"testing"

	"github.com/berth-engine/berth/internal/content"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// Suite runs every conformance case against stores made by newStore; each
// case gets a fresh, empty store.
func Suite(t *testing.T, newStore func(t *testing.T) content.Store) {
	cases := []struct {
		name string
		fn   func(t *testing.T, s content.Store)
	}{
		{"WriteCommitRead", testWriteCommitRead},
		{"CommitWithoutExpectedDigest", testCommitWithoutExpected},
		{"EmptyBlob", testEmptyBlob},
		{"LargeBlob", testLargeBlob},
		{"WrongDigestStoresNothing", testWrongDigest},
		{"WrongSizeStoresNothing", testWrongSize},
		{"UncommittedIsInvisible", testUncommittedInvisible},
		{"AbandonedWriterStoresNothing", testAbandoned},
		{"CommitExistingKeepsIt", testCommitExisting},
		{"ConcurrentCommitsOfOneBlob", testConcurrentCommits},
		{"CommitTwiceFails", testCommitTwice},
		{"WriteAfterCommitFails", testWriteAfterCommit},
		{"MissingBlobIsNotFound", testMissing},
		{"InvalidDigestIsInvalidArgument", testInvalidDigest},
		{"Delete", testDelete},
		{"Walk", testWalk},
		{"ReadBlobLimit", testReadBlobLimit},
		{"CancelledContext", testCancelled},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.fn(t, newStore(t))
		})
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// put writes and commits data, failing the test on error.
func put(t *testing.T, s content.Store, data []byte) digest.Digest {
	t.Helper()
	ctx := context.Background()
	w, err := s.Writer(ctx)
	if err != nil {
		t.Fatalf("Writer: %v", err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatalf("Write: %v", err)
	}
	d, err := w.Commit(ctx, digest.FromBytes(data), int64(len(data)))
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return d
}

func readAll(t *testing.T, s content.Store, d digest.Digest) []byte {
	t.Helper()
	rc, err := s.Open(context.Background(), d)
	if err != nil {
		t.Fatalf("Open %s: %v", d, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", d, err)
	}
	return b
}

func list(t *testing.T, s content.Store) []digest.Digest {
	t.Helper()
	var out []digest.Digest
	if err := s.Walk(context.Background(), func(i content.Info) error {
		out = append(out, i.Digest)
		return nil
	}); err != nil {
		t.Fatalf("Walk: %v", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func assertAbsent(t *testing.T, s content.Store, d digest.Digest) {
	t.Helper()
	if _, err := s.Info(context.Background(), d); !errdefs.IsNotFound(err) {
		t.Errorf("Info(%s) = %v, want not found", d, err)
	}
	if rc, err := s.Open(context.Background(), d); !errdefs.IsNotFound(err) {
		if err == nil {
			rc.Close()
		}
		t.Errorf("Open(%s) = %v, want not found", d, err)
	}
	for _, got := range list(t, s) {
		if got == d {
			t.Errorf("Walk lists %s", d)
		}
	}
}

func testWriteCommitRead(t *testing.T, s content.Store) {
	ctx := context.Background()
	data := []byte("hello, blob store\n")
	w, err := s.Writer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Written in pieces: Digest and Size track what was written so far.
	if _, err := w.Write(data[:5]); err != nil {
		t.Fatal(err)
	}
	if w.Size() != 5 || w.Digest() != digest.FromBytes(data[:5]) {
		t.Errorf("after 5 bytes: size %d digest %s", w.Size(), w.Digest())
	}
	if _, err := w.Write(data[5:]); err != nil {
		t.Fatal(err)
	}
	want := digest.FromBytes(data)
	got, err := w.Commit(ctx, want, int64(len(data)))
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if got != want {
		t.Fatalf("Commit returned %s, want %s", got, want)
	}
	if err := w.Close(); err != nil {
		t.Errorf("Close after Commit: %v", err)
	}
	info, err := s.Info(ctx, want)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Digest != want || info.Size != int64(len(data)) || info.CreatedAt.IsZero() {
		t.Errorf("Info = %+v", info)
	}
	if b := readAll(t, s, want); !bytes.Equal(b, data) {
		t.Errorf("read back %q", b)
	}
	rc, err := s.Open(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	buf := make([]byte, 4)
	if _, err := rc.ReadAt(buf, 7); err != nil || string(buf) != "blob" {
		t.Errorf("ReadAt(7) = %q, %v", buf, err)
	}
	if off, err := rc.Seek(-6, io.SeekEnd); err != nil || off != int64(len(data))-6 {
		t.Errorf("Seek = %d, %v", off, err)
	}
	rest, _ := io.ReadAll(rc)
	if string(rest) != "store\n" {
		t.Errorf("read after Seek = %q", rest)
	}
	if l := list(t, s); len(l) != 1 || l[0] != want {
		t.Errorf("Walk = %v", l)
	}
}

func testCommitWithoutExpected(t *testing.T, s content.Store) {
	ctx := context.Background()
	data := randomBytes(t, 1000)
	w, err := s.Writer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	d, err := w.Commit(ctx, "", 0)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if d != digest.FromBytes(data) {
		t.Errorf("Commit returned %s", d)
	}
	if !bytes.Equal(readAll(t, s, d), data) {
		t.Error("content differs")
	}
}

func testEmptyBlob(t *testing.T, s content.Store) {
	d := put(t, s, nil)
	if d != digest.FromBytes(nil) {
		t.Errorf("empty blob digest %s", d)
	}
	info, err := s.Info(context.Background(), d)
	if err != nil || info.Size != 0 {
		t.Errorf("Info = %+v, %v", info, err)
	}
}

func testLargeBlob(t *testing.T, s content.Store) {
	ctx := context.Background()
	w, err := s.Writer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := digest.SHA256.Digester()
	chunk := randomBytes(t, 1<<20)
	const chunks = 9
	for i := 0; i < chunks; i++ {
		chunk[0] = byte(i)
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
		h.Hash().Write(chunk)
	}
	d, err := w.Commit(ctx, h.Digest(), chunks<<20)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	info, err := s.Info(ctx, d)
	if err != nil || info.Size != chunks<<20 {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	rc, err := s.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	v := digest.SHA256.Digester()
	if _, err := io.Copy(v.Hash(), rc); err != nil {
		t.Fatal(err)
	}
	if v.Digest() != d {
		t.Errorf("stored bytes hash to %s, want %s", v.Digest(), d)
	}
}

func testWrongDigest(t *testing.T, s content.Store) {
	ctx := context.Background()
	data := []byte("some bytes")
	wrong := digest.FromString("other bytes")
	w, err := s.Writer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(ctx, wrong, 0); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Commit with a wrong digest = %v, want invalid argument", err)
	}
	assertAbsent(t, s, wrong)
	assertAbsent(t, s, digest.FromBytes(data))
	if err := w.Close(); err != nil {
		t.Errorf("Close after a failed Commit: %v", err)
	}
}

func testWrongSize(t *testing.T, s content.Store) {
	ctx := context.Background()
	data := []byte("twelve bytes")
	w, err := s.Writer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(ctx, digest.FromBytes(data), 13); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Commit with a wrong size = %v, want invalid argument", err)
	}
	assertAbsent(t, s, digest.FromBytes(data))
}

func testUncommittedInvisible(t *testing.T, s content.Store) {
	ctx := context.Background()
	data := []byte("not yet")
	w, err := s.Writer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	assertAbsent(t, s, digest.FromBytes(data))
	if _, err := w.Commit(ctx, digest.FromBytes(data), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Info(ctx, digest.FromBytes(data)); err != nil {
		t.Errorf("Info after Commit: %v", err)
	}
}

func testAbandoned(t *testing.T, s content.Store) {
	ctx := context.Background()
	data := []byte("abandoned")
	w, err := s.Writer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := w.Commit(ctx, "", 0); err == nil {
		t.Error("Commit after Close succeeded")
	}
	assertAbsent(t, s, digest.FromBytes(data))
	if l := list(t, s); len(l) != 0 {
		t.Errorf("Walk = %v, want nothing", l)
	}
}

func testCommitExisting(t *testing.T, s content.Store) {
	data := []byte("twice")
	d1 := put(t, s, data)
	info1, err := s.Info(context.Background(), d1)
	if err != nil {
		t.Fatal(err)
	}
	d2 := put(t, s, data)
	if d1 != d2 {
		t.Fatalf("digests differ: %s %s", d1, d2)
	}
	info2, err := s.Info(context.Background(), d2)
	if err != nil {
		t.Fatal(err)
	}
	if info2.Size != info1.Size {
		t.Errorf("size changed: %d → %d", info1.Size, info2.Size)
	}
	if !bytes.Equal(readAll(t, s, d1), data) {
		t.Error("content changed")
	}
	if l := list(t, s); len(l) != 1 {
		t.Errorf("Walk = %v", l)
	}
}

func testConcurrentCommits(t *testing.T, s content.Store) {
	ctx := context.Background()
	data := randomBytes(t, 256<<10)
	want := digest.FromBytes(data)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := s.Writer(ctx)
			if err != nil {
				errs <- err
				return
			}
			<-start
			for off := 0; off < len(data); off += 4096 {
				if _, err := w.Write(data[off : off+4096]); err != nil {
					errs <- err
					return
				}
			}
			if _, err := w.Commit(ctx, want, int64(len(data))); err != nil {
				errs <- err
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent commit: %v", err)
	}
	if !bytes.Equal(readAll(t, s, want), data) {
		t.Error("content differs after concurrent commits")
	}
	if l := list(t, s); len(l) != 1 || l[0] != want {
		t.Errorf("Walk = %v", l)
	}
}

func testCommitTwice(t *testing.T, s content.Store) {
	ctx := context.Background()
	w, err := s.Writer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(ctx, "", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(ctx, "", 0); err == nil {
		t.Error("second Commit succeeded")
	}
}

func testWriteAfterCommit(t *testing.T, s content.Store) {
	ctx := context.Background()
	w, err := s.Writer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	d, err := w.Commit(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("y")); err == nil {
		t.Error("Write after Commit succeeded")
	}
	if b := readAll(t, s, d); string(b) != "x" {
		t.Errorf("blob changed to %q", b)
	}
}

func testMissing(t *testing.T, s content.Store) {
	d := digest.FromString("never stored")
	assertAbsent(t, s, d)
	if err := s.Delete(context.Background(), d); !errdefs.IsNotFound(err) {
		t.Errorf("Delete of a missing blob = %v, want not found", err)
	}
	if _, err := content.ReadBlob(context.Background(), s, d, 10); !errdefs.IsNotFound(err) {
		t.Errorf("ReadBlob of a missing blob = %v, want not found", err)
	}
}

func testInvalidDigest(t *testing.T, s content.Store) {
	ctx := context.Background()
	for _, d := range []digest.Digest{
		"", "sha256", "sha256:", "sha256:../../../../etc/passwd", "sha256:abc",
		digest.Digest(fmt.Sprintf("sha256:%063dG", 0)),
		digest.Digest(fmt.Sprintf("sha256:%064X", 1)), // upper-case hex is not canonical
		"../sha256:0000000000000000000000000000000000000000000000000000000000000000",
	} {
		if _, err := s.Info(ctx, d); !errdefs.IsInvalidArgument(err) && !errdefs.IsNotFound(err) {
			t.Errorf("Info(%q) = %v, want invalid argument or not found", d, err)
		}
		if _, err := s.Open(ctx, d); err == nil {
			t.Errorf("Open(%q) succeeded", d)
		}
		if err := s.Delete(ctx, d); err == nil {
			t.Errorf("Delete(%q) succeeded", d)
		}
	}
	if _, err := s.Info(ctx, "sha256:../../x"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Info of a path-like digest = %v, want invalid argument", err)
	}
}

func testDelete(t *testing.T, s content.Store) {
	ctx := context.Background()
	keep := put(t, s, []byte("keep"))
	gone := put(t, s, []byte("gone"))
	if err := s.Delete(ctx, gone); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	assertAbsent(t, s, gone)
	if err := s.Delete(ctx, gone); !errdefs.IsNotFound(err) {
		t.Errorf("second Delete = %v, want not found", err)
	}
	if _, err := s.Info(ctx, keep); err != nil {
		t.Errorf("other blob: %v", err)
	}
	// A deleted blob can be stored again.
	if d := put(t, s, []byte("gone")); d != gone {
		t.Errorf("re-put %s", d)
	}
}

func testWalk(t *testing.T, s content.Store) {
	ctx := context.Background()
	if l := list(t, s); len(l) != 0 {
		t.Fatalf("fresh store lists %v", l)
	}
	want := map[digest.Digest]int64{}
	for i := 0; i < 5; i++ {
		data := randomBytes(t, 100+i)
		want[put(t, s, data)] = int64(len(data))
	}
	// An ingest in progress is not listed.
	w, err := s.Writer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write([]byte("in progress")); err != nil {
		t.Fatal(err)
	}
	got := map[digest.Digest]int64{}
	if err := s.Walk(ctx, func(i content.Info) error {
		got[i.Digest] = i.Size
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("Walk found %d blobs, want %d", len(got), len(want))
	}
	for d, sz := range want {
		if got[d] != sz {
			t.Errorf("Walk: %s size %d, want %d", d, got[d], sz)
		}
	}
	// An error from fn stops the walk and is returned.
	stop := errors.New("stop")
	calls := 0
	if err := s.Walk(ctx, func(content.Info) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Walk with a failing fn = %v after %d calls", err, calls)
	}
}

func testReadBlobLimit(t *testing.T, s content.Store) {
	ctx := context.Background()
	d := put(t, s, []byte("0123456789"))
	if b, err := content.ReadBlob(ctx, s, d, 10); err != nil || string(b) != "0123456789" {
		t.Errorf("ReadBlob at the limit = %q, %v", b, err)
	}
	if _, err := content.ReadBlob(ctx, s, d, 9); !errdefs.IsInvalidArgument(err) {
		t.Errorf("ReadBlob over the limit = %v, want invalid argument", err)
	}
}

func testCancelled(t *testing.T, s content.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	w, err := s.Writer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("cancelled")); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := w.Commit(ctx, "", 0); err == nil {
		t.Error("Commit with a cancelled context succeeded")
	}
	assertAbsent(t, s, digest.FromString("cancelled"))
	if _, err := s.Writer(ctx); err == nil {
		t.Error("Writer with a cancelled context succeeded")
	}
}
