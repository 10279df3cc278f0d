package registry

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// A manifest PUT is untrusted input: whatever it holds, the server answers
// (no panic) and a 201 means the manifest reads back byte for byte.
func FuzzPutManifest(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`), "v1")
	f.Add([]byte(`{"schemaVersion":2,"config":{"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"mediaType":"application/vnd.oci.empty.v1+json"},"layers":[],"subject":{"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}}`), "t")
	f.Add([]byte(`not json`), "sha256:abc")
	r, err := New(Options{Root: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, ref string) {
		req := httptest.NewRequest(http.MethodPut, "http://x/v2/fuzz/manifests/x", bytes.NewReader(body))
		req.URL.Path = "/v2/fuzz/manifests/" + ref
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			return
		}
		get := httptest.NewRequest(http.MethodGet, "http://x/", nil)
		get.URL.Path = "/v2/fuzz/manifests/" + ref
		rec = httptest.NewRecorder()
		r.ServeHTTP(rec, get)
		if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), body) {
			t.Fatalf("manifest %q did not read back: %d", ref, rec.Code)
		}
	})
}
