package api

import (
	"net/http"
	"net/http/pprof"
	"strings"
)

// WithDebug serves Go's profiler under /debug/pprof/ next to the API, as
// dockerd does in debug mode, so a slow path can be profiled on a live
// daemon (`go tool pprof unix-socket…` or curl --unix-socket). Only the
// daemon's own socket or TLS listeners reach it: it is as privileged as
// the rest of the API.
func WithDebug(api http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/debug/pprof/") {
			mux.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}
