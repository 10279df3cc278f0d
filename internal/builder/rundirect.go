package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/image"
	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/berth-engine/berth/internal/stringid"
	"github.com/containerd/errdefs"
	containertypes "github.com/moby/moby/api/types/container"
	"github.com/opencontainers/go-digest"
)

// stepSnapshotPrefix starts the keys of RUN steps' writable snapshots; New
// removes the ones a crash left.
const stepSnapshotPrefix = "build-step-"

// runDirect runs a RUN step through Deps.Steps: the runtime straight from
// the daemon, without a container record or shim. Its writable snapshot
// becomes the new layer's snapshot (as an unpack of that layer would have
// made it), so the next step does not extract the layer it just wrote.
// done is false when the step needs a container instead (nothing ran).
func (r *run) runDirect(ctx context.Context, st *stageState, key, createdBy string, argv, env []string) (done bool, err error) {
	id := stringid.Generate()
	snapKey := stepSnapshotPrefix + id
	var out io.Writer = r.out
	if r.opts.Quiet {
		out = io.Discard
	}
	kept := false
	defer func() {
		if !kept {
			if err := r.b.d.Snapshots.Remove(context.WithoutCancel(ctx), snapKey); err != nil && !errdefs.IsNotFound(err) {
				r.b.log.Warn("remove build step snapshot", "key", snapKey, "err", err)
			}
		}
	}()
	started := false
	r.startPrefetch(ctx, st)
	code, err := r.b.d.Steps.RunBuildStep(ctx, api.BuildStepRequest{
		ID:          id,
		Image:       st.id.String(),
		SnapshotKey: snapKey,
		Config: &containertypes.Config{
			Cmd:        argv,
			Env:        env,
			User:       st.cfg.Config.User,
			WorkingDir: st.cfg.Config.WorkingDir,
		},
		NetworkMode: containertypes.NetworkMode(r.opts.NetworkMode),
		Output:      out,
		Starting: func() {
			started = true
			fmt.Fprintf(r.out, " ---> Running in %s\n", id[:12])
		},
	}, st.img)
	if err != nil && !started && errdefs.IsNotImplemented(err) {
		return false, nil
	}
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, context.Canceled) {
			return true, errCancelled
		}
		return true, err
	}
	if code != 0 {
		return true, &RunError{Cmd: strings.Join(argv, " "), Code: code}
	}
	t0 := time.Now()
	rc, err := r.b.ChangesTar(ctx, snapKey)
	if err != nil {
		return true, err
	}
	l, err := r.b.writeLayer(ctx, rc)
	rc.Close()
	if err != nil {
		return true, err
	}
	tLayer := time.Since(t0)
	// The snapshot is kept while the blobs and the image are stored
	// (separate stores: their syncs overlap); the next step needs it.
	var tKeep time.Duration
	keepDone := make(chan struct{})
	parent := slices.Clone(st.cfg.RootFS.DiffIDs)
	go func() {
		defer close(keepDone)
		var err error // a panic: the snapshot is not kept
		defer recoverInto(r.b.log, "keeping a RUN step's snapshot", &err)
		kept = r.keepSnapshot(ctx, parent, snapKey, l)
		tKeep = time.Since(t0) - tLayer
	}()
	fmt.Fprintf(r.out, "Removing intermediate container %s\n", id[:12])
	err = r.commit(ctx, st, key, createdBy, l, "")
	<-keepDone
	r.b.log.Debug("build step committed", "id", id, "layer", tLayer, "keep", tKeep, "kept", kept, "total", time.Since(t0))
	return true, err
}

// keepSnapshot commits the step's writable snapshot as the snapshot of
// the image it makes (chain ID of the parent's layers plus l), once the
// runtime's mount-point placeholders, which the layer leaves out, are
// gone from it too. Only an overlay upper directory without an ID mapping
// is the layer's exact tree; otherwise, or if that chain is unpacked
// already, the caller removes the snapshot and the layer is unpacked when
// a container needs it.
func (r *run) keepSnapshot(ctx context.Context, parentDiffIDs []digest.Digest, snapKey string, l *layer) bool {
	if r.b.d.IDMapping != nil && !r.b.d.IDMapping(snapKey).Empty() {
		return false
	}
	mounts, err := r.b.d.Snapshots.Mounts(ctx, snapKey)
	if err != nil {
		return false
	}
	upper, ok := snapshot.UpperDir(mounts)
	if !ok {
		return false
	}
	diffIDs := append([]digest.Digest(nil), parentDiffIDs...)
	diffIDs = append(diffIDs, l.diffID)
	chains := image.ChainIDs(diffIDs)
	chain := chains[len(chains)-1].String()
	if _, err := r.b.d.Snapshots.Stat(ctx, chain); err == nil {
		return false
	}
	for _, p := range mountPoints(upper) {
		if err := os.RemoveAll(filepath.Join(upper, p)); err != nil {
			return false
		}
	}
	if err := r.b.d.Snapshots.Commit(ctx, chain, snapKey); err != nil {
		if !errdefs.IsAlreadyExists(err) {
			r.b.log.Warn("keep build step snapshot", "chain", chain, "err", err)
		}
		return false
	}
	return true
}
