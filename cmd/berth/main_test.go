package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/daemon"
	"github.com/berth-engine/berth/internal/registry"
	"github.com/berth-engine/berth/internal/testutil"
	"github.com/spf13/cobra"
)

// The delegated commands show berth-daemon's own texts in `berth --help`.
func TestDelegatedTexts(t *testing.T) {
	real := map[string]string{}
	for _, c := range []*cobra.Command{daemon.NewCommand(), registry.NewCommand()} {
		real[c.Use] = c.Short
	}
	for _, d := range delegated {
		if real[d.use] != d.short {
			t.Errorf("%q: berth shows %q, berth-daemon has %q", d.use, d.short, real[d.use])
		}
	}
}

// `berth daemon` and `berth registry` run berth-daemon's commands with
// their arguments untouched; without berth-daemon, berth says where it
// looked.
func TestDelegation(t *testing.T) {
	bin, err := testutil.BuildBinaries(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	berth := filepath.Join(bin, "berth")
	out, err := exec.Command(berth, "daemon", "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--data-root") {
		t.Errorf("berth daemon --help: %v\n%s", err, out)
	}
	out, err = exec.Command(berth, "registry", "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "serve") {
		t.Errorf("berth registry --help: %v\n%s", err, out)
	}
	out, err = exec.Command(berth, "help", "daemon").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--data-root") {
		t.Errorf("berth help daemon: %v\n%s", err, out)
	}
	// The flag reaches the daemon, which refuses it (not the CLI).
	out, err = exec.Command(berth, "daemon", "--no-such-flag").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no-such-flag") {
		t.Errorf("berth daemon --no-such-flag: %v\n%s", err, out)
	}

	alone := t.TempDir()
	b, err := os.ReadFile(berth)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(alone, "berth"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	// A berth-daemon next to berth that cannot be executed is passed over.
	if err := os.WriteFile(filepath.Join(alone, "berth-daemon"), []byte("not a program"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(alone, "berth"), "daemon")
	cmd.Env = append(os.Environ(), "PATH="+alone)
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "berth-daemon not found") {
		t.Errorf("berth daemon without berth-daemon: %v\n%s", err, out)
	}
}
