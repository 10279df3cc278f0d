package content

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/berth-engine/berth/internal/fsutil"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// NewStore opens (creating if needed) the blob store under root:
// root/blobs/sha256/<hex> holds committed blobs, root/ingest/ holds ingests
// in progress. Ingests left over from a previous process (a crash, a killed
// daemon) are removed here, so only one process may use root at a time.
func NewStore(root string) (Store, error) {
	s := &localStore{
		root:   root,
		blobs:  filepath.Join(root, "blobs", digest.SHA256.String()),
		ingest: filepath.Join(root, "ingest"),
	}
	for _, d := range []string{s.blobs, s.ingest} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("content store %s: %w", root, err)
		}
	}
	// Nothing can be writing yet: every ingest here is abandoned.
	entries, err := os.ReadDir(s.ingest)
	if err != nil {
		return nil, fmt.Errorf("content store %s: %w", root, err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(s.ingest, e.Name())); err != nil {
			return nil, fmt.Errorf("content store %s: remove abandoned ingest: %w", root, err)
		}
	}
	return s, nil
}

type localStore struct {
	root   string
	blobs  string
	ingest string
}

var (
	_ Store        = (*localStore)(nil)
	_ IngestReader = (*localWriter)(nil)
)

// blobPath validates dgst and returns where its blob lives. Validation
// matters: a digest comes from users and archives, and a crafted one must
// never name a path outside the store.
func (s *localStore) blobPath(dgst digest.Digest) (string, error) {
	if err := dgst.Validate(); err != nil {
		return "", fmt.Errorf("invalid digest %q: %w", dgst, errdefs.ErrInvalidArgument)
	}
	if dgst.Algorithm() != digest.SHA256 {
		return "", fmt.Errorf("unsupported digest algorithm %s: %w", dgst.Algorithm(), errdefs.ErrInvalidArgument)
	}
	return filepath.Join(s.blobs, dgst.Encoded()), nil
}

func (s *localStore) Info(ctx context.Context, dgst digest.Digest) (Info, error) {
	p, err := s.blobPath(dgst)
	if err != nil {
		return Info{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Info{}, fmt.Errorf("blob %s: %w", dgst, errdefs.ErrNotFound)
		}
		return Info{}, fmt.Errorf("blob %s: %w", dgst, err)
	}
	return Info{Digest: dgst, Size: fi.Size(), CreatedAt: fi.ModTime()}, nil
}

func (s *localStore) Open(ctx context.Context, dgst digest.Digest) (ReadSeekCloser, error) {
	p, err := s.blobPath(dgst)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("blob %s: %w", dgst, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("blob %s: %w", dgst, err)
	}
	return f, nil
}

func (s *localStore) Delete(ctx context.Context, dgst digest.Digest) error {
	p, err := s.blobPath(dgst)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("blob %s: %w", dgst, errdefs.ErrNotFound)
		}
		return fmt.Errorf("delete blob %s: %w", dgst, err)
	}
	return fsutil.SyncDir(s.blobs)
}

func (s *localStore) Walk(ctx context.Context, fn func(Info) error) error {
	entries, err := os.ReadDir(s.blobs)
	if err != nil {
		return fmt.Errorf("walk blobs: %w", err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		dgst := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if dgst.Validate() != nil || !e.Type().IsRegular() {
			continue // not a blob: never created by this store
		}
		fi, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted while walking
			}
			return fmt.Errorf("walk blobs: %w", err)
		}
		if err := fn(Info{Digest: dgst, Size: fi.Size(), CreatedAt: fi.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

func (s *localStore) Writer(ctx context.Context) (Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(s.ingest, "ingest-")
	if err != nil {
		return nil, fmt.Errorf("start ingest: %w", err)
	}
	return &localWriter{s: s, f: f, h: digest.SHA256.Hash()}, nil
}

// localWriter is one ingest: a temp file in root/ingest and a running hash.
type localWriter struct {
	s *localStore

	mu     sync.Mutex
	f      *os.File
	h      hash.Hash
	size   int64
	closed bool
	// flushed is how much of the file has been handed to writeback.
	flushed int64
}

// writebackChunk is how much an ingest writes before it asks the kernel to
// start writing it out. The commit's fsync then waits only for the tail
// instead of the whole blob: a 35 MB layer otherwise spent 30-200 ms in
// fsync here, on the pull's critical path, where the disk sat idle while
// the blob streamed in.
const writebackChunk = 8 << 20

func (w *localWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, fmt.Errorf("write to a closed ingest: %w", errdefs.ErrFailedPrecondition)
	}
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("write ingest: %w", err)
	}
	if w.size-w.flushed >= writebackChunk {
		w.flushed = fsutil.StartWriteback(int(w.f.Fd()), w.flushed, w.size, false)
	}
	return n, nil
}

// OpenIngest opens the ingest file read-only on its own descriptor, which
// keeps working after the ingest is committed (linked) or removed.
func (w *localWriter) OpenIngest() (IngestFile, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, fmt.Errorf("open a finished ingest: %w", errdefs.ErrFailedPrecondition)
	}
	f, err := os.Open(w.f.Name())
	if err != nil {
		return nil, fmt.Errorf("open ingest: %w", err)
	}
	return f, nil
}

func (w *localWriter) Digest() digest.Digest {
	w.mu.Lock()
	defer w.mu.Unlock()
	return digest.NewDigest(digest.SHA256, w.h)
}

func (w *localWriter) Size() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.size
}

func (w *localWriter) Commit(ctx context.Context, expected digest.Digest, expectedSize int64) (digest.Digest, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return "", fmt.Errorf("commit of a closed ingest: %w", errdefs.ErrFailedPrecondition)
	}
	// Whatever happens next, this ingest is finished.
	w.closed = true
	tmp := w.f.Name()
	defer os.Remove(tmp) // after a link (or a failure) the ingest name goes

	if err := ctx.Err(); err != nil {
		w.f.Close()
		return "", err
	}
	dgst := digest.NewDigest(digest.SHA256, w.h)
	if expected != "" && expected != dgst {
		w.f.Close()
		return "", fmt.Errorf("commit blob: digest mismatch: expected %s, got %s: %w", expected, dgst, errdefs.ErrInvalidArgument)
	}
	if expectedSize > 0 && expectedSize != w.size {
		w.f.Close()
		return "", fmt.Errorf("commit blob %s: size mismatch: expected %d bytes, got %d: %w", dgst, expectedSize, w.size, errdefs.ErrInvalidArgument)
	}
	target := filepath.Join(w.s.blobs, dgst.Encoded())
	if _, err := os.Stat(target); err == nil {
		w.f.Close()
		return dgst, nil // already there: keep the existing copy
	}
	// Blobs are immutable; make accidental writes fail.
	if err := w.f.Chmod(0o444); err != nil {
		w.f.Close()
		return "", fmt.Errorf("commit blob %s: %w", dgst, err)
	}
	if err := w.f.Sync(); err != nil {
		w.f.Close()
		return "", fmt.Errorf("commit blob %s: %w", dgst, err)
	}
	if err := w.f.Close(); err != nil {
		return "", fmt.Errorf("commit blob %s: %w", dgst, err)
	}
	// A hard link, unlike a rename, never replaces: when several writers
	// commit the same blob at once, the first wins and the rest see
	// EEXIST, and a reader never observes the file changing under it.
	if err := os.Link(tmp, target); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("commit blob %s: %w", dgst, err)
	}
	if err := fsutil.SyncDir(w.s.blobs); err != nil {
		return "", fmt.Errorf("commit blob %s: %w", dgst, err)
	}
	return dgst, nil
}

func (w *localWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	err := w.f.Close()
	if rerr := os.Remove(w.f.Name()); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("abandon ingest: %w", err)
	}
	return nil
}
