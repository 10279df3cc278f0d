package shim_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/shim"
	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
)

// fakeRuntime writes a shell script that speaks runc's command line:
// `[--root R] --log L --log-format json <cmd> …`. body sees $cmd, $log,
// $pidfile (create), $id and $state (a directory of its own).
func fakeRuntime(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	script := `#!/bin/sh
state=` + dir + `
log=/dev/null; cmd=""; pidfile=""; id=""
while [ $# -gt 0 ]; do
  case "$1" in
    --log) log=$2; shift 2 ;;
    --log-format|--root|--bundle|--console-socket) shift 2 ;;
    --pid-file) pidfile=$2; shift 2 ;;
    --all|--force) shift ;;
    -*) shift ;;
    *) if [ -z "$cmd" ]; then cmd=$1; else id=${id:-$1}; fi; shift ;;
  esac
done
` + body
	p := filepath.Join(dir, "fake-runtime")
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeContainer is a container config for a fake runtime (no rootfs is
// ever used).
func fakeContainer(t *testing.T, runtime string) *container {
	c := newContainer(t, spec{args: []string{"true"}})
	c.cfg.Runtime = runtime
	return c
}

func TestRuntimeCreateErrorFromLog(t *testing.T) {
	requireRuntime(t)
	rt := fakeRuntime(t, `
case $cmd in
create) echo '{"level":"info","msg":"creating","time":"2024-05-01T10:00:00Z"}' >> $log
        echo '{"level":"error","msg":"fake create failed: no such thing","time":"2024-05-01T10:00:00Z"}' >> $log
        echo "noise on stderr" >&2; exit 1 ;;
esac
exit 0`)
	c := fakeContainer(t, rt)
	_, _, err := shim.Spawn(testCtx(t), shimBin, c.cfg)
	if err == nil || !strings.Contains(err.Error(), "fake create failed: no such thing") {
		t.Fatalf("Spawn error = %v", err)
	}
	if pids := shimPids(c.cfg.Bundle); len(pids) != 0 {
		t.Errorf("shim left: %v", pids)
	}
}

func TestRuntimeCreateErrorFromStderr(t *testing.T) {
	requireRuntime(t)
	rt := fakeRuntime(t, `
case $cmd in
create) echo "some warning" >&2; echo "fatal: the runtime only said this on stderr" >&2; exit 2 ;;
esac
exit 0`)
	c := fakeContainer(t, rt)
	_, _, err := shim.Spawn(testCtx(t), shimBin, c.cfg)
	if err == nil || !strings.Contains(err.Error(), "fatal: the runtime only said this on stderr") {
		t.Fatalf("Spawn error = %v", err)
	}
	// The same with a TTY, where the runtime's stdio is not the container's.
	c = fakeContainer(t, rt)
	c.cfg.Tty = true
	_, _, err = shim.Spawn(testCtx(t), shimBin, c.cfg)
	if err == nil || !strings.Contains(err.Error(), "fatal: the runtime only said this on stderr") {
		t.Fatalf("Spawn error with TTY = %v", err)
	}
}

// The runtime runs with GOMAXPROCS=1 (which runc and berth-runtime hand
// on to the container's init), whatever the shim's environment had: the
// fake runtime's create fails with its GOMAXPROCS in the message.
func TestRuntimeGetsOneP(t *testing.T) {
	requireRuntime(t)
	rt := fakeRuntime(t, `
case $cmd in
create) echo "{\"level\":\"error\",\"msg\":\"runtime GOMAXPROCS=[$GOMAXPROCS] $(env | grep -c '^GOMAXPROCS=')\"}" >> $log; exit 1 ;;
esac
exit 0`)
	t.Setenv("GOMAXPROCS", "7") // the daemon's; the spawner gives the shim 1
	c := fakeContainer(t, rt)
	_, _, err := shim.Spawn(testCtx(t), shimBin, c.cfg)
	if err == nil || !strings.Contains(err.Error(), "runtime GOMAXPROCS=[1] 1") {
		t.Fatalf("Spawn error = %v, want the runtime to report GOMAXPROCS=[1], set once", err)
	}
}

// A runtime whose start fails: Start returns its message; the engine then
// kills the created container and waits, as it does in lifecycle.go.
func TestRuntimeStartError(t *testing.T) {
	requireRuntime(t)
	rt := fakeRuntime(t, `
case $cmd in
create) sleep 1000 </dev/null >/dev/null 2>&1 &
        echo $! > $pidfile; echo $! > $state/pid; exit 0 ;;
start)  ls -l /proc/$$/fd/ > $state/start-fds
        echo '{"level":"error","msg":"fake start failed: permission denied","time":"2024-05-01T10:00:00Z"}' >> $log; exit 1 ;;
kill)   kill -9 $(cat $state/pid); exit 0 ;;
delete) kill -9 $(cat $state/pid) 2>/dev/null; exit 0 ;;
esac
exit 0`)
	c := fakeContainer(t, rt)
	ctx := testCtx(t)
	client, pid := c.spawn(ctx)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	err := client.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "fake start failed: permission denied") {
		t.Fatalf("Start error = %v", err)
	}
	if st, err := client.State(ctx); err != nil || st.Status != shim.StatusCreated {
		t.Fatalf("State after a failed start = %+v, %v", st, err)
	}
	// The runtime gets its stdio and nothing else of the shim's: no
	// socket, no pipe of the container's.
	fds, _ := os.ReadFile(filepath.Join(filepath.Dir(rt), "start-fds"))
	if bytes.Contains(fds, []byte("socket:")) || bytes.Count(fds, []byte("pipe:")) > 0 {
		t.Errorf("descriptors leaked into the runtime:\n%s", fds)
	}
	if err := client.Kill(ctx, syscall.SIGKILL, true); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	st, err := waitExit(ctx, c.cfg, client)
	if err != nil || st.Code != 137 {
		t.Fatalf("Wait = %+v, %v", st, err)
	}
}

// When ctx ends during the create, Spawn kills the shim, deletes the
// container and returns; nothing is left.
func TestSpawnContextCancelled(t *testing.T) {
	requireRuntime(t)
	rt := fakeRuntime(t, `
case $cmd in
create) echo $$ > $state/create.pid; exec sleep 1000 ;;
delete) echo deleted > $state/deleted; exit 0 ;;
esac
exit 0`)
	c := fakeContainer(t, rt)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	state := filepath.Dir(rt)
	go func() {
		// Cancel once the runtime's create is running.
		for {
			if _, err := os.Stat(filepath.Join(state, "create.pid")); err == nil {
				cancel()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	_, _, err := shim.Spawn(ctx, shimBin, c.cfg)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Spawn error = %v, want context.Canceled", err)
	}
	if pids := shimPids(c.cfg.Bundle); len(pids) != 0 {
		t.Errorf("shim left: %v", pids)
	}
	if _, err := os.Stat(filepath.Join(state, "deleted")); err != nil {
		t.Errorf("runtime delete was not run: %v", err)
	}
	// The hanging create was the killed shim's child: it is now ours (a
	// subreaper) to kill and reap.
	b, _ := os.ReadFile(filepath.Join(state, "create.pid"))
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, 0, nil)
	}
}

// shimReexeced tells whether the shim process pid runs a second stage: its
// environment (the one it was exec'd with) carries the handoff.
func shimReexeced(t *testing.T, pid int) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(b, []byte("BERTH_SHIM_HANDOFF="))
}

// By default the first stage serves the container itself (no second Go
// process start on the way to the container's start); with
// BERTH_SHIM_REEXEC=1 a fresh second stage takes over. Both serve stdin,
// output and the exit alike.
func TestReexecModes(t *testing.T) {
	for _, reexec := range []bool{false, true} {
		t.Run(map[bool]string{false: "first-stage", true: "second-stage"}[reexec], func(t *testing.T) {
			if reexec {
				t.Setenv("BERTH_SHIM_REEXEC", "1")
			}
			c := newContainer(t, spec{args: []string{"sh", "-c", "cat; exit 4"}, stdin: true, stdinOnce: true})
			ctx := testCtx(t)
			client, _ := c.spawn(ctx)
			pids := shimPids(c.cfg.Bundle)
			if len(pids) != 1 {
				t.Fatalf("shims: %v", pids)
			}
			if got := shimReexeced(t, pids[0]); got != reexec {
				t.Errorf("second stage = %v, want %v", got, reexec)
			}
			conn, err := client.Attach(ctx, shim.AttachOptions{Stdin: true, Stdout: true})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			s := readStream(conn)
			if err := client.Start(ctx); err != nil {
				t.Fatal(err)
			}
			conn.Write([]byte("echo\n"))
			closeWrite(t, conn)
			var out bytes.Buffer
			if _, err := stdcopy.StdCopy(&out, &out, bytes.NewReader(s.all(t))); err != nil {
				t.Fatal(err)
			}
			if st, err := waitExit(ctx, c.cfg, client); err != nil || st.Code != 4 || out.String() != "echo\n" {
				t.Fatalf("Wait = %+v, %v; output %q", st, err, out.String())
			}
			if b, _ := os.ReadFile(filepath.Join(c.cfg.Bundle, "shim.log")); bytes.Contains(b, []byte("re-exec failed")) {
				t.Errorf("shim.log: %s", b)
			}
		})
	}
}

// An attach client that never reads does not hold the container back: it
// is dropped, and the log still gets everything.
func TestStuckAttachClientDoesNotBlock(t *testing.T) {
	c := newContainer(t, spec{args: []string{"sh", "-c", "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -n 200000; echo end"}})
	ctx := testCtx(t)
	client, _ := c.spawn(ctx)
	stuck, err := client.Attach(ctx, shim.AttachOptions{Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close() // never read
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := waitExit(ctx, c.cfg, client)
	if err != nil || st.Code != 0 {
		t.Fatalf("Wait = %+v, %v", st, err)
	}
	msgs := readLog(t, c.cfg.LogPath)
	if len(msgs) != 200001 || string(msgs[len(msgs)-1].Line) != "end\n" {
		t.Fatalf("log has %d entries, last %q", len(msgs), msgs[len(msgs)-1].Line)
	}
}

// Init mode outside a container (not PID 1): exit codes and a missing
// command, as docker-init reports them.
func TestInitModeOnHost(t *testing.T) {
	requireRuntime(t)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"init", "--", "sh", "-c", "exit 3"}, 3},
		{[]string{"init", "--", "sh", "-c", "kill -TERM $$"}, 143},
		{[]string{"init", "--", "no-such-command-here"}, 127},
		{[]string{"init"}, 2},
	} {
		cmd := exec.Command(shimBin, tc.args...)
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code {
			t.Errorf("berth-shim %v exited %d, want %d", tc.args, code, tc.code)
		}
	}
	// Init runs itself with GOMAXPROCS=1 (a re-exec); the command gets
	// the environment init was given.
	for _, env := range []string{"", "7"} {
		cmd := exec.Command(shimBin, "init", "--", "sh", "-c", `echo "${GOMAXPROCS-unset} $(tr '\0' '\n' < /proc/$PPID/environ | grep -c '^GOMAXPROCS=1$')"`)
		cmd.Env = withoutGOMAXPROCS(os.Environ())
		want := "unset 1\n"
		if env != "" {
			cmd.Env = append(cmd.Env, "GOMAXPROCS="+env)
			want = env + " 1\n"
		}
		out, err := cmd.Output()
		if err != nil || string(out) != want {
			t.Errorf("GOMAXPROCS=%q: command saw %q (%v), want %q", env, out, err, want)
		}
	}
}

func withoutGOMAXPROCS(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "GOMAXPROCS=") {
			out = append(out, kv)
		}
	}
	return out
}

func TestUnknownContainerKill(t *testing.T) {
	c := newContainer(t, spec{args: []string{"true"}, noLog: true})
	ctx := testCtx(t)
	client, _ := c.spawn(ctx)
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := waitExit(ctx, c.cfg, client); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the shim to exit", func() bool { return len(shimPids(c.cfg.Bundle)) == 0 })
	if err := client.Kill(ctx, syscall.SIGTERM, false); !errdefs.IsUnavailable(err) {
		t.Errorf("Kill on a gone shim: %v, want unavailable", err)
	}
}

// The exit is reported before the runtime deletes the container: WaitDone
// returns while the delete still runs, with the socket already gone (so a
// new shim could take its path), and done closes once the delete is over.
// The daemon removes the bundle as soon as it has the exit; the delete
// still gets its log (on an inherited descriptor).
func TestWaitDoneBeforeDelete(t *testing.T) {
	requireRuntime(t)
	rt := fakeRuntime(t, `
case $cmd in
create) sleep 1000 </dev/null >/dev/null 2>&1 &
        echo $! > $pidfile; echo $! > $state/pid; exit 0 ;;
kill)   kill -9 $(cat $state/pid); exit 0 ;;
delete) touch $state/deleting
        while [ ! -e $state/release ]; do sleep 0.01; done
        echo '{"level":"info","msg":"deleted","time":"2024-05-01T10:00:00Z"}' >> $log || touch $state/logfail
        touch $state/deleted; exit 0 ;;
esac
exit 0`)
	state := filepath.Dir(rt)
	c := fakeContainer(t, rt)
	ctx := testCtx(t)
	client, pid := c.spawn(ctx)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if err := client.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	type result struct {
		st   shim.ExitStatus
		done <-chan struct{}
		err  error
	}
	got := make(chan result, 1)
	go func() {
		st, done, err := client.WaitDone(ctx)
		got <- result{st, done, err}
	}()
	if err := client.Kill(ctx, syscall.SIGKILL, false); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	r := <-got
	if r.err != nil || r.st.Code != 137 {
		t.Fatalf("WaitDone = %+v, %v", r.st, r.err)
	}
	if _, err := os.Stat(filepath.Join(state, "deleted")); err == nil {
		t.Fatal("the exit was reported only after the runtime's delete")
	}
	if _, err := os.Lstat(c.cfg.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after the exit was reported: %v", err)
	}
	select {
	case <-r.done:
		t.Fatal("done closed while the delete still runs")
	default:
	}
	if err := os.RemoveAll(c.cfg.Bundle); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "release"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		t.Fatal("done never closed")
	}
	if _, err := os.Stat(filepath.Join(state, "deleted")); err != nil {
		t.Errorf("delete did not finish before done: %v", err)
	}
	if _, err := os.Stat(filepath.Join(state, "logfail")); err == nil {
		t.Error("the delete could not write its log once the bundle was gone")
	}
	for len(shimPids(c.cfg.Bundle)) > 0 {
		select {
		case <-ctx.Done():
			t.Fatal("shim did not exit")
		case <-time.After(10 * time.Millisecond):
		}
	}
}
