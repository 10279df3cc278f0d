package integration

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/testutil"
	"github.com/creack/pty"
)

// ttySession runs a CLI command on a pseudo-terminal, as a user at a shell.
type ttySession struct {
	t    *testing.T
	pty  *os.File
	cmd  *exec.Cmd
	out  chan string
	seen strings.Builder
}

func startTTY(t *testing.T, cmd *exec.Cmd, rows, cols uint16) *ttySession {
	t.Helper()
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: rows, Cols: cols})
	if err != nil {
		t.Fatal(err)
	}
	s := &ttySession{t: t, pty: f, cmd: cmd, out: make(chan string, 1024)}
	go func() {
		r := bufio.NewReader(f)
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				s.out <- string(buf[:n])
			}
			if err != nil {
				close(s.out)
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		f.Close()
	})
	return s
}

// expect reads until want appears in the output.
func (s *ttySession) expect(want string) {
	s.t.Helper()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(s.seen.String(), want) {
		select {
		case chunk, ok := <-s.out:
			if !ok {
				s.t.Fatalf("terminal closed before %q; saw %q", want, s.seen.String())
			}
			s.seen.WriteString(chunk)
		case <-deadline:
			s.t.Fatalf("timed out waiting for %q; saw %q", want, s.seen.String())
		}
	}
}

func (s *ttySession) send(text string) {
	s.t.Helper()
	if _, err := io.WriteString(s.pty, text); err != nil {
		s.t.Fatal(err)
	}
}

func (s *ttySession) wait() int {
	s.t.Helper()
	done := make(chan struct{})
	go func() {
		for range s.out {
		}
		close(done)
	}()
	err := s.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		s.t.Fatal(err)
	}
	return 0
}

func testInteractiveTTY(t *testing.T, d *testutil.Daemon, mk func(args ...string) *exec.Cmd) {
	s := startTTY(t, mk("run", "-it", "--rm", "busybox", "sh"), 30, 100)
	s.send("stty size; echo TERM=$TERM; tty\r")
	s.expect("30 100")
	s.expect("TERM=xterm")
	s.expect("/dev/pts/0")
	// The window size follows the user's terminal. The resize is repeated
	// (through another size, so that each one signals): a CLI that has not
	// yet installed its SIGWINCH handler (docker's installs it after the
	// start) would lose a single one.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(s.seen.String(), "42 120") {
		if time.Now().After(deadline) {
			t.Fatalf("resize not seen: %q", s.seen.String())
		}
		for _, ws := range []pty.Winsize{{Rows: 41, Cols: 119}, {Rows: 42, Cols: 120}} {
			if err := pty.Setsize(s.pty, &ws); err != nil {
				t.Fatal(err)
			}
		}
		s.send("stty size\r")
		time.Sleep(100 * time.Millisecond)
		for drained := false; !drained; {
			select {
			case chunk := <-s.out:
				s.seen.WriteString(chunk)
			default:
				drained = true
			}
		}
	}
	// Raw mode: a ^C goes to the container's shell, not to the CLI.
	s.send("sleep 100\r")
	time.Sleep(300 * time.Millisecond)
	s.send("\x03")
	s.send("echo after-interrupt\r")
	s.expect("after-interrupt")
	s.send("exit 7\r")
	if code := s.wait(); code != 7 {
		t.Fatalf("exit code through the TTY: %d\n%s", code, s.seen.String())
	}
}

func TestRunInteractiveTTY(t *testing.T) {
	d := daemonWithBusybox(t)
	testInteractiveTTY(t, d, d.Cmd)
}

func TestRunInteractiveStdin(t *testing.T) {
	d := daemonWithBusybox(t)
	r := testutil.Run(t, d.Cmd("run", "-i", "--rm", "busybox", "sh", "-c", "tr a-z A-Z; echo end"), "hello stdin\n")
	if r.ExitCode != 0 || r.Stdout != "HELLO STDIN\nend\n" {
		t.Fatalf("run -i: %s", r)
	}
	// Without -i, stdin is not connected.
	r = testutil.Run(t, d.Cmd("run", "--rm", "busybox", "sh", "-c", "cat; echo end"), "ignored\n")
	if r.Stdout != "end\n" {
		t.Fatalf("run without -i read stdin: %s", r)
	}
	// start -a -i of a created container.
	id := strings.TrimSpace(d.MustBerth(t, "create", "-i", "busybox", "sh", "-c", "read x; echo got $x; exit 2"))
	r = testutil.Run(t, d.Cmd("start", "-a", "-i", id), "value\n")
	if r.ExitCode != 2 || r.Stdout != "got value\n" {
		t.Fatalf("start -a -i: %s", r)
	}
}
