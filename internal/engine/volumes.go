package engine

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/volume"
	"github.com/containerd/errdefs"
	eventtypes "github.com/moby/moby/api/types/events"
	volumetypes "github.com/moby/moby/api/types/volume"
)

// VolumeService implements api.VolumeBackend over the local volume driver;
// which containers use a volume it asks the container service.
type VolumeService struct {
	store      *volume.Store
	containers *ContainerService
}

// NewVolumeService returns the volume service.
func NewVolumeService(store *volume.Store, containers *ContainerService) *VolumeService {
	return &VolumeService{store: store, containers: containers}
}

var _ api.VolumeBackend = (*VolumeService)(nil)

func (s *VolumeService) toAPI(v *volume.Volume, size bool) *volumetypes.Volume {
	labels := v.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	opts := v.Options
	if opts == nil {
		opts = map[string]string{}
	}
	out := &volumetypes.Volume{
		Name:       v.Name,
		Driver:     volume.DriverName,
		Mountpoint: s.store.Path(v.Name),
		CreatedAt:  v.CreatedAt.Format(time.RFC3339),
		Labels:     labels,
		Options:    opts,
		Scope:      "local",
	}
	if size {
		out.UsageData = &volumetypes.UsageData{Size: s.store.Size(v.Name), RefCount: int64(len(s.containers.VolumeUsers(v.Name)))}
	}
	return out
}

// VolumeCreate implements POST /volumes/create.
func (s *VolumeService) VolumeCreate(ctx context.Context, req volumetypes.CreateRequest) (*volumetypes.Volume, error) {
	if req.Driver != "" && req.Driver != volume.DriverName {
		return nil, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("error looking up volume plugin %s: plugin %q not found", req.Driver, req.Driver))
	}
	labels := req.Labels
	if req.Name == "" {
		labels = map[string]string{volume.AnonymousLabel: ""}
		for k, v := range req.Labels {
			labels[k] = v
		}
	}
	v, created, err := s.store.Create(req.Name, req.DriverOpts, labels)
	if err != nil {
		if req.Name != "" && !errdefs.IsConflict(err) && !strings.HasPrefix(err.Error(), "create ") {
			return nil, fmt.Errorf("create %s: %w", req.Name, err)
		}
		return nil, err
	}
	if created {
		s.containers.emitVolume(v.Name, eventtypes.ActionCreate, map[string]string{"driver": volume.DriverName})
	}
	return s.toAPI(v, false), nil
}

// volumeFilter is docker's volume list/prune filters.
func (s *VolumeService) volumeFilter(fs api.Filters, prune bool) (func(v *volume.Volume) bool, error) {
	for k := range fs {
		switch k {
		case "dangling", "name", "label", "driver", "label!":
		case "all":
			if !prune {
				return nil, errdefs.ErrInvalidArgument.WithMessage("invalid filter 'all'")
			}
		default:
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid filter '%s'", k))
		}
	}
	for _, d := range fs["dangling"] {
		switch strings.ToLower(d) {
		case "true", "1", "false", "0":
		default:
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid filter 'dangling=%s'", d))
		}
	}
	return func(v *volume.Volume) bool {
		if ds := fs["dangling"]; len(ds) > 0 {
			want := ds[0] == "true" || ds[0] == "1"
			if (len(s.containers.VolumeUsers(v.Name)) == 0) != want {
				return false
			}
		}
		if ns := fs["name"]; len(ns) > 0 {
			ok := false
			for _, n := range ns {
				if strings.Contains(v.Name, n) {
					ok = true
				}
			}
			if !ok {
				return false
			}
		}
		if ds := fs["driver"]; len(ds) > 0 && !contains(ds, volume.DriverName) {
			return false
		}
		for _, l := range fs["label"] {
			k, val, hasVal := strings.Cut(l, "=")
			got, ok := v.Labels[k]
			if !ok || hasVal && got != val {
				return false
			}
		}
		for _, l := range fs["label!"] {
			k, val, hasVal := strings.Cut(l, "=")
			got, ok := v.Labels[k]
			if ok && (!hasVal || got == val) {
				return false
			}
		}
		return true
	}, nil
}

// VolumeList implements GET /volumes.
func (s *VolumeService) VolumeList(ctx context.Context, fs api.Filters) (volumetypes.ListResponse, error) {
	match, err := s.volumeFilter(fs, false)
	if err != nil {
		return volumetypes.ListResponse{}, err
	}
	res := volumetypes.ListResponse{Volumes: []volumetypes.Volume{}, Warnings: []string{}}
	for _, v := range s.store.List() {
		if match(v) {
			res.Volumes = append(res.Volumes, *s.toAPI(v, false))
		}
	}
	return res, nil
}

// VolumeInspect implements GET /volumes/{name}.
func (s *VolumeService) VolumeInspect(ctx context.Context, name string) (*volumetypes.Volume, error) {
	v, err := s.store.Get(name)
	if err != nil {
		return nil, err
	}
	return s.toAPI(v, false), nil
}

// VolumeRemove implements DELETE /volumes/{name}. force only makes a
// missing volume not an error, as docker's: a volume in use is never
// removed, its data could still be reached through the container.
func (s *VolumeService) VolumeRemove(ctx context.Context, name string, force bool) error {
	if _, err := s.store.Get(name); err != nil {
		if force && errdefs.IsNotFound(err) {
			return nil
		}
		return err
	}
	if users := s.containers.VolumeUsers(name); len(users) > 0 {
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("remove %s: volume is in use - [%s]", name, strings.Join(users, ", ")))
	}
	if err := s.store.Remove(name); err != nil {
		return err
	}
	s.containers.emitVolume(name, eventtypes.ActionDestroy, map[string]string{"driver": volume.DriverName})
	return nil
}

// VolumePrune implements POST /volumes/prune: unused anonymous volumes,
// or all unused ones with all=true.
func (s *VolumeService) VolumePrune(ctx context.Context, fs api.Filters) (volumetypes.PruneReport, error) {
	all := false
	if a := fs["all"]; len(a) > 0 {
		all = a[0] == "true" || a[0] == "1"
	}
	f := api.Filters{}
	for k, v := range fs {
		if k != "all" {
			f[k] = v
		}
	}
	match, err := s.volumeFilter(f, true)
	if err != nil {
		return volumetypes.PruneReport{}, err
	}
	rep := volumetypes.PruneReport{VolumesDeleted: []string{}}
	for _, v := range s.store.List() {
		if !all && !v.Anonymous() || !match(v) || len(s.containers.VolumeUsers(v.Name)) > 0 {
			continue
		}
		size := s.store.Size(v.Name)
		if err := s.store.Remove(v.Name); err != nil {
			continue
		}
		s.containers.emitVolume(v.Name, eventtypes.ActionDestroy, map[string]string{"driver": volume.DriverName})
		rep.VolumesDeleted = append(rep.VolumesDeleted, v.Name)
		if size > 0 {
			rep.SpaceReclaimed += uint64(size)
		}
	}
	s.containers.emitVolume("", eventtypes.ActionPrune, map[string]string{"reclaimed": fmt.Sprint(rep.SpaceReclaimed)})
	return rep, nil
}
