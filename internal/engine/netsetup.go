package engine

import (
	"fmt"
	"maps"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/berth-engine/berth/internal/container"
	"github.com/berth-engine/berth/internal/network"
	"github.com/containerd/errdefs"
	containertypes "github.com/moby/moby/api/types/container"
	nettypes "github.com/moby/moby/api/types/network"
)

// ownNetwork reports whether a network mode gives the container a
// namespace berth wires (the default bridge or a user-defined network).
func ownNetwork(mode containertypes.NetworkMode) bool {
	switch m := string(mode); {
	case m == "host" || m == "none" || strings.HasPrefix(m, "container:"):
		return false
	}
	return true
}

// initialNetworkSettings are a new container's attachments: the
// endpoints the client asked for, or its network mode's one.
func initialNetworkSettings(hc *containertypes.HostConfig, nc *nettypes.NetworkingConfig) (*containertypes.NetworkSettings, error) {
	ns := &containertypes.NetworkSettings{Networks: map[string]*nettypes.EndpointSettings{}}
	mode := string(hc.NetworkMode)
	if strings.HasPrefix(mode, "container:") {
		return ns, nil
	}
	if nc != nil {
		for k, es := range nc.EndpointsConfig {
			if es == nil {
				es = &nettypes.EndpointSettings{}
			}
			ns.Networks[k] = es.Copy()
		}
	}
	if len(ns.Networks) > 1 && !ownNetwork(hc.NetworkMode) {
		return nil, errdefs.ErrInvalidArgument.WithMessage("Container cannot be connected to network endpoints: " + strings.Join(sortedKeys(ns.Networks), ", "))
	}
	if _, ok := ns.Networks[mode]; !ok && len(ns.Networks) <= 1 {
		for k, es := range ns.Networks {
			// The endpoint config under another name than the mode
			// (e.g. the network's ID) is the mode's.
			delete(ns.Networks, k)
			ns.Networks[mode] = es
		}
		if len(ns.Networks) == 0 {
			ns.Networks[mode] = &nettypes.EndpointSettings{}
		}
	}
	if es := ns.Networks["bridge"]; es != nil {
		if es.IPAMConfig != nil && (es.IPAMConfig.IPv4Address.IsValid() || es.IPAMConfig.IPv6Address.IsValid()) {
			return nil, errdefs.ErrInvalidArgument.WithMessage("user specified IP address is supported on user defined networks only")
		}
		if len(es.Aliases) > 0 {
			return nil, errdefs.ErrInvalidArgument.WithMessage("network-scoped alias is supported only for containers in user defined networks")
		}
	}
	if es := ns.Networks[mode]; es != nil && (mode == "host" || mode == "none") {
		if len(es.Aliases) > 0 || es.IPAMConfig != nil || len(es.MacAddress) > 0 {
			return nil, errdefs.ErrInvalidArgument.WithMessage("conflicting options: network-scoped options (--ip, --alias, --mac-address) need a bridge network")
		}
	}
	return ns, nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// stoppedNetworkSettings keeps what the user asked for and drops what a
// run filled in (addresses, namespace, ports), as docker does at exit.
func stoppedNetworkSettings(ns *containertypes.NetworkSettings) *containertypes.NetworkSettings {
	if ns == nil {
		return nil
	}
	out := &containertypes.NetworkSettings{Networks: map[string]*nettypes.EndpointSettings{}}
	for k, es := range ns.Networks {
		out.Networks[k] = &nettypes.EndpointSettings{IPAMConfig: es.IPAMConfig, Links: es.Links, Aliases: es.Aliases,
			DriverOpts: es.DriverOpts, NetworkID: es.NetworkID, MacAddress: userMAC(es)}
	}
	return out
}

// userMAC is the MAC a user asked for (berth's derived ones start 02:42).
func userMAC(es *nettypes.EndpointSettings) nettypes.HardwareAddr {
	if len(es.MacAddress) == 6 && es.MacAddress[0] == 0x02 && es.MacAddress[1] == 0x42 {
		return nil
	}
	return es.MacAddress
}

// sandboxRequest turns a record into the network manager's request.
// resolved: use the ports a run already picked (restore after a restart).
func sandboxRequest(c *container.Container, resolved bool) network.SandboxRequest {
	req := network.SandboxRequest{ContainerID: c.ID, Name: c.Name, Networks: map[string]*nettypes.EndpointSettings{},
		Primary: string(c.HostConfig.NetworkMode),
		Ports:   c.HostConfig.PortBindings, PublishAll: c.HostConfig.PublishAllPorts, Exposed: c.Config.ExposedPorts, DNS: c.HostConfig.DNS}
	if c.NetworkSettings != nil {
		maps.Copy(req.Networks, c.NetworkSettings.Networks)
		if resolved {
			req.Ports, req.PublishAll = nettypes.PortMap{}, false
			for p, bs := range c.NetworkSettings.Ports {
				if len(bs) > 0 {
					req.Ports[p] = bs
				}
			}
		}
	}
	if len(req.Networks) == 0 {
		req.Networks[string(c.HostConfig.NetworkMode)] = &nettypes.EndpointSettings{}
	}
	return req
}

// etcPaths are the host files bound over a container's /etc/hosts,
// /etc/hostname and /etc/resolv.conf.
type etcPaths struct{ hosts, hostname, resolv string }

// etcFiles writes c's /etc/hosts, hostname and resolv.conf and says where
// they are. As docker, a container on another's network stack
// (--network container:X) sees X's files and hostname instead: c.Config
// is replaced by a copy carrying X's hostname.
func (s *ContainerService) etcFiles(c *container.Container) (etcPaths, error) {
	if peer := s.networkPeer(c); peer != nil {
		cfg := *c.Config
		cfg.Hostname, cfg.Domainname = peer.Config.Hostname, peer.Config.Domainname
		c.Config = &cfg
		return etcPaths{hosts: peer.HostsPath, hostname: peer.HostnamePath, resolv: peer.ResolvConfPath}, nil
	}
	if err := writeEtcFiles(c); err != nil {
		return etcPaths{}, err
	}
	return etcPaths{hosts: c.HostsPath, hostname: c.HostnamePath, resolv: c.ResolvConfPath}, nil
}

// networkPeer is the container whose network stack c joins
// (--network container:X), or nil.
func (s *ContainerService) networkPeer(c *container.Container) *container.Container {
	other, ok := strings.CutPrefix(string(c.HostConfig.NetworkMode), "container:")
	if !ok {
		return nil
	}
	oe, err := s.get(other)
	if err != nil {
		return nil
	}
	return oe.snapshot()
}

// setUpNetwork wires the container's network before it starts and
// returns the namespace its runtime spec joins ("" = the runtime makes
// one, or the host's).
func (s *ContainerService) setUpNetwork(e *entry, c *container.Container) (string, error) {
	mode := c.HostConfig.NetworkMode
	if other, ok := strings.CutPrefix(string(mode), "container:"); ok {
		oe, err := s.get(other)
		if err != nil {
			return "", err
		}
		oc := oe.snapshot()
		if oc.ID == c.ID {
			return "", errdefs.ErrInvalidArgument.WithMessage("cannot join own network")
		}
		if !oc.State.Running() || oc.State.Pid == 0 {
			return "", errdefs.ErrConflict.WithMessage(fmt.Sprintf("cannot join network namespace of a non running container: %s", other))
		}
		if oc.NetworkSettings != nil && oc.NetworkSettings.SandboxKey != "" {
			return oc.NetworkSettings.SandboxKey, nil
		}
		return "/proc/" + strconv.Itoa(oc.State.Pid) + "/ns/net", nil
	}
	if s.st.Networks == nil || !ownNetwork(mode) {
		return "", nil
	}
	t0 := time.Now()
	res, err := s.st.Networks.SetUp(sandboxRequest(c, false))
	s.log.Debug("network set up", "id", c.ID, "took", time.Since(t0), "err", err)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return "", errdefs.ErrNotFound.WithMessage("failed to set up container networking: " + err.Error())
		}
		return "", err
	}
	ns := &containertypes.NetworkSettings{SandboxID: c.ID, SandboxKey: res.NSPath, Ports: res.Ports, Networks: res.Networks}
	// Keep the requested config's keys stable: a network given by ID is
	// recorded under its name, as docker does.
	e.smu.Lock()
	e.c.NetworkSettings = ns
	e.smu.Unlock()
	c.NetworkSettings = ns
	return res.NSPath, nil
}

// tearDownNetwork releases a container's networking after it stopped (or
// a start failed) and resets its record's run-time network fields.
func (s *ContainerService) tearDownNetwork(e *entry) {
	e.smu.Lock()
	c := e.c
	e.c.NetworkSettings = stoppedNetworkSettings(c.NetworkSettings)
	mode := c.HostConfig.NetworkMode
	id := c.ID
	e.smu.Unlock()
	if s.st.Networks != nil && ownNetwork(mode) {
		t0 := time.Now()
		s.st.Networks.TearDown(id)
		s.log.Debug("network torn down", "id", id, "took", time.Since(t0))
	}
}

// restoreNetwork re-registers a running container's network after a
// daemon restart.
func (s *ContainerService) restoreNetwork(c *container.Container) {
	if s.st.Networks == nil || !ownNetwork(c.HostConfig.NetworkMode) || c.NetworkSettings == nil {
		return
	}
	if _, err := s.st.Networks.Restore(sandboxRequest(c, true)); err != nil {
		s.log.Warn("restore container network", "id", c.ID, "err", err)
	}
}

// reconcileNetworks removes namespaces and veths a crash left behind.
func (s *ContainerService) reconcileNetworks() {
	if s.st.Networks == nil {
		return
	}
	running := map[string]bool{}
	for _, e := range s.all() {
		e.smu.RLock()
		if e.shim != nil && e.c.State.Running() {
			running[e.c.ID] = true
		}
		e.smu.RUnlock()
	}
	s.st.Networks.Reconcile(running)
}

// portSummaries are ps's ports of a container.
func portSummaries(c *container.Container) []containertypes.PortSummary {
	out := []containertypes.PortSummary{}
	if c.NetworkSettings == nil {
		return out
	}
	for p, bs := range c.NetworkSettings.Ports {
		if len(bs) == 0 {
			out = append(out, containertypes.PortSummary{PrivatePort: p.Num(), Type: string(p.Proto())})
			continue
		}
		for _, b := range bs {
			hp, _ := strconv.Atoi(b.HostPort)
			out = append(out, containertypes.PortSummary{IP: b.HostIP, PrivatePort: p.Num(), PublicPort: uint16(hp), Type: string(p.Proto())})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].PrivatePort != out[j].PrivatePort {
			return out[i].PrivatePort < out[j].PrivatePort
		}
		return out[i].Type < out[j].Type
	})
	return out
}

// onNetworks reports whether the container is attached to one of the
// networks (by name or ID), for ps --filter network=.
func onNetworks(c *container.Container, nets []string) bool {
	if c.NetworkSettings == nil {
		return false
	}
	for k, es := range c.NetworkSettings.Networks {
		for _, n := range nets {
			if k == n || (es.NetworkID != "" && (es.NetworkID == n || strings.HasPrefix(es.NetworkID, n))) {
				return true
			}
		}
	}
	return false
}

// publishes matches ps's publish= filter: a host port ("8080", with an
// optional "/proto", default tcp) the container publishes.
func publishes(c *container.Container, spec string) bool {
	if c.NetworkSettings == nil {
		return false
	}
	port, proto, _ := strings.Cut(spec, "/")
	if proto == "" {
		proto = "tcp"
	}
	for p, bs := range c.NetworkSettings.Ports {
		if string(p.Proto()) != proto {
			continue
		}
		for _, b := range bs {
			if b.HostPort == port {
				return true
			}
		}
	}
	return false
}

// fillNetworkStats adds the container's interface counters (from its
// namespace's /proc/PID/net/dev; loopback left out, as docker does).
func fillNetworkStats(c *container.Container, st *containertypes.StatsResponse) {
	if c.HostConfig.NetworkMode.IsHost() || c.HostConfig.NetworkMode.IsNone() {
		return
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(c.State.Pid) + "/net/dev")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "lo" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 16 {
			continue
		}
		n := func(i int) uint64 { v, _ := strconv.ParseUint(f[i], 10, 64); return v }
		if st.Networks == nil {
			st.Networks = map[string]containertypes.NetworkStats{}
		}
		st.Networks[name] = containertypes.NetworkStats{RxBytes: n(0), RxPackets: n(1), RxErrors: n(2), RxDropped: n(3),
			TxBytes: n(8), TxPackets: n(9), TxErrors: n(10), TxDropped: n(11)}
	}
}
