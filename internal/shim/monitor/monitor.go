// Package monitor is berth-shim's monitor mode: one lean process per
// container that creates and starts it through an OCI runtime's command
// line, holds its stdio or TTY, writes its json-file log, serves attach
// streams and a tiny control protocol on a unix socket, reaps it, and
// records its exit status in a file that outlives the shim. It imports
// only the standard library and internal packages that do the same.
package monitor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth-engine/berth/internal/logs/jsonfile"
	"github.com/berth-engine/berth/internal/shim/wire"
)

// Time limits of the shim's own housekeeping (none applies to the
// container itself).
const (
	// consoleTimeout bounds the wait for the runtime to send the pty.
	consoleTimeout = 60 * time.Second
	// drainGrace is how long output may stay open after the init exited
	// (processes outside the container's pid namespace may hold it)
	// before the rest of the container is killed, and again before the
	// shim stops reading.
	drainGrace = 2 * time.Second
	// clientGrace is how long attach clients and waiters get to receive
	// the end of their streams when the container has exited.
	clientGrace = 5 * time.Second
	// requestTimeout bounds reading a request line and writing a reply.
	requestTimeout = 10 * time.Second
)

// syncFd is the descriptor on which the spawner waits for the shim's
// report ({"pid":N} or {"error":"…"}).
const syncFd = 3

// Run is berth-shim's monitor mode; configPath is <bundle>/shim.json. It
// returns the process's exit code: 0 once the container has exited and its
// status is recorded, 1 when it could not be created.
func Run(configPath string) int {
	// The sync pipe must not leak into the runtime or the container: its
	// reader waits for EOF-or-report.
	syscall.CloseOnExec(syncFd)
	syncPipe := os.NewFile(syncFd, "sync")
	cfg, err := loadConfig(configPath)
	if err != nil {
		report(syncPipe, wire.SyncMessage{Error: err.Error()})
		return 1
	}
	redirectStderr(filepath.Join(cfg.Bundle, "shim.log"))
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)).With("id", cfg.ID))

	m := &monitor{cfg: cfg, exited: make(chan struct{}), waiters: map[*net.UnixConn]struct{}{}}
	pid, err := m.create()
	if err != nil {
		slog.Error("create container", "err", err)
		report(syncPipe, wire.SyncMessage{Error: err.Error()})
		return 1
	}
	report(syncPipe, wire.SyncMessage{Pid: pid})
	syncPipe.Close()
	return m.serve()
}

func loadConfig(path string) (wire.Config, error) {
	var cfg wire.Config
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("read shim config: %w", err)
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return cfg, fmt.Errorf("decode shim config %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	if cfg.LogMaxFiles < 1 {
		cfg.LogMaxFiles = 1
	}
	return cfg, nil
}

func report(f *os.File, m wire.SyncMessage) {
	b, _ := json.Marshal(m)
	_, _ = f.Write(append(b, '\n'))
}

// redirectStderr sends the shim's own stderr (slog, and a Go panic's
// trace) to a file in the bundle; the spawner gave it /dev/null.
func redirectStderr(path string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	_ = syscall.Dup3(int(f.Fd()), 2, 0)
	f.Close()
}

// monitor is the state of one shim.
type monitor struct {
	cfg  wire.Config
	rt   *runtimeCLI
	ln   *net.UnixListener
	out  *broadcaster
	logw *jsonfile.Writer
	null *os.File

	outputs []*os.File     // what the copiers read: the stdout and stderr pipes, or the pty master
	copying sync.WaitGroup // the copiers
	console *os.File       // pty master (TTY only)
	stdin   stdinPipe

	initExit <-chan syscall.WaitStatus
	oomFile  string
	oomBase  int64

	mu       sync.Mutex
	status   string // wire.StatusCreated, StatusRunning, StatusStopped
	pid      int
	starting bool
	initDone bool             // the init was reaped; the exit is being recorded
	exit     *wire.ExitStatus // set once the exit file is written
	exited   chan struct{}    // closed with exit
	waiters  map[*net.UnixConn]struct{}
	busy     sync.WaitGroup // requests being answered
}

// stdinPipe is the shim's end of the container's stdin: a pipe, or the pty
// master for a TTY.
type stdinPipe struct {
	mu      sync.Mutex
	f       *os.File // nil once closed, or when the container has no stdin
	keep    bool     // the pty: ending a client's input does not close it
	claimed bool     // a stdin client has attached (StdinOnce acts on the first)
}

func (s *stdinPipe) claim() (first bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	first = !s.claimed
	s.claimed = true
	return first
}

func (s *stdinPipe) write(p []byte) {
	s.mu.Lock()
	f := s.f
	s.mu.Unlock()
	if f != nil {
		_, _ = f.Write(p)
	}
}

// end closes the container's stdin (EOF for it), unless it is the pty.
func (s *stdinPipe) end() {
	s.mu.Lock()
	f := s.f
	if !s.keep {
		s.f = nil
	}
	s.mu.Unlock()
	if f != nil && !s.keep {
		f.Close()
	}
}

// create prepares stdio, runs `<runtime> create`, and returns the pid of
// the container's init. On failure nothing is left: no container, no
// socket.
func (m *monitor) create() (pid int, retErr error) {
	cfg := &m.cfg
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	m.null = null
	runtimePath, err := lookPath(cfg.Runtime)
	if err != nil {
		return 0, err
	}
	// Orphans of the runtime's create (the container's init) must become
	// the shim's children, so that the shim can wait for them.
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		return 0, fmt.Errorf("become child subreaper: %w", errno)
	}
	m.rt = &runtimeCLI{
		path:    runtimePath,
		args:    cfg.RuntimeArgs,
		logPath: filepath.Join(cfg.Bundle, "runtime.log"),
		id:      cfg.ID,
		reaper:  newReaper(),
		null:    null,
	}

	ln, err := listen(cfg.Socket)
	if err != nil {
		return 0, err
	}
	m.ln = ln
	var cleanups []func()
	defer func() {
		if retErr != nil {
			for i := len(cleanups) - 1; i >= 0; i-- {
				cleanups[i]()
			}
			ln.Close() // removes the socket
		}
	}()

	var logOut, logErr io.Writer
	if cfg.LogPath != "" {
		w, err := jsonfile.OpenWriter(cfg.LogPath, jsonfile.WriterOptions{MaxSize: cfg.LogMaxSize, MaxFiles: cfg.LogMaxFiles})
		if err != nil {
			return 0, err
		}
		m.logw = w
		cleanups = append(cleanups, func() { w.Close() })
		logOut, logErr = w.Stream("stdout"), w.Stream("stderr")
	}
	m.out = newBroadcaster(cfg.Tty, logOut, logErr)

	pidFile := filepath.Join(cfg.Bundle, "init.pid")
	_ = os.Remove(pidFile)
	args := []string{"create", "--bundle", cfg.Bundle, "--pid-file", pidFile}
	if cfg.Tty {
		err = m.createTTY(args)
	} else {
		err = m.createPipes(args)
	}
	if err != nil {
		return 0, err
	}
	cleanups = append(cleanups, func() {
		if err := m.rt.run("delete", "--force", cfg.ID); err != nil {
			slog.Warn("delete container after failed create", "err", err)
		}
	})
	pid, err = readPidFile(pidFile)
	if err != nil {
		return 0, err
	}
	m.initExit = m.rt.reaper.watch(pid)
	m.oomFile = oomFile(pid)
	m.oomBase = readOOMKills(m.oomFile)
	m.out.release()
	m.status = wire.StatusCreated
	m.pid = pid
	return pid, nil
}

const prSetChildSubreaper = 36

// listen opens the control socket, replacing a stale one but refusing to
// steal one a live shim still serves.
func listen(path string) (*net.UnixListener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("shim socket %s: already served by another shim", path)
	}
	_ = os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("shim socket: %w", err)
	}
	// Only root may drive the shim.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("shim socket: %w", err)
	}
	return ln, nil
}

// createPipes creates a non-TTY container whose stdout and stderr are pipes
// the shim reads (and stdin one it writes, with OpenStdin). The runtime
// passes its own stdio to the container, as runc does without a terminal.
func (m *monitor) createPipes(args []string) error {
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("stdout pipe: %w", err)
	}
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		stdoutR.Close()
		stdoutW.Close()
		return fmt.Errorf("stderr pipe: %w", err)
	}
	stdinR := m.null
	if m.cfg.Stdin {
		r, w, err := os.Pipe()
		if err != nil {
			stdoutR.Close()
			stdoutW.Close()
			stderrR.Close()
			stderrW.Close()
			return fmt.Errorf("stdin pipe: %w", err)
		}
		stdinR = r
		m.stdin.f = w
	}
	m.outputs = []*os.File{stdoutR, stderrR}
	m.startCopier(stdoutR, streamStdout)
	m.startCopier(stderrR, streamStderr)

	ws, logOff, err := m.rt.exec([3]*os.File{stdinR, stdoutW, stderrW}, append(args, m.cfg.ID)...)
	// The container holds its ends now; the shim must not, or it would
	// never see EOF.
	stdoutW.Close()
	stderrW.Close()
	if stdinR != m.null {
		stdinR.Close()
	}
	if err == nil && succeeded(ws) {
		return nil
	}
	m.stdin.end()
	if err != nil {
		m.closeOutputs()
		return err
	}
	// What the runtime printed arrives on the container's stderr pipe;
	// delete anything half-made so that the pipes see EOF, then read it.
	msg := lastRuntimeError(readFrom(m.rt.logPath, logOff, 1<<20))
	if !strings.Contains(msg, "already exists") {
		_ = m.rt.run("delete", "--force", m.cfg.ID)
	}
	if !waitTimeout(&m.copying, drainGrace) {
		m.closeOutputs()
	}
	m.copying.Wait()
	m.closeOutputs()
	return fmt.Errorf("OCI runtime create failed: %s", m.rt.failure(logOff, m.out.heldText(), ws))
}

// createTTY creates a container with a terminal: the runtime sends the pty
// master over a console socket next to the control socket.
func (m *monitor) createTTY(args []string) error {
	conPath := m.cfg.Socket + ".con"
	cl, err := listenConsole(conPath)
	if err != nil {
		return err
	}
	defer cl.Close() // also removes the socket file
	type result struct {
		f   *os.File
		err error
	}
	got := make(chan result, 1)
	go func() {
		f, err := recvConsole(cl, time.Now().Add(consoleTimeout))
		got <- result{f, err}
	}()

	out, err := os.CreateTemp(m.cfg.Bundle, ".runtime-out-*")
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	os.Remove(out.Name())
	defer out.Close()
	ws, logOff, err := m.rt.exec([3]*os.File{m.null, out, out}, append(args, "--console-socket", conPath, m.cfg.ID)...)
	if err == nil && !succeeded(ws) {
		msg := lastRuntimeError(readFrom(m.rt.logPath, logOff, 1<<20))
		if !strings.Contains(msg, "already exists") {
			_ = m.rt.run("delete", "--force", m.cfg.ID)
		}
		_, _ = out.Seek(0, io.SeekStart)
		printed, _ := io.ReadAll(io.LimitReader(out, 4<<10))
		err = fmt.Errorf("OCI runtime create failed: %s", m.rt.failure(logOff, printed, ws))
	}
	if err != nil {
		cl.Close()
		if r := <-got; r.f != nil {
			r.f.Close()
		}
		return err
	}
	r := <-got
	if r.err != nil {
		_ = m.rt.run("delete", "--force", m.cfg.ID)
		return r.err
	}
	m.console = r.f
	if m.cfg.ConsoleHeight > 0 && m.cfg.ConsoleWidth > 0 {
		if err := setWinsize(m.console, m.cfg.ConsoleHeight, m.cfg.ConsoleWidth); err != nil {
			slog.Warn("initial console size", "err", err)
		}
	}
	if m.cfg.Stdin {
		m.stdin.f = m.console
		m.stdin.keep = true
	}
	m.outputs = []*os.File{m.console}
	m.startCopier(m.console, streamStdout)
	return nil
}

func succeeded(ws syscall.WaitStatus) bool { return ws.Exited() && ws.ExitStatus() == 0 }

func (m *monitor) startCopier(f *os.File, stream int) {
	m.copying.Add(1)
	go func() {
		defer m.copying.Done()
		copyOutput(f, func(p []byte) { m.out.write(stream, p) })
	}()
}

func (m *monitor) closeOutputs() {
	for _, f := range m.outputs {
		f.Close()
	}
}

// waitTimeout waits for wg, giving up after d.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// serve answers clients until the container exits, then records the exit
// and returns the shim's exit code.
func (m *monitor) serve() int {
	go m.acceptLoop()
	// Creating the container allocated what an idle shim never needs
	// again; hand it back now rather than at the scavenger's pace.
	debug.FreeOSMemory()
	ws := <-m.initExit
	m.finish(ws)
	return 0
}

// finish runs once the container's init has been reaped: drain the output
// to the log and attach clients, close the log, delete the container in
// the runtime, write the exit file, answer the waiters, remove the socket.
func (m *monitor) finish(ws syscall.WaitStatus) {
	code, sig := exitCode(ws)
	st := wire.ExitStatus{Code: code, Signal: sig, ExitedAt: time.Now().UTC()}
	m.mu.Lock()
	m.initDone = true
	m.mu.Unlock()
	slog.Debug("container exited", "code", code, "signal", sig)

	// Processes outside the container's pid namespace may keep its output
	// open; they go the way docker's do when its init exits.
	if !waitTimeout(&m.copying, drainGrace) {
		slog.Warn("container output still open after its init exited; killing the remaining processes")
		if err := m.rt.run("kill", "--all", m.cfg.ID, "9"); err != nil {
			slog.Warn("kill remaining processes", "err", err)
		}
		if !waitTimeout(&m.copying, drainGrace) {
			m.closeOutputs()
			m.copying.Wait()
		}
	}
	m.stdin.end()
	clients := m.out.close()
	if m.logw != nil {
		if err := m.logw.Close(); err != nil {
			slog.Warn("container log", "err", err)
		}
		if d := m.logw.Dropped(); d > 0 {
			slog.Warn("container output dropped: the log could not keep up", "bytes", d)
		}
	}
	st.OOMKilled = readOOMKills(m.oomFile) > m.oomBase
	if err := m.rt.run("delete", "--force", m.cfg.ID); err != nil {
		slog.Warn("delete container", "err", err)
		st.Error = "runtime delete: " + err.Error()
	}
	m.closeOutputs()
	if err := writeExitFile(m.cfg.ExitFile, st); err != nil {
		slog.Error("record exit status", "err", err)
	}

	m.mu.Lock()
	m.exit = &st
	m.status = wire.StatusStopped
	close(m.exited)
	waiters := m.waiters
	m.waiters = nil
	m.mu.Unlock()
	for conn := range waiters {
		_ = reply(conn, wire.Response{Exit: &st})
		conn.Close()
	}

	deadline := time.NewTimer(clientGrace)
	defer deadline.Stop()
	for _, c := range clients {
		select {
		case <-c.done:
		case <-deadline.C:
		}
	}
	m.ln.Close() // removes the socket: from now on clients read the exit file
	waitTimeout(&m.busy, clientGrace)
}

// writeExitFile records st so that a crash at any moment leaves either no
// file or the whole one: temp file, fsync, rename, fsync of the directory.
func writeExitFile(path string, st wire.ExitStatus) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write exit file: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write exit file: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write exit file: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write exit file: sync %s: %w", dir, err)
	}
	return nil
}

// errKind is an error with the kind the client maps to an errdefs
// sentinel.
type errKind struct {
	kind string
	msg  string
}

func (e *errKind) Error() string { return e.msg }

func kindErr(kind, format string, args ...any) error {
	return &errKind{kind: kind, msg: fmt.Sprintf(format, args...)}
}

func errResponse(err error) wire.Response {
	r := wire.Response{Error: err.Error()}
	var k *errKind
	if errors.As(err, &k) {
		r.Kind = k.kind
	}
	return r
}
