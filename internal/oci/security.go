package oci

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
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

// applySecurity is the seam for the container's security settings:
// capabilities, masked and read-only paths, no-new-privileges, and later
// seccomp, AppArmor, --privileged, --cap-add/--cap-drop and --device.
// Settings it does not implement yet fail the start (ErrNotImplemented)
// rather than silently run a container less or more confined than asked.
// It runs last, once the user (for the capability sets) is known.
func applySecurity(s *specs.Spec, hc *container.HostConfig) error {
	switch {
	case hc.Privileged:
		return errdefs.ErrNotImplemented.WithMessage("--privileged is not supported yet")
	case len(hc.CapAdd) > 0 || len(hc.CapDrop) > 0:
		return errdefs.ErrNotImplemented.WithMessage("--cap-add and --cap-drop are not supported yet")
	case len(hc.Devices) > 0 || len(hc.DeviceCgroupRules) > 0 || len(hc.DeviceRequests) > 0:
		return errdefs.ErrNotImplemented.WithMessage("--device, --device-cgroup-rule and --gpus are not supported yet")
	}
	for _, opt := range hc.SecurityOpt {
		k, v, hasValue := strings.Cut(opt, "=")
		if !hasValue {
			k, v, hasValue = strings.Cut(opt, ":") // the old form
		}
		switch {
		case k == "no-new-privileges" && (!hasValue || v == "true"):
			s.Process.NoNewPrivileges = true
		case k == "no-new-privileges" && v == "false":
		case k == "seccomp" && v == "unconfined", k == "apparmor" && v == "unconfined",
			k == "label" && v == "disable", k == "systempaths" && v == "unconfined":
			// Unconfined is what berth gives today: nothing to do, except
			// for system paths, handled below.
		default:
			return errdefs.ErrNotImplemented.WithMessage(fmt.Sprintf("security option %q is not supported yet", opt))
		}
	}

	caps := DefaultCapabilities()
	// As docker (and execve for a non-root user): a non-root process
	// starts without effective and permitted capabilities.
	if s.Process.User.UID == 0 {
		s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: slices.Clone(caps), Permitted: slices.Clone(caps)}
	} else {
		s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps}
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
	return nil
}
