// Package network is berth's container networking: the networks (the
// default bridge, user-defined bridges, host and none), their persisted
// definitions, IP address management, the per-container network namespaces
// and veths, NAT and published ports in berth's own nftables table, and an
// embedded DNS server for user-defined networks.
//
// Lifecycle: the engine calls SetUp before a container starts (it returns
// the namespace path the runtime joins) and TearDown after it exits. IP
// allocations live in the container records the engine persists; at
// start-up the engine hands back the running containers (Restore) and
// Reconcile removes whatever a crash left behind.
package network

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-engine/berth/internal/fsutil"
	"github.com/containerd/errdefs"
	nettypes "github.com/moby/moby/api/types/network"
)

// Config configures the manager.
type Config struct {
	// DataRoot holds the network definitions; ExecRoot the namespaces.
	DataRoot, ExecRoot string
	// DefaultBridge is the default network's bridge device ("berth0").
	DefaultBridge string
	// BIP is the default bridge's gateway/prefix (e.g. 172.18.0.1/16);
	// zero chooses a free subnet from the pools.
	BIP netip.Prefix
	// Pools are where subnets are chosen (docker's --default-address-pool).
	Pools []Pool
	// Table is the name of berth's nftables table ("berth").
	Table  string
	Logger *slog.Logger
}

// Pool is a range split into subnets of Size bits.
type Pool struct {
	Base netip.Prefix
	Size int
}

// DefaultPools are docker's default address pools.
var DefaultPools = []Pool{
	{netip.MustParsePrefix("172.17.0.0/12"), 16},
	{netip.MustParsePrefix("192.168.0.0/16"), 20},
}

// Network is a network's persisted definition.
type Network struct {
	ID, Name, Driver string
	Created          time.Time
	Bridge           string       `json:",omitempty"`
	Subnet           netip.Prefix `json:",omitzero"`
	IPRange          netip.Prefix `json:",omitzero"`
	Gateway          netip.Addr   `json:",omitzero"`
	IPv6             bool         `json:",omitempty"`
	Subnet6          netip.Prefix `json:",omitzero"`
	Gateway6         netip.Addr   `json:",omitzero"`
	Internal         bool         `json:",omitempty"`
	Attachable       bool         `json:",omitempty"`
	Labels           map[string]string
	Options          map[string]string
	// UserDefined networks get the embedded DNS; the default bridge does not.
	UserDefined bool `json:",omitempty"`
	// UserSubnet: the user gave the subnet (so --ip may be used on it).
	UserSubnet bool `json:",omitempty"`
	// MTU is com.docker.network.driver.mtu when the user set it.
	MTU int `json:",omitempty"`
}

// bigMTU is the MTU of berth's bridges and veths unless the user sets
// one: traffic between containers on a bridge and between the host and
// its containers moves in 64 KiB frames, as on loopback, while the
// containers' default routes carry the uplink's MTU so traffic leaving the
// host is sized for the real network.
const bigMTU = 65535

func (n *Network) linkMTU() int {
	if n.MTU > 0 {
		return n.MTU
	}
	return bigMTU
}

// Endpoint is one container's attachment to a network (in memory).
type Endpoint struct {
	ContainerID, ContainerName string
	NetworkID, EndpointID      string
	HostVeth                   string
	IP, IP6                    netip.Addr
	MAC                        net.HardwareAddr
	DNSNames                   []string
}

// Manager owns the networks and the containers' attachments.
type Manager struct {
	cfg Config
	log *slog.Logger
	fw  *firewall

	mu       sync.Mutex
	networks map[string]*Network // by ID
	// eps: network ID → container ID → endpoint.
	eps map[string]map[string]*Endpoint
	// sandboxes: container ID → its namespace, ports and DNS server.
	sandboxes map[string]*sandbox
	// routeMTU is the MTU of containers' default routes: the uplink's.
	routeMTU int
	// fast: network ID → its container-to-container fast path;
	// fastOff once the kernel has refused it.
	fast    map[string]*fastpath
	fastOff bool
}

type sandbox struct {
	id, nsPath string
	ports      []portElem
	dns        *dnsServer
}

// New loads the network definitions, (re)creates berth's nftables table,
// the default bridge and the bridges of user-defined networks.
func New(cfg Config) (_ *Manager, retErr error) {
	if cfg.DefaultBridge == "" {
		cfg.DefaultBridge = "berth0"
	}
	if cfg.Table == "" {
		cfg.Table = "berth"
	}
	if len(cfg.Pools) == 0 {
		cfg.Pools = DefaultPools
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, fw: newFirewall(cfg.Table),
		networks: map[string]*Network{}, eps: map[string]map[string]*Endpoint{}, sandboxes: map[string]*sandbox{}, fast: map[string]*fastpath{}}
	if m.log == nil {
		m.log = slog.Default()
	}
	m.routeMTU = uplinkMTU()
	if err := os.MkdirAll(m.netDir(), 0o700); err != nil {
		return nil, err
	}
	_ = os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	if err := m.fw.reset(); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			_ = m.fw.destroy()
		}
	}()
	files, _ := filepath.Glob(filepath.Join(m.netDir(), "*.json"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var n Network
		if err := json.Unmarshal(b, &n); err != nil || n.ID == "" {
			m.log.Error("skipping unreadable network definition", "file", f, "err", err)
			continue
		}
		m.networks[n.ID] = &n
	}
	for _, name := range []string{"host", "none"} {
		if m.byName(name) == nil {
			n := &Network{ID: newID(), Name: name, Driver: name, Created: time.Now().UTC()}
			if err := m.save(n); err != nil {
				return nil, err
			}
			m.networks[n.ID] = n
		}
	}
	def := m.byName("bridge")
	if def != nil && def.Bridge != cfg.DefaultBridge {
		// The daemon's bridge options changed: make the network anew.
		_ = deleteLink(def.Bridge)
		delete(m.networks, def.ID)
		_ = os.Remove(m.netFile(def.ID))
		def = nil
	}
	if def != nil && cfg.BIP.IsValid() && (def.Subnet != cfg.BIP.Masked() || def.Gateway != cfg.BIP.Addr()) {
		_ = deleteLink(def.Bridge)
		delete(m.networks, def.ID)
		_ = os.Remove(m.netFile(def.ID))
		def = nil
	}
	if def == nil {
		def = &Network{ID: newID(), Name: "bridge", Driver: "bridge", Created: time.Now().UTC(), Bridge: cfg.DefaultBridge,
			Options: map[string]string{
				"com.docker.network.bridge.default_bridge":       "true",
				"com.docker.network.bridge.enable_icc":           "true",
				"com.docker.network.bridge.enable_ip_masquerade": "true",
				"com.docker.network.bridge.host_binding_ipv4":    "0.0.0.0",
				"com.docker.network.bridge.name":                 cfg.DefaultBridge,
				"com.docker.network.driver.mtu":                  strconv.Itoa(m.routeMTU),
			}}
		if cfg.BIP.IsValid() {
			def.Subnet, def.Gateway = cfg.BIP.Masked(), cfg.BIP.Addr()
		} else {
			// The bridge may still exist from before (its address is then
			// one of the host's routes): reuse its subnet.
			if p, ok := bridgeSubnet(cfg.DefaultBridge); ok {
				def.Subnet, def.Gateway = p.Masked(), p.Addr()
			} else {
				sub, err := m.freeSubnet(nil)
				if err != nil {
					return nil, err
				}
				def.Subnet, def.Gateway = sub, sub.Addr().Next()
			}
		}
		if err := m.save(def); err != nil {
			return nil, err
		}
		m.networks[def.ID] = def
	}
	for _, n := range m.networks {
		if n.Bridge == "" {
			continue
		}
		if err := ensureBridge(n); err != nil {
			return nil, fmt.Errorf("network %s: %w", n.Name, err)
		}
		if err := m.fw.addNetwork(n); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func bridgeSubnet(name string) (netip.Prefix, bool) {
	for _, p := range linkAddrs(name) {
		if p.Addr().Is4() {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// Close stops the DNS servers (containers keep their namespaces, and
// their veths the fast path's programs).
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, sb := range m.sandboxes {
		if sb.dns != nil {
			sb.dns.close()
		}
	}
	for id := range m.fast {
		m.dropFastpath(id)
	}
}

// Destroy removes every bridge, rule and namespace the manager made (tests
// and `berth daemon` clean-ups; not used on a normal shutdown).
func (m *Manager) Destroy() {
	m.Close()
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, sb := range m.sandboxes {
		_ = removeNetNS(sb.nsPath)
		delete(m.sandboxes, id)
	}
	for _, n := range m.networks {
		if n.Bridge != "" {
			_ = deleteLink(n.Bridge)
		}
	}
	if err := m.fw.destroy(); err != nil {
		m.log.Warn("delete nftables table", "err", err)
	}
}

func (m *Manager) netDir() string { return filepath.Join(m.cfg.DataRoot, "network", "networks") }
func (m *Manager) netFile(id string) string {
	return filepath.Join(m.netDir(), id+".json")
}

// NSPath is where a container's network namespace is bind-mounted.
func (m *Manager) NSPath(cid string) string { return filepath.Join(m.cfg.ExecRoot, "netns", cid) }

func (m *Manager) save(n *Network) error {
	b, err := json.MarshalIndent(n, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(m.netFile(n.ID), b, 0o600)
}

func newID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (m *Manager) byName(name string) *Network {
	for _, n := range m.networks {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// lookup resolves a name, full ID or unique ID prefix; callers hold mu.
func (m *Manager) lookup(ref string) (*Network, error) {
	if n := m.byName(ref); n != nil {
		return n, nil
	}
	if n := m.networks[ref]; n != nil {
		return n, nil
	}
	var found *Network
	for id, n := range m.networks {
		if ref != "" && strings.HasPrefix(id, ref) {
			if found != nil {
				return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("network %s is ambiguous", ref))
			}
			found = n
		}
	}
	if found == nil {
		return nil, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("network %s not found", ref))
	}
	return found, nil
}

// Get returns a copy of a network.
func (m *Manager) Get(ref string) (*Network, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.lookup(ref)
	if err != nil {
		return nil, err
	}
	c := *n
	return &c, nil
}

// List returns copies of every network, by name.
func (m *Manager) List() []*Network {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Network, 0, len(m.networks))
	for _, n := range m.networks {
		c := *n
		out = append(out, &c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Endpoints returns copies of a network's endpoints.
func (m *Manager) Endpoints(netID string) []Endpoint {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Endpoint
	for _, ep := range m.eps[netID] {
		out = append(out, *ep)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ContainerID < out[j].ContainerID })
	return out
}

// freeSubnet picks the first pool subnet that overlaps no network and no
// host route or address; callers hold mu (or run before serving).
func (m *Manager) freeSubnet(extra []netip.Prefix) (netip.Prefix, error) {
	taken := append(hostRoutes(), extra...)
	for _, n := range m.networks {
		if n.Subnet.IsValid() {
			taken = append(taken, n.Subnet)
		}
	}
	for _, pool := range m.cfg.Pools {
		base := pool.Base.Masked()
		if pool.Size < base.Bits() || pool.Size > 30 {
			continue
		}
		step := uint32(1) << (32 - pool.Size)
		start := be32(base.Addr())
		count := uint32(1) << (pool.Size - base.Bits())
		for i := uint32(0); i < count; i++ {
			cand := netip.PrefixFrom(fromBE32(start+i*step), pool.Size)
			if !overlapsAny(cand, taken) {
				return cand, nil
			}
		}
	}
	return netip.Prefix{}, errdefs.ErrUnavailable.WithMessage("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")
}

func overlapsAny(p netip.Prefix, list []netip.Prefix) bool {
	for _, q := range list {
		if p.Overlaps(q) {
			return true
		}
	}
	return false
}

func be32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func fromBE32(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// CreateRequest is what `network create` asks for.
type CreateRequest = nettypes.CreateRequest

// Create makes a user-defined bridge network.
func (m *Manager) Create(req CreateRequest) (*Network, error) {
	if req.Name == "" {
		return nil, errdefs.ErrInvalidArgument.WithMessage("network name is required")
	}
	driver := req.Driver
	if driver == "" {
		driver = "bridge"
	}
	switch driver {
	case "bridge":
	case "host", "none", "null":
		return nil, errdefs.ErrPermissionDenied.WithMessage(fmt.Sprintf("only one instance of \"%s\" network is allowed", driver))
	default:
		return nil, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("plugin \"%s\" not found", driver))
	}
	if strings.ContainsAny(req.Name, "/: ") {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid network name %q", req.Name))
	}
	if req.ConfigOnly || req.ConfigFrom != nil || req.Ingress {
		return nil, errdefs.ErrNotImplemented.WithMessage("config-only, config-from and ingress networks are not supported by berth")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byName(req.Name) != nil {
		return nil, errdefs.ErrConflict.WithMessage(fmt.Sprintf("network with name %s already exists", req.Name))
	}
	n := &Network{ID: newID(), Name: req.Name, Driver: driver, Created: time.Now().UTC(), Internal: req.Internal,
		Attachable: req.Attachable, Labels: req.Labels, Options: req.Options, UserDefined: true}
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	if n.Options == nil {
		n.Options = map[string]string{}
	}
	if v := n.Options["com.docker.network.driver.mtu"]; v != "" {
		mtu, err := strconv.Atoi(v)
		if err != nil || mtu < 68 || mtu > bigMTU {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid MTU %q", v))
		}
		n.MTU = mtu
	}
	n.Bridge = n.Options["com.docker.network.bridge.name"]
	if n.Bridge == "" {
		n.Bridge = "br-" + n.ID[:12]
	}
	if len(n.Bridge) > 15 {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("bridge name %q is too long (at most 15 characters)", n.Bridge))
	}
	for _, o := range m.networks {
		if o.Bridge == n.Bridge {
			return nil, errdefs.ErrConflict.WithMessage(fmt.Sprintf("bridge name %s is already in use by network %s", n.Bridge, o.Name))
		}
	}
	n.IPv6 = req.EnableIPv6 != nil && *req.EnableIPv6
	var others []netip.Prefix
	for _, o := range m.networks {
		if o.Subnet.IsValid() {
			others = append(others, o.Subnet)
		}
		if o.Subnet6.IsValid() {
			others = append(others, o.Subnet6)
		}
	}
	if req.IPAM != nil {
		if req.IPAM.Driver != "" && req.IPAM.Driver != "default" {
			return nil, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("plugin %q not found", req.IPAM.Driver))
		}
		for _, c := range req.IPAM.Config {
			if !c.Subnet.IsValid() {
				if c.Gateway.IsValid() || c.IPRange.IsValid() {
					return nil, errdefs.ErrInvalidArgument.WithMessage("invalid pool request: gateway and ip-range need a subnet")
				}
				continue
			}
			sub := c.Subnet
			if sub.Masked() != sub {
				return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid subnet %s: it should be %s", sub, sub.Masked()))
			}
			if overlapsAny(sub, others) {
				return nil, errdefs.ErrPermissionDenied.WithMessage("invalid pool request: Pool overlaps with other one on this address space")
			}
			if c.Gateway.IsValid() && !sub.Contains(c.Gateway) {
				return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid pool request: gateway %s is not in subnet %s", c.Gateway, sub))
			}
			if c.IPRange.IsValid() && (!sub.Contains(c.IPRange.Addr()) || c.IPRange.Bits() < sub.Bits()) {
				return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid pool request: ip-range %s is not in subnet %s", c.IPRange, sub))
			}
			gw := c.Gateway
			if !gw.IsValid() {
				gw = sub.Addr().Next()
			}
			if sub.Addr().Is4() {
				if n.Subnet.IsValid() {
					return nil, errdefs.ErrNotImplemented.WithMessage("more than one IPv4 subnet per network is not supported by berth")
				}
				if sub.Bits() > 30 {
					return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid subnet %s: too small", sub))
				}
				n.Subnet, n.Gateway, n.IPRange, n.UserSubnet = sub, gw, c.IPRange, true
			} else {
				if !n.IPv6 {
					return nil, errdefs.ErrInvalidArgument.WithMessage("an IPv6 subnet needs --ipv6")
				}
				n.Subnet6, n.Gateway6 = sub, gw
			}
			others = append(others, sub)
		}
	}
	if !n.Subnet.IsValid() {
		sub, err := m.freeSubnet(nil)
		if err != nil {
			return nil, err
		}
		n.Subnet, n.Gateway = sub, sub.Addr().Next()
	}
	if n.IPv6 && !n.Subnet6.IsValid() {
		return nil, errdefs.ErrInvalidArgument.WithMessage("berth needs an explicit IPv6 --subnet for an IPv6 network")
	}
	if err := ensureBridge(n); err != nil {
		_ = deleteLink(n.Bridge)
		return nil, err
	}
	if err := m.fw.addNetwork(n); err != nil {
		_ = m.fw.removeNetwork(n)
		_ = deleteLink(n.Bridge)
		return nil, err
	}
	if err := m.save(n); err != nil {
		_ = m.fw.removeNetwork(n)
		_ = deleteLink(n.Bridge)
		return nil, err
	}
	m.networks[n.ID] = n
	c := *n
	return &c, nil
}

// Remove deletes a user-defined network that has no endpoints.
func (m *Manager) Remove(ref string, inUse func(netID, netName string) bool) (*Network, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.lookup(ref)
	if err != nil {
		return nil, err
	}
	if !n.UserDefined {
		return nil, errdefs.ErrPermissionDenied.WithMessage(fmt.Sprintf("%s is a pre-defined network and cannot be removed", n.Name))
	}
	if len(m.eps[n.ID]) > 0 || (inUse != nil && inUse(n.ID, n.Name)) {
		return nil, errdefs.ErrPermissionDenied.WithMessage(fmt.Sprintf("error while removing network: network %s has active endpoints", n.Name))
	}
	if err := m.fw.removeNetwork(n); err != nil {
		m.log.Warn("remove network rules", "network", n.Name, "err", err)
	}
	if err := deleteLink(n.Bridge); err != nil {
		return nil, fmt.Errorf("delete bridge %s: %w", n.Bridge, err)
	}
	if err := os.Remove(m.netFile(n.ID)); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	delete(m.networks, n.ID)
	delete(m.eps, n.ID)
	m.dropFastpath(n.ID)
	return n, nil
}

// errPortAllocated is docker's message for a busy host port.
func errPortAllocated(ip netip.Addr, port uint16) error {
	host := "0.0.0.0"
	if ip.IsValid() {
		host = ip.String()
	}
	return errdefs.ErrConflict.WithMessage(fmt.Sprintf("Bind for %s failed: port is already allocated", net.JoinHostPort(host, fmt.Sprint(port))))
}

// linkAddrs are the addresses on a link.
func linkAddrs(name string) []netip.Prefix {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return nil
	}
	addrs, _ := ifc.Addrs()
	var out []netip.Prefix
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if p, ok := prefixOf(n); ok {
				ip, _ := netip.AddrFromSlice(n.IP)
				out = append(out, netip.PrefixFrom(ip.Unmap(), p.Bits()))
			}
		}
	}
	return out
}

// Cleanup removes every bridge of the networks defined under dataRoot,
// the default bridge and berth's table of that name (with its rules in
// the host's FORWARD chain): what a test daemon leaves once stopped.
func Cleanup(dataRoot, defaultBridge, table string) error {
	var errs []error
	files, _ := filepath.Glob(filepath.Join(dataRoot, "network", "networks", "*.json"))
	bridges := []string{defaultBridge}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var n Network
		if json.Unmarshal(b, &n) == nil && n.Bridge != "" {
			bridges = append(bridges, n.Bridge)
		}
	}
	for _, br := range bridges {
		if br == "" {
			continue
		}
		if err := deleteLink(br); err != nil {
			errs = append(errs, err)
		}
	}
	if table != "" {
		if err := newFirewall(table).destroy(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
