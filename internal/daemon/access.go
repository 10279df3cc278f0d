package daemon

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/berth-engine/berth/internal/api"
	"github.com/docker/go-connections/tlsconfig"
)

// DefaultGroup owns the API socket unless --group says otherwise; it is
// created when missing, so that adding a user to it is all it takes to
// let them use berth without sudo.
const DefaultGroup = "berth"

// AccessOptions are the daemon's flags about who may reach its API.
type AccessOptions struct {
	// Group owns unix sockets ("" leaves them root:root); a name that does
	// not exist is created as a system group, a number is used as is.
	Group string
	// TLS and TLSVerify are docker's --tls and --tlsverify; the files
	// default to $DOCKER_CERT_PATH (or ~/.docker)/{ca,cert,key}.pem.
	TLS, TLSVerify             bool
	TLSCACert, TLSCert, TLSKey string
	// AllowInsecureTCP lets TCP listeners without client-certificate
	// verification bind non-loopback addresses (also set by an explicit
	// --tls=false or --tlsverify=false, as dockerd 27+ asks for).
	AllowInsecureTCP bool
}

// listenOptions turns the access flags into the API listeners' settings:
// the socket group (created if needed, only when a unix socket is
// wanted) and the server TLS configuration.
func listenOptions(o AccessOptions, hosts []string, log *slog.Logger) (api.ListenOptions, error) {
	lo := api.ListenOptions{SocketGID: -1, AllowInsecureTCP: o.AllowInsecureTCP, Logger: log}
	var unixSock, tcp bool
	for _, h := range hosts {
		unixSock = unixSock || strings.HasPrefix(h, "unix://")
		tcp = tcp || strings.HasPrefix(h, "tcp://")
	}
	if unixSock && o.Group != "" {
		gid, err := socketGroup(o.Group, log)
		if err != nil {
			return lo, err
		}
		lo.SocketGID = gid
	}
	if o.TLSVerify {
		o.TLS = true
	}
	if !o.TLS {
		return lo, nil
	}
	dir := os.Getenv("DOCKER_CERT_PATH")
	if dir == "" {
		if home, err := os.UserHomeDir(); err == nil {
			dir = filepath.Join(home, ".docker")
		}
	}
	pick := func(v, name string) string {
		if v != "" {
			return v
		}
		return filepath.Join(dir, name)
	}
	topts := tlsconfig.Options{
		CertFile:   pick(o.TLSCert, "cert.pem"),
		KeyFile:    pick(o.TLSKey, "key.pem"),
		ClientAuth: tls.NoClientCert,
		MinVersion: tls.VersionTLS12,
	}
	if o.TLSVerify {
		topts.CAFile = pick(o.TLSCACert, "ca.pem")
		topts.ClientAuth = tls.RequireAndVerifyClientCert
	} else if o.TLSCACert != "" {
		// dockerd with --tls and a CA: verify a certificate if one is given.
		topts.CAFile = o.TLSCACert
		topts.ClientAuth = tls.VerifyClientCertIfGiven
	}
	cfg, err := tlsconfig.Server(topts)
	if err != nil {
		return lo, fmt.Errorf("API TLS configuration: %w", err)
	}
	if tcp {
		lo.TLS = cfg
	}
	return lo, nil
}

// socketGroup resolves --group to a gid, creating a missing named group
// with the system's groupadd (the same as `groupadd --system NAME`).
func socketGroup(name string, log *slog.Logger) (int, error) {
	if gid, err := strconv.Atoi(name); err == nil {
		if gid < 0 {
			return 0, fmt.Errorf("invalid --group %q", name)
		}
		return gid, nil
	}
	g, err := user.LookupGroup(name)
	if err == nil {
		return strconv.Atoi(g.Gid)
	}
	var unknown user.UnknownGroupError
	if !errors.As(err, &unknown) {
		return 0, fmt.Errorf("look up group %q: %w", name, err)
	}
	groupadd, lerr := exec.LookPath("groupadd")
	if lerr != nil {
		return 0, fmt.Errorf("group %q does not exist and groupadd is not available to create it: create the group or pass --group \"\"", name)
	}
	if out, err := exec.Command(groupadd, "--system", name).CombinedOutput(); err != nil {
		// Another daemon may have created it in the meantime.
		if g, lerr := user.LookupGroup(name); lerr == nil {
			return strconv.Atoi(g.Gid)
		}
		return 0, fmt.Errorf("create group %q for the API socket: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	g, err = user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("group %q was created but cannot be looked up: %w", name, err)
	}
	log.Info("created the API socket's group; add users to it to let them use berth", "group", name, "gid", g.Gid)
	return strconv.Atoi(g.Gid)
}
