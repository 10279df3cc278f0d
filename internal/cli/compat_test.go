package cli

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// dockerCLI is the stock docker client the output is compared with.
func dockerCLI(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("docker"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/local/bin/docker"); err == nil {
		return "/usr/local/bin/docker"
	}
	t.Skip("requires the docker CLI (/usr/local/bin/docker) to compare outputs with")
	return ""
}

// sortRows sorts the lines of a table after its header.
func sortRows(s string) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) > 1 {
		start := 0
		if strings.HasPrefix(lines[0], "REPOSITORY") {
			start = 1
		}
		sort.Strings(lines[start:])
	}
	return strings.Join(lines, "\n") + "\n"
}

var dockerWord = regexp.MustCompile(`\bdocker\b`)

// runDocker runs the stock docker CLI against host.
func runDocker(t *testing.T, bin, host, stdin string, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"DOCKER_HOST=" + host, "DOCKER_CONFIG=" + t.TempDir(), "DOCKER_CLI_HINTS=false", "HOME=" + t.TempDir(), "PATH=/usr/bin:/bin"}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, &errb, strings.NewReader(stdin)
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("docker %v: %v", args, err)
	}
	// Same messages, other program name.
	r.stdout = dockerWord.ReplaceAllString(r.stdout, "berth")
	r.stderr = dockerWord.ReplaceAllString(r.stderr, "berth")
	return r
}

// TestOutputMatchesDockerCLI runs the same commands through the stock
// docker CLI and through berth against the same fake daemon and expects
// the same stdout, stderr and exit code: the formats are docker's.
func TestOutputMatchesDockerCLI(t *testing.T) {
	bin := dockerCLI(t)
	f := newFakeEngine(t)
	fixtureEngine(f)
	cmds := [][]string{
		{"ps"},
		{"ps", "-a"},
		{"ps", "-a", "--no-trunc"},
		{"ps", "-q"},
		{"ps", "-aq", "--no-trunc"},
		{"ps", "-a", "-s"},
		{"ps", "-l"},
		{"ps", "-a", "--format", "{{.Names}} {{.Status}} {{.State}}"},
		{"ps", "-a", "--format", "json"},
		{"ps", "-a", "--format", "table {{.ID}}\t{{.Status}}\t{{.Label \"role\"}}"},
		{"ps", "-a", "--format", "{{.Labels}}|{{.Ports}}|{{.Command}}|{{.Image}}|{{.RunningFor}}"},
		{"ps", "-a", "--format", "{{.Size}}"},
		{"ps", "-a", "--format", "{{json .Names}} {{upper .State}} {{join (split .Names \"n\") \"-\"}} {{truncate .ID 4}} {{pad .State 1 1}}|"},
		{"ps", "extra"},
		{"ps", "--bogus"},
		{"images"},
		{"images", "-a"},
		{"images", "-q"},
		{"images", "--digests"},
		{"images", "--no-trunc"},
		{"images", "--format", "json"},
		{"images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}"},
		{"images", "--format", "table {{.Repository}}\t{{.Digest}}"},
		// Not compared: "images a b", where docker prints "SRun" (a typo).
		{"history", "busybox"},
		{"history", "--no-trunc", "busybox"},
		{"history", "-q", "busybox"},
		{"history", "--format", "{{.ID}}|{{.CreatedBy}}|{{.Size}}|{{.Comment}}", "busybox"},
		{"history", "nosuchimage"},
		{"inspect", "runner"},
		{"inspect", "busybox"},
		{"inspect", "-f", "{{.State.Status}} {{.Name}} {{index .Config.Labels \"role\"}}", "runner"},
		{"inspect", "-f", "{{json .Config.Cmd}}", "runner", "busybox"},
		{"inspect", "--format", "json", "runner"},
		{"inspect", "nosuchthing"},
		{"inspect", "runner", "nosuchthing"},
		{"inspect", "--type", "image", "runner"},
		{"container", "inspect", "nosuch"},
		{"image", "inspect", "-f", "{{.Id}} {{index .Config.Labels \"a\"}} {{.Comment}} {{.Os}}", "busybox"},
		{"image", "inspect", "nosuch"},
		{"rm", "a", "nosuch", "b"},
		{"rm", "busybox1"},
		{"rm", "-f", "nosuch", "a"},
		{"rm"},
		{"stop", "a", "nosuch"},
		{"stop", "-t", "1", "a"},
		{"kill", "-s", "TERM", "a", "b"},
		{"restart", "a"},
		{"wait", "a", "nosuch"},
		{"rename", "a", "taken"},
		{"rename", "a"},
		{"rmi", "other:1"},
		{"rmi", "busybox", "nosuch"},
		{"rmi", "multi"},
		{"rmi", "-f", "nosuch"},
		{"tag", "nosuchimage", "x"},
		{"logs", "runner"},
		{"logs"},
		{"container", "prune", "-f"},
		{"image", "prune", "-f"},
		{"image", "prune", "-a", "-f"},
		{"info", "--format", "{{.Driver}} {{.DockerRootDir}} {{.CgroupDriver}} {{.OSType}} {{.DefaultRuntime}} {{range $k, $v := .Runtimes}}{{$k}},{{end}}"},
		{"version", "--format", "{{.Server.Version}} {{.Server.APIVersion}} {{.Server.Os}}"},
		{"load", "-i", "/nonexistent/file.tar"},
		{"container", "bogus"},
		{"image", "bogus"},
		{"bogus"},
	}
	for _, args := range cmds {
		want := runDocker(t, bin, f.host, "", args...)
		got := f.run("", args...)
		if args[0] == "images" {
			// docker orders one image's tags by Go map iteration (at
			// random); berth sorts them. Compare the rows as sets.
			want.stdout, got.stdout = sortRows(want.stdout), sortRows(got.stdout)
		}
		if got != want {
			t.Errorf("berth %s\n--- berth:\n%s\n--- docker:\n%s", strings.Join(args, " "), got, want)
		}
	}
	// Interactive prune: answering "n" changes nothing, "y" prunes.
	for _, answer := range []string{"n\n", "y\n", ""} {
		want := runDocker(t, bin, f.host, answer, "container", "prune")
		got := f.run(answer, "container", "prune")
		if got != want {
			t.Errorf("container prune with %q\n--- berth:\n%s\n--- docker:\n%s", answer, got, want)
		}
	}
}
