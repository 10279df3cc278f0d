// Package integration runs berth end to end as a user would: a real daemon
// on a temporary data-root and socket, driven by the berth CLI and by the
// stock docker CLI, against the real kernel (namespaces, overlayfs,
// cgroups). It needs root; without it every test skips with a message.
package integration

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/testutil"
)

// binDir holds the berth binaries under test.
var binDir string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("integration: skipping, these tests need root (real namespaces, mounts, cgroups)")
		os.Exit(0)
	}
	tmp, err := os.MkdirTemp("", "berth-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir, err = testutil.BuildBinaries(tmp)
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: build:", err)
		os.RemoveAll(tmp)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// daemonWithBusybox starts a daemon and imports busybox:latest into it.
func daemonWithBusybox(t *testing.T, extraArgs ...string) *testutil.Daemon {
	t.Helper()
	testutil.RequiresBusybox(t)
	d := testutil.StartDaemon(t, binDir, extraArgs...)
	d.ImportBusybox(t, "busybox:latest")
	return d
}

// eventually polls cond until it holds or a generous deadline passes; it is
// for state that settles asynchronously, not a timing assertion.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func inspectField(t *testing.T, d *testutil.Daemon, id, format string) string {
	t.Helper()
	return strings.TrimSpace(d.MustBerth(t, "inspect", "-f", format, id))
}
