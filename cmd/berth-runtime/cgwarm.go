package main

import (
	"path/filepath"
	"time"

	"github.com/berth-engine/berth/internal/cgwarm"
)

// cgWarmMax bounds the warming: create is done well before.
const cgWarmMax = 100 * time.Millisecond

// startCgroupWarm keeps the cgroup migration lock warm (package cgwarm)
// while berth-runtime parses the spec, starts its child and moves it into
// its cgroups, and returns the function that stops it (call it once the
// container's processes are in their cgroups). With a target (the new
// container's cgroup, relative to the hierarchy root), it also stops by
// itself as soon as that cgroup has a process: the writes that needed the
// warm lock are done. The daemon warms the same lock from the moment a
// create or start request arrives; this covers runtimes started otherwise.
func startCgroupWarm(target string) (stop func()) {
	var stopWhen func() bool
	if root, _ := cgwarm.OwnCgroup(); root != "" && filepath.IsAbs(target) {
		procs := filepath.Join(root, target, "cgroup.procs")
		stopWhen = func() bool { return cgwarm.HasProcess(procs) }
	}
	w := cgwarm.New(stopWhen)
	w.Keep(cgWarmMax)
	return w.Stop
}
