package volume

import (
	"fmt"
	"os"
)

// SetDataOwner makes every volume created from now on have its _data
// owned by uid:gid: the daemon's --userns-remap root, so that a remapped
// container's root can write to its new volumes (dockerd does the same).
// Call it before the store is used.
func (s *Store) SetDataOwner(uid, gid int) {
	s.owner = &[2]int{uid, gid}
}

func (s *Store) chownData(dir string) error {
	if s.owner == nil {
		return nil
	}
	if err := os.Lchown(dir, s.owner[0], s.owner[1]); err != nil {
		return fmt.Errorf("give volume data to %d:%d: %w", s.owner[0], s.owner[1], err)
	}
	return nil
}
