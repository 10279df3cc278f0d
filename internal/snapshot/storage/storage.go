// Package storage is the part every berth snapshotter shares: snapshot
// metadata in a bbolt database, one directory per snapshot, crash recovery,
// usage accounting. A Driver plugs in what differs between storage drivers
// (how a new snapshot's tree is made, how it is mounted); overlay and vfs
// are the two drivers.
//
// On disk, under root:
//
//	metadata.db              bbolt: name → record (id, kind, parent, …)
//	snapshots/<id>/fs        the snapshot's own tree (overlay upper dir, or a full copy)
//	snapshots/<id>/work      overlay's work dir (overlay only)
//
// <id> is a short decimal number so that overlay lowerdir lists stay short.
// A snapshot directory is built under a temporary name and renamed to <id>
// inside the metadata transaction that creates it, so a crash leaves at
// worst a directory without metadata, which New removes.
package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-engine/berth/internal/fsutil"
	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sys/unix"
)

// Driver is what differs between storage drivers.
type Driver interface {
	// Name is the storage driver name shown to users ("overlay2", "vfs").
	Name() string
	// Create fills dir, the directory of a new snapshot of kind whose fs
	// subdirectory exists and is empty. parents are the directories of
	// its ancestors, nearest first. Create runs before the snapshot's
	// metadata is written; if the snapshot is not created, dir is removed.
	Create(ctx context.Context, dir string, kind snapshot.Kind, parents []string) error
	// Mounts returns the mounts of the active or view snapshot in dir.
	Mounts(dir string, kind snapshot.Kind, parents []string) []snapshot.Mount
}

// Bucket layout of root/metadata.db. Every change is one bbolt transaction,
// fsynced before it returns.
var (
	bucketSnapshots = []byte("snapshots") // name → JSON record
	bucketChildren  = []byte("children")  // parent + "\x00" + child → ""
	bucketMeta      = []byte("meta")      // "version" → schema version
	schemaKey       = []byte("version")
	schemaV1        = []byte("1")
	indexSep        = []byte{0}
)

// openTimeout bounds the wait for another process's lock on metadata.db.
const openTimeout = 2 * time.Second

// maxDepth bounds parent chains, so that corrupt metadata (a loop) fails
// instead of hanging.
const maxDepth = 4096

// record is what metadata.db keeps per snapshot.
type record struct {
	ID      uint64            `json:"id"`
	Kind    snapshot.Kind     `json:"kind"`
	Parent  string            `json:"parent,omitempty"`
	Created time.Time         `json:"created"`
	Labels  map[string]string `json:"labels,omitempty"`
	// Size and Inodes are measured at commit; active snapshots are
	// measured when asked.
	Size   int64 `json:"size,omitempty"`
	Inodes int64 `json:"inodes,omitempty"`
}

// Snapshotter implements snapshot.Snapshotter on a Driver.
type Snapshotter struct {
	root   string
	dirs   string // root/snapshots
	db     *bolt.DB
	driver Driver

	closeOnce sync.Once
	closeErr  error
	// trash deletes removed snapshots' directories in the background.
	trash fsutil.Trash
}

var _ snapshot.Snapshotter = (*Snapshotter)(nil)

// New opens (creating if needed) the snapshot store under root for driver,
// and cleans up what a crash left: active snapshots of interrupted unpacks
// (keys starting with snapshot.ExtractPrefix) and snapshot directories
// without metadata. Only one process may have a root open at a time; a
// second one fails with errdefs.ErrUnavailable.
func New(root string, driver Driver) (*Snapshotter, error) {
	if !filepath.IsAbs(root) {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("%s snapshotter root %q is not absolute", driver.Name(), root))
	}
	if err := os.MkdirAll(filepath.Join(root, "snapshots"), 0o700); err != nil {
		return nil, fmt.Errorf("%s snapshotter: %w", driver.Name(), err)
	}
	// Canonical paths: mount options and the mount table use them.
	root, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("%s snapshotter: %w", driver.Name(), err)
	}
	s := &Snapshotter{root: root, dirs: filepath.Join(root, "snapshots"), driver: driver}
	// A container's writable layer is a snapshot: one comes and goes with
	// every container.
	fsutil.SpreadDirs(s.dirs)
	path := filepath.Join(root, "metadata.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: openTimeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%s snapshotter: %s is in use by another process: %w", driver.Name(), path, errdefs.ErrUnavailable)
		}
		return nil, fmt.Errorf("%s snapshotter: open %s: %w", driver.Name(), path, err)
	}
	s.db = db
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketSnapshots, bucketChildren, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(schemaKey); {
		case v == nil:
			return meta.Put(schemaKey, schemaV1)
		case !bytes.Equal(v, schemaV1):
			return fmt.Errorf("unknown schema version %q (written by a newer berth?)", v)
		}
		return nil
	})
	if err == nil {
		err = s.recover()
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%s snapshotter %s: %w", driver.Name(), root, err)
	}
	return s, nil
}

// recover deletes interrupted unpacks and directories without metadata.
func (s *Snapshotter) recover() error {
	known := map[uint64]bool{}
	var dropped []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSnapshots)
		var stale [][]byte
		err := b.ForEach(func(k, v []byte) error {
			var r record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("snapshot %q: corrupt record: %w", k, err)
			}
			if r.Kind == snapshot.KindActive && bytes.HasPrefix(k, []byte(snapshot.ExtractPrefix)) {
				stale = append(stale, append([]byte(nil), k...))
				return nil
			}
			known[r.ID] = true
			if _, err := os.Stat(filepath.Join(s.dir(r.ID), "fs")); err != nil {
				// Not fixable here (it may be a layer images depend on);
				// say so instead of failing at the first mount.
				slog.Warn("snapshot directory is missing", "driver", s.driver.Name(), "name", string(k), "err", err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range stale {
			r, err := getRecord(tx, string(k))
			if err != nil {
				return err
			}
			if err := deleteRecord(tx, string(k), r); err != nil {
				return err
			}
			dropped = append(dropped, string(k))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	for _, k := range dropped {
		slog.Info("removed snapshot of an interrupted unpack", "driver", s.driver.Name(), "key", k)
	}
	entries, err := os.ReadDir(s.dirs)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	for _, e := range entries {
		id, err := strconv.ParseUint(e.Name(), 10, 64)
		if err == nil && known[id] {
			continue
		}
		dir := filepath.Join(s.dirs, e.Name())
		if err := removeDir(dir); err != nil {
			return fmt.Errorf("recover: %w", err)
		}
		slog.Info("removed snapshot directory without metadata", "driver", s.driver.Name(), "dir", dir)
	}
	return nil
}

// Name returns the driver's name.
func (s *Snapshotter) Name() string { return s.driver.Name() }

// Close releases the metadata database. It is safe to call more than once.
func (s *Snapshotter) Close() error {
	s.closeOnce.Do(func() {
		s.trash.Wait()
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

func (s *Snapshotter) dir(id uint64) string {
	return filepath.Join(s.dirs, strconv.FormatUint(id, 10))
}

func validName(name string) error {
	if name == "" || strings.ContainsRune(name, 0) {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid snapshot name %q", name))
	}
	return nil
}

func getRecord(tx *bolt.Tx, name string) (record, error) {
	v := tx.Bucket(bucketSnapshots).Get([]byte(name))
	if v == nil {
		return record{}, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("snapshot %q does not exist", name))
	}
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return record{}, fmt.Errorf("snapshot %q: corrupt record: %w", name, err)
	}
	return r, nil
}

func putRecord(tx *bolt.Tx, name string, r record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("snapshot %q: %w", name, err)
	}
	if err := tx.Bucket(bucketSnapshots).Put([]byte(name), v); err != nil {
		return err
	}
	if r.Parent != "" {
		return tx.Bucket(bucketChildren).Put(childKey(r.Parent, name), nil)
	}
	return nil
}

func deleteRecord(tx *bolt.Tx, name string, r record) error {
	if err := tx.Bucket(bucketSnapshots).Delete([]byte(name)); err != nil {
		return err
	}
	if r.Parent != "" {
		return tx.Bucket(bucketChildren).Delete(childKey(r.Parent, name))
	}
	return nil
}

func childKey(parent, child string) []byte {
	k := make([]byte, 0, len(parent)+1+len(child))
	k = append(k, parent...)
	k = append(k, indexSep...)
	return append(k, child...)
}

func hasChildren(tx *bolt.Tx, name string) bool {
	prefix := childKey(name, "")
	k, _ := tx.Bucket(bucketChildren).Cursor().Seek(prefix)
	return k != nil && bytes.HasPrefix(k, prefix)
}

// parentDirs returns the directories of parent and its ancestors, nearest
// first, checking that parent is committed.
func (s *Snapshotter) parentDirs(tx *bolt.Tx, parent string) ([]string, error) {
	if parent == "" {
		return nil, nil
	}
	var dirs []string
	for name, first := parent, true; name != ""; first = false {
		if len(dirs) >= maxDepth {
			return nil, fmt.Errorf("snapshot %q: parent chain longer than %d (corrupt metadata?)", parent, maxDepth)
		}
		r, err := getRecord(tx, name)
		if err != nil {
			if first {
				return nil, fmt.Errorf("parent: %w", err)
			}
			return nil, fmt.Errorf("ancestor of %q: %w", parent, err)
		}
		if first && r.Kind != snapshot.KindCommitted {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("parent %q is %s, not committed", parent, r.Kind))
		}
		dirs = append(dirs, s.dir(r.ID))
		name = r.Parent
	}
	return dirs, nil
}

func (s *Snapshotter) info(name string, r record) snapshot.Info {
	return snapshot.Info{Name: name, Parent: r.Parent, Kind: r.Kind, Created: r.Created, Labels: r.Labels}
}

// Stat returns a snapshot's Info, or errdefs.ErrNotFound.
func (s *Snapshotter) Stat(ctx context.Context, key string) (snapshot.Info, error) {
	var info snapshot.Info
	err := s.db.View(func(tx *bolt.Tx) error {
		r, err := getRecord(tx, key)
		if err != nil {
			return err
		}
		info = s.info(key, r)
		return nil
	})
	if err != nil {
		return snapshot.Info{}, fmt.Errorf("stat snapshot: %w", err)
	}
	return info, nil
}

// Mounts returns the mounts of an active or view snapshot.
func (s *Snapshotter) Mounts(ctx context.Context, key string) ([]snapshot.Mount, error) {
	var mounts []snapshot.Mount
	err := s.db.View(func(tx *bolt.Tx) error {
		r, err := getRecord(tx, key)
		if err != nil {
			return err
		}
		if r.Kind == snapshot.KindCommitted {
			return errdefs.ErrFailedPrecondition.WithMessage(fmt.Sprintf("snapshot %q is committed: View or Prepare on it to mount it", key))
		}
		parents, err := s.parentDirs(tx, r.Parent)
		if err != nil {
			return err
		}
		mounts = s.driver.Mounts(s.dir(r.ID), r.Kind, parents)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mounts of snapshot %q: %w", key, err)
	}
	return mounts, nil
}

// Prepare creates an active snapshot on top of the committed parent.
func (s *Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshot.Opt) ([]snapshot.Mount, error) {
	return s.create(ctx, snapshot.KindActive, key, parent, opts)
}

// View creates a read-only snapshot of the committed parent.
func (s *Snapshotter) View(ctx context.Context, key, parent string, opts ...snapshot.Opt) ([]snapshot.Mount, error) {
	return s.create(ctx, snapshot.KindView, key, parent, opts)
}

func (s *Snapshotter) create(ctx context.Context, kind snapshot.Kind, key, parent string, opts []snapshot.Opt) (_ []snapshot.Mount, retErr error) {
	op := "prepare"
	if kind == snapshot.KindView {
		op = "view"
	}
	fail := func(err error) ([]snapshot.Mount, error) {
		return nil, fmt.Errorf("%s snapshot %q: %w", op, key, err)
	}
	if err := validName(key); err != nil {
		return fail(err)
	}
	var info snapshot.Info
	for _, o := range opts {
		o(&info)
	}

	// Fail fast, before a possibly long copy; checked again below.
	var parents []string
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketSnapshots).Get([]byte(key)) != nil {
			return errdefs.ErrAlreadyExists.WithMessage(fmt.Sprintf("snapshot %q already exists", key))
		}
		var err error
		parents, err = s.parentDirs(tx, parent)
		return err
	})
	if err != nil {
		return fail(err)
	}

	tmp, err := os.MkdirTemp(s.dirs, "new-")
	if err != nil {
		return fail(err)
	}
	final := ""
	defer func() {
		if retErr != nil {
			if final != "" {
				tmp = final
			}
			if err := removeDir(tmp); err != nil {
				slog.Warn("remove directory of failed snapshot", "dir", tmp, "err", err)
			}
		}
	}()
	fs := filepath.Join(tmp, "fs")
	if err := os.Mkdir(fs, 0o755); err != nil {
		return fail(err)
	}
	// The tree's root becomes the container's "/": 0755 whatever the umask.
	if err := os.Chmod(fs, 0o755); err != nil {
		return fail(err)
	}
	if err := s.driver.Create(ctx, tmp, kind, parents); err != nil {
		return fail(err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	// What Create made must be durable before the rename that publishes it.
	if err := fsutil.SyncDir(tmp); err != nil {
		return fail(err)
	}

	var mounts []snapshot.Mount
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSnapshots)
		if b.Get([]byte(key)) != nil {
			return errdefs.ErrAlreadyExists.WithMessage(fmt.Sprintf("snapshot %q already exists", key))
		}
		parents, err := s.parentDirs(tx, parent)
		if err != nil {
			return err
		}
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		r := record{ID: id, Kind: kind, Parent: parent, Created: time.Now().UTC(), Labels: info.Labels}
		if err := putRecord(tx, key, r); err != nil {
			return err
		}
		dir := s.dir(id)
		if err := os.Rename(tmp, dir); err != nil {
			return err
		}
		final = dir
		// The rename must be durable before the metadata that points at it.
		if err := fsutil.SyncDir(s.dirs); err != nil {
			return err
		}
		mounts = s.driver.Mounts(dir, kind, parents)
		return nil
	})
	if err != nil {
		return fail(err)
	}
	return mounts, nil
}

// Commit turns the active snapshot key into the committed snapshot name.
// The snapshot's files are flushed to disk first (syncfs), so a committed
// layer survives a crash whole.
func (s *Snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshot.Opt) error {
	fail := func(err error) error {
		return fmt.Errorf("commit snapshot %q as %q: %w", key, name, err)
	}
	if err := validName(name); err != nil {
		return fail(err)
	}
	var r record
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		r, err = s.committable(tx, name, key)
		return err
	})
	if err != nil {
		return fail(err)
	}
	fs := filepath.Join(s.dir(r.ID), "fs")
	u, err := diskUsage(fs)
	if err != nil {
		return fail(err)
	}
	if err := syncFS(fs); err != nil {
		return fail(err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		r, err := s.committable(tx, name, key)
		if err != nil {
			return err
		}
		if err := deleteRecord(tx, key, r); err != nil {
			return err
		}
		info := snapshot.Info{Labels: r.Labels}
		for _, o := range opts {
			o(&info)
		}
		r.Kind, r.Labels, r.Created = snapshot.KindCommitted, info.Labels, time.Now().UTC()
		r.Size, r.Inodes = u.Size, u.Inodes
		return putRecord(tx, name, r)
	})
	if err != nil {
		return fail(err)
	}
	return nil
}

func (s *Snapshotter) committable(tx *bolt.Tx, name, key string) (record, error) {
	r, err := getRecord(tx, key)
	if err != nil {
		return record{}, err
	}
	if r.Kind != snapshot.KindActive {
		return record{}, errdefs.ErrFailedPrecondition.WithMessage(fmt.Sprintf("snapshot %q is %s, not active", key, r.Kind))
	}
	if tx.Bucket(bucketSnapshots).Get([]byte(name)) != nil {
		return record{}, errdefs.ErrAlreadyExists.WithMessage(fmt.Sprintf("snapshot %q already exists", name))
	}
	return r, nil
}

// Remove deletes a snapshot that has no children. Its metadata goes first;
// a crash before its directory is gone leaves a directory without metadata,
// which the next New removes.
func (s *Snapshotter) Remove(ctx context.Context, key string) error {
	var id uint64
	var kind snapshot.Kind
	err := s.db.Update(func(tx *bolt.Tx) error {
		r, err := getRecord(tx, key)
		if err != nil {
			return err
		}
		if hasChildren(tx, key) {
			return errdefs.ErrFailedPrecondition.WithMessage(fmt.Sprintf("snapshot %q has children", key))
		}
		id, kind = r.ID, r.Kind
		return deleteRecord(tx, key, r)
	})
	if err != nil {
		return fmt.Errorf("remove snapshot %q: %w", key, err)
	}
	// The snapshot is gone from the store. A container's writable layer
	// (active, not an unpack's) is deleted in the background, off the path
	// of `rm` and `run --rm`: renamed first, so no name is held, and recover
	// deletes whatever a crash leaves of it. Layers and failed unpacks go
	// at once: their callers expect the space back.
	remove := removeDir
	if kind == snapshot.KindActive && !strings.HasPrefix(key, snapshot.ExtractPrefix) {
		remove = func(dir string) error { return s.trash.RemoveFunc(dir, removeDir) }
	}
	if err := remove(s.dir(id)); err != nil {
		// Its directory is removed by the next New at the latest.
		slog.Warn("remove snapshot directory", "key", key, "err", err)
	}
	return nil
}

// Walk calls fn for every snapshot, in name order. fn runs outside the
// metadata transaction, so it may call back into the snapshotter.
func (s *Snapshotter) Walk(ctx context.Context, fn func(snapshot.Info) error) error {
	var infos []snapshot.Info
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSnapshots).ForEach(func(k, v []byte) error {
			var r record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("snapshot %q: corrupt record: %w", k, err)
			}
			infos = append(infos, s.info(string(k), r))
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("walk snapshots: %w", err)
	}
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Usage returns the space a snapshot's own directory takes: for overlay the
// upper layer, for vfs the whole copied tree. Committed snapshots report
// what was measured at commit; active ones are measured now.
func (s *Snapshotter) Usage(ctx context.Context, key string) (snapshot.Usage, error) {
	var r record
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		r, err = getRecord(tx, key)
		return err
	})
	if err != nil {
		return snapshot.Usage{}, fmt.Errorf("usage of snapshot %q: %w", key, err)
	}
	if r.Kind == snapshot.KindCommitted {
		return snapshot.Usage{Size: r.Size, Inodes: r.Inodes}, nil
	}
	u, err := diskUsage(filepath.Join(s.dir(r.ID), "fs"))
	if err != nil {
		return snapshot.Usage{}, fmt.Errorf("usage of snapshot %q: %w", key, err)
	}
	return u, nil
}

// diskUsage adds up the apparent size of everything below dir except
// directories (as docker's "size" does), counting hard links once, and the
// number of inodes.
func diskUsage(dir string) (snapshot.Usage, error) {
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	var u snapshot.Usage
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == dir {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: path, Err: err}
		}
		k := inode{uint64(st.Dev), st.Ino}
		if seen[k] {
			return nil
		}
		seen[k] = true
		u.Inodes++
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			u.Size += st.Size
		}
		return nil
	})
	if err != nil {
		return snapshot.Usage{}, fmt.Errorf("disk usage of %s: %w", dir, err)
	}
	return u, nil
}

// syncFS flushes the filesystem that holds dir.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}

// removeDir removes a snapshot directory. Anything still mounted inside it
// (left by a crash) is detached first: os.RemoveAll would otherwise descend
// into the mounted filesystem and delete what is not ours.
func removeDir(dir string) error {
	if err := snapshot.UnmountDirs(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	err := os.RemoveAll(dir)
	if errors.Is(err, unix.EBUSY) {
		// A mount on a file, which UnmountDirs does not look for.
		if uerr := snapshot.UnmountAll(dir); uerr != nil {
			return fmt.Errorf("remove %s: %w", dir, uerr)
		}
		err = os.RemoveAll(dir)
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}
