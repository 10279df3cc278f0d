package formatter

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const defaultContainerTableFormat = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"

// NewContainerFormat turns a --format value into the Format `ps` uses.
func NewContainerFormat(source string, quiet, size bool) Format {
	switch source {
	case TableFormatKey, "":
		if quiet {
			return DefaultQuietFormat
		}
		f := defaultContainerTableFormat
		if size {
			f += `\t{{.Size}}`
		}
		return Format(f)
	case RawFormatKey:
		if quiet {
			return `container_id: {{.ID}}`
		}
		f := "container_id: {{.ID}}\nimage: {{.Image}}\ncommand: {{.Command}}\ncreated_at: {{.CreatedAt}}\n" +
			"state: {{- pad .State 1 0}}\nstatus: {{- pad .Status 1 0}}\nnames: {{.Names}}\n" +
			"labels: {{- pad .Labels 1 0}}\nports: {{- pad .Ports 1 0}}\n"
		if size {
			f += `size: {{.Size}}\n`
		}
		return Format(f)
	default:
		if quiet {
			return DefaultQuietFormat
		}
		return Format(source)
	}
}

// ContainerWrite renders containers (the `ps` list) in ctx's format.
func ContainerWrite(ctx Context, containers []container.Summary, now time.Time) error {
	return ctx.Write(NewContainerContext(), func(emit func(SubContext) error) error {
		for _, c := range containers {
			if err := emit(&ContainerContext{trunc: ctx.Trunc, c: c, now: now}); err != nil {
				return err
			}
		}
		return nil
	})
}

// ContainerContext is one `ps` row as seen by a template: .ID, .Image,
// .Command, .CreatedAt, .RunningFor, .Ports, .State, .Status, .Size,
// .Names, .Labels, .Label "k", .Mounts, .LocalVolumes, .Networks.
type ContainerContext struct {
	HeaderContext
	trunc bool
	c     container.Summary
	now   time.Time

	// FieldsUsed records placeholders a template touched; `ps` uses it to
	// ask the daemon for sizes only when .Size is shown.
	FieldsUsed map[string]any
}

// NewContainerContext returns an empty row carrying the column names.
func NewContainerContext() *ContainerContext {
	return &ContainerContext{HeaderContext: HeaderContext{Header: SubHeaderContext{
		"ID":           "CONTAINER ID",
		"Names":        "NAMES",
		"Image":        "IMAGE",
		"Command":      "COMMAND",
		"CreatedAt":    "CREATED AT",
		"RunningFor":   "CREATED",
		"Ports":        "PORTS",
		"State":        "STATE",
		"Status":       "STATUS",
		"Size":         "SIZE",
		"Labels":       "LABELS",
		"Mounts":       "MOUNTS",
		"LocalVolumes": "LOCAL VOLUMES",
		"Networks":     "NETWORKS",
	}}}
}

// MarshalJSON renders the row for --format json.
func (c *ContainerContext) MarshalJSON() ([]byte, error) { return MarshalJSON(c) }

// ID is the container ID, shortened unless --no-trunc.
func (c *ContainerContext) ID() string {
	if c.trunc {
		return TruncateID(c.c.ID)
	}
	return c.c.ID
}

// Names is the container's name(s) without the leading slash; legacy link
// names are left out unless --no-trunc.
func (c *ContainerContext) Names() string {
	names := make([]string, 0, len(c.c.Names))
	for _, n := range c.c.Names {
		names = append(names, strings.TrimPrefix(n, "/"))
	}
	if c.trunc {
		for _, n := range names {
			if !strings.Contains(n, "/") {
				names = []string{n}
				break
			}
		}
	}
	return strings.Join(names, ",")
}

// Image is the image reference the container was created from; a digest
// is dropped unless --no-trunc.
func (c *ContainerContext) Image() string {
	if c.c.Image == "" {
		return "<no image>"
	}
	if c.trunc {
		if t := TruncateID(c.c.ImageID); t == TruncateID(c.c.Image) {
			return t
		}
		if ref, err := reference.ParseNormalizedNamed(c.c.Image); err == nil {
			if nt, ok := ref.(reference.NamedTagged); ok {
				if tagged, err := reference.WithTag(reference.TrimNamed(nt), nt.Tag()); err == nil {
					return reference.FamiliarString(tagged)
				}
			} else {
				return reference.FamiliarString(reference.TrimNamed(ref))
			}
		}
	}
	return c.c.Image
}

// Command is the quoted command, shortened to 20 columns unless --no-trunc.
func (c *ContainerContext) Command() string {
	cmd := c.c.Command
	if c.trunc {
		cmd = Ellipsis(cmd, 20)
	}
	return strconv.Quote(cmd)
}

// CreatedAt is the creation time in Go's default layout, as docker prints.
func (c *ContainerContext) CreatedAt() string { return time.Unix(c.c.Created, 0).String() }

// RunningFor is how long ago the container was created ("2 minutes ago").
func (c *ContainerContext) RunningFor() string {
	return units.HumanDuration(c.now.UTC().Sub(time.Unix(c.c.Created, 0))) + " ago"
}

// Ports lists exposed and published ports ("0.0.0.0:80->80/tcp").
func (c *ContainerContext) Ports() string { return DisplayablePorts(c.c.Ports) }

// State is the machine-readable state ("running").
func (c *ContainerContext) State() string { return string(c.c.State) }

// Status is the daemon's human status ("Up 2 minutes").
func (c *ContainerContext) Status() string { return c.c.Status }

// Size is the writable layer's size and the total ("0B (virtual 1.2MB)").
func (c *ContainerContext) Size() string {
	if c.FieldsUsed == nil {
		c.FieldsUsed = map[string]any{}
	}
	c.FieldsUsed["Size"] = struct{}{}
	srw := units.HumanSizeWithPrecision(float64(c.c.SizeRw), 3)
	if c.c.SizeRootFs > 0 {
		return fmt.Sprintf("%s (virtual %s)", srw, units.HumanSizeWithPrecision(float64(c.c.SizeRootFs), 3))
	}
	return srw
}

// Labels is "k=v,k2=v2" (sorted, for a stable output).
func (c *ContainerContext) Labels() string {
	if c.c.Labels == nil {
		return ""
	}
	out := make([]string, 0, len(c.c.Labels))
	for k, v := range c.c.Labels {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// Label is one label's value.
func (c *ContainerContext) Label(name string) string {
	if c.c.Labels == nil {
		return ""
	}
	return c.c.Labels[name]
}

// Mounts lists mount names (volume name, or source path).
func (c *ContainerContext) Mounts() string {
	var mounts []string
	for _, m := range c.c.Mounts {
		name := m.Name
		if name == "" {
			name = m.Source
		}
		if c.trunc {
			name = Ellipsis(name, 15)
		}
		mounts = append(mounts, name)
	}
	return strings.Join(mounts, ",")
}

// LocalVolumes counts mounts of local-driver volumes.
func (c *ContainerContext) LocalVolumes() string {
	n := 0
	for _, m := range c.c.Mounts {
		if m.Driver == "local" {
			n++
		}
	}
	return strconv.Itoa(n)
}

// Platform is the platform of the image the container runs, when the
// daemon reports it.
func (c *ContainerContext) Platform() *ocispec.Platform {
	if d := c.c.ImageManifestDescriptor; d != nil {
		return d.Platform
	}
	return nil
}

// Networks lists the networks the container is attached to.
func (c *ContainerContext) Networks() string {
	if c.c.NetworkSettings == nil {
		return ""
	}
	out := make([]string, 0, len(c.c.NetworkSettings.Networks))
	for k := range c.c.NetworkSettings.Networks {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// DisplayablePorts renders ports the way `docker ps` does: consecutive
// ports grouped into ranges, host mappings after them.
func DisplayablePorts(ports []container.PortSummary) string {
	type portGroup struct{ first, last uint16 }
	groupMap := map[string]*portGroup{}
	var result, hostMappings, groupKeys []string
	ports = append([]container.PortSummary(nil), ports...)
	sort.Slice(ports, func(i, j int) bool {
		a, b := ports[i], ports[j]
		if a.PrivatePort != b.PrivatePort {
			return a.PrivatePort < b.PrivatePort
		}
		if a.IP != b.IP {
			return a.IP.Less(b.IP)
		}
		if a.PublicPort != b.PublicPort {
			return a.PublicPort < b.PublicPort
		}
		return a.Type < b.Type
	})
	for _, p := range ports {
		current := p.PrivatePort
		key := p.Type
		if p.IP.IsValid() {
			ip := p.IP.String()
			if p.PublicPort != current {
				hostMappings = append(hostMappings, fmt.Sprintf("%s->%d/%s", net.JoinHostPort(ip, strconv.Itoa(int(p.PublicPort))), p.PrivatePort, p.Type))
				continue
			}
			key = ip + "/" + p.Type
		}
		g := groupMap[key]
		if g == nil {
			groupMap[key] = &portGroup{first: current, last: current}
			groupKeys = append(groupKeys, key)
			continue
		}
		if current == g.last+1 {
			g.last = current
			continue
		}
		result = append(result, formGroup(key, g.first, g.last))
		groupMap[key] = &portGroup{first: current, last: current}
	}
	for _, k := range groupKeys {
		g := groupMap[k]
		result = append(result, formGroup(k, g.first, g.last))
	}
	return strings.Join(append(result, hostMappings...), ", ")
}

func formGroup(key string, start, last uint16) string {
	i := strings.LastIndex(key, "/")
	ip, typ := "", key
	if i >= 0 {
		ip, typ = key[:i], key[i+1:]
	}
	group := strconv.Itoa(int(start))
	if start != last {
		group = fmt.Sprintf("%s-%d", group, last)
	}
	if ip != "" {
		if strings.Contains(ip, ":") {
			ip = "[" + ip + "]"
		}
		group = fmt.Sprintf("%s:%s->%s", ip, group, group)
	}
	return group + "/" + typ
}
