package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// engine is one container engine under test, running on private state that
// the runner created and removes again.
type engine interface {
	// Name is the engine's short name: berth, docker or podman.
	Name() string
	// Start brings the engine up (daemon, if it has one) and imports the
	// busybox rootfs tarball at tarPath as busybox:latest.
	Start(ctx context.Context, tarPath string) error
	// CLI is a command for the engine's own CLI with args, on the engine's
	// private state.
	CLI(ctx context.Context, args ...string) *exec.Cmd
	// RunFlags are flags every `run` of the jobs adds on this engine, right
	// after "run" (podman has no daemon to carry a cgroup parent).
	RunFlags() []string
	// Claim says how surely p, a process below the runner, belongs to this
	// engine (its daemon, a helper, a per-container monitor): claimNone,
	// claimByName or claimStrong. ownerOf settles competing claims.
	Claim(procs map[int]procInfo, p procInfo) int
	// Stop removes every container, stops the engine and removes all it
	// created: processes, mounts, cgroups, files. It is safe to call after
	// a failed or partial Start, and more than once.
	Stop(ctx context.Context) error
	// Info describes the engine for the report.
	Info() engineInfo
}

// engineInfo is the report's description of an engine.
type engineInfo struct {
	Version      string   `json:"version"`
	CLI          string   `json:"cli"`
	CLIVersion   string   `json:"cli_version,omitempty"`
	StateDir     string   `json:"state_dir"`
	CgroupParent string   `json:"cgroup_parent"`
	DaemonArgs   []string `json:"daemon_args,omitempty"`
	GlobalArgs   []string `json:"global_args,omitempty"`
	Error        string   `json:"error,omitempty"`
}

// base holds what all three engines share: a private state directory, a
// cgroup parent, the CLI and its environment, an optional daemon and the
// host paths the engine may create outside its state directory.
type base struct {
	name         string
	dir          string // private state; removed by Stop
	cgroupParent string // e.g. /berth-bench-123-docker
	cliPath      string
	globalArgs   []string // put before every CLI subcommand
	env          []string // the CLI's (and daemon's) environment
	ownNames     []string // executable names only this engine uses
	daemon       *daemonProc
	footprint    footprint
	// hostState, if set, removes the engine's entries from shared host
	// directories (podman's /run/runc/<id>) before the footprint is cleaned.
	hostState func() error
	info      engineInfo
	stopOnce  sync.Once
	stopErr   error
}

func newBase(name, root, cliPath string) (*base, error) {
	dir := filepath.Join(root, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%s: state dir: %w", name, err)
	}
	b := &base{
		name:         name,
		dir:          dir,
		cgroupParent: "/" + filepath.Base(root) + "-" + name,
		cliPath:      cliPath,
	}
	b.info = engineInfo{CLI: cliPath, StateDir: dir, CgroupParent: b.cgroupParent}
	return b, nil
}

func (b *base) Name() string { return b.name }

func (b *base) Info() engineInfo {
	i := b.info
	i.GlobalArgs = b.globalArgs
	return i
}

func (b *base) CLI(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, b.cliPath, append(append([]string(nil), b.globalArgs...), args...)...)
	cmd.Env = b.env
	// On interrupt (or the per-command timeout) the CLI gets SIGTERM first,
	// a chance to undo a half-made container (a SIGKILLed `podman run`
	// orphans its conmon); SIGKILL follows after WaitDelay, which also keeps
	// a CLI whose child holds its pipes from hanging the runner.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func (b *base) RunFlags() []string { return nil }

// How surely a process belongs to an engine.
const (
	claimNone   = iota
	claimByName // its executable has a name only this engine uses
	claimStrong // it descends from the engine's daemon or names its state dir
)

// Claim: a process belongs to this engine for sure when it descends from
// the engine's daemon, or when its command line names the engine's private
// state directory (shims and conmon carry their socket or bundle path); it
// probably does when its executable has a name only this engine uses.
func (b *base) Claim(procs map[int]procInfo, p procInfo) int {
	if b.daemon != nil && (p.PID == b.daemon.pid || descendsFrom(procs, p.PID, b.daemon.pid)) {
		return claimStrong
	}
	if strings.Contains(p.Cmdline, b.dir+"/") {
		return claimStrong
	}
	for _, n := range b.ownNames {
		if p.Exe == n {
			return claimByName
		}
	}
	return claimNone
}

// allEngines are the engines of this run, started or not.
var allEngines []engine

// ownerOf names the engine p belongs to ("" for none): the strongest claim
// wins, so a name match never takes a process that another engine's daemon
// or state directory accounts for.
func ownerOf(procs map[int]procInfo, p procInfo) string {
	best, owner := claimNone, ""
	for _, e := range allEngines {
		if c := e.Claim(procs, p); c > best {
			best, owner = c, e.Name()
		}
	}
	return owner
}

// cliOutput runs the CLI and returns its trimmed stdout, or an error that
// carries stderr.
func (b *base) cliOutput(ctx context.Context, args ...string) (string, error) {
	r := runCmd(b.CLI(ctx, args...), nil)
	if r.Err != nil {
		return "", r.Error(b.name, args)
	}
	return strings.TrimSpace(r.Stdout), nil
}

// importImage feeds the busybox tarball to `<cli> import`.
func (b *base) importImage(ctx context.Context, tarPath string, args ...string) error {
	f, err := os.Open(tarPath)
	if err != nil {
		return err
	}
	defer f.Close()
	r := runCmd(b.CLI(ctx, args...), f)
	if r.Err != nil {
		return r.Error(b.name, args)
	}
	return nil
}

// removeAllContainers force-removes every container the engine knows about.
func (b *base) removeAllContainers(ctx context.Context) error {
	out, err := b.cliOutput(ctx, "ps", "-aq")
	if err != nil {
		return err
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		return nil
	}
	_, err = b.cliOutput(ctx, append([]string{"rm", "-f"}, ids...)...)
	return err
}

// teardown is the common part of Stop, after the engine-specific steps
// (removing containers, stopping the daemon): it kills whatever of the
// engine is still running below the runner, then removes mounts, cgroups,
// the state directory and the host paths the engine created.
func (b *base) teardown() error {
	var errs []error
	if b.daemon != nil {
		if err := b.daemon.stop(30 * time.Second); err != nil {
			errs = append(errs, fmt.Errorf("%s: stop daemon: %w", b.name, err))
		}
	}
	if err := killOwned(b.name); err != nil {
		errs = append(errs, fmt.Errorf("%s: kill leftover processes: %w", b.name, err))
	}
	if err := removeCgroups(b.cgroupParent); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", b.name, err))
	}
	if err := unmountUnder(b.dir); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", b.name, err))
	} else if err := os.RemoveAll(b.dir); err != nil {
		errs = append(errs, fmt.Errorf("%s: remove state: %w", b.name, err))
	}
	if b.hostState != nil {
		if err := b.hostState(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b.name, err))
		}
	}
	if err := b.footprint.cleanup(b.dir); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", b.name, err))
	}
	return errors.Join(errs...)
}

// cmdResult is what one CLI invocation did, timed around the whole process.
type cmdResult struct {
	Stdout, Stderr string
	Dur            time.Duration
	Err            error
}

// Error describes a failed invocation with its stderr.
func (r cmdResult) Error(engine string, args []string) error {
	msg := strings.TrimSpace(r.Stderr)
	if len(msg) > 400 {
		msg = msg[:400] + "…"
	}
	return fmt.Errorf("%s %s: %w: %s", engine, strings.Join(args, " "), r.Err, msg)
}

// runCmd starts cmd, waits for it and times the whole process: fork, exec,
// the CLI's work and its exit.
func runCmd(cmd *exec.Cmd, stdin *os.File) cmdResult {
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = stdin
	}
	t0 := time.Now()
	err := cmd.Start()
	if err == nil {
		err = cmd.Wait()
	}
	d := time.Since(t0)
	return cmdResult{Stdout: out.String(), Stderr: errb.String(), Dur: d, Err: err}
}

// daemonProc is a daemon the runner started. It runs in its own process
// group so that a Ctrl-C on the terminal reaches the runner (which then
// cleans up in order) but not the daemon.
type daemonProc struct {
	name string
	cmd  *exec.Cmd
	pid  int
	log  string
	done chan struct{}
}

func startDaemon(name, path string, args, env []string, logPath string) (*daemonProc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemonProc{name: name, cmd: cmd, pid: cmd.Process.Pid, log: logPath, done: make(chan struct{})}
	children.add(d.pid)
	go func() {
		_ = cmd.Wait()
		children.remove(d.pid)
		close(d.done)
	}()
	return d, nil
}

// waitReady polls the daemon's Engine API socket until /_ping answers.
func (d *daemonProc) waitReady(ctx context.Context, socket string, timeout time.Duration) error {
	c := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", socket)
		}},
	}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-d.done:
			return fmt.Errorf("%s exited during start-up (%v); log: %s\n%s", d.name, d.cmd.ProcessState, d.log, tail(d.log, 15))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := c.Get("http://daemon/_ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer /_ping on %s within %v; log: %s\n%s", d.name, socket, timeout, d.log, tail(d.log, 15))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM, then SIGKILL after grace.
func (d *daemonProc) stop(grace time.Duration) error {
	select {
	case <-d.done:
		return nil
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return nil
	case <-time.After(grace):
	}
	slog.Warn("daemon ignored SIGTERM; killing it", "daemon", d.name, "pid", d.pid)
	_ = d.cmd.Process.Kill()
	<-d.done
	return fmt.Errorf("%s did not stop within %v of SIGTERM", d.name, grace)
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// firstLine is the first line of a command's output, for version strings.
func firstLine(path string, args ...string) string {
	out, err := exec.Command(path, args...).Output()
	if err != nil {
		return ""
	}
	l, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return l
}

// cleanEnv is the runner's environment without variables that would point
// an engine or its CLI at someone else's state.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "DOCKER_"), strings.HasPrefix(k, "BERTH_"),
			strings.HasPrefix(k, "CONTAINERS_"), strings.HasPrefix(k, "CONTAINER_"),
			k == "TMPDIR", k == "XDG_RUNTIME_DIR", k == "XDG_CONFIG_HOME":
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}
