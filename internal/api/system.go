package api

import (
	"net/http"
)

// ping answers GET and HEAD /_ping, the first request of every docker
// client: it reads the API version and server capabilities from the
// headers.
func (rt *router) ping(c *call) error {
	h := c.w.Header()
	h.Set("Cache-Control", "no-cache, no-store, must-revalidate")
	h.Set("Pragma", "no-cache")
	h.Set("Builder-Version", "1")
	h.Set("Swarm", "inactive")
	if c.r.Method == http.MethodHead {
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Content-Length", "0")
		c.w.WriteHeader(http.StatusOK)
		return nil
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	c.w.WriteHeader(http.StatusOK)
	_, err := c.w.Write([]byte("OK"))
	return err
}

func (rt *router) getInfo(c *call) error {
	info, err := rt.b.System.Info(c.ctx)
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, info)
}

func (rt *router) getVersion(c *call) error {
	v := rt.b.System.Version(c.ctx)
	if v.APIVersion == "" {
		v.APIVersion = APIVersion
	}
	if v.MinAPIVersion == "" {
		v.MinAPIVersion = MinAPIVersion
	}
	return c.writeJSON(http.StatusOK, v)
}
