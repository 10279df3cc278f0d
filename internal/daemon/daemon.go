// Package daemon is `berth daemon`: it takes the data-root lock, opens the
// stores, wires the engine's services behind the Engine API and serves it
// until SIGTERM or SIGINT. Containers keep running when it stops.
package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/berth-engine/berth/internal/builder"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/container"
	"github.com/berth-engine/berth/internal/content"
	"github.com/berth-engine/berth/internal/distribution"
	"github.com/berth-engine/berth/internal/engine"
	"github.com/berth-engine/berth/internal/events"
	"github.com/berth-engine/berth/internal/fsutil"
	"github.com/berth-engine/berth/internal/image"
	"github.com/berth-engine/berth/internal/network"
	"github.com/berth-engine/berth/internal/runtime"
	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/berth-engine/berth/internal/snapshot/overlay"
	"github.com/berth-engine/berth/internal/snapshot/vfs"
	"github.com/berth-engine/berth/internal/userns"
	"github.com/berth-engine/berth/internal/version"
	"github.com/berth-engine/berth/internal/volume"
	"golang.org/x/sys/unix"
)

// DefaultHost is where the daemon listens unless told otherwise.
const DefaultHost = "unix:///run/berth/berth.sock"

// Options are the daemon's flags.
type Options struct {
	DataRoot       string
	ExecRoot       string
	Hosts          []string
	LogLevel       string
	StorageDriver  string
	AddRuntimes    []string // name=path
	DefaultRuntime string
	CgroupParent   string
	// InsecureRegistries are --insecure-registry values (host[:port] or
	// CIDR); CertsDir is docker's certs.d layout for registry CAs.
	InsecureRegistries []string
	CertsDir           string
	// Access is who may reach the API: socket group, TLS, TCP policy.
	Access AccessOptions
	// UsernsRemap is --userns-remap: "default", USER[:GROUP] or UID[:GID]
	// ("" = containers share the host's user namespace).
	UsernsRemap string
	// Bridge is the default bridge's device; BIP its gateway/prefix;
	// AddressPools docker's --default-address-pool values; NFTablesTable
	// the name of berth's nftables table.
	Bridge        string
	BIP           string
	AddressPools  []string
	NFTablesTable string
}

// Run runs the daemon until ctx ends or it receives SIGTERM/SIGINT.
func Run(ctx context.Context, opts Options) error {
	log, err := newLogger(opts.LogLevel)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	if len(opts.Hosts) == 0 {
		opts.Hosts = []string{DefaultHost}
	}
	// The listeners' settings are checked before anything else happens, so
	// bad certificates or a refused address leave no state behind.
	lopts, err := listenOptions(opts.Access, opts.Hosts, log)
	if err != nil {
		return err
	}
	for _, h := range opts.Hosts {
		if err := api.CheckAddress(h, lopts); err != nil {
			return err
		}
	}
	var remap *userns.Remap
	if opts.UsernsRemap != "" {
		if remap, err = userns.Setup(opts.UsernsRemap, userns.Options{Log: log.Info}); err != nil {
			return err
		}
	}
	execMode := os.FileMode(0o700)
	if remap != nil {
		// A remapped container's root must be able to walk to its rootfs
		// mount point (<exec-root>/containers/<id>/rootfs).
		execMode = 0o711
	}
	for _, dir := range []struct {
		path string
		mode os.FileMode
	}{{opts.DataRoot, 0o711}, {opts.ExecRoot, execMode}} {
		if !filepath.IsAbs(dir.path) {
			return fmt.Errorf("%s: must be an absolute path", dir.path)
		}
		if err := os.MkdirAll(dir.path, dir.mode); err != nil {
			return fmt.Errorf("create %s: %w", dir.path, err)
		}
	}
	unlock, err := lockDataRoot(opts.DataRoot)
	if err != nil {
		return err
	}
	defer unlock()
	if err := memoryBackExecRoot(opts.ExecRoot, execMode, log); err != nil {
		return err
	}
	if remap != nil {
		if err := os.Chmod(opts.ExecRoot, execMode); err != nil {
			return err
		}
		if opts.DataRoot, err = remappedRoot(opts.DataRoot, remap); err != nil {
			return err
		}
		uid, gid := remap.RootPair()
		log.Info("user namespaces: container root is remapped", "user", remap.User, "group", remap.Group, "uid", uid, "gid", gid, "data-root", opts.DataRoot)
	}
	pidFile := filepath.Join(opts.ExecRoot, "berth.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	defer os.Remove(pidFile)

	st, storageNote, closeStores, err := openStores(ctx, opts, log)
	if err != nil {
		return err
	}
	defer closeStores()
	if remap != nil {
		if err := remapStores(opts.DataRoot, st, remap); err != nil {
			return err
		}
	}
	shimPath, err := findBinary("berth-shim")
	if err != nil {
		return err
	}
	id, err := daemonID(opts.DataRoot)
	if err != nil {
		return err
	}
	cfg := engine.Config{
		DataRoot:     opts.DataRoot,
		ExecRoot:     opts.ExecRoot,
		ShimPath:     shimPath,
		CgroupParent: opts.CgroupParent,
		Version:      version.Version,
		StorageNote:  storageNote,
		Logger:       log,
		Registries:   distribution.Hosts{Insecure: opts.InsecureRegistries, CertsDir: opts.CertsDir},
		Remap:        remap,
	}
	for _, r := range opts.InsecureRegistries {
		if err := distribution.ValidateInsecure(r); err != nil {
			return err
		}
	}
	svcs, err := engine.New(ctx, cfg, st, id)
	if err != nil {
		return err
	}
	bld, err := builder.New(builder.Deps{
		DataRoot: opts.DataRoot, Content: st.Content, Images: st.Images, Snapshots: st.Snapshots,
		Containers: svcs.Containers, Steps: svcs.Containers, Puller: svcs.Images, Events: st.Events, Logger: log,
		IDMapping: svcs.Containers.IDMapping,
	})
	if err != nil {
		return err
	}
	handler := api.NewRouter(api.Backends{
		Containers: svcs.Containers,
		Images:     svcs.Images,
		System:     svcs.System,

		Distribution: svcs.Images,
		Exec:         svcs.Containers,
		ContainerOps: svcs.Containers,
		Events:       svcs.Events,
		Volumes:      svcs.Volumes,
		Archive:      svcs.Containers,
		DiskUsage:    svcs.DiskUsage,
		Build:        bld,
		Networks:     networkBackend(svcs.Networks),
	}, api.RouterOptions{Logger: log, Version: version.Version})
	if opts.LogLevel == "debug" {
		handler = api.WithDebug(handler)
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var wg sync.WaitGroup
	errc := make(chan error, len(opts.Hosts))
	for _, h := range opts.Hosts {
		l, err := api.ListenWith(h, lopts)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", h, err)
		}
		log.Info("API listening", "addr", h)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := api.Serve(ctx, l, handler); err != nil {
				errc <- fmt.Errorf("serve %s: %w", h, err)
			}
		}()
	}
	log.Info("berth daemon started", "version", version.Version, "data-root", opts.DataRoot,
		"exec-root", opts.ExecRoot, "storage-driver", st.Snapshots.Name(), "pid", os.Getpid())
	select {
	case <-ctx.Done():
	case err := <-errc:
		stop()
		wg.Wait()
		return err
	}
	log.Info("shutting down; containers keep running")
	wg.Wait()
	for _, h := range opts.Hosts {
		if p, ok := strings.CutPrefix(h, "unix://"); ok {
			_ = os.Remove(p)
		}
	}
	return nil
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "", "info":
		l = slog.LevelInfo
	case "warn", "warning":
		l = slog.LevelWarn
	case "error", "fatal", "panic":
		l = slog.LevelError
	default:
		return nil, fmt.Errorf("invalid log level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// lockDataRoot takes an exclusive lock so a second daemon on the same
// data-root refuses to start instead of corrupting the stores.
func lockDataRoot(root string) (func(), error) {
	path := filepath.Join(root, "berth.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		owner, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			who := "another berth daemon"
			if pid := strings.TrimSpace(string(owner)); pid != "" {
				who += " (pid " + pid + ")"
			}
			return nil, fmt.Errorf("%s is already running with data-root %s; stop it first or use another --data-root", who, root)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())), 0)
	return func() { f.Close() }, nil
}

func openStores(ctx context.Context, opts Options, log *slog.Logger) (engine.Stores, string, func(), error) {
	var st engine.Stores
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	fail := func(err error) (engine.Stores, string, func(), error) {
		closeAll()
		return engine.Stores{}, "", nil, err
	}
	var err error
	if st.Content, err = content.NewStore(filepath.Join(opts.DataRoot, "content")); err != nil {
		return fail(err)
	}
	if st.Images, err = image.NewStore(filepath.Join(opts.DataRoot, "image")); err != nil {
		return fail(err)
	}
	if c, ok := st.Images.(interface{ Close() error }); ok {
		closers = append(closers, func() { _ = c.Close() })
	}
	driver, note := opts.StorageDriver, ""
	if driver == "" {
		driver = "overlay2"
		if err := snapshot.OverlaySupported(opts.DataRoot); err != nil {
			driver = "vfs"
			note = fmt.Sprintf("overlayfs is not usable on %s (%v); using the copy-based vfs storage driver, which is slower and uses more disk", opts.DataRoot, err)
			log.Warn(note)
		}
	}
	switch driver {
	case "overlay2", "overlay":
		st.Snapshots, err = overlay.New(filepath.Join(opts.DataRoot, "overlay2"))
	case "vfs":
		st.Snapshots, err = vfs.New(filepath.Join(opts.DataRoot, "vfs"))
	default:
		return fail(fmt.Errorf("unknown storage driver %q: want overlay2 or vfs", driver))
	}
	if err != nil {
		return fail(fmt.Errorf("storage driver %s: %w", driver, err))
	}
	closers = append(closers, func() { _ = st.Snapshots.Close() })
	if st.Containers, err = container.NewStore(filepath.Join(opts.DataRoot, "containers")); err != nil {
		return fail(err)
	}
	closers = append(closers, func() { _ = st.Containers.Close() })
	if st.Volumes, err = volume.Open(filepath.Join(opts.DataRoot, "volumes")); err != nil {
		return fail(fmt.Errorf("volumes: %w", err))
	}
	st.Runtimes = runtime.NewRegistry(runtime.RegistryOptions{ExecRoot: opts.ExecRoot})
	for _, spec := range opts.AddRuntimes {
		name, path, ok := strings.Cut(spec, "=")
		if !ok || name == "" || path == "" {
			return fail(fmt.Errorf("invalid --add-runtime %q: want NAME=PATH", spec))
		}
		if err := st.Runtimes.Add(name, path); err != nil {
			return fail(err)
		}
	}
	if opts.DefaultRuntime != "" {
		if err := st.Runtimes.SetDefault(opts.DefaultRuntime); err != nil {
			return fail(err)
		}
	}
	if st.Events, err = events.New(events.Options{LogPath: filepath.Join(opts.DataRoot, "events.log"), Logger: log}); err != nil {
		return fail(fmt.Errorf("event log: %w", err))
	}
	closers = append(closers, func() { _ = st.Events.Close() })
	netCfg, err := networkConfig(opts, log)
	if err != nil {
		return fail(err)
	}
	if st.Networks, err = network.New(netCfg); err != nil {
		return fail(fmt.Errorf("networking: %w", err))
	}
	closers = append(closers, st.Networks.Close)
	return st, note, closeAll, nil
}

// networkBackend keeps a nil service a nil interface (the router's test
// for "not served").
func networkBackend(s *engine.NetworkService) api.NetworkBackend {
	if s == nil {
		return nil
	}
	return s
}

// networkConfig turns the daemon's network flags into the manager's config.
func networkConfig(opts Options, log *slog.Logger) (network.Config, error) {
	cfg := network.Config{DataRoot: opts.DataRoot, ExecRoot: opts.ExecRoot, DefaultBridge: opts.Bridge,
		Table: opts.NFTablesTable, Logger: log}
	// dockerd reads --bridge=none as "no default bridge network"; berth has
	// no such mode yet, and a bridge device named "none" would be a surprise.
	if cfg.DefaultBridge == "none" {
		return cfg, fmt.Errorf("invalid --bridge %q: running without the default bridge network is not supported; give a device name", opts.Bridge)
	}
	if cfg.DefaultBridge != "" && len(cfg.DefaultBridge) > 15 {
		return cfg, fmt.Errorf("invalid --bridge %q: at most 15 characters", opts.Bridge)
	}
	if opts.BIP != "" {
		p, err := netip.ParsePrefix(opts.BIP)
		if err != nil || !p.Addr().Is4() || p.Bits() > 30 {
			return cfg, fmt.Errorf("invalid --bip %q: want an IPv4 address with a prefix length, e.g. 172.18.0.1/16", opts.BIP)
		}
		if p.Addr() == p.Masked().Addr() {
			return cfg, fmt.Errorf("invalid --bip %q: the address is the gateway's and must not be the subnet's network address", opts.BIP)
		}
		cfg.BIP = p
	}
	for _, v := range opts.AddressPools {
		var pool network.Pool
		for _, kv := range strings.Split(v, ",") {
			k, val, _ := strings.Cut(kv, "=")
			switch k {
			case "base":
				p, err := netip.ParsePrefix(val)
				if err != nil || !p.Addr().Is4() {
					return cfg, fmt.Errorf("invalid --default-address-pool %q: bad base", v)
				}
				pool.Base = p.Masked()
			case "size":
				n, err := strconv.Atoi(val)
				if err != nil || n < 1 || n > 30 {
					return cfg, fmt.Errorf("invalid --default-address-pool %q: bad size", v)
				}
				pool.Size = n
			default:
				return cfg, fmt.Errorf("invalid --default-address-pool %q: unknown field %q (want base=CIDR,size=N)", v, k)
			}
		}
		if !pool.Base.IsValid() || pool.Size < pool.Base.Bits() {
			return cfg, fmt.Errorf("invalid --default-address-pool %q: want base=CIDR,size=N with N at least the base's prefix length", v)
		}
		cfg.Pools = append(cfg.Pools, pool)
	}
	return cfg, nil
}

// findBinary finds one of berth's helper binaries: next to the running
// executable first (a build or install directory), then on PATH.
func findBinary(name string) (string, error) {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	return "", fmt.Errorf("%s not found next to the berth binary or on PATH; install it with `make install`", name)
}

// daemonID is the daemon's persistent identity (info's ID).
func daemonID(root string) (string, error) {
	path := filepath.Join(root, "engine-id")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	h := hex.EncodeToString(raw[:])
	id := fmt.Sprintf("%s-%s-%s-%s-%s", h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
	if err := fsutil.WriteFileAtomic(path, []byte(id+"\n"), 0o600); err != nil {
		return "", err
	}
	return id, nil
}
