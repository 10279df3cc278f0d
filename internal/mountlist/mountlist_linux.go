// Package mountlist looks up mounts one at a time through statx(2),
// listmount(2) and statmount(2) (Linux 6.8+) instead of reading
// /proc/self/mountinfo. The kernel writes mountinfo's text for every mount
// in the namespace on each read, and every running container adds its
// rootfs overlay (with long lowerdir options) and its netns file to the
// host's: a whole read grows with the number of running containers, while
// the submounts of one directory are found here at a cost that does not.
//
// Callers fall back to mountinfo when a function returns ErrUnsupported.
package mountlist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrUnsupported says the kernel lacks what these lookups need (unique
// mount IDs in statx, listmount, statmount: Linux 6.8).
var ErrUnsupported = errors.New("listmount/statmount not supported by this kernel")

// mntIDReq is the kernel's struct mnt_id_req (MNT_ID_REQ_SIZE_VER0).
type mntIDReq struct {
	size  uint32
	spare uint32
	mntID uint64
	param uint64
}

// statmount(2) request masks (include/uapi/linux/mount.h).
const (
	statmountSBBasic  = 0x1
	statmountMntBasic = 0x2
	statmountMntRoot  = 0x8
	statmountMntPoint = 0x10
	statmountFSType   = 0x20
	statmountMntOpts  = 0x80
	statmountSource   = 0x200
)

// Offsets in struct statmount. Its fixed part is 512 bytes since Linux
// 6.8 (later fields came out of its spare space); the strings follow it,
// at the u32 offsets the fields hold.
const (
	offMntOpts     = 4
	offMask        = 8
	offSBMajor     = 16
	offSBMinor     = 20
	offSBMagic     = 24
	offSBFlags     = 32
	offFSType      = 36
	offMntID       = 40
	offMntParentID = 48
	offMntIDOld    = 56
	offParentOld   = 60
	offMntAttr     = 64
	offMntRoot     = 104
	offMntPoint    = 108
	offSource      = 124
	statmountFixed = 512
)

// sbRdonly is SB_RDONLY in statmount's sb_flags.
const sbRdonly = 1

// Info is what statmount reports about one mount.
type Info struct {
	ID       uint64 // unique mount ID (never reused)
	ParentID uint64 // unique ID of the parent mount (its own ID for the root)
	// OldID and OldParentID are the reusable IDs /proc/self/mountinfo shows.
	OldID, OldParentID uint32
	Major, Minor       uint32
	Magic              uint64 // the filesystem's *_SUPER_MAGIC
	ReadOnlySB         bool   // the superblock is read-only
	Attr               uint64 // MOUNT_ATTR_* of the mount
	FSType             string
	Root               string // root of the mount within its filesystem
	Mountpoint         string // relative to the caller's root
	// Options are the filesystem's own options as mountinfo's last field
	// shows them after "rw,"/"ro," (Linux 6.11+; "" before). Only filled by
	// Stat with WithOptions.
	Options string
	// Source is the mount's source as mountinfo shows it (Linux 6.11+; ""
	// before). Only filled by Stat with WithSource.
	Source string
}

var (
	probeOnce sync.Once
	probeErr  error
)

// Supported reports whether the kernel has everything these lookups use.
func Supported() bool {
	probeOnce.Do(func() {
		var stx unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, "/", unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID_UNIQUE, &stx); err != nil || stx.Mask&unix.STATX_MNT_ID_UNIQUE == 0 {
			probeErr = ErrUnsupported
			return
		}
		var ids [1]uint64
		if _, err := listmount(stx.Mnt_id, 0, ids[:]); err != nil {
			probeErr = ErrUnsupported
			return
		}
		buf := make([]byte, statmountFixed+256)
		if err := statmount(stx.Mnt_id, statmountMntBasic, buf); err != nil {
			probeErr = ErrUnsupported
		}
	})
	return probeErr == nil
}

// Lookup returns the unique ID of the mount path is on (for a mount point,
// the topmost mount there) and whether path is that mount's root. path is
// not followed if it is a symlink, nor automounted.
func Lookup(path string) (id uint64, isRoot bool, err error) {
	if !Supported() {
		return 0, false, ErrUnsupported
	}
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, unix.STATX_MNT_ID_UNIQUE, &stx); err != nil {
		return 0, false, &fsError{op: "statx", path: path, err: err}
	}
	if stx.Mask&unix.STATX_MNT_ID_UNIQUE == 0 || stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return 0, false, ErrUnsupported
	}
	return stx.Mnt_id, stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
}

// fsError is an error of a syscall on a path, unwrapping to its errno.
type fsError struct {
	op, path string
	err      error
}

func (e *fsError) Error() string { return fmt.Sprintf("%s %s: %v", e.op, e.path, e.err) }
func (e *fsError) Unwrap() error { return e.err }

// list returns what listmount reports below mount id: its children on
// Linux 6.8 and 6.9, every mount below it (children, their children, ...)
// on later kernels; in both, in the order of the kernel's mount tree,
// which is mountinfo's.
func list(id uint64) ([]uint64, error) {
	var out []uint64
	buf := make([]uint64, 64)
	last := uint64(0)
	for {
		n, err := listmount(id, last, buf)
		if err != nil {
			return nil, fmt.Errorf("listmount %d: %w", id, err)
		}
		out = append(out, buf[:n]...)
		if n < len(buf) {
			return out, nil
		}
		last = buf[n-1]
		if len(buf) < 4096 {
			buf = make([]uint64, len(buf)*4)
		}
	}
}

// Descendants returns every mount below mount id (its children, their
// children, ...), each after its parent, with what Stat reports without
// options. A mount that goes away meanwhile is left out.
func Descendants(id uint64) ([]Info, error) {
	if !Supported() {
		return nil, ErrUnsupported
	}
	seen := map[uint64]bool{id: true}
	var out []Info
	queue := []uint64{id}
	for len(queue) > 0 {
		x := queue[0]
		queue = queue[1:]
		ids, err := list(x)
		if err != nil {
			return nil, err
		}
		// Kernels that list a whole subtree at once say so by returning a
		// mount whose parent is not x: then there is nothing left to ask
		// about below these. Otherwise each child is asked in turn.
		whole := false
		first := len(out)
		for _, c := range ids {
			if seen[c] {
				continue
			}
			seen[c] = true
			info, err := Stat(c)
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if info.ParentID != x {
				whole = true
			}
			out = append(out, info)
		}
		if !whole {
			for _, info := range out[first:] {
				queue = append(queue, info.ID)
			}
		}
	}
	return out, nil
}

// Below returns what listmount lists below mount id — its children on
// Linux 6.8 and 6.9, its whole subtree later — in mountinfo's order, each
// as Stat reports it with opts. A mount that goes away meanwhile is left
// out.
func Below(id uint64, opts ...StatOption) ([]Info, error) {
	if !Supported() {
		return nil, ErrUnsupported
	}
	ids, err := list(id)
	if err != nil {
		return nil, err
	}
	out := make([]Info, 0, len(ids))
	for _, c := range ids {
		info, err := Stat(c, opts...)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// StatOption selects what Stat asks the kernel for beyond the basics.
type StatOption int

const (
	// WithOptions asks for the filesystem's options (Info.Options), which
	// the kernel formats as mountinfo does: costly for overlays.
	WithOptions StatOption = 1 << iota
	// WithSource asks for the mount's source (Info.Source).
	WithSource
)

// Stat returns what the kernel reports about mount id: IDs, device,
// filesystem type and magic, root and mount point, attributes, and with
// WithOptions the filesystem's options.
func Stat(id uint64, opts ...StatOption) (Info, error) {
	if !Supported() {
		return Info{}, ErrUnsupported
	}
	mask := uint64(statmountSBBasic | statmountMntBasic | statmountMntRoot | statmountMntPoint | statmountFSType)
	for _, o := range opts {
		if o&WithOptions != 0 {
			mask |= statmountMntOpts
		}
		if o&WithSource != 0 {
			mask |= statmountSource
		}
	}
	buf := make([]byte, statmountFixed+1024)
	for {
		err := statmount(id, mask, buf)
		if errors.Is(err, unix.EOVERFLOW) && len(buf) < 1<<20 {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil {
			return Info{}, fmt.Errorf("statmount %d: %w", id, err)
		}
		break
	}
	le := binary.LittleEndian
	got := le.Uint64(buf[offMask:])
	if got&statmountMntPoint == 0 || got&statmountMntBasic == 0 {
		return Info{}, fmt.Errorf("statmount %d: %w", id, ErrUnsupported)
	}
	info := Info{
		ID:          le.Uint64(buf[offMntID:]),
		ParentID:    le.Uint64(buf[offMntParentID:]),
		OldID:       le.Uint32(buf[offMntIDOld:]),
		OldParentID: le.Uint32(buf[offParentOld:]),
		Major:       le.Uint32(buf[offSBMajor:]),
		Minor:       le.Uint32(buf[offSBMinor:]),
		Magic:       le.Uint64(buf[offSBMagic:]),
		ReadOnlySB:  le.Uint32(buf[offSBFlags:])&sbRdonly != 0,
		Attr:        le.Uint64(buf[offMntAttr:]),
		Mountpoint:  cstring(buf, le.Uint32(buf[offMntPoint:])),
	}
	if got&statmountMntRoot != 0 {
		info.Root = cstring(buf, le.Uint32(buf[offMntRoot:]))
	}
	if got&statmountFSType != 0 {
		info.FSType = cstring(buf, le.Uint32(buf[offFSType:]))
	}
	if got&statmountMntOpts != 0 {
		info.Options = cstring(buf, le.Uint32(buf[offMntOpts:]))
	}
	if got&statmountSource != 0 {
		info.Source = cstring(buf, le.Uint32(buf[offSource:]))
	}
	return info, nil
}

// cstring is the NUL-terminated string at offset off of statmount's
// string area.
func cstring(buf []byte, off uint32) string {
	start := statmountFixed + int(off)
	if start >= len(buf) {
		return ""
	}
	end := start
	for end < len(buf) && buf[end] != 0 {
		end++
	}
	return string(buf[start:end])
}

func listmount(id, last uint64, ids []uint64) (int, error) {
	req := mntIDReq{size: uint32(unsafe.Sizeof(mntIDReq{})), mntID: id, param: last}
	n, _, errno := unix.Syscall6(unix.SYS_LISTMOUNT, uintptr(unsafe.Pointer(&req)), uintptr(unsafe.Pointer(&ids[0])), uintptr(len(ids)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func statmount(id, mask uint64, buf []byte) error {
	req := mntIDReq{size: uint32(unsafe.Sizeof(mntIDReq{})), mntID: id, param: mask}
	_, _, errno := unix.Syscall6(unix.SYS_STATMOUNT, uintptr(unsafe.Pointer(&req)), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
