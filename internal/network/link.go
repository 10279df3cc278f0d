package network

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ensureBridge creates (or adopts) a bridge with the network's gateway
// addresses, up, with route_localnet so DNATed host-local traffic may leave
// through it.
func ensureBridge(n *Network) error {
	l, err := netlink.LinkByName(n.Bridge)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return fmt.Errorf("look up bridge %s: %w", n.Bridge, err)
		}
		// An address of its own: without one the bridge takes its lowest
		// port's, and changes it as containers come and go, which leaves
		// the containers' neighbour entries for the gateway stale.
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.Bridge, TxQLen: -1, MTU: n.linkMTU(), HardwareAddr: randomMAC()}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("create bridge %s: %w", n.Bridge, err)
		}
		if l, err = netlink.LinkByName(n.Bridge); err != nil {
			return err
		}
	}
	if _, ok := l.(*netlink.Bridge); !ok {
		return fmt.Errorf("%s exists and is not a bridge", n.Bridge)
	}
	if b, err := os.ReadFile("/sys/class/net/" + n.Bridge + "/addr_assign_type"); err == nil && strings.TrimSpace(string(b)) != "3" {
		// A bridge of an earlier berth whose address follows its ports:
		// pin the one it has (NET_ADDR_SET).
		if err := netlink.LinkSetHardwareAddr(l, l.Attrs().HardwareAddr); err != nil {
			return fmt.Errorf("set the address of %s: %w", n.Bridge, err)
		}
	}
	want := []netip.Prefix{}
	if n.Gateway.IsValid() {
		want = append(want, netip.PrefixFrom(n.Gateway, n.Subnet.Bits()))
	}
	if n.Gateway6.IsValid() {
		want = append(want, netip.PrefixFrom(n.Gateway6, n.Subnet6.Bits()))
	}
	have, _ := netlink.AddrList(l, netlink.FAMILY_ALL)
	for _, p := range want {
		found := false
		for _, a := range have {
			if a.IPNet != nil && a.IPNet.String() == p.String() {
				found = true
			}
		}
		if !found {
			if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: ipnet(p)}); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("address %s on %s: %w", p, n.Bridge, err)
			}
		}
	}
	_ = os.WriteFile("/proc/sys/net/ipv4/conf/"+n.Bridge+"/route_localnet", []byte("1"), 0o644)
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring %s up: %w", n.Bridge, err)
	}
	return nil
}

// randomMAC is a random unicast, locally administered address.
func randomMAC() net.HardwareAddr {
	m := make(net.HardwareAddr, 6)
	_, _ = rand.Read(m)
	m[0] = m[0]&^1 | 2
	return m
}

func deleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil
	}
	return netlink.LinkDel(l)
}

func ipnet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

// newNetNS creates a network namespace and bind-mounts it at path, so it
// lives on without processes (across daemon restarts) until unmounted.
func newNetNS(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("create netns file: %w", err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		// The thread is left locked and so exits with the goroutine: it
		// never returns to the daemon's namespace by a setns that could fail.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare netns: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind-mount netns: %w", err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		_ = os.Remove(path)
		return err
	}
	return nil
}

// removeNetNS unmounts and removes a namespace file (missing is fine).
func removeNetNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// nsHandle opens a netlink handle inside the namespace at path.
func nsHandle(path string) (*netlink.Handle, netns.NsHandle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, 0, fmt.Errorf("open netns %s: %w", path, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, 0, fmt.Errorf("netlink in %s: %w", path, err)
	}
	return h, ns, nil
}

// linkConfig is one interface to add to a sandbox.
type linkConfig struct {
	HostName, Name string // host side (in the bridge), container side
	Bridge         string
	MAC            net.HardwareAddr
	Addrs          []netip.Prefix
	Gateway        netip.Addr // default IPv4 route ("" = none)
	Gateway6       netip.Addr
	// MTU is the veth's; RouteMTU the default routes' (0 = the link's).
	MTU, RouteMTU int
}

// bigGSO is the largest IPv4 GSO packet berth lets a container's TCP
// build on its veth (IPv4 BIG TCP; the kernel's GSO_MAX_SIZE, veth's
// tso_max_size). With 64 KiB links a frame carries one 64 KiB segment;
// a 512 KiB GSO packet carries eight, so the per-packet work of the
// stacks, the veth, the fast path and the ACKs is done an eighth as often.
const bigGSO = 524280

// legacyGSO is the kernel's GSO size limit without BIG TCP, and that of
// uplinks unless their admin raised it.
const legacyGSO = 65536

// gsoSegs caps the segments of a GSO packet a container sends, so that
// traffic through a default route with the given MTU stays within the
// legacy 64 KiB a packet leaving the host may have: the kernel segments a
// larger one in software, frame by frame, on an uplink that does not
// take it (gso_features_check), which would cost forwarded traffic far
// more than BIG TCP saves. The kernel's own goal is (64 KiB − 1 −
// MAX_TCP_HEADER (320)) / MSS; with the largest MSS (MTU − 40) the cap
// leaves outbound packets as large as they were (44 segments with a 1500
// byte MTU). Between containers, with the links' 64 KiB MSS, a BIG TCP
// packet has at most eight segments, so the cap does not bind there
// unless the uplink has jumbo frames (seven with a 9000 byte MTU).
func gsoSegs(routeMTU int) int {
	const sizeGoal = legacyGSO - 1 - 320
	return max(sizeGoal/max(routeMTU-40, 1), 1)
}

// setBigGSO raises a link's IPv4 GSO limit to bigGSO (at most its
// tso_max_size) and, when segs > 0, caps its GSO segments. Failures only
// cost speed (kernels before 6.3 have no IPv4 BIG TCP); they are ignored.
func setBigGSO(h *netlink.Handle, l netlink.Link, segs int) {
	size := bigGSO
	if t := int(l.Attrs().TSOMaxSize); t > 0 {
		size = min(size, t)
	}
	if size <= legacyGSO {
		return
	}
	if segs > 0 {
		_ = h.LinkSetGSOMaxSegs(l, segs)
	}
	_ = h.LinkSetGSOIPv4MaxSize(l, size)
}

// addVeth creates a veth pair with its peer directly in the namespace,
// plugs the host end into the bridge and configures the peer. It returns
// the host end's interface index.
func addVeth(nsPath string, lc linkConfig) (int, error) {
	br, err := netlink.LinkByName(lc.Bridge)
	if err != nil {
		return 0, fmt.Errorf("bridge %s: %w", lc.Bridge, err)
	}
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return 0, fmt.Errorf("open netns: %w", err)
	}
	defer ns.Close()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: lc.HostName, MasterIndex: br.Attrs().Index, MTU: lc.MTU, TxQLen: -1},
		PeerName:      lc.Name,
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	if lc.MAC != nil {
		veth.PeerHardwareAddr = lc.MAC
	}
	err = netlink.LinkAdd(veth)
	if errors.Is(err, unix.EEXIST) {
		// The same container's veth of a run whose namespace the kernel
		// is still destroying.
		_ = deleteLink(lc.HostName)
		err = netlink.LinkAdd(veth)
	}
	if err != nil {
		return 0, fmt.Errorf("create veth %s: %w", lc.HostName, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = deleteLink(lc.HostName)
		}
	}()
	host, err := netlink.LinkByName(lc.HostName)
	if err != nil {
		return 0, err
	}
	// The host end forwards what the bridge sends it: BIG TCP packets of
	// the host or of another container must not be segmented there.
	setBigGSO(&netlink.Handle{}, host, 0)
	if err := netlink.LinkSetUp(host); err != nil {
		return 0, err
	}
	_ = netlink.LinkSetHairpin(host, true)
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return 0, err
	}
	defer h.Close()
	peer, err := h.LinkByName(lc.Name)
	if err != nil {
		return 0, err
	}
	if !slices.ContainsFunc(lc.Addrs, func(a netip.Prefix) bool { return a.Addr().Is6() }) {
		// No IPv6 on this endpoint: no link-local address either, as with
		// docker 26.0.2+. Otherwise the interface's duplicate address
		// detection and multicast listener reports, flooded by the bridge
		// to every other container on it, cost ~10 ms of kernel time per
		// start with 200 containers on the bridge.
		// Best effort, as the other speed-ups here: the address only costs
		// time (and a kernel without IPv6 has none to make).
		_ = h.LinkSetIP6AddrGenMode(peer, nl.IN6_ADDR_GEN_MODE_NONE)
	}
	routeMTU := lc.RouteMTU
	if routeMTU <= 0 {
		routeMTU = lc.MTU
	}
	setBigGSO(h, peer, gsoSegs(routeMTU))
	for _, a := range lc.Addrs {
		addr := &netlink.Addr{IPNet: ipnet(a)}
		if a.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(peer, addr); err != nil {
			return 0, fmt.Errorf("address %s: %w", a, err)
		}
	}
	if err := h.LinkSetUp(peer); err != nil {
		return 0, err
	}
	if lo, err := h.LinkByName("lo"); err == nil {
		_ = h.LinkSetUp(lo)
	}
	if lc.Gateway.IsValid() {
		if err := h.RouteAdd(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: lc.Gateway.AsSlice(), MTU: lc.RouteMTU}); err != nil && !errors.Is(err, unix.EEXIST) {
			return 0, fmt.Errorf("default route via %s: %w", lc.Gateway, err)
		}
	}
	if lc.Gateway6.IsValid() {
		if err := h.RouteAdd(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: lc.Gateway6.AsSlice(), Family: netlink.FAMILY_V6, MTU: lc.RouteMTU}); err != nil && !errors.Is(err, unix.EEXIST) {
			return 0, fmt.Errorf("default IPv6 route via %s: %w", lc.Gateway6, err)
		}
	}
	ok = true
	// (Zero: the kernel has no IPv4 BIG TCP.)
	if a := br.Attrs(); a.GSOIPv4MaxSize > 0 && a.GSOIPv4MaxSize < bigGSO {
		bridgeBigGSO(a.Index)
	}
	return host.Attrs().Index, nil
}

// bridgeBigGSO lets the host's own traffic to containers, which leaves
// through the bridge, use BIG TCP packets as well, once every port of the
// bridge takes them (berth's veths do; an uplink a user enslaved to a
// bridge berth adopted may not, and would then have to segment them in
// software). The kernel allows it only once the bridge has ports (its
// tso_max_size is the smallest of theirs).
func bridgeBigGSO(index int) {
	br, err := netlink.LinkByIndex(index)
	if err != nil || br.Attrs().TSOMaxSize <= legacyGSO {
		return // a port that takes no packets over 64 KiB: nothing to list
	}
	links, err := netlink.LinkList()
	if err != nil {
		return
	}
	for _, l := range links {
		if a := l.Attrs(); a.MasterIndex == index && a.GSOIPv4MaxSize < bigGSO {
			return
		}
	}
	setBigGSO(&netlink.Handle{}, br, 0)
}

// uplinkMTU is the MTU of the device of the host's default route (1500
// when there is none).
func uplinkMTU() int {
	routes, _ := netlink.RouteList(nil, netlink.FAMILY_V4)
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil && l.Attrs().MTU > 0 {
				return l.Attrs().MTU
			}
		}
	}
	return 1500
}

// hostRoutes are the prefixes of the host's addresses and routes, which a
// new network's subnet must not overlap.
func hostRoutes() []netip.Prefix {
	var out []netip.Prefix
	routes, _ := netlink.RouteList(nil, netlink.FAMILY_V4)
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		if p, ok := prefixOf(r.Dst); ok && p.Bits() > 0 {
			out = append(out, p)
		}
	}
	addrs, _ := netlink.AddrList(nil, netlink.FAMILY_V4)
	for _, a := range addrs {
		if p, ok := prefixOf(a.IPNet); ok && !p.Addr().IsLoopback() {
			out = append(out, p.Masked())
		}
	}
	return out
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones).Masked(), true
}

// berthVeth reports whether a link name is one of berth's host-side veths.
func berthVeth(name string) bool { return strings.HasPrefix(name, vethPrefix) }

const vethPrefix = "bv"
