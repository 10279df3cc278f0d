package snapshot

import (
	"bufio"
	"context"
	"crypto/rand"
	_ "crypto/sha256" // digest algorithms used by layer diff IDs
	_ "crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

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
	pr, pw := io.Pipe()
	copied := make(chan error, 1)
	go func() {
		err := copyFull(io.MultiWriter(pw, digester.Hash()), ctxReader{ctx: ctx, r: layer}, make([]byte, 1<<20))
		pw.CloseWithError(err)
		copied <- err
	}()

	br := bufio.NewReaderSize(pr, 1<<20)
	err := applyLayer(mounts, br)
	if err == nil {
		// Hash the rest: tar padding after the end marker is part of the blob.
		_, err = io.Copy(io.Discard, br)
	}
	pr.CloseWithError(errApplyDone)
	cerr := <-copied
	if err != nil {
		if cerr != nil && !errors.Is(cerr, errApplyDone) && !errors.Is(cerr, io.ErrClosedPipe) {
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

// copyFull copies src to dst in chunks as big as buf: every write is a
// hand-over to the unpacker's thread, which is locked to its chroot, so
// each one costs a couple of thread switches. Decompressors return at most
// their window (32 KiB for gzip) per read; filling buf first cuts the
// hand-overs some thirty-fold.
func copyFull(dst io.Writer, src io.Reader, buf []byte) error {
	for {
		// Not io.ReadFull: it would turn a stream that breaks off
		// (io.ErrUnexpectedEOF from a decompressor) into a clean end.
		n := 0
		var err error
		for n < len(buf) && err == nil {
			var k int
			k, err = src.Read(buf[n:])
			n += k
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

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
