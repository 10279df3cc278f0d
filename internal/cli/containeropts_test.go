package cli

import (
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/spf13/pflag"
)

// parseRun parses run flags and arguments the way `berth run` does and
// returns the create request they produce.
func parseRun(t *testing.T, env map[string]string, args ...string) (*containerConfig, error) {
	t.Helper()
	flags := pflag.NewFlagSet("run", pflag.ContinueOnError)
	flags.SetInterspersed(false)
	var o runOptions
	flags.BoolVarP(&o.detach, "detach", "d", false, "")
	addCreateFlags(flags, &o.createOptions, "running")
	copts := addContainerFlags(flags, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err := flags.Parse(args); err != nil {
		return nil, err
	}
	rest := flags.Args()
	if len(rest) > 0 {
		copts.Image = rest[0]
		copts.Args = rest[1:]
	}
	return copts.parse(flags)
}

func mustParseRun(t *testing.T, args ...string) *containerConfig {
	t.Helper()
	cfg, err := parseRun(t, nil, args...)
	if err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return cfg
}

func TestRunFlagsToRequest(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	cases := []struct {
		name  string
		args  []string
		check func(t *testing.T, c *containerConfig)
	}{
		{"defaults", []string{"busybox"}, func(t *testing.T, c *containerConfig) {
			if c.Config.Image != "busybox" || c.Config.Cmd != nil || c.Config.Entrypoint != nil {
				t.Errorf("config: %+v", c.Config)
			}
			if !c.Config.AttachStdout || !c.Config.AttachStderr || c.Config.AttachStdin || c.Config.OpenStdin || c.Config.Tty {
				t.Errorf("attach defaults: %+v", c.Config)
			}
			if c.HostConfig.RestartPolicy.Name != container.RestartPolicyDisabled || c.HostConfig.NetworkMode != "default" {
				t.Errorf("host config defaults: %+v", c.HostConfig)
			}
			if *c.HostConfig.MemorySwappiness != -1 || *c.HostConfig.PidsLimit != 0 || c.HostConfig.Init != nil {
				t.Errorf("resource defaults: swappiness=%d pids=%d init=%v", *c.HostConfig.MemorySwappiness, *c.HostConfig.PidsLimit, c.HostConfig.Init)
			}
			if c.HostConfig.DNS != nil || c.HostConfig.DNSSearch == nil || c.HostConfig.DNSOptions == nil {
				t.Errorf("DNS lists must be empty, not nil: %+v", c.HostConfig)
			}
			if _, ok := c.NetworkingConfig.EndpointsConfig["default"]; !ok {
				t.Errorf("endpoints: %+v", c.NetworkingConfig.EndpointsConfig)
			}
		}},
		{"interspersed stops at image", []string{"-t", "busybox", "sh", "-c", "x", "-i"}, func(t *testing.T, c *containerConfig) {
			if !c.Config.Tty || c.Config.OpenStdin || !reflect.DeepEqual(c.Config.Cmd, []string{"sh", "-c", "x", "-i"}) {
				t.Errorf("%+v", c.Config)
			}
		}},
		{"interactive", []string{"-i", "busybox"}, func(t *testing.T, c *containerConfig) {
			if !c.Config.OpenStdin || !c.Config.AttachStdin || !c.Config.StdinOnce {
				t.Errorf("%+v", c.Config)
			}
		}},
		{"attach subset", []string{"-a", "stdin", "-a", "STDOUT", "busybox"}, func(t *testing.T, c *containerConfig) {
			if !c.Config.AttachStdin || !c.Config.AttachStdout || c.Config.AttachStderr {
				t.Errorf("%+v", c.Config)
			}
		}},
		{"identity", []string{"--name", "web", "-h", "myhost", "--domainname", "example.org", "-u", "1000:100", "-w", "/tmp", "--entrypoint", "echo", "busybox", "a"}, func(t *testing.T, c *containerConfig) {
			cfg := c.Config
			if cfg.Hostname != "myhost" || cfg.Domainname != "example.org" || cfg.User != "1000:100" || cfg.WorkingDir != "/tmp" ||
				!reflect.DeepEqual(cfg.Entrypoint, []string{"echo"}) || !reflect.DeepEqual(cfg.Cmd, []string{"a"}) {
				t.Errorf("%+v", cfg)
			}
		}},
		{"empty entrypoint resets it", []string{"--entrypoint", "", "busybox"}, func(t *testing.T, c *containerConfig) {
			if !reflect.DeepEqual(c.Config.Entrypoint, []string{""}) {
				t.Errorf("entrypoint %q", c.Config.Entrypoint)
			}
		}},
		{"labels", []string{"-l", "team=core", "--label", "tier=db", "-l", "flag", "busybox"}, func(t *testing.T, c *containerConfig) {
			want := map[string]string{"team": "core", "tier": "db", "flag": ""}
			if !reflect.DeepEqual(c.Config.Labels, want) {
				t.Errorf("labels %v", c.Config.Labels)
			}
		}},
		{"resources", []string{"-m", "64m", "--memory-swap", "-1", "--memory-reservation", "32m", "--cpus", "0.5", "-c", "512",
			"--cpu-period", "100000", "--cpu-quota", "50000", "--cpuset-cpus", "0-1", "--cpuset-mems", "0", "--pids-limit", "42",
			"--oom-kill-disable", "--shm-size", "128m", "--memory-swappiness", "10", "--blkio-weight", "300", "busybox"}, func(t *testing.T, c *containerConfig) {
			r := c.HostConfig.Resources
			if r.Memory != 64<<20 || r.MemorySwap != -1 || r.MemoryReservation != 32<<20 || r.NanoCPUs != 500_000_000 || r.CPUShares != 512 ||
				r.CPUPeriod != 100000 || r.CPUQuota != 50000 || r.CpusetCpus != "0-1" || r.CpusetMems != "0" || *r.PidsLimit != 42 ||
				!*r.OomKillDisable || *r.MemorySwappiness != 10 || r.BlkioWeight != 300 || c.HostConfig.ShmSize != 128<<20 {
				t.Errorf("resources %+v", r)
			}
			if !reflect.DeepEqual(r.PidsLimit, i64(42)) {
				t.Errorf("pids %v", r.PidsLimit)
			}
		}},
		{"ulimits and sysctls", []string{"--ulimit", "nofile=1024:2048", "--ulimit", "nproc=64", "--sysctl", "net.ipv4.ip_forward=1", "busybox"}, func(t *testing.T, c *containerConfig) {
			u := c.HostConfig.Ulimits
			if len(u) != 2 || u[0].Name != "nofile" || u[0].Soft != 1024 || u[0].Hard != 2048 || u[1].Name != "nproc" || u[1].Hard != 64 {
				t.Errorf("ulimits %+v", u)
			}
			if c.HostConfig.Sysctls["net.ipv4.ip_forward"] != "1" {
				t.Errorf("sysctls %v", c.HostConfig.Sysctls)
			}
		}},
		{"ports", []string{"-p", "8080:80", "-p", "127.0.0.1:5353:53/udp", "-p", "9000", "--expose", "7000-7001", "-P", "busybox"}, func(t *testing.T, c *containerConfig) {
			pb := c.HostConfig.PortBindings
			if b := pb[network.MustParsePort("80/tcp")]; len(b) != 1 || b[0].HostPort != "8080" || b[0].HostIP.IsValid() {
				t.Errorf("80/tcp: %+v", b)
			}
			if b := pb[network.MustParsePort("53/udp")]; len(b) != 1 || b[0].HostPort != "5353" || b[0].HostIP != netip.MustParseAddr("127.0.0.1") {
				t.Errorf("53/udp: %+v", b)
			}
			if b := pb[network.MustParsePort("9000/tcp")]; len(b) != 1 || b[0].HostPort != "" {
				t.Errorf("9000/tcp: %+v", b)
			}
			var exposed []string
			for p := range c.Config.ExposedPorts {
				exposed = append(exposed, p.String())
			}
			sort.Strings(exposed)
			if strings.Join(exposed, ",") != "53/udp,7000/tcp,7001/tcp,80/tcp,9000/tcp" || !c.HostConfig.PublishAllPorts {
				t.Errorf("exposed %v publishAll %v", exposed, c.HostConfig.PublishAllPorts)
			}
		}},
		{"long publish syntax", []string{"-p", "published=8080,target=80,protocol=udp", "busybox"}, func(t *testing.T, c *containerConfig) {
			if b := c.HostConfig.PortBindings[network.MustParsePort("80/udp")]; len(b) != 1 || b[0].HostPort != "8080" {
				t.Errorf("%+v", c.HostConfig.PortBindings)
			}
		}},
		{"volumes", []string{"-v", "/data", "-v", "/host:/ctr:ro", "-v", "named:/v", "--tmpfs", "/run:size=1m", "--volumes-from", "other:ro",
			"--mount", "type=tmpfs,target=/t,tmpfs-size=1m", "--read-only", "busybox"}, func(t *testing.T, c *containerConfig) {
			if _, ok := c.Config.Volumes["/data"]; !ok || len(c.Config.Volumes) != 1 {
				t.Errorf("anonymous volumes %v", c.Config.Volumes)
			}
			if !reflect.DeepEqual(c.HostConfig.Binds, []string{"/host:/ctr:ro", "named:/v"}) {
				t.Errorf("binds %v", c.HostConfig.Binds)
			}
			if c.HostConfig.Tmpfs["/run"] != "size=1m" || !reflect.DeepEqual(c.HostConfig.VolumesFrom, []string{"other:ro"}) || !c.HostConfig.ReadonlyRootfs {
				t.Errorf("%+v", c.HostConfig)
			}
			if m := c.HostConfig.Mounts; len(m) != 1 || m[0].Type != mount.TypeTmpfs || m[0].Target != "/t" || m[0].TmpfsOptions.SizeBytes != 1<<20 {
				t.Errorf("mounts %+v", m)
			}
		}},
		{"security and namespaces", []string{"--privileged", "--cap-add", "NET_ADMIN", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
			"--security-opt", "systempaths=unconfined", "--group-add", "wheel", "--userns", "host", "--cgroupns", "private", "--ipc", "host",
			"--pid", "host", "--uts", "host", "busybox"}, func(t *testing.T, c *containerConfig) {
			h := c.HostConfig
			if !h.Privileged || !reflect.DeepEqual(h.CapAdd, []string{"NET_ADMIN"}) || !reflect.DeepEqual(h.CapDrop, []string{"ALL"}) ||
				!reflect.DeepEqual(h.SecurityOpt, []string{"no-new-privileges"}) || h.MaskedPaths == nil || len(h.MaskedPaths) != 0 ||
				h.ReadonlyPaths == nil || !reflect.DeepEqual(h.GroupAdd, []string{"wheel"}) || h.UsernsMode != "host" ||
				h.CgroupnsMode != "private" || h.IpcMode != "host" || h.PidMode != "host" || h.UTSMode != "host" {
				t.Errorf("%+v", h)
			}
		}},
		{"networking", []string{"--network", "mynet", "--network-alias", "db", "--ip", "10.1.2.3", "--mac-address", "92:d0:c6:0a:29:33",
			"--dns", "1.1.1.1", "--dns-search", "example.org", "--dns-option", "ndots:2", "--add-host", "gw=10.0.0.1", "busybox"}, func(t *testing.T, c *containerConfig) {
			h := c.HostConfig
			if h.NetworkMode != "mynet" || len(h.DNS) != 1 || h.DNS[0].String() != "1.1.1.1" || !reflect.DeepEqual(h.DNSSearch, []string{"example.org"}) ||
				!reflect.DeepEqual(h.DNSOptions, []string{"ndots:2"}) || !reflect.DeepEqual(h.ExtraHosts, []string{"gw:10.0.0.1"}) {
				t.Errorf("%+v", h)
			}
			ep := c.NetworkingConfig.EndpointsConfig["mynet"]
			if ep == nil || !reflect.DeepEqual(ep.Aliases, []string{"db"}) || ep.IPAMConfig == nil || ep.IPAMConfig.IPv4Address.String() != "10.1.2.3" ||
				ep.MacAddress.String() != "92:d0:c6:0a:29:33" {
				t.Errorf("endpoint %+v", ep)
			}
		}},
		{"restart, stop, init, runtime, logging", []string{"--restart", "on-failure:3", "--stop-signal", "USR1", "--stop-timeout", "30", "--init",
			"--runtime", "runc", "--log-driver", "json-file", "--log-opt", "max-size=1k", "--log-opt", "max-file=2", "busybox"}, func(t *testing.T, c *containerConfig) {
			h := c.HostConfig
			if h.RestartPolicy.Name != "on-failure" || h.RestartPolicy.MaximumRetryCount != 3 || c.Config.StopSignal != "USR1" ||
				c.Config.StopTimeout == nil || *c.Config.StopTimeout != 30 || h.Init == nil || !*h.Init || h.Runtime != "runc" ||
				h.LogConfig.Type != "json-file" || h.LogConfig.Config["max-size"] != "1k" || h.LogConfig.Config["max-file"] != "2" {
				t.Errorf("%+v %+v", c.Config, h)
			}
		}},
		{"init=false is sent", []string{"--init=false", "busybox"}, func(t *testing.T, c *containerConfig) {
			if c.HostConfig.Init == nil || *c.HostConfig.Init {
				t.Errorf("init %v", c.HostConfig.Init)
			}
		}},
		{"healthcheck", []string{"--health-cmd", "true", "--health-interval", "5s", "--health-retries", "3", "--health-timeout", "2s", "--health-start-period", "1s", "busybox"}, func(t *testing.T, c *containerConfig) {
			h := c.Config.Healthcheck
			if h == nil || !reflect.DeepEqual(h.Test, []string{"CMD-SHELL", "true"}) || h.Interval != 5*time.Second || h.Retries != 3 ||
				h.Timeout != 2*time.Second || h.StartPeriod != time.Second {
				t.Errorf("%+v", h)
			}
		}},
		{"no healthcheck", []string{"--no-healthcheck", "busybox"}, func(t *testing.T, c *containerConfig) {
			if h := c.Config.Healthcheck; h == nil || !reflect.DeepEqual(h.Test, []string{"NONE"}) {
				t.Errorf("%+v", h)
			}
		}},
		{"devices", []string{"--device", "/dev/fuse", "--device", "/dev/sda:/dev/xvda:r", "--device-cgroup-rule", "c 1:3 mr", "busybox"}, func(t *testing.T, c *containerConfig) {
			d := c.HostConfig.Devices
			if len(d) != 2 || d[0] != (container.DeviceMapping{PathOnHost: "/dev/fuse", PathInContainer: "/dev/fuse", CgroupPermissions: "rwm"}) ||
				d[1] != (container.DeviceMapping{PathOnHost: "/dev/sda", PathInContainer: "/dev/xvda", CgroupPermissions: "r"}) ||
				!reflect.DeepEqual(c.HostConfig.DeviceCgroupRules, []string{"c 1:3 mr"}) {
				t.Errorf("%+v", c.HostConfig.Resources)
			}
		}},
		{"rm", []string{"--rm", "busybox"}, func(t *testing.T, c *containerConfig) {
			if !c.HostConfig.AutoRemove {
				t.Errorf("AutoRemove not set")
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, mustParseRun(t, tc.args...))
		})
	}
}

func TestRunEnvAndEnvFile(t *testing.T) {
	dir := t.TempDir()
	envFile := filepath.Join(dir, "env")
	if err := os.WriteFile(envFile, []byte("\ufeff# comment\nFROM_FILE=yes\n  PASSTHRU\nMISSING\nA=from-file\nSPACED=  keep  \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	labelFile := filepath.Join(dir, "labels")
	if err := os.WriteFile(labelFile, []byte("team=core\nbare\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"PASSTHRU": "from-cli", "HOMEISH": "/h"}
	cfg, err := parseRun(t, env, "-e", "A=1", "-e", "HOMEISH", "-e", "UNSET", "--env-file", envFile, "--label-file", labelFile, "-l", "team=override", "busybox")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"FROM_FILE=yes", "PASSTHRU=from-cli", "A=from-file", "SPACED=  keep  ", "A=1", "HOMEISH=/h", "UNSET"}
	if !reflect.DeepEqual(cfg.Config.Env, want) {
		t.Errorf("env:\n got %q\nwant %q", cfg.Config.Env, want)
	}
	if !reflect.DeepEqual(cfg.Config.Labels, map[string]string{"team": "override"}) {
		t.Errorf("labels %v", cfg.Config.Labels)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("BAD KEY=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := parseRun(t, nil, "--env-file", bad, "busybox"); err == nil || !strings.Contains(err.Error(), "variable 'BAD KEY' contains whitespaces") {
		t.Errorf("bad env file: %v", err)
	}
}

func TestResolveHostPrecedence(t *testing.T) {
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	cases := []struct {
		flags []string
		env   map[string]string
		want  string
	}{
		{nil, nil, "unix:///run/berth/berth.sock"},
		{nil, map[string]string{"DOCKER_HOST": "unix:///d.sock"}, "unix:///d.sock"},
		{nil, map[string]string{"DOCKER_HOST": "unix:///d.sock", "BERTH_HOST": "unix:///b.sock"}, "unix:///b.sock"},
		{[]string{"unix:///f.sock"}, map[string]string{"DOCKER_HOST": "unix:///d.sock", "BERTH_HOST": "unix:///b.sock"}, "unix:///f.sock"},
		{[]string{"tcp://10.0.0.1"}, nil, "tcp://10.0.0.1:2375"},
		{[]string{"10.0.0.1:3000"}, nil, "tcp://10.0.0.1:3000"},
		{nil, map[string]string{"BERTH_HOST": "unix://"}, "unix:///run/berth/berth.sock"},
	}
	for _, c := range cases {
		got, err := resolveHost(c.flags, env(c.env), false)
		if err != nil || got != c.want {
			t.Errorf("flags %v env %v: got %q, %v; want %q", c.flags, c.env, got, err, c.want)
		}
	}
	if _, err := resolveHost([]string{"a", "b"}, env(nil), false); err == nil {
		t.Error("two -H accepted")
	}
	if got, _ := resolveHost([]string{"tcp://h"}, env(nil), true); got != "tcp://h:2376" {
		t.Errorf("TLS default port: %s", got)
	}
}

// TestHostSelectionReachesTheDaemon proves the precedence end to end: the
// CLI talks to the daemon named by -H over BERTH_HOST over DOCKER_HOST.
func TestHostSelectionReachesTheDaemon(t *testing.T) {
	a, b, c := newFakeEngine(t), newFakeEngine(t), newFakeEngine(t)
	for _, f := range []*fakeEngine{a, b, c} {
		f.handle("GET", `/containers/json`, func(w http.ResponseWriter, r *http.Request, _ []string) { writeJSON(w, []any{}) })
	}
	if r := runCLI(t, "", "", map[string]string{"DOCKER_HOST": a.host}, "ps"); r.code != 0 || len(a.Calls()) != 1 {
		t.Fatalf("DOCKER_HOST: %s %v", r, a.Calls())
	}
	if r := runCLI(t, "", "", map[string]string{"DOCKER_HOST": a.host, "BERTH_HOST": b.host}, "ps"); r.code != 0 || len(b.Calls()) != 1 || len(a.Calls()) != 1 {
		t.Fatalf("BERTH_HOST over DOCKER_HOST: %s", r)
	}
	if r := runCLI(t, "", "", map[string]string{"DOCKER_HOST": a.host, "BERTH_HOST": b.host}, "-H", c.host, "ps"); r.code != 0 || len(c.Calls()) != 1 || len(b.Calls()) != 1 {
		t.Fatalf("-H over BERTH_HOST: %s", r)
	}
	r := runCLI(t, "", "", map[string]string{"BERTH_HOST": "unix:///nonexistent/berth.sock"}, "ps")
	if r.code != 1 || r.stderr != "Cannot connect to the berth daemon at unix:///nonexistent/berth.sock. Is the berth daemon running?\n" {
		t.Fatalf("no daemon: %s", r)
	}
	r = runCLI(t, "", "", map[string]string{"BERTH_HOST": "unix:///nonexistent/berth.sock"}, "run", "busybox")
	if r.code != 125 || !strings.HasPrefix(r.stderr, "berth: Cannot connect to the berth daemon") {
		t.Fatalf("run without daemon must be 125, not 127: %s", r)
	}
}

// FuzzRunFlagValues feeds arbitrary values to the run flags with their own
// parsers: parsing must fail cleanly or produce a request, never panic.
func FuzzRunFlagValues(f *testing.F) {
	for _, s := range []string{"/a:/b:ro", "8080:80/udp", "/dev/sda:/dev/xvda:rwm", "linux/arm64/v8", "h:1.2.3.4", "/run:size=1m",
		"7000-7001", "seccomp=unconfined", "published=1,target=2", "type=bind,src=/a,dst=/b", "a:b:c:d", "::", "[::1]:80:80"} {
		f.Add(s)
	}
	flagsToTry := []string{"-v", "-p", "--device", "--mount", "--add-host", "--tmpfs", "--expose", "--security-opt", "--network",
		"--restart", "--ulimit", "--log-opt", "--storage-opt", "-e", "-l", "--dns", "--cpus", "-m"}
	f.Fuzz(func(t *testing.T, v string) {
		for _, fl := range flagsToTry {
			if fl == "--security-opt" && strings.Contains(v, "seccomp") {
				continue // a seccomp profile path is read from disk
			}
			_, _ = parseRun(t, nil, fl, v, "busybox")
		}
		_, _ = parsePlatform(v)
		_, _, _ = splitVolumeSpec(v)
		_, _ = parseDevice(v)
		_ = isCDIName(v)
	})
}

func TestParsePlatform(t *testing.T) {
	for in, want := range map[string]string{"linux": "linux//", "linux/amd64": "linux/amd64/", "Linux/ARM64/v8": "linux/arm64/v8"} {
		p, err := parsePlatform(in)
		if err != nil || p.OS+"/"+p.Architecture+"/"+p.Variant != want {
			t.Errorf("%q: %+v %v", in, p, err)
		}
	}
	for _, in := range []string{"/amd64", "linux//v8", "a/b/c/d"} {
		if _, err := parsePlatform(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	if p, err := parsePlatform(""); p != nil || err != nil {
		t.Errorf("empty: %v %v", p, err)
	}
}
