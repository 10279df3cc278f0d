package oci

import (
	"slices"
	"testing"

	"github.com/moby/moby/api/types/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestEffectiveCapabilities(t *testing.T) {
	all := AllCapabilities()
	if !slices.Contains(all, "CAP_SYS_ADMIN") || !slices.Contains(all, "CAP_CHOWN") {
		t.Fatalf("all capabilities %q", all)
	}
	without := func(list []string, drop ...string) []string {
		return slices.DeleteFunc(slices.Clone(list), func(c string) bool { return slices.Contains(drop, c) })
	}
	tests := []struct {
		name      string
		add, drop []string
		priv      bool
		want      []string
	}{
		{"default", nil, nil, false, DefaultCapabilities()},
		{"add short lower", []string{"net_admin"}, nil, false, append(DefaultCapabilities(), "CAP_NET_ADMIN")},
		{"add prefixed twice", []string{"CAP_SYS_TIME", "sys_time"}, nil, false, append(DefaultCapabilities(), "CAP_SYS_TIME")},
		{"add default again", []string{"CHOWN"}, nil, false, DefaultCapabilities()},
		{"drop", nil, []string{"Chown", "CAP_NET_RAW"}, false, without(DefaultCapabilities(), "CAP_CHOWN", "CAP_NET_RAW")},
		{"drop all add one", []string{"kill"}, []string{"ALL"}, false, []string{"CAP_KILL"}},
		{"drop all", nil, []string{"all"}, false, nil},
		{"add all drop one", []string{"ALL"}, []string{"SYS_ADMIN"}, false, without(all, "CAP_SYS_ADMIN")},
		{"privileged", nil, []string{"ALL"}, true, all},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := EffectiveCapabilities(&container.HostConfig{CapAdd: tc.add, CapDrop: tc.drop, Privileged: tc.priv})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestSpecCapabilitiesAndSeccompFollowCaps(t *testing.T) {
	o := baseOptions(t, "true")
	s := mustSpec(t, o)
	// docker's profile allows unshare/mount/… only with CAP_SYS_ADMIN.
	if allowsSyscall(s.Linux.Seccomp, "mount") || allowsSyscall(s.Linux.Seccomp, "unshare") || allowsSyscall(s.Linux.Seccomp, "bpf") {
		t.Error("default profile allows mount, unshare or bpf")
	}
	if !allowsSyscall(s.Linux.Seccomp, "getpid") {
		t.Error("default profile denies getpid")
	}
	o.HostConfig.CapAdd = []string{"SYS_ADMIN"}
	s = mustSpec(t, o)
	if !slices.Contains(s.Process.Capabilities.Bounding, "CAP_SYS_ADMIN") || !slices.Contains(s.Process.Capabilities.Effective, "CAP_SYS_ADMIN") {
		t.Errorf("caps %+v", s.Process.Capabilities)
	}
	if !allowsSyscall(s.Linux.Seccomp, "mount") {
		t.Error("profile with CAP_SYS_ADMIN denies mount (docker's allows it)")
	}
}

// allowsSyscall says whether the profile has an unconditional allow rule
// naming the syscall.
func allowsSyscall(p *specs.LinuxSeccomp, name string) bool {
	for _, sc := range p.Syscalls {
		if sc.Action == specs.ActAllow && len(sc.Args) == 0 && slices.Contains(sc.Names, name) {
			return true
		}
	}
	return false
}

func TestSpecPrivileged(t *testing.T) {
	o := baseOptions(t, "true")
	o.HostConfig.Privileged = true
	s := mustSpec(t, o)
	if s.Linux.Seccomp != nil || len(s.Linux.MaskedPaths)+len(s.Linux.ReadonlyPaths) != 0 {
		t.Errorf("privileged: seccomp %v masked %q readonly %q", s.Linux.Seccomp != nil, s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if !slices.Equal(s.Process.Capabilities.Bounding, AllCapabilities()) {
		t.Errorf("privileged caps %q", s.Process.Capabilities.Bounding)
	}
	for _, dst := range []string{"/sys", "/sys/fs/cgroup"} {
		if m := findMount(s, dst); slices.Contains(m.Options, "ro") {
			t.Errorf("%s read-only: %+v", dst, m)
		}
	}
	d := s.Linux.Resources.Devices
	if len(d) != 1 || !d[0].Allow || d[0].Access != "rwm" || d[0].Type != "" {
		t.Errorf("device rules %+v", d)
	}
	if !slices.ContainsFunc(s.Linux.Devices, func(d specs.LinuxDevice) bool { return d.Path == "/dev/null" }) {
		t.Errorf("host devices missing: %d", len(s.Linux.Devices))
	}
}

func TestSpecDevices(t *testing.T) {
	o := baseOptions(t, "true")
	o.HostConfig.Devices = []container.DeviceMapping{{PathOnHost: "/dev/null", PathInContainer: "/dev/mynull", CgroupPermissions: "r"}}
	o.HostConfig.DeviceCgroupRules = []string{"c 42:* rm", "b *:* m"}
	s := mustSpec(t, o)
	if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/mynull" || s.Linux.Devices[0].Type != "c" ||
		s.Linux.Devices[0].Major != 1 || s.Linux.Devices[0].Minor != 3 {
		t.Errorf("devices %+v", s.Linux.Devices)
	}
	d := s.Linux.Resources.Devices
	n := len(d)
	if n != 11 || *d[n-3].Major != 1 || *d[n-3].Minor != 3 || d[n-3].Access != "r" ||
		d[n-2].Type != "c" || *d[n-2].Major != 42 || d[n-2].Minor != nil || d[n-2].Access != "rm" ||
		d[n-1].Type != "b" || d[n-1].Major != nil {
		t.Errorf("device rules %+v", d)
	}
}

func TestSpecSecurityOpts(t *testing.T) {
	o := baseOptions(t, "true")
	o.HostConfig.SecurityOpt = []string{"no-new-privileges", "seccomp=unconfined", "apparmor=unconfined", "label=disable", "label=type:svirt_t", "writable-cgroups=true"}
	s := mustSpec(t, o)
	if !s.Process.NoNewPrivileges || s.Linux.Seccomp != nil || s.Process.ApparmorProfile != "" {
		t.Errorf("nnp %v seccomp %v apparmor %q", s.Process.NoNewPrivileges, s.Linux.Seccomp != nil, s.Process.ApparmorProfile)
	}
	if m := findMount(s, "/sys/fs/cgroup"); slices.Contains(m.Options, "ro") {
		t.Errorf("writable-cgroups: %+v", m)
	}
	o.HostConfig.SecurityOpt = []string{"no-new-privileges:false", `seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}`}
	s = mustSpec(t, o)
	if s.Process.NoNewPrivileges || s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActAllow ||
		len(s.Linux.Seccomp.Syscalls) != 1 || s.Linux.Seccomp.Syscalls[0].Names[0] != "mkdir" {
		t.Errorf("custom profile: %+v", s.Linux.Seccomp)
	}
	if !AppArmorEnabled() {
		o.HostConfig.SecurityOpt = []string{"apparmor=docker-default"}
		if _, err := Spec(o); err == nil {
			t.Error("apparmor profile accepted on a host without AppArmor")
		}
	}
}

func TestSpecSysctls(t *testing.T) {
	o := baseOptions(t, "true")
	o.HostConfig.Sysctls = map[string]string{"kernel.shmmax": "1000", "fs.mqueue.msg_max": "20", "net.ipv4.ip_forward": "1"}
	s := mustSpec(t, o)
	for k, v := range o.HostConfig.Sysctls {
		if s.Linux.Sysctl[k] != v {
			t.Errorf("sysctl %s = %q", k, s.Linux.Sysctl[k])
		}
	}
}

func TestParseDeviceCgroupRule(t *testing.T) {
	for _, bad := range []string{"", "c 1:3", "x 1:3 r", "c 1 r", "c a:3 r", "c 1:3 rx", "c 1:3 rr", "c -1:3 r"} {
		if _, err := ParseDeviceCgroupRule(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	r, err := ParseDeviceCgroupRule("a *:* rwm")
	if err != nil || r.Type != "a" || r.Major != nil || r.Minor != nil || r.Access != "rwm" || !r.Allow {
		t.Errorf("%+v %v", r, err)
	}
}

func TestDescribeConfinement(t *testing.T) {
	c := DescribeConfinement(&container.HostConfig{CapDrop: []string{"ALL"}, CapAdd: []string{"kill"}, SecurityOpt: []string{"no-new-privileges"}}, "")
	if !slices.Equal(c.Capabilities, []string{"CAP_KILL"}) || c.Seccomp != "builtin" || !c.NoNewPrivileges ||
		!slices.Contains(c.MaskedPaths, "/proc/keys") || c.CgroupNamespace != "private" {
		t.Errorf("%+v", c)
	}
	c = DescribeConfinement(&container.HostConfig{SecurityOpt: []string{`seccomp={"defaultAction":"SCMP_ACT_ALLOW"}`}, CgroupnsMode: "host"}, "")
	if c.Seccomp != "custom" || c.CgroupNamespace != "host" {
		t.Errorf("%+v", c)
	}
	c = DescribeConfinement(&container.HostConfig{Privileged: true}, "")
	if c.Seccomp != "unconfined" || len(c.MaskedPaths) != 0 || !slices.Equal(c.Capabilities, AllCapabilities()) {
		t.Errorf("%+v", c)
	}
	if got := InfoSecurityOptions(""); !slices.Contains(got, "name=seccomp,profile=builtin") || !slices.Contains(got, "name=cgroupns") {
		t.Errorf("info %q", got)
	}
}
