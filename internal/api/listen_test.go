package api

import (
	"context"
	"crypto/tls"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

func TestListenUnix(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "berth", "api.sock")
	gid := -1
	if os.Geteuid() == 0 {
		gid = 4242 // any gid will do for the owner check
	}
	l, err := ListenWith("unix://"+path, ListenOptions{SocketGID: gid})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
	}
	if st := fi.Sys().(*syscall.Stat_t); gid >= 0 && (st.Uid != 0 || int(st.Gid) != gid) {
		t.Errorf("socket owner %d:%d, want 0:%d", st.Uid, st.Gid, gid)
	}
	// Nothing but the socket is left in its directory.
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("socket directory holds %d entries, want 1", len(ents))
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the renamed socket: %v", err)
	}
	c.Close()

	// A live socket is not taken over.
	_, err = Listen("unix://" + path)
	if !errdefs.IsConflict(err) {
		t.Errorf("second listen = %v, want conflict", err)
	}
	// Closing removes the socket under its real name.
	l.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket left after close: %v", err)
	}
}

func TestListenTCPPolicy(t *testing.T) {
	for _, addr := range []string{"tcp://0.0.0.0:2375", "tcp://:2375", "tcp://10.1.2.3", "tcp://example.com:2375", "tcp://[::]:2375"} {
		err := CheckAddress(addr, ListenOptions{})
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "refusing to listen on "+addr) {
			t.Errorf("CheckAddress(%q) = %v, want a refusal", addr, err)
		}
		// TLS without client verification is no better.
		if err := CheckAddress(addr, ListenOptions{TLS: &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven}}); err == nil {
			t.Errorf("CheckAddress(%q) with unverified TLS accepted", addr)
		}
		if err := CheckAddress(addr, ListenOptions{AllowInsecureTCP: true}); err != nil {
			t.Errorf("CheckAddress(%q) forced = %v", addr, err)
		}
		if err := CheckAddress(addr, ListenOptions{TLS: &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert}}); err != nil {
			t.Errorf("CheckAddress(%q) with --tlsverify = %v", addr, err)
		}
	}
	for _, addr := range []string{"tcp://127.0.0.1:2375", "tcp://localhost:2375", "tcp://[::1]:2375", "tcp://127.0.0.5"} {
		if err := CheckAddress(addr, ListenOptions{}); err != nil {
			t.Errorf("CheckAddress(%q) = %v, want loopback accepted", addr, err)
		}
	}
	// The refusal comes before anything is bound.
	if _, err := ListenWith("tcp://0.0.0.0:0", ListenOptions{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("ListenWith on 0.0.0.0 = %v, want a refusal", err)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.sock")
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close() // a daemon that died: the file stays, nobody listens
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket missing: %v", err)
	}
	l, err := Listen("unix://" + path)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	l.Close()
}

func TestListenRefusesNonSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.sock")
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen("unix://" + path); !errdefs.IsAlreadyExists(err) {
		t.Errorf("listen over a regular file = %v, want already exists", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "precious" {
		t.Errorf("file touched: %q %v", b, err)
	}
}

func TestListenAddresses(t *testing.T) {
	l, err := Listen("tcp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	for _, addr := range []string{"", "/run/x.sock", "unix://relative.sock", "udp://127.0.0.1:1", "tcp://", "fd://3"} {
		if _, err := Listen(addr); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Listen(%q) = %v, want invalid argument", addr, err)
		}
	}
}

// TestServeShutdown: the daemon's ctx ends; a pending wait ends, Serve
// returns, the socket goes away, and a hijacked attach stream keeps
// working until its container is done.
func TestServeShutdown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.sock")
	l, err := Listen("unix://" + path)
	if err != nil {
		t.Fatal(err)
	}
	f, b := newFakes()
	log, _ := testLogger(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, l, NewRouter(b, RouterOptions{Logger: log, Version: "test"})) }()

	cli, err := client.New(client.WithHost("unix://" + path))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	tctx := testCtx(t)
	res, err := cli.ContainerCreate(tctx, client.ContainerCreateOptions{Config: &container.Config{Image: "busybox", Cmd: []string{"cat"}, OpenStdin: true}})
	if err != nil {
		t.Fatal(err)
	}
	sleeper, err := cli.ContainerCreate(tctx, client.ContainerCreateOptions{Config: &container.Config{Image: "busybox", Cmd: []string{"sleep"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ContainerStart(tctx, sleeper.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	att, err := cli.ContainerAttach(tctx, res.ID, client.ContainerAttachOptions{Stream: true, Stdin: true, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	defer att.Close()
	e := &testEnv{fakes: f}
	e.waitAttached(t, res.ID, 1)
	if _, err := cli.ContainerStart(tctx, res.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	wait := cli.ContainerWait(tctx, sleeper.ID, client.ContainerWaitOptions{})

	stop()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-tctx.Done():
		t.Fatal("Serve did not return after its context ended")
	}
	select {
	case r := <-wait.Result:
		t.Errorf("wait got a result %+v from a container that never exited", r)
	case <-wait.Error:
	case <-tctx.Done():
		t.Fatal("pending wait not ended by the shutdown")
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket still there after shutdown: %v", err)
	}

	// The hijacked stream outlives the server.
	if _, err := io.WriteString(att.Conn, "still here\n"); err != nil {
		t.Fatal(err)
	}
	_ = att.CloseWrite()
	_ = att.Conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var out syncBuffer
	if _, err := stdcopy.StdCopy(&out, io.Discard, att.Reader); err != nil {
		t.Fatal(err)
	}
	if out.String() != "still here\n" {
		t.Errorf("attach after shutdown: %q", out.String())
	}
}

// TestAttachClientHangup: over the unix socket, a client that closes the
// connection cancels its attach, one that only closes its write side
// keeps streaming.
func TestAttachClientHangup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.sock")
	l, err := Listen("unix://" + path)
	if err != nil {
		t.Fatal(err)
	}
	f, b := newFakes()
	log, _ := testLogger(t)
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, l, NewRouter(b, RouterOptions{Logger: log, Version: "test"})) }()
	t.Cleanup(func() { stop(); <-served })
	cli, err := client.New(client.WithHost("unix://" + path))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	tctx := testCtx(t)
	res, err := cli.ContainerCreate(tctx, client.ContainerCreateOptions{Config: &container.Config{Image: "busybox", Cmd: []string{"sleep"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ContainerStart(tctx, res.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	e := &testEnv{fakes: f}
	halfClosed, err := cli.ContainerAttach(tctx, res.ID, client.ContainerAttachOptions{Stream: true, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	defer halfClosed.Close()
	e.waitAttached(t, res.ID, 1)
	if err := halfClosed.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	leaving, err := cli.ContainerAttach(tctx, res.ID, client.ContainerAttachOptions{Stream: true, Stdin: true, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	e.waitAttached(t, res.ID, 2)
	leaving.Close()

	cancelled := func() int {
		n := 0
		for _, ev := range f.c.Events() {
			if ev == "attach-cancelled" {
				n++
			}
		}
		return n
	}
	for cancelled() == 0 {
		select {
		case <-tctx.Done():
			t.Fatal("the attach of a client that hung up was not cancelled")
		case <-time.After(5 * time.Millisecond):
		}
	}
	f.c.mu.Lock()
	left := len(f.c.byID[res.ID].attachers)
	f.c.mu.Unlock()
	if cancelled() != 1 || left != 1 {
		t.Fatalf("%d attaches cancelled, %d left; want the half-closed one to stay", cancelled(), left)
	}
	// The half-closed stream ends normally with the container.
	if _, err := cli.ContainerStop(tctx, res.ID, client.ContainerStopOptions{}); err != nil {
		t.Fatal(err)
	}
	_ = halfClosed.Conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(io.Discard, halfClosed.Reader); err != nil {
		t.Errorf("half-closed stream: %v", err)
	}
}
