package api

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/moby/moby/api/types/volume"
)

// VolumeBackend serves /volumes/….
type VolumeBackend interface {
	// VolumeCreate makes a volume, or returns the existing one of that
	// name.
	VolumeCreate(ctx context.Context, req volume.CreateRequest) (*volume.Volume, error)
	VolumeList(ctx context.Context, filters Filters) (volume.ListResponse, error)
	VolumeInspect(ctx context.Context, name string) (*volume.Volume, error)
	// VolumeRemove refuses a volume a container uses unless force.
	VolumeRemove(ctx context.Context, name string, force bool) error
	VolumePrune(ctx context.Context, filters Filters) (volume.PruneReport, error)
}

func (rt *router) initVolumeRoutes() {
	v := rt.b.Volumes != nil
	rt.add(http.MethodGet, "/volumes", need(v, "volumes", rt.getVolumes))
	rt.add(http.MethodPost, "/volumes/create", need(v, "volumes", rt.postVolumesCreate))
	rt.add(http.MethodPost, "/volumes/prune", need(v, "volumes", rt.postVolumesPrune))
	rt.add(http.MethodGet, "/volumes/{name}", need(v, "volumes", rt.getVolume))
	rt.add(http.MethodDelete, "/volumes/{name}", need(v, "volumes", rt.deleteVolume))
}

func (rt *router) getVolumes(c *call) error {
	fs, err := c.filters()
	if err != nil {
		return err
	}
	res, err := rt.b.Volumes.VolumeList(c.ctx, fs)
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, res)
}

func (rt *router) postVolumesCreate(c *call) error {
	body, err := c.jsonBody()
	if err != nil {
		return err
	}
	var req volume.CreateRequest
	if err := json.NewDecoder(body).Decode(&req); err != nil {
		return jsonError(err)
	}
	v, err := rt.b.Volumes.VolumeCreate(c.ctx, req)
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusCreated, v)
}

func (rt *router) postVolumesPrune(c *call) error {
	fs, err := c.filters()
	if err != nil {
		return err
	}
	rep, err := rt.b.Volumes.VolumePrune(c.ctx, fs)
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, rep)
}

func (rt *router) getVolume(c *call) error {
	v, err := rt.b.Volumes.VolumeInspect(c.ctx, c.name)
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, v)
}

func (rt *router) deleteVolume(c *call) error {
	if err := rt.b.Volumes.VolumeRemove(c.ctx, c.name, c.bool("force")); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}
