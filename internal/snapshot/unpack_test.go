package snapshot_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/berth-engine/berth/internal/snapshot/overlay"
	st "github.com/berth-engine/berth/internal/snapshot/snapshottest"
	"github.com/berth-engine/berth/internal/snapshot/vfs"
	"github.com/opencontainers/go-digest"
)

// FuzzUnpack feeds arbitrary bytes to Unpack, as a base layer and on top
// of one, on both drivers: it must never panic, never write outside the
// snapshot, and leave nothing behind when it fails.
func FuzzUnpack(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("requires root: unpacking chroots and mounts")
	}
	outside := f.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
		f.Fatal(err)
	}
	rel := strings.TrimPrefix(outside, "/")
	up := strings.Repeat("../", 24)
	seeds := [][]st.Entry{
		{st.File("a", "a"), st.Dir("d"), st.File("d/b", "b", st.Mode(0o4755), st.Owner(1, 2))},
		{st.Whiteout("a"), st.Opaque("d"), st.File("d/c", "c")},
		{st.File("../escaped", "x")},
		{st.Symlink("l", outside), st.File("l/escaped", "x")},
		{st.Symlink("r", up+rel), st.File("r/escaped", "x")},
		{st.Symlink("root", "/"), st.File("root/"+rel+"/escaped", "x")},
		{st.Hardlink("h", secret)},
		{st.Symlink("l", outside), st.Whiteout("l/secret")},
		{st.Symlink("l", outside), st.Opaque("l")},
		{st.CharDev("null", 1, 3), st.Fifo("p"), st.Hardlink("h", "null")},
	}
	for _, s := range seeds {
		f.Add(st.NewLayer(f, s...).Tar)
	}
	f.Add([]byte{})
	f.Add([]byte("not a tarball"))

	type store struct {
		sn   snapshot.Snapshotter
		base digest.Digest
	}
	var stores []store
	for _, open := range []func(string) (snapshot.Snapshotter, error){vfs.New, overlay.New} {
		sn, err := open(f.TempDir())
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { sn.Close() })
		base := st.UnpackChain(f, sn, st.NewLayer(f, st.File("a", "a"), st.Dir("d"), st.File("d/x", "x")))[0]
		stores = append(stores, store{sn, base})
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		diffID := digest.FromBytes(data)
		for _, s := range stores {
			for _, parent := range []digest.Digest{"", s.base} {
				chain := st.ChainID(parent, diffID)
				if chain == s.base {
					continue
				}
				err := snapshot.Unpack(t.Context(), s.sn, parent.String(), chain, diffID, bytes.NewReader(data))
				if err == nil {
					if err := s.sn.Remove(t.Context(), chain.String()); err != nil {
						t.Fatal(err)
					}
				}
				entries, _ := os.ReadDir(outside)
				if len(entries) != 1 {
					t.Fatalf("%s: unpack wrote into %s: %v", s.sn.Name(), outside, entries)
				}
				if b, err := os.ReadFile(secret); err != nil || string(b) != "secret" {
					t.Fatalf("%s: secret changed: %q %v", s.sn.Name(), b, err)
				}
				n := 0
				if err := s.sn.Walk(t.Context(), func(snapshot.Info) error { n++; return nil }); err != nil {
					t.Fatal(err)
				}
				if n != 1 {
					t.Fatalf("%s: %d snapshots after unpack, want only the base", s.sn.Name(), n)
				}
			}
		}
	})
}
