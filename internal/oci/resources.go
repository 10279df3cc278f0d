package oci

import (
	"fmt"
	"log/slog"
	"runtime"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/blkiodev"
	"github.com/moby/moby/api/types/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const (
	// minMemory is docker's smallest memory limit (6 MiB).
	minMemory = 6 << 20
	// cfsPeriod is the CFS period --cpus is expressed in (100 ms).
	cfsPeriod = 100000
)

func invalid(format string, a ...any) error {
	return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf(format, a...))
}

// resources converts the container's resources with docker's semantics,
// into the v1-style values of the runtime spec: runtimes convert them on a
// cgroup v2 host (shares to weight, memory+swap to swap), so the spec
// differs between v1 and v2 only where v2 has no equivalent.
func resources(hc *container.HostConfig, v2 bool, host *HostSupport) (*specs.LinuxResources, error) {
	r := &hc.Resources
	res := &specs.LinuxResources{Devices: defaultDeviceRules()}

	// Memory.
	mem := &specs.LinuxMemory{}
	if r.Memory < 0 || r.MemoryReservation < 0 {
		return nil, invalid("memory limits cannot be negative")
	}
	if r.Memory > 0 && r.Memory < minMemory {
		return nil, invalid("Minimum memory limit allowed is 6MB")
	}
	if r.MemoryReservation > 0 && r.MemoryReservation < minMemory {
		return nil, invalid("Minimum memory reservation allowed is 6MB")
	}
	if r.Memory > 0 && r.MemoryReservation > r.Memory {
		return nil, invalid("Minimum memory limit can not be less than memory reservation limit, see usage")
	}
	if r.Memory == 0 && r.MemorySwap > 0 {
		return nil, invalid("You should always set the Memory limit when using Memoryswap limit, see usage")
	}
	if r.MemorySwap < -1 {
		return nil, invalid("invalid memory swap limit %d", r.MemorySwap)
	}
	if r.Memory > 0 {
		limit := r.Memory
		mem.Limit = &limit
		swap := r.MemorySwap
		switch {
		case swap == 0:
			// docker's default: as much swap as memory.
			swap = 2 * r.Memory
		case swap > 0 && swap < r.Memory:
			return nil, invalid("Minimum memoryswap limit should be larger than memory limit, see usage")
		}
		if host.SwapLimit {
			mem.Swap = &swap
		} else if r.MemorySwap != 0 {
			slog.Warn("the host has no swap accounting: memory swap limit discarded")
		}
	}
	if r.MemoryReservation > 0 {
		rv := r.MemoryReservation
		mem.Reservation = &rv
	}
	if sw := r.MemorySwappiness; sw != nil && *sw != -1 {
		if *sw < 0 || *sw > 100 {
			return nil, invalid("Invalid value: %v, valid memory swappiness range is 0-100", *sw)
		}
		// cgroup v2 has no swappiness: dropped there, as docker does.
		if !v2 {
			u := uint64(*sw)
			mem.Swappiness = &u
		}
	}
	if r.OomKillDisable != nil && *r.OomKillDisable {
		// Neither has cgroup v2 an OOM-killer switch.
		if !v2 {
			t := true
			mem.DisableOOMKiller = &t
		}
	}
	if *mem != (specs.LinuxMemory{}) {
		res.Memory = mem
	}

	// CPU.
	cpu := &specs.LinuxCPU{}
	if r.CPUShares < 0 {
		return nil, invalid("invalid CPU shares: %d", r.CPUShares)
	}
	if r.CPUShares > 0 {
		sh := uint64(r.CPUShares)
		cpu.Shares = &sh
	}
	if r.NanoCPUs != 0 {
		if r.CPUPeriod != 0 {
			return nil, invalid("Conflicting options: Nano CPUs and CPU Period cannot both be set")
		}
		if r.CPUQuota != 0 {
			return nil, invalid("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
		}
		n := runtime.NumCPU()
		// Below 0.01 CPUs the quota would be under the kernel's 1 ms.
		if r.NanoCPUs < 1e7 || r.NanoCPUs > int64(n)*1e9 {
			return nil, invalid("Range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available", n, n)
		}
		period := uint64(cfsPeriod)
		quota := r.NanoCPUs * cfsPeriod / 1e9
		cpu.Period = &period
		cpu.Quota = &quota
	}
	if r.CPUPeriod != 0 {
		if r.CPUPeriod < 1000 || r.CPUPeriod > 1000000 {
			return nil, invalid("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
		}
		p := uint64(r.CPUPeriod)
		cpu.Period = &p
	}
	if r.CPUQuota != 0 {
		if r.CPUQuota > 0 && r.CPUQuota < 1000 {
			return nil, invalid("CPU cfs quota can not be less than 1ms (i.e. 1000)")
		}
		if r.CPUQuota < -1 {
			return nil, invalid("invalid CPU quota: %d", r.CPUQuota)
		}
		q := r.CPUQuota
		cpu.Quota = &q
	}
	if r.CPURealtimePeriod != 0 || r.CPURealtimeRuntime != 0 {
		return nil, errdefs.ErrNotImplemented.WithMessage("real-time CPU scheduling is not supported yet")
	}
	cpu.Cpus = r.CpusetCpus
	cpu.Mems = r.CpusetMems
	if cpu.Shares != nil || cpu.Quota != nil || cpu.Period != nil || cpu.Cpus != "" || cpu.Mems != "" {
		res.CPU = cpu
	}

	// Pids: 0 and -1 both mean unlimited; docker sends -1 ("max").
	if r.PidsLimit != nil {
		l := *r.PidsLimit
		if l <= 0 {
			l = -1
		}
		res.Pids = &specs.LinuxPids{Limit: &l}
	}

	// Block IO.
	bio := &specs.LinuxBlockIO{}
	if r.BlkioWeight != 0 {
		if r.BlkioWeight < 10 || r.BlkioWeight > 1000 {
			return nil, invalid("Range of blkio weight is from 10 to 1000")
		}
		if host.BlkioWeight {
			w := r.BlkioWeight
			bio.Weight = &w
		} else {
			slog.Warn("the host does not support block IO weight: weight discarded")
		}
	}
	for _, wd := range r.BlkioWeightDevice {
		if wd == nil {
			continue
		}
		if wd.Weight < 10 || wd.Weight > 1000 {
			return nil, invalid("Range of blkio weight is from 10 to 1000")
		}
		if !host.BlkioWeightDevice {
			slog.Warn("the host does not support block IO weight_device: weight-device discarded")
			continue
		}
		major, minor, err := deviceNumbers(wd.Path)
		if err != nil {
			return nil, err
		}
		w := wd.Weight
		d := specs.LinuxWeightDevice{Weight: &w}
		d.Major, d.Minor = major, minor
		bio.WeightDevice = append(bio.WeightDevice, d)
	}
	var err error
	if bio.ThrottleReadBpsDevice, err = throttleDevices(r.BlkioDeviceReadBps); err != nil {
		return nil, err
	}
	if bio.ThrottleWriteBpsDevice, err = throttleDevices(r.BlkioDeviceWriteBps); err != nil {
		return nil, err
	}
	if bio.ThrottleReadIOPSDevice, err = throttleDevices(r.BlkioDeviceReadIOps); err != nil {
		return nil, err
	}
	if bio.ThrottleWriteIOPSDevice, err = throttleDevices(r.BlkioDeviceWriteIOps); err != nil {
		return nil, err
	}
	if bio.Weight != nil || len(bio.WeightDevice)+len(bio.ThrottleReadBpsDevice)+len(bio.ThrottleWriteBpsDevice)+
		len(bio.ThrottleReadIOPSDevice)+len(bio.ThrottleWriteIOPSDevice) > 0 {
		res.BlockIO = bio
	}
	return res, nil
}

// deviceNumbers returns the major and minor numbers of a block device.
func deviceNumbers(path string) (int64, int64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, 0, invalid("cannot use device %s: %v", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, 0, invalid("%s is not a block device", path)
	}
	return int64(unix.Major(uint64(st.Rdev))), int64(unix.Minor(uint64(st.Rdev))), nil
}

func throttleDevices(in []*blkiodev.ThrottleDevice) ([]specs.LinuxThrottleDevice, error) {
	var out []specs.LinuxThrottleDevice
	for _, td := range in {
		if td == nil {
			continue
		}
		major, minor, err := deviceNumbers(td.Path)
		if err != nil {
			return nil, err
		}
		d := specs.LinuxThrottleDevice{Rate: td.Rate}
		d.Major, d.Minor = major, minor
		out = append(out, d)
	}
	return out, nil
}

func i64(v int64) *int64 { return &v }

// defaultDeviceRules is docker's device cgroup allow list: deny all, then
// the few devices every container needs; /dev/fuse stays denied. Runtimes
// add their own defaults (/dev/full, ptys, mknod) after these.
func defaultDeviceRules() []specs.LinuxDeviceCgroup {
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "c", Major: i64(1), Minor: i64(5), Access: "rwm"},     // /dev/zero
		{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "rwm"},     // /dev/null
		{Allow: true, Type: "c", Major: i64(1), Minor: i64(9), Access: "rwm"},     // /dev/urandom
		{Allow: true, Type: "c", Major: i64(1), Minor: i64(8), Access: "rwm"},     // /dev/random
		{Allow: true, Type: "c", Major: i64(5), Minor: i64(0), Access: "rwm"},     // /dev/tty
		{Allow: true, Type: "c", Major: i64(5), Minor: i64(1), Access: "rwm"},     // /dev/console
		{Allow: false, Type: "c", Major: i64(10), Minor: i64(229), Access: "rwm"}, // /dev/fuse
	}
}
