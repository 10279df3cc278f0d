package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func start(t *testing.T, root string, opts ...func(*Options)) (*Registry, *httptest.Server, string) {
	t.Helper()
	o := Options{Root: root}
	for _, f := range opts {
		f(&o)
	}
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return r, srv, strings.TrimPrefix(srv.URL, "http://")
}

func do(t *testing.T, method, url string, body []byte, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readAll(r *http.Response) string {
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

func TestRoundTripWithGGCR(t *testing.T) {
	root := t.TempDir()
	_, _, host := start(t, root)
	img, err := random.Image(4096, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(host + "/team/app:v1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	idx, err := random.Index(1024, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	iref, _ := name.ParseReference(host + "/team/multi:latest")
	if err := remote.WriteIndex(iref, idx); err != nil {
		t.Fatal(err)
	}
	check := func(host string) {
		ref, _ := name.ParseReference(host + "/team/app:v1")
		got, err := remote.Image(ref)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(got); err != nil {
			t.Errorf("image: %v", err)
		}
		iref, _ := name.ParseReference(host + "/team/multi:latest")
		gi, err := remote.Index(iref)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Index(gi); err != nil {
			t.Errorf("index: %v", err)
		}
		d1, _ := gi.Digest()
		d2, _ := idx.Digest()
		if d1 != d2 {
			t.Errorf("index digest changed")
		}
	}
	check(host)
	// Storage survives a restart.
	_, _, host2 := start(t, root)
	check(host2)
}

func TestChunkedResumableAndMonolithicUploads(t *testing.T) {
	_, srv, _ := start(t, t.TempDir())
	blob := bytes.Repeat([]byte("0123456789"), 10000)
	d := digest.FromBytes(blob)

	// Monolithic POST.
	r := do(t, "POST", srv.URL+"/v2/a/blobs/uploads/?digest="+d.String(), blob)
	if r.StatusCode != http.StatusCreated || r.Header.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("monolithic: %d %s", r.StatusCode, readAll(r))
	}

	// Chunked with a resume: PATCH, status, PATCH with a bad range, PATCH, PUT.
	r = do(t, "POST", srv.URL+"/v2/b/blobs/uploads/", nil)
	if r.StatusCode != http.StatusAccepted {
		t.Fatalf("start: %d", r.StatusCode)
	}
	loc := srv.URL + r.Header.Get("Location")
	r = do(t, "PATCH", loc, blob[:30000], "Content-Range", "0-29999", "Content-Type", "application/octet-stream")
	if r.StatusCode != http.StatusAccepted || r.Header.Get("Range") != "0-29999" {
		t.Fatalf("chunk 1: %d %q", r.StatusCode, r.Header.Get("Range"))
	}
	r = do(t, "GET", loc, nil)
	if r.StatusCode != http.StatusNoContent || r.Header.Get("Range") != "0-29999" {
		t.Fatalf("status: %d %q", r.StatusCode, r.Header.Get("Range"))
	}
	r = do(t, "PATCH", loc, blob[40000:50000], "Content-Range", "40000-49999")
	if r.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("out-of-order chunk: %d", r.StatusCode)
	}
	r = do(t, "PATCH", loc, blob[30000:90000], "Content-Range", "30000-89999")
	if r.StatusCode != http.StatusAccepted {
		t.Fatalf("chunk 2: %d", r.StatusCode)
	}
	// Wrong digest at the end: refused, nothing stored.
	bad := digest.FromString("nope")
	r = do(t, "PUT", loc+"?digest="+bad.String(), blob[90000:])
	if r.StatusCode != http.StatusBadRequest || !strings.Contains(readAll(r), "DIGEST_INVALID") {
		t.Fatalf("bad digest: %d", r.StatusCode)
	}
	if r := do(t, "HEAD", srv.URL+"/v2/b/blobs/"+bad.String(), nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("bad blob stored: %d", r.StatusCode)
	}
	// Again, right.
	r = do(t, "POST", srv.URL+"/v2/b/blobs/uploads/", nil)
	loc = srv.URL + r.Header.Get("Location")
	do(t, "PATCH", loc, blob[:50000])
	r = do(t, "PUT", loc+"?digest="+d.String(), blob[50000:])
	if r.StatusCode != http.StatusCreated {
		t.Fatalf("finish: %d %s", r.StatusCode, readAll(r))
	}
	r = do(t, "GET", srv.URL+"/v2/b/blobs/"+d.String(), nil)
	if got := readAll(r); got != string(blob) {
		t.Errorf("blob read back: %d bytes", len(got))
	}
	r = do(t, "GET", srv.URL+"/v2/b/blobs/"+d.String(), nil, "Range", "bytes=10-19")
	if r.StatusCode != http.StatusPartialContent || readAll(r) != "0123456789" {
		t.Errorf("range read: %d", r.StatusCode)
	}

	// Cross-repository mount, and a mount from a repository without it.
	r = do(t, "POST", srv.URL+"/v2/c/blobs/uploads/?mount="+d.String()+"&from=b", nil)
	if r.StatusCode != http.StatusCreated {
		t.Fatalf("mount: %d", r.StatusCode)
	}
	r = do(t, "POST", srv.URL+"/v2/d/blobs/uploads/?mount="+d.String()+"&from=nothere", nil)
	if r.StatusCode != http.StatusAccepted {
		t.Fatalf("mount fallback: %d", r.StatusCode)
	}
	if r := do(t, "HEAD", srv.URL+"/v2/d/blobs/"+d.String(), nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("blob visible in a repository it was never pushed to: %d", r.StatusCode)
	}
	// Cancel an upload.
	r = do(t, "POST", srv.URL+"/v2/e/blobs/uploads/", nil)
	loc = srv.URL + r.Header.Get("Location")
	if r := do(t, "DELETE", loc, nil); r.StatusCode != http.StatusNoContent {
		t.Errorf("cancel: %d", r.StatusCode)
	}
	if r := do(t, "GET", loc, nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("cancelled upload still there: %d", r.StatusCode)
	}
}

func TestResumeAfterRestart(t *testing.T) {
	root := t.TempDir()
	_, srv, _ := start(t, root)
	blob := []byte(strings.Repeat("abc", 1000))
	r := do(t, "POST", srv.URL+"/v2/r/blobs/uploads/", nil)
	path := r.Header.Get("Location")
	do(t, "PATCH", srv.URL+path, blob[:1000])
	srv.Close()
	_, srv2, _ := start(t, root)
	r = do(t, "GET", srv2.URL+path, nil)
	if r.Header.Get("Range") != "0-999" {
		t.Fatalf("resumed range %q", r.Header.Get("Range"))
	}
	do(t, "PATCH", srv2.URL+path, blob[1000:], "Content-Range", "1000-2999")
	r = do(t, "PUT", srv2.URL+path+"?digest="+digest.FromBytes(blob).String(), nil)
	if r.StatusCode != http.StatusCreated {
		t.Fatalf("finish after restart: %d %s", r.StatusCode, readAll(r))
	}
}

func TestManifestsTagsCatalogDeletesReferrers(t *testing.T) {
	reg, srv, host := start(t, t.TempDir())
	var digests []v1.Hash
	for _, repo := range []string{"x/one", "x/two", "y"} {
		for _, tag := range []string{"t1", "t2", "t3"} {
			img, _ := random.Image(100, 1)
			ref, _ := name.ParseReference(host + "/" + repo + ":" + tag)
			if err := remote.Write(ref, img); err != nil {
				t.Fatal(err)
			}
			d, _ := img.Digest()
			digests = append(digests, d)
		}
	}
	// Tags with pagination.
	r := do(t, "GET", srv.URL+"/v2/x/one/tags/list?n=2", nil)
	var tl struct {
		Name string
		Tags []string
	}
	json.NewDecoder(r.Body).Decode(&tl)
	if tl.Name != "x/one" || fmt.Sprint(tl.Tags) != "[t1 t2]" || !strings.Contains(r.Header.Get("Link"), "last=t2") {
		t.Errorf("tags page 1: %+v %q", tl, r.Header.Get("Link"))
	}
	r = do(t, "GET", srv.URL+"/v2/x/one/tags/list?n=2&last=t2", nil)
	json.NewDecoder(r.Body).Decode(&tl)
	if fmt.Sprint(tl.Tags) != "[t3]" || r.Header.Get("Link") != "" {
		t.Errorf("tags page 2: %+v", tl)
	}
	// Catalog.
	r = do(t, "GET", srv.URL+"/v2/_catalog?n=2", nil)
	var cat struct{ Repositories []string }
	json.NewDecoder(r.Body).Decode(&cat)
	if fmt.Sprint(cat.Repositories) != "[x/one x/two]" {
		t.Errorf("catalog: %v", cat.Repositories)
	}
	r = do(t, "GET", srv.URL+"/v2/_catalog?last=x/two", nil)
	json.NewDecoder(r.Body).Decode(&cat)
	if fmt.Sprint(cat.Repositories) != "[y]" {
		t.Errorf("catalog page 2: %v", cat.Repositories)
	}
	// Unknown things.
	if r := do(t, "GET", srv.URL+"/v2/x/one/manifests/nope", nil); r.StatusCode != 404 || !strings.Contains(readAll(r), "MANIFEST_UNKNOWN") {
		t.Errorf("unknown tag: %d", r.StatusCode)
	}
	if r := do(t, "GET", srv.URL+"/v2/nope/manifests/v1", nil); r.StatusCode != 404 || !strings.Contains(readAll(r), "NAME_UNKNOWN") {
		t.Errorf("unknown repo: %d", r.StatusCode)
	}
	// A manifest whose blobs are missing is refused.
	bad := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":2},"layers":[]}`,
		ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig, digest.FromString("missing"))
	if r := do(t, "PUT", srv.URL+"/v2/y/manifests/bad", []byte(bad), "Content-Type", ocispec.MediaTypeImageManifest); r.StatusCode != 400 || !strings.Contains(readAll(r), "MANIFEST_BLOB_UNKNOWN") {
		t.Errorf("manifest with missing blobs: %d", r.StatusCode)
	}
	// Delete a tag, then a manifest by digest.
	if r := do(t, "DELETE", srv.URL+"/v2/y/manifests/t1", nil); r.StatusCode != http.StatusAccepted {
		t.Errorf("delete tag: %d", r.StatusCode)
	}
	if r := do(t, "GET", srv.URL+"/v2/y/manifests/t1", nil); r.StatusCode != 404 {
		t.Errorf("deleted tag still there: %d", r.StatusCode)
	}
	d := digests[7] // y:t2
	if r := do(t, "DELETE", srv.URL+"/v2/y/manifests/"+d.String(), nil); r.StatusCode != http.StatusAccepted {
		t.Errorf("delete manifest: %d", r.StatusCode)
	}
	if r := do(t, "GET", srv.URL+"/v2/y/manifests/t2", nil); r.StatusCode != 404 {
		t.Errorf("tag of a deleted manifest: %d", r.StatusCode)
	}

	// Referrers: an artifact whose subject is x/one:t1.
	subj := digests[0]
	sref, _ := name.ParseReference(host + "/x/one:t1")
	subjDesc, err := remote.Head(sref)
	if err != nil {
		t.Fatal(err)
	}
	art := mutate.Subject(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), "application/vnd.example.sbom"), *subjDesc).(v1.Image)
	artRef, _ := name.ParseReference(host + "/x/one:sbom")
	if err := remote.Write(artRef, art); err != nil {
		t.Fatal(err)
	}
	r = do(t, "GET", srv.URL+"/v2/x/one/referrers/"+subj.String(), nil)
	var idx ocispec.Index
	json.NewDecoder(r.Body).Decode(&idx)
	artDigest, _ := art.Digest()
	if r.Header.Get("Content-Type") != ocispec.MediaTypeImageIndex || len(idx.Manifests) != 1 || idx.Manifests[0].Digest.String() != artDigest.String() || idx.Manifests[0].ArtifactType != "application/vnd.example.sbom" {
		t.Errorf("referrers: %+v", idx)
	}
	r = do(t, "GET", srv.URL+"/v2/x/one/referrers/"+subj.String()+"?artifactType=other", nil)
	json.NewDecoder(r.Body).Decode(&idx)
	if len(idx.Manifests) != 0 || r.Header.Get("OCI-Filters-Applied") != "artifactType" {
		t.Errorf("filtered referrers: %+v", idx)
	}

	// GC: the blobs of y:t1 are still referenced by its untagged manifest,
	// those of the deleted y:t2 manifest are not.
	img2Manifest := readBlob(t, reg, d)
	var m ocispec.Manifest
	json.Unmarshal(img2Manifest, &m)
	rep, err := reg.GC(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rep.BlobsDeleted < 2 {
		t.Errorf("gc deleted %d blobs", rep.BlobsDeleted)
	}
	if _, ok := reg.st.blobSize(m.Layers[0].Digest); ok {
		t.Errorf("gc kept an unreferenced layer")
	}
	// Everything still referenced pulls fine.
	for _, s := range []string{"x/one:t1", "x/two:t3", "y:t3"} {
		ref, _ := name.ParseReference(host + "/" + s)
		img, err := remote.Image(ref)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(img); err != nil {
			t.Errorf("%s after gc: %v", s, err)
		}
	}
}

func readBlob(t *testing.T, r *Registry, d v1.Hash) []byte {
	b, err := os.ReadFile(filepath.Join(r.st.blobDir(), d.Hex))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHtpasswd(t *testing.T) {
	dir := t.TempDir()
	line, err := HashPassword("alice", "secret")
	if err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(dir, "htpasswd")
	os.WriteFile(pw, []byte(line+"\n"), 0o600)
	_, srv, host := start(t, filepath.Join(dir, "root"), func(o *Options) { o.Htpasswd = pw })
	r := do(t, "GET", srv.URL+"/v2/", nil)
	if r.StatusCode != 401 || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Basic") {
		t.Fatalf("anonymous: %d %q", r.StatusCode, r.Header.Get("WWW-Authenticate"))
	}
	img, _ := random.Image(100, 1)
	ref, _ := name.ParseReference(host + "/p:v1")
	if err := remote.Write(ref, img); err == nil {
		t.Error("anonymous push succeeded")
	}
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "alice", Password: "wrong"})); err == nil {
		t.Error("push with a wrong password succeeded")
	}
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "alice", Password: "secret"})); err != nil {
		t.Errorf("push with credentials: %v", err)
	}
}

func TestBadRequests(t *testing.T) {
	_, srv, _ := start(t, t.TempDir())
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/v2/UPPER/tags/list", 404},
		{"GET", "/v2/a/blobs/sha256:zz", 400},
		{"GET", "/v2/a/blobs/uploads/../../etc", 404},
		{"PATCH", "/v2/a/blobs/uploads/0123456789abcdef0123456789abcdef", 404},
		{"PUT", "/v2/a/manifests/bad!tag", 400},
		{"POST", "/v2/", 405},
		{"GET", "/v2/a/tags/list?n=-1", 404},
	} {
		if r := do(t, tc.method, srv.URL+tc.path, nil); r.StatusCode != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, r.StatusCode, tc.want)
		}
	}
	// A manifest larger than the limit.
	big := bytes.Repeat([]byte(" "), MaxManifestSize+1)
	if r := do(t, "PUT", srv.URL+"/v2/a/manifests/v1", big); r.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("huge manifest: %d", r.StatusCode)
	}
}
