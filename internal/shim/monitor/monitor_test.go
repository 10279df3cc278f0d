package monitor

import (
	"encoding/binary"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestLastRuntimeError(t *testing.T) {
	log := []byte(`{"level":"info","msg":"starting","time":"2024-05-01T10:00:00Z"}
not json at all
{"level":"error","msg":"first","time":"2024-05-01T10:00:00Z"}
{"level":"warning","msg":"warn"}
{"level":"error","msg":"runc create failed: unable to start container process: exec: \"foo\": executable file not found in $PATH","time":"2024-05-01T10:00:01Z"}
{"level":"error"}
`)
	want := `runc create failed: unable to start container process: exec: "foo": executable file not found in $PATH`
	if got := lastRuntimeError(log); got != want {
		t.Errorf("lastRuntimeError = %q, want %q", got, want)
	}
	if got := lastRuntimeError([]byte(`{"level":"fatal","msg":"crun: boom"}`)); got != "crun: boom" {
		t.Errorf("fatal entry: %q", got)
	}
	if got := lastRuntimeError(nil); got != "" {
		t.Errorf("empty log: %q", got)
	}
}

func FuzzLastRuntimeError(f *testing.F) {
	f.Add([]byte(`{"level":"error","msg":"x"}` + "\n" + `{"level":"info","msg":"y"}`))
	f.Add([]byte("{\"level\":\"error\",\"msg\":\"\\ud800\"}\n\x00\xff"))
	f.Fuzz(func(t *testing.T, log []byte) {
		_ = lastRuntimeError(log)
	})
}

func TestParseProcCgroup(t *testing.T) {
	v1 := "12:pids:/berth/abc\n11:memory:/berth/abc\n10:cpu,cpuacct:/berth/abc\n1:name=systemd:/x\n0::/berth/abc\n"
	mem, v2 := parseProcCgroup([]byte(v1))
	if mem != "/berth/abc" || v2 != "/berth/abc" {
		t.Errorf("hybrid: memory %q, v2 %q", mem, v2)
	}
	mem, v2 = parseProcCgroup([]byte("0::/system.slice/x.scope\n"))
	if mem != "" || v2 != "/system.slice/x.scope" {
		t.Errorf("v2: memory %q, v2 %q", mem, v2)
	}
	mem, _ = parseProcCgroup([]byte("3:memory:/../../etc\n"))
	if mem != "/etc" {
		t.Errorf("a path climbing out must be cleaned: %q", mem)
	}
}

func TestOOMKills(t *testing.T) {
	if n := oomKills([]byte("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")); n != 3 {
		t.Errorf("v1: %d", n)
	}
	if n := oomKills([]byte("low 0\nhigh 0\nmax 5\noom 2\noom_kill 1\noom_group_kill 0\n")); n != 1 {
		t.Errorf("v2: %d", n)
	}
	if n := oomKills([]byte("oom_kill x\n")); n != 0 {
		t.Errorf("garbage: %d", n)
	}
}

func FuzzCgroupFiles(f *testing.F) {
	f.Add([]byte("11:memory:/a\n0::/b\n"))
	f.Add([]byte("oom_kill 4\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		mem, v2 := parseProcCgroup(data)
		for _, p := range []string{mem, v2} {
			if p != "" && (!strings.HasPrefix(p, "/") || strings.Contains(p, "..")) {
				t.Fatalf("unsafe cgroup path %q", p)
			}
		}
		if oomKills(data) < 0 {
			t.Fatal("negative count")
		}
	})
}

func TestParseRights(t *testing.T) {
	oob := syscall.UnixRights(7, 9)
	fds, err := parseRights(oob)
	if err != nil || len(fds) != 2 || fds[0] != 7 || fds[1] != 9 {
		t.Errorf("parseRights = %v, %v", fds, err)
	}
	if _, err := parseRights(nil); err == nil {
		t.Error("no message accepted")
	}
}

// The control messages come from the runtime: parse, never panic. (The
// descriptors are only numbers here; nothing is closed.)
func FuzzParseRights(f *testing.F) {
	f.Add(syscall.UnixRights(5))
	f.Add(append(syscall.UnixRights(5), syscall.UnixRights(6, 7)...))
	hdr := make([]byte, syscall.CmsgSpace(4))
	binary.LittleEndian.PutUint64(hdr, 1<<40)
	f.Add(hdr)
	f.Fuzz(func(t *testing.T, oob []byte) {
		_, _ = parseRights(oob)
	})
}

func TestParseHandoff(t *testing.T) {
	h := handoff{Pid: 42, Listener: 5, Stdout: 6, Stderr: 7, Stdin: -1, Runtime: "/usr/sbin/runc", OOMBase: 2}
	got, err := parseHandoff(string(h.encode()))
	if err != nil || got != h {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, bad := range []string{`{}`, `{"pid":1,"listener":1,"stdout":6,"runtime":"r"}`, `{"pid":1,"listener":5,"stdout":6,"stderr":2,"runtime":"r"}`, `x`} {
		if _, err := parseHandoff(bad); err == nil {
			t.Errorf("parseHandoff(%s) accepted", bad)
		}
	}
}

func FuzzParseHandoff(f *testing.F) {
	f.Add(`{"pid":42,"listener":5,"stdout":6,"stderr":7,"stdin":-1,"runtime":"/r","oom_base":0}`)
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parseHandoff(s)
		if err != nil {
			return
		}
		if h.Pid <= 0 || h.Listener < 3 || h.Stdout < 3 {
			t.Fatalf("accepted %+v", h)
		}
	})
}

func TestExitCode(t *testing.T) {
	// Wait statuses as the kernel encodes them.
	if c, s := exitCode(syscall.WaitStatus(3 << 8)); c != 3 || s != 0 {
		t.Errorf("exit 3: %d %d", c, s)
	}
	if c, s := exitCode(syscall.WaitStatus(9)); c != 137 || s != 9 {
		t.Errorf("SIGKILL: %d %d", c, s)
	}
}

func socketpair(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// A client that stops reading is dropped once its queue is full; the
// container's output (the broadcaster's writer) never waits for it, and
// other clients get everything.
func TestSlowClientDropped(t *testing.T) {
	b := newBroadcaster(false, nil, nil)
	slowConn, _ := socketpair(t) // the peer never reads
	fastConn, fastPeer := socketpair(t)
	slow := newClient(slowConn, true, true)
	fast := newClient(fastConn, true, false)
	b.add(slow)
	b.add(fast)
	go slow.writeLoop()
	go fast.writeLoop()

	received := make(chan int)
	go func() {
		n := 0
		buf := make([]byte, 64<<10)
		for {
			m, err := fastPeer.Read(buf)
			n += m
			if err != nil {
				received <- n
				return
			}
		}
	}()
	chunk := make([]byte, 32<<10)
	const chunks = 256 // 8 MiB: more than the slow client's queue and socket buffers
	done := make(chan struct{})
	go func() {
		for i := 0; i < chunks; i++ {
			b.write(streamStdout, chunk)
			// Pace the output to the fast client (a container's output
			// rate is whatever it is; this one is as fast as the fast
			// client reads, which the slow one does not).
			for {
				fast.mu.Lock()
				n := len(fast.pending)
				fast.mu.Unlock()
				if n < 256<<10 {
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
		b.write(streamStderr, []byte("not for the fast one"))
		for _, c := range b.close() {
			<-c.done
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("output blocked on a client that does not read")
	}
	slow.mu.Lock()
	dropped := slow.dropped
	slow.mu.Unlock()
	if !dropped {
		t.Error("the stuck client was not dropped")
	}
	if n := <-received; n != chunks*(len(chunk)+8) {
		t.Errorf("fast client got %d bytes, want %d", n, chunks*(len(chunk)+8))
	}
}

// Output produced while the container is created is held back and then
// delivered; what the runtime printed on stderr is available as its
// error message.
func TestHeldOutput(t *testing.T) {
	var out, errs strings.Builder
	b := newBroadcaster(false, &out, &errs)
	b.held = true
	b.write(streamStderr, []byte("runtime says hi\n"))
	if errs.Len() != 0 {
		t.Fatal("held output reached the log")
	}
	if got := string(b.heldText()); got != "runtime says hi\n" {
		t.Errorf("heldText = %q", got)
	}
	b.release()
	b.write(streamStdout, []byte("container\n"))
	if errs.String() != "runtime says hi\n" || out.String() != "container\n" {
		t.Errorf("log got stdout %q stderr %q", out.String(), errs.String())
	}
}
