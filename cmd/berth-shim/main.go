// Command berth-shim is the per-container monitor (`berth-shim
// <bundle>/shim.json`, started by the daemon through shim.Spawn) and the
// containers' --init (`/sbin/docker-init -- cmd args…`, or `berth-shim
// init -- cmd args…`). One runs per container, so it is built static
// (CGO_ENABLED=0) and links only the standard library.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/berth-engine/berth/internal/shim/initproc"
	"github.com/berth-engine/berth/internal/shim/monitor"
)

func main() {
	// A shim is idle nearly all its life: one P keeps the runtime's
	// per-P caches and idle threads to a minimum.
	runtime.GOMAXPROCS(1)

	args := os.Args
	switch {
	case filepath.Base(args[0]) == "docker-init":
		os.Exit(runInit(args[1:]))
	case len(args) > 1 && args[1] == "init":
		os.Exit(runInit(args[2:]))
	case len(args) == 2 && args[1] != "" && args[1][0] != '-':
		os.Exit(monitor.Run(args[1]))
	}
	fmt.Fprintln(os.Stderr, "usage: berth-shim <bundle>/shim.json | berth-shim init [-g] -- cmd [args…]")
	os.Exit(2)
}

func runInit(args []string) int {
	opts, err := initproc.ParseArgs(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "docker-init: %v\nusage: docker-init [-g] -- cmd [args…]\n", err)
		return 2
	}
	return initproc.Main(opts)
}
