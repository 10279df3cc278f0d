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
// as before. (internal/mountlist is berth's own copy of these lookups,
// with tests; this package cannot import it.)

import (
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"unsafe"

	"github.com/moby/sys/mountinfo"
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

// statmount(2) masks and struct statmount offsets (include/uapi/linux/mount.h).
const (
	berthSMSBBasic  = 0x1
	berthSMMntBasic = 0x2
	berthSMMntRoot  = 0x8
	berthSMMntPoint = 0x10
	berthSMFSType   = 0x20
	berthSMMntOpts  = 0x80
	berthSMSource   = 0x200
	berthSMFixed    = 512
)

type berthMntIDReq struct {
	size  uint32
	spare uint32
	mntID uint64
	param uint64
}

// berthCgroupMounts returns the cgroup mounts below /sys/fs/cgroup as
// mountinfo.GetMounts would, in its order, or false when it cannot
// answer fully.
func berthCgroupMounts() ([]*mountinfo.Info, bool) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, berthCgroupRoot, unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, unix.STATX_MNT_ID_UNIQUE, &stx); err != nil ||
		stx.Mask&unix.STATX_MNT_ID_UNIQUE == 0 || stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return nil, false
	}
	ids, err := berthListmount(stx.Mnt_id)
	if err != nil {
		return nil, false
	}
	var out []*mountinfo.Info
	buf := make([]byte, berthSMFixed+4096)
	for _, id := range ids {
		info, err := berthStatmount(id, buf)
		if errors.Is(err, unix.ENOENT) {
			continue // unmounted meanwhile
		}
		if err != nil {
			return nil, false
		}
		if info.FSType == "cgroup" {
			out = append(out, info)
		}
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

// berthListmount lists the mounts below mount id: its children on Linux
// 6.8 and 6.9, its whole subtree later (the cgroup hierarchies are
// children of the /sys/fs/cgroup tmpfs either way).
func berthListmount(id uint64) ([]uint64, error) {
	var out []uint64
	ids := make([]uint64, 64)
	last := uint64(0)
	for {
		req := berthMntIDReq{size: uint32(unsafe.Sizeof(berthMntIDReq{})), mntID: id, param: last}
		n, _, errno := unix.Syscall6(unix.SYS_LISTMOUNT, uintptr(unsafe.Pointer(&req)), uintptr(unsafe.Pointer(&ids[0])), uintptr(len(ids)), 0, 0, 0)
		if errno != 0 {
			return nil, errno
		}
		out = append(out, ids[:n]...)
		if int(n) < len(ids) {
			return out, nil
		}
		last = ids[n-1]
	}
}

var errBerthIncomplete = errors.New("statmount: fields missing")

func berthStatmount(id uint64, buf []byte) (*mountinfo.Info, error) {
	const want = berthSMSBBasic | berthSMMntBasic | berthSMMntRoot | berthSMMntPoint | berthSMFSType
	// No options and kernels before 6.11 both leave the options out: the
	// hierarchies then miss their controllers, and berthCoversHierarchies
	// sends the caller to mountinfo.
	req := berthMntIDReq{size: uint32(unsafe.Sizeof(berthMntIDReq{})), mntID: id, param: want | berthSMMntOpts | berthSMSource}
	_, _, errno := unix.Syscall6(unix.SYS_STATMOUNT, uintptr(unsafe.Pointer(&req)), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0, 0)
	if errno != 0 {
		return nil, errno
	}
	le := binary.LittleEndian
	mask := le.Uint64(buf[8:])
	if mask&want != want {
		return nil, errBerthIncomplete
	}
	str := func(field int) string {
		start := berthSMFixed + int(le.Uint32(buf[field:]))
		end := start
		for end < len(buf) && buf[end] != 0 {
			end++
		}
		if start > end {
			return ""
		}
		return string(buf[start:end])
	}
	vfs := "rw"
	if le.Uint32(buf[32:])&unix.MS_RDONLY != 0 { // sb_flags: SB_RDONLY is 1 as MS_RDONLY
		vfs = "ro"
	}
	if o := str(4); mask&berthSMMntOpts != 0 && o != "" {
		vfs += "," + o
	}
	info := &mountinfo.Info{
		ID:         int(le.Uint32(buf[56:])),
		Parent:     int(le.Uint32(buf[60:])),
		Major:      int(le.Uint32(buf[16:])),
		Minor:      int(le.Uint32(buf[20:])),
		FSType:     str(36),
		Root:       str(104),
		Mountpoint: str(108),
		Options:    berthMountOptions(le.Uint64(buf[64:])),
		VFSOptions: vfs,
	}
	if mask&berthSMSource != 0 {
		info.Source = str(124)
	}
	return info, nil
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
