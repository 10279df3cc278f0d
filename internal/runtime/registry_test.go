package runtime

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// fakeBin writes an executable file named name into dir.
func fakeBin(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRegistryDefaults(t *testing.T) {
	bin := t.TempDir()
	runc := fakeBin(t, bin, "runc")
	t.Setenv("PATH", bin)
	r := NewRegistry(RegistryOptions{ExecRoot: "/run/berth", BerthRuntime: "/opt/berth/berth-runtime"})

	if r.Default() != "berth" {
		t.Errorf("default %q", r.Default())
	}
	if got := r.Names(); !slices.Equal(got, []string{"berth", "runc"}) {
		t.Errorf("names %q (crun is not on PATH)", got)
	}
	def, err := r.Get("")
	if err != nil {
		t.Fatal(err)
	}
	want := Runtime{Name: "berth", Path: "/opt/berth/berth-runtime", Args: []string{"--root", "/run/berth/runtime/berth"}}
	if def.Name != want.Name || def.Path != want.Path || !slices.Equal(def.Args, want.Args) {
		t.Errorf("default runtime %+v, want %+v", def, want)
	}
	rc, err := r.Get("runc")
	if err != nil || rc.Path != runc || !slices.Equal(rc.Args, []string{"--root", "/run/berth/runtime/runc"}) {
		t.Errorf("runc %+v, %v", rc, err)
	}
	argv := rc.Argv("state", "abc")
	if !slices.Equal(argv, []string{runc, "--root", "/run/berth/runtime/runc", "state", "abc"}) {
		t.Errorf("argv %q", argv)
	}
	// Callers get copies.
	rc.Args[0] = "changed"
	if again, _ := r.Get("runc"); again.Args[0] != "--root" {
		t.Error("Get returned the registry's own slice")
	}
}

func TestRegistryUnknown(t *testing.T) {
	r := NewRegistry(RegistryOptions{ExecRoot: "/x", BerthRuntime: "/b", NoDiscover: true})
	_, err := r.Get("kata")
	if !errdefs.IsInvalidArgument(err) || err.Error() != "unknown or invalid runtime name: kata" {
		t.Errorf("Get(kata) = %v", err)
	}
	if err := r.SetDefault("kata"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("SetDefault(kata) = %v", err)
	}
	if got := r.Names(); !slices.Equal(got, []string{"berth"}) {
		t.Errorf("names %q", got)
	}
}

func TestRegistryAdd(t *testing.T) {
	bin := t.TempDir()
	custom := fakeBin(t, bin, "my-runtime")
	t.Setenv("PATH", bin)
	r := NewRegistry(RegistryOptions{ExecRoot: "/run/b", BerthRuntime: "/b", NoDiscover: true})

	if err := r.Add("custom", custom, "--debug"); err != nil {
		t.Fatal(err)
	}
	rt, _ := r.Get("custom")
	if rt.Path != custom || !slices.Equal(rt.Args, []string{"--root", "/run/b/runtime/custom", "--debug"}) {
		t.Errorf("custom %+v", rt)
	}
	// A bare name is found on PATH; an explicit --root is kept.
	if err := r.Add("other", "my-runtime", "--root=/elsewhere"); err != nil {
		t.Fatal(err)
	}
	rt, _ = r.Get("other")
	if rt.Path != custom || !slices.Equal(rt.Args, []string{"--root=/elsewhere"}) {
		t.Errorf("other %+v", rt)
	}
	if err := r.SetDefault("other"); err != nil || r.Default() != "other" {
		t.Errorf("SetDefault: %v, default %q", err, r.Default())
	}
	if rt, _ := r.Get(""); rt.Name != "other" {
		t.Errorf("Get(\"\") after SetDefault = %+v", rt)
	}
	for _, tc := range []struct{ name, path, msg string }{
		{"berth", custom, "reserved"},
		{"", custom, "invalid runtime name"},
		{"-x", custom, "invalid runtime name"},
		{"a b", custom, "invalid runtime name"},
		{"ok", "", "empty path"},
		{"ok", "not-on-path", "not-on-path"},
	} {
		if err := r.Add(tc.name, tc.path); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Add(%q, %q) = %v, want %q", tc.name, tc.path, err, tc.msg)
		}
	}
	if got := r.Names(); !slices.Equal(got, []string{"berth", "custom", "other"}) {
		t.Errorf("names %q", got)
	}
}

func TestRegistryFindsBerthRuntimeNextToExecutable(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary has no berth-runtime next to it; PATH has one.
	if _, err := os.Stat(filepath.Join(filepath.Dir(exe), BinaryName)); err == nil {
		t.Skip("a berth-runtime sits next to the test binary")
	}
	bin := t.TempDir()
	p := fakeBin(t, bin, BinaryName)
	t.Setenv("PATH", bin)
	r := NewRegistry(RegistryOptions{NoDiscover: true})
	rt, _ := r.Get("berth")
	if rt.Path != p || len(rt.Args) != 0 {
		t.Errorf("berth runtime %+v, want %s without --root (no exec root)", rt, p)
	}
	t.Setenv("PATH", t.TempDir())
	r = NewRegistry(RegistryOptions{NoDiscover: true})
	if rt, _ := r.Get("berth"); rt.Path != BinaryName {
		t.Errorf("berth runtime not found: %+v, want the bare name", rt)
	}
}

func TestStateDir(t *testing.T) {
	r := NewRegistry(RegistryOptions{ExecRoot: "/run/berth", BerthRuntime: "/opt/berth/berth-runtime", NoDiscover: true})
	def, _ := r.Get("")
	if got := def.StateDir("abc"); got != "/run/berth/runtime/berth/abc" {
		t.Errorf("berth's runtime: %q", got)
	}
	if err := r.Add("other", "/bin/sh"); err != nil {
		t.Fatal(err)
	}
	other, _ := r.Get("other")
	if got := other.StateDir("abc"); got != "" {
		t.Errorf("another runtime's state directory is not berth's to know: %q", got)
	}
	if got := (Runtime{Name: DefaultName, Args: []string{"--root=/r"}}).StateDir("abc"); got != "/r/abc" {
		t.Errorf("--root=: %q", got)
	}
	if got := (Runtime{Name: DefaultName}).StateDir("abc"); got != "" {
		t.Errorf("no root: %q", got)
	}
}

// Runtime commands run with one P, whatever the daemon's GOMAXPROCS.
func TestCommandEnv(t *testing.T) {
	t.Setenv("GOMAXPROCS", "7")
	rt := Runtime{Name: "x", Path: "/bin/x", Args: []string{"--root", "/r"}}
	cmd := rt.Command(t.Context(), "kill", "id", "KILL")
	if got := strings.Join(cmd.Args, " "); got != "/bin/x --root /r kill id KILL" {
		t.Errorf("args %q", got)
	}
	var set []string
	for _, kv := range cmd.Env {
		if strings.HasPrefix(kv, "GOMAXPROCS=") {
			set = append(set, kv)
		}
	}
	if len(set) != 1 || set[0] != "GOMAXPROCS=1" {
		t.Errorf("GOMAXPROCS in the runtime's environment: %q, want only GOMAXPROCS=1", set)
	}
}
