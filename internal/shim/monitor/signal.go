package monitor

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// sysPidfdSendSignal is pidfd_send_signal(2) (Linux 5.1), the same number
// on every architecture.
const sysPidfdSendSignal = 424

// openInitPidfd returns a pidfd of the container's init, pid, or -1 (no
// pidfds on this kernel, or pid is no longer the shim's child: an init
// that died before its start may have been reaped already, and its pid
// then names nothing of ours).
func openInitPidfd(pid int) int {
	fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
	if errno != 0 {
		return -1
	}
	syscall.CloseOnExec(int(fd))
	// Checked after the open: the pidfd names whatever process had pid
	// then, and the shim has no other child now (the runtime's create has
	// exited), so a parent that is the shim means the init.
	if parentOf(pid) != os.Getpid() {
		syscall.Close(int(fd))
		return -1
	}
	return int(fd)
}

// parentOf reads pid's parent from /proc/pid/stat (0 if unknown).
func parentOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// "pid (comm) state ppid …": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(string(f[1]))
	return ppid
}

// signalInit sends sig to the container's init through its pidfd, which
// is what `berth-runtime kill` (libcontainer's Signal) does for a
// container with a pid namespace of its own: the init is the shim's child
// and the pidfd names it even once it is reaped (then ESRCH), so no
// recycled pid can be hit. handled is false when the runtime must do it:
// another runtime (its kill may do more), or no pidfd.
func (m *monitor) signalInit(sig int) (handled bool, err error) {
	if m.cfg.RuntimeState == "" || m.initFd < 0 {
		return false, nil
	}
	_, _, errno := syscall.Syscall6(sysPidfdSendSignal, uintptr(m.initFd), uintptr(sig), 0, 0, 0, 0)
	if errno != 0 {
		return true, errno
	}
	return true, nil
}
