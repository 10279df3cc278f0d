package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/container"
	"github.com/berth-engine/berth/internal/image"
	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/berth-engine/berth/internal/stringid"
	"github.com/containerd/errdefs"
	containertypes "github.com/moby/moby/api/types/container"
)

// buildStepDir holds the bundles of build steps run by RunBuildStep; it is
// under the exec root and emptied at start-up.
func (c Config) buildStepDir() string { return filepath.Join(c.ExecRoot, "build") }

// RunBuildStep runs a build's RUN step as `<runtime> run`: the runtime,
// spec (namespaces, capabilities, seccomp, cgroup), network and /etc files
// are those of a container started by `run`, but there is no container
// record, shim, log file or event: the daemon holds the process's output
// pipe and exit status itself, for the one short run a step is. The root
// filesystem is the active snapshot req.SnapshotKey, prepared on the
// image and left for the caller. It returns the process's exit code.
//
// It fails with errdefs.ErrNotImplemented, before doing anything, where a
// step needs what only a container has (--userns-remap, image VOLUMEs,
// which docker mounts as anonymous volumes that discard the step's writes
// there); the caller then runs the step as a container.
//
// img, when given, is the image (whose record the builder may still be
// writing); else req.Image is looked up.
func (s *ContainerService) RunBuildStep(ctx context.Context, req api.BuildStepRequest, img *image.Image) (code int, retErr error) {
	if req.Config == nil || req.ID == "" || req.SnapshotKey == "" || req.Output == nil {
		return -1, errdefs.ErrInvalidArgument.WithMessage("build step: incomplete request")
	}
	t0 := time.Now()
	s.cgwarm.Keep(cgWarmFor)
	if img == nil {
		var err error
		if img, err = s.st.Images.Resolve(ctx, req.Image); err != nil {
			return -1, err
		}
	}
	cfg := *req.Config
	cfg.Image = img.ID.String()
	cfg.Entrypoint = nil
	hc := containertypes.HostConfig{NetworkMode: req.NetworkMode}
	if hc.NetworkMode == "default" {
		hc.NetworkMode = ""
	}
	if s.remappedHC(&hc) {
		return -1, errdefs.ErrNotImplemented.WithMessage("build steps under --userns-remap run as containers")
	}
	if len(img.Config.Config.Volumes) > 0 {
		return -1, errdefs.ErrNotImplemented.WithMessage("build steps on an image with volumes run as containers")
	}
	if _, err := s.validateHostConfig(&hc); err != nil {
		return -1, err
	}
	if s.st.Networks == nil {
		if err := checkNetwork(&hc); err != nil {
			return -1, err
		}
	}
	ns, err := initialNetworkSettings(&hc, nil)
	if err != nil {
		return -1, err
	}
	mergeImageConfig(&cfg, &img.Config.Config)
	if _, _, err := commandOf(&cfg); err != nil {
		return -1, err
	}
	if cfg.Hostname == "" {
		cfg.Hostname = req.ID[:stringid.ShortLen]
	}
	rt, err := s.st.Runtimes.Get(hc.Runtime)
	if err != nil {
		return -1, err
	}
	hc.Runtime = rt.Name

	tCheck := time.Since(t0)
	bundle := filepath.Join(s.cfg.buildStepDir(), req.ID)
	rootfs := filepath.Join(bundle, "rootfs")
	if err := os.MkdirAll(rootfs, 0o700); err != nil {
		return -1, fmt.Errorf("create bundle: %w", err)
	}
	// The root filesystem (its snapshot record is a synced write) is made
	// while the network, /etc files and spec are; both are done before
	// the runtime starts, and before anything is undone.
	var tSnap time.Duration
	snapc := make(chan error, 1)
	go func() {
		snapc <- func() error {
			defer func() { tSnap = time.Since(t0) }()
			top, err := s.unpack.ensure(ctx, img)
			if err != nil {
				return fmt.Errorf("unpack image %s: %w", img.ID, err)
			}
			mounts, err := s.st.Snapshots.Prepare(ctx, req.SnapshotKey, top)
			if err != nil {
				return fmt.Errorf("prepare root filesystem: %w", err)
			}
			// The writable layer is turned into a layer blob and then
			// dropped or kept as the layer's snapshot, which is no more
			// synced than an unpacked layer is: no syncs while the step
			// runs.
			if err := snapshot.MountAll(snapshot.Volatile(mounts), rootfs); err != nil {
				return fmt.Errorf("mount root filesystem: %w", err)
			}
			return nil
		}()
	}()
	waitSnap := sync.OnceValue(func() error { return <-snapc })
	defer func() {
		_ = waitSnap()
		if err := unmountRootfs(bundle); err != nil {
			s.log.Warn("unmount build step rootfs", "id", req.ID, "err", err)
			// The builder must not take a writable layer that is still
			// mounted for a finished one.
			if retErr == nil {
				retErr = fmt.Errorf("unmount build step root filesystem: %w", err)
			}
			return
		}
		_ = os.RemoveAll(bundle)
	}()
	c := &container.Container{
		ID:              req.ID,
		Created:         time.Now().UTC(),
		Config:          &cfg,
		HostConfig:      &hc,
		ImageID:         img.ID,
		Driver:          s.st.Snapshots.Name(),
		Runtime:         rt.Name,
		HostnamePath:    filepath.Join(bundle, "hostname"),
		HostsPath:       filepath.Join(bundle, "hosts"),
		ResolvConfPath:  filepath.Join(bundle, "resolv.conf"),
		NetworkSettings: ns,
		Ephemeral:       true,
	}
	// An entry of its own, never registered: the network helpers record
	// the endpoint on it.
	e := newEntry(c)
	netnsPath, err := s.setUpNetwork(e, c)
	if err != nil {
		return -1, err
	}
	defer s.tearDownNetwork(e)
	etc, err := s.etcFiles(c)
	if err != nil {
		return -1, err
	}
	if _, err := s.writeBundleSpec(c, bundle, rootfs, etc, netnsPath, nil); err != nil {
		return -1, err
	}
	if err := waitSnap(); err != nil {
		return -1, err
	}
	logPath := filepath.Join(bundle, "runtime.log")
	cmd := rt.Command(ctx, "--log", logPath, "--log-format", "json", "run", "--bundle", bundle, req.ID)
	// One writer for both streams: os/exec gives the process one pipe, so
	// the output keeps its order.
	cmd.Stdout, cmd.Stderr = req.Output, req.Output
	cmd.Dir = bundle
	cmd.Cancel = func() error {
		// A cancelled build stops the step: kill the container (its init
		// going takes every process of its pid namespace with it), and
		// `run` then deletes it and returns.
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if out, err := rt.Command(kctx, "kill", req.ID, "KILL").CombinedOutput(); err != nil {
			s.log.Warn("kill build step", "id", req.ID, "err", err, "output", string(out))
			return cmd.Process.Kill()
		}
		return nil
	}
	// Whatever happens to the container, the pipe closes once its pid
	// namespace is gone; this only bounds a runtime that hangs.
	cmd.WaitDelay = 30 * time.Second
	tPrep := time.Since(t0)
	if req.Starting != nil {
		req.Starting()
	}
	err = cmd.Run()
	s.log.Debug("build step ran", "id", req.ID, "prepare", tPrep, "checks", tCheck, "rootfs", tSnap-tCheck, "run", time.Since(t0)-tPrep, "err", err)
	var ee *exec.ExitError
	if ctx.Err() != nil || (err != nil && !errors.As(err, &ee)) {
		// `run` may have been killed itself (the cancel came before its
		// container existed, or it hung): make sure the container is gone.
		s.forceDelete(context.WithoutCancel(ctx), rt.Name, req.ID)
		if ctx.Err() != nil {
			return -1, ctx.Err()
		}
		return -1, fmt.Errorf("run build step: %w", err)
	}
	if msg := strings.TrimSpace(lastRuntimeError(logPath)); msg != "" {
		// The runtime failed before or instead of the process (an
		// executable not found, a spec it refused): docker reports that
		// as the step's error, not as an exit code.
		return -1, fmt.Errorf("OCI runtime run failed: %s", msg)
	}
	return cmd.ProcessState.ExitCode(), nil
}

// cleanBuildSteps removes what a crash left of build steps: their rootfs
// mounts and bundles. Their runtime containers are deleted with the other
// ones no record owns (stopStrayShims), their snapshots by the builder.
func (s *ContainerService) cleanBuildSteps() {
	dirs, _ := filepath.Glob(filepath.Join(s.cfg.buildStepDir(), "*"))
	for _, b := range dirs {
		if err := unmountRootfs(b); err != nil {
			s.log.Warn("unmount leftover build step rootfs", "bundle", b, "err", err)
			continue
		}
		_ = os.RemoveAll(b)
	}
}
