package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/container"
	"github.com/berth-engine/berth/internal/oci"
	containertypes "github.com/moby/moby/api/types/container"
)

var _ api.SecurityInspector = (*ContainerService)(nil)

// InspectSecurity implements api.SecurityInspector: the confinement the
// container gets (or got at its last start) from its settings and the
// daemon's defaults.
func (s *ContainerService) InspectSecurity(ctx context.Context, id string) *api.ContainerSecurity {
	e, err := s.get(id)
	if err != nil {
		return nil
	}
	c := e.snapshot()
	if c.HostConfig == nil {
		return nil
	}
	conf := oci.DescribeConfinement(c.HostConfig, "")
	return &api.ContainerSecurity{
		Privileged:      conf.Privileged,
		Capabilities:    conf.Capabilities,
		Seccomp:         conf.Seccomp,
		AppArmorProfile: conf.AppArmor,
		NoNewPrivileges: conf.NoNewPrivileges,
		MaskedPaths:     conf.MaskedPaths,
		ReadonlyPaths:   conf.ReadonlyPaths,
		ReadonlyRootfs:  conf.ReadonlyRootfs,
		CgroupNamespace: conf.CgroupNamespace,
		UserNamespace:   s.usernsOf(c),
	}
}

// usernsOf is the container's user namespace as inspect shows it:
// "host", or the daemon's --userns-remap mapping.
func (s *ContainerService) usernsOf(c *container.Container) string {
	if !s.remapped(c) {
		return "host"
	}
	var parts []string
	for _, m := range s.cfg.Remap.UIDMappings() {
		parts = append(parts, fmt.Sprintf("uid %d->%d (%d)", m.ContainerID, m.HostID, m.Size))
	}
	for _, m := range s.cfg.Remap.GIDMappings() {
		parts = append(parts, fmt.Sprintf("gid %d->%d (%d)", m.ContainerID, m.HostID, m.Size))
	}
	return "remapped: " + strings.Join(parts, ", ")
}

// inspectHostConfig is the HostConfig inspect shows: as docker, the
// masked and read-only paths in force are filled in when the container
// did not set its own.
func inspectHostConfig(hc *containertypes.HostConfig) *containertypes.HostConfig {
	if hc == nil || hc.Privileged || (hc.MaskedPaths != nil && hc.ReadonlyPaths != nil) {
		return hc
	}
	out := *hc
	conf := oci.DescribeConfinement(hc, "")
	if out.MaskedPaths == nil {
		out.MaskedPaths = slices.Clone(conf.MaskedPaths)
	}
	if out.ReadonlyPaths == nil {
		out.ReadonlyPaths = slices.Clone(conf.ReadonlyPaths)
	}
	return &out
}
