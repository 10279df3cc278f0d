package oci

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultCapabilities is docker's default capability set (14 capabilities).
func DefaultCapabilities() []string {
	return []string{
		"CAP_CHOWN",
		"CAP_DAC_OVERRIDE",
		"CAP_FSETID",
		"CAP_FOWNER",
		"CAP_MKNOD",
		"CAP_NET_RAW",
		"CAP_SETGID",
		"CAP_SETUID",
		"CAP_SETFCAP",
		"CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE",
		"CAP_SYS_CHROOT",
		"CAP_KILL",
		"CAP_AUDIT_WRITE",
	}
}

// DefaultMaskedPaths are the paths docker hides from a container (a
// directory under an empty read-only tmpfs, a file under /dev/null),
// including each CPU's thermal_throttle directory on this host.
func DefaultMaskedPaths() []string {
	p := []string{
		"/proc/asound",
		"/proc/acpi",
		"/proc/interrupts",
		"/proc/kcore",
		"/proc/keys",
		"/proc/latency_stats",
		"/proc/timer_list",
		"/proc/timer_stats",
		"/proc/sched_debug",
		"/proc/scsi",
		"/sys/firmware",
		"/sys/devices/virtual/powercap",
	}
	// Writable thermal controls (docker 28 masks them too).
	tt, _ := filepath.Glob("/sys/devices/system/cpu/cpu[0-9]*/thermal_throttle")
	return append(p, tt...)
}

// DefaultReadonlyPaths are the paths docker makes read-only in a container.
func DefaultReadonlyPaths() []string {
	return []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
}

// allCaps is every capability the kernel supports that the daemon itself
// holds in its bounding set: a container can never be given more (root on
// some hosts lacks e.g. CAP_SYS_RESOURCE, and asking the kernel for it
// fails the start).
var allCaps = sync.OnceValue(func() []string {
	var out []string
	own, err := capability.NewPid2(0)
	if err == nil {
		err = own.Load()
	}
	supported, _ := capability.ListSupported()
	for _, c := range supported {
		if err == nil && !own.Get(capability.BOUNDING, c) {
			continue
		}
		out = append(out, "CAP_"+strings.ToUpper(c.String()))
	}
	return out
})

// knownCaps are the names of every capability this kernel knows.
var knownCaps = sync.OnceValue(func() map[string]bool {
	m := map[string]bool{}
	for _, c := range capability.ListKnown() {
		m["CAP_"+strings.ToUpper(c.String())] = true
	}
	return m
})

// AllCapabilities is what --privileged and --cap-add ALL grant: every
// capability the kernel supports and the daemon holds.
func AllCapabilities() []string { return slices.Clone(allCaps()) }

// NormalizeCapabilities turns --cap-add/--cap-drop names into kernel names
// as docker does: case-insensitive, with or without "CAP_", "ALL" kept.
// An unknown name is errdefs.ErrInvalidArgument in docker's words.
func NormalizeCapabilities(caps []string) ([]string, error) {
	var out []string
	for _, c := range caps {
		c = strings.ToUpper(strings.TrimSpace(c))
		if c == "ALL" {
			out = append(out, c)
			continue
		}
		if !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		if !knownCaps()[c] {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("unknown capability: %q", c))
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

// EffectiveCapabilities is the bounding set a container gets: docker's
// defaults tweaked by --cap-add/--cap-drop, or all of them with
// --privileged (docker's TweakCapabilities rules: "ALL" in cap-add grants
// all but the dropped ones, "ALL" in cap-drop keeps only the added ones).
func EffectiveCapabilities(hc *container.HostConfig) ([]string, error) {
	if hc.Privileged {
		return AllCapabilities(), nil
	}
	drops, err := NormalizeCapabilities(hc.CapDrop)
	if err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage("invalid CapDrop: " + err.Error())
	}
	adds, err := NormalizeCapabilities(hc.CapAdd)
	if err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage("invalid CapAdd: " + err.Error())
	}
	var caps []string
	switch {
	case slices.Contains(adds, "ALL"):
		for _, c := range allCaps() {
			if !slices.Contains(drops, c) {
				caps = append(caps, c)
			}
		}
		return caps, nil
	case slices.Contains(drops, "ALL"):
		caps = adds
	default:
		for _, c := range DefaultCapabilities() {
			if !slices.Contains(drops, c) {
				caps = append(caps, c)
			}
		}
		for _, c := range adds {
			if !slices.Contains(caps, c) {
				caps = append(caps, c)
			}
		}
	}
	for _, c := range caps {
		if !slices.Contains(allCaps(), c) {
			return nil, errdefs.ErrFailedPrecondition.WithMessage(fmt.Sprintf("capability %s is not available: the daemon itself does not hold it", c))
		}
	}
	return caps, nil
}

// SecurityOptions are a container's parsed --security-opt values.
type SecurityOptions struct {
	// NoNewPrivileges is no-new-privileges[=true].
	NoNewPrivileges bool
	// Seccomp is "" (the daemon's default profile), "unconfined", or a
	// profile's JSON (the docker CLI reads the file and sends its content).
	Seccomp string
	// AppArmor is the AppArmor profile ("" = the default).
	AppArmor string
	// Labels are the SELinux label options (label=...).
	Labels []string
	// WritableCgroups mounts /sys/fs/cgroup read-write.
	WritableCgroups bool
}

// ParseSecurityOpts parses HostConfig.SecurityOpt as docker's daemon does
// ("key=value", the old "key:value", bare "no-new-privileges"), and
// refuses what this host cannot honour: an AppArmor profile where AppArmor
// is off, a seccomp profile that does not parse. Errors are
// errdefs.ErrInvalidArgument with docker's wording.
func ParseSecurityOpts(opts []string) (SecurityOptions, error) {
	var so SecurityOptions
	for _, opt := range opts {
		if opt == "no-new-privileges" {
			so.NoNewPrivileges = true
			continue
		}
		if opt == "disable" {
			so.Labels = append(so.Labels, "disable")
			continue
		}
		var k, v string
		var ok bool
		if strings.Contains(opt, "=") {
			k, v, ok = strings.Cut(opt, "=")
		} else if strings.Contains(opt, ":") {
			k, v, ok = strings.Cut(opt, ":")
		}
		if !ok {
			return so, invalid("invalid --security-opt 1: %q", opt)
		}
		switch k {
		case "label":
			if err := checkLabel(v); err != nil {
				return so, err
			}
			so.Labels = append(so.Labels, v)
		case "apparmor":
			if v != "unconfined" && !AppArmorEnabled() {
				return so, invalid("AppArmor is not enabled on this host, cannot run with AppArmor profile %q", v)
			}
			so.AppArmor = v
		case "seccomp":
			if v == "" {
				return so, invalid("invalid --security-opt 2: %q", opt)
			}
			if v != "unconfined" && v != "builtin" {
				if _, err := seccompProfile(v, &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}); err != nil {
					return so, invalid("%v", err)
				}
			}
			if v == "builtin" {
				v = ""
			}
			so.Seccomp = v
		case "no-new-privileges":
			b, err := parseBool(v)
			if err != nil {
				return so, invalid("invalid --security-opt 2: %q", opt)
			}
			so.NoNewPrivileges = b
		case "writable-cgroups":
			b, err := parseBool(v)
			if err != nil {
				return so, invalid("invalid --security-opt 2: %q", opt)
			}
			so.WritableCgroups = b
		case "systempaths":
			// The docker CLI turns it into empty MaskedPaths and
			// ReadonlyPaths; other clients may send it as is.
			if v != "unconfined" {
				return so, invalid("invalid --security-opt 2: %q", opt)
			}
		default:
			return so, invalid("invalid --security-opt 2: %q", opt)
		}
	}
	return so, nil
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "1", "t", "true":
		return true, nil
	case "0", "f", "false":
		return false, nil
	}
	return false, fmt.Errorf("invalid boolean %q", v)
}

// checkLabel validates an SELinux label option. SELinux is not enabled on
// hosts berth supports today, so valid options are accepted and have no
// effect, as in docker on such hosts.
func checkLabel(v string) error {
	if v == "disable" || v == "nested" {
		return nil
	}
	k, val, ok := strings.Cut(v, ":")
	switch {
	case !ok || val == "":
	case k == "user" || k == "role" || k == "type" || k == "level" || k == "filetype":
		return nil
	}
	return invalid("bad label option %q, valid options 'disable' or 'user, role, level, type, filetype' followed by ':' and a value", v)
}

// AppArmorEnabled says whether the host kernel enforces AppArmor.
var AppArmorEnabled = sync.OnceValue(func() bool {
	b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	return err == nil && len(b) > 0 && b[0] == 'Y'
})

// ValidateSecurity checks, at create time, the security settings Spec
// would refuse at start: capability names, --security-opt values, device
// cgroup rules and sysctls; so a bad request fails before anything exists.
func ValidateSecurity(hc *container.HostConfig) error {
	if _, err := ParseSecurityOpts(hc.SecurityOpt); err != nil {
		return err
	}
	if _, err := NormalizeCapabilities(hc.CapAdd); err != nil {
		return errdefs.ErrInvalidArgument.WithMessage("invalid CapAdd: " + err.Error())
	}
	if _, err := NormalizeCapabilities(hc.CapDrop); err != nil {
		return errdefs.ErrInvalidArgument.WithMessage("invalid CapDrop: " + err.Error())
	}
	for _, r := range hc.DeviceCgroupRules {
		if _, err := ParseDeviceCgroupRule(r); err != nil {
			return err
		}
	}
	for _, d := range hc.Devices {
		if _, err := deviceMode(d.CgroupPermissions); err != nil {
			return err
		}
	}
	if len(hc.DeviceRequests) > 0 {
		return errdefs.ErrNotImplemented.WithMessage("--gpus and CDI device requests are not supported")
	}
	return checkSysctls(hc)
}

// namespacedSysctls are the sysctls of the IPC namespace that a
// container may set (runc's list); fs.mqueue.* and, in the container's own
// network namespace, net.* are allowed too.
var namespacedSysctls = map[string]bool{
	"kernel.msgmax": true, "kernel.msgmnb": true, "kernel.msgmni": true, "kernel.sem": true,
	"kernel.shmall": true, "kernel.shmmax": true, "kernel.shmmni": true, "kernel.shm_rmid_forced": true,
}

// checkSysctls refuses a sysctl that is not namespaced, or that would
// change the host because the container shares that namespace with it.
func checkSysctls(hc *container.HostConfig) error {
	for k := range hc.Sysctls {
		switch {
		case namespacedSysctls[k] || strings.HasPrefix(k, "fs.mqueue."):
			if hc.IpcMode.IsHost() {
				return invalid("sysctl %q is not allowed in the host IPC namespace", k)
			}
		case strings.HasPrefix(k, "net."):
			if hc.NetworkMode.IsHost() {
				return invalid("sysctl %q not allowed in host network namespace", k)
			}
		default:
			return invalid("sysctl %q is not in a separate kernel namespace", k)
		}
	}
	return nil
}

// applySecurity sets the container's confinement, docker's defaults
// tightened where docker's are loose: capabilities (--cap-add/--cap-drop,
// --privileged), seccomp, AppArmor, no-new-privileges, masked and
// read-only paths, devices and the device cgroup. It runs last, once the
// user (for the capability sets) and the mounts are known.
//
// User namespaces hook in beside it: a userns mapping changes none of
// these settings, except that docker then mounts /sys/fs/cgroup
// read-write (as --security-opt writable-cgroups does here), and the
// capability sets then apply inside the container's user namespace.
func applySecurity(s *specs.Spec, hc *container.HostConfig, opts *Options) error {
	so, err := ParseSecurityOpts(hc.SecurityOpt)
	if err != nil {
		return err
	}
	if err := checkSysctls(hc); err != nil {
		return err
	}
	s.Process.NoNewPrivileges = so.NoNewPrivileges

	caps, err := EffectiveCapabilities(hc)
	if err != nil {
		return err
	}
	// As docker (and execve for a non-root user): a non-root process
	// starts without effective and permitted capabilities.
	if s.Process.User.UID == 0 {
		s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: slices.Clone(caps), Permitted: slices.Clone(caps)}
	} else {
		s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps}
	}

	if err := setDevices(s, hc); err != nil {
		return err
	}

	if hc.Privileged {
		// docker's --privileged: nothing hidden, /sys and the cgroup
		// tree writable, no seccomp, no AppArmor.
		s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
		for i := range s.Mounts {
			if s.Mounts[i].Destination == "/sys" || s.Mounts[i].Type == "cgroup" {
				s.Mounts[i].Options = slices.DeleteFunc(s.Mounts[i].Options, func(o string) bool { return o == "ro" })
			}
		}
		return nil
	}

	s.Linux.MaskedPaths = DefaultMaskedPaths()
	s.Linux.ReadonlyPaths = DefaultReadonlyPaths()
	// The API's own lists replace the defaults (API 1.44+).
	if hc.MaskedPaths != nil {
		s.Linux.MaskedPaths = slices.Clone(hc.MaskedPaths)
	}
	if hc.ReadonlyPaths != nil {
		s.Linux.ReadonlyPaths = slices.Clone(hc.ReadonlyPaths)
	}
	if slices.Contains(hc.SecurityOpt, "systempaths=unconfined") {
		s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
	}
	if so.WritableCgroups {
		for i := range s.Mounts {
			if s.Mounts[i].Type == "cgroup" {
				s.Mounts[i].Options = slices.DeleteFunc(s.Mounts[i].Options, func(o string) bool { return o == "ro" })
			}
		}
	}

	if so.AppArmor != "" && so.AppArmor != "unconfined" {
		s.Process.ApparmorProfile = so.AppArmor
	}

	if so.Seccomp != "unconfined" {
		profile := so.Seccomp
		if profile == "" {
			profile = opts.SeccompProfile
		}
		if s.Linux.Seccomp, err = seccompProfile(profile, s); err != nil {
			return invalid("%v", err)
		}
	}
	return nil
}

// Confinement describes what a container's settings give it, for inspect:
// the effective capability set, the seccomp profile and the paths hidden
// from it.
type Confinement struct {
	Privileged bool
	// Capabilities is the bounding set (also the effective set of a root
	// process).
	Capabilities []string
	// Seccomp is "builtin" (docker's default profile), "custom" or
	// "unconfined".
	Seccomp string
	// AppArmor is the AppArmor profile, "" where AppArmor is off.
	AppArmor        string
	NoNewPrivileges bool
	MaskedPaths     []string
	ReadonlyPaths   []string
	ReadonlyRootfs  bool
	// CgroupNamespace is "private" or "host".
	CgroupNamespace string
}

// DescribeConfinement reports the confinement Spec gives a container
// with these settings (daemonSeccomp is Options.SeccompProfile). Settings
// Spec would refuse describe as far as they parse.
func DescribeConfinement(hc *container.HostConfig, daemonSeccomp string) Confinement {
	c := Confinement{Privileged: hc.Privileged, ReadonlyRootfs: hc.ReadonlyRootfs, CgroupNamespace: "private"}
	if hc.CgroupnsMode.IsHost() {
		c.CgroupNamespace = "host"
	}
	c.Capabilities, _ = EffectiveCapabilities(hc)
	if c.Capabilities == nil {
		c.Capabilities = []string{}
	}
	so, _ := ParseSecurityOpts(hc.SecurityOpt)
	c.NoNewPrivileges = so.NoNewPrivileges
	if hc.Privileged {
		c.Seccomp = "unconfined"
		if AppArmorEnabled() {
			c.AppArmor = "unconfined"
		}
		c.MaskedPaths, c.ReadonlyPaths = []string{}, []string{}
		return c
	}
	if AppArmorEnabled() {
		c.AppArmor = so.AppArmor
	}
	profile := so.Seccomp
	if profile == "" {
		profile = daemonSeccomp
	}
	switch profile {
	case "":
		c.Seccomp = "builtin"
	case "unconfined":
		c.Seccomp = "unconfined"
	default:
		c.Seccomp = "custom"
	}
	c.MaskedPaths, c.ReadonlyPaths = DefaultMaskedPaths(), DefaultReadonlyPaths()
	if hc.MaskedPaths != nil {
		c.MaskedPaths = slices.Clone(hc.MaskedPaths)
	}
	if hc.ReadonlyPaths != nil {
		c.ReadonlyPaths = slices.Clone(hc.ReadonlyPaths)
	}
	if slices.Contains(hc.SecurityOpt, "systempaths=unconfined") {
		c.MaskedPaths, c.ReadonlyPaths = []string{}, []string{}
	}
	return c
}

// InfoSecurityOptions is /info's SecurityOptions for these daemon
// settings, in docker's form ("name=seccomp,profile=builtin"). Options
// of other features (name=userns, name=rootless) are appended by the
// caller that knows about them.
func InfoSecurityOptions(daemonSeccomp string) []string {
	var out []string
	if AppArmorEnabled() {
		out = append(out, "name=apparmor")
	}
	profile := "builtin"
	switch daemonSeccomp {
	case "":
	case "unconfined":
		profile = "unconfined"
	default:
		profile = "custom"
	}
	out = append(out, "name=seccomp,profile="+profile)
	return append(out, "name=cgroupns")
}
