package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
)

const testID = "4f7c1b2a9d3e8f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a"

func TestRunSequenceAndOutput(t *testing.T) {
	f := newFakeEngine(t)
	f.containerRoutes(&fakeContainer{id: testID, script: func(stdin io.Reader, stdout, stderr io.Writer) int {
		fmt.Fprint(stdout, "hello ")
		fmt.Fprint(stderr, "oops\n")
		fmt.Fprint(stdout, "world\n")
		return 3
	}})
	r := f.run("", "run", "--rm", "--name", "web", "busybox", "sh", "-c", "echo hi", "-x")
	if r.code != 3 || r.stdout != "hello world\n" || r.stderr != "oops\n" {
		t.Fatalf("run: %s", r)
	}
	create, attach, wait, start := f.indexOf("POST /containers/create"), f.indexOf("POST /containers/"+testID+"/attach"),
		f.indexOf("POST /containers/"+testID+"/wait"), f.indexOf("POST /containers/"+testID+"/start")
	if create < 0 || attach < 0 || wait < 0 || start < 0 || !(create < attach && attach < start && wait < start) {
		t.Fatalf("want create → attach → wait → start (wait posted before start), got %v", f.Calls())
	}
	calls := f.Calls()
	if got := calls[create]; got != "POST /containers/create?name=web" {
		t.Errorf("create call: %s", got)
	}
	if got := calls[attach]; got != "POST /containers/"+testID+"/attach?stderr=1&stdout=1&stream=1" {
		t.Errorf("attach call: %s", got)
	}
	if got := calls[wait]; got != "POST /containers/"+testID+"/wait?condition=removed" {
		t.Errorf("wait call (--rm waits for removal): %s", got)
	}
	var req container.CreateRequest
	if err := json.Unmarshal(f.Body("POST /containers/create"), &req); err != nil {
		t.Fatal(err)
	}
	// Flag parsing stops at the image: "-x" belongs to the command.
	if got := strings.Join(req.Config.Cmd, "|"); got != "sh|-c|echo hi|-x" || req.Config.Image != "busybox" {
		t.Errorf("command %q image %q", got, req.Config.Image)
	}
	if !req.Config.AttachStdout || !req.Config.AttachStderr || req.Config.AttachStdin || !req.HostConfig.AutoRemove {
		t.Errorf("attach/rm settings: %+v %+v", req.Config, req.HostConfig)
	}
}

func TestRunNextExitWithoutRm(t *testing.T) {
	f := newFakeEngine(t)
	f.containerRoutes(&fakeContainer{id: testID, script: func(io.Reader, io.Writer, io.Writer) int { return 0 }})
	r := f.run("", "run", "busybox", "true")
	if r.code != 0 || r.stdout != "" {
		t.Fatalf("run: %s", r)
	}
	calls := f.Calls()
	if w := f.indexOf("POST /containers/" + testID + "/wait"); w < 0 || calls[w] != "POST /containers/"+testID+"/wait?condition=next-exit" {
		t.Fatalf("wait call: %v", calls)
	}
}

func TestRunInteractiveStdin(t *testing.T) {
	f := newFakeEngine(t)
	f.containerRoutes(&fakeContainer{id: testID, script: func(stdin io.Reader, stdout, _ io.Writer) int {
		b, _ := io.ReadAll(stdin)
		fmt.Fprintf(stdout, "%s|end\n", strings.ToUpper(string(b)))
		return 0
	}})
	r := f.run("hello stdin\n", "run", "-i", "--rm", "busybox", "cat")
	if r.code != 0 || r.stdout != "HELLO STDIN\n|end\n" {
		t.Fatalf("run -i: %s", r)
	}
	if a := f.indexOf("POST /containers/" + testID + "/attach"); a < 0 || f.Calls()[a] != "POST /containers/"+testID+"/attach?stderr=1&stdin=1&stdout=1&stream=1" {
		t.Fatalf("attach with stdin: %v", f.Calls())
	}
	var req container.CreateRequest
	_ = json.Unmarshal(f.Body("POST /containers/create"), &req)
	if !req.Config.OpenStdin || !req.Config.AttachStdin || !req.Config.StdinOnce {
		t.Errorf("stdin config: %+v", req.Config)
	}
}

func TestRunAttachSubset(t *testing.T) {
	f := newFakeEngine(t)
	f.containerRoutes(&fakeContainer{id: testID, script: func(_ io.Reader, stdout, stderr io.Writer) int {
		fmt.Fprint(stdout, "out\n")
		fmt.Fprint(stderr, "err\n")
		return 0
	}})
	r := f.run("", "run", "-a", "STDERR", "busybox", "x")
	if r.code != 0 || r.stdout != "" || r.stderr != "err\n" {
		t.Fatalf("run -a stderr: %s", r)
	}
	if a := f.indexOf("POST /containers/" + testID + "/attach"); f.Calls()[a] != "POST /containers/"+testID+"/attach?stderr=1&stream=1" {
		t.Fatalf("attach: %v", f.Calls())
	}
}

func TestRunDetachedPrintsID(t *testing.T) {
	f := newFakeEngine(t)
	f.containerRoutes(&fakeContainer{id: testID})
	r := f.run("", "run", "-d", "busybox", "sleep", "1")
	if r.code != 0 || r.stdout != testID+"\n" {
		t.Fatalf("run -d: %s", r)
	}
	if f.indexOf("POST /containers/"+testID+"/attach") >= 0 {
		t.Fatalf("run -d attached: %v", f.Calls())
	}
	if f.indexOf("POST /containers/"+testID+"/start") < 0 {
		t.Fatalf("run -d did not start: %v", f.Calls())
	}
	if r := f.run("", "run", "-d", "-a", "stdout", "busybox"); r.code != 1 || !strings.Contains(r.stderr, "conflicting options") {
		t.Fatalf("-a with -d: %s", r)
	}
}

func TestRunPullsMissingImage(t *testing.T) {
	f := newFakeEngine(t)
	f.containerRoutes(&fakeContainer{id: testID})
	creates := 0
	f.handle("POST", `/containers/create`, func(w http.ResponseWriter, r *http.Request, _ []string) {
		creates++
		if creates == 1 {
			apiError(w, http.StatusNotFound, "No such image: busybox:latest")
			return
		}
		w.WriteHeader(http.StatusCreated)
		writeJSON(w, container.CreateResponse{ID: testID})
	})
	f.handle("POST", `/images/create`, func(w http.ResponseWriter, r *http.Request, _ []string) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"Pulling from library/busybox","id":"latest"}`+"\n"+`{"status":"Status: Downloaded newer image for busybox:latest"}`+"\n")
	})
	r := f.run("", "run", "-d", "busybox")
	if r.code != 0 || r.stdout != testID+"\n" {
		t.Fatalf("run: %s", r)
	}
	if !strings.HasPrefix(r.stderr, "Unable to find image 'busybox:latest' locally\n") || !strings.Contains(r.stderr, "Downloaded newer image") {
		t.Errorf("stderr: %q", r.stderr)
	}
	calls := f.Calls()
	pull := f.indexOf("POST /images/create")
	if creates != 2 || pull < 0 || calls[pull] != "POST /images/create?fromImage=docker.io%2Flibrary%2Fbusybox&tag=latest" {
		t.Fatalf("pull path: creates=%d calls=%v", creates, calls)
	}

	// --pull never: no pull, the 404 is the answer (exit 125).
	f2 := newFakeEngine(t)
	f2.handle("POST", `/containers/create`, func(w http.ResponseWriter, r *http.Request, _ []string) {
		apiError(w, http.StatusNotFound, "No such image: nosuch:1.0")
	})
	r = f2.run("", "run", "--pull", "never", "nosuch:1.0")
	if r.code != 125 || !strings.Contains(r.stderr, "No such image: nosuch:1.0") || f2.indexOf("POST /images/create") >= 0 {
		t.Fatalf("--pull never: %s %v", r, f2.Calls())
	}
	// A failing pull ends the run with 125 and the daemon's message.
	f3 := newFakeEngine(t)
	f3.handle("POST", `/containers/create`, func(w http.ResponseWriter, r *http.Request, _ []string) {
		apiError(w, http.StatusNotFound, "No such image: nosuch:latest")
	})
	f3.handle("POST", `/images/create`, func(w http.ResponseWriter, r *http.Request, _ []string) {
		apiError(w, http.StatusNotImplemented, "pulling is not supported yet")
	})
	r = f3.run("", "run", "nosuch")
	if r.code != 125 || !strings.Contains(r.stderr, "pulling is not supported yet") || !strings.Contains(r.stderr, "Run 'berth run --help' for more information") {
		t.Fatalf("failed pull: %s", r)
	}
}

func TestRunExitCodeMapping(t *testing.T) {
	cases := []struct {
		startErr string
		want     int
	}{
		{`failed to create task: exec: "nosuchcmd": executable file not found in $PATH`, 127},
		{`exec /nope: no such file or directory`, 127},
		{`exec /etc/passwd: permission denied`, 126},
		{`exec /etc: is a directory`, 126},
		{`cgroup setup failed`, 125},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.want), func(t *testing.T) {
			f := newFakeEngine(t)
			f.containerRoutes(&fakeContainer{id: testID, startErr: c.startErr})
			r := f.run("", "run", "--rm", "busybox", "x")
			if r.code != c.want {
				t.Fatalf("start error %q: %s", c.startErr, r)
			}
			want := "berth: Error response from daemon: " + c.startErr + "\n\nRun 'berth run --help' for more information\n"
			if r.stderr != want {
				t.Fatalf("stderr:\n%q\nwant\n%q", r.stderr, want)
			}
		})
	}
	// A container's own exit code passes through.
	f := newFakeEngine(t)
	f.containerRoutes(&fakeContainer{id: testID, script: func(io.Reader, io.Writer, io.Writer) int { return 137 }})
	if r := f.run("", "run", "busybox"); r.code != 137 {
		t.Fatalf("exit 137: %s", r)
	}
	// A daemon error on create is 125.
	f = newFakeEngine(t)
	f.handle("POST", `/containers/create`, func(w http.ResponseWriter, r *http.Request, _ []string) {
		apiError(w, http.StatusConflict, `Conflict. The container name "/keep" is already in use by container "abc".`)
	})
	r := f.run("", "run", "--name", "keep", "busybox")
	if r.code != 125 || !strings.Contains(r.stderr, `The container name "/keep" is already in use`) {
		t.Fatalf("create conflict: %s", r)
	}
}

func TestRunBadFlagsFailBeforeAnyAPICall(t *testing.T) {
	f := newFakeEngine(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"run", "--memory", "lots", "busybox"}, "invalid argument \"lots\" for \"-m, --memory\" flag: invalid size: 'lots'\n\nUsage:  berth run [OPTIONS] IMAGE [COMMAND] [ARG...]\n\nRun 'berth run --help' for more information\n"},
		{[]string{"run", "-m", "lots", "busybox"}, `invalid argument "lots" for "-m, --memory" flag: invalid size: 'lots'`},
		{[]string{"run", "--cpus", "abc", "busybox"}, `invalid argument "abc" for "--cpus" flag: failed to parse abc as a rational number`},
		{[]string{"run", "--ulimit", "nofile=abc", "busybox"}, `invalid argument "nofile=abc" for "--ulimit" flag`},
		{[]string{"run", "-p", "foo:bar", "busybox"}, "berth: invalid containerPort: bar\n\nRun 'berth run --help' for more information\n"},
		{[]string{"run", "--pull", "sometimes", "busybox"}, `berth: invalid pull option: 'sometimes': must be one of "always", "missing" or "never"`},
		{[]string{"run", "--rm", "--restart", "always", "busybox"}, "conflicting options: cannot specify both --restart and --rm"},
		{[]string{"run", "--restart", "on-failure:x", "busybox"}, "maximum retry count must be an integer"},
		{[]string{"run", "--bogus-flag", "busybox"}, "unknown flag: --bogus-flag"},
		{[]string{"run", "-e", "=x", "busybox"}, "invalid environment variable: =x"},
		{[]string{"run", "--mount", "type=bind", "busybox"}, "target is required"},
		{[]string{"run", "--add-host", "nohost", "busybox"}, `bad format for add-host: "nohost"`},
		{[]string{"run", "--mac-address", "zz", "busybox"}, "zz is not a valid mac address"},
		{[]string{"run", "--label", " =x", "busybox"}, "empty name"},
		{[]string{"run", "--env-file", "/nonexistent/env", "busybox"}, "no such file or directory"},
		{[]string{"create", "--memory", "lots", "busybox"}, "Run 'berth create --help' for more information"},
		{[]string{"run", "--health-interval", "-1s", "busybox"}, "--health-interval cannot be negative"},
		{[]string{"run", "--no-healthcheck", "--health-cmd", "true", "busybox"}, "--no-healthcheck conflicts with --health-* options"},
		{[]string{"run", "--device", "relative", "busybox"}, "relative is not an absolute path"},
		{[]string{"run", "-a", "stdfoo", "busybox"}, "valid streams are STDIN, STDOUT and STDERR"},
	}
	for _, c := range cases {
		r := f.run("", c.args...)
		if r.code != 125 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("berth %s:\n%s\nwant exit 125 with %q", strings.Join(c.args, " "), r, c.want)
		}
	}
	if calls := f.Calls(); len(calls) != 0 {
		t.Fatalf("bad flags reached the daemon: %v", calls)
	}
	if r := f.run("", "run"); r.code != 1 || r.stderr != "berth: 'berth run' requires at least 1 argument\n\nUsage:  berth run [OPTIONS] IMAGE [COMMAND] [ARG...]\n\nSee 'berth run --help' for more information\n" {
		t.Fatalf("run without image: %s", r)
	}
}

func TestRunCidfileAndWarnings(t *testing.T) {
	f := newFakeEngine(t)
	f.containerRoutes(&fakeContainer{id: testID})
	f.handle("POST", `/containers/create`, func(w http.ResponseWriter, r *http.Request, _ []string) {
		w.WriteHeader(http.StatusCreated)
		writeJSON(w, container.CreateResponse{ID: testID, Warnings: []string{"Your kernel does not support swap limit capabilities."}})
	})
	cid := filepath.Join(t.TempDir(), "cid")
	r := f.run("", "run", "-d", "--cidfile", cid, "busybox")
	if r.code != 0 || !strings.Contains(r.stderr, "WARNING: Your kernel does not support swap limit capabilities.") {
		t.Fatalf("run: %s", r)
	}
	if b, err := os.ReadFile(cid); err != nil || string(b) != testID {
		t.Fatalf("cidfile: %q %v", b, err)
	}
	r = f.run("", "run", "-d", "--cidfile", cid, "busybox")
	if r.code != 125 || !strings.Contains(r.stderr, "container ID file found") {
		t.Fatalf("existing cidfile: %s", r)
	}
}

func TestStartAttachAndExitCodes(t *testing.T) {
	f := newFakeEngine(t)
	f.containerRoutes(&fakeContainer{id: testID, openStdin: true, script: func(stdin io.Reader, stdout, _ io.Writer) int {
		b, _ := io.ReadAll(stdin)
		fmt.Fprintf(stdout, "got %s", b)
		return 2
	}})
	r := f.run("value\n", "start", "-a", "-i", testID)
	if r.code != 2 || r.stdout != "got value\n" {
		t.Fatalf("start -a -i: %s", r)
	}
	attach, wait, start := f.indexOf("POST /containers/"+testID+"/attach"), f.indexOf("POST /containers/"+testID+"/wait"), f.indexOf("POST /containers/"+testID+"/start")
	if !(attach >= 0 && attach < start && wait < start) {
		t.Fatalf("order: %v", f.Calls())
	}
	if f.Calls()[attach] != "POST /containers/"+testID+"/attach?stderr=1&stdin=1&stdout=1&stream=1" {
		t.Fatalf("attach: %v", f.Calls())
	}

	f = newFakeEngine(t)
	f.containerRoutes(&fakeContainer{id: testID, startErr: `exec: "nosuchcmd": executable file not found in $PATH`})
	if r := f.run("", "start", "-a", testID); r.code != 127 || !strings.Contains(r.stderr, "executable file not found") {
		t.Fatalf("start -a of a missing command: %s", r)
	}

	// Without -a: each container is started and named; failures go to
	// stderr and the exit code is 1.
	f = newFakeEngine(t)
	f.handle("POST", `/containers/([^/]+)/start`, func(w http.ResponseWriter, r *http.Request, m []string) {
		if m[1] == "nosuch" {
			apiError(w, http.StatusNotFound, "No such container: nosuch")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	r = f.run("", "start", "a", "nosuch", "b")
	if r.code != 1 || r.stdout != "a\nb\n" || !strings.Contains(r.stderr, "Error response from daemon: No such container: nosuch") ||
		!strings.Contains(r.stderr, "failed to start containers: nosuch") {
		t.Fatalf("start several: %s", r)
	}
}
