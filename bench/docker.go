package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// dockerEngine is dockerd (with the containerd it starts itself) on a
// private data-root, exec-root, socket and pidfile. It touches no iptables
// rules (the jobs use --network none): dockerd's FORWARD DROP policy would
// otherwise break bridge traffic of everything else on the host.
type dockerEngine struct {
	*base
	dockerd string
	socket  string
	// bridge, when set (job n), is a bridge the runner made for dockerd's
	// default network; still no iptables: published ports go through
	// docker-proxy, docker's default for host-local clients.
	bridge string
}

func newDocker(root, cli string) (*dockerEngine, error) {
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		return nil, fmt.Errorf("docker: %w", err)
	}
	b, err := newBase("docker", root, cli)
	if err != nil {
		return nil, err
	}
	d := &dockerEngine{base: b, dockerd: dockerd, socket: filepath.Join(b.dir, "d.sock")}
	b.env = cleanEnv("DOCKER_HOST=unix://"+d.socket, "DOCKER_CONFIG="+filepath.Join(b.dir, "cli"))
	b.ownNames = []string{"dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "docker-proxy"}
	// What dockerd 20.10 and its containerd create outside --data-root and
	// --exec-root on first start (found by diffing the host before/after).
	b.footprint = newFootprint([]string{"dockerd", "containerd"},
		hostPath{Path: "/etc/docker/key.json"},
		hostPath{Path: "/run/docker/plugins", Dir: true},
		hostPath{Path: "/run/docker", Dir: true},
		hostPath{Path: "/run/containerd/s", Dir: true},
		hostPath{Path: "/run/containerd", Dir: true},
	)
	b.info.Version = firstLine(dockerd, "--version")
	b.info.CLIVersion = firstLine(cli, "--version")
	return d, nil
}

func (d *dockerEngine) Start(ctx context.Context, tarPath string) error {
	// An explicit (empty but for the key path) config file keeps the host's
	// /etc/docker/daemon.json out, and the trust key out of /etc/docker.
	cfg, err := json.Marshal(map[string]any{"deprecated-key-path": filepath.Join(d.dir, "key.json")})
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(d.dir, "daemon.json")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return err
	}
	args := []string{
		"--config-file", cfgPath,
		"--data-root", filepath.Join(d.dir, "data"),
		"--exec-root", filepath.Join(d.dir, "exec"),
		"--pidfile", filepath.Join(d.dir, "dockerd.pid"),
		"-H", "unix://" + d.socket,
		"--cgroup-parent", d.cgroupParent,
		"--iptables=false", "--ip-forward=false", "--ip-masq=false",
		"--bridge=none", "--userland-proxy=false",
	}
	if d.bridge != "" {
		if err := makeBridge(d.bridge, dockerBridgeAddr); err != nil {
			return err
		}
		args[len(args)-2], args[len(args)-1] = "--bridge="+d.bridge, "--userland-proxy=true"
	}
	d.info.DaemonArgs = args
	d.daemon, err = startDaemon("dockerd", d.dockerd, args, d.env, filepath.Join(d.dir, "dockerd.log"))
	if err != nil {
		return err
	}
	if err := d.daemon.waitReady(ctx, d.socket, 60*time.Second); err != nil {
		return err
	}
	return d.importImage(ctx, tarPath, "import", "-c", `CMD ["sh"]`, "-", "busybox:latest")
}

func (d *dockerEngine) Stop(ctx context.Context) error {
	d.stopOnce.Do(func() {
		var errs []error
		if d.daemon != nil {
			if err := d.removeAllContainers(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		errs = append(errs, d.teardown())
		if d.bridge != "" {
			errs = append(errs, deleteBridge(d.bridge))
		}
		d.stopErr = errors.Join(errs...)
	})
	return d.stopErr
}
