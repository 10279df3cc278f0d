package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	containertypes "github.com/moby/moby/api/types/container"
)

// cgroupRoot is where the cgroup hierarchies are mounted.
var cgroupRoot = "/sys/fs/cgroup"

// procCgroups is a process's cgroups, found from /proc/<pid>/cgroup (as
// seen from the daemon's cgroup namespace), so that it works with any
// runtime, cgroup parent and layout: cgroup v1 (one directory per
// controller), v2, or the hybrid of the two.
type procCgroups struct {
	v1 map[string]string // controller → directory
	v2 string            // the unified directory ("" when none)
}

func cgroupsOf(pid int) (*procCgroups, error) {
	cg := &procCgroups{v1: map[string]string{}}
	unified := cgroupRoot
	if _, err := os.Stat(filepath.Join(cgroupRoot, "unified")); err == nil {
		unified = filepath.Join(cgroupRoot, "unified")
	}
	err := readLines(fmt.Sprintf("/proc/%d/cgroup", pid), func(line string) {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			return
		}
		if parts[0] == "0" && parts[1] == "" {
			cg.v2 = filepath.Join(unified, parts[2])
			return
		}
		for _, ctrl := range strings.Split(parts[1], ",") {
			dir := filepath.Join(cgroupRoot, parts[1], parts[2])
			if _, err := os.Stat(dir); err != nil {
				dir = filepath.Join(cgroupRoot, ctrl, parts[2])
			}
			cg.v1[ctrl] = dir
		}
	})
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errNotRunning(strconv.Itoa(pid))
		}
		return nil, err
	}
	return cg, nil
}

// isV1 reports whether the resource controllers are cgroup v1 ones.
func (cg *procCgroups) isV1() bool {
	_, ok := cg.v1["memory"]
	return ok
}

// dir is the directory of a controller's files.
func (cg *procCgroups) dir(ctrl string) string {
	if cg.isV1() {
		return cg.v1[ctrl]
	}
	return cg.v2
}

// pids lists the processes of the container's cgroup.
func (cg *procCgroups) pids() ([]int, error) {
	dir := cg.dir("pids")
	if dir == "" {
		dir = cg.dir("memory")
	}
	var pids []int
	err := readLines(filepath.Join(dir, "cgroup.procs"), func(l string) {
		if n, err := strconv.Atoi(strings.TrimSpace(l)); err == nil {
			pids = append(pids, n)
		}
	})
	return pids, err
}

func readUint(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0
	}
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

// readKV reads "key value" lines into a map.
func readKV(path string) map[string]uint64 {
	m := map[string]uint64{}
	_ = readLines(path, func(l string) {
		k, v, ok := strings.Cut(l, " ")
		if !ok {
			return
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			m[k] = n
		}
	})
	return m
}

// fill reads the container's usage into st, docker's stats format.
func (cg *procCgroups) fill(st *containertypes.StatsResponse) {
	st.CPUStats.SystemUsage, st.CPUStats.OnlineCPUs = systemCPU()
	hostMem := hostMemory()
	if cg.isV1() {
		cpu := cg.v1["cpuacct"]
		st.CPUStats.CPUUsage.TotalUsage = readUint(filepath.Join(cpu, "cpuacct.usage"))
		ticks := readKV(filepath.Join(cpu, "cpuacct.stat"))
		const nsPerTick = 1e9 / 100
		st.CPUStats.CPUUsage.UsageInUsermode = ticks["user"] * nsPerTick
		st.CPUStats.CPUUsage.UsageInKernelmode = ticks["system"] * nsPerTick
		th := readKV(filepath.Join(cg.v1["cpu"], "cpu.stat"))
		st.CPUStats.ThrottlingData = containertypes.ThrottlingData{Periods: th["nr_periods"], ThrottledPeriods: th["nr_throttled"], ThrottledTime: th["throttled_time"]}

		mem := cg.v1["memory"]
		st.MemoryStats.Usage = readUint(filepath.Join(mem, "memory.usage_in_bytes"))
		st.MemoryStats.MaxUsage = readUint(filepath.Join(mem, "memory.max_usage_in_bytes"))
		st.MemoryStats.Failcnt = readUint(filepath.Join(mem, "memory.failcnt"))
		st.MemoryStats.Limit = readUint(filepath.Join(mem, "memory.limit_in_bytes"))
		st.MemoryStats.Stats = readKV(filepath.Join(mem, "memory.stat"))

		pids := cg.v1["pids"]
		st.PidsStats.Current = readUint(filepath.Join(pids, "pids.current"))
		st.PidsStats.Limit = readUint(filepath.Join(pids, "pids.max"))

		blk := cg.v1["blkio"]
		st.BlkioStats.IoServiceBytesRecursive = readBlkio(filepath.Join(blk, "blkio.throttle.io_service_bytes_recursive"))
		if st.BlkioStats.IoServiceBytesRecursive == nil {
			st.BlkioStats.IoServiceBytesRecursive = readBlkio(filepath.Join(blk, "blkio.throttle.io_service_bytes"))
		}
		st.BlkioStats.IoServicedRecursive = readBlkio(filepath.Join(blk, "blkio.throttle.io_serviced_recursive"))
	} else {
		dir := cg.v2
		cpu := readKV(filepath.Join(dir, "cpu.stat"))
		st.CPUStats.CPUUsage.TotalUsage = cpu["usage_usec"] * 1000
		st.CPUStats.CPUUsage.UsageInUsermode = cpu["user_usec"] * 1000
		st.CPUStats.CPUUsage.UsageInKernelmode = cpu["system_usec"] * 1000
		st.CPUStats.ThrottlingData = containertypes.ThrottlingData{Periods: cpu["nr_periods"], ThrottledPeriods: cpu["nr_throttled"], ThrottledTime: cpu["throttled_usec"] * 1000}
		st.MemoryStats.Usage = readUint(filepath.Join(dir, "memory.current"))
		st.MemoryStats.MaxUsage = readUint(filepath.Join(dir, "memory.peak"))
		st.MemoryStats.Limit = readUint(filepath.Join(dir, "memory.max"))
		st.MemoryStats.Stats = readKV(filepath.Join(dir, "memory.stat"))
		st.PidsStats.Current = readUint(filepath.Join(dir, "pids.current"))
		st.PidsStats.Limit = readUint(filepath.Join(dir, "pids.max"))
		st.BlkioStats.IoServiceBytesRecursive = readIOStat(filepath.Join(dir, "io.stat"))
	}
	// An unlimited cgroup reports a huge number (v1) or "max" (v2):
	// docker shows the host's memory then.
	if st.MemoryStats.Limit == 0 || (hostMem > 0 && st.MemoryStats.Limit > hostMem) {
		st.MemoryStats.Limit = hostMem
	}
}

// readBlkio reads a v1 blkio file: "MAJ:MIN Op value" lines.
func readBlkio(path string) []containertypes.BlkioStatEntry {
	var out []containertypes.BlkioStatEntry
	_ = readLines(path, func(l string) {
		f := strings.Fields(l)
		if len(f) != 3 {
			return
		}
		maj, min, ok := strings.Cut(f[0], ":")
		if !ok {
			return
		}
		e := containertypes.BlkioStatEntry{Op: f[1]}
		e.Major, _ = strconv.ParseUint(maj, 10, 64)
		e.Minor, _ = strconv.ParseUint(min, 10, 64)
		e.Value, _ = strconv.ParseUint(f[2], 10, 64)
		out = append(out, e)
	})
	return out
}

// readIOStat turns v2's io.stat into docker's service-bytes entries.
func readIOStat(path string) []containertypes.BlkioStatEntry {
	var out []containertypes.BlkioStatEntry
	_ = readLines(path, func(l string) {
		f := strings.Fields(l)
		if len(f) < 2 {
			return
		}
		maj, min, ok := strings.Cut(f[0], ":")
		if !ok {
			return
		}
		ma, _ := strconv.ParseUint(maj, 10, 64)
		mi, _ := strconv.ParseUint(min, 10, 64)
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseUint(v, 10, 64)
			switch k {
			case "rbytes":
				out = append(out, containertypes.BlkioStatEntry{Major: ma, Minor: mi, Op: "read", Value: n})
			case "wbytes":
				out = append(out, containertypes.BlkioStatEntry{Major: ma, Minor: mi, Op: "write", Value: n})
			}
		}
	})
	return out
}

// systemCPU is the host's total CPU time in nanoseconds (/proc/stat's
// first line, in USER_HZ ticks) and its number of online CPUs.
func systemCPU() (uint64, uint32) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	var total uint64
	var cpus uint32
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if i == 0 && f[0] == "cpu" {
			for _, v := range f[1:min(len(f), 8)] {
				n, _ := strconv.ParseUint(v, 10, 64)
				total += n
			}
			continue
		}
		if strings.HasPrefix(f[0], "cpu") {
			cpus++
		}
	}
	return total * (1e9 / 100), cpus
}

// hostMemory is the host's total memory in bytes.
func hostMemory() uint64 {
	var total uint64
	_ = readLines("/proc/meminfo", func(l string) {
		if strings.HasPrefix(l, "MemTotal:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				n, _ := strconv.ParseUint(f[1], 10, 64)
				total = n * 1024
			}
		}
	})
	return total
}
