package registry

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/berth-engine/berth/internal/fsutil"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// storage is the registry's on-disk layout under root:
//
//	blobs/sha256/<hex>                         blob bytes (manifests too), immutable
//	uploads/<uuid>                             upload sessions in progress
//	repositories/<name>/_layers/sha256/<hex>   blob linked into the repository
//	repositories/<name>/_manifests/sha256/<hex> manifest in the repository (content: media type)
//	repositories/<name>/_tags/<tag>            tag → manifest digest
//	repositories/<name>/_referrers/<subject hex>/<hex>  manifests whose subject is <subject>
//
// Repository path components never start with "_", so the reserved
// directories cannot collide with nested repository names. Every file is
// written temp → fsync → rename, so a crash leaves old or new state.
type storage struct {
	root string
	// gc is held shared by every write and exclusively by the garbage
	// collector, which must not see a blob whose manifest is on its way.
	gc sync.RWMutex
}

func newStorage(root string) (*storage, error) {
	s := &storage{root: root}
	for _, d := range []string{s.blobDir(), filepath.Join(root, "uploads"), filepath.Join(root, "repositories")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("registry storage: %w", err)
		}
	}
	return s, nil
}

func (s *storage) blobDir() string { return filepath.Join(s.root, "blobs", "sha256") }

func (s *storage) blobPath(d digest.Digest) string {
	return filepath.Join(s.blobDir(), d.Encoded())
}

func (s *storage) repoDir(name string) string {
	return filepath.Join(s.root, "repositories", filepath.FromSlash(name))
}

func (s *storage) layerLink(name string, d digest.Digest) string {
	return filepath.Join(s.repoDir(name), "_layers", "sha256", d.Encoded())
}

func (s *storage) manifestLink(name string, d digest.Digest) string {
	return filepath.Join(s.repoDir(name), "_manifests", "sha256", d.Encoded())
}

func (s *storage) tagPath(name, tag string) string {
	return filepath.Join(s.repoDir(name), "_tags", tag)
}

func (s *storage) referrerDir(name string, subject digest.Digest) string {
	return filepath.Join(s.repoDir(name), "_referrers", subject.Encoded())
}

func (s *storage) uploadPath(id string) string {
	return filepath.Join(s.root, "uploads", id)
}

// writeFile writes a small file atomically.
func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, b, 0o644)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// blobInfo returns a blob's size if it exists.
func (s *storage) blobSize(d digest.Digest) (int64, bool) {
	fi, err := os.Stat(s.blobPath(d))
	if err != nil {
		return 0, false
	}
	return fi.Size(), true
}

// repoHasBlob reports whether the blob is linked into the repository (a
// layer or config uploaded or mounted there, or a manifest of it).
func (s *storage) repoHasBlob(name string, d digest.Digest) bool {
	if !exists(s.blobPath(d)) {
		return false
	}
	return exists(s.layerLink(name, d)) || exists(s.manifestLink(name, d))
}

func (s *storage) linkBlob(name string, d digest.Digest) error {
	return writeFile(s.layerLink(name, d), nil)
}

// commitBlobFile moves a verified file into the blob store.
func (s *storage) commitBlobFile(tmp string, d digest.Digest) error {
	target := s.blobPath(d)
	if exists(target) {
		return os.Remove(tmp)
	}
	f, err := os.Open(tmp)
	if err != nil {
		return err
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, target); err != nil {
		return err
	}
	return fsutil.SyncDir(s.blobDir())
}

// putBlobBytes stores a small blob (a manifest).
func (s *storage) putBlobBytes(b []byte) (digest.Digest, error) {
	d := digest.FromBytes(b)
	if exists(s.blobPath(d)) {
		return d, nil
	}
	return d, fsutil.WriteFileAtomic(s.blobPath(d), b, 0o444)
}

// newUploadID makes a random upload session ID.
func newUploadID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validUploadID guards the upload path against traversal.
func validUploadID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// tags lists a repository's tags, sorted.
func (s *storage) tags(name string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.repoDir(name), "_tags"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// repoExists reports whether the repository has any manifest or blob.
func (s *storage) repoExists(name string) bool {
	return exists(filepath.Join(s.repoDir(name), "_manifests")) || exists(filepath.Join(s.repoDir(name), "_layers"))
}

// catalog lists repositories that have manifests, sorted.
func (s *storage) catalog() ([]string, error) {
	base := filepath.Join(s.root, "repositories")
	var out []string
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if strings.HasPrefix(d.Name(), "_") {
			if d.Name() == "_manifests" {
				rel, _ := filepath.Rel(base, filepath.Dir(p))
				out = append(out, filepath.ToSlash(rel))
			}
			return filepath.SkipDir
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// repositories lists every repository directory (with manifests or layers).
func (s *storage) repositories() ([]string, error) {
	base := filepath.Join(s.root, "repositories")
	var out []string
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), "_") {
			rel, _ := filepath.Rel(base, filepath.Dir(p))
			if len(out) == 0 || out[len(out)-1] != filepath.ToSlash(rel) {
				out = append(out, filepath.ToSlash(rel))
			}
			return filepath.SkipDir
		}
		return nil
	})
	sort.Strings(out)
	return dedupe(out), err
}

func dedupe(in []string) []string {
	var out []string
	for i, s := range in {
		if i == 0 || in[i-1] != s {
			out = append(out, s)
		}
	}
	return out
}

// manifestRecord is what a manifest link file holds.
type manifestRecord struct {
	MediaType    string `json:"mediaType"`
	ArtifactType string `json:"artifactType,omitempty"`
	Size         int64  `json:"size"`
}

func (s *storage) readManifestRecord(name string, d digest.Digest) (manifestRecord, bool) {
	b, err := os.ReadFile(s.manifestLink(name, d))
	if err != nil {
		return manifestRecord{}, false
	}
	var r manifestRecord
	if json.Unmarshal(b, &r) != nil {
		return manifestRecord{}, false
	}
	return r, true
}

// manifestDigests lists the manifests linked into a repository.
func (s *storage) manifestDigests(name string) []digest.Digest {
	entries, _ := os.ReadDir(filepath.Join(s.repoDir(name), "_manifests", "sha256"))
	var out []digest.Digest
	for _, e := range entries {
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if d.Validate() == nil {
			out = append(out, d)
		}
	}
	return out
}

// referrers lists the descriptors of manifests whose subject is d.
func (s *storage) referrers(name string, subject digest.Digest) []ocispec.Descriptor {
	entries, _ := os.ReadDir(s.referrerDir(name, subject))
	out := []ocispec.Descriptor{}
	for _, e := range entries {
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if d.Validate() != nil {
			continue
		}
		rec, ok := s.readManifestRecord(name, d)
		if !ok {
			continue
		}
		desc := ocispec.Descriptor{MediaType: rec.MediaType, Digest: d, Size: rec.Size, ArtifactType: rec.ArtifactType}
		if b, err := os.ReadFile(s.blobPath(d)); err == nil {
			var m struct {
				Annotations map[string]string `json:"annotations"`
			}
			if json.Unmarshal(b, &m) == nil {
				desc.Annotations = m.Annotations
			}
		}
		out = append(out, desc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out
}

// copyN appends r to an upload file and returns the bytes written.
func appendTo(path string, r io.Reader) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return 0, err
	}
	n, err := io.CopyBuffer(f, r, make([]byte, 1<<20))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}
