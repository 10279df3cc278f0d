package monitor

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// maxUnclaimed bounds the exit statuses kept for pids nobody asked about
// yet (orphans re-parented to the shim, or a child that exited before its
// pid was known). The oldest are forgotten first.
const maxUnclaimed = 128

// reaper is the shim's only caller of wait(2): it reaps every child with
// wait4(-1) and hands each status to whoever registered the pid. Using one
// reaper (rather than exec.Cmd.Wait per child) is what lets the shim be a
// child subreaper without racing runtime invocations against the
// container's init.
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
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	go func() {
		for {
			r.reapAll()
			<-sigs
		}
	}()
	return r
}

// reapAll collects every exited child. SIGCHLD coalesces, so one signal
// may stand for many exits.
func (r *reaper) reapAll() {
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

// start forks and execs argv with the given stdio and returns a channel
// that receives its exit status. The lock is held across the fork so that
// the reaper cannot see the exit before the pid is registered.
func (r *reaper) start(argv []string, stdio [3]*os.File) (int, <-chan syscall.WaitStatus, error) {
	files := make([]uintptr, 3)
	for i, f := range stdio {
		files[i] = f.Fd()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{
		Dir:   "/",
		Env:   os.Environ(),
		Files: files,
	})
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan syscall.WaitStatus, 1)
	r.waiting[pid] = ch
	return pid, ch, nil
}

// watch returns a channel that receives the exit status of pid, a process
// the shim did not start itself (the container's init, re-parented to the
// shim when the runtime's create exited).
func (r *reaper) watch(pid int) <-chan syscall.WaitStatus {
	ch := make(chan syscall.WaitStatus, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if ws, ok := r.unclaimed[pid]; ok {
		delete(r.unclaimed, pid)
		for i, p := range r.order {
			if p == pid {
				r.order = append(r.order[:i], r.order[i+1:]...)
				break
			}
		}
		ch <- ws
		return ch
	}
	r.waiting[pid] = ch
	return ch
}

// exitCode maps a wait status to the code docker reports: the exit status,
// or 128+N for a process killed by signal N.
func exitCode(ws syscall.WaitStatus) (code, signal int) {
	if ws.Signaled() {
		return 128 + int(ws.Signal()), int(ws.Signal())
	}
	return ws.ExitStatus(), 0
}
