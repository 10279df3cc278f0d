package oci

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/sys/mount"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// defaultMounts are docker's system mounts, in docker's order.
func defaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		// Runtimes mount cgroup2 here on a unified host, the v1
		// controllers on a hybrid one.
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro", "nosuid", "noexec", "nodev"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777"}},
	}
}

// keepWritable are the default mounts a read-only root leaves writable
// (docker's list): without them nothing works, and none is the image's.
var keepWritable = map[string]bool{"/proc": true, "/dev/pts": true, "/dev/shm": true, "/dev/mqueue": true, "/dev": true}

// setMounts sets the default mounts, minus those a user mount replaces,
// followed by the user's mounts (binds and volumes, tmpfs, the /etc files)
// ordered parents first.
func setMounts(s *specs.Spec, opts *Options, hc *container.HostConfig) error {
	var user []specs.Mount
	seen := map[string]bool{}
	add := func(m specs.Mount) error {
		if !filepath.IsAbs(m.Destination) {
			return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid mount path: '%s' mount path must be absolute", m.Destination))
		}
		m.Destination = filepath.Clean(m.Destination)
		if seen[m.Destination] {
			return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("Duplicate mount point: %s", m.Destination))
		}
		seen[m.Destination] = true
		user = append(user, m)
		return nil
	}
	for _, m := range opts.Mounts {
		m.Options = slices.Clone(m.Options)
		if err := add(m); err != nil {
			return err
		}
	}
	tmpfs := make([]string, 0, len(hc.Tmpfs))
	for dest := range hc.Tmpfs {
		tmpfs = append(tmpfs, dest)
	}
	sort.Strings(tmpfs)
	for _, dest := range tmpfs {
		o, err := TmpfsOptions(hc.Tmpfs[dest])
		if err != nil {
			return fmt.Errorf("tmpfs %s: %w", dest, err)
		}
		if err := add(specs.Mount{Destination: dest, Type: "tmpfs", Source: "tmpfs", Options: o}); err != nil {
			return err
		}
	}
	for _, f := range []struct{ src, dest string }{
		{opts.ResolvConfPath, "/etc/resolv.conf"},
		{opts.HostnamePath, "/etc/hostname"},
		{opts.HostsPath, "/etc/hosts"},
	} {
		// A user mount on the same file wins, as in docker.
		if f.src == "" || seen[f.dest] {
			continue
		}
		o := []string{"rbind", "rprivate"}
		if hc.ReadonlyRootfs {
			o = append(o, "ro")
		}
		if err := add(specs.Mount{Destination: f.dest, Type: "bind", Source: f.src, Options: o}); err != nil {
			return err
		}
	}
	// Parents before children, or a parent would hide its children.
	sort.SliceStable(user, func(i, j int) bool {
		return strings.Count(user[i].Destination, "/") < strings.Count(user[j].Destination, "/")
	})

	shmSize := hc.ShmSize
	if shmSize <= 0 {
		shmSize = defaultShmSize
	}
	mounts := make([]specs.Mount, 0, 8+len(user))
	for _, m := range defaultMounts() {
		if seen[m.Destination] || seen["/dev"] && strings.HasPrefix(m.Destination, "/dev/") {
			continue
		}
		if m.Destination == "/dev/shm" {
			switch {
			case hc.IpcMode.IsNone():
				continue
			case hc.IpcMode.IsHost():
				m = specs.Mount{Destination: "/dev/shm", Type: "bind", Source: "/dev/shm", Options: []string{"rbind", "rprivate"}}
			default:
				m.Options = append(m.Options, "size="+strconv.FormatInt(shmSize, 10))
			}
		}
		if hc.ReadonlyRootfs && !keepWritable[m.Destination] && !slices.Contains(m.Options, "ro") {
			m.Options = append(m.Options, "ro")
		}
		mounts = append(mounts, m)
	}
	s.Mounts = append(mounts, user...)
	return nil
}

// TmpfsOptions turns a --tmpfs option string ("size=64m,mode=1777,exec")
// into mount options: docker's defaults noexec, nosuid, nodev and
// rprivate, which the user's options override.
func TmpfsOptions(data string) ([]string, error) {
	o := []string{"noexec", "nosuid", "nodev", "rprivate"}
	if data != "" {
		o = append(o, strings.Split(data, ",")...)
	}
	merged, err := mount.MergeTmpfsOptions(o)
	if err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(err.Error())
	}
	return merged, nil
}
