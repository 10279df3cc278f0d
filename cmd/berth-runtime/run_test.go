package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// runFG runs `run --bundle B ID` with one pipe for stdout and stderr, as
// the builder does, and returns the output and exit code.
func (c *ctr) runFG(t *testing.T) (string, int, *exec.Cmd) {
	t.Helper()
	var out bytes.Buffer
	cmd := c.cmd("run", "--bundle", c.bundle, c.id)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run: %v", err)
	}
	return out.String(), cmd.ProcessState.ExitCode(), cmd
}

// assertGone fails if the runtime still has state or cgroups of c.
func (c *ctr) assertGone(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(c.root, c.id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir after run: %v", err)
	}
	for _, d := range cgroupDirs(filepath.Join(c.parent, c.id)) {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s after run: %v", d, err)
		}
	}
}

// `run` creates, starts, waits and deletes in one go: the output of both
// streams in order, the exit status, nothing left. runc's run behaves the
// same, which the builder relies on for any registered runtime.
func TestRunForeground(t *testing.T) {
	requireRuntime(t)
	for name, bin := range runtimes(t) {
		t.Run(name, func(t *testing.T) {
			c := newCtr(t, bin, []string{"sh", "-c", "echo out; echo err >&2; echo out2; hostname; exit 3"}, nil)
			out, code, _ := c.runFG(t)
			want := "out\nerr\nout2\nberthtest\n"
			if name != "berth" {
				// runc copies the two streams through pipes of its own:
				// their relative order is lost. berth-runtime hands the
				// container its stdio.
				lines := strings.SplitAfter(out, "\n")
				slices.Sort(lines)
				out = strings.Join(lines, "")
				want = "berthtest\nerr\nout\nout2\n"
			}
			if out != want || code != 3 {
				t.Errorf("output %q, exit %d; want %q and 3", out, code, want)
			}
			c.assertGone(t)
			c = newCtr(t, bin, []string{"true"}, nil)
			if out, code, _ := c.runFG(t); out != "" || code != 0 {
				t.Errorf("true: output %q, exit %d", out, code)
			}
			c.assertGone(t)
		})
	}
}

// A container killed from outside (`kill`, as a cancelled build does)
// ends `run` with 128+9, and `run` still deletes it.
func TestRunKilled(t *testing.T) {
	requireRuntime(t)
	for name, bin := range runtimes(t) {
		t.Run(name, func(t *testing.T) {
			c := newCtr(t, bin, []string{"sh", "-c", "echo started; exec sleep 600"}, nil)
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			cmd := c.cmd("run", "--bundle", c.bundle, c.id)
			cmd.Stdout, cmd.Stderr = pw, pw
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pw.Close()
			buf := make([]byte, 64)
			n, err := pr.Read(buf)
			if err != nil || !strings.Contains(string(buf[:n]), "started") {
				t.Fatalf("read: %q %v", buf[:n], err)
			}
			c.run("kill", c.id, "KILL")
			_ = cmd.Wait()
			if code := cmd.ProcessState.ExitCode(); code != 137 {
				t.Errorf("exit %d, want 137", code)
			}
			c.assertGone(t)
		})
	}
}

// A process that cannot start fails `run` with the runtime's error in its
// log and leaves nothing.
func TestRunExecError(t *testing.T) {
	requireRuntime(t)
	for name, bin := range runtimes(t) {
		t.Run(name, func(t *testing.T) {
			c := newCtr(t, bin, []string{"nonexistent"}, nil)
			_, code, _ := c.runFG(t)
			if code == 0 {
				t.Fatal("run of a missing executable succeeded")
			}
			if msg := c.lastError(); !strings.Contains(msg, `"nonexistent": executable file not found`) {
				t.Errorf("logged error %q", msg)
			}
			c.assertGone(t)
		})
	}
}
