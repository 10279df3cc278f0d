package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// OverlaySupported says whether overlay2 can be used with its layers under
// root: it mounts a tiny overlay in a temporary directory under root (root's
// filesystem must be able to serve as an upper layer: d_type, whiteouts,
// trusted xattrs), checks that writes and deletes behave, and cleans up. nil
// means overlay2 is usable; the error says why not.
func OverlaySupported(root string) (retErr error) {
	if err := os.MkdirAll(root, 0o711); err != nil {
		return fmt.Errorf("overlay check: %w", err)
	}
	dir, err := os.MkdirTemp(root, ".overlay-check-")
	if err != nil {
		return fmt.Errorf("overlay check: %w", err)
	}
	defer func() {
		if err := os.RemoveAll(dir); err != nil && retErr == nil {
			retErr = fmt.Errorf("overlay check: clean up: %w", err)
		}
	}()
	lower, upper, work, merged := filepath.Join(dir, "l"), filepath.Join(dir, "u"), filepath.Join(dir, "w"), filepath.Join(dir, "m")
	for _, d := range []string{lower, upper, work, merged} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return fmt.Errorf("overlay check: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(lower, "old"), []byte("x"), 0o600); err != nil {
		return fmt.Errorf("overlay check: %w", err)
	}
	if err := checkDType(lower); err != nil {
		return err
	}
	opts := []string{"lowerdir=" + lower, "upperdir=" + upper, "workdir=" + work}
	err = mountOverlayFsconfig(merged, parsedOptions{data: opts}, false)
	if errors.Is(err, errNoLowerdirPlus) { // no fsopen: plain mount(2)
		err = unix.Mount("overlay", merged, "overlay", 0, strings.Join(opts, ","))
	}
	if err != nil {
		return fmt.Errorf("overlay mount on %s: %w", root, err)
	}
	defer func() {
		if err := UnmountAll(merged); err != nil && retErr == nil {
			retErr = fmt.Errorf("overlay check: %w", err)
		}
	}()
	if err := os.WriteFile(filepath.Join(merged, "new"), []byte("y"), 0o600); err != nil {
		return fmt.Errorf("overlay check: write through overlay: %w", err)
	}
	if _, err := os.Stat(filepath.Join(upper, "new")); err != nil {
		return fmt.Errorf("overlay check: write did not reach the upper layer: %w", err)
	}
	if err := os.Remove(filepath.Join(merged, "old")); err != nil {
		return fmt.Errorf("overlay check: delete through overlay: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(upper, "old"), &st); err != nil {
		return fmt.Errorf("overlay check: delete left no whiteout: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		return errdefs.ErrNotImplemented.WithMessage("overlay check: delete left something other than a 0/0 whiteout")
	}
	return nil
}

// checkDType fails when dir's filesystem does not report file types in
// directory entries: overlayfs misbehaves without them (xfs with ftype=0).
func checkDType(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("overlay check: %w", err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		n, err := unix.ReadDirent(int(f.Fd()), buf)
		if err != nil {
			return fmt.Errorf("overlay check: read %s: %w", dir, err)
		}
		if n <= 0 {
			return nil
		}
		// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
		for b := buf[:n]; len(b) >= 19; {
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen < 19 || reclen > len(b) {
				return errors.New("overlay check: malformed directory entry")
			}
			if b[18] == unix.DT_UNKNOWN {
				return errdefs.ErrNotImplemented.WithMessage(fmt.Sprintf("the filesystem of %s does not support d_type, which overlayfs needs", dir))
			}
			b = b[reclen:]
		}
	}
}
