package api

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
)

// NetworkBackend serves /networks/….
type NetworkBackend interface {
	NetworkList(ctx context.Context, filters Filters) ([]network.Summary, error)
	NetworkInspect(ctx context.Context, id string, verbose bool) (network.Inspect, error)
	NetworkCreate(ctx context.Context, req network.CreateRequest) (network.CreateResponse, error)
	// NetworkConnect attaches a container (running or not); a running
	// one gets its interface at once.
	NetworkConnect(ctx context.Context, id string, req network.ConnectRequest) error
	NetworkDisconnect(ctx context.Context, id string, req network.DisconnectRequest) error
	// NetworkRemove refuses a network with active endpoints.
	NetworkRemove(ctx context.Context, id string) error
	NetworkPrune(ctx context.Context, filters Filters) (network.PruneReport, error)
}

func (rt *router) initNetworkRoutes() {
	n := rt.b.Networks != nil
	rt.add(http.MethodGet, "/networks", need(n, "networks", rt.getNetworks))
	rt.add(http.MethodPost, "/networks/create", need(n, "networks", rt.postNetworksCreate))
	rt.add(http.MethodPost, "/networks/prune", rt.postNetworksPrune)
	rt.add(http.MethodPost, "/networks/{name}/connect", need(n, "networks", rt.postNetworkConnect))
	rt.add(http.MethodPost, "/networks/{name}/disconnect", need(n, "networks", rt.postNetworkDisconnect))
	rt.add(http.MethodGet, "/networks/{name}", need(n, "networks", rt.getNetwork))
	rt.add(http.MethodDelete, "/networks/{name}", need(n, "networks", rt.deleteNetwork))
}

func (rt *router) getNetworks(c *call) error {
	fs, err := c.filters()
	if err != nil {
		return err
	}
	res, err := rt.b.Networks.NetworkList(c.ctx, fs)
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, res)
}

func (rt *router) getNetwork(c *call) error {
	res, err := rt.b.Networks.NetworkInspect(c.ctx, c.name, c.bool("verbose"))
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, res)
}

func decodeBody(c *call, v any) error {
	body, err := c.jsonBody()
	if err != nil {
		return err
	}
	if err := json.NewDecoder(body).Decode(v); err != nil {
		return invalidArg("invalid JSON: " + err.Error())
	}
	return nil
}

func (rt *router) postNetworksCreate(c *call) error {
	var req network.CreateRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	res, err := rt.b.Networks.NetworkCreate(c.ctx, req)
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusCreated, res)
}

func (rt *router) postNetworkConnect(c *call) error {
	var req network.ConnectRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if err := rt.b.Networks.NetworkConnect(c.ctx, c.name, req); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}

func (rt *router) postNetworkDisconnect(c *call) error {
	var req network.DisconnectRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if err := rt.b.Networks.NetworkDisconnect(c.ctx, c.name, req); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}

func (rt *router) deleteNetwork(c *call) error {
	if err := rt.b.Networks.NetworkRemove(c.ctx, c.name); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// postNetworksPrune answers that nothing was removed when the daemon has
// no networking, so the stock CLI's system prune still completes.
func (rt *router) postNetworksPrune(c *call) error {
	if rt.b.Networks == nil {
		return c.writeJSON(http.StatusOK, network.PruneReport{NetworksDeleted: []string{}})
	}
	fs, err := c.filters()
	if err != nil {
		return err
	}
	rep, err := rt.b.Networks.NetworkPrune(c.ctx, fs)
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, rep)
}

// legacyNetworkSettings is NetworkSettings as API versions before 1.52
// return it: with the default bridge's endpoint also at the top level
// (scripts still read {{.NetworkSettings.IPAddress}}).
type legacyNetworkSettings struct {
	*container.NetworkSettings
	Bridge                 string
	HairpinMode            bool
	LinkLocalIPv6Address   string
	LinkLocalIPv6PrefixLen int
	SecondaryIPAddresses   []string
	SecondaryIPv6Addresses []string
	EndpointID             string
	Gateway                string
	GlobalIPv6Address      string
	GlobalIPv6PrefixLen    int
	IPAddress              string
	IPPrefixLen            int
	IPv6Gateway            string
	MacAddress             string
}

func addrString(a interface {
	IsValid() bool
	String() string
}) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// legacyNetworkSettingsOf is NetworkSettings with the pre-1.52 top-level
// fields (the default bridge's address, gateway, MAC) added.
func legacyNetworkSettingsOf(r *container.InspectResponse) any {
	if r.NetworkSettings == nil {
		return r.NetworkSettings
	}
	l := &legacyNetworkSettings{NetworkSettings: r.NetworkSettings}
	if es := r.NetworkSettings.Networks["bridge"]; es != nil {
		l.EndpointID, l.Gateway, l.IPAddress, l.IPPrefixLen = es.EndpointID, addrString(es.Gateway), addrString(es.IPAddress), es.IPPrefixLen
		l.GlobalIPv6Address, l.GlobalIPv6PrefixLen, l.IPv6Gateway = addrString(es.GlobalIPv6Address), es.GlobalIPv6PrefixLen, addrString(es.IPv6Gateway)
		if len(es.MacAddress) > 0 {
			l.MacAddress = es.MacAddress.String()
		}
	}
	return l
}
