package engine

import (
	"context"

	"github.com/berth-engine/berth/internal/api"
	containertypes "github.com/moby/moby/api/types/container"
	imagetypes "github.com/moby/moby/api/types/image"
	volumetypes "github.com/moby/moby/api/types/volume"
)

// DiskUsageService implements api.DiskUsageBackend (system df) over the
// container, image and volume services.
type DiskUsageService struct {
	containers *ContainerService
	images     *ImageService
	volumes    *VolumeService
}

var _ api.DiskUsageBackend = (*DiskUsageService)(nil)

// DiskUsage counts images (their unpacked size; reclaimable: those no
// container uses), containers (writable layers; reclaimable: stopped ones)
// and volumes (their data; reclaimable: those no container uses). berth
// has no build cache here: it is reported empty.
func (s *DiskUsageService) DiskUsage(ctx context.Context, opts api.DiskUsageOptions) (*api.DiskUsage, error) {
	du := &api.DiskUsage{}
	if opts.Images {
		imgs, err := s.images.List(ctx, api.ImageListOptions{All: true, ContainerCount: true})
		if err != nil {
			return nil, err
		}
		for i := range imgs {
			imgs[i].SharedSize = 0
			du.LayersSize += imgs[i].Size
			if imgs[i].Containers > 0 {
				du.ActiveImages++
			} else {
				du.ImagesReclaimable += imgs[i].Size
			}
		}
		if imgs == nil {
			imgs = []imagetypes.Summary{}
		}
		du.Images = imgs
	}
	if opts.Containers {
		ctrs, err := s.containers.List(ctx, api.ListOptions{All: true, Size: true})
		if err != nil {
			return nil, err
		}
		for _, c := range ctrs {
			rw := c.SizeRw
			du.ContainersSize += rw
			if c.State == containertypes.StateRunning || c.State == containertypes.StatePaused || c.State == containertypes.StateRestarting {
				du.ActiveContainers++
			} else {
				du.ContainersReclaimable += rw
			}
		}
		du.Containers = ctrs
	}
	if opts.Volumes && s.volumes != nil && s.volumes.store != nil {
		du.Volumes = []volumetypes.Volume{}
		for _, v := range s.volumes.store.List() {
			av := s.volumes.toAPI(v, true)
			du.VolumesSize += av.UsageData.Size
			if av.UsageData.RefCount > 0 {
				du.ActiveVolumes++
			} else {
				du.VolumesReclaimable += av.UsageData.Size
			}
			du.Volumes = append(du.Volumes, *av)
		}
	}
	return du, nil
}
