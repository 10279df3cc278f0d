package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/term"
)

// openPTY returns a pseudo-terminal: the master is the "user" side (what
// is typed, what is displayed), the slave is the CLI's stdin/stdout.
func openPTY(t *testing.T, rows, cols uint16) (master, slave *os.File) {
	t.Helper()
	m, s, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	if err := pty.Setsize(m, &pty.Winsize{Rows: rows, Cols: cols}); err != nil {
		t.Fatal(err)
	}
	return m, s
}

// screen collects what the terminal displays.
type screen struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *screen) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func TestRunInteractiveTTY(t *testing.T) {
	f := newFakeEngine(t)
	f.containerRoutes(&fakeContainer{id: testID, script: func(stdin io.Reader, stdout, _ io.Writer) int {
		fmt.Fprint(stdout, "prompt> ")
		line, _ := bufio.NewReader(stdin).ReadString('\r')
		fmt.Fprintf(stdout, "got: %q\r\n", line)
		return 5
	}})
	master, slave := openPTY(t, 30, 100)
	// An fd of our own on the terminal: the CLI closes its stdin when the
	// session ends, as docker does.
	probe, err := os.OpenFile(slave.Name(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	before, err := term.SaveState(probe.Fd())
	if err != nil {
		t.Fatal(err)
	}
	var scr screen
	go func() { _, _ = io.Copy(&scr, master) }()
	go func() {
		// Type once the container shows its prompt.
		for !strings.Contains(scr.String(), "prompt> ") {
			time.Sleep(5 * time.Millisecond)
		}
		_, _ = io.WriteString(master, "hello\x03\r")
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errb bytes.Buffer
	code := Run(ctx, []string{"run", "-it", "--rm", "busybox", "sh"}, Options{
		In: slave, Out: slave, Err: &errb,
		LookupEnv: func(k string) (string, bool) {
			if k == "BERTH_HOST" {
				return f.host, true
			}
			return "", false
		},
	})
	if code != 5 {
		t.Fatalf("exit %d, stderr %q, screen %q", code, errb.String(), scr.String())
	}
	// Raw mode: ^C travelled to the container as a byte, not a signal.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(scr.String(), `got: "hello\x03\r"`) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !strings.Contains(scr.String(), `got: "hello\x03\r"`) {
		t.Errorf("screen: %q", scr.String())
	}
	var req container.CreateRequest
	if err := json.Unmarshal(f.Body("POST /containers/create"), &req); err != nil {
		t.Fatal(err)
	}
	if !req.Config.Tty || !req.Config.OpenStdin || req.HostConfig.ConsoleSize != [2]uint{30, 100} {
		t.Errorf("create: tty=%v stdin=%v console=%v", req.Config.Tty, req.Config.OpenStdin, req.HostConfig.ConsoleSize)
	}
	if i := f.indexOf("POST /containers/" + testID + "/resize"); i < 0 || f.Calls()[i] != "POST /containers/"+testID+"/resize?h=30&w=100" ||
		i < f.indexOf("POST /containers/"+testID+"/start") {
		t.Errorf("resize after start: %v", f.Calls())
	}
	// No signal proxy in TTY mode, and the terminal is back as it was.
	if f.indexOf("POST /containers/"+testID+"/kill") >= 0 {
		t.Errorf("signals forwarded in TTY mode: %v", f.Calls())
	}
	after, err := term.SaveState(probe.Fd())
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(*before) != fmt.Sprint(*after) {
		t.Error("terminal left in raw mode")
	}
}

func TestRunDetachKeys(t *testing.T) {
	f := newFakeEngine(t)
	running := make(chan struct{})
	f.containerRoutes(&fakeContainer{id: testID, script: func(stdin io.Reader, stdout, _ io.Writer) int {
		fmt.Fprint(stdout, "ready\r\n")
		<-running // keeps running after the user detaches
		return 0
	}})
	t.Cleanup(func() { close(running) })
	master, slave := openPTY(t, 24, 80)
	var scr screen
	go func() { _, _ = io.Copy(&scr, master) }()
	go func() {
		for !strings.Contains(scr.String(), "ready") {
			time.Sleep(5 * time.Millisecond)
		}
		_, _ = master.Write([]byte{'x', 16, 17}) // ctrl-p ctrl-q
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errb bytes.Buffer
	code := Run(ctx, []string{"run", "-it", "busybox"}, Options{In: slave, Out: slave, Err: &errb,
		LookupEnv: func(k string) (string, bool) { return f.host, k == "BERTH_HOST" }})
	if code != 0 {
		t.Fatalf("detach: exit %d, stderr %q", code, errb.String())
	}
}

func TestTerminalRefusals(t *testing.T) {
	f := fixture(t)
	_, slave := openPTY(t, 24, 80)
	env := func(k string) (string, bool) { return f.host, k == "BERTH_HOST" }
	var errb bytes.Buffer
	code := Run(context.Background(), []string{"save", "busybox"}, Options{In: strings.NewReader(""), Out: slave, Err: &errb, LookupEnv: env})
	if code != 1 || errb.String() != "cowardly refusing to save to a terminal. Use the -o flag or redirect\n" {
		t.Errorf("save to a terminal: %d %q", code, errb.String())
	}
	errb.Reset()
	code = Run(context.Background(), []string{"load"}, Options{In: slave, Out: &bytes.Buffer{}, Err: &errb, LookupEnv: env})
	if code != 1 || errb.String() != "requested load from stdin, but stdin is empty\n" {
		t.Errorf("load from a terminal: %d %q", code, errb.String())
	}
	if len(f.Calls()) != 0 {
		t.Errorf("refusals reached the daemon: %v", f.Calls())
	}
	// -t with -i needs a terminal on stdin.
	r := f.run("", "run", "-it", "busybox")
	if r.code != 1 || r.stderr != "the input device is not a TTY\n" {
		t.Errorf("-it without a terminal: %s", r)
	}
}
