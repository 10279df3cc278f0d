// Package snapshottest is the conformance suite every snapshot.Snapshotter
// runs (Suite), in the spirit of containerd's snapshotter test suite, and
// helpers to build layer tarballs and mount snapshots in tests.
package snapshottest

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/berth-engine/berth/internal/testutil"
	"github.com/opencontainers/go-digest"
)

// Entry is one entry of a generated layer tarball.
type Entry struct {
	Header tar.Header
	Body   []byte
}

// EntryOpt changes an Entry's header.
type EntryOpt func(*tar.Header)

// Mode sets an entry's permission bits (including setuid/setgid/sticky).
func Mode(m int64) EntryOpt { return func(h *tar.Header) { h.Mode = m } }

// Owner sets an entry's uid and gid.
func Owner(uid, gid int) EntryOpt { return func(h *tar.Header) { h.Uid, h.Gid = uid, gid } }

// Xattr adds an extended attribute to an entry.
func Xattr(name, value string) EntryOpt {
	return func(h *tar.Header) {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+name] = value
	}
}

// ModTime sets an entry's modification time.
func ModTime(t time.Time) EntryOpt { return func(h *tar.Header) { h.ModTime = t } }

// fixedTime keeps generated layers (and so their digests) reproducible.
var fixedTime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

func entry(h tar.Header, body []byte, opts []EntryOpt) Entry {
	h.ModTime = fixedTime
	h.Format = tar.FormatPAX
	for _, o := range opts {
		o(&h)
	}
	return Entry{Header: h, Body: body}
}

// File is a regular file (mode 0644 unless changed).
func File(name, content string, opts ...EntryOpt) Entry {
	return entry(tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content))}, []byte(content), opts)
}

// Dir is a directory (mode 0755 unless changed).
func Dir(name string, opts ...EntryOpt) Entry {
	return entry(tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755}, nil, opts)
}

// Symlink is a symbolic link name → target.
func Symlink(name, target string, opts ...EntryOpt) Entry {
	return entry(tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}, nil, opts)
}

// Hardlink is a hard link name → target (an earlier entry). Like the tar
// writers that make image layers, NewLayer gives it the target's mode,
// owner and times: unpacking applies a link entry's metadata to the inode.
func Hardlink(name, target string) Entry {
	return entry(tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}, nil, nil)
}

// CharDev is a character device node.
func CharDev(name string, major, minor int64, opts ...EntryOpt) Entry {
	return entry(tar.Header{Typeflag: tar.TypeChar, Name: name, Mode: 0o666, Devmajor: major, Devminor: minor}, nil, opts)
}

// Fifo is a named pipe.
func Fifo(name string, opts ...EntryOpt) Entry {
	return entry(tar.Header{Typeflag: tar.TypeFifo, Name: name, Mode: 0o600}, nil, opts)
}

// Whiteout deletes p (and everything under it) from the layers below.
func Whiteout(p string) Entry {
	dir, base := path.Split(p)
	return entry(tar.Header{Typeflag: tar.TypeReg, Name: dir + ".wh." + base, Mode: 0o600}, nil, nil)
}

// Opaque hides everything the layers below have in dir.
func Opaque(dir string) Entry {
	return entry(tar.Header{Typeflag: tar.TypeReg, Name: path.Join(dir, ".wh..wh..opq"), Mode: 0o600}, nil, nil)
}

// Layer is an uncompressed layer tarball and its diff ID.
type Layer struct {
	Tar    []byte
	DiffID digest.Digest
}

// NewLayer writes entries, in order, as an uncompressed tarball.
func NewLayer(t testing.TB, entries ...Entry) Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[string]tar.Header{}
	for _, e := range entries {
		h := e.Header
		if t, ok := seen[h.Linkname]; ok && h.Typeflag == tar.TypeLink {
			h.Mode, h.Uid, h.Gid, h.ModTime = t.Mode, t.Uid, t.Gid, t.ModTime
		}
		seen[h.Name] = h
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("layer entry %s: %v", h.Name, err)
		}
		if len(e.Body) > 0 {
			if _, err := tw.Write(e.Body); err != nil {
				t.Fatalf("layer entry %s: %v", h.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return Layer{Tar: buf.Bytes(), DiffID: digest.FromBytes(buf.Bytes())}
}

// ChainID is the OCI chain ID of a layer with diffID on top of parent ("" for
// a base layer).
func ChainID(parent, diffID digest.Digest) digest.Digest {
	if parent == "" {
		return diffID
	}
	return digest.FromString(parent.String() + " " + diffID.String())
}

// UnpackChain unpacks layers on top of each other and returns their chain
// IDs, base first.
func UnpackChain(t testing.TB, sn snapshot.Snapshotter, layers ...Layer) []digest.Digest {
	t.Helper()
	var (
		chains []digest.Digest
		parent digest.Digest
	)
	for i, l := range layers {
		chain := ChainID(parent, l.DiffID)
		if err := snapshot.Unpack(context.Background(), sn, parent.String(), chain, l.DiffID, bytes.NewReader(l.Tar)); err != nil {
			t.Fatalf("unpack layer %d: %v", i, err)
		}
		chains = append(chains, chain)
		parent = chain
	}
	return chains
}

// MountT mounts mounts on a new temporary directory and returns it; the
// mount is undone when the test ends, even if it fails.
func MountT(t testing.TB, mounts []snapshot.Mount) string {
	t.Helper()
	testutil.RequiresRoot(t)
	dir := t.TempDir()
	if err := snapshot.MountAll(mounts, dir); err != nil {
		t.Fatalf("mount %+v: %v", mounts, err)
	}
	t.Cleanup(func() {
		if err := snapshot.UnmountAll(dir); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// UnmountT unmounts a directory from MountT before the test ends.
func UnmountT(t testing.TB, dir string) {
	t.Helper()
	if err := snapshot.UnmountAll(dir); err != nil {
		t.Fatalf("unmount %s: %v", dir, err)
	}
}

// ReadFile returns a file's content, or "<missing>" if it does not exist.
func ReadFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return "<missing>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
