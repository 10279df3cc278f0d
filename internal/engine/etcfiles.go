package engine

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
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
	if err := os.WriteFile(c.ResolvConfPath, resolv, 0o644); err != nil {
		return fmt.Errorf("write resolv.conf: %w", err)
	}
	return nil
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
