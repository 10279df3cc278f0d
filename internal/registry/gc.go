package registry

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
)

// GCReport says what a collection removed.
type GCReport struct {
	BlobsDeleted   int
	BytesReclaimed int64
	UploadsExpired int
}

// GC is the online garbage collector: it deletes blobs that no manifest
// of any repository references (directly, as an index child, or as a
// config or layer) and that are older than grace, and upload sessions idle
// for longer than uploadTTL. It holds the storage's lock exclusively, so
// no manifest can be written between mark and sweep, and the grace period
// protects blobs uploaded for a manifest that has not been pushed yet.
func (r *Registry) GC(ctx context.Context, grace, uploadTTL time.Duration) (GCReport, error) {
	r.st.gc.Lock()
	defer r.st.gc.Unlock()
	var rep GCReport
	marked := map[digest.Digest]bool{}
	repos, err := r.st.repositories()
	if err != nil {
		return rep, err
	}
	for _, name := range repos {
		for _, d := range r.st.manifestDigests(name) {
			r.mark(name, d, marked, 0)
		}
	}
	now := time.Now()
	entries, err := os.ReadDir(r.st.blobDir())
	if err != nil {
		return rep, err
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if d.Validate() != nil || marked[d] {
			continue
		}
		fi, err := e.Info()
		if err != nil || now.Sub(fi.ModTime()) < grace {
			continue
		}
		if os.Remove(r.st.blobPath(d)) == nil {
			rep.BlobsDeleted++
			rep.BytesReclaimed += fi.Size()
			for _, name := range repos {
				os.Remove(r.st.layerLink(name, d))
			}
		}
	}
	// Idle upload sessions.
	ups, _ := os.ReadDir(filepath.Join(r.st.root, "uploads"))
	for _, e := range ups {
		fi, err := e.Info()
		if err != nil || now.Sub(fi.ModTime()) < uploadTTL {
			continue
		}
		r.mu.Lock()
		delete(r.uploads, e.Name())
		r.mu.Unlock()
		if os.Remove(filepath.Join(r.st.root, "uploads", e.Name())) == nil {
			rep.UploadsExpired++
		}
	}
	return rep, nil
}

// mark marks a manifest and everything it references.
func (r *Registry) mark(name string, d digest.Digest, marked map[digest.Digest]bool, depth int) {
	if marked[d] || depth > 8 {
		return
	}
	marked[d] = true
	b, err := os.ReadFile(r.st.blobPath(d))
	if err != nil {
		return
	}
	var m manifestShape
	if json.Unmarshal(b, &m) != nil {
		return
	}
	if m.Config != nil {
		marked[m.Config.Digest] = true
	}
	for _, l := range m.Layers {
		marked[l.Digest] = true
	}
	for _, c := range m.Manifests {
		r.mark(name, c.Digest, marked, depth+1)
	}
}

// RunGC collects every interval until ctx ends.
func (r *Registry) RunGC(ctx context.Context, interval, grace time.Duration) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			rep, err := r.GC(ctx, grace, 24*time.Hour)
			if err != nil {
				r.log.Warn("registry garbage collection", "err", err)
				continue
			}
			r.log.Info("registry garbage collection", "blobs", rep.BlobsDeleted, "bytes", rep.BytesReclaimed, "uploads", rep.UploadsExpired)
		}
	}
}
