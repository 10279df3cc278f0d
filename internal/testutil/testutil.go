// Package testutil is the shared harness of berth's integration tests: a
// real daemon on a temporary data-root, exec-root and socket, the berth and
// docker CLIs pointed at it, and busybox test images built offline.
package testutil

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// RequiresRoot skips a test that needs root (namespaces, mounts, cgroups).
func RequiresRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root: this test uses real namespaces, mounts and cgroups")
	}
}

// BusyboxPath is the static busybox the test images are made of (Debian's
// busybox-static package).
const BusyboxPath = "/bin/busybox"

// RequiresBusybox skips a test when the static busybox is missing.
func RequiresBusybox(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(BusyboxPath); err != nil {
		t.Skip("requires " + BusyboxPath + " (apt-get install busybox-static)")
	}
}

var (
	appletsOnce sync.Once
	applets     []string
	appletsErr  error
)

func busyboxApplets() ([]string, error) {
	appletsOnce.Do(func() {
		out, err := exec.Command(BusyboxPath, "--list").Output()
		if err != nil {
			appletsErr = fmt.Errorf("busybox --list: %w", err)
			return
		}
		for _, a := range strings.Fields(string(out)) {
			if a != "busybox" && !strings.Contains(a, "/") {
				applets = append(applets, a)
			}
		}
		sort.Strings(applets)
	})
	return applets, appletsErr
}

const (
	passwd = "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\n"
	group  = "root:x:0:\ndaemon:x:1:\nwheel:x:10:alice\nusers:x:100:alice\nalice:x:1000:\nnogroup:x:65534:\n"
)

// BusyboxRootfsTar writes a busybox root filesystem as a tar stream:
// bin/busybox with every applet as a symlink, /etc/passwd and /etc/group
// (root, daemon, nobody, alice), and the usual empty directories.
func BusyboxRootfsTar(w io.Writer) error {
	names, err := busyboxApplets()
	if err != nil {
		return err
	}
	bb, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	dir := func(name string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, d := range []string{"bin", "dev", "etc", "home", "home/alice", "proc", "root", "sys", "tmp", "usr", "usr/bin", "usr/sbin", "sbin", "var"} {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		if err := dir(d, mode); err != nil {
			return err
		}
	}
	if err := file("bin/busybox", 0o755, bb); err != nil {
		return err
	}
	for _, a := range names {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777}); err != nil {
			return err
		}
	}
	if err := file("etc/passwd", 0o644, []byte(passwd)); err != nil {
		return err
	}
	if err := file("etc/group", 0o644, []byte(group)); err != nil {
		return err
	}
	return tw.Close()
}

var (
	tarOnce sync.Once
	tarData []byte
	tarErr  error
)

// BusyboxTarFile returns the path of a busybox rootfs tarball in dir
// (written once per test process and copied).
func BusyboxTarFile(t testing.TB, dir string) string {
	t.Helper()
	RequiresBusybox(t)
	tarOnce.Do(func() {
		var b bytes.Buffer
		tarErr = BusyboxRootfsTar(&b)
		tarData = b.Bytes()
	})
	if tarErr != nil {
		t.Fatalf("busybox rootfs: %v", tarErr)
	}
	p := filepath.Join(dir, "busybox.tar")
	if err := os.WriteFile(p, tarData, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ModuleRoot finds the repository root (the directory holding go.mod).
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the berth module")
	}
	return filepath.Dir(mod), nil
}

// BuildBinaries builds berth, berth-daemon, berth-shim and berth-runtime into dir, the way
// the Makefile does. If BERTH_BIN_DIR is set, its binaries are used instead.
func BuildBinaries(dir string) (string, error) {
	if d := os.Getenv("BERTH_BIN_DIR"); d != "" {
		return d, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	builds := []struct {
		pkg, out string
		env      []string
		tags     string
	}{
		{"./cmd/berth", "berth", nil, ""},
		{"./cmd/berth-daemon", "berth-daemon", nil, ""},
		{"./cmd/berth-runtime", "berth-runtime", nil, "seccomp,berthseccompcache,netgo,osusergo"},
		{"./cmd/berth-shim", "berth-shim", []string{"CGO_ENABLED=0"}, ""},
	}
	// berth-runtime's seccomp cache is swapped into libcontainer, as the
	// Makefile does.
	modfile, err := exec.Command(filepath.Join(root, "scripts", "runtime-overlay.sh"), filepath.Join(dir, ".runtime-build")).Output()
	if err != nil {
		return "", fmt.Errorf("runtime overlay: %w", err)
	}
	for _, b := range builds {
		ldflags := "-s -w"
		if b.out == "berth-runtime" {
			ldflags += " -linkmode external -extldflags -static" // as the Makefile
		}
		args := []string{"build", "-tags", b.tags, "-ldflags", ldflags, "-o", filepath.Join(dir, b.out)}
		if b.out == "berth-runtime" {
			args = append(args, "-modfile", strings.TrimSpace(string(modfile)))
		}
		cmd := exec.Command("go", append(args, b.pkg)...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), b.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return dir, nil
}
