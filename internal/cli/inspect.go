package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/template"

	"github.com/berth-engine/berth/internal/cli/formatter"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// getRefFunc fetches one object: its typed value and its raw JSON.
type getRefFunc func(ctx context.Context, ref string) (any, []byte, error)

// inspector collects inspected objects and prints them: an indented JSON
// array (default), compact JSON ("json"), or a template per object.
type inspector struct {
	out  io.Writer
	tmpl *template.Template
	json bool
	raws [][]byte
	buf  bytes.Buffer
}

func newInspector(out io.Writer, format string) (*inspector, error) {
	switch format {
	case "":
		return &inspector{out: out}, nil
	case "json":
		return &inspector{out: out, json: true}, nil
	}
	tmpl, err := formatter.ParseTemplate(format)
	if err != nil {
		return nil, fmt.Errorf("template parsing error: %w", err)
	}
	return &inspector{out: out, tmpl: tmpl}, nil
}

// add renders one object. A template first runs on the typed value; when
// that fails (a field the typed struct lacks), it runs on the raw JSON
// decoded into maps, as docker does.
func (i *inspector) add(typed any, raw []byte) error {
	if i.tmpl == nil {
		i.raws = append(i.raws, raw)
		return nil
	}
	var b bytes.Buffer
	if err := i.tmpl.Execute(&b, typed); err != nil {
		var generic any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if derr := dec.Decode(&generic); derr != nil {
			return fmt.Errorf("unable to read inspect data: %w", derr)
		}
		b.Reset()
		if err := i.tmpl.Option("missingkey=error").Execute(&b, generic); err != nil {
			return fmt.Errorf("template parsing error: %w", err)
		}
	}
	i.buf.Write(b.Bytes())
	i.buf.WriteByte('\n')
	return nil
}

func (i *inspector) flush() error {
	if i.tmpl != nil {
		if i.buf.Len() == 0 {
			_, err := io.WriteString(i.out, "\n")
			return err
		}
		_, err := i.buf.WriteTo(i.out)
		return err
	}
	if len(i.raws) == 0 {
		_, err := io.WriteString(i.out, "[]\n")
		return err
	}
	all := append([]byte("["), bytes.Join(i.raws, []byte(","))...)
	all = append(all, ']')
	var out bytes.Buffer
	var err error
	if i.json {
		err = json.Compact(&out, all)
	} else {
		err = json.Indent(&out, all, "", "    ")
	}
	if err != nil {
		return fmt.Errorf("render inspect output: %w", err)
	}
	out.WriteByte('\n')
	_, err = out.WriteTo(i.out)
	return err
}

// inspectAll fetches every ref and prints the results; failures are
// reported together at the end with exit code 1, as docker does.
func (c *berthCLI) inspectAll(ctx context.Context, refs []string, format string, get getRefFunc) error {
	ins, err := newInspector(c.out, format)
	if err != nil {
		return StatusError{Status: err.Error(), StatusCode: 64, Cause: err}
	}
	var errs []string
	for _, ref := range refs {
		typed, raw, err := get(ctx, ref)
		if err != nil {
			errs = append(errs, wrapConnError(c.hostOrDefault(), err).Error())
			continue
		}
		if err := ins.add(typed, raw); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if err := ins.flush(); err != nil {
		slog.Error("inspect", "error", err)
	}
	if len(errs) > 0 {
		return StatusError{Status: strings.Join(errs, "\n"), StatusCode: 1}
	}
	return nil
}

func (c *berthCLI) getContainer(size bool) getRefFunc {
	return func(ctx context.Context, ref string) (any, []byte, error) {
		api, err := c.Client()
		if err != nil {
			return nil, nil, err
		}
		res, err := api.ContainerInspect(ctx, ref, client.ContainerInspectOptions{Size: size})
		if err != nil {
			return nil, nil, err
		}
		return res.Container, res.Raw, nil
	}
}

func (c *berthCLI) getImage(ctx context.Context, ref string) (any, []byte, error) {
	api, err := c.Client()
	if err != nil {
		return nil, nil, err
	}
	var raw bytes.Buffer
	res, err := api.ImageInspect(ctx, ref, client.ImageInspectWithRawResponse(&raw))
	if err != nil {
		return nil, nil, err
	}
	return res.InspectResponse, raw.Bytes(), nil
}

func (c *berthCLI) getNetwork(ctx context.Context, ref string) (any, []byte, error) {
	api, err := c.Client()
	if err != nil {
		return nil, nil, err
	}
	res, err := api.NetworkInspect(ctx, ref, client.NetworkInspectOptions{})
	if err != nil {
		return nil, nil, err
	}
	return res.Network, res.Raw, nil
}

func (c *berthCLI) getVolume(ctx context.Context, ref string) (any, []byte, error) {
	api, err := c.Client()
	if err != nil {
		return nil, nil, err
	}
	res, err := api.VolumeInspect(ctx, ref, client.VolumeInspectOptions{})
	if err != nil {
		return nil, nil, err
	}
	return res.Volume, res.Raw, nil
}

var inspectTypes = []string{"container", "image", "network", "volume"}

func (c *berthCLI) newInspectCommand() *cobra.Command {
	var format, typ string
	var size bool
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] NAME|ID [NAME|ID...]",
		Short: "Return low-level information on Docker objects",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			getters := map[string]getRefFunc{
				"container": c.getContainer(size),
				"image":     c.getImage,
				"network":   c.getNetwork,
				"volume":    c.getVolume,
			}
			if typ != "" {
				get, ok := getters[typ]
				if !ok {
					return fmt.Errorf("%q is not a valid value for --type", typ)
				}
				return c.inspectAll(cmd.Context(), args, format, get)
			}
			// Without --type, the first kind of object that has the name
			// wins, in docker's order.
			return c.inspectAll(cmd.Context(), args, format, func(ctx context.Context, ref string) (any, []byte, error) {
				for _, t := range inspectTypes {
					v, raw, err := getters[t](ctx, ref)
					if err == nil {
						return v, raw, nil
					}
					if !skippableInspectError(err) {
						return nil, nil, err
					}
				}
				return nil, nil, fmt.Errorf("Error: No such object: %s", ref)
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&format, "format", "f", "", inspectFormatHelp)
	f.StringVar(&typ, "type", "", "Only inspect objects of the given type")
	f.BoolVarP(&size, "size", "s", false, "Display total file sizes if the type is container")
	return cmd
}

// skippableInspectError: this kind of object has no such name (or the
// daemon does not serve this kind at all), so try the next kind.
func skippableInspectError(err error) bool {
	return cerrdefs.IsNotFound(err) || cerrdefs.IsNotImplemented(err) || cerrdefs.IsInvalidArgument(err) ||
		cerrdefs.IsUnavailable(err) && !client.IsErrConnectionFailed(err)
}

func (c *berthCLI) newContainerInspectCommand() *cobra.Command {
	var format string
	var size bool
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Display detailed information on one or more containers",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.inspectAll(cmd.Context(), args, format, c.getContainer(size))
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", inspectFormatHelp)
	cmd.Flags().BoolVarP(&size, "size", "s", false, "Display total file sizes")
	return cmd
}

func (c *berthCLI) newImageInspectCommand() *cobra.Command {
	var format, platform string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] IMAGE [IMAGE...]",
		Short: "Display detailed information on one or more images",
		Args:  requiresMinArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := parsePlatform(platform)
			if err != nil {
				return err
			}
			get := c.getImage
			if p != nil {
				get = func(ctx context.Context, ref string) (any, []byte, error) {
					api, err := c.Client()
					if err != nil {
						return nil, nil, err
					}
					var raw bytes.Buffer
					res, err := api.ImageInspect(ctx, ref, client.ImageInspectWithRawResponse(&raw), client.ImageInspectWithPlatform(p))
					if err != nil {
						return nil, nil, err
					}
					return res.InspectResponse, raw.Bytes(), nil
				}
			}
			return c.inspectAll(cmd.Context(), args, format, get)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", inspectFormatHelp)
	cmd.Flags().StringVar(&platform, "platform", "", `Inspect a specific platform of the multi-platform image.
If the image or the server is not multi-platform capable, the command will error out if the platform does not match.
'os[/arch[/variant]]': Explicit platform (eg. linux/amd64)`)
	return cmd
}
