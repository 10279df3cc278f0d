package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
)

// shutdownGrace is how long Serve lets in-flight requests finish once its
// context ends; then the remaining connections are closed.
const shutdownGrace = 10 * time.Second

// ListenOptions say how ListenWith secures a listener.
type ListenOptions struct {
	// SocketGID is the group that owns a unix socket (mode 0660), so that
	// its members can use the daemon without root; -1 leaves root's group.
	SocketGID int
	// TLS wraps TCP listeners when set. With ClientAuth
	// tls.RequireAndVerifyClientCert only clients holding a certificate
	// signed by the configured CA get in (docker's --tlsverify).
	TLS *tls.Config
	// AllowInsecureTCP lets a TCP listener without client-certificate
	// verification bind an address other than loopback. Whoever reaches
	// such a listener is root on the host, so the default is to refuse.
	AllowInsecureTCP bool
	// Logger gets the warnings about insecure listeners (nil: slog.Default()).
	Logger *slog.Logger
}

// Listen opens the API listener for addr with no TLS and the socket left
// in root's group: "unix:///path/to.sock" (the parent directory is
// created, a stale socket is replaced, the socket gets mode 0660) or
// "tcp://host:port" (port 2375 when omitted; loopback only).
func Listen(addr string) (net.Listener, error) {
	return ListenWith(addr, ListenOptions{SocketGID: -1})
}

// ListenWith opens the API listener for addr as Listen does, with the
// socket group, TLS and TCP policy of opts. A plain TCP listener (no TLS,
// or TLS without client-certificate verification) on a non-loopback
// address is refused before anything is bound unless
// opts.AllowInsecureTCP is set.
func ListenWith(addr string, opts ListenOptions) (net.Listener, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	proto, rest, err := parseAddress(addr, opts)
	if err != nil {
		return nil, err
	}
	if proto == "unix" {
		return listenUnix(rest, opts.SocketGID)
	}
	if !verifiesClients(opts) {
		host, _, _ := net.SplitHostPort(rest)
		if isLoopback(host) {
			log.Warn("the API listens on loopback TCP without TLS client-certificate verification; every local user can reach it", "addr", addr)
		} else {
			log.Error("!!! INSECURE: the API is reachable on " + addr + " without TLS client-certificate verification; " +
				"anyone who can connect to it has root access to this host. Use --tlsverify. !!!")
		}
	}
	l, err := net.Listen("tcp", rest)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	if opts.TLS != nil {
		l = tls.NewListener(l, opts.TLS)
	}
	return l, nil
}

// CheckAddress validates addr and the TCP policy of opts without binding
// anything: the daemon checks every -H before it touches its state.
func CheckAddress(addr string, opts ListenOptions) error {
	_, _, err := parseAddress(addr, opts)
	return err
}

func verifiesClients(opts ListenOptions) bool {
	return opts.TLS != nil && opts.TLS.ClientAuth == tls.RequireAndVerifyClientCert
}

// parseAddress splits addr into its protocol and the path or host:port
// to listen on, and applies the policy on plain TCP.
func parseAddress(addr string, opts ListenOptions) (proto, rest string, err error) {
	proto, rest, ok := strings.Cut(addr, "://")
	if !ok {
		return "", "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid API address %q: want unix:///path or tcp://host:port", addr))
	}
	switch proto {
	case "unix":
		if rest == "" || !filepath.IsAbs(rest) {
			return "", "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid unix socket path %q: must be absolute", rest))
		}
		return proto, rest, nil
	case "tcp":
		if rest == "" {
			return "", "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid API address %q: no host", addr))
		}
		if _, _, err := net.SplitHostPort(rest); err != nil {
			port := "2375"
			if opts.TLS != nil {
				port = "2376"
			}
			rest = net.JoinHostPort(strings.Trim(rest, "[]"), port)
		}
		host, _, _ := net.SplitHostPort(rest)
		if !verifiesClients(opts) && !isLoopback(host) && !opts.AllowInsecureTCP {
			return "", "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf(
				"refusing to listen on %s without TLS client-certificate verification: anyone who can reach it gets root on this host; "+
					"use --tlsverify with --tlscacert, --tlscert and --tlskey, or listen on 127.0.0.1 (force it with --allow-insecure-tcp)", addr))
		}
		return proto, rest, nil
	default:
		return "", "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid API address %q: protocol %q is not supported (use unix or tcp)", addr, proto))
	}
}

// isLoopback reports whether a listen host only reaches this machine.
// "" and 0.0.0.0 mean every interface; a host name other than localhost
// could resolve anywhere, so it counts as non-loopback.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func listenUnix(path string, gid int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	// The socket is bound in a private (0700) directory beside its final
	// place, given its owner and mode there and then renamed into place,
	// so nobody outside the group can connect in between. (docker narrows
	// the umask instead, which is process-wide.)
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".sock-")
	if err != nil {
		return nil, fmt.Errorf("create API socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	tmpPath := filepath.Join(tmp, "s")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmpPath, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on unix://%s: %w", path, err)
	}
	fail := func(err error) (net.Listener, error) {
		ul.Close()
		return nil, err
	}
	if gid < 0 {
		gid = 0
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(tmpPath, 0, gid); err != nil {
			return fail(fmt.Errorf("give the API socket to group %d: %w", gid, err))
		}
	}
	if err := os.Chmod(tmpPath, 0o660); err != nil {
		return fail(fmt.Errorf("chmod API socket: %w", err))
	}
	if err := os.Rename(tmpPath, path); err != nil {
		return fail(fmt.Errorf("create API socket: %w", err))
	}
	// Closing must unlink the socket's real name, not the temporary one.
	ul.SetUnlinkOnClose(false)
	l := &unlinkListener{UnixListener: ul, path: path}
	return l, nil
}

// unlinkListener removes its socket file when closed, as a net.UnixListener
// does for a socket it bound under its final name.
type unlinkListener struct {
	*net.UnixListener
	path string
	once sync.Once
}

func (l *unlinkListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() { _ = os.Remove(l.path) })
	return err
}

// removeStaleSocket removes a socket left behind by a daemon that is gone,
// but never a live one (another daemon) or a file that is not a socket.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat API socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return errdefs.ErrAlreadyExists.WithMessage(fmt.Sprintf("%s exists and is not a socket; refusing to replace it", path))
	}
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		conn.Close()
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("%s is in use: is another daemon running?", path))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale API socket: %w", err)
	}
	return nil
}

type stoppingKey struct{}

// Serve serves h on l until ctx ends, then shuts down gracefully: the
// listener closes, waits and followed logs end, other requests get
// shutdownGrace to finish. Hijacked attach connections are left to their
// goroutines. It returns nil after a shutdown caused by ctx.
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	stopping := make(chan struct{})
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: time.Minute,
		BaseContext: func(net.Listener) context.Context {
			return context.WithValue(context.Background(), stoppingKey{}, (<-chan struct{})(stopping))
		},
		ErrorLog: slog.NewLogLogger(slog.Default().Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve API: %w", err)
	case <-ctx.Done():
	}
	close(stopping)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	<-errc
	return nil
}

// untilStopping returns ctx, additionally cancelled when the server starts
// shutting down: for requests that could otherwise block a shutdown for
// ever (wait, logs --follow).
func untilStopping(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if ch, ok := ctx.Value(stoppingKey{}).(<-chan struct{}); ok {
		go func() {
			select {
			case <-ch:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	return ctx, cancel
}
