package network

import (
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	nettypes "github.com/moby/moby/api/types/network"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestGSOSegs(t *testing.T) {
	for _, c := range []struct{ mtu, want int }{{1500, 44}, {1400, 47}, {9000, 7}, {65535, 1}, {68, 2329}, {0, 65215}} {
		if got := gsoSegs(c.mtu); got != c.want {
			t.Errorf("gsoSegs(%d) = %d, want %d", c.mtu, got, c.want)
		}
		if c.mtu > 40 {
			// Outbound packets (MSS at most MTU − 40) fit the legacy size.
			if n := gsoSegs(c.mtu) * (c.mtu - 40); c.want > 1 && n > legacyGSO-1-320 {
				t.Errorf("MTU %d: %d bytes per packet", c.mtu, n)
			}
		}
	}
}

// frameWatch records the largest frame a link sends while it runs: a
// packet socket sees a GSO packet as one frame of its full length.
type frameWatch struct {
	fd   int
	max  atomic.Int64
	stop atomic.Bool
	done chan struct{}
}

// watchFrames starts watching the frames the link ifname of the
// namespace nsPath ("" = the test's own) sends.
func watchFrames(t *testing.T, nsPath, ifname string) *frameWatch {
	t.Helper()
	w := &frameWatch{done: make(chan struct{})}
	open := func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		w.fd = fd
		// A cloned GSO packet counts in full against the buffer.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
		// Only so that the reader notices stop.
		_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000})
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.Attrs().Index})
	}
	var err error
	if nsPath == "" {
		err = open()
	} else {
		err = inNS(t, nsPath, open)
	}
	if err != nil {
		if w.fd > 0 {
			unix.Close(w.fd)
		}
		t.Fatalf("packet socket on %s: %v", ifname, err)
	}
	go func() {
		defer close(w.done)
		buf := make([]byte, 64)
		for !w.stop.Load() {
			n, from, err := unix.Recvfrom(w.fd, buf, unix.MSG_TRUNC)
			if err != nil {
				continue
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING && int64(n) > w.max.Load() {
				w.max.Store(int64(n))
			}
		}
	}()
	t.Cleanup(w.close)
	return w
}

// close stops the watch and returns the largest frame seen.
func (w *frameWatch) close() {
	if !w.stop.Swap(true) {
		<-w.done
		unix.Close(w.fd)
	}
}

// legacyFrame is the largest frame without BIG TCP: a 64 KiB IP packet
// and its Ethernet header.
const legacyFrame = 0xffff + 14

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// bulk sends n bytes over TCP from the namespace from ("" = the test's)
// to a listener at addr in the namespace to, in 256 KiB writes, and
// waits until the receiver has read them all.
func bulk(t *testing.T, from, to string, addr netip.Addr, n int) {
	t.Helper()
	var l net.Listener
	listen := func() (err error) {
		l, err = net.Listen("tcp", net.JoinHostPort(addr.String(), "0"))
		return err
	}
	var err error
	if to == "" {
		err = listen()
	} else {
		err = inNS(t, to, listen)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var got int64
	var rerr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := l.Accept()
		if err != nil {
			rerr = err
			return
		}
		defer c.Close()
		got, rerr = io.CopyBuffer(io.Discard, struct{ io.Reader }{c}, make([]byte, 1<<20))
	}()
	send := func() error {
		c, err := net.DialTimeout("tcp", l.Addr().String(), 10*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 256<<10)
		for sent := 0; sent < n; sent += len(buf) {
			if _, err := c.Write(buf); err != nil {
				return err
			}
		}
		return nil
	}
	if from == "" {
		err = send()
	} else {
		err = inNS(t, from, send)
	}
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if rerr != nil && !errors.Is(rerr, io.EOF) {
		t.Fatal(rerr)
	}
	if got < int64(n) {
		t.Fatalf("received %d of %d bytes", got, n)
	}
}

// TestBigTCP: TCP between containers of a network, and from the host to a
// container, moves in IPv4 GSO packets larger than the legacy 64 KiB
// (BIG TCP on the veths and the bridge), while what a container sends
// through its default route (towards an uplink that may not take BIG
// TCP packets) stays within 64 KiB.
func TestBigTCP(t *testing.T) {
	m := newTestManager(t)
	setUp := func() (string, *SandboxResult) {
		id := cid()
		r, err := m.SetUp(SandboxRequest{ContainerID: id, Name: "c" + suffix(), Networks: map[string]*nettypes.EndpointSettings{"bridge": {}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.TearDown(id) })
		return id, r
	}
	// The bridge's first container.
	ida, ra := setUp()
	a := ra.Networks["bridge"]
	var eth0 netlink.Link
	if err := inNS(t, ra.NSPath, func() (err error) {
		eth0, err = netlink.LinkByName("eth0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if eth0.Attrs().GSOIPv4MaxSize == 0 {
		t.Skip("the kernel has no IPv4 BIG TCP (6.3+)")
	}
	const n = 32 << 20

	// Host to container: through the bridge and A's host-side veth.
	w := watchFrames(t, "", vethName(ida, a.NetworkID))
	bulk(t, "", ra.NSPath, a.IPAddress, n)
	w.close()
	t.Logf("host to container: largest frame %d bytes", w.max.Load())
	if got := w.max.Load(); got <= legacyFrame {
		t.Errorf("host to container: largest frame on the host-side veth %d bytes, want BIG TCP packets over %d", got, legacyFrame)
	}

	// Container to container.
	_, rb := setUp()
	b := rb.Networks["bridge"]
	w = watchFrames(t, ra.NSPath, "eth0")
	bulk(t, ra.NSPath, rb.NSPath, b.IPAddress, n)
	w.close()
	t.Logf("container to container: largest frame %d bytes", w.max.Load())
	if got := w.max.Load(); got <= legacyFrame {
		t.Errorf("container to container: largest frame %d bytes, want BIG TCP packets over %d", got, legacyFrame)
	}

	// Through the default route: to an address of the host's off the
	// network's subnet (on a veth pair of the test's own).
	s := suffix()
	out := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "bx" + s}, PeerName: "by" + s}
	if err := netlink.LinkAdd(out); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = deleteLink(out.Name) }()
	var rnd [2]byte
	_, _ = rand.Read(rnd[:])
	far := netip.AddrFrom4([4]byte{198, 18 + rnd[0]&1, rnd[1], 1}) // RFC 2544 benchmarking range
	if err := netlink.AddrAdd(out, &netlink.Addr{IPNet: ipnet(netip.PrefixFrom(far, 32))}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(out); err != nil {
		t.Fatal(err)
	}
	w = watchFrames(t, ra.NSPath, "eth0")
	bulk(t, ra.NSPath, "", far, n)
	w.close()
	t.Logf("through the default route: largest frame %d bytes", w.max.Load())
	if got := w.max.Load(); got > legacyFrame || got < 1500 {
		t.Errorf("through the default route: largest frame %d bytes, want GSO packets of at most %d", got, legacyFrame)
	}
}

// TestMTUOption: -o com.docker.network.driver.mtu sets the MTU of the
// network's bridge and of both ends of its containers' veths, as docker
// does, and caps the default route's; the GSO segment cap follows the
// route's MTU. A bad value is refused before anything is created.
func TestMTUOption(t *testing.T) {
	m := newTestManager(t)
	for _, bad := range []string{"abc", "67", "65536", "-1"} {
		br := "bm" + suffix()
		if _, err := m.Create(CreateRequest{Name: "m" + suffix(), Options: map[string]string{
			"com.docker.network.driver.mtu": bad, "com.docker.network.bridge.name": br}}); err == nil {
			t.Errorf("MTU %q accepted", bad)
		}
		if linkExistsT(br) {
			_ = deleteLink(br)
			t.Errorf("MTU %q: bridge %s left behind", bad, br)
		}
	}
	br := "bm" + suffix()
	n, err := m.Create(CreateRequest{Name: "m" + suffix(), Options: map[string]string{
		"com.docker.network.driver.mtu": "1400", "com.docker.network.bridge.name": br}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = m.Remove(n.Name, nil) }()
	id := cid()
	r, err := m.SetUp(SandboxRequest{ContainerID: id, Name: "c" + suffix(), Networks: map[string]*nettypes.EndpointSettings{n.Name: {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.TearDown(id)
	mtu := func(name string) int {
		l, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs().MTU
	}
	if got := mtu(br); got != 1400 {
		t.Errorf("bridge MTU %d, want 1400", got)
	}
	if got := mtu(vethName(id, n.ID)); got != 1400 {
		t.Errorf("host-side veth MTU %d, want 1400", got)
	}
	if err := inNS(t, r.NSPath, func() error {
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if eth0.Attrs().MTU != 1400 {
			t.Errorf("eth0 MTU %d, want 1400", eth0.Attrs().MTU)
		}
		if want := gsoSegs(min(1400, m.routeMTU)); eth0.Attrs().GSOIPv4MaxSize > 0 && int(eth0.Attrs().GSOMaxSegs) != want {
			t.Errorf("eth0 gso_max_segs %d, want %d", eth0.Attrs().GSOMaxSegs, want)
		}
		routes, err := netlink.RouteList(eth0, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		defaults := 0
		for _, rt := range routes {
			if rt.Dst == nil || rt.Dst.IP.IsUnspecified() {
				defaults++
				if rt.MTU != min(1400, m.routeMTU) {
					t.Errorf("default route MTU %d, want %d", rt.MTU, min(1400, m.routeMTU))
				}
			}
		}
		if defaults != 1 {
			t.Errorf("%d default routes: %v", defaults, routes)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func linkExistsT(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}
