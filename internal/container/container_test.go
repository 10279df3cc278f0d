package container

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/fsutil"
	"github.com/berth-engine/berth/internal/stringid"
	"github.com/containerd/errdefs"
	containertypes "github.com/moby/moby/api/types/container"
)

func TestIndexLookup(t *testing.T) {
	ix := NewIndex()
	a := "aaaa" + strings.Repeat("1", 60)
	b := "aabb" + strings.Repeat("2", 60)
	if err := ix.Reserve("web", a); err != nil {
		t.Fatal(err)
	}
	if err := ix.Reserve("/db", b); err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{a: a, "web": a, "/web": a, "db": b, "aaaa": a, "aab": b} {
		got, err := ix.Lookup(in)
		if err != nil || got != want {
			t.Errorf("Lookup(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ix.Lookup("aa"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("ambiguous prefix: %v", err)
	}
	if _, err := ix.Lookup("nope"); !errdefs.IsNotFound(err) || err.Error() != "No such container: nope" {
		t.Errorf("unknown: %v", err)
	}
	err := ix.Reserve("web", b)
	if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), `The container name "/web" is already in use by container "`+a+`"`) {
		t.Errorf("conflict: %v", err)
	}
	if err := ix.Reserve("bad name", b); !errdefs.IsInvalidArgument(err) {
		t.Errorf("invalid name accepted: %v", err)
	}
	// Renaming frees the old name.
	if err := ix.Reserve("web2", a); err != nil {
		t.Fatal(err)
	}
	if err := ix.Reserve("web", b); err != nil {
		t.Errorf("old name still taken after rename: %v", err)
	}
	ix.Release(a)
	if _, err := ix.Lookup("web2"); !errdefs.IsNotFound(err) {
		t.Errorf("released name still resolves: %v", err)
	}
}

func TestGenerateName(t *testing.T) {
	for i := 0; i < 200; i++ {
		n := GenerateName(0)
		if !ValidName.MatchString(n) || !strings.Contains(n, "_") {
			t.Fatalf("bad generated name %q", n)
		}
	}
}

func TestStoreRoundTripAndOrphans(t *testing.T) {
	root := t.TempDir()
	s, err := NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	c := &Container{
		ID: stringid.Generate(), Name: "x", Created: time.Now().UTC(), Path: "sh",
		Config:     &containertypes.Config{Image: "busybox", Cmd: []string{"sh"}},
		HostConfig: &containertypes.HostConfig{},
		State:      State{Status: StatusExited, ExitCode: 3},
	}
	if err := s.Save(c); err != nil {
		t.Fatal(err)
	}
	orphan := stringid.Generate()
	if err := os.MkdirAll(filepath.Join(root, orphan), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "not-a-container"), 0o700); err != nil {
		t.Fatal(err)
	}
	corrupt := stringid.Generate()
	if err := os.MkdirAll(filepath.Join(root, corrupt), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, corrupt, recordFile), []byte("{trunc"), 0o600); err != nil {
		t.Fatal(err)
	}
	recs, orphans, errs := s.LoadAll()
	if len(recs) != 1 || recs[0].ID != c.ID || recs[0].State.ExitCode != 3 || recs[0].Config.Image != "busybox" {
		t.Fatalf("records: %+v", recs)
	}
	if len(orphans) != 1 || orphans[0] != orphan {
		t.Fatalf("orphans: %v", orphans)
	}
	if len(errs) != 1 {
		t.Fatalf("errors: %v", errs)
	}
	if err := s.Delete(c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir(c.ID)); !os.IsNotExist(err) {
		t.Fatalf("dir remains after delete: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".trash-") {
			t.Errorf("deleted directory left after Close: %s", e.Name())
		}
	}
	// What a crash leaves in the trash goes at the next start.
	if err := os.MkdirAll(filepath.Join(root, ".trash-"+c.ID+"-x", "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStore(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, ".trash-"+c.ID+"-x")); !os.IsNotExist(err) {
		t.Errorf("trash survived NewStore: %v", err)
	}
}

func TestStatusString(t *testing.T) {
	now := time.Now()
	c := &Container{State: State{Status: StatusExited, ExitCode: 3, FinishedAt: now.Add(-5 * time.Second)}}
	if got := c.StatusString(now); got != "Exited (3) 5 seconds ago" {
		t.Errorf("exited: %q", got)
	}
	c.State = State{Status: StatusRunning, StartedAt: now.Add(-2 * time.Minute)}
	if got := c.StatusString(now); got != "Up 2 minutes" {
		t.Errorf("running: %q", got)
	}
	c.State = State{Status: StatusCreated}
	if got := c.StatusString(now); got != "Created" {
		t.Errorf("created: %q", got)
	}
}

// Records of containers removed at exit are written without fsync; what a
// host crash can make of one (an empty file) is an orphan, not an error.
func TestUnsyncedRecords(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Container
		mode fsutil.Sync
		want fsutil.Sync
	}{
		{"kept", Container{HostConfig: &containertypes.HostConfig{}}, fsutil.SyncAll, fsutil.SyncAll},
		{"kept state", Container{HostConfig: &containertypes.HostConfig{}}, fsutil.SyncData, fsutil.SyncData},
		{"no host config", Container{}, fsutil.SyncAll, fsutil.SyncAll},
		{"--rm", Container{HostConfig: &containertypes.HostConfig{AutoRemove: true}}, fsutil.SyncAll, fsutil.SyncNone},
		{"--rm state", Container{HostConfig: &containertypes.HostConfig{AutoRemove: true}}, fsutil.SyncData, fsutil.SyncNone},
		{"build step", Container{HostConfig: &containertypes.HostConfig{}, Ephemeral: true}, fsutil.SyncAll, fsutil.SyncNone},
	} {
		if got := syncMode(&tc.c, tc.mode); got != tc.want {
			t.Errorf("%s: syncMode = %v, want %v", tc.name, got, tc.want)
		}
	}

	root := t.TempDir()
	s, err := NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	rm := &Container{ID: stringid.Generate(), Name: "rm", HostConfig: &containertypes.HostConfig{AutoRemove: true}}
	if err := s.Save(rm); err != nil {
		t.Fatal(err)
	}
	empty := stringid.Generate()
	if err := os.MkdirAll(filepath.Join(root, empty), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, empty, recordFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	recs, orphans, errs := s.LoadAll()
	if len(recs) != 1 || recs[0].ID != rm.ID || !recs[0].HostConfig.AutoRemove {
		t.Errorf("records: %+v", recs)
	}
	if len(orphans) != 1 || orphans[0] != empty {
		t.Errorf("orphans: %v, want the empty record's %s", orphans, empty)
	}
	if len(errs) != 0 {
		t.Errorf("errors: %v", errs)
	}
}

// The store's root spreads container directories over ext4's block groups
// (see fsutil.SpreadDirs); a root on a filesystem without inode flags is
// left alone.
func TestStoreRootHasSpreadFlag(t *testing.T) {
	root := t.TempDir()
	if _, supported := fsutil.HasSpreadFlag(root); !supported {
		t.Skipf("%s: not on ext2/3/4", root)
	}
	if _, err := NewStore(root); err != nil {
		t.Fatal(err)
	}
	if marked, _ := fsutil.HasSpreadFlag(root); !marked {
		t.Errorf("NewStore(%s) did not mark its root to spread container directories", root)
	}
}
