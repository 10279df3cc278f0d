package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	nettypes "github.com/moby/moby/api/types/network"
	"github.com/vishvananda/netlink"
)

// SandboxRequest describes a container's networking at start.
type SandboxRequest struct {
	ContainerID, Name string
	// Networks are the networks to attach, by the name or ID the user
	// gave, with the requested aliases, IPs and MAC; the values filled in
	// by an earlier run (IPAddress, …) are kept when Restore-ing.
	Networks   map[string]*nettypes.EndpointSettings
	Ports      nettypes.PortMap
	PublishAll bool
	Exposed    nettypes.PortSet
	// DNS are the upstream servers the embedded DNS forwards to (--dns);
	// empty means the host's resolvers.
	DNS []netip.Addr
	// Primary is the network mode's network (by name or ID), attached
	// first.
	Primary string
}

// refIs reports whether a network reference resolves to the network id.
func (m *Manager) refIs(ref, id string) bool {
	n, err := m.Get(ref)
	return err == nil && n.ID == id
}

// SandboxResult is what a started container's record keeps.
type SandboxResult struct {
	NSPath   string
	Networks map[string]*nettypes.EndpointSettings // by network name
	Ports    nettypes.PortMap
	// EmbeddedDNS: the container is on a user-defined network and its
	// resolv.conf should point at 127.0.0.11.
	EmbeddedDNS bool
}

// SetUp creates the container's namespace, its veths, addresses, routes,
// port mappings and DNS entries. On error nothing is left behind.
func (m *Manager) SetUp(req SandboxRequest) (*SandboxResult, error) {
	nsPath := m.NSPath(req.ContainerID)
	_ = removeNetNS(nsPath) // a leftover of an earlier run
	if err := newNetNS(nsPath); err != nil {
		return nil, err
	}
	res, err := m.attachAll(req, nsPath, false)
	if err != nil {
		m.TearDown(req.ContainerID)
		_ = removeNetNS(nsPath)
		return nil, err
	}
	return res, nil
}

// Restore re-registers a running container's attachments after a daemon
// restart: its namespace and veths still exist; its allocations, port
// mappings and DNS server are rebuilt from its record.
func (m *Manager) Restore(req SandboxRequest) (*SandboxResult, error) {
	nsPath := m.NSPath(req.ContainerID)
	if _, err := os.Stat(nsPath); err != nil {
		return nil, fmt.Errorf("network namespace of %s is gone: %w", req.ContainerID, err)
	}
	return m.attachAll(req, nsPath, true)
}

func (m *Manager) attachAll(req SandboxRequest, nsPath string, restore bool) (*SandboxResult, error) {
	res := &SandboxResult{NSPath: nsPath, Networks: map[string]*nettypes.EndpointSettings{}, Ports: nettypes.PortMap{}}
	sb := &sandbox{id: req.ContainerID, nsPath: nsPath}
	m.mu.Lock()
	m.sandboxes[req.ContainerID] = sb
	m.mu.Unlock()
	names := make([]string, 0, len(req.Networks))
	for k := range req.Networks {
		names = append(names, k)
	}
	sort.Strings(names)
	// The primary network (the container's network mode) comes first: it
	// gets eth0, the default route and the published ports.
	if req.Primary != "" {
		if pn, err := m.Get(req.Primary); err == nil {
			sort.SliceStable(names, func(i, j int) bool {
				return m.refIs(names[i], pn.ID) && !m.refIs(names[j], pn.ID)
			})
		}
	}
	var first *Network
	for i, ref := range names {
		n, es, err := m.attach(req.ContainerID, req.Name, nsPath, ref, req.Networks[ref], i, restore)
		if err != nil {
			return nil, err
		}
		if first == nil {
			first = n
		}
		res.Networks[n.Name] = es
		if n.UserDefined {
			res.EmbeddedDNS = true
		}
	}
	if first != nil && first.Subnet.IsValid() {
		ports, pm, err := m.publish(req, first, res.Networks[first.Name].IPAddress, restore)
		if err != nil {
			return nil, err
		}
		m.mu.Lock()
		sb.ports = ports
		m.mu.Unlock()
		res.Ports = pm
	}
	if res.EmbeddedDNS {
		d, err := startDNS(m, req.ContainerID, nsPath, req.DNS)
		if err != nil {
			return nil, err
		}
		m.mu.Lock()
		sb.dns = d
		m.mu.Unlock()
	}
	return res, nil
}

// vethName is the host end's name: unique per container and network.
func vethName(cid, netID string) string { return vethPrefix + cid[:9] + netID[:4] }

// attach connects the namespace to one network.
func (m *Manager) attach(cid, cname, nsPath, ref string, want *nettypes.EndpointSettings, idx int, restore bool) (*Network, *nettypes.EndpointSettings, error) {
	if want == nil {
		want = &nettypes.EndpointSettings{}
	}
	m.mu.Lock()
	n, err := m.lookup(ref)
	if err != nil {
		m.mu.Unlock()
		return nil, nil, err
	}
	if n.Bridge == "" {
		m.mu.Unlock()
		return nil, nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("container cannot be connected to network %s", n.Name))
	}
	if _, ok := m.eps[n.ID][cid]; ok {
		m.mu.Unlock()
		return nil, nil, errdefs.ErrPermissionDenied.WithMessage(fmt.Sprintf("endpoint with name %s already exists in network %s", cname, n.Name))
	}
	var reqIP, reqIP6 netip.Addr
	if want.IPAMConfig != nil {
		reqIP, reqIP6 = want.IPAMConfig.IPv4Address, want.IPAMConfig.IPv6Address
	}
	if (reqIP.IsValid() || reqIP6.IsValid()) && !n.UserSubnet && !restore {
		m.mu.Unlock()
		return nil, nil, errdefs.ErrInvalidArgument.WithMessage("user specified IP address is supported only when connecting to networks with user configured subnets")
	}
	if restore && want.IPAddress.IsValid() {
		reqIP = want.IPAddress
	}
	if restore && want.GlobalIPv6Address.IsValid() {
		reqIP6 = want.GlobalIPv6Address
	}
	ip, err := m.allocate(n, reqIP, false)
	if err != nil {
		m.mu.Unlock()
		return nil, nil, err
	}
	var ip6 netip.Addr
	if n.IPv6 && n.Subnet6.IsValid() {
		if ip6, err = m.allocate(n, reqIP6, true); err != nil {
			m.mu.Unlock()
			return nil, nil, err
		}
	}
	mac := net.HardwareAddr(want.MacAddress)
	if len(mac) == 0 {
		b := ip.As4()
		mac = net.HardwareAddr{0x02, 0x42, b[0], b[1], b[2], b[3]}
	}
	short := cid[:12]
	var dnsNames []string
	if cname != "" { // a build step has no name, only its ID
		dnsNames = append(dnsNames, cname)
	}
	for _, a := range want.Aliases {
		if a != "" && a != cname && a != short {
			dnsNames = append(dnsNames, a)
		}
	}
	dnsNames = append(dnsNames, short)
	ep := &Endpoint{ContainerID: cid, ContainerName: cname, NetworkID: n.ID, EndpointID: want.EndpointID,
		HostVeth: vethName(cid, n.ID), IP: ip, IP6: ip6, MAC: mac, DNSNames: dnsNames}
	if !restore || ep.EndpointID == "" {
		ep.EndpointID = newID()
	}
	if m.eps[n.ID] == nil {
		m.eps[n.ID] = map[string]*Endpoint{}
	}
	m.eps[n.ID][cid] = ep // reserves the addresses
	nc := *n
	m.mu.Unlock()

	if !restore {
		lc := linkConfig{HostName: ep.HostVeth, Name: "eth" + strconv.Itoa(idx), Bridge: n.Bridge, MAC: mac,
			MTU: n.linkMTU(), RouteMTU: min(n.linkMTU(), m.routeMTU),
			Addrs: []netip.Prefix{netip.PrefixFrom(ip, n.Subnet.Bits())}}
		if ip6.IsValid() {
			lc.Addrs = append(lc.Addrs, netip.PrefixFrom(ip6, n.Subnet6.Bits()))
		}
		if !n.Internal && idx == 0 {
			lc.Gateway, lc.Gateway6 = n.Gateway, n.Gateway6
		}
		ifindex, err := addVeth(nsPath, lc)
		if err != nil {
			m.mu.Lock()
			delete(m.eps[n.ID], cid)
			m.mu.Unlock()
			return nil, nil, err
		}
		m.fw.ensureForwardAccepts([]string{n.Bridge}, false)
		m.fastAttach(n.ID, ifindex, mac)
	} else if l, err := netlink.LinkByName(ep.HostVeth); err == nil {
		// The veth still carries the dead daemon's program, whose map no
		// one updates any more: replace it.
		m.fastAttach(n.ID, l.Attrs().Index, mac)
	}
	es := &nettypes.EndpointSettings{
		IPAMConfig: want.IPAMConfig, Links: want.Links, Aliases: want.Aliases, DriverOpts: want.DriverOpts,
		NetworkID: n.ID, EndpointID: ep.EndpointID, IPAddress: ip, IPPrefixLen: n.Subnet.Bits(),
		MacAddress: nettypes.HardwareAddr(mac), DNSNames: nil,
	}
	if !n.Internal {
		es.Gateway = n.Gateway
		es.IPv6Gateway = n.Gateway6
	}
	if ip6.IsValid() {
		es.GlobalIPv6Address, es.GlobalIPv6PrefixLen = ip6, n.Subnet6.Bits()
	}
	if n.UserDefined {
		es.DNSNames = dnsNames
	}
	return &nc, es, nil
}

// allocate picks (or checks) an address; callers hold mu.
func (m *Manager) allocate(n *Network, want netip.Addr, v6 bool) (netip.Addr, error) {
	sub, gw := n.Subnet, n.Gateway
	if v6 {
		sub, gw = n.Subnet6, n.Gateway6
	}
	used := map[netip.Addr]bool{gw: true}
	for _, ep := range m.eps[n.ID] {
		used[ep.IP], used[ep.IP6] = true, true
	}
	if want.IsValid() {
		if !sub.Contains(want) {
			return netip.Addr{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid address %s: it does not belong to any of this network's subnets", want))
		}
		if used[want] {
			return netip.Addr{}, errdefs.ErrConflict.WithMessage(fmt.Sprintf("Address already in use: %s", want))
		}
		return want, nil
	}
	rng := sub
	if !v6 && n.IPRange.IsValid() {
		rng = n.IPRange
	}
	a := rng.Masked().Addr().Next()
	for i := 0; rng.Contains(a) && i < 1<<20; i++ {
		next := a.Next()
		last := !rng.Contains(next) // broadcast
		if !used[a] && !(last && !v6) {
			return a, nil
		}
		a = next
	}
	return netip.Addr{}, errdefs.ErrUnavailable.WithMessage(fmt.Sprintf("no available IPv4 addresses on this network's address pools: %s", n.Name))
}

// publish maps the container's published ports to ip.
func (m *Manager) publish(req SandboxRequest, n *Network, ip netip.Addr, restore bool) ([]portElem, nettypes.PortMap, error) {
	bindings := nettypes.PortMap{}
	for p, bs := range req.Ports {
		bindings[p] = append([]nettypes.PortBinding(nil), bs...)
	}
	if req.PublishAll {
		for p := range req.Exposed {
			if _, ok := bindings[p]; !ok {
				bindings[p] = []nettypes.PortBinding{{}}
			}
		}
	}
	keys := make([]nettypes.Port, 0, len(bindings))
	for p := range bindings {
		keys = append(keys, p)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	var elems []portElem
	out := nettypes.PortMap{}
	ok := false
	defer func() {
		if !ok {
			m.releasePorts(elems)
		}
	}()
	for _, p := range keys {
		for _, b := range bindings[p] {
			hostIP := b.HostIP
			if !hostIP.IsValid() {
				hostIP = netip.IPv4Unspecified()
			}
			if hostIP.Is6() {
				if !hostIP.IsUnspecified() {
					return nil, nil, errdefs.ErrNotImplemented.WithMessage("publishing on an IPv6 host address is not supported by berth")
				}
				continue
			}
			lo, hi, err := portRange(b.HostPort)
			if err != nil {
				return nil, nil, err
			}
			e := portElem{HostIP: hostIP, Proto: string(p.Proto()), CtrIP: ip, CtrPort: p.Num()}
			port, err := m.reservePort(req.ContainerID, e, lo, hi)
			if err != nil {
				return nil, nil, err
			}
			e.HostPort = port
			elems = append(elems, e)
			out[p] = append(out[p], nettypes.PortBinding{HostIP: hostIP, HostPort: strconv.Itoa(int(port))})
		}
		if _, done := out[p]; !done {
			out[p] = nil
		}
	}
	for p := range req.Exposed {
		if _, ok := out[p]; !ok {
			out[p] = nil
		}
	}
	if err := m.fw.setPorts(elems, false); err != nil {
		return nil, nil, err
	}
	ok = true
	return elems, out, nil
}

func portRange(s string) (lo, hi uint16, err error) {
	if s == "" {
		return 0, 0, nil
	}
	a, b, isRange := strings.Cut(s, "-")
	x, err1 := strconv.ParseUint(a, 10, 16)
	y := x
	var err2 error
	if isRange {
		y, err2 = strconv.ParseUint(b, 10, 16)
	}
	if err1 != nil || err2 != nil || y < x {
		return 0, 0, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid port specification: %q", s))
	}
	return uint16(x), uint16(y), nil
}

// reservation is a host port berth publishes: a bound, never listening
// socket keeps other programs from taking the port.
type reservation struct {
	cid string
	fd  int
}

var reservations = struct {
	m map[string]reservation // "proto/ip/port"
}{m: map[string]reservation{}}

func resKey(proto string, ip netip.Addr, port uint16) string {
	return proto + "/" + ip.String() + "/" + strconv.Itoa(int(port))
}

// reservePort takes a host port in [lo,hi] (0,0 = an ephemeral one).
func (m *Manager) reservePort(cid string, e portElem, lo, hi uint16) (uint16, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	try := func(port uint16) (uint16, error) {
		any := netip.IPv4Unspecified()
		if port != 0 {
			for k := range reservations.m {
				if k == resKey(e.Proto, e.HostIP, port) || (e.HostIP.IsUnspecified() && strings.HasPrefix(k, e.Proto+"/") && strings.HasSuffix(k, "/"+strconv.Itoa(int(port)))) || k == resKey(e.Proto, any, port) {
					return 0, errPortAllocated(e.HostIP, port)
				}
			}
		}
		fd, got, err := bindPort(e.Proto, e.HostIP, port)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return 0, errPortAllocated(e.HostIP, port)
			}
			return 0, fmt.Errorf("reserve host port %d: %w", port, err)
		}
		reservations.m[resKey(e.Proto, e.HostIP, got)] = reservation{cid: cid, fd: fd}
		return got, nil
	}
	if lo == hi {
		return try(lo)
	}
	var last error
	for p := lo; p <= hi && p != 0; p++ {
		got, err := try(p)
		if err == nil {
			return got, nil
		}
		last = err
		if p == hi {
			break
		}
	}
	return 0, last
}

func bindPort(proto string, ip netip.Addr, port uint16) (int, uint16, error) {
	typ := syscall.SOCK_STREAM
	if proto == "udp" {
		typ = syscall.SOCK_DGRAM
	}
	fd, err := syscall.Socket(syscall.AF_INET, typ|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, err
	}
	sa := &syscall.SockaddrInet4{Port: int(port), Addr: ip.As4()}
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		return -1, 0, err
	}
	if port == 0 {
		got, err := syscall.Getsockname(fd)
		if err != nil {
			syscall.Close(fd)
			return -1, 0, err
		}
		port = uint16(got.(*syscall.SockaddrInet4).Port)
	}
	return fd, port, nil
}

func (m *Manager) releasePorts(elems []portElem) {
	m.mu.Lock()
	for _, e := range elems {
		k := resKey(e.Proto, e.HostIP, e.HostPort)
		if r, ok := reservations.m[k]; ok {
			syscall.Close(r.fd)
			delete(reservations.m, k)
		}
	}
	m.mu.Unlock()
}

// TearDown releases everything of a container's networking: DNS server,
// port mappings, addresses, veths and the namespace.
func (m *Manager) TearDown(cid string) {
	m.mu.Lock()
	sb := m.sandboxes[cid]
	delete(m.sandboxes, cid)
	type veth struct {
		name, netID string
		mac         net.HardwareAddr
	}
	var veths []veth
	for netID, eps := range m.eps {
		if ep, ok := eps[cid]; ok {
			veths = append(veths, veth{ep.HostVeth, netID, ep.MAC})
			delete(eps, cid)
		}
	}
	m.mu.Unlock()
	if sb != nil {
		if sb.dns != nil {
			sb.dns.close()
		}
		if err := m.fw.setPorts(sb.ports, true); err != nil {
			m.log.Warn("remove port mappings", "id", cid, "err", err)
		}
		m.releasePorts(sb.ports)
	}
	// Deleting a veth takes 20–40 ms (an RCU grace period): it is done in
	// the background, by interface index so that a veth of the same name
	// made meanwhile by a restart is never hit. (Destroying the namespace
	// would remove the pairs too, but only once the kernel gets to it.)
	var links []netlink.Link
	for _, v := range veths {
		if l, err := netlink.LinkByName(v.name); err == nil {
			links = append(links, l)
			m.fastForget(v.netID, v.mac, l.Attrs().Index)
		}
	}
	if len(links) > 0 {
		go func() {
			for _, l := range links {
				_ = netlink.LinkDel(l)
			}
		}()
	}
	if err := removeNetNS(m.NSPath(cid)); err != nil {
		m.log.Warn("remove network namespace", "id", cid, "err", err)
	}
}

// Connect attaches a running container to one more network.
func (m *Manager) Connect(cid, cname, ref string, want *nettypes.EndpointSettings) (*Network, *nettypes.EndpointSettings, error) {
	m.mu.Lock()
	sb := m.sandboxes[cid]
	idx := 0
	for _, eps := range m.eps {
		if _, ok := eps[cid]; ok {
			idx++
		}
	}
	m.mu.Unlock()
	if sb == nil {
		return nil, nil, errdefs.ErrConflict.WithMessage("container has no network namespace of its own")
	}
	// A free ethN name in the namespace.
	h, ns, err := nsHandle(sb.nsPath)
	if err != nil {
		return nil, nil, err
	}
	for {
		if _, err := h.LinkByName("eth" + strconv.Itoa(idx)); err != nil {
			break
		}
		idx++
	}
	h.Close()
	ns.Close()
	n, es, err := m.attach(cid, cname, sb.nsPath, ref, want, idx, false)
	if err != nil {
		return nil, nil, err
	}
	if n.UserDefined && sb.dns == nil {
		if d, err := startDNS(m, cid, sb.nsPath, nil); err == nil {
			m.mu.Lock()
			sb.dns = d
			m.mu.Unlock()
		} else {
			m.log.Warn("embedded DNS", "id", cid, "err", err)
		}
	}
	return n, es, nil
}

// Disconnect detaches a container from a network.
func (m *Manager) Disconnect(cid, ref string) (*Network, error) {
	m.mu.Lock()
	n, err := m.lookup(ref)
	if err != nil {
		m.mu.Unlock()
		return nil, err
	}
	ep, ok := m.eps[n.ID][cid]
	if ok {
		delete(m.eps[n.ID], cid)
	}
	nc := *n
	m.mu.Unlock()
	if ok {
		if l, err := netlink.LinkByName(ep.HostVeth); err == nil {
			m.fastForget(n.ID, ep.MAC, l.Attrs().Index)
			_ = netlink.LinkDel(l)
		}
	}
	return &nc, nil
}

// Reconcile removes what a crash left: namespaces of containers not in
// running and veths on berth's bridges that no endpoint owns.
func (m *Manager) Reconcile(running map[string]bool) {
	files, _ := filepath.Glob(filepath.Join(m.cfg.ExecRoot, "netns", "*"))
	for _, f := range files {
		if !running[filepath.Base(f)] {
			m.log.Info("removing a leftover network namespace", "id", filepath.Base(f))
			_ = removeNetNS(f)
		}
	}
	m.mu.Lock()
	owned := map[string]bool{}
	bridges := map[int]bool{}
	for _, eps := range m.eps {
		for _, ep := range eps {
			owned[ep.HostVeth] = true
		}
	}
	var brNames []string
	for _, n := range m.networks {
		if n.Bridge == "" {
			continue
		}
		brNames = append(brNames, n.Bridge)
		if l, err := netlink.LinkByName(n.Bridge); err == nil {
			bridges[l.Attrs().Index] = true
		}
	}
	m.mu.Unlock()
	links, _ := netlink.LinkList()
	for _, l := range links {
		a := l.Attrs()
		if bridges[a.MasterIndex] && berthVeth(a.Name) && !owned[a.Name] {
			m.log.Info("removing a leftover veth", "veth", a.Name)
			_ = netlink.LinkDel(l)
		}
	}
	m.fw.ensureForwardAccepts(brNames, true)
}
