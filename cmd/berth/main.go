// Command berth is the CLI and the daemon of the berth container engine.
package main

import (
	"os"

	"github.com/berth-engine/berth/internal/cli"
)

func main() {
	// The integrator adds the daemon (and any hidden helper commands) as
	// extra commands: cli.Main(os.Args[1:], daemon.NewCommand(), …).
	os.Exit(cli.Main(os.Args[1:]))
}
