package oci

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestSpecUserNamespace(t *testing.T) {
	uids := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	gids := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 1000}, {ContainerID: 1000, HostID: 300000, Size: 24}}
	hasUserns := func(s *specs.Spec) bool {
		return slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.UserNamespace })
	}

	o := baseOptions(t, "true")
	o.UIDMappings, o.GIDMappings = uids, gids
	s := mustSpec(t, o)
	if !hasUserns(s) || !slices.Equal(s.Linux.UIDMappings, uids) || !slices.Equal(s.Linux.GIDMappings, gids) {
		t.Errorf("remapped spec: namespaces %v uid maps %v gid maps %v", s.Linux.Namespaces, s.Linux.UIDMappings, s.Linux.GIDMappings)
	}
	// Only mapped gids are valid in ping_group_range inside the namespace.
	if got := s.Linux.Sysctl["net.ipv4.ping_group_range"]; got != "0 1023" {
		t.Errorf("ping_group_range %q, want 0 1023", got)
	}
	// The user's own value is left alone.
	o = baseOptions(t, "true")
	o.UIDMappings, o.GIDMappings = uids, gids
	o.HostConfig.Sysctls = map[string]string{"net.ipv4.ping_group_range": "0 10"}
	if got := mustSpec(t, o).Linux.Sysctl["net.ipv4.ping_group_range"]; got != "0 10" {
		t.Errorf("user's ping_group_range became %q", got)
	}

	// A network namespace the daemon made is not the container's to
	// mount sysfs for or to tune.
	o = baseOptions(t, "true")
	o.UIDMappings, o.GIDMappings = uids, gids
	o.NetNSPath = "/run/netns/x"
	o.HostConfig.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "80"}
	s = mustSpec(t, o)
	i := slices.IndexFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/sys" })
	if i < 0 || s.Mounts[i].Type != "bind" || s.Mounts[i].Source != "/sys" || !slices.Contains(s.Mounts[i].Options, "ro") {
		t.Errorf("/sys with a daemon-made netns: %+v", s.Mounts)
	}
	if _, ok := s.Linux.Sysctl["net.ipv4.ping_group_range"]; ok || s.Linux.Sysctl["net.ipv4.ip_unprivileged_port_start"] != "80" {
		t.Errorf("sysctls with a daemon-made netns: %v", s.Linux.Sysctl)
	}

	// --userns=host opts out; no mapping means no user namespace.
	o = baseOptions(t, "true")
	o.UIDMappings, o.GIDMappings = uids, gids
	o.HostConfig.UsernsMode = "host"
	if s := mustSpec(t, o); hasUserns(s) || s.Linux.UIDMappings != nil || s.Linux.Sysctl["net.ipv4.ping_group_range"] != "0 2147483647" {
		t.Errorf("--userns=host spec: %v %v %v", s.Linux.Namespaces, s.Linux.UIDMappings, s.Linux.Sysctl)
	}
	if s := mustSpec(t, baseOptions(t, "true")); hasUserns(s) {
		t.Errorf("user namespace without a mapping: %v", s.Linux.Namespaces)
	}
}
