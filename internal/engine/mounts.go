package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/berth-engine/berth/internal/container"
	"github.com/berth-engine/berth/internal/volume"
	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
	containertypes "github.com/moby/moby/api/types/container"
	eventtypes "github.com/moby/moby/api/types/events"
	mounttypes "github.com/moby/moby/api/types/mount"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

var validPropagation = map[string]bool{"private": true, "rprivate": true, "shared": true, "rshared": true, "slave": true, "rslave": true}

func invalidSpec(spec string) error {
	return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid volume specification: '%s'", spec))
}

// parseBind parses one -v SRC:DST[:MODE] (docker's linux parser).
func parseBind(spec string) (container.MountPoint, error) {
	parts := strings.Split(spec, ":")
	var mp container.MountPoint
	switch len(parts) {
	case 2, 3:
	default:
		return mp, invalidSpec(spec)
	}
	src, dst := parts[0], parts[1]
	if src == "" || dst == "" {
		return mp, invalidSpec(spec)
	}
	if !filepath.IsAbs(dst) {
		return mp, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid mount config for type \"bind\": invalid mount path: '%s' mount path must be absolute", dst))
	}
	mp.Destination = filepath.Clean(dst)
	mp.RW = true
	mp.CopyData = true
	if len(parts) == 3 {
		mp.Mode = parts[2]
		var rwSeen, labelSeen bool
		for _, o := range strings.Split(parts[2], ",") {
			switch {
			case o == "ro" || o == "rw":
				if rwSeen {
					return mp, errdefs.ErrInvalidArgument.WithMessage("invalid mode: " + parts[2])
				}
				rwSeen, mp.RW = true, o == "rw"
			case o == "z" || o == "Z":
				if labelSeen {
					return mp, errdefs.ErrInvalidArgument.WithMessage("invalid mode: " + parts[2])
				}
				labelSeen = true // SELinux relabelling: nothing to do without SELinux
			case o == "nocopy":
				mp.CopyData = false
			case validPropagation[o]:
				if mp.Propagation != "" {
					return mp, errdefs.ErrInvalidArgument.WithMessage("invalid mode: " + parts[2])
				}
				mp.Propagation = o
			default:
				return mp, errdefs.ErrInvalidArgument.WithMessage("invalid mode: " + parts[2])
			}
		}
	}
	if filepath.IsAbs(src) {
		mp.Type = string(mounttypes.TypeBind)
		mp.Source = filepath.Clean(src)
		mp.CopyData = false
		if mp.Propagation == "" {
			mp.Propagation = "rprivate"
		}
		return mp, nil
	}
	if mp.Propagation != "" {
		return mp, errdefs.ErrInvalidArgument.WithMessage("invalid mode: " + mp.Mode)
	}
	if err := volume.ValidateName(src); err != nil {
		return mp, errdefs.ErrInvalidArgument.WithMessage("create " + src + ": " + err.Error())
	}
	mp.Type = string(mounttypes.TypeVolume)
	mp.Name = src
	return mp, nil
}

// parseMount checks one --mount (HostConfig.Mounts entry) as docker does.
func parseMount(m mounttypes.Mount) (container.MountPoint, error) {
	bad := func(format string, a ...any) (container.MountPoint, error) {
		return container.MountPoint{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid mount config for type %q: ", m.Type) + fmt.Sprintf(format, a...))
	}
	if m.Target == "" {
		return bad("field Target must not be empty")
	}
	if !filepath.IsAbs(m.Target) {
		return bad("invalid mount path: '%s' mount path must be absolute", m.Target)
	}
	mp := container.MountPoint{Type: string(m.Type), Destination: filepath.Clean(m.Target), RW: !m.ReadOnly}
	switch m.Type {
	case mounttypes.TypeBind:
		if m.Source == "" {
			return bad("field Source must not be empty")
		}
		if !filepath.IsAbs(m.Source) {
			return bad("invalid mount path: '%s' mount path must be absolute", m.Source)
		}
		if m.VolumeOptions != nil || m.TmpfsOptions != nil {
			return bad("field VolumeOptions/TmpfsOptions must not be specified")
		}
		mp.Source = filepath.Clean(m.Source)
		mp.Propagation = "rprivate"
		if b := m.BindOptions; b != nil {
			if b.Propagation != "" {
				if !validPropagation[string(b.Propagation)] {
					return bad("invalid propagation mode: %s", b.Propagation)
				}
				mp.Propagation = string(b.Propagation)
			}
			mp.NonRecursive = b.NonRecursive
		}
		if _, err := os.Stat(mp.Source); err != nil {
			if errors.Is(err, fs.ErrNotExist) && !(m.BindOptions != nil && m.BindOptions.CreateMountpoint) {
				return bad("bind source path does not exist: %s", mp.Source)
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return bad("%v", err)
			}
		}
	case mounttypes.TypeVolume:
		if m.BindOptions != nil || m.TmpfsOptions != nil {
			return bad("field BindOptions/TmpfsOptions must not be specified")
		}
		if m.Source != "" {
			if err := volume.ValidateName(m.Source); err != nil {
				return container.MountPoint{}, err
			}
		}
		mp.Name = m.Source
		mp.CopyData = true
		if v := m.VolumeOptions; v != nil {
			mp.CopyData = !v.NoCopy
			if v.Subpath != "" {
				if filepath.IsAbs(v.Subpath) || strings.HasPrefix(filepath.Clean(v.Subpath), "..") {
					return bad("subpath must be a relative path within the volume")
				}
				mp.Subpath = filepath.Clean(v.Subpath)
				mp.CopyData = false // docker copies up only whole volumes
			}
			if v.DriverConfig != nil && v.DriverConfig.Name != "" && v.DriverConfig.Name != volume.DriverName {
				return container.MountPoint{}, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("error looking up volume plugin %s: plugin %q not found", v.DriverConfig.Name, v.DriverConfig.Name))
			}
		}
	case mounttypes.TypeTmpfs:
		if m.Source != "" {
			return bad("field Source must not be specified")
		}
		if m.BindOptions != nil || m.VolumeOptions != nil {
			return bad("field BindOptions/VolumeOptions must not be specified")
		}
		var data []string
		if t := m.TmpfsOptions; t != nil {
			if t.SizeBytes < 0 {
				return bad("invalid tmpfs size %d", t.SizeBytes)
			}
			if t.SizeBytes > 0 {
				data = append(data, "size="+strconv.FormatInt(t.SizeBytes, 10))
			}
			if t.Mode != 0 {
				// docker's CLI sends the octal digits as they were
				// typed (1777 has 0o1000 for the sticky bit).
				mode := uint64(t.Mode & 0o7777)
				if t.Mode&fs.ModeSticky != 0 {
					mode |= 0o1000
				}
				data = append(data, "mode="+strconv.FormatUint(mode, 8))
			}
			for _, o := range t.Options {
				data = append(data, strings.Join(o, "="))
			}
		}
		mp.TmpfsOptions = data
	default:
		return bad("mount type unknown")
	}
	return mp, nil
}

// planMounts turns the create request's -v, --mount, --volumes-from and the
// (merged) Config.Volumes into the container's mount points, with docker's
// precedence: binds and --mount replace volumes-from and VOLUMEs at the
// same destination; a duplicate among binds and --mount is an error.
func (s *ContainerService) planMounts(cfg *containertypes.Config, hc *containertypes.HostConfig) ([]container.MountPoint, error) {
	byDest := map[string]container.MountPoint{}
	var order []string
	put := func(mp container.MountPoint) {
		if _, ok := byDest[mp.Destination]; !ok {
			order = append(order, mp.Destination)
		}
		byDest[mp.Destination] = mp
	}
	for _, spec := range hc.VolumesFrom {
		id, mode, _ := strings.Cut(spec, ":")
		rwOverride := ""
		switch mode {
		case "":
		case "ro", "rw":
			rwOverride = mode
		default:
			if !strings.Contains(mode, "ro") && !strings.Contains(mode, "rw") && mode != "z" && mode != "Z" {
				return nil, errdefs.ErrInvalidArgument.WithMessage("invalid mode: " + mode)
			}
			if strings.Contains(mode, "ro") {
				rwOverride = "ro"
			}
		}
		from, err := s.get(id)
		if err != nil {
			return nil, err
		}
		for _, mp := range from.snapshot().MountPoints {
			mp.Anonymous = false
			mp.CopyData = false
			if rwOverride != "" {
				mp.RW = rwOverride == "rw"
			}
			put(mp)
		}
	}
	user := map[string]bool{}
	for _, b := range hc.Binds {
		mp, err := parseBind(b)
		if err != nil {
			return nil, err
		}
		if user[mp.Destination] {
			return nil, errdefs.ErrInvalidArgument.WithMessage("Duplicate mount point: " + mp.Destination)
		}
		user[mp.Destination] = true
		put(mp)
	}
	for _, m := range hc.Mounts {
		mp, err := parseMount(m)
		if err != nil {
			return nil, err
		}
		if user[mp.Destination] {
			return nil, errdefs.ErrInvalidArgument.WithMessage("Duplicate mount point: " + mp.Destination)
		}
		user[mp.Destination] = true
		put(mp)
	}
	vols := make([]string, 0, len(cfg.Volumes))
	for d := range cfg.Volumes {
		vols = append(vols, d)
	}
	slices.Sort(vols)
	for _, d := range vols {
		if !filepath.IsAbs(d) {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid mount config for type \"volume\": invalid mount path: '%s' mount path must be absolute", d))
		}
		d = filepath.Clean(d)
		if _, ok := byDest[d]; ok {
			continue
		}
		if _, ok := hc.Tmpfs[d]; ok {
			continue
		}
		put(container.MountPoint{Type: string(mounttypes.TypeVolume), Destination: d, RW: true, CopyData: true})
	}
	for d := range hc.Tmpfs {
		if user[filepath.Clean(d)] {
			return nil, errdefs.ErrInvalidArgument.WithMessage("Duplicate mount point: " + filepath.Clean(d))
		}
		delete(byDest, filepath.Clean(d))
	}
	out := make([]container.MountPoint, 0, len(order))
	for _, d := range order {
		if mp, ok := byDest[d]; ok {
			out = append(out, mp)
		}
	}
	return out, nil
}

// prepareMounts creates what the mount points need before the container's
// record is written: named volumes that do not exist yet, anonymous
// volumes, the sources of -v binds. It returns an undo for a create that
// fails later, and release, which drops the hold on the volumes that
// keeps volume rm away until the record exists (call it after either).
func (s *ContainerService) prepareMounts(mps []container.MountPoint, hc *containertypes.HostConfig) (undo, release func(), err error) {
	var made, held []string
	release = func() {
		s.mu.Lock()
		for _, n := range held {
			if s.creating[n]--; s.creating[n] <= 0 {
				delete(s.creating, n)
			}
		}
		held = nil
		s.mu.Unlock()
	}
	undo = func() {
		release()
		for _, n := range made {
			_ = s.st.Volumes.Remove(n)
		}
	}
	fail := func(err error) (func(), func(), error) {
		undo()
		return nil, nil, err
	}
	bindFromV := map[string]bool{}
	for _, b := range hc.Binds {
		if mp, err := parseBind(b); err == nil && mp.Type == "bind" {
			bindFromV[mp.Destination] = true
		}
	}
	for i := range mps {
		mp := &mps[i]
		switch mp.Type {
		case "volume":
			if s.st.Volumes == nil {
				return fail(errdefs.ErrNotImplemented.WithMessage("this daemon has no volume store"))
			}
			var labels, opts map[string]string
			if mp.Name == "" {
				mp.Name = volume.NewAnonymousName()
				mp.Anonymous = true
				labels = map[string]string{volume.AnonymousLabel: ""}
			}
			for _, m := range hc.Mounts {
				if filepath.Clean(m.Target) == mp.Destination && m.VolumeOptions != nil {
					if m.VolumeOptions.DriverConfig != nil {
						opts = m.VolumeOptions.DriverConfig.Options
					}
					if len(m.VolumeOptions.Labels) > 0 {
						if labels == nil {
							labels = map[string]string{}
						}
						for k, v := range m.VolumeOptions.Labels {
							labels[k] = v
						}
					}
				}
			}
			s.mu.Lock()
			if s.creating == nil {
				s.creating = map[string]int{}
			}
			s.creating[mp.Name]++
			held = append(held, mp.Name)
			s.mu.Unlock()
			v, created, err := s.st.Volumes.Create(mp.Name, opts, labels)
			if err != nil {
				return fail(err)
			}
			if created {
				made = append(made, v.Name)
				s.emitVolume(v.Name, eventtypes.ActionCreate, map[string]string{"driver": volume.DriverName})
			}
		case "bind":
			if bindFromV[mp.Destination] {
				if _, err := os.Stat(mp.Source); errors.Is(err, fs.ErrNotExist) {
					// docker's -v creates a missing source directory.
					if err := s.mkdirBindSource(mp.Source, hc); err != nil {
						return fail(errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("error while creating mount source path '%s': %v", mp.Source, err)))
					}
				}
			}
		}
	}
	return undo, release, nil
}

// specMounts resolves the container's mount points into OCI mounts at
// start, mounting device volumes and copying the image's content into new
// empty volumes. It reports whether a mount point changed (copy-up done).
func (s *ContainerService) specMounts(c *container.Container, rootfs string) ([]specs.Mount, bool, error) {
	var out []specs.Mount
	changed := false
	for i := range c.MountPoints {
		mp := &c.MountPoints[i]
		m := specs.Mount{Destination: mp.Destination}
		switch mp.Type {
		case "bind":
			if _, err := os.Stat(mp.Source); err != nil {
				return nil, false, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid mount config for type \"bind\": bind source path does not exist: %s", mp.Source))
			}
			m.Type, m.Source = "bind", mp.Source
			m.Options = []string{"rbind"}
			if mp.NonRecursive {
				m.Options = []string{"bind"}
			}
			m.Options = append(m.Options, mp.Propagation)
		case "volume":
			p, err := s.st.Volumes.Mount(mp.Name, c.ID)
			if err != nil {
				return nil, false, err
			}
			s.emitVolume(mp.Name, eventtypes.ActionMount, map[string]string{"container": c.ID, "destination": mp.Destination, "driver": volume.DriverName, "propagation": "", "read/write": strconv.FormatBool(mp.RW)})
			if mp.Subpath != "" {
				sp, err := securejoin.SecureJoin(p, mp.Subpath)
				if err == nil {
					_, err = os.Stat(sp)
				}
				if err != nil {
					return nil, false, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("cannot access path %s in volume %s: %v", mp.Subpath, mp.Name, err))
				}
				p = sp
			}
			if mp.CopyData {
				if s.st.Volumes.Empty(mp.Name) {
					if src, err := securejoin.SecureJoin(rootfs, mp.Destination); err == nil {
						if err := copyUp(src, p); err != nil {
							return nil, false, fmt.Errorf("copy image content into volume %s: %w", mp.Name, err)
						}
					}
				}
				mp.CopyData = false
				changed = true
			}
			m.Type, m.Source = "bind", p
			m.Options = []string{"rbind", "rprivate"}
		case "tmpfs":
			m.Type, m.Source = "tmpfs", "tmpfs"
			m.Options = append([]string{"noexec", "nosuid", "nodev"}, mp.TmpfsOptions...)
		default:
			continue
		}
		if !mp.RW {
			m.Options = append(m.Options, "ro")
		}
		out = append(out, m)
	}
	return out, changed, nil
}

// reacquireMounts takes the volume holds of a container found running at
// start-up (its device volumes are still mounted).
func (s *ContainerService) reacquireMounts(c *container.Container) {
	if s.st.Volumes == nil {
		return
	}
	for _, mp := range c.MountPoints {
		if mp.Type == "volume" {
			if _, err := s.st.Volumes.Mount(mp.Name, c.ID); err != nil {
				s.log.Warn("volume of a running container", "volume", mp.Name, "err", err)
			}
		}
	}
}

// releaseMounts lets go of the container's device volumes after it stopped.
func (s *ContainerService) releaseMounts(c *container.Container) {
	if s.st.Volumes == nil {
		return
	}
	for _, mp := range c.MountPoints {
		if mp.Type == "volume" {
			// Another running container keeps a device volume mounted,
			// even one not reattached yet at start-up.
			for _, id := range s.VolumeUsers(mp.Name) {
				if e, err := s.get(id); id != c.ID && err == nil && e.snapshot().State.Running() {
					_, _ = s.st.Volumes.Mount(mp.Name, id)
				}
			}
			if err := s.st.Volumes.Unmount(mp.Name, c.ID); err != nil {
				s.log.Warn("unmount volume", "volume", mp.Name, "err", err)
			}
			s.emitVolume(mp.Name, eventtypes.ActionUnmount, map[string]string{"container": c.ID, "driver": volume.DriverName})
		}
	}
}

// removeAnonymousVolumes is rm -v: the container's anonymous volumes go,
// unless another container uses them.
func (s *ContainerService) removeAnonymousVolumes(ctx context.Context, c *container.Container) {
	for _, mp := range c.MountPoints {
		if mp.Type != "volume" || !mp.Anonymous {
			continue
		}
		if len(s.VolumeUsers(mp.Name)) > 0 {
			continue
		}
		if err := s.st.Volumes.Remove(mp.Name); err != nil {
			s.log.Warn("remove anonymous volume", "volume", mp.Name, "err", err)
			continue
		}
		s.emitVolume(mp.Name, eventtypes.ActionDestroy, map[string]string{"driver": volume.DriverName})
	}
}

// VolumeUsers lists the containers that reference a volume, including a
// create in flight that will.
func (s *ContainerService) VolumeUsers(name string) []string {
	var ids []string
	s.mu.RLock()
	if s.creating[name] > 0 {
		ids = append(ids, "(a container being created)")
	}
	s.mu.RUnlock()
	for _, e := range s.all() {
		c := e.snapshot()
		for _, mp := range c.MountPoints {
			if mp.Type == "volume" && mp.Name == name {
				ids = append(ids, c.ID)
				break
			}
		}
	}
	return ids
}

// inspectMounts is inspect's .Mounts.
func (s *ContainerService) inspectMounts(c *container.Container) []containertypes.MountPoint {
	out := make([]containertypes.MountPoint, 0, len(c.MountPoints))
	for _, mp := range c.MountPoints {
		m := containertypes.MountPoint{
			Type:        mounttypes.Type(mp.Type),
			Name:        mp.Name,
			Source:      mp.Source,
			Destination: mp.Destination,
			Mode:        mp.Mode,
			RW:          mp.RW,
			Propagation: mounttypes.Propagation(mp.Propagation),
		}
		if mp.Type == "volume" {
			m.Driver = volume.DriverName
			if s.st.Volumes != nil {
				m.Source = s.st.Volumes.Path(mp.Name)
			}
			if m.Mode == "" && !mp.Anonymous {
				m.Mode = "z" // docker's for named volumes
			}
		}
		out = append(out, m)
	}
	return out
}

// emitVolume publishes a volume event.
func (s *ContainerService) emitVolume(name string, action eventtypes.Action, attrs map[string]string) {
	if s.ev == nil {
		return
	}
	s.ev.Publish(eventtypes.Message{
		Type:   eventtypes.VolumeEventType,
		Action: action,
		Actor:  eventtypes.Actor{ID: name, Attributes: attrs},
	})
}

// copyUp copies the tree at src (the image's content at a volume's
// destination) into the empty volume dst, keeping owners, modes, times
// and symlinks. A missing src is nothing to copy.
func copyUp(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil || !fi.IsDir() {
		return nil
	}
	if err := copyMeta(src, dst, fi); err != nil {
		return err
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == src {
			return nil
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case fi.Mode().IsDir():
			if err := os.Mkdir(target, 0o700); err != nil {
				return err
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(l, target); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if err := copyFile(p, target); err != nil {
				return err
			}
		default:
			st := fi.Sys().(*syscall.Stat_t)
			if err := unix.Mknod(target, st.Mode, int(st.Rdev)); err != nil {
				return err
			}
		}
		return copyMeta(p, target, fi)
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := out.ReadFrom(in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func copyMeta(src, dst string, fi fs.FileInfo) error {
	st := fi.Sys().(*syscall.Stat_t)
	if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		ts := []unix.Timespec{unix.NsecToTimespec(st.Atim.Nano()), unix.NsecToTimespec(st.Mtim.Nano())}
		return unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err := unix.Chmod(dst, st.Mode&07777); err != nil {
		return err
	}
	ts := []unix.Timespec{unix.NsecToTimespec(st.Atim.Nano()), unix.NsecToTimespec(st.Mtim.Nano())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, 0)
}
