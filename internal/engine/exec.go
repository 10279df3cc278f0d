package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/container"
	"github.com/berth-engine/berth/internal/oci"
	"github.com/berth-engine/berth/internal/runtime"
	"github.com/berth-engine/berth/internal/stringid"
	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	containertypes "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Exec design: the daemon runs `<runtime> exec --detach --pid-file P
// --process F [--tty --console-socket S] ID` itself, so the shim stays as
// lean as it is. The runtime joins the container's namespaces and cgroup
// and exits; the exec'd process is then re-parented to the daemon, a child
// subreaper (set in NewContainerService), which reaps it through a pidfd
// (os.Process on Go ≥ 1.23) and so owns its exit code. Its stdio are pipes
// (or the pty master received over the console socket) that the daemon
// copies to and from the hijacked API connection. Exec processes live in
// the container's pid namespace, so they die with the container's init.
// They do not survive a daemon restart's streams: the process keeps
// running, but its output has nowhere to go.

// maxExitedExecs bounds the exited execs kept per container for inspect.
const maxExitedExecs = 64

// ioGrace is how long the output of an exited exec may keep flowing (a
// background child holding its stdout) before the stream is closed.
const ioGrace = 2 * time.Second

// execProc is one exec instance.
type execProc struct {
	id  string
	cid string
	req containertypes.ExecCreateRequest

	mu       sync.Mutex
	started  bool
	running  bool
	exitCode *int
	pid      int
	console  *os.File
	done     chan struct{} // closed once the process has exited (or failed to start)
	finished time.Time
	// quiet execs (health probes) publish no events.
	quiet bool
}

// execTable holds the exec instances of all containers.
type execTable struct {
	mu sync.Mutex
	m  map[string]*execProc
}

func (t *execTable) get(id string) (*execProc, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.m[id]; ok {
		return p, nil
	}
	return nil, errdefs.ErrNotFound.WithMessage("No such exec instance: " + id)
}

func (t *execTable) add(p *execProc) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]*execProc{}
	}
	t.m[p.id] = p
	// Bound what finished execs of this container cost.
	var exited []*execProc
	for _, q := range t.m {
		if q.cid == p.cid && q.exitCode != nil {
			exited = append(exited, q)
		}
	}
	if len(exited) > maxExitedExecs {
		slices.SortFunc(exited, func(a, b *execProc) int { return a.finished.Compare(b.finished) })
		for _, q := range exited[:len(exited)-maxExitedExecs] {
			delete(t.m, q.id)
		}
	}
}

// dropContainer forgets the execs of a removed container.
func (t *execTable) dropContainer(cid string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, p := range t.m {
		if p.cid == cid {
			delete(t.m, id)
		}
	}
}

// killContainer SIGKILLs the running execs of a container that exited:
// they are in its pid namespace and already gone, unless it shares the
// host's (--pid=host). A running exec is our unreaped child, so its pid
// cannot have been reused.
func (t *execTable) killContainer(cid string) {
	t.mu.Lock()
	var procs []*execProc
	for _, p := range t.m {
		if p.cid == cid {
			procs = append(procs, p)
		}
	}
	t.mu.Unlock()
	for _, p := range procs {
		p.mu.Lock()
		if p.running && p.pid > 0 {
			_ = unix.Kill(p.pid, unix.SIGKILL)
		}
		p.mu.Unlock()
	}
}

// runningCheck is docker's conflict for an exec in a container that cannot
// take one.
func runningCheck(c *container.Container) error {
	switch c.State.Status {
	case container.StatusRunning:
		return nil
	case container.StatusPaused:
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("container %s is paused, unpause the container before exec", c.ID))
	case container.StatusRestarting:
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("container %s is restarting, wait until the container is running", c.ID))
	}
	return errdefs.ErrConflict.WithMessage(fmt.Sprintf("container %s is not running", c.ID))
}

// ExecCreate implements POST /containers/{id}/exec.
func (s *ContainerService) ExecCreate(ctx context.Context, name string, req containertypes.ExecCreateRequest) (string, error) {
	e, err := s.get(name)
	if err != nil {
		return "", err
	}
	c := e.snapshot()
	if err := runningCheck(c); err != nil {
		return "", err
	}
	if len(req.Cmd) == 0 {
		return "", errdefs.ErrInvalidArgument.WithMessage("No exec command specified")
	}
	if req.WorkingDir != "" && !filepath.IsAbs(req.WorkingDir) {
		return "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("the working directory '%s' is invalid, it needs to be an absolute path", req.WorkingDir))
	}
	for _, kv := range req.Env {
		if strings.HasPrefix(kv, "=") || kv == "" {
			return "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid environment variable: %q", kv))
		}
	}
	p := &execProc{id: stringid.Generate(), cid: c.ID, req: req, done: make(chan struct{})}
	s.execs.add(p)
	s.emitContainer(c, events.Action(string(events.ActionExecCreate)+": "+strings.Join(req.Cmd, " ")), map[string]string{"execID": p.id})
	return p.id, nil
}

// ExecInspect implements GET /exec/{id}/json.
func (s *ContainerService) ExecInspect(ctx context.Context, id string) (*containertypes.ExecInspectResponse, error) {
	p, err := s.execs.get(id)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	priv := p.req.Privileged
	r := &containertypes.ExecInspectResponse{
		ID:      p.id,
		Running: p.running,
		ProcessConfig: &containertypes.ExecProcessConfig{
			Tty: p.req.Tty, Entrypoint: p.req.Cmd[0], Arguments: slices.Clone(p.req.Cmd[1:]),
			Privileged: &priv, User: p.req.User,
		},
		OpenStdin:   p.req.AttachStdin,
		OpenStdout:  p.req.AttachStdout,
		OpenStderr:  p.req.AttachStderr,
		ContainerID: p.cid,
		DetachKeys:  []byte(p.req.DetachKeys),
		Pid:         p.pid,
	}
	if r.ProcessConfig.Arguments == nil {
		r.ProcessConfig.Arguments = []string{}
	}
	if p.exitCode != nil {
		code := *p.exitCode
		r.ExitCode = &code
	}
	return r, nil
}

// ExecResize implements POST /exec/{id}/resize.
func (s *ContainerService) ExecResize(ctx context.Context, id string, height, width uint) error {
	p, err := s.execs.get(id)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running {
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("exec %s is not running", id))
	}
	if p.console == nil {
		return nil
	}
	return unix.IoctlSetWinsize(int(p.console.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(height), Col: uint16(width)})
}

// ExecStart implements POST /exec/{id}/start.
func (s *ContainerService) ExecStart(ctx context.Context, id string, opts api.ExecStartOptions) error {
	p, err := s.execs.get(id)
	if err != nil {
		return err
	}
	e, err := s.get(p.cid)
	if err != nil {
		return err
	}
	s.cgwarm.Keep(cgWarmFor)
	p.mu.Lock()
	if p.started {
		p.mu.Unlock()
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("exec %s has already been started", id))
	}
	p.started = true
	p.mu.Unlock()

	c := e.snapshot()
	fail := func(err error, code int) error {
		p.mu.Lock()
		p.exitCode, p.finished = &code, time.Now()
		p.mu.Unlock()
		close(p.done)
		return err
	}
	if err := runningCheck(c); err != nil {
		return fail(err, 126)
	}
	req := p.req
	size := req.ConsoleSize
	if opts.ConsoleSize != nil && opts.ConsoleSize[0] > 0 {
		size = opts.ConsoleSize
	}
	var stdin io.ReadCloser
	var out io.Writer = io.Discard
	if !opts.Detach {
		// As dockerd: from here on errors travel in the stream.
		in, o, err := opts.Hijack(!req.Tty)
		if err != nil {
			return fail(err, 126)
		}
		out = o
		if req.AttachStdin {
			stdin = in
		} else if in != nil {
			in.Close()
		}
	}
	s.emitContainer(c, events.Action(string(events.ActionExecStart)+": "+strings.Join(req.Cmd, " ")), map[string]string{"execID": p.id})
	bundle := s.cfg.bundleDir(c.ID)
	var run func()
	proc, err := s.execProcessSpec(e, bundle, c, req, size)
	if err == nil {
		run, err = s.runExec(ctx, c, p, proc, opts.Detach, stdin, out)
	}
	if err != nil {
		code := startErrorCode(err.Error())
		if code == 128 {
			code = 126
		}
		err = fail(err, code)
		if !opts.Detach {
			// The hijacked client reads errors in its output stream.
			msg := []byte(err.Error() + "\r\n")
			if !req.Tty {
				_, _ = api.NewStdWriter(out, stdcopy.Stdout).Write(msg)
			} else {
				_, _ = out.Write(msg)
			}
			return nil
		}
		return err
	}
	if opts.Detach {
		go run()
		return nil
	}
	run()
	return nil
}

// execProcessSpec builds the process to run from the container's own (its
// bundle's config.json), as docker does: same environment, capabilities,
// rlimits and user unless the exec overrides them.
func (s *ContainerService) execProcessSpec(e *entry, bundle string, c *container.Container, req containertypes.ExecCreateRequest, size *[2]uint) (*specs.Process, error) {
	base, err := s.execBase(e, bundle)
	if err != nil {
		return nil, err
	}
	p := *base
	p.Args = slices.Clone(req.Cmd)
	p.Terminal = req.Tty
	p.ConsoleSize = nil
	if req.Tty && size != nil && size[0] > 0 && size[1] > 0 {
		p.ConsoleSize = &specs.Box{Height: size[0], Width: size[1]}
	}
	env := slices.Clone(p.Env)
	if req.Tty && !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "TERM=") }) {
		env = append(env, "TERM=xterm")
	}
	p.Env = replaceOrAppendEnv(env, req.Env)
	if req.WorkingDir != "" {
		p.Cwd = filepath.Clean(req.WorkingDir)
	}
	if req.User != "" {
		var groupAdd []string
		if c.HostConfig != nil {
			groupAdd = c.HostConfig.GroupAdd
		}
		usr, _, err := oci.ResolveUser(filepath.Join(bundle, "rootfs"), req.User, groupAdd)
		if err != nil {
			return nil, err
		}
		usr.Umask = p.User.Umask
		p.User = usr
	}
	caps := oci.DefaultCapabilities()
	if p.Capabilities != nil && len(p.Capabilities.Bounding) > 0 {
		caps = slices.Clone(p.Capabilities.Bounding)
	}
	if req.Privileged {
		caps = privilegedCaps()
	}
	if p.User.UID == 0 {
		p.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: slices.Clone(caps), Permitted: slices.Clone(caps)}
	} else {
		p.Capabilities = &specs.LinuxCapabilities{Bounding: caps}
	}
	return &p, nil
}

// execBase returns the container's spec process, read from its bundle once
// per run.
func (s *ContainerService) execBase(e *entry, bundle string) (*specs.Process, error) {
	e.smu.RLock()
	base, gen, cur := e.execBase, e.execBaseGen, e.runGen
	e.smu.RUnlock()
	if base != nil && gen == cur {
		return base, nil
	}
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read container spec: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("read container spec: %w", err)
	}
	if spec.Process == nil {
		return nil, errors.New("container spec has no process")
	}
	e.smu.Lock()
	if e.runGen == cur {
		e.execBase, e.execBaseGen = spec.Process, cur
	}
	e.smu.Unlock()
	return spec.Process, nil
}

// privilegedCaps is every capability the kernel supports and the daemon
// holds in its bounding set (root on some hosts lacks a few, and a process
// cannot be given more).
func privilegedCaps() []string {
	var out []string
	own, err := capability.NewPid2(0)
	if err == nil {
		err = own.Load()
	}
	supported, _ := capability.ListSupported()
	for _, c := range supported {
		if err == nil && !own.Get(capability.BOUNDING, c) {
			continue
		}
		out = append(out, "CAP_"+strings.ToUpper(c.String()))
	}
	return out
}

// replaceOrAppendEnv overrides base's variables by name with extra's.
func replaceOrAppendEnv(base, extra []string) []string {
	for _, kv := range extra {
		k, _, _ := strings.Cut(kv, "=")
		i := slices.IndexFunc(base, func(b string) bool {
			bk, _, _ := strings.Cut(b, "=")
			return bk == k
		})
		if i >= 0 {
			base[i] = kv
		} else {
			base = append(base, kv)
		}
	}
	return base
}

// runExec starts the process through the runtime. On success it returns
// run, which copies the streams, waits for the exit and records it.
func (s *ContainerService) runExec(ctx context.Context, c *container.Container, p *execProc, proc *specs.Process, detach bool, stdin io.ReadCloser, out io.Writer) (run func(), retErr error) {
	rt, err := s.st.Runtimes.Get(c.Runtime)
	if err != nil {
		return nil, err
	}
	bundle := s.cfg.bundleDir(c.ID)
	short := p.id[:12]
	procFile := filepath.Join(bundle, "exec-"+short+".json")
	pidFile := filepath.Join(bundle, "exec-"+short+".pid")
	logFile := filepath.Join(bundle, "exec-"+short+".log")
	defer func() {
		os.Remove(procFile)
		os.Remove(pidFile)
		os.Remove(logFile)
	}()
	b, err := json.Marshal(proc)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(procFile, b, 0o600); err != nil {
		return nil, fmt.Errorf("write exec process: %w", err)
	}
	args := []string{"--log", logFile, "--log-format", "json", "exec", "--process", procFile, "--detach", "--pid-file", pidFile}

	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	cmd := exec.Command("")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull

	// Our ends of the pipes, and the child's (closed once the runtime ran).
	var (
		stdinW, stdoutR, stderrR *os.File
		childEnds                []*os.File
		console                  *os.File
		consoleCh                chan consoleResult
	)
	closeChild := func() {
		for _, f := range childEnds {
			f.Close()
		}
		childEnds = nil
	}
	defer closeChild()
	defer func() {
		if retErr != nil {
			for _, f := range []*os.File{stdinW, stdoutR, stderrR, console} {
				if f != nil {
					f.Close()
				}
			}
		}
	}()
	if proc.Terminal {
		sock := filepath.Join(s.cfg.ExecRoot, "shims", "x"+p.id[:shimSocketIDLen]+".sock")
		_ = os.Remove(sock)
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			return nil, fmt.Errorf("console socket: %w", err)
		}
		defer os.Remove(sock)
		defer l.Close()
		consoleCh = make(chan consoleResult, 1)
		go func() {
			f, err := recvConsole(l)
			consoleCh <- consoleResult{f, err}
		}()
		args = append(args, "--tty", "--console-socket", sock)
	} else if !detach {
		if stdin != nil {
			r, w, err := os.Pipe()
			if err != nil {
				return nil, err
			}
			cmd.Stdin, stdinW = r, w
			childEnds = append(childEnds, r)
		}
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		cmd.Stdout, stdoutR = w, r
		childEnds = append(childEnds, w)
		r, w, err = os.Pipe()
		if err != nil {
			return nil, err
		}
		cmd.Stderr, stderrR = w, r
		childEnds = append(childEnds, w)
	}
	args = append(args, c.ID)
	argv := rt.Argv(args...)
	cmd.Path, cmd.Args, cmd.Env = argv[0], argv, runtime.Env(os.Environ())
	if filepath.Base(cmd.Path) == cmd.Path {
		if lp, err := exec.LookPath(cmd.Path); err == nil {
			cmd.Path = lp
		}
	}
	runErr := cmd.Run()
	closeChild()
	if runErr != nil {
		msg := lastRuntimeError(logFile)
		if msg == "" {
			msg = runErr.Error()
		}
		if consoleCh != nil {
			// The listener's close (deferred) ends the receiver.
			go func() {
				if r := <-consoleCh; r.f != nil {
					r.f.Close()
				}
			}()
		}
		return nil, fmt.Errorf("OCI runtime exec failed: %s", msg)
	}
	if consoleCh != nil {
		r := <-consoleCh
		if r.err != nil {
			return nil, fmt.Errorf("exec console: %w", r.err)
		}
		console = r.f
	}
	pb, err := os.ReadFile(pidFile)
	if err != nil {
		return nil, fmt.Errorf("exec pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pb)))
	if err != nil || pid <= 0 {
		return nil, fmt.Errorf("exec pid file: bad content %q", pb)
	}
	// The runtime has exited, so the process is our child now (or a
	// zombie of ours): its pid cannot be reused until we reap it.
	osProc, err := os.FindProcess(pid)
	if err != nil {
		return nil, fmt.Errorf("exec process %d: %w", pid, err)
	}
	p.mu.Lock()
	p.running, p.pid, p.console = true, pid, console
	p.mu.Unlock()
	s.log.Debug("exec started", "container", c.ID, "exec", p.id, "pid", pid)

	run = func() {
		var wg sync.WaitGroup
		// copyOut copies one output stream to the client; when the client
		// is gone it keeps draining, so the process never blocks on a
		// full pipe.
		copyOut := func(dst io.Writer, src *os.File) {
			defer wg.Done()
			if _, err := io.Copy(dst, src); err != nil && !isEIO(err) {
				_, _ = io.Copy(io.Discard, src)
			}
		}
		var outputs []*os.File
		if console != nil {
			outputs = append(outputs, console)
			wg.Add(1)
			go copyOut(out, console)
			if stdin != nil {
				go func() { _, _ = io.Copy(console, stdin) }()
			}
		} else if stdoutR != nil {
			outputs = append(outputs, stdoutR, stderrR)
			wg.Add(2)
			go copyOut(api.NewStdWriter(out, stdcopy.Stdout), stdoutR)
			go copyOut(api.NewStdWriter(out, stdcopy.Stderr), stderrR)
			if stdinW != nil {
				go func() {
					if stdin != nil {
						_, _ = io.Copy(stdinW, stdin)
					}
					stdinW.Close()
				}()
			}
		}
		code := 255
		if st, err := osProc.Wait(); err == nil {
			ws := st.Sys().(syscall.WaitStatus)
			code = ws.ExitStatus()
			if ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
		} else {
			s.log.Warn("wait for exec process", "exec", p.id, "pid", pid, "err", err)
		}
		// Output after the exit (a background child holding the stream)
		// gets a grace period.
		drained := make(chan struct{})
		go func() { wg.Wait(); close(drained) }()
		t := time.NewTimer(ioGrace)
		select {
		case <-drained:
		case <-t.C:
			for _, f := range outputs {
				f.Close()
			}
			<-drained
		}
		t.Stop()
		for _, f := range outputs {
			f.Close()
		}
		if stdin != nil {
			stdin.Close()
		}
		p.mu.Lock()
		p.running, p.console = false, nil
		p.exitCode, p.finished = &code, time.Now()
		p.mu.Unlock()
		close(p.done)
		if cur, err := s.get(c.ID); err == nil && !p.quiet {
			s.emitContainer(cur.snapshot(), events.ActionExecDie, map[string]string{"execID": p.id, "exitCode": strconv.Itoa(code)})
		}
		s.log.Debug("exec exited", "container", c.ID, "exec", p.id, "code", code)
	}
	return run, nil
}

type consoleResult struct {
	f   *os.File
	err error
}

func isEIO(err error) bool {
	var pe *os.PathError
	return errors.As(err, &pe) && errors.Is(pe.Err, syscall.EIO)
}

// recvConsole accepts the runtime's connection on the console socket and
// receives the pty master (SCM_RIGHTS).
func recvConsole(l *net.UnixListener) (*os.File, error) {
	_ = l.SetDeadline(time.Now().Add(startTimeout))
	conn, err := l.AcceptUnix()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	buf := make([]byte, 256)
	oob := make([]byte, unix.CmsgSpace(4*4))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS || len(m.Data)%4 != 0 {
			continue
		}
		rights, err := unix.ParseUnixRights(&m)
		if err == nil {
			fds = append(fds, rights...)
		}
	}
	if len(fds) == 0 {
		return nil, errors.New("no console descriptor received")
	}
	for _, fd := range fds[1:] {
		unix.Close(fd)
	}
	unix.CloseOnExec(fds[0])
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	return os.NewFile(uintptr(fds[0]), "exec-console"), nil
}

// lastRuntimeError is the message of the last error entry of a runtime's
// JSON log (runc's --log-format json).
func lastRuntimeError(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var msg string
	for _, line := range bytes.Split(b, []byte("\n")) {
		var entry struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(line, &entry) == nil && (entry.Level == "error" || entry.Level == "fatal") && entry.Msg != "" {
			msg = entry.Msg
		}
	}
	return msg
}

// setSubreaper makes the daemon the reaper of the exec processes whose
// runtime exits before them.
func setSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}
