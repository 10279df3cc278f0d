package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

func requiresRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root: this test mounts filesystems")
	}
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		in   []string
		want parsedOptions
	}{
		{nil, parsedOptions{}},
		{[]string{"rbind", "ro"}, parsedOptions{flags: unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY}},
		{[]string{"ro", "rw"}, parsedOptions{}},
		{[]string{"nosuid", "nodev", "rprivate"}, parsedOptions{flags: unix.MS_NOSUID | unix.MS_NODEV, propagation: unix.MS_PRIVATE | unix.MS_REC}},
		{[]string{"index=off", "lowerdir=/a:/b", "ro"}, parsedOptions{flags: unix.MS_RDONLY, data: []string{"index=off", "lowerdir=/a:/b"}}},
	}
	for _, tt := range tests {
		if got := parseOptions(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseOptions(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestSplitLowerdir(t *testing.T) {
	tests := []struct {
		in           string
		lowers, data []string
	}{
		{"/a", []string{"/a"}, nil},
		{"/a:/b:/c", []string{"/a", "/b", "/c"}, nil},
		{`/a\:x:/b`, []string{"/a:x", "/b"}, nil},
		{`/a\\:/b`, []string{`/a\`, "/b"}, nil},
		{"/a:/b::/d1::/d2", []string{"/a", "/b"}, []string{"/d1", "/d2"}},
		{"", nil, nil},
	}
	for _, tt := range tests {
		lowers, data := splitLowerdir(tt.in)
		if !reflect.DeepEqual(lowers, tt.lowers) || !reflect.DeepEqual(data, tt.data) {
			t.Errorf("splitLowerdir(%q) = %q, %q; want %q, %q", tt.in, lowers, data, tt.lowers, tt.data)
		}
	}
}

// FuzzSplitLowerdir checks that escaping then splitting gives back the
// paths, and that arbitrary input never panics.
func FuzzSplitLowerdir(f *testing.F) {
	f.Add("/a:/b", "/c")
	f.Add(`/x\y`, "a:b::c")
	f.Add(`\`, `\\:`)
	f.Fuzz(func(t *testing.T, a, b string) {
		splitLowerdir(a)
		splitLowerdir(b)
		if a == "" || b == "" {
			return
		}
		got, data := splitLowerdir(escapeLowerdir(a) + ":" + escapeLowerdir(b))
		if len(data) != 0 || !reflect.DeepEqual(got, []string{a, b}) {
			t.Errorf("round trip of %q, %q: %q, %q", a, b, got, data)
		}
	})
}

func TestCommonDir(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{[]string{"/a/b/1/fs", "/a/b/2/fs", "/a/b/3/work"}, "/a/b"},
		{[]string{"/a/b/fs"}, "/a/b"},
		{[]string{"/a/bc/x", "/a/b/x"}, "/a"},
		{[]string{"/x/1", "/y/2"}, "/"},
		{[]string{"rel/a", "rel/b"}, ""},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := commonDir(tt.in); got != tt.want {
			t.Errorf("commonDir(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func mountpoints(t *testing.T, under string) []string {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(under))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Mountpoint)
	}
	return out
}

func cleanupMounts(t *testing.T, dir string) {
	t.Cleanup(func() {
		if err := UnmountAll(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

func TestBindMountReadOnlyAndUnmountAll(t *testing.T) {
	requiresRoot(t)
	src, target := t.TempDir(), t.TempDir()
	cleanupMounts(t, target)
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("f"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := MountAll([]Mount{{Type: "bind", Source: src, Options: []string{"rbind", "ro"}}}, target); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(target, "f")); err != nil || string(b) != "f" {
		t.Errorf("read through bind: %q %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(target, "g"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write through a ro bind: %v, want EROFS", err)
	}
	// Stack a second mount, and nest a third one below the target.
	if err := MountAll([]Mount{{Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m"}}}, target); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(target, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := MountAll([]Mount{{Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m"}}}, filepath.Join(target, "sub")); err != nil {
		t.Fatal(err)
	}
	if n := len(mountpoints(t, target)); n != 3 {
		t.Fatalf("%d mounts at %s, want 3", n, target)
	}
	if err := UnmountAll(target); err != nil {
		t.Fatal(err)
	}
	if ms := mountpoints(t, target); len(ms) != 0 {
		t.Errorf("still mounted after UnmountAll: %v", ms)
	}
	// Not mounted, or missing: not an error.
	if err := UnmountAll(target); err != nil {
		t.Errorf("UnmountAll of an unmounted dir: %v", err)
	}
	if err := UnmountAll(filepath.Join(target, "does-not-exist")); err != nil {
		t.Errorf("UnmountAll of a missing dir: %v", err)
	}
}

func TestMountAllUndoesOnFailure(t *testing.T) {
	requiresRoot(t)
	src, target := t.TempDir(), t.TempDir()
	cleanupMounts(t, target)
	err := MountAll([]Mount{
		{Type: "bind", Source: src, Options: []string{"rbind", "rw"}},
		{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + filepath.Join(src, "missing")}},
	}, target)
	if err == nil {
		t.Fatal("MountAll with a bad second mount succeeded")
	}
	if ms := mountpoints(t, target); len(ms) != 0 {
		t.Errorf("MountAll left %v mounted after failing", ms)
	}
}

// manyLayers makes n lower layers with long paths, each holding a file
// named after its index plus a "top" file, and returns them top first.
func manyLayers(t *testing.T, n int) (layers []string, upper, work string) {
	t.Helper()
	base := filepath.Join(t.TempDir(), strings.Repeat("a-rather-long-directory-name-", 3))
	for i := n - 1; i >= 0; i-- {
		dir := filepath.Join(base, fmt.Sprintf("layer-%04d", i), "fs")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprint(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "top"), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		layers = append([]string{dir}, layers...)
	}
	// layers is bottom first now; overlay wants top first.
	for i, j := 0, len(layers)-1; i < j; i, j = i+1, j-1 {
		layers[i], layers[j] = layers[j], layers[i]
	}
	upper, work = filepath.Join(base, "upper"), filepath.Join(base, "work")
	for _, d := range []string{upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return layers, upper, work
}

func checkManyLayers(t *testing.T, target string, n int) {
	t.Helper()
	for i := range n {
		if _, err := os.Stat(filepath.Join(target, fmt.Sprint(i))); err != nil {
			t.Fatalf("layer %d not visible: %v", i, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(target, "top")); err != nil || string(b) != fmt.Sprint(n-1) {
		t.Errorf("top = %q %v, want %d", b, err, n-1)
	}
}

func TestMountAllLongOverlay(t *testing.T) {
	requiresRoot(t)
	const n = 200
	layers, upper, work := manyLayers(t, n)
	target := t.TempDir()
	cleanupMounts(t, target)
	opts := []string{"index=off", "workdir=" + work, "upperdir=" + upper, "lowerdir=" + strings.Join(layers, ":")}
	if l := len(strings.Join(opts, ",")); l < 4*os.Getpagesize() {
		t.Fatalf("options only %d bytes long", l)
	}
	if err := MountAll([]Mount{{Type: "overlay", Source: "overlay", Options: opts}}, target); err != nil {
		t.Fatal(err)
	}
	checkManyLayers(t, target, n)
	if err := os.WriteFile(filepath.Join(target, "new"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(upper, "new")); err != nil {
		t.Errorf("write did not reach upperdir: %v", err)
	}
	// A read-only long overlay (a view) too.
	ro := t.TempDir()
	cleanupMounts(t, ro)
	if err := MountAll([]Mount{{Type: "overlay", Source: "overlay", Options: []string{"ro", "lowerdir=" + strings.Join(layers, ":")}}}, ro); err != nil {
		t.Fatal(err)
	}
	checkManyLayers(t, ro, n)
	if err := os.WriteFile(filepath.Join(ro, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write into a ro overlay: %v, want EROFS", err)
	}
	// A bad layer is reported with the kernel's reason.
	bad := t.TempDir()
	err := MountAll([]Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + strings.Join(append(layers, "/nonexistent-berth-layer"), ":")}}}, bad)
	if err == nil || !strings.Contains(err.Error(), "nonexistent-berth-layer") {
		t.Errorf("mount with a missing layer: %v", err)
	}
}

// The fallback for kernels without lowerdir+ (before 6.8).
func TestMountOverlayRelative(t *testing.T) {
	requiresRoot(t)
	const n = 130
	layers, upper, work := manyLayers(t, n)
	target := t.TempDir()
	cleanupMounts(t, target)
	p := parseOptions([]string{"workdir=" + work, "upperdir=" + upper, "lowerdir=" + strings.Join(layers, ":")})
	if err := mountOverlayRelative(target, p); err != nil {
		t.Fatal(err)
	}
	checkManyLayers(t, target, n)
	// The process's working directory is untouched.
	wd, err := os.Getwd()
	if err != nil || strings.Contains(wd, "a-rather-long") {
		t.Errorf("working directory changed to %q (%v)", wd, err)
	}
}

// TestVolatileOverlay mounts a writable overlay volatile (what --rm and
// build containers get), then mounts the same upper directory again,
// volatile and not: the kernel refuses both unless the mark the first
// mount left is cleared.
func TestVolatileOverlay(t *testing.T) {
	requiresRoot(t)
	dir := t.TempDir()
	for _, d := range []string{"lower", "upper", "work", "mnt"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "lower", "f"), []byte("lower\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "mnt")
	cleanupMounts(t, dir)
	ms := []Mount{{Type: "overlay", Source: "overlay", Options: []string{
		"lowerdir=" + filepath.Join(dir, "lower"), "upperdir=" + filepath.Join(dir, "upper"), "workdir=" + filepath.Join(dir, "work"),
	}}}
	vol := Volatile(ms)
	if len(ms[0].Options) != 3 || vol[0].Options[3] != "volatile" {
		t.Fatalf("Volatile changed its input or added nothing: %q, %q", ms[0].Options, vol[0].Options)
	}
	if ro := Volatile([]Mount{{Type: "overlay", Options: []string{"lowerdir=/a:/b"}}}); len(ro[0].Options) != 1 {
		t.Fatalf("a read-only overlay got volatile: %q", ro[0].Options)
	}
	for i, m := range [][]Mount{vol, vol, ms} {
		if err := MountAll(m, target); err != nil {
			t.Fatalf("mount %d: %v", i, err)
		}
		infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(target))
		if err != nil || len(infos) != 1 {
			t.Fatalf("mount %d not found: %v %v", i, infos, err)
		}
		if got, want := strings.Contains(infos[0].VFSOptions, "volatile"), i < 2; got != want {
			t.Fatalf("mount %d: volatile=%v, want %v (%s)", i, got, want, infos[0].VFSOptions)
		}
		if err := os.WriteFile(filepath.Join(target, fmt.Sprintf("w%d", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := UnmountAll(target); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"w0", "w1", "w2"} {
		if _, err := os.Stat(filepath.Join(dir, "upper", f)); err != nil {
			t.Errorf("write through the overlay is not in the upper directory: %v", err)
		}
	}
}
