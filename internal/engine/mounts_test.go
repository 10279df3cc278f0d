package engine

import (
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/container"
	"github.com/containerd/errdefs"
	mounttypes "github.com/moby/moby/api/types/mount"
)

func TestParseBind(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want container.MountPoint
		err  string
	}{
		{spec: "data:/d", want: container.MountPoint{Type: "volume", Name: "data", Destination: "/d", RW: true, CopyData: true}},
		{spec: "data:/d:ro", want: container.MountPoint{Type: "volume", Name: "data", Destination: "/d", Mode: "ro", CopyData: true}},
		{spec: "data:/d:nocopy", want: container.MountPoint{Type: "volume", Name: "data", Destination: "/d", Mode: "nocopy", RW: true}},
		{spec: "/h:/d", want: container.MountPoint{Type: "bind", Source: "/h", Destination: "/d", RW: true, Propagation: "rprivate"}},
		{spec: "/h/../h2/:/d/:rw,Z,rshared", want: container.MountPoint{Type: "bind", Source: "/h2", Destination: "/d", Mode: "rw,Z,rshared", RW: true, Propagation: "rshared"}},
		{spec: "rel/p:/d", err: "invalid characters"},
		{spec: "data:rel", err: "must be absolute"},
		{spec: "data", err: "invalid volume specification"},
		{spec: "a:/b:c:d", err: "invalid volume specification"},
		{spec: "data:/d:ro,rw", err: "invalid mode"},
		{spec: "data:/d:rshared", err: "invalid mode"},
		{spec: "/h:/d:bogus", err: "invalid mode"},
		{spec: ":/d", err: "invalid volume specification"},
	} {
		got, err := parseBind(tc.spec)
		if tc.err != "" {
			if err == nil || !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseBind(%q) error = %v, want %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil || got.Type != tc.want.Type || got.Name != tc.want.Name || got.Source != tc.want.Source ||
			got.Destination != tc.want.Destination || got.RW != tc.want.RW || got.Mode != tc.want.Mode ||
			got.Propagation != tc.want.Propagation || got.CopyData != tc.want.CopyData {
			t.Errorf("parseBind(%q) = %+v, %v; want %+v", tc.spec, got, err, tc.want)
		}
	}
}

func TestParseMount(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		m   mounttypes.Mount
		err string
	}{
		{m: mounttypes.Mount{Type: "bind", Source: dir, Target: "/x", BindOptions: &mounttypes.BindOptions{Propagation: "rslave"}}},
		{m: mounttypes.Mount{Type: "bind", Source: dir + "/missing", Target: "/x"}, err: "bind source path does not exist"},
		{m: mounttypes.Mount{Type: "bind", Source: "rel", Target: "/x"}, err: "must be absolute"},
		{m: mounttypes.Mount{Type: "bind", Target: "/x"}, err: "Source must not be empty"},
		{m: mounttypes.Mount{Type: "volume", Source: "v1", Target: "/x", VolumeOptions: &mounttypes.VolumeOptions{NoCopy: true}}},
		{m: mounttypes.Mount{Type: "volume", Source: "bad/x", Target: "/x"}, err: "invalid characters"},
		{m: mounttypes.Mount{Type: "volume", Target: "x"}, err: "must be absolute"},
		{m: mounttypes.Mount{Type: "tmpfs", Target: "/t", TmpfsOptions: &mounttypes.TmpfsOptions{SizeBytes: 1 << 20, Mode: 0o1777}}},
		{m: mounttypes.Mount{Type: "tmpfs", Source: "x", Target: "/t"}, err: "Source must not be specified"},
		{m: mounttypes.Mount{Type: "weird", Target: "/t"}, err: "mount type unknown"},
	} {
		mp, err := parseMount(tc.m)
		if tc.err == "" {
			if err != nil {
				t.Errorf("parseMount(%+v): %v", tc.m, err)
			}
			if tc.m.Type == "tmpfs" && (len(mp.TmpfsOptions) != 2 || mp.TmpfsOptions[1] != "mode=1777") {
				t.Errorf("tmpfs options: %v", mp.TmpfsOptions)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("parseMount(%+v) = %v, want %q", tc.m, err, tc.err)
		}
	}
}

func FuzzParseBind(f *testing.F) {
	for _, s := range []string{"data:/d", "/h:/d:ro,Z", "a:b:c", "::", "x:/y:rshared,nocopy"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		mp, err := parseBind(spec)
		if err == nil && (mp.Destination == "" || mp.Destination[0] != '/') {
			t.Fatalf("accepted %q with destination %q", spec, mp.Destination)
		}
	})
}
