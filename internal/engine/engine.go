// Package engine is berth's core: the services behind the Engine API. Each
// API area has its own service (containers, images, system), wired together
// by the daemon; the services own the lifecycle logic and drive the stores
// (content, image, snapshot, container) and drivers (runtime, shim).
package engine

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/berth-engine/berth/internal/container"
	"github.com/berth-engine/berth/internal/content"
	"github.com/berth-engine/berth/internal/distribution"
	"github.com/berth-engine/berth/internal/events"
	"github.com/berth-engine/berth/internal/image"
	"github.com/berth-engine/berth/internal/network"
	"github.com/berth-engine/berth/internal/runtime"
	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/berth-engine/berth/internal/userns"
	"github.com/berth-engine/berth/internal/volume"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Config is what the services need to know about the daemon they run in.
type Config struct {
	DataRoot string
	ExecRoot string
	// ShimPath is the berth-shim binary; it doubles as the --init binary.
	ShimPath string
	// Version is berth's version string.
	Version string
	// CgroupParent is the cgroup under which containers' cgroups are made
	// (default "/berth"); a container's --cgroup-parent overrides it.
	CgroupParent string
	// StorageNote explains why the storage driver was chosen when it is not
	// the preferred one (shown in info as a warning).
	StorageNote string
	Logger      *slog.Logger
	// Registries says which registries are insecure and where their CAs
	// are (--insecure-registry, certs.d).
	Registries distribution.Hosts
	// RegistryBackoff overrides the retry backoff of registry requests
	// (tests); nil is go-containerregistry's default.
	RegistryBackoff *remote.Backoff
	// Remap is the daemon's --userns-remap (nil: containers run without
	// a user namespace).
	Remap *userns.Remap
}

// Stores are the persistent stores and drivers the services share.
type Stores struct {
	Content    content.Store
	Images     image.Store
	Snapshots  snapshot.Snapshotter
	Containers *container.Store
	Runtimes   *runtime.Registry
	// Volumes is the local volume driver (nil: no volumes).
	Volumes *volume.Store
	// Events is the event bus (nil: events are dropped).
	Events *events.Bus
	// Networks wires containers' networks (nil: the default bridge is a
	// loopback-only namespace, as before networking existed).
	Networks *network.Manager
}

func (c Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

// bundleDir is where a running container's OCI bundle, rootfs mount and shim
// files live: under the exec-root, which does not survive a reboot.
func (c Config) bundleDir(id string) string {
	return filepath.Join(c.ExecRoot, "containers", id)
}

// shimSocket is kept short because a unix socket path is limited to 108
// bytes; container IDs are unique in their first shimSocketIDLen characters.
func (c Config) shimSocket(id string) string {
	return filepath.Join(c.ExecRoot, "shims", id[:shimSocketIDLen]+".sock")
}

const shimSocketIDLen = 20

// Services are the engine's API-facing services, wired together.
type Services struct {
	Containers *ContainerService
	Images     *ImageService
	System     *SystemService
	Events     *EventService
	Volumes    *VolumeService
	DiskUsage  *DiskUsageService
	// Networks is nil when the daemon runs without networking.
	Networks *NetworkService
}

// New opens the services over the stores, reconciling container state with
// what is running. daemonID is the daemon's persistent identity.
func New(ctx context.Context, cfg Config, st Stores, daemonID string) (*Services, error) {
	containers, err := NewContainerService(ctx, cfg, st)
	if err != nil {
		return nil, err
	}
	images := NewImageService(cfg, st, containers, containers.unpack)
	volumes := NewVolumeService(st.Volumes, containers)
	return &Services{
		DiskUsage:  &DiskUsageService{containers: containers, images: images, volumes: volumes},
		Containers: containers,
		Images:     images,
		System:     NewSystemService(cfg, st, containers, images, daemonID),
		Events:     &EventService{bus: st.Events},
		Volumes:    volumes,
		Networks:   NewNetworkService(st.Networks, containers),
	}, nil
}
