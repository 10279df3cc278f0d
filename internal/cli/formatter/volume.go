package formatter

import (
	"fmt"
	"sort"
	"strings"

	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/volume"
)

const defaultVolumeTableFormat = "table {{.Driver}}\t{{.Name}}"

// NewVolumeFormat turns a --format value into the Format `volume ls` uses.
func NewVolumeFormat(source string, quiet bool) Format {
	switch source {
	case TableFormatKey, "":
		if quiet {
			return "{{.Name}}"
		}
		return defaultVolumeTableFormat
	case RawFormatKey:
		if quiet {
			return `name: {{.Name}}`
		}
		return "name: {{.Name}}\ndriver: {{.Driver}}\n"
	}
	if quiet {
		return "{{.Name}}"
	}
	return Format(source)
}

// VolumeWrite renders volumes.
func VolumeWrite(ctx Context, vols []volume.Volume) error {
	return ctx.Write(newVolumeContext(), func(emit func(SubContext) error) error {
		for _, v := range vols {
			if err := emit(&volumeContext{v: v}); err != nil {
				return err
			}
		}
		return nil
	})
}

type volumeContext struct {
	HeaderContext
	v volume.Volume
}

func newVolumeContext() *volumeContext {
	return &volumeContext{HeaderContext: HeaderContext{Header: SubHeaderContext{
		"Name":         "VOLUME NAME",
		"Driver":       "DRIVER",
		"Scope":        "SCOPE",
		"Mountpoint":   "MOUNTPOINT",
		"Labels":       "LABELS",
		"Links":        "LINKS",
		"Size":         "SIZE",
		"CreatedAt":    "CREATED",
		"Availability": "AVAILABILITY",
		"Group":        "GROUP",
	}}}
}

// MarshalJSON renders the row for --format json.
func (c *volumeContext) MarshalJSON() ([]byte, error) { return MarshalJSON(c) }

// Name is the volume's name.
func (c *volumeContext) Name() string { return c.v.Name }

// Driver is the volume's driver.
func (c *volumeContext) Driver() string { return c.v.Driver }

// Scope is local.
func (c *volumeContext) Scope() string { return c.v.Scope }

// Mountpoint is where the data lives on the host.
func (c *volumeContext) Mountpoint() string { return c.v.Mountpoint }

// CreatedAt is the creation time.
func (c *volumeContext) CreatedAt() string { return c.v.CreatedAt }

// Availability is empty for local volumes.
func (c *volumeContext) Availability() string { return "N/A" }

// Group is empty for local volumes.
func (c *volumeContext) Group() string { return "N/A" }

// Labels is k=v,… sorted.
func (c *volumeContext) Labels() string {
	var ls []string
	for k, v := range c.v.Labels {
		ls = append(ls, k+"="+v)
	}
	sort.Strings(ls)
	return strings.Join(ls, ",")
}

// Label returns one label's value.
func (c *volumeContext) Label(name string) string { return c.v.Labels[name] }

// Links is the number of containers using it (N/A without usage data).
func (c *volumeContext) Links() string {
	if c.v.UsageData == nil {
		return "N/A"
	}
	return fmt.Sprintf("%d", c.v.UsageData.RefCount)
}

// Size is the disk usage (N/A without usage data).
func (c *volumeContext) Size() string {
	if c.v.UsageData == nil || c.v.UsageData.Size < 0 {
		return "N/A"
	}
	return units.HumanSize(float64(c.v.UsageData.Size))
}
