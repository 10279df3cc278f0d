package engine

import (
	"context"
	"fmt"
	"sync"

	"github.com/berth-engine/berth/internal/image"
	"github.com/berth-engine/berth/internal/image/archive"
	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// unpacker makes sure an image's layers are unpacked in the snapshotter, each
// chain once, even when several creates ask for it at the same time.
type unpacker struct {
	st Stores
	mu sync.Mutex
	// inflight holds a lock per chain ID being unpacked.
	inflight map[digest.Digest]*sync.Mutex
}

func newUnpacker(st Stores) *unpacker {
	return &unpacker{st: st, inflight: map[digest.Digest]*sync.Mutex{}}
}

func (u *unpacker) lock(chain digest.Digest) func() {
	u.mu.Lock()
	m, ok := u.inflight[chain]
	if !ok {
		m = &sync.Mutex{}
		u.inflight[chain] = m
	}
	u.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// ensure unpacks every layer of img that is not unpacked yet and returns the
// chain ID of the top layer ("" for an image without layers).
func (u *unpacker) ensure(ctx context.Context, img *image.Image) (string, error) {
	diffIDs := img.Config.RootFS.DiffIDs
	if len(diffIDs) != len(img.Layers) {
		return "", fmt.Errorf("image %s has %d layers but %d diff IDs", img.ID, len(img.Layers), len(diffIDs))
	}
	chains := image.ChainIDs(diffIDs)
	parent := ""
	for i, chain := range chains {
		if _, err := u.st.Snapshots.Stat(ctx, chain.String()); err == nil {
			parent = chain.String()
			continue
		} else if !errdefs.IsNotFound(err) {
			return "", err
		}
		unlock := u.lock(chain)
		err := u.unpackLayer(ctx, img, i, parent, chain)
		unlock()
		if err != nil {
			return "", err
		}
		parent = chain.String()
	}
	return parent, nil
}

func (u *unpacker) unpackLayer(ctx context.Context, img *image.Image, i int, parent string, chain digest.Digest) error {
	if _, err := u.st.Snapshots.Stat(ctx, chain.String()); err == nil {
		return nil // another create unpacked it while we waited
	}
	rc, err := archive.OpenLayer(ctx, u.st.Content, img.Layers[i])
	if err != nil {
		return fmt.Errorf("open layer %s: %w", img.Layers[i].Digest, err)
	}
	defer rc.Close()
	if err := snapshot.Unpack(ctx, u.st.Snapshots, parent, chain, img.Config.RootFS.DiffIDs[i], rc); err != nil {
		return fmt.Errorf("unpack layer %s: %w", img.Layers[i].Digest, err)
	}
	return nil
}
