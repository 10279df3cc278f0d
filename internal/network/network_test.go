package network

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	nettypes "github.com/moby/moby/api/types/network"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func suffix() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newTestManager makes a manager with its own bridge, nft table and a
// random 10.x pool, and removes all of it at the end.
func newTestManager(t *testing.T) *Manager {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	s := suffix()
	var b [1]byte
	_, _ = rand.Read(b[:])
	pool := netip.MustParsePrefix("10." + strconv.Itoa(int(b[0])) + ".0.0/16")
	m, err := New(Config{DataRoot: t.TempDir(), ExecRoot: t.TempDir(), DefaultBridge: "bt" + s, Table: "berth_t" + s,
		Pools: []Pool{{Base: pool, Size: 24}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Destroy)
	return m
}

// cid is a random 64-hex container ID.
func cid() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// inNS runs f on a thread in the namespace at path.
func inNS(t *testing.T, path string, f func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies
		ns, err := netns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

// reach listens on the first namespace and dials it from the second.
func reach(t *testing.T, from, to string, ip netip.Addr) error {
	t.Helper()
	var l net.Listener
	if err := inNS(t, to, func() (err error) {
		l, err = net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	return inNS(t, from, func() error {
		c, err := net.DialTimeout("tcp", l.Addr().String(), 2*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}

func TestBridgeSandboxes(t *testing.T) {
	m := newTestManager(t)
	id1, id2 := cid(), cid()
	r1, err := m.SetUp(SandboxRequest{ContainerID: id1, Name: "one", Networks: map[string]*nettypes.EndpointSettings{"bridge": {}},
		Ports: nettypes.PortMap{nettypes.MustParsePort("80/tcp"): {{}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.TearDown(id1)
	r2, err := m.SetUp(SandboxRequest{ContainerID: id2, Name: "two", Networks: map[string]*nettypes.EndpointSettings{"bridge": {}}})
	if err != nil {
		t.Fatal(err)
	}
	ip1 := r1.Networks["bridge"].IPAddress
	ip2 := r2.Networks["bridge"].IPAddress
	if ip1 == ip2 || !ip1.IsValid() {
		t.Fatalf("addresses %s %s", ip1, ip2)
	}
	if err := reach(t, r2.NSPath, r1.NSPath, ip1); err != nil {
		t.Fatalf("connect between sandboxes: %v", err)
	}
	// An IPv4-only endpoint has no IPv6 link-local address (as in docker),
	// whose duplicate address detection and multicast reports the bridge
	// would flood to every other container.
	if err := inNS(t, r1.NSPath, func() error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			if l.Attrs().Name == "lo" {
				continue
			}
			addrs, err := netlink.AddrList(l, netlink.FAMILY_V6)
			if err != nil {
				return err
			}
			if len(addrs) != 0 {
				return fmt.Errorf("%s has IPv6 addresses %v", l.Attrs().Name, addrs)
			}
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if hp := r1.Ports[nettypes.MustParsePort("80/tcp")]; len(hp) != 1 || hp[0].HostPort == "" {
		t.Fatalf("ports %v", r1.Ports)
	}
	m.TearDown(id2)
	if _, err := os.Stat(r2.NSPath); !os.IsNotExist(err) {
		t.Fatalf("netns left: %v", err)
	}
	// The kernel deletes the veth with the namespace, in the background.
	for i := 0; ; i++ {
		if _, err := netlink.LinkByName(vethName(id2, r2.Networks["bridge"].NetworkID)); err != nil {
			break
		}
		if i == 1000 {
			t.Fatal("veth left")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The address is free again.
	r3, err := m.SetUp(SandboxRequest{ContainerID: id2, Name: "two", Networks: map[string]*nettypes.EndpointSettings{"bridge": {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.TearDown(id2)
	if r3.Networks["bridge"].IPAddress != ip2 {
		t.Fatalf("got %s, want the released %s", r3.Networks["bridge"].IPAddress, ip2)
	}
}

func TestUserNetworkDNSAndIsolation(t *testing.T) {
	m := newTestManager(t)
	n, err := m.Create(CreateRequest{Name: "u" + suffix(), Options: map[string]string{"com.docker.network.bridge.name": "bu" + suffix()}})
	if err != nil {
		t.Fatal(err)
	}
	id1, id2, id3 := cid(), cid(), cid()
	r1, err := m.SetUp(SandboxRequest{ContainerID: id1, Name: "web", Networks: map[string]*nettypes.EndpointSettings{n.Name: {Aliases: []string{"www"}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.TearDown(id1)
	r2, err := m.SetUp(SandboxRequest{ContainerID: id2, Name: "db", Networks: map[string]*nettypes.EndpointSettings{n.Name: {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.TearDown(id2)
	r3, err := m.SetUp(SandboxRequest{ContainerID: id3, Name: "other", Networks: map[string]*nettypes.EndpointSettings{"bridge": {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.TearDown(id3)
	if !r1.EmbeddedDNS || r3.EmbeddedDNS {
		t.Fatalf("embedded DNS: %v %v", r1.EmbeddedDNS, r3.EmbeddedDNS)
	}
	ips, ok := m.resolve(id2, "www")
	if !ok || len(ips) != 1 || ips[0] != r1.Networks[n.Name].IPAddress {
		t.Fatalf("resolve www: %v %v", ips, ok)
	}
	if _, ok := m.resolve(id3, "web"); ok {
		t.Fatal("a container on another network resolves web")
	}
	if err := reach(t, r2.NSPath, r1.NSPath, r1.Networks[n.Name].IPAddress); err != nil {
		t.Fatalf("connect on the user network: %v", err)
	}
	if err := reach(t, r3.NSPath, r1.NSPath, r1.Networks[n.Name].IPAddress); err == nil {
		t.Fatal("connect across networks succeeded")
	}
	if _, err := m.Remove(n.Name, nil); err == nil {
		t.Fatal("removed a network with endpoints")
	}
	m.TearDown(id1)
	m.TearDown(id2)
	if _, err := m.Remove(n.Name, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(n.Bridge); err == nil {
		t.Fatal("bridge left")
	}
}

func TestCreateBadInput(t *testing.T) {
	m := newTestManager(t)
	def, _ := m.Get("bridge")
	for _, req := range []CreateRequest{
		{Name: "x" + suffix(), IPAM: &nettypes.IPAM{Config: []nettypes.IPAMConfig{{Subnet: def.Subnet}}}},
		{Name: "x" + suffix(), IPAM: &nettypes.IPAM{Config: []nettypes.IPAMConfig{{Subnet: netip.MustParsePrefix("10.250.3.0/24"), Gateway: netip.MustParseAddr("10.250.4.1")}}}},
		{Name: "x" + suffix(), Driver: "nope"},
		{Name: "bridge"},
	} {
		if n, err := m.Create(req); err == nil {
			t.Errorf("create %+v succeeded: %+v", req, n)
		}
	}
	if len(m.List()) != 3 {
		t.Fatalf("networks left: %d", len(m.List()))
	}
}

func BenchmarkSetUp(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	s := suffix()
	m, err := New(Config{DataRoot: b.TempDir(), ExecRoot: b.TempDir(), DefaultBridge: "bt" + s, Table: "berth_t" + s,
		Pools: []Pool{{Base: netip.MustParsePrefix("10.77.0.0/16"), Size: 16}}})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Destroy()
	for i := 0; i < b.N; i++ {
		id := cid()
		if _, err := m.SetUp(SandboxRequest{ContainerID: id, Name: "c", Networks: map[string]*nettypes.EndpointSettings{"bridge": {}},
			Ports: nettypes.PortMap{nettypes.MustParsePort("80/tcp"): {{}}}}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		m.TearDown(id)
		b.StartTimer()
	}
}

func BenchmarkTearDown(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	s := suffix()
	m, err := New(Config{DataRoot: b.TempDir(), ExecRoot: b.TempDir(), DefaultBridge: "bt" + s, Table: "berth_t" + s,
		Pools: []Pool{{Base: netip.MustParsePrefix("10.78.0.0/16"), Size: 16}}})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Destroy()
	for i := 0; i < b.N; i++ {
		id := cid()
		b.StopTimer()
		if _, err := m.SetUp(SandboxRequest{ContainerID: id, Name: "c", Networks: map[string]*nettypes.EndpointSettings{"bridge": {}},
			Ports: nettypes.PortMap{nettypes.MustParsePort("80/tcp"): {{}}}}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		m.TearDown(id)
	}
}

// TestBridgeKeepsItsAddress: a bridge berth makes or adopts has an address
// of its own, which ports joining do not change (else containers' cached
// gateway address goes stale).
func TestBridgeKeepsItsAddress(t *testing.T) {
	m := newTestManager(t)
	brName := m.cfg.DefaultBridge
	mac := func(name string) string {
		l, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs().HardwareAddr.String()
	}
	before := mac(brName)
	id := cid()
	if _, err := m.SetUp(SandboxRequest{ContainerID: id, Name: "c", Networks: map[string]*nettypes.EndpointSettings{"bridge": {}}}); err != nil {
		t.Fatal(err)
	}
	defer m.TearDown(id)
	if after := mac(brName); after != before {
		t.Fatalf("the bridge's address changed from %s to %s when a container joined", before, after)
	}

	// A bridge left by an older berth, whose address follows its ports.
	old := "bo" + suffix()
	if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: old}}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = deleteLink(old) }()
	oldMAC := mac(old)
	if err := ensureBridge(&Network{Bridge: old}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile("/sys/class/net/" + old + "/addr_assign_type"); strings.TrimSpace(string(b)) != "3" || mac(old) != oldMAC {
		t.Fatalf("adopted bridge: address %s (was %s), assign type %q", mac(old), oldMAC, b)
	}
}
