package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/docker/go-units"
	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/jsonmessage"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/internal/cli/formatter"
	"github.com/berth-engine/berth/internal/cli/opts"
)

func (c *berthCLI) newTagCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
		Short: "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.Client()
			if err != nil {
				return err
			}
			_, err = api.ImageTag(cmd.Context(), client.ImageTagOptions{Source: args[0], Target: args[1]})
			return err
		},
		Annotations: map[string]string{"aliases": "berth image tag, berth tag"},
	}
}

func (c *berthCLI) newRmiCommand() *cobra.Command {
	var force, noPrune bool
	var platforms []string
	cmd := &cobra.Command{
		Use:   "rmi [OPTIONS] IMAGE [IMAGE...]",
		Short: "Remove one or more images",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.Client()
			if err != nil {
				return err
			}
			o := client.ImageRemoveOptions{Force: force, PruneChildren: !noPrune}
			for _, p := range platforms {
				pl, err := parsePlatform(p)
				if err != nil {
					return err
				}
				o.Platforms = append(o.Platforms, *pl)
			}
			var errs []string
			fatal := false
			for _, img := range args {
				res, err := api.ImageRemove(cmd.Context(), img, o)
				if err != nil {
					if !cerrdefs.IsNotFound(err) {
						fatal = true
					}
					errs = append(errs, wrapConnError(c.hostOrDefault(), err).Error())
					continue
				}
				for _, d := range res.Items {
					if d.Deleted != "" {
						fmt.Fprintf(c.out, "Deleted: %s\n", d.Deleted)
					} else {
						fmt.Fprintf(c.out, "Untagged: %s\n", d.Untagged)
					}
				}
			}
			if len(errs) > 0 {
				msg := strings.Join(errs, "\n")
				if !force || fatal {
					return errors.New(msg)
				}
				// -f on images that are already gone is not a failure.
				fmt.Fprintln(c.err, msg)
			}
			return nil
		},
		Annotations: map[string]string{"aliases": "berth image rm, berth image remove, berth rmi"},
	}
	f := cmd.Flags()
	f.BoolVarP(&force, "force", "f", false, "Force removal of the image")
	f.BoolVar(&noPrune, "no-prune", false, "Do not delete untagged parents")
	f.StringSliceVar(&platforms, "platform", nil, `Remove only the given platform variant. Formatted as "os[/arch[/variant]]" (e.g., "linux/amd64")`)
	return cmd
}

func (c *berthCLI) newHistoryCommand() *cobra.Command {
	var human, quiet, noTrunc bool
	var format, platform string
	cmd := &cobra.Command{
		Use:   "history [OPTIONS] IMAGE",
		Short: "Show the history of an image",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.Client()
			if err != nil {
				return err
			}
			var hopts []client.ImageHistoryOption
			if p, err := parsePlatform(platform); err != nil {
				return err
			} else if p != nil {
				hopts = append(hopts, client.ImageHistoryWithPlatform(*p))
			}
			res, err := api.ImageHistory(cmd.Context(), args[0], hopts...)
			if err != nil {
				return err
			}
			ctx := formatter.Context{Output: c.out, Format: formatter.NewHistoryFormat(format, quiet, human), Trunc: !noTrunc}
			return formatter.HistoryWrite(ctx, human, c.now(), res.Items)
		},
		Annotations: map[string]string{"aliases": "berth image history, berth history"},
	}
	f := cmd.Flags()
	f.BoolVarP(&human, "human", "H", true, "Print sizes and dates in human readable format")
	f.BoolVarP(&quiet, "quiet", "q", false, "Only show image IDs")
	f.BoolVar(&noTrunc, "no-trunc", false, "Don't truncate output")
	f.StringVar(&format, "format", "", formatHelp)
	f.StringVar(&platform, "platform", "", `Show history for the given platform. Formatted as "os[/arch[/variant]]" (e.g., "linux/amd64")`)
	return cmd
}

func (c *berthCLI) newImportCommand() *cobra.Command {
	changes := opts.NewListOpts(nil)
	var message, platform string
	cmd := &cobra.Command{
		Use:   "import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
		Short: "Import the contents from a tarball to create a filesystem image",
		Args:  requiresRangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ref string
			if len(args) > 1 {
				ref = args[1]
			}
			var src client.ImageImportSource
			switch source := args[0]; {
			case source == "-":
				src = client.ImageImportSource{Source: c.in, SourceName: "-"}
			case strings.HasPrefix(source, "https://"), strings.HasPrefix(source, "http://"):
				// The daemon downloads it.
				src = client.ImageImportSource{SourceName: source}
			default:
				f, err := os.Open(source)
				if err != nil {
					return err
				}
				defer f.Close()
				src = client.ImageImportSource{Source: f, SourceName: "-"}
			}
			var pl ocispec.Platform
			if p, err := parsePlatform(platform); err != nil {
				return err
			} else if p != nil {
				pl = *p
			}
			api, err := c.Client()
			if err != nil {
				return err
			}
			rc, err := api.ImageImport(cmd.Context(), src, ref, client.ImageImportOptions{Message: message, Changes: changes.GetSlice(), Platform: pl})
			if err != nil {
				return err
			}
			defer rc.Close()
			return c.displayJSONMessages(rc, c.out)
		},
		Annotations: map[string]string{"aliases": "berth image import, berth import"},
	}
	f := cmd.Flags()
	f.VarP(&changes, "change", "c", "Apply Dockerfile instruction to the created image")
	f.StringVarP(&message, "message", "m", "", "Set commit message for imported image")
	f.StringVar(&platform, "platform", "", "Set platform if server is multi-platform capable")
	return cmd
}

// displayJSONMessages renders a daemon's JSON progress stream like docker
// (progress bars on a terminal, plain lines otherwise); an error message
// in the stream becomes the command's error.
func (c *berthCLI) displayJSONMessages(in io.Reader, out io.Writer) error {
	fd, isTerm := uintptr(0), false
	if o, ok := out.(*outStream); ok {
		fd, isTerm = o.FD(), o.IsTerminal()
	}
	return jsonmessage.DisplayJSONMessagesStream(in, out, fd, isTerm, nil)
}

func (c *berthCLI) newLoadCommand() *cobra.Command {
	var input, platform string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "load [OPTIONS]",
		Short: "Load an image from a tar archive or STDIN",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var in io.Reader = c.in
			if input != "" {
				f, err := os.Open(input)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			} else if c.in.IsTerminal() {
				return errors.New("requested load from stdin, but stdin is empty")
			}
			if !c.out.IsTerminal() {
				quiet = true
			}
			lopts := []client.ImageLoadOption{client.ImageLoadWithQuiet(quiet)}
			if pl, err := parsePlatform(platform); err != nil {
				return err
			} else if pl != nil {
				lopts = append(lopts, client.ImageLoadWithPlatforms(*pl))
			}
			api, err := c.Client()
			if err != nil {
				return err
			}
			rc, err := api.ImageLoad(cmd.Context(), in, lopts...)
			if err != nil {
				return err
			}
			defer rc.Close()
			return c.displayJSONMessages(rc, c.out)
		},
		Annotations: map[string]string{"aliases": "berth image load, berth load"},
	}
	f := cmd.Flags()
	f.StringVarP(&input, "input", "i", "", "Read from tar archive file, instead of STDIN")
	f.BoolVarP(&quiet, "quiet", "q", false, "Suppress the load output")
	f.StringVar(&platform, "platform", "", `Load only the given platform variant. Formatted as "os[/arch[/variant]]" (e.g., "linux/amd64")`)
	return cmd
}

func (c *berthCLI) newSaveCommand() *cobra.Command {
	var output, platform string
	cmd := &cobra.Command{
		Use:   "save [OPTIONS] IMAGE [IMAGE...]",
		Short: "Save one or more images to a tar archive (streamed to STDOUT by default)",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output == "" && c.out.IsTerminal() {
				return errors.New("cowardly refusing to save to a terminal. Use the -o flag or redirect")
			}
			if err := validateOutputPath(output); err != nil {
				return fmt.Errorf("failed to save image: %w", err)
			}
			var sopts []client.ImageSaveOption
			if pl, err := parsePlatform(platform); err != nil {
				return err
			} else if pl != nil {
				sopts = append(sopts, client.ImageSaveWithPlatforms(*pl))
			}
			api, err := c.Client()
			if err != nil {
				return err
			}
			rc, err := api.ImageSave(cmd.Context(), args, sopts...)
			if err != nil {
				return err
			}
			defer rc.Close()
			if output == "" {
				_, err := io.Copy(c.out, rc)
				return err
			}
			return copyToFile(output, rc)
		},
		Annotations: map[string]string{"aliases": "berth image save, berth save"},
	}
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "", "Write to a file, instead of STDOUT")
	f.StringVar(&platform, "platform", "", `Save only the given platform variant. Formatted as "os[/arch[/variant]]" (e.g., "linux/amd64")`)
	return cmd
}

// validateOutputPath checks -o before anything is asked of the daemon.
func validateOutputPath(p string) error {
	if p == "" {
		return nil
	}
	dir := filepath.Dir(filepath.Clean(p))
	if dir != "" && dir != "." {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("invalid output path: directory %q does not exist", dir)
		}
	}
	if fi, err := os.Stat(p); err == nil {
		if fi.IsDir() {
			return fmt.Errorf("invalid output path: %q is a directory", p)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("invalid output path: %q must be a directory or a regular file", p)
		}
	}
	return nil
}

// copyToFile writes r to path atomically: a temporary file in the same
// directory, synced, then renamed over path (and the directory synced), so
// an interrupted save never leaves a truncated archive under the name.
func copyToFile(path string, r io.Reader) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("failed to create a temporary file for %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = io.Copy(tmp, r); err != nil {
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("failed to sync %s: %w", path, err)
	}
	if err = tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("failed to chmod %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("failed to close %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("failed to rename %s: %w", path, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func (c *berthCLI) newPullCommand() *cobra.Command {
	var all, quiet bool
	var platform string
	cmd := &cobra.Command{
		Use:   "pull [OPTIONS] NAME[:TAG|@DIGEST]",
		Short: "Download an image from a registry",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.runPull(cmd.Context(), args[0], all, quiet, platform)
		},
		Annotations: map[string]string{"category-top": "5", "aliases": "berth image pull, berth pull"},
	}
	f := cmd.Flags()
	f.BoolVarP(&all, "all-tags", "a", false, "Download all tagged images in the repository")
	f.BoolVarP(&quiet, "quiet", "q", false, "Suppress verbose output")
	f.StringVar(&platform, "platform", "", "Set platform if server is multi-platform capable")
	// Accepted for compatibility: berth does not verify signatures.
	f.Bool("disable-content-trust", true, "Skip image verification")
	return cmd
}

// tagOrAll normalises the image name of a pull or push, as docker does:
// with --all-tags it must name a repository without a tag; otherwise a
// missing tag means latest, which is said unless quiet.
func (c *berthCLI) tagOrAll(name string, all, quiet bool) (reference.Named, error) {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return nil, err
	}
	if all && !reference.IsNameOnly(named) {
		return nil, errors.New("tag can't be used with --all-tags/-a")
	}
	if !all && reference.IsNameOnly(named) {
		named = reference.TagNameOnly(named)
		if !quiet {
			fmt.Fprintln(c.out, "Using default tag: latest")
		}
	}
	return named, nil
}

func (c *berthCLI) runPull(ctx context.Context, name string, all, quiet bool, platform string) error {
	named, err := c.tagOrAll(name, all, quiet)
	if err != nil {
		return err
	}
	var pls []ocispec.Platform
	if p, err := parsePlatform(platform); err != nil {
		return err
	} else if p != nil {
		pls = append(pls, *p)
	}
	api, err := c.Client()
	if err != nil {
		return err
	}
	rc, err := api.ImagePull(ctx, reference.FamiliarString(named), client.ImagePullOptions{All: all, Platforms: pls, RegistryAuth: c.encodedAuth(named.String())})
	if err != nil {
		return err
	}
	defer rc.Close()
	var out io.Writer = c.out
	if quiet {
		out = io.Discard
	}
	if err := c.displayJSONMessages(rc, out); err != nil {
		return err
	}
	fmt.Fprintln(c.out, named.String())
	return nil
}

func (c *berthCLI) newImagePruneCommand() *cobra.Command {
	o := pruneOptions{filter: opts.NewFilterOpt()}
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused images",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			filters := o.filter.Value().Clone()
			filters.Add("dangling", strconv.FormatBool(!o.all))
			warning := "WARNING! This will remove all dangling images.\nAre you sure you want to continue?"
			if o.all {
				warning = "WARNING! This will remove all images without at least one container associated to them.\nAre you sure you want to continue?"
			}
			if !o.force {
				ok, err := c.confirm(cmd.Context(), warning)
				if err != nil || !ok {
					return err
				}
			}
			api, err := c.Client()
			if err != nil {
				return err
			}
			res, err := api.ImagePrune(cmd.Context(), client.ImagePruneOptions{Filters: filters})
			if err != nil {
				return err
			}
			var reclaimed uint64
			if len(res.Report.ImagesDeleted) > 0 {
				var sb strings.Builder
				sb.WriteString("Deleted Images:\n")
				for _, d := range res.Report.ImagesDeleted {
					if d.Untagged != "" {
						sb.WriteString("untagged: " + d.Untagged + "\n")
					} else {
						sb.WriteString("deleted: " + d.Deleted + "\n")
					}
				}
				fmt.Fprintln(c.out, sb.String())
				reclaimed = res.Report.SpaceReclaimed
			}
			fmt.Fprintln(c.out, "Total reclaimed space:", units.HumanSize(float64(reclaimed)))
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.force, "force", "f", false, "Do not prompt for confirmation")
	f.BoolVarP(&o.all, "all", "a", false, "Remove all unused images, not just dangling ones")
	f.Var(&o.filter, "filter", `Provide filter values (e.g. "until=<timestamp>")`)
	return cmd
}
