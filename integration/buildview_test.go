package integration

import (
	"strings"
	"testing"
)

// TestBuildTTYView builds on a terminal: the compact live view by default,
// docker's plain lines with --progress plain, and the failing step's whole
// output when a RUN fails.
func TestBuildTTYView(t *testing.T) {
	d := daemonWithBusybox(t)
	dir := writeContext(t, map[string]string{
		"Dockerfile": "FROM busybox\nRUN seq 1 20\nRUN echo done > /d\n",
	})
	cmd := d.Cmd("build", "-t", "ttyview", dir)
	s := startTTY(t, cmd, 30, 100)
	s.expect("Successfully tagged ttyview:latest")
	if code := s.wait(); code != 0 {
		t.Fatalf("build on a TTY: exit %d\n%s", code, s.seen.String())
	}
	seen := s.seen.String()
	for _, want := range []string{"[+] Building", " => [2/3] RUN seq 1 20", " => [3/3] RUN echo done > /d", "[+] Built", "Successfully built "} {
		if !strings.Contains(seen, want) {
			t.Errorf("live view lacks %q:\n%q", want, seen)
		}
	}
	if strings.Contains(seen, "Step 2/3 : ") || strings.Contains(seen, "Running in ") {
		t.Errorf("live view shows the plain builder lines:\n%q", seen)
	}

	// A cached rebuild marks the steps as such.
	s = startTTY(t, d.Cmd("build", "-t", "ttyview", dir), 30, 100)
	s.expect("Successfully tagged ttyview:latest")
	s.wait()
	if !strings.Contains(s.seen.String(), " => CACHED [2/3] RUN seq 1 20") {
		t.Errorf("cached rebuild not marked:\n%q", s.seen.String())
	}

	s = startTTY(t, d.Cmd("build", "--progress", "plain", "-t", "ttyview", dir), 30, 100)
	s.expect("Successfully tagged ttyview:latest")
	s.wait()
	if !strings.Contains(s.seen.String(), "Step 2/3 : RUN seq 1 20") {
		t.Errorf("--progress plain on a TTY is not plain:\n%q", s.seen.String())
	}

	fail := writeContext(t, map[string]string{
		"Dockerfile": "FROM busybox\nRUN seq 101 112; exit 3\n",
	})
	s = startTTY(t, d.Cmd("build", fail), 30, 100)
	s.expect("returned a non-zero code: 3")
	if code := s.wait(); code == 0 {
		t.Fatalf("failing build exited 0:\n%q", s.seen.String())
	}
	seen = s.seen.String()
	full := seen[max(strings.LastIndex(seen, "------\r\n >"), 0):]
	for _, want := range []string{"101\r\n", "112\r\n", "returned a non-zero code: 3"} {
		if !strings.Contains(full, want) {
			t.Errorf("failing build output lacks %q:\n%q", want, seen)
		}
	}

	// --progress tty insists on a terminal.
	r := d.Berth(t, "build", "--progress", "tty", dir)
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "not a terminal") {
		t.Errorf("--progress tty without a terminal: %+v", r)
	}
}
