// Command berth is the CLI and the daemon of the berth container engine.
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
