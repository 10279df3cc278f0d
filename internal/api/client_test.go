package api

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// syncBuffer is a log sink shared by handler goroutines and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testLogger logs into a buffer that is printed if the test fails (t.Log
// cannot be used: attach goroutines may log after the test returned).
func testLogger(t *testing.T) (*slog.Logger, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("router log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

type testEnv struct {
	fakes
	srv *httptest.Server
	cli *client.Client
	log *syncBuffer
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	f, b := newFakes()
	log, buf := testLogger(t)
	srv := httptest.NewServer(NewRouter(b, RouterOptions{Logger: log, Version: "test"}))
	t.Cleanup(srv.Close)
	cli, err := client.New(client.WithHost("tcp://" + srv.Listener.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return &testEnv{fakes: f, srv: srv, cli: cli, log: buf}
}

// testCtx bounds a test so that a missing flush fails instead of hanging.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (e *testEnv) create(t *testing.T, name string, cfg *container.Config, hc *container.HostConfig) string {
	t.Helper()
	res, err := e.cli.ContainerCreate(testCtx(t), client.ContainerCreateOptions{Name: name, Config: cfg, HostConfig: hc})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return res.ID
}

// waitAttached waits until the fake container has n attach streams
// registered, so that a start does not race the attach.
func (e *testEnv) waitAttached(t *testing.T, id string, n int) {
	t.Helper()
	ctx := testCtx(t)
	for {
		e.c.mu.Lock()
		c, err := e.c.get(id)
		got := 0
		if err == nil {
			got = len(c.attachers)
		}
		e.c.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("container %s: %d attach streams, want %d", id, got, n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestClientPingVersionInfo(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	ping, err := e.cli.Ping(ctx, client.PingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ping.APIVersion != APIVersion || ping.OSType != "linux" || ping.Experimental || ping.BuilderVersion != "1" {
		t.Errorf("ping = %+v", ping)
	}
	v, err := e.cli.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Version != "0.0.0-test" || v.APIVersion != APIVersion || v.MinAPIVersion != MinAPIVersion {
		t.Errorf("version = %+v", v)
	}
	info, err := e.cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Info.ID != "FAKE:ID" || info.Info.NCPU != 2 {
		t.Errorf("info = %+v", info.Info)
	}
}

func TestClientCreateStartInspectRemove(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	res, err := e.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:   "web",
		Config: &container.Config{Image: "busybox", Cmd: []string{"sleep"}, Env: []string{"A=1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.ID) != 64 {
		t.Fatalf("create = %+v", res)
	}
	lc := e.c.lastCreate
	if lc.Name != "web" || lc.APIVersion != APIVersion || lc.Config.Image != "busybox" || lc.HostConfig == nil || lc.NetworkingConfig == nil {
		t.Errorf("backend got %+v", lc)
	}

	if _, err := e.cli.ContainerStart(ctx, "web", client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	// Starting a running container is a 304, which is not an error.
	if _, err := e.cli.ContainerStart(ctx, "web", client.ContainerStartOptions{}); err != nil {
		t.Fatalf("second start: %v", err)
	}
	in, err := e.cli.ContainerInspect(ctx, res.ID[:12], client.ContainerInspectOptions{Size: true})
	if err != nil {
		t.Fatal(err)
	}
	if in.Container.ID != res.ID || in.Container.Name != "/web" || !in.Container.State.Running || in.Container.SizeRw == nil {
		t.Errorf("inspect = %+v", in.Container)
	}

	_, err = e.cli.ContainerRemove(ctx, "web", client.ContainerRemoveOptions{})
	if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "container is running") {
		t.Errorf("remove running = %v, want conflict", err)
	}
	if _, err := e.cli.ContainerRemove(ctx, "web", client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
		t.Fatal(err)
	}
	if !e.c.lastRemove.Force || !e.c.lastRemove.RemoveVolumes {
		t.Errorf("remove options = %+v", e.c.lastRemove)
	}
	_, err = e.cli.ContainerInspect(ctx, "web", client.ContainerInspectOptions{})
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "No such container: web") {
		t.Errorf("inspect removed = %v, want not found", err)
	}
}

func TestClientAttachWaitStartOrdering(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	id := e.create(t, "", &container.Config{Image: "busybox", Cmd: []string{"exit", "3", "hello", "err:oops", "world"}}, nil)

	att, err := e.cli.ContainerAttach(ctx, id, client.ContainerAttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer att.Close()
	if mt, ok := att.MediaType(); !ok || mt != types.MediaTypeMultiplexedStream {
		t.Errorf("attach media type = %q, %v", mt, ok)
	}
	// ContainerWait returns once the response header is in: if the router
	// held it back until the exit, this would block (and the test time
	// out) because the container is only started below.
	wait := e.cli.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	e.waitAttached(t, id, 1)
	if _, err := e.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, att.Reader); err != nil {
		t.Fatalf("demux attach stream: %v", err)
	}
	if stdout.String() != "hello\nworld\n" || stderr.String() != "oops\n" {
		t.Errorf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	select {
	case r := <-wait.Result:
		if r.StatusCode != 3 || r.Error != nil {
			t.Errorf("wait = %+v", r)
		}
	case err := <-wait.Error:
		t.Fatalf("wait: %v", err)
	}
	want := []string{"create", "attach", "wait:next-exit", "start"}
	if got := e.c.Events(); !slices.Equal(got, want) {
		t.Errorf("backend calls %v, want %v", got, want)
	}
}

func TestClientAttachStdinHalfClose(t *testing.T) {
	for _, tty := range []bool{false, true} {
		t.Run(map[bool]string{false: "multiplexed", true: "tty"}[tty], func(t *testing.T) {
			e := newTestEnv(t)
			ctx := testCtx(t)
			id := e.create(t, "", &container.Config{Image: "busybox", Cmd: []string{"cat"}, Tty: tty, OpenStdin: true}, nil)
			att, err := e.cli.ContainerAttach(ctx, id, client.ContainerAttachOptions{Stream: true, Stdin: true, Stdout: true, Stderr: true})
			if err != nil {
				t.Fatal(err)
			}
			defer att.Close()
			wantType := types.MediaTypeMultiplexedStream
			if tty {
				wantType = types.MediaTypeRawStream
			}
			if mt, _ := att.MediaType(); mt != wantType {
				t.Errorf("media type %q, want %q", mt, wantType)
			}
			wait := e.cli.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
			e.waitAttached(t, id, 1)
			if _, err := e.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(att.Conn, "ping\npong\n"); err != nil {
				t.Fatal(err)
			}
			// Half-close: stdin ends, the output must still arrive.
			if err := att.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if tty {
				_, err = io.Copy(&out, att.Reader)
			} else {
				_, err = stdcopy.StdCopy(&out, io.Discard, att.Reader)
			}
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != "ping\npong\n" {
				t.Errorf("output %q", out.String())
			}
			select {
			case r := <-wait.Result:
				if r.StatusCode != 0 {
					t.Errorf("exit %d", r.StatusCode)
				}
			case err := <-wait.Error:
				t.Fatal(err)
			}
		})
	}
}

func TestClientLogs(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	id := e.create(t, "logger", &container.Config{Image: "busybox", Cmd: []string{"sleep"}}, nil)
	ts := time.Date(2024, 5, 6, 7, 8, 9, 123000000, time.UTC)
	e.c.mu.Lock()
	e.c.byID[id].logs = []LogMessage{
		{Stream: "stdout", Line: []byte("one\n"), Time: ts},
		{Stream: "stderr", Line: []byte("two\n"), Time: ts.Add(time.Second), Attrs: map[string]string{"b": "x y", "a": "1"}},
		{Stream: "stdout", Line: []byte("three\n"), Time: ts.Add(2 * time.Second)},
	}
	e.c.mu.Unlock()

	rc, err := e.cli.ContainerLogs(ctx, "logger", client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true, Tail: "2", Since: "1700000000.5"})
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if want := "2024-05-06T07:08:11.123000000Z three\n"; stdout.String() != want {
		t.Errorf("stdout %q, want %q", stdout.String(), want)
	}
	if want := "2024-05-06T07:08:10.123000000Z two\n"; stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
	lo := e.c.lastLogs
	if lo.Tail != 2 || !lo.Since.Equal(time.Unix(1700000000, 500000000)) || !lo.Until.IsZero() || !lo.Timestamps || lo.Follow {
		t.Errorf("backend options %+v", lo)
	}

	// Details and stderr only.
	rc, err = e.cli.ContainerLogs(ctx, "logger", client.ContainerLogsOptions{ShowStderr: true, Details: true})
	if err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	stderr.Reset()
	if _, err := stdcopy.StdCopy(&stdout, &stderr, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if stdout.Len() != 0 || stderr.String() != "a=1,b=x+y two\n" {
		t.Errorf("details: stdout %q stderr %q", stdout.String(), stderr.String())
	}

	// --follow: the first line must arrive while the stream stays open.
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rc, err = e.cli.ContainerLogs(fctx, "logger", client.ContainerLogsOptions{ShowStdout: true, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	hdr := make([]byte, 8)
	if _, err := io.ReadFull(rc, hdr); err != nil {
		t.Fatalf("first frame of a followed log: %v", err)
	}
	line := make([]byte, int(hdr[4])<<24|int(hdr[5])<<16|int(hdr[6])<<8|int(hdr[7]))
	if _, err := io.ReadFull(rc, line); err != nil || hdr[0] != byte(stdcopy.Stdout) || string(line) != "one\n" {
		t.Errorf("first followed frame %v %q %v", hdr, line, err)
	}
	cancel()
}

func TestClientLogsTTYRaw(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	id := e.create(t, "", &container.Config{Image: "busybox", Tty: true}, nil)
	e.c.mu.Lock()
	e.c.byID[id].logs = []LogMessage{{Stream: "stdout", Line: []byte("raw line\r\n")}}
	e.c.mu.Unlock()
	rc, err := e.cli.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil || string(b) != "raw line\r\n" {
		t.Errorf("tty logs %q, %v", b, err)
	}
}

func TestClientListWithFilters(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	e.create(t, "a", &container.Config{Image: "busybox", Cmd: []string{"sleep"}}, nil)
	e.create(t, "b", &container.Config{Image: "busybox", Cmd: []string{"exit", "0"}}, nil)
	e.create(t, "c", &container.Config{Image: "busybox", Cmd: []string{"sleep"}}, nil)
	for _, n := range []string{"a", "c"} {
		if _, err := e.cli.ContainerStart(ctx, n, client.ContainerStartOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 3 {
		t.Errorf("list all: %d containers", len(res.Items))
	}
	res, err = e.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("status", "running").Add("name", "c")})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 1 || res.Items[0].Names[0] != "/c" {
		t.Errorf("filtered list = %+v", res.Items)
	}
	if got := e.c.lastList.Filters; !slices.Equal(got["status"], []string{"running"}) || !slices.Equal(got["name"], []string{"c"}) {
		t.Errorf("backend filters %v", got)
	}
	res, err = e.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 2 || e.c.lastList.Limit != 2 {
		t.Errorf("limit 2: %d items, backend limit %d", len(res.Items), e.c.lastList.Limit)
	}
	pr, err := e.cli.ContainerPrune(ctx, client.ContainerPruneOptions{Filters: make(client.Filters).Add("until", "10m")})
	if err != nil {
		t.Fatal(err)
	}
	if len(pr.Report.ContainersDeleted) != 1 || !slices.Equal(e.c.lastPrune["until"], []string{"10m"}) {
		t.Errorf("prune = %+v, filters %v", pr.Report, e.c.lastPrune)
	}
}

func TestClientStopKillRestartRenameResize(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	id := e.create(t, "svc", &container.Config{Image: "busybox", Cmd: []string{"sleep"}}, nil)
	// Stopping a stopped container is a 304, not an error.
	if _, err := e.cli.ContainerStop(ctx, id, client.ContainerStopOptions{}); err != nil {
		t.Fatalf("stop created: %v", err)
	}
	if _, err := e.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	timeout := 5
	if _, err := e.cli.ContainerStop(ctx, id, client.ContainerStopOptions{Signal: "SIGINT", Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	if s := e.c.lastStop; s.Signal != "SIGINT" || s.Timeout == nil || *s.Timeout != 5 {
		t.Errorf("stop options %+v", s)
	}
	if _, err := e.cli.ContainerRestart(ctx, id, client.ContainerRestartOptions{}); err != nil {
		t.Fatal(err)
	}
	if s := e.c.lastStop; s.Signal != "" || s.Timeout != nil {
		t.Errorf("restart options %+v", s)
	}
	if _, err := e.cli.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
		t.Fatal(err)
	}
	if e.c.lastKill != "SIGKILL" {
		t.Errorf("kill signal %q", e.c.lastKill)
	}
	_, err := e.cli.ContainerKill(ctx, id, client.ContainerKillOptions{})
	if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "cannot kill container: "+id) {
		t.Errorf("kill stopped = %v", err)
	}
	if _, err := e.cli.ContainerRename(ctx, id, client.ContainerRenameOptions{NewName: "svc2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cli.ContainerInspect(ctx, "svc2", client.ContainerInspectOptions{}); err != nil {
		t.Errorf("inspect renamed: %v", err)
	}
	if _, err := e.cli.ContainerResize(ctx, "svc2", client.ContainerResizeOptions{Height: 40, Width: 120}); err != nil {
		t.Fatal(err)
	}
	if e.c.lastResize != [2]uint{40, 120} {
		t.Errorf("resize %v", e.c.lastResize)
	}
}

func TestClientErrorsAreTyped(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	_, err := e.cli.ContainerCreate(ctx, client.ContainerCreateOptions{Config: &container.Config{Image: "missing"}})
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "No such image: missing:latest") {
		t.Errorf("create from a missing image = %v", err)
	}
	e.create(t, "dup", &container.Config{Image: "busybox"}, nil)
	_, err = e.cli.ContainerCreate(ctx, client.ContainerCreateOptions{Name: "dup", Config: &container.Config{Image: "busybox"}})
	if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), `The container name "/dup" is already in use`) {
		t.Errorf("duplicate name = %v", err)
	}
	_, err = e.cli.ContainerStart(ctx, "nope", client.ContainerStartOptions{})
	if !errdefs.IsNotFound(err) {
		t.Errorf("start unknown = %v", err)
	}
	_, err = e.cli.ImageRemove(ctx, "nope:1", client.ImageRemoveOptions{})
	if !errdefs.IsNotFound(err) {
		t.Errorf("remove unknown image = %v", err)
	}
	_, err = e.cli.ImagePull(ctx, "denied", client.ImagePullOptions{})
	if !errdefs.IsPermissionDenied(err) || !strings.Contains(err.Error(), "pull access denied") {
		t.Errorf("pull denied = %v", err)
	}
}

// readJSONStream decodes a JSON message stream.
func readJSONStream(t *testing.T, r io.Reader) []map[string]any {
	t.Helper()
	var msgs []map[string]any
	dec := json.NewDecoder(r)
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return msgs
		}
		if err != nil {
			t.Fatalf("JSON message stream: %v", err)
		}
		msgs = append(msgs, m)
	}
}

func TestClientPullStreams(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	resp, err := e.cli.ImagePull(ctx, "localhost:5000/team/app:v2", client.ImagePullOptions{RegistryAuth: "e30="})
	if err != nil {
		t.Fatal(err)
	}
	msgs := readJSONStream(t, resp)
	resp.Close()
	if len(msgs) != 2 || !strings.Contains(msgs[1]["status"].(string), "Downloaded newer image") {
		t.Errorf("pull messages %v", msgs)
	}
	if p := e.i.lastPull; p.Tag != "v2" || p.RegistryAuth != "e30=" {
		t.Errorf("pull options %+v", p)
	}
	// An error after progress was sent travels in the stream.
	resp, err = e.cli.ImagePull(ctx, "midfail", client.ImagePullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	msgs = readJSONStream(t, resp)
	resp.Close()
	last := msgs[len(msgs)-1]
	detail, _ := last["errorDetail"].(map[string]any)
	if len(msgs) != 2 || detail["message"] != "connection reset while downloading layer" || last["error"] != "connection reset while downloading layer" {
		t.Errorf("mid-stream error messages %v", msgs)
	}
}

func makeTar(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n]))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestClientImageImportLoadSaveTagRemove(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)

	rootfs := makeTar(t, map[string]string{"bin/busybox": "not really busybox"})
	rc, err := e.cli.ImageImport(ctx, client.ImageImportSource{Source: bytes.NewReader(rootfs), SourceName: "-"},
		"localhost:5000/team/base", client.ImageImportOptions{Tag: "v1", Message: "hello", Changes: []string{"ENV A=1", `CMD ["sh"]`}})
	if err != nil {
		t.Fatal(err)
	}
	msgs := readJSONStream(t, rc)
	rc.Close()
	if len(msgs) != 1 || !strings.HasPrefix(msgs[0]["status"].(string), "sha256:") {
		t.Fatalf("import messages %v", msgs)
	}
	id := msgs[0]["status"].(string)
	if o := e.i.lastImport; o.Repo != "localhost:5000/team/base" || o.Tag != "v1" || o.Message != "hello" || !slices.Equal(o.Changes, []string{"ENV A=1", `CMD ["sh"]`}) {
		t.Errorf("import options %+v", o)
	}

	// A name with a registry port and slashes routes to the right handler.
	in, err := e.cli.ImageInspect(ctx, "localhost:5000/team/base:v1")
	if err != nil {
		t.Fatal(err)
	}
	if in.ID != id {
		t.Errorf("inspect id %s, want %s", in.ID, id)
	}
	hist, err := e.cli.ImageHistory(ctx, "localhost:5000/team/base:v1")
	if err != nil || len(hist.Items) != 1 || hist.Items[0].ID != id {
		t.Errorf("history %+v, %v", hist, err)
	}
	if _, err := e.cli.ImageTag(ctx, client.ImageTagOptions{Source: "localhost:5000/team/base:v1", Target: "busybox:mine"}); err != nil {
		t.Fatal(err)
	}
	list, err := e.cli.ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || !slices.Equal(list.Items[0].RepoTags, []string{"docker.io/library/busybox:mine", "localhost:5000/team/base:v1"}) || list.Items[0].RepoDigests == nil {
		t.Errorf("image list %+v", list.Items)
	}
	if !e.i.lastList.ContainerCount || !e.i.lastList.Digests {
		t.Errorf("image list options %+v", e.i.lastList)
	}

	// Save two names as one tarball, then load it back.
	save, err := e.cli.ImageSave(ctx, []string{"localhost:5000/team/base:v1", "docker.io/library/busybox:mine"})
	if err != nil {
		t.Fatal(err)
	}
	saved, err := io.ReadAll(save)
	save.Close()
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(saved))
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	if !slices.Equal(names, []string{"localhost:5000/team/base:v1", "docker.io/library/busybox:mine"}) {
		t.Errorf("saved tar entries %v", names)
	}
	_, err = e.cli.ImageSave(ctx, []string{"nope:1"})
	if !errdefs.IsNotFound(err) {
		t.Errorf("save unknown = %v, want not found", err)
	}

	load, err := e.cli.ImageLoad(ctx, bytes.NewReader(makeTar(t, map[string]string{"loaded:1": "x"})), client.ImageLoadWithQuiet(false))
	if err != nil {
		t.Fatal(err)
	}
	msgs = readJSONStream(t, load)
	load.Close()
	if len(msgs) != 1 || msgs[0]["stream"] != "Loaded image: loaded:1\n" || e.i.lastLoad {
		t.Errorf("load messages %v (quiet %v)", msgs, e.i.lastLoad)
	}
	load, err = e.cli.ImageLoad(ctx, strings.NewReader("this is not a tarball, it is much longer than a tar header would be......................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................."))
	if err != nil {
		t.Fatal(err)
	}
	msgs = readJSONStream(t, load)
	load.Close()
	if len(msgs) != 1 || msgs[0]["errorDetail"] == nil || msgs[0]["error"] == nil {
		t.Errorf("load of garbage: %v", msgs)
	}

	rm, err := e.cli.ImageRemove(ctx, "docker.io/library/busybox:mine", client.ImageRemoveOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rm.Items) != 1 || rm.Items[0].Untagged != "docker.io/library/busybox:mine" || e.i.lastRemove != [2]bool{true, true} {
		t.Errorf("remove = %+v (options %v)", rm.Items, e.i.lastRemove)
	}
	rm, err = e.cli.ImageRemove(ctx, id, client.ImageRemoveOptions{PruneChildren: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rm.Items) != 2 || rm.Items[1].Deleted != id || e.i.lastRemove != [2]bool{false, false} {
		t.Errorf("remove by id = %+v (options %v)", rm.Items, e.i.lastRemove)
	}
	pr, err := e.cli.ImagePrune(ctx, client.ImagePruneOptions{})
	if err != nil || pr.Report.SpaceReclaimed != 42 {
		t.Errorf("prune %+v %v", pr, err)
	}
}

// TestClientTooOldVersion drives the router with a client pinned to an API
// version below the minimum.
func TestClientTooOldVersion(t *testing.T) {
	e := newTestEnv(t)
	cli, err := client.New(client.WithHost("tcp://"+e.srv.Listener.Addr().String()), client.WithAPIVersion("1.23"))
	if err != nil {
		t.Skipf("client refuses API 1.23 itself: %v", err)
	}
	defer cli.Close()
	_, err = cli.ServerVersion(testCtx(t), client.ServerVersionOptions{})
	if err == nil || !strings.Contains(err.Error(), "client version 1.23 is too old") {
		t.Errorf("old client: %v", err)
	}
}
