package integration

import (
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// bodyOnly hides a reader's length, so that the request goes out chunked.
type bodyOnly struct{ io.Reader }

// TestAPIBadBodiesChangeNothing: bodies that do not parse, and bodies over
// the JSON limit (declared or chunked), are refused on every kind of
// endpoint, and neither the stores nor the data-root's files change.
func TestAPIBadBodiesChangeNothing(t *testing.T) {
	d := daemonWithBusybox(t)
	id := strings.TrimSpace(d.MustBerth(t, "create", "--name", "keep", "busybox", "sleep", "100"))
	d.MustBerth(t, "volume", "create", "keepvol")
	files := func() string {
		var out []string
		_ = filepath.WalkDir(d.DataRoot, func(p string, de fs.DirEntry, err error) error {
			if err == nil && !strings.HasSuffix(p, "events.log") {
				out = append(out, strings.TrimPrefix(p, d.DataRoot))
			}
			return nil
		})
		sort.Strings(out)
		return strings.Join(out, "\n")
	}
	state := func() string {
		return d.MustBerth(t, "ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.State}}") +
			d.MustBerth(t, "images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}") +
			d.MustBerth(t, "volume", "ls", "-q") + files()
	}
	before := state()
	huge := `{"Image":"busybox","Env":["A=` + strings.Repeat("x", 11<<20) + `"]}`
	hc := d.HTTPClient()
	for _, c := range []struct {
		method, path, ctype string
		body                io.Reader
		want                int
	}{
		{"POST", "/v1.47/containers/create?name=bad1", "application/json", strings.NewReader(`{"Image": "busybox", "Cmd": [`), 400},
		{"POST", "/v1.47/containers/create?name=bad2", "application/json", bodyOnly{strings.NewReader(huge)}, 413},
		{"POST", "/v1.47/containers/create?name=bad3", "application/json", strings.NewReader(huge), 413},
		{"POST", "/v1.47/volumes/create", "application/json", strings.NewReader(`{"Name": "badvol", "Labels": [1]}`), 400},
		{"POST", "/v1.47/volumes/create", "application/json", bodyOnly{strings.NewReader(`{"Name":"badvol2","Labels":{"a":"` + strings.Repeat("y", 11<<20) + `"}}`)}, 413},
		{"POST", "/v1.47/containers/" + id + "/exec", "application/json", strings.NewReader(`{"Cmd": "not a list"`), 400},
		{"POST", "/v1.47/containers/" + id + "/update", "application/json", strings.NewReader(`{"Memory": "lots"}`), 400},
		{"POST", "/v1.47/containers/" + id + "/start", "", strings.NewReader(strings.Repeat("z", 11<<20)), 413},
		// As dockerd: 200, then the error in the progress stream.
		{"POST", "/v1.47/images/load", "application/x-tar", strings.NewReader("not a tar archive at all"), 200},
		{"POST", "/v1.47/images/create?fromSrc=-&repo=junk", "application/x-tar", strings.NewReader("not a tar archive either"), 400},
		{"PUT", "/v1.47/containers/" + id + "/archive?path=/tmp", "application/x-tar", strings.NewReader("garbage that is no tar"), 400},
	} {
		req, _ := http.NewRequest(c.method, "http://berth"+c.path, c.body)
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Errorf("%s %s: %v", c.method, c.path, err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want && !(c.want == 400 && resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != 404) {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, resp.StatusCode, b, c.want)
		}
	}
	if after := state(); after != before {
		t.Errorf("bad bodies changed state:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// The daemon is unharmed.
	d.MustBerth(t, "run", "--rm", "busybox", "true")
}
