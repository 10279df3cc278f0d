// Command berth is the CLI of the berth container engine. Its `daemon`
// and `registry` commands exec berth-daemon, the binary that holds them:
// the CLI starts once per command (twice for a `docker run` in a script,
// once per exec), and without the daemon's packages it runs ~40% fewer
// package initialisers from a binary ~40% smaller, ~1.5 ms less per start
// here. The daemon starts once; the exec costs it nothing that matters.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/berth-engine/berth/internal/cli"
	"github.com/spf13/cobra"
)

// daemonBinary is the binary that holds the daemon and the registry.
const daemonBinary = "berth-daemon"

// The commands berth-daemon serves, with the texts `berth --help` shows
// for them (a test checks they are berth-daemon's own).
var delegated = []struct{ use, short string }{
	{"daemon [OPTIONS]", "Run the berth daemon (the Docker Engine API server)"},
	{"registry", "Run berth's built-in OCI registry"},
}

func main() {
	var extra []*cobra.Command
	for _, d := range delegated {
		extra = append(extra, delegate(d.use, d.short))
	}
	os.Exit(cli.Main(os.Args[1:], extra...))
}

// delegate is a command that execs berth-daemon with the same command
// and its arguments untouched (flags, --help included): the process, its
// pid and its stdio stay the same.
func delegate(use, short string) *cobra.Command {
	c := &cobra.Command{
		Use:                use,
		Short:              short,
		DisableFlagParsing: true,
		SilenceUsage:       true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return execDaemon(cmd.Name(), args...)
		},
	}
	// `berth help daemon` shows berth-daemon's own help, flags included,
	// as `berth daemon --help` does.
	c.SetHelpFunc(func(cmd *cobra.Command, _ []string) {
		// execDaemon returns only when the exec failed.
		fmt.Fprintln(os.Stderr, execDaemon(cmd.Name(), "--help"))
	})
	return c
}

// execDaemon replaces this process with berth-daemon running command; it
// returns only the error of an exec that failed.
func execDaemon(command string, args ...string) error {
	path, err := findDaemonBinary()
	if err != nil {
		return err
	}
	argv := append([]string{path, command}, args...)
	err = syscall.Exec(path, argv, os.Environ())
	return fmt.Errorf("exec %s: %w", path, err)
}

// findDaemonBinary looks next to the running executable first (a build or
// install directory), then on PATH.
func findDaemonBinary() (string, error) {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), daemonBinary)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath(daemonBinary); err == nil {
		return filepath.Abs(p)
	} else if !errors.Is(err, exec.ErrNotFound) {
		return "", err
	}
	return "", fmt.Errorf("%s not found next to the berth binary or on PATH; install it with `make install`", daemonBinary)
}
