package formatter

import (
	"fmt"
	"sort"
	"strings"

	"github.com/moby/moby/api/types/network"
)

const defaultNetworkTableFormat = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"

// NewNetworkFormat turns a --format value into the Format `network ls` uses.
func NewNetworkFormat(source string, quiet bool) Format {
	switch source {
	case TableFormatKey, "":
		if quiet {
			return "{{.ID}}"
		}
		return defaultNetworkTableFormat
	case RawFormatKey:
		if quiet {
			return `network_id: {{.ID}}`
		}
		return "network_id: {{.ID}}\nname: {{.Name}}\ndriver: {{.Driver}}\nscope: {{.Scope}}\n"
	}
	if quiet {
		return "{{.ID}}"
	}
	return Format(source)
}

// NetworkWrite renders networks.
func NetworkWrite(ctx Context, nets []network.Summary, trunc bool) error {
	return ctx.Write(newNetworkContext(), func(emit func(SubContext) error) error {
		for _, n := range nets {
			if err := emit(&networkContext{n: n, trunc: trunc}); err != nil {
				return err
			}
		}
		return nil
	})
}

type networkContext struct {
	HeaderContext
	n     network.Summary
	trunc bool
}

func newNetworkContext() *networkContext {
	return &networkContext{HeaderContext: HeaderContext{Header: SubHeaderContext{
		"ID":        "NETWORK ID",
		"Name":      "NAME",
		"Driver":    "DRIVER",
		"Scope":     "SCOPE",
		"IPv4":      "IPV4",
		"IPv6":      "IPV6",
		"Internal":  "INTERNAL",
		"Labels":    "LABELS",
		"CreatedAt": "CREATED AT",
	}}}
}

// MarshalJSON renders the row for --format json.
func (c *networkContext) MarshalJSON() ([]byte, error) { return MarshalJSON(c) }

// ID is the network's ID, 12 characters unless --no-trunc.
func (c *networkContext) ID() string {
	if c.trunc && len(c.n.ID) > 12 {
		return c.n.ID[:12]
	}
	return c.n.ID
}

// Name is the network's name.
func (c *networkContext) Name() string { return c.n.Name }

// Driver is the network's driver.
func (c *networkContext) Driver() string { return c.n.Driver }

// Scope is local.
func (c *networkContext) Scope() string { return c.n.Scope }

// IPv4 says whether IPv4 is enabled.
func (c *networkContext) IPv4() string { return fmt.Sprint(c.n.EnableIPv4) }

// IPv6 says whether IPv6 is enabled.
func (c *networkContext) IPv6() string { return fmt.Sprint(c.n.EnableIPv6) }

// Internal says whether the network is internal.
func (c *networkContext) Internal() string { return fmt.Sprint(c.n.Internal) }

// CreatedAt is the creation time.
func (c *networkContext) CreatedAt() string {
	return c.n.Created.Format("2006-01-02 15:04:05 -0700 MST")
}

// Labels are the labels as k=v, sorted.
func (c *networkContext) Labels() string {
	var out []string
	for k, v := range c.n.Labels {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// Label is one label's value.
func (c *networkContext) Label(name string) string { return c.n.Labels[name] }
