package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
)

// fakeOps is an ExecBackend, ContainerOpsBackend and EventsBackend.
type fakeOps struct {
	mu      sync.Mutex
	execs   map[string]container.ExecCreateRequest
	resized [2]uint
	events  []events.Message
	gotOpts EventsOptions
}

func (f *fakeOps) ExecCreate(ctx context.Context, ctr string, req container.ExecCreateRequest) (string, error) {
	if ctr != "c1" {
		return "", errdefs.ErrNotFound.WithMessage("No such container: " + ctr)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.execs["e1"] = req
	return "e1", nil
}

func (f *fakeOps) ExecStart(ctx context.Context, id string, opts ExecStartOptions) error {
	f.mu.Lock()
	req, ok := f.execs[id]
	f.mu.Unlock()
	if !ok {
		return errdefs.ErrNotFound.WithMessage("No such exec instance: " + id)
	}
	if opts.Detach {
		return nil
	}
	in, out, err := opts.Hijack(!req.Tty)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(in)
	_, _ = NewStdWriter(out, stdcopy.Stdout).Write(bytes.ToUpper(b))
	_, _ = NewStdWriter(out, stdcopy.Stderr).Write([]byte("err"))
	return nil
}

func (f *fakeOps) ExecResize(ctx context.Context, id string, h, w uint) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resized = [2]uint{h, w}
	return nil
}

func (f *fakeOps) ExecInspect(ctx context.Context, id string) (*container.ExecInspectResponse, error) {
	code := 3
	return &container.ExecInspectResponse{ID: id, ExitCode: &code, ContainerID: "c1"}, nil
}

func (f *fakeOps) Pause(ctx context.Context, id string) error { return nil }
func (f *fakeOps) Unpause(ctx context.Context, id string) error {
	return errdefs.ErrConflict.WithMessage("container c1 is not paused")
}
func (f *fakeOps) Top(ctx context.Context, id, psArgs string) (*container.TopResponse, error) {
	return &container.TopResponse{Titles: []string{"PID", psArgs}, Processes: [][]string{{"1", "sleep"}}}, nil
}
func (f *fakeOps) Stats(ctx context.Context, id string, opts StatsOptions, send func(*container.StatsResponse) error) error {
	n := 1
	if opts.Stream {
		n = 3
	}
	for i := 0; i < n; i++ {
		if err := send(&container.StatsResponse{ID: id, PidsStats: container.PidsStats{Current: uint64(i + 1)}}); err != nil {
			return err
		}
	}
	return nil
}
func (f *fakeOps) Update(ctx context.Context, id string, cfg container.UpdateConfig) (*container.UpdateResponse, error) {
	if cfg.Memory == 1 {
		return nil, errdefs.ErrInvalidArgument.WithMessage("Minimum memory limit allowed is 6MB")
	}
	return &container.UpdateResponse{}, nil
}
func (f *fakeOps) Events(ctx context.Context, opts EventsOptions) ([]events.Message, <-chan events.Message, error) {
	f.mu.Lock()
	f.gotOpts = opts
	f.mu.Unlock()
	return f.events, nil, nil
}

func newOpsEnv(t *testing.T) (*fakeOps, *client.Client) {
	t.Helper()
	_, b := newFakes()
	f := &fakeOps{execs: map[string]container.ExecCreateRequest{}, events: []events.Message{
		{Type: events.ContainerEventType, Action: events.ActionStart, Actor: events.Actor{ID: "c1", Attributes: map[string]string{"image": "busybox"}}, Time: 1, TimeNano: 1e9},
	}}
	b.Exec, b.ContainerOps, b.Events = f, f, f
	log, _ := testLogger(t)
	srv := httptest.NewServer(NewRouter(b, RouterOptions{Logger: log, Version: "test"}))
	t.Cleanup(srv.Close)
	cli, err := client.New(client.WithHost("tcp://" + srv.Listener.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return f, cli
}

func TestClientExec(t *testing.T) {
	f, cli := newOpsEnv(t)
	ctx := testCtx(t)
	if _, err := cli.ExecCreate(ctx, "nosuch", client.ExecCreateOptions{Cmd: []string{"true"}}); !errdefs.IsNotFound(err) {
		t.Fatalf("exec in an unknown container: %v", err)
	}
	if _, err := cli.ExecCreate(ctx, "c1", client.ExecCreateOptions{}); err == nil || !strings.Contains(err.Error(), "No exec command specified") {
		t.Fatalf("exec without a command: %v", err)
	}
	res, err := cli.ExecCreate(ctx, "c1", client.ExecCreateOptions{Cmd: []string{"cat"}, AttachStdin: true, AttachStdout: true, Env: []string{"A=1"}})
	if err != nil || res.ID != "e1" {
		t.Fatalf("create: %v %v", res, err)
	}
	if f.execs["e1"].Env[0] != "A=1" {
		t.Fatalf("create body: %+v", f.execs["e1"])
	}
	att, err := cli.ExecAttach(ctx, "e1", client.ExecAttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = att.Conn.Write([]byte("hello"))
	_ = att.CloseWrite()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, att.Reader); err != nil {
		t.Fatal(err)
	}
	att.Close()
	if stdout.String() != "HELLO" || stderr.String() != "err" {
		t.Fatalf("streams: %q %q", stdout.String(), stderr.String())
	}
	if _, err := cli.ExecResize(ctx, "e1", client.ExecResizeOptions{Height: 30, Width: 100}); err != nil || f.resized != [2]uint{30, 100} {
		t.Fatalf("resize: %v %v", f.resized, err)
	}
	insp, err := cli.ExecInspect(ctx, "e1", client.ExecInspectOptions{})
	if err != nil || insp.ExitCode != 3 || insp.ContainerID != "c1" {
		t.Fatalf("inspect: %+v %v", insp, err)
	}
	if _, err := cli.ExecStart(ctx, "e1", client.ExecStartOptions{Detach: true}); err != nil {
		t.Fatalf("detached start: %v", err)
	}
	if _, err := cli.ExecStart(ctx, "nosuch", client.ExecStartOptions{Detach: true}); !errdefs.IsNotFound(err) {
		t.Fatalf("start of an unknown exec: %v", err)
	}
}

func TestClientOpsAndEvents(t *testing.T) {
	f, cli := newOpsEnv(t)
	ctx := testCtx(t)
	if _, err := cli.ContainerPause(ctx, "c1", client.ContainerPauseOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ContainerUnpause(ctx, "c1", client.ContainerUnpauseOptions{}); !errdefs.IsConflict(err) {
		t.Fatalf("unpause conflict: %v", err)
	}
	top, err := cli.ContainerTop(ctx, "c1", client.ContainerTopOptions{Arguments: []string{"aux"}})
	if err != nil || top.Titles[1] != "aux" {
		t.Fatalf("top: %+v %v", top, err)
	}
	st, err := cli.ContainerStats(ctx, "c1", client.ContainerStatsOptions{Stream: true})
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(st.Body)
	n := 0
	for {
		var s container.StatsResponse
		if err := dec.Decode(&s); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
		n++
	}
	st.Body.Close()
	if n != 3 {
		t.Fatalf("streamed stats: %d", n)
	}
	if _, err := cli.ContainerUpdate(ctx, "c1", client.ContainerUpdateOptions{Resources: &container.Resources{Memory: 1}}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("update error: %v", err)
	}
	until := time.Now().Add(time.Second)
	ev := cli.Events(ctx, client.EventsListOptions{Since: "1", Until: strconvUnix(until), Filters: make(client.Filters).Add("type", "container")})
	select {
	case m := <-ev.Messages:
		if m.Action != events.ActionStart || m.Actor.ID != "c1" {
			t.Fatalf("event: %+v", m)
		}
	case err := <-ev.Err:
		t.Fatal(err)
	}
	f.mu.Lock()
	got := f.gotOpts
	f.mu.Unlock()
	if got.Since.Unix() != 1 || got.Filters["type"][0] != "container" {
		t.Fatalf("events options: %+v", got)
	}
	if _, err := cli.ContainerStats(ctx, "c1", client.ContainerStatsOptions{}); err != nil {
		t.Fatal(err)
	}
}

func strconvUnix(t time.Time) string { return t.Format(time.RFC3339) }
