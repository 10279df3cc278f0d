package network

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	nettypes "github.com/moby/moby/api/types/network"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// udpIn opens a UDP socket in the namespace at path: listening on laddr,
// or connected to raddr when that is valid.
func udpIn(t *testing.T, path string, laddr, raddr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := inNS(t, path, func() (err error) {
		if raddr.IsValid() {
			c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(raddr))
		} else {
			c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(laddr))
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// pinned runs f on a thread bound to one CPU, so every frame f sends
// passes that CPU's backlog queue in order.
func pinned(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &set); err != nil {
			errc <- err
			return
		}
		cpu := 0
		for !set.IsSet(cpu) {
			cpu++
		}
		set.Zero()
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

func recvOne(t *testing.T, c *net.UDPConn) []byte {
	t.Helper()
	// Only a guard against a hang: the datagram is already on its way.
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	b := make([]byte, 64)
	n, err := c.Read(b)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return b[:n]
}

// recvNow reads what is queued on c without waiting (EAGAIN: nothing).
func recvNow(c *net.UDPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var rerr error
	if err := rc.Control(func(fd uintptr) {
		n, _, rerr = unix.Recvfrom(int(fd), make([]byte, 64), unix.MSG_DONTWAIT)
	}); err != nil {
		return 0, err
	}
	return n, rerr
}

func txPackets(t *testing.T, veth string) uint64 {
	t.Helper()
	l, err := netlink.LinkByName(veth)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Statistics.TxPackets
}

func mapped(m *Manager, netID string, mac net.HardwareAddr) (int, bool) {
	m.mu.Lock()
	f := m.fast[netID]
	m.mu.Unlock()
	if f == nil {
		return 0, false
	}
	var v uint32
	if err := f.m.Lookup(macKey(mac), &v); err != nil {
		return 0, false
	}
	return int(v), true
}

// TestFastpath: frames between two containers of a network skip the
// bridge (the receiver's host-side veth transmits none of them), frames a
// container addresses to a container of another network are never
// handed over, and a torn-down container leaves the map.
func TestFastpath(t *testing.T) {
	m := newTestManager(t)
	u, err := m.Create(CreateRequest{Name: "u" + suffix(), Options: map[string]string{"com.docker.network.bridge.name": "bu" + suffix()}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = m.Remove(u.Name, nil) }()
	ida, idb, idc := cid(), cid(), cid()
	var rs [3]*SandboxResult
	for i, c := range []struct{ id, net string }{{ida, "bridge"}, {idb, "bridge"}, {idc, u.Name}} {
		r, err := m.SetUp(SandboxRequest{ContainerID: c.id, Name: "c" + suffix(), Networks: map[string]*nettypes.EndpointSettings{c.net: {}}})
		if err != nil {
			t.Fatal(err)
		}
		defer m.TearDown(c.id)
		rs[i] = r
	}
	a, b, c := rs[0].Networks["bridge"], rs[1].Networks["bridge"], rs[2].Networks[u.Name]
	m.mu.Lock()
	fastOff := m.fastOff
	m.mu.Unlock()
	if fastOff {
		t.Skip("the kernel refuses the BPF fast path")
	}
	vethA, vethB := vethName(ida, a.NetworkID), vethName(idb, b.NetworkID)
	la, err := netlink.LinkByName(vethA)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := mapped(m, a.NetworkID, net.HardwareAddr(a.MacAddress)); !ok || got != la.Attrs().Index {
		t.Fatalf("A's MAC maps to %d (%v), want %s's index %d", got, ok, vethA, la.Attrs().Index)
	}
	if _, ok := mapped(m, a.NetworkID, net.HardwareAddr(c.MacAddress)); ok {
		t.Fatal("the default bridge's map holds a container of another network")
	}
	filters, err := netlink.FilterList(la, netlink.HANDLE_MIN_INGRESS)
	if err != nil || len(filters) != 1 || filters[0].(*netlink.BpfFilter).Name != fastpathFilter {
		t.Fatalf("filters on %s: %v %v", vethA, filters, err)
	}

	// A → B: every datagram arrives, none through the bridge.
	const n = 100
	srvB := udpIn(t, rs[1].NSPath, netip.AddrPortFrom(b.IPAddress, 0), netip.AddrPort{})
	toB := udpIn(t, rs[0].NSPath, netip.AddrPort{}, netip.MustParseAddrPort(srvB.LocalAddr().String()))
	if _, err := toB.Write([]byte("arp")); err != nil { // resolves B's MAC
		t.Fatal(err)
	}
	recvOne(t, srvB)
	before := txPackets(t, vethB)
	for i := 0; i < n; i++ {
		if _, err := toB.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if got := recvOne(t, srvB); string(got) != "x" {
			t.Fatalf("B got %q", got)
		}
	}
	if d := txPackets(t, vethB) - before; d >= n/2 {
		t.Fatalf("%s transmitted %d frames for %d datagrams: they went through the bridge", vethB, d, n)
	}

	// A sends to C's MAC (a container of another network) as if C were
	// on its link: the frames must not reach C.
	srvC := udpIn(t, rs[2].NSPath, netip.AddrPortFrom(netip.IPv4Unspecified(), 0), netip.AddrPort{})
	cport := netip.MustParseAddrPort(srvC.LocalAddr().String()).Port()
	if err := inNS(t, rs[0].NSPath, func() error {
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		dst := &net.IPNet{IP: c.IPAddress.AsSlice(), Mask: net.CIDRMask(32, 32)}
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK}); err != nil {
			return err
		}
		return netlink.NeighAdd(&netlink.Neigh{LinkIndex: eth0.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
			IP: c.IPAddress.AsSlice(), HardwareAddr: net.HardwareAddr(c.MacAddress)})
	}); err != nil {
		t.Fatal(err)
	}
	toC := udpIn(t, rs[0].NSPath, netip.AddrPort{}, netip.AddrPortFrom(c.IPAddress, cport))
	// All from one CPU, the marker to B last: once B has it, anything
	// redirected to C would be in C's socket already.
	if err := pinned(func() error {
		for i := 0; i < n; i++ {
			if _, err := toC.Write([]byte("leak")); err != nil {
				return err
			}
		}
		_, err := toB.Write([]byte("marker"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got := recvOne(t, srvB); string(got) != "marker" {
		t.Fatalf("B got %q", got)
	}
	if k, err := recvNow(srvC); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("a container of another network received %d bytes (%v)", k, err)
	}

	// Connected to another network: in that network's map; disconnected:
	// out of it again.
	_, ua, err := m.Connect(ida, "a", u.Name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mapped(m, u.ID, net.HardwareAddr(ua.MacAddress)); !ok {
		t.Fatal("a connected container is not in the network's map")
	}
	if _, err := m.Disconnect(ida, u.Name); err != nil {
		t.Fatal(err)
	}
	if _, ok := mapped(m, u.ID, net.HardwareAddr(ua.MacAddress)); ok {
		t.Fatal("a disconnected container is still in the network's map")
	}

	// Torn down: out of the map.
	m.TearDown(idb)
	if _, ok := mapped(m, b.NetworkID, net.HardwareAddr(b.MacAddress)); ok {
		t.Fatal("B's MAC is still in the map")
	}
	if _, ok := mapped(m, a.NetworkID, net.HardwareAddr(a.MacAddress)); !ok {
		t.Fatal("A's MAC left the map with B")
	}
}
