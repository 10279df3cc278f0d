// Package distribution pulls images from and pushes them to registries that
// speak the OCI distribution protocol (Docker Hub, distribution/registry,
// `berth registry serve`, …). The wire protocol is go-containerregistry's;
// the bytes land in berth's content store, verified against their digests,
// and the images in berth's image store.
//
// Which registries may be reached over plain HTTP, and with which CAs, follow
// docker's rules: loopback (127.0.0.0/8, ::1, localhost) and the daemon's
// --insecure-registry entries are insecure (TLS without verification, then
// plain HTTP); every other registry needs verified TLS, trusting the system
// roots plus <certs.d>/<host[:port]>/*.crt, and presenting the client
// certificate <certs.d>/<host>/*.cert + *.key when there is one.
package distribution

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
)

// DefaultCertsDir is docker's certs.d layout under berth's /etc directory.
const DefaultCertsDir = "/etc/berth/certs.d"

// Hosts decides how each registry host is reached.
type Hosts struct {
	// Insecure lists registries (host[:port]) and CIDRs (10.0.0.0/8) that
	// may be reached without verified TLS, as dockerd's --insecure-registry.
	Insecure []string
	// CertsDir is the certs.d directory; "" means DefaultCertsDir.
	CertsDir string
}

// ValidateInsecure checks --insecure-registry values the way dockerd does:
// a CIDR or a host[:port] without a scheme or path.
func ValidateInsecure(v string) error {
	if strings.Contains(v, "://") {
		return fmt.Errorf("insecure registry %s should not contain '://': %w", v, errdefs.ErrInvalidArgument)
	}
	if _, _, err := net.ParseCIDR(v); err == nil {
		return nil
	}
	if strings.ContainsAny(v, "/ ") || v == "" {
		return fmt.Errorf("insecure registry %q is not a valid host[:port] or CIDR: %w", v, errdefs.ErrInvalidArgument)
	}
	return nil
}

// IsInsecure reports whether host (a registry as written in an image name,
// "localhost:5000", "127.0.0.1:5000", "myreg.example") may be reached
// without verified TLS.
func (h *Hosts) IsInsecure(host string) bool {
	hostname := host
	if hn, _, err := net.SplitHostPort(host); err == nil {
		hostname = hn
	}
	hostname = strings.Trim(hostname, "[]")
	if hostname == "localhost" || strings.HasSuffix(hostname, ".localhost") {
		return true
	}
	ips := []net.IP{}
	if ip := net.ParseIP(hostname); ip != nil {
		ips = append(ips, ip)
	}
	for _, ip := range ips {
		if ip.IsLoopback() {
			return true
		}
	}
	for _, e := range h.Insecure {
		if e == host || e == hostname {
			return true
		}
		if _, cidr, err := net.ParseCIDR(e); err == nil {
			for _, ip := range ips {
				if cidr.Contains(ip) {
					return true
				}
			}
			if len(ips) == 0 {
				// docker resolves the name and checks its addresses.
				addrs, _ := net.LookupIP(hostname)
				for _, ip := range addrs {
					if cidr.Contains(ip) {
						return true
					}
				}
			}
		}
	}
	return false
}

func (h *Hosts) certsDir() string {
	if h.CertsDir != "" {
		return h.CertsDir
	}
	return DefaultCertsDir
}

// TLSConfig is the TLS configuration for one registry host: the system
// roots plus the host's certs.d CAs, its client certificate if any, and no
// verification for insecure registries.
func (h *Hosts) TLSConfig(host string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if h.IsInsecure(host) {
		cfg.InsecureSkipVerify = true // #nosec G402 -- docker's insecure-registry semantics
	}
	dir := filepath.Join(h.certsDir(), host)
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return cfg, nil
		}
		return nil, fmt.Errorf("certs.d for %s: %w", host, err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		switch {
		case strings.HasSuffix(e.Name(), ".crt"):
			if cfg.RootCAs == nil {
				pool, err := x509.SystemCertPool()
				if err != nil || pool == nil {
					pool = x509.NewCertPool()
				}
				cfg.RootCAs = pool
			}
			pem, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("certs.d for %s: %w", host, err)
			}
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("certs.d for %s: no certificate in %s", host, p)
			}
		case strings.HasSuffix(e.Name(), ".cert"):
			key := strings.TrimSuffix(p, ".cert") + ".key"
			pair, err := tls.LoadX509KeyPair(p, key)
			if err != nil {
				return nil, fmt.Errorf("certs.d for %s: client certificate %s: %w", host, p, err)
			}
			cfg.Certificates = append(cfg.Certificates, pair)
		case strings.HasSuffix(e.Name(), ".key"):
			if _, err := os.Stat(strings.TrimSuffix(p, ".key") + ".cert"); err != nil {
				return nil, fmt.Errorf("certs.d for %s: missing client certificate for key %s", host, p)
			}
		}
	}
	return cfg, nil
}

// Transport returns the HTTP transport for one registry host. It refuses
// plain HTTP to hosts that are not insecure, whatever the protocol library
// would otherwise try.
func (h *Hosts) Transport(host string) (http.RoundTripper, error) {
	tlsCfg, err := h.TLSConfig(host)
	if err != nil {
		return nil, err
	}
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		// Layers are already compressed; never ask for more.
		DisableCompression: true,
	}
	if h.IsInsecure(host) {
		return t, nil
	}
	return httpsOnly{t}, nil
}

// httpsOnly refuses plain-HTTP requests to the registry it serves.
type httpsOnly struct{ rt http.RoundTripper }

func (s httpsOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme == "http" {
		return nil, fmt.Errorf("registry %s is not insecure: refusing plain HTTP (add it with --insecure-registry)", r.URL.Host)
	}
	return s.rt.RoundTrip(r)
}

// nameOptions are the go-containerregistry name options for a host.
func (h *Hosts) nameOptions(host string) []name.Option {
	var opts []name.Option
	if h.IsInsecure(host) {
		opts = append(opts, name.Insecure)
	}
	return opts
}
