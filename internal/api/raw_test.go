package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
)

// rawResponse is a response read completely.
type rawResponse struct {
	status int
	header http.Header
	body   string
}

func (e *testEnv) do(t *testing.T, method, path string, body io.Reader, hdr map[string]string) rawResponse {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), method, e.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (r rawResponse) message(t *testing.T) string {
	t.Helper()
	var m struct{ Message string }
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("error body %q is not JSON: %v", r.body, err)
	}
	return m.Message
}

var jsonCT = map[string]string{"Content-Type": "application/json"}

func TestRawVersions(t *testing.T) {
	e := newTestEnv(t)
	tests := []struct {
		path   string
		status int
		msg    string // for errors
		plain  bool   // plain-text error
	}{
		{"/version", 200, "", false},
		{"/v1.24/version", 200, "", false},
		{"/v1.56/version", 200, "", false},
		{"/v1.12/version", 400, "client version 1.12 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version", true},
		{"/v1.23/version", 400, "client version 1.23 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version", true},
		{"/v1.99/version", 400, "client version 1.99 is too new. Maximum supported API version is 1.56", false},
		{"/v1.56.1/version", 400, "client version 1.56.1 is too new. Maximum supported API version is 1.56", false},
		{"/v1.100/version", 400, "client version 1.100 is too new. Maximum supported API version is 1.56", false},
		{"/v1.40", 404, "page not found", false},
		{"/vx/version", 404, "page not found", false},
	}
	for _, tc := range tests {
		r := e.do(t, "GET", tc.path, nil, nil)
		if r.status != tc.status {
			t.Errorf("GET %s: status %d, want %d (%s)", tc.path, r.status, tc.status, r.body)
			continue
		}
		if tc.status == 200 {
			continue
		}
		if tc.plain {
			if r.body != tc.msg+"\n" || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
				t.Errorf("GET %s: %q (%s), want plain %q", tc.path, r.body, r.header.Get("Content-Type"), tc.msg)
			}
		} else if got := r.message(t); got != tc.msg {
			t.Errorf("GET %s: message %q, want %q", tc.path, got, tc.msg)
		}
	}

	// The negotiated version reaches the backend.
	for path, want := range map[string]string{"/v1.40/containers/create": "1.40", "/containers/create": APIVersion, "/v1.24/containers/create": "1.24"} {
		r := e.do(t, "POST", path, strings.NewReader(`{"Image":"busybox"}`), jsonCT)
		if r.status != 201 {
			t.Fatalf("POST %s: %d %s", path, r.status, r.body)
		}
		if got := e.c.lastCreate.APIVersion; got != want {
			t.Errorf("POST %s: backend saw API version %q, want %q", path, got, want)
		}
	}
}

func TestRawCommonHeaders(t *testing.T) {
	e := newTestEnv(t)
	for _, tc := range []struct{ method, path string }{
		{"GET", "/_ping"}, {"HEAD", "/_ping"}, {"GET", "/v1.44/containers/json"}, {"GET", "/containers/nope/json"},
		{"GET", "/no/such/route"}, {"GET", "/v1.99/info"}, {"POST", "/containers/create"},
	} {
		r := e.do(t, tc.method, tc.path, nil, nil)
		h := r.header
		if h.Get("Api-Version") != APIVersion || h.Get("Docker-Experimental") != "false" || h.Get("Ostype") != "linux" || h.Get("Server") != "berth/test (linux)" {
			t.Errorf("%s %s: headers %v", tc.method, tc.path, h)
		}
	}
}

func TestRawPing(t *testing.T) {
	e := newTestEnv(t)
	for _, m := range []string{"GET", "HEAD"} {
		r := e.do(t, m, "/_ping", nil, nil)
		wantBody := "OK"
		if m == "HEAD" {
			wantBody = ""
		}
		h := r.header
		if r.status != 200 || r.body != wantBody || h.Get("Builder-Version") != "1" || h.Get("Swarm") != "inactive" ||
			!strings.Contains(h.Get("Cache-Control"), "no-cache") || h.Get("Pragma") != "no-cache" {
			t.Errorf("%s /_ping: %d %q %v", m, r.status, r.body, h)
		}
	}
}

func TestRawUnknownRoutes(t *testing.T) {
	e := newTestEnv(t)
	for _, tc := range []struct{ method, path string }{
		{"GET", "/nope"}, {"GET", "/v1.44/nope"}, {"GET", "/containers/create"}, {"PUT", "/containers/json"},
		{"POST", "/images/json"}, {"GET", "/containers//json"}, {"PATCH", "/_ping"},
	} {
		r := e.do(t, tc.method, tc.path, nil, nil)
		// moby answers a wrong method like an unknown path.
		if r.status != 404 || r.message(t) != "page not found" {
			t.Errorf("%s %s: %d %q", tc.method, tc.path, r.status, r.body)
		}
	}
}

func TestRawCreateBodies(t *testing.T) {
	e := newTestEnv(t)
	huge := `{"Image":"busybox","Env":["A=` + strings.Repeat("x", 11<<20) + `"]}`
	tests := []struct {
		name   string
		body   string
		hdr    map[string]string
		status int
		msg    string
	}{
		{"ok with unknown fields", `{"Image":"busybox","FutureField":{"x":1},"HostConfig":{"Nope":true}}`, jsonCT, 201, ""},
		{"charset param", `{"Image":"busybox"}`, map[string]string{"Content-Type": "application/json; charset=utf-8"}, 201, ""},
		{"empty body", ``, jsonCT, 400, "invalid JSON: got EOF while reading request body"},
		{"empty object", `{}`, jsonCT, 400, "config cannot be empty in order to create a container"},
		{"null", `null`, jsonCT, 400, "config cannot be empty in order to create a container"},
		{"malformed", `{"Image": busybox}`, jsonCT, 400, "invalid JSON: invalid character 'b' looking for beginning of value (at byte 11)"},
		{"truncated", `{"Image": "busybox"`, jsonCT, 400, "invalid JSON: unexpected end of request body"},
		{"wrong type", `{"Image": 5}`, jsonCT, 400, "invalid JSON: field Image: cannot use a JSON number as string"},
		{"trailing data", `{"Image":"busybox"} {"Image":"x"}`, jsonCT, 400, "invalid JSON: unexpected content after the JSON value"},
		{"wrong content type", `{"Image":"busybox"}`, map[string]string{"Content-Type": "text/plain"}, 400, "unsupported Content-Type header (text/plain): must be 'application/json'"},
		{"malformed content type", `{"Image":"busybox"}`, map[string]string{"Content-Type": "application/json; ="}, 400, "malformed Content-Type header"},
		{"too large", huge, jsonCT, 413, "request body too large: JSON bodies are limited to 10485760 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(t, "POST", "/containers/create?name="+url.QueryEscape(strings.ReplaceAll(tc.name, " ", "_")), strings.NewReader(tc.body), tc.hdr)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.status == 201 {
				var resp struct {
					ID       string `json:"Id"`
					Warnings []string
				}
				if err := json.Unmarshal([]byte(r.body), &resp); err != nil || len(resp.ID) != 64 || resp.Warnings == nil || !strings.Contains(r.body, `"Warnings":[]`) {
					t.Errorf("create response %s", r.body)
				}
				return
			}
			if got := r.message(t); !strings.HasPrefix(got, tc.msg) {
				t.Errorf("message %q, want %q", got, tc.msg)
			}
		})
	}
}

func TestRawCreateCompat(t *testing.T) {
	e := newTestEnv(t)
	body := `{"Image":"busybox","HostConfig":{"ConsoleSize":[30,100],"AutoRemove":true,"PidsLimit":-1,` +
		`"PortBindings":{"80/tcp":[]},"Annotations":{"a":"b"}},"NetworkingConfig":{"EndpointsConfig":{"bridge":null}}}`
	r := e.do(t, "POST", "/v1.41/containers/create?platform=linux/arm64", strings.NewReader(body), jsonCT)
	if r.status != 201 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	lc := e.c.lastCreate
	hc := lc.HostConfig
	if hc.ConsoleSize != [2]uint{0, 0} || !hc.AutoRemove || hc.PidsLimit != nil || hc.Annotations != nil || hc.IpcMode != "" {
		t.Errorf("1.41 host config %+v", hc)
	}
	if lc.Platform != "linux/arm64" || lc.NetworkingConfig.EndpointsConfig["bridge"] == nil {
		t.Errorf("1.41 platform %q endpoints %v", lc.Platform, lc.NetworkingConfig.EndpointsConfig)
	}
	for port, b := range hc.PortBindings {
		if len(b) != 1 {
			t.Errorf("1.41: empty binding list for %v not backfilled: %v", port, b)
		}
	}

	r = e.do(t, "POST", "/v1.39/containers/create?platform=linux/arm64", strings.NewReader(body), jsonCT)
	if r.status != 201 || e.c.lastCreate.Platform != "" || e.c.lastCreate.HostConfig.IpcMode != container.IPCModeShareable {
		t.Errorf("1.39: %d platform %q ipc %q", r.status, e.c.lastCreate.Platform, e.c.lastCreate.HostConfig.IpcMode)
	}

	r = e.do(t, "POST", "/containers/create", strings.NewReader(body), jsonCT)
	if r.status != 201 || e.c.lastCreate.HostConfig.ConsoleSize != [2]uint{30, 100} || len(e.c.lastCreate.HostConfig.PortBindings) != 0 {
		t.Errorf("1.56: %d %+v", r.status, e.c.lastCreate.HostConfig)
	}
	r = e.do(t, "POST", "/v1.52/containers/create", strings.NewReader(body), jsonCT)
	if r.status != 201 || !strings.Contains(r.body, "empty list of port-bindings: 80/tcp") {
		t.Errorf("1.52 warning: %d %s", r.status, r.body)
	}
	r = e.do(t, "POST", "/v1.43/containers/create", strings.NewReader(`{"Image":"busybox","NetworkingConfig":{"EndpointsConfig":{"a":{},"b":{}}}}`), jsonCT)
	if r.status != 400 || !strings.Contains(r.message(t), "multiple network endpoints") {
		t.Errorf("1.43 multiple endpoints: %d %s", r.status, r.body)
	}
	r = e.do(t, "POST", "/containers/create", strings.NewReader(`{"Image":"busybox","HostConfig":{"Mounts":[{"Type":"bind","Source":"/a","Target":"/b","VolumeOptions":{}}]}}`), jsonCT)
	if r.status != 400 || r.message(t) != `VolumeOptions must not be specified on mount type "bind"` {
		t.Errorf("mount options: %d %s", r.status, r.body)
	}
}

func TestRawPanicRecovery(t *testing.T) {
	e := newTestEnv(t)
	e.c.panicIn = "Create"
	r := e.do(t, "POST", "/containers/create", strings.NewReader(`{"Image":"busybox"}`), jsonCT)
	if r.status != 500 || r.message(t) != "internal server error: fake backend exploded" {
		t.Errorf("panicking create: %d %s", r.status, r.body)
	}
	logs := e.log.String()
	if !strings.Contains(logs, "panic in API handler") || !strings.Contains(logs, "fake_test.go") {
		t.Errorf("panic not logged with a stack:\n%s", logs)
	}
	// The server lives on.
	e.c.panicIn = "Logs"
	e.c.panicIn = ""
	if r := e.do(t, "GET", "/_ping", nil, nil); r.status != 200 {
		t.Errorf("ping after panic: %d", r.status)
	}
}

func TestRawQueryParameters(t *testing.T) {
	e := newTestEnv(t)
	for q, want := range map[string]bool{
		"all=1": true, "all=true": true, "all=yes": true, "all=True": true, "all=anything": true,
		"all=0": false, "all=false": false, "all=no": false, "all=none": false, "all=NONE": false, "all=": false, "all=%20": false, "": false,
	} {
		if r := e.do(t, "GET", "/containers/json?"+q, nil, nil); r.status != 200 {
			t.Fatalf("%s: %d %s", q, r.status, r.body)
		}
		if e.c.lastList.All != want {
			t.Errorf("%q: All = %v, want %v", q, e.c.lastList.All, want)
		}
	}
	for q, want := range map[string]Filters{
		`filters={"status":{"running":true,"exited":true}}`:        {"status": {"exited", "running"}},
		`filters={"status":["running","running"],"label":["a=b"]}`: {"status": {"running"}, "label": {"a=b"}},
		`filters=`:             {},
		`since=abc&before=def`: {"since": {"abc"}, "before": {"def"}},
	} {
		if r := e.do(t, "GET", "/containers/json?"+url.PathEscape(q), nil, nil); r.status != 200 {
			t.Fatalf("%s: %d %s", q, r.status, r.body)
		}
		got := e.c.lastList.Filters
		if len(got) != len(want) {
			t.Errorf("%s: filters %v, want %v", q, got, want)
		}
		for k, v := range want {
			if !slices.Equal(got[k], v) {
				t.Errorf("%s: filters %v, want %v", q, got, want)
			}
		}
	}
	for _, q := range []string{`filters={"status":"running"}`, `filters=[1]`, `filters={`, `limit=x`, `last=1.5`, `bad=%zz`} {
		r := e.do(t, "GET", "/containers/json?"+q, nil, nil)
		if r.status != 400 {
			t.Errorf("%s: %d %s, want 400", q, r.status, r.body)
		}
	}
	if r := e.do(t, "GET", "/containers/json?last=2", nil, nil); r.status != 200 || e.c.lastList.Limit != 2 {
		t.Errorf("last=2: %d limit %d", r.status, e.c.lastList.Limit)
	}
}

func TestRawStopParameters(t *testing.T) {
	e := newTestEnv(t)
	id := e.create(t, "s", &container.Config{Image: "busybox", Cmd: []string{"sleep"}}, nil)
	start := func() {
		if r := e.do(t, "POST", "/containers/"+id+"/start", nil, nil); r.status != 204 {
			t.Fatalf("start: %d %s", r.status, r.body)
		}
	}
	start()
	r := e.do(t, "POST", "/containers/s/start", nil, nil)
	if r.status != 304 || r.body != "" {
		t.Errorf("start running: %d %q, want an empty 304", r.status, r.body)
	}
	r = e.do(t, "POST", "/containers/s/stop?t=abc", nil, nil)
	if r.status != 400 || !strings.Contains(r.message(t), `"t"`) {
		t.Errorf("t=abc: %d %s", r.status, r.body)
	}
	if r = e.do(t, "POST", "/v1.41/containers/s/stop?timeout=7&signal=SIGINT", nil, nil); r.status != 204 {
		t.Fatalf("stop: %d %s", r.status, r.body)
	}
	if s := e.c.lastStop; s.Timeout == nil || *s.Timeout != 7 || s.Signal != "" {
		t.Errorf("1.41 stop options %+v (signal is 1.42+)", s)
	}
	r = e.do(t, "POST", "/containers/s/stop", nil, nil)
	if r.status != 304 || r.body != "" {
		t.Errorf("stop stopped: %d %q", r.status, r.body)
	}
	start()
	if r = e.do(t, "POST", "/containers/s/restart?t=-1&signal=SIGTERM", nil, nil); r.status != 204 {
		t.Fatalf("restart: %d %s", r.status, r.body)
	}
	if s := e.c.lastStop; s.Timeout == nil || *s.Timeout != -1 || s.Signal != "SIGTERM" {
		t.Errorf("restart options %+v", s)
	}
	r = e.do(t, "POST", "/containers/s/start", strings.NewReader(`{"HostConfig":{"Privileged":true}}`), jsonCT)
	if r.status != 400 || !strings.Contains(r.message(t), "removed in v1.24") {
		t.Errorf("start with a body: %d %s", r.status, r.body)
	}
	for _, q := range []string{"h=40", "h=-1&w=80", "h=40&w=x"} {
		if r := e.do(t, "POST", "/containers/s/resize?"+q, nil, nil); r.status != 400 {
			t.Errorf("resize %s: %d %s", q, r.status, r.body)
		}
	}
	if r := e.do(t, "POST", "/containers/s/resize?h=24&w=80", nil, nil); r.status != 200 || e.c.lastResize != [2]uint{24, 80} {
		t.Errorf("resize: %d %v", r.status, e.c.lastResize)
	}
	if r := e.do(t, "POST", "/containers/s/rename?name=", nil, nil); r.status != 400 {
		t.Errorf("rename to nothing: %d %s", r.status, r.body)
	}
	if r := e.do(t, "POST", "/containers/s/wait?condition=bogus", nil, nil); r.status != 400 || r.message(t) != `invalid condition: "bogus"` {
		t.Errorf("wait bogus: %d %s", r.status, r.body)
	}
}

func TestRawWaitLegacy(t *testing.T) {
	e := newTestEnv(t)
	id := e.create(t, "w", &container.Config{Image: "busybox", Cmd: []string{"exit", "7"}}, nil)
	if r := e.do(t, "POST", "/containers/w/start", nil, nil); r.status != 204 {
		t.Fatal(r.status)
	}
	// API 1.29: no condition (ignored), status and body together.
	r := e.do(t, "POST", "/v1.29/containers/"+id+"/wait?condition=bogus", nil, nil)
	if r.status != 200 || strings.TrimSpace(r.body) != `{"StatusCode":7}` || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("legacy wait: %d %q %v", r.status, r.body, r.header)
	}
	if ev := e.c.Events(); ev[len(ev)-1] != "wait:not-running" {
		t.Errorf("legacy wait condition: %v", ev)
	}
}

// rawAttach sends an attach request on a fresh connection, followed by
// early stdin bytes in the same write, and returns the connection with the
// parsed response status line and headers.
func rawAttach(t *testing.T, e *testEnv, path string, upgrade bool, early string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	req := "POST " + path + " HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\n"
	if upgrade {
		req += "Connection: Upgrade\r\nUpgrade: tcp\r\n"
	}
	req += "\r\n" + early
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("attach response: %v", err)
	}
	return conn, br, resp
}

func TestRawAttachHijack(t *testing.T) {
	for _, upgrade := range []bool{true, false} {
		t.Run(map[bool]string{true: "upgrade", false: "plain"}[upgrade], func(t *testing.T) {
			e := newTestEnv(t)
			id := e.create(t, "", &container.Config{Image: "busybox", Cmd: []string{"cat"}, OpenStdin: true}, nil)
			conn, br, resp := rawAttach(t, e, "/v1.50/containers/"+id+"/attach?stream=1&stdin=1&stdout=1&stderr=1", upgrade, "early bytes\n")
			wantStatus, wantProto := 101, "UPGRADED"
			if !upgrade {
				wantStatus, wantProto = 200, "OK"
			}
			if resp.StatusCode != wantStatus || !strings.HasSuffix(resp.Status, wantProto) ||
				resp.Header.Get("Content-Type") != "application/vnd.docker.multiplexed-stream" || resp.Header.Get("Api-Version") != APIVersion {
				t.Fatalf("attach response %s %v", resp.Status, resp.Header)
			}
			if upgrade && (resp.Header.Get("Upgrade") != "tcp" || resp.Header.Get("Connection") != "Upgrade") {
				t.Errorf("upgrade headers %v", resp.Header)
			}
			e.waitAttached(t, id, 1)
			if r := e.do(t, "POST", "/containers/"+id+"/start", nil, nil); r.status != 204 {
				t.Fatal(r.status)
			}
			if _, err := io.WriteString(conn, "late bytes\n"); err != nil {
				t.Fatal(err)
			}
			if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if _, err := stdcopy.StdCopy(&out, io.Discard, br); err != nil {
				t.Fatal(err)
			}
			if out.String() != "early bytes\nlate bytes\n" {
				t.Errorf("echoed %q", out.String())
			}
		})
	}
}

func TestRawAttachOldClientAndErrors(t *testing.T) {
	e := newTestEnv(t)
	id := e.create(t, "", &container.Config{Image: "busybox", Cmd: []string{"exit", "0", "x"}}, nil)
	// Before 1.42 the multiplexed stream was announced as raw.
	conn, _, resp := rawAttach(t, e, "/v1.41/containers/"+id+"/attach?stream=1&stdout=1", true, "")
	if resp.StatusCode != 101 || resp.Header.Get("Content-Type") != "application/vnd.docker.raw-stream" {
		t.Errorf("1.41 attach %s %v", resp.Status, resp.Header)
	}
	conn.Close()

	// Errors before the hijack are ordinary JSON errors.
	_, _, resp = rawAttach(t, e, "/containers/nope/attach?stream=1&stdout=1", true, "")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 404 || !strings.Contains(string(body), "No such container: nope") {
		t.Errorf("attach unknown: %s %s", resp.Status, body)
	}
}

func TestRawLogsParameters(t *testing.T) {
	e := newTestEnv(t)
	id := e.create(t, "l", &container.Config{Image: "busybox"}, nil)
	e.c.byID[id].logs = []LogMessage{{Stream: "stdout", Line: []byte("x\n")}}
	r := e.do(t, "GET", "/containers/l/logs", nil, nil)
	if r.status != 400 || r.message(t) != "Bad parameters: you must choose at least one stream" {
		t.Errorf("no streams: %d %s", r.status, r.body)
	}
	for _, tc := range []struct {
		q     string
		tail  int
		since time.Time
		until time.Time
	}{
		{"tail=all", -1, time.Time{}, time.Time{}},
		{"tail=-5", -1, time.Time{}, time.Time{}},
		{"tail=junk", -1, time.Time{}, time.Time{}},
		{"tail=0", 0, time.Time{}, time.Time{}},
		{"since=1700000000&until=1700000100.000000001", -1, time.Unix(1700000000, 0), time.Unix(1700000100, 1)},
		{"since=2024-01-02T03:04:05Z&until=2024-01-02T03:04:05.5%2B01:00", -1, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), time.Date(2024, 1, 2, 2, 4, 5, 500000000, time.UTC)},
		{"since=0", -1, time.Time{}, time.Time{}},
	} {
		r := e.do(t, "GET", "/containers/l/logs?stdout=1&"+tc.q, nil, nil)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", tc.q, r.status, r.body)
		}
		lo := e.c.lastLogs
		if lo.Tail != tc.tail || !lo.Since.Equal(tc.since) || !lo.Until.Equal(tc.until) {
			t.Errorf("%s: tail %d since %v until %v", tc.q, lo.Tail, lo.Since, lo.Until)
		}
	}
	for _, q := range []string{"since=yesterday", "until=1.1234567891", "since=1e9"} {
		if r := e.do(t, "GET", "/containers/l/logs?stdout=1&"+q, nil, nil); r.status != 400 {
			t.Errorf("%s: %d %s, want 400", q, r.status, r.body)
		}
	}
	if r := e.do(t, "GET", "/v1.41/containers/l/logs?stdout=1", nil, nil); r.header.Get("Content-Type") != "application/vnd.docker.raw-stream" {
		t.Errorf("1.41 logs content type %q", r.header.Get("Content-Type"))
	}
	if r := e.do(t, "GET", "/containers/l/logs?stdout=1", nil, nil); r.header.Get("Content-Type") != "application/vnd.docker.multiplexed-stream" || r.body != "\x01\x00\x00\x00\x00\x00\x00\x02x\n" {
		t.Errorf("logs %q %v", r.body, r.header)
	}
	e.c.panicIn = "Logs"
	if r := e.do(t, "GET", "/containers/l/logs?stdout=1", nil, nil); r.status != 500 || !strings.HasPrefix(r.message(t), "internal server error: logs exploded") {
		t.Errorf("panicking logs: %d %s", r.status, r.body)
	}
}

func TestRawImages(t *testing.T) {
	e := newTestEnv(t)
	e.i.add("docker.io/library/busybox:latest", []byte("bb"))
	e.i.add("", []byte("dangling"))

	// Names with slashes and registry ports reach the handler whole.
	for _, path := range []string{"/images/docker.io/library/busybox:latest/json", "/v1.44/images/docker.io/library/busybox/json"} {
		if r := e.do(t, "GET", path, nil, nil); r.status != 200 || !strings.Contains(r.body, `"RepoTags":["docker.io/library/busybox:latest"]`) {
			t.Errorf("GET %s: %d %s", path, r.status, r.body)
		}
	}
	r := e.do(t, "GET", "/images/docker.io/library/busybox/get", nil, nil)
	if r.status != 200 || r.header.Get("Content-Type") != "application/x-tar" || len(r.body) < 512 {
		t.Errorf("image get: %d %v %d bytes", r.status, r.header, len(r.body))
	}
	r = e.do(t, "GET", "/images/get?names=nope", nil, nil)
	if r.status != 404 || r.header.Get("Content-Type") != "application/json" || r.message(t) != "No such image: nope" {
		t.Errorf("get unknown: %d %v %s", r.status, r.header, r.body)
	}

	// Older clients: VirtualSize (< 1.44), "<none>" tags (< 1.43),
	// Containers -1 (< 1.51).
	r = e.do(t, "GET", "/v1.42/images/json", nil, nil)
	var old []map[string]any
	if err := json.Unmarshal([]byte(r.body), &old); err != nil || len(old) != 2 {
		t.Fatalf("1.42 image list %s: %v", r.body, err)
	}
	var sawNone bool
	for _, im := range old {
		if im["VirtualSize"] != im["Size"] || im["Containers"] != float64(-1) {
			t.Errorf("1.42 image %v", im)
		}
		if tags, _ := im["RepoTags"].([]any); len(tags) == 1 && tags[0] == "<none>:<none>" {
			sawNone = true
		}
	}
	if !sawNone {
		t.Errorf("1.42 list has no <none>:<none> image: %s", r.body)
	}
	r = e.do(t, "GET", "/images/json?shared-size=1&filters="+url.QueryEscape(`{"reference":{"docker.io/library/busybox:latest":true}}`), nil, nil)
	if r.status != 200 || strings.Contains(r.body, "VirtualSize") || !strings.Contains(r.body, `"Containers":2`) || !e.i.lastList.SharedSize {
		t.Errorf("1.56 image list %s (options %+v)", r.body, e.i.lastList)
	}
	if r := e.do(t, "GET", "/v1.43/images/docker.io/library/busybox/json", nil, nil); !strings.Contains(r.body, `"VirtualSize":2`) || !strings.Contains(r.body, `"Created":"0001-01-01T00:00:00Z"`) {
		t.Errorf("1.43 inspect %s", r.body)
	}

	// images/create: neither source, a URL, a bad reference, a reserved name.
	for q, want := range map[string]int{"": 400, "fromSrc=http://example.com/rootfs.tar": 501, "fromImage=UPPER": 400, "fromImage=busybox&tag=bad:tag": 400, "fromImage=scratch": 403} {
		r := e.do(t, "POST", "/images/create?"+q, nil, nil)
		if r.status != want {
			t.Errorf("create %q: %d %s, want %d", q, r.status, r.body, want)
		}
	}
	r = e.do(t, "POST", "/images/create?fromImage=busybox&tag=sha256:"+strings.Repeat("a", 64), nil, nil)
	if r.status != 200 || e.i.lastPull.Tag != "sha256:"+strings.Repeat("a", 64) {
		t.Errorf("pull by digest: %d %s", r.status, r.body)
	}
	r = e.do(t, "POST", "/images/create?fromSrc=-", strings.NewReader(""), nil)
	if r.status != 400 || r.message(t) != "empty rootfs tarball" {
		t.Errorf("import of nothing: %d %s", r.status, r.body)
	}

	// load: quiet defaults to true; errors travel in the stream.
	r = e.do(t, "POST", "/images/load", strings.NewReader("garbage"), nil)
	if r.status != 200 || !strings.Contains(r.body, `"errorDetail":{"message":"`) || !e.i.lastLoad {
		t.Errorf("load garbage: %d %s quiet=%v", r.status, r.body, e.i.lastLoad)
	}

	// tag needs a repo; digest algorithms are not names.
	if r := e.do(t, "POST", "/images/busybox/tag", nil, nil); r.status != 400 {
		t.Errorf("tag without repo: %d %s", r.status, r.body)
	}
	if r := e.do(t, "POST", "/images/busybox/tag?repo=sha256", nil, nil); r.status != 400 {
		t.Errorf("tag sha256: %d %s", r.status, r.body)
	}
	if r := e.do(t, "POST", "/images/docker.io/library/busybox/tag?repo=example.com/x&tag=1", nil, nil); r.status != 201 || r.body != "" {
		t.Errorf("tag: %d %s", r.status, r.body)
	}
	if r := e.do(t, "DELETE", "/images/example.com/x:1?noprune=1", nil, nil); r.status != 200 || !strings.Contains(r.body, `"Untagged":"example.com/x:1"`) || e.i.lastRemove != [2]bool{false, true} {
		t.Errorf("delete: %d %s %v", r.status, r.body, e.i.lastRemove)
	}
	if r := e.do(t, "DELETE", "/images/%20", nil, nil); r.status != 400 || r.message(t) != "image name cannot be blank" {
		t.Errorf("delete blank: %d %s", r.status, r.body)
	}
}

func TestRawMissingBackend(t *testing.T) {
	log, _ := testLogger(t)
	h := NewRouter(Backends{System: fakeSystem{}}, RouterOptions{Logger: log})
	req, _ := http.NewRequest("GET", "/containers/json", nil)
	rec := newRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 501 || rec.Header().Get("Server") != "berth/dev (linux)" {
		t.Errorf("unwired backend: %d %s %v", rec.Code, rec.Body, rec.Header())
	}
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

// onlyReader hides a reader's length, so the request goes out chunked.
type onlyReader struct{ io.Reader }

func TestRawBodyLimits(t *testing.T) {
	e := newTestEnv(t)
	big := strings.Repeat("x", maxJSONBody+1)
	// Declared too large: refused before the handler runs, also on routes
	// that read no body at all.
	r := e.do(t, "POST", "/containers/create?name=big", strings.NewReader(`{"Image":"busybox","Env":["A=`+big+`"]}`), jsonCT)
	if r.status != http.StatusRequestEntityTooLarge || !strings.HasPrefix(r.message(t), "request body too large") {
		t.Errorf("declared oversized create: %d %s", r.status, r.body)
	}
	r = e.do(t, "POST", "/containers/nosuch/start", strings.NewReader(big), nil)
	if r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body on start: %d %s", r.status, r.body)
	}
	// Chunked, so only reading finds out.
	r = e.do(t, "POST", "/containers/create?name=chunked", onlyReader{strings.NewReader(`{"Image":"busybox","Env":["A=` + big + `"]}`)}, jsonCT)
	if r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked oversized create: %d %s", r.status, r.body)
	}
	// Neither created anything.
	if r := e.do(t, "GET", "/containers/json?all=1", nil, nil); r.body != "[]\n" {
		t.Errorf("oversized creates left containers: %s", r.body)
	}
	// Streams are not capped like JSON: an import larger than the JSON
	// limit goes through.
	r = e.do(t, "POST", "/images/create?fromSrc=-&repo=big&tag=1", onlyReader{strings.NewReader(big + big)}, nil)
	if r.status != http.StatusOK || strings.Contains(r.body, "too large") {
		t.Errorf("large import: %d %s", r.status, r.body)
	}
}
