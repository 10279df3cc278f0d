package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// cmdRun is runc's `run` without a terminal: create and start the
// container from the bundle in this process, with our stdio as its stdio,
// forward the signals we get to its init, wait for it, delete it and exit
// with its status (128+n for a signal). One exec instead of create, start
// and delete, and no monitor: what a build's RUN step needs.
func cmdRun(g *globals, p parsedArgs) (retErr error) {
	id := p.pos[0]
	defer func() {
		if retErr != nil {
			retErr = fmt.Errorf("berth-runtime run failed: %w", retErr)
		}
	}()
	if p.bool("detach") {
		return errors.New("run --detach is not supported: use create and start")
	}
	bundle, err := bundleDir(p)
	if err != nil {
		return err
	}
	spec, err := loadSpec(filepath.Join(bundle, "config.json"))
	if err != nil {
		return err
	}
	if spec.Process.Terminal {
		return errors.New("run with a terminal is not supported")
	}
	// The init is re-parented to us when its setup parent exits: we reap
	// it and read its status, as runc run does.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become a child subreaper: %w", err)
	}
	// Signals that arrive from here on are the container's, passed on once
	// it runs (a cancelled build's SIGTERM/SIGKILL goes through `kill`;
	// these are for whoever signals this process directly). Caught from
	// before the create: one in between must not kill this process and
	// leave the container behind.
	sigc := make(chan os.Signal, 16)
	signal.Notify(sigc, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
	defer signal.Stop(sigc)
	stopWarm := startCgroupWarm(cgroupsPathOf(spec))
	defer stopWarm()
	c, err := createContainer(g, p, id, bundle, spec)
	if err != nil {
		return err
	}
	destroyed := false
	defer func() {
		if !destroyed {
			if err := killAndDestroy(c); err != nil {
				slog.Warn("destroy after failed run", "err", err)
			}
		}
	}()
	proc, err := newInitProcess(spec.Process)
	if err != nil {
		return err
	}
	proc.Stdin, proc.Stdout, proc.Stderr = os.Stdin, os.Stdout, os.Stderr
	err = c.Run(proc)
	stopWarm()
	if err != nil {
		return err
	}
	status, err := waitForwarding(proc, sigc)
	if err != nil {
		return err
	}
	destroyed = true
	if err := killAndDestroy(c); err != nil {
		slog.Warn("delete the container after run", "id", id, "err", err)
	}
	if status != 0 {
		os.Exit(status)
	}
	return nil
}
