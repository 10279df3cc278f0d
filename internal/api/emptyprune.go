package api

import (
	"net/http"

	"github.com/moby/moby/api/types/build"
)

// The prune `docker system prune` sends for what berth does not keep:
// BuildKit's cache (the classic builder caches in intermediate images,
// which docker's /build/prune does not touch either). It answers that it
// removed nothing, which is true, so the stock CLI's system prune
// completes. (/networks/prune is served in networks.go.)
func (rt *router) initEmptyPruneRoutes() {
	rt.add(http.MethodPost, "/build/prune", func(c *call) error {
		return c.writeJSON(http.StatusOK, build.CachePruneReport{CachesDeleted: []string{}})
	})
}
