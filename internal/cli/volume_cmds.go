package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/berth-engine/berth/internal/cli/formatter"
	"github.com/berth-engine/berth/internal/cli/opts"
	"github.com/docker/go-units"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// addVolumeCommands adds `volume` (create, ls, inspect, rm, prune).
func (c *berthCLI) addVolumeCommands(root *cobra.Command) {
	vol := newManagementCommand("volume", "Manage volumes")
	vol.AddCommand(c.newVolumeCreateCommand(), c.newVolumeLsCommand(), c.newVolumeInspectCommand(),
		c.newVolumeRmCommand(), c.newVolumePruneCommand())
	root.AddCommand(vol)
}

// keyValues turns repeated KEY=VALUE flags into a map.
func keyValues(vals []string) map[string]string {
	if len(vals) == 0 {
		return nil
	}
	m := map[string]string{}
	for _, kv := range vals {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func (c *berthCLI) newVolumeCreateCommand() *cobra.Command {
	var driver, name string
	labels := opts.NewListOpts(nil)
	driverOpts := opts.NewListOpts(nil)
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] [VOLUME]",
		Short: "Create a volume",
		Args:  requiresMaxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if name != "" {
					//lint:ignore ST1005 docker's exact message
					return errors.New("Conflicting options: either specify --name or provide positional arg, not both")
				}
				name = args[0]
			}
			api, err := c.Client()
			if err != nil {
				return err
			}
			res, err := api.VolumeCreate(cmd.Context(), client.VolumeCreateOptions{
				Name: name, Driver: driver, DriverOpts: keyValues(driverOpts.GetSlice()), Labels: keyValues(labels.GetSlice()),
			})
			if err != nil {
				return wrapConnError(c.hostOrDefault(), err)
			}
			fmt.Fprintln(c.out, res.Volume.Name)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&driver, "driver", "d", "local", "Specify volume driver name")
	f.StringVar(&name, "name", "", "Specify volume name")
	_ = f.MarkHidden("name")
	f.Var(&labels, "label", "Set metadata for a volume")
	f.VarP(&driverOpts, "opt", "o", "Set driver specific options")
	return cmd
}

func (c *berthCLI) newVolumeLsCommand() *cobra.Command {
	var quiet bool
	var format string
	filter := opts.NewFilterOpt()
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List volumes",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.Client()
			if err != nil {
				return err
			}
			res, err := api.VolumeList(cmd.Context(), client.VolumeListOptions{Filters: filter.Value()})
			if err != nil {
				return wrapConnError(c.hostOrDefault(), err)
			}
			vols := res.Items
			sort.Slice(vols, func(i, j int) bool { return vols[i].Name < vols[j].Name })
			return formatter.VolumeWrite(formatter.Context{Output: c.out, Format: formatter.NewVolumeFormat(format, quiet)}, vols)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&quiet, "quiet", "q", false, "Only display volume names")
	f.StringVar(&format, "format", "", "Format output using a custom template")
	f.Var(&filter, "filter", "Provide filter values (e.g. \"dangling=true\")")
	return cmd
}

func (c *berthCLI) newVolumeInspectCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] VOLUME [VOLUME...]",
		Short: "Display detailed information on one or more volumes",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.inspectAll(cmd.Context(), args, format, func(ctx context.Context, ref string) (any, []byte, error) {
				api, err := c.Client()
				if err != nil {
					return nil, nil, err
				}
				res, err := api.VolumeInspect(ctx, ref, client.VolumeInspectOptions{})
				if err != nil {
					return nil, nil, err
				}
				return res.Volume, res.Raw, nil
			})
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	return cmd
}

func (c *berthCLI) newVolumeRmCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [OPTIONS] VOLUME [VOLUME...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more volumes",
		Args:    requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.Client()
			if err != nil {
				return err
			}
			var msgs []string
			for _, name := range args {
				if _, err := api.VolumeRemove(cmd.Context(), name, client.VolumeRemoveOptions{Force: force}); err != nil {
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
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force the removal of one or more volumes")
	return cmd
}

func (c *berthCLI) newVolumePruneCommand() *cobra.Command {
	var force, all bool
	filter := opts.NewFilterOpt()
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused local volumes",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			warning := "WARNING! This will remove anonymous local volumes not used by at least one container.\nAre you sure you want to continue?"
			if all {
				warning = "WARNING! This will remove all local volumes not used by at least one container.\nAre you sure you want to continue?"
			}
			if !force {
				ok, err := c.confirm(cmd.Context(), warning)
				if err != nil || !ok {
					return err
				}
			}
			api, err := c.Client()
			if err != nil {
				return err
			}
			res, err := api.VolumePrune(cmd.Context(), client.VolumePruneOptions{All: all, Filters: filter.Value()})
			if err != nil {
				return wrapConnError(c.hostOrDefault(), err)
			}
			if len(res.Report.VolumesDeleted) > 0 {
				fmt.Fprintln(c.out, "Deleted Volumes:")
				for _, v := range res.Report.VolumesDeleted {
					fmt.Fprintln(c.out, v)
				}
				fmt.Fprintln(c.out)
			}
			fmt.Fprintln(c.out, "Total reclaimed space:", units.HumanSize(float64(res.Report.SpaceReclaimed)))
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&force, "force", "f", false, "Do not prompt for confirmation")
	f.BoolVarP(&all, "all", "a", false, "Remove all unused volumes, not just anonymous ones")
	f.Var(&filter, "filter", `Provide filter values (e.g. "label=<label>")`)
	return cmd
}
