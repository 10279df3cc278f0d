package engine

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/berth-engine/berth/internal/container"
)

// hostResolvConf is read for every container; a variable so tests can point
// it elsewhere.
var hostResolvConf = "/etc/resolv.conf"

const defaultHosts = `127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
fe00::	ip6-localnet
ff00::	ip6-mcastprefix
ff02::1	ip6-allnodes
ff02::2	ip6-allrouters
`

// writeEtcFiles writes the container's /etc/hostname, /etc/hosts and
// /etc/resolv.conf as docker does; they are bind-mounted into the container.
func writeEtcFiles(c *container.Container) error {
	cfg, hc := c.Config, c.HostConfig
	if err := os.WriteFile(c.HostnamePath, []byte(cfg.Hostname+"\n"), 0o644); err != nil {
		return fmt.Errorf("write hostname file: %w", err)
	}

	var hosts bytes.Buffer
	if hc.NetworkMode == "host" {
		b, err := os.ReadFile("/etc/hosts")
		if err != nil {
			b = []byte(defaultHosts)
		}
		hosts.Write(b)
	} else {
		hosts.WriteString(defaultHosts)
	}
	embeddedDNS := false
	if ns := c.NetworkSettings; ns != nil && hc.NetworkMode != "host" {
		// docker's line for the container itself, one per address.
		for _, k := range sortedKeys(ns.Networks) {
			es := ns.Networks[k]
			if es.IPAddress.IsValid() {
				fmt.Fprintf(&hosts, "%s\t%s\n", es.IPAddress, cfg.Hostname)
			}
			if es.GlobalIPv6Address.IsValid() {
				fmt.Fprintf(&hosts, "%s\t%s\n", es.GlobalIPv6Address, cfg.Hostname)
			}
			if len(es.DNSNames) > 0 {
				embeddedDNS = true
			}
		}
	}
	for _, h := range hc.ExtraHosts {
		name, ip, ok := strings.Cut(h, ":")
		if !ok {
			name, ip, ok = strings.Cut(h, "=")
		}
		if !ok {
			return fmt.Errorf("invalid extra host %q: want HOST:IP", h)
		}
		fmt.Fprintf(&hosts, "%s\t%s\n", strings.Trim(ip, "[]"), name)
	}
	if err := os.WriteFile(c.HostsPath, hosts.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write hosts file: %w", err)
	}

	resolv, err := resolvConf(hc.NetworkMode == "host", hc.DNS, hc.DNSSearch, hc.DNSOptions)
	if err != nil {
		return err
	}
	if embeddedDNS {
		// As docker on user-defined networks: the embedded DNS answers
		// (and forwards to the servers above), with ndots:0.
		resolv = embeddedResolvConf(resolv)
	}
	if err := os.WriteFile(c.ResolvConfPath, resolv, 0o644); err != nil {
		return fmt.Errorf("write resolv.conf: %w", err)
	}
	return nil
}

// embeddedResolvConf points a resolv.conf at the embedded DNS server,
// keeping its search domains and options.
func embeddedResolvConf(orig []byte) []byte {
	var b bytes.Buffer
	b.WriteString("nameserver 127.0.0.11\n")
	opts := []string{}
	sc := bufio.NewScanner(bytes.NewReader(orig))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) > 1 && f[0] == "search":
			b.WriteString(sc.Text() + "\n")
		case len(f) > 1 && f[0] == "options":
			opts = append(opts, f[1:]...)
		}
	}
	if !slices.ContainsFunc(opts, func(o string) bool { return strings.HasPrefix(o, "ndots:") }) {
		opts = append([]string{"ndots:0"}, opts...)
	}
	fmt.Fprintf(&b, "options %s\n", strings.Join(opts, " "))
	return b.Bytes()
}

// resolvConf derives a container's resolv.conf from the host's: loopback
// nameservers are dropped outside the host's network namespace (they would
// point at the container itself), and --dns/--dns-search/--dns-option
// replace the host's entries.
func resolvConf(hostNet bool, dns []netip.Addr, search, options []string) ([]byte, error) {
	hostBytes, err := os.ReadFile(hostResolvConf)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("read host resolv.conf: %w", err)
	}
	var servers, hostSearch, hostOptions []string
	sc := bufio.NewScanner(bytes.NewReader(hostBytes))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			if a, err := netip.ParseAddr(f[1]); err == nil && a.IsLoopback() && !hostNet {
				continue
			}
			servers = append(servers, f[1])
		case "search", "domain":
			hostSearch = f[1:]
		case "options":
			hostOptions = append(hostOptions, f[1:]...)
		}
	}
	if len(dns) > 0 {
		servers = servers[:0]
		for _, a := range dns {
			servers = append(servers, a.String())
		}
	}
	if len(search) > 0 {
		hostSearch = search
		if len(search) == 1 && search[0] == "." {
			hostSearch = nil
		}
	}
	if len(options) > 0 {
		hostOptions = options
	}
	var b bytes.Buffer
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(hostSearch) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(hostSearch, " "))
	}
	if len(hostOptions) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(hostOptions, " "))
	}
	return b.Bytes(), nil
}
