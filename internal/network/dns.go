package network

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netns"
)

// dnsServer is the embedded DNS of one container on user-defined
// networks: it listens on 127.0.0.11:53 inside the container's namespace
// (sockets opened from a thread switched into it, then served from the
// daemon), answers the names of containers on the same networks and
// forwards every other query to the upstream resolvers from the host's
// namespace.
type dnsServer struct {
	udp, tcp *dns.Server
}

// dnsAddr is docker's embedded DNS address.
const dnsAddr = "127.0.0.11:53"

func startDNS(m *Manager, cid, nsPath string, upstream []netip.Addr) (*dnsServer, error) {
	pc, l, err := listenInNS(nsPath)
	if err != nil {
		return nil, fmt.Errorf("embedded DNS: %w", err)
	}
	h := &dnsHandler{m: m, cid: cid, upstream: upstream}
	d := &dnsServer{
		udp: &dns.Server{PacketConn: pc, Handler: h},
		tcp: &dns.Server{Listener: l, Handler: h},
	}
	go func() { _ = d.udp.ActivateAndServe() }()
	go func() { _ = d.tcp.ActivateAndServe() }()
	return d, nil
}

func (d *dnsServer) close() {
	_ = d.udp.Shutdown()
	_ = d.tcp.Shutdown()
}

func listenInNS(nsPath string) (net.PacketConn, net.Listener, error) {
	type result struct {
		pc  net.PacketConn
		l   net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// Not unlocked: the thread dies with the goroutine instead of
		// going back to the daemon in the container's namespace.
		ns, err := netns.GetFromPath(nsPath)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			ch <- result{err: err}
			return
		}
		pc, err := net.ListenPacket("udp4", dnsAddr)
		if err != nil {
			ch <- result{err: err}
			return
		}
		l, err := net.Listen("tcp4", dnsAddr)
		if err != nil {
			pc.Close()
			ch <- result{err: err}
			return
		}
		ch <- result{pc: pc, l: l}
	}()
	r := <-ch
	return r.pc, r.l, r.err
}

type dnsHandler struct {
	m        *Manager
	cid      string
	upstream []netip.Addr
}

func (h *dnsHandler) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	if len(q.Question) != 1 {
		h.forward(w, q)
		return
	}
	qq := q.Question[0]
	name := strings.ToLower(strings.TrimSuffix(qq.Name, "."))
	ips, found := h.m.resolve(h.cid, name)
	if !found || (qq.Qtype != dns.TypeA && qq.Qtype != dns.TypeAAAA) {
		if found {
			r := new(dns.Msg)
			r.SetReply(q)
			r.Authoritative = true
			_ = w.WriteMsg(r)
			return
		}
		h.forward(w, q)
		return
	}
	r := new(dns.Msg)
	r.SetReply(q)
	r.Authoritative = true
	r.RecursionAvailable = true
	for _, ip := range ips {
		hdr := dns.RR_Header{Name: qq.Name, Class: dns.ClassINET, Ttl: 600}
		switch {
		case qq.Qtype == dns.TypeA && ip.Is4():
			hdr.Rrtype = dns.TypeA
			r.Answer = append(r.Answer, &dns.A{Hdr: hdr, A: ip.AsSlice()})
		case qq.Qtype == dns.TypeAAAA && ip.Is6():
			hdr.Rrtype = dns.TypeAAAA
			r.Answer = append(r.Answer, &dns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()})
		}
	}
	_ = w.WriteMsg(r)
}

func (h *dnsHandler) forward(w dns.ResponseWriter, q *dns.Msg) {
	servers := h.upstream
	if len(servers) == 0 {
		servers = hostResolvers()
	}
	proto := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		proto = "tcp"
	}
	c := &dns.Client{Net: proto, Timeout: 5 * time.Second}
	for _, s := range servers {
		r, _, err := c.Exchange(q, net.JoinHostPort(s.String(), "53"))
		if err == nil && r != nil {
			_ = w.WriteMsg(r)
			return
		}
	}
	r := new(dns.Msg)
	r.SetRcode(q, dns.RcodeServerFailure)
	_ = w.WriteMsg(r)
}

// hostResolvers are the nameservers of the host's resolv.conf; queries
// are forwarded from the daemon's namespace, so loopback ones work.
func hostResolvers() []netip.Addr {
	f, err := os.Open("/etc/resolv.conf")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []netip.Addr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 2 && fs[0] == "nameserver" {
			if a, err := netip.ParseAddr(fs[1]); err == nil {
				out = append(out, a)
			}
		}
	}
	return out
}

// resolve answers a name for a container: the addresses of the containers
// on the user-defined networks it shares whose name, alias or short ID it
// is.
func (m *Manager) resolve(cid, name string) ([]netip.Addr, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []netip.Addr
	found := false
	for netID, eps := range m.eps {
		if _, member := eps[cid]; !member {
			continue
		}
		n := m.networks[netID]
		if n == nil || !n.UserDefined {
			continue
		}
		for _, ep := range eps {
			for _, dn := range ep.DNSNames {
				if strings.EqualFold(dn, name) || strings.EqualFold(dn+"."+n.Name, name) {
					found = true
					if ep.IP.IsValid() {
						out = append(out, ep.IP)
					}
					if ep.IP6.IsValid() {
						out = append(out, ep.IP6)
					}
					break
				}
			}
		}
	}
	return out, found
}
