package engine

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"strings"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/network"
	"github.com/containerd/errdefs"
	containertypes "github.com/moby/moby/api/types/container"
	eventtypes "github.com/moby/moby/api/types/events"
	nettypes "github.com/moby/moby/api/types/network"
)

// NetworkService implements api.NetworkBackend over the network manager
// and the containers' records.
type NetworkService struct {
	m          *network.Manager
	containers *ContainerService
}

var _ api.NetworkBackend = (*NetworkService)(nil)

// NewNetworkService serves the /networks API (nil without networking).
func NewNetworkService(m *network.Manager, containers *ContainerService) *NetworkService {
	if m == nil {
		return nil
	}
	return &NetworkService{m: m, containers: containers}
}

func (s *NetworkService) emit(n *network.Network, action eventtypes.Action, cid string) {
	ev := s.containers.ev
	if ev == nil {
		return
	}
	attrs := map[string]string{"name": n.Name, "type": n.Driver}
	if cid != "" {
		attrs["container"] = cid
	}
	ev.Publish(eventtypes.Message{Type: eventtypes.NetworkEventType, Action: action, Actor: eventtypes.Actor{ID: n.ID, Attributes: attrs}})
}

func summary(n *network.Network) nettypes.Summary {
	out := nettypes.Network{Name: n.Name, ID: n.ID, Created: n.Created, Scope: "local", Driver: n.Driver,
		EnableIPv4: true, EnableIPv6: n.IPv6, Internal: n.Internal, Attachable: n.Attachable,
		IPAM:    nettypes.IPAM{Driver: "default", Config: []nettypes.IPAMConfig{}},
		Options: maps.Clone(n.Options), Labels: maps.Clone(n.Labels)}
	if n.Driver == "host" || n.Driver == "none" {
		out.Driver = map[string]string{"host": "host", "none": "null"}[n.Driver]
	}
	if n.Subnet.IsValid() {
		out.IPAM.Config = append(out.IPAM.Config, nettypes.IPAMConfig{Subnet: n.Subnet, IPRange: n.IPRange, Gateway: n.Gateway})
	}
	if n.Subnet6.IsValid() {
		out.IPAM.Config = append(out.IPAM.Config, nettypes.IPAMConfig{Subnet: n.Subnet6, Gateway: n.Gateway6})
	}
	if out.Options == nil {
		out.Options = map[string]string{}
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	return nettypes.Summary{Network: out}
}

// NetworkList implements GET /networks.
func (s *NetworkService) NetworkList(ctx context.Context, fs api.Filters) ([]nettypes.Summary, error) {
	for k := range fs {
		switch k {
		case "name", "id", "driver", "type", "label", "scope", "dangling":
		default:
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid filter '%s'", k))
		}
	}
	out := []nettypes.Summary{}
	for _, n := range s.m.List() {
		if !s.match(n, fs) {
			continue
		}
		out = append(out, summary(n))
	}
	return out, nil
}

func anyOf(vals []string, f func(string) bool) bool {
	if len(vals) == 0 {
		return true
	}
	for _, v := range vals {
		if f(v) {
			return true
		}
	}
	return false
}

func (s *NetworkService) match(n *network.Network, fs api.Filters) bool {
	sum := summary(n)
	return anyOf(fs["name"], func(v string) bool { return strings.Contains(n.Name, v) }) &&
		anyOf(fs["id"], func(v string) bool { return strings.HasPrefix(n.ID, v) }) &&
		anyOf(fs["driver"], func(v string) bool { return sum.Driver == v }) &&
		anyOf(fs["scope"], func(v string) bool { return v == "local" }) &&
		anyOf(fs["type"], func(v string) bool { return (v == "custom") == n.UserDefined }) &&
		anyOf(fs["dangling"], func(v string) bool { return (v == "true" || v == "1") == (n.UserDefined && !s.used(n)) }) &&
		allLabels(n.Labels, fs["label"])
}

func allLabels(labels map[string]string, want []string) bool {
	for _, w := range want {
		k, v, hasV := strings.Cut(w, "=")
		got, ok := labels[k]
		if !ok || (hasV && got != v) {
			return false
		}
	}
	return true
}

// used reports whether any container (running or not) refers to n.
func (s *NetworkService) used(n *network.Network) bool {
	for _, e := range s.containers.all() {
		c := e.snapshot()
		if c.NetworkSettings == nil {
			continue
		}
		for k, es := range c.NetworkSettings.Networks {
			if k == n.Name || k == n.ID || es.NetworkID == n.ID {
				return true
			}
		}
	}
	return false
}

// NetworkInspect implements GET /networks/{id}.
func (s *NetworkService) NetworkInspect(ctx context.Context, id string, verbose bool) (nettypes.Inspect, error) {
	n, err := s.m.Get(id)
	if err != nil {
		return nettypes.Inspect{}, err
	}
	out := nettypes.Inspect{Network: summary(n).Network, Containers: map[string]nettypes.EndpointResource{}}
	for _, ep := range s.m.Endpoints(n.ID) {
		r := nettypes.EndpointResource{Name: ep.ContainerName, EndpointID: ep.EndpointID, MacAddress: nettypes.HardwareAddr(ep.MAC)}
		if ep.IP.IsValid() {
			r.IPv4Address = netip.PrefixFrom(ep.IP, n.Subnet.Bits())
		}
		if ep.IP6.IsValid() {
			r.IPv6Address = netip.PrefixFrom(ep.IP6, n.Subnet6.Bits())
		}
		out.Containers[ep.ContainerID] = r
	}
	return out, nil
}

// NetworkCreate implements POST /networks/create.
func (s *NetworkService) NetworkCreate(ctx context.Context, req nettypes.CreateRequest) (nettypes.CreateResponse, error) {
	n, err := s.m.Create(req)
	if err != nil {
		return nettypes.CreateResponse{}, err
	}
	s.emit(n, eventtypes.ActionCreate, "")
	return nettypes.CreateResponse{ID: n.ID, Warning: ""}, nil
}

// NetworkRemove implements DELETE /networks/{id}.
func (s *NetworkService) NetworkRemove(ctx context.Context, id string) error {
	n, err := s.m.Remove(id, nil)
	if err != nil {
		return err
	}
	s.emit(n, eventtypes.ActionDestroy, "")
	return nil
}

// NetworkPrune implements POST /networks/prune: user-defined networks no
// container refers to.
func (s *NetworkService) NetworkPrune(ctx context.Context, fs api.Filters) (nettypes.PruneReport, error) {
	until, err := labelUntilFilters(fs)
	if err != nil {
		return nettypes.PruneReport{}, err
	}
	rep := nettypes.PruneReport{NetworksDeleted: []string{}}
	for _, n := range s.m.List() {
		if !n.UserDefined || s.used(n) || !allLabels(n.Labels, fs["label"]) {
			continue
		}
		if neg := fs["label!"]; len(neg) > 0 && anyOf(neg, func(w string) bool { return allLabels(n.Labels, []string{w}) }) {
			continue
		}
		if !until.IsZero() && !n.Created.Before(until) {
			continue
		}
		if _, err := s.m.Remove(n.ID, nil); err != nil {
			continue
		}
		s.emit(n, eventtypes.ActionDestroy, "")
		rep.NetworksDeleted = append(rep.NetworksDeleted, n.Name)
	}
	return rep, nil
}

// NetworkConnect implements POST /networks/{id}/connect.
func (s *NetworkService) NetworkConnect(ctx context.Context, id string, req nettypes.ConnectRequest) error {
	n, err := s.m.Get(id)
	if err != nil {
		return err
	}
	e, err := s.containers.get(req.Container)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	c := e.snapshot()
	if !ownNetwork(c.HostConfig.NetworkMode) {
		return errdefs.ErrPermissionDenied.WithMessage(fmt.Sprintf("container %s is in network mode %s and cannot be connected to other networks", c.Name, c.HostConfig.NetworkMode))
	}
	if n.Bridge == "" {
		return errdefs.ErrPermissionDenied.WithMessage(fmt.Sprintf("container cannot be connected to network %s", n.Name))
	}
	if c.NetworkSettings != nil {
		for k, es := range c.NetworkSettings.Networks {
			if k == n.Name || (es.NetworkID != "" && es.NetworkID == n.ID) {
				return errdefs.ErrPermissionDenied.WithMessage(fmt.Sprintf("endpoint with name %s already exists in network %s", c.Name, n.Name))
			}
		}
	}
	want := req.EndpointConfig
	if want == nil {
		want = &nettypes.EndpointSettings{}
	}
	if !n.UserDefined && (len(want.Aliases) > 0 || (want.IPAMConfig != nil && want.IPAMConfig.IPv4Address.IsValid())) {
		return errdefs.ErrInvalidArgument.WithMessage("network-scoped aliases and user specified IP addresses are supported only for containers in user defined networks")
	}
	es := want.Copy()
	e.smu.RLock()
	running := e.c.State.Running() && e.shim != nil
	e.smu.RUnlock()
	if running {
		_, got, err := s.m.Connect(c.ID, c.Name, n.ID, want)
		if err != nil {
			return err
		}
		es = got
	}
	e.smu.Lock()
	ns := copyNetworkSettings(e.c.NetworkSettings)
	ns.Networks[n.Name] = es
	e.c.NetworkSettings = ns
	e.smu.Unlock()
	if err := s.containers.persist(e); err != nil {
		return err
	}
	if running {
		s.refreshEtcFiles(e)
	}
	s.emit(n, eventtypes.ActionConnect, c.ID)
	return nil
}

// NetworkDisconnect implements POST /networks/{id}/disconnect.
func (s *NetworkService) NetworkDisconnect(ctx context.Context, id string, req nettypes.DisconnectRequest) error {
	n, err := s.m.Get(id)
	if err != nil {
		return err
	}
	e, err := s.containers.get(req.Container)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	c := e.snapshot()
	key := ""
	if c.NetworkSettings != nil {
		for k, es := range c.NetworkSettings.Networks {
			if k == n.Name || k == n.ID || (es.NetworkID != "" && es.NetworkID == n.ID) {
				key = k
			}
		}
	}
	if key == "" {
		return errdefs.ErrPermissionDenied.WithMessage(fmt.Sprintf("container %s is not connected to network %s", c.ID, n.Name))
	}
	if !ownNetwork(c.HostConfig.NetworkMode) {
		return errdefs.ErrPermissionDenied.WithMessage(fmt.Sprintf("container cannot be disconnected from network %s", n.Name))
	}
	e.smu.RLock()
	running := e.c.State.Running() && e.shim != nil
	e.smu.RUnlock()
	if running {
		if _, err := s.m.Disconnect(c.ID, n.ID); err != nil {
			return err
		}
	}
	e.smu.Lock()
	ns := copyNetworkSettings(e.c.NetworkSettings)
	delete(ns.Networks, key)
	e.c.NetworkSettings = ns
	e.smu.Unlock()
	if err := s.containers.persist(e); err != nil {
		return err
	}
	if running {
		s.refreshEtcFiles(e)
	}
	s.emit(n, eventtypes.ActionDisconnect, c.ID)
	return nil
}

// refreshEtcFiles rewrites a running container's /etc/hosts and
// resolv.conf after its networks changed (they are bind mounts of these
// files, so the container sees the change).
func (s *NetworkService) refreshEtcFiles(e *entry) {
	if err := writeEtcFiles(e.snapshot()); err != nil {
		s.containers.log.Warn("rewrite /etc files after a network change", "id", e.c.ID, "err", err)
	}
}

func copyNetworkSettings(ns *containertypes.NetworkSettings) *containertypes.NetworkSettings {
	out := &containertypes.NetworkSettings{Networks: map[string]*nettypes.EndpointSettings{}}
	if ns == nil {
		return out
	}
	out.SandboxID, out.SandboxKey, out.Ports = ns.SandboxID, ns.SandboxKey, ns.Ports
	maps.Copy(out.Networks, ns.Networks)
	return out
}
