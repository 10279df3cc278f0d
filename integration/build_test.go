package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/testutil"
)

// writeContext makes a build context directory from name → content.
func writeContext(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestBuildBasics(t *testing.T) {
	d := daemonWithBusybox(t)
	dir := writeContext(t, map[string]string{
		"Dockerfile": `ARG BASE=busybox
FROM $BASE
ARG GREETING=hello
ENV APP=/app
WORKDIR $APP
COPY a.txt sub/ ./
COPY *.md /docs/
ADD files.tar /unpacked/
RUN echo "$GREETING from run" > /app/run.txt && rm -f /bin/true && mkdir -p /x/y && echo z > /x/y/z && ln /app/run.txt /app/hard.txt
RUN ["/bin/sh", "-c", "echo exec-form > /app/exec.txt"]
COPY a.txt /etc
RUN rm -rf /x && mkdir /x && echo only > /x/only
LABEL org.test=yes
EXPOSE 8080/tcp
USER 1000:1000
VOLUME /data
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s CMD true
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/run.txt"]
`,
		"a.txt":         "A\n",
		"sub/b.txt":     "B\n",
		"one.md":        "1\n",
		"two.md":        "2\n",
		"ignored.txt":   "nope\n",
		".dockerignore": "ignored.txt\n",
	})
	// a tar for ADD's auto-extraction
	tarDir := writeContext(t, map[string]string{"inner/f.txt": "from tar\n"})
	r := testutil.Run(t, exec.Command("tar", "-C", tarDir, "-cf", filepath.Join(dir, "files.tar"), "inner"), "")
	if r.ExitCode != 0 {
		t.Fatal(r)
	}
	out := d.MustBerth(t, "build", "-t", "bt:one", "-t", "bt:two", "--build-arg", "GREETING=hi", "--label", "extra=1", dir)
	for _, want := range []string{"Step 1/", " : FROM $BASE", "Successfully built ", "Successfully tagged bt:one", "Successfully tagged bt:two", "Running in "} {
		if !strings.Contains(out, want) {
			t.Errorf("build output lacks %q:\n%s", want, out)
		}
	}
	got := d.MustBerth(t, "run", "--rm", "bt:one")
	if got != "hi from run\n" {
		t.Errorf("run = %q", got)
	}
	got = d.MustBerth(t, "run", "--rm", "--user", "0", "bt:two", "cat /app/a.txt /app/b.txt /docs/one.md /docs/two.md /unpacked/inner/f.txt /app/exec.txt /etc/a.txt; ls /bin/true || echo deleted; ls /app; pwd")
	want := "A\nB\n1\n2\nfrom tar\nexec-form\nA\n"
	if !strings.HasPrefix(got, want) || !strings.Contains(got, "deleted") || strings.Contains(got, "ignored") || !strings.HasSuffix(got, "/app\n") {
		t.Errorf("files = %q", got)
	}
	// A hard link survives the layer; a directory removed and remade is
	// opaque (nothing of the old one shows through).
	got = d.MustBerth(t, "run", "--rm", "--user", "0", "bt:two", "stat -c %h /app/run.txt; ls -R /x")
	if got != "2\n/x:\nonly\n" {
		t.Errorf("hard link / opaque dir: %q", got)
	}
	insp := d.MustBerth(t, "image", "inspect", "--format", "{{.Config.User}}|{{json .Config.Labels}}|{{json .Config.ExposedPorts}}|{{json .Config.Volumes}}|{{.Config.StopSignal}}|{{json .Config.Entrypoint}}|{{json .Config.Cmd}}|{{.Config.WorkingDir}}|{{json .Config.Healthcheck.Test}}", "bt:one")
	for _, w := range []string{"1000:1000|", `"org.test":"yes"`, `"extra":"1"`, `"8080/tcp":{}`, `"/data":{}`, "|SIGINT|", `["/bin/sh","-c"]`, `["cat /app/run.txt"]`, "|/app|", `["CMD-SHELL","true"]`} {
		if !strings.Contains(insp, w) {
			t.Errorf("inspect lacks %q: %s", w, insp)
		}
	}
	if ids := d.MustBerth(t, "history", "-q", "bt:one"); strings.Contains(ids, "missing") {
		t.Errorf("history of a local build lacks the intermediate IDs:\n%s", ids)
	}
	hist := d.MustBerth(t, "history", "--no-trunc", "bt:one")
	if !strings.Contains(hist, "echo \"$GREETING from run\"") && !strings.Contains(hist, "GREETING=hi") {
		t.Errorf("history lacks the RUN:\n%s", hist)
	}
	// A rebuild is fully cached.
	out = d.MustBerth(t, "build", "-t", "bt:one", "--build-arg", "GREETING=hi", "--label", "extra=1", dir)
	if strings.Contains(out, "Running in") || !strings.Contains(out, "Using cache") {
		t.Errorf("rebuild not cached:\n%s", out)
	}
	// The cache survives a daemon restart.
	d.Stop(t)
	d.Start(t)
	out = d.MustBerth(t, "build", "--build-arg", "GREETING=hi", "--label", "extra=1", dir)
	if strings.Contains(out, "Running in") {
		t.Errorf("rebuild after restart not cached:\n%s", out)
	}
	// Changing a copied file rebuilds from that step on.
	if err := os.WriteFile(filepath.Join(dir, "two.md"), []byte("2 changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out = d.MustBerth(t, "build", "--build-arg", "GREETING=hi", dir)
	steps := strings.Split(out, "Step ")
	for _, s := range steps {
		switch {
		case strings.HasPrefix(s, "4/"), strings.HasPrefix(s, "5/"):
			if !strings.Contains(s, "Using cache") {
				t.Errorf("step before the change not cached: %s", s)
			}
		case strings.HasPrefix(s, "6/"):
			if strings.Contains(s, "Using cache") {
				t.Errorf("changed COPY step cached: %s", s)
			}
		case strings.HasPrefix(s, "8/"):
			if !strings.Contains(s, "Running in") {
				t.Errorf("RUN after the change not rerun: %s", s)
			}
		}
	}
	out = d.MustBerth(t, "build", "-q", "--build-arg", "GREETING=hi", dir)
	if !strings.HasPrefix(out, "sha256:") || strings.Count(out, "\n") != 1 {
		t.Errorf("quiet build printed %q", out)
	}
	// --no-cache runs everything.
	out = d.MustBerth(t, "build", "--no-cache", "--build-arg", "GREETING=hi", dir)
	if strings.Contains(out, "Using cache") {
		t.Errorf("--no-cache used the cache:\n%s", out)
	}
	// No build container is left behind.
	if ps := d.MustBerth(t, "ps", "-aq"); ps != "" {
		t.Errorf("containers left: %q", ps)
	}
}

// dockerBuild runs the stock docker CLI's classic builder against d.
func dockerBuild(t *testing.T, d *testutil.Daemon, stdin string, args ...string) testutil.Result {
	t.Helper()
	cmd := d.DockerCmd(append([]string{"build"}, args...)...)
	cmd.Env = append(cmd.Env, "DOCKER_BUILDKIT=0")
	return testutil.Run(t, cmd, stdin)
}

func TestBuildMultiStageDockerCLI(t *testing.T) {
	testutil.RequiresDockerCLI(t)
	d := daemonWithBusybox(t)
	dir := writeContext(t, map[string]string{
		"build.Dockerfile": `FROM busybox AS base
RUN echo base > /base.txt

FROM base AS builder
ARG MSG
RUN echo "built $MSG" > /out.txt && chmod 0600 /out.txt && ln /out.txt /hard.txt

FROM busybox AS unused
RUN exit 3

FROM scratch AS final
COPY --from=builder /out.txt /hard.txt /result/
COPY --from=busybox --chown=1:2 --chmod=0750 /bin/busybox /bin/busybox
CMD ["/bin/busybox", "cat", "/result/out.txt"]

FROM busybox AS other
CMD ["echo", "other"]
`,
	})
	r := dockerBuild(t, d, "", "-t", "ms:latest", "-f", filepath.Join(dir, "build.Dockerfile"), "--target", "final", "--build-arg", "MSG=ok", "--iidfile", filepath.Join(dir, "iid"), dir)
	if r.ExitCode != 0 {
		t.Fatalf("docker build: %s", r)
	}
	if strings.Contains(r.Stdout, "exit 3") || strings.Contains(r.Stdout, "AS other") {
		t.Errorf("built a stage the target does not need:\n%s", r.Stdout)
	}
	if !strings.Contains(r.Stdout, "Successfully tagged ms:latest") {
		t.Errorf("output:\n%s", r.Stdout)
	}
	iid, err := os.ReadFile(filepath.Join(dir, "iid"))
	if err != nil || !strings.HasPrefix(string(iid), "sha256:") {
		t.Errorf("iidfile: %q %v", iid, err)
	}
	if got := d.MustDocker(t, "run", "--rm", "ms"); got != "built ok\n" {
		t.Errorf("run = %q", got)
	}
	got := d.MustDocker(t, "run", "--rm", "ms", "/bin/busybox", "stat", "-c", "%a %u %g %n", "/bin/busybox", "/result/out.txt")
	if got != "750 1 2 /bin/busybox\n600 0 0 /result/out.txt\n" {
		t.Errorf("modes and owners = %q", got)
	}
	// The Dockerfile on stdin, without a context.
	r = dockerBuild(t, d, "FROM busybox\nRUN echo from-stdin\n", "-q", "-")
	if r.ExitCode != 0 || !strings.HasPrefix(r.Stdout, "sha256:") {
		t.Errorf("docker build - : %s", r)
	}
	if ps := d.MustBerth(t, "ps", "-aq"); ps != "" {
		t.Errorf("containers left: %q", ps)
	}
}

func TestBuildErrors(t *testing.T) {
	testutil.RequiresDockerCLI(t)
	d := daemonWithBusybox(t)
	before := d.MustBerth(t, "images", "-aq")
	cases := []struct {
		name, dockerfile string
		want             []string
	}{
		{"syntax", "FROM busybox\nRUN echo ok\nNOTANINSTRUCTION foo\n", []string{"line 3", "unknown instruction"}},
		{"failing run", "FROM busybox\nRUN echo the-output && exit 7\n", []string{"the-output", "returned a non-zero code: 7"}},
		{"missing copy source", "FROM busybox\nCOPY nothere.txt /x\n", []string{"nothere.txt", "line 2"}},
		{"missing stage", "FROM busybox\nCOPY --from=nostage /a /b\n", []string{"nostage"}},
		{"missing image", "FROM 127.0.0.1:1/nothing/here:latest\n", []string{"127.0.0.1:1/nothing/here"}},
		{"add url offline", "FROM busybox\nADD http://127.0.0.1:1/file.tgz /x\n", []string{"http://127.0.0.1:1/file.tgz"}},
		{"empty", "# nothing\n", []string{"cannot be empty"}},
		{"missing target", "FROM busybox AS a\n", []string{"target nope"}},
	}
	for _, c := range cases {
		dir := writeContext(t, map[string]string{"Dockerfile": c.dockerfile})
		args := []string{"build", "-t", "bad:latest"}
		if c.name == "missing target" {
			args = append(args, "--target", "nope")
		}
		r := d.Berth(t, append(args, dir)...)
		if c.name == "failing run" && r.ExitCode != 7 {
			t.Errorf("failing RUN: exit code %d, want the command's 7", r.ExitCode)
		}
		if r.ExitCode == 0 {
			t.Errorf("%s: build succeeded: %s", c.name, r)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(r.Combined(), w) {
				t.Errorf("%s: output lacks %q: %s", c.name, w, r)
			}
		}
		t.Logf("%s: berth: %s", c.name, strings.TrimSpace(r.Combined()))
		dr := dockerBuild(t, d, "", append(args[1:], dir)...)
		if c.name == "failing run" && dr.ExitCode != 7 {
			t.Errorf("failing RUN: docker exit code %d, want the command's 7", dr.ExitCode)
		}
		if dr.ExitCode == 0 {
			t.Errorf("%s: docker build succeeded: %s", c.name, dr)
		}
	}
	if r := d.Berth(t, "image", "inspect", "bad:latest"); r.ExitCode == 0 {
		t.Errorf("a failed build left a tagged image")
	}
	if ps := d.MustBerth(t, "ps", "-aq"); ps != "" {
		t.Errorf("containers left: %q", ps)
	}
	if after := d.MustBerth(t, "images", "-aq"); after != before {
		t.Logf("images after failed builds: %q (before %q)", after, before)
	}
	// The daemon is still healthy.
	d.MustBerth(t, "build", "-q", writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN true\n"}))
}

func TestCommitAndDiff(t *testing.T) {
	testutil.RequiresDockerCLI(t)
	d := daemonWithBusybox(t)
	d.MustBerth(t, "run", "--name", "c1", "busybox", "sh", "-c",
		"mkdir /newdir && echo hi > /newdir/f && rm /bin/true && echo x >> /etc/passwd && chmod 4755 /bin/ls")
	diff := d.MustBerth(t, "diff", "c1")
	for _, want := range []string{"A /newdir\n", "A /newdir/f\n", "D /bin/true\n", "C /etc/passwd\n", "C /bin\n", "C /etc\n"} {
		if !strings.Contains(diff, want) {
			t.Errorf("diff lacks %q:\n%s", want, diff)
		}
	}
	if strings.Contains(diff, "/etc/hosts") || strings.Contains(diff, "resolv.conf") {
		t.Errorf("diff shows the runtime's mount points:\n%s", diff)
	}
	if dd := d.MustDocker(t, "diff", "c1"); dd != diff {
		t.Errorf("docker diff = %q, berth diff = %q", dd, diff)
	}
	id := strings.TrimSpace(d.MustBerth(t, "commit", "-m", "my message", "-a", "me", "-c", "CMD [\"cat\", \"/newdir/f\"]", "-c", "ENV FOO=bar", "c1", "committed:v1"))
	if !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("commit printed %q", id)
	}
	if got := d.MustBerth(t, "run", "--rm", "committed:v1"); got != "hi\n" {
		t.Errorf("run committed image = %q", got)
	}
	got := d.MustBerth(t, "run", "--rm", "committed:v1", "sh", "-c", "ls /bin/true 2>/dev/null || echo gone; echo $FOO; stat -L -c %a /bin/ls")
	if got != "gone\nbar\n4755\n" {
		t.Errorf("committed filesystem = %q", got)
	}
	insp := d.MustBerth(t, "image", "inspect", "--format", "{{.Comment}}|{{.Author}}", "committed:v1")
	if insp != "my message|me\n" {
		t.Errorf("comment/author = %q", insp)
	}
	// docker commit through the API too.
	d.MustDocker(t, "commit", "--change", "LABEL via=docker", "c1", "committed:v2")
	if l := d.MustDocker(t, "image", "inspect", "--format", "{{.Config.Labels.via}}", "committed:v2"); l != "docker\n" {
		t.Errorf("label = %q", l)
	}
	d.MustBerth(t, "rm", "c1")
}

// A client that goes away mid-build stops the running step's container;
// the daemon stays healthy and the cache consistent.
func TestBuildCancel(t *testing.T) {
	d := daemonWithBusybox(t)
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo started && sleep 600\n"})
	cmd := d.Cmd("build", "-t", "cancelled", dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 4096)
	tmp := make([]byte, 512)
	for !strings.Contains(string(buf), "started") {
		n, err := stdout.Read(tmp)
		if err != nil {
			t.Fatalf("build ended early: %v: %s", err, buf)
		}
		buf = append(buf, tmp[:n]...)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	eventually(t, "the build container removed", func() bool {
		r := d.Berth(t, "ps", "-aq")
		return r.ExitCode == 0 && r.Stdout == ""
	})
	if r := d.Berth(t, "image", "inspect", "cancelled"); r.ExitCode == 0 {
		t.Error("a cancelled build tagged its image")
	}
	out := d.MustBerth(t, "build", "-q", writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo ok\n"}))
	if !strings.HasPrefix(out, "sha256:") {
		t.Errorf("build after a cancelled one: %q", out)
	}
}

func TestBuildInstructionSemantics(t *testing.T) {
	d := daemonWithBusybox(t)
	// ONBUILD triggers run in the child; SHELL changes RUN's shell; a name
	// in --chown comes from the image's passwd; ENTRYPOINT drops an
	// inherited CMD but keeps one given later in the same stage.
	parent := writeContext(t, map[string]string{
		"Dockerfile": `FROM busybox
RUN echo 'app:x:1234:4321::/:/bin/sh' >> /etc/passwd && echo 'app:x:4321:' >> /etc/group
ONBUILD COPY trigger.txt /trigger.txt
CMD ["echo", "parent-cmd"]
`,
	})
	d.MustBerth(t, "build", "-q", "-t", "parent", parent)
	child := writeContext(t, map[string]string{
		"Dockerfile": `# escape=` + "`" + `
FROM parent
SHELL ["/bin/sh", "-e", "-c"]
ARG UNDECLARED_USED=x
COPY --chown=app:app owned.txt /owned.txt
COPY keep/ /keep/
RUN test "$(stat -c %u:%g /owned.txt)" = "1234:4321" ` + "`" + `
    && echo continued > /cont.txt
ENTRYPOINT ["/bin/cat"]
`,
		"trigger.txt":   "triggered\n",
		"owned.txt":     "mine\n",
		"keep/a.txt":    "a\n",
		"keep/b.log":    "b\n",
		".dockerignore": "keep/*\n!keep/a.txt\n",
	})
	out := d.MustBerth(t, "build", "-t", "child", "--build-arg", "NOT_DECLARED=1", child)
	if !strings.Contains(out, "[Warning] One or more build-args [NOT_DECLARED] were not consumed") {
		t.Errorf("no warning for an unused build arg:\n%s", out)
	}
	if got := d.MustBerth(t, "run", "--rm", "child", "/trigger.txt", "/cont.txt"); got != "triggered\ncontinued\n" {
		t.Errorf("run child = %q", got)
	}
	if got := d.MustBerth(t, "run", "--rm", "--entrypoint", "ls", "child", "/keep"); got != "a.txt\n" {
		t.Errorf(".dockerignore exception: /keep has %q", got)
	}
	insp := d.MustBerth(t, "image", "inspect", "--format", "{{json .Config.Cmd}}|{{json .Config.OnBuild}}|{{json .Config.Shell}}", "child")
	if insp != "null|null|[\"/bin/sh\",\"-e\",\"-c\"]\n" {
		t.Errorf("child config = %q", insp)
	}
	// FROM scratch with only a COPY, and a stage that ends with metadata.
	scratch := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY f /f\nLABEL a=b\n", "f": "x"})
	id := strings.TrimSpace(d.MustBerth(t, "build", "-q", scratch))
	if layers := d.MustBerth(t, "image", "inspect", "--format", "{{len .RootFS.Layers}}", id); layers != "1\n" {
		t.Errorf("scratch image layers = %q", layers)
	}
	// rmi takes the untagged intermediate images with it, as docker's.
	busybox := d.MustBerth(t, "images", "-aq", "busybox")
	out = d.MustBerth(t, "rmi", "child", "parent", id)
	if strings.Count(out, "Deleted: ") < 4 {
		t.Errorf("rmi deleted too little:\n%s", out)
	}
	if left := d.MustBerth(t, "images", "-aq"); left != busybox {
		t.Errorf("images left after rmi: %q (want only busybox %q)", left, busybox)
	}
}

// Independent stages build concurrently; the output still reads step by
// step in Dockerfile order, and a failure in one stage stops the others.
func TestBuildParallelStages(t *testing.T) {
	d := daemonWithBusybox(t)
	dir := writeContext(t, map[string]string{"Dockerfile": `FROM busybox AS one
RUN echo one-out && echo 1 > /one
FROM busybox AS two
RUN echo two-out && echo 2 > /two
FROM busybox AS three
RUN echo three-out && echo 3 > /three
FROM busybox
COPY --from=one /one /r/
COPY --from=two /two /r/
COPY --from=three /three /r/
CMD ["cat", "/r/one", "/r/two", "/r/three"]
`})
	out := d.MustBerth(t, "build", "-t", "par", dir)
	last := -1
	for n := 1; n <= 11; n++ {
		i := strings.Index(out, fmt.Sprintf("Step %d/11 :", n))
		if i < last {
			t.Fatalf("step %d out of order:\n%s", n, out)
		}
		last = i
	}
	if i1, i2 := strings.Index(out, "one-out"), strings.Index(out, "Step 3/11"); i1 < 0 || i1 > i2 {
		t.Errorf("stage one's RUN output is not with its step:\n%s", out)
	}
	if got := d.MustBerth(t, "run", "--rm", "par"); got != "1\n2\n3\n" {
		t.Errorf("run = %q", got)
	}
	// One stage fails while another runs: the failure and its output are shown.
	bad := writeContext(t, map[string]string{"Dockerfile": `FROM busybox AS slow
RUN sleep 30
FROM busybox AS failing
RUN echo failing-output && exit 5
FROM busybox
COPY --from=slow /bin/sh /a
COPY --from=failing /bin/sh /b
`})
	r := d.Berth(t, "build", bad)
	if r.ExitCode != 5 || !strings.Contains(r.Combined(), "failing-output") || !strings.Contains(r.Combined(), "returned a non-zero code: 5") {
		t.Errorf("failing stage: %s", r)
	}
	eventually(t, "build containers removed", func() bool {
		r := d.Berth(t, "ps", "-aq")
		return r.ExitCode == 0 && r.Stdout == ""
	})
}
