package api

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

// socketGroup owns the API socket when it exists, so that its members can
// use the daemon without root, as with dockerd.
const socketGroup = "docker"

// shutdownGrace is how long Serve lets in-flight requests finish once its
// context ends; then the remaining connections are closed.
const shutdownGrace = 10 * time.Second

// Listen opens the API listener for addr: "unix:///path/to.sock" (the
// parent directory is created, a stale socket is replaced, the socket gets
// mode 0660 and group "docker" if that group exists) or
// "tcp://host:port" (port 2375 when omitted).
func Listen(addr string) (net.Listener, error) {
	proto, rest, ok := strings.Cut(addr, "://")
	if !ok {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid API address %q: want unix:///path or tcp://host:port", addr))
	}
	switch proto {
	case "unix":
		return listenUnix(rest)
	case "tcp":
		if rest == "" {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid API address %q: no host", addr))
		}
		if _, _, err := net.SplitHostPort(rest); err != nil {
			rest = net.JoinHostPort(strings.Trim(rest, "[]"), "2375")
		}
		l, err := net.Listen("tcp", rest)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		return l, nil
	default:
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid API address %q: protocol %q is not supported (use unix or tcp)", addr, proto))
	}
}

func listenUnix(path string) (net.Listener, error) {
	if path == "" || !filepath.IsAbs(path) {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid unix socket path %q: must be absolute", path))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on unix://%s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod API socket: %w", err)
	}
	if g, err := user.LookupGroup(socketGroup); err == nil {
		if gid, err := strconv.Atoi(g.Gid); err == nil {
			if err := os.Chown(path, -1, gid); err != nil {
				slog.Warn("cannot give the API socket to its group", "path", path, "group", socketGroup, "err", err)
			}
		}
	}
	return l, nil
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
