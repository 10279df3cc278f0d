package main

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
)

// sharedPodmanConf is the team's containers.conf for podman on these VMs
// (cgroupfs, file events, runc, rlimits that fit).
const sharedPodmanConf = "/work/shared/peers/podman-containers.conf"

// embeddedPodmanConf is a copy of it, used where that file does not exist.
//
//go:embed podman-containers.conf
var embeddedPodmanConf []byte

// podmanEngine is podman (no daemon: each container gets a conmon) on a
// private storage root, run root, tmpdir and network config dir.
type podmanEngine struct {
	*base
}

func newPodman(root, conf string) (*podmanEngine, error) {
	cli, err := exec.LookPath("podman")
	if err != nil {
		return nil, fmt.Errorf("podman: %w", err)
	}
	b, err := newBase("podman", root, cli)
	if err != nil {
		return nil, err
	}
	p := &podmanEngine{base: b}
	b.globalArgs = []string{
		"--root", filepath.Join(b.dir, "root"),
		"--runroot", filepath.Join(b.dir, "run"),
		"--tmpdir", filepath.Join(b.dir, "libpod"),
		"--network-config-dir", filepath.Join(b.dir, "net"),
		"--cgroup-manager", "cgroupfs",
		"--events-backend", "file",
	}
	b.ownNames = []string{"podman", "conmon"}
	// What podman 4.3 creates outside --root/--runroot/--tmpdir (found by
	// diffing the host before/after a run), files before their dirs.
	b.footprint = newFootprint([]string{"podman", "conmon"},
		hostPath{Path: "/var/lib/containers/cache/blob-info-cache-v1.boltdb"},
		hostPath{Path: "/var/lib/containers/cache", Dir: true},
		hostPath{Path: "/var/lib/containers", Dir: true},
		hostPath{Path: "/var/cache/containers/short-name-aliases.conf.lock"},
		hostPath{Path: "/var/cache/containers", Dir: true},
		hostPath{Path: "/run/containers/networks", Dir: true},
		hostPath{Path: "/run/containers", Dir: true},
		hostPath{Path: "/run/runc", Dir: true},
		hostPath{Path: "/dev/shm/libpod_lock"},
	)
	if conf == "" {
		conf = sharedPodmanConf
		if _, err := os.Stat(conf); err != nil {
			conf = filepath.Join(p.dir, "containers.conf")
			if err := os.WriteFile(conf, embeddedPodmanConf, 0o644); err != nil {
				return nil, err
			}
		}
	}
	storageConf := filepath.Join(p.dir, "storage.conf")
	sc := fmt.Sprintf("[storage]\ndriver = \"overlay\"\ngraphroot = %q\nrunroot = %q\n",
		filepath.Join(p.dir, "root"), filepath.Join(p.dir, "run"))
	if err := os.WriteFile(storageConf, []byte(sc), 0o644); err != nil {
		return nil, err
	}
	tmp := filepath.Join(p.dir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, err
	}
	p.env = cleanEnv("CONTAINERS_CONF="+conf, "CONTAINERS_STORAGE_CONF="+storageConf, "TMPDIR="+tmp)
	p.info.DaemonArgs = []string{"CONTAINERS_CONF=" + conf}
	b.hostState = func() error { return removeRuncState(runcRoot, b.dir) }
	b.info.Version = firstLine(cli, "--version")
	return p, nil
}

// runcRoot is where runc keeps container state when podman runs it as root.
// podman cannot be pointed elsewhere reliably: --runtime-flag root=… is not
// passed on to the `podman container cleanup` that conmon runs at exit.
const runcRoot = "/run/runc"

// removeRuncState removes runc's state of the runner's podman containers:
// the entries of root whose state.json names the podman state directory.
// Normally podman deletes them itself; an interrupted run can leave some.
func removeRuncState(root, stateDir string) error {
	ents, err := os.ReadDir(root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	var errs []error
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(root, e.Name(), "state.json"))
		if err != nil || !bytes.Contains(b, []byte(stateDir+"/")) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(root, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RunFlags puts podman's containers (and their conmons) under the runner's
// private cgroup parent, as the daemons' --cgroup-parent does for the others.
func (p *podmanEngine) RunFlags() []string {
	return []string{"--cgroup-parent", p.cgroupParent}
}

func (p *podmanEngine) Start(ctx context.Context, tarPath string) error {
	return p.importImage(ctx, tarPath, "import", "-c", `CMD ["sh"]`, "-", "busybox:latest")
}

func (p *podmanEngine) Stop(ctx context.Context) error {
	p.stopOnce.Do(func() {
		var errs []error
		if _, err := p.cliOutput(ctx, "rm", "-af", "-t", "0"); err != nil {
			errs = append(errs, err)
		}
		errs = append(errs, p.teardown())
		p.stopErr = errors.Join(errs...)
	})
	return p.stopErr
}
