package cli

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

func (c *berthCLI) newPortCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "port CONTAINER [PRIVATE_PORT[/PROTO]]",
		Short: "List port mappings or a specific mapping for the container",
		Args:  requiresRangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.Client()
			if err != nil {
				return err
			}
			res, err := api.ContainerInspect(cmd.Context(), args[0], client.ContainerInspectOptions{})
			if err != nil {
				return err
			}
			var ports network.PortMap
			if ns := res.Container.NetworkSettings; ns != nil {
				ports = ns.Ports
			}
			if len(args) == 2 {
				spec := args[1]
				if !strings.Contains(spec, "/") {
					spec += "/tcp"
				}
				p, err := network.ParsePort(spec)
				if err != nil {
					return fmt.Errorf("Error: invalid port (%s): %w", args[1], err)
				}
				bindings, ok := ports[p]
				if !ok || len(bindings) == 0 {
					return fmt.Errorf("Error: No public port '%s' published for %s", p, args[0])
				}
				for _, b := range bindings {
					fmt.Fprintln(c.out, net.JoinHostPort(b.HostIP.String(), b.HostPort))
				}
				return nil
			}
			var lines []string
			for p, bindings := range ports {
				for _, b := range bindings {
					lines = append(lines, p.String()+" -> "+net.JoinHostPort(b.HostIP.String(), b.HostPort))
				}
			}
			sort.SliceStable(lines, func(i, j int) bool {
				ni, _ := strconv.Atoi(strings.SplitN(lines[i], "/", 2)[0])
				nj, _ := strconv.Atoi(strings.SplitN(lines[j], "/", 2)[0])
				if ni != nj {
					return ni < nj
				}
				return lines[i] < lines[j]
			})
			for _, l := range lines {
				fmt.Fprintln(c.out, l)
			}
			return nil
		},
		Annotations: map[string]string{"aliases": "berth container port, berth port"},
	}
}
