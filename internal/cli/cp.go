package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/go-archive"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// addCopyCommands adds cp and export, top-level and under `container`.
func (c *berthCLI) addCopyCommands(root, ctr *cobra.Command) {
	root.AddCommand(c.newCpCommand(), c.newExportCommand())
	for _, sub := range []*cobra.Command{c.newCpCommand(), c.newExportCommand()} {
		delete(sub.Annotations, "category-top")
		ctr.AddCommand(sub)
	}
}

type cpOptions struct {
	followLink bool
	copyUIDGID bool
	quiet      bool
}

// splitCpArg splits CONTAINER:PATH as docker's CLI does: an absolute
// local path or one starting with "." is local even with a colon.
func splitCpArg(arg string) (ctr, path string) {
	if filepath.IsAbs(arg) {
		return "", arg
	}
	ctr, path, ok := strings.Cut(arg, ":")
	if !ok || strings.HasPrefix(ctr, ".") {
		return "", arg
	}
	return ctr, path
}

// resolveLocalPath makes a local path absolute, keeping a trailing "/" or
// "/." (which carry meaning for cp).
func resolveLocalPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	return archive.PreserveTrailingDotOrSeparator(abs, p), nil
}

func (c *berthCLI) newCpCommand() *cobra.Command {
	var o cpOptions
	cmd := &cobra.Command{
		Use:   "cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n\tberth cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
		Short: "Copy files/folders between a container and the local filesystem",
		Long: "Copy files/folders between a container and the local filesystem\n\n" +
			"Use '-' as the source to read a tar archive from stdin\n" +
			"and extract it to a directory destination in a container.\n" +
			"Use '-' as the destination to stream a tar archive of a\n" +
			"container source to stdout.",
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "" {
				return errors.New("source can not be empty")
			}
			if args[1] == "" {
				return errors.New("destination can not be empty")
			}
			srcCtr, srcPath := splitCpArg(args[0])
			dstCtr, dstPath := splitCpArg(args[1])
			var err error
			switch {
			case srcCtr != "" && dstCtr != "":
				return errors.New("copying between containers is not supported")
			case srcCtr != "":
				err = c.copyFromContainer(cmd, srcCtr, srcPath, dstPath, o)
			case dstCtr != "":
				err = c.copyToContainer(cmd, srcPath, dstCtr, dstPath, o)
			default:
				return errors.New("must specify at least one container source")
			}
			if err != nil {
				return wrapConnError(c.hostOrDefault(), err)
			}
			return nil
		},
		Annotations: map[string]string{"aliases": "berth container cp, berth cp"},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.followLink, "follow-link", "L", false, "Always follow symbol link in SRC_PATH")
	f.BoolVarP(&o.copyUIDGID, "archive", "a", false, "Archive mode (copy all uid/gid information)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "Suppress progress output during copy. Progress output is automatically suppressed if no terminal is attached")
	return cmd
}

func (c *berthCLI) copyFromContainer(cmd *cobra.Command, ctr, srcPath, dstPath string, o cpOptions) error {
	ctx := cmd.Context()
	if dstPath != "-" {
		var err error
		if dstPath, err = resolveLocalPath(dstPath); err != nil {
			return err
		}
		if err := validateCpOutputPath(dstPath); err != nil {
			return err
		}
	}
	api, err := c.Client()
	if err != nil {
		return err
	}
	var rebaseName string
	if o.followLink {
		st, err := api.ContainerStatPath(ctx, ctr, client.ContainerStatPathOptions{Path: srcPath})
		if err == nil && st.Stat.Mode&os.ModeSymlink != 0 {
			target := st.Stat.LinkTarget
			if !filepath.IsAbs(target) {
				parent, _ := archive.SplitPathDirEntry(srcPath)
				target = filepath.Join(parent, target)
			}
			target, rebaseName = archive.GetRebaseName(srcPath, target)
			srcPath = target
		}
	}
	res, err := api.CopyFromContainer(ctx, ctr, client.CopyFromContainerOptions{SourcePath: srcPath})
	if err != nil {
		return err
	}
	defer res.Content.Close()
	if dstPath == "-" {
		_, err := io.Copy(c.out, res.Content)
		return err
	}
	info := archive.CopyInfo{Path: srcPath, Exists: true, IsDir: res.Stat.Mode.IsDir(), RebaseName: rebaseName}
	var content io.Reader = res.Content
	if rebaseName != "" {
		_, base := archive.SplitPathDirEntry(info.Path)
		content = archive.RebaseArchiveEntries(res.Content, base, rebaseName)
	}
	return archive.CopyTo(content, info, dstPath)
}

// validateCpOutputPath checks that a local destination's parent exists
// and that the destination, if it exists, can be written to.
func validateCpOutputPath(p string) error {
	dir := filepath.Dir(filepath.Clean(p))
	if dir != "" && dir != "." {
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			return fmt.Errorf("invalid output path: directory %q does not exist", dir)
		}
	}
	return nil
}

func (c *berthCLI) copyToContainer(cmd *cobra.Command, srcPath, ctr, dstPath string, o cpOptions) error {
	ctx := cmd.Context()
	if srcPath != "-" {
		var err error
		if srcPath, err = resolveLocalPath(srcPath); err != nil {
			return err
		}
	}
	api, err := c.Client()
	if err != nil {
		return err
	}
	dstInfo := archive.CopyInfo{Path: dstPath}
	st, err := api.ContainerStatPath(ctx, ctr, client.ContainerStatPathOptions{Path: dstPath})
	if err == nil && st.Stat.Mode&os.ModeSymlink != 0 {
		target := st.Stat.LinkTarget
		if !filepath.IsAbs(target) {
			parent, _ := archive.SplitPathDirEntry(dstPath)
			target = filepath.Join(parent, target)
		}
		dstInfo.Path = target
		st, err = api.ContainerStatPath(ctx, ctr, client.ContainerStatPathOptions{Path: target})
	}
	if err == nil {
		if m := st.Stat.Mode; !m.IsDir() && !m.IsRegular() {
			return fmt.Errorf("destination \"%s:%s\" must be a directory or a regular file", ctr, dstPath)
		}
		dstInfo.Exists, dstInfo.IsDir = true, st.Stat.Mode.IsDir()
	}
	var content io.Reader
	var resolved string
	if srcPath == "-" {
		content = c.in
		resolved = dstInfo.Path
		if !dstInfo.IsDir {
			return fmt.Errorf("destination \"%s:%s\" must be a directory", ctr, dstPath)
		}
	} else {
		srcInfo, err := archive.CopyInfoSourcePath(srcPath, o.followLink)
		if err != nil {
			return err
		}
		srcArchive, err := archive.TarResource(srcInfo)
		if err != nil {
			return err
		}
		defer srcArchive.Close()
		dir, prepared, err := archive.PrepareArchiveCopy(srcArchive, srcInfo, dstInfo)
		if err != nil {
			return err
		}
		defer prepared.Close()
		resolved, content = dir, prepared
	}
	_, err = api.CopyToContainer(ctx, ctr, client.CopyToContainerOptions{DestinationPath: resolved, Content: content, CopyUIDGID: o.copyUIDGID})
	return err
}

func (c *berthCLI) newExportCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "export [OPTIONS] CONTAINER",
		Short: "Export a container's filesystem as a tar archive",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output == "" && c.out.IsTerminal() {
				return errors.New("cowardly refusing to save to a terminal. Use the -o flag or redirect")
			}
			if err := validateOutputPath(output); err != nil {
				return fmt.Errorf("failed to export container: %w", err)
			}
			api, err := c.Client()
			if err != nil {
				return err
			}
			rc, err := api.ContainerExport(cmd.Context(), args[0], client.ContainerExportOptions{})
			if err != nil {
				return wrapConnError(c.hostOrDefault(), err)
			}
			defer rc.Close()
			if output == "" {
				_, err := io.Copy(c.out, rc)
				return err
			}
			return copyToFile(output, rc)
		},
		Annotations: map[string]string{"aliases": "berth container export, berth export"},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "Write to a file, instead of STDOUT")
	return cmd
}
