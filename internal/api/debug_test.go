package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWithDebugServesPprofAndTheAPI(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("api")) })
	h := WithDebug(api)
	for path, want := range map[string]string{"/debug/pprof/": "goroutine", "/_ping": "api", "/debug/other": "api"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("GET %s: %d %q, want %q in it", path, rec.Code, rec.Body.String(), want)
		}
	}
}
