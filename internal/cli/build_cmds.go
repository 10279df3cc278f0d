package cli

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	goarchive "github.com/moby/go-archive"
	"github.com/moby/go-archive/compression"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/jsonmessage"
	"github.com/moby/patternmatcher/ignorefile"
	"github.com/spf13/cobra"
)

// addBuildCommands adds build (and its image subcommand).
func (c *berthCLI) addBuildCommands(root, img, ctr *cobra.Command) {
	root.AddCommand(c.newBuildCommand())
	b := c.newBuildCommand()
	delete(b.Annotations, "category-top")
	img.AddCommand(b)
	root.AddCommand(c.newCommitCommand(), c.newDiffCommand())
	ctr.AddCommand(c.newCommitCommand(), c.newDiffCommand())
}

func (c *berthCLI) newCommitCommand() *cobra.Command {
	var message, author string
	var changes []string
	pause := true
	cmd := &cobra.Command{
		Use:   "commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
		Short: "Create a new image from a container's changes",
		Args:  requiresRangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref := ""
			if len(args) == 2 {
				ref = args[1]
			}
			api, err := c.Client()
			if err != nil {
				return err
			}
			res, err := api.ContainerCommit(cmd.Context(), args[0], client.ContainerCommitOptions{
				Reference: ref, Comment: message, Author: author, Changes: changes, NoPause: !pause,
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(c.out, res.ID)
			return nil
		},
		Annotations: map[string]string{"aliases": "berth container commit, berth commit"},
	}
	f := cmd.Flags()
	f.StringVarP(&message, "message", "m", "", "Commit message")
	f.StringVarP(&author, "author", "a", "", `Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")`)
	f.StringArrayVarP(&changes, "change", "c", nil, "Apply Dockerfile instruction to the created image")
	f.BoolVarP(&pause, "pause", "p", true, "Pause container during commit")
	return cmd
}

func (c *berthCLI) newDiffCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "diff CONTAINER",
		Short: "Inspect changes to files or directories on a container's filesystem",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.Client()
			if err != nil {
				return err
			}
			res, err := api.ContainerDiff(cmd.Context(), args[0], client.ContainerDiffOptions{})
			if err != nil {
				return err
			}
			for _, ch := range res.Changes {
				k := "C"
				switch ch.Kind {
				case 1:
					k = "A"
				case 2:
					k = "D"
				}
				fmt.Fprintf(c.out, "%s %s\n", k, ch.Path)
			}
			return nil
		},
		Annotations: map[string]string{"aliases": "berth container diff, berth diff"},
	}
	return cmd
}

type buildOptions struct {
	tags      []string
	file      string
	buildArgs []string
	labels    []string
	target    string
	noCache   bool
	pull      bool
	quiet     bool
	iidfile   string
	network   string
	platform  string
	progress  string
	rm        bool
	forceRm   bool
	cacheFrom []string
	addHosts  []string
}

func (c *berthCLI) newBuildCommand() *cobra.Command {
	var o buildOptions
	cmd := &cobra.Command{
		Use:   "build [OPTIONS] PATH | URL | -",
		Short: "Build an image from a Dockerfile",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.runBuild(cmd, args[0], o)
		},
		Annotations: map[string]string{"category-top": "4", "aliases": "berth image build, berth build, berth builder build"},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.tags, "tag", "t", nil, `Name and optionally a tag in the "name:tag" format`)
	f.StringVarP(&o.file, "file", "f", "", `Name of the Dockerfile (Default is "PATH/Dockerfile")`)
	f.StringArrayVar(&o.buildArgs, "build-arg", nil, "Set build-time variables")
	f.StringArrayVar(&o.labels, "label", nil, "Set metadata for an image")
	f.StringVar(&o.target, "target", "", "Set the target build stage to build.")
	f.BoolVar(&o.noCache, "no-cache", false, "Do not use cache when building the image")
	f.BoolVar(&o.pull, "pull", false, "Always attempt to pull a newer version of the image")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "Suppress the build output and print image ID on success")
	f.StringVar(&o.iidfile, "iidfile", "", "Write the image ID to the file")
	f.StringVar(&o.network, "network", "default", "Set the networking mode for the RUN instructions during build")
	f.StringVar(&o.platform, "platform", "", "Set platform if server is multi-platform capable")
	f.StringVar(&o.progress, "progress", "auto", "Set type of progress output (auto, plain, tty)")
	f.BoolVar(&o.rm, "rm", true, "Remove intermediate containers after a successful build")
	f.BoolVar(&o.forceRm, "force-rm", false, "Always remove intermediate containers")
	f.StringSliceVar(&o.cacheFrom, "cache-from", nil, "Images to consider as cache sources")
	f.StringSliceVar(&o.addHosts, "add-host", nil, "Add a custom host-to-IP mapping")
	return cmd
}

func (c *berthCLI) runBuild(cmd *cobra.Command, contextArg string, o buildOptions) error {
	switch o.progress {
	case "", "auto", "plain", "tty", "quiet", "rawjson":
	default:
		return fmt.Errorf("invalid progress mode %q (auto, plain, tty)", o.progress)
	}
	if o.progress == "tty" && !c.out.IsTerminal() {
		return errors.New("invalid progress mode tty: the output is not a terminal (use --progress plain)")
	}
	var body io.Reader
	dockerfileName := ""
	switch {
	case contextArg == "-":
		if o.file == "-" {
			return errors.New("invalid argument: can't use stdin for both build context and dockerfile")
		}
		body = c.in
		dockerfileName = o.file
	case strings.Contains(contextArg, "://") || strings.HasPrefix(contextArg, "git@"):
		return fmt.Errorf("unable to prepare context: remote build contexts (%s) are not supported by berth", contextArg)
	default:
		st, err := os.Stat(contextArg)
		if err != nil {
			return fmt.Errorf("unable to prepare context: path %q not found", contextArg)
		}
		if !st.IsDir() {
			return fmt.Errorf("unable to prepare context: context must be a directory: %s", contextArg)
		}
		rc, name, err := c.contextTar(contextArg, o.file)
		if err != nil {
			return err
		}
		defer rc.Close()
		body, dockerfileName = rc, name
	}
	args := map[string]*string{}
	for _, a := range o.buildArgs {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			if ev, set := c.lookupEnv(k); set {
				args[k] = &ev
			} else {
				args[k] = nil
			}
			continue
		}
		args[k] = &v
	}
	labels := map[string]string{}
	for _, l := range o.labels {
		k, v, _ := strings.Cut(l, "=")
		labels[k] = v
	}
	opts := client.ImageBuildOptions{
		Tags: o.tags, Dockerfile: dockerfileName, BuildArgs: args, Labels: labels,
		Target: o.target, NoCache: o.noCache, PullParent: o.pull, SuppressOutput: o.quiet,
		NetworkMode: o.network, Remove: o.rm, ForceRemove: o.forceRm, CacheFrom: o.cacheFrom,
		ExtraHosts: o.addHosts,
	}
	if pl, err := parsePlatform(o.platform); err != nil {
		return err
	} else if pl != nil {
		opts.Platforms = append(opts.Platforms, *pl)
	}
	api, err := c.Client()
	if err != nil {
		return err
	}
	res, err := api.ImageBuild(cmd.Context(), body, opts)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	var id string
	aux := func(m jsonstream.Message) {
		var v struct{ ID string }
		if m.Aux != nil && json.Unmarshal(*m.Aux, &v) == nil && v.ID != "" {
			id = v.ID
		}
	}
	var out io.Writer = c.out
	var buf bytes.Buffer
	if o.quiet {
		out = &buf
	}
	fd, isTerm := c.out.FD(), c.out.IsTerminal() && !o.quiet && o.progress != "plain"
	display := func() error { return jsonmessage.DisplayJSONMessagesStream(res.Body, out, fd, isTerm, aux) }
	if isTerm && o.progress != "rawjson" {
		display = func() error { return c.displayBuildView(res.Body, aux) }
	}
	if err := display(); err != nil {
		var jerr *jsonstream.Error
		if errors.As(err, &jerr) {
			if o.quiet {
				_, _ = c.err.Write(buf.Bytes())
			}
			if jerr.Code == 0 {
				jerr.Code = 1
			}
			return StatusError{Status: jerr.Message, StatusCode: jerr.Code}
		}
		return err
	}
	if o.quiet {
		_, _ = io.Copy(c.out, &buf)
	}
	if o.iidfile != "" && id != "" {
		if err := os.WriteFile(o.iidfile, []byte(id), 0o644); err != nil {
			return fmt.Errorf("write image ID file: %w", err)
		}
	}
	return nil
}

// contextTar tars the context directory as docker's CLI does: the
// .dockerignore applied (never to the Dockerfile or .dockerignore), owners
// reset to root, and a Dockerfile from outside the context (or stdin with
// -f -) added under a generated name.
func (c *berthCLI) contextTar(dir, file string) (io.ReadCloser, string, error) {
	var excludes []string
	if f, err := os.Open(filepath.Join(dir, ".dockerignore")); err == nil {
		excludes, err = ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, "", fmt.Errorf("failed to read .dockerignore: %w", err)
		}
	}
	name := "Dockerfile"
	var extra []byte
	switch {
	case file == "-":
		b, err := io.ReadAll(c.in)
		if err != nil {
			return nil, "", err
		}
		extra, name = b, ".dockerfile.berth-stdin"
	case file != "":
		abs, err := filepath.Abs(file)
		if err != nil {
			return nil, "", err
		}
		absDir, err := filepath.Abs(dir)
		if err != nil {
			return nil, "", err
		}
		rel, err := filepath.Rel(absDir, abs)
		if err != nil || strings.HasPrefix(rel, "..") {
			b, err := os.ReadFile(file)
			if err != nil {
				return nil, "", fmt.Errorf("unable to prepare context: unable to evaluate symlinks in Dockerfile path: %w", err)
			}
			extra, name = b, ".dockerfile.berth-outside"
		} else {
			name = filepath.ToSlash(rel)
		}
	}
	if extra == nil {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return nil, "", fmt.Errorf("unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat %s: no such file or directory", filepath.Join(dir, name))
		}
		excludes = append(excludes, "!"+name)
	}
	excludes = append(excludes, "!.dockerignore")
	rc, err := goarchive.TarWithOptions(dir, &goarchive.TarOptions{
		ExcludePatterns: excludes,
		ChownOpts:       &goarchive.ChownOpts{UID: 0, GID: 0},
		Compression:     compression.None,
	})
	if err != nil {
		return nil, "", err
	}
	if extra == nil {
		return rc, name, nil
	}
	pr, pw := io.Pipe()
	go func() {
		defer rc.Close()
		tr := tar.NewReader(rc)
		tw := tar.NewWriter(pw)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			if err := tw.WriteHeader(h); err != nil {
				pw.CloseWithError(err)
				return
			}
			if _, err := io.Copy(tw, tr); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(extra)), Typeflag: tar.TypeReg}); err == nil {
			_, _ = tw.Write(extra)
		}
		pw.CloseWithError(tw.Close())
	}()
	return pr, name, nil
}

// displayBuildView renders the build stream as the compact live view and
// returns the stream's error, as jsonmessage.DisplayJSONMessagesStream does.
func (c *berthCLI) displayBuildView(r io.Reader, aux func(jsonstream.Message)) error {
	v := newBuildView(c.out, func() int { _, w := c.out.GetTtySize(); return int(w) })
	stop := make(chan struct{})
	go v.run(100*time.Millisecond, stop)
	defer close(stop)
	dec := json.NewDecoder(r)
	for {
		var m jsonstream.Message
		if err := dec.Decode(&m); err == io.EOF {
			v.finish(false)
			return nil
		} else if err != nil {
			v.finish(true)
			return err
		}
		if m.Aux != nil {
			aux(m)
			continue
		}
		if m.Error != nil {
			v.finish(true)
			return m.Error
		}
		v.handle(m)
	}
}
