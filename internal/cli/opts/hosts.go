package opts

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// DefaultUnixSocket is where a berth daemon listens unless told otherwise.
const DefaultUnixSocket = "/run/berth/berth.sock"

// DefaultHost is the daemon address the CLI uses when neither -H nor the
// environment names one.
const DefaultHost = "unix://" + DefaultUnixSocket

const (
	defaultTCPPort    = "2375"
	defaultTLSTCPPort = "2376"
)

// ParseHost normalises a daemon address given with -H, BERTH_HOST or
// DOCKER_HOST: "unix:///path", "tcp://host[:port]" or a bare "host:port"
// (tcp). A missing port is docker's default (2375, or 2376 with TLS).
func ParseHost(val string, tls bool) (string, error) {
	host := strings.TrimSpace(val)
	if host == "" {
		return DefaultHost, nil
	}
	proto, addr, hasProto := strings.Cut(host, "://")
	if !hasProto {
		proto, addr = "tcp", host
	}
	switch proto {
	case "unix":
		if strings.Contains(addr, "://") {
			return "", fmt.Errorf("invalid proto, expected unix: %s", addr)
		}
		if addr == "" {
			addr = DefaultUnixSocket
		}
		return "unix://" + addr, nil
	case "tcp":
		return parseTCPAddr(addr, tls)
	case "ssh", "fd", "npipe":
		return "", fmt.Errorf("unsupported daemon address %q: berth connects over unix:// or tcp://", val)
	default:
		return "", fmt.Errorf("invalid bind address format: %s", val)
	}
}

func parseTCPAddr(addr string, tls bool) (string, error) {
	if strings.Contains(addr, "://") {
		return "", fmt.Errorf("invalid proto, expected tcp: %s", addr)
	}
	u, err := url.Parse("tcp://" + addr)
	if err != nil {
		return "", fmt.Errorf("invalid bind address format: %s", addr)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", fmt.Errorf("invalid bind address format: %s", addr)
	}
	host, port := u.Hostname(), u.Port()
	if strings.HasSuffix(u.Host, ":") {
		return "", fmt.Errorf("invalid bind address format: %s", addr)
	}
	if host == "" {
		host = "localhost"
	}
	if port == "" {
		port = defaultTCPPort
		if tls {
			port = defaultTLSTCPPort
		}
	}
	p := strings.TrimRight(u.Path, "/")
	return "tcp://" + net.JoinHostPort(host, port) + p, nil
}
