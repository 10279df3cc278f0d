package main

import (
	"context"
	"math"
	"testing"
)

func TestPercentile(t *testing.T) {
	cases := []struct {
		xs   []float64
		p    float64
		want float64
	}{
		{[]float64{5}, 50, 5},
		{[]float64{3, 1, 2}, 50, 2},
		{[]float64{4, 1, 3, 2}, 50, 2.5},
		{[]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 10, 1.9},
		{[]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 90, 9.1},
		{[]float64{10, 20}, 0, 10},
		{[]float64{10, 20}, 100, 20},
		{[]float64{10, 20}, 150, 20},
	}
	for _, c := range cases {
		if got := percentile(c.xs, c.p); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("percentile(%v, %v) = %v, want %v", c.xs, c.p, got, c.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of no samples should be NaN")
	}
}

func TestPercentileDoesNotReorder(t *testing.T) {
	xs := []float64{3, 1, 2}
	_ = median(xs)
	if xs[0] != 3 || xs[1] != 1 || xs[2] != 2 {
		t.Fatalf("input reordered: %v", xs)
	}
}

func TestSummarize(t *testing.T) {
	s := summarize([]float64{9, 1, 5, 3, 7})
	if s.N != 5 || s.Median != 5 || s.Min != 1 || s.Max != 9 {
		t.Fatalf("summarize = %+v", s)
	}
	if (summarize(nil) != summary{}) {
		t.Fatal("summary of no samples should be zero (JSON cannot carry NaN)")
	}
}

func TestParseList(t *testing.T) {
	got, err := parseList("podman, berth,podman", []string{"berth", "docker", "podman"})
	if err != nil || len(got) != 2 || got[0] != "berth" || got[1] != "podman" {
		t.Fatalf("parseList = %v, %v", got, err)
	}
	if _, err := parseList("rkt", []string{"berth"}); err == nil {
		t.Fatal("unknown name accepted")
	}
	if _, err := parseList(" , ", []string{"berth"}); err == nil {
		t.Fatal("empty list accepted")
	}
}

func TestRatioCell(t *testing.T) {
	if got := ratioCell(50, true, 250, true, "lower"); got != "5.00×" {
		t.Errorf("latency ratio = %s", got)
	}
	if got := ratioCell(40, true, 8, true, "higher"); got != "5.00×" {
		t.Errorf("rate ratio = %s", got)
	}
	if got := ratioCell(0, true, 8, true, "lower"); got != "–" {
		t.Errorf("zero berth value = %s", got)
	}
}

func TestMemoryAccount(t *testing.T) {
	before := map[int]procInfo{10: {PID: 10, Exe: "dockerd", StartTime: 100}, 11: {PID: 11, Exe: "containerd", StartTime: 101}}
	beforeMem := map[int]memInfo{10: {PssKiB: 40000, RssKiB: 60000}, 11: {PssKiB: 20000, RssKiB: 30000}}
	after := map[int]procInfo{
		10: {PID: 10, Exe: "dockerd", StartTime: 100},
		11: {PID: 11, Exe: "containerd", StartTime: 101},
		20: {PID: 20, Exe: "containerd-shim-runc-v2", StartTime: 200},
		21: {PID: 21, Exe: "containerd-shim-runc-v2", StartTime: 201},
	}
	afterMem := map[int]memInfo{
		10: {PssKiB: 41024, RssKiB: 62048},
		11: {PssKiB: 20000, RssKiB: 30000},
		20: {PssKiB: 2048, RssKiB: 10240},
		21: {PssKiB: 2048, RssKiB: 10240},
	}
	r := &memoryResult{N: 2, Started: 2}
	r.account(before, beforeMem, after, afterMem)
	if r.AddedPss != 4096 || r.GrownPss != 1024 || r.AddedRss != 20480 || r.GrownRss != 2048 {
		t.Fatalf("sums: %+v", r)
	}
	if r.PssMiB != 2.5 || r.RssMiB != 11 {
		t.Fatalf("per container: pss %v rss %v", r.PssMiB, r.RssMiB)
	}
	if len(r.ByExe) != 3 || r.ByExe[0].Exe != "containerd-shim-runc-v2" || r.ByExe[0].Count != 2 {
		t.Fatalf("by exe: %+v", r.ByExe)
	}
}

func TestMemoryAccountPidReuse(t *testing.T) {
	// Same pid, different start time: a new process, counted whole.
	before := map[int]procInfo{10: {PID: 10, Exe: "conmon", StartTime: 100}}
	after := map[int]procInfo{10: {PID: 10, Exe: "conmon", StartTime: 999}}
	r := &memoryResult{N: 1, Started: 1}
	r.account(before, map[int]memInfo{10: {PssKiB: 500, RssKiB: 900}}, after, map[int]memInfo{10: {PssKiB: 512, RssKiB: 1024}})
	if r.AddedPss != 512 || r.GrownPss != 0 {
		t.Fatalf("pid reuse: %+v", r)
	}
}

// fakeEngine is a base with no-op lifecycle, for the attribution logic.
type fakeEngine struct{ *base }

func (fakeEngine) Start(context.Context, string) error { return nil }
func (fakeEngine) Stop(context.Context) error          { return nil }

func TestOwnerOf(t *testing.T) {
	docker := fakeEngine{&base{name: "docker", dir: "/x/docker", ownNames: []string{"dockerd", "containerd-shim-runc-v2"}}}
	berth := fakeEngine{&base{name: "berth", dir: "/x/berth", ownNames: []string{"berth-shim"}, daemon: &daemonProc{pid: 100}}}
	saved := allEngines
	allEngines = []engine{docker, berth}
	t.Cleanup(func() { allEngines = saved })
	procs := map[int]procInfo{
		100: {PID: 100, PPID: 1, Exe: "berth"},
		101: {PID: 101, PPID: 100, Exe: "containerd"}, // a daemon's child: strong claim
		200: {PID: 200, PPID: 1, Exe: "containerd-shim-runc-v2", Cmdline: "containerd-shim-runc-v2 -address /x/berth/exec/c.sock"},
		201: {PID: 201, PPID: 1, Exe: "containerd-shim-runc-v2", Cmdline: "containerd-shim-runc-v2 -address /elsewhere"},
		202: {PID: 202, PPID: 1, Exe: "berth-shim"},
		203: {PID: 203, PPID: 1, Exe: "conmon", Cmdline: "conmon -b /x/dockerish"},
	}
	want := map[int]string{100: "berth", 101: "berth", 200: "berth", 201: "docker", 202: "berth", 203: ""}
	for pid, w := range want {
		if got := ownerOf(procs, procs[pid]); got != w {
			t.Errorf("ownerOf(%d %s) = %q, want %q", pid, procs[pid].Exe, got, w)
		}
	}
}
