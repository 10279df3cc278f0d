package cli

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/berth-engine/berth/internal/cli/formatter"
	"github.com/berth-engine/berth/internal/cli/opts"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// addNetworkCommands adds `network` (create, ls, inspect, rm, prune,
// connect, disconnect).
func (c *berthCLI) addNetworkCommands(root *cobra.Command) {
	nw := newManagementCommand("network", "Manage networks")
	nw.AddCommand(c.newNetworkCreateCommand(), c.newNetworkLsCommand(), c.newNetworkInspectCommand(),
		c.newNetworkRmCommand(), c.newNetworkPruneCommand(), c.newNetworkConnectCommand(), c.newNetworkDisconnectCommand())
	root.AddCommand(nw)
}

// ipamConfigs pairs --subnet, --ip-range and --gateway as docker's CLI
// does: each range and gateway belongs to the subnet that contains it.
func ipamConfigs(subnets, ranges, gateways []string) ([]network.IPAMConfig, error) {
	var out []network.IPAMConfig
	for _, s := range subnets {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("invalid subnet %s: %w", s, err)
		}
		out = append(out, network.IPAMConfig{Subnet: p})
	}
	for _, r := range ranges {
		p, err := netip.ParsePrefix(r)
		if err != nil {
			return nil, fmt.Errorf("invalid ip-range %s: %w", r, err)
		}
		found := false
		for i := range out {
			if out[i].Subnet.Contains(p.Addr()) {
				if out[i].IPRange.IsValid() {
					return nil, fmt.Errorf("cannot configure multiple ranges (%s, %s) on the same subnet (%s)", r, out[i].IPRange, out[i].Subnet)
				}
				out[i].IPRange, found = p, true
			}
		}
		if !found {
			return nil, fmt.Errorf("no matching subnet for range %s", r)
		}
	}
	for _, g := range gateways {
		a, err := netip.ParseAddr(g)
		if err != nil {
			return nil, fmt.Errorf("invalid gateway %s: %w", g, err)
		}
		found := false
		for i := range out {
			if out[i].Subnet.Contains(a) {
				if out[i].Gateway.IsValid() {
					return nil, fmt.Errorf("cannot configure multiple gateways (%s, %s) for the same subnet (%s)", g, out[i].Gateway, out[i].Subnet)
				}
				out[i].Gateway, found = a, true
			}
		}
		if !found {
			return nil, fmt.Errorf("no matching subnet for gateway %s", g)
		}
	}
	return out, nil
}

func (c *berthCLI) newNetworkCreateCommand() *cobra.Command {
	var driver, ipamDriver, scope, configFrom string
	var internal, attachable, ingress, configOnly, ipv6, ipv4 bool
	var subnets, ranges, gateways []string
	labels := opts.NewListOpts(nil)
	driverOpts := opts.NewListOpts(nil)
	ipamOpts := opts.NewListOpts(nil)
	aux := opts.NewListOpts(nil)
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] NETWORK",
		Short: "Create a network",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfgs, err := ipamConfigs(subnets, ranges, gateways)
			if err != nil {
				return err
			}
			api, err := c.Client()
			if err != nil {
				return err
			}
			o := client.NetworkCreateOptions{Driver: driver, Scope: scope, Internal: internal, Attachable: attachable,
				Ingress: ingress, ConfigOnly: configOnly, ConfigFrom: configFrom,
				Options: keyValues(driverOpts.GetSlice()), Labels: keyValues(labels.GetSlice()),
				IPAM: &network.IPAM{Driver: ipamDriver, Config: cfgs, Options: keyValues(ipamOpts.GetSlice())}}
			if cmd.Flags().Changed("ipv6") {
				o.EnableIPv6 = &ipv6
			}
			if cmd.Flags().Changed("ipv4") {
				o.EnableIPv4 = &ipv4
			}
			res, err := api.NetworkCreate(cmd.Context(), args[0], o)
			if err != nil {
				return wrapConnError(c.hostOrDefault(), err)
			}
			fmt.Fprintln(c.out, res.ID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&driver, "driver", "d", "bridge", "Driver to manage the Network")
	f.VarP(&driverOpts, "opt", "o", "Set driver specific options")
	f.Var(&labels, "label", "Set metadata on a network")
	f.BoolVar(&internal, "internal", false, "Restrict external access to the network")
	f.BoolVar(&attachable, "attachable", false, "Enable manual container attachment")
	f.BoolVar(&ingress, "ingress", false, "Create swarm routing-mesh network")
	f.StringVar(&scope, "scope", "", "Control the network's scope")
	f.BoolVar(&configOnly, "config-only", false, "Create a configuration only network")
	f.StringVar(&configFrom, "config-from", "", "The network from which to copy the configuration")
	f.BoolVar(&ipv6, "ipv6", false, "Enable or disable IPv6 networking")
	f.BoolVar(&ipv4, "ipv4", true, "Enable or disable IPv4 address assignment")
	f.StringVar(&ipamDriver, "ipam-driver", "default", "IP Address Management Driver")
	f.StringSliceVar(&subnets, "subnet", nil, "Subnet in CIDR format that represents a network segment")
	f.StringSliceVar(&ranges, "ip-range", nil, "Allocate container ip from a sub-range")
	f.StringSliceVar(&gateways, "gateway", nil, "IPv4 or IPv6 Gateway for the master subnet")
	f.Var(&aux, "aux-address", "Auxiliary IPv4 or IPv6 addresses used by Network driver")
	f.Var(&ipamOpts, "ipam-opt", "Set IPAM driver specific options")
	return cmd
}

func (c *berthCLI) newNetworkLsCommand() *cobra.Command {
	var quiet, noTrunc bool
	var format string
	filter := opts.NewFilterOpt()
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List networks",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.Client()
			if err != nil {
				return err
			}
			res, err := api.NetworkList(cmd.Context(), client.NetworkListOptions{Filters: filter.Value()})
			if err != nil {
				return wrapConnError(c.hostOrDefault(), err)
			}
			nets := res.Items
			sort.Slice(nets, func(i, j int) bool { return nets[i].Name < nets[j].Name })
			return formatter.NetworkWrite(formatter.Context{Output: c.out, Format: formatter.NewNetworkFormat(format, quiet)}, nets, !noTrunc)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&quiet, "quiet", "q", false, "Only display network IDs")
	f.BoolVar(&noTrunc, "no-trunc", false, "Do not truncate the output")
	f.StringVar(&format, "format", "", "Format output using a custom template")
	f.VarP(&filter, "filter", "f", "Provide filter values (e.g. \"driver=bridge\")")
	return cmd
}

func (c *berthCLI) newNetworkInspectCommand() *cobra.Command {
	var format string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] NETWORK [NETWORK...]",
		Short: "Display detailed information on one or more networks",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.inspectAll(cmd.Context(), args, format, func(ctx context.Context, ref string) (any, []byte, error) {
				api, err := c.Client()
				if err != nil {
					return nil, nil, err
				}
				res, err := api.NetworkInspect(ctx, ref, client.NetworkInspectOptions{Verbose: verbose})
				if err != nil {
					return nil, nil, err
				}
				return res.Network, res.Raw, nil
			})
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "Verbose output for diagnostics")
	return cmd
}

func (c *berthCLI) newNetworkRmCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm NETWORK [NETWORK...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more networks",
		Args:    requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.Client()
			if err != nil {
				return err
			}
			var msgs []string
			for _, name := range args {
				if _, err := api.NetworkRemove(cmd.Context(), name, client.NetworkRemoveOptions{}); err != nil {
					if force && strings.Contains(err.Error(), "not found") {
						continue
					}
					msgs = append(msgs, wrapConnError(c.hostOrDefault(), err).Error())
					continue
				}
				fmt.Fprintln(c.out, name)
			}
			if len(msgs) > 0 {
				return errors.New(strings.Join(msgs, "\n"))
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Do not error if the network does not exist")
	return cmd
}

func (c *berthCLI) newNetworkPruneCommand() *cobra.Command {
	var force bool
	filter := opts.NewFilterOpt()
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove all unused networks",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !force {
				ok, err := c.confirm(cmd.Context(), "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue?")
				if err != nil || !ok {
					return err
				}
			}
			api, err := c.Client()
			if err != nil {
				return err
			}
			res, err := api.NetworkPrune(cmd.Context(), client.NetworkPruneOptions{Filters: filter.Value()})
			if err != nil {
				return wrapConnError(c.hostOrDefault(), err)
			}
			if len(res.Report.NetworksDeleted) > 0 {
				fmt.Fprintln(c.out, "Deleted Networks:")
				for _, n := range res.Report.NetworksDeleted {
					fmt.Fprintln(c.out, n)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Do not prompt for confirmation")
	cmd.Flags().Var(&filter, "filter", `Provide filter values (e.g. "until=<timestamp>")`)
	return cmd
}

func (c *berthCLI) newNetworkConnectCommand() *cobra.Command {
	var ip, ip6 string
	var aliases, links, linkLocal []string
	driverOpts := opts.NewListOpts(nil)
	var gwPriority int
	cmd := &cobra.Command{
		Use:   "connect [OPTIONS] NETWORK CONTAINER",
		Short: "Connect a container to a network",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			es := &network.EndpointSettings{Aliases: aliases, Links: links, DriverOpts: keyValues(driverOpts.GetSlice()), GwPriority: gwPriority}
			if ip != "" || ip6 != "" || len(linkLocal) > 0 {
				es.IPAMConfig = &network.EndpointIPAMConfig{}
				if ip != "" {
					a, err := netip.ParseAddr(ip)
					if err != nil {
						return fmt.Errorf("invalid IPv4 address: %s", ip)
					}
					es.IPAMConfig.IPv4Address = a
				}
				if ip6 != "" {
					a, err := netip.ParseAddr(ip6)
					if err != nil {
						return fmt.Errorf("invalid IPv6 address: %s", ip6)
					}
					es.IPAMConfig.IPv6Address = a
				}
				for _, l := range linkLocal {
					a, err := netip.ParseAddr(l)
					if err != nil {
						return fmt.Errorf("invalid link-local address: %s", l)
					}
					es.IPAMConfig.LinkLocalIPs = append(es.IPAMConfig.LinkLocalIPs, a)
				}
			}
			api, err := c.Client()
			if err != nil {
				return err
			}
			if _, err := api.NetworkConnect(cmd.Context(), args[0], client.NetworkConnectOptions{Container: args[1], EndpointConfig: es}); err != nil {
				return wrapConnError(c.hostOrDefault(), err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&ip, "ip", "", "IPv4 address (e.g., \"172.30.100.104\")")
	f.StringVar(&ip6, "ip6", "", "IPv6 address (e.g., \"2001:db8::33\")")
	f.StringSliceVar(&links, "link", nil, "Add link to another container")
	f.StringSliceVar(&aliases, "alias", nil, "Add network-scoped alias for the container")
	f.StringSliceVar(&linkLocal, "link-local-ip", nil, "Add a link-local address for the container")
	f.Var(&driverOpts, "driver-opt", "driver options for the network")
	f.IntVar(&gwPriority, "gw-priority", 0, "Highest gw-priority provides the default gateway. Accepts positive and negative values.")
	return cmd
}

func (c *berthCLI) newNetworkDisconnectCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "disconnect [OPTIONS] NETWORK CONTAINER",
		Short: "Disconnect a container from a network",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.Client()
			if err != nil {
				return err
			}
			if _, err := api.NetworkDisconnect(cmd.Context(), args[0], client.NetworkDisconnectOptions{Container: args[1], Force: force}); err != nil {
				return wrapConnError(c.hostOrDefault(), err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force the container to disconnect from a network")
	return cmd
}
