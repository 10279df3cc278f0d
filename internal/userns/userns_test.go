package userns

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	mobyuser "github.com/moby/sys/user"
)

func withSubIDs(t *testing.T, subuid, subgid string) {
	t.Helper()
	dir := t.TempDir()
	u, g := filepath.Join(dir, "subuid"), filepath.Join(dir, "subgid")
	if err := os.WriteFile(u, []byte(subuid), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g, []byte(subgid), 0o644); err != nil {
		t.Fatal(err)
	}
	oldU, oldG := SubuidFile, SubgidFile
	SubuidFile, SubgidFile = u, g
	t.Cleanup(func() { SubuidFile, SubgidFile = oldU, oldG })
}

func TestSetup(t *testing.T) {
	withSubIDs(t, "other:100000:65536\nnobody:200000:1000\n65534:300000:500\n", "nogroup:400000:2000\n")
	wantU := []mobyuser.IDMap{{ID: 0, ParentID: 200000, Count: 1000}, {ID: 1000, ParentID: 300000, Count: 500}}
	wantG := []mobyuser.IDMap{{ID: 0, ParentID: 400000, Count: 2000}}
	for _, spec := range []string{"nobody:nogroup", "65534:65534", "nobody:65534"} {
		r, err := Setup(spec, Options{})
		if err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		if !reflect.DeepEqual(r.Mapping.UIDMaps, wantU) || !reflect.DeepEqual(r.Mapping.GIDMaps, wantG) {
			t.Errorf("%s: mapping %+v", spec, r.Mapping)
		}
		if r.Dir() != "200000.400000" {
			t.Errorf("%s: dir %s", spec, r.Dir())
		}
		if m := r.UIDMappings(); len(m) != 2 || m[1].ContainerID != 1000 || m[1].HostID != 300000 || m[1].Size != 500 {
			t.Errorf("%s: spec mappings %+v", spec, m)
		}
	}
	for spec, want := range map[string]string{
		"nobody":         `no subordinate gid ranges for group "nobody"`, // the group defaults to the user's name
		"root":           "remapping to root",
		"no-such-user-x": "unknown user",
		"nobody:nosuchg": "unknown group",
		"":               "empty value",
	} {
		if _, err := Setup(spec, Options{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Setup(%q) = %v, want %q", spec, err, want)
		}
	}
}

func TestFreeRange(t *testing.T) {
	for _, tc := range []struct {
		file string
		want int64
	}{
		{"", 100000},
		{"a:100000:65536\n", 165536},
		{"a:300000:65536\n", 100000},
		{"a:100000:65536\nb:165536:65536\nc:400000:10\n", 231072},
		{"a:150000:10\n", 150010},
		{"a:1000:10\n", 100000},
	} {
		p := filepath.Join(t.TempDir(), "subuid")
		if err := os.WriteFile(p, []byte(tc.file), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := freeRange(p, 65536)
		if err != nil || got != tc.want {
			t.Errorf("freeRange(%q) = %d, %v; want %d", tc.file, got, err, tc.want)
		}
	}
	if got, err := freeRange(filepath.Join(t.TempDir(), "missing"), 65536); err != nil || got != 100000 {
		t.Errorf("missing file: %d %v", got, err)
	}
}
