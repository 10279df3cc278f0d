package snapshottest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/berth-engine/berth/internal/testutil"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// NewFunc opens a snapshotter under root for a test. It should register
// Close with t.Cleanup; the suite may also Close it earlier and open root
// again (Close must be idempotent).
type NewFunc func(t *testing.T, root string) snapshot.Snapshotter

// Suite runs the conformance tests against a snapshotter implementation.
// Every test runs as root (it skips otherwise), on a fresh root under
// t.TempDir(), and mounts only inside t.TempDir() directories, unmounting in
// t.Cleanup even when it fails.
//
// The suite assumes the on-disk layout of internal/snapshot/storage
// (root/snapshots/<id>) for its crash-recovery test.
func Suite(t *testing.T, name string, newSnapshotter NewFunc) {
	tests := []struct {
		name string
		fn   func(t *testing.T, sn snapshot.Snapshotter, root string, reopen func() snapshot.Snapshotter)
	}{
		{"Basic", testBasic},
		{"Errors", testErrors},
		{"ViewReadOnly", testViewReadOnly},
		{"LayersThroughUnpack", testLayers},
		{"WhiteoutsAndOpaqueDirs", testWhiteouts},
		{"DeletesInActiveSnapshot", testActiveDeletes},
		{"RemoveWithChildren", testRemoveWithChildren},
		{"CommitOntoExistingName", testCommitExisting},
		{"128LayersMount", test128Layers},
		{"ConcurrentUnpackSameChain", testConcurrentUnpack},
		{"ReopenAfterCrash", testReopenAfterCrash},
		{"MetadataPreserved", testMetadata},
		{"Usage", testUsage},
		{"UnpackDigestMismatch", testDigestMismatch},
		{"UnpackAlreadyCommitted", testAlreadyCommitted},
		{"UnpackBadChain", testBadChain},
		{"UnpackEscapes", testEscapes},
		{"WalkAndLabels", testWalk},
		{"BusyboxRuns", testBusybox},
	}
	for _, tc := range tests {
		t.Run(name+"/"+tc.name, func(t *testing.T) {
			testutil.RequiresRoot(t)
			t.Parallel()
			root := t.TempDir()
			sn := newSnapshotter(t, root)
			reopen := func() snapshot.Snapshotter {
				if err := sn.Close(); err != nil {
					t.Fatalf("close: %v", err)
				}
				sn = newSnapshotter(t, root)
				return sn
			}
			tc.fn(t, sn, root, reopen)
		})
	}
}

func ctxT(t *testing.T) context.Context { return t.Context() }

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func wantFile(t *testing.T, p, want string) {
	t.Helper()
	if got := ReadFile(t, p); got != want {
		t.Errorf("%s: got %q, want %q", p, got, want)
	}
}

func wantErr(t *testing.T, what string, err error, is func(error) bool, kind string) {
	t.Helper()
	if err == nil || !is(err) {
		t.Errorf("%s: got error %v, want %s", what, err, kind)
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func walkNames(t *testing.T, sn snapshot.Snapshotter) map[string]snapshot.Info {
	t.Helper()
	infos := map[string]snapshot.Info{}
	if err := sn.Walk(ctxT(t), func(i snapshot.Info) error {
		infos[i.Name] = i
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return infos
}

// prepareMount prepares key on parent and mounts it.
func prepareMount(t *testing.T, sn snapshot.Snapshotter, key, parent string) string {
	t.Helper()
	mounts, err := sn.Prepare(ctxT(t), key, parent)
	if err != nil {
		t.Fatalf("prepare %s on %q: %v", key, parent, err)
	}
	return MountT(t, mounts)
}

func viewMount(t *testing.T, sn snapshot.Snapshotter, key, parent string) string {
	t.Helper()
	mounts, err := sn.View(ctxT(t), key, parent)
	if err != nil {
		t.Fatalf("view %s on %q: %v", key, parent, err)
	}
	return MountT(t, mounts)
}

func testBasic(t *testing.T, sn snapshot.Snapshotter, _ string, _ func() snapshot.Snapshotter) {
	ctx := ctxT(t)
	m := prepareMount(t, sn, "a", "")
	if fi, err := os.Stat(m); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("root of a new snapshot: %v %v, want a 0755 directory", fi, err)
	}
	writeFile(t, filepath.Join(m, "foo"), "foo v1")
	writeFile(t, filepath.Join(m, "d", "bar"), "bar")
	info, err := sn.Stat(ctx, "a")
	if err != nil || info.Kind != snapshot.KindActive || info.Parent != "" {
		t.Fatalf("stat a: %+v %v", info, err)
	}
	UnmountT(t, m)
	if err := sn.Commit(ctx, "base", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Stat(ctx, "a"); !errdefs.IsNotFound(err) {
		t.Errorf("stat of a committed key: %v, want not found", err)
	}
	info, err = sn.Stat(ctx, "base")
	if err != nil || info.Kind != snapshot.KindCommitted || info.Name != "base" {
		t.Fatalf("stat base: %+v %v", info, err)
	}

	m = prepareMount(t, sn, "b", "base")
	wantFile(t, filepath.Join(m, "foo"), "foo v1")
	wantFile(t, filepath.Join(m, "d", "bar"), "bar")
	writeFile(t, filepath.Join(m, "foo"), "foo v2")
	writeFile(t, filepath.Join(m, "baz"), "baz")
	if err := os.Remove(filepath.Join(m, "d", "bar")); err != nil {
		t.Fatal(err)
	}
	UnmountT(t, m)
	if err := sn.Commit(ctx, "top", "b"); err != nil {
		t.Fatal(err)
	}
	if info, err := sn.Stat(ctx, "top"); err != nil || info.Parent != "base" {
		t.Fatalf("stat top: %+v %v", info, err)
	}

	// Three layers deep, seen through an active snapshot and a view.
	m = prepareMount(t, sn, "c", "top")
	wantFile(t, filepath.Join(m, "foo"), "foo v2")
	wantFile(t, filepath.Join(m, "baz"), "baz")
	wantFile(t, filepath.Join(m, "d", "bar"), "<missing>")
	writeFile(t, filepath.Join(m, "qux"), "qux")
	UnmountT(t, m)
	if err := sn.Commit(ctx, "third", "c"); err != nil {
		t.Fatal(err)
	}
	v := viewMount(t, sn, "v", "third")
	wantFile(t, filepath.Join(v, "foo"), "foo v2")
	wantFile(t, filepath.Join(v, "baz"), "baz")
	wantFile(t, filepath.Join(v, "qux"), "qux")
	wantFile(t, filepath.Join(v, "d", "bar"), "<missing>")
	if fi, err := os.Stat(filepath.Join(v, "d")); err != nil || !fi.IsDir() {
		t.Errorf("d: %v %v, want a directory", fi, err)
	}
	// The base layer is unchanged underneath.
	v0 := viewMount(t, sn, "v0", "base")
	wantFile(t, filepath.Join(v0, "foo"), "foo v1")
	wantFile(t, filepath.Join(v0, "d", "bar"), "bar")
	UnmountT(t, v0)
	UnmountT(t, v)

	for _, k := range []string{"v0", "v", "third", "top", "base"} {
		if err := sn.Remove(ctx, k); err != nil {
			t.Fatalf("remove %s: %v", k, err)
		}
	}
	if n := len(walkNames(t, sn)); n != 0 {
		t.Errorf("%d snapshots left after removing all", n)
	}
}

func testErrors(t *testing.T, sn snapshot.Snapshotter, root string, _ func() snapshot.Snapshotter) {
	ctx := ctxT(t)
	if _, err := sn.Prepare(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	_, err := sn.Prepare(ctx, "a", "")
	wantErr(t, "prepare an existing key", err, errdefs.IsAlreadyExists, "already exists")
	_, err = sn.Prepare(ctx, "b", "missing")
	wantErr(t, "prepare on a missing parent", err, errdefs.IsNotFound, "not found")
	_, err = sn.Prepare(ctx, "b", "a")
	wantErr(t, "prepare on an active parent", err, errdefs.IsInvalidArgument, "invalid argument")
	_, err = sn.View(ctx, "b", "a")
	wantErr(t, "view of an active parent", err, errdefs.IsInvalidArgument, "invalid argument")
	_, err = sn.Prepare(ctx, "", "")
	wantErr(t, "prepare with an empty key", err, errdefs.IsInvalidArgument, "invalid argument")
	_, err = sn.Stat(ctx, "missing")
	wantErr(t, "stat missing", err, errdefs.IsNotFound, "not found")
	_, err = sn.Mounts(ctx, "missing")
	wantErr(t, "mounts of missing", err, errdefs.IsNotFound, "not found")
	_, err = sn.Usage(ctx, "missing")
	wantErr(t, "usage of missing", err, errdefs.IsNotFound, "not found")
	wantErr(t, "remove missing", sn.Remove(ctx, "missing"), errdefs.IsNotFound, "not found")
	wantErr(t, "commit missing", sn.Commit(ctx, "x", "missing"), errdefs.IsNotFound, "not found")

	if err := sn.Commit(ctx, "base", "a"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "commit a committed snapshot", sn.Commit(ctx, "base2", "base"), errdefs.IsFailedPrecondition, "failed precondition")
	_, err = sn.Mounts(ctx, "base")
	wantErr(t, "mounts of a committed snapshot", err, errdefs.IsFailedPrecondition, "failed precondition")
	if _, err := sn.View(ctx, "v", "base"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "commit a view", sn.Commit(ctx, "v2", "v"), errdefs.IsFailedPrecondition, "failed precondition")
	if _, err := sn.Mounts(ctx, "v"); err != nil {
		t.Errorf("mounts of a view: %v", err)
	}
	// Failed creates leave no directory behind.
	_, _ = sn.Prepare(ctx, "c", "missing")
	_, _ = sn.Prepare(ctx, "v", "base")
	_, _ = sn.View(ctx, "c", "v")
	if dirs := listDir(t, filepath.Join(root, "snapshots")); len(dirs) != 2 {
		t.Errorf("snapshot directories %v, want 2 (base and v)", dirs)
	}
}

func testViewReadOnly(t *testing.T, sn snapshot.Snapshotter, _ string, _ func() snapshot.Snapshotter) {
	ctx := ctxT(t)
	base := NewLayer(t, File("a", "1"))
	second := NewLayer(t, File("b", "2"))
	chains := UnpackChain(t, sn, base, second)
	cases := map[string]string{"empty": "", "one-layer": chains[0].String(), "two-layers": chains[1].String()}
	for name, parent := range cases {
		v := viewMount(t, sn, "view-"+name, parent)
		err := os.WriteFile(filepath.Join(v, "new"), []byte("x"), 0o644)
		if !errors.Is(err, unix.EROFS) {
			t.Errorf("write into %s view: %v, want EROFS", name, err)
		}
		if parent != "" {
			wantFile(t, filepath.Join(v, "a"), "1")
		}
		UnmountT(t, v)
		if u, err := sn.Usage(ctx, "view-"+name); err != nil || u.Size != 0 {
			t.Errorf("usage of %s view: %+v %v, want 0 bytes", name, u, err)
		}
	}
}

func testLayers(t *testing.T, sn snapshot.Snapshotter, _ string, _ func() snapshot.Snapshotter) {
	l1 := NewLayer(t, Dir("bin"), File("bin/sh", "sh v1", Mode(0o755)), Dir("etc"), File("etc/passwd", "root:x:0:0::/root:/bin/sh\n"))
	l2 := NewLayer(t, Dir("bin"), File("bin/sh", "sh v2", Mode(0o755)), File("usr/lib/a", "a"))
	// "./"-prefixed names and a root entry, as `tar -C dir .` (docker import) writes them.
	l3 := NewLayer(t, Dir(".", Mode(0o700)), File("./usr/lib/b", "b"), File("etc/hosts", "127.0.0.1 localhost\n"), Dir("./opt"), File("./opt/x", "x"))
	chains := UnpackChain(t, sn, l1, l2, l3)
	for i, c := range chains {
		info, err := sn.Stat(ctxT(t), c.String())
		if err != nil || info.Kind != snapshot.KindCommitted {
			t.Fatalf("layer %d: %+v %v", i, info, err)
		}
		if i > 0 && info.Parent != chains[i-1].String() {
			t.Errorf("layer %d parent %q, want %q", i, info.Parent, chains[i-1])
		}
	}
	v := viewMount(t, sn, "v", chains[2].String())
	wantFile(t, filepath.Join(v, "bin/sh"), "sh v2")
	wantFile(t, filepath.Join(v, "etc/passwd"), "root:x:0:0::/root:/bin/sh\n")
	wantFile(t, filepath.Join(v, "etc/hosts"), "127.0.0.1 localhost\n")
	wantFile(t, filepath.Join(v, "usr/lib/a"), "a")
	wantFile(t, filepath.Join(v, "usr/lib/b"), "b")
	wantFile(t, filepath.Join(v, "opt/x"), "x")
	m := prepareMount(t, sn, "ctr", chains[2].String())
	wantFile(t, filepath.Join(m, "bin/sh"), "sh v2")
	wantFile(t, filepath.Join(m, "usr/lib/a"), "a")
	writeFile(t, filepath.Join(m, "usr/lib/c"), "c")
	v1 := viewMount(t, sn, "v1", chains[0].String())
	wantFile(t, filepath.Join(v1, "bin/sh"), "sh v1")
	wantFile(t, filepath.Join(v1, "usr/lib/a"), "<missing>")
	wantFile(t, filepath.Join(v, "usr/lib/c"), "<missing>")
	// No unpack leftovers.
	for n := range walkNames(t, sn) {
		if strings.HasPrefix(n, snapshot.ExtractPrefix) {
			t.Errorf("leftover %q", n)
		}
	}
}

func testWhiteouts(t *testing.T, sn snapshot.Snapshotter, _ string, _ func() snapshot.Snapshotter) {
	l1 := NewLayer(t,
		File("a", "a"),
		Dir("d"), File("d/x", "x"), File("d/y", "y"), Dir("d/sub"), File("d/sub/z", "z"),
		Dir("keep"), File("keep/k", "k"), File("keep/gone", "gone"),
		Dir("gone-dir"), File("gone-dir/q", "q"),
	)
	l2 := NewLayer(t,
		Whiteout("a"),
		Dir("d"), Opaque("d"), File("d/new", "new"),
		Whiteout("keep/gone"),
		Whiteout("gone-dir"),
	)
	l3 := NewLayer(t, File("a", "again"), File("d/third", "third"))
	chains := UnpackChain(t, sn, l1, l2, l3)

	v2 := viewMount(t, sn, "v2", chains[1].String())
	wantFile(t, filepath.Join(v2, "a"), "<missing>")
	if got := listDir(t, filepath.Join(v2, "d")); fmt.Sprint(got) != "[new]" {
		t.Errorf("opaque d after layer 2: %v, want [new]", got)
	}
	if got := listDir(t, filepath.Join(v2, "keep")); fmt.Sprint(got) != "[k]" {
		t.Errorf("keep after layer 2: %v, want [k]", got)
	}
	if got := listDir(t, v2); fmt.Sprint(got) != "[d keep]" {
		t.Errorf("root after layer 2: %v, want [d keep]", got)
	}
	v3 := viewMount(t, sn, "v3", chains[2].String())
	wantFile(t, filepath.Join(v3, "a"), "again")
	if got := listDir(t, filepath.Join(v3, "d")); fmt.Sprint(got) != "[new third]" {
		t.Errorf("d after layer 3: %v, want [new third]", got)
	}
	// Through a writable snapshot on top too.
	m := prepareMount(t, sn, "ctr", chains[2].String())
	if got := listDir(t, m); fmt.Sprint(got) != "[a d keep]" {
		t.Errorf("container root: %v, want [a d keep]", got)
	}
	if got := listDir(t, filepath.Join(m, "d")); fmt.Sprint(got) != "[new third]" {
		t.Errorf("container d: %v, want [new third]", got)
	}
	// Layer 1 itself is untouched.
	v1 := viewMount(t, sn, "v1", chains[0].String())
	if got := listDir(t, filepath.Join(v1, "d")); fmt.Sprint(got) != "[sub x y]" {
		t.Errorf("d in layer 1: %v, want [sub x y]", got)
	}
}

func testActiveDeletes(t *testing.T, sn snapshot.Snapshotter, _ string, _ func() snapshot.Snapshotter) {
	ctx := ctxT(t)
	chains := UnpackChain(t, sn, NewLayer(t,
		File("f", "f"), Dir("dir"), File("dir/a", "a"), Dir("dir/sub"), File("dir/sub/b", "b"), File("mv", "mv"),
	))
	m := prepareMount(t, sn, "c1", chains[0].String())
	if err := os.Remove(filepath.Join(m, "f")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(m, "dir")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(m, "mv"), filepath.Join(m, "moved")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(m, "dir", "fresh"), "fresh")
	UnmountT(t, m)
	if err := sn.Commit(ctx, "c1-committed", "c1"); err != nil {
		t.Fatal(err)
	}
	m2 := prepareMount(t, sn, "c2", "c1-committed")
	if got := listDir(t, m2); fmt.Sprint(got) != "[dir moved]" {
		t.Errorf("root: %v, want [dir moved]", got)
	}
	if got := listDir(t, filepath.Join(m2, "dir")); fmt.Sprint(got) != "[fresh]" {
		t.Errorf("dir: %v, want [fresh]", got)
	}
	wantFile(t, filepath.Join(m2, "moved"), "mv")
}

func testRemoveWithChildren(t *testing.T, sn snapshot.Snapshotter, _ string, _ func() snapshot.Snapshotter) {
	ctx := ctxT(t)
	chains := UnpackChain(t, sn, NewLayer(t, File("a", "a")), NewLayer(t, File("b", "b")))
	base, top := chains[0].String(), chains[1].String()
	wantErr(t, "remove a layer with a child layer", sn.Remove(ctx, base), errdefs.IsFailedPrecondition, "failed precondition")
	if _, err := sn.Prepare(ctx, "ctr", top); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "remove a layer with an active child", sn.Remove(ctx, top), errdefs.IsFailedPrecondition, "failed precondition")
	if err := sn.Remove(ctx, "ctr"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.View(ctx, "v", top); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "remove a layer with a view", sn.Remove(ctx, top), errdefs.IsFailedPrecondition, "failed precondition")
	for _, k := range []string{"v", top, base} {
		if err := sn.Remove(ctx, k); err != nil {
			t.Fatalf("remove %s: %v", k, err)
		}
	}
}

func testCommitExisting(t *testing.T, sn snapshot.Snapshotter, _ string, _ func() snapshot.Snapshotter) {
	ctx := ctxT(t)
	m := prepareMount(t, sn, "a", "")
	writeFile(t, filepath.Join(m, "from"), "a")
	UnmountT(t, m)
	if err := sn.Commit(ctx, "x", "a"); err != nil {
		t.Fatal(err)
	}
	m = prepareMount(t, sn, "b", "")
	writeFile(t, filepath.Join(m, "from"), "b")
	UnmountT(t, m)
	wantErr(t, "commit onto an existing name", sn.Commit(ctx, "x", "b"), errdefs.IsAlreadyExists, "already exists")
	if info, err := sn.Stat(ctx, "b"); err != nil || info.Kind != snapshot.KindActive {
		t.Errorf("b after a failed commit: %+v %v, want still active", info, err)
	}
	v := viewMount(t, sn, "v", "x")
	wantFile(t, filepath.Join(v, "from"), "a")
	if err := sn.Commit(ctx, "y", "b"); err != nil {
		t.Fatalf("commit b under another name: %v", err)
	}
	v = viewMount(t, sn, "vy", "y")
	wantFile(t, filepath.Join(v, "from"), "b")
}

func test128Layers(t *testing.T, sn snapshot.Snapshotter, _ string, _ func() snapshot.Snapshotter) {
	const n = 128
	layers := make([]Layer, n)
	for i := range layers {
		layers[i] = NewLayer(t, File(fmt.Sprintf("f%03d", i), strconv.Itoa(i)), File("common", strconv.Itoa(i)))
	}
	chains := UnpackChain(t, sn, layers...)
	top := chains[n-1].String()
	check := func(dir string) {
		t.Helper()
		for i := range n {
			wantFile(t, filepath.Join(dir, fmt.Sprintf("f%03d", i)), strconv.Itoa(i))
		}
		wantFile(t, filepath.Join(dir, "common"), strconv.Itoa(n-1))
	}
	m := prepareMount(t, sn, "ctr", top)
	check(m)
	writeFile(t, filepath.Join(m, "new"), "new")
	if err := os.Remove(filepath.Join(m, "f000")); err != nil {
		t.Fatal(err)
	}
	UnmountT(t, m)
	v := viewMount(t, sn, "v", top)
	check(v)
	// Mount the active snapshot again: its changes are kept.
	mounts, err := sn.Mounts(ctxT(t), "ctr")
	if err != nil {
		t.Fatal(err)
	}
	m = MountT(t, mounts)
	wantFile(t, filepath.Join(m, "new"), "new")
	wantFile(t, filepath.Join(m, "f000"), "<missing>")
	wantFile(t, filepath.Join(m, "f127"), "127")
}

func testConcurrentUnpack(t *testing.T, sn snapshot.Snapshotter, root string, _ func() snapshot.Snapshotter) {
	const workers = 8
	base := NewLayer(t, File("a", "a"), Dir("d"), File("d/b", "b"))
	top := NewLayer(t, File("c", "c"), Whiteout("a"))
	baseChain := ChainID("", base.DiffID)
	topChain := ChainID(baseChain, top.DiffID)
	for _, step := range []struct {
		parent, chain digest.Digest
		l             Layer
	}{{"", baseChain, base}, {baseChain, topChain, top}} {
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for range workers {
			wg.Go(func() {
				errs <- snapshot.Unpack(ctxT(t), sn, step.parent.String(), step.chain, step.l.DiffID, bytes.NewReader(step.l.Tar))
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("concurrent unpack of %s: %v", step.chain, err)
			}
		}
	}
	infos := walkNames(t, sn)
	if len(infos) != 2 || infos[baseChain.String()].Kind != snapshot.KindCommitted || infos[topChain.String()].Kind != snapshot.KindCommitted {
		t.Errorf("after concurrent unpacks: %v, want just the two committed layers", infos)
	}
	if dirs := listDir(t, filepath.Join(root, "snapshots")); len(dirs) != 2 {
		t.Errorf("snapshot directories %v, want 2", dirs)
	}
	v := viewMount(t, sn, "v", topChain.String())
	if got := listDir(t, v); fmt.Sprint(got) != "[c d]" {
		t.Errorf("root: %v, want [c d]", got)
	}
}

func testReopenAfterCrash(t *testing.T, sn snapshot.Snapshotter, root string, reopen func() snapshot.Snapshotter) {
	ctx := ctxT(t)
	chains := UnpackChain(t, sn, NewLayer(t, File("a", "a")))
	base := chains[0].String()
	// What an unpack interrupted by a crash leaves: an extract snapshot.
	extractKey := snapshot.ExtractPrefix + "0123456789abcdef " + digest.FromString("x").String()
	m := prepareMount(t, sn, extractKey, base)
	writeFile(t, filepath.Join(m, "half"), "half")
	UnmountT(t, m)
	// A container's writable layer must survive.
	m = prepareMount(t, sn, "ctr", base)
	writeFile(t, filepath.Join(m, "mine"), "mine")
	UnmountT(t, m)
	// Directories without metadata: a snapshot whose metadata never made it,
	// a half-built snapshot, a half-removed one.
	writeFile(t, filepath.Join(root, "snapshots", "99999", "fs", "junk"), "junk")
	writeFile(t, filepath.Join(root, "snapshots", "new-123", "fs", "junk"), "junk")
	if err := os.MkdirAll(filepath.Join(root, "snapshots", "rm-5", "fs"), 0o700); err != nil {
		t.Fatal(err)
	}

	sn = reopen()
	if _, err := sn.Stat(ctx, extractKey); !errdefs.IsNotFound(err) {
		t.Errorf("interrupted unpack after reopen: %v, want not found", err)
	}
	infos := walkNames(t, sn)
	if len(infos) != 2 || infos[base].Kind != snapshot.KindCommitted || infos["ctr"].Kind != snapshot.KindActive {
		t.Errorf("snapshots after reopen: %v, want the layer and ctr", infos)
	}
	if dirs := listDir(t, filepath.Join(root, "snapshots")); len(dirs) != 2 {
		t.Errorf("snapshot directories after reopen: %v, want 2", dirs)
	}
	mounts, err := sn.Mounts(ctx, "ctr")
	if err != nil {
		t.Fatal(err)
	}
	m = MountT(t, mounts)
	wantFile(t, filepath.Join(m, "a"), "a")
	wantFile(t, filepath.Join(m, "mine"), "mine")
	wantFile(t, filepath.Join(m, "half"), "<missing>")
	UnmountT(t, m)
	// The store works as before: the layer can be unpacked on again.
	chains = UnpackChain(t, sn, NewLayer(t, File("a", "a")), NewLayer(t, File("b", "b")))
	v := viewMount(t, sn, "v", chains[1].String())
	if got := listDir(t, v); fmt.Sprint(got) != "[a b]" {
		t.Errorf("view after reopen: %v, want [a b]", got)
	}
	// A clean reopen keeps everything.
	UnmountT(t, v)
	sn = reopen()
	if n := len(walkNames(t, sn)); n != 4 {
		t.Errorf("%d snapshots after a clean reopen, want 4", n)
	}
}

func testMetadata(t *testing.T, sn snapshot.Snapshotter, _ string, _ func() snapshot.Snapshotter) {
	ctx := ctxT(t)
	mtime := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	l := NewLayer(t,
		Dir("srv", Mode(0o1777), Owner(10, 20), ModTime(mtime)),
		File("srv/setuid", "binary", Mode(0o4755), Owner(1000, 1001), Xattr("user.berth", "value"), ModTime(mtime)),
		Hardlink("srv/link", "srv/setuid"),
		File("srv/setgid", "g", Mode(0o2711), Owner(0, 50)),
		Symlink("srv/sym", "setuid", Owner(5, 6)),
		Symlink("srv/abs", "/etc/passwd"),
		Dir("dev"),
		CharDev("dev/null", 1, 3, Mode(0o666)),
		Fifo("dev/fifo", Mode(0o640), Owner(7, 8)),
		File("empty", "", Mode(0o600)),
	)
	chains := UnpackChain(t, sn, l)
	check := func(where, dir string) {
		t.Helper()
		stat := func(p string) unix.Stat_t {
			t.Helper()
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(dir, p), &st); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			return st
		}
		wantStat := func(p string, typ, perm uint32, uid, gid uint32) unix.Stat_t {
			t.Helper()
			st := stat(p)
			if st.Mode&unix.S_IFMT != typ || st.Mode&0o7777 != perm || st.Uid != uid || st.Gid != gid {
				t.Errorf("%s: %s: mode %#o uid %d gid %d, want %#o %d %d", where, p, st.Mode, st.Uid, st.Gid, typ|perm, uid, gid)
			}
			return st
		}
		st := wantStat("srv", unix.S_IFDIR, 0o1777, 10, 20)
		if st.Mtim.Sec != mtime.Unix() {
			t.Errorf("%s: srv mtime %d, want %d", where, st.Mtim.Sec, mtime.Unix())
		}
		suid := wantStat("srv/setuid", unix.S_IFREG, 0o4755, 1000, 1001)
		if suid.Mtim.Sec != mtime.Unix() {
			t.Errorf("%s: srv/setuid mtime %d, want %d", where, suid.Mtim.Sec, mtime.Unix())
		}
		link := wantStat("srv/link", unix.S_IFREG, 0o4755, 1000, 1001)
		if link.Ino != suid.Ino || suid.Nlink != 2 {
			t.Errorf("%s: hard link: inodes %d/%d, nlink %d, want one inode with 2 links", where, suid.Ino, link.Ino, suid.Nlink)
		}
		wantStat("srv/setgid", unix.S_IFREG, 0o2711, 0, 50)
		wantStat("srv/sym", unix.S_IFLNK, 0o777, 5, 6)
		if target, err := os.Readlink(filepath.Join(dir, "srv/sym")); err != nil || target != "setuid" {
			t.Errorf("%s: srv/sym → %q %v", where, target, err)
		}
		if target, err := os.Readlink(filepath.Join(dir, "srv/abs")); err != nil || target != "/etc/passwd" {
			t.Errorf("%s: srv/abs → %q %v", where, target, err)
		}
		null := wantStat("dev/null", unix.S_IFCHR, 0o666, 0, 0)
		if null.Rdev != unix.Mkdev(1, 3) {
			t.Errorf("%s: dev/null rdev %#x, want 1:3", where, null.Rdev)
		}
		wantStat("dev/fifo", unix.S_IFIFO, 0o640, 7, 8)
		wantStat("empty", unix.S_IFREG, 0o600, 0, 0)
		buf := make([]byte, 64)
		n, err := unix.Lgetxattr(filepath.Join(dir, "srv/setuid"), "user.berth", buf)
		if err != nil || string(buf[:n]) != "value" {
			t.Errorf("%s: xattr user.berth = %q %v, want \"value\"", where, buf[:max(n, 0)], err)
		}
		wantFile(t, filepath.Join(dir, "srv/link"), "binary")
	}
	check("view", viewMount(t, sn, "v", chains[0].String()))
	check("active snapshot", prepareMount(t, sn, "ctr", chains[0].String()))
	// And through a layer made by committing a container on top.
	if _, err := sn.Prepare(ctx, "ctr2", chains[0].String()); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "committed", "ctr2"); err != nil {
		t.Fatal(err)
	}
	check("view of a committed container", viewMount(t, sn, "v2", "committed"))
}

func testUsage(t *testing.T, sn snapshot.Snapshotter, _ string, _ func() snapshot.Snapshotter) {
	ctx := ctxT(t)
	const big = 1 << 20
	m := prepareMount(t, sn, "a", "")
	writeFile(t, filepath.Join(m, "big"), strings.Repeat("x", big))
	writeFile(t, filepath.Join(m, "d", "small"), "12345")
	if err := os.Link(filepath.Join(m, "big"), filepath.Join(m, "big-link")); err != nil {
		t.Fatal(err)
	}
	UnmountT(t, m)
	u, err := sn.Usage(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	// big (counted once despite the hard link) + small; dirs count as inodes.
	if u.Size != big+5 || u.Inodes != 3 {
		t.Errorf("usage of active a: %+v, want %d bytes in 3 inodes", u, big+5)
	}
	if err := sn.Commit(ctx, "base", "a"); err != nil {
		t.Fatal(err)
	}
	if cu, err := sn.Usage(ctx, "base"); err != nil || cu != u {
		t.Errorf("usage of committed base: %+v %v, want %+v", cu, err, u)
	}
	m = prepareMount(t, sn, "b", "base")
	writeFile(t, filepath.Join(m, "more"), strings.Repeat("y", 4096))
	UnmountT(t, m)
	if u, err := sn.Usage(ctx, "b"); err != nil || u.Size < 4096 {
		t.Errorf("usage of b: %+v %v, want at least 4096 bytes", u, err)
	}
}

func testDigestMismatch(t *testing.T, sn snapshot.Snapshotter, root string, _ func() snapshot.Snapshotter) {
	ctx := ctxT(t)
	l := NewLayer(t, File("a", "a"))
	wrong := digest.FromString("something else")
	err := snapshot.Unpack(ctx, sn, "", wrong, wrong, bytes.NewReader(l.Tar))
	wantErr(t, "unpack with a wrong diff ID", err, errdefs.IsInvalidArgument, "invalid argument")
	if n := len(walkNames(t, sn)); n != 0 {
		t.Errorf("%d snapshots after a failed unpack, want 0", n)
	}
	if dirs := listDir(t, filepath.Join(root, "snapshots")); len(dirs) != 0 {
		t.Errorf("directories after a failed unpack: %v", dirs)
	}
	// A truncated stream fails too, and leaves nothing.
	err = snapshot.Unpack(ctx, sn, "", l.DiffID, l.DiffID, bytes.NewReader(l.Tar[:700]))
	if err == nil {
		t.Error("unpack of a truncated layer succeeded")
	}
	if n := len(walkNames(t, sn)); n != 0 {
		t.Errorf("%d snapshots after a truncated unpack, want 0", n)
	}
	// A missing parent is reported as such.
	parent := digest.FromString("missing parent")
	err = snapshot.Unpack(ctx, sn, parent.String(), ChainID(parent, l.DiffID), l.DiffID, bytes.NewReader(l.Tar))
	wantErr(t, "unpack on a missing parent", err, errdefs.IsNotFound, "not found")
	// A cancelled context stops the unpack.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := snapshot.Unpack(cctx, sn, "", l.DiffID, l.DiffID, bytes.NewReader(l.Tar)); err == nil {
		t.Error("unpack with a cancelled context succeeded")
	}
	if n := len(walkNames(t, sn)); n != 0 {
		t.Errorf("%d snapshots after a cancelled unpack, want 0", n)
	}
}

// failReader fails the test if read.
type failReader struct{ t *testing.T }

func (r failReader) Read([]byte) (int, error) {
	r.t.Error("Unpack read the layer of an already committed chain")
	return 0, errors.New("must not be read")
}

func testAlreadyCommitted(t *testing.T, sn snapshot.Snapshotter, _ string, _ func() snapshot.Snapshotter) {
	l := NewLayer(t, File("a", "a"))
	UnpackChain(t, sn, l)
	if err := snapshot.Unpack(ctxT(t), sn, "", l.DiffID, l.DiffID, failReader{t}); err != nil {
		t.Errorf("unpack of a committed chain: %v", err)
	}
	// A chain name held by an active snapshot is not silently accepted.
	other := NewLayer(t, File("b", "b"))
	if _, err := sn.Prepare(ctxT(t), other.DiffID.String(), ""); err != nil {
		t.Fatal(err)
	}
	err := snapshot.Unpack(ctxT(t), sn, "", other.DiffID, other.DiffID, bytes.NewReader(other.Tar))
	wantErr(t, "unpack onto a name held by an active snapshot", err, errdefs.IsFailedPrecondition, "failed precondition")
}

func testBadChain(t *testing.T, sn snapshot.Snapshotter, _ string, _ func() snapshot.Snapshotter) {
	ctx := ctxT(t)
	l := NewLayer(t, File("a", "a"))
	err := snapshot.Unpack(ctx, sn, "", digest.FromString("not the diff id"), l.DiffID, bytes.NewReader(l.Tar))
	wantErr(t, "base layer whose chain ID is not its diff ID", err, errdefs.IsInvalidArgument, "invalid argument")
	base := UnpackChain(t, sn, l)[0]
	l2 := NewLayer(t, File("b", "b"))
	err = snapshot.Unpack(ctx, sn, base.String(), l2.DiffID, l2.DiffID, bytes.NewReader(l2.Tar))
	wantErr(t, "layer whose chain ID ignores its parent", err, errdefs.IsInvalidArgument, "invalid argument")
	err = snapshot.Unpack(ctx, sn, "", "sha256:nope", "sha256:nope", bytes.NewReader(l2.Tar))
	wantErr(t, "malformed digests", err, errdefs.IsInvalidArgument, "invalid argument")
}

func testEscapes(t *testing.T, sn snapshot.Snapshotter, root string, _ func() snapshot.Snapshotter) {
	ctx := ctxT(t)
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	writeFile(t, secret, "secret")
	hostName := fmt.Sprintf("berth-escape-%d-%d", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() { _ = os.Remove("/" + hostName) })
	up := strings.Repeat("../", 32)
	relOutside := strings.TrimPrefix(outside, "/")

	cases := map[string][]Entry{
		"dotdot":              {File("../escaped", "x")},
		"dotdot-deep":         {File("a/../../../escaped", "x")},
		"dotdot-host-root":    {File(up+hostName, "x")},
		"absolute-name":       {File(filepath.Join(outside, "escaped"), "x")},
		"abs-symlink-dir":     {Symlink("link", outside), File("link/escaped", "x")},
		"rel-symlink-dir":     {Symlink("rel", up+relOutside), File("rel/escaped", "x")},
		"root-symlink":        {Symlink("root", "/"), File("root/"+relOutside+"/escaped", "x")},
		"symlink-then-dir":    {Symlink("sd", outside), Dir("sd/sub"), File("sd/sub/escaped", "x")},
		"abs-hardlink":        {Hardlink("hl", secret)},
		"rel-hardlink":        {Hardlink("hl", up+relOutside+"/secret")},
		"symlink-hardlink":    {Symlink("link", outside), Hardlink("hl", "link/secret")},
		"symlink-overwrite":   {Symlink("s", secret), File("s", "overwritten")},
		"whiteout-through":    {Symlink("link", outside), Whiteout("link/secret")},
		"opaque-through":      {Symlink("link", outside), Opaque("link")},
		"symlink-chain":       {Symlink("a", "b"), Symlink("b", outside), File("a/escaped", "x")},
		"dir-replaced-by-sym": {Dir("d"), Symlink("d", outside), File("d/escaped", "x")},
	}
	// Each case is unpacked as a base layer and on top of one: drivers may
	// apply the two differently (overlay2 writes whiteouts into an upper
	// directory only when there is a layer below).
	base := NewLayer(t, File("base", "base"), Dir("d"))
	baseChain := UnpackChain(t, sn, base)[0]
	for name, entries := range cases {
		for _, parent := range []digest.Digest{"", baseChain} {
			l := NewLayer(t, entries...)
			chain := ChainID(parent, l.DiffID)
			err := snapshot.Unpack(ctx, sn, parent.String(), chain, l.DiffID, bytes.NewReader(l.Tar))
			t.Logf("%s on %q: unpack: %v", name, parent, err)
			checkEscape(t, name, outside, secret, hostName, root)
			if err == nil {
				if err := sn.Remove(ctx, chain.String()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := sn.Remove(ctx, baseChain.String()); err != nil {
		t.Fatal(err)
	}
	for n := range walkNames(t, sn) {
		t.Errorf("leftover snapshot %q", n)
	}
}

func checkEscape(t *testing.T, name, outside, secret, hostName, root string) {
	t.Helper()
	if got := listDir(t, outside); fmt.Sprint(got) != "[secret]" {
		t.Errorf("%s: the layer wrote outside the snapshot: %s holds %v", name, outside, got)
	}
	var st unix.Stat_t
	if err := unix.Stat(secret, &st); err != nil || st.Nlink != 1 {
		t.Errorf("%s: %s was linked into the snapshot (nlink %d, %v)", name, secret, st.Nlink, err)
	}
	wantFile(t, secret, "secret")
	if _, err := os.Lstat("/" + hostName); err == nil {
		t.Errorf("%s: the layer wrote /%s on the host", name, hostName)
	}
	if _, err := os.Lstat(filepath.Join(filepath.Dir(root), "escaped")); err == nil {
		t.Errorf("%s: the layer wrote next to the snapshotter root", name)
	}
	// Nor anywhere in the snapshotter's own directories.
	for _, e := range listDir(t, root) {
		if e != "metadata.db" && e != "snapshots" && !strings.HasPrefix(e, ".overlay-check-") {
			t.Errorf("%s: unexpected %s in the snapshotter root", name, e)
		}
	}
	for _, id := range listDir(t, filepath.Join(root, "snapshots")) {
		if _, err := strconv.ParseUint(id, 10, 64); err != nil {
			t.Errorf("%s: unexpected %s in the snapshots directory", name, id)
			continue
		}
		for _, e := range listDir(t, filepath.Join(root, "snapshots", id)) {
			if e != "fs" && e != "work" {
				t.Errorf("%s: unexpected %s in snapshot directory %s", name, e, id)
			}
		}
	}
}

func testWalk(t *testing.T, sn snapshot.Snapshotter, _ string, _ func() snapshot.Snapshotter) {
	ctx := ctxT(t)
	if _, err := sn.Prepare(ctx, "a", "", snapshot.WithLabels(map[string]string{"k": "v"})); err != nil {
		t.Fatal(err)
	}
	if info, err := sn.Stat(ctx, "a"); err != nil || info.Labels["k"] != "v" || info.Created.IsZero() {
		t.Errorf("stat a: %+v %v, want label k=v and a creation time", info, err)
	}
	if err := sn.Commit(ctx, "base", "a", snapshot.WithLabels(map[string]string{"c": "d"})); err != nil {
		t.Fatal(err)
	}
	if info, err := sn.Stat(ctx, "base"); err != nil || info.Labels["k"] != "v" || info.Labels["c"] != "d" {
		t.Errorf("stat base: %+v %v, want labels k=v and c=d", info, err)
	}
	if _, err := sn.Prepare(ctx, "ctr", "base"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.View(ctx, "view", "base"); err != nil {
		t.Fatal(err)
	}
	infos := walkNames(t, sn)
	want := map[string][2]string{"base": {"", "committed"}, "ctr": {"base", "active"}, "view": {"base", "view"}}
	if len(infos) != len(want) {
		t.Errorf("walk: %v", infos)
	}
	for name, w := range want {
		if i := infos[name]; i.Parent != w[0] || string(i.Kind) != w[1] {
			t.Errorf("walk %s: %+v, want parent %q kind %s", name, i, w[0], w[1])
		}
	}
	// fn may call back into the snapshotter, and its error stops the walk.
	stop := errors.New("stop")
	calls := 0
	err := sn.Walk(ctx, func(i snapshot.Info) error {
		calls++
		if _, err := sn.Stat(ctx, i.Name); err != nil {
			return err
		}
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("walk with a failing fn: %v after %d calls", err, calls)
	}
}

// testBusybox runs a real program from a container-style snapshot: busybox
// in one layer, its files in others, a shell writing to the writable layer.
func testBusybox(t *testing.T, sn snapshot.Snapshotter, _ string, _ func() snapshot.Snapshotter) {
	testutil.RequiresBusybox(t)
	bin, err := os.ReadFile(testutil.BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	base := NewLayer(t, Dir("bin"), File("bin/busybox", string(bin), Mode(0o755)), Symlink("bin/sh", "busybox"),
		Symlink("bin/cat", "busybox"), Dir("etc"), File("etc/motd", "old"), Dir("tmp", Mode(0o1777)))
	app := NewLayer(t, File("etc/motd", "hello from a layer"), Whiteout("bin/cat"))
	chains := UnpackChain(t, sn, base, app)
	m := prepareMount(t, sn, "ctr", chains[1].String())
	cmd := exec.Command("/bin/sh", "-c", "cat /etc/motd 2>&1; busybox cat /etc/motd; echo written > /tmp/out")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: m}
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("busybox in the snapshot: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "not found") || !strings.HasSuffix(string(out), "hello from a layer") {
		t.Errorf("output %q: want cat whited out and the top layer's motd", out)
	}
	UnmountT(t, m)
	if err := sn.Commit(ctxT(t), "committed", "ctr"); err != nil {
		t.Fatal(err)
	}
	v := viewMount(t, sn, "v", "committed")
	wantFile(t, filepath.Join(v, "tmp/out"), "written\n")
}
