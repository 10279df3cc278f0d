package cli

import (
	"fmt"
	"io"

	"github.com/berth-engine/berth/internal/cli/formatter"
	"github.com/berth-engine/berth/internal/cli/opts"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// formatHelp is docker's --format help for list commands.
const formatHelp = `Format output using a custom template:
'table':            Print output in table format with column headers (default)
'table TEMPLATE':   Print output in table format using the given Go template
'json':             Print in JSON format
'TEMPLATE':         Print output using the given Go template.
Refer to https://docs.docker.com/go/formatting/ for more information about formatting output with templates`

// inspectFormatHelp is docker's --format help for inspect-like commands.
const inspectFormatHelp = `Format output using a custom template:
'json':             Print in JSON format
'TEMPLATE':         Print output using the given Go template.
Refer to https://docs.docker.com/go/formatting/ for more information about formatting output with templates`

type psOptions struct {
	quiet, size, all, noTrunc, latest bool
	last                              int
	format                            string
	filter                            opts.FilterOpt
}

func (c *berthCLI) newPsCommand() *cobra.Command {
	o := psOptions{filter: opts.NewFilterOpt()}
	cmd := &cobra.Command{
		Use:   "ps [OPTIONS]",
		Short: "List containers",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			sizeChanged := cmd.Flags().Changed("size")
			listOpts, err := buildContainerListOptions(&o, sizeChanged)
			if err != nil {
				return err
			}
			api, err := c.Client()
			if err != nil {
				return err
			}
			res, err := api.ContainerList(cmd.Context(), listOpts)
			if err != nil {
				return err
			}
			ctx := formatter.Context{
				Output: c.out,
				Format: formatter.NewContainerFormat(o.format, o.quiet, listOpts.Size),
				Trunc:  !o.noTrunc,
			}
			return formatter.ContainerWrite(ctx, res.Items, c.now())
		},
		Annotations: map[string]string{
			"category-top": "3",
			"aliases":      "berth container ls, berth container list, berth container ps, berth ps",
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.quiet, "quiet", "q", false, "Only display container IDs")
	f.BoolVarP(&o.size, "size", "s", false, "Display total file sizes")
	f.BoolVarP(&o.all, "all", "a", false, "Show all containers (default shows just running)")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "Don't truncate output")
	f.BoolVarP(&o.latest, "latest", "l", false, "Show the latest created container (includes all states)")
	f.IntVarP(&o.last, "last", "n", -1, "Show n last created containers (includes all states)")
	f.StringVar(&o.format, "format", "", formatHelp)
	f.VarP(&o.filter, "filter", "f", "Filter output based on conditions provided")
	return cmd
}

// buildContainerListOptions turns ps flags into the list request; a
// template that shows .Size asks the daemon for sizes, as docker does.
func buildContainerListOptions(o *psOptions, sizeChanged bool) (client.ContainerListOptions, error) {
	lo := client.ContainerListOptions{All: o.all, Limit: o.last, Size: o.size, Filters: o.filter.Value()}
	if o.latest && o.last == -1 {
		lo.Limit = 1
	}
	if o.format != "" {
		tmpl, err := formatter.ParseTemplate(o.format)
		if err != nil {
			return lo, fmt.Errorf("failed to parse template: %w", err)
		}
		probe := formatter.NewContainerContext()
		if err := tmpl.Execute(io.Discard, probe); err != nil {
			return lo, fmt.Errorf("failed to execute template: %w", err)
		}
		if !o.quiet && !lo.Size && !sizeChanged {
			if _, ok := probe.FieldsUsed["Size"]; ok {
				lo.Size = true
			}
		}
	}
	return lo, nil
}

type imagesOptions struct {
	quiet, all, noTrunc, digests bool
	format                       string
	filter                       opts.FilterOpt
}

func (c *berthCLI) newImagesCommand() *cobra.Command {
	o := imagesOptions{filter: opts.NewFilterOpt()}
	cmd := &cobra.Command{
		Use:   "images [OPTIONS] [REPOSITORY[:TAG]]",
		Short: "List images",
		Args:  requiresMaxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			filters := o.filter.Value().Clone()
			if len(args) > 0 {
				filters.Add("reference", args[0])
			}
			api, err := c.Client()
			if err != nil {
				return err
			}
			res, err := api.ImageList(cmd.Context(), client.ImageListOptions{All: o.all, Filters: filters})
			if err != nil {
				return err
			}
			ctx := formatter.ImageContext{
				Context: formatter.Context{Output: c.out, Format: formatter.NewImageFormat(o.format, o.quiet, o.digests), Trunc: !o.noTrunc},
				Digest:  o.digests,
				Now:     c.now(),
			}
			return formatter.ImageWrite(ctx, res.Items)
		},
		Annotations: map[string]string{"category-top": "7", "aliases": "berth image ls, berth image list, berth images"},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.quiet, "quiet", "q", false, "Only show image IDs")
	f.BoolVarP(&o.all, "all", "a", false, "Show all images (default hides intermediate images)")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "Don't truncate output")
	f.BoolVar(&o.digests, "digests", false, "Show digests")
	f.StringVar(&o.format, "format", "", formatHelp)
	f.VarP(&o.filter, "filter", "f", "Filter output based on conditions provided")
	return cmd
}
