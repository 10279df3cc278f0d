// Package archive moves images in and out of berth as tarballs, in the
// formats docker uses: Import turns a root filesystem tarball into a
// one-layer image (docker import), Load reads what docker save writes (the
// legacy layout, Docker 25+'s OCI layout with manifest.json, and plain OCI
// image layouts), Save writes the Docker 25+ format, and OpenLayer gives the
// uncompressed stream of a stored layer whatever its compression.
//
// Everything that comes in is verified against its digests before anything
// is recorded, and a failed import or load leaves no image, tag or new blob
// behind.
package archive

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"

	"github.com/berth-engine/berth/internal/content"
	"github.com/containerd/errdefs"
	"github.com/moby/go-archive/compression"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types berth reads and writes that the OCI package does not name.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar"
	mediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mediaTypeDockerLayerZstd    = "application/vnd.docker.image.rootfs.diff.tar.zstd"

	// annotationImageName is containerd's annotation for the full image
	// name of an index entry (docker.io/library/busybox:latest).
	annotationImageName = "io.containerd.image.name"
)

// OpenLayer returns the uncompressed tar stream of a layer blob, whatever
// compression the blob is stored with (detected from its content, so a
// wrong media type does no harm). The caller closes it.
func OpenLayer(ctx context.Context, cs content.Reader, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := cs.Open(ctx, desc.Digest)
	if err != nil {
		return nil, fmt.Errorf("open layer %s: %w", desc.Digest, err)
	}
	dec, err := compression.DecompressStream(rc)
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("open layer %s: %w", desc.Digest, err)
	}
	return &layerReader{ReadCloser: dec, blob: rc}, nil
}

type layerReader struct {
	io.ReadCloser
	blob io.Closer
}

func (l *layerReader) Close() error {
	err := l.ReadCloser.Close()
	if berr := l.blob.Close(); err == nil {
		err = berr
	}
	return err
}

// detect peeks at the start of r and names its compression.
func detect(r *bufio.Reader) compression.Compression {
	head, _ := r.Peek(10)
	return compression.Detect(head)
}

// layerMediaType is the OCI media type of a layer blob compressed with c;
// "" when OCI has none (bzip2, xz), which berth then stores uncompressed.
func layerMediaType(c compression.Compression) string {
	switch c {
	case compression.None:
		return ocispec.MediaTypeImageLayer
	case compression.Gzip:
		return ocispec.MediaTypeImageLayerGzip
	case compression.Zstd:
		return ocispec.MediaTypeImageLayerZstd
	}
	return ""
}

// hostPlatform is the platform images are imported for by default and the
// one picked from multi-platform indexes on load.
func hostPlatform() ocispec.Platform {
	p := ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if runtime.GOARCH == "arm64" {
		p.Variant = "v8"
	}
	return p
}

// invalidf builds an input error: errdefs.ErrInvalidArgument with a message
// meant for the user, without a technical suffix.
func invalidf(format string, args ...any) error {
	return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf(format, args...))
}

// blobTxn commits blobs for one import or load and remembers which ones it
// created, so a failure later on can remove exactly those and nothing that
// was in the store before.
type blobTxn struct {
	cs      content.Store
	created []digest.Digest
	known   map[digest.Digest]bool
}

func newBlobTxn(cs content.Store) *blobTxn {
	return &blobTxn{cs: cs, known: map[digest.Digest]bool{}}
}

// commit commits w, which must hold expected.
func (t *blobTxn) commit(ctx context.Context, w content.Writer, expected digest.Digest, size int64) error {
	if t.known[expected] {
		return w.Close()
	}
	_, err := t.cs.Info(ctx, expected)
	existed := err == nil
	if err != nil && !errdefs.IsNotFound(err) {
		w.Close()
		return err
	}
	if _, err := w.Commit(ctx, expected, size); err != nil {
		return err
	}
	t.known[expected] = true
	if !existed {
		t.created = append(t.created, expected)
	}
	return nil
}

// put stores a small blob held in memory.
func (t *blobTxn) put(ctx context.Context, data []byte) (digest.Digest, error) {
	d := digest.FromBytes(data)
	if t.known[d] {
		return d, nil
	}
	w, err := t.cs.Writer(ctx)
	if err != nil {
		return "", err
	}
	if _, err := w.Write(data); err != nil {
		w.Close()
		return "", err
	}
	return d, t.commit(ctx, w, d, int64(len(data)))
}

// rollback deletes the blobs this transaction created. It runs after a
// failure, possibly with a cancelled context, so it uses its own.
func (t *blobTxn) rollback(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	for _, d := range t.created {
		if err := t.cs.Delete(ctx, d); err != nil && !errdefs.IsNotFound(err) {
			slog.Warn("remove blob of a failed image import", "digest", d, "err", err)
		}
	}
	t.created = nil
}

// ctxReader fails reads once ctx is done, so a long copy stops when the
// client goes away.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// errWriter remembers the first error of w, so a caller can tell a failing
// store (our problem) from a failing input (the user's).
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}
