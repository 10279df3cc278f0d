package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/testutil"
)

// The README's quick start (scripts/quickstart.sh), against a daemon that
// already answers (so it starts none): it imports busybox without any
// network, runs the hello container, and leaves no temporary rootfs behind
// (it ends in an exec, which no EXIT trap survives).
func TestQuickstartScript(t *testing.T) {
	d := testutil.StartDaemon(t, binDir)
	tmp := t.TempDir()
	quickstart := func() ([]byte, error) {
		cmd := exec.Command("sh", filepath.Join("..", "scripts", "quickstart.sh"))
		cmd.Env = append(os.Environ(), "BERTH_HOST="+d.Host, "BIN="+binDir, "TMPDIR="+tmp)
		return cmd.CombinedOutput()
	}
	out, err := quickstart()
	if err != nil {
		t.Fatalf("quickstart: %v\n%s", err, out)
	}
	for _, want := range []string{"importing a busybox rootfs as busybox:latest", "Hello from a berth container!"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("quickstart output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "starting berth daemon") {
		t.Errorf("quickstart started a daemon although one answered:\n%s", out)
	}
	left, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		t.Errorf("quickstart left %s behind in TMPDIR", e.Name())
	}
	if got := d.MustBerth(t, "image", "inspect", "--format", "{{json .Config.Cmd}}", "busybox:latest"); strings.TrimSpace(got) != `["sh"]` {
		t.Errorf("imported busybox CMD = %s, want [\"sh\"]", got)
	}
	// A second run reuses the image and still says hello.
	out, err = quickstart()
	if err != nil || strings.Contains(string(out), "importing") || !strings.Contains(string(out), "Hello from a berth container!") {
		t.Errorf("second quickstart: %v\n%s", err, out)
	}
}
