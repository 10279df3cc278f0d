package shim_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/shim"
	"github.com/containerd/errdefs"
)

// healthRuntime is a fake runtime whose exec runs $state/probe (a shell
// script the test rewrites) as the probe, detached, as runc's exec
// --detach does.
func healthRuntime(t *testing.T) (rt, probe string) {
	rt = fakeRuntime(t, `
case $cmd in
create) sleep 1000 </dev/null >/dev/null 2>&1 &
        echo $! > $pidfile; echo $! > $state/pid; exit 0 ;;
start)  exit 0 ;;
exec)   # Detached as runc's is: the probe's first parent (setsid) exits
        # at once without reaping it, so the shim (a subreaper) is its
        # parent; a shell would reap it (dash waits for any child).
        setsid -f sh -c "echo \$\$ > $pidfile.tmp; mv $pidfile.tmp $pidfile; exec sh $state/probe" </dev/null
        # Bounded, and gone with the test's directory: an exec the shim
        # gave up on must not leave this loop running after the test.
        i=0; while [ ! -s $pidfile ] && [ -d $state ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done
        [ -s $pidfile ] ;;
kill)   kill -9 $(cat $state/pid); exit 0 ;;
delete) kill -9 $(cat $state/pid) 2>/dev/null; exit 0 ;;
esac
exit 0`)
	return rt, filepath.Join(filepath.Dir(rt), "probe")
}

// notices listens where shims send health notices.
func notices(t *testing.T) (string, <-chan shim.HealthNotice) {
	dir, err := os.MkdirTemp("", "hn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "h.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch := make(chan shim.HealthNotice, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				close(ch)
				return
			}
			if notice, err := shim.ParseHealthNotice(buf[:n]); err == nil {
				ch <- notice
			}
		}
	}()
	return path, ch
}

func writeProbe(t *testing.T, path, script string) {
	t.Helper()
	// Atomically: the shim's runtime may be reading it.
	if err := os.WriteFile(path+".tmp", []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// nextNotice waits for a notice; the bound only turns a hang into a
// failure.
func nextNotice(t *testing.T, ch <-chan shim.HealthNotice) shim.HealthNotice {
	t.Helper()
	select {
	case n, ok := <-ch:
		if !ok {
			t.Fatal("notice socket closed")
		}
		return n
	case <-time.After(30 * time.Second):
		t.Fatal("no health notice")
	}
	return shim.HealthNotice{}
}

// The shim probes on its schedule, tells the daemon's socket only of
// status changes, answers OpHealth with the last results, kills a probe
// at its timeout, and leaves its state in the bundle at the exit.
func TestShimHealthCheck(t *testing.T) {
	requireRuntime(t)
	rt, probe := healthRuntime(t)
	writeProbe(t, probe, "echo failing; exit 3\n")
	sock, ch := notices(t)
	c := fakeContainer(t, rt)
	if err := shim.WriteHealthConfig(c.cfg.Bundle, shim.HealthConfig{
		Interval: 20 * time.Millisecond, Timeout: 300 * time.Millisecond, StartInterval: time.Second,
		Retries: 2, Notify: sock,
	}, []byte(`{"args":["probe"]}`)); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	client, pid := c.spawn(ctx)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if _, err := client.Health(ctx); !errdefs.IsNotFound(err) {
		t.Fatalf("Health before the start: %v", err)
	}
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if n := nextNotice(t, ch); n.ID != c.cfg.ID || n.Status != shim.HealthUnhealthy || n.FailingStreak != 2 {
		t.Fatalf("first notice: %+v", n)
	}
	st, err := client.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != shim.HealthUnhealthy || st.FailingStreak < 2 || len(st.Log) < 2 || st.Log[0].ExitCode != 3 || st.Log[0].Output != "failing\n" {
		t.Fatalf("health: %+v", st)
	}

	writeProbe(t, probe, "echo ok\n")
	if n := nextNotice(t, ch); n.Status != shim.HealthHealthy || n.FailingStreak != 0 {
		t.Fatalf("notice after the check passes: %+v", n)
	}
	eventually(t, "5 results kept", func() bool {
		st, err = client.Health(ctx)
		return err == nil && len(st.Log) == 5 && st.Log[0].Output == "ok\n"
	})
	// Only changes are sent: nothing more while it stays healthy.
	select {
	case n := <-ch:
		t.Fatalf("notice without a change: %+v", n)
	case <-time.After(100 * time.Millisecond):
	}

	// A probe that hangs is killed at the timeout.
	// A unique duration marks this test's probes.
	marker := fmt.Sprintf("1000.%09d", time.Now().UnixNano()%1e9)
	writeProbe(t, probe, "exec sleep "+marker+"\n")
	if n := nextNotice(t, ch); n.Status != shim.HealthUnhealthy {
		t.Fatalf("notice after hung probes: %+v", n)
	}
	st, err = client.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := st.Log[len(st.Log)-1]
	if last.ExitCode != -1 || last.Output != "Health check exceeded timeout (300ms)" || last.End.Sub(last.Start) < 300*time.Millisecond {
		t.Fatalf("timed-out probe: %+v", last)
	}
	writeProbe(t, probe, "exit 0\n")
	eventually(t, "hung probes killed", func() bool { return len(procsWith(marker)) == 0 })

	// At the exit the state stays in the bundle.
	if n := nextNotice(t, ch); n.Status != shim.HealthHealthy {
		t.Fatalf("notice: %+v", n)
	}
	if err := client.Kill(ctx, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if _, err := waitExit(ctx, c.cfg, client); err != nil {
		t.Fatal(err)
	}
	saved, err := shim.ReadHealthState(c.cfg.Bundle)
	if err != nil || saved.Status != shim.HealthHealthy || len(saved.Log) != 5 {
		t.Fatalf("saved state: %+v %v", saved, err)
	}
}

// Within the start period failures do not count while the container is
// starting.
func TestShimHealthStartPeriod(t *testing.T) {
	requireRuntime(t)
	rt, probe := healthRuntime(t)
	writeProbe(t, probe, "exit 1\n")
	sock, ch := notices(t)
	c := fakeContainer(t, rt)
	if err := shim.WriteHealthConfig(c.cfg.Bundle, shim.HealthConfig{
		Interval: time.Hour, Timeout: time.Second, StartPeriod: time.Hour, StartInterval: 20 * time.Millisecond,
		Retries: 1, Notify: sock,
	}, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	client, pid := c.spawn(ctx)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var st shim.HealthState
	eventually(t, "failures in the start period", func() bool {
		var err error
		st, err = client.Health(ctx)
		return err == nil && len(st.Log) >= 3
	})
	if st.Status != shim.HealthStarting || st.FailingStreak != 0 || st.Log[0].ExitCode != 1 {
		t.Fatalf("health in the start period: %+v", st)
	}
	// The first success ends "starting"; from then on failures count.
	writeProbe(t, probe, "exit 0\n")
	if n := nextNotice(t, ch); n.Status != shim.HealthHealthy {
		t.Fatalf("notice: %+v", n)
	}
	if err := client.Kill(ctx, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if _, err := waitExit(ctx, c.cfg, client); err != nil {
		t.Fatal(err)
	}
}

// procsWith lists processes whose command line contains s.
func procsWith(s string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), s) {
			out = append(out, e.Name())
		}
	}
	return out
}
