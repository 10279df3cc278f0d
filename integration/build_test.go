package integration

import (
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
RUN echo "$GREETING from run" > /app/run.txt && rm -f /bin/true && mkdir -p /x/y && echo z > /x/y/z
RUN ["/bin/sh", "-c", "echo exec-form > /app/exec.txt"]
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
	got = d.MustBerth(t, "run", "--rm", "--user", "0", "bt:two", "cat /app/a.txt /app/b.txt /docs/one.md /docs/two.md /unpacked/inner/f.txt /app/exec.txt /x/y/z; ls /bin/true || echo deleted; ls /app; pwd")
	want := "A\nB\n1\n2\nfrom tar\nexec-form\nz\n"
	if !strings.HasPrefix(got, want) || !strings.Contains(got, "deleted") || strings.Contains(got, "ignored") || !strings.HasSuffix(got, "/app\n") {
		t.Errorf("files = %q", got)
	}
	insp := d.MustBerth(t, "image", "inspect", "--format", "{{.Config.User}}|{{json .Config.Labels}}|{{json .Config.ExposedPorts}}|{{json .Config.Volumes}}|{{.Config.StopSignal}}|{{json .Config.Entrypoint}}|{{json .Config.Cmd}}|{{.Config.WorkingDir}}|{{json .Config.Healthcheck.Test}}", "bt:one")
	for _, w := range []string{"1000:1000|", `"org.test":"yes"`, `"extra":"1"`, `"8080/tcp":{}`, `"/data":{}`, "|SIGINT|", `["/bin/sh","-c"]`, `["cat /app/run.txt"]`, "|/app|", `["CMD-SHELL","true"]`} {
		if !strings.Contains(insp, w) {
			t.Errorf("inspect lacks %q: %s", w, insp)
		}
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
	// Changing a copied file rebuilds from that step on.
	if err := os.WriteFile(filepath.Join(dir, "two.md"), []byte("2 changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out = d.MustBerth(t, "build", "-q", "--build-arg", "GREETING=hi", dir)
	if !strings.HasPrefix(out, "sha256:") || strings.Count(out, "\n") != 1 {
		t.Errorf("quiet build printed %q", out)
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
