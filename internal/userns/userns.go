// Package userns is the daemon's --userns-remap: which host user and
// group container root is mapped to, the subordinate id ranges from
// /etc/subuid and /etc/subgid that become the containers' uid and gid
// maps, and a user namespace file descriptor with those maps for
// idmapped mounts. It follows dockerd: "default" is a system user of
// berth's own (berthremap) that is created, with subordinate ranges,
// when missing.
package userns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"syscall"

	mobyuser "github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// DefaultUser is the user "--userns-remap default" maps to (dockerd's
// is dockremap).
const DefaultUser = "berthremap"

// defaultRange is the size of the subordinate ranges added for
// DefaultUser, and defaultStart where the search for a free one begins
// (dockerd's and shadow's numbers).
const (
	defaultRange = 65536
	defaultStart = 100000
)

// The files the subordinate ranges are read from; variables for tests.
var (
	SubuidFile = "/etc/subuid"
	SubgidFile = "/etc/subgid"
)

// Remap is a resolved --userns-remap.
type Remap struct {
	User, Group string // the names the ranges were found under
	// Mapping is container id → host id, contiguous from container id 0.
	Mapping mobyuser.IdentityMapping
}

// RootPair is the host uid and gid of container root.
func (r *Remap) RootPair() (int, int) { return r.Mapping.RootPair() }

// Dir is the data-root subdirectory of this mapping ("<uid>.<gid>"),
// dockerd's layout.
func (r *Remap) Dir() string {
	uid, gid := r.RootPair()
	return fmt.Sprintf("%d.%d", uid, gid)
}

// UIDMappings and GIDMappings are the OCI spec's form of the mapping.
func (r *Remap) UIDMappings() []specs.LinuxIDMapping { return toSpec(r.Mapping.UIDMaps) }

// GIDMappings: see UIDMappings.
func (r *Remap) GIDMappings() []specs.LinuxIDMapping { return toSpec(r.Mapping.GIDMaps) }

func toSpec(m []mobyuser.IDMap) []specs.LinuxIDMapping {
	out := make([]specs.LinuxIDMapping, len(m))
	for i, e := range m {
		out[i] = specs.LinuxIDMapping{ContainerID: uint32(e.ID), HostID: uint32(e.ParentID), Size: uint32(e.Count)}
	}
	return out
}

// Options say how Setup may change the host.
type Options struct {
	// Log reports what Setup created (nil: nothing is reported).
	Log func(msg string, args ...any)
}

// Setup resolves a --userns-remap value: "default", USER[:GROUP] or
// UID[:GID] (numbers or names; the group defaults to the user's name, as
// in dockerd). For "default" the user berthremap, its group and
// subordinate ranges are created when missing; for others, missing
// ranges are an error.
func Setup(spec string, opts Options) (*Remap, error) {
	if opts.Log == nil {
		opts.Log = func(string, ...any) {}
	}
	if spec == "" {
		return nil, errors.New("--userns-remap: empty value")
	}
	uname, gname, _ := strings.Cut(spec, ":")
	if _, err := strconv.Atoi(uname); err == nil && gname == "" {
		gname = uname // dockerd: a uid alone means the same gid
	}
	if spec == "default" {
		uname, gname = DefaultUser, DefaultUser
		if err := ensureDefaultUser(opts); err != nil {
			return nil, err
		}
	}
	u, err := lookupUser(uname)
	if err != nil {
		return nil, fmt.Errorf("--userns-remap %s: %w", spec, err)
	}
	if u.Uid == "0" {
		return nil, fmt.Errorf("--userns-remap %s: remapping to root is no remapping; name an unprivileged user", spec)
	}
	var gid, groupName string
	if gname == "" {
		// dockerd: the subgid ranges are looked up under the user's name.
		groupName = u.Username
		if g, err := user.LookupGroup(u.Username); err == nil {
			gid = g.Gid
		}
	} else {
		g, err := lookupGroup(gname)
		if err != nil {
			return nil, fmt.Errorf("--userns-remap %s: %w", spec, err)
		}
		gid, groupName = g.Gid, g.Name
	}
	uidMaps, err := subRanges(SubuidFile, u.Username, u.Uid)
	if err != nil {
		return nil, err
	}
	gidMaps, err := subRanges(SubgidFile, groupName, gid)
	if err != nil {
		return nil, err
	}
	if len(uidMaps) == 0 {
		return nil, fmt.Errorf("--userns-remap %s: no subordinate uid ranges for user %q in %s", spec, u.Username, SubuidFile)
	}
	if len(gidMaps) == 0 {
		return nil, fmt.Errorf("--userns-remap %s: no subordinate gid ranges for group %q in %s", spec, groupName, SubgidFile)
	}
	return &Remap{User: u.Username, Group: groupName, Mapping: mobyuser.IdentityMapping{UIDMaps: uidMaps, GIDMaps: gidMaps}}, nil
}

func lookupUser(name string) (*user.User, error) {
	if _, err := strconv.Atoi(name); err == nil {
		return user.LookupId(name)
	}
	return user.Lookup(name)
}

func lookupGroup(name string) (*user.Group, error) {
	if _, err := strconv.Atoi(name); err == nil {
		return user.LookupGroupId(name)
	}
	return user.LookupGroup(name)
}

// subRanges reads the ranges listed for name or id in a subuid/subgid
// file, in file order, as contiguous container ids from 0 (dockerd's
// createIDMap).
func subRanges(path, name, id string) ([]mobyuser.IDMap, error) {
	ranges, err := mobyuser.ParseSubIDFileFilter(path, func(s mobyuser.SubID) bool {
		return s.Name == name || (id != "" && s.Name == id)
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var out []mobyuser.IDMap
	var next int64
	for _, r := range ranges {
		out = append(out, mobyuser.IDMap{ID: next, ParentID: r.SubID, Count: r.Count})
		next += r.Count
	}
	return out, nil
}

// ensureDefaultUser creates berthremap (a system user with no login and
// its own group) and gives it subordinate uid and gid ranges when it has
// none, with the system's useradd and usermod, as dockerd does for
// dockremap.
func ensureDefaultUser(opts Options) error {
	if _, err := user.Lookup(DefaultUser); err != nil {
		var unknown user.UnknownUserError
		if !errors.As(err, &unknown) {
			return fmt.Errorf("look up %s: %w", DefaultUser, err)
		}
		if out, err := exec.Command("useradd", "--system", "--user-group", "--no-create-home", "--shell", "/bin/false", DefaultUser).CombinedOutput(); err != nil {
			if _, lerr := user.Lookup(DefaultUser); lerr != nil {
				return fmt.Errorf("create user %s for --userns-remap default: %v: %s", DefaultUser, err, strings.TrimSpace(string(out)))
			}
		} else {
			opts.Log("created the user for --userns-remap default", "user", DefaultUser)
		}
	}
	for _, f := range []struct{ path, flag string }{{SubuidFile, "--add-subuids"}, {SubgidFile, "--add-subgids"}} {
		have, err := subRanges(f.path, DefaultUser, "")
		if err != nil {
			return err
		}
		if len(have) > 0 {
			continue
		}
		start, err := freeRange(f.path, defaultRange)
		if err != nil {
			return err
		}
		r := fmt.Sprintf("%d-%d", start, start+defaultRange-1)
		if out, err := exec.Command("usermod", f.flag, r, DefaultUser).CombinedOutput(); err != nil {
			return fmt.Errorf("add subordinate ids %s for %s in %s: %v: %s", r, DefaultUser, f.path, err, strings.TrimSpace(string(out)))
		}
		opts.Log("added subordinate ids for --userns-remap default", "file", f.path, "user", DefaultUser, "range", r)
	}
	return nil
}

// freeRange finds the lowest start ≥ 100000 of size ids that overlaps no
// range in the file.
func freeRange(path string, size int64) (int64, error) {
	all, err := mobyuser.ParseSubIDFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].SubID < all[j].SubID })
	start := int64(defaultStart)
	for _, r := range all {
		if r.SubID >= start+size {
			break
		}
		if end := r.SubID + r.Count; end > start {
			start = end
		}
	}
	return start, nil
}

// NamespaceFD returns an open file descriptor of a new user namespace
// with the mapping, for idmapped mounts (mount_setattr MOUNT_ATTR_IDMAP).
// A short-lived child is created in the namespace to obtain it; the
// namespace lives as long as the descriptor.
func (r *Remap) NamespaceFD() (*os.File, error) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		return nil, fmt.Errorf("user namespace for idmapped mounts: %w", err)
	}
	cmd := exec.Command(sleep, "infinity")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER,
		UidMappings: toSys(r.Mapping.UIDMaps),
		GidMappings: toSys(r.Mapping.GIDMaps),
		Pdeathsig:   syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("user namespace for idmapped mounts: %w", err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid))
	if err != nil {
		return nil, fmt.Errorf("user namespace for idmapped mounts: %w", err)
	}
	return f, nil
}

func toSys(m []mobyuser.IDMap) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(m))
	for i, e := range m {
		out[i] = syscall.SysProcIDMap{ContainerID: int(e.ID), HostID: int(e.ParentID), Size: int(e.Count)}
	}
	return out
}
