package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/testutil"
)

// system df counts images, containers and volumes; system prune removes
// stopped containers and, with --volumes, unused anonymous volumes, never
// named ones or those in use.
func TestSystemDfPrune(t *testing.T) {
	d := daemonWithBusybox(t)
	d.MustBerth(t, "volume", "create", "keep")
	d.MustBerth(t, "run", "-v", "keep:/k", "busybox", "sh", "-c", "dd if=/dev/zero of=/k/f bs=1k count=64 2>/dev/null")
	stopped := strings.TrimSpace(d.MustBerth(t, "create", "-v", "/anon", "busybox", "true"))
	anon := inspectField(t, d, stopped, "{{range .Mounts}}{{.Name}}{{end}}")
	running := strings.TrimSpace(d.MustBerth(t, "run", "-d", "-v", "/inuse", "busybox", "sleep", "1000"))
	inuse := inspectField(t, d, running, "{{range .Mounts}}{{.Name}}{{end}}")

	df := d.MustBerth(t, "system", "df")
	for _, want := range []string{"TYPE", "Images          1", "Containers      3         1", "Local Volumes   3         3", "Build Cache"} {
		if !strings.Contains(df, want) {
			t.Errorf("system df lacks %q:\n%s", want, df)
		}
	}
	dfv := d.MustBerth(t, "system", "df", "-v")
	if !strings.Contains(dfv, "Local Volumes space usage:") || !strings.Contains(dfv, "keep") {
		t.Errorf("system df -v:\n%s", dfv)
	}
	out := d.MustBerth(t, "system", "prune", "-f", "--volumes")
	if !strings.Contains(out, "Deleted Containers:") || !strings.Contains(out, stopped) || !strings.Contains(out, "Total reclaimed space") {
		t.Errorf("system prune:\n%s", out)
	}
	// The stopped container's anonymous volume was freed by its removal
	// only if prune ran after it: run it again to collect it.
	d.MustBerth(t, "system", "prune", "-f", "--volumes")
	vols := d.MustBerth(t, "volume", "ls", "-q")
	if !strings.Contains(vols, "keep") || !strings.Contains(vols, inuse) || strings.Contains(vols, anon) {
		t.Errorf("volumes after prune: %q", vols)
	}
	if _, err := os.Stat(filepath.Join(d.DataRoot, "volumes", "keep", "_data", "f")); err != nil {
		t.Errorf("named volume data: %v", err)
	}
	d.MustBerth(t, "rm", "-f", running)
}

// The docker CLI reads berth's /system/df.
func TestSystemDfDockerCLI(t *testing.T) {
	testutil.RequiresDockerCLI(t)
	d := daemonWithBusybox(t)
	d.MustDocker(t, "volume", "create", "dv")
	df := d.MustDocker(t, "system", "df")
	if !strings.Contains(df, "Local Volumes   1") || !strings.Contains(df, "Images          1") {
		t.Errorf("docker system df:\n%s", df)
	}
	if dfv := d.MustDocker(t, "system", "df", "-v"); !strings.Contains(dfv, "dv") {
		t.Errorf("docker system df -v:\n%s", dfv)
	}
}

// The docker CLI's system prune (which also prunes networks and the build
// cache) completes against berth and removes what berth's does.
func TestSystemPruneDockerCLI(t *testing.T) {
	testutil.RequiresDockerCLI(t)
	d := daemonWithBusybox(t)
	stopped := strings.TrimSpace(d.MustBerth(t, "create", "busybox", "true"))
	running := strings.TrimSpace(d.MustBerth(t, "run", "-d", "busybox", "sleep", "1000"))
	out := d.MustDocker(t, "system", "prune", "-f")
	if !strings.Contains(out, stopped) || !strings.Contains(out, "Total reclaimed space") {
		t.Errorf("docker system prune:\n%s", out)
	}
	if ids := d.MustBerth(t, "ps", "-aq", "--no-trunc"); strings.TrimSpace(ids) != running {
		t.Errorf("after docker system prune: %q, want only the running container", ids)
	}
	d.MustBerth(t, "rm", "-f", running)
}
