package monitor

import "syscall"

// sysPidfdSendSignal is pidfd_send_signal(2) (Linux 5.1), the same number
// on every architecture.
const sysPidfdSendSignal = 424

// openPidfd returns a pidfd of pid, or -1 (no pidfds on this kernel).
func openPidfd(pid int) int {
	fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
	if errno != 0 {
		return -1
	}
	syscall.CloseOnExec(int(fd))
	return int(fd)
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
