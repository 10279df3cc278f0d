package cgroups

// Added to github.com/opencontainers/cgroups by berth's
// scripts/runtime-overlay.sh, which also makes readCgroupMountinfo call
// berthGetMounts instead of mountinfo.GetMounts.
//
// readCgroupMountinfo reads the whole of /proc/thread-self/mountinfo to
// find the cgroup v1 hierarchies: once in berth-runtime (for a controller
// not mounted on this host, such as hugetlb) and once in every container
// init (to mount /sys/fs/cgroup). The kernel writes a line for every mount
// on the host, and each running container adds two (its rootfs overlay,
// with long options, and its netns), so that read grows with the number
// of running containers. Here the mounts below /sys/fs/cgroup are looked
// up one by one instead (statx, listmount and statmount: Linux 6.11+ for
// the options), at a cost that does not grow with them. The answer is
// only used when it has a mount for every v1 hierarchy this process is in
// (/proc/self/cgroup); otherwise, and on older kernels, mountinfo is read
// as before. The lookups are berth's internal/mountlist, which the script
// copies into this module as internal/berthmountlist (this module cannot
// import berth's internal packages).

import (
	"os"
	"strings"

	"github.com/moby/sys/mountinfo"
	mountlist "github.com/opencontainers/cgroups/internal/berthmountlist"
	"golang.org/x/sys/unix"
)

func berthGetMounts(filter mountinfo.FilterFunc) ([]*mountinfo.Info, error) {
	if infos, ok := berthCgroupMounts(); ok {
		var out []*mountinfo.Info
		for _, info := range infos {
			if skip, stop := filter(info); !skip {
				out = append(out, info)
				if stop {
					break
				}
			}
		}
		return out, nil
	}
	return mountinfo.GetMounts(filter)
}

const berthCgroupRoot = "/sys/fs/cgroup"

// berthCgroupMounts returns the cgroup mounts below /sys/fs/cgroup as
// mountinfo.GetMounts would, in its order, or false when it cannot
// answer fully.
func berthCgroupMounts() ([]*mountinfo.Info, bool) {
	id, isRoot, err := mountlist.Lookup(berthCgroupRoot)
	if err != nil || !isRoot {
		return nil, false
	}
	// Children on Linux 6.8 and 6.9, the whole subtree later: the cgroup
	// hierarchies are children of the /sys/fs/cgroup tmpfs either way.
	below, err := mountlist.Below(id, mountlist.WithOptions, mountlist.WithSource)
	if err != nil {
		return nil, false
	}
	var out []*mountinfo.Info
	for _, m := range below {
		if m.FSType != "cgroup" {
			continue
		}
		// Without the options (kernels before 6.11) a hierarchy misses its
		// controllers, and berthCoversHierarchies sends the caller to
		// mountinfo.
		vfs := "rw"
		if m.ReadOnlySB {
			vfs = "ro"
		}
		if m.Options != "" {
			vfs += "," + m.Options
		}
		out = append(out, &mountinfo.Info{
			ID:         int(m.OldID),
			Parent:     int(m.OldParentID),
			Major:      int(m.Major),
			Minor:      int(m.Minor),
			FSType:     m.FSType,
			Root:       m.Root,
			Mountpoint: m.Mountpoint,
			Options:    berthMountOptions(m.Attr),
			VFSOptions: vfs,
			Source:     m.Source,
		})
	}
	return out, berthCoversHierarchies(out)
}

// berthCoversHierarchies says whether every cgroup v1 hierarchy in
// /proc/self/cgroup has one of mounts.
func berthCoversHierarchies(mounts []*mountinfo.Info) bool {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			return false
		}
		if parts[0] == "0" || parts[1] == "" {
			continue // the unified hierarchy
		}
		found := false
		for _, m := range mounts {
			found = true
			for c := range strings.SplitSeq(parts[1], ",") {
				if !strings.Contains(","+m.VFSOptions+",", ","+c+",") {
					found = false
					break
				}
			}
			if found {
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// berthMountOptions formats MOUNT_ATTR_* flags as mountinfo's per-mount
// options.
func berthMountOptions(attr uint64) string {
	opts := []string{"rw"}
	if attr&unix.MOUNT_ATTR_RDONLY != 0 {
		opts[0] = "ro"
	}
	for _, f := range []struct {
		attr uint64
		name string
	}{{unix.MOUNT_ATTR_NOSUID, "nosuid"}, {unix.MOUNT_ATTR_NODEV, "nodev"}, {unix.MOUNT_ATTR_NOEXEC, "noexec"}} {
		if attr&f.attr != 0 {
			opts = append(opts, f.name)
		}
	}
	// In mountinfo's order.
	if attr&unix.MOUNT_ATTR__ATIME == unix.MOUNT_ATTR_NOATIME {
		opts = append(opts, "noatime")
	}
	if attr&unix.MOUNT_ATTR_NODIRATIME != 0 {
		opts = append(opts, "nodiratime")
	}
	if attr&unix.MOUNT_ATTR__ATIME == unix.MOUNT_ATTR_RELATIME {
		opts = append(opts, "relatime")
	}
	if attr&unix.MOUNT_ATTR_NOSYMFOLLOW != 0 {
		opts = append(opts, "nosymfollow")
	}
	return strings.Join(opts, ",")
}
