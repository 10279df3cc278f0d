package shim_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/logs/jsonfile"
	"github.com/berth-engine/berth/internal/shim"
	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
)

func readLog(t *testing.T, path string) []jsonfile.Message {
	t.Helper()
	msgs, err := jsonfile.Read(context.Background(), path, jsonfile.ReadOptions{Tail: -1})
	if err != nil {
		t.Fatalf("read log: %v", err)
	}
	var out []jsonfile.Message
	for m := range msgs {
		if m.Err != nil {
			t.Fatalf("read log: %v", m.Err)
		}
		out = append(out, m)
	}
	return out
}

func TestOutputToLogAndAttachBeforeStart(t *testing.T) {
	// The sleep keeps the container (and so the shim's socket) up for the
	// second Start below.
	c := newContainer(t, spec{args: []string{"sh", "-c", "echo out; echo err >&2; echo more; sleep 1; exit 3"}})
	ctx := testCtx(t)
	client, _ := c.spawn(ctx)
	if st, err := client.State(ctx); err != nil || st.Status != shim.StatusCreated {
		t.Fatalf("State after Spawn = %+v, %v; want created", st, err)
	}
	if got := c.runtimeState(); got != "created" {
		t.Fatalf("runc state = %q, want created", got)
	}
	conn, err := client.Attach(ctx, shim.AttachOptions{Stdout: true, Stderr: true})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	defer conn.Close()
	// A second client that only wants stderr.
	conn2, err := shim.Dial(c.cfg.Socket).Attach(ctx, shim.AttachOptions{Stderr: true})
	if err != nil {
		t.Fatalf("Attach stderr: %v", err)
	}
	defer conn2.Close()
	s1, s2 := readStream(conn), readStream(conn2)
	if err := client.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := client.Start(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("second Start: %v, want a failed-precondition error", err)
	}
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, bytes.NewReader(s1.all(t))); err != nil {
		t.Fatalf("stdcopy: %v", err)
	}
	if stdout.String() != "out\nmore\n" || stderr.String() != "err\n" {
		t.Errorf("attach got stdout %q stderr %q", stdout.String(), stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	if _, err := stdcopy.StdCopy(&stdout, &stderr, bytes.NewReader(s2.all(t))); err != nil {
		t.Fatalf("stdcopy: %v", err)
	}
	if stdout.String() != "" || stderr.String() != "err\n" {
		t.Errorf("stderr-only attach got stdout %q stderr %q", stdout.String(), stderr.String())
	}

	st, err := waitExit(ctx, c.cfg, client)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if st.Code != 3 || st.Signal != 0 || st.ExitedAt.IsZero() {
		t.Errorf("exit = %+v, want code 3", st)
	}
	fromFile, err := shim.ReadExitFile(c.cfg.ExitFile)
	if err != nil {
		t.Fatalf("ReadExitFile: %v", err)
	}
	if fromFile.Code != 3 || !fromFile.ExitedAt.Equal(st.ExitedAt) {
		t.Errorf("exit file = %+v, Wait said %+v", fromFile, st)
	}

	msgs := readLog(t, c.cfg.LogPath)
	var lines []string
	for _, m := range msgs {
		lines = append(lines, m.Stream+":"+string(m.Line))
	}
	// stdout and stderr are separate pipes: only the order within a
	// stream is defined.
	var outLines, errLines []string
	for _, l := range lines {
		if strings.HasPrefix(l, "stdout:") {
			outLines = append(outLines, l)
		} else {
			errLines = append(errLines, l)
		}
	}
	if strings.Join(outLines, "|") != "stdout:out\n|stdout:more\n" || strings.Join(errLines, "|") != "stderr:err\n" {
		t.Errorf("log = %q", lines)
	}
	// The shim is gone and has cleaned up after itself.
	eventually(t, "shim exit", func() bool { return len(shimPids(c.cfg.Bundle)) == 0 })
	if _, err := os.Stat(c.cfg.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
	if got := c.runtimeState(); got != "" {
		t.Errorf("runc still knows the container: %s", got)
	}
	if _, err := client.Wait(ctx); !errdefs.IsUnavailable(err) {
		t.Errorf("Wait on a gone shim: %v, want unavailable", err)
	}
}

func TestStdinOnce(t *testing.T) {
	c := newContainer(t, spec{args: []string{"sh", "-c", "cat; echo done"}, stdin: true, stdinOnce: true})
	ctx := testCtx(t)
	client, _ := c.spawn(ctx)
	conn, err := client.Attach(ctx, shim.AttachOptions{Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	defer conn.Close()
	s := readStream(conn)
	if err := client.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if _, err := conn.Write([]byte("hello\nworld\n")); err != nil {
		t.Fatalf("write stdin: %v", err)
	}
	closeWrite(t, conn) // stdin EOF: cat ends
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, bytes.NewReader(s.all(t))); err != nil {
		t.Fatalf("stdcopy: %v", err)
	}
	if stdout.String() != "hello\nworld\ndone\n" {
		t.Errorf("stdout = %q", stdout.String())
	}
	st, err := waitExit(ctx, c.cfg, client)
	if err != nil || st.Code != 0 {
		t.Fatalf("Wait = %+v, %v", st, err)
	}
}

func TestStdinStaysOpenWithoutStdinOnce(t *testing.T) {
	c := newContainer(t, spec{args: []string{"sh", "-c", "read a; echo got-$a; read b; echo $a-$b"}, stdin: true})
	ctx := testCtx(t)
	client, _ := c.spawn(ctx)
	s := startAttached(ctx, t, client)
	// Two successive stdin clients; the first one's EOF must not close
	// the container's stdin.
	for _, word := range []string{"one", "two"} {
		in, err := client.Attach(ctx, shim.AttachOptions{Stdin: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := in.Write([]byte(word + "\n")); err != nil {
			t.Fatal(err)
		}
		closeWrite(t, in)
		in.Close()
		if word == "one" {
			s.waitFor(t, "got-one")
		}
	}
	var stdout bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stdout, bytes.NewReader(s.all(t))); err != nil {
		t.Fatal(err)
	}
	if stdout.String() != "got-one\none-two\n" {
		t.Errorf("stdout = %q", stdout.String())
	}
}

func TestTTYAndResize(t *testing.T) {
	c := newContainer(t, spec{args: []string{"sh"}, tty: true, stdin: true, height: 33, width: 111})
	ctx := testCtx(t)
	client, _ := c.spawn(ctx)
	conn, err := client.Attach(ctx, shim.AttachOptions{Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	defer conn.Close()
	s := readStream(conn)
	if err := client.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if _, err := conn.Write([]byte("stty size; tty\n")); err != nil {
		t.Fatal(err)
	}
	got := s.waitFor(t, "33 111\r\n")
	s.waitFor(t, "/dev/pts/")
	if err := client.Resize(ctx, 40, 120); err != nil {
		t.Fatalf("Resize: %v", err)
	}
	if _, err := conn.Write([]byte("stty size\n")); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, "40 120\r\n")
	if _, err := conn.Write([]byte("exit 5\n")); err != nil {
		t.Fatal(err)
	}
	all := s.all(t)
	// A TTY stream is raw: no stdcopy frames.
	if bytes.HasPrefix(all, []byte{1, 0, 0, 0}) {
		t.Errorf("TTY stream is framed: %q", all[:16])
	}
	st, err := waitExit(ctx, c.cfg, client)
	if err != nil || st.Code != 5 {
		t.Fatalf("Wait = %+v, %v; want code 5", st, err)
	}
	// The TTY's output is logged as stdout.
	msgs := readLog(t, c.cfg.LogPath)
	var logged strings.Builder
	for _, m := range msgs {
		if m.Stream != "stdout" {
			t.Errorf("TTY output logged as %q", m.Stream)
		}
		logged.Write(m.Line)
	}
	if !strings.Contains(logged.String(), "33 111") || !strings.Contains(logged.String(), "40 120") {
		t.Errorf("log = %q (stream so far %q)", logged.String(), got)
	}
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		kill   syscall.Signal
		code   int
		signal int
	}{
		{"zero", []string{"true"}, 0, 0, 0},
		{"three", []string{"sh", "-c", "exit 3"}, 0, 3, 0},
		{"sigkill", []string{"sleep", "1000"}, syscall.SIGKILL, 137, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newContainer(t, spec{args: tc.args, noLog: true})
			ctx := testCtx(t)
			client, pid := c.spawn(ctx)
			if err := client.Start(ctx); err != nil {
				t.Fatalf("Start: %v", err)
			}
			if tc.kill != 0 {
				st, err := client.State(ctx)
				if err != nil || st.Status != shim.StatusRunning || st.Pid != pid {
					t.Fatalf("State = %+v, %v; want running pid %d", st, err, pid)
				}
				if err := client.Kill(ctx, tc.kill, false); err != nil {
					t.Fatalf("Kill: %v", err)
				}
			}
			st, err := waitExit(ctx, c.cfg, client)
			if err != nil {
				t.Fatalf("Wait: %v", err)
			}
			if st.Code != tc.code || st.Signal != tc.signal {
				t.Errorf("exit = %+v, want code %d signal %d", st, tc.code, tc.signal)
			}
			if err := client.Kill(ctx, syscall.SIGKILL, false); err == nil {
				t.Errorf("Kill after exit succeeded")
			}
		})
	}
}

func TestKillAll(t *testing.T) {
	// sh is the container's PID 1: SIGTERM without a handler does not
	// touch it, but it ends the sleep, which ends the wait.
	c := newContainer(t, spec{args: []string{"sh", "-c", "sleep 1000 & wait $!"}, noLog: true})
	ctx := testCtx(t)
	client, _ := c.spawn(ctx)
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Let the sleep start: its process shows up in the container's cgroup.
	eventually(t, "two processes", func() bool {
		b, _ := os.ReadFile(filepath.Join("/sys/fs/cgroup/pids/berth-shimtest-"+c.cfg.ID, "cgroup.procs"))
		return len(strings.Fields(string(b))) == 2
	})
	if err := client.Kill(ctx, syscall.SIGTERM, false); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if st, err := client.State(ctx); err != nil || st.Status != shim.StatusRunning {
		t.Fatalf("after SIGTERM to init: %+v, %v; want running", st, err)
	}
	if err := client.Kill(ctx, syscall.SIGTERM, true); err != nil {
		t.Fatalf("Kill all: %v", err)
	}
	st, err := waitExit(ctx, c.cfg, client)
	if err != nil || st.Code != 143 || st.Signal != 0 {
		t.Fatalf("Wait = %+v, %v; want code 143 from sh's wait", st, err)
	}
}

func TestWaitFromSecondClient(t *testing.T) {
	c := newContainer(t, spec{args: []string{"sleep", "1000"}, noLog: true})
	ctx := testCtx(t)
	client, _ := c.spawn(ctx)
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	type res struct {
		st  shim.ExitStatus
		err error
	}
	results := make(chan res, 3)
	for i := 0; i < 3; i++ {
		go func() {
			st, err := waitExit(ctx, c.cfg, shim.Dial(c.cfg.Socket))
			results <- res{st, err}
		}()
	}
	// A waiter that gives up must not disturb the others.
	short, cancel := context.WithCancel(ctx)
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	if _, err := client.Wait(short); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Wait: %v", err)
	}
	if err := client.Kill(ctx, syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		r := <-results
		if r.err != nil || r.st.Code != 137 || r.st.Signal != 9 {
			t.Errorf("waiter %d: %+v, %v", i, r.st, r.err)
		}
	}
}

const helperEnv = "BERTH_SHIM_TEST_SPAWN"

type helperArgs struct {
	Bin string
	Cfg shim.Config
}

// spawnHelper runs in a child test process: it spawns a shim, reports the
// container's pid and waits to be killed.
func spawnHelper() int {
	var a helperArgs
	if err := json.Unmarshal([]byte(os.Getenv(helperEnv)), &a); err != nil {
		fmt.Println("error", err)
		return 1
	}
	_, pid, err := shim.Spawn(context.Background(), a.Bin, a.Cfg)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("pid", pid)
	select {}
}

func TestSurvivesParentKill(t *testing.T) {
	c := newContainer(t, spec{args: []string{"sh", "-c", "echo started; sleep 1000"}})
	arg, _ := json.Marshal(helperArgs{Bin: shimBin, Cfg: c.cfg})
	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), helperEnv+"="+string(arg))
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "pid ") {
		_ = helper.Process.Kill()
		_ = helper.Wait()
		t.Fatalf("helper said %q, %v", line, err)
	}
	shims := shimPids(c.cfg.Bundle)
	if len(shims) != 1 {
		t.Fatalf("shim processes: %v", shims)
	}
	// The daemon dies hard.
	if err := helper.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()

	ctx := testCtx(t)
	client := shim.Dial(c.cfg.Socket) // a fresh daemon reconnects
	st, err := client.State(ctx)
	if err != nil || st.Status != shim.StatusCreated {
		t.Fatalf("State after the parent died = %+v, %v", st, err)
	}
	s := startAttached(ctx, t, client)
	s.waitFor(t, "started\n")
	if err := client.Kill(ctx, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	ex, err := waitExit(ctx, c.cfg, client)
	if err != nil || ex.Code != 137 {
		t.Fatalf("Wait = %+v, %v", ex, err)
	}
	// The orphaned shim was re-parented to this process (a subreaper):
	// reap it, which also proves it exited.
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(shims[0], &ws, 0, nil); err != nil {
		t.Fatalf("reap shim: %v", err)
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("shim ended with %v", ws)
	}
}

func TestExitFileWithoutClient(t *testing.T) {
	c := newContainer(t, spec{args: []string{"sh", "-c", "exit 7"}})
	ctx := testCtx(t)
	client, _ := c.spawn(ctx)
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the shim to exit", func() bool { return len(shimPids(c.cfg.Bundle)) == 0 })
	st, err := shim.ReadExitFile(c.cfg.ExitFile)
	if err != nil || st.Code != 7 {
		t.Fatalf("ReadExitFile = %+v, %v", st, err)
	}
	if _, err := os.Stat(c.cfg.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
	if _, err := shim.ReadExitFile(filepath.Join(t.TempDir(), "none.json")); !errdefs.IsNotFound(err) {
		t.Errorf("ReadExitFile of a missing file: %v, want not found", err)
	}
}

func TestMissingExecutable(t *testing.T) {
	c := newContainer(t, spec{args: []string{"foo-not-here"}})
	_, _, err := shim.Spawn(testCtx(t), shimBin, c.cfg)
	if err == nil {
		t.Fatal("Spawn succeeded")
	}
	if !strings.Contains(err.Error(), `exec: "foo-not-here": executable file not found in $PATH`) {
		t.Errorf("Spawn error = %v", err)
	}
	if pids := shimPids(c.cfg.Bundle); len(pids) != 0 {
		t.Errorf("shim left running: %v", pids)
	}
	if st := c.runtimeState(); st != "" {
		t.Errorf("container left in runc: %s", st)
	}
	if _, err := os.Stat(c.cfg.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory", "berth-shimtest-"+c.cfg.ID)); err == nil {
		t.Errorf("cgroup left behind")
	}
}

func TestLogRotationThroughShim(t *testing.T) {
	c := newContainer(t, spec{
		args:       []string{"sh", "-c", "i=1; while [ $i -le 300 ]; do echo line-$i; i=$((i+1)); done"},
		logMaxSize: 1024, logFiles: 3,
	})
	ctx := testCtx(t)
	client, _ := c.spawn(ctx)
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := waitExit(ctx, c.cfg, client); err != nil || st.Code != 0 {
		t.Fatalf("Wait = %+v, %v", st, err)
	}
	for _, name := range []string{"", ".1", ".2"} {
		fi, err := os.Stat(c.cfg.LogPath + name)
		if err != nil {
			t.Fatalf("log file %q: %v", name, err)
		}
		if fi.Size() > 1024 {
			t.Errorf("log file %q is %d bytes, max-size 1024", name, fi.Size())
		}
	}
	if _, err := os.Stat(c.cfg.LogPath + ".3"); err == nil {
		t.Errorf("max-file 3 kept a fourth file")
	}
	msgs := readLog(t, c.cfg.LogPath)
	if len(msgs) == 0 || string(msgs[len(msgs)-1].Line) != "line-300\n" {
		t.Fatalf("last logged line = %v", msgs)
	}
	first := 300 - len(msgs) + 1
	for i, m := range msgs {
		if want := fmt.Sprintf("line-%d\n", first+i); string(m.Line) != want {
			t.Fatalf("entry %d = %q, want %q", i, m.Line, want)
		}
	}
}

func TestInitReapsZombiesAndExitCode(t *testing.T) {
	// The orphaned sleep's parent (the subshell) exits at once: init must
	// reap it, or /proc/$p stays (as a zombie).
	script := `p=$( (sleep 0.2 >/dev/null 2>&1 & echo $!) ); echo "pid1 is $(cat /proc/1/comm)"; ` +
		`i=0; while [ -e /proc/$p ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; ` +
		`if [ -e /proc/$p ]; then echo zombie; exit 1; fi; echo reaped; kill -9 $$`
	c := newContainer(t, spec{args: []string{"/sbin/docker-init", "--", "sh", "-c", script}, init: true})
	ctx := testCtx(t)
	client, _ := c.spawn(ctx)
	conn, err := client.Attach(ctx, shim.AttachOptions{Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s := readStream(conn)
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, bytes.NewReader(s.all(t))); err != nil {
		t.Fatal(err)
	}
	if stdout.String() != "pid1 is docker-init\nreaped\n" {
		t.Errorf("stdout = %q, stderr = %q", stdout.String(), stderr.String())
	}
	// sh killed itself with SIGKILL: init exits 128+9 (it was not killed).
	st, err := waitExit(ctx, c.cfg, client)
	if err != nil || st.Code != 137 || st.Signal != 0 {
		t.Errorf("Wait = %+v, %v; want code 137 from init", st, err)
	}
}

func TestInitForwardsSIGTERM(t *testing.T) {
	script := `trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done`
	c := newContainer(t, spec{args: []string{"/sbin/docker-init", "--", "sh", "-c", script}, init: true})
	ctx := testCtx(t)
	client, _ := c.spawn(ctx)
	s := startAttached(ctx, t, client)
	s.waitFor(t, "ready\n")
	// docker stop: SIGTERM to the container's PID 1, which is init.
	if err := client.Kill(ctx, syscall.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	st, err := waitExit(ctx, c.cfg, client)
	if err != nil || st.Code != 7 {
		t.Fatalf("Wait = %+v, %v; want 7 from the trap", st, err)
	}
	var stdout bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stdout, bytes.NewReader(s.all(t))); err != nil {
		t.Fatal(err)
	}
	if stdout.String() != "ready\ngot-term\n" {
		t.Errorf("stdout = %q", stdout.String())
	}
}

func TestOOMKilled(t *testing.T) {
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.oom_control"); err != nil {
		if _, err := os.Stat("/sys/fs/cgroup/memory.events"); err != nil {
			t.Skip("no memory cgroup controller")
		}
	}
	c := newContainer(t, spec{args: []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"}, memLimit: 32 << 20, noLog: true})
	ctx := testCtx(t)
	client, _ := c.spawn(ctx)
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := waitExit(ctx, c.cfg, client)
	if err != nil || st.Code != 137 || !st.OOMKilled {
		t.Fatalf("Wait = %+v, %v; want 137 and OOMKilled", st, err)
	}
}

func TestSpawnRejectsBadConfig(t *testing.T) {
	_, _, err := shim.Spawn(context.Background(), "/nonexistent", shim.Config{ID: "x", Bundle: "relative"})
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("Spawn with a relative bundle: %v, want invalid argument", err)
	}
	long := "/" + strings.Repeat("s", 120)
	_, _, err = shim.Spawn(context.Background(), "/nonexistent", shim.Config{ID: "x", Bundle: "/b", Runtime: "runc", Socket: long, ExitFile: "/e"})
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("Spawn with a long socket path: %v, want invalid argument", err)
	}
}

// With a TTY, init puts the command in the terminal's foreground process
// group (as tini does), so that ^C reaches it.
func TestInitWithTTY(t *testing.T) {
	// /proc/PID/stat: field 5 is the process group, field 8 the
	// terminal's foreground group.
	script := `stty size; set -- $(cut -d' ' -f5,8 /proc/$$/stat); [ "$1" = "$2" ] && echo foreground; exit 6`
	c := newContainer(t, spec{args: []string{"/sbin/docker-init", "--", "sh", "-c", script}, init: true, tty: true, height: 21, width: 77})
	ctx := testCtx(t)
	client, _ := c.spawn(ctx)
	s := startAttached(ctx, t, client)
	out := string(s.all(t))
	if !strings.Contains(out, "21 77") || !strings.Contains(out, "foreground") {
		t.Errorf("output %q: want the size and the command in the foreground group", out)
	}
	if st, err := waitExit(ctx, c.cfg, client); err != nil || st.Code != 6 {
		t.Errorf("Wait = %+v, %v", st, err)
	}
}

// The shim starts a container through runc's exec fifo itself, without
// running `<runtime> start`; the runtime then sees it running, as after
// its own start.
func TestStartThroughExecFifo(t *testing.T) {
	c := newContainer(t, spec{args: []string{"sleep", "100"}})
	ctx := testCtx(t)
	client, _ := c.spawn(ctx)
	fifo := filepath.Join(c.runRoot, c.cfg.ID, "exec.fifo")
	if _, err := os.Stat(fifo); err != nil {
		t.Fatalf("runc keeps no exec fifo where the shim looks: %v", err)
	}
	if err := client.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if _, err := os.Stat(fifo); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("exec fifo left after the start: %v", err)
	}
	if got := c.runtimeState(); got != "running" {
		t.Errorf("runc state after the start = %q, want running", got)
	}
	type result struct {
		st  shim.ExitStatus
		err error
	}
	waited := make(chan result, 1)
	go func() { st, err := client.Wait(ctx); waited <- result{st, err} }()
	eventually(t, "waiter registered", func() bool { return c.runtimeState() == "running" })
	if err := client.Kill(ctx, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if r := <-waited; r.err != nil || r.st.Code != 137 {
		t.Errorf("Wait = %+v, %v", r.st, r.err)
	}
}

// A start whose container init died before it was started fails instead
// of waiting forever on the fifo.
func TestStartOfDeadInitFails(t *testing.T) {
	c := newContainer(t, spec{args: []string{"sleep", "100"}})
	ctx := testCtx(t)
	client, pid := c.spawn(ctx)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := client.Start(ctx); err == nil {
		t.Fatal("Start of a container whose init is dead succeeded")
	}
	// The shim records the death and goes (its socket may already be gone).
	eventually(t, "shim exit", func() bool { return len(shimPids(c.cfg.Bundle)) == 0 })
	if st, err := shim.ReadExitFile(c.cfg.ExitFile); err != nil || st.Code != 137 {
		t.Errorf("exit file: %+v, %v", st, err)
	}
}
