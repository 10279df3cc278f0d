package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
)

// fakeEngine is a scripted Docker Engine API server on a unix socket. It
// records every request ("METHOD /path?query", version prefix removed) so
// tests can check the sequence the CLI sends; handlers answer per route.
type fakeEngine struct {
	t    *testing.T
	srv  *httptest.Server
	sock string
	host string

	mu       sync.Mutex
	calls    []string
	bodies   map[string][]byte // last request body per "METHOD /path"
	routes   []fakeRoute
	ctrs     map[string]*fakeContainer
	attachWG sync.WaitGroup
}

type fakeRoute struct {
	method string
	re     *regexp.Regexp
	h      func(w http.ResponseWriter, r *http.Request, m []string)
}

// fakeContainer scripts one container: what start does, what it prints,
// and its exit code.
type fakeContainer struct {
	id        string
	tty       bool
	openStdin bool
	autoRm    bool
	startErr  string // answer start with this 500 message (or 404 if it says "No such")
	// script runs at start with the attach stream's stdin; it writes the
	// container's stdout/stderr and returns the exit code.
	script func(stdin io.Reader, stdout, stderr io.Writer) int

	attached chan net.Conn
	exited   chan int
	removed  chan struct{}
	exitCode int
	done     chan struct{}
}

var versionPrefix = regexp.MustCompile(`^/v[0-9]+\.[0-9]+`)

func newFakeEngine(t *testing.T) *fakeEngine {
	t.Helper()
	dir, err := os.MkdirTemp("", "bcli-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeEngine{t: t, sock: sock, host: "unix://" + sock, bodies: map[string][]byte{}, ctrs: map[string]*fakeContainer{}}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Listener.Close()
	f.srv.Listener = l
	f.srv.Start()
	t.Cleanup(func() {
		f.srv.CloseClientConnections()
		f.srv.Close()
	})
	f.handle("HEAD", `/_ping`, f.ping)
	f.handle("GET", `/_ping`, f.ping)
	return f
}

func (f *fakeEngine) ping(w http.ResponseWriter, r *http.Request, _ []string) {
	w.Header().Set("Api-Version", "1.47")
	w.Header().Set("Ostype", "linux")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = io.WriteString(w, "OK")
	}
}

// handle adds a route; pattern is a regexp on the unversioned path.
func (f *fakeEngine) handle(method, pattern string, h func(w http.ResponseWriter, r *http.Request, m []string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// Later routes win, so a test can override a default.
	f.routes = append([]fakeRoute{{method: method, re: regexp.MustCompile("^" + pattern + "$"), h: h}}, f.routes...)
}

func (f *fakeEngine) serve(w http.ResponseWriter, r *http.Request) {
	p := versionPrefix.ReplaceAllString(r.URL.Path, "")
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	r.Body = io.NopCloser(bytes.NewReader(body))
	f.mu.Lock()
	if p != "/_ping" {
		call := r.Method + " " + p
		if r.URL.RawQuery != "" {
			call += "?" + r.URL.RawQuery
		}
		f.calls = append(f.calls, call)
		f.bodies[r.Method+" "+p] = body
	}
	routes := f.routes
	f.mu.Unlock()
	for _, rt := range routes {
		if rt.method != r.Method {
			continue
		}
		if m := rt.re.FindStringSubmatch(p); m != nil {
			rt.h(w, r, m)
			return
		}
	}
	apiError(w, http.StatusNotFound, "page not found")
}

func apiError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Calls returns the recorded requests.
func (f *fakeEngine) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// Body returns the last body sent to "METHOD /path".
func (f *fakeEngine) Body(key string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bodies[key]
}

// indexOf finds the first recorded call starting with prefix.
func (f *fakeEngine) indexOf(prefix string) int {
	for i, c := range f.Calls() {
		if strings.HasPrefix(c, prefix) {
			return i
		}
	}
	return -1
}

// addContainer scripts a container the create route hands out.
func (f *fakeEngine) addContainer(c *fakeContainer) {
	c.attached = make(chan net.Conn, 1)
	c.exited = make(chan int, 1)
	c.removed = make(chan struct{})
	c.done = make(chan struct{})
	f.mu.Lock()
	f.ctrs[c.id] = c
	f.mu.Unlock()
}

// containerRoutes serves create/attach/wait/start/inspect/resize/kill for
// the scripted container c (created under any name).
func (f *fakeEngine) containerRoutes(c *fakeContainer) {
	f.addContainer(c)
	f.handle("POST", `/containers/create`, func(w http.ResponseWriter, r *http.Request, _ []string) {
		var req container.CreateRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			apiError(w, http.StatusBadRequest, err.Error())
			return
		}
		c.tty = req.Config.Tty
		c.openStdin = req.Config.OpenStdin
		if req.HostConfig != nil {
			c.autoRm = req.HostConfig.AutoRemove
		}
		w.WriteHeader(http.StatusCreated)
		writeJSON(w, container.CreateResponse{ID: c.id, Warnings: []string{}})
	})
	f.handle("POST", `/containers/([^/]+)/attach`, func(w http.ResponseWriter, r *http.Request, m []string) {
		if m[1] != c.id {
			apiError(w, http.StatusNotFound, "No such container: "+m[1])
			return
		}
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		ctype := "application/vnd.docker.multiplexed-stream"
		if c.tty {
			ctype = "application/vnd.docker.raw-stream"
		}
		// Registered before the upgrade is answered: the CLI starts the
		// container as soon as it sees the 101.
		c.attached <- conn
		fmt.Fprintf(conn, "HTTP/1.1 101 UPGRADED\r\nContent-Type: %s\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n", ctype)
	})
	f.handle("POST", `/containers/([^/]+)/wait`, func(w http.ResponseWriter, r *http.Request, m []string) {
		if m[1] != c.id {
			apiError(w, http.StatusNotFound, "No such container: "+m[1])
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		var code int
		if r.URL.Query().Get("condition") == "removed" {
			select {
			case <-c.removed:
				code = c.exitCode
			case <-r.Context().Done():
				return
			}
		} else {
			select {
			case code = <-c.exited:
				c.exited <- code // other waiters see it too
			case <-r.Context().Done():
				return
			}
		}
		_ = json.NewEncoder(w).Encode(container.WaitResponse{StatusCode: int64(code)})
	})
	f.handle("POST", `/containers/([^/]+)/start`, func(w http.ResponseWriter, r *http.Request, m []string) {
		if m[1] != c.id {
			apiError(w, http.StatusNotFound, "No such container: "+m[1])
			return
		}
		if c.startErr != "" {
			if c.autoRm {
				c.exitCode = 128
				close(c.removed)
			}
			apiError(w, http.StatusBadRequest, c.startErr)
			return
		}
		var conn net.Conn
		select {
		case conn = <-c.attached:
		default:
		}
		f.attachWG.Add(1)
		go func() {
			defer f.attachWG.Done()
			defer close(c.done)
			var stdin io.Reader = strings.NewReader("")
			var stdout, stderr io.Writer = io.Discard, io.Discard
			if conn != nil {
				br := bufio.NewReader(conn)
				stdin = br
				if c.tty {
					stdout, stderr = conn, conn
				} else {
					stdout, stderr = &frameWriter{w: conn, stream: 1}, &frameWriter{w: conn, stream: 2}
				}
			}
			code := 0
			if c.script != nil {
				code = c.script(stdin, stdout, stderr)
			}
			if conn != nil {
				conn.Close()
			}
			c.exitCode = code
			c.exited <- code
			if c.autoRm {
				close(c.removed)
			}
		}()
		w.WriteHeader(http.StatusNoContent)
	})
	f.handle("GET", `/containers/([^/]+)/json`, func(w http.ResponseWriter, r *http.Request, m []string) {
		if m[1] != c.id && m[1] != "web" {
			apiError(w, http.StatusNotFound, "No such container: "+m[1])
			return
		}
		writeJSON(w, container.InspectResponse{
			ID: c.id, Name: "/web",
			State:      &container.State{Status: "created"},
			Config:     &container.Config{Tty: c.tty, OpenStdin: c.openStdin},
			HostConfig: &container.HostConfig{AutoRemove: c.autoRm},
		})
	})
	f.handle("POST", `/containers/([^/]+)/resize`, func(w http.ResponseWriter, r *http.Request, m []string) {
		w.WriteHeader(http.StatusOK)
	})
	f.handle("POST", `/containers/([^/]+)/kill`, func(w http.ResponseWriter, r *http.Request, m []string) {
		w.WriteHeader(http.StatusNoContent)
	})
}

// frameWriter writes stdcopy frames (the non-TTY attach format).
type frameWriter struct {
	w      io.Writer
	stream byte
}

var frameMu sync.Mutex

func (fw *frameWriter) Write(p []byte) (int, error) {
	frameMu.Lock()
	defer frameMu.Unlock()
	hdr := make([]byte, 8)
	hdr[0] = fw.stream
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(p)))
	if _, err := fw.w.Write(append(hdr, p...)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// frames encodes stdout/stderr chunks as a multiplexed log/attach body.
func frames(chunks ...[2]string) []byte {
	var b bytes.Buffer
	for _, c := range chunks {
		s := byte(1)
		if c[0] == "stderr" {
			s = 2
		}
		fw := &frameWriter{w: &b, stream: s}
		_, _ = fw.Write([]byte(c[1]))
	}
	return b.Bytes()
}

// result of one CLI invocation.
type cliResult struct {
	code           int
	stdout, stderr string
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout: %q\nstderr: %q", r.code, r.stdout, r.stderr)
}

// runCLI runs the berth CLI in-process against host with the given stdin
// and environment (BERTH_HOST is set to host when host is not empty).
func runCLI(t *testing.T, host, stdin string, env map[string]string, args ...string) cliResult {
	t.Helper()
	var out, errb bytes.Buffer
	e := map[string]string{}
	for k, v := range env {
		e[k] = v
	}
	if host != "" {
		e["BERTH_HOST"] = host
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := Run(ctx, args, Options{
		In:  strings.NewReader(stdin),
		Out: &out,
		Err: &errb,
		LookupEnv: func(k string) (string, bool) {
			v, ok := e[k]
			return v, ok
		},
	})
	return cliResult{code: code, stdout: out.String(), stderr: errb.String()}
}

// run runs the CLI against this engine.
func (f *fakeEngine) run(stdin string, args ...string) cliResult {
	f.t.Helper()
	return runCLI(f.t, f.host, stdin, nil, args...)
}
