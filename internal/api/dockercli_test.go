package api

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// dockerCLI finds the stock docker CLI, or skips.
func dockerCLI(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/local/bin/docker"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("docker"); err == nil {
		return p
	}
	t.Skip("the stock docker CLI is not installed (/usr/local/bin/docker)")
	return ""
}

type cliEnv struct {
	fakes
	docker string
	host   string
	config string
}

// newCLIEnv serves the router on a unix socket as the daemon does.
func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	docker := dockerCLI(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	l, err := Listen("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	f, b := newFakes()
	log, _ := testLogger(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = Serve(ctx, l, NewRouter(b, RouterOptions{Logger: log, Version: "test"}))
	}()
	t.Cleanup(func() { cancel(); <-done })
	cfg := filepath.Join(dir, "docker-config")
	if err := os.Mkdir(cfg, 0o700); err != nil {
		t.Fatal(err)
	}
	return &cliEnv{fakes: f, docker: docker, host: "unix://" + sock, config: cfg}
}

// run runs the docker CLI against the test daemon.
func (e *cliEnv) run(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.docker, args...)
	cmd.Env = []string{
		"DOCKER_HOST=" + e.host,
		"DOCKER_CONFIG=" + e.config,
		"DOCKER_CLI_HINTS=false",
		"HOME=" + e.config,
		"PATH=/usr/local/bin:/usr/bin:/bin",
	}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("docker %v: %v", args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("docker %v timed out; stdout %q stderr %q", args, out.String(), errb.String())
	}
	return out.String(), errb.String(), code
}

func TestDockerCLI(t *testing.T) {
	e := newCLIEnv(t)

	t.Run("version", func(t *testing.T) {
		out, errOut, code := e.run(t, "", "version", "--format", "{{.Server.Version}} {{.Server.APIVersion}} {{.Server.MinAPIVersion}} {{.Server.Os}}")
		if code != 0 || strings.TrimSpace(out) != "0.0.0-test 1.56 1.24 linux" {
			t.Errorf("docker version: %d %q %q", code, out, errOut)
		}
		out, errOut, code = e.run(t, "", "version")
		if code != 0 || !strings.Contains(out, "Server: berth test engine") || !strings.Contains(out, "1.56 (minimum version 1.24)") {
			t.Errorf("docker version: %d\n%s\n%s", code, out, errOut)
		}
	})

	t.Run("run --rm", func(t *testing.T) {
		before := len(e.c.Events())
		out, errOut, code := e.run(t, "", "run", "--rm", "busybox", "exit", "3", "hello from berth", "err:to stderr")
		if code != 3 || out != "hello from berth\n" || !strings.Contains(errOut, "to stderr") {
			t.Errorf("docker run --rm: exit %d stdout %q stderr %q", code, out, errOut)
		}
		// The CLI attaches and registers the wait before it starts.
		want := []string{"create", "attach", "wait:removed", "start"}
		if got := e.c.Events()[before:]; !slices.Equal(got, want) {
			t.Errorf("calls %v, want %v", got, want)
		}
		if !e.c.lastCreate.HostConfig.AutoRemove || e.c.lastCreate.APIVersion != "1.50" {
			t.Errorf("create request %+v / API %s", e.c.lastCreate.HostConfig, e.c.lastCreate.APIVersion)
		}
		e.c.mu.Lock()
		left := len(e.c.byID)
		e.c.mu.Unlock()
		if left != 0 {
			t.Errorf("%d containers left after run --rm", left)
		}
	})

	t.Run("run -i stdin", func(t *testing.T) {
		out, errOut, code := e.run(t, "line one\nline two\n", "run", "--rm", "-i", "busybox", "cat")
		if code != 0 || out != "line one\nline two\n" {
			t.Errorf("docker run -i: exit %d stdout %q stderr %q", code, out, errOut)
		}
	})

	t.Run("run -t", func(t *testing.T) {
		out, errOut, code := e.run(t, "", "run", "--rm", "-t", "busybox", "exit", "4", "raw tty output")
		if code != 4 || out != "raw tty output\n" {
			t.Errorf("docker run -t: exit %d stdout %q stderr %q", code, out, errOut)
		}
	})

	t.Run("ps -a", func(t *testing.T) {
		for _, n := range []string{"alpha", "beta"} {
			if _, errOut, code := e.run(t, "", "create", "--name", n, "busybox", "sleep"); code != 0 {
				t.Fatalf("docker create: %d %s", code, errOut)
			}
		}
		if _, errOut, code := e.run(t, "", "start", "alpha"); code != 0 {
			t.Fatalf("docker start: %d %s", code, errOut)
		}
		out, errOut, code := e.run(t, "", "ps", "-a")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "CONTAINER ID   IMAGE") ||
			!strings.Contains(lines[1], "alpha") || !strings.Contains(lines[1], "Up 1 second") || !strings.Contains(lines[2], "beta") {
			t.Errorf("docker ps -a: %d\n%s\n%s", code, out, errOut)
		}
		out, _, code = e.run(t, "", "ps", "--format", "{{.Names}}", "--filter", "status=running")
		if code != 0 || strings.TrimSpace(out) != "alpha" || !slices.Equal(e.c.lastList.Filters["status"], []string{"running"}) {
			t.Errorf("docker ps --filter: %d %q %v", code, out, e.c.lastList.Filters)
		}
		if _, errOut, code := e.run(t, "", "stop", "alpha"); code != 0 {
			t.Errorf("docker stop: %d %s", code, errOut)
		}
		if _, errOut, code := e.run(t, "", "rm", "alpha", "beta"); code != 0 {
			t.Errorf("docker rm: %d %s", code, errOut)
		}
	})

	t.Run("errors", func(t *testing.T) {
		_, errOut, code := e.run(t, "", "rm", "nope")
		if code != 1 || !strings.Contains(errOut, "Error response from daemon: No such container: nope") {
			t.Errorf("docker rm nope: %d %q", code, errOut)
		}
		_, errOut, code = e.run(t, "", "start", "nope")
		if code != 1 || !strings.Contains(errOut, "No such container: nope") {
			t.Errorf("docker start nope: %d %q", code, errOut)
		}
	})

	t.Run("logs", func(t *testing.T) {
		if _, errOut, code := e.run(t, "", "create", "--name", "chatty", "busybox"); code != 0 {
			t.Fatalf("docker create: %d %s", code, errOut)
		}
		e.c.mu.Lock()
		c, _ := e.c.get("chatty")
		c.logs = []LogMessage{{Stream: "stdout", Line: []byte("out line\n")}, {Stream: "stderr", Line: []byte("err line\n")}}
		e.c.mu.Unlock()
		out, errOut, code := e.run(t, "", "logs", "chatty")
		if code != 0 || out != "out line\n" || errOut != "err line\n" {
			t.Errorf("docker logs: %d %q %q", code, out, errOut)
		}
	})

	t.Run("images", func(t *testing.T) {
		tarball := filepath.Join(t.TempDir(), "rootfs.tar")
		if err := os.WriteFile(tarball, makeTar(t, map[string]string{"bin/sh": "x"}), 0o644); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := e.run(t, "", "import", tarball, "berth/test:imported")
		if code != 0 || !strings.HasPrefix(strings.TrimSpace(out), "sha256:") {
			t.Fatalf("docker import: %d %q %q", code, out, errOut)
		}
		out, errOut, code = e.run(t, "", "images", "--format", "{{.Repository}}:{{.Tag}}")
		if code != 0 || !strings.Contains(out, "berth/test:imported") {
			t.Errorf("docker images: %d %q %q", code, out, errOut)
		}
		saved := filepath.Join(t.TempDir(), "saved.tar")
		if _, errOut, code := e.run(t, "", "save", "-o", saved, "berth/test:imported"); code != 0 {
			t.Errorf("docker save: %d %q", code, errOut)
		}
		out, errOut, code = e.run(t, "", "rmi", "berth/test:imported")
		if code != 0 || !strings.Contains(out, "Untagged: berth/test:imported") {
			t.Errorf("docker rmi: %d %q %q", code, out, errOut)
		}
	})

	t.Run("create honours the CLI config", func(t *testing.T) {
		out, errOut, code := e.run(t, "", "create", "-e", "A=1", "--name", "cfg", "-t", "busybox", "sleep")
		if code != 0 || len(strings.TrimSpace(out)) != 64 {
			t.Fatalf("docker create: %d %q %q", code, out, errOut)
		}
		cfg := e.c.lastCreate.Config
		if !slices.Equal(cfg.Env, []string{"A=1"}) || !cfg.Tty || cfg.Image != "busybox" || !slices.Equal([]string(cfg.Cmd), []string{"sleep"}) {
			t.Errorf("config %+v", cfg)
		}
	})
}
