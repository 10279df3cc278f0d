package oci

import (
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// UsernsRemapped says whether a container runs in a user namespace with
// the daemon's --userns-remap mapping: always when the daemon remaps,
// unless the container opts out with --userns=host.
func UsernsRemapped(uidMaps []specs.LinuxIDMapping, hc *container.HostConfig) bool {
	return len(uidMaps) > 0 && (hc == nil || !hc.UsernsMode.IsHost())
}

// CheckUserns refuses what cannot run in the daemon's user namespace, with
// dockerd's messages: --privileged, and sharing the host's network or pid
// namespace, unless the container opts out with --userns=host.
func CheckUserns(uidMaps []specs.LinuxIDMapping, hc *container.HostConfig) error {
	if !UsernsRemapped(uidMaps, hc) || hc == nil {
		return nil
	}
	switch {
	case hc.Privileged:
		return errdefs.ErrInvalidArgument.WithMessage("privileged mode is incompatible with user namespaces.  You must run the container in the host namespace when running privileged mode")
	case hc.NetworkMode.IsHost():
		return errdefs.ErrInvalidArgument.WithMessage("cannot share the host's network namespace when user namespaces are enabled")
	case hc.PidMode.IsHost():
		return errdefs.ErrInvalidArgument.WithMessage("cannot share the host PID namespace when user namespaces are enabled")
	}
	return nil
}

// setUserNamespace adds the user namespace and its id maps of the
// daemon's --userns-remap (opts.UIDMappings/GIDMappings) to the spec.
func setUserNamespace(s *specs.Spec, opts *Options, hc *container.HostConfig) {
	if !UsernsRemapped(opts.UIDMappings, hc) {
		return
	}
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	s.Linux.UIDMappings = append([]specs.LinuxIDMapping(nil), opts.UIDMappings...)
	s.Linux.GIDMappings = append([]specs.LinuxIDMapping(nil), opts.GIDMappings...)
	// The kernel accepts only gids mapped into the container's user
	// namespace in ping_group_range: docker's "0 2147483647" becomes the
	// mapped range.
	if _, ok := s.Linux.Sysctl["net.ipv4.ping_group_range"]; ok && hc.Sysctls["net.ipv4.ping_group_range"] == "" {
		var top uint32
		for _, m := range opts.GIDMappings {
			if end := m.ContainerID + m.Size - 1; end > top {
				top = end
			}
		}
		s.Linux.Sysctl["net.ipv4.ping_group_range"] = fmt.Sprintf("0 %d", top)
	}
	if opts.NetNSPath != "" {
		joinForeignNetns(s, hc)
	}
}

// joinForeignNetns adapts a remapped container that joins a network
// namespace the daemon made (owned by the host's user namespace, not the
// container's): its root may neither mount sysfs for that namespace nor
// write its net.* sysctls. /sys becomes a read-only recursive bind of the
// host's (what rootless engines do), and docker's default net sysctls are
// left out; ones the user asked for stay, and fail clearly at start.
func joinForeignNetns(s *specs.Spec, hc *container.HostConfig) {
	for i, m := range s.Mounts {
		if m.Destination == "/sys" && m.Type == "sysfs" {
			s.Mounts[i] = specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}}
		}
	}
	for _, k := range []string{"net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"} {
		if _, asked := hc.Sysctls[k]; !asked {
			delete(s.Linux.Sysctl, k)
		}
	}
}
