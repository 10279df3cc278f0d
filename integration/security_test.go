package integration

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/testutil"
	"golang.org/x/sys/unix"
)

// buildProbe builds integration/probe (a static program that attempts
// escape syscalls busybox has no applet for) into a test directory.
func buildProbe(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "probe")
	cmd := exec.Command("go", "build", "-o", out, "./probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build probe: %v\n%s", err, b)
	}
	return out
}

// runProbe runs the probe's action in a new container with extra run
// options and returns its one-line verdict ("ok", "denied: EPERM").
func runProbe(t *testing.T, d *testutil.Daemon, probe, action string, opts ...string) string {
	t.Helper()
	args := append([]string{"run", "--rm", "-v", probe + ":/probe:ro"}, opts...)
	r := d.Berth(t, append(args, "busybox", "/probe", action)...)
	return strings.TrimSpace(r.Stdout + r.Stderr)
}

// Syscalls docker's seccomp profile and capability set deny must fail in
// a default container, and the ones --privileged allows must then work
// (proving the default failure is the confinement, not the kernel).
func TestConfinementSyscalls(t *testing.T) {
	d := daemonWithBusybox(t)
	probe := buildProbe(t)
	tests := []struct {
		action string
		// privOK: under --privileged the call succeeds (as under docker);
		// otherwise it reaches the kernel, which may refuse it for its own
		// reasons, but not with seccomp's EPERM.
		privOK bool
	}{
		{"mount", true},
		{"clone-newns", true},
		{"unshare-mount", true},
		{"keyctl", true},
		{"add-key", true},
		{"request-key", false},
		{"bpf", true},
		{"perf-event-open", true},
		{"open-by-handle-at", true},
		{"personality", true},
		{"kexec-load", false},
		{"init-module", false},
	}
	for _, tc := range tests {
		t.Run(tc.action, func(t *testing.T) {
			if got := runProbe(t, d, probe, tc.action); got != "denied: EPERM" {
				t.Errorf("default container: %s: %q, want denied: EPERM", tc.action, got)
			}
			got := runProbe(t, d, probe, tc.action, "--privileged")
			if tc.privOK && got != "ok" || !tc.privOK && (got == "denied: EPERM" || got == "") {
				t.Errorf("--privileged: %s: %q", tc.action, got)
			}
		})
	}
	// The filter follows the capabilities, as docker's: CAP_SYS_ADMIN
	// alone allows mount (a no-op on the container's own /tmp tmpfs).
	if got := runProbe(t, d, probe, "mount", "--cap-add", "SYS_ADMIN", "--tmpfs", "/tmp"); got != "ok" {
		t.Errorf("--cap-add SYS_ADMIN: mount %q", got)
	}
	// Without the filter, the capability set alone still denies it.
	if got := runProbe(t, d, probe, "mount", "--security-opt", "seccomp=unconfined"); got != "denied: EPERM" {
		t.Errorf("seccomp=unconfined: mount %q", got)
	}
	// An exec is under the container's filter too (the program its create
	// compiled, handed over from the runtime's state). With --privileged
	// the exec holds every capability, so a denial there is the filter's.
	t.Run("exec", func(t *testing.T) {
		id := strings.TrimSpace(d.MustBerth(t, "run", "-d", "-v", probe+":/probe:ro", "busybox", "sleep", "1000"))
		t.Cleanup(func() { d.Berth(t, "rm", "-f", id) })
		for _, action := range []string{"mount", "unshare-mount", "keyctl", "bpf"} {
			for _, opts := range [][]string{nil, {"--privileged"}} {
				args := append(append([]string{"exec"}, opts...), id, "/probe", action)
				r := d.Berth(t, args...)
				if got := strings.TrimSpace(r.Stdout + r.Stderr); got != "denied: EPERM" {
					t.Errorf("exec %v %s: %q, want denied: EPERM", opts, action, got)
				}
			}
		}
		// The same exec in a container without the filter gets through:
		// the denials above are the filter's, not the kernel's.
		un := strings.TrimSpace(d.MustBerth(t, "run", "-d", "--security-opt", "seccomp=unconfined", "-v", probe+":/probe:ro", "busybox", "sleep", "1000"))
		t.Cleanup(func() { d.Berth(t, "rm", "-f", un) })
		if r := d.Berth(t, "exec", "--privileged", un, "/probe", "keyctl"); strings.TrimSpace(r.Stdout+r.Stderr) != "ok" {
			t.Errorf("exec --privileged keyctl without a filter: %q", r.Stdout+r.Stderr)
		}
	})
}

// hostBlockDevice is a host block device (name, major, minor) and
// whether the host itself can open it for reading.
func hostBlockDevice(t *testing.T) (name string, major, minor int, hostOpens bool) {
	t.Helper()
	ents, _ := os.ReadDir("/sys/block")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/sys/block", e.Name(), "dev"))
		if err != nil {
			continue
		}
		var ma, mi int
		if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &ma, &mi); err != nil {
			continue
		}
		f, err := os.Open(filepath.Join("/dev", e.Name()))
		opens := err == nil
		if f != nil {
			f.Close()
		}
		if name == "" || opens && !hostOpens {
			name, major, minor, hostOpens = e.Name(), ma, mi, opens
		}
	}
	if name == "" {
		t.Skip("the host has no block device")
	}
	return name, major, minor, hostOpens
}

// The filesystem-level escapes: host disks, /proc and /sys knobs, masked
// kernel files, the cgroup tree (release_agent), namespaces through
// busybox's unshare.
func TestConfinementFilesystem(t *testing.T) {
	d := daemonWithBusybox(t)
	disk, major, minor, hostOpens := hostBlockDevice(t)
	script := fmt.Sprintf(`
unshare -U true 2>/dev/null && echo ESCAPE unshare-U
unshare -m true 2>/dev/null && echo ESCAPE unshare-m
for f in /proc/keys /proc/timer_list /proc/kcore /proc/sched_debug; do
	[ -e $f ] && [ -n "$(head -c 1 $f 2>/dev/null)" ] && echo ESCAPE read $f
done
[ -n "$(ls /sys/firmware 2>/dev/null)" ] && echo ESCAPE ls /sys/firmware
v=$(cat /proc/sys/net/ipv4/ip_forward); echo $v > /proc/sys/net/ipv4/ip_forward 2>/dev/null && echo ESCAPE write /proc/sys
v=$(cat /sys/class/net/lo/mtu); echo $v > /sys/class/net/lo/mtu 2>/dev/null && echo ESCAPE write /sys
echo 1 > /proc/sysrq-trigger 2>/dev/null && echo ESCAPE sysrq
for c in /sys/fs/cgroup/*; do
	mkdir $c/berth-escape 2>/dev/null && echo ESCAPE mkdir $c
	[ -e $c/release_agent ] && echo ESCAPE release_agent $c
done
mkdir -p /tmp/cg && mount -t cgroup -o memory cgroup /tmp/cg 2>/dev/null && echo ESCAPE mount cgroup
ls /dev | grep -qx %[1]s && echo ESCAPE /dev/%[1]s visible
ls /dev | grep -qx fuse && echo ESCAPE /dev/fuse visible
mknod /tmp/disk b %[2]d %[3]d || echo mknod refused
head -c 1 /tmp/disk >/dev/null 2>&1 && echo ESCAPE open disk
grep -q '^Seccomp:[[:space:]]*2' /proc/self/status || echo ESCAPE no seccomp
grep '^CapEff' /proc/self/status
echo done`, disk, major, minor)
	for _, cli := range []string{"berth", "docker"} {
		var r testutil.Result
		if cli == "docker" {
			testutil.RequiresDockerCLI(t)
			r = d.Docker(t, "run", "--rm", "busybox", "sh", "-c", script)
		} else {
			r = d.Berth(t, "run", "--rm", "busybox", "sh", "-c", script)
		}
		if !strings.Contains(r.Stdout, "done") || strings.Contains(r.Stdout, "ESCAPE") {
			t.Errorf("%s: %s", cli, r)
		}
		// docker's 14 default capabilities, nothing more.
		if !strings.Contains(r.Stdout, "CapEff:\t00000000a80425fb") {
			t.Errorf("%s: effective capabilities: %s", cli, r.Stdout)
		}
	}

	// --privileged lifts it, as docker's does: the same attempts succeed.
	priv := fmt.Sprintf(`
unshare -U true && echo unshare-U
unshare -m true && echo unshare-m
[ -n "$(head -c 1 /proc/timer_list)" ] && echo read-timer_list
v=$(cat /proc/sys/net/ipv4/ip_forward); echo $v > /proc/sys/net/ipv4/ip_forward && echo write-proc-sys
v=$(cat /sys/class/net/lo/mtu); echo $v > /sys/class/net/lo/mtu && echo write-sys
[ -b /dev/%[1]s ] && echo disk-visible
head -c 1 /dev/%[1]s >/dev/null && echo disk-opens
grep -q '^Seccomp:[[:space:]]*0' /proc/self/status && echo no-seccomp
true`, disk)
	r := d.Berth(t, "run", "--rm", "--privileged", "busybox", "sh", "-c", priv)
	want := []string{"unshare-U", "unshare-m", "read-timer_list", "write-proc-sys", "write-sys", "disk-visible", "no-seccomp"}
	if hostOpens {
		want = append(want, "disk-opens")
	}
	for _, w := range want {
		if !strings.Contains(r.Stdout, w+"\n") {
			t.Errorf("--privileged: %s missing: %s", w, r)
		}
	}
}

// --cap-add/--cap-drop, --device, --device-cgroup-rule, --sysctl,
// --security-opt, --read-only, --group-add and --userns=host, through
// the stock docker CLI, and what inspect and info report.
func TestConfinementControls(t *testing.T) {
	testutil.RequiresDockerCLI(t)
	d := daemonWithBusybox(t)
	capEff := func(args ...string) string {
		t.Helper()
		out := d.MustDocker(t, append(append([]string{"run", "--rm"}, args...), "busybox", "grep", "CapEff", "/proc/self/status")...)
		return strings.TrimSpace(strings.TrimPrefix(out, "CapEff:"))
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "00000000a80425fb"},
		{[]string{"--cap-drop", "ALL"}, "0000000000000000"},
		{[]string{"--cap-drop", "all", "--cap-add", "chown"}, "0000000000000001"},
		{[]string{"--cap-drop", "CHOWN"}, "00000000a80425fa"},
		{[]string{"--cap-add", "cap_net_admin"}, "00000000a80435fb"},
	} {
		if got := capEff(tc.args...); got != tc.want {
			t.Errorf("%v: CapEff %s, want %s", tc.args, got, tc.want)
		}
	}
	r := d.Docker(t, "run", "--rm", "--cap-add", "NET_BOGUS", "busybox", "true")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, `invalid CapAdd: unknown capability: "CAP_NET_BOGUS"`) {
		t.Errorf("unknown capability: %s", r)
	}

	// A host device: visible and openable as granted (read only here),
	// where without --device the same node cannot even be opened.
	const lc = "/dev/loop-control"
	if _, err := os.Stat(lc); err == nil {
		out := d.MustDocker(t, "run", "--rm", "--device", lc+":/dev/lc:r", "busybox", "sh", "-c",
			"(: < /dev/lc) && echo read-ok; (: > /dev/lc) 2>/dev/null && echo ESCAPE write; true")
		if out != "read-ok\n" {
			t.Errorf("--device %s:/dev/lc:r: %q", lc, out)
		}
		script := "mknod /tmp/lc c 10 237 && (: < /tmp/lc) 2>/dev/null && echo opened; true"
		if out := d.MustDocker(t, "run", "--rm", "busybox", "sh", "-c", script); out != "" {
			t.Errorf("loop-control opened without --device: %q", out)
		}
		if out := d.MustDocker(t, "run", "--rm", "--device-cgroup-rule", "c 10:237 r", "busybox", "sh", "-c", script); out != "opened\n" {
			t.Errorf("--device-cgroup-rule: %q", out)
		}
	}

	// Namespaced sysctls only.
	if out := d.MustDocker(t, "run", "--rm", "--sysctl", "kernel.shmmax=123456", "--sysctl", "net.ipv4.ip_forward=1",
		"busybox", "cat", "/proc/sys/kernel/shmmax", "/proc/sys/net/ipv4/ip_forward"); out != "123456\n1\n" {
		t.Errorf("--sysctl: %q", out)
	}
	r = d.Docker(t, "run", "--rm", "--network", "host", "--sysctl", "net.ipv4.ip_forward=1", "busybox", "true")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "not allowed in host network namespace") {
		t.Errorf("net sysctl with host network: %s", r)
	}
	r = d.Berth(t, "run", "--rm", "--sysctl", "kernel.panic=1", "busybox", "true")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "is not allowed") {
		t.Errorf("kernel.panic: %s", r)
	}

	// Security options: a profile file (the CLI sends its JSON), unconfined,
	// no-new-privileges, AppArmor where it is off.
	prof := filepath.Join(t.TempDir(), "profile.json")
	os.WriteFile(prof, []byte(`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}`), 0o644)
	for _, cli := range []func(...string) testutil.Result{
		func(a ...string) testutil.Result { return d.Docker(t, a...) },
		func(a ...string) testutil.Result { return d.Berth(t, a...) },
	} {
		r = cli("run", "--rm", "--security-opt", "seccomp="+prof, "busybox", "sh", "-c", "mkdir /x || echo refused; grep Seccomp: /proc/self/status")
		if !strings.Contains(r.Stdout, "refused") || !strings.Contains(r.Stdout, "Seccomp:\t2") {
			t.Errorf("custom profile: %s", r)
		}
	}
	if out := d.MustDocker(t, "run", "--rm", "--security-opt", "seccomp=unconfined", "busybox", "grep", "Seccomp:", "/proc/self/status"); out != "Seccomp:\t0\n" {
		t.Errorf("seccomp=unconfined: %q", out)
	}
	if out := d.MustDocker(t, "run", "--rm", "--security-opt", "no-new-privileges", "busybox", "grep", "NoNewPrivs", "/proc/self/status"); out != "NoNewPrivs:\t1\n" {
		t.Errorf("no-new-privileges: %q", out)
	}
	if b, _ := os.ReadFile("/sys/module/apparmor/parameters/enabled"); !strings.HasPrefix(string(b), "Y") {
		r = d.Docker(t, "run", "--rm", "--security-opt", "apparmor=docker-default", "busybox", "true")
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, "AppArmor is not enabled") {
			t.Errorf("apparmor on a host without it: %s", r)
		}
	}
	d.MustDocker(t, "run", "--rm", "--security-opt", "apparmor=unconfined", "--security-opt", "label=disable", "--userns", "host", "busybox", "true")
	r = d.Docker(t, "run", "--rm", "--security-opt", "bogus=1", "busybox", "true")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, `invalid --security-opt 2: "bogus=1"`) {
		t.Errorf("bogus security option: %s", r)
	}

	r = d.Docker(t, "run", "--rm", "--read-only", "busybox", "sh", "-c", "touch /x; touch /tmp/x /dev/shm/x && echo tmp-ok")
	if !strings.Contains(r.Stderr, "Read-only file system") || r.Stdout != "" {
		t.Errorf("--read-only: %s", r)
	}
	if out := d.MustDocker(t, "run", "--rm", "--group-add", "4242", "--user", "1000", "busybox", "id", "-G"); !contains(strings.Fields(out), "4242") {
		t.Errorf("--group-add: %q", out)
	}

	// inspect: docker's fields and berth's effective view.
	id := strings.TrimSpace(d.MustDocker(t, "create", "--cap-add", "NET_ADMIN", "--cap-drop", "MKNOD", "--security-opt", "no-new-privileges", "busybox", "true"))
	var ins []struct {
		HostConfig struct {
			CapAdd, CapDrop, MaskedPaths, ReadonlyPaths []string
		}
		BerthSecurity struct {
			Capabilities    []string
			Seccomp         string
			NoNewPrivileges bool
			MaskedPaths     []string
			CgroupNamespace string
		}
	}
	if err := json.Unmarshal([]byte(d.MustDocker(t, "inspect", id)), &ins); err != nil || len(ins) != 1 {
		t.Fatalf("inspect: %v", err)
	}
	hc, sec := ins[0].HostConfig, ins[0].BerthSecurity
	if strings.Join(hc.CapAdd, ",") != "CAP_NET_ADMIN" || strings.Join(hc.CapDrop, ",") != "CAP_MKNOD" ||
		!contains(hc.MaskedPaths, "/proc/kcore") || !contains(hc.ReadonlyPaths, "/proc/sys") {
		t.Errorf("inspect HostConfig: %+v", hc)
	}
	if !contains(sec.Capabilities, "CAP_NET_ADMIN") || contains(sec.Capabilities, "CAP_MKNOD") || len(sec.Capabilities) != 14 ||
		sec.Seccomp != "builtin" || !sec.NoNewPrivileges || !contains(sec.MaskedPaths, "/proc/keys") || sec.CgroupNamespace != "private" {
		t.Errorf("inspect BerthSecurity: %+v", sec)
	}
	if got := inspectField(t, d, d.MustBerth(t, "create", "--privileged", "busybox", "true")[:12], "{{.BerthSecurity.Seccomp}} {{len .BerthSecurity.MaskedPaths}}"); got != "unconfined 0" {
		t.Errorf("privileged inspect: %q", got)
	}
	if out := d.MustDocker(t, "info", "-f", "{{json .SecurityOptions}}"); !strings.Contains(out, `"name=seccomp,profile=builtin"`) || !strings.Contains(out, `"name=cgroupns"`) {
		t.Errorf("info SecurityOptions: %s", out)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// The runtime-level attacks of past CVEs stay fixed.
func TestRuntimeCVEs(t *testing.T) {
	d := daemonWithBusybox(t)
	hostDir := t.TempDir()
	secret := "host-secret-" + strconv.Itoa(os.Getpid())
	os.WriteFile(filepath.Join(hostDir, "marker"), []byte(secret), 0o644)

	// CVE-2024-21626: a working directory through a descriptor the
	// runtime leaked into the container reaches the host's filesystem.
	// Each attempt must fail to start or see only the container.
	read := "cat ../../../../../../../.." + hostDir + "/marker " + hostDir + "/marker 2>/dev/null; ls -a 2>/dev/null | head -3"
	for fd := 3; fd <= 9; fd++ {
		r := d.Berth(t, "run", "--rm", "-w", "/proc/self/fd/"+strconv.Itoa(fd), "busybox", "sh", "-c", read)
		if strings.Contains(r.Stdout, secret) {
			t.Errorf("-w /proc/self/fd/%d reached the host: %s", fd, r)
		}
	}
	id := strings.TrimSpace(d.MustBerth(t, "run", "-d", "busybox", "sleep", "1000"))
	for fd := 3; fd <= 9; fd++ {
		r := d.Berth(t, "exec", "-w", "/proc/self/fd/"+strconv.Itoa(fd), id, "sh", "-c", read)
		if strings.Contains(r.Stdout, secret) {
			t.Errorf("exec -w /proc/self/fd/%d reached the host: %s", fd, r)
		}
	}
	d.MustBerth(t, "rm", "-f", id)

	// CVE-2019-5736: a container process finds the runtime's init entering
	// it (berth exec) and tries to open its executable for writing.
	probe := buildProbe(t)
	rt := filepath.Join(binDir, "berth-runtime")
	before := fileSum(t, rt)
	id = strings.TrimSpace(d.MustBerth(t, "run", "-d", "-v", probe+":/probe:ro", "busybox", "/probe", "exe-watch", "100000000"))
	for i := 0; i < 30; i++ {
		d.MustBerth(t, "exec", id, "true")
	}
	d.MustBerth(t, "exec", id, "touch", "/tmp/stop-watch")
	d.MustBerth(t, "wait", id)
	out := d.MustBerth(t, "logs", id)
	t.Logf("exe-watch: %s", strings.TrimSpace(out))
	var seen, opened int
	if _, err := fmt.Sscanf(out, "seen=%d opened=%d", &seen, &opened); err != nil {
		t.Fatalf("exe-watch printed %q: %v", out, err)
	}
	if opened != 0 {
		t.Errorf("the runtime's executable was writable from the container: %q", out)
	}
	// The watcher must have caught the runtime's init inside the
	// container at least once, or it proved nothing.
	if seen == 0 {
		t.Errorf("exe-watch never saw a runtime process enter the container: %q", out)
	}
	if fileSum(t, rt) != before {
		t.Fatal("berth-runtime changed on the host")
	}
	d.MustBerth(t, "rm", id)

	// Symlinks on mount destinations resolve inside the container: a
	// link to a host path gets the mount under the container's root.
	id = strings.TrimSpace(d.MustBerth(t, "run", "-d", "busybox", "sh", "-c",
		"ln -s "+hostDir+" /abslink; ln -s ../../../../../../.."+hostDir+" /rellink; sleep 1000"))
	eventually(t, "links made", func() bool { return d.Berth(t, "exec", id, "test", "-L", "/rellink").ExitCode == 0 })
	d.MustBerth(t, "commit", id, "linked:latest")
	d.MustBerth(t, "rm", "-f", id)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("from-volume"), 0o644)
	id = strings.TrimSpace(d.MustBerth(t, "run", "-d", "--tmpfs", "/abslink", "-v", src+":/rellink/sub:ro", "linked:latest", "sleep", "1000"))
	if mounts := testutil.MountsUnder(hostDir); len(mounts) != 0 {
		t.Errorf("a container mount landed on the host: %v", mounts)
	}
	if got := d.MustBerth(t, "exec", id, "cat", hostDir+"/sub/f"); got != "from-volume" {
		t.Errorf("bind through a link should land inside the container: %q", got)
	}
	if b, _ := os.ReadFile(filepath.Join(hostDir, "marker")); string(b) != secret {
		t.Fatalf("host marker changed: %q", b)
	}
	d.MustBerth(t, "rm", "-f", id)
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// An archive whose entries climb out through their own links (a symlink
// to the host, then a file through it; a hardlink to a host file) lands
// nothing outside the container, through berth cp and docker cp.
func TestCpArchiveLinksEscape(t *testing.T) {
	d := daemonWithBusybox(t)
	hostDir := t.TempDir()
	secret := filepath.Join(hostDir, "secret")
	os.WriteFile(secret, []byte("host secret\n"), 0o600)
	id := strings.TrimSpace(d.MustBerth(t, "run", "-d", "busybox", "sh", "-c", "mkdir /box; sleep 1000"))
	eventually(t, "box made", func() bool { return d.Berth(t, "exec", id, "test", "-d", "/box").ExitCode == 0 })

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := []byte("evil\n")
	tw.WriteHeader(&tar.Header{Name: "esc", Typeflag: tar.TypeSymlink, Linkname: hostDir, Mode: 0o777})
	tw.WriteHeader(&tar.Header{Name: "esc/secret", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
	tw.Write(body)
	tw.WriteHeader(&tar.Header{Name: "up", Typeflag: tar.TypeSymlink, Linkname: "../../../../../../..", Mode: 0o777})
	tw.WriteHeader(&tar.Header{Name: "up" + hostDir + "/new", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
	tw.Write(body)
	tw.WriteHeader(&tar.Header{Name: "hard", Typeflag: tar.TypeLink, Linkname: "../../../../../../.." + secret})
	tw.Close()
	archive := buf.Bytes()

	for _, cli := range []string{"berth", "docker"} {
		var cmd *exec.Cmd
		if cli == "docker" {
			testutil.RequiresDockerCLI(t)
			cmd = d.DockerCmd("cp", "-", id+":/box")
		} else {
			cmd = d.Cmd("cp", "-", id+":/box")
		}
		cmd.Stdin = bytes.NewReader(archive)
		_ = cmd.Run()
		if b, _ := os.ReadFile(secret); string(b) != "host secret\n" {
			t.Fatalf("%s cp: the archive wrote the host's file: %q", cli, b)
		}
		if _, err := os.Stat(filepath.Join(hostDir, "new")); err == nil {
			t.Fatalf("%s cp: the archive created a host file", cli)
		}
		var st unix.Stat_t
		if err := unix.Stat(secret, &st); err == nil && st.Nlink != 1 {
			t.Fatalf("%s cp: the archive hardlinked the host's file", cli)
		}
	}
	d.MustBerth(t, "rm", "-f", id)
}

// TestMountDestinationSymlinkRace is the CVE-2021-30465 pattern: one
// container keeps swapping a directory in a shared volume between a real
// directory and a symlink to "/", while containers start with a second
// mount nested under that directory. A runtime that checks the path and
// then mounts by name can be made to mount on the host's root; berth's
// must always land inside the container.
func TestMountDestinationSymlinkRace(t *testing.T) {
	d := daemonWithBusybox(t)
	target := "berth-race-" + randHex(t, 4)
	hostPath := "/" + target
	t.Cleanup(func() {
		_ = unix.Unmount(hostPath, unix.MNT_DETACH)
		_ = os.Remove(hostPath)
	})
	d.MustBerth(t, "volume", "create", "racevol")
	src := t.TempDir()
	swapper := strings.TrimSpace(d.MustBerth(t, "run", "-d", "-v", "racevol:/v", "busybox", "sh", "-c",
		"while true; do rm -rf /v/b; mkdir -p /v/b/"+target+"; rm -rf /v/b; ln -s / /v/b; done"))
	started := 0
	for i := 0; i < 40; i++ {
		r := d.Berth(t, "run", "--rm", "-v", "racevol:/a", "-v", src+":/a/b/"+target, "busybox", "true")
		if r.ExitCode == 0 {
			started++
		}
		if _, err := os.Lstat(hostPath); err == nil {
			t.Fatalf("run %d: a mount destination resolved to the host's %s", i, hostPath)
		}
		if m := testutil.MountsUnder(hostPath); len(m) != 0 {
			t.Fatalf("run %d: a container mount landed on the host: %v", i, m)
		}
	}
	d.MustBerth(t, "rm", "-f", swapper)
	d.MustBerth(t, "volume", "rm", "racevol")
	t.Logf("%d of 40 racing starts succeeded (the others failed safely)", started)
}
