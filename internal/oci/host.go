package oci

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// cgroupRoot is where the cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

var cgroupV2 = sync.OnceValue(func() bool {
	var st unix.Statfs_t
	return unix.Statfs(cgroupRoot, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
})

// DetectCgroupV2 reports whether this host runs the unified cgroup
// hierarchy (cgroup v2 mounted at /sys/fs/cgroup). A hybrid host, with v1
// controllers and cgroup2 at /sys/fs/cgroup/unified, is v1 here. Cached.
func DetectCgroupV2() bool { return cgroupV2() }

// HostSupport lists the optional cgroup features a host may lack. Docker
// drops a setting the host cannot apply, with a warning, rather than fail
// the container's start; Spec does the same.
type HostSupport struct {
	// SwapLimit: the memory controller accounts swap (memory.memsw.* on
	// v1, memory.swap.max on v2).
	SwapLimit bool
	// BlkioWeight: the block IO controller has a proportional weight
	// (blkio.weight or BFQ's blkio.bfq.weight on v1, io on v2).
	BlkioWeight bool
	// BlkioWeightDevice: per-device weights (blkio.weight_device on v1;
	// BFQ has no such file, which libcontainer would fail to write).
	BlkioWeightDevice bool
}

var (
	hostOnce sync.Once
	hostV1   HostSupport
	hostV2   HostSupport
)

// DetectHostSupport probes this host's cgroup hierarchy once and reports
// what it supports, for the given cgroup version.
func DetectHostSupport(v2 bool) HostSupport {
	hostOnce.Do(func() {
		exists := func(p ...string) bool {
			_, err := os.Stat(filepath.Join(append([]string{cgroupRoot}, p...)...))
			return err == nil
		}
		hostV1 = HostSupport{
			SwapLimit: exists("memory", "memory.memsw.limit_in_bytes"),
			// The BFQ weight files exist in child groups only; its
			// statistics at the root say the scheduler is there.
			BlkioWeight: exists("blkio", "blkio.weight") || exists("blkio", "blkio.bfq.weight") ||
				exists("blkio", "blkio.bfq.io_service_bytes"),
			BlkioWeightDevice: exists("blkio", "blkio.weight_device"),
		}
		b, _ := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.controllers"))
		ctrls := strings.Fields(string(b))
		// As docker: swap accounting is part of the v2 memory controller.
		hostV2 = HostSupport{
			SwapLimit:         slices.Contains(ctrls, "memory"),
			BlkioWeight:       slices.Contains(ctrls, "io"),
			BlkioWeightDevice: slices.Contains(ctrls, "io"),
		}
	})
	if v2 {
		return hostV2
	}
	return hostV1
}
