package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"

	"github.com/berth-engine/berth/internal/mountlist"
	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// MountAll mounts mounts at target, in order (a later mount stacks on an
// earlier one). If one fails, the ones it already made are unmounted again.
//
// Overlay mounts whose options do not fit in the one page that mount(2)
// accepts (many layers with long paths) are made with the new mount API
// (fsopen/fsconfig "lowerdir+" one layer per call) or, on kernels without
// it, with paths relative to their common directory.
func MountAll(mounts []Mount, target string) error {
	for i, m := range mounts {
		if err := mountOne(m, target); err != nil {
			for j := 0; j < i; j++ {
				_ = unmountOnce(target)
			}
			return fmt.Errorf("mount %s %s at %s: %w", m.Type, m.Source, target, err)
		}
	}
	return nil
}

// UnmountAll unmounts everything mounted at target and below it, deepest
// first, including mounts stacked on target itself. A target that is not
// mounted, or does not exist, is not an error.
//
// On Linux 6.8+ it looks up only target's own mounts (listmount and
// statmount), at a cost that does not grow with the number of mounts on
// the host; elsewhere it reads /proc/self/mountinfo.
func UnmountAll(target string) error {
	real, err := filepath.EvalSymlinks(target)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		// A dead mount (ENOTCONN, ESTALE) cannot be resolved but can still
		// be unmounted by its path.
		real = target
	}
	if real, err = filepath.Abs(real); err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	if useMountlist {
		err := unmountTree(real)
		if !errors.Is(err, mountlist.ErrUnsupported) && !errors.Is(err, errNeedMountinfo) {
			return err
		}
	}
	return unmountAllMountinfo(real)
}

// useMountlist is false in tests of the mountinfo fallback.
var useMountlist = true

// errNeedMountinfo sends unmountTree's caller to the mountinfo fallback:
// a path that statx cannot look at (a dead mount), a directory it cannot
// read, a listmount the kernel refuses.
var errNeedMountinfo = errors.New("mount lookup needs mountinfo")

// unmountTree is UnmountAll through mountlist. While path is a mount
// point it unmounts what is mounted below the topmost mount there, then
// that mount. Once it is not (any more), anything still mounted further
// down sits on a directory of path's tree: those are found by walking it.
func unmountTree(path string) error {
	for range 256 {
		id, isRoot, err := mountlist.Lookup(path)
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		if errors.Is(err, mountlist.ErrUnsupported) {
			return err
		}
		if err != nil {
			return fmt.Errorf("%w: %w", errNeedMountinfo, err)
		}
		if !isRoot {
			return unmountBelow(path, id, true)
		}
		below, err := mountlist.Descendants(id)
		if err != nil {
			return fmt.Errorf("%w: unmount %s: %w", errNeedMountinfo, path, err)
		}
		sort.SliceStable(below, func(i, j int) bool {
			return len(below[i].Mountpoint) > len(below[j].Mountpoint)
		})
		for _, m := range below {
			if err := unmountLoop(m.Mountpoint); err != nil {
				return err
			}
		}
		if err := unmountOnce(path); err != nil && !errors.Is(err, unix.EINVAL) {
			// EINVAL: unmounted meanwhile; look again.
			if errors.Is(err, unix.ENOENT) {
				return nil
			}
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted after 256 unmounts", path)
}

// unmountBelow unmounts whatever is mounted on a directory (and with
// files, on a file) of dir's tree, which is on mount dirMount: a mount
// point shows as the root of another mount. Only entries of dir's own
// filesystem are descended into, so a caller's unmounted rootfs (an empty
// directory) costs one directory read.
func unmountBelow(dir string, dirMount uint64, files bool) error {
	f, err := os.Open(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
			return nil
		}
		return fmt.Errorf("%w: unmount below %s: %w", errNeedMountinfo, dir, err)
	}
	entries, err := f.ReadDir(-1)
	f.Close()
	if errors.Is(err, unix.ENOTDIR) {
		return nil // a file, unmounted
	}
	if err != nil {
		return fmt.Errorf("%w: unmount below %s: %w", errNeedMountinfo, dir, err)
	}
	for _, e := range entries {
		if !files && !e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		id, isRoot, err := mountlist.Lookup(p)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%w: %w", errNeedMountinfo, err)
		}
		switch {
		case isRoot || id != dirMount:
			if err := unmountTree(p); err != nil {
				return err
			}
		case e.IsDir():
			if err := unmountBelow(p, dirMount, files); err != nil {
				return err
			}
		}
	}
	return nil
}

// UnmountDirs prepares dir's tree for deletion: it unmounts what is
// mounted at dir or on one of its directories, which os.RemoveAll would
// otherwise descend into and empty. It looks at directories only, one
// statx each: a tree with a mount on a file fails to delete with EBUSY,
// and UnmountAll then finds that mount.
func UnmountDirs(dir string) error {
	real, err := filepath.EvalSymlinks(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err == nil && useMountlist {
		id, isRoot, err := mountlist.Lookup(real)
		switch {
		case errors.Is(err, unix.ENOENT):
			return nil
		case err == nil && !isRoot:
			err = unmountBelow(real, id, false)
			if !errors.Is(err, mountlist.ErrUnsupported) && !errors.Is(err, errNeedMountinfo) {
				return err
			}
		}
	}
	return UnmountAll(dir)
}

// unmountAllMountinfo is UnmountAll through /proc/self/mountinfo, for
// kernels without listmount.
func unmountAllMountinfo(real string) error {
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(real))
	if err != nil {
		return fmt.Errorf("unmount %s: %w", real, err)
	}
	sort.SliceStable(infos, func(i, j int) bool {
		return len(infos[i].Mountpoint) > len(infos[j].Mountpoint)
	})
	for _, m := range infos {
		if m.Mountpoint == real {
			continue // handled last, as often as it is stacked
		}
		if err := unmountLoop(m.Mountpoint); err != nil {
			return err
		}
	}
	return unmountLoop(real)
}

// unmountLoop unmounts path until nothing is mounted there any more.
func unmountLoop(path string) error {
	// Bounded so that a kernel that keeps saying yes cannot spin us forever.
	for range 256 {
		if err := unmountOnce(path); err != nil {
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
				return nil // not (or no longer) a mount point
			}
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted after 256 unmounts", path)
}

// unmountOnce removes the top mount at path. A busy mount (a process still
// has its cwd or a file there) is detached instead, so that the directory
// can be cleaned up; the kernel frees it once the last user is gone.
func unmountOnce(path string) error {
	for {
		err := unix.Unmount(path, 0)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EBUSY):
			err = unix.Unmount(path, unix.MNT_DETACH)
			if errors.Is(err, unix.EINTR) {
				continue
			}
		}
		return err
	}
}

// mountFlag is one mount(2) flag an option sets or clears.
type mountFlag struct {
	clear bool
	flag  uintptr
}

// mountFlags are the generic (not filesystem-specific) mount options.
var mountFlags = map[string]mountFlag{
	"defaults":      {false, 0},
	"ro":            {false, unix.MS_RDONLY},
	"rw":            {true, unix.MS_RDONLY},
	"suid":          {true, unix.MS_NOSUID},
	"nosuid":        {false, unix.MS_NOSUID},
	"dev":           {true, unix.MS_NODEV},
	"nodev":         {false, unix.MS_NODEV},
	"exec":          {true, unix.MS_NOEXEC},
	"noexec":        {false, unix.MS_NOEXEC},
	"sync":          {false, unix.MS_SYNCHRONOUS},
	"async":         {true, unix.MS_SYNCHRONOUS},
	"dirsync":       {false, unix.MS_DIRSYNC},
	"atime":         {true, unix.MS_NOATIME},
	"noatime":       {false, unix.MS_NOATIME},
	"diratime":      {true, unix.MS_NODIRATIME},
	"nodiratime":    {false, unix.MS_NODIRATIME},
	"relatime":      {false, unix.MS_RELATIME},
	"norelatime":    {true, unix.MS_RELATIME},
	"strictatime":   {false, unix.MS_STRICTATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME},
	"bind":          {false, unix.MS_BIND},
	"rbind":         {false, unix.MS_BIND | unix.MS_REC},
}

// propagationFlags change a mount's propagation after it is made.
var propagationFlags = map[string]uintptr{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// parsedOptions is a Mount's options split the way mount(2) wants them.
type parsedOptions struct {
	flags       uintptr
	propagation uintptr
	data        []string // filesystem options, e.g. lowerdir=…
}

func parseOptions(options []string) parsedOptions {
	var p parsedOptions
	for _, o := range options {
		if f, ok := mountFlags[o]; ok {
			if f.clear {
				p.flags &^= f.flag
			} else {
				p.flags |= f.flag
			}
			continue
		}
		if f, ok := propagationFlags[o]; ok {
			p.propagation = f
			continue
		}
		p.data = append(p.data, o)
	}
	return p
}

// readOnly says whether options make a read-only mount.
func readOnly(options []string) bool {
	return parseOptions(options).flags&unix.MS_RDONLY != 0
}

// Volatile returns mounts with overlayfs's "volatile" option on the
// writable overlays. The kernel then never syncs their upper directory,
// at unmount either, which saves 10-30 ms per container on this kind of
// host. Only for writable layers thrown away after one run (--rm
// containers, build steps): fsync inside such a container is a no-op and
// a host crash can lose what it wrote.
func Volatile(mounts []Mount) []Mount {
	out := make([]Mount, len(mounts))
	for i, m := range mounts {
		out[i] = m
		if m.Type == "overlay" && slices.ContainsFunc(m.Options, func(o string) bool { return strings.HasPrefix(o, "upperdir=") }) {
			out[i].Options = append(slices.Clone(m.Options), "volatile")
		}
	}
	return out
}

// clearVolatileMark removes the mark a volatile overlay leaves in its work
// directory, without which the kernel refuses every later mount of that
// upper directory. Volatile layers are thrown away after their run, so a
// second mount (a restart) may reuse them whatever a crash left behind.
func clearVolatileMark(p parsedOptions) error {
	for _, o := range p.data {
		if w, ok := strings.CutPrefix(o, "workdir="); ok {
			if err := os.RemoveAll(filepath.Join(w, "work", "incompat")); err != nil {
				return fmt.Errorf("clear volatile overlay mark: %w", err)
			}
		}
	}
	return nil
}

func mountOne(m Mount, target string) error {
	if m.Type == "overlay" {
		if err := clearVolatileMark(parseOptions(m.Options)); err != nil {
			return err
		}
		if i := slices.Index(m.Options, "volatile"); i >= 0 {
			err := mountOneAsIs(m, target)
			if !errors.Is(err, unix.EINVAL) {
				return err
			}
			// Kernels before 5.10 have no volatile overlays.
			m.Options = slices.Delete(slices.Clone(m.Options), i, i+1)
		}
	}
	return mountOneAsIs(m, target)
}

func mountOneAsIs(m Mount, target string) error {
	p := parseOptions(m.Options)
	if m.Type == "bind" || p.flags&unix.MS_BIND != 0 {
		if err := mountBind(m.Source, target, p); err != nil {
			return err
		}
	} else {
		data := strings.Join(p.data, ",")
		switch {
		case len(data) < os.Getpagesize():
			if err := unix.Mount(m.Source, target, m.Type, p.flags, data); err != nil {
				return err
			}
		case m.Type == "overlay":
			if err := mountOverlayLong(target, p); err != nil {
				return err
			}
		default:
			return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("%s mount options are %d bytes, more than mount(2) accepts", m.Type, len(data)))
		}
	}
	if p.propagation != 0 {
		if err := unix.Mount("", target, "", p.propagation, ""); err != nil {
			_ = unmountOnce(target)
			return fmt.Errorf("set propagation: %w", err)
		}
	}
	return nil
}

// mountBind makes a bind mount. The kernel ignores flags such as MS_RDONLY
// on the bind itself, so they are applied with a second, remounting call.
func mountBind(source, target string, p parsedOptions) error {
	bind := p.flags&(unix.MS_BIND|unix.MS_REC) | unix.MS_BIND
	if err := unix.Mount(source, target, "", bind, strings.Join(p.data, ",")); err != nil {
		return err
	}
	if rest := p.flags &^ (unix.MS_BIND | unix.MS_REC); rest != 0 {
		if err := unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|rest, ""); err != nil {
			_ = unmountOnce(target)
			return fmt.Errorf("remount: %w", err)
		}
	}
	return nil
}

// mountAttrs maps the mount(2) flags an overlay may carry to the mount
// attributes of fsmount(2).
var mountAttrs = map[uintptr]int{
	unix.MS_RDONLY:      unix.MOUNT_ATTR_RDONLY,
	unix.MS_NOSUID:      unix.MOUNT_ATTR_NOSUID,
	unix.MS_NODEV:       unix.MOUNT_ATTR_NODEV,
	unix.MS_NOEXEC:      unix.MOUNT_ATTR_NOEXEC,
	unix.MS_NOATIME:     unix.MOUNT_ATTR_NOATIME,
	unix.MS_NODIRATIME:  unix.MOUNT_ATTR_NODIRATIME,
	unix.MS_RELATIME:    unix.MOUNT_ATTR_RELATIME,
	unix.MS_STRICTATIME: unix.MOUNT_ATTR_STRICTATIME,
}

// mountOverlayLong mounts an overlay whose options are too long for
// mount(2): first with the new mount API, which takes one lower layer per
// call (Linux 6.8+), else with relative paths.
func mountOverlayLong(target string, p parsedOptions) error {
	err := mountOverlayFsconfig(target, p, true)
	if err == nil {
		return nil
	}
	if !errors.Is(err, errNoLowerdirPlus) {
		return err
	}
	if rerr := mountOverlayRelative(target, p); rerr != nil {
		return fmt.Errorf("%w; with relative paths: %w", err, rerr)
	}
	return nil
}

// errNoLowerdirPlus says the kernel lacks fsopen or the "lowerdir+" overlay
// parameter, so the relative-path fallback should be tried.
var errNoLowerdirPlus = errors.New("kernel does not support the lowerdir+ overlay parameter")

// mountOverlayFsconfig mounts an overlay with the new mount API. With
// perLayer, lower layers are passed one per "lowerdir+" call, which lifts
// the one-page limit; without, lowerdir is passed whole (for the kernel's
// error messages, which mount(2) does not return).
func mountOverlayFsconfig(target string, p parsedOptions, perLayer bool) error {
	attrs := 0
	for flag, attr := range mountAttrs {
		if p.flags&flag != 0 {
			attrs |= attr
		}
	}
	if other := p.flags &^ (unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC |
		unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME | unix.MS_STRICTATIME); other != 0 {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("mount flags %#x are not supported on a long overlay mount", other))
	}
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("fsopen: %w: %w", errNoLowerdirPlus, err)
		}
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fd)
	// fsconfig errors carry their reason in the context's message log.
	withLog := func(what string, err error) error {
		if msg := fsLog(fd); msg != "" {
			return fmt.Errorf("%s: %w (%s)", what, err, msg)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	for _, o := range p.data {
		key, value, hasValue := strings.Cut(o, "=")
		switch {
		case key == "lowerdir" && perLayer:
			lowers, data := splitLowerdir(value)
			for i, l := range lowers {
				if err := unix.FsconfigSetString(fd, "lowerdir+", l); err != nil {
					if i == 0 && errors.Is(err, unix.EINVAL) {
						return fmt.Errorf("%w: %w", errNoLowerdirPlus, withLog("fsconfig lowerdir+", err))
					}
					return withLog("fsconfig lowerdir+ "+l, err)
				}
			}
			for _, d := range data {
				if err := unix.FsconfigSetString(fd, "datadir+", d); err != nil {
					return withLog("fsconfig datadir+ "+d, err)
				}
			}
		case hasValue:
			if err := unix.FsconfigSetString(fd, key, value); err != nil {
				return withLog("fsconfig "+o, err)
			}
		default:
			if err := unix.FsconfigSetFlag(fd, key); err != nil {
				return withLog("fsconfig "+o, err)
			}
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return withLog("create overlay", err)
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, attrs)
	if err != nil {
		return withLog("fsmount overlay", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount to %s: %w", target, err)
	}
	return nil
}

// fsLog drains the message log of a filesystem context (lines such as
// "e overlay: failed to resolve 'x': -2").
func fsLog(fd int) string {
	var msgs []string
	buf := make([]byte, 1024)
	for range 16 {
		n, err := unix.Read(fd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	return strings.Join(msgs, "; ")
}

// splitLowerdir splits an overlay lowerdir= value into its layers, top
// first, undoing backslash escapes. Layers after a "::" are data-only
// layers (Linux 6.7+), returned separately.
func splitLowerdir(value string) (lowers, data []string) {
	var (
		cur     strings.Builder
		dataOn  bool
		escaped bool
		empty   = true // nothing since the last separator
	)
	flush := func() {
		if dataOn {
			data = append(data, cur.String())
		} else {
			lowers = append(lowers, cur.String())
		}
		cur.Reset()
	}
	// Bytes, not runes: paths need not be UTF-8.
	for i := 0; i < len(value); i++ {
		r := value[i]
		switch {
		case escaped:
			cur.WriteByte(r)
			escaped, empty = false, false
		case r == '\\':
			escaped = true
		case r == ':':
			if empty {
				// "::" separates the data-only layers.
				dataOn = true
				continue
			}
			flush()
			empty = true
		default:
			cur.WriteByte(r)
			empty = false
		}
	}
	if !empty || escaped {
		flush()
	}
	return lowers, data
}

// escapeLowerdir escapes a path for use inside an overlay lowerdir= list.
func escapeLowerdir(path string) string {
	r := strings.NewReplacer(`\`, `\\`, `:`, `\:`)
	return r.Replace(path)
}

// mountOverlayRelative mounts an overlay with its directory options made
// relative to their common parent, from a thread whose working directory is
// that parent (containerd's approach before lowerdir+ existed). The thread
// unshares its fs attributes so the chdir affects nothing else, and is
// thrown away afterwards.
func mountOverlayRelative(target string, p parsedOptions) error {
	absTarget, err := filepath.Abs(target)
	if err != nil {
		return err
	}
	var paths []string
	for _, o := range p.data {
		key, value, _ := strings.Cut(o, "=")
		switch key {
		case "lowerdir":
			lowers, data := splitLowerdir(value)
			paths = append(paths, lowers...)
			paths = append(paths, data...)
		case "upperdir", "workdir":
			paths = append(paths, value)
		}
	}
	common := commonDir(paths)
	if common == "" || common == "/" {
		return errdefs.ErrInvalidArgument.WithMessage("overlay layers share no common directory")
	}
	rel := func(path string) string {
		r, err := filepath.Rel(common, path)
		if err != nil {
			return path
		}
		return r
	}
	var data []string
	for _, o := range p.data {
		key, value, _ := strings.Cut(o, "=")
		switch key {
		case "lowerdir":
			lowers, dataOnly := splitLowerdir(value)
			parts := make([]string, 0, len(lowers))
			for _, l := range lowers {
				parts = append(parts, escapeLowerdir(rel(l)))
			}
			v := strings.Join(parts, ":")
			for _, d := range dataOnly {
				v += "::" + escapeLowerdir(rel(d))
			}
			data = append(data, "lowerdir="+v)
		case "upperdir", "workdir":
			data = append(data, key+"="+rel(value))
		default:
			data = append(data, o)
		}
	}
	joined := strings.Join(data, ",")
	if len(joined) >= os.Getpagesize() {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("overlay options are %d bytes even with paths relative to %s", len(joined), common))
	}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread's cwd differs from the process's, so
		// the runtime must discard it when this goroutine ends.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare fs: %w", err)
			return
		}
		if err := unix.Chdir(common); err != nil {
			errc <- fmt.Errorf("chdir %s: %w", common, err)
			return
		}
		errc <- unix.Mount("overlay", absTarget, "overlay", p.flags, joined)
	}()
	return <-errc
}

// commonDir is the deepest directory that contains every path.
func commonDir(paths []string) string {
	if len(paths) == 0 {
		return ""
	}
	common := filepath.Dir(filepath.Clean(paths[0]))
	for _, p := range paths[1:] {
		p = filepath.Clean(p)
		for common != "/" && common != "." && !strings.HasPrefix(p, common+"/") {
			common = filepath.Dir(common)
		}
	}
	if !filepath.IsAbs(common) {
		return ""
	}
	return common
}
