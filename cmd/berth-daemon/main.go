// Command berth-daemon is berth whole: the CLI together with the daemon
// (`berth-daemon daemon`, internal/daemon) and the built-in registry
// (`berth-daemon registry`). `berth daemon` and `berth registry` exec it,
// so that the everyday CLI, which starts once per command, does not carry
// the daemon's packages (see cmd/berth).
package main

import (
	"os"

	"github.com/berth-engine/berth/internal/cli"
	"github.com/berth-engine/berth/internal/daemon"
	"github.com/berth-engine/berth/internal/registry"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], daemon.NewCommand(), registry.NewCommand()))
}
