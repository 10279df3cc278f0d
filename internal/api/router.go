// Package api serves Docker's Engine API over berth's backends: routing
// (with and without the "/v1.NN" prefix), version negotiation, request
// validation, error → status mapping and the streaming endpoints (attach,
// logs, wait, image import/load/save). It holds no state of its own: every
// request is translated into one call on a ContainerBackend, ImageBackend
// or SystemBackend.
package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"runtime/debug"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/common"
)

// Backends are the services the router dispatches to, one per API area.
type Backends struct {
	Containers ContainerBackend
	Images     ImageBackend
	System     SystemBackend
	// Distribution serves push, /distribution and /auth (nil: 501).
	Distribution DistributionBackend
	// Exec, ContainerOps and Events are the operations on running
	// containers (exec, pause, top, stats, update) and the event stream.
	Exec         ExecBackend
	ContainerOps ContainerOpsBackend
	Events       EventsBackend
	// Volumes serves /volumes; Archive serves cp (/containers/{id}/archive)
	// and export (nil: 501).
	Volumes VolumeBackend
	Archive ArchiveBackend
	// DiskUsage serves /system/df (nil: 501).
	DiskUsage DiskUsageBackend
	// Build serves POST /build (nil: 501).
	Build BuildBackend
	// Networks serves /networks (nil: 501, and an empty prune).
	Networks NetworkBackend
}

// RouterOptions configure NewRouter.
type RouterOptions struct {
	// Logger gets request logs (debug), handler errors and panics; nil
	// means slog.Default().
	Logger *slog.Logger
	// Version is berth's version, announced as "berth/<Version> (linux)"
	// in the Server header.
	Version string
}

// handlerFunc serves one route. A returned error becomes docker's JSON
// error response, unless the handler already started its response.
type handlerFunc func(c *call) error

// call is one request on its way through a handler.
type call struct {
	w       *respWriter
	r       *http.Request
	ctx     context.Context
	version string     // negotiated API version
	name    string     // the {name} of the route, if any
	form    url.Values // query parameters
	log     *slog.Logger
}

func (c *call) bool(k string) bool        { return boolValue(c.form, k) }
func (c *call) str(k string) string       { return c.form.Get(k) }
func (c *call) filters() (Filters, error) { return parseFilters(c.form.Get("filters")) }

// jsonBody checks that the request carries a JSON body and returns it,
// limited to maxJSONBody bytes.
func (c *call) jsonBody() (io.Reader, error) {
	if err := checkForJSON(c.r); err != nil {
		return nil, err
	}
	if c.r.Body == nil || c.r.Body == http.NoBody {
		return nil, invalidArg("invalid JSON: got EOF while reading request body")
	}
	return http.MaxBytesReader(c.w.ResponseWriter, c.r.Body, maxJSONBody), nil
}

// writeJSON writes v as a JSON response with the given status, like
// moby's httputils.WriteJSON (no HTML escaping).
func (c *call) writeJSON(status int, v any) error {
	return writeJSON(c.w, status, v)
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return writeJSONBody(w, v)
}

// writeJSONBody writes v as JSON into a response whose header is sent.
func writeJSONBody(w http.ResponseWriter, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// route is one endpoint. Paths are matched after the version prefix is
// removed; {name} matches anything including slashes (image names like
// localhost:5000/a/b:tag), as moby's "{name:.*}".
type route struct {
	method string
	path   string         // literal path, when re is nil
	re     *regexp.Regexp // path with a {name} variable
	h      handlerFunc
}

func (rt *route) match(path string) (name string, ok bool) {
	if rt.re == nil {
		return "", path == rt.path
	}
	m := rt.re.FindStringSubmatch(path)
	if m == nil {
		return "", false
	}
	return m[1], true
}

type router struct {
	b      Backends
	log    *slog.Logger
	server string
	routes []route
}

// NewRouter returns the Engine API handler over the given backends.
func NewRouter(b Backends, opts RouterOptions) http.Handler {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	version := opts.Version
	if version == "" {
		version = "dev"
	}
	rt := &router{b: b, log: log, server: "berth/" + version + " (linux)"}
	rt.initRoutes()
	return rt
}

func (rt *router) add(method, path string, h handlerFunc) {
	r := route{method: method, path: path, h: h}
	if i := strings.Index(path, "{name}"); i >= 0 {
		r.re = regexp.MustCompile("^" + regexp.QuoteMeta(path[:i]) + "(.+)" + regexp.QuoteMeta(path[i+len("{name}"):]) + "$")
	}
	rt.routes = append(rt.routes, r)
}

func (rt *router) initRoutes() {
	// System.
	rt.add(http.MethodGet, "/_ping", rt.ping)
	rt.add(http.MethodHead, "/_ping", rt.ping)
	sys := rt.b.System != nil
	rt.add(http.MethodGet, "/info", need(sys, "system", rt.getInfo))
	rt.add(http.MethodGet, "/version", need(sys, "system", rt.getVersion))

	// Containers. Literal paths first: "/containers/json" is the list,
	// not the inspect of a container named "json".
	ctr := rt.b.Containers != nil
	rt.add(http.MethodGet, "/containers/json", need(ctr, "containers", rt.getContainersJSON))
	rt.add(http.MethodPost, "/containers/create", need(ctr, "containers", rt.postContainersCreate))
	rt.add(http.MethodPost, "/containers/prune", need(ctr, "containers", rt.postContainersPrune))
	rt.add(http.MethodGet, "/containers/{name}/json", need(ctr, "containers", rt.getContainerInspect))
	rt.add(http.MethodGet, "/containers/{name}/logs", need(ctr, "containers", rt.getContainerLogs))
	rt.add(http.MethodPost, "/containers/{name}/start", need(ctr, "containers", rt.postContainerStart))
	rt.add(http.MethodPost, "/containers/{name}/stop", need(ctr, "containers", rt.postContainerStop))
	rt.add(http.MethodPost, "/containers/{name}/restart", need(ctr, "containers", rt.postContainerRestart))
	rt.add(http.MethodPost, "/containers/{name}/kill", need(ctr, "containers", rt.postContainerKill))
	rt.add(http.MethodPost, "/containers/{name}/wait", need(ctr, "containers", rt.postContainerWait))
	rt.add(http.MethodPost, "/containers/{name}/attach", need(ctr, "containers", rt.postContainerAttach))
	rt.add(http.MethodPost, "/containers/{name}/resize", need(ctr, "containers", rt.postContainerResize))
	rt.add(http.MethodPost, "/containers/{name}/rename", need(ctr, "containers", rt.postContainerRename))
	rt.add(http.MethodDelete, "/containers/{name}", need(ctr, "containers", rt.deleteContainer))

	// Images.
	img := rt.b.Images != nil
	rt.add(http.MethodGet, "/images/json", need(img, "images", rt.getImagesJSON))
	rt.add(http.MethodGet, "/images/get", need(img, "images", rt.getImagesGet))
	rt.add(http.MethodPost, "/images/create", need(img, "images", rt.postImagesCreate))
	rt.add(http.MethodPost, "/images/load", need(img, "images", rt.postImagesLoad))
	rt.add(http.MethodPost, "/images/prune", need(img, "images", rt.postImagesPrune))
	rt.add(http.MethodGet, "/images/{name}/get", need(img, "images", rt.getImagesGet))
	rt.add(http.MethodGet, "/images/{name}/history", need(img, "images", rt.getImageHistory))
	rt.add(http.MethodGet, "/images/{name}/json", need(img, "images", rt.getImageInspect))
	rt.add(http.MethodPost, "/images/{name}/tag", need(img, "images", rt.postImageTag))
	rt.add(http.MethodDelete, "/images/{name}", need(img, "images", rt.deleteImage))

	// Registries: push, distribution inspect, login.
	rt.addDistributionRoutes()
	rt.addBuildRoutes()
	rt.initOperateRoutes()
	rt.initVolumeRoutes()
	rt.initArchiveRoutes()
	rt.initDiskUsageRoutes()
	rt.initEmptyPruneRoutes()
	rt.initNetworkRoutes()
}

// need guards the routes of a backend the daemon did not wire.
func need(ok bool, area string, h handlerFunc) handlerFunc {
	if ok {
		return h
	}
	return func(*call) error {
		return errdefs.ErrNotImplemented.WithMessage("this daemon does not serve the " + area + " API")
	}
}

// find returns the route for method and path (without version prefix).
// moby answers an unknown path and a known path with the wrong method the
// same way: 404 "page not found".
func (rt *router) find(method, path string) (*route, string) {
	for i := range rt.routes {
		r := &rt.routes[i]
		if r.method != method {
			continue
		}
		if name, ok := r.match(path); ok {
			return r, name
		}
	}
	return nil, ""
}

// ServeHTTP implements http.Handler.
func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &respWriter{ResponseWriter: w}
	h := w.Header()
	h.Set("Api-Version", APIVersion)
	h.Set("Docker-Experimental", "false")
	h.Set("Ostype", "linux")
	h.Set("Server", rt.server)

	version, path := splitVersion(r.URL.Path)
	c := &call{w: rw, r: r, version: version, log: rt.log}
	defer func() {
		if p := recover(); p != nil {
			rt.recovered(c, p)
		}
		if !rw.hijacked {
			rt.log.Debug("API request", "method", r.Method, "path", r.URL.Path, "status", rw.statusCode(), "duration", time.Since(start))
		}
	}()

	route, name := rt.find(r.Method, path)
	if route == nil {
		_ = writeJSON(rw, http.StatusNotFound, common.ErrorResponse{Message: "page not found"})
		return
	}
	negotiated := version
	if negotiated == "" {
		negotiated = APIVersion
	}
	var err error
	switch {
	case versionLess(negotiated, MinAPIVersion):
		err = invalidArg(fmt.Sprintf("client version %s is too old. Minimum supported API version is %s, please upgrade your client to a newer version", negotiated, MinAPIVersion))
	case compareVersions(negotiated, APIVersion) > 0:
		err = invalidArg(fmt.Sprintf("client version %s is too new. Maximum supported API version is %s", negotiated, APIVersion))
	}
	if err == nil {
		c.form, err = url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			err = invalidArg(fmt.Sprintf("invalid query string: %v", err))
		}
	}
	if err == nil {
		c.version, c.name = negotiated, name
		c.ctx = WithVersion(r.Context(), negotiated)
		err = limitBody(c, route)
	}
	if err == nil {
		err = route.h(c)
	}
	if err != nil {
		rt.writeError(c, version, err)
	}
}

// writeError answers a failed request with docker's error response.
func (rt *router) writeError(c *call, rawVersion string, err error) {
	r := c.r
	status := statusFromError(err)
	switch {
	case c.ctx != nil && clientGone(c.ctx, err):
		rt.log.Debug("API request cancelled by client", "method", r.Method, "path", r.URL.Path, "err", err)
		return
	case c.w.hijacked:
		rt.log.Warn("API attach ended with an error", "path", r.URL.Path, "err", err)
		return
	case c.w.wroteHeader:
		rt.log.Warn("API handler failed after the response started", "method", r.Method, "path", r.URL.Path, "err", err)
		return
	}
	if status >= http.StatusInternalServerError {
		rt.log.Error("API handler returned an error", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	if status == http.StatusNotModified {
		// 304 has no body: dockerd's answer to starting a running
		// container or stopping a stopped one.
		c.w.WriteHeader(status)
		return
	}
	// Clients older than 1.24 expect plain-text errors; a JSON "too old"
	// message would be printed raw (moby does the same).
	if rawVersion != "" && versionLess(rawVersion, "1.24") {
		http.Error(c.w, err.Error(), status)
		return
	}
	_ = writeJSON(c.w, status, common.ErrorResponse{Message: err.Error()})
}

// recovered turns a handler panic into a 500 and a log line with the stack:
// the daemon must survive any input.
func (rt *router) recovered(c *call, p any) {
	if p == http.ErrAbortHandler {
		panic(p)
	}
	rt.log.Error("panic in API handler", "method", c.r.Method, "path", c.r.URL.Path, "panic", p, "stack", string(debug.Stack()))
	if c.w.hijacked {
		return // the attach handler closes its connection on the way out
	}
	if c.w.wroteHeader {
		// A half-written body must not look complete: drop the connection.
		panic(http.ErrAbortHandler)
	}
	_ = writeJSON(c.w, http.StatusInternalServerError, common.ErrorResponse{Message: fmt.Sprintf("internal server error: %v", p)})
}

// respWriter records what a handler did with the response.
type respWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	hijacked    bool
}

func (w *respWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *respWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = http.StatusOK, true
	}
	return w.ResponseWriter.Write(p)
}

// Flush implements http.Flusher.
func (w *respWriter) Flush() {
	if !w.wroteHeader {
		w.status, w.wroteHeader = http.StatusOK, true
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *respWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// hijack takes over the connection (attach).
func (w *respWriter) hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.hijacked = true
	return conn, brw, nil
}

func (w *respWriter) statusCode() int {
	if !w.wroteHeader {
		return http.StatusOK
	}
	return w.status
}
