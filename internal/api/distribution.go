package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/moby/moby/api/types/registry"
)

// DistributionBackend serves the registry side of the API: push, the
// registry's view of an image, and login checks.
type DistributionBackend interface {
	// Push uploads the named image(s) to their registry, writing docker's
	// JSON progress messages to progress. An empty tag pushes every local
	// tag of the repository.
	Push(ctx context.Context, name string, opts PushOptions, progress io.Writer) error
	// DistributionInspect asks the registry for the manifest (or index)
	// a reference names and the platforms it serves.
	DistributionInspect(ctx context.Context, name, registryAuth string) (*registry.DistributionInspect, error)
	// Login checks credentials against a registry (POST /auth).
	Login(ctx context.Context, auth *registry.AuthConfig) (registry.AuthResponse, error)
}

// PushOptions are the query parameters and auth of a push.
type PushOptions struct {
	Tag          string
	Platform     string
	RegistryAuth string // the X-Registry-Auth header, base64url JSON
}

func (rt *router) addDistributionRoutes() {
	d := rt.b.Distribution != nil
	rt.add(http.MethodPost, "/images/{name}/push", need(d, "distribution", rt.postImagePush))
	rt.add(http.MethodGet, "/distribution/{name}/json", need(d, "distribution", rt.getDistributionInspect))
	rt.add(http.MethodPost, "/auth", need(d, "distribution", rt.postAuth))
}

// postImagePush is POST /images/{name}/push: a JSON message stream; an
// error before the first message is a plain error response.
func (rt *router) postImagePush(c *call) error {
	c.w.Header().Set("Content-Type", "application/json")
	w := newStreamWriter(c.w, true)
	err := rt.b.Distribution.Push(c.ctx, c.name, PushOptions{
		Tag:          c.str("tag"),
		Platform:     c.str("platform"),
		RegistryAuth: c.r.Header.Get(registry.AuthHeader),
	}, w)
	if err == nil {
		return nil
	}
	if !w.started() {
		c.w.Header().Del("Content-Type")
		return err
	}
	_ = writeStreamError(w, err)
	return nil
}

func (rt *router) getDistributionInspect(c *call) error {
	res, err := rt.b.Distribution.DistributionInspect(c.ctx, c.name, c.r.Header.Get(registry.AuthHeader))
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, res)
}

func (rt *router) postAuth(c *call) error {
	body, err := c.jsonBody()
	if err != nil {
		return err
	}
	var ac registry.AuthConfig
	dec := json.NewDecoder(body)
	if err := dec.Decode(&ac); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return jsonError(err)
		}
		return invalidArg("invalid JSON: " + strings.TrimPrefix(err.Error(), "json: "))
	}
	res, err := rt.b.Distribution.Login(c.ctx, &ac)
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, res)
}
