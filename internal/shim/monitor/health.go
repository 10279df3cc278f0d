package monitor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/berth-engine/berth/internal/shim/wire"
)

// The container's health check runs here rather than in the daemon: the
// shim already waits on the container, so a probe costs one `<runtime>
// exec` and a pipe, and the daemon hears only of status changes (a
// datagram, see wire/health.go). The probe joins the container's
// namespaces and cgroup through the runtime like any exec; with --detach
// the runtime exits once it runs and the probe is re-parented to the
// shim (a child subreaper), whose reaper collects its exit status.
// Probing goes on while the daemon is down.

const (
	// probeOutputGrace is how long a probe's output may stay open after
	// it exited (a background child holding it) before it is cut.
	probeOutputGrace = 100 * time.Millisecond
	// probeGCEvery: the shim runs with the GC off (mem.go) and a probe
	// leaves a few KiB of garbage, so every so many probes it collects.
	probeGCEvery = 16
)

// prober runs one container's health check on its schedule.
type prober struct {
	m       *monitor
	cfg     wire.HealthConfig
	argv    []string // the runtime's exec command line
	pidFile string
	logPath string
	started time.Time
	buf     []byte // the probe's output; one probe runs at a time

	mu       sync.Mutex
	st       wire.HealthState
	timer    *time.Timer
	stopped  bool
	notified bool // the daemon has been told the current status
	probes   int
}

// loadProber reads <bundle>/health.json; nil when the container has no
// health check.
func loadProber(m *monitor) (*prober, error) {
	data, err := os.ReadFile(filepath.Join(m.cfg.Bundle, wire.HealthConfigFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read health config: %w", err)
	}
	cfg, err := wire.ParseHealthConfig(data)
	if err != nil {
		return nil, err
	}
	p := &prober{
		m:       m,
		cfg:     cfg,
		pidFile: filepath.Join(m.cfg.Bundle, "health.pid"),
		logPath: filepath.Join(m.cfg.Bundle, "health.log"),
		buf:     make([]byte, 0, wire.MaxProbeOutput),
		st:      wire.HealthState{Status: wire.HealthStarting},
		// The daemon set the status to starting itself.
		notified: true,
	}
	rt := *m.rt
	rt.logPath = p.logPath
	p.argv = rt.argv("exec", "--process", cfg.Process, "--detach", "--pid-file", p.pidFile, m.cfg.ID)
	return p, nil
}

// startHealth begins probing once the container has started.
func (m *monitor) startHealth() {
	p, err := loadProber(m)
	if err != nil {
		logWarn("health check disabled", "err", err)
		return
	}
	if p == nil {
		return
	}
	m.mu.Lock()
	if m.health != nil || m.initDone {
		m.mu.Unlock()
		return
	}
	m.health = p
	m.mu.Unlock()
	p.mu.Lock()
	p.started = time.Now()
	p.timer = time.AfterFunc(p.next(), p.run)
	p.mu.Unlock()
}

// stopHealth ends probing when the container's init has exited, and
// leaves the last state in the bundle for the daemon.
func (m *monitor) stopHealth() {
	m.mu.Lock()
	p := m.health
	m.mu.Unlock()
	if p == nil {
		return
	}
	p.mu.Lock()
	p.stopped = true
	if p.timer != nil {
		p.timer.Stop()
	}
	line := wire.AppendHealthState(nil, p.st)
	p.mu.Unlock()
	path := filepath.Join(m.cfg.Bundle, wire.HealthStateFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, line, 0o600); err == nil {
		err = os.Rename(tmp, path)
		if err != nil {
			logWarn("record health state", "err", err)
		}
	}
}

// healthState answers OpHealth.
func (m *monitor) healthReply(conn *os.File) {
	m.mu.Lock()
	p := m.health
	m.mu.Unlock()
	if p == nil {
		_ = reply(conn, errResponse(kindErr(wire.KindNotFound, "container %s has no health check running", m.cfg.ID)))
		return
	}
	p.mu.Lock()
	line := wire.AppendHealthState(nil, p.st)
	p.mu.Unlock()
	_ = conn.SetWriteDeadline(time.Now().Add(requestTimeout))
	_, _ = conn.Write(line)
}

// next is the delay before the next probe: the start interval while the
// container is starting within its start period; callers hold p.mu.
func (p *prober) next() time.Duration {
	if p.st.Status == wire.HealthStarting && p.inStartPeriod(time.Now()) {
		return min(p.cfg.StartInterval, p.cfg.Interval)
	}
	return p.cfg.Interval
}

func (p *prober) inStartPeriod(t time.Time) bool {
	return p.cfg.StartPeriod > 0 && t.Sub(p.started) < p.cfg.StartPeriod
}

// run is one tick: probe, record, schedule the next.
func (p *prober) run() {
	res := p.probe()
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	old := p.st.Status
	p.record(res)
	if p.st.Status != old {
		p.notified = false
	}
	var notice []byte
	if !p.notified && p.cfg.Notify != "" {
		notice = wire.AppendHealthNotice(nil, wire.HealthNotice{ID: p.m.cfg.ID, Status: p.st.Status, FailingStreak: p.st.FailingStreak})
	}
	p.probes++
	gc := p.probes%probeGCEvery == 0
	p.timer.Reset(p.next())
	p.mu.Unlock()
	if notice != nil {
		// A daemon that is down or busy hears of it after the next probe;
		// one that restarts asks (OpHealth).
		if err := sendDatagram(p.cfg.Notify, notice); err == nil {
			p.mu.Lock()
			p.notified = true
			p.mu.Unlock()
		}
	}
	if gc {
		debug.FreeOSMemory()
	}
}

// record applies a result as docker does; callers hold p.mu.
func (p *prober) record(res wire.HealthResult) {
	st := &p.st
	if len(st.Log) >= wire.MaxHealthLog {
		copy(st.Log, st.Log[1:])
		st.Log = st.Log[:wire.MaxHealthLog-1]
	}
	st.Log = append(st.Log, res)
	if res.ExitCode == 0 {
		st.Status, st.FailingStreak = wire.HealthHealthy, 0
		return
	}
	// While the container is starting, failures within the start period
	// do not count.
	if st.Status == wire.HealthStarting && p.inStartPeriod(res.Start) {
		return
	}
	st.FailingStreak++
	if st.FailingStreak >= p.cfg.Retries {
		st.Status = wire.HealthUnhealthy
	}
}

// probe runs the check once; one that outlives the timeout is killed.
func (p *prober) probe() wire.HealthResult {
	res := wire.HealthResult{Start: time.Now()}
	done := func(code int, out string) wire.HealthResult {
		res.End, res.ExitCode, res.Output = time.Now(), code, out
		return res
	}
	r, w, err := os.Pipe()
	if err != nil {
		return done(-1, err.Error())
	}
	// The runtime's log is only this probe's: its errors are the result.
	_ = os.Truncate(p.logPath, 0)
	_ = os.Remove(p.pidFile)
	timeout := time.NewTimer(p.cfg.Timeout)
	defer timeout.Stop()
	rtPid, rtCh, err := p.m.rt.reaper.start(p.argv, []*os.File{p.m.null, w, w})
	w.Close()
	if err != nil {
		r.Close()
		return done(-1, err.Error())
	}
	outCh := make(chan []byte, 1)
	go func() { outCh <- readProbeOutput(r, p.buf[:0]) }()
	output := func(grace time.Duration) string {
		t := time.NewTimer(grace)
		defer t.Stop()
		var b []byte
		select {
		case b = <-outCh:
		case <-t.C:
			r.Close()
			b = <-outCh
		}
		r.Close()
		return string(b)
	}
	timedOut := func() wire.HealthResult {
		output(0)
		return done(-1, fmt.Sprintf("Health check exceeded timeout (%v)", p.cfg.Timeout))
	}
	var ws syscall.WaitStatus
	select {
	case ws = <-rtCh:
	case <-timeout.C:
		// The runtime itself hangs (a frozen cgroup, say). It is the
		// shim's child: its pid is not reused before the reaper collects
		// it, just before rtCh delivers.
		_ = syscall.Kill(rtPid, syscall.SIGKILL)
		<-rtCh
		if pid, err := readPidFile(p.pidFile); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			wait := p.m.rt.reaper.watch(pid)
			go wait() // collected whenever it ends
		}
		return timedOut()
	}
	if !succeeded(ws) {
		output(probeOutputGrace)
		msg := lastRuntimeError(readFrom(p.logPath, 0, 64<<10))
		if msg == "" {
			code, _ := exitCode(ws)
			msg = fmt.Sprintf("%s exited with status %d", filepath.Base(p.m.rt.path), code)
		}
		return done(-1, "OCI runtime exec failed: "+msg)
	}
	pid, err := readPidFile(p.pidFile)
	if err != nil {
		output(probeOutputGrace)
		return done(-1, err.Error())
	}
	// Re-parented to the shim when the runtime exited: until its status
	// is collected its pid cannot be reused.
	wait := p.m.rt.reaper.watch(pid)
	exited := make(chan syscall.WaitStatus, 1)
	go func() { exited <- wait() }()
	select {
	case ws = <-exited:
	case <-timeout.C:
		_ = syscall.Kill(pid, syscall.SIGKILL)
		// A runtime that reaped the probe itself (it never became the
		// shim's child) must not stall the health check for good.
		t := time.NewTimer(time.Second)
		select {
		case <-exited:
		case <-t.C:
			logWarn("health check probe not reaped after SIGKILL", "pid", pid)
		}
		t.Stop()
		return timedOut()
	}
	code, _ := exitCode(ws)
	return done(code, output(probeOutputGrace))
}

// readProbeOutput keeps the first MaxProbeOutput bytes and drains the
// rest, so that the probe never blocks on a full pipe.
func readProbeOutput(r *os.File, buf []byte) []byte {
	var scratch [512]byte
	for {
		dst := scratch[:]
		if room := wire.MaxProbeOutput - len(buf); room > 0 {
			dst = buf[len(buf):wire.MaxProbeOutput]
		}
		n, err := r.Read(dst)
		if n > 0 && len(buf) < wire.MaxProbeOutput {
			buf = buf[:len(buf)+n]
		}
		if err != nil {
			return buf // EOF, or closed after the grace
		}
	}
}

// sendDatagram sends msg to a unixgram socket without blocking.
func sendDatagram(path string, msg []byte) error {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	return syscall.Sendto(fd, msg, 0, &syscall.SockaddrUnix{Name: path})
}
