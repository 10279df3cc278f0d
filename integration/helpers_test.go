package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// findShim returns the pid of the berth-shim serving a container.
func findShim(t *testing.T, id string) int {
	t.Helper()
	if pid := findShimPid(id); pid != 0 {
		return pid
	}
	t.Fatalf("no shim found for %s", id)
	return 0
}

// findShimPid is the pid of the berth-shim serving container id, or 0.
func findShimPid(id string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if bytes.Contains(cmdline, []byte("berth-shim")) && bytes.Contains(cmdline, []byte(id)) {
			return pid
		}
	}
	return 0
}

func killPid(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
