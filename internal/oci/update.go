package oci

import (
	"github.com/moby/moby/api/types/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Resources returns the cgroup resources of a host config, with the same
// validation and defaults as Spec: what `update` applies to a running
// container through the runtime's update command.
func Resources(hc *container.HostConfig, v2 bool) (*specs.LinuxResources, error) {
	host := DetectHostSupport(v2)
	return resources(hc, v2, &host)
}
