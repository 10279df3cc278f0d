package monitor

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
)

func TestOpenInitPidfd(t *testing.T) {
	if got := parentOf(os.Getpid()); got != os.Getppid() {
		t.Errorf("parentOf(self) = %d, want %d", got, os.Getppid())
	}
	// Not a child of ours: refused.
	if fd := openInitPidfd(os.Getppid()); fd != -1 {
		syscall.Close(fd)
		t.Errorf("a pidfd of our parent was taken for an init")
	}
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	fd := openInitPidfd(cmd.Process.Pid)
	if fd < 0 {
		t.Skip("no pidfds on this kernel")
	}
	defer syscall.Close(fd)
	m := &monitor{initFd: fd}
	m.cfg.RuntimeState = "/run/x/id"
	if ok, err := m.signalInit(int(syscall.SIGKILL)); !ok || err != nil {
		t.Fatalf("signalInit = %v, %v", ok, err)
	}
	if st, _ := cmd.Process.Wait(); st == nil || st.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want SIGKILL", st)
	}
	// Reaped: the pidfd now names a process that is gone.
	if ok, err := m.signalInit(int(syscall.SIGTERM)); !ok || err != syscall.ESRCH {
		t.Errorf("signalInit after the reap = %v, %v; want ESRCH", ok, err)
	}
	// Without RuntimeState the runtime's kill is used.
	m.cfg.RuntimeState = ""
	if ok, _ := m.signalInit(int(syscall.SIGTERM)); ok {
		t.Errorf("signalInit handled a kill for another runtime")
	}
}
