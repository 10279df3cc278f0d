package oci

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// maxUserFile bounds how much of an image's /etc/passwd or /etc/group is
// read: the files are the image's, so untrusted.
const maxUserFile = 4 << 20

// ResolveUser resolves a docker user spec — name|uid[:group|gid] — against
// the passwd and group files of the root filesystem at rootfs, with
// docker's rules: names must exist, numeric IDs need not; the
// supplementary groups are the primary group, the user's groups from
// /etc/group and groupAdd (names or IDs). It returns the user and its home
// directory ("" when passwd has no entry for it). Errors keep docker's
// wording ("unable to find user foo: no matching entries in passwd file")
// and are errdefs.ErrInvalidArgument.
func ResolveUser(rootfs, userSpec string, groupAdd []string) (specs.User, string, error) {
	passwd, err := readUserFile(rootfs, "/etc/passwd")
	if err != nil {
		return specs.User{}, "", err
	}
	group, err := readUserFile(rootfs, "/etc/group")
	if err != nil {
		return specs.User{}, "", err
	}
	eu, err := user.GetExecUser(userSpec, nil, reader(passwd), reader(group))
	if err != nil {
		return specs.User{}, "", invalidArg(err)
	}
	u := specs.User{UID: uint32(eu.Uid), GID: uint32(eu.Gid)}
	gids := []uint32{u.GID}
	for _, g := range eu.Sgids {
		gids = append(gids, uint32(g))
	}
	if len(groupAdd) > 0 {
		// The library dereferences nil for an empty name.
		if slices.Contains(groupAdd, "") {
			return specs.User{}, "", errdefs.ErrInvalidArgument.WithMessage("invalid group to add: empty name")
		}
		extra, err := user.GetAdditionalGroups(groupAdd, reader(group))
		if err != nil {
			return specs.User{}, "", invalidArg(err)
		}
		// The library returns them in map order.
		slices.Sort(extra)
		for _, g := range extra {
			gids = append(gids, uint32(g))
		}
	}
	for _, g := range gids {
		if !slices.Contains(u.AdditionalGids, g) {
			u.AdditionalGids = append(u.AdditionalGids, g)
		}
	}
	return u, eu.Home, nil
}

// reader is nil for a missing file: the user library then accepts numeric
// IDs only.
func reader(b []byte) io.Reader {
	if b == nil {
		return nil
	}
	return bytes.NewReader(b)
}

// readUserFile reads a file of the root filesystem, resolving symlinks
// inside it (an image's /etc/passwd may point anywhere). A missing or
// non-regular file reads as nil (no entries).
func readUserFile(rootfs, name string) ([]byte, error) {
	p, err := securejoin.SecureJoin(rootfs, name)
	if err != nil {
		return nil, fmt.Errorf("resolve %s in %s: %w", name, rootfs, err)
	}
	// Non-blocking so that a FIFO planted by an image cannot hang us.
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			return nil, nil
		}
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", p, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(f, maxUserFile))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// kindError keeps an error's own message while classifying it as an
// errdefs kind, so callers can test both.
type kindError struct{ err, kind error }

func (e kindError) Error() string   { return e.err.Error() }
func (e kindError) Unwrap() []error { return []error{e.err, e.kind} }

func invalidArg(err error) error { return kindError{err, errdefs.ErrInvalidArgument} }
