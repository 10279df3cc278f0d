package monitor

import (
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// maxUnclaimed bounds the exit statuses kept for pids nobody asked about
// yet (orphans re-parented to the shim, or a child that exited before its
// pid was known). The oldest are forgotten first.
const maxUnclaimed = 128

// sweepInterval is how often orphans re-parented to the shim (processes
// outside the container's pid namespace whose parent died) are reaped
// when no known child's exit prompts it.
const sweepInterval = 30 * time.Second

// sysPidfdOpen is pidfd_open(2) (Linux 5.3; PIDFD_NONBLOCK from 5.10).
const sysPidfdOpen = 434

// reaper is the shim's only caller of wait(2). Every child it must wait
// for gets a pidfd, which the Go poller watches like any descriptor: no
// thread blocks in wait4 and no SIGCHLD handler is installed (os/signal
// costs two permanent threads, real memory in a process that exists once
// per container). When a watched child ends, one sweep reaps every exited
// child with wait4(-1) and hands each status to whoever registered the
// pid, so runtime invocations and the container's init never race.
type reaper struct {
	mu        sync.Mutex
	waiting   map[int]chan syscall.WaitStatus
	unclaimed map[int]syscall.WaitStatus
	order     []int // unclaimed pids, oldest first
}

func newReaper() *reaper {
	r := &reaper{
		waiting:   map[int]chan syscall.WaitStatus{},
		unclaimed: map[int]syscall.WaitStatus{},
	}
	// A timer, not a goroutine with a ticker: nothing waits in between.
	var t *time.Timer
	t = time.AfterFunc(sweepInterval, func() {
		r.sweep()
		t.Reset(sweepInterval)
	})
	return r
}

// sweep collects every exited child.
func (r *reaper) sweep() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		r.dispatch(pid, ws)
	}
}

func (r *reaper) dispatch(pid int, ws syscall.WaitStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ch, ok := r.waiting[pid]; ok {
		delete(r.waiting, pid)
		ch <- ws
		return
	}
	if len(r.order) >= maxUnclaimed {
		delete(r.unclaimed, r.order[0])
		r.order = r.order[1:]
	}
	r.unclaimed[pid] = ws
	r.order = append(r.order, pid)
}

// childEnv is the environment of the runtime: the shim's own, minus what
// is meant for the shim alone (the second stage's handoff), with
// GOMAXPROCS=1. A runtime command is a short chain of syscalls with
// little to run in parallel, and runc and berth-runtime hand their
// GOMAXPROCS on to the container's init (the user's process gets the
// spec's environment, not this one): one P each spares the idle spinning
// and wakeups of a second, ~7% of the CPU of a create, start and delete
// here, which the engine's start rate pays.
func childEnv() []string {
	env := os.Environ()
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if strings.HasPrefix(kv, "GOMAXPROCS=") || strings.HasPrefix(kv, stateEnv+"=") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, "GOMAXPROCS=1")
}

// start forks and execs argv with the given descriptors (stdio, then any
// more as fd 3…) and returns a channel that receives its exit status. The
// lock is held across the fork so that a sweep cannot see the exit before
// the pid is registered.
func (r *reaper) start(argv []string, stdio []*os.File) (int, <-chan syscall.WaitStatus, error) {
	files := make([]uintptr, len(stdio))
	for i, f := range stdio {
		// Fd also puts the descriptor in blocking mode: what the runtime
		// (and, through it, the container) must get.
		files[i] = f.Fd()
	}
	ch := make(chan syscall.WaitStatus, 1)
	r.mu.Lock()
	pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{
		Dir:   "/",
		Env:   childEnv(),
		Files: files,
	})
	if err != nil {
		r.mu.Unlock()
		return 0, nil, err
	}
	r.waiting[pid] = ch
	r.mu.Unlock()
	r.await(pid)
	return pid, ch, nil
}

// watch returns a function that waits for the exit status of pid, a
// process the shim did not start itself (the container's init,
// re-parented to the shim when the runtime's create exited). The waiting
// happens in the caller's goroutine.
func (r *reaper) watch(pid int) func() syscall.WaitStatus {
	ch := make(chan syscall.WaitStatus, 1)
	r.mu.Lock()
	if ws, ok := r.unclaimed[pid]; ok {
		delete(r.unclaimed, pid)
		for i, p := range r.order {
			if p == pid {
				r.order = append(r.order[:i], r.order[i+1:]...)
				break
			}
		}
		r.mu.Unlock()
		ch <- ws
		return func() syscall.WaitStatus { return <-ch }
	}
	r.waiting[pid] = ch
	r.mu.Unlock()
	return func() syscall.WaitStatus {
		r.awaitExit(pid)
		return <-ch
	}
}

// await sweeps once pid has exited, from a goroutine of its own.
func (r *reaper) await(pid int) {
	go r.awaitExit(pid)
}

// awaitExit blocks until pid has exited, then sweeps. A pidfd turns
// readable when its process ends; the poller waits for that without a
// thread.
func (r *reaper) awaitExit(pid int) {
	fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), syscall.O_NONBLOCK, 0)
	if errno != 0 {
		if errno == syscall.ESRCH {
			// Already reaped by a sweep, which delivered the status.
			return
		}
		r.pollFor(pid)
		return
	}
	f := os.NewFile(fd, "pidfd")
	defer f.Close()
	if rc, err := f.SyscallConn(); err == nil {
		// The callback is first called before any wait, and catches an
		// exit that already happened. If the poller fails, pollFor polls.
		_ = rc.Read(func(fd uintptr) bool { return pollReady(int(fd)) })
	}
	// A readable pidfd does not always mean the child can be reaped yet:
	// under ptrace the tracer sees the zombie first. So sweep until it
	// has been.
	r.pollFor(pid)
}

// pollFor sweeps until pid has been reaped, backing off from 1 ms to
// 50 ms; alone, it is the fallback for kernels without pidfds.
func (r *reaper) pollFor(pid int) {
	delay := time.Millisecond
	for {
		r.sweep()
		r.mu.Lock()
		_, pending := r.waiting[pid]
		r.mu.Unlock()
		if !pending {
			return
		}
		time.Sleep(delay)
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// pollReady polls fd without blocking: true when it is readable or hung
// up (for a pidfd: the process exited).
func pollReady(fd int) bool {
	p := pollFd{fd: int32(fd), events: pollIn}
	var zero syscall.Timespec
	n, _, errno := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&p)), 1, uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
	return errno == 0 && n == 1
}

// pollFd is struct pollfd of poll(2).
type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

const pollIn = 0x1

// exitCode maps a wait status to the code docker reports: the exit status,
// or 128+N for a process killed by signal N.
func exitCode(ws syscall.WaitStatus) (code, signal int) {
	if ws.Signaled() {
		return 128 + int(ws.Signal()), int(ws.Signal())
	}
	return ws.ExitStatus(), 0
}
