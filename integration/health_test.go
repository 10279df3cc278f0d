package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/shim"
)

// The shim runs the health check: it goes on probing while the daemon is
// down, a restarted daemon shows the status the shim reached meanwhile,
// and later changes reach the new daemon (ps, inspect, events, also
// through the stock docker CLI).
func TestHealthcheckAcrossDaemonRestart(t *testing.T) {
	d := daemonWithBusybox(t)
	id := strings.TrimSpace(d.MustBerth(t, "run", "-d", "--name", "hcr", "--health-cmd", "cat /tmp/ok", "--health-interval", "100ms", "--health-retries", "1", "busybox", "sleep", "1000"))
	eventually(t, "unhealthy", func() bool { return inspectField(t, d, id, "{{.State.Health.Status}}") == "unhealthy" })

	d.Kill9(t)
	// The check starts passing while nobody but the shim watches: the
	// file appears in the container's root filesystem from the host.
	rootfs := filepath.Join(d.ExecRoot, "containers", id, "rootfs")
	if err := os.WriteFile(filepath.Join(rootfs, "tmp", "ok"), []byte("fine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	client := shim.Dial(filepath.Join(d.ExecRoot, "shims", id[:20]+".sock"))
	eventually(t, "the shim sees the check pass with the daemon down", func() bool {
		st, err := client.Health(context.Background())
		return err == nil && st.Status == shim.HealthHealthy && st.Log[len(st.Log)-1].Output == "fine\n"
	})
	restarted := time.Now()
	d.Start(t)
	if got := inspectField(t, d, id, "{{.State.Health.Status}} {{.State.Health.FailingStreak}}"); got != "healthy 0" {
		t.Fatalf("health after the daemon restart: %q", got)
	}
	// Results from while the daemon was down are in the log.
	starts := inspectField(t, d, id, `{{range .State.Health.Log}}{{.Start.Format "2006-01-02T15:04:05.999999999Z07:00"}} {{end}}`)
	first, err := time.Parse(time.RFC3339Nano, strings.Fields(starts)[0])
	if err != nil || !first.Before(restarted) {
		t.Fatalf("health log after restart: %q (%v)", starts, err)
	}
	if st := d.MustBerth(t, "ps", "--format", "{{.Status}}", "-f", "name=hcr"); !strings.HasSuffix(st, "(healthy)\n") {
		t.Fatalf("ps after restart: %q", st)
	}

	// A change after the restart reaches the new daemon.
	since := eventTime(time.Now())
	if err := os.Remove(filepath.Join(rootfs, "tmp", "ok")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "unhealthy after the restart", func() bool {
		return strings.HasSuffix(d.MustBerth(t, "ps", "--format", "{{.Status}}", "-f", "name=hcr"), "(unhealthy)\n")
	})
	until := eventTime(time.Now().Add(time.Second))
	if ev := d.MustDocker(t, "events", "--since", since, "--until", until, "--filter", "container=hcr", "--filter", "event=health_status", "--format", "{{.Action}}"); ev != "health_status: unhealthy\n" {
		t.Fatalf("health events after the restart: %q", ev)
	}
	out := strings.TrimSpace(d.MustDocker(t, "inspect", "-f", "{{.State.Health.Status}} {{(index .State.Health.Log 0).ExitCode}}", id))
	if out != "unhealthy 0" && out != "unhealthy 1" {
		t.Fatalf("docker inspect: %q", out)
	}

	// After the exit the last results stay for inspect.
	d.MustBerth(t, "kill", id)
	d.MustBerth(t, "wait", id)
	if got := inspectField(t, d, id, "{{.State.Health.Status}} {{len .State.Health.Log}} {{(index .State.Health.Log 0).ExitCode}}"); got != "unhealthy 5 1" {
		t.Fatalf("health of the exited container: %q", got)
	}
}

// eventTime is t as events --since/--until take it, to the nanosecond.
func eventTime(t time.Time) string {
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
}
