package builder

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/containerd/errdefs"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	goarchive "github.com/moby/go-archive"
	containertypes "github.com/moby/moby/api/types/container"
	"github.com/moby/sys/user"
)

// runStep runs a RUN instruction in a container on the stage's image and
// commits the container's changes as a layer.
func (r *run) runStep(ctx context.Context, st *stageState, c *instructions.RunCommand) error {
	if len(c.FlagsUsed) > 0 {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("RUN --%s needs BuildKit; berth's classic builder does not support it", c.FlagsUsed[0]))
	}
	var argv []string
	if c.PrependShell {
		script := strings.Join(c.CmdLine, " ")
		if len(c.Files) > 0 { // heredoc: the script is the document
			script = c.Files[0].Data
		}
		argv = append(shellOf(&st.cfg.Config), script)
	} else {
		argv = append([]string(nil), c.CmdLine...)
	}
	args := r.runArgs(st)
	createdBy := strings.Join(argv, " ")
	if len(args) > 0 {
		createdBy = fmt.Sprintf("|%d %s %s", len(args), strings.Join(args, " "), createdBy)
	}
	key := r.cacheKey(st, "run", createdBy, configDigest(st.cfg.Config))
	if r.useCache(ctx, st, key) {
		return nil
	}
	if st.id == "" {
		// FROM scratch: the container needs an image to start from.
		if err := r.commit(ctx, st, "", "/bin/sh -c #(nop)  FROM scratch", nil, ""); err != nil {
			return err
		}
	}
	if r.b.d.Steps != nil {
		done, err := r.runDirect(ctx, st, key, createdBy, argv, args)
		if done {
			return err
		}
	}
	// The container is made from the image in the store.
	if err := st.flush(); err != nil {
		return err
	}
	cfg := &containertypes.Config{
		Image:       st.id.String(),
		Cmd:         argv,
		Entrypoint:  []string{},
		Env:         args,
		User:        st.cfg.Config.User,
		WorkingDir:  st.cfg.Config.WorkingDir,
		Healthcheck: &containertypes.HealthConfig{Test: []string{"NONE"}},
		Labels:      map[string]string{},
	}
	hc := &containertypes.HostConfig{NetworkMode: containertypes.NetworkMode(r.opts.NetworkMode)}
	if r.opts.NetworkMode == "" || r.opts.NetworkMode == "default" {
		hc.NetworkMode = ""
	}
	created, err := r.b.d.Containers.Create(ctx, api.ContainerCreateRequest{Config: cfg, HostConfig: hc, Ephemeral: true})
	if err != nil {
		return fmt.Errorf("create container for RUN: %w", err)
	}
	id := created.ID
	defer func() {
		_ = r.b.d.Containers.Remove(context.WithoutCancel(ctx), id, api.RemoveOptions{Force: true, RemoveVolumes: true})
	}()
	fmt.Fprintf(r.out, " ---> Running in %s\n", id[:12])
	waitc, err := r.b.d.Containers.Wait(ctx, id, containertypes.WaitConditionNextExit)
	if err != nil {
		return err
	}
	if err := r.b.d.Containers.Start(ctx, id); err != nil {
		return fmt.Errorf("start container for RUN: %w", err)
	}
	logs, _, err := r.b.d.Containers.Logs(ctx, id, api.LogsOptions{Stdout: true, Stderr: true, Follow: true, Tail: -1})
	if err == nil {
		for m := range logs {
			if m.Err != nil {
				break
			}
			if !r.opts.Quiet {
				_, _ = r.out.Write(m.Line)
			}
		}
	}
	var res containertypes.WaitResponse
	select {
	case <-ctx.Done():
		return errCancelled
	case w, ok := <-waitc:
		if !ok {
			return errCancelled
		}
		res = w
	}
	if res.StatusCode != 0 {
		return &RunError{Cmd: strings.Join(argv, " "), Code: int(res.StatusCode)}
	}
	l, err := r.containerLayer(ctx, id, st.id.String() != "")
	if err != nil {
		return err
	}
	fmt.Fprintf(r.out, "Removing intermediate container %s\n", id[:12])
	return r.commit(ctx, st, key, createdBy, l, "")
}

// containerLayer stores the changes in container id's writable layer.
func (r *run) containerLayer(ctx context.Context, id string, _ bool) (*layer, error) {
	rc, err := r.b.ChangesTar(ctx, id)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return r.b.storeLayer(ctx, rc)
}

// ChangesTar returns the changes in the writable layer of snapshot key as a
// docker layer tar (".wh." whiteouts, opaque-directory markers, modes,
// owners, xattrs and hard links kept), leaving out the files the runtime
// makes as mount points (/etc/hosts, /etc/hostname, /etc/resolv.conf and
// empty /dev, /proc, /sys).
func (b *Builder) ChangesTar(ctx context.Context, key string) (io.ReadCloser, error) {
	mounts, err := b.d.Snapshots.Mounts(ctx, key)
	if err != nil {
		return nil, err
	}
	var idm user.IdentityMapping
	if b.d.IDMapping != nil {
		idm = b.d.IDMapping(key)
	}
	if upper, ok := snapshot.UpperDir(mounts); ok {
		return goarchive.TarWithOptions(upper, &goarchive.TarOptions{
			WhiteoutFormat:  goarchive.OverlayWhiteoutFormat,
			ExcludePatterns: mountPoints(upper),
			IDMap:           idm,
		})
	}
	info, err := b.d.Snapshots.Stat(ctx, key)
	if err != nil {
		return nil, err
	}
	dir := ""
	if len(mounts) == 1 && mounts[0].Type == "bind" {
		dir = mounts[0].Source
	}
	if dir == "" {
		return nil, fmt.Errorf("cannot compute the changes of snapshot %s", key)
	}
	if info.Parent == "" {
		return goarchive.TarWithOptions(dir, &goarchive.TarOptions{ExcludePatterns: mountPoints(dir), IDMap: idm})
	}
	// A copy-based snapshot: compare with its parent.
	vkey := "diff-" + key
	_ = b.d.Snapshots.Remove(ctx, vkey)
	vm, err := b.d.Snapshots.View(ctx, vkey, info.Parent)
	if err != nil {
		return nil, err
	}
	defer b.d.Snapshots.Remove(context.WithoutCancel(ctx), vkey)
	if len(vm) != 1 || vm[0].Type != "bind" {
		return nil, fmt.Errorf("cannot compute the changes of snapshot %s", key)
	}
	changes, err := goarchive.ChangesDirs(dir, vm[0].Source)
	if err != nil {
		return nil, err
	}
	excl := map[string]bool{}
	for _, p := range mountPoints(dir) {
		excl["/"+p] = true
	}
	kept := changes[:0]
	for _, c := range changes {
		if !excl[c.Path] {
			kept = append(kept, c)
		}
	}
	return goarchive.ExportChanges(dir, kept, idm)
}

// mountPoints lists the runtime's mount-point placeholders present in a
// writable layer: empty files and directories it had to create.
func mountPoints(root string) []string {
	var out []string
	for _, p := range []string{"etc/hosts", "etc/hostname", "etc/resolv.conf", ".dockerenv"} {
		if fi, err := os.Lstat(filepath.Join(root, p)); err == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
			out = append(out, p)
		}
	}
	// /etc itself, when the runtime's placeholders are all it holds (it
	// was copied up or made only for them).
	if ents, err := os.ReadDir(filepath.Join(root, "etc")); err == nil && len(ents) > 0 {
		only := true
		for _, e := range ents {
			if !slices.Contains(out, "etc/"+e.Name()) {
				only = false
				break
			}
		}
		if only {
			out = append(out, "etc")
		}
	}
	for _, p := range []string{"dev", "proc", "sys"} {
		if ents, err := os.ReadDir(filepath.Join(root, p)); err == nil && len(ents) == 0 {
			out = append(out, p)
		}
	}
	return out
}

// RunError is a RUN step whose command failed; the API reports its exit
// code in the error message's code, as docker does.
type RunError struct {
	Cmd  string
	Code int
}

func (e *RunError) Error() string {
	return fmt.Sprintf("The command '%s' returned a non-zero code: %d", e.Cmd, e.Code)
}

// ExitCode is the failed command's exit code.
func (e *RunError) ExitCode() int { return e.Code }
