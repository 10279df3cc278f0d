// Package content is berth's content-addressed blob store: image configs,
// manifests and layer tarballs, each stored once under its sha256 digest.
//
// Lifecycle of a blob: Writer → Write… → Commit(expected digest). Until Commit
// succeeds the blob is invisible to readers; Commit verifies the digest (and
// size, when given) of what was written, fsyncs it and renames it into place,
// so a crash or an interrupted ingest never leaves a visible partial blob.
// Abandoned ingests are removed the next time the store is opened.
package content

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// Info describes a committed blob.
type Info struct {
	Digest    digest.Digest
	Size      int64
	CreatedAt time.Time
}

// Reader opens committed blobs.
type Reader interface {
	// Info returns the blob's metadata, or an error matching
	// errdefs.ErrNotFound.
	Info(ctx context.Context, dgst digest.Digest) (Info, error)
	// Open returns the blob's bytes; the caller closes the reader.
	Open(ctx context.Context, dgst digest.Digest) (ReadSeekCloser, error)
}

// ReadSeekCloser is a committed blob opened for reading.
type ReadSeekCloser interface {
	io.ReadSeeker
	io.ReaderAt
	io.Closer
}

// Ingester starts new blobs.
type Ingester interface {
	// Writer starts an ingest. The caller must Commit or Close it.
	Writer(ctx context.Context) (Writer, error)
}

// Writer is an ingest in progress.
type Writer interface {
	io.Writer
	// Digest is the digest of everything written so far.
	Digest() digest.Digest
	// Size is the number of bytes written so far.
	Size() int64
	// Commit makes the blob visible under its digest. If expected is not
	// empty and differs from what was written, or expectedSize > 0 and
	// differs, Commit fails with an error matching errdefs.ErrInvalidArgument
	// and nothing is stored. Committing a blob that already exists succeeds
	// (the existing copy is kept). Commit closes the writer.
	Commit(ctx context.Context, expected digest.Digest, expectedSize int64) (digest.Digest, error)
	// Close abandons the ingest if it was not committed.
	Close() error
}

// IngestReader is an optional capability of a Writer: reading back the bytes
// of the ingest while it is still being written, so that a consumer (a
// layer being extracted during its download) can follow the download
// without the writer ever waiting for it. What it reads is NOT verified:
// the caller must not trust anything derived from it unless Commit
// succeeds. The reader stays valid after Commit or Close.
type IngestReader interface {
	OpenIngest() (IngestFile, error)
}

// IngestFile reads an ingest's bytes; the caller closes it.
type IngestFile interface {
	io.ReaderAt
	io.Closer
}

// Manager lists and deletes committed blobs.
type Manager interface {
	// Delete removes a blob; deleting a missing blob returns an error
	// matching errdefs.ErrNotFound.
	Delete(ctx context.Context, dgst digest.Digest) error
	// Walk calls fn for every committed blob.
	Walk(ctx context.Context, fn func(Info) error) error
}

// Store is the whole blob store.
type Store interface {
	Reader
	Ingester
	Manager
}

// ReadBlob reads a whole (small) blob into memory, refusing blobs larger than
// max bytes so a hostile config or manifest cannot exhaust memory.
func ReadBlob(ctx context.Context, r Reader, dgst digest.Digest, max int64) ([]byte, error) {
	rc, err := r.Open(ctx, dgst)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("blob %s is larger than %d bytes: %w", dgst, max, errdefs.ErrInvalidArgument)
	}
	return b, nil
}
