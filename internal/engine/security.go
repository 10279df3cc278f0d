package engine

import (
	"context"
	"slices"

	"github.com/berth-engine/berth/internal/api"
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
		UserNamespace:   usernsOf(c.HostConfig),
	}
}

// usernsOf is the container's user namespace as inspect shows it.
// userns-remap (issue 8 item 3) reports its mapping here.
func usernsOf(hc *containertypes.HostConfig) string {
	return "host"
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
