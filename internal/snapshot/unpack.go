package snapshot

import (
	"context"
	"crypto/rand"
	_ "crypto/sha256" // digest algorithms used by layer diff IDs
	_ "crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/moby/go-archive"
	"github.com/moby/go-archive/chrootarchive"
	"github.com/opencontainers/go-digest"
)

// ExtractPrefix starts the key of the active snapshot a layer is unpacked
// into. Snapshotters delete active snapshots with this prefix when they open:
// they are what an interrupted unpack leaves behind.
const ExtractPrefix = "extract-"

// Unpack applies layer, an UNCOMPRESSED layer tarball whose digest is diffID,
// on top of the committed snapshot parent ("" for a base layer) and commits
// the result as chainID.
//
// The layer has docker's semantics: ".wh.name" deletes name and
// ".wh..wh..opq" makes its directory opaque; ownership, modes, xattrs, hard
// links, symlinks and device nodes are kept. The tarball is untrusted: it is
// unpacked chrooted into the snapshot (moby/go-archive), so no entry can
// write outside it.
//
// If chainID is already committed Unpack returns nil without reading layer.
// Concurrent Unpacks of one chainID all succeed and leave one snapshot. If
// the stream does not hash to diffID, nothing is committed and the error is
// errdefs.ErrInvalidArgument.
func Unpack(ctx context.Context, sn Snapshotter, parent string, chainID, diffID digest.Digest, layer io.Reader) (retErr error) {
	if err := diffID.Validate(); err != nil {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("unpack layer: diff ID %q: %v", diffID, err))
	}
	if err := chainID.Validate(); err != nil {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("unpack layer %s: chain ID %q: %v", diffID, chainID, err))
	}
	if err := checkChainID(parent, chainID, diffID); err != nil {
		return err
	}
	if done, err := committed(ctx, sn, chainID.String()); done || err != nil {
		return err
	}

	key, err := extractKey(chainID)
	if err != nil {
		return err
	}
	mounts, err := sn.Prepare(ctx, key, parent, WithLabels(map[string]string{"berth.unpack.diffid": diffID.String()}))
	if err != nil {
		if errdefs.IsAlreadyExists(err) {
			// Only a committed chainID could collide here; the key is random.
			if done, cerr := committed(ctx, sn, chainID.String()); done || cerr != nil {
				return cerr
			}
		}
		return fmt.Errorf("unpack layer %s: %w", diffID, err)
	}
	defer func() {
		if retErr != nil {
			if err := sn.Remove(context.WithoutCancel(ctx), key); err != nil && !errdefs.IsNotFound(err) {
				slog.Warn("remove snapshot of failed unpack", "key", key, "err", err)
			}
		}
	}()

	got, err := applyVerified(ctx, mounts, diffID.Algorithm(), layer)
	if err != nil {
		return fmt.Errorf("unpack layer %s: %w", diffID, err)
	}
	if got != diffID {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("unpack layer %s: content has digest %s", diffID, got))
	}

	if err := sn.Commit(ctx, chainID.String(), key); err != nil {
		if errdefs.IsAlreadyExists(err) {
			// Someone else unpacked the same chain first: theirs wins and ours
			// is dropped, as long as theirs really is committed.
			if done, cerr := committed(ctx, sn, chainID.String()); done && cerr == nil {
				if rerr := sn.Remove(context.WithoutCancel(ctx), key); rerr != nil && !errdefs.IsNotFound(rerr) {
					slog.Warn("remove duplicate unpack", "key", key, "err", rerr)
				}
				return nil
			}
		}
		return fmt.Errorf("unpack layer %s: commit %s: %w", diffID, chainID, err)
	}
	return nil
}

// committed reports whether name exists as a committed snapshot. A name that
// exists in another state is an error: Unpack must not shadow it.
func committed(ctx context.Context, sn Snapshotter, name string) (bool, error) {
	info, err := sn.Stat(ctx, name)
	switch {
	case errdefs.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("unpack %s: %w", name, err)
	case info.Kind != KindCommitted:
		return false, fmt.Errorf("unpack %s: a snapshot of kind %s has that name: %w", name, info.Kind, errdefs.ErrFailedPrecondition)
	}
	return true, nil
}

// checkChainID rejects a chain ID that does not follow from its parent's
// and the layer's diff ID (OCI image-spec "ChainID"): a wrong one would be
// cached under a name that later images trust. Parents not named by a
// digest are not checked.
func checkChainID(parent string, chainID, diffID digest.Digest) error {
	var want digest.Digest
	if parent == "" {
		want = diffID
	} else if p, err := digest.Parse(parent); err == nil {
		want = digest.Canonical.FromString(p.String() + " " + diffID.String())
	} else {
		return nil
	}
	if chainID != want {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("unpack layer %s: chain ID %s does not match parent %q (want %s)", diffID, chainID, parent, want))
	}
	return nil
}

func extractKey(chainID digest.Digest) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("unpack %s: %w", chainID, err)
	}
	return ExtractPrefix + hex.EncodeToString(b[:]) + " " + chainID.String(), nil
}

// applyVerified applies the layer stream to the tree behind mounts and
// returns the digest of the whole stream (including what follows the tar
// end marker, which the unpacker does not read).
//
// The unpacker runs on a chrooted thread, so it reads from a pipe that this
// goroutine fills: the caller's reader never runs inside the chroot.
func applyVerified(ctx context.Context, mounts []Mount, alg digest.Algorithm, layer io.Reader) (digest.Digest, error) {
	if !alg.Available() {
		return "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("digest algorithm %q is not available", alg))
	}
	digester := alg.Digester()
	cp := newChunkPipe(2, 1<<20)
	copied := make(chan error, 1)
	go func() {
		copied <- cp.fill(ctxReader{ctx: ctx, r: layer}, digester.Hash())
	}()

	err := applyLayer(mounts, cp)
	if err == nil {
		// Hash the rest: tar padding after the end marker is part of the blob.
		_, err = io.Copy(io.Discard, cp)
	}
	cp.closeRead()
	cerr := <-copied
	if err != nil {
		if cerr != nil && !errors.Is(cerr, errApplyDone) {
			return "", fmt.Errorf("read layer: %w", cerr)
		}
		return "", err
	}
	if cerr != nil {
		return "", fmt.Errorf("read layer: %w", cerr)
	}
	return digester.Digest(), nil
}

var errApplyDone = errors.New("layer apply finished")

// chunkPipe hands the decompressed layer to the unpacker in whole chunks.
// The unpacker runs on a thread locked in its chroot, so every hand-over
// costs a couple of thread switches: decompressors return at most their
// window (32 KiB for gzip) per read, and the chunks are filled first, which
// cuts the hand-overs some thirty-fold. The unpacker reads the chunks in
// place (no copy into a buffer of its own) and hands them back; with two,
// decompression runs one chunk ahead.
type chunkPipe struct {
	full chan []byte // filled chunks, in order; closed at the end
	free chan []byte // chunks to fill again
	done chan struct{}
	once sync.Once
	// werr is why the stream ended early (nil: the end); set before full
	// is closed.
	werr error

	cur, buf []byte // the reader's chunk: unread part, whole buffer
}

func newChunkPipe(n, size int) *chunkPipe {
	p := &chunkPipe{full: make(chan []byte, n), free: make(chan []byte, n), done: make(chan struct{})}
	for range n {
		p.free <- make([]byte, size)
	}
	return p
}

// fill copies src into chunks, hashing each, until src ends (nil), fails
// (its error) or the reader is done (errApplyDone).
func (p *chunkPipe) fill(src io.Reader, h hash.Hash) (err error) {
	defer func() {
		p.werr = err
		close(p.full)
	}()
	for {
		var b []byte
		select {
		case b = <-p.free:
		case <-p.done:
			return errApplyDone
		}
		// Not io.ReadFull: it would turn a stream that breaks off
		// (io.ErrUnexpectedEOF from a decompressor) into a clean end.
		n := 0
		var rerr error
		for n < len(b) && rerr == nil {
			var k int
			k, rerr = src.Read(b[n:])
			n += k
		}
		if n > 0 {
			h.Write(b[:n])
			select {
			case p.full <- b[:n]:
			case <-p.done:
				return errApplyDone
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

func (p *chunkPipe) Read(b []byte) (int, error) {
	for len(p.cur) == 0 {
		if p.buf != nil {
			// Never blocks: free has room for every chunk there is.
			p.free <- p.buf[:cap(p.buf)]
			p.buf = nil
		}
		c, ok := <-p.full
		if !ok {
			if p.werr != nil {
				return 0, p.werr
			}
			return 0, io.EOF
		}
		p.buf, p.cur = c, c
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

// closeRead tells the writer that nothing more will be read.
func (p *chunkPipe) closeRead() { p.once.Do(func() { close(p.done) }) }

// ctxReader stops reading once ctx is done, so a cancelled pull stops
// unpacking at the next read.
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

// applyLayer unpacks the tar stream r into the tree that mounts describe,
// picking the cheapest faithful way:
//   - an overlay with an upper dir: unpack into the (empty) upper dir, turning
//     docker whiteouts into overlay whiteouts (0/0 char devices and
//     trusted.overlay.opaque=y), as docker's overlay2 driver does;
//   - a single writable bind mount: unpack into its source, applying
//     whiteouts as deletions (vfs, or an overlay base layer);
//   - anything else: mount it on a temporary directory and unpack there.
func applyLayer(mounts []Mount, r io.Reader) error {
	if upper, ok := UpperDir(mounts); ok {
		return chrootarchive.UntarUncompressed(r, upper, &archive.TarOptions{WhiteoutFormat: archive.OverlayWhiteoutFormat})
	}
	if len(mounts) == 1 && mounts[0].Type == "bind" && !readOnly(mounts[0].Options) {
		_, err := chrootarchive.ApplyUncompressedLayer(mounts[0].Source, r, &archive.TarOptions{})
		return err
	}
	dir, err := os.MkdirTemp("", "berth-unpack-")
	if err != nil {
		return err
	}
	defer os.Remove(dir)
	if err := MountAll(mounts, dir); err != nil {
		return err
	}
	_, err = chrootarchive.ApplyUncompressedLayer(dir, r, &archive.TarOptions{})
	if uerr := UnmountAll(dir); uerr != nil && err == nil {
		err = uerr
	}
	return err
}

// UpperDir returns the writable upper directory of a single overlay mount:
// the place an unpacker writes a layer into directly, and the change set a
// differ (docker commit / build, not built yet) reads on overlay2.
func UpperDir(mounts []Mount) (string, bool) {
	if len(mounts) != 1 || mounts[0].Type != "overlay" {
		return "", false
	}
	for _, o := range mounts[0].Options {
		if v, ok := strings.CutPrefix(o, "upperdir="); ok {
			return v, true
		}
	}
	return "", false
}
