package api

import (
	"context"
	"net/http"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/system"
	"github.com/moby/moby/api/types/volume"
)

// DiskUsageBackend serves GET /system/df.
type DiskUsageBackend interface {
	DiskUsage(ctx context.Context, opts DiskUsageOptions) (*DiskUsage, error)
}

// DiskUsageOptions say which objects to count (all false: all of them).
type DiskUsageOptions struct {
	Containers, Images, Volumes, BuildCache bool
}

// DiskUsage is what the daemon uses, object by object. The router
// renders it in the shape the client's API version expects.
type DiskUsage struct {
	LayersSize int64
	Images     []image.Summary
	Containers []container.Summary
	Volumes    []volume.Volume
	BuildCache []build.CacheRecord
	// Reclaimable sizes, computed by the backend.
	ImagesReclaimable, ContainersReclaimable, VolumesReclaimable int64
	ContainersSize, VolumesSize                                  int64
	ActiveImages, ActiveContainers, ActiveVolumes                int64
}

func (rt *router) initDiskUsageRoutes() {
	rt.add(http.MethodGet, "/system/df", need(rt.b.DiskUsage != nil, "system", rt.getSystemDF))
}

func (rt *router) getSystemDF(c *call) error {
	var opts DiskUsageOptions
	types := c.form["type"]
	for _, t := range types {
		switch system.DiskUsageObject(t) {
		case system.ContainerObject:
			opts.Containers = true
		case system.ImageObject:
			opts.Images = true
		case system.VolumeObject:
			opts.Volumes = true
		case system.BuildCacheObject:
			opts.BuildCache = true
		default:
			return invalidArg("unknown object type: " + t)
		}
	}
	if len(types) == 0 {
		opts = DiskUsageOptions{Containers: true, Images: true, Volumes: true, BuildCache: true}
	}
	du, err := rt.b.DiskUsage.DiskUsage(c.ctx, opts)
	if err != nil {
		return err
	}
	if versionLess(c.version, "1.52") {
		// The older shape: every object listed, the client sums.
		legacy := struct {
			LayersSize int64               `json:"LayersSize,omitempty"`
			Images     []image.Summary     `json:"Images,omitempty"`
			Containers []container.Summary `json:"Containers,omitempty"`
			Volumes    []volume.Volume     `json:"Volumes,omitempty"`
			BuildCache []build.CacheRecord `json:"BuildCache,omitempty"`
		}{du.LayersSize, du.Images, du.Containers, du.Volumes, du.BuildCache}
		if opts.Images && legacy.Images == nil {
			legacy.Images = []image.Summary{}
		}
		return c.writeJSON(http.StatusOK, legacy)
	}
	verbose := c.bool("verbose")
	var out system.DiskUsage
	if opts.Images {
		out.ImageUsage = &image.DiskUsage{ActiveCount: du.ActiveImages, TotalCount: int64(len(du.Images)), TotalSize: du.LayersSize, Reclaimable: du.ImagesReclaimable}
		if verbose {
			out.ImageUsage.Items = du.Images
		}
	}
	if opts.Containers {
		out.ContainerUsage = &container.DiskUsage{ActiveCount: du.ActiveContainers, TotalCount: int64(len(du.Containers)), TotalSize: du.ContainersSize, Reclaimable: du.ContainersReclaimable}
		if verbose {
			out.ContainerUsage.Items = du.Containers
		}
	}
	if opts.Volumes {
		out.VolumeUsage = &volume.DiskUsage{ActiveCount: du.ActiveVolumes, TotalCount: int64(len(du.Volumes)), TotalSize: du.VolumesSize, Reclaimable: du.VolumesReclaimable}
		if verbose {
			out.VolumeUsage.Items = du.Volumes
		}
	}
	if opts.BuildCache {
		out.BuildCacheUsage = &build.DiskUsage{}
	}
	return c.writeJSON(http.StatusOK, out)
}
