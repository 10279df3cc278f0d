// Package volume is berth's local volume driver: named volumes as
// directories under <data-root>/volumes, optionally backed by a mount
// (docker's local driver options type=, device=, o=), with a crash-safe
// on-disk layout.
//
// Layout:
//
//	<root>/<name>/opts.json   the volume's record (driver options, labels, creation time)
//	<root>/<name>/_data       the data, or the mount point of its device
//	<root>/.tmp-*             a create cut short by a crash (removed at Open)
//	<root>/.trash-*           a remove cut short by a crash (removed at Open)
//
// A volume comes into existence by renaming a complete temporary
// directory to its name, and leaves it by renaming it to a trash
// directory: a crash at any moment leaves either a whole volume or none.
package volume

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/berth-engine/berth/internal/fsutil"
	"github.com/containerd/errdefs"
	"github.com/moby/sys/mount"
	"github.com/moby/sys/mountinfo"
)

// DriverName is the only driver berth has.
const DriverName = "local"

// AnonymousLabel marks volumes made for `-v /path` and image VOLUMEs, as
// docker does.
const AnonymousLabel = "com.docker.volume.anonymous"

// Volume is one volume's record.
type Volume struct {
	Name      string
	Labels    map[string]string `json:",omitempty"`
	Options   map[string]string `json:",omitempty"`
	CreatedAt time.Time
}

// Anonymous reports whether the volume was made without a name.
func (v *Volume) Anonymous() bool {
	_, ok := v.Labels[AnonymousLabel]
	return ok
}

// mounted reports whether the volume's data is a mount of its own.
func (v *Volume) mounted() bool { return v.Options["type"] != "" || v.Options["device"] != "" }

var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// ValidateName applies docker's rule for local volume names.
func ValidateName(name string) error {
	if !validName.MatchString(name) {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("%q includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path", name))
	}
	return nil
}

var validOpts = map[string]bool{"type": true, "device": true, "o": true, "size": false}

func validateOptions(opts map[string]string) error {
	for k := range opts {
		if !validOpts[k] {
			return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid option: %q", k))
		}
	}
	if opts["type"] != "" && opts["device"] == "" && opts["type"] != "tmpfs" {
		return errdefs.ErrInvalidArgument.WithMessage("missing required option: \"device\"")
	}
	if opts["device"] != "" && opts["type"] == "" {
		return errdefs.ErrInvalidArgument.WithMessage("missing required option: \"type\"")
	}
	if opts["type"] == "none" || strings.Contains(","+opts["o"]+",", ",bind,") {
		if !filepath.IsAbs(opts["device"]) {
			return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid bind device %q: must be an absolute path", opts["device"]))
		}
	}
	if o := opts["o"]; o != "" {
		if strings.Contains(o, "addr=") {
			return errdefs.ErrNotImplemented.WithMessage("network file systems (o=addr=…) are not supported by berth's local driver")
		}
	}
	return nil
}

// Store is the local driver's set of volumes. Its methods are safe for
// concurrent use.
type Store struct {
	root string
	mu   sync.Mutex
	vols map[string]*Volume
	refs map[string]map[string]bool // mounted volumes → who holds them
	// owner, when set, owns each new volume's _data (SetDataOwner).
	owner *[2]int
}

// Open loads the volumes under root, removing what crashed creates and
// removes left behind.
func Open(root string) (*Store, error) {
	if err := os.MkdirAll(root, 0o701); err != nil {
		return nil, err
	}
	s := &Store{root: root, vols: map[string]*Volume{}, refs: map[string]map[string]bool{}}
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		p := filepath.Join(root, e.Name())
		if strings.HasPrefix(e.Name(), ".tmp-") || strings.HasPrefix(e.Name(), ".trash-") {
			_ = unmountIfMounted(filepath.Join(p, "_data"))
			_ = os.RemoveAll(p)
			continue
		}
		b, err := os.ReadFile(filepath.Join(p, "opts.json"))
		if err != nil {
			continue
		}
		var v Volume
		if err := json.Unmarshal(b, &v); err != nil || v.Name != e.Name() {
			continue
		}
		s.vols[v.Name] = &v
	}
	return s, nil
}

// Root is the directory holding the volumes.
func (s *Store) Root() string { return s.root }

// Path is where a volume's data is (its Mountpoint).
func (s *Store) Path(name string) string { return filepath.Join(s.root, name, "_data") }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NewAnonymousName returns a fresh name for an anonymous volume (64 hex
// digits, as docker's).
func NewAnonymousName() string { return randHex(32) }

// Create makes a volume; an existing volume of that name is returned as it
// is (created false), as docker does, unless the options differ.
func (s *Store) Create(name string, opts, labels map[string]string) (v *Volume, created bool, err error) {
	if name == "" {
		name = NewAnonymousName()
	}
	if err := ValidateName(name); err != nil {
		return nil, false, err
	}
	if err := validateOptions(opts); err != nil {
		return nil, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.vols[name]; ok {
		if len(opts) > 0 && !sameMap(opts, old.Options) {
			return nil, false, errdefs.ErrConflict.WithMessage(fmt.Sprintf("volume name %q already exists with different options", name))
		}
		return old, false, nil
	}
	v = &Volume{Name: name, Labels: copyMap(labels), Options: copyMap(opts), CreatedAt: time.Now().UTC().Truncate(time.Second)}
	tmp := filepath.Join(s.root, ".tmp-"+randHex(8))
	if err := os.MkdirAll(filepath.Join(tmp, "_data"), 0o755); err != nil {
		return nil, false, err
	}
	if err := s.chownData(filepath.Join(tmp, "_data")); err != nil {
		_ = os.RemoveAll(tmp)
		return nil, false, err
	}
	b, _ := json.Marshal(v)
	if err := fsutil.WriteFileAtomic(filepath.Join(tmp, "opts.json"), b, 0o600); err != nil {
		_ = os.RemoveAll(tmp)
		return nil, false, err
	}
	if err := os.Rename(tmp, filepath.Join(s.root, name)); err != nil {
		_ = os.RemoveAll(tmp)
		return nil, false, fmt.Errorf("create volume %s: %w", name, err)
	}
	if err := fsutil.SyncDir(s.root); err != nil {
		return nil, false, err
	}
	s.vols[name] = v
	return v, true, nil
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Get returns the named volume.
func (s *Store) Get(name string) (*Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vols[name]
	if !ok {
		return nil, errdefs.ErrNotFound.WithMessage("get " + name + ": no such volume")
	}
	return v, nil
}

// List returns every volume, by name.
func (s *Store) List() []*Volume {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Volume, 0, len(s.vols))
	for _, v := range s.vols {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Remove deletes a volume and its data. Callers check that no container
// uses it.
func (s *Store) Remove(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.vols[name]; !ok {
		return errdefs.ErrNotFound.WithMessage("get " + name + ": no such volume")
	}
	if len(s.refs[name]) > 0 {
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("remove %s: volume is in use", name))
	}
	dir := filepath.Join(s.root, name)
	if err := unmountIfMounted(filepath.Join(dir, "_data")); err != nil {
		return fmt.Errorf("remove %s: unmount: %w", name, err)
	}
	trash := filepath.Join(s.root, ".trash-"+randHex(8))
	if err := os.Rename(dir, trash); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	delete(s.vols, name)
	_ = fsutil.SyncDir(s.root)
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

// Mount makes the volume's data available for ref (a container ID) and
// returns its path. Plain volumes are just their directory; volumes with
// a device are mounted on first use.
func (s *Store) Mount(name, ref string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vols[name]
	if !ok {
		return "", errdefs.ErrNotFound.WithMessage("get " + name + ": no such volume")
	}
	p := s.Path(name)
	if !v.mounted() {
		return p, nil
	}
	if len(s.refs[name]) == 0 {
		if m, _ := mountinfo.Mounted(p); !m {
			typ, dev := v.Options["type"], v.Options["device"]
			if typ == "none" {
				typ = ""
			}
			if dev == "" {
				dev = typ
			}
			if err := mount.Mount(dev, p, typ, v.Options["o"]); err != nil {
				return "", fmt.Errorf("mount volume %s: %w", name, err)
			}
		}
	}
	if s.refs[name] == nil {
		s.refs[name] = map[string]bool{}
	}
	s.refs[name][ref] = true
	return p, nil
}

// Unmount releases ref's hold; the last one unmounts a device volume.
func (s *Store) Unmount(name, ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vols[name]
	if !ok || !v.mounted() {
		return nil
	}
	delete(s.refs[name], ref)
	if len(s.refs[name]) > 0 {
		return nil
	}
	delete(s.refs, name)
	return unmountIfMounted(s.Path(name))
}

func unmountIfMounted(p string) error {
	if m, err := mountinfo.Mounted(p); err != nil || !m {
		return nil
	}
	return mount.Unmount(p)
}

// Empty reports whether the volume's data directory holds nothing.
func (s *Store) Empty(name string) bool {
	ents, err := os.ReadDir(s.Path(name))
	return err == nil && len(ents) == 0
}

// Size is the disk usage of the volume's data, in bytes (-1 if unknown).
func (s *Store) Size(name string) int64 {
	var n int64
	seen := map[uint64]bool{}
	err := filepath.Walk(s.Path(name), func(_ string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		if st, ok := sysStat(fi); ok {
			if st.Nlink > 1 {
				if seen[st.Ino] {
					return nil
				}
				seen[st.Ino] = true
			}
			n += st.Blocks * 512
			return nil
		}
		n += fi.Size()
		return nil
	})
	if err != nil {
		return -1
	}
	return n
}
