package cli

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/system"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/internal/cli/formatter"
	"github.com/berth-engine/berth/internal/version"
)

// versionTemplate is docker's `version` layout.
const versionTemplate = `{{with .Client -}}
Client:{{if ne .Platform.Name ""}} {{.Platform.Name}}{{end}}
 Version:	{{.Version}}
 API version:	{{.APIVersion}}{{if ne .APIVersion .DefaultAPIVersion}} (downgraded from {{.DefaultAPIVersion}}){{end}}
 Go version:	{{.GoVersion}}
 Git commit:	{{.GitCommit}}
 Built:	{{.BuildTime}}
 OS/Arch:	{{.Os}}/{{.Arch}}
 Context:	{{.Context}}
{{- end}}

{{- if .ServerOK}}{{with .Server}}

Server:{{if ne .Platform.Name ""}} {{.Platform.Name}}{{end}}
 {{- range $component := .Components}}
 {{$component.Name}}:
  {{- if eq $component.Name "Engine" }}
  Version:	{{.Version}}
  API version:	{{index .Details "ApiVersion"}} (minimum version {{index .Details "MinAPIVersion"}})
  Go version:	{{index .Details "GoVersion"}}
  Git commit:	{{index .Details "GitCommit"}}
  Built:	{{index .Details "BuildTime"}}
  OS/Arch:	{{index .Details "Os"}}/{{index .Details "Arch"}}
  Experimental:	{{index .Details "Experimental"}}
  {{- else }}
  Version:	{{$component.Version}}
  {{- $detailsOrder := getDetailsOrder $component}}
  {{- range $key := $detailsOrder}}
  {{$key}}:	{{index $component.Details $key}}
   {{- end}}
  {{- end}}
 {{- end}}
 {{- end}}{{- end}}`

type clientVersion struct {
	Platform          struct{ Name string } `json:",omitempty"`
	Version           string
	APIVersion        string `json:"ApiVersion"`
	DefaultAPIVersion string `json:"DefaultAPIVersion,omitempty"`
	GitCommit         string
	GoVersion         string
	Os                string
	Arch              string
	BuildTime         string `json:",omitempty"`
	Context           string
}

type versionInfo struct {
	Client clientVersion
	Server *system.VersionResponse
}

// ServerOK reports whether the daemon answered.
func (v versionInfo) ServerOK() bool { return v.Server != nil }

func (c *berthCLI) newVersionCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:         "version [OPTIONS]",
		Short:       "Show the berth version information",
		Args:        noArgs,
		Annotations: map[string]string{"category-top": "11"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if format == formatter.JSONFormatKey {
				format = "{{json .}}"
			}
			tmplText := format
			if tmplText == "" {
				tmplText = versionTemplate
			}
			tmpl, err := formatter.NewTemplate("version").Funcs(map[string]any{"getDetailsOrder": getDetailsOrder}).Parse(tmplText)
			if err != nil {
				return StatusError{StatusCode: 64, Status: "Template parsing error: " + err.Error()}
			}
			vd := versionInfo{Client: clientVersion{
				Version:           version.Version,
				APIVersion:        client.MaxAPIVersion,
				DefaultAPIVersion: client.MaxAPIVersion,
				GitCommit:         version.GitCommit,
				GoVersion:         runtime.Version(),
				Os:                runtime.GOOS,
				Arch:              runtime.GOARCH,
				Context:           "default",
			}}
			vd.Client.Platform.Name = "berth"
			var serverErr error
			api, err := c.Client()
			if err != nil {
				return err
			}
			sv, err := api.ServerVersion(cmd.Context(), client.ServerVersionOptions{})
			if err == nil {
				vd.Client.APIVersion = api.ClientVersion()
				resp := &system.VersionResponse{
					Platform:      system.PlatformInfo{Name: sv.Platform.Name},
					Version:       sv.Version,
					APIVersion:    sv.APIVersion,
					MinAPIVersion: sv.MinAPIVersion,
					Os:            sv.Os,
					Arch:          sv.Arch,
					Components:    sv.Components,
				}
				hasEngine := false
				for _, comp := range resp.Components {
					if comp.Name == "Engine" {
						hasEngine = true
						if bt, ok := comp.Details["BuildTime"]; ok {
							comp.Details["BuildTime"] = reformatDate(bt)
						}
					}
				}
				if !hasEngine {
					resp.Components = append(resp.Components, system.ComponentVersion{
						Name: "Engine", Version: sv.Version,
						Details: map[string]string{
							"ApiVersion": sv.APIVersion, "MinAPIVersion": sv.MinAPIVersion, "Os": sv.Os, "Arch": sv.Arch,
							"Experimental": "false",
						},
					})
				}
				vd.Server = resp
			} else {
				serverErr = err
			}
			tw := tabwriter.NewWriter(c.out, 20, 1, 1, ' ', 0)
			execErr := tmpl.Execute(tw, vd)
			_, _ = tw.Write([]byte("\n"))
			_ = tw.Flush()
			if serverErr != nil {
				return serverErr
			}
			return execErr
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", inspectFormatHelp)
	return cmd
}

func reformatDate(s string) string {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.Format(time.ANSIC)
	}
	return s
}

func getDetailsOrder(v system.ComponentVersion) []string {
	out := make([]string, 0, len(v.Details))
	for k := range v.Details {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// infoClient is the client part of `info`.
type infoClient struct {
	Debug    bool
	Version  string
	Context  string
	Plugins  []struct{}
	Warnings []string
}

// dockerInfo is what `info --format` sees: the daemon's fields at the top
// level, as docker's.
type dockerInfo struct {
	*system.Info `json:",omitempty"`
	ServerErrors []string    `json:",omitempty"`
	ClientInfo   *infoClient `json:",omitempty"`
	ClientErrors []string    `json:",omitempty"`
}

func (c *berthCLI) newInfoCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "info [OPTIONS]",
		Short: "Display system-wide information",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			info := dockerInfo{
				ClientInfo: &infoClient{Debug: c.opts.debug, Version: version.Version, Context: "default"},
				Info:       &system.Info{},
			}
			api, err := c.Client()
			if err != nil {
				return err
			}
			res, err := api.Info(cmd.Context(), client.InfoOptions{})
			if err == nil {
				info.Info = &res.Info
			} else {
				err = wrapConnError(c.hostOrDefault(), err)
				info.ServerErrors = append(info.ServerErrors, err.Error())
				if format == "" {
					info.Info = nil
				} else {
					fmt.Fprintln(c.err, err)
				}
			}
			if format == "" {
				return c.prettyPrintInfo(info)
			}
			if format == formatter.JSONFormatKey {
				format = "{{json .}}"
			}
			tmpl, err := formatter.ParseTemplate(format)
			if err != nil {
				return StatusError{StatusCode: 64, Status: "template parsing error: " + err.Error()}
			}
			if err := tmpl.Execute(c.out, info); err != nil {
				return err
			}
			_, err = fmt.Fprintln(c.out)
			return err
		},
		Annotations: map[string]string{"category-top": "12", "aliases": "berth system info, berth info"},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", inspectFormatHelp)
	return cmd
}

// prettyPrintInfo prints docker's `info` layout for the fields the
// daemon returned.
func (c *berthCLI) prettyPrintInfo(info dockerInfo) error {
	w := c.out
	fmt.Fprintln(w, "Client:")
	fmt.Fprintln(w, " Version:   ", info.ClientInfo.Version)
	fmt.Fprintln(w, " Context:   ", info.ClientInfo.Context)
	fmt.Fprintln(w, " Debug Mode:", info.ClientInfo.Debug)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Server:")
	if info.Info != nil {
		printServerInfo(w, c.err, info.Info, c.opts.debug)
	}
	for _, e := range info.ServerErrors {
		fmt.Fprintln(c.err, "ERROR:", e)
	}
	if len(info.ServerErrors) > 0 {
		return errors.New("errors pretty printing info")
	}
	return nil
}

func printServerInfo(w, errw io.Writer, i *system.Info, clientDebug bool) {
	nonEmpty := func(label, v string) {
		if v != "" {
			fmt.Fprintln(w, label, v)
		}
	}
	fmt.Fprintln(w, " Containers:", i.Containers)
	fmt.Fprintln(w, "  Running:", i.ContainersRunning)
	fmt.Fprintln(w, "  Paused:", i.ContainersPaused)
	fmt.Fprintln(w, "  Stopped:", i.ContainersStopped)
	fmt.Fprintln(w, " Images:", i.Images)
	nonEmpty(" Server Version:", i.ServerVersion)
	nonEmpty(" Storage Driver:", i.Driver)
	for _, p := range i.DriverStatus {
		fmt.Fprintf(w, "  %s: %s\n", p[0], p[1])
	}
	for _, p := range i.SystemStatus {
		fmt.Fprintf(w, " %s: %s\n", p[0], p[1])
	}
	nonEmpty(" Logging Driver:", i.LoggingDriver)
	nonEmpty(" Cgroup Driver:", i.CgroupDriver)
	nonEmpty(" Cgroup Version:", i.CgroupVersion)
	fmt.Fprintln(w, " Plugins:")
	fmt.Fprintln(w, "  Volume:", strings.Join(i.Plugins.Volume, " "))
	fmt.Fprintln(w, "  Network:", strings.Join(i.Plugins.Network, " "))
	if len(i.Plugins.Authorization) != 0 {
		fmt.Fprintln(w, "  Authorization:", strings.Join(i.Plugins.Authorization, " "))
	}
	fmt.Fprintln(w, "  Log:", strings.Join(i.Plugins.Log, " "))
	if len(i.CDISpecDirs) > 0 {
		fmt.Fprintln(w, " CDI spec directories:")
		for _, d := range i.CDISpecDirs {
			fmt.Fprintf(w, "  %s\n", d)
		}
	}
	fmt.Fprintln(w, " Swarm:", i.Swarm.LocalNodeState)
	if len(i.Runtimes) > 0 {
		names := make([]string, 0, len(i.Runtimes))
		for n := range i.Runtimes {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintln(w, " Runtimes:", strings.Join(names, " "))
		fmt.Fprintln(w, " Default Runtime:", i.DefaultRuntime)
	}
	if i.OSType == "linux" {
		fmt.Fprintln(w, " Init Binary:", i.InitBinary)
		fmt.Fprintln(w, " containerd version:", i.ContainerdCommit.ID)
		fmt.Fprintln(w, " runc version:", i.RuncCommit.ID)
		fmt.Fprintln(w, " init version:", i.InitCommit.ID)
		if len(i.SecurityOptions) != 0 {
			fmt.Fprintln(w, " Security Options:")
			for _, so := range i.SecurityOptions {
				name, profile := decodeSecurityOption(so)
				fmt.Fprintln(w, "  "+name)
				if profile != "" {
					fmt.Fprintln(w, "   Profile:", profile)
				}
			}
		}
	}
	nonEmpty(" Kernel Version:", i.KernelVersion)
	nonEmpty(" Operating System:", i.OperatingSystem)
	nonEmpty(" OSType:", i.OSType)
	nonEmpty(" Architecture:", i.Architecture)
	fmt.Fprintln(w, " CPUs:", i.NCPU)
	fmt.Fprintln(w, " Total Memory:", units.BytesSize(float64(i.MemTotal)))
	nonEmpty(" Name:", i.Name)
	nonEmpty(" ID:", i.ID)
	fmt.Fprintln(w, " Docker Root Dir:", i.DockerRootDir)
	fmt.Fprintln(w, " Debug Mode:", i.Debug)
	if i.Debug || clientDebug {
		fmt.Fprintln(w, "  File Descriptors:", i.NFd)
		fmt.Fprintln(w, "  Goroutines:", i.NGoroutines)
		fmt.Fprintln(w, "  System Time:", i.SystemTime)
		fmt.Fprintln(w, "  EventsListeners:", i.NEventsListener)
	}
	nonEmpty(" HTTP Proxy:", i.HTTPProxy)
	nonEmpty(" HTTPS Proxy:", i.HTTPSProxy)
	nonEmpty(" No Proxy:", i.NoProxy)
	if len(i.Labels) > 0 {
		fmt.Fprintln(w, " Labels:")
		for _, l := range i.Labels {
			fmt.Fprintln(w, "  "+l)
		}
	}
	fmt.Fprintln(w, " Experimental:", i.ExperimentalBuild)
	if i.RegistryConfig != nil {
		var insecure []string
		for _, ic := range i.RegistryConfig.IndexConfigs {
			if ic != nil && !ic.Secure {
				insecure = append(insecure, ic.Name)
			}
		}
		for _, cidr := range i.RegistryConfig.InsecureRegistryCIDRs {
			insecure = append(insecure, cidr.String())
		}
		if len(insecure) > 0 {
			fmt.Fprintln(w, " Insecure Registries:")
			for _, r := range insecure {
				fmt.Fprintln(w, "  "+r)
			}
		}
		if len(i.RegistryConfig.Mirrors) > 0 {
			fmt.Fprintln(w, " Registry Mirrors:")
			for _, m := range i.RegistryConfig.Mirrors {
				fmt.Fprintln(w, "  "+m)
			}
		}
	}
	fmt.Fprintln(w, " Live Restore Enabled:", i.LiveRestoreEnabled)
	if len(i.DefaultAddressPools) > 0 {
		fmt.Fprintln(w, " Default Address Pools:")
		for _, p := range i.DefaultAddressPools {
			fmt.Fprintf(w, "   Base: %s, Size: %d\n", p.Base, p.Size)
		}
	}
	fmt.Fprintln(w)
	for _, warn := range i.Warnings {
		fmt.Fprintln(errw, warn)
	}
}

// decodeSecurityOption reads the daemon's "name=seccomp,profile=builtin"
// (or a bare legacy "seccomp") into a name and a profile.
func decodeSecurityOption(s string) (name, profile string) {
	if !strings.Contains(s, "=") {
		return s, ""
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "name":
			name = v
		case "profile":
			profile = v
		}
	}
	return name, profile
}
