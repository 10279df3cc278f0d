package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/testutil"
)

// Bad input gets a clear error, the exit code docker gives, and changes
// nothing.
func TestBadInputChangesNothing(t *testing.T) {
	d := daemonWithBusybox(t)
	d.MustBerth(t, "run", "--name", "keep", "busybox", "true")
	state := func() string {
		return d.MustBerth(t, "ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.State}}") +
			d.MustBerth(t, "images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}")
	}
	before := state()

	cases := []struct {
		args []string
		want string
	}{
		{[]string{"run", "--memory", "lots", "busybox", "true"}, "invalid size: 'lots'"},
		{[]string{"run", "-m", "1k", "busybox", "true"}, "Minimum memory limit allowed is 6MB"},
		{[]string{"run", "--memory", "64m", "--memory-swap", "32m", "busybox", "true"}, "Minimum memoryswap limit should be larger than memory limit"},
		{[]string{"run", "--cpus", "99", "busybox", "true"}, "Range of CPUs is from 0.01"},
		{[]string{"run", "--name", "keep", "busybox", "true"}, `The container name "/keep" is already in use by container`},
		{[]string{"run", "--name", "bad name!", "busybox", "true"}, "Invalid container name (bad name!)"},
		{[]string{"run", "--restart", "sometimes", "busybox", "true"}, "sometimes"},
		{[]string{"run", "--rm", "--restart", "always", "busybox", "true"}, ""},
		{[]string{"run", "--log-driver", "syslog", "busybox", "true"}, "syslog"},
		{[]string{"run", "nosuchimage:1.0", "true"}, "nosuchimage"},
		{[]string{"run", "busybox:NOPE!", "true"}, "invalid reference format"},
		{[]string{"run", "--bogus-flag", "busybox"}, "unknown flag: --bogus-flag"},
		{[]string{"create", "--stop-signal", "SIGNOPE", "busybox", "true"}, "SIGNOPE"},
		{[]string{"start", "nosuchcontainer"}, "No such container: nosuchcontainer"},
		{[]string{"inspect", "nosuchthing"}, "No such object: nosuchthing"},
		{[]string{"tag", "nosuchimage", "x"}, "No such image: nosuchimage:latest"},
		{[]string{"tag", "busybox", "Bad/Name"}, "invalid reference format"},
	}
	for _, c := range cases {
		r := d.Berth(t, c.args...)
		if r.ExitCode == 0 || (c.want != "" && !strings.Contains(r.Stderr, c.want)) {
			t.Errorf("berth %s: want a failure mentioning %q, got %s", strings.Join(c.args, " "), c.want, r)
		}
		if strings.HasPrefix(c.args[0], "run") && r.ExitCode != 125 {
			t.Errorf("berth %s: exit %d, want 125", strings.Join(c.args, " "), r.ExitCode)
		}
	}
	if after := state(); after != before {
		t.Errorf("bad input changed state:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestAPIRejectsMalformedBodies(t *testing.T) {
	d := daemonWithBusybox(t)
	hc := d.HTTPClient()
	post := func(path, ctype, body string) (int, string) {
		req, _ := http.NewRequest("POST", "http://berth"+path, strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var msg struct{ Message string }
		_ = json.Unmarshal(b, &msg)
		return resp.StatusCode, msg.Message
	}
	for _, c := range []struct {
		name, ctype, body string
		want              int
	}{
		{"truncated JSON", "application/json", `{"Image": "busybox", "Cmd": [`, 400},
		{"wrong types", "application/json", `{"Image": 42}`, 400},
		{"no config", "application/json", ``, 400},
		{"oversized", "application/json", `{"Image":"busybox","Env":["` + strings.Repeat("x", 64<<20) + `"]}`, 413},
		{"not JSON", "text/plain", `hello`, 400},
		{"unknown image", "application/json", `{"Image": "nosuch"}`, 404},
	} {
		code, msg := post("/v1.47/containers/create", c.ctype, c.body)
		if code != c.want || msg == "" {
			t.Errorf("%s: got %d %q, want %d with a message", c.name, code, msg, c.want)
		}
	}
	code, msg := post("/v1.47/containers/nosuch/start", "", "")
	if code != 404 || !strings.Contains(msg, "No such container") {
		t.Errorf("start unknown: %d %q", code, msg)
	}
	if out := d.MustBerth(t, "ps", "-aq"); strings.TrimSpace(out) != "" {
		t.Errorf("malformed requests created containers: %q", out)
	}
	// The daemon is still healthy.
	d.MustBerth(t, "run", "--rm", "busybox", "true")
}

func TestImportGarbageChangesNothing(t *testing.T) {
	d := testutil.StartDaemon(t, binDir)
	r := testutil.Run(t, d.Cmd("import", "-", "junk:1"), "definitely not a tar archive, just text\n")
	if r.ExitCode == 0 {
		t.Fatalf("garbage imported: %s", r)
	}
	if out := d.MustBerth(t, "images", "-aq"); strings.TrimSpace(out) != "" {
		t.Fatalf("failed import left images: %q", out)
	}
}
