package snapshot

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// MountAllIDMapped mounts like MountAll, except that the lower layers of
// an overlay mount are seen through the user namespace usernsFD (idmapped
// mounts): a file a layer stores as owned by root appears owned by the
// namespace's root, so one unpacked copy of a layer serves containers
// with any --userns-remap mapping and none. The upper (writable) layer is
// not idmapped: what the container writes lands on disk under its mapped
// host ids.
//
// The idmapped lower layers are attached under a temporary directory
// beside target only while the overlay is made; overlayfs keeps its own
// references to them.
func MountAllIDMapped(mounts []Mount, target string, usernsFD int) error {
	for i, m := range mounts {
		err := mountIDMapped(m, target, usernsFD)
		if err != nil {
			for j := 0; j < i; j++ {
				_ = unmountOnce(target)
			}
			return fmt.Errorf("mount %s %s at %s (idmapped): %w", m.Type, m.Source, target, err)
		}
	}
	return nil
}

func mountIDMapped(m Mount, target string, usernsFD int) error {
	if m.Type != "overlay" {
		return mountOne(m, target)
	}
	idx := -1
	for i, o := range m.Options {
		if strings.HasPrefix(o, "lowerdir=") {
			idx = i
		}
	}
	if idx < 0 {
		return mountOne(m, target)
	}
	lowers := strings.Split(strings.TrimPrefix(m.Options[idx], "lowerdir="), ":")
	tmp, err := os.MkdirTemp(filepath.Dir(target), ".idmap-")
	if err != nil {
		return err
	}
	var attached []string
	defer func() {
		for _, p := range attached {
			_ = unix.Unmount(p, unix.MNT_DETACH)
		}
		_ = os.RemoveAll(tmp)
	}()
	mapped := make([]string, len(lowers))
	for i, l := range lowers {
		dir := filepath.Join(tmp, strconv.Itoa(i))
		if err := os.Mkdir(dir, 0o700); err != nil {
			return err
		}
		if err := attachIDMapped(l, dir, usernsFD); err != nil {
			return fmt.Errorf("idmapped mount of layer %s: %w", l, err)
		}
		attached = append(attached, dir)
		mapped[i] = dir
	}
	opts := append([]string(nil), m.Options...)
	opts[idx] = "lowerdir=" + strings.Join(mapped, ":")
	return mountOne(Mount{Type: m.Type, Source: m.Source, Options: opts}, target)
}

// attachIDMapped attaches a clone of the tree at src, shifted through the
// user namespace, at dir.
func attachIDMapped(src, dir string, usernsFD int) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree: %w", err)
	}
	defer unix.Close(fd)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(usernsFD)}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("mount_setattr MOUNT_ATTR_IDMAP: %w", err)
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, dir, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount: %w", err)
	}
	return nil
}
