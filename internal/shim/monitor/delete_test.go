package monitor

import (
	"slices"
	"sort"
	"testing"
)

func TestStateCgroupPaths(t *testing.T) {
	state := []byte(`{"id":"x","config":{"cgroups":{"path":"/a/x"},"labels":["bundle=/b"]},
"cgroup_paths":{"":"/sys/fs/cgroup/unified/a/x","memory":"/sys/fs/cgroup/memory/a/x"},"namespace_paths":{}}`)
	got, err := stateCgroupPaths(state)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	if want := []string{"/sys/fs/cgroup/memory/a/x", "/sys/fs/cgroup/unified/a/x"}; !slices.Equal(got, want) {
		t.Errorf("paths %q, want %q", got, want)
	}
	if got, err := stateCgroupPaths([]byte(`{"cgroup_paths":null}`)); err != nil || len(got) != 0 {
		t.Errorf("null paths: %q, %v", got, err)
	}
	for name, bad := range map[string]string{
		"missing":     `{"id":"x"}`,
		"outside":     `{"cgroup_paths":{"memory":"/tmp/x"}}`,
		"climbing":    `{"cgroup_paths":{"memory":"/sys/fs/cgroup/memory/../../../etc"}}`,
		"the root":    `{"cgroup_paths":{"memory":"/sys/fs/cgroup"}}`,
		"not string":  `{"cgroup_paths":{"memory":3}}`,
		"not object":  `{"cgroup_paths":["/sys/fs/cgroup/memory/x"]}`,
		"truncated":   `{"cgroup_paths":{"memory":"/sys/fs/cgr`,
		"not json at": `nope`,
	} {
		if p, err := stateCgroupPaths([]byte(bad)); err == nil {
			t.Errorf("%s: accepted, paths %q", name, p)
		}
	}
}

func FuzzStateCgroupPaths(f *testing.F) {
	f.Add([]byte(`{"cgroup_paths":{"":"/sys/fs/cgroup/unified/a"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		paths, err := stateCgroupPaths(data)
		if err != nil {
			return
		}
		for _, p := range paths {
			if len(p) <= len(cgroupRoot)+1 || p[:len(cgroupRoot)+1] != cgroupRoot+"/" {
				t.Fatalf("path %q outside the cgroup mount", p)
			}
		}
	})
}
