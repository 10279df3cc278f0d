package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/berth-engine/berth/internal/container"
	"github.com/berth-engine/berth/internal/oci"
	"github.com/berth-engine/berth/internal/snapshot"
	containertypes "github.com/moby/moby/api/types/container"
	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// usernsState holds the user namespace descriptor idmapped mounts are
// made with, opened on first use and kept for the daemon's life.
type usernsState struct {
	once sync.Once
	fd   *os.File
	err  error
}

// remapped says whether c runs with the daemon's --userns-remap mapping.
func (s *ContainerService) remapped(c *container.Container) bool {
	return s.remappedHC(c.HostConfig)
}

func (s *ContainerService) remappedHC(hc *containertypes.HostConfig) bool {
	return s.cfg.Remap != nil && oci.UsernsRemapped(s.cfg.Remap.UIDMappings(), hc)
}

// idMappings are the spec's uid and gid maps (nil without --userns-remap).
func (s *ContainerService) idMappings() (uids, gids []specs.LinuxIDMapping) {
	if s.cfg.Remap == nil {
		return nil, nil
	}
	return s.cfg.Remap.UIDMappings(), s.cfg.Remap.GIDMappings()
}

// mountRootfs mounts the container's snapshot at rootfs; a remapped
// container's image layers are idmapped so that their root-owned files
// belong to its root.
func (s *ContainerService) mountRootfs(c *container.Container, mounts []snapshot.Mount, rootfs string) error {
	if !s.remapped(c) {
		return snapshot.MountAll(mounts, rootfs)
	}
	s.userns.once.Do(func() { s.userns.fd, s.userns.err = s.cfg.Remap.NamespaceFD() })
	if s.userns.err != nil {
		return s.userns.err
	}
	return snapshot.MountAllIDMapped(mounts, rootfs, int(s.userns.fd.Fd()))
}

// remapNewLayer gives a remapped container's new writable layer to its
// root: the upper directory's top (overlay2), or the whole private copy
// (vfs, whose copy is all the container has: every owner is shifted).
func (s *ContainerService) remapNewLayer(ctx context.Context, id string, hc *containertypes.HostConfig) error {
	if !s.remappedHC(hc) {
		return nil
	}
	if err := oci.CheckUserns(s.cfg.Remap.UIDMappings(), hc); err != nil {
		return err
	}
	if err := s.chownNewLayer(ctx, id); err != nil {
		return fmt.Errorf("give the root filesystem to the remapped root: %w", err)
	}
	return nil
}

func (s *ContainerService) chownNewLayer(ctx context.Context, id string) error {
	mounts, err := s.st.Snapshots.Mounts(ctx, id)
	if err != nil {
		return err
	}
	uid, gid := s.cfg.Remap.RootPair()
	for _, m := range mounts {
		if m.Type == "overlay" {
			for _, o := range m.Options {
				if dir, ok := strings.CutPrefix(o, "upperdir="); ok {
					return os.Lchown(dir, uid, gid)
				}
			}
			continue
		}
		if s.st.Snapshots.Name() == "vfs" {
			return s.shiftTree(m.Source)
		}
		return os.Lchown(m.Source, uid, gid)
	}
	return nil
}

// shiftTree moves every owner in the tree at root into the mapping
// (container id → host id), the chowned copy for drivers without
// overlayfs.
func (s *ContainerService) shiftTree(root string) error {
	idm := s.cfg.Remap.Mapping
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		uid, gid, err := idm.ToHost(int(st.Uid), int(st.Gid))
		if err != nil {
			return fmt.Errorf("%s: owner %d:%d is outside the --userns-remap range: %w", p, st.Uid, st.Gid, err)
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			return err
		}
		// chown clears set-id bits of executables; put them back.
		if fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 && fi.Mode().Type() == 0 {
			return os.Chmod(p, fi.Mode())
		}
		return nil
	})
}

// remapContainerFiles lets a remapped container's root reach what the
// runtime mounts for it: the bundle (rootfs mount point) and the
// container directory are root:<mapped root group> 0710, the files
// bind-mounted at /etc/hosts, /etc/hostname and /etc/resolv.conf belong
// to its root (as with dockerd, so that it can edit them).
func (s *ContainerService) remapContainerFiles(c *container.Container, bundle string) error {
	if !s.remapped(c) {
		return nil
	}
	uid, gid := s.cfg.Remap.RootPair()
	containers := filepath.Dir(bundle)
	if err := os.Chmod(containers, 0o711); err != nil {
		return err
	}
	for _, dir := range []string{bundle, s.st.Containers.Dir(c.ID)} {
		if err := os.Chown(dir, 0, gid); err != nil {
			return err
		}
		if err := os.Chmod(dir, 0o710); err != nil {
			return err
		}
	}
	for _, f := range []string{c.HostsPath, c.HostnamePath, c.ResolvConfPath} {
		if f == "" {
			continue
		}
		if err := os.Lchown(f, uid, gid); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// overflowID is the kernel's overflowuid/overflowgid: what a process in a
// user namespace sees for an id the namespace does not map.
const overflowID = 65534

func toContainerIDs(idm user.IdentityMapping, uid, gid int) (int, int) {
	return toContainerID(uid, idm.UIDMaps), toContainerID(gid, idm.GIDMaps)
}

func toContainerID(id int, maps []user.IDMap) int {
	for _, m := range maps {
		if int64(id) >= m.ParentID && int64(id) < m.ParentID+m.Count {
			return int(m.ID + int64(id) - m.ParentID)
		}
	}
	return overflowID
}

// IDMapping is container id's --userns-remap mapping, empty when it runs
// without one (or does not exist): the builder writes layers from a
// container's writable layer with it.
func (s *ContainerService) IDMapping(id string) user.IdentityMapping {
	e, err := s.get(id)
	if err != nil || !s.remapped(e.snapshot()) {
		return user.IdentityMapping{}
	}
	return s.cfg.Remap.Mapping
}

// mkdirBindSource creates a missing -v source directory (docker's -v
// does); the directories it creates belong to a remapped container's
// root, as with dockerd, so that the container can write there.
func (s *ContainerService) mkdirBindSource(path string, hc *containertypes.HostConfig) error {
	first := filepath.Clean(path)
	for {
		parent := filepath.Dir(first)
		if _, err := os.Lstat(parent); err == nil || parent == first {
			break
		}
		first = parent
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return err
	}
	if !s.remappedHC(hc) {
		return nil
	}
	uid, gid := s.cfg.Remap.RootPair()
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		if err := os.Lchown(p, uid, gid); err != nil {
			return err
		}
		if p == first {
			return nil
		}
	}
}
