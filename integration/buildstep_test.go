package integration

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/fsutil"
	"github.com/berth-engine/berth/internal/testutil"
)

// buildLeftovers lists what a build step may leave behind when something
// goes wrong: bundles and mounts under the exec root, the runtime's state
// of a step, staging directories.
func buildLeftovers(t *testing.T, d *testutil.Daemon) []string {
	t.Helper()
	var left []string
	for _, pat := range []string{
		filepath.Join(d.ExecRoot, "build", "*"),
		filepath.Join(d.ExecRoot, "runtime", "*", "*"),
		filepath.Join(d.DataRoot, "builder", "tmp", "stage-*"),
	} {
		m, _ := filepath.Glob(pat)
		left = append(left, m...)
	}
	left = append(left, testutil.MountsBelow(d.ExecRoot)...)
	return left
}

func snapshotDirs(t *testing.T, d *testutil.Daemon) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(d.DataRoot, "overlay2", "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		// Removed snapshots are renamed to the trash and deleted in
		// the background.
		if !strings.HasPrefix(e.Name(), fsutil.TrashPrefix) {
			n++
		}
	}
	return n
}

// A RUN step runs through the runtime straight from the daemon: the
// hostname is the "Running in" ID, build args and ENV are in its
// environment, USER and WORKDIR apply, --network decides its network, and
// nothing is left afterwards, also when it fails.
func TestBuildRunStepEnvironment(t *testing.T) {
	d := daemonWithBusybox(t)
	dir := writeContext(t, map[string]string{"Dockerfile": `FROM busybox
ARG A=default
ENV E=env
WORKDIR /w
USER 1000:1000
RUN echo "host=$(hostname) a=$A e=$E pwd=$(pwd) uid=$(id -u):$(id -g)"
USER 0
RUN echo "nets=$(ls /sys/class/net | tr '\n' ,)" && grep -q localhost /etc/hosts && echo hosts-ok
`})
	out := d.MustBerth(t, "build", "--no-cache", "--network", "none", "--build-arg", "A=given", dir)
	m := regexp.MustCompile(`---> Running in ([0-9a-f]{12})\nhost=([0-9a-f]+) `).FindStringSubmatch(out)
	if m == nil || m[1] != m[2] {
		t.Errorf("the step's hostname is not its ID:\n%s", out)
	}
	for _, want := range []string{"a=given e=env pwd=/w uid=1000:1000\n", "nets=lo,\n", "hosts-ok\n", "Removing intermediate container "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The default network is the bridge, as for docker's classic builder.
	out = d.MustBerth(t, "build", "--no-cache", dir)
	if !strings.Contains(out, "nets=eth0,lo,\n") {
		t.Errorf("default network:\n%s", out)
	}
	// The host's network: the daemon's bridge is one of its interfaces.
	out = d.MustBerth(t, "build", "--no-cache", "--network", "host", dir)
	if n := regexp.MustCompile(`(?m)^nets=(.*)$`).FindStringSubmatch(out); n == nil || !slices.Contains(strings.Split(n[1], ","), d.Bridge) {
		t.Errorf("--network host: %v, want the daemon's bridge %s among them:\n%s", n, d.Bridge, out)
	}
	// A user network: the step resolves the containers on it by name
	// through the embedded DNS.
	suffix := fmt.Sprintf("%x", rand.Uint32())
	netName, srvName := "bnet-"+suffix, "srv-"+suffix
	d.MustBerth(t, "network", "create", netName)
	defer d.Berth(t, "network", "rm", netName)
	d.MustBerth(t, "run", "-d", "--name", srvName, "--network", netName, "busybox", "sleep", "600")
	defer d.Berth(t, "rm", "-f", srvName) // on failure; removed below
	out = d.MustBerth(t, "build", "--no-cache", "--network", netName, writeContext(t, map[string]string{
		"Dockerfile": "FROM busybox\nRUN nslookup " + srvName + " && echo resolved-" + srvName + "\n",
	}))
	if !strings.Contains(out, "resolved-"+srvName+"\n") {
		t.Errorf("a step on a user network does not resolve %s:\n%s", srvName, out)
	}
	// container:X: the step joins X's network stack and sees its hostname.
	out = d.MustBerth(t, "build", "--no-cache", "--network", "container:"+srvName, writeContext(t, map[string]string{
		"Dockerfile": "FROM busybox\nRUN echo \"peer-host=$(hostname)\"\n",
	}))
	peerHost := strings.TrimSpace(d.MustBerth(t, "exec", srvName, "hostname"))
	if !strings.Contains(out, "peer-host="+peerHost+"\n") {
		t.Errorf("--network container:%s: want hostname %s:\n%s", srvName, peerHost, out)
	}
	d.MustBerth(t, "rm", "-f", srvName)
	if !strings.Contains(d.Log(), `msg="build step ran"`) {
		t.Error("no step ran without a container (daemon log)")
	}
	if left := buildLeftovers(t, d); len(left) > 0 {
		t.Errorf("left after builds: %v", left)
	}
	// A failing step and a step whose executable is missing leave
	// nothing (no snapshot either), and say what happened.
	before := snapshotDirs(t, d)
	r := d.Berth(t, "build", "--no-cache", writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo failing-out && exit 4\n"}))
	if r.ExitCode != 4 || !strings.Contains(r.Combined(), "failing-out") || !strings.Contains(r.Combined(), "returned a non-zero code: 4") {
		t.Errorf("failing RUN: %s", r)
	}
	r = d.Berth(t, "build", "--no-cache", writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN [\"/no/such/binary\"]\n"}))
	if r.ExitCode == 0 || !strings.Contains(r.Combined(), "/no/such/binary") {
		t.Errorf("missing executable: %s", r)
	}
	if after := snapshotDirs(t, d); after != before {
		t.Errorf("snapshots: %d before the failed builds, %d after", before, after)
	}
	if left := buildLeftovers(t, d); len(left) > 0 {
		t.Errorf("left after failed builds: %v", left)
	}
	if ps := d.MustBerth(t, "ps", "-aq"); ps != "" {
		t.Errorf("containers left: %q", ps)
	}
}

// A step's writable snapshot becomes its layer's snapshot: the next steps
// and containers see deletions (whiteouts) and replaced directories
// (opaque) exactly as the layer says, and not the runtime's mount points.
func TestBuildRunStepKeptSnapshot(t *testing.T) {
	d := daemonWithBusybox(t)
	dir := writeContext(t, map[string]string{"Dockerfile": `FROM scratch AS bare
COPY --from=busybox /bin/busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox echo hi > /hi"]

FROM busybox
RUN mkdir -p /x/y && echo z > /x/y/z && echo keep > /k && ln /k /k2
RUN rm -rf /x && mkdir /x && echo only > /x/only && rm /k && echo changed > /k2
RUN test ! -e /k && test "$(ls /x)" = only && test "$(cat /k2)" = changed && echo whiteouts-ok
COPY --from=bare / /bare/
RUN ls -A /bare | tr '\n' ' ' && echo
`})
	out := d.MustBerth(t, "build", "-t", "kept", dir)
	if !strings.Contains(out, "whiteouts-ok") {
		t.Errorf("a step does not see the previous steps' deletions:\n%s", out)
	}
	// The bare stage holds only what its steps made: no /etc, /dev,
	// /proc or /sys placeholders of the runtime.
	if !strings.Contains(out, "\nbin hi \n") {
		t.Errorf("the bare stage's files:\n%s", out)
	}
	got := d.MustBerth(t, "run", "--rm", "kept", "sh", "-c", "ls /x; cat /k2; ls /k 2>/dev/null || echo no-k")
	if got != "only\nchanged\nno-k\n" {
		t.Errorf("image files = %q", got)
	}
	// After a restart (snapshots reloaded) a rebuild is cached and the
	// image still runs.
	d.Stop(t)
	d.Start(t)
	if out := d.MustBerth(t, "build", dir); strings.Contains(out, "Running in") {
		t.Errorf("rebuild after restart not cached:\n%s", out)
	}
	if got := d.MustBerth(t, "run", "--rm", "kept", "cat", "/bare/hi"); got != "hi\n" {
		t.Errorf("run after restart = %q", got)
	}
}

// docker gives a step on an image with a VOLUME an anonymous volume there:
// what the step writes into it is not in the layer.
func TestBuildRunStepVolume(t *testing.T) {
	d := daemonWithBusybox(t)
	dir := writeContext(t, map[string]string{"Dockerfile": `FROM busybox
RUN mkdir /vol && echo before > /vol/f
VOLUME /vol
RUN echo after > /vol/f && echo other > /other
`})
	d.MustBerth(t, "build", "-t", "withvol", dir)
	if got := d.MustBerth(t, "run", "--rm", "withvol", "cat", "/vol/f", "/other"); got != "before\nother\n" {
		t.Errorf("files = %q, want the volume unchanged", got)
	}
	if ps := d.MustBerth(t, "ps", "-aq"); ps != "" {
		t.Errorf("containers left: %q", ps)
	}
	d.MustBerth(t, "volume", "prune", "-f")
}

// A COPY right after a RUN is prepared while the RUN runs; it must still
// see the stage's WORKDIR and variables, and one whose meaning depends on
// what the RUN does (a file copied onto a directory the RUN makes) must
// still follow it.
func TestBuildCopyAfterRun(t *testing.T) {
	testutil.RequiresDockerCLI(t)
	d := daemonWithBusybox(t)
	dir := writeContext(t, map[string]string{
		"Dockerfile": `FROM busybox
WORKDIR /w
ENV D=sub
RUN mkdir /target
COPY --chown=12:34 --chmod=0640 a.txt $D/
RUN true
COPY b.txt /target
RUN stat -c '%u:%g %a %n' /w/sub/a.txt && cat /target/b.txt
COPY tree/ /tree/
RUN find /tree | sort | tr '\n' ' ' && echo
`,
		"a.txt":        "A\n",
		"b.txt":        "B\n",
		"tree/x/1.txt": "1",
		"tree/x/2.txt": "2",
		"tree/y.txt":   "y",
	})
	for _, build := range []func(args ...string) string{
		func(args ...string) string { return d.MustBerth(t, append([]string{"build"}, args...)...) },
		func(args ...string) string {
			r := dockerBuild(t, d, "", args...)
			if r.ExitCode != 0 {
				t.Fatalf("docker build: %s", r)
			}
			return r.Stdout
		},
	} {
		out := build("--no-cache", "-t", "cp", dir)
		for _, want := range []string{"12:34 640 /w/sub/a.txt\nB\n", "/tree /tree/x /tree/x/1.txt /tree/x/2.txt /tree/y.txt \n"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if got := d.MustBerth(t, "run", "--rm", "cp", "cat", "/w/sub/a.txt", "/target/b.txt", "/tree/x/2.txt"); got != "A\nB\n2" {
			t.Errorf("image files = %q", got)
		}
	}
	// (Both COPYs that can be were prepared early: the one with a
	// variable while the RUN before it ran, tree/ as soon as the stage
	// had a new image.)
	if n := len(regexp.MustCompile(`msg="build COPY prefetched" took=\S+ (static=true )?err=<nil>`).FindAllString(d.Log(), -1)); n != 4 {
		t.Errorf("%d COPYs prefetched, want 4 (daemon log)", n)
	}
	// A RUN that fails while the COPY after it is prepared leaves no
	// staging directory or layer snapshot behind.
	before := snapshotDirs(t, d)
	bad := writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN exit 3\nCOPY tree/ /tree/\n", "tree/a": "a"})
	if r := d.Berth(t, "build", bad); r.ExitCode != 3 {
		t.Errorf("failing RUN before a COPY: %s", r)
	}
	if left := buildLeftovers(t, d); len(left) > 0 {
		t.Errorf("left after a failed build: %v", left)
	}
	if after := snapshotDirs(t, d); after != before {
		t.Errorf("snapshots: %d before the failed build, %d after", before, after)
	}
}

// A daemon killed while a step runs leaves nothing running or mounted once
// it is back, and builds again.
func TestBuildRunStepDaemonKilled(t *testing.T) {
	d := daemonWithBusybox(t)
	secs := 600000 + rand.IntN(100000)
	dir := writeContext(t, map[string]string{"Dockerfile": fmt.Sprintf("FROM busybox\nRUN echo started && sleep %d\nCOPY f /f\n", secs), "f": "f"})
	cmd := d.Cmd("build", dir)
	var out bytes.Buffer
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	buf := make([]byte, 4096)
	for !strings.Contains(out.String(), "started") {
		n, err := pr.Read(buf)
		if err != nil {
			t.Fatalf("build ended early: %v: %s", err, out.String())
		}
		out.Write(buf[:n])
	}
	d.Kill9(t)
	_ = cmd.Wait()
	pr.Close()
	d.Start(t)
	sleeping := func() bool {
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			b, _ := os.ReadFile(p)
			if string(b) == fmt.Sprintf("sleep\x00%d\x00", secs) {
				return true
			}
		}
		return false
	}
	eventually(t, "the step's process gone", func() bool { return !sleeping() })
	eventually(t, "no build leftovers", func() bool { return len(buildLeftovers(t, d)) == 0 })
	if r := d.Berth(t, "build", "-q", writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo ok\n"})); r.ExitCode != 0 {
		t.Errorf("build after the kill: %s", r)
	}
}
