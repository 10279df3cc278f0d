package fsutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// TrashPrefix starts the names of directories Trash is still deleting.
// Whoever owns the parent directory deletes such leftovers at start-up
// (EmptyTrash): a crash mid-way leaves only them.
const TrashPrefix = ".trash-"

// Trash deletes directories off the caller's path: Remove renames one out
// of the way (one metadata operation: its name is free at once and nothing
// finds it any more) and deletes it in the background.
type Trash struct {
	wg  sync.WaitGroup
	seq atomic.Uint64
}

// Remove moves dir to a trash name in its parent directory and deletes it
// in the background. When the rename fails (dir is missing, or is a mount
// point), it deletes dir before returning, as os.RemoveAll.
func (t *Trash) Remove(dir string) error {
	return t.RemoveFunc(dir, os.RemoveAll)
}

// RemoveFunc is Remove with the deletion done by remove (for trees that
// need more than os.RemoveAll, such as unmounting what is inside).
func (t *Trash) RemoveFunc(dir string, remove func(string) error) error {
	name := TrashPrefix + filepath.Base(dir) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatUint(t.seq.Add(1), 36)
	trashed := filepath.Join(filepath.Dir(dir), name)
	if err := os.Rename(dir, trashed); err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return remove(dir)
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		_ = remove(trashed)
	}()
	return nil
}

// Wait returns once every background deletion has finished.
func (t *Trash) Wait() { t.wg.Wait() }

// EmptyTrash deletes what Trash left in dir, for a crash may have cut its
// deletions short.
func EmptyTrash(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("empty trash in %s: %w", dir, err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), TrashPrefix) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("empty trash in %s: %w", dir, err)
		}
	}
	return nil
}
