package network

import (
	"errors"
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// fastpath short-cuts traffic between two containers of one network: a
// tc ingress program on each container's host-side veth looks the frame's
// destination MAC up in the network's map (container MAC → host-side
// veth) and, on a hit, hands the frame straight to the other container's
// interface with bpf_redirect_peer. The frame then skips the bridge and,
// with it, the host's netfilter hooks that br_netfilter runs on every
// bridged frame where net.bridge.bridge-nf-call-iptables=1 (the kernel
// offers no per-bridge opt-out: the bridge's own nf_call_iptables option
// can only add to the global sysctl), and one pass through the CPU's
// backlog queue. Everything else (ARP, broadcasts, traffic to the gateway,
// the host, published ports and other networks) misses the map and goes
// through the bridge as before, so isolation, NAT and hairpin are
// unchanged. The map holds only the network's own containers: a frame can
// never be redirected into another network.
//
// The program and map live as long as a filter refers to them: traffic
// keeps flowing after the daemon dies, and a restarted daemon replaces
// every filter with a fresh program whose map it fills from its records.
type fastpath struct {
	m *ebpf.Map
	p *ebpf.Program
}

// fastpathMaxEntries bounds a network's map (a /16 worth of containers);
// entries are allocated as they are added.
const fastpathMaxEntries = 1 << 16

// fastpathFilter names berth's filter on a veth (tc filter show).
const fastpathFilter = "berth_fastpath"

func newFastpath() (*fastpath, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name: "berth_macs", Type: ebpf.Hash, KeySize: 8, ValueSize: 4,
		MaxEntries: fastpathMaxEntries, Flags: unix.BPF_F_NO_PREALLOC,
	})
	if err != nil {
		return nil, fmt.Errorf("bpf map: %w", err)
	}
	const (
		tcActOK = 0
		keyOff  = -8 // the key on the stack: 6 bytes of MAC, 2 of zeros
	)
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.StoreImm(asm.RFP, keyOff, 0, asm.DWord),
		// bpf_skb_load_bytes(skb, 0, &key, 6): the destination MAC.
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, keyOff),
		asm.Mov.Imm(asm.R4, 6),
		asm.FnSkbLoadBytes.Call(),
		asm.JNE.Imm(asm.R0, 0, "pass"),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, keyOff),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R7, asm.R0, 0, asm.Word),
		// bpf_skb_change_type(skb, PACKET_HOST): the host-side veth saw
		// another host's MAC (PACKET_OTHERHOST), and kernels before 6.15
		// keep that mark through the redirect, so the peer's IP layer
		// would drop the frame. It is the peer's own MAC: for it, host.
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnSkbChangeType.Call(),
		// bpf_redirect_peer(ifindex, 0): into the peer's namespace,
		// ingress to ingress.
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRedirectPeer.Call(),
		asm.Return(),
		asm.Mov.Imm(asm.R0, tcActOK).WithSymbol("pass"),
		asm.Return(),
	}
	p, err := ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{
		Name: "berth_fastpath", Type: ebpf.SchedCLS, Instructions: insns, License: "Apache-2.0",
	}, ebpf.ProgramOptions{LogDisabled: true})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("bpf program: %w", err)
	}
	return &fastpath{m: m, p: p}, nil
}

// fastpathFilterAttrs places the program's filter on a veth's ingress.
func fastpathFilterAttrs(ifindex int) netlink.FilterAttrs {
	return netlink.FilterAttrs{LinkIndex: ifindex, Parent: netlink.HANDLE_MIN_INGRESS,
		Handle: 1, Priority: 1, Protocol: unix.ETH_P_ALL}
}

// detachFastpath removes the program from a veth, if it has one: an
// earlier daemon's, whose map no one updates any more, must not outlive
// a failed attach.
func detachFastpath(ifindex int) {
	_ = netlink.FilterDel(&netlink.BpfFilter{FilterAttrs: fastpathFilterAttrs(ifindex)})
}

func (f *fastpath) close() {
	if f != nil {
		f.p.Close()
		f.m.Close()
	}
}

func macKey(mac net.HardwareAddr) []byte {
	k := make([]byte, 8)
	copy(k, mac)
	return k
}

// attach puts the program on a host-side veth's ingress (replacing an
// earlier daemon's) and adds the container's MAC to the map.
func (f *fastpath) attach(ifindex int, mac net.HardwareAddr) error {
	qd := &netlink.GenericQdisc{QdiscType: "clsact", QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}}
	if err := netlink.QdiscAdd(qd); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("clsact qdisc: %w", err)
	}
	flt := &netlink.BpfFilter{FilterAttrs: fastpathFilterAttrs(ifindex), Fd: f.p.FD(), Name: fastpathFilter, DirectAction: true}
	if err := netlink.FilterReplace(flt); err != nil {
		return fmt.Errorf("bpf filter: %w", err)
	}
	if err := f.m.Put(macKey(mac), uint32(ifindex)); err != nil {
		return fmt.Errorf("bpf map: %w", err)
	}
	return nil
}

// forget removes a container's MAC from the map (before its veth goes),
// unless it already points at another veth (a MAC the user gave twice).
func (f *fastpath) forget(mac net.HardwareAddr, ifindex int) {
	var cur uint32
	if err := f.m.Lookup(macKey(mac), &cur); err == nil && int(cur) == ifindex {
		_ = f.m.Delete(macKey(mac))
	}
}

// fastpathFor returns the network's fastpath, made on first use; nil when
// the kernel refuses BPF (then the bridge carries everything, as before).
func (m *Manager) fastpathFor(netID string) *fastpath {
	m.mu.Lock()
	f, off := m.fast[netID], m.fastOff
	m.mu.Unlock()
	if f != nil || off {
		return f
	}
	// Made outside mu: loading a program (the verifier) must not hold up
	// DNS answers and the other endpoints' set-up and teardown.
	f, err := newFastpath()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.fastOff = true
		m.log.Warn("container-to-container fast path unavailable; traffic goes through the bridge", "err", err)
		return nil
	}
	if cur := m.fast[netID]; cur != nil {
		f.close() // another endpoint made one first
		return cur
	}
	m.fast[netID] = f
	return f
}

// dropFastpath closes a removed network's program and map (filters that
// still refer to them keep them alive until their veths go); callers
// hold mu.
func (m *Manager) dropFastpath(netID string) {
	m.fast[netID].close()
	delete(m.fast, netID)
}

// fastAttach attaches a container's host-side veth to its network's fast
// path. A failure only costs speed: the bridge still carries the traffic.
func (m *Manager) fastAttach(netID string, ifindex int, mac net.HardwareAddr) {
	f := m.fastpathFor(netID)
	if f == nil {
		detachFastpath(ifindex)
		return
	}
	if err := f.attach(ifindex, mac); err != nil {
		m.log.Warn("container-to-container fast path", "ifindex", ifindex, "err", err)
		detachFastpath(ifindex)
	}
}

// fastForget takes a container's MAC out of its network's map.
func (m *Manager) fastForget(netID string, mac net.HardwareAddr, ifindex int) {
	// Under mu: the network's removal closes the map.
	m.mu.Lock()
	defer m.mu.Unlock()
	if f := m.fast[netID]; f != nil {
		f.forget(mac, ifindex)
	}
}
