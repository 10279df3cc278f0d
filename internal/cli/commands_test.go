package cli

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

func fixture(t *testing.T) *fakeEngine {
	f := newFakeEngine(t)
	fixtureEngine(f)
	return f
}

// lastQuery is the query of the last call to the given "METHOD /path".
func lastQuery(t *testing.T, f *fakeEngine, prefix string) url.Values {
	t.Helper()
	calls := f.Calls()
	for i := len(calls) - 1; i >= 0; i-- {
		if p, q, _ := strings.Cut(calls[i], "?"); p == prefix {
			v, err := url.ParseQuery(q)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("no call to %s in %v", prefix, calls)
	return nil
}

func TestMultiContainerCommands(t *testing.T) {
	f := fixture(t)
	cases := []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{[]string{"rm", "a", "nosuch", "b"}, 1, "a\nb\n", "Error response from daemon: No such container: nosuch\n"},
		{[]string{"rm", "-f", "nosuch", "a"}, 0, "a\n", "Error response from daemon: No such container: nosuch\n"},
		{[]string{"rm", "busy1"}, 1, "", "Error response from daemon: cannot remove container \"busy1\": container is running: stop the container before removing or force remove\n"},
		{[]string{"stop", "a", "nosuch"}, 1, "a\n", "Error response from daemon: No such container: nosuch\n"},
		{[]string{"kill", "a", "b"}, 0, "a\nb\n", ""},
		{[]string{"restart", "a", "nosuch"}, 1, "a\n", "Error response from daemon: No such container: nosuch\n"},
		{[]string{"wait", "a", "nosuch"}, 1, "7\n", "Error response from daemon: No such container: nosuch\n"},
		{[]string{"rename", "a", "taken"}, 1, "", "Error response from daemon: Conflict. The container name \"/taken\" is already in use by container \"abc\". You have to remove (or rename) that container to be able to reuse that name.\nError: failed to rename container named a\n"},
		{[]string{"rename", "a", "b"}, 0, "", ""},
		{[]string{"rmi", "other:1"}, 0, "Untagged: other:1\nDeleted: " + img2ID + "\n", ""},
		{[]string{"rmi", "busybox", "nosuch"}, 1, "Untagged: busybox:latest\n", "Error response from daemon: No such image: nosuch:latest\n"},
		{[]string{"rmi", "-f", "nosuch"}, 0, "", "Error response from daemon: No such image: nosuch:latest\n"},
		{[]string{"rmi", "multi"}, 1, "", "Error response from daemon: conflict: unable to delete 0123456789ab (must be forced) - image is referenced in multiple repositories\n"},
		{[]string{"tag", "nosuchimage", "x"}, 1, "", "Error response from daemon: No such image: nosuchimage:latest\n"},
	}
	for _, c := range cases {
		r := f.run("", c.args...)
		if r.code != c.code || r.stdout != c.stdout || r.stderr != c.stderr {
			t.Errorf("berth %s:\n%s\nwant exit %d stdout %q stderr %q", strings.Join(c.args, " "), r, c.code, c.stdout, c.stderr)
		}
	}
	f.run("", "stop", "-t", "1", "-s", "USR1", "a")
	if q := lastQuery(t, f, "POST /containers/a/stop"); q.Get("t") != "1" || q.Get("signal") != "USR1" {
		t.Errorf("stop query: %v", q)
	}
	f.run("", "stop", "a")
	if q := lastQuery(t, f, "POST /containers/a/stop"); q.Has("t") {
		t.Errorf("stop without -t must leave the timeout to the daemon: %v", q)
	}
	for _, cmd := range []string{"stop", "restart"} {
		f.run("", cmd, "--time", "3", "a")
		if q := lastQuery(t, f, "POST /containers/a/"+cmd); q.Get("t") != "3" {
			t.Errorf("%s --time 3 query: %v", cmd, q)
		}
		if r := f.run("", cmd, "--time", "3", "-t", "4", "a"); r.code != 1 || !strings.Contains(r.stderr, "cannot specify both --timeout and --time") {
			t.Errorf("%s with --time and --timeout:\n%s", cmd, r)
		}
	}
	f.run("", "kill", "-s", "TERM", "a")
	if q := lastQuery(t, f, "POST /containers/a/kill"); q.Get("signal") != "TERM" {
		t.Errorf("kill query: %v", q)
	}
	f.run("", "rm", "-f", "-v", "a")
	if q := lastQuery(t, f, "DELETE /containers/a"); q.Get("force") != "1" || q.Get("v") != "1" {
		t.Errorf("rm query: %v", q)
	}
	f.run("", "rmi", "--no-prune", "other:1")
	if q := lastQuery(t, f, "DELETE /images/other:1"); q.Get("noprune") != "1" {
		t.Errorf("rmi query: %v", q)
	}
}

func TestListQueries(t *testing.T) {
	f := fixture(t)
	f.run("", "ps", "-a", "--filter", "status=exited", "--filter", "label=role", "-f", "name=run")
	q := lastQuery(t, f, "GET /containers/json")
	var filters map[string]map[string]bool
	if err := json.Unmarshal([]byte(q.Get("filters")), &filters); err != nil {
		t.Fatal(err)
	}
	if q.Get("all") != "1" || !filters["status"]["exited"] || !filters["label"]["role"] || !filters["name"]["run"] {
		t.Errorf("ps query: %v", q)
	}
	f.run("", "ps", "-n", "2")
	if q := lastQuery(t, f, "GET /containers/json"); q.Get("limit") != "2" {
		t.Errorf("ps -n: %v", q)
	}
	f.run("", "ps", "-l")
	if q := lastQuery(t, f, "GET /containers/json"); q.Get("limit") != "1" {
		t.Errorf("ps -l: %v", q)
	}
	r := f.run("", "ps", "--format", "{{.Names}} {{.Size}}")
	if q := lastQuery(t, f, "GET /containers/json"); q.Get("size") != "1" || r.stdout != "runner 12B (virtual 4.26MB)\n" {
		t.Errorf("a template showing .Size asks for sizes: %v %s", q, r)
	}
	f.run("", "ps", "-s=false", "--format", "{{.Size}}")
	if q := lastQuery(t, f, "GET /containers/json"); q.Has("size") {
		t.Errorf("explicit -s=false: %v", q)
	}
	f.run("", "images", "-a", "--filter", "dangling=true", "busy*")
	q = lastQuery(t, f, "GET /images/json")
	filters = nil
	_ = json.Unmarshal([]byte(q.Get("filters")), &filters)
	if q.Get("all") != "1" || !filters["dangling"]["true"] || !filters["reference"]["busy*"] {
		t.Errorf("images query: %v", q)
	}
	if r := f.run("", "ps", "--format", "{{.Nope}}"); r.code != 1 || !strings.Contains(r.stderr, "failed to execute template") {
		t.Errorf("bad placeholder: %s", r)
	}
	r = f.run("", "ps", "-a", "--format", "json")
	var row map[string]any
	if err := json.Unmarshal([]byte(strings.SplitN(r.stdout, "\n", 2)[0]), &row); err != nil || row["Names"] != "runner" {
		t.Errorf("ps json: %v %s", err, r)
	}
}

func TestLogs(t *testing.T) {
	f := fixture(t)
	r := f.run("", "logs", "runner")
	if r.code != 0 || r.stdout != "line1\nline2\n" || r.stderr != "oops\n" {
		t.Fatalf("logs: %s", r)
	}
	q := lastQuery(t, f, "GET /containers/"+runnerID+"/logs")
	if q.Get("stdout") != "1" || q.Get("stderr") != "1" || q.Has("tail") || q.Has("follow") {
		t.Errorf("logs query: %v", q)
	}
	before := time.Now()
	f.run("", "logs", "-f", "-t", "--details", "-n", "2", "--since", "10m", "--until", "2000-01-01T00:00:00Z", "runner")
	q = lastQuery(t, f, "GET /containers/"+runnerID+"/logs")
	if q.Get("follow") != "1" || q.Get("timestamps") != "1" || q.Get("details") != "1" || q.Get("tail") != "2" {
		t.Errorf("logs flags: %v", q)
	}
	// --since 10m is converted client-side into a Unix timestamp about ten
	// minutes before now (bounds, not a clock assertion).
	since, err := strconv.ParseFloat(q.Get("since"), 64)
	if err != nil || since < float64(before.Add(-11*time.Minute).Unix()) || since > float64(time.Now().Add(-9*time.Minute).Unix()) {
		t.Errorf("since: %q", q.Get("since"))
	}
	if q.Get("until") != "946684800.000000000" {
		t.Errorf("until: %q", q.Get("until"))
	}
	if r := f.run("", "logs", "--since", "yesterday-ish", "runner"); r.code != 1 || !strings.Contains(r.stderr, `invalid value for "since"`) {
		t.Errorf("bad --since: %s", r)
	}
	if r := f.run("", "logs", "nosuch"); r.code != 1 || r.stderr != "Error response from daemon: No such container: nosuch\n" {
		t.Errorf("logs of unknown container: %s", r)
	}
}

func TestInspect(t *testing.T) {
	f := fixture(t)
	r := f.run("", "inspect", "runner")
	var arr []map[string]any
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &arr) != nil || len(arr) != 1 || arr[0]["Id"] != runnerID {
		t.Fatalf("inspect: %s", r)
	}
	if !strings.HasPrefix(r.stdout, "[\n    {\n        \"Id\": ") {
		t.Errorf("inspect must be indented like docker's: %q", r.stdout[:40])
	}
	r = f.run("", "inspect", "-f", "{{.State.Status}} {{.Name}} {{index .Config.Labels \"role\"}}", "runner")
	if r.code != 0 || r.stdout != "running /runner a\n" {
		t.Errorf("inspect -f: %s", r)
	}
	// An image has no .State: docker's error for the map fallback, exit 1.
	r = f.run("", "inspect", "-f", "{{.State.Status}}", "runner", "busybox")
	if r.code != 1 || r.stdout != "running\n" || !strings.Contains(r.stderr, `map has no entry for key "State"`) {
		t.Errorf("inspect -f on mixed objects: %s", r)
	}
	r = f.run("", "inspect", "-f", "{{.Comment}}", "busybox")
	if r.code != 0 || r.stdout != "my message\n" {
		t.Errorf("inspect image -f: %s", r)
	}
	r = f.run("", "inspect", "runner", "nosuchthing")
	if r.code != 1 || r.stderr != "Error: No such object: nosuchthing\n" || !strings.Contains(r.stdout, runnerID) {
		t.Errorf("inspect with a missing object: %s", r)
	}
	if r := f.run("", "inspect", "--type", "volume", "x"); r.code != 1 || !strings.Contains(r.stderr, "No such volume: x") {
		t.Errorf("--type volume: %s", r)
	}
	if r := f.run("", "inspect", "--type", "bogus", "x"); r.code != 1 || !strings.Contains(r.stderr, `"bogus" is not a valid value for --type`) {
		t.Errorf("--type bogus: %s", r)
	}
	if r := f.run("", "inspect", "-f", "{{.Nope", "x"); r.code != 64 || !strings.Contains(r.stderr, "template parsing error") {
		t.Errorf("bad template: %s", r)
	}
	if r := f.run("", "container", "inspect", "-s", "runner"); r.code != 0 || lastQuery(t, f, "GET /containers/runner/json").Get("size") != "1" {
		t.Errorf("container inspect -s: %s", r)
	}
	if r := f.run("", "image", "inspect", "-f", "{{.Id}}", "busybox"); r.stdout != imgID+"\n" {
		t.Errorf("image inspect: %s", r)
	}
}

func TestPrune(t *testing.T) {
	f := fixture(t)
	r := f.run("n\n", "container", "prune")
	if r.code != 0 || r.stdout != "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] " || f.indexOf("POST /containers/prune") >= 0 {
		t.Fatalf("prune answered n: %s %v", r, f.Calls())
	}
	r = f.run("y\n", "container", "prune", "--filter", "until=1h")
	want := "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] Deleted Containers:\n" + threeID + "\n" + freshID + "\n\nTotal reclaimed space: 2.048kB\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("prune answered y: %s", r)
	}
	if q := lastQuery(t, f, "POST /containers/prune"); !strings.Contains(q.Get("filters"), `"until":{"1h":true}`) {
		t.Errorf("prune filters: %v", q)
	}
	r = f.run("", "image", "prune", "-a", "-f")
	if r.code != 0 || r.stdout != "Deleted Images:\nuntagged: other:1\ndeleted: "+img2ID+"\n\nTotal reclaimed space: 1.235GB\n" {
		t.Fatalf("image prune: %s", r)
	}
	if q := lastQuery(t, f, "POST /images/prune"); !strings.Contains(q.Get("filters"), `"dangling":{"false":true}`) {
		t.Errorf("image prune -a filters: %v", q)
	}
}

func TestImageTransfer(t *testing.T) {
	f := fixture(t)
	dir := t.TempDir()
	tarPath := filepath.Join(dir, "in.tar")
	if err := os.WriteFile(tarPath, []byte("TAR-CONTENT"), 0o644); err != nil {
		t.Fatal(err)
	}
	// import from a file, with changes and a message.
	r := f.run("", "import", "-c", `CMD ["sh"]`, "-c", "ENV A=b", "-m", "my message", tarPath, "bb:v1")
	if r.code != 0 || r.stdout != imgID+"\n" {
		t.Fatalf("import: %s", r)
	}
	q := lastQuery(t, f, "POST /images/create")
	if q.Get("fromSrc") != "-" || q.Get("repo") != "bb:v1" || q.Get("message") != "my message" || strings.Join(q["changes"], "|") != `CMD ["sh"]|ENV A=b` {
		t.Errorf("import query: %v", q)
	}
	if string(f.Body("POST /images/create")) != "TAR-CONTENT" {
		t.Errorf("import body: %q", f.Body("POST /images/create"))
	}
	// from stdin, and garbage is refused with the daemon's message.
	if r := f.run("TAR from stdin", "import", "-"); r.code != 0 || r.stdout != imgID+"\n" {
		t.Fatalf("import -: %s", r)
	}
	if r := f.run("not a tarball", "import", "-", "junk:1"); r.code != 1 || r.stderr != "archive/tar: invalid tar header\n" {
		t.Fatalf("import garbage: %s", r)
	}
	if r := f.run("", "import", filepath.Join(dir, "missing.tar")); r.code != 1 || !strings.Contains(r.stderr, "no such file or directory") {
		t.Fatalf("import of a missing file: %s", r)
	}
	// load from a file and from stdin; a failed load is exit 1.
	if r := f.run("", "load", "-i", tarPath); r.code != 0 || r.stdout != "Loaded image: busybox:latest\n" {
		t.Fatalf("load -i: %s", r)
	}
	if q := lastQuery(t, f, "POST /images/load"); q.Get("quiet") != "1" {
		t.Errorf("load to a non-terminal is quiet, as docker: %v", q)
	}
	if r := f.run("TAR stdin", "load"); r.code != 0 || r.stdout != "Loaded image: busybox:latest\n" {
		t.Fatalf("load <stdin: %s", r)
	}
	if r := f.run("garbage", "load"); r.code != 1 || r.stderr != "unexpected EOF\n" {
		t.Fatalf("load garbage: %s", r)
	}
	// save to a file (atomically: no temporary file left) and to stdout.
	out := filepath.Join(dir, "out.tar")
	if r := f.run("", "save", "-o", out, "busybox", "copy:1"); r.code != 0 {
		t.Fatalf("save -o: %s", r)
	}
	if b, err := os.ReadFile(out); err != nil || string(b) != "TAR:busybox,copy:1" {
		t.Fatalf("saved file: %q %v", b, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("save left files behind: %v", entries)
	}
	if r := f.run("", "save", "busybox"); r.code != 0 || r.stdout != "TAR:busybox" {
		t.Fatalf("save to stdout: %s", r)
	}
	if r := f.run("", "save", "-o", filepath.Join(dir, "nodir", "x.tar"), "busybox"); r.code != 1 || !strings.Contains(r.stderr, "failed to save image: invalid output path: directory") {
		t.Fatalf("save into a missing directory: %s", r)
	}
}

func TestPull(t *testing.T) {
	f := fixture(t)
	r := f.run("", "pull", "busybox")
	want := "Using default tag: latest\nlatest: Pulling from library/busybox\nDigest: sha256:abababababababababababababababababababababababababababababababab\nStatus: Image is up to date for busybox:latest\ndocker.io/library/busybox:latest\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("pull:\n%s\nwant %q", r, want)
	}
	if q := lastQuery(t, f, "POST /images/create"); q.Get("fromImage") != "docker.io/library/busybox" || q.Get("tag") != "latest" {
		t.Errorf("pull query: %v", q)
	}
	if r := f.run("", "pull", "-q", "busybox:1.36"); r.code != 0 || r.stdout != "docker.io/library/busybox:1.36\n" {
		t.Fatalf("pull -q: %s", r)
	}
	if r := f.run("", "pull", "Bad/Name"); r.code != 1 || !strings.Contains(r.stderr, "invalid reference format") {
		t.Fatalf("pull of a bad name: %s", r)
	}
	f2 := newFakeEngine(t)
	f2.handle("POST", `/images/create`, func(w http.ResponseWriter, r *http.Request, _ []string) {
		apiError(w, http.StatusNotImplemented, "pull is not supported yet")
	})
	if r := f2.run("", "pull", "busybox"); r.code != 1 || !strings.Contains(r.stderr, "Error response from daemon: pull is not supported yet") {
		t.Fatalf("pull refused by the daemon: %s", r)
	}
}

func TestVersionAndInfo(t *testing.T) {
	f := fixture(t)
	r := f.run("", "version")
	for _, want := range []string{"Client: berth\n Version:           0.1.0-dev\n API version:       1.47 (downgraded from 1.56)\n", "Server: berth\n Engine:\n  Version:          0.1.0\n  API version:      1.47 (minimum version 1.24)\n", "  Built:            Sun Nov 22 10:00:00 2026\n"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("version lacks %q:\n%s", want, r)
		}
	}
	if r := f.run("", "version", "--format", "json"); r.code != 0 || !strings.Contains(r.stdout, `"Server":{"Platform":{"Name":"berth"}`) {
		t.Errorf("version json: %s", r)
	}
	r = runCLI(t, "unix:///nonexistent.sock", "", nil, "version")
	if r.code != 1 || !strings.Contains(r.stdout, "Client: berth") || strings.Contains(r.stdout, "Server") || !strings.Contains(r.stderr, "Cannot connect to the berth daemon") {
		t.Errorf("version without a daemon: %s", r)
	}
	r = f.run("", "info")
	for _, want := range []string{"Client:\n Version:    0.1.0-dev\n", "Server:\n Containers: 3\n  Running: 1\n  Paused: 0\n  Stopped: 2\n Images: 3\n Server Version: 0.1.0\n Storage Driver: overlay2\n  Backing Filesystem: extfs\n",
		" Runtimes: berth runc\n Default Runtime: berth\n", " Security Options:\n  seccomp\n   Profile: builtin\n  cgroupns\n", " Total Memory: 4GiB\n", " Docker Root Dir: /var/lib/berth\n"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("info lacks %q:\n%s", want, r.stdout)
		}
	}
	if r.stderr != "WARNING: No swap limit support\n" {
		t.Errorf("info warnings go to stderr: %q", r.stderr)
	}
	if r := f.run("", "system", "info", "--format", "{{.Driver}} {{json .Runtimes}}"); r.stdout != "overlay2 {\"berth\":{},\"runc\":{}}\n" {
		t.Errorf("info --format: %s", r)
	}
}

func TestUsageAndHelp(t *testing.T) {
	cases := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"container", "bogus"}, 1, "", "berth: unknown command: berth container bogus\n\nUsage:  berth container\n\nRun 'berth container --help' for more information\n"},
		{[]string{"bogus"}, 1, "", "berth: unknown command: berth bogus\n\nRun 'berth --help' for more information\n"},
		{[]string{"ps", "x"}, 1, "", "berth: 'berth ps' accepts no arguments\n\nUsage:  berth ps [OPTIONS]\n\nRun 'berth ps --help' for more information\n"},
		{[]string{"logs"}, 1, "", "berth: 'berth logs' requires 1 argument\n\nUsage:  berth logs [OPTIONS] CONTAINER\n\nRun 'berth logs --help' for more information\n"},
		{[]string{"-l", "loud", "ps"}, 1, "", "unable to parse logging level: loud\n"},
		{[]string{"-H", "ftp://x", "ps"}, 1, "", "invalid bind address format: ftp://x\n"},
		{[]string{"--version"}, 0, "berth version 0.1.0-dev\n", ""},
		{[]string{"help", "bogus"}, 1, "", "unknown help topic: bogus\n"},
	}
	for _, c := range cases {
		r := runCLI(t, "unix:///nonexistent.sock", "", nil, c.args...)
		if r.code != c.code || r.stdout != c.stdout || r.stderr != c.stderr {
			t.Errorf("berth %s:\n%s\nwant exit %d stdout %q stderr %q", strings.Join(c.args, " "), r, c.code, c.stdout, c.stderr)
		}
	}
	r := runCLI(t, "", "", nil, "container", "ls", "--help")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "Usage:  berth container ls [OPTIONS]\n\nList containers\n\nAliases:\n  berth container ls, berth container list, berth container ps, berth ps\n") {
		t.Errorf("container ls --help: %s", r)
	}
	r = runCLI(t, "", "", nil, "run", "--help")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "Usage:  berth run [OPTIONS] IMAGE [COMMAND] [ARG...]\n") || !strings.Contains(r.stdout, "  -h, --hostname string") {
		t.Errorf("run --help: %s", r)
	}
	r = runCLI(t, "", "", nil, "image")
	if r.code != 0 || !strings.Contains(r.stderr, "Usage:  berth image COMMAND") || !strings.Contains(r.stderr, "  ls          List images") {
		t.Errorf("image: %s", r)
	}
	r = runCLI(t, "", "", nil)
	if r.code != 0 || !strings.Contains(r.stderr, "Common Commands:\n  run         Create and run a new container from an image\n  exec        Execute a command in a running container\n  ps ") {
		t.Errorf("berth alone prints its help: %s", r)
	}
}

func TestExtraCommands(t *testing.T) {
	var ran []string
	extra := &cobra.Command{
		Use:   "daemon [OPTIONS]",
		Short: "Run the daemon",
		RunE: func(cmd *cobra.Command, args []string) error {
			h, _ := cmd.Flags().GetStringArray("host")
			ran = append(ran, strings.Join(h, ","))
			return nil
		},
	}
	extra.Flags().StringArrayP("host", "H", nil, "listen address")
	hidden := &cobra.Command{Use: "init", Hidden: true, RunE: func(*cobra.Command, []string) error { ran = append(ran, "init"); return nil }}
	code := Run(t.Context(), []string{"daemon", "-H", "unix:///x.sock"}, Options{Extra: []*cobra.Command{extra, hidden}, Out: &strings.Builder{}, Err: &strings.Builder{}, In: strings.NewReader("")})
	if code != 0 || len(ran) != 1 || ran[0] != "unix:///x.sock" {
		t.Fatalf("extra command: code %d ran %v", code, ran)
	}
	var help strings.Builder
	code = Run(t.Context(), []string{"init"}, Options{Extra: []*cobra.Command{extra, hidden}, Out: &help, Err: &help, In: strings.NewReader("")})
	if code != 0 || len(ran) != 2 {
		t.Fatalf("hidden command: %d %v", code, ran)
	}
	root := NewRootCommand(extra)
	found := false
	for _, c := range root.Commands() {
		if c.Name() == "daemon" {
			found = true
		}
	}
	if !found {
		t.Fatal("NewRootCommand did not add the extra command")
	}
}
