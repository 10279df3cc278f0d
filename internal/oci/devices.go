package oci

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// setDevices adds --device nodes, --device-cgroup-rule rules and, with
// --privileged, every host device, to the default allow-list (which only
// has the standard character devices: host disks stay unopenable).
func setDevices(s *specs.Spec, hc *container.HostConfig) error {
	res := s.Linux.Resources
	if hc.Privileged {
		devs, err := hostDevices()
		if err != nil {
			return fmt.Errorf("list host devices: %w", err)
		}
		s.Linux.Devices = append(s.Linux.Devices, devs...)
		res.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	}
	for _, m := range hc.Devices {
		devs, err := devicesFromMapping(m)
		if err != nil {
			return err
		}
		for _, d := range devs {
			s.Linux.Devices = append(s.Linux.Devices, d.dev)
			if !hc.Privileged {
				major, minor := d.dev.Major, d.dev.Minor
				res.Devices = append(res.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: d.dev.Type, Major: &major, Minor: &minor, Access: d.access})
			}
		}
	}
	if !hc.Privileged {
		for _, r := range hc.DeviceCgroupRules {
			rule, err := ParseDeviceCgroupRule(r)
			if err != nil {
				return err
			}
			res.Devices = append(res.Devices, rule)
		}
	}
	return nil
}

// ParseDeviceCgroupRule parses a --device-cgroup-rule ("c 1:3 mr",
// "b 8:* rwm", "a *:* m") into an allow rule.
func ParseDeviceCgroupRule(rule string) (specs.LinuxDeviceCgroup, error) {
	bad := func() (specs.LinuxDeviceCgroup, error) {
		return specs.LinuxDeviceCgroup{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid device cgroup rule format: '%s'", rule))
	}
	f := strings.Fields(rule)
	if len(f) != 3 {
		return bad()
	}
	typ := f[0]
	if typ != "a" && typ != "b" && typ != "c" {
		return bad()
	}
	maj, min, ok := strings.Cut(f[1], ":")
	if !ok {
		return bad()
	}
	num := func(v string) (*int64, bool) {
		if v == "*" {
			return nil, true
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, false
		}
		return &n, true
	}
	major, ok1 := num(maj)
	minor, ok2 := num(min)
	if !ok1 || !ok2 {
		return bad()
	}
	access, err := deviceMode(f[2])
	if err != nil || f[2] == "" {
		return bad()
	}
	return specs.LinuxDeviceCgroup{Allow: true, Type: typ, Major: major, Minor: minor, Access: access}, nil
}

// deviceMode checks cgroup permissions ("rwm" letters, each at most
// once); empty means all.
func deviceMode(mode string) (string, error) {
	if mode == "" {
		return "rwm", nil
	}
	seen := map[rune]bool{}
	for _, c := range mode {
		if (c != 'r' && c != 'w' && c != 'm') || seen[c] {
			return "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid device mode: %s", mode))
		}
		seen[c] = true
	}
	return mode, nil
}

type mappedDevice struct {
	dev    specs.LinuxDevice
	access string
}

// devicesFromMapping resolves --device HOST[:CTR[:rwm]]: one device node,
// or every node under a directory, at the same place under CTR.
func devicesFromMapping(m container.DeviceMapping) ([]mappedDevice, error) {
	access, err := deviceMode(m.CgroupPermissions)
	if err != nil {
		return nil, err
	}
	gather := func(err error) error {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("error gathering device information while adding custom device %q: %v", m.PathOnHost, err))
	}
	if !filepath.IsAbs(m.PathOnHost) {
		return nil, gather(errors.New("not an absolute path"))
	}
	src, err := filepath.EvalSymlinks(m.PathOnHost)
	if err != nil {
		return nil, gather(err)
	}
	dst := m.PathInContainer
	if dst == "" {
		dst = m.PathOnHost
	}
	if !filepath.IsAbs(dst) {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid device path in container: %q is not absolute", dst))
	}
	dst = filepath.Clean(dst)
	if d, err := deviceFromPath(src); err == nil {
		d.Path = dst
		return []mappedDevice{{d, access}}, nil
	} else if !errors.Is(err, errNotDevice) {
		return nil, gather(err)
	}
	fi, err := os.Stat(src)
	if err != nil {
		return nil, gather(err)
	}
	if !fi.IsDir() {
		return nil, gather(errNotDevice)
	}
	var out []mappedDevice
	err = filepath.WalkDir(src, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return nil
		}
		d, err := deviceFromPath(p)
		if err != nil {
			return nil // not a device: skipped, as docker does
		}
		rel, _ := filepath.Rel(src, p)
		d.Path = filepath.Join(dst, rel)
		out = append(out, mappedDevice{d, access})
		return nil
	})
	if err != nil {
		return nil, gather(err)
	}
	return out, nil
}

var errNotDevice = errors.New("not a device node")

// deviceFromPath describes the device node at p (without following a
// final symlink).
func deviceFromPath(p string) (specs.LinuxDevice, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return specs.LinuxDevice{}, err
	}
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		typ = "b"
	case unix.S_IFCHR:
		typ = "c"
	default:
		return specs.LinuxDevice{}, errNotDevice
	}
	mode := os.FileMode(st.Mode & 0o777)
	uid, gid := st.Uid, st.Gid
	return specs.LinuxDevice{
		Path: p, Type: typ,
		Major: int64(unix.Major(st.Rdev)), Minor: int64(unix.Minor(st.Rdev)),
		FileMode: &mode, UID: &uid, GID: &gid,
	}, nil
}

// hostDevices lists the host's device nodes under /dev for --privileged,
// skipping what the runtime mounts itself (ptys, shm, mqueue) and
// /dev/console, which belongs to the container's own terminal.
func hostDevices() ([]specs.LinuxDevice, error) {
	var out []specs.LinuxDevice
	skip := map[string]bool{"/dev/pts": true, "/dev/shm": true, "/dev/mqueue": true, "/dev/fd": true, "/dev/.lxc": true, "/dev/.udev": true}
	err := filepath.WalkDir("/dev", func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if de.IsDir() {
			if skip[p] {
				return filepath.SkipDir
			}
			return nil
		}
		if p == "/dev/console" || p == "/dev/ptmx" {
			return nil
		}
		d, err := deviceFromPath(p)
		if err != nil {
			return nil
		}
		out = append(out, d)
		return nil
	})
	return out, err
}
