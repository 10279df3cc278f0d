// Package monitor is berth-shim's monitor mode: one lean process per
// container that creates and starts it through an OCI runtime's command
// line, holds its stdio or TTY, writes its json-file log, serves attach
// streams and a tiny control protocol on a unix socket, reaps it, and
// records its exit status in a file that outlives the shim. It imports
// only the standard library and internal packages that do the same.
package monitor

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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

func loadConfig(path string) (wire.Config, error) {
	var cfg wire.Config
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("read shim config: %w", err)
	}
	if cfg, err = wire.ParseConfig(data); err != nil {
		return cfg, fmt.Errorf("%s: %w", path, err)
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
	_, _ = f.Write(wire.AppendSync(nil, m))
}

// redirectStderr sends the shim's own stderr (its log lines, and a Go
// panic's trace) to a file in the bundle; the spawner gave it /dev/null.
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
	ln   *listener
	out  *broadcaster
	logw *jsonfile.Writer
	null *os.File

	outputs []*os.File     // what the copiers read: the stdout and stderr pipes, or the pty master
	copying sync.WaitGroup // the copiers
	copied  atomic.Int64   // bytes the copiers have read: progress while draining
	console *os.File       // pty master (TTY only)
	stdin   stdinPipe

	waitInit func() syscall.WaitStatus // blocks until the container's init exits
	initFd   int                       // a pidfd of the init, or -1 (see signalInit)
	oomFile  string
	oomBase  int64

	mu       sync.Mutex
	status   string // wire.StatusCreated, StatusRunning, StatusStopped
	pid      int
	starting bool
	initDone bool             // the init was reaped; the exit is being recorded
	exit     *wire.ExitStatus // set once the exit file is written
	waiters  map[*os.File]struct{}
	deleted  chan struct{} // closed once the runtime has deleted the exited container
	busy     inflight      // requests being answered
	health   *prober       // the health check, once started (health.go)
	trim     trimmer
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

// create prepares stdio, runs `<runtime> create`, and hands the result
// over for serving. On failure nothing is left: no container, no socket.
func (m *monitor) create() (h handoff, retErr error) {
	cfg := &m.cfg
	runtimePath, err := lookPath(cfg.Runtime)
	if err != nil {
		return h, err
	}
	if err := m.setup(runtimePath); err != nil {
		return h, err
	}
	ln, err := listen(cfg.Socket)
	if err != nil {
		return h, err
	}
	m.ln = ln
	var cleanups []func()
	defer func() {
		if retErr != nil {
			for i := len(cleanups) - 1; i >= 0; i-- {
				cleanups[i]()
			}
			ln.close() // removes the socket
		}
	}()

	var logOut, logErr io.Writer
	if cfg.LogPath != "" {
		w, err := jsonfile.OpenWriter(cfg.LogPath, jsonfile.WriterOptions{MaxSize: cfg.LogMaxSize, MaxFiles: cfg.LogMaxFiles, NonBlocking: cfg.LogNonBlocking})
		if err != nil {
			return h, err
		}
		m.logw = w
		cleanups = append(cleanups, func() { w.Close() })
		logOut, logErr = w.Stream("stdout"), w.Stream("stderr")
	}
	m.out = newBroadcaster(cfg.Tty, logOut, logErr)
	m.out.held = true

	pidFile := filepath.Join(cfg.Bundle, "init.pid")
	_ = os.Remove(pidFile)
	args := []string{"create", "--bundle", cfg.Bundle, "--pid-file", pidFile}
	if cfg.Tty {
		err = m.createTTY(args)
	} else {
		err = m.createPipes(args)
	}
	if err != nil {
		return h, err
	}
	cleanups = append(cleanups, func() {
		if err := m.rt.run("delete", "--force", cfg.ID); err != nil {
			logWarn("delete container after failed create", "err", err)
		}
	})
	pid, err := readPidFile(pidFile)
	if err != nil {
		return h, err
	}
	h, err = m.handOff(pid, runtimePath)
	if err != nil {
		return h, err
	}
	return h, nil
}

const prSetChildSubreaper = 36

// listen opens the control socket, replacing a stale one but refusing to
// steal one a live shim still serves.
func listen(path string) (*listener, error) {
	if probeUnix(path) {
		return nil, fmt.Errorf("shim socket %s: already served by another shim", path)
	}
	_ = os.Remove(path)
	ln, err := listenUnix(path)
	if err != nil {
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
	defer cl.close() // also removes the socket file
	type result struct {
		f   *os.File
		err error
	}
	got := make(chan result, 1)
	go func() {
		f, err := recvConsole(cl, time.Now().Add(consoleTimeout))
		got <- result{f, err}
	}()

	out, err := outputFile(m.cfg.Bundle)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
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
		cl.close()
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
			logWarn("initial console size", "err", err)
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
		copyOutput(f, func(p []byte) {
			m.copied.Add(int64(len(p)))
			m.out.write(stream, p)
			m.trim.add(len(p))
		})
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

// drain waits for the copiers to reach EOF as long as they make progress;
// it gives up after drainGrace without any.
func (m *monitor) drain() bool {
	for {
		before := m.copied.Load()
		if waitTimeout(&m.copying, drainGrace) {
			return true
		}
		if m.copied.Load() == before {
			return false
		}
	}
}

// serve answers clients until the container exits, then records the exit
// and returns the shim's exit code.
func (m *monitor) serve() int {
	go m.acceptLoop()
	m.finish(m.waitInit())
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
	m.stopHealth()

	// Processes outside the container's pid namespace may keep its output
	// open; they go the way docker's do when its init exits. Output that
	// is still flowing (a backlog the log takes in at the disk's pace) is
	// not cut short.
	if !m.drain() {
		logWarn("container output still open after its init exited; killing the remaining processes")
		if err := m.rt.run("kill", "--all", m.cfg.ID, "9"); err != nil {
			logWarn("kill remaining processes", "err", err)
		}
		if !m.drain() {
			m.closeOutputs()
			m.copying.Wait()
		}
	}
	m.stdin.end()
	clients := m.out.close()
	if m.logw != nil {
		if err := m.logw.Close(); err != nil {
			logWarn("container log", "err", err)
		}
		if d := m.logw.Dropped(); d > 0 {
			logWarn("container output dropped: the log could not keep up", "bytes", d)
		}
	}
	st.OOMKilled = readOOMKills(m.oomFile) > m.oomBase
	m.closeOutputs()
	if err := writeExitFile(m.cfg.ExitFile, st); err != nil {
		logError("record exit status", "err", err)
	}
	// The runtime's log is held open from here on: once the waiters have
	// the exit, the daemon may remove the bundle at any moment.
	if f, err := os.OpenFile(m.rt.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_CLOEXEC, 0o644); err == nil {
		m.rt.logFile, m.rt.logByFd = f, true
		defer f.Close()
	}

	m.mu.Lock()
	m.exit = &st
	m.status = wire.StatusStopped
	waiters := m.waiters
	m.waiters = nil
	m.mu.Unlock()
	// The exit is reported before the runtime deletes the container (its
	// cgroups and state), which may take a Go process start: the daemon needs
	// nothing of that to record the exit and answer `wait`. The socket
	// goes first, so that the daemon may start the container again at once
	// (a new shim binds the same path); the daemon holds a new start back
	// until this shim is done, which it learns from its wait connection:
	// that stays open until the delete has finished and ends at EOF.
	m.ln.close()
	for conn := range waiters {
		_ = reply(conn, wire.Response{Exit: &st})
	}
	if err := m.deleteContainer(); err != nil {
		logWarn("delete container", "err", err)
	}
	close(m.deleted)
	for conn := range waiters {
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
	m.busy.drain(clientGrace)
}

// writeExitFile records st so that a crash of the shim or the daemon at
// any moment leaves either no file or the whole one: temp file, rename. It
// is not fsynced: the bundle is in the exec-root, whose content (like the
// container it describes) does not outlive the host's uptime.
func writeExitFile(path string, st wire.ExitStatus) error {
	data := wire.AppendExitStatus(nil, st)
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write exit file: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
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
