package engine

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/container"
	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
	containertypes "github.com/moby/moby/api/types/container"
	eventtypes "github.com/moby/moby/api/types/events"
	"github.com/moby/sys/user"
	"golang.org/x/sys/unix"
)

var _ api.ArchiveBackend = (*ContainerService)(nil)

// fsView is a container's filesystem as its processes see it, mounted on
// the host for cp and export: the root filesystem, and (for cp) its
// volumes and binds at their destinations. Every path is resolved inside
// root with symlinks confined to it (securejoin), so a link to / or ../..
// in the container never leads outside.
type fsView struct {
	root    string
	c       *container.Container
	mounts  []string // mounted inside root, in mount order
	release func()
	// ro lists destinations mounted read-only (a read-only volume or bind).
	ro []string
	// idmap is the container's --userns-remap mapping (empty: none): the
	// view shows host ids, archives carry the container's.
	idmap user.IdentityMapping
}

// openView mounts the view of container id. withMounts adds its volumes
// and binds (cp); export leaves them out, as docker's does.
func (s *ContainerService) openView(ctx context.Context, id string, withMounts bool) (*fsView, error) {
	e, err := s.get(id)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(filepath.Join(s.cfg.ExecRoot), "view-")
	if err != nil {
		return nil, err
	}
	v := &fsView{root: dir}
	// A stopped container's layer is mounted here for the duration; its
	// lifecycle lock keeps a start from mounting it at the same time.
	e.op.Lock()
	c := e.snapshot()
	v.c = c
	locked := true
	unlock := func() {
		if locked {
			locked = false
			e.op.Unlock()
		}
	}
	fail := func(err error) (*fsView, error) {
		v.close()
		unlock()
		return nil, err
	}
	rootfs := filepath.Join(s.cfg.bundleDir(c.ID), "rootfs")
	if c.State.Running() {
		unlock()
		if err := unix.Mount(rootfs, dir, "", unix.MS_BIND, ""); err != nil {
			_ = os.Remove(dir)
			return nil, fmt.Errorf("mount the container's root filesystem: %w", err)
		}
	} else {
		mounts, err := s.st.Snapshots.Mounts(ctx, c.ID)
		if err != nil {
			unlock()
			_ = os.Remove(dir)
			return nil, err
		}
		// Mounted as the container sees it: idmapped layers when remapped.
		if err := s.mountRootfs(c, mounts, dir); err != nil {
			unlock()
			_ = os.Remove(dir)
			return nil, fmt.Errorf("mount the container's root filesystem: %w", err)
		}
	}
	if s.remapped(c) {
		v.idmap = s.cfg.Remap.Mapping
	}
	v.mounts = append(v.mounts, dir)
	_ = unix.Mount("", dir, "", unix.MS_PRIVATE, "")
	v.release = unlock
	if !withMounts {
		return v, nil
	}
	mps := append([]container.MountPoint(nil), c.MountPoints...)
	// The /etc files berth provides are seen as the container sees them
	// (read-only here: docker's cp does not write through them either).
	for _, f := range []struct{ src, dst string }{
		{c.HostsPath, "/etc/hosts"}, {c.HostnamePath, "/etc/hostname"}, {c.ResolvConfPath, "/etc/resolv.conf"},
	} {
		if f.src == "" || slices.ContainsFunc(mps, func(mp container.MountPoint) bool { return mp.Destination == f.dst }) {
			continue
		}
		if _, err := os.Stat(f.src); err == nil {
			mps = append(mps, container.MountPoint{Type: "bind", Source: f.src, Destination: f.dst})
		}
	}
	sort.SliceStable(mps, func(i, j int) bool {
		return strings.Count(mps[i].Destination, "/") < strings.Count(mps[j].Destination, "/")
	})
	for _, mp := range mps {
		var src string
		switch mp.Type {
		case "bind":
			src = mp.Source
		case "volume":
			if s.st.Volumes == nil {
				continue
			}
			src = s.st.Volumes.Path(mp.Name)
			if mp.Subpath != "" {
				if src, err = securejoin.SecureJoin(src, mp.Subpath); err != nil {
					continue
				}
			}
		default:
			continue
		}
		target, err := securejoin.SecureJoin(dir, mp.Destination)
		if err != nil {
			return fail(err)
		}
		sfi, err := os.Stat(src)
		if err != nil {
			continue
		}
		fi, err := os.Stat(target)
		if errors.Is(err, fs.ErrNotExist) {
			// Not started yet: make the mount point, as the runtime will.
			if sfi.IsDir() {
				err = os.MkdirAll(target, 0o755)
			} else if err = os.MkdirAll(filepath.Dir(target), 0o755); err == nil {
				var f *os.File
				if f, err = os.OpenFile(target, os.O_CREATE|os.O_WRONLY|unix.O_NOFOLLOW, 0o644); err == nil {
					f.Close()
				}
			}
			if err != nil {
				return fail(err)
			}
			if target, err = securejoin.SecureJoin(dir, mp.Destination); err != nil {
				return fail(err)
			}
			fi, err = os.Stat(target)
		}
		if err != nil || sfi.IsDir() != fi.IsDir() {
			continue
		}
		flags := uintptr(unix.MS_BIND | unix.MS_REC)
		if err := unix.Mount(src, target, "", flags, ""); err != nil {
			return fail(fmt.Errorf("mount %s in the view: %w", mp.Destination, err))
		}
		v.mounts = append(v.mounts, target)
		_ = unix.Mount("", target, "", unix.MS_PRIVATE|unix.MS_REC, "")
		if !mp.RW {
			if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
				return fail(err)
			}
			v.ro = append(v.ro, mp.Destination)
		}
	}
	return v, nil
}

func (v *fsView) close() {
	for i := len(v.mounts) - 1; i >= 0; i-- {
		_ = unix.Unmount(v.mounts[i], unix.MNT_DETACH)
	}
	v.mounts = nil
	_ = os.Remove(v.root)
	if v.release != nil {
		v.release()
	}
}

// resolve turns a container path into a host path inside the view,
// following symlinks in every element but the last, confined to the root.
func (v *fsView) resolve(p string) (host, clean string, err error) {
	clean = filepath.Join("/", p)
	dir, base := filepath.Split(clean)
	rdir, err := securejoin.SecureJoin(v.root, dir)
	if err != nil {
		return "", "", err
	}
	if base == "" {
		return rdir, clean, nil
	}
	return filepath.Join(rdir, base), clean, nil
}

// containerPath maps a host path inside the view back to the container's.
func (v *fsView) containerPath(host string) string {
	rel, err := filepath.Rel(v.root, host)
	if err != nil || rel == "." {
		return "/"
	}
	return "/" + rel
}

func (v *fsView) stat(p string) (*containertypes.PathStat, string, error) {
	host, clean, err := v.resolve(p)
	if err != nil {
		return nil, "", err
	}
	fi, err := os.Lstat(host)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, "", errdefs.ErrNotFound.WithMessage(fmt.Sprintf("Could not find the file %s in container %s", p, v.c.Name))
		}
		return nil, "", err
	}
	st := &containertypes.PathStat{Name: filepath.Base(clean), Size: fi.Size(), Mode: fi.Mode(), Mtime: fi.ModTime()}
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, err := securejoin.SecureJoin(v.root, clean)
		if err == nil {
			st.LinkTarget = v.containerPath(target)
		}
	}
	if strings.HasSuffix(p, "/") && !fi.IsDir() && fi.Mode()&fs.ModeSymlink == 0 {
		return nil, "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("not a directory: %s", p))
	}
	return st, host, nil
}

// StatPath implements HEAD /containers/{id}/archive.
func (s *ContainerService) StatPath(ctx context.Context, id, path string) (*containertypes.PathStat, error) {
	v, err := s.openView(ctx, id, true)
	if err != nil {
		return nil, err
	}
	defer v.close()
	st, _, err := v.stat(path)
	return st, err
}

// ArchivePath implements GET /containers/{id}/archive: a tar of path,
// its top entry named as the path's last element.
func (s *ContainerService) ArchivePath(ctx context.Context, id, path string) (io.ReadCloser, *containertypes.PathStat, error) {
	v, err := s.openView(ctx, id, true)
	if err != nil {
		return nil, nil, err
	}
	st, host, err := v.stat(path)
	if err != nil {
		v.close()
		return nil, nil, err
	}
	name := filepath.Base(filepath.Join("/", path))
	if strings.HasSuffix(path, "/.") {
		name = "."
	}
	pr, pw := io.Pipe()
	go func() {
		err := writeTarMapped(pw, host, name, v.idmap)
		v.close()
		pw.CloseWithError(err)
	}()
	return pr, st, nil
}

// ExtractToDir implements PUT /containers/{id}/archive: the tar is
// unpacked into the directory path.
func (s *ContainerService) ExtractToDir(ctx context.Context, id, path string, opts api.ExtractOptions, content io.Reader) error {
	if _, err := s.get(id); err != nil {
		return err
	}
	// A body that is no tar archive at all is refused before anything is
	// mounted or written; the bytes read to tell are replayed.
	var head bytes.Buffer
	if _, err := tar.NewReader(io.TeeReader(content, &head)).Next(); err != nil && !errors.Is(err, io.EOF) {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("the request body is not a tar archive: %v", err))
	}
	content = io.MultiReader(&head, content)
	v, err := s.openView(ctx, id, true)
	if err != nil {
		return err
	}
	defer v.close()
	// The directory itself may be a symlink: follow it, confined.
	host, err := securejoin.SecureJoin(v.root, filepath.Join("/", path))
	if err != nil {
		return err
	}
	fi, err := os.Stat(host)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errdefs.ErrNotFound.WithMessage(fmt.Sprintf("Could not find the file %s in container %s", path, v.c.Name))
		}
		return err
	}
	if !fi.IsDir() {
		return errdefs.ErrInvalidArgument.WithMessage("extraction point is not a directory")
	}
	dest := v.containerPath(host)
	if !v.writable(dest) {
		return errdefs.ErrPermissionDenied.WithMessage("container rootfs is marked read-only")
	}
	for _, ro := range v.ro {
		if dest == ro || strings.HasPrefix(dest, ro+"/") {
			return errdefs.ErrPermissionDenied.WithMessage(fmt.Sprintf("mounted volume is marked read-only: %s", ro))
		}
	}
	uid, gid := -1, -1
	if opts.CopyUIDGID {
		uid, gid = containerUser(v)
	}
	if err := extractTar(content, v, dest, opts.NoOverwriteDirNonDir, uid, gid); err != nil {
		return err
	}
	s.emitContainer(v.c, eventtypes.Action("extract-to-dir"), map[string]string{"path": path})
	return nil
}

// writable reports whether dest is on a writable part of the view: a
// read-only root is writable only inside its read-write mounts.
func (v *fsView) writable(dest string) bool {
	if v.c.HostConfig == nil || !v.c.HostConfig.ReadonlyRootfs {
		return true
	}
	for _, mp := range v.c.MountPoints {
		if mp.RW && (mp.Type == "volume" || mp.Type == "bind") && (dest == mp.Destination || strings.HasPrefix(dest, mp.Destination+"/")) {
			return true
		}
	}
	return false
}

// containerUser is the uid and gid of the container's user, numeric or
// looked up in its /etc/passwd (root if unknown).
func containerUser(v *fsView) (int, int) {
	u := ""
	if v.c.Config != nil {
		u = v.c.Config.User
	}
	name, group, _ := strings.Cut(u, ":")
	uid, gid := 0, 0
	if name == "" {
		return 0, 0
	}
	if n, err := strconv.Atoi(name); err == nil {
		uid = n
	} else if p, err := securejoin.SecureJoin(v.root, "/etc/passwd"); err == nil {
		if b, err := os.ReadFile(p); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				f := strings.Split(line, ":")
				if len(f) > 3 && f[0] == name {
					uid, _ = strconv.Atoi(f[2])
					gid, _ = strconv.Atoi(f[3])
				}
			}
		}
	}
	if n, err := strconv.Atoi(group); err == nil {
		gid = n
	}
	return uid, gid
}

// Export implements GET /containers/{id}/export: the container's root
// filesystem (without its volumes) as a tar.
func (s *ContainerService) Export(ctx context.Context, id string) (io.ReadCloser, error) {
	v, err := s.openView(ctx, id, false)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		err := writeTarMapped(pw, v.root, "", v.idmap)
		v.close()
		pw.CloseWithError(err)
	}()
	s.emitContainer(v.c, eventtypes.ActionExport, nil)
	return pr, nil
}

// writeTar writes the tree at src as a tar whose top entry is named name
// ("" for the tree's contents at the archive's root). Symlinks are stored
// as links, never followed.
func writeTar(w io.Writer, src, name string) error {
	return writeTarMapped(w, src, name, user.IdentityMapping{})
}

// writeTarMapped is writeTar with owners turned from host ids into the
// container's through idm; a host id outside the mapping is the overflow
// id 65534, which is also what the container sees.
func writeTarMapped(w io.Writer, src, name string, idm user.IdentityMapping) error {
	tw := tar.NewWriter(w)
	inodes := map[uint64]string{}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		var entry string
		switch {
		case name == "" && rel == ".":
			return nil
		case name == "":
			entry = rel
		case rel == ".":
			entry = name
		default:
			entry = filepath.Join(name, rel)
			if name == "." {
				entry = "./" + rel
			}
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		if fi.Mode()&fs.ModeSocket != 0 {
			return nil
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = entry
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uname, hdr.Gname = "", ""
		if !idm.Empty() {
			hdr.Uid, hdr.Gid = toContainerIDs(idm, hdr.Uid, hdr.Gid)
		}
		hdr.Format = tar.FormatPAX
		hdr.ModTime = fi.ModTime().Truncate(time.Second)
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && st.Nlink > 1 {
			if first, ok := inodes[st.Ino]; ok {
				hdr.Typeflag = tar.TypeLink
				hdr.Linkname = first
				hdr.Size = 0
			} else {
				inodes[st.Ino] = entry
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// extractTar unpacks a tar into the container directory dest of the view.
// Every entry's parent is resolved inside the view's root, so neither a
// "../" name nor a symlink in the container (or earlier in the same
// archive) can place a file outside it.
func extractTar(r io.Reader, v *fsView, dest string, noOverwriteDirNonDir bool, uid, gid int) error {
	tr := tar.NewReader(r)
	type dirTime struct {
		path string
		hdr  *tar.Header
	}
	var dirs []dirTime
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return errdefs.ErrInvalidArgument.WithMessage("invalid tar: " + err.Error())
		}
		name := filepath.Clean("/" + hdr.Name)
		if name == "/" {
			continue
		}
		cpath := filepath.Join(dest, name)
		parent, err := securejoin.SecureJoin(v.root, filepath.Dir(cpath))
		if err != nil {
			return err
		}
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return err
		}
		target := filepath.Join(parent, filepath.Base(cpath))
		if fi, err := os.Lstat(target); err == nil {
			isDir := hdr.Typeflag == tar.TypeDir
			if noOverwriteDirNonDir && fi.IsDir() != isDir {
				if fi.IsDir() {
					return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("cannot overwrite directory %q with non-directory %q", cpath, hdr.Name))
				}
				return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("cannot overwrite non-directory %q with directory %q", cpath, hdr.Name))
			}
			if !(fi.IsDir() && isDir) {
				if err := os.RemoveAll(target); err != nil {
					return err
				}
			}
		}
		mode := os.FileMode(hdr.Mode) & 0o7777
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(target, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return err
			}
		case tar.TypeLink:
			src, err := securejoin.SecureJoin(v.root, filepath.Join(dest, filepath.Clean("/"+hdr.Linkname)))
			if err != nil {
				return err
			}
			if err := os.Link(src, target); err != nil {
				return err
			}
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			m := uint32(mode)
			switch hdr.Typeflag {
			case tar.TypeChar:
				m |= unix.S_IFCHR
			case tar.TypeBlock:
				m |= unix.S_IFBLK
			default:
				m |= unix.S_IFIFO
			}
			if err := unix.Mknod(target, m, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))); err != nil {
				return err
			}
		default:
			continue
		}
		u, g := hdr.Uid, hdr.Gid
		if uid >= 0 {
			u, g = uid, gid
		}
		if !v.idmap.Empty() {
			if u, g, err = v.idmap.ToHost(u, g); err != nil {
				return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("%s: owner %d:%d is outside the container's user namespace", hdr.Name, hdr.Uid, hdr.Gid))
			}
		}
		if err := os.Lchown(target, u, g); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeSymlink {
			continue
		}
		if err := unix.Chmod(target, uint32(mode)); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeDir {
			dirs = append(dirs, dirTime{target, hdr})
			continue
		}
		_ = os.Chtimes(target, hdr.AccessTime, hdr.ModTime)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Chtimes(dirs[i].path, dirs[i].hdr.AccessTime, dirs[i].hdr.ModTime)
	}
	return nil
}
