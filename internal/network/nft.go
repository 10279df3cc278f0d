package network

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// firewall is berth's nftables state: one table of its own (family ip),
// rebuilt whole at daemon start-up, with per-network rules (masquerade,
// isolation) and per-container map elements (published ports), so a
// container's start or stop costs a constant amount of kernel work however
// many containers run.
//
// Where the host's iptables-nft "filter" table has a FORWARD chain with a
// drop policy (dockerd sets one), a drop in any base chain wins over
// berth's accepts, so berth inserts "-i BRIDGE -j ACCEPT" and "-o BRIDGE -j
// ACCEPT" rules there, in iptables-nft's own encoding with a comment naming
// the table, and removes exactly those again. Nothing else of the host's
// rules is touched.
type firewall struct {
	mu    sync.Mutex
	table *nftables.Table
	// maps of published ports: "pany" is proto . port → addr . port for
	// bindings on every host address; "paddr" adds the host address in
	// front of the key for bindings on one address.
	pany, paddr *nftables.Set
	brs         *nftables.Set // every berth bridge's name
	post, fwd   *nftables.Chain
	comment     string
	lastCheck   time.Time
}

const (
	regKey  = 1 // NFT_REG_1
	reg32_1 = 9 // NFT_REG32_01
	reg32_2 = 10
)

func newFirewall(table string) *firewall {
	return &firewall{table: &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}, comment: "berth:" + table}
}

// reset deletes berth's table if it exists and creates it afresh with its
// chains and maps (empty): the daemon then re-adds what its state says.
func (f *firewall) reset() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return err
	}
	if t, _ := c.ListTableOfFamily(f.table.Name, nftables.TableFamilyIPv4); t != nil {
		c.DelTable(f.table)
		if err := c.Flush(); err != nil {
			return fmt.Errorf("delete nftables table %s: %w", f.table.Name, err)
		}
	}
	c.AddTable(f.table)
	anyKey, _ := nftables.ConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	addrKey, _ := nftables.ConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	dst, _ := nftables.ConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	f.pany = &nftables.Set{Table: f.table, Name: "pany", IsMap: true, Concatenation: true, KeyType: anyKey, DataType: dst}
	f.paddr = &nftables.Set{Table: f.table, Name: "paddr", IsMap: true, Concatenation: true, KeyType: addrKey, DataType: dst}
	f.brs = &nftables.Set{Table: f.table, Name: "brs", KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.BigEndian}
	for _, s := range []*nftables.Set{f.pany, f.paddr, f.brs} {
		if err := c.AddSet(s, nil); err != nil {
			return err
		}
	}
	pol := nftables.ChainPolicyAccept
	pre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: f.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &pol})
	out := c.AddChain(&nftables.Chain{Name: "output", Table: f.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest, Policy: &pol})
	f.post = c.AddChain(&nftables.Chain{Name: "postrouting", Table: f.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &pol})
	f.fwd = c.AddChain(&nftables.Chain{Name: "forward", Table: f.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &pol})
	for _, ch := range []*nftables.Chain{pre, out} {
		// ip daddr . l4proto . dport → paddr
		c.AddRule(&nftables.Rule{Table: f.table, Chain: ch, Exprs: []expr.Any{
			&expr.Payload{DestRegister: regKey, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32_1},
			&expr.Payload{DestRegister: reg32_2, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: regKey, DestRegister: regKey, IsDestRegSet: true, SetName: f.paddr.Name, SetID: f.paddr.ID},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: regKey, RegProtoMin: reg32_1, Specified: true},
		}})
		// fib daddr type local, l4proto . dport → pany
		c.AddRule(&nftables.Rule{Table: f.table, Chain: ch, Exprs: []expr.Any{
			&expr.Fib{Register: regKey, ResultADDRTYPE: true, FlagDADDR: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: regKey, Data: binary.NativeEndian.AppendUint32(nil, unix.RTN_LOCAL)},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: regKey},
			&expr.Payload{DestRegister: reg32_1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: regKey, DestRegister: regKey, IsDestRegSet: true, SetName: f.pany.Name, SetID: f.pany.ID},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: regKey, RegProtoMin: reg32_1, Specified: true},
		}})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("create nftables table %s: %w", f.table.Name, err)
	}
	return nil
}

// destroy deletes berth's table and its rules in the host's FORWARD chain.
func (f *firewall) destroy() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return err
	}
	f.removeForwardAccepts(c, "")
	if t, _ := c.ListTableOfFamily(f.table.Name, nftables.TableFamilyIPv4); t != nil {
		c.DelTable(f.table)
	}
	return c.Flush()
}

func ifname(s string) []byte {
	b := make([]byte, 16)
	copy(b, s)
	return b
}

func prefixCmp(p netip.Prefix, reg uint32, off uint32) []expr.Any {
	mask := net4Mask(p.Bits())
	return []expr.Any{
		&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
		&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: p.Masked().Addr().AsSlice()},
	}
}

func net4Mask(bits int) []byte {
	m := make([]byte, 4)
	for i := 0; i < bits; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

// addNetwork adds a network's rules: outbound masquerade (unless
// internal), masquerade of host-local clients of published ports, and
// isolation from berth's other bridges.
func (f *firewall) addNetwork(n *Network) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return err
	}
	tag := userdata.AppendString(nil, userdata.TypeComment, "net:"+n.ID)
	br := ifname(n.Bridge)
	if err := c.SetAddElements(f.brs, []nftables.SetElement{{Key: br}}); err != nil {
		return err
	}
	if n.Subnet.IsValid() && !n.Internal {
		// ip saddr SUBNET oifname != BR masquerade
		ex := prefixCmp(n.Subnet, regKey, 12)
		ex = append(ex,
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: regKey},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: regKey, Data: br},
			&expr.Masq{})
		c.AddRule(&nftables.Rule{Table: f.table, Chain: f.post, Exprs: ex, UserData: tag})
	}
	// oifname BR ip saddr 127.0.0.0/8 masquerade: the host's own clients of
	// a published port on 127.0.0.1 (DNATed in output, route_localnet).
	ex := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: regKey},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regKey, Data: br},
	}
	ex = append(ex, prefixCmp(netip.MustParsePrefix("127.0.0.0/8"), regKey, 12)...)
	ex = append(ex, &expr.Masq{})
	c.AddRule(&nftables.Rule{Table: f.table, Chain: f.post, Exprs: ex, UserData: tag})

	// iifname BR oifname BR ct status dnat masquerade: a container
	// reaching a port its own network publishes (hairpin); without it the
	// reply would skip the NAT.
	c.AddRule(&nftables.Rule{Table: f.table, Chain: f.post, UserData: tag, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: regKey},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regKey, Data: br},
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: regKey},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regKey, Data: br},
		&expr.Ct{Key: expr.CtKeySTATUS, Register: regKey},
		&expr.Bitwise{SourceRegister: regKey, DestRegister: regKey, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, 0x20), Xor: []byte{0, 0, 0, 0}}, // IPS_DST_NAT
		&expr.Cmp{Op: expr.CmpOpNeq, Register: regKey, Data: []byte{0, 0, 0, 0}},
		&expr.Masq{},
	}})

	// iifname BR oifname @brs oifname != BR drop (isolation); for an
	// internal network, anything in or out that is not BR→BR.
	c.AddRule(&nftables.Rule{Table: f.table, Chain: f.fwd, UserData: tag, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: regKey},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regKey, Data: br},
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: regKey},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: regKey, Data: br},
		&expr.Lookup{SourceRegister: regKey, SetName: f.brs.Name, SetID: f.brs.ID},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if n.Internal {
		for _, k := range [][2]expr.MetaKey{{expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME}, {expr.MetaKeyOIFNAME, expr.MetaKeyIIFNAME}} {
			c.AddRule(&nftables.Rule{Table: f.table, Chain: f.fwd, UserData: tag, Exprs: []expr.Any{
				&expr.Meta{Key: k[0], Register: regKey},
				&expr.Cmp{Op: expr.CmpOpEq, Register: regKey, Data: br},
				&expr.Meta{Key: k[1], Register: regKey},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: regKey, Data: br},
				&expr.Verdict{Kind: expr.VerdictDrop},
			}})
		}
	}
	f.addForwardAccepts(c, n.Bridge)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables rules of network %s: %w", n.Name, err)
	}
	return nil
}

// removeNetwork deletes a network's rules.
func (f *firewall) removeNetwork(n *Network) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return err
	}
	for _, ch := range []*nftables.Chain{f.post, f.fwd} {
		rules, err := c.GetRules(f.table, ch)
		if err != nil {
			return err
		}
		for _, r := range rules {
			if s, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok && s == "net:"+n.ID {
				_ = c.DelRule(r)
			}
		}
	}
	_ = c.SetDeleteElements(f.brs, []nftables.SetElement{{Key: ifname(n.Bridge)}})
	f.removeForwardAccepts(c, n.Bridge)
	return c.Flush()
}

// hostForward is the iptables-nft FORWARD chain when its policy drops.
func hostForward(c *nftables.Conn) (*nftables.Table, *nftables.Chain) {
	t := &nftables.Table{Name: "filter", Family: nftables.TableFamilyIPv4}
	ch, err := c.ListChain(t, "FORWARD")
	if err != nil || ch == nil || ch.Policy == nil || *ch.Policy != nftables.ChainPolicyDrop {
		return nil, nil
	}
	return t, ch
}

// addForwardAccepts inserts the accept rules for a bridge into the host's
// FORWARD chain when its policy is drop (queued on c).
func (f *firewall) addForwardAccepts(c *nftables.Conn, bridge string) {
	t, ch := hostForward(c)
	if ch == nil {
		return
	}
	tag := userdata.AppendString(nil, userdata.TypeComment, f.comment+":"+bridge)
	name := append([]byte(bridge), 0)
	for _, k := range []expr.MetaKey{expr.MetaKeyOIFNAME, expr.MetaKeyIIFNAME} {
		// As iptables-nft encodes "-i/-o NAME -m comment -j ACCEPT", so
		// iptables itself (and dockerd) can still read the chain.
		c.InsertRule(&nftables.Rule{Table: t, Chain: ch, UserData: tag, Exprs: []expr.Any{
			&expr.Meta{Key: k, Register: regKey},
			&expr.Cmp{Op: expr.CmpOpEq, Register: regKey, Data: name},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}})
	}
}

// removeForwardAccepts deletes berth's accept rules for bridge (all of
// this table's, if bridge is "") from the host's FORWARD chain.
func (f *firewall) removeForwardAccepts(c *nftables.Conn, bridge string) {
	t := &nftables.Table{Name: "filter", Family: nftables.TableFamilyIPv4}
	ch, err := c.ListChain(t, "FORWARD")
	if err != nil || ch == nil {
		return
	}
	rules, err := c.GetRules(t, ch)
	if err != nil {
		return
	}
	for _, r := range rules {
		s, ok := userdata.GetString(r.UserData, userdata.TypeComment)
		if !ok {
			continue
		}
		if (bridge == "" && len(s) > len(f.comment) && s[:len(f.comment)+1] == f.comment+":") || s == f.comment+":"+bridge {
			_ = c.DelRule(r)
		}
	}
}

// ensureForwardAccepts re-checks the host's FORWARD chain (dockerd may
// have started since) and adds berth's accepts for bridges that lack them.
func (f *firewall) ensureForwardAccepts(bridges []string, force bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// At most every few seconds on the start path: a dump of the host's
	// chain per container start would grow with the host's rules.
	if !force && time.Since(f.lastCheck) < 3*time.Second {
		return
	}
	f.lastCheck = time.Now()
	c, err := nftables.New()
	if err != nil {
		return
	}
	t, ch := hostForward(c)
	if ch == nil {
		return
	}
	have := map[string]bool{}
	if rules, err := c.GetRules(t, ch); err == nil {
		for _, r := range rules {
			if s, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok {
				have[s] = true
			}
		}
	}
	n := 0
	for _, b := range bridges {
		if !have[f.comment+":"+b] {
			f.addForwardAccepts(c, b)
			n++
		}
	}
	if n > 0 {
		_ = c.Flush()
	}
}

// portElem is one published port as map elements.
type portElem struct {
	HostIP   netip.Addr // unspecified = every address
	HostPort uint16
	Proto    string
	CtrIP    netip.Addr
	CtrPort  uint16
}

func protoNum(p string) byte {
	if p == "udp" {
		return unix.IPPROTO_UDP
	}
	if p == "sctp" {
		return unix.IPPROTO_SCTP
	}
	return unix.IPPROTO_TCP
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func (p portElem) elem() (set string, e nftables.SetElement) {
	port := binary.BigEndian.AppendUint16(nil, p.HostPort)
	key := append(pad4([]byte{protoNum(p.Proto)}), pad4(port)...)
	val := append(p.CtrIP.AsSlice(), pad4(binary.BigEndian.AppendUint16(nil, p.CtrPort))...)
	if p.HostIP.IsValid() && !p.HostIP.IsUnspecified() {
		return "paddr", nftables.SetElement{Key: append(p.HostIP.AsSlice(), key...), Val: val}
	}
	return "pany", nftables.SetElement{Key: key, Val: val}
}

// setPorts adds (or, with del, removes) published ports.
func (f *firewall) setPorts(ports []portElem, del bool) error {
	if len(ports) == 0 {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return err
	}
	bySet := map[string][]nftables.SetElement{}
	for _, p := range ports {
		if !p.HostIP.Is4() && p.HostIP.IsValid() && !p.HostIP.IsUnspecified() {
			continue // IPv6 host addresses are not published (IPv4 table)
		}
		s, e := p.elem()
		bySet[s] = append(bySet[s], e)
	}
	for name, els := range bySet {
		set := f.pany
		if name == "paddr" {
			set = f.paddr
		}
		if del {
			err = c.SetDeleteElements(set, els)
		} else {
			err = c.SetAddElements(set, els)
		}
		if err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables port map: %w", err)
	}
	return nil
}
