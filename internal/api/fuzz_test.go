package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func FuzzParseFilters(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `null`, `{"status":{"running":true}}`, `{"status":["running","exited"]}`,
		`{"label":{"a=b":true,"c":false}}`, `{"a":null}`, `{"a":[null]}`, `[]`, `"x"`, `{"a":{"b":1}}`,
		`{"status":["b","a","b"]}`, `{"a":{}}`, `{`, "{\"\\u0000\":[\"\\ud800\"]}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fs, err := parseFilters(s)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("parseFilters(%q) error %v is not InvalidArgument", s, err)
			}
			return
		}
		for term, vs := range fs {
			if vs == nil || !slices.IsSorted(vs) || len(slices.Compact(slices.Clone(vs))) != len(vs) {
				t.Fatalf("parseFilters(%q)[%q] = %q: not a sorted set", s, term, vs)
			}
		}
		// The modern encoding of the result parses back to the same.
		sets := map[string]map[string]bool{}
		for term, vs := range fs {
			sets[term] = map[string]bool{}
			for _, v := range vs {
				sets[term][v] = true
			}
		}
		b, err := json.Marshal(sets)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseFilters(string(b))
		if err != nil {
			t.Fatalf("re-parse %s: %v", b, err)
		}
		if len(again) != len(fs) {
			t.Fatalf("round trip %v → %v", fs, again)
		}
		for term, vs := range fs {
			if !slices.Equal(again[term], vs) {
				t.Fatalf("round trip %v → %v", fs, again)
			}
		}
	})
}

func FuzzDecodeCreateRequest(f *testing.F) {
	for _, s := range []string{
		`{"Image":"busybox"}`,
		`{"Image":"busybox","Cmd":"sh","Entrypoint":["a"],"ExposedPorts":{"80/tcp":{}},"Healthcheck":{"Test":["CMD","true"],"StartInterval":5}}`,
		`{"Image":"x","HostConfig":{"PortBindings":{"80/tcp":[],"53/udp":[{"HostIp":"::1","HostPort":"53"}]},"PidsLimit":0,"ConsoleSize":[1,2]}}`,
		`{"Image":"x","HostConfig":{"Mounts":[{"Type":"bind","Source":"/a","Target":"/b","BindOptions":{"NonRecursive":true,"ReadOnlyForceRecursive":true}},{"Type":"volume","VolumeOptions":{"Subpath":"s"}},{"Type":"image"}]}}`,
		`{"Image":"x","NetworkingConfig":{"EndpointsConfig":{"a":null,"b":{"GwPriority":3}}}}`,
		`{"HostConfig":{}}`, `{}`, `null`, `[]`, ``, `{"Image":1}`, `{"Image":"a"} x`, `{"Image":"a"}}`,
		`{"Image":"x","HostConfig":{"PortBindings":{"bogus":[]}}}`,
	} {
		for _, v := range []string{"1.24", "1.41", "1.43", "1.52", "1.56"} {
			f.Add([]byte(s), v)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte, version string) {
		req, err := decodeCreateRequest(bytes.NewReader(body))
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("decode %q: error %v is not InvalidArgument", body, err)
			}
			return
		}
		if req.Config == nil || req.HostConfig == nil || req.NetworkingConfig == nil || req.NetworkingConfig.EndpointsConfig == nil {
			t.Fatalf("decode %q: nil parts %+v", body, req)
		}
		for k, ep := range req.NetworkingConfig.EndpointsConfig {
			if ep == nil {
				t.Fatalf("decode %q: nil endpoint %q", body, k)
			}
		}
		if _, err := adaptCreateRequest(version, &req); err != nil && !errdefs.IsInvalidArgument(err) {
			t.Fatalf("adapt %q for %q: %v is not InvalidArgument", body, version, err)
		}
	})
}

func FuzzParseTime(f *testing.F) {
	for _, s := range []string{
		"", "0", "1700000000", "1700000000.123456789", "1700000000.1", "-1.5", "1.1234567891", "2024-01-02T03:04:05Z",
		"2024-01-02T03:04:05.999999999+01:00", "10m", "-1h", "1e9", ".5", "1.", "-", "9999999999999999999", "1700000000.-1",
	} {
		f.Add(s)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		ts, err := parseTime(s, now)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("parseTime(%q): %v is not InvalidArgument", s, err)
			}
			return
		}
		// Docker's client encoding of any accepted time parses back to it.
		if !ts.IsZero() {
			enc := fmt.Sprintf("%d.%09d", ts.Unix(), ts.Nanosecond())
			back, err := parseTime(enc, now)
			if err != nil || !back.Equal(ts) && !(back.IsZero() && ts.Unix() == 0 && ts.Nanosecond() == 0) {
				t.Fatalf("parseTime(%q) = %v; its encoding %s parses to %v, %v", s, ts, enc, back, err)
			}
		}
		if tail := parseTail(s); tail < -1 {
			t.Fatalf("parseTail(%q) = %d", s, tail)
		}
	})
}

func FuzzSplitVersion(f *testing.F) {
	for _, s := range []string{"/v1.44/containers/json", "/containers/json", "/v1.40", "/v", "/volumes", "/v1..2/x", "/v./", "", "v1.2/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		v, rest := splitVersion(p)
		if v == "" {
			if rest != p {
				t.Fatalf("splitVersion(%q) = %q, %q", p, v, rest)
			}
			return
		}
		if strings.Trim(v, "0123456789.") != "" || (rest != "" && rest[0] != '/') || "/v"+v+rest != p {
			t.Fatalf("splitVersion(%q) = %q, %q", p, v, rest)
		}
		_ = compareVersions(v, APIVersion)
	})
}

// FuzzRouter sends arbitrary methods, paths and query strings through the
// router over empty fakes: whatever comes in, no handler may panic.
func FuzzRouter(f *testing.F) {
	for _, s := range [][3]string{
		{"GET", "/containers/json", "all=1&filters=%7B%22status%22%3A%5B%22running%22%5D%7D&limit=3"},
		{"GET", "/v1.30/containers/x/logs", "stdout=1&tail=all&since=1.5&until=x"},
		{"POST", "/containers/x/stop", "t=5&signal=KILL"},
		{"POST", "/containers/x/wait", "condition=removed"},
		{"POST", "/containers/x/resize", "h=1&w=99999999999"},
		{"POST", "/images/create", "fromImage=a/b&tag=sha256:zz&platform=linux"},
		{"POST", "/images/create", "fromSrc=-&repo=x&tag=y&changes=ENV%20a=b"},
		{"GET", "/images/get", "names=a&names=b"},
		{"GET", "/v1.42/images/json", "filter=x&shared-size=1&manifests=1"},
		{"DELETE", "/images/a/b:c", "force=1&noprune=yes"},
		{"POST", "/images/x/tag", "repo=UP&tag=%00"},
		{"HEAD", "/_ping", ""},
		{"GET", "/v1.12/info", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, method, path, query string) {
		if strings.Contains(path, "/attach") {
			return // needs a real connection to hijack
		}
		u := &url.URL{Path: path, RawQuery: query}
		req := &http.Request{Method: method, URL: u, Header: http.Header{}, Body: http.NoBody, Host: "docker"}
		req = req.WithContext(testCtx(t))
		log, buf := testLogger(t)
		_, b := newFakes()
		rec := httptest.NewRecorder()
		NewRouter(b, RouterOptions{Logger: log}).ServeHTTP(rec, req)
		if strings.Contains(buf.String(), "panic in API handler") {
			t.Fatalf("%s %s?%s panicked:\n%s", method, path, query, buf.String())
		}
		if rec.Header().Get("Api-Version") != APIVersion {
			t.Fatalf("%s %s?%s: no Api-Version header", method, path, query)
		}
	})
}
