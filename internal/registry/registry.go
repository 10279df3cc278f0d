// Package registry is berth's built-in registry server (`berth registry
// serve`): the OCI distribution spec v1.1 on a filesystem layout that
// survives restarts — blob uploads (monolithic, chunked, resumable,
// cross-repository mounts), manifests and indexes by tag and digest, tag
// lists and the catalog with pagination, deletes, the referrers API, basic
// auth from an htpasswd file and an online garbage collector.
//
// It is written on berth's own terms rather than embedding the CNCF
// distribution registry: the protocol is small, the storage is the same
// content-addressed layout berth uses elsewhere, and it adds no modules to
// the daemon's build (docs/architecture.md explains the choice).
package registry

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// MaxManifestSize is the largest manifest accepted (as distribution's 4 MiB).
const MaxManifestSize = 4 << 20

// Options configure a Registry.
type Options struct {
	// Root is the storage directory.
	Root string
	// Htpasswd, when set, is an htpasswd file (bcrypt entries): every
	// request then needs basic auth.
	Htpasswd string
	// Logger gets request logs at debug level; nil is slog.Default().
	Logger *slog.Logger
	// CatalogMaxEntries bounds one catalog page (default 1000).
	CatalogMaxEntries int
}

// Registry is the HTTP handler of the distribution API.
type Registry struct {
	st   *storage
	auth *htpasswd
	log  *slog.Logger
	max  int

	mu      sync.Mutex
	uploads map[string]*upload
}

// upload is a blob upload session: its file and the running hash of what
// the file holds (rebuilt from the file after a restart).
type upload struct {
	mu   sync.Mutex
	repo string
	h    hash.Hash
	size int64
}

// New opens (creating) the registry's storage.
func New(opts Options) (*Registry, error) {
	st, err := newStorage(opts.Root)
	if err != nil {
		return nil, err
	}
	r := &Registry{st: st, log: opts.Logger, max: opts.CatalogMaxEntries, uploads: map[string]*upload{}}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.max <= 0 {
		r.max = 1000
	}
	if opts.Htpasswd != "" {
		a, err := loadHtpasswd(opts.Htpasswd)
		if err != nil {
			return nil, err
		}
		r.auth = a
	}
	return r, nil
}

// Error codes of the distribution spec.
const (
	codeBlobUnknown         = "BLOB_UNKNOWN"
	codeBlobUploadInvalid   = "BLOB_UPLOAD_INVALID"
	codeBlobUploadUnknown   = "BLOB_UPLOAD_UNKNOWN"
	codeDigestInvalid       = "DIGEST_INVALID"
	codeManifestBlobUnknown = "MANIFEST_BLOB_UNKNOWN"
	codeManifestInvalid     = "MANIFEST_INVALID"
	codeManifestUnknown     = "MANIFEST_UNKNOWN"
	codeNameInvalid         = "NAME_INVALID"
	codeNameUnknown         = "NAME_UNKNOWN"
	codeSizeInvalid         = "SIZE_INVALID"
	codeUnauthorized        = "UNAUTHORIZED"
	codeUnsupported         = "UNSUPPORTED"
	codeRangeInvalid        = "RANGE_INVALID"
)

var codeMessages = map[string]string{
	codeBlobUnknown:         "blob unknown to registry",
	codeBlobUploadInvalid:   "blob upload invalid",
	codeBlobUploadUnknown:   "blob upload unknown to registry",
	codeDigestInvalid:       "provided digest did not match uploaded content",
	codeManifestBlobUnknown: "blob unknown to registry",
	codeManifestInvalid:     "manifest invalid",
	codeManifestUnknown:     "manifest unknown",
	codeNameInvalid:         "invalid repository name",
	codeNameUnknown:         "repository name not known to registry",
	codeSizeInvalid:         "provided length did not match content length",
	codeUnauthorized:        "authentication required",
	codeUnsupported:         "The operation is unsupported.",
	codeRangeInvalid:        "invalid content range",
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code string, detail any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string][]apiError{"errors": {{Code: code, Message: codeMessages[code], Detail: detail}}})
}

var (
	// The distribution spec's name and tag grammars.
	nameComponent = `[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*`
	namePattern   = nameComponent + `(?:/` + nameComponent + `)*`
	tagRe         = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

	reManifest   = regexp.MustCompile(`^/v2/(` + namePattern + `)/manifests/([^/]+)$`)
	reBlob       = regexp.MustCompile(`^/v2/(` + namePattern + `)/blobs/([^/]+)$`)
	reUploads    = regexp.MustCompile(`^/v2/(` + namePattern + `)/blobs/uploads/?$`)
	reUpload     = regexp.MustCompile(`^/v2/(` + namePattern + `)/blobs/uploads/([^/]+)$`)
	reTags       = regexp.MustCompile(`^/v2/(` + namePattern + `)/tags/list$`)
	reReferrers  = regexp.MustCompile(`^/v2/(` + namePattern + `)/referrers/([^/]+)$`)
	reNameLength = 255
)

// ServeHTTP implements http.Handler.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		r.log.Debug("registry request", "method", req.Method, "path", req.URL.Path, "status", sw.status, "duration", time.Since(start))
	}()
	if r.auth != nil && !r.auth.check(req) {
		sw.Header().Set("WWW-Authenticate", `Basic realm="berth-registry"`)
		writeError(sw, http.StatusUnauthorized, codeUnauthorized, nil)
		return
	}
	r.route(sw, req)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (r *Registry) route(w http.ResponseWriter, req *http.Request) {
	p := req.URL.Path
	switch {
	case p == "/v2/" || p == "/v2":
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			writeError(w, http.StatusMethodNotAllowed, codeUnsupported, nil)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
		return
	case p == "/v2/_catalog":
		if req.Method != http.MethodGet {
			writeError(w, http.StatusMethodNotAllowed, codeUnsupported, nil)
			return
		}
		r.getCatalog(w, req)
		return
	}
	if m := reUploads.FindStringSubmatch(p); m != nil && r.validName(w, m[1]) {
		if req.Method == http.MethodPost {
			r.startUpload(w, req, m[1])
			return
		}
	} else if m := reUpload.FindStringSubmatch(p); m != nil && r.validName(w, m[1]) {
		switch req.Method {
		case http.MethodGet:
			r.uploadStatus(w, m[1], m[2])
			return
		case http.MethodPatch:
			r.patchUpload(w, req, m[1], m[2])
			return
		case http.MethodPut:
			r.putUpload(w, req, m[1], m[2])
			return
		case http.MethodDelete:
			r.cancelUpload(w, m[1], m[2])
			return
		}
	} else if m := reBlob.FindStringSubmatch(p); m != nil && r.validName(w, m[1]) {
		switch req.Method {
		case http.MethodGet, http.MethodHead:
			r.getBlob(w, req, m[1], m[2])
			return
		case http.MethodDelete:
			r.deleteBlob(w, m[1], m[2])
			return
		}
	} else if m := reManifest.FindStringSubmatch(p); m != nil && r.validName(w, m[1]) {
		switch req.Method {
		case http.MethodGet, http.MethodHead:
			r.getManifest(w, req, m[1], m[2])
			return
		case http.MethodPut:
			r.putManifest(w, req, m[1], m[2])
			return
		case http.MethodDelete:
			r.deleteManifest(w, m[1], m[2])
			return
		}
	} else if m := reTags.FindStringSubmatch(p); m != nil && r.validName(w, m[1]) {
		if req.Method == http.MethodGet {
			r.getTags(w, req, m[1])
			return
		}
	} else if m := reReferrers.FindStringSubmatch(p); m != nil && r.validName(w, m[1]) {
		if req.Method == http.MethodGet {
			r.getReferrers(w, req, m[1], m[2])
			return
		}
	} else if m == nil && strings.HasPrefix(p, "/v2/") {
		writeError(w, http.StatusNotFound, codeNameInvalid, nil)
		return
	} else {
		return // validName answered
	}
	writeError(w, http.StatusMethodNotAllowed, codeUnsupported, nil)
}

func (r *Registry) validName(w http.ResponseWriter, name string) bool {
	if len(name) > reNameLength {
		writeError(w, http.StatusBadRequest, codeNameInvalid, map[string]string{"name": name})
		return false
	}
	return true
}

// parseDigest parses a sha256 digest from a request.
func parseDigest(s string) (digest.Digest, bool) {
	d, err := digest.Parse(s)
	if err != nil || d.Algorithm() != digest.SHA256 {
		return "", false
	}
	return d, true
}

// --- blobs ---

func (r *Registry) getBlob(w http.ResponseWriter, req *http.Request, name, ds string) {
	d, ok := parseDigest(ds)
	if !ok {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, nil)
		return
	}
	if !r.st.repoHasBlob(name, d) {
		writeError(w, http.StatusNotFound, codeBlobUnknown, map[string]string{"digest": d.String()})
		return
	}
	f, err := os.Open(r.st.blobPath(d))
	if err != nil {
		writeError(w, http.StatusNotFound, codeBlobUnknown, map[string]string{"digest": d.String()})
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Etag", `"`+d.String()+`"`)
	w.Header().Set("Cache-Control", "max-age=31536000")
	http.ServeContent(w, req, "", fi.ModTime(), f)
}

func (r *Registry) deleteBlob(w http.ResponseWriter, name, ds string) {
	d, ok := parseDigest(ds)
	if !ok {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, nil)
		return
	}
	r.st.gc.RLock()
	defer r.st.gc.RUnlock()
	if err := os.Remove(r.st.layerLink(name, d)); err != nil {
		writeError(w, http.StatusNotFound, codeBlobUnknown, map[string]string{"digest": d.String()})
		return
	}
	// The bytes go when the garbage collector finds nothing using them.
	w.WriteHeader(http.StatusAccepted)
}

func (r *Registry) uploadLocation(w http.ResponseWriter, name, id string, size int64) {
	w.Header().Set("Location", "/v2/"+name+"/blobs/uploads/"+id)
	w.Header().Set("Docker-Upload-UUID", id)
	end := size - 1
	if end < 0 {
		end = 0
	}
	w.Header().Set("Range", fmt.Sprintf("0-%d", end))
}

func (r *Registry) blobCreated(w http.ResponseWriter, name string, d digest.Digest) {
	w.Header().Set("Location", "/v2/"+name+"/blobs/"+d.String())
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

func (r *Registry) startUpload(w http.ResponseWriter, req *http.Request, name string) {
	q := req.URL.Query()
	r.st.gc.RLock()
	defer r.st.gc.RUnlock()
	// Cross-repository mount.
	if ms := q.Get("mount"); ms != "" {
		if d, ok := parseDigest(ms); ok {
			from := q.Get("from")
			if (from != "" && r.st.repoHasBlob(from, d)) || (from == "" && exists(r.st.blobPath(d))) {
				if err := r.st.linkBlob(name, d); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				r.blobCreated(w, name, d)
				return
			}
		}
		// Not mountable: fall through to a new upload session.
	}
	id := newUploadID()
	f, err := os.OpenFile(r.st.uploadPath(id), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	f.Close()
	u := &upload{repo: name, h: sha256.New()}
	r.mu.Lock()
	r.uploads[id] = u
	r.mu.Unlock()

	if ds := q.Get("digest"); ds != "" {
		// Monolithic upload: POST with the whole blob.
		r.finishUpload(w, req, name, id, u, ds)
		return
	}
	r.uploadLocation(w, name, id, 0)
	w.Header().Set("Content-Length", "0")
	w.Header().Set("OCI-Chunk-Min-Length", "0")
	w.WriteHeader(http.StatusAccepted)
}

// session finds an upload session, rebuilding it from its file after a
// restart (resumable uploads survive the server).
func (r *Registry) session(name, id string) (*upload, bool) {
	if !validUploadID(id) {
		return nil, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if u, ok := r.uploads[id]; ok {
		return u, u.repo == name
	}
	f, err := os.Open(r.st.uploadPath(id))
	if err != nil {
		return nil, false
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, false
	}
	u := &upload{repo: name, h: h, size: n}
	r.uploads[id] = u
	return u, true
}

func (r *Registry) uploadStatus(w http.ResponseWriter, name, id string) {
	u, ok := r.session(name, id)
	if !ok {
		writeError(w, http.StatusNotFound, codeBlobUploadUnknown, nil)
		return
	}
	u.mu.Lock()
	size := u.size
	u.mu.Unlock()
	r.uploadLocation(w, name, id, size)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusNoContent)
}

// appendChunk writes a request body to the session, checking
// Content-Range (resumed chunks must start where the upload ends).
func (r *Registry) appendChunk(w http.ResponseWriter, req *http.Request, id string, u *upload) bool {
	if cr := req.Header.Get("Content-Range"); cr != "" {
		cr = strings.TrimPrefix(cr, "bytes ")
		startS, endS, ok := strings.Cut(cr, "-")
		start, err1 := strconv.ParseInt(startS, 10, 64)
		end, err2 := strconv.ParseInt(endS, 10, 64)
		if !ok || err1 != nil || err2 != nil || start != u.size || end < start-1 {
			r.uploadLocation(w, u.repo, id, u.size)
			writeError(w, http.StatusRequestedRangeNotSatisfiable, codeRangeInvalid, map[string]int64{"size": u.size})
			return false
		}
	}
	n, err := appendTo(r.st.uploadPath(id), io.TeeReader(req.Body, u.h))
	u.size += n
	if err != nil {
		// The hash may now be ahead of the file: rebuild it on the next use.
		r.mu.Lock()
		delete(r.uploads, id)
		r.mu.Unlock()
		writeError(w, http.StatusBadRequest, codeBlobUploadInvalid, err.Error())
		return false
	}
	return true
}

func (r *Registry) patchUpload(w http.ResponseWriter, req *http.Request, name, id string) {
	u, ok := r.session(name, id)
	if !ok {
		writeError(w, http.StatusNotFound, codeBlobUploadUnknown, nil)
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if !r.appendChunk(w, req, id, u) {
		return
	}
	r.uploadLocation(w, name, id, u.size)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
}

func (r *Registry) putUpload(w http.ResponseWriter, req *http.Request, name, id string) {
	u, ok := r.session(name, id)
	if !ok {
		writeError(w, http.StatusNotFound, codeBlobUploadUnknown, nil)
		return
	}
	r.st.gc.RLock()
	defer r.st.gc.RUnlock()
	r.finishUpload(w, req, name, id, u, req.URL.Query().Get("digest"))
}

// finishUpload appends the final body, verifies the digest and commits.
func (r *Registry) finishUpload(w http.ResponseWriter, req *http.Request, name, id string, u *upload, ds string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	d, ok := parseDigest(ds)
	if !ok {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, "a sha256 digest query parameter is required")
		return
	}
	if !r.appendChunk(w, req, id, u) {
		return
	}
	got := digest.NewDigest(digest.SHA256, u.h)
	r.mu.Lock()
	delete(r.uploads, id)
	r.mu.Unlock()
	if got != d {
		os.Remove(r.st.uploadPath(id))
		writeError(w, http.StatusBadRequest, codeDigestInvalid, map[string]string{"expected": d.String(), "got": got.String()})
		return
	}
	if err := r.st.commitBlobFile(r.st.uploadPath(id), d); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if err := r.st.linkBlob(name, d); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	r.blobCreated(w, name, d)
}

func (r *Registry) cancelUpload(w http.ResponseWriter, name, id string) {
	if _, ok := r.session(name, id); !ok {
		writeError(w, http.StatusNotFound, codeBlobUploadUnknown, nil)
		return
	}
	r.mu.Lock()
	delete(r.uploads, id)
	r.mu.Unlock()
	os.Remove(r.st.uploadPath(id))
	w.WriteHeader(http.StatusNoContent)
}

// --- manifests ---

// resolve turns a tag or digest into a manifest digest of the repository.
func (r *Registry) resolve(name, ref string) (digest.Digest, bool) {
	if d, ok := parseDigest(ref); ok {
		return d, exists(r.st.manifestLink(name, d)) && exists(r.st.blobPath(d))
	}
	if !tagRe.MatchString(ref) {
		return "", false
	}
	b, err := os.ReadFile(r.st.tagPath(name, ref))
	if err != nil {
		return "", false
	}
	d, ok := parseDigest(strings.TrimSpace(string(b)))
	return d, ok && exists(r.st.blobPath(d))
}

func (r *Registry) getManifest(w http.ResponseWriter, req *http.Request, name, ref string) {
	d, ok := r.resolve(name, ref)
	if !ok {
		if !r.st.repoExists(name) {
			writeError(w, http.StatusNotFound, codeNameUnknown, map[string]string{"name": name})
			return
		}
		writeError(w, http.StatusNotFound, codeManifestUnknown, map[string]string{"reference": ref})
		return
	}
	rec, _ := r.st.readManifestRecord(name, d)
	b, err := os.ReadFile(r.st.blobPath(d))
	if err != nil {
		writeError(w, http.StatusNotFound, codeManifestUnknown, map[string]string{"reference": ref})
		return
	}
	mt := rec.MediaType
	if mt == "" {
		mt = detectMediaType(b)
	}
	w.Header().Set("Content-Type", mt)
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Etag", `"`+d.String()+`"`)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	if req.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

// manifestShape is what the registry reads from a manifest or index.
type manifestShape struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	ArtifactType  string               `json:"artifactType"`
	Config        *ocispec.Descriptor  `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
	Manifests     []ocispec.Descriptor `json:"manifests"`
	Subject       *ocispec.Descriptor  `json:"subject"`
	FSLayers      []json.RawMessage    `json:"fsLayers"`
}

func detectMediaType(b []byte) string {
	var m manifestShape
	if json.Unmarshal(b, &m) != nil {
		return "application/octet-stream"
	}
	switch {
	case m.MediaType != "":
		return m.MediaType
	case m.Manifests != nil:
		return ocispec.MediaTypeImageIndex
	case m.FSLayers != nil:
		return "application/vnd.docker.distribution.manifest.v1+prettyjws"
	}
	return ocispec.MediaTypeImageManifest
}

func (r *Registry) putManifest(w http.ResponseWriter, req *http.Request, name, ref string) {
	b, err := io.ReadAll(io.LimitReader(req.Body, MaxManifestSize+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, codeManifestInvalid, err.Error())
		return
	}
	if len(b) > MaxManifestSize {
		writeError(w, http.StatusRequestEntityTooLarge, codeManifestInvalid, "manifest too large")
		return
	}
	d := digest.FromBytes(b)
	var tag string
	if rd, ok := parseDigest(ref); ok {
		if rd != d {
			writeError(w, http.StatusBadRequest, codeDigestInvalid, map[string]string{"expected": rd.String(), "got": d.String()})
			return
		}
	} else if tagRe.MatchString(ref) {
		tag = ref
	} else {
		writeError(w, http.StatusBadRequest, "TAG_INVALID", map[string]string{"tag": ref})
		return
	}
	var m manifestShape
	if err := json.Unmarshal(b, &m); err != nil {
		writeError(w, http.StatusBadRequest, codeManifestInvalid, "invalid JSON: "+err.Error())
		return
	}
	mt := req.Header.Get("Content-Type")
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = strings.TrimSpace(mt[:i])
	}
	if m.MediaType != "" && mt != "" && mt != m.MediaType && mt != "application/json" {
		writeError(w, http.StatusBadRequest, codeManifestInvalid, fmt.Sprintf("media type %q does not match the manifest's %q", mt, m.MediaType))
		return
	}
	if m.MediaType != "" {
		mt = m.MediaType
	}
	if mt == "" || mt == "application/json" {
		mt = detectMediaType(b)
	}
	if m.SchemaVersion != 2 {
		writeError(w, http.StatusBadRequest, codeManifestInvalid, "schemaVersion must be 2")
		return
	}

	r.st.gc.RLock()
	defer r.st.gc.RUnlock()
	// Everything the manifest points at must be in the repository.
	var missing []string
	if m.Manifests != nil {
		for _, c := range m.Manifests {
			if !exists(r.st.manifestLink(name, c.Digest)) {
				missing = append(missing, c.Digest.String())
			}
		}
	} else {
		if m.Config == nil {
			writeError(w, http.StatusBadRequest, codeManifestInvalid, "no config descriptor")
			return
		}
		for _, c := range append([]ocispec.Descriptor{*m.Config}, m.Layers...) {
			if len(c.URLs) > 0 && !r.st.repoHasBlob(name, c.Digest) {
				continue // foreign layer, served from its URLs
			}
			size, ok := r.st.blobSize(c.Digest)
			if !ok || !r.st.repoHasBlob(name, c.Digest) {
				if c.MediaType == "application/vnd.oci.empty.v1+json" && c.Size == 2 {
					if _, err := r.st.putBlobBytes([]byte("{}")); err == nil {
						_ = r.st.linkBlob(name, c.Digest)
						continue
					}
				}
				missing = append(missing, c.Digest.String())
			} else if size != c.Size {
				writeError(w, http.StatusBadRequest, codeSizeInvalid, map[string]any{"digest": c.Digest.String(), "size": size, "descriptor": c.Size})
				return
			}
		}
	}
	if len(missing) > 0 {
		writeError(w, http.StatusBadRequest, codeManifestBlobUnknown, map[string][]string{"digests": missing})
		return
	}
	if _, err := r.st.putBlobBytes(b); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	artifactType := m.ArtifactType
	if artifactType == "" && m.Config != nil && m.Config.MediaType != "" && m.Subject != nil {
		artifactType = m.Config.MediaType
	}
	rec, _ := json.Marshal(manifestRecord{MediaType: mt, ArtifactType: artifactType, Size: int64(len(b))})
	if err := writeFile(r.st.manifestLink(name, d), rec); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if m.Subject != nil && m.Subject.Digest.Validate() == nil {
		if err := writeFile(joinPath(r.st.referrerDir(name, m.Subject.Digest), d.Encoded()), nil); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("OCI-Subject", m.Subject.Digest.String())
	}
	if tag != "" {
		if err := writeFile(r.st.tagPath(name, tag), []byte(d.String())); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("Location", "/v2/"+name+"/manifests/"+d.String())
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

func joinPath(dir, name string) string { return dir + string(os.PathSeparator) + name }

func (r *Registry) deleteManifest(w http.ResponseWriter, name, ref string) {
	r.st.gc.RLock()
	defer r.st.gc.RUnlock()
	if _, ok := parseDigest(ref); !ok {
		// OCI 1.1: deleting a tag removes the tag only.
		if !tagRe.MatchString(ref) || os.Remove(r.st.tagPath(name, ref)) != nil {
			writeError(w, http.StatusNotFound, codeManifestUnknown, map[string]string{"reference": ref})
			return
		}
		w.WriteHeader(http.StatusAccepted)
		return
	}
	d, ok := r.resolve(name, ref)
	if !ok {
		writeError(w, http.StatusNotFound, codeManifestUnknown, map[string]string{"reference": ref})
		return
	}
	var m manifestShape
	if b, err := os.ReadFile(r.st.blobPath(d)); err == nil && json.Unmarshal(b, &m) == nil && m.Subject != nil {
		os.Remove(joinPath(r.st.referrerDir(name, m.Subject.Digest), d.Encoded()))
	}
	// Tags pointing at it go with it.
	tags, _ := r.st.tags(name)
	for _, t := range tags {
		if b, err := os.ReadFile(r.st.tagPath(name, t)); err == nil && strings.TrimSpace(string(b)) == d.String() {
			os.Remove(r.st.tagPath(name, t))
		}
	}
	if err := os.Remove(r.st.manifestLink(name, d)); err != nil {
		writeError(w, http.StatusNotFound, codeManifestUnknown, map[string]string{"reference": ref})
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// --- listings ---

// paginate applies n and last to a sorted list and sets the Link header.
func paginate(w http.ResponseWriter, req *http.Request, list []string, max int) ([]string, bool) {
	q := req.URL.Query()
	if last := q.Get("last"); last != "" {
		i := 0
		for i < len(list) && list[i] <= last {
			i++
		}
		list = list[i:]
	}
	n := max
	if ns := q.Get("n"); ns != "" {
		v, err := strconv.Atoi(ns)
		if err != nil || v < 0 {
			writeError(w, http.StatusBadRequest, "PAGINATION_NUMBER_INVALID", map[string]string{"n": ns})
			return nil, false
		}
		n = min(v, max)
		if v == 0 {
			return []string{}, true
		}
	}
	if len(list) > n {
		list = list[:n]
		next := *req.URL
		nq := next.Query()
		nq.Set("n", strconv.Itoa(n))
		nq.Set("last", list[len(list)-1])
		next.RawQuery = nq.Encode()
		w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, next.Path, next.RawQuery))
	}
	if list == nil {
		list = []string{}
	}
	return list, true
}

func (r *Registry) getTags(w http.ResponseWriter, req *http.Request, name string) {
	if !r.st.repoExists(name) {
		writeError(w, http.StatusNotFound, codeNameUnknown, map[string]string{"name": name})
		return
	}
	tags, err := r.st.tags(name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	page, ok := paginate(w, req, tags, 1<<30)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"name": name, "tags": page})
}

func (r *Registry) getCatalog(w http.ResponseWriter, req *http.Request) {
	repos, err := r.st.catalog()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	page, ok := paginate(w, req, repos, r.max)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"repositories": page})
}

func (r *Registry) getReferrers(w http.ResponseWriter, req *http.Request, name, ds string) {
	d, ok := parseDigest(ds)
	if !ok {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, nil)
		return
	}
	descs := r.st.referrers(name, d)
	if at := req.URL.Query().Get("artifactType"); at != "" {
		filtered := []ocispec.Descriptor{}
		for _, x := range descs {
			if x.ArtifactType == at {
				filtered = append(filtered, x)
			}
		}
		descs = filtered
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: descs}
	idx.SchemaVersion = 2
	w.Header().Set("Content-Type", ocispec.MediaTypeImageIndex)
	_ = json.NewEncoder(w).Encode(idx)
}

// Serve runs the registry on addr until ctx ends, with TLS when cert and
// key are given.
func (r *Registry) Serve(ctx context.Context, addr, cert, key string, ready func(addr string)) error {
	srv := &http.Server{Addr: addr, Handler: r, ReadHeaderTimeout: 30 * time.Second}
	ln, err := listen(addr)
	if err != nil {
		return err
	}
	if ready != nil {
		ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() {
		if cert != "" {
			errc <- srv.ServeTLS(ln, cert, key)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}
