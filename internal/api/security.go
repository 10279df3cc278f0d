package api

import (
	"context"

	"github.com/moby/moby/api/types/container"
)

// SecurityInspector is implemented by a container backend that reports a
// container's effective confinement, which docker's inspect does not
// show (it has the requested CapAdd/CapDrop only).
type SecurityInspector interface {
	// InspectSecurity returns nil for a container it cannot describe.
	InspectSecurity(ctx context.Context, id string) *ContainerSecurity
}

// ContainerSecurity is berth's addition to GET /containers/{id}/json, as
// "BerthSecurity": the confinement a container gets once its settings
// and the daemon's defaults are applied.
type ContainerSecurity struct {
	Privileged bool
	// Capabilities is the effective (and bounding) capability set of the
	// container's root processes.
	Capabilities []string
	// Seccomp is "builtin", "custom" or "unconfined".
	Seccomp         string
	AppArmorProfile string `json:",omitempty"`
	NoNewPrivileges bool
	MaskedPaths     []string
	ReadonlyPaths   []string
	ReadonlyRootfs  bool
	// CgroupNamespace is "private" or "host".
	CgroupNamespace string
	// UserNamespace is "host", or the remapping in force.
	UserNamespace string
}

// inspectBody is GET /containers/{id}/json: docker's response, its
// NetworkSettings in the shape the client's API version knows (older
// ones get the default bridge's fields at the top level), and berth's
// BerthSecurity.
type inspectBody struct {
	*container.InspectResponse
	NetworkSettings any                `json:"NetworkSettings"`
	BerthSecurity   *ContainerSecurity `json:",omitempty"`
}
