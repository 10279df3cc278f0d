package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunProxiesSignals: in a non-TTY run, signals the CLI receives are
// relayed to the container (--sig-proxy, on by default). SIGWINCH is used
// because its default action is to be ignored, so the test process is
// safe whatever the timing.
func TestRunProxiesSignals(t *testing.T) {
	f := newFakeEngine(t)
	killed := make(chan string, 16)
	c := &fakeContainer{id: testID, script: func(io.Reader, io.Writer, io.Writer) int {
		<-killed
		return 130
	}}
	f.containerRoutes(c)
	f.handle("POST", `/containers/([^/]+)/kill`, func(w http.ResponseWriter, r *http.Request, m []string) {
		killed <- r.URL.Query().Get("signal")
		w.WriteHeader(http.StatusNoContent)
	})
	done := make(chan cliResult, 1)
	go func() { done <- f.run("", "run", "busybox", "sleep", "1000") }()
	for f.indexOf("POST /containers/"+testID+"/start") < 0 {
		time.Sleep(5 * time.Millisecond)
	}
	var r cliResult
	for waiting := true; waiting; {
		_ = syscall.Kill(syscall.Getpid(), syscall.SIGWINCH)
		select {
		case r = <-done:
			waiting = false
		case <-time.After(20 * time.Millisecond):
		}
	}
	if r.code != 130 {
		t.Fatalf("run: %s", r)
	}
	if i := f.indexOf("POST /containers/" + testID + "/kill"); i < 0 || f.Calls()[i] != "POST /containers/"+testID+"/kill?signal=WINCH" {
		t.Fatalf("signal not forwarded: %v", f.Calls())
	}

	// --sig-proxy=false keeps signals to the CLI.
	f = newFakeEngine(t)
	f.containerRoutes(&fakeContainer{id: testID, script: func(io.Reader, io.Writer, io.Writer) int { return 0 }})
	if r := f.run("", "run", "--sig-proxy=false", "busybox"); r.code != 0 || f.indexOf("POST /containers/"+testID+"/kill") >= 0 {
		t.Fatalf("--sig-proxy=false: %s %v", r, f.Calls())
	}
}

// TestSignalEndsCommand: SIGTERM cancels a command that waits on the
// daemon (logs -f) and the exit code is 128+15, silently, as docker's.
func TestSignalEndsCommand(t *testing.T) {
	f := fixture(t)
	f.handle("GET", `/containers/([^/]+)/logs`, func(w http.ResponseWriter, r *http.Request, _ []string) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	ctx, stop := signalContext(context.Background())
	defer stop()
	done := make(chan int, 1)
	var out, errb bytes.Buffer
	go func() {
		done <- Run(ctx, []string{"logs", "-f", "runner"}, Options{In: strings.NewReader(""), Out: &out, Err: &errb,
			LookupEnv: func(k string) (string, bool) { return f.host, k == "BERTH_HOST" }})
	}()
	for f.indexOf("GET /containers/"+runnerID+"/logs") < 0 {
		time.Sleep(5 * time.Millisecond)
	}
	// signalContext has SIGTERM registered: it is caught, not fatal.
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 143 || errb.String() != "" {
			t.Fatalf("exit %d, stderr %q", code, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("logs -f did not end on SIGTERM")
	}
}
