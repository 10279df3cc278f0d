package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// Registry is a `berth registry serve` process on 127.0.0.1 started for a
// test; it is stopped and its storage removed at the end of the test.
type Registry struct {
	BinDir string
	Root   string // storage
	Addr   string // 127.0.0.1:port
	Args   []string
	log    string
	cmd    *exec.Cmd
	done   chan struct{}
}

// StartRegistry starts a registry on a free loopback port with its storage
// in a fresh temp directory.
func StartRegistry(t testing.TB, binDir string, args ...string) *Registry {
	t.Helper()
	dir, err := os.MkdirTemp("", "breg-")
	if err != nil {
		t.Fatal(err)
	}
	r := &Registry{BinDir: binDir, Root: filepath.Join(dir, "root"), Args: args, log: filepath.Join(dir, "registry.log")}
	t.Cleanup(func() {
		r.Stop(t)
		os.RemoveAll(dir)
	})
	r.Start(t, "127.0.0.1:0")
	return r
}

var listeningRe = regexp.MustCompile(`msg="registry listening" addr=(\S+)`)

// Start runs the registry on addr ("127.0.0.1:0" for a free port; a restart
// passes the previous Addr) and waits until it listens.
func (r *Registry) Start(t testing.TB, addr string) {
	t.Helper()
	logf, err := os.OpenFile(r.log, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"registry", "serve", "--addr", addr, "--root", r.Root}, r.Args...)
	r.cmd = exec.Command(filepath.Join(r.BinDir, "berth"), args...)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	logf.Close()
	r.done = make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	for {
		b, _ := os.ReadFile(r.log)
		if m := listeningRe.FindSubmatch(b); m != nil {
			r.Addr = string(m[1])
			return
		}
		select {
		case <-r.done:
			t.Fatalf("registry exited: %s", b)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop terminates the registry (SIGTERM, then SIGKILL) and waits for it.
func (r *Registry) Stop(t testing.TB) {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	select {
	case <-r.done:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(15 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
}

// Kill9 kills the registry without letting it finish anything.
func (r *Registry) Kill9(t testing.TB) {
	_ = r.cmd.Process.Kill()
	<-r.done
}

// Log is the registry's output.
func (r *Registry) Log() string {
	b, _ := os.ReadFile(r.log)
	return fmt.Sprintf("registry log:\n%s", b)
}
