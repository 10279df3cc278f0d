package shim_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/shim"
	"github.com/berth-engine/berth/internal/shim/wire"
	"github.com/containerd/errdefs"
)

// fakeShim serves canned answers on a unix socket: the client's side of
// the protocol is pure logic, tested here without a container.
func fakeShim(t *testing.T, answer func(req wire.Request, conn net.Conn)) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "bsc")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); os.RemoveAll(dir) })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				line, err := bufio.NewReader(conn).ReadBytes('\n')
				if err != nil {
					return
				}
				req, err := wire.ParseRequest(line)
				if err != nil {
					t.Errorf("client sent %q: %v", line, err)
					return
				}
				answer(req, conn)
			}()
		}
	}()
	return sock
}

func TestClientErrorKinds(t *testing.T) {
	sock := fakeShim(t, func(req wire.Request, conn net.Conn) {
		var resp wire.Response
		switch req.Op {
		case wire.OpKill:
			resp = wire.Response{Error: "container x is not running", Kind: wire.KindNotFound}
		case wire.OpStart:
			resp = wire.Response{Error: "cannot start", Kind: wire.KindFailedPrecondition}
		case wire.OpResize:
			resp = wire.Response{Error: "OCI runtime said no"}
		case wire.OpState:
			resp = wire.Response{State: &wire.State{Pid: 9, Status: wire.StatusRunning}}
		}
		conn.Write(wire.AppendResponse(nil, resp))
	})
	c := shim.Dial(sock)
	ctx := context.Background()
	if err := c.Kill(ctx, 15, false); !errdefs.IsNotFound(err) {
		t.Errorf("Kill: %v, want not found", err)
	}
	if err := c.Start(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Start: %v, want failed precondition", err)
	}
	if err := c.Resize(ctx, 1, 1); err == nil || err.Error() != "OCI runtime said no" {
		t.Errorf("Resize: %v", err)
	}
	if st, err := c.State(ctx); err != nil || st.Pid != 9 || st.Status != shim.StatusRunning {
		t.Errorf("State: %+v, %v", st, err)
	}
}

func TestClientShimGone(t *testing.T) {
	// No socket at all.
	c := shim.Dial(filepath.Join(t.TempDir(), "none.sock"))
	if _, err := c.Wait(context.Background()); !errdefs.IsUnavailable(err) {
		t.Errorf("Wait without a shim: %v, want unavailable", err)
	}
	// A shim that dies while the client waits.
	sock := fakeShim(t, func(req wire.Request, conn net.Conn) {
		time.Sleep(20 * time.Millisecond)
	})
	if _, err := shim.Dial(sock).Wait(context.Background()); !errdefs.IsUnavailable(err) {
		t.Errorf("Wait on a shim that went away: %v, want unavailable", err)
	}
	// Garbage instead of a response.
	sock = fakeShim(t, func(req wire.Request, conn net.Conn) { io.WriteString(conn, "hello\n") })
	if err := shim.Dial(sock).Start(context.Background()); err == nil || errdefs.IsUnavailable(err) {
		t.Errorf("Start with a garbled answer: %v", err)
	}
}

func TestClientContext(t *testing.T) {
	// Cancelled once the shim holds the request, so that the error can
	// only come from the wait, never from a slow dial on a loaded machine.
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sock := fakeShim(t, func(req wire.Request, conn net.Conn) { cancel(); <-block })
	if _, err := shim.Dial(sock).Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait cancelled while the shim holds it: %v", err)
	}
}

// Attach hands over the connection right after the handshake: bytes that
// follow the response belong to the stream, and the ctx of the call does
// not bound the stream.
func TestClientAttachHandshake(t *testing.T) {
	sock := fakeShim(t, func(req wire.Request, conn net.Conn) {
		if req.Op != wire.OpAttach || !req.Stdin || !req.Stdout || req.Stderr {
			t.Errorf("attach request %+v", req)
		}
		// Response and the first output in one write.
		conn.Write(append(wire.AppendResponse(nil, wire.Response{}), "raw output"...))
		time.Sleep(100 * time.Millisecond)
		conn.Write([]byte(" and more"))
	})
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := shim.Dial(sock).Attach(ctx, shim.AttachOptions{Stdin: true, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cancel()
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "raw output and more" {
		t.Errorf("stream = %q, %v", got, err)
	}
	if _, ok := conn.(interface{ CloseWrite() error }); !ok {
		t.Errorf("attach connection %T cannot half-close", conn)
	}
}
