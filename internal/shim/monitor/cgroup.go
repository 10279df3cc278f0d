package monitor

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroupRoot is where the cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// oomFile finds the file that counts OOM kills in the memory cgroup of
// pid: memory.oom_control of the v1 memory controller, else memory.events
// of cgroup v2. It returns "" when there is none (no memory controller).
func oomFile(pid int) string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return ""
	}
	v1, v2 := parseProcCgroup(data)
	if v1 != "" {
		if f := filepath.Join(cgroupRoot, "memory", v1, "memory.oom_control"); exists(f) {
			return f
		}
	}
	if v2 != "" {
		for _, root := range []string{cgroupRoot, filepath.Join(cgroupRoot, "unified")} {
			if f := filepath.Join(root, v2, "memory.events"); exists(f) {
				return f
			}
		}
	}
	return ""
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// parseProcCgroup reads /proc/PID/cgroup ("ID:controllers:path" lines) and
// returns the path of the v1 memory controller and the v2 path. Paths are
// cleaned so that they cannot climb out of the cgroup mount.
func parseProcCgroup(data []byte) (memV1, v2 string) {
	for _, line := range bytes.Split(data, []byte{'\n'}) {
		parts := strings.SplitN(string(line), ":", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "/") {
			continue
		}
		p := filepath.Clean(parts[2])
		if parts[0] == "0" && parts[1] == "" {
			v2 = p
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" {
				memV1 = p
			}
		}
	}
	return memV1, v2
}

// oomKills reads the oom_kill counter of a memory.oom_control (v1) or
// memory.events (v2) file; both are "key value" lines.
func oomKills(data []byte) int64 {
	for _, line := range bytes.Split(data, []byte{'\n'}) {
		f := strings.Fields(string(line))
		if len(f) == 2 && f[0] == "oom_kill" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err == nil && n > 0 {
				return n
			}
		}
	}
	return 0
}

// readOOMKills is the current oom_kill count of file ("" gives 0).
func readOOMKills(file string) int64 {
	if file == "" {
		return 0
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	return oomKills(data)
}
