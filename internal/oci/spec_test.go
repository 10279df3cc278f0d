package oci

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/blkiodev"
	"github.com/moby/moby/api/types/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const testID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

var allHost = &HostSupport{SwapLimit: true, BlkioWeight: true}

func init() {
	// Deterministic specs whatever the test host's kernel has.
	sysctlExists = func(string) bool { return true }
}

// fixtureRootfs is a root filesystem with only /etc/passwd and /etc/group.
func fixtureRootfs(t testing.TB) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n" +
			"daemon:x:1:1:daemon:/usr/sbin:/bin/false\n" +
			"alice:x:1000:1000:Alice:/home/alice:/bin/sh\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group": "root:x:0:\nwheel:x:10:alice\nusers:x:100:alice,bob\nalice:x:1000:\nnogroup:x:65534:\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// baseOptions are the options of a plain `docker run busybox CMD…`.
func baseOptions(t testing.TB, cmd ...string) Options {
	return Options{
		ID:         testID,
		Config:     &container.Config{Cmd: cmd, Hostname: "web"},
		HostConfig: &container.HostConfig{},
		RootfsPath: fixtureRootfs(t),
		Host:       allHost,
	}
}

func mustSpec(t *testing.T, o Options) *specs.Spec {
	t.Helper()
	s, err := Spec(o)
	if err != nil {
		t.Fatalf("Spec: %v", err)
	}
	return s
}

func dests(ms []specs.Mount) []string {
	var d []string
	for _, m := range ms {
		d = append(d, m.Destination)
	}
	return d
}

func findMount(s *specs.Spec, dest string) *specs.Mount {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == dest {
			return &s.Mounts[i]
		}
	}
	return nil
}

func nsTypes(s *specs.Spec) []string {
	var n []string
	for _, ns := range s.Linux.Namespaces {
		n = append(n, string(ns.Type)+"="+ns.Path)
	}
	slices.Sort(n)
	return n
}

func TestSpecDefaults(t *testing.T) {
	o := baseOptions(t, "sh", "-c", "echo hi")
	o.Config.Entrypoint = []string{"/entry"}
	s := mustSpec(t, o)

	if s.Version != specs.Version {
		t.Errorf("version %q", s.Version)
	}
	if s.Root.Path != o.RootfsPath || s.Root.Readonly {
		t.Errorf("root %+v", s.Root)
	}
	p := s.Process
	if !slices.Equal(p.Args, []string{"/entry", "sh", "-c", "echo hi"}) {
		t.Errorf("args %q", p.Args)
	}
	if p.Cwd != "/" || p.Terminal || p.ConsoleSize != nil || p.NoNewPrivileges {
		t.Errorf("process %+v", p)
	}
	if want := []string{"PATH=" + DefaultPathEnv, "HOSTNAME=web", "HOME=/root"}; !slices.Equal(p.Env, want) {
		t.Errorf("env %q, want %q", p.Env, want)
	}
	if p.User.UID != 0 || p.User.GID != 0 || !slices.Equal(p.User.AdditionalGids, []uint32{0}) {
		t.Errorf("user %+v", p.User)
	}
	if p.OOMScoreAdj == nil || *p.OOMScoreAdj != 0 {
		t.Errorf("oom score adj %v", p.OOMScoreAdj)
	}
	c := p.Capabilities
	if len(c.Bounding) != 14 || !slices.Equal(c.Bounding, c.Effective) || !slices.Equal(c.Bounding, c.Permitted) ||
		len(c.Inheritable) != 0 || len(c.Ambient) != 0 || !slices.Contains(c.Bounding, "CAP_NET_BIND_SERVICE") ||
		slices.Contains(c.Bounding, "CAP_SYS_ADMIN") {
		t.Errorf("capabilities %+v", c)
	}
	var hard unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &hard); err != nil {
		t.Fatal(err)
	}
	if want := []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: hard.Max, Hard: hard.Max}}; !slices.Equal(p.Rlimits, want) {
		t.Errorf("rlimits %+v, want %+v", p.Rlimits, want)
	}

	if s.Hostname != "web" || s.Domainname != "" {
		t.Errorf("hostname %q domain %q", s.Hostname, s.Domainname)
	}
	wantNS := []string{"cgroup=", "ipc=", "mount=", "network=", "pid=", "uts="}
	if got := nsTypes(s); !slices.Equal(got, wantNS) {
		t.Errorf("namespaces %q, want %q", got, wantNS)
	}
	wantMounts := []string{"/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"}
	if got := dests(s.Mounts); !slices.Equal(got, wantMounts) {
		t.Errorf("mounts %q, want %q", got, wantMounts)
	}
	if m := findMount(s, "/dev/shm"); !slices.Contains(m.Options, "size=67108864") || !slices.Contains(m.Options, "noexec") {
		t.Errorf("/dev/shm %+v", m)
	}
	if m := findMount(s, "/dev/pts"); m.Type != "devpts" || !slices.Contains(m.Options, "newinstance") ||
		!slices.Contains(m.Options, "ptmxmode=0666") || !slices.Contains(m.Options, "gid=5") || !slices.Contains(m.Options, "mode=0620") {
		t.Errorf("/dev/pts %+v", m)
	}
	if m := findMount(s, "/sys"); !slices.Contains(m.Options, "ro") {
		t.Errorf("/sys %+v", m)
	}
	if m := findMount(s, "/sys/fs/cgroup"); m.Type != "cgroup" || !slices.Contains(m.Options, "ro") {
		t.Errorf("/sys/fs/cgroup %+v", m)
	}

	l := s.Linux
	if l.CgroupsPath != "/berth/"+testID {
		t.Errorf("cgroups path %q", l.CgroupsPath)
	}
	for _, mp := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware", "/proc/interrupts", "/sys/devices/virtual/powercap", "/proc/acpi", "/proc/scsi"} {
		if !slices.Contains(l.MaskedPaths, mp) {
			t.Errorf("%s not masked: %q", mp, l.MaskedPaths)
		}
	}
	if !slices.Equal(l.ReadonlyPaths, []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}) {
		t.Errorf("readonly paths %q", l.ReadonlyPaths)
	}
	d := l.Resources.Devices
	if len(d) != 8 || d[0].Allow || d[0].Access != "rwm" || d[0].Type != "" || !d[2].Allow || *d[2].Major != 1 || *d[2].Minor != 3 ||
		d[7].Allow || *d[7].Major != 10 || *d[7].Minor != 229 {
		t.Errorf("device rules %+v", d)
	}
	if l.Resources.Memory != nil || l.Resources.CPU != nil || l.Resources.Pids != nil || l.Resources.BlockIO != nil {
		t.Errorf("resources without limits: %+v", l.Resources)
	}
	if l.Sysctl["net.ipv4.ip_unprivileged_port_start"] != "0" || l.Sysctl["net.ipv4.ping_group_range"] != "0 2147483647" {
		t.Errorf("sysctls %v", l.Sysctl)
	}
	if sc := s.Linux.Seccomp; sc == nil || sc.DefaultAction != specs.ActErrno || len(sc.Syscalls) == 0 {
		t.Errorf("docker's default seccomp profile not set: %+v", sc)
	}
	// And it is valid JSON for any runtime.
	b, err := json.Marshal(s)
	if err != nil || !strings.Contains(string(b), `"ociVersion":"`+specs.Version+`"`) {
		t.Errorf("json: %v %s", err, b)
	}
}

func TestSpecDefaultHostname(t *testing.T) {
	o := baseOptions(t, "true")
	o.Config.Hostname = ""
	s := mustSpec(t, o)
	if s.Hostname != testID[:12] || !slices.Contains(s.Process.Env, "HOSTNAME="+testID[:12]) {
		t.Errorf("hostname %q env %q", s.Hostname, s.Process.Env)
	}
}

func TestSpecErrors(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	yes := true
	tests := []struct {
		name string
		edit func(o *Options)
		kind func(error) bool
		msg  string
	}{
		{"no command", func(o *Options) { o.Config.Cmd = nil }, errdefs.IsInvalidArgument, "no command specified"},
		{"no config", func(o *Options) { o.Config = nil }, errdefs.IsInvalidArgument, "config"},
		{"no id", func(o *Options) { o.ID = "" }, errdefs.IsInvalidArgument, "ID"},
		{"no rootfs", func(o *Options) { o.RootfsPath = "" }, errdefs.IsInvalidArgument, "root filesystem"},
		{"relative workdir", func(o *Options) { o.Config.WorkingDir = "work" }, errdefs.IsInvalidArgument, "absolute path"},
		{"unknown user", func(o *Options) { o.Config.User = "foo" }, errdefs.IsInvalidArgument, "unable to find user foo: no matching entries in passwd file"},
		{"unknown group", func(o *Options) { o.Config.User = "alice:staff" }, errdefs.IsInvalidArgument, "unable to find group staff: no matching entries in group file"},
		{"unknown group-add", func(o *Options) { o.HostConfig.GroupAdd = []string{"staff"} }, errdefs.IsInvalidArgument, "unable to find group staff"},
		{"tiny memory", func(o *Options) { o.HostConfig.Memory = 1 << 20 }, errdefs.IsInvalidArgument, "Minimum memory limit allowed is 6MB"},
		{"swap below memory", func(o *Options) { o.HostConfig.Memory = 64 << 20; o.HostConfig.MemorySwap = 32 << 20 }, errdefs.IsInvalidArgument, "Minimum memoryswap limit should be larger than memory limit"},
		{"swap without memory", func(o *Options) { o.HostConfig.MemorySwap = 64 << 20 }, errdefs.IsInvalidArgument, "always set the Memory limit"},
		{"reservation above memory", func(o *Options) { o.HostConfig.Memory = 64 << 20; o.HostConfig.MemoryReservation = 128 << 20 }, errdefs.IsInvalidArgument, "memory reservation"},
		{"swappiness", func(o *Options) { o.HostConfig.MemorySwappiness = i64(101) }, errdefs.IsInvalidArgument, "swappiness range is 0-100"},
		{"nano and period", func(o *Options) { o.HostConfig.NanoCPUs = 1e9; o.HostConfig.CPUPeriod = 50000 }, errdefs.IsInvalidArgument, "Nano CPUs and CPU Period"},
		{"nano and quota", func(o *Options) { o.HostConfig.NanoCPUs = 1e9; o.HostConfig.CPUQuota = 50000 }, errdefs.IsInvalidArgument, "Nano CPUs and CPU Quota"},
		{"too many cpus", func(o *Options) { o.HostConfig.NanoCPUs = 1e6 * 1e9 }, errdefs.IsInvalidArgument, "Range of CPUs"},
		{"period range", func(o *Options) { o.HostConfig.CPUPeriod = 100 }, errdefs.IsInvalidArgument, "CPU cfs period"},
		{"quota range", func(o *Options) { o.HostConfig.CPUQuota = 999 }, errdefs.IsInvalidArgument, "CPU cfs quota"},
		{"negative shares", func(o *Options) { o.HostConfig.CPUShares = -2 }, errdefs.IsInvalidArgument, "CPU shares"},
		{"blkio weight", func(o *Options) { o.HostConfig.BlkioWeight = 5 }, errdefs.IsInvalidArgument, "blkio weight"},
		{"blkio device", func(o *Options) {
			o.HostConfig.BlkioDeviceReadBps = []*blkiodev.ThrottleDevice{{Path: "/nonexistent-device", Rate: 1}}
		}, errdefs.IsInvalidArgument, "/nonexistent-device"},
		{"bad ulimit", func(o *Options) { o.HostConfig.Ulimits = []*container.Ulimit{{Name: "bogus", Soft: 1, Hard: 1}} }, errdefs.IsInvalidArgument, "invalid ulimit type: bogus"},
		{"ulimit soft above hard", func(o *Options) { o.HostConfig.Ulimits = []*container.Ulimit{{Name: "nproc", Soft: 10, Hard: 5}} }, errdefs.IsInvalidArgument, "soft limit"},
		{"oom score", func(o *Options) { o.HostConfig.OomScoreAdj = 1001 }, errdefs.IsInvalidArgument, "oom score adj"},
		{"relative mount", func(o *Options) { o.Mounts = []specs.Mount{{Destination: "data", Type: "bind", Source: "/tmp"}} }, errdefs.IsInvalidArgument, "must be absolute"},
		{"duplicate mount", func(o *Options) {
			o.Mounts = []specs.Mount{{Destination: "/data", Type: "bind", Source: "/tmp"}}
			o.HostConfig.Tmpfs = map[string]string{"/data/": ""}
		}, errdefs.IsInvalidArgument, "Duplicate mount point: /data"},
		{"bad tmpfs option", func(o *Options) { o.HostConfig.Tmpfs = map[string]string{"/run": "bogus=1"} }, errdefs.IsInvalidArgument, "invalid tmpfs option"},
		{"init without binary", func(o *Options) { o.HostConfig.Init = &yes }, errdefs.IsFailedPrecondition, "init"},
		{"pid container", func(o *Options) { o.HostConfig.PidMode = "container:abc" }, errdefs.IsNotImplemented, "PID mode"},
		{"ipc container", func(o *Options) { o.HostConfig.IpcMode = "container:abc" }, errdefs.IsNotImplemented, "IPC mode"},
		{"net container", func(o *Options) { o.HostConfig.NetworkMode = "container:abc" }, errdefs.IsNotImplemented, "network mode"},
		{"invalid ipc", func(o *Options) { o.HostConfig.IpcMode = "bogus" }, errdefs.IsInvalidArgument, "invalid IPC mode"},
		{"userns", func(o *Options) { o.HostConfig.UsernsMode = "private" }, errdefs.IsNotImplemented, "user namespace"},
		{"realtime", func(o *Options) { o.HostConfig.CPURealtimeRuntime = 1000 }, errdefs.IsNotImplemented, "real-time"},
		{"unknown cap", func(o *Options) { o.HostConfig.CapAdd = []string{"NET_BOGUS"} }, errdefs.IsInvalidArgument, `invalid CapAdd: unknown capability: "CAP_NET_BOGUS"`},
		{"unknown cap drop", func(o *Options) { o.HostConfig.CapDrop = []string{"cap_x"} }, errdefs.IsInvalidArgument, `invalid CapDrop: unknown capability: "CAP_X"`},
		{"device missing", func(o *Options) { o.HostConfig.Devices = []container.DeviceMapping{{PathOnHost: "/dev/berth-none"}} }, errdefs.IsInvalidArgument, "error gathering device information"},
		{"device not a device", func(o *Options) { o.HostConfig.Devices = []container.DeviceMapping{{PathOnHost: "/etc/hostname"}} }, errdefs.IsInvalidArgument, "not a device node"},
		{"device mode", func(o *Options) {
			o.HostConfig.Devices = []container.DeviceMapping{{PathOnHost: "/dev/null", CgroupPermissions: "rwx"}}
		}, errdefs.IsInvalidArgument, "invalid device mode"},
		{"device rule", func(o *Options) { o.HostConfig.DeviceCgroupRules = []string{"c 1:3"} }, errdefs.IsInvalidArgument, "invalid device cgroup rule"},
		{"seccomp profile", func(o *Options) { o.HostConfig.SecurityOpt = []string{"seccomp=/p.json"} }, errdefs.IsInvalidArgument, "seccomp profile"},
		{"security opt", func(o *Options) { o.HostConfig.SecurityOpt = []string{"bogus=1"} }, errdefs.IsInvalidArgument, `invalid --security-opt 2: "bogus=1"`},
		{"security opt form", func(o *Options) { o.HostConfig.SecurityOpt = []string{"bogus"} }, errdefs.IsInvalidArgument, `invalid --security-opt 1: "bogus"`},
		{"label", func(o *Options) { o.HostConfig.SecurityOpt = []string{"label=foo"} }, errdefs.IsInvalidArgument, "bad label option"},
		{"sysctl not namespaced", func(o *Options) { o.HostConfig.Sysctls = map[string]string{"kernel.panic": "1"} }, errdefs.IsInvalidArgument, "not in a separate kernel namespace"},
		{"sysctl host net", func(o *Options) {
			o.HostConfig.NetworkMode = "host"
			o.HostConfig.Sysctls = map[string]string{"net.ipv4.ip_forward": "1"}
		}, errdefs.IsInvalidArgument, "not allowed in host network namespace"},
		{"sysctl host ipc", func(o *Options) {
			o.HostConfig.IpcMode = "host"
			o.HostConfig.Sysctls = map[string]string{"kernel.shmmax": "1"}
		}, errdefs.IsInvalidArgument, "host IPC namespace"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := baseOptions(t, "true")
			tc.edit(&o)
			_, err := Spec(o)
			if err == nil {
				t.Fatal("no error")
			}
			if !tc.kind(err) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q (%T), want kind %v containing %q", err, err, tc.name, tc.msg)
			}
		})
	}
}

func TestSpecResources(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	b := func(v bool) *bool { return &v }
	tests := []struct {
		name   string
		edit   func(hc *container.HostConfig)
		host   *HostSupport
		v1, v2 specs.LinuxResources // Devices are ignored
	}{
		{
			name: "memory gets twice as much swap",
			edit: func(hc *container.HostConfig) { hc.Memory = 64 << 20 },
			v1:   specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(64 << 20), Swap: i64(128 << 20)}},
			v2:   specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(64 << 20), Swap: i64(128 << 20)}},
		},
		{
			name: "unlimited swap",
			edit: func(hc *container.HostConfig) { hc.Memory = 64 << 20; hc.MemorySwap = -1 },
			v1:   specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(64 << 20), Swap: i64(-1)}},
			v2:   specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(64 << 20), Swap: i64(-1)}},
		},
		{
			name: "swap equal to memory: none",
			edit: func(hc *container.HostConfig) { hc.Memory = 64 << 20; hc.MemorySwap = 64 << 20 },
			v1:   specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(64 << 20), Swap: i64(64 << 20)}},
			v2:   specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(64 << 20), Swap: i64(64 << 20)}},
		},
		{
			name: "host without swap accounting",
			edit: func(hc *container.HostConfig) { hc.Memory = 64 << 20; hc.MemorySwap = 100 << 20 },
			host: &HostSupport{},
			v1:   specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(64 << 20)}},
			v2:   specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(64 << 20)}},
		},
		{
			name: "reservation, swappiness and OOM killer: v1 only for the last two",
			edit: func(hc *container.HostConfig) {
				hc.MemoryReservation = 32 << 20
				hc.MemorySwappiness = i64(10)
				hc.OomKillDisable = b(true)
			},
			v1: specs.LinuxResources{Memory: &specs.LinuxMemory{Reservation: i64(32 << 20), Swappiness: u64(10), DisableOOMKiller: b(true)}},
			v2: specs.LinuxResources{Memory: &specs.LinuxMemory{Reservation: i64(32 << 20)}},
		},
		{
			name: "swappiness -1 is the default",
			edit: func(hc *container.HostConfig) { hc.MemorySwappiness = i64(-1) },
		},
		{
			name: "--cpus 1.5",
			edit: func(hc *container.HostConfig) { hc.NanoCPUs = 15e8 },
			v1:   specs.LinuxResources{CPU: &specs.LinuxCPU{Period: u64(100000), Quota: i64(150000)}},
			v2:   specs.LinuxResources{CPU: &specs.LinuxCPU{Period: u64(100000), Quota: i64(150000)}},
		},
		{
			name: "quota, period, shares, cpuset",
			edit: func(hc *container.HostConfig) {
				hc.CPUQuota = 20000
				hc.CPUPeriod = 40000
				hc.CPUShares = 512
				hc.CpusetCpus = "0"
				hc.CpusetMems = "0"
			},
			v1: specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: u64(512), Quota: i64(20000), Period: u64(40000), Cpus: "0", Mems: "0"}},
			v2: specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: u64(512), Quota: i64(20000), Period: u64(40000), Cpus: "0", Mems: "0"}},
		},
		{
			name: "pids limit",
			edit: func(hc *container.HostConfig) { hc.PidsLimit = i64(42) },
			v1:   specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(42)}},
			v2:   specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(42)}},
		},
		{
			name: "pids 0 is unlimited",
			edit: func(hc *container.HostConfig) { hc.PidsLimit = i64(0) },
			v1:   specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(-1)}},
			v2:   specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(-1)}},
		},
		{
			name: "pids -1 is unlimited",
			edit: func(hc *container.HostConfig) { hc.PidsLimit = i64(-1) },
			v1:   specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(-1)}},
			v2:   specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(-1)}},
		},
		{
			name: "blkio weight",
			edit: func(hc *container.HostConfig) { hc.BlkioWeight = 300 },
			v1:   specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: func() *uint16 { w := uint16(300); return &w }()}},
			v2:   specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: func() *uint16 { w := uint16(300); return &w }()}},
		},
		{
			name: "blkio weight without support",
			edit: func(hc *container.HostConfig) { hc.BlkioWeight = 300 },
			host: &HostSupport{},
		},
	}
	for _, tc := range tests {
		for _, v2 := range []bool{false, true} {
			name := tc.name + "/v1"
			want := tc.v1
			if v2 {
				name, want = tc.name+"/v2", tc.v2
			}
			t.Run(name, func(t *testing.T) {
				o := baseOptions(t, "true")
				o.CgroupV2 = v2
				if tc.host != nil {
					o.Host = tc.host
				}
				tc.edit(o.HostConfig)
				got := *mustSpec(t, o).Linux.Resources
				got.Devices = nil
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(want)
				if string(gj) != string(wj) {
					t.Errorf("resources\n got %s\nwant %s", gj, wj)
				}
			})
		}
	}
}

func TestSpecNamespacesAndModes(t *testing.T) {
	tests := []struct {
		name     string
		edit     func(o *Options)
		ns       []string
		hostname string
		check    func(t *testing.T, s *specs.Spec)
	}{
		{
			name: "host network",
			edit: func(o *Options) { o.HostConfig.NetworkMode = "host" },
			ns:   []string{"cgroup=", "ipc=", "mount=", "pid=", "uts="}, hostname: "web",
			check: func(t *testing.T, s *specs.Spec) {
				if len(s.Linux.Sysctl) != 0 {
					t.Errorf("network sysctls with the host's network: %v", s.Linux.Sysctl)
				}
			},
		},
		{
			name: "joined network namespace",
			edit: func(o *Options) { o.NetNSPath = "/run/netns/x"; o.HostConfig.NetworkMode = "bridge" },
			ns:   []string{"cgroup=", "ipc=", "mount=", "network=/run/netns/x", "pid=", "uts="}, hostname: "web",
		},
		{
			name: "none network",
			edit: func(o *Options) { o.HostConfig.NetworkMode = "none" },
			ns:   []string{"cgroup=", "ipc=", "mount=", "network=", "pid=", "uts="}, hostname: "web",
		},
		{
			name: "host pid, uts, ipc and cgroupns",
			edit: func(o *Options) {
				o.HostConfig.PidMode = "host"
				o.HostConfig.UTSMode = "host"
				o.HostConfig.IpcMode = "host"
				o.HostConfig.CgroupnsMode = "host"
			},
			ns: []string{"mount=", "network="},
			check: func(t *testing.T, s *specs.Spec) {
				if m := findMount(s, "/dev/shm"); m == nil || m.Type != "bind" || m.Source != "/dev/shm" {
					t.Errorf("/dev/shm with the host's IPC: %+v", m)
				}
				if !slices.Contains(s.Process.Env, "HOSTNAME=web") {
					t.Errorf("env %q", s.Process.Env)
				}
			},
		},
		{
			name: "ipc none has no /dev/shm",
			edit: func(o *Options) { o.HostConfig.IpcMode = "none" },
			ns:   []string{"cgroup=", "ipc=", "mount=", "network=", "pid=", "uts="}, hostname: "web",
			check: func(t *testing.T, s *specs.Spec) {
				if findMount(s, "/dev/shm") != nil {
					t.Error("/dev/shm mounted with --ipc none")
				}
			},
		},
		{
			name: "private cgroupns explicitly",
			edit: func(o *Options) { o.HostConfig.CgroupnsMode = "private"; o.HostConfig.IpcMode = "shareable" },
			ns:   []string{"cgroup=", "ipc=", "mount=", "network=", "pid=", "uts="}, hostname: "web",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := baseOptions(t, "true")
			tc.edit(&o)
			s := mustSpec(t, o)
			if got := nsTypes(s); !slices.Equal(got, tc.ns) {
				t.Errorf("namespaces %q, want %q", got, tc.ns)
			}
			if s.Hostname != tc.hostname {
				t.Errorf("hostname %q, want %q", s.Hostname, tc.hostname)
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

func TestSpecMounts(t *testing.T) {
	o := baseOptions(t, "true")
	o.HostsPath, o.HostnamePath, o.ResolvConfPath = "/h/hosts", "/h/hostname", "/h/resolv.conf"
	o.Mounts = []specs.Mount{
		{Destination: "/data/sub", Type: "bind", Source: "/src/sub", Options: []string{"rbind"}},
		{Destination: "/data", Type: "bind", Source: "/src", Options: []string{"rbind", "ro"}},
		{Destination: "/dev/shm", Type: "bind", Source: "/shared", Options: []string{"rbind"}},
	}
	o.HostConfig.Tmpfs = map[string]string{"/run": "size=10m,exec", "/tmp": ""}
	o.HostConfig.ShmSize = 1 << 20
	s := mustSpec(t, o)
	want := []string{"/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue",
		"/data", "/run", "/tmp", "/data/sub", "/dev/shm", "/etc/resolv.conf", "/etc/hostname", "/etc/hosts"}
	if got := dests(s.Mounts); !slices.Equal(got, want) {
		t.Errorf("mounts\n got %q\nwant %q", got, want)
	}
	if m := findMount(s, "/dev/shm"); m.Source != "/shared" {
		t.Errorf("user /dev/shm did not replace the default: %+v", m)
	}
	if m := findMount(s, "/run"); m.Type != "tmpfs" || !slices.Equal(m.Options, []string{"nosuid", "nodev", "rprivate", "size=10m", "exec"}) {
		t.Errorf("/run tmpfs %+v", m)
	}
	if m := findMount(s, "/tmp"); !slices.Equal(m.Options, []string{"noexec", "nosuid", "nodev", "rprivate"}) {
		t.Errorf("/tmp tmpfs %+v", m)
	}
	if m := findMount(s, "/etc/hosts"); m.Source != "/h/hosts" || m.Type != "bind" || !slices.Equal(m.Options, []string{"rbind", "rprivate"}) {
		t.Errorf("/etc/hosts %+v", m)
	}

	// A user mount on /etc/hosts wins; a user /dev replaces everything
	// under /dev; a read-only root makes the system mounts read-only.
	o = baseOptions(t, "true")
	o.HostsPath = "/h/hosts"
	o.Mounts = []specs.Mount{
		{Destination: "/etc/hosts", Type: "bind", Source: "/mine"},
		{Destination: "/dev", Type: "bind", Source: "/dev"},
	}
	o.HostConfig.ReadonlyRootfs = true
	s = mustSpec(t, o)
	want = []string{"/proc", "/sys", "/sys/fs/cgroup", "/dev", "/etc/hosts"}
	if got := dests(s.Mounts); !slices.Equal(got, want) {
		t.Errorf("mounts %q, want %q", got, want)
	}
	if m := findMount(s, "/etc/hosts"); m.Source != "/mine" {
		t.Errorf("/etc/hosts %+v", m)
	}
	if !s.Root.Readonly || slices.Contains(findMount(s, "/proc").Options, "ro") {
		t.Errorf("read-only root: %+v, /proc %+v", s.Root, findMount(s, "/proc"))
	}

	// Read-only: the /etc files too, but not /dev/shm.
	o = baseOptions(t, "true")
	o.ResolvConfPath = "/h/resolv.conf"
	o.HostConfig.ReadonlyRootfs = true
	s = mustSpec(t, o)
	if m := findMount(s, "/etc/resolv.conf"); !slices.Contains(m.Options, "ro") {
		t.Errorf("/etc/resolv.conf with a read-only root: %+v", m)
	}
	if m := findMount(s, "/dev/shm"); slices.Contains(m.Options, "ro") {
		t.Errorf("/dev/shm read-only: %+v", m)
	}
}

func TestSpecInit(t *testing.T) {
	yes := true
	o := baseOptions(t, "sleep", "1")
	o.HostConfig.Init = &yes
	o.InitPath = "/usr/libexec/berth-shim"
	s := mustSpec(t, o)
	if !slices.Equal(s.Process.Args, []string{"/sbin/docker-init", "--", "sleep", "1"}) {
		t.Errorf("args %q", s.Process.Args)
	}
	m := findMount(s, "/sbin/docker-init")
	if m == nil || m.Source != o.InitPath || m.Type != "bind" || !slices.Contains(m.Options, "ro") {
		t.Errorf("init mount %+v", m)
	}
	// In the host's pid namespace there is an init already.
	o.HostConfig.PidMode = "host"
	s = mustSpec(t, o)
	if s.Process.Args[0] != "sleep" || findMount(s, "/sbin/docker-init") != nil {
		t.Errorf("--init with --pid host: %q", s.Process.Args)
	}
}

func TestSpecEnv(t *testing.T) {
	tests := []struct {
		name string
		tty  bool
		env  []string
		user string
		want []string
	}{
		{name: "image PATH wins", env: []string{"PATH=/opt/bin", "A=1"}, want: []string{"PATH=/opt/bin", "HOSTNAME=web", "A=1", "HOME=/root"}},
		{name: "unset removes", env: []string{"PATH", "B=2"}, want: []string{"HOSTNAME=web", "B=2", "HOME=/root"}},
		{name: "tty sets TERM", tty: true, want: []string{"PATH=" + DefaultPathEnv, "HOSTNAME=web", "TERM=xterm", "HOME=/root"}},
		{name: "own TERM and HOME", tty: true, env: []string{"TERM=vt100", "HOME=/h"}, want: []string{"PATH=" + DefaultPathEnv, "HOSTNAME=web", "TERM=vt100", "HOME=/h"}},
		{name: "user's home", user: "alice", want: []string{"PATH=" + DefaultPathEnv, "HOSTNAME=web", "HOME=/home/alice"}},
		{name: "unknown uid's home is /", user: "4242", want: []string{"PATH=" + DefaultPathEnv, "HOSTNAME=web", "HOME=/"}},
		{name: "later duplicate wins", env: []string{"A=1", "A=2"}, want: []string{"PATH=" + DefaultPathEnv, "HOSTNAME=web", "A=2", "HOME=/root"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := baseOptions(t, "true")
			o.Config.Tty, o.Config.Env, o.Config.User = tc.tty, tc.env, tc.user
			if got := mustSpec(t, o).Process.Env; !slices.Equal(got, tc.want) {
				t.Errorf("env %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSpecProcess(t *testing.T) {
	o := baseOptions(t, "true")
	o.Config.Tty = true
	o.Config.WorkingDir = "/srv/app/"
	o.Config.User = "alice"
	o.Config.Domainname = "example.org"
	o.HostConfig.ConsoleSize = [2]uint{40, 120}
	o.HostConfig.OomScoreAdj = 500
	umask := uint32(0o027)
	o.HostConfig.Umask = &umask
	o.HostConfig.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "1024", "kernel.msgmax": "65536"}
	o.HostConfig.Annotations = map[string]string{"a": "b"}
	o.HostConfig.CgroupParent = "../../escape"
	o.HostConfig.SecurityOpt = []string{"no-new-privileges"}
	o.HostConfig.Ulimits = []*container.Ulimit{{Name: "nofile", Soft: 100, Hard: 200}, {Name: "NPROC", Soft: 50, Hard: 50}, {Name: "core", Soft: -1, Hard: -1}}
	o.RlimitNofile = 1024
	s := mustSpec(t, o)
	p := s.Process
	if !p.Terminal || p.ConsoleSize == nil || p.ConsoleSize.Height != 40 || p.ConsoleSize.Width != 120 {
		t.Errorf("terminal %v %+v", p.Terminal, p.ConsoleSize)
	}
	if p.Cwd != "/srv/app" || *p.OOMScoreAdj != 500 || p.User.Umask == nil || *p.User.Umask != 0o027 || !p.NoNewPrivileges {
		t.Errorf("process %+v", p)
	}
	if s.Domainname != "example.org" || s.Annotations["a"] != "b" {
		t.Errorf("domain %q annotations %v", s.Domainname, s.Annotations)
	}
	if s.Linux.Sysctl["net.ipv4.ip_unprivileged_port_start"] != "1024" || s.Linux.Sysctl["kernel.msgmax"] != "65536" {
		t.Errorf("sysctls %v", s.Linux.Sysctl)
	}
	if s.Linux.CgroupsPath != "/escape/"+testID {
		t.Errorf("cgroups path %q", s.Linux.CgroupsPath)
	}
	// A non-root user starts with bounding capabilities only.
	if c := p.Capabilities; len(c.Bounding) != 14 || len(c.Effective) != 0 || len(c.Permitted) != 0 {
		t.Errorf("capabilities of a non-root user %+v", c)
	}
	want := []specs.POSIXRlimit{
		{Type: "RLIMIT_NOFILE", Soft: 100, Hard: 200},
		{Type: "RLIMIT_NPROC", Soft: 50, Hard: 50},
		{Type: "RLIMIT_CORE", Soft: ^uint64(0), Hard: ^uint64(0)},
	}
	if !slices.Equal(p.Rlimits, want) {
		t.Errorf("rlimits %+v, want %+v", p.Rlimits, want)
	}

	o = baseOptions(t, "true")
	o.CgroupParent = "daemon-parent"
	o.RlimitNofile = 4096
	o.HostConfig.MaskedPaths = []string{"/proc/x"}
	o.HostConfig.ReadonlyPaths = []string{}
	s = mustSpec(t, o)
	if s.Linux.CgroupsPath != "/daemon-parent/"+testID {
		t.Errorf("cgroups path %q", s.Linux.CgroupsPath)
	}
	if s.Process.Rlimits[0].Soft != 4096 || s.Process.Rlimits[0].Hard != 4096 {
		t.Errorf("rlimits %+v", s.Process.Rlimits)
	}
	if !slices.Equal(s.Linux.MaskedPaths, []string{"/proc/x"}) || len(s.Linux.ReadonlyPaths) != 0 {
		t.Errorf("masked %q readonly %q", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	o.HostConfig.SecurityOpt = []string{"systempaths=unconfined", "seccomp=unconfined", "apparmor=unconfined"}
	s = mustSpec(t, o)
	if len(s.Linux.MaskedPaths)+len(s.Linux.ReadonlyPaths) != 0 {
		t.Errorf("systempaths=unconfined: masked %q readonly %q", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
}

func TestTmpfsOptions(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		bad  bool
	}{
		{in: "", want: []string{"noexec", "nosuid", "nodev", "rprivate"}},
		{in: "size=64m,mode=1777", want: []string{"noexec", "nosuid", "nodev", "rprivate", "size=64m", "mode=1777"}},
		{in: "exec,suid", want: []string{"nodev", "rprivate", "exec", "suid"}},
		{in: "ro,size=1k,size=2k", want: []string{"noexec", "nosuid", "nodev", "rprivate", "ro", "size=2k"}},
		{in: "rshared", want: []string{"noexec", "nosuid", "nodev", "rshared"}},
		{in: "bogus", bad: true},
		{in: "a=b", bad: true},
		{in: ",", bad: true},
	}
	for _, tc := range tests {
		got, err := TmpfsOptions(tc.in)
		if tc.bad {
			if err == nil || !errdefs.IsInvalidArgument(err) {
				t.Errorf("TmpfsOptions(%q) = %q, %v; want an invalid-argument error", tc.in, got, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("TmpfsOptions(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestDetectCgroupV2(t *testing.T) {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	if got, want := DetectCgroupV2(), err == nil; got != want {
		t.Errorf("DetectCgroupV2() = %v; /sys/fs/cgroup/cgroup.controllers present: %v", got, want)
	}
	if !DetectCgroupV2() {
		_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
		if got := DetectHostSupport(false).SwapLimit; got != (err == nil) {
			t.Errorf("SwapLimit %v, memsw present: %v", got, err == nil)
		}
	}
}

// FuzzSpec feeds API-controlled values into Spec: it must never panic, and
// what it accepts must keep the container's cgroup under its parent.
func FuzzSpec(f *testing.F) {
	f.Add("alice", "size=1m", "/x/../y", int64(64<<20), int64(0), int64(1e9), "nofile", "/run", "host")
	f.Add("1000:100", "", "", int64(0), int64(-1), int64(0), "core", "/tmp/", "")
	f.Add(":", ",,", "../..", int64(-5), int64(7), int64(-1), "", "rel", "container:x")
	f.Fuzz(func(t *testing.T, usr, tmpfsOpts, parent string, mem, swap, nano int64, ulimit, tmpfsDest, mode string) {
		o := baseOptions(t, "true")
		o.Config.User = usr
		o.HostConfig.Tmpfs = map[string]string{tmpfsDest: tmpfsOpts}
		o.HostConfig.CgroupParent = parent
		o.HostConfig.Memory, o.HostConfig.MemorySwap, o.HostConfig.NanoCPUs = mem, swap, nano
		o.HostConfig.Ulimits = []*container.Ulimit{{Name: ulimit, Soft: 1, Hard: 1}}
		o.HostConfig.NetworkMode = container.NetworkMode(mode)
		o.HostConfig.IpcMode = container.IpcMode(mode)
		s, err := Spec(o)
		if err != nil {
			return
		}
		cg := s.Linux.CgroupsPath
		if !strings.HasPrefix(cg, "/") || !strings.HasSuffix(cg, "/"+testID) || strings.Contains(cg, "..") {
			t.Fatalf("cgroups path %q from parent %q", cg, parent)
		}
		for _, m := range s.Mounts {
			if !filepath.IsAbs(m.Destination) {
				t.Fatalf("relative mount destination %q", m.Destination)
			}
		}
		if len(s.Process.Args) == 0 {
			t.Fatal("no args")
		}
	})
}
