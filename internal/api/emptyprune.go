package api

import (
	"net/http"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/network"
)

// The prunes `docker system prune` sends for things berth does not keep:
// user-defined networks (none exist until bridge networking lands, issue
// 5, which replaces this route) and BuildKit's cache (the classic builder
// caches in intermediate images, which docker's /build/prune does not
// touch either). Each answers that it removed nothing, which is true, so
// the stock CLI's system prune completes.
func (rt *router) initEmptyPruneRoutes() {
	rt.add(http.MethodPost, "/networks/prune", func(c *call) error {
		return c.writeJSON(http.StatusOK, network.PruneReport{NetworksDeleted: []string{}})
	})
	rt.add(http.MethodPost, "/build/prune", func(c *call) error {
		return c.writeJSON(http.StatusOK, build.CachePruneReport{CachesDeleted: []string{}})
	})
}
