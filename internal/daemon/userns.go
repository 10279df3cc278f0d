package daemon

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/berth-engine/berth/internal/engine"
	"github.com/berth-engine/berth/internal/userns"
)

// remappedRoot is dockerd's layout under --userns-remap: all state of a
// mapping lives in <data-root>/<uid>.<gid>, owned root:<mapped gid> with
// mode 0710 so that a remapped container's root can reach the files
// bind-mounted for it but not list anything; the data-root itself is
// 0711. Containers with and without a mapping never share state.
func remappedRoot(root string, remap *userns.Remap) (string, error) {
	if err := os.Chmod(root, 0o711); err != nil {
		return "", err
	}
	dir := filepath.Join(root, remap.Dir())
	_, gid := remap.RootPair()
	if err := os.MkdirAll(dir, 0o710); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.Chown(dir, 0, gid); err != nil {
		return "", err
	}
	return dir, os.Chmod(dir, 0o710)
}

// remapStores lets the remapped root reach container directories (for
// /etc/hosts and friends) and own new volumes.
func remapStores(root string, st engine.Stores, remap *userns.Remap) error {
	uid, gid := remap.RootPair()
	containers := filepath.Join(root, "containers")
	if err := os.Chown(containers, 0, gid); err != nil {
		return fmt.Errorf("container directory for the remapped root: %w", err)
	}
	if err := os.Chmod(containers, 0o710); err != nil {
		return err
	}
	if st.Volumes != nil {
		st.Volumes.SetDataOwner(uid, gid)
	}
	return nil
}
