package cgroups

// Copied into berth's build of opencontainers/cgroups by
// scripts/runtime-overlay.sh next to berth_mounts_linux.go, and run by
// cmd/berth-runtime's TestCgroupMountsOverlay.

import (
	"reflect"
	"testing"

	"github.com/moby/sys/mountinfo"
)

// TestBerthCgroupMounts compares the cgroup mounts found below
// /sys/fs/cgroup with what mountinfo lists on this host.
func TestBerthCgroupMounts(t *testing.T) {
	if IsCgroup2UnifiedMode() {
		t.Skip("cgroup v2 only: no v1 hierarchies to find")
	}
	got, ok := berthCgroupMounts()
	if !ok {
		t.Skip("no listmount/statmount (Linux 6.11+), or v1 hierarchies outside /sys/fs/cgroup")
	}
	want, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || len(got) != len(want) {
		t.Fatalf("found %d cgroup mounts, mountinfo has %d", len(got), len(want))
	}
	for i := range want {
		w := *want[i]
		w.Optional = "" // propagation: not filled in
		if !reflect.DeepEqual(*got[i], w) {
			t.Errorf("mount %d:\n got  %+v\n want %+v", i, *got[i], w)
		}
	}
	viaFilter, err := berthGetMounts(mountinfo.FSTypeFilter("cgroup"))
	if err != nil || !reflect.DeepEqual(viaFilter, got) {
		t.Errorf("berthGetMounts = %v, %v", viaFilter, err)
	}
	mounts, err := GetCgroupMounts(false)
	if err != nil || len(mounts) != len(want) {
		t.Errorf("GetCgroupMounts(false) = %+v, %v", mounts, err)
	}
}
