package monitor

import (
	"bufio"
	"errors"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/berth-engine/berth/internal/shim/wire"
)

// acceptLoop serves the control socket until it is closed.
func (m *monitor) acceptLoop() {
	for {
		conn, err := m.ln.accept()
		if err != nil {
			if errors.Is(err, errListenerClosed) {
				return
			}
			// Out of descriptors, most likely: let some go first.
			logWarn("accept", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go m.handle(conn)
	}
}

// handle serves one connection: one request line, one response line; an
// attach then carries the stream, a wait stays until the exit.
func (m *monitor) handle(conn *os.File) {
	br := bufio.NewReaderSize(conn, 512)
	_ = conn.SetReadDeadline(time.Now().Add(requestTimeout))
	line, err := readLine(br, wire.MaxLine)
	if err != nil {
		conn.Close()
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	req, err := wire.ParseRequest(line)
	if err != nil {
		_ = reply(conn, errResponse(kindErr(wire.KindInvalidArgument, "%v", err)))
		conn.Close()
		return
	}
	switch req.Op {
	case wire.OpWait:
		m.wait(conn)
		return
	case wire.OpAttach:
		m.attach(conn, br, req.AttachOptions)
		return
	}
	if !m.busy.enter() {
		conn.Close() // the shim is exiting
		return
	}
	defer m.busy.leave()
	defer conn.Close()
	// A request leaves a little garbage; many make a trim worthwhile.
	defer m.trim.add(requestGarbage)
	if req.Op == wire.OpHealth {
		m.healthReply(conn)
		return
	}
	var resp wire.Response
	switch req.Op {
	case wire.OpState:
		st := m.state()
		resp.State = &st
	case wire.OpStart:
		if err := m.start(); err != nil {
			resp = errResponse(err)
		}
	case wire.OpKill:
		if err := m.kill(req.Signal, req.All); err != nil {
			resp = errResponse(err)
		}
	case wire.OpResize:
		if err := m.resize(req.Height, req.Width); err != nil {
			resp = errResponse(err)
		}
	}
	_ = reply(conn, resp)
}

// inflight counts requests being answered, so that an exiting shim lets
// them finish, and refuses new ones once it has started waiting.
type inflight struct {
	mu      sync.Mutex
	n       int
	closing bool
	idle    chan struct{} // closed when n drops to zero while closing
}

func (f *inflight) enter() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return false
	}
	f.n++
	return true
}

func (f *inflight) leave() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n--
	if f.n == 0 && f.idle != nil {
		close(f.idle)
		f.idle = nil
	}
}

// drain refuses new requests and waits up to d for the current ones.
func (f *inflight) drain(d time.Duration) {
	f.mu.Lock()
	f.closing = true
	if f.n == 0 {
		f.mu.Unlock()
		return
	}
	idle := make(chan struct{})
	f.idle = idle
	f.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	}
}

// readLine reads up to and including '\n', at most max bytes.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max {
			return nil, errors.New("request line too long")
		}
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

func reply(conn *os.File, resp wire.Response) error {
	b := wire.AppendResponse(make([]byte, 0, 128), resp)
	_ = conn.SetWriteDeadline(time.Now().Add(requestTimeout))
	_, err := conn.Write(b)
	_ = conn.SetWriteDeadline(time.Time{})
	return err
}

func (m *monitor) state() wire.State {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := wire.State{Pid: m.pid, Status: m.status}
	if m.exit != nil {
		e := *m.exit
		st.Exit = &e
	}
	return st
}

func (m *monitor) start() error {
	m.mu.Lock()
	if m.status != wire.StatusCreated || m.starting || m.initDone {
		status := m.status
		if m.initDone {
			status = wire.StatusStopped
		}
		m.mu.Unlock()
		return kindErr(wire.KindFailedPrecondition, "cannot start container %s: it is %s", m.cfg.ID, status)
	}
	m.starting = true
	pid := m.pid
	m.mu.Unlock()
	err := startViaFifo(m.cfg.RuntimeArgs, m.cfg.ID, pid)
	if errors.Is(err, errNoFifo) {
		err = m.rt.run("start", m.cfg.ID)
	}
	m.mu.Lock()
	m.starting = false
	if err == nil && m.status == wire.StatusCreated && !m.initDone {
		m.status = wire.StatusRunning
	}
	m.mu.Unlock()
	if err != nil {
		return errors.New("OCI runtime start failed: " + err.Error())
	}
	m.startHealth()
	return nil
}

func (m *monitor) notRunning() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.initDone
}

func (m *monitor) kill(sig int, all bool) error {
	if m.notRunning() {
		return kindErr(wire.KindNotFound, "container %s is not running", m.cfg.ID)
	}
	if !all {
		// Signalled directly, as `<runtime> kill` would: no Go process
		// start between `docker stop` and the container.
		if ok, err := m.signalInit(sig); ok {
			if errors.Is(err, syscall.ESRCH) || m.notRunning() {
				return kindErr(wire.KindNotFound, "container %s is not running", m.cfg.ID)
			}
			if err != nil {
				return errors.New("kill container init: " + err.Error())
			}
			return nil
		}
	}
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	args = append(args, m.cfg.ID, strconv.Itoa(sig))
	if err := m.rt.run(args...); err != nil {
		if m.notRunning() {
			return kindErr(wire.KindNotFound, "container %s is not running", m.cfg.ID)
		}
		return errors.New("OCI runtime kill failed: " + err.Error())
	}
	return nil
}

func (m *monitor) resize(height, width uint16) error {
	if m.console == nil {
		return nil // docker ignores a resize of a container without a TTY
	}
	if m.notRunning() {
		return kindErr(wire.KindNotFound, "container %s is not running", m.cfg.ID)
	}
	return setWinsize(m.console, height, width)
}

// wait answers when the container has exited. The connection stays
// registered until then; reading it notices a client that gives up.
//
// After the reply the connection stays open until the runtime has deleted
// the container, then closes: EOF tells a waiter that the shim is done
// with it.
func (m *monitor) wait(conn *os.File) {
	m.mu.Lock()
	if m.exit != nil {
		st := *m.exit
		m.mu.Unlock()
		_ = reply(conn, wire.Response{Exit: &st})
		<-m.deleted
		conn.Close()
		return
	}
	m.waiters[conn] = struct{}{}
	m.mu.Unlock()
	var b [1]byte
	for {
		if _, err := conn.Read(b[:]); err != nil {
			break
		}
	}
	m.mu.Lock()
	_, mine := m.waiters[conn] // still ours: finish has not taken it
	delete(m.waiters, conn)
	m.mu.Unlock()
	if mine {
		conn.Close()
	}
}

// attach turns the connection into an attach stream: output (framed for a
// non-TTY container) from the shim, stdin from the client, until the
// container's output ends.
func (m *monitor) attach(conn *os.File, br *bufio.Reader, opts wire.AttachOptions) {
	c := newClient(conn, opts.Stdout, opts.Stderr)
	// Registered before the handshake: an attach made before start sees
	// the output from its first byte.
	live := m.out.add(c)
	if err := reply(conn, wire.Response{}); err != nil || !live {
		m.out.remove(c)
		if live {
			conn.Close()
			return
		}
		// Output has ended already: an empty stream.
		_ = closeWrite(conn)
		drain(br)
		conn.Close()
		return
	}
	go c.writeLoop()

	useStdin := opts.Stdin && m.cfg.Stdin
	first := useStdin && m.stdin.claim()
	buf := make([]byte, 4096)
	for {
		n, err := br.Read(buf)
		if n > 0 && useStdin {
			m.stdin.write(buf[:n])
		}
		if err != nil {
			break
		}
	}
	// The client's input ended (CloseWrite, or it went away).
	if first && m.cfg.StdinOnce {
		m.stdin.end()
	}
	<-c.done
	m.out.remove(c)
	conn.Close()
}

// drain reads what a client sends until it closes, so that closing the
// connection never resets it with bytes unread.
func drain(br *bufio.Reader) {
	buf := make([]byte, 512)
	for {
		if _, err := br.Read(buf); err != nil {
			return
		}
	}
}
