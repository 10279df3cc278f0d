package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/berth-engine/berth/internal/fsutil"
	"github.com/berth-engine/berth/internal/stringid"
	"github.com/containerd/errdefs"
)

const recordFile = "container.json"

// Store persists container records as one JSON file per container under
// root/<id>/, next to the container's logs and /etc files. Writes are atomic;
// a record that cannot be read at start-up is reported, not fatal.
type Store struct {
	root  string
	trash fsutil.Trash
}

// NewStore opens (creating) the container store at root.
func NewStore(root string) (*Store, error) {
	if err := os.MkdirAll(root, 0o710); err != nil {
		return nil, fmt.Errorf("container store: %w", err)
	}
	fsutil.SpreadDirs(root)
	// Directories of removed containers a crash left half deleted.
	if err := fsutil.EmptyTrash(root); err != nil {
		return nil, fmt.Errorf("container store: %w", err)
	}
	return &Store{root: root}, nil
}

// Close waits for the deletions of removed containers' directories.
func (s *Store) Close() error {
	s.trash.Wait()
	return nil
}

// Dir is the container's own directory (logs, hosts, hostname, resolv.conf).
func (s *Store) Dir(id string) string { return filepath.Join(s.root, id) }

// Save persists a record; the caller serialises writers of the same record.
func (s *Store) Save(c *Container) error {
	return s.save(c, fsutil.SyncAll)
}

// SaveState persists a record whose change is only its run state (started,
// exited): atomically, but without waiting for the rename to reach the
// disk. A host crash may then bring back the previous state, which is
// harmless: no container survives a host crash, and start-up reconciles a
// record that says running with its (gone) shim either way.
func (s *Store) SaveState(c *Container) error {
	return s.save(c, fsutil.SyncData)
}

// syncMode is how durable a write of c's record is. A container that is
// removed once it exits (--rm, a build step) is not meant to outlive a
// host crash, so its record is written atomically (a daemon crash leaves
// the old or the new one) but never fsynced: the fsyncs cost 1–10 ms of
// every `run --rm` here. After a host crash its record may be missing (its
// directory is then an orphan) or empty (LoadAll treats it as one), and
// start-up removes what is left of it; or it is intact and reconciled as
// any other.
func syncMode(c *Container, mode fsutil.Sync) fsutil.Sync {
	if c.Ephemeral || (c.HostConfig != nil && c.HostConfig.AutoRemove) {
		return fsutil.SyncNone
	}
	return mode
}

func (s *Store) save(c *Container, mode fsutil.Sync) error {
	mode = syncMode(c, mode)
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("save container %s: %w", c.ID, err)
	}
	if err := os.MkdirAll(s.Dir(c.ID), 0o710); err != nil {
		return fmt.Errorf("save container %s: %w", c.ID, err)
	}
	return fsutil.WriteFileAtomicSync(filepath.Join(s.Dir(c.ID), recordFile), b, 0o600, mode)
}

// Delete removes a container's directory and record.
func (s *Store) Delete(id string) error {
	// Remove the record first so a crash mid-way leaves a directory without
	// a record, which LoadAll reports as an orphan to clean, never a record
	// whose files are half gone.
	if err := os.Remove(filepath.Join(s.Dir(id), recordFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	// The directory (logs, /etc files) goes in the background: once the
	// record is gone nothing reads it, and NewStore deletes what a crash
	// leaves.
	if err := s.trash.Remove(s.Dir(id)); err != nil {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	return nil
}

// LoadAll reads every record. Directories without a record (a create or
// remove interrupted by a crash) or with an empty one (see syncMode) are
// returned as orphans for the caller to clean up; unreadable records are
// returned as errors.
func (s *Store) LoadAll() (records []*Container, orphans []string, errs []error) {
	entries, err := os.ReadDir(s.root)
	if err != nil {
		return nil, nil, []error{fmt.Errorf("container store: %w", err)}
	}
	for _, e := range entries {
		if !e.IsDir() || len(e.Name()) != 64 || !stringid.IsHexPrefix(e.Name()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.root, e.Name(), recordFile))
		// Empty: an unsynced record (syncMode) whose content a host crash
		// lost; it is left over as if it had never been written.
		if errors.Is(err, os.ErrNotExist) || (err == nil && len(b) == 0) {
			orphans = append(orphans, e.Name())
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("load container %s: %w", e.Name(), err))
			continue
		}
		var c Container
		if err := json.Unmarshal(b, &c); err != nil || c.ID != e.Name() {
			errs = append(errs, fmt.Errorf("load container %s: corrupt record: %v", e.Name(), err))
			continue
		}
		records = append(records, &c)
	}
	return records, orphans, errs
}

// Index maps names and ID prefixes to container IDs, with docker's lookup
// rules: an exact ID, then an exact name, then a unique ID prefix.
type Index struct {
	mu    sync.RWMutex
	ids   map[string]string // id → name
	names map[string]string // name → id
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{ids: map[string]string{}, names: map[string]string{}}
}

// Reserve claims name for id. It fails with docker's conflict message when
// another container has the name, and with an invalid-argument error for a
// name docker would refuse.
func (ix *Index) Reserve(name, id string) error {
	name = strings.TrimPrefix(name, "/")
	if !ValidName.MatchString(name) {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name))
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if other, ok := ix.names[name]; ok && other != id {
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("Conflict. The container name \"/%s\" is already in use by container \"%s\". You have to remove (or rename) that container to be able to reuse that name.", name, other))
	}
	if old, ok := ix.ids[id]; ok && old != name {
		delete(ix.names, old)
	}
	ix.names[name] = id
	ix.ids[id] = name
	return nil
}

// Release forgets id and its name.
func (ix *Index) Release(id string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if name, ok := ix.ids[id]; ok {
		if ix.names[name] == id {
			delete(ix.names, name)
		}
		delete(ix.ids, id)
	}
}

// Has reports whether id is indexed.
func (ix *Index) Has(id string) bool {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	_, ok := ix.ids[id]
	return ok
}

// Lookup resolves what a user typed to a container ID.
func (ix *Index) Lookup(s string) (string, error) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if s == "" {
		return "", errdefs.ErrNotFound.WithMessage("No such container: ")
	}
	if _, ok := ix.ids[s]; ok {
		return s, nil
	}
	if id, ok := ix.names[strings.TrimPrefix(s, "/")]; ok {
		return id, nil
	}
	if stringid.IsHexPrefix(s) {
		var found []string
		for id := range ix.ids {
			if strings.HasPrefix(id, s) {
				found = append(found, id)
			}
		}
		if len(found) == 1 {
			return found[0], nil
		}
		if len(found) > 1 {
			sort.Strings(found)
			return "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("multiple IDs found with provided prefix: %s", s))
		}
	}
	return "", errdefs.ErrNotFound.WithMessage("No such container: " + s)
}

// ShortIDTaken reports whether another container's ID shares the first n
// characters of id (berth keys some per-container paths by a short ID).
func (ix *Index) ShortIDTaken(id string, n int) bool {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	for other := range ix.ids {
		if other != id && other[:n] == id[:n] {
			return true
		}
	}
	return false
}
