package image

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Bucket layout of root/images.db. Every change is one bbolt transaction,
// which bbolt fsyncs before it returns: a crash leaves the old or the new
// state, never half of one.
var (
	bucketImages = []byte("images")   // image ID → JSON Image
	bucketRefs   = []byte("refs")     // full reference → image ID
	bucketByID   = []byte("refsbyid") // image ID + "\x00" + full reference → ""
	bucketMeta   = []byte("meta")     // "version" → schema version
	schemaKey    = []byte("version")
	schemaV1     = []byte("1")
	indexSep     = []byte{0}
	openTimeout  = 2 * time.Second
	idPrefix     = []byte(digest.SHA256.String() + ":")
	errNilImage  = errdefs.ErrInvalidArgument.WithMessage("image is nil")
	lockedSuffix = "is in use by another process"
)

// NewStore opens (creating if needed) the image store whose bbolt database
// is root/images.db. The returned store also implements io.Closer; close it
// to release the database lock.
func NewStore(root string) (Store, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("image store %s: %w", root, err)
	}
	path := filepath.Join(root, "images.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: openTimeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("image store %s %s: %w", path, lockedSuffix, errdefs.ErrUnavailable)
		}
		return nil, fmt.Errorf("image store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketImages, bucketRefs, bucketByID, bucketMeta} {
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
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("image store %s: %w", path, err)
	}
	return &boltStore{db: db}, nil
}

type boltStore struct {
	db *bolt.DB
}

var _ Store = (*boltStore)(nil)

// Close releases the database.
func (s *boltStore) Close() error {
	return s.db.Close()
}

func validID(id digest.Digest) error {
	if err := id.Validate(); err != nil || id.Algorithm() != digest.SHA256 {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid image ID %q", id))
	}
	return nil
}

func indexKey(id digest.Digest, ref string) []byte {
	k := make([]byte, 0, len(id)+1+len(ref))
	k = append(k, id...)
	k = append(k, indexSep...)
	return append(k, ref...)
}

func getImage(tx *bolt.Tx, id digest.Digest) (*Image, error) {
	v := tx.Bucket(bucketImages).Get([]byte(id))
	if v == nil {
		return nil, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("No such image: %s", id))
	}
	var img Image
	if err := json.Unmarshal(v, &img); err != nil {
		return nil, fmt.Errorf("image %s: corrupt record: %w", id, err)
	}
	return &img, nil
}

func putImage(tx *bolt.Tx, img *Image) error {
	v, err := json.Marshal(img)
	if err != nil {
		return fmt.Errorf("image %s: %w", img.ID, err)
	}
	return tx.Bucket(bucketImages).Put([]byte(img.ID), v)
}

func (s *boltStore) Put(ctx context.Context, img *Image) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if img == nil {
		return errNilImage
	}
	if err := validID(img.ID); err != nil {
		return err
	}
	if n, m := len(img.Layers), len(img.Config.RootFS.DiffIDs); n != m {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("image %s has %d layers but %d diff IDs", img.ID, n, m))
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if old, err := getImage(tx, img.ID); err == nil {
			// The image was here first: keep when it arrived and when it
			// was last tagged.
			if !old.Added.IsZero() {
				img.Added = old.Added
			}
			if img.LastTagTime.Before(old.LastTagTime) {
				img.LastTagTime = old.LastTagTime
			}
		}
		if img.Added.IsZero() {
			img.Added = time.Now().UTC()
		}
		return putImage(tx, img)
	})
}

func (s *boltStore) Get(ctx context.Context, id digest.Digest) (*Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validID(id); err != nil {
		return nil, err
	}
	var img *Image
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		img, err = getImage(tx, id)
		return err
	})
	return img, err
}

func (s *boltStore) List(ctx context.Context) ([]*Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []*Image
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketImages).ForEach(func(k, v []byte) error {
			var img Image
			if err := json.Unmarshal(v, &img); err != nil {
				return fmt.Errorf("image %s: corrupt record: %w", k, err)
			}
			out = append(out, &img)
			return nil
		})
	})
	return out, err
}

func (s *boltStore) Delete(ctx context.Context, id digest.Digest) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := validID(id); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		images := tx.Bucket(bucketImages)
		if images.Get([]byte(id)) == nil {
			return errdefs.ErrNotFound.WithMessage(fmt.Sprintf("No such image: %s", id))
		}
		if err := images.Delete([]byte(id)); err != nil {
			return err
		}
		refs := tx.Bucket(bucketRefs)
		byID := tx.Bucket(bucketByID)
		prefix := indexKey(id, "")
		var keys [][]byte
		c := byID.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, append([]byte(nil), k...))
		}
		for _, k := range keys {
			if err := refs.Delete(k[len(prefix):]); err != nil {
				return err
			}
			if err := byID.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *boltStore) AddReference(ctx context.Context, ref reference.Named, id digest.Digest) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, named, err := refKey(ref)
	if err != nil {
		return err
	}
	if reference.FamiliarName(named) == digest.SHA256.String() {
		return errdefs.ErrInvalidArgument.WithMessage("refusing to create an ambiguous tag using digest algorithm as name")
	}
	if err := validID(id); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		img, err := getImage(tx, id)
		if err != nil {
			return err
		}
		refs := tx.Bucket(bucketRefs)
		byID := tx.Bucket(bucketByID)
		if old := refs.Get([]byte(key)); old != nil && digest.Digest(old) != id {
			// Moving a tag leaves the old image untagged, as docker does.
			if err := byID.Delete(indexKey(digest.Digest(old), key)); err != nil {
				return err
			}
		}
		if err := refs.Put([]byte(key), []byte(id)); err != nil {
			return err
		}
		if err := byID.Put(indexKey(id, key), nil); err != nil {
			return err
		}
		img.LastTagTime = time.Now().UTC()
		return putImage(tx, img)
	})
}

func (s *boltStore) DeleteReference(ctx context.Context, ref reference.Named) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, named, err := refKey(ref)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		refs := tx.Bucket(bucketRefs)
		id := refs.Get([]byte(key))
		if id == nil {
			return noSuchImage(key, named)
		}
		if err := tx.Bucket(bucketByID).Delete(indexKey(digest.Digest(id), key)); err != nil {
			return err
		}
		return refs.Delete([]byte(key))
	})
}

func (s *boltStore) References(ctx context.Context, id digest.Digest) ([]reference.Named, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validID(id); err != nil {
		return nil, err
	}
	out := []reference.Named{}
	err := s.db.View(func(tx *bolt.Tx) error {
		prefix := indexKey(id, "")
		c := tx.Bucket(bucketByID).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			named, err := reference.ParseNormalizedNamed(string(k[len(prefix):]))
			if err != nil {
				return fmt.Errorf("image %s: corrupt reference %q: %w", id, k[len(prefix):], err)
			}
			out = append(out, named)
		}
		return nil
	})
	return out, err
}

func (s *boltStore) Lookup(ctx context.Context, ref reference.Named) (digest.Digest, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	key, named, err := refKey(ref)
	if err != nil {
		return "", err
	}
	var id digest.Digest
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRefs).Get([]byte(key))
		if v == nil {
			return noSuchImage(key, named)
		}
		id = digest.Digest(v)
		return nil
	})
	return id, err
}

func (s *boltStore) Resolve(ctx context.Context, input string) (*Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// A full ID ("sha256:<64 hex>" or the bare hex) names exactly one image
	// and can never be a repository name.
	if id, ok := fullID(input); ok {
		img, err := s.Get(ctx, id)
		if errdefs.IsNotFound(err) {
			return nil, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("No such image: %s", id))
		}
		return img, err
	}
	named, err := reference.ParseNormalizedNamed(input)
	if err != nil {
		return nil, invalidReference(err)
	}
	key, named, err := refKey(named)
	if err != nil {
		return nil, err
	}
	var found *Image
	err = s.db.View(func(tx *bolt.Tx) error {
		// Names first, as docker: a tag called "abc123" wins over an
		// image whose ID starts with abc123.
		if v := tx.Bucket(bucketRefs).Get([]byte(key)); v != nil {
			img, err := getImage(tx, digest.Digest(v))
			if err == nil {
				found = img
				return nil
			}
			if !errdefs.IsNotFound(err) {
				return err
			}
		}
		// name@digest where digest is the manifest an image came from,
		// and the image carries that repository name.
		if c, ok := named.(reference.Canonical); ok {
			img, err := findByManifest(tx, c)
			if err != nil || img != nil {
				found = img
				return err
			}
		}
		// A unique prefix of an ID; an ambiguous one matches nothing
		// rather than risking the wrong image.
		if short := strings.TrimPrefix(input, "sha256:"); isHexID(short) {
			prefix := append(append([]byte(nil), idPrefix...), short...)
			c := tx.Bucket(bucketImages).Cursor()
			k, _ := c.Seek(prefix)
			if k != nil && bytes.HasPrefix(k, prefix) {
				if next, _ := c.Next(); next == nil || !bytes.HasPrefix(next, prefix) {
					img, err := getImage(tx, digest.Digest(k))
					if err != nil {
						return err
					}
					found = img
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if found == nil {
		return nil, noSuchImage(input, named)
	}
	return found, nil
}

// findByManifest finds the image whose manifest digest is c's digest and
// that has a reference in c's repository.
func findByManifest(tx *bolt.Tx, c reference.Canonical) (*Image, error) {
	var found *Image
	err := tx.Bucket(bucketImages).ForEach(func(k, v []byte) error {
		if found != nil {
			return nil
		}
		var img Image
		if err := json.Unmarshal(v, &img); err != nil {
			return fmt.Errorf("image %s: corrupt record: %w", k, err)
		}
		if img.Manifest != c.Digest() {
			return nil
		}
		prefix := indexKey(img.ID, "")
		cur := tx.Bucket(bucketByID).Cursor()
		for ik, _ := cur.Seek(prefix); ik != nil && bytes.HasPrefix(ik, prefix); ik, _ = cur.Next() {
			r, err := reference.ParseNormalizedNamed(string(ik[len(prefix):]))
			if err == nil && r.Name() == c.Name() {
				found = &img
				return nil
			}
		}
		return nil
	})
	return found, err
}
