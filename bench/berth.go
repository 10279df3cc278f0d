package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-engine/berth/internal/network"
)

// The bench daemon's default bridge and nftables table: per run, so a bench
// never disturbs another berth daemon on the host.
var (
	berthBridge = fmt.Sprintf("bbench%d", os.Getpid()%100000)
	berthTable  = fmt.Sprintf("berth_bench%d", os.Getpid())
)

// berthEngine is `berth daemon` from the -bin directory on a temporary
// data-root, exec-root, socket and cgroup parent, driven by the berth CLI.
type berthEngine struct {
	*base
	binDir string
	socket string
}

func newBerth(root, binDir string) (*berthEngine, error) {
	binDir, err := filepath.Abs(binDir)
	if err != nil {
		return nil, err
	}
	for _, n := range []string{"berth", "berth-daemon", "berth-shim"} {
		if _, err := os.Stat(filepath.Join(binDir, n)); err != nil {
			return nil, fmt.Errorf("berth: %w (build it with `make build`, or point -bin at the binaries)", err)
		}
	}
	b, err := newBase("berth", root, filepath.Join(binDir, "berth"))
	if err != nil {
		return nil, err
	}
	e := &berthEngine{base: b, binDir: binDir, socket: filepath.Join(b.dir, "b.sock")}
	// The daemon finds berth-shim and berth-runtime next to itself or on
	// PATH; put -bin first so that it never picks up an installed copy.
	b.env = cleanEnv("BERTH_HOST=unix://"+e.socket, "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	b.ownNames = []string{"berth", "berth-daemon", "berth-shim", "berth-runtime"}
	b.info.Version = firstLine(b.cliPath, "--version")
	b.info.CLIVersion = b.info.Version
	return e, nil
}

func (e *berthEngine) Start(ctx context.Context, tarPath string) error {
	args := []string{
		"daemon",
		"--data-root", filepath.Join(e.dir, "data"),
		"--exec-root", filepath.Join(e.dir, "exec"),
		"-H", "unix://" + e.socket,
		"--cgroup-parent", e.cgroupParent,
		// A private daemon: leave the socket root:root instead of
		// creating the host's "berth" group.
		"--group", "",
		// Its own bridge and nftables table, removed again by Stop.
		"--bridge", berthBridge, "--nftables-table", berthTable,
	}
	e.info.DaemonArgs = args
	var err error
	e.daemon, err = startDaemon("berth daemon", e.cliPath, args, e.env, filepath.Join(e.dir, "daemon.log"))
	if err != nil {
		return err
	}
	if err := e.daemon.waitReady(ctx, e.socket, 60*time.Second); err != nil {
		return err
	}
	return e.importImage(ctx, tarPath, "import", "-c", `CMD ["sh"]`, "-", "busybox:latest")
}

func (e *berthEngine) Stop(ctx context.Context) error {
	e.stopOnce.Do(func() {
		var errs []error
		if e.daemon != nil {
			if err := e.removeAllContainers(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		errs = append(errs, e.teardown())
		errs = append(errs, network.Cleanup(filepath.Join(e.dir, "data"), berthBridge, berthTable))
		e.stopErr = errors.Join(errs...)
	})
	return e.stopErr
}
