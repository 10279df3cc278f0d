package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/jsonmessage"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Values of --pull.
const (
	pullAlways  = "always"
	pullMissing = "missing"
	pullNever   = "never"
)

// createOptions are the create-only settings of `create` and `run`.
type createOptions struct {
	name     string
	platform string
	pull     string
	quiet    bool
}

func addCreateFlags(flags *pflag.FlagSet, o *createOptions, verb string) {
	flags.StringVar(&o.name, "name", "", "Assign a name to the container")
	flags.StringVar(&o.pull, "pull", pullMissing, fmt.Sprintf(`Pull image before %s ("%s", "%s", "%s")`, verb, pullAlways, pullMissing, pullNever))
	flags.BoolVarP(&o.quiet, "quiet", "q", false, "Suppress the pull output")
	flags.StringVar(&o.platform, "platform", "", "Set platform if server is multi-platform capable")
	// An explicit --help without -h: -h is --hostname here, as in docker.
	flags.Bool("help", false, "Print usage")
	// Accepted for compatibility: berth does not verify signatures.
	flags.Bool("disable-content-trust", true, "Skip image verification")
}

func validatePullOpt(val string) error {
	switch val {
	case pullAlways, pullMissing, pullNever, "":
		return nil
	}
	return fmt.Errorf("invalid pull option: '%s': must be one of %q, %q or %q", val, pullAlways, pullMissing, pullNever)
}

func (c *berthCLI) newCreateCommand() *cobra.Command {
	var o createOptions
	var copts *containerOptions
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create a new container",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			copts.Image = args[0]
			copts.Args = args[1:]
			if err := validatePullOpt(o.pull); err != nil {
				return StatusError{Status: withHelp(err, cmd).Error(), StatusCode: 125, Cause: err}
			}
			cfg, err := copts.parse(cmd.Flags())
			if err != nil {
				return StatusError{Status: withHelp(err, cmd).Error(), StatusCode: 125, Cause: err}
			}
			id, err := c.createContainer(cmd.Context(), cfg, &o)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.out, id)
			return nil
		},
		Annotations: map[string]string{"aliases": "berth container create, berth create"},
	}
	cmd.Flags().SetInterspersed(false)
	addCreateFlags(cmd.Flags(), &o, "creating")
	copts = addContainerFlags(cmd.Flags(), c.lookupEnv)
	return cmd
}

// parsePlatform parses "os[/arch[/variant]]".
func parsePlatform(s string) (*ocispec.Platform, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(strings.ToLower(s), "/")
	if len(parts) > 3 || parts[0] == "" {
		return nil, fmt.Errorf("invalid platform %q: expected os[/arch[/variant]]", s)
	}
	p := &ocispec.Platform{OS: parts[0]}
	if len(parts) > 1 {
		p.Architecture = parts[1]
	}
	if len(parts) > 2 {
		p.Variant = parts[2]
	}
	for _, v := range parts {
		if v == "" {
			return nil, fmt.Errorf("invalid platform %q: expected os[/arch[/variant]]", s)
		}
	}
	return p, nil
}

// createContainer sends the create request, pulling the image first with
// --pull=always, or after a "No such image" answer with --pull=missing
// (docker's default). It writes --cidfile and prints the daemon's
// warnings.
func (c *berthCLI) createContainer(ctx context.Context, cfg *containerConfig, o *createOptions) (string, error) {
	api, err := c.Client()
	if err != nil {
		return "", err
	}
	cid, err := newCIDFile(cfg.HostConfig.ContainerIDFile)
	if err != nil {
		return "", err
	}
	defer cid.Close()

	ref, err := reference.ParseAnyReference(cfg.Config.Image)
	if err != nil {
		return "", err
	}
	var named reference.Named
	if n, ok := ref.(reference.Named); ok {
		named = reference.TagNameOnly(n)
	}
	platform, err := parsePlatform(o.platform)
	if err != nil {
		return "", err
	}
	if o.pull == pullAlways {
		if err := c.pullForCreate(ctx, cfg.Config.Image, o); err != nil {
			return "", err
		}
	}
	cfg.HostConfig.ConsoleSize[0], cfg.HostConfig.ConsoleSize[1] = c.out.GetTtySize()
	req := client.ContainerCreateOptions{
		Config:           cfg.Config,
		HostConfig:       cfg.HostConfig,
		NetworkingConfig: cfg.NetworkingConfig,
		Platform:         platform,
		Name:             o.name,
	}
	resp, err := api.ContainerCreate(ctx, req)
	if err != nil {
		if !cerrdefs.IsNotFound(err) || named == nil || o.pull != pullMissing {
			return "", err
		}
		if !o.quiet {
			// Never on stdout: scripts read the container ID from there.
			fmt.Fprintf(c.err, "Unable to find image '%s' locally\n", reference.FamiliarString(named))
		}
		if err := c.pullForCreate(ctx, cfg.Config.Image, o); err != nil {
			return "", err
		}
		if resp, err = api.ContainerCreate(ctx, req); err != nil {
			return "", err
		}
	}
	for _, w := range resp.Warnings {
		fmt.Fprintln(c.err, "WARNING:", w)
	}
	if err := cid.Write(resp.ID); err != nil {
		return resp.ID, err
	}
	return resp.ID, nil
}

// pullForCreate pulls img, rendering progress on stderr.
func (c *berthCLI) pullForCreate(ctx context.Context, img string, o *createOptions) error {
	api, err := c.Client()
	if err != nil {
		return err
	}
	var platforms []ocispec.Platform
	if p, err := parsePlatform(o.platform); err != nil {
		return err
	} else if p != nil {
		platforms = append(platforms, *p)
	}
	resp, err := api.ImagePull(ctx, img, client.ImagePullOptions{Platforms: platforms, RegistryAuth: c.encodedAuth(img)})
	if err != nil {
		return err
	}
	defer resp.Close()
	var out io.Writer = c.err
	if o.quiet {
		out = io.Discard
	}
	return jsonmessage.DisplayStream(resp, out)
}

// cidFile is --cidfile: created before the container, removed again if
// creating the container failed.
type cidFile struct {
	path    string
	file    *os.File
	written bool
}

func newCIDFile(p string) (*cidFile, error) {
	if p == "" {
		return &cidFile{}, nil
	}
	if _, err := os.Stat(p); err == nil {
		return nil, fmt.Errorf("container ID file found, make sure the other container isn't running or delete %s", p)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("failed to create the container ID file: %w", err)
	}
	return &cidFile{path: p, file: f}, nil
}

func (f *cidFile) Write(id string) error {
	if f.file == nil {
		return nil
	}
	if _, err := f.file.WriteString(id); err != nil {
		return fmt.Errorf("failed to write the container ID to the file: %w", err)
	}
	if err := f.file.Sync(); err != nil {
		return fmt.Errorf("failed to write the container ID to the file: %w", err)
	}
	f.written = true
	return nil
}

func (f *cidFile) Close() error {
	if f.file == nil {
		return nil
	}
	f.file.Close()
	if f.written {
		return nil
	}
	if err := os.Remove(f.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("failed to remove the CID file '%s': %w", f.path, err)
	}
	return nil
}
