package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/berth-engine/berth/internal/cli/formatter"
	"github.com/berth-engine/berth/internal/cli/opts"
	"github.com/docker/go-units"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// addDiskUsageCommands adds `system df` and `system prune`.
func (c *berthCLI) addDiskUsageCommands(sys *cobra.Command) {
	sys.AddCommand(c.newSystemDfCommand(), c.newSystemPruneCommand())
}

func reclaimable(n, total int64) string {
	if total <= 0 {
		return units.HumanSize(float64(n))
	}
	return fmt.Sprintf("%s (%d%%)", units.HumanSize(float64(n)), n*100/total)
}

func (c *berthCLI) newSystemDfCommand() *cobra.Command {
	var verbose bool
	var format string
	cmd := &cobra.Command{
		Use:   "df [OPTIONS]",
		Short: "Show berth disk usage",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.Client()
			if err != nil {
				return err
			}
			du, err := api.DiskUsage(cmd.Context(), client.DiskUsageOptions{Containers: true, Images: true, Volumes: true, BuildCache: true, Verbose: true})
			if err != nil {
				return wrapConnError(c.hostOrDefault(), err)
			}
			if format != "" && format != "table" {
				return errors.New("--format is not supported by berth's system df yet")
			}
			tw := tabwriter.NewWriter(c.out, 10, 1, 3, ' ', 0)
			defer tw.Flush()
			if !verbose {
				fmt.Fprintln(tw, "TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE")
				fmt.Fprintf(tw, "Images\t%d\t%d\t%s\t%s\n", du.Images.TotalCount, du.Images.ActiveCount, units.HumanSize(float64(du.Images.TotalSize)), reclaimable(du.Images.Reclaimable, du.Images.TotalSize))
				fmt.Fprintf(tw, "Containers\t%d\t%d\t%s\t%s\n", du.Containers.TotalCount, du.Containers.ActiveCount, units.HumanSize(float64(du.Containers.TotalSize)), reclaimable(du.Containers.Reclaimable, du.Containers.TotalSize))
				fmt.Fprintf(tw, "Local Volumes\t%d\t%d\t%s\t%s\n", du.Volumes.TotalCount, du.Volumes.ActiveCount, units.HumanSize(float64(du.Volumes.TotalSize)), reclaimable(du.Volumes.Reclaimable, du.Volumes.TotalSize))
				fmt.Fprintf(tw, "Build Cache\t%d\t%d\t%s\t%s\n", du.BuildCache.TotalCount, du.BuildCache.ActiveCount, units.HumanSize(float64(du.BuildCache.TotalSize)), units.HumanSize(float64(du.BuildCache.Reclaimable)))
				return nil
			}
			now := time.Now()
			fmt.Fprint(tw, "Images space usage:\n\n")
			fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tSHARED SIZE\tUNIQUE SIZE\tCONTAINERS")
			for _, img := range du.Images.Items {
				repo, tag := "<none>", "<none>"
				if len(img.RepoTags) > 0 {
					if i := strings.LastIndex(img.RepoTags[0], ":"); i > 0 {
						repo, tag = img.RepoTags[0][:i], img.RepoTags[0][i+1:]
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", repo, tag, formatter.TruncateID(img.ID),
					units.HumanDuration(now.Sub(time.Unix(img.Created, 0)))+" ago", units.HumanSize(float64(img.Size)),
					units.HumanSize(float64(max(img.SharedSize, 0))), units.HumanSize(float64(img.Size-max(img.SharedSize, 0))), img.Containers)
			}
			fmt.Fprint(tw, "\nContainers space usage:\n\n")
			fmt.Fprintln(tw, "CONTAINER ID\tIMAGE\tCOMMAND\tLOCAL VOLUMES\tSIZE\tCREATED\tSTATUS\tNAMES")
			for _, ct := range du.Containers.Items {
				vols := 0
				for _, m := range ct.Mounts {
					if m.Type == "volume" {
						vols++
					}
				}
				name := ""
				if len(ct.Names) > 0 {
					name = strings.TrimPrefix(ct.Names[0], "/")
				}
				fmt.Fprintf(tw, "%s\t%s\t%q\t%d\t%s\t%s\t%s\t%s\n", formatter.TruncateID(ct.ID), ct.Image, formatter.Ellipsis(ct.Command, 20), vols,
					units.HumanSize(float64(ct.SizeRw)), units.HumanDuration(now.Sub(time.Unix(ct.Created, 0)))+" ago", ct.Status, name)
			}
			fmt.Fprint(tw, "\nLocal Volumes space usage:\n\n")
			fmt.Fprintln(tw, "VOLUME NAME\tLINKS\tSIZE")
			for _, v := range du.Volumes.Items {
				links, size := int64(0), int64(0)
				if v.UsageData != nil {
					links, size = v.UsageData.RefCount, v.UsageData.Size
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\n", v.Name, links, units.HumanSize(float64(size)))
			}
			fmt.Fprintf(tw, "\nBuild cache usage: %s\n\n", units.HumanSize(float64(du.BuildCache.TotalSize)))
			fmt.Fprintln(tw, "CACHE ID\tCACHE TYPE\tSIZE\tCREATED\tLAST USED\tUSAGE\tSHARED")
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&verbose, "verbose", "v", false, "Show detailed information on space usage")
	f.StringVar(&format, "format", "", "Format output using a custom template")
	return cmd
}

func (c *berthCLI) newSystemPruneCommand() *cobra.Command {
	var all, force, volumes bool
	filter := opts.NewFilterOpt()
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused data",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			filters := filter.Value()
			if volumes && len(filters["until"]) > 0 {
				return errors.New(`ERROR: The "until" filter is not supported with "--volumes"`)
			}
			if !force {
				var sb strings.Builder
				sb.WriteString("WARNING! This will remove:\n  - all stopped containers\n")
				if volumes {
					sb.WriteString("  - all anonymous volumes not used by at least one container\n")
				}
				if all {
					sb.WriteString("  - all images without at least one container associated to them\n")
				} else {
					sb.WriteString("  - all dangling images\n")
				}
				sb.WriteString("\nAre you sure you want to continue?")
				ok, err := c.confirm(cmd.Context(), sb.String())
				if err != nil || !ok {
					return err
				}
			}
			api, err := c.Client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var reclaimed uint64
			cr, err := api.ContainerPrune(ctx, client.ContainerPruneOptions{Filters: filters.Clone()})
			if err != nil {
				return wrapConnError(c.hostOrDefault(), err)
			}
			printList(c.out, "Deleted Containers:", cr.Report.ContainersDeleted)
			reclaimed += cr.Report.SpaceReclaimed
			if volumes {
				vr, err := api.VolumePrune(ctx, client.VolumePruneOptions{Filters: filters.Clone()})
				if err != nil {
					return wrapConnError(c.hostOrDefault(), err)
				}
				printList(c.out, "Deleted Volumes:", vr.Report.VolumesDeleted)
				reclaimed += vr.Report.SpaceReclaimed
			}
			imgFilters := filters.Clone()
			imgFilters.Add("dangling", fmt.Sprint(!all))
			ir, err := api.ImagePrune(ctx, client.ImagePruneOptions{Filters: imgFilters})
			if err != nil {
				return wrapConnError(c.hostOrDefault(), err)
			}
			if len(ir.Report.ImagesDeleted) > 0 {
				fmt.Fprintln(c.out, "Deleted Images:")
				for _, d := range ir.Report.ImagesDeleted {
					if d.Untagged != "" {
						fmt.Fprintln(c.out, "untagged: "+d.Untagged)
					} else {
						fmt.Fprintln(c.out, "deleted: "+d.Deleted)
					}
				}
				fmt.Fprintln(c.out)
			}
			reclaimed += ir.Report.SpaceReclaimed
			fmt.Fprintln(c.out, "Total reclaimed space:", units.HumanSize(float64(reclaimed)))
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&all, "all", "a", false, "Remove all unused images not just dangling ones")
	f.BoolVarP(&force, "force", "f", false, "Do not prompt for confirmation")
	f.BoolVar(&volumes, "volumes", false, "Prune anonymous volumes")
	f.Var(&filter, "filter", `Provide filter values (e.g. "label=<key>=<value>")`)
	return cmd
}

func printList(w io.Writer, title string, items []string) {
	if len(items) == 0 {
		return
	}
	fmt.Fprintln(w, title)
	for _, it := range items {
		fmt.Fprintln(w, it)
	}
	fmt.Fprintln(w)
}
