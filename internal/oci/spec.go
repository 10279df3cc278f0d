// Package oci turns a container's configuration (the Engine API's Config and
// HostConfig) into an OCI runtime spec with docker's defaults: the same
// namespaces, mounts, capabilities, masked paths, device rules, rlimits and
// cgroup resources a container gets under dockerd, so that images and users
// see no difference. The spec is runtime-neutral: berth-runtime, runc and
// crun all accept it.
package oci

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const (
	// DefaultCgroupParent is the cgroup containers are put under when
	// neither the container nor the daemon names one.
	DefaultCgroupParent = "/berth"
	// DefaultPathEnv is the PATH a container gets when its image sets none
	// (docker's).
	DefaultPathEnv = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// InitPathInContainer is where the init binary for --init is mounted,
	// docker's path, which tools and docs expect.
	InitPathInContainer = "/sbin/docker-init"
	// defaultShmSize is docker's /dev/shm size when ShmSize is 0.
	defaultShmSize = 64 << 20
)

// Options are the inputs of Spec.
type Options struct {
	// ID is the container's full ID: it names the cgroup and is the
	// default hostname's source.
	ID string
	// Config is the container's config, already merged with the image's.
	Config *container.Config
	// HostConfig is the container's host config (nil = all defaults).
	HostConfig *container.HostConfig
	// RootfsPath is the host path of the mounted root filesystem.
	RootfsPath string
	// HostsPath, HostnamePath and ResolvConfPath are host files
	// bind-mounted at /etc/hosts, /etc/hostname and /etc/resolv.conf
	// ("" = not mounted).
	HostsPath, HostnamePath, ResolvConfPath string
	// InitPath is the host path of the init binary for HostConfig.Init,
	// bind-mounted read-only at /sbin/docker-init.
	InitPath string
	// NetNSPath is a network namespace to join ("" = a new one, unless
	// NetworkMode is "host").
	NetNSPath string
	// CgroupParent is used when HostConfig.CgroupParent is empty
	// ("" = DefaultCgroupParent).
	CgroupParent string
	// CgroupV2 says the host uses the unified hierarchy (DetectCgroupV2).
	CgroupV2 bool
	// Mounts are extra, already-resolved mounts (volumes, binds), appended
	// after the defaults; one on the destination of a default mount
	// replaces it.
	Mounts []specs.Mount
	// RlimitNofile is the container's RLIMIT_NOFILE, soft and hard
	// (0 = the daemon's current hard limit: a container can never be
	// given more than the daemon has without CAP_SYS_RESOURCE).
	RlimitNofile uint64
	// Host says which optional cgroup features the host has; settings it
	// cannot apply are dropped, as docker does (nil = DetectHostSupport).
	Host *HostSupport
	// UIDMappings and GIDMappings are the daemon's --userns-remap maps
	// (nil: no remapping); a container with --userns=host opts out.
	UIDMappings, GIDMappings []specs.LinuxIDMapping
	// SeccompProfile is the daemon's default seccomp profile: "" for
	// docker's built-in one, "unconfined", or a profile's JSON. A
	// container's --security-opt seccomp=… overrides it.
	SeccompProfile string
}

// Spec builds the OCI runtime spec for a container with docker's defaults.
// Invalid settings are errdefs.ErrInvalidArgument, settings berth cannot
// honour yet errdefs.ErrNotImplemented.
func Spec(opts Options) (*specs.Spec, error) {
	if opts.ID == "" {
		return nil, errdefs.ErrInvalidArgument.WithMessage("container ID is empty")
	}
	if opts.Config == nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage("container config is missing")
	}
	if opts.RootfsPath == "" {
		return nil, errdefs.ErrInvalidArgument.WithMessage("root filesystem path is empty")
	}
	cfg := opts.Config
	hc := opts.HostConfig
	if hc == nil {
		hc = &container.HostConfig{}
	}
	host := opts.Host
	if host == nil {
		h := DetectHostSupport(opts.CgroupV2)
		host = &h
	}

	args := append(slices.Clone(cfg.Entrypoint), cfg.Cmd...)
	if len(args) == 0 {
		return nil, errdefs.ErrInvalidArgument.WithMessage("no command specified")
	}

	s := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: opts.RootfsPath, Readonly: hc.ReadonlyRootfs},
		Process: &specs.Process{
			Args:     args,
			Cwd:      "/",
			Terminal: cfg.Tty,
		},
		Linux: &specs.Linux{
			Sysctl: map[string]string{},
		},
	}
	if len(hc.Annotations) > 0 {
		s.Annotations = make(map[string]string, len(hc.Annotations))
		for k, v := range hc.Annotations {
			s.Annotations[k] = v
		}
	}
	if cfg.WorkingDir != "" {
		if !filepath.IsAbs(cfg.WorkingDir) {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("the working directory '%s' is invalid, it needs to be an absolute path", cfg.WorkingDir))
		}
		s.Process.Cwd = filepath.Clean(cfg.WorkingDir)
	}
	if cfg.Tty && hc.ConsoleSize[0] > 0 && hc.ConsoleSize[1] > 0 {
		s.Process.ConsoleSize = &specs.Box{Height: hc.ConsoleSize[0], Width: hc.ConsoleSize[1]}
	}

	if err := setNamespaces(s, &opts, hc); err != nil {
		return nil, err
	}
	setHostname(s, &opts, cfg, hc)

	usr, home, err := ResolveUser(opts.RootfsPath, cfg.User, hc.GroupAdd)
	if err != nil {
		return nil, err
	}
	usr.Umask = hc.Umask
	s.Process.User = usr
	envHost := s.Hostname
	if envHost == "" {
		envHost = cfg.Hostname
	}
	s.Process.Env = containerEnv(cfg, envHost, home)

	oom := hc.OomScoreAdj
	if oom < -1000 || oom > 1000 {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("Invalid value %d, range for oom score adj is [-1000, 1000]", oom))
	}
	// Always set, as docker does, so that a container never inherits the
	// daemon's own score.
	s.Process.OOMScoreAdj = &oom

	if s.Process.Rlimits, err = rlimits(opts.RlimitNofile, hc.Ulimits); err != nil {
		return nil, err
	}

	parent := hc.CgroupParent
	if parent == "" {
		parent = opts.CgroupParent
	}
	if parent == "" {
		parent = DefaultCgroupParent
	}
	// Anchored and cleaned, so "../.." cannot climb out of the hierarchy.
	s.Linux.CgroupsPath = filepath.Join(filepath.Clean("/"+parent), opts.ID)
	if s.Linux.Resources, err = resources(hc, opts.CgroupV2, host); err != nil {
		return nil, err
	}

	if hc.NetworkMode.IsPrivate() || opts.NetNSPath != "" && !hc.NetworkMode.IsHost() {
		// docker's defaults for a container with its own network stack:
		// ping without CAP_NET_RAW, low ports without CAP_NET_BIND_SERVICE.
		if sysctlExists("net.ipv4.ping_group_range") {
			s.Linux.Sysctl["net.ipv4.ping_group_range"] = "0 2147483647"
		}
		if sysctlExists("net.ipv4.ip_unprivileged_port_start") {
			s.Linux.Sysctl["net.ipv4.ip_unprivileged_port_start"] = "0"
		}
	}
	for k, v := range hc.Sysctls {
		s.Linux.Sysctl[k] = v
	}

	if err := setMounts(s, &opts, hc); err != nil {
		return nil, err
	}
	setUserNamespace(s, &opts, hc)
	if hc.Init != nil && *hc.Init {
		if err := setInit(s, &opts, hc); err != nil {
			return nil, err
		}
	}
	if err := applySecurity(s, hc, &opts); err != nil {
		return nil, err
	}
	return s, nil
}

// setNamespaces sets docker's namespaces: pid, mount, uts, ipc, network and
// cgroup (private), minus those shared with the host.
func setNamespaces(s *specs.Spec, opts *Options, hc *container.HostConfig) error {
	ns := []specs.LinuxNamespace{{Type: specs.MountNamespace}}

	switch {
	case hc.NetworkMode.IsHost():
	case opts.NetNSPath != "":
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: opts.NetNSPath})
	case hc.NetworkMode.IsContainer():
		return errdefs.ErrNotImplemented.WithMessage(fmt.Sprintf("network mode %q needs the other container's namespace path", hc.NetworkMode))
	default:
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	}

	if !hc.UTSMode.Valid() {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid UTS mode: %v", hc.UTSMode))
	}
	if !hc.UTSMode.IsHost() {
		ns = append(ns, specs.LinuxNamespace{Type: specs.UTSNamespace})
	}

	if !hc.PidMode.Valid() {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid PID mode: %v", hc.PidMode))
	}
	switch {
	case hc.PidMode.IsHost():
	case hc.PidMode.IsContainer():
		return errdefs.ErrNotImplemented.WithMessage(fmt.Sprintf("PID mode %q is not supported yet", hc.PidMode))
	default:
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}

	if !hc.IpcMode.Valid() {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid IPC mode: %v", hc.IpcMode))
	}
	switch {
	case hc.IpcMode.IsHost():
	case hc.IpcMode.IsContainer():
		return errdefs.ErrNotImplemented.WithMessage(fmt.Sprintf("IPC mode %q is not supported yet", hc.IpcMode))
	default:
		ns = append(ns, specs.LinuxNamespace{Type: specs.IPCNamespace})
	}

	if !hc.CgroupnsMode.Valid() {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid cgroup namespace mode: %v", hc.CgroupnsMode))
	}
	// Private unless asked otherwise, on v1 too: the container then sees
	// its own cgroup as the root of /sys/fs/cgroup, and its limits there.
	if !hc.CgroupnsMode.IsHost() {
		ns = append(ns, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	if hc.UsernsMode != "" && hc.UsernsMode != "host" {
		return errdefs.ErrNotImplemented.WithMessage(fmt.Sprintf("user namespace mode %q is not supported yet", hc.UsernsMode))
	}
	s.Linux.Namespaces = ns
	return nil
}

// setHostname sets the hostname and domain name; a container sharing the
// host's UTS namespace gets none (it cannot have its own).
func setHostname(s *specs.Spec, opts *Options, cfg *container.Config, hc *container.HostConfig) {
	if hc.UTSMode.IsHost() {
		return
	}
	s.Hostname = cfg.Hostname
	if s.Hostname == "" {
		s.Hostname = opts.ID
		if len(s.Hostname) > 12 {
			s.Hostname = s.Hostname[:12]
		}
	}
	s.Domainname = cfg.Domainname
}

// containerEnv composes the environment as docker does: PATH, HOSTNAME and
// (with a TTY) TERM first, overridden by the container's own variables; a
// name without "=" unsets it. HOME comes from passwd when not set.
func containerEnv(cfg *container.Config, hostname, home string) []string {
	if hostname == "" {
		hostname, _ = os.Hostname()
	}
	env := []string{"PATH=" + DefaultPathEnv, "HOSTNAME=" + hostname}
	if cfg.Tty {
		env = append(env, "TERM=xterm")
	}
	index := make(map[string]int, len(env)+len(cfg.Env))
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		index[k] = i
	}
	for _, kv := range cfg.Env {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := index[k]; ok {
			env[i] = kv
			continue
		}
		index[k] = len(env)
		env = append(env, kv)
	}
	out := env[:0]
	hasHome := false
	for _, kv := range env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if k == "HOME" {
			hasHome = true
		}
		out = append(out, kv)
	}
	if !hasHome {
		if home == "" {
			home = "/"
		}
		out = append(out, "HOME="+home)
	}
	return out
}

// rlimitNames are the rlimits a container may set (docker's --ulimit names).
var rlimitNames = map[string]bool{
	"cpu": true, "fsize": true, "data": true, "stack": true, "core": true,
	"rss": true, "nproc": true, "nofile": true, "memlock": true, "as": true,
	"locks": true, "sigpending": true, "msgqueue": true, "nice": true,
	"rtprio": true, "rttime": true,
}

// rlimits returns RLIMIT_NOFILE (nofile, or the daemon's hard limit) and
// the container's ulimits, which override it by name.
func rlimits(nofile uint64, ulimits []*container.Ulimit) ([]specs.POSIXRlimit, error) {
	if nofile == 0 {
		var rl unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
			return nil, fmt.Errorf("get RLIMIT_NOFILE: %w", err)
		}
		nofile = rl.Max
	}
	out := []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: nofile, Hard: nofile}}
	for _, ul := range ulimits {
		if ul == nil {
			continue
		}
		name := strings.ToLower(ul.Name)
		if !rlimitNames[name] {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid ulimit type: %s", ul.Name))
		}
		// -1 is "unlimited", which uint64 turns into RLIM_INFINITY.
		if ul.Hard != -1 && (ul.Soft == -1 || ul.Soft > ul.Hard) {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("ulimit soft limit must be less than or equal to hard limit: %d > %d", ul.Soft, ul.Hard))
		}
		rl := specs.POSIXRlimit{Type: "RLIMIT_" + strings.ToUpper(name), Soft: uint64(ul.Soft), Hard: uint64(ul.Hard)}
		if i := slices.IndexFunc(out, func(r specs.POSIXRlimit) bool { return r.Type == rl.Type }); i >= 0 {
			out[i] = rl
		} else {
			out = append(out, rl)
		}
	}
	return out, nil
}

// setInit runs the command under the init binary (docker run --init), in
// a private pid namespace only: elsewhere there already is an init.
func setInit(s *specs.Spec, opts *Options, hc *container.HostConfig) error {
	if hc.PidMode.IsHost() || hc.PidMode.IsContainer() {
		return nil
	}
	if opts.InitPath == "" {
		return errdefs.ErrFailedPrecondition.WithMessage("--init requested but the daemon has no init binary configured")
	}
	s.Process.Args = append([]string{InitPathInContainer, "--"}, s.Process.Args...)
	s.Mounts = append(s.Mounts, specs.Mount{
		Destination: InitPathInContainer,
		Type:        "bind",
		Source:      opts.InitPath,
		Options:     []string{"bind", "ro"},
	})
	return nil
}

// sysctlExists says whether the host kernel knows a sysctl: runtimes fail
// on unknown ones, so docker's defaults are only set where they exist.
// A variable so that tests can pin it.
var sysctlExists = func(name string) bool {
	_, err := os.Stat(filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/")))
	return err == nil
}
