package main

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/oci"
	"github.com/moby/sys/mountinfo"
)

// TestCgroupMountsOverlay runs the overlay's own test in berth's build of
// opencontainers/cgroups: the v1 hierarchies found with listmount and
// statmount are the ones mountinfo lists.
func TestCgroupMountsOverlay(t *testing.T) {
	requireRuntime(t)
	out, err := exec.Command("go", "test", "-count=1", "-modfile", runtimeMod, "-run", "^TestBerthCgroupMounts$", "-v", "github.com/opencontainers/cgroups").CombinedOutput()
	if err != nil {
		t.Fatalf("go test in the cgroups overlay: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestBerthCgroupMounts") {
		t.Logf("%s", out) // skipped: a kernel without statmount options, or cgroup v2
	}
}

// cgroupView is what a container sees of its cgroup filesystem: the
// entries of /sys/fs/cgroup and, for each mount there, its mount point,
// per-mount options, type, source and super options.
const cgroupViewScript = `cd /sys/fs/cgroup && for e in *; do if [ -L "$e" ]; then echo "link $e $(readlink "$e")"; else echo "dir $e"; fi; done
awk '$5 ~ "^/sys/fs/cgroup" { sep=0; for (i=7; i<=NF; i++) if ($i == "-") { sep=i; break }; print "mount", $4, $5, $6, $(sep+1), $(sep+2), $(sep+3) }' /proc/self/mountinfo`

// TestContainerCgroupMounts checks that a container's /sys/fs/cgroup is
// a tmpfs with every v1 hierarchy of the host mounted read-only below it,
// seen from the container's cgroup namespace, and that berth-runtime's
// view is the same as runc's.
func TestContainerCgroupMounts(t *testing.T) {
	requireRuntime(t)
	if oci.DetectCgroupV2() {
		t.Skip("cgroup v2: one cgroup2 mount, not looked up through mountinfo")
	}
	hier, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"mount / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime tmpfs tmpfs rw,mode=755"}
	seen := map[string]bool{}
	for _, h := range hier {
		name := filepath.Base(h.Mountpoint)
		if filepath.Dir(h.Mountpoint) != "/sys/fs/cgroup" || seen[name] {
			continue
		}
		seen[name] = true
		// runc names the source of the systemd hierarchy after it.
		src := "cgroup"
		if name == "systemd" {
			src = "systemd"
		}
		want = append(want, "dir "+name, "mount / /sys/fs/cgroup/"+name+" ro,nosuid,nodev,noexec,relatime cgroup "+src+" "+h.VFSOptions)
	}
	if len(want) < 3 {
		t.Fatalf("no cgroup v1 hierarchies below /sys/fs/cgroup on this host: %+v", hier)
	}
	slices.Sort(want)
	views := map[string][]string{}
	for name, bin := range runtimes(t) {
		c := newCtr(t, bin, []string{"sh", "-c", cgroupViewScript}, nil)
		out, errOut, code := c.runToEnd()
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", name, code, errOut)
		}
		got := strings.Split(strings.TrimSpace(out), "\n")
		slices.Sort(got)
		views[name] = got
	}
	if got := views["berth"]; !slices.Equal(got, want) {
		t.Errorf("berth-runtime's container sees\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if runc, ok := views["runc"]; ok && !slices.Equal(runc, views["berth"]) {
		t.Errorf("runc's container sees\n%s\nberth-runtime's\n%s", strings.Join(runc, "\n"), strings.Join(views["berth"], "\n"))
	}
}
