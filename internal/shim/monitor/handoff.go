package monitor

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/berth-engine/berth/internal/logs/jsonfile"
	"github.com/berth-engine/berth/internal/logs/jsonlite"
	"github.com/berth-engine/berth/internal/shim/wire"
)

// The shim can run in two stages, one process image each. The first
// creates the container: it reads the configuration, runs the runtime,
// receives the pty, and with all that grows a heap, stacks and threads
// that an idle shim then carries for the container's whole life (the GC
// is off, see mem.go, and collecting once costs more than it frees). With
// reexecEnv set, once the container exists, the first stage execs the
// shim binary again (same pid, so the container's init stays its child)
// and hands over the descriptors that matter; the second stage starts
// from a fresh runtime and only serves. By default the first stage serves
// the container itself, through the same handoff but without the exec:
// measured on the CI machine kind, the exec saves ~80 KiB of PSS per idle
// shim (0.76 → 0.68 MiB) but costs a Go process start on the path of
// every container start (~2.5 ms of CPU, 5–7 ms of latency under load),
// which the engine's start rate and `run` latency pay. If the exec fails,
// the first stage serves itself.

// stateEnv carries the handoff to the second stage.
const stateEnv = "BERTH_SHIM_HANDOFF"

// reexecEnv, set to 1 in the shim's environment (the daemon's), makes the
// first stage hand the container over to a fresh second stage: less
// memory per idle shim, slower starts.
const reexecEnv = "BERTH_SHIM_REEXEC"

// handoff is what the first stage passes to the second: descriptors
// (inherited across exec) and facts learnt while creating.
type handoff struct {
	Pid      int    // the container's init
	Listener int    // the control socket
	Stdout   int    // stdout pipe, or the pty master with a TTY
	Stderr   int    // stderr pipe; -1 with a TTY
	Stdin    int    // stdin pipe; -1 without OpenStdin or with a TTY
	Runtime  string // the runtime's resolved path
	OOMBase  int64  // OOM kills of the cgroup before the start
}

func (h handoff) encode() []byte {
	return jsonlite.NewObject(nil).Int("pid", int64(h.Pid)).Int("listener", int64(h.Listener)).
		Int("stdout", int64(h.Stdout)).Int("stderr", int64(h.Stderr)).Int("stdin", int64(h.Stdin)).
		String("runtime", h.Runtime).Int("oom_base", h.OOMBase).End()
}

// parseHandoff decodes and checks the second stage's input.
func parseHandoff(s string) (handoff, error) {
	var h handoff
	num := func(v jsonlite.Value, dst *int) error {
		n, err := v.Int()
		if err == nil && (n < -1 || n > 1<<31-1) {
			err = errors.New("out of range")
		}
		*dst = int(n)
		return err
	}
	err := jsonlite.Members([]byte(s), func(k string, v jsonlite.Value) error {
		switch k {
		case "pid":
			return num(v, &h.Pid)
		case "listener":
			return num(v, &h.Listener)
		case "stdout":
			return num(v, &h.Stdout)
		case "stderr":
			return num(v, &h.Stderr)
		case "stdin":
			return num(v, &h.Stdin)
		case "runtime":
			var err error
			h.Runtime, err = v.Str()
			return err
		case "oom_base":
			var err error
			h.OOMBase, err = v.Int()
			return err
		}
		return nil
	})
	if err != nil {
		return h, fmt.Errorf("decode handoff: %w", err)
	}
	if h.Pid <= 0 || h.Listener < 3 || h.Stdout < 3 || h.Runtime == "" {
		return h, errors.New("handoff: incomplete")
	}
	for _, fd := range []int{h.Stderr, h.Stdin} {
		if fd != -1 && fd < 3 {
			return h, errors.New("handoff: bad descriptor")
		}
	}
	return h, nil
}

// Run is berth-shim's monitor mode; configPath is <bundle>/shim.json. It
// returns the process's exit code: 0 once the container has exited and its
// status is recorded, 1 when it could not be created.
func Run(configPath string) int {
	// The sync pipe must not leak into the runtime or the container: its
	// reader waits for EOF-or-report.
	syscall.CloseOnExec(syncFd)
	tuneMemory()
	syncPipe := os.NewFile(syncFd, "sync")
	cfg, err := loadConfig(configPath)
	if err != nil {
		report(syncPipe, wire.SyncMessage{Error: err.Error()})
		return 1
	}
	redirectStderr(filepath.Join(cfg.Bundle, "shim.log"))
	logID = cfg.ID

	if state, ok := os.LookupEnv(stateEnv); ok {
		h, err := parseHandoff(state)
		if err != nil {
			logError("second stage", "err", err)
			report(syncPipe, wire.SyncMessage{Error: err.Error()})
			return 1
		}
		return resume(cfg, h, syncPipe)
	}

	closeInherited()
	m := newMonitor(cfg)
	h, err := m.create()
	if err != nil {
		logError("create container", "err", err)
		report(syncPipe, wire.SyncMessage{Error: err.Error()})
		return 1
	}
	if os.Getenv(reexecEnv) == "1" {
		data := h.encode()
		// The sync pipe goes along to the second stage, which reports.
		_, _, _ = syscall.Syscall(syscall.SYS_FCNTL, syncFd, syscall.F_SETFD, 0)
		env := append(childEnv(), stateEnv+"="+string(data))
		// The binary's own path rather than /proc/self/exe, so that the
		// process keeps its name (comm) for ps and top.
		if exe, xerr := os.Executable(); xerr == nil {
			_ = syscall.Exec(exe, os.Args, env)
		}
		err = syscall.Exec("/proc/self/exe", os.Args, env)
		syscall.CloseOnExec(syncFd)
		logWarn("re-exec failed; serving from the first stage", "err", err)
	}
	return resume(cfg, h, syncPipe)
}

func newMonitor(cfg wire.Config) *monitor {
	return &monitor{cfg: cfg, waiters: map[*os.File]struct{}{}, deleted: make(chan struct{}), initFd: -1}
}

// setup prepares what both stages need: the subreaper bit, /dev/null for
// the runtime's stdin, the runtime command line.
func (m *monitor) setup(runtimePath string) error {
	// Orphans of the runtime's create (the container's init) must become
	// the shim's children, so that the shim can wait for them.
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		return fmt.Errorf("become child subreaper: %w", errno)
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	m.null = null
	m.rt = &runtimeCLI{
		path:    runtimePath,
		args:    m.cfg.RuntimeArgs,
		logPath: filepath.Join(m.cfg.Bundle, "runtime.log"),
		id:      m.cfg.ID,
		reaper:  theReaper(),
		null:    null,
	}
	return nil
}

// handOff ends the first stage once the container is created: the output
// the runtime printed goes to the log, the copiers stop, the log is
// closed, and the descriptors the second stage needs are duplicated
// without close-on-exec. The originals are closed.
func (m *monitor) handOff(pid int, runtimePath string) (handoff, error) {
	h := handoff{Pid: pid, Runtime: runtimePath, Stderr: -1, Stdin: -1}
	h.OOMBase = readOOMKills(oomFile(pid))
	m.out.release()
	// A deadline in the past stops the copiers at their next wait; what
	// they read before goes to the log.
	for _, f := range m.outputs {
		_ = f.SetReadDeadline(time.Unix(1, 0))
	}
	m.copying.Wait()
	if m.logw != nil {
		if err := m.logw.Close(); err != nil {
			logWarn("container log", "err", err)
		}
		m.logw = nil
	}
	var err error
	dup := func(f *os.File) int {
		if f == nil || err != nil {
			return -1
		}
		var nfd int
		rc, cerr := f.SyscallConn()
		if cerr == nil {
			cerr = rc.Control(func(fd uintptr) {
				// dup(2) leaves close-on-exec off: the copy survives exec.
				nfd, err = syscall.Dup(int(fd))
			})
		}
		if cerr != nil && err == nil {
			err = cerr
		}
		if err != nil {
			return -1
		}
		return nfd
	}
	h.Listener = dup(m.ln.f)
	h.Stdout = dup(m.outputs[0])
	if !m.cfg.Tty {
		h.Stderr = dup(m.outputs[1])
		if m.cfg.Stdin {
			h.Stdin = dup(m.stdin.f)
		}
	}
	if err != nil {
		for _, fd := range []int{h.Listener, h.Stdout, h.Stderr, h.Stdin} {
			if fd >= 0 {
				syscall.Close(fd)
			}
		}
		return h, fmt.Errorf("hand over descriptors: %w", err)
	}
	m.ln.f.Close() // the socket file stays: the duplicate serves it
	m.closeOutputs()
	m.stdin.end()
	m.null.Close()
	return h, nil
}

// resume is the second stage: serve the created container from the
// handed-over descriptors.
func resume(cfg wire.Config, h handoff, syncPipe *os.File) int {
	m := newMonitor(cfg)
	fail := func(err error) int {
		logError("serve container", "err", err)
		if m.rt != nil {
			_ = m.rt.run("delete", "--force", cfg.ID)
		}
		os.Remove(cfg.Socket)
		report(syncPipe, wire.SyncMessage{Error: err.Error()})
		return 1
	}
	// The copies came without close-on-exec, to survive the exec; they
	// must not leak into the runtime's processes.
	for _, fd := range []int{h.Listener, h.Stdout, h.Stderr, h.Stdin} {
		if fd >= 0 {
			syscall.CloseOnExec(fd)
		}
	}
	if err := m.setup(h.Runtime); err != nil {
		return fail(err)
	}
	// The socket file is still the first stage's: the daemon, which alone
	// would start another shim for this container, waits for our report.
	m.ln = newListener(os.NewFile(uintptr(h.Listener), cfg.Socket), cfg.Socket)
	var logOut, logErr io.Writer
	if cfg.LogPath != "" {
		w, err := jsonfile.OpenWriter(cfg.LogPath, jsonfile.WriterOptions{MaxSize: cfg.LogMaxSize, MaxFiles: cfg.LogMaxFiles, NonBlocking: cfg.LogNonBlocking})
		if err != nil {
			return fail(err)
		}
		m.logw = w
		logOut, logErr = w.Stream("stdout"), w.Stream("stderr")
	}
	m.out = newBroadcaster(cfg.Tty, logOut, logErr)
	stdout := os.NewFile(uintptr(h.Stdout), "stdout")
	if cfg.Tty {
		m.console = stdout
		if cfg.Stdin {
			m.stdin.f = m.console
			m.stdin.keep = true
		}
		m.outputs = []*os.File{m.console}
		m.startCopier(m.console, streamStdout)
	} else {
		stderr := os.NewFile(uintptr(h.Stderr), "stderr")
		if h.Stdin >= 0 {
			m.stdin.f = os.NewFile(uintptr(h.Stdin), "stdin")
		}
		m.outputs = []*os.File{stdout, stderr}
		m.startCopier(stdout, streamStdout)
		m.startCopier(stderr, streamStderr)
	}
	// The init is alive and not yet reaped (it waits for its start), so
	// a pidfd opened now is its own for good: kill signals through it.
	m.initFd = openInitPidfd(h.Pid)
	m.waitInit = m.rt.reaper.watch(h.Pid)
	m.oomFile = oomFile(h.Pid)
	m.oomBase = h.OOMBase
	m.status = wire.StatusCreated
	m.pid = h.Pid
	report(syncPipe, wire.SyncMessage{Pid: h.Pid})
	syncPipe.Close()
	return m.serve()
}

var (
	reaperOnce sync.Once
	reaperInst *reaper
)

// theReaper is the process's one reaper: two would steal each other's
// children.
func theReaper() *reaper {
	reaperOnce.Do(func() { reaperInst = newReaper() })
	return reaperInst
}
