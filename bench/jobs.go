package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// cmdTimeout bounds one CLI invocation so that a wedged engine cannot hang
// the run; it is not a measurement threshold.
const cmdTimeout = 2 * time.Minute

// runArgs is `run <engine flags> <args>`.
func runArgs(e engine, args ...string) []string {
	return append(append([]string{"run"}, e.RunFlags()...), args...)
}

// cli runs one CLI invocation of e with the per-command timeout.
func cli(ctx context.Context, e engine, args ...string) cmdResult {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	return runCmd(e.CLI(ctx, args...), nil)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// latencyResult is job (a) for one engine.
type latencyResult struct {
	Command   []string  `json:"command"`
	WarmupMs  []float64 `json:"warmup_ms"`
	SamplesMs []float64 `json:"samples_ms"`
	Ms        summary   `json:"ms"`
	Errors    []string  `json:"errors,omitempty"`
}

// jobLatency is job (a): `run --rm --network none busybox true`, timed
// around the whole CLI process, warmup runs then runs measured ones. The
// engines take turns run by run (rotating who goes first), so that the
// host's noise — other work on a shared machine — falls on all of them alike
// instead of on whichever engine happened to be measured during a burst.
func jobLatency(ctx context.Context, es []engine, warmup, runs int) map[string]*latencyResult {
	res := map[string]*latencyResult{}
	failures := map[string]int{}
	for _, e := range es {
		res[e.Name()] = &latencyResult{Command: append([]string{e.Name()}, runArgs(e, "--rm", "--network", "none", "busybox", "true")...)}
	}
	defer func() { // also when interrupted: partial samples are still samples
		for _, r := range res {
			r.Ms = summarize(r.SamplesMs)
		}
	}()
	for round := 0; round < warmup+runs; round++ {
		for k := range es {
			if ctx.Err() != nil {
				return res
			}
			e := es[(round+k)%len(es)]
			r := res[e.Name()]
			if failures[e.Name()] >= 5 {
				continue // gave up on it; the errors say why
			}
			args := runArgs(e, "--rm", "--network", "none", "busybox", "true")
			out := cli(ctx, e, args...)
			reapOrphans()
			if out.Err != nil {
				if ctx.Err() != nil {
					return res
				}
				failures[e.Name()]++
				r.Errors = append(r.Errors, out.Error(e.Name(), args).Error())
				slog.Warn("latency run failed", "engine", e.Name(), "err", out.Error(e.Name(), args))
				continue
			}
			failures[e.Name()] = 0
			if round < warmup {
				r.WarmupMs = append(r.WarmupMs, ms(out.Dur))
			} else {
				r.SamplesMs = append(r.SamplesMs, ms(out.Dur))
			}
		}
	}
	return res
}

// throughputResult is job (b) for one engine.
type throughputResult struct {
	Command     []string  `json:"command"`
	N           int       `json:"n"`
	Parallel    int       `json:"parallel"`
	Started     int       `json:"started"`
	ElapsedS    float64   `json:"elapsed_s"`
	PerSecond   float64   `json:"containers_per_second"`
	StartMs     []float64 `json:"start_cli_ms"` // each `run -d`, in completion order
	StartCLIMs  summary   `json:"start_cli_summary_ms"`
	RemoveS     float64   `json:"rm_s"`
	RemoveCount int       `json:"rm_count"`
	Errors      []string  `json:"errors,omitempty"`
}

// jobThroughput is job (b): n × `run -d --network none busybox sleep 1000`
// issued from `parallel` concurrent CLI processes; the rate is containers
// started per second of wall time from the first start to the last CLI
// exit. Then one `rm -f` of them all, timed the same way.
func jobThroughput(ctx context.Context, e engine, n, parallel int) *throughputResult {
	args := runArgs(e, "-d", "--network", "none", "busybox", "sleep", "1000")
	r := &throughputResult{Command: append([]string{e.Name()}, args...), N: n, Parallel: parallel}
	if err := ensureNoContainers(ctx, e); err != nil {
		r.Errors = append(r.Errors, err.Error())
		return r
	}
	var (
		mu  sync.Mutex
		ids []string
		wg  sync.WaitGroup
	)
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	t0 := time.Now()
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				if ctx.Err() != nil {
					return
				}
				out := cli(ctx, e, args...)
				mu.Lock()
				if out.Err != nil {
					r.Errors = append(r.Errors, out.Error(e.Name(), args).Error())
				} else {
					ids = append(ids, strings.TrimSpace(out.Stdout))
					r.StartMs = append(r.StartMs, ms(out.Dur))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	reapOrphans()
	r.Started = len(ids)
	r.ElapsedS = elapsed.Seconds()
	if r.ElapsedS > 0 {
		r.PerSecond = float64(r.Started) / r.ElapsedS
	}
	r.StartCLIMs = summarize(r.StartMs)
	if ctx.Err() != nil || len(ids) == 0 {
		return r
	}
	rmArgs := append([]string{"rm", "-f"}, ids...)
	out := cli(ctx, e, rmArgs...)
	reapOrphans()
	if out.Err != nil {
		r.Errors = append(r.Errors, out.Error(e.Name(), []string{"rm", "-f", fmt.Sprintf("<%d ids>", len(ids))}).Error())
	} else {
		r.RemoveS = out.Dur.Seconds()
		r.RemoveCount = len(ids)
	}
	if err := ensureNoContainers(ctx, e); err != nil {
		r.Errors = append(r.Errors, err.Error())
	}
	return r
}

// ensureNoContainers makes sure a job starts from (and leaves) an engine
// without containers: a leftover would distort the next job.
func ensureNoContainers(ctx context.Context, e engine) error {
	out := cli(ctx, e, "ps", "-aq")
	if out.Err != nil {
		return out.Error(e.Name(), []string{"ps", "-aq"})
	}
	ids := strings.Fields(out.Stdout)
	if len(ids) == 0 {
		return nil
	}
	slog.Warn("removing leftover containers", "engine", e.Name(), "count", len(ids))
	rm := cli(ctx, e, append([]string{"rm", "-f"}, ids...)...)
	reapOrphans()
	if rm.Err != nil {
		return rm.Error(e.Name(), []string{"rm", "-f", "<leftovers>"})
	}
	return nil
}

// memProc is one process counted in job (c).
type memProc struct {
	PID    int      `json:"pid"`
	Exe    string   `json:"exe"`
	Kind   string   `json:"kind"` // "added" (new per container) or "grown" (existed before: daemon growth)
	Before *memInfo `json:"before,omitempty"`
	After  memInfo  `json:"after"`
}

// memoryResult is job (c) for one engine.
type memoryResult struct {
	N         int       `json:"n"`
	Started   int       `json:"started"`
	SettleS   float64   `json:"settle_s"`
	PssMiB    float64   `json:"pss_mib_per_container"`
	RssMiB    float64   `json:"rss_mib_per_container"`
	AddedPss  int64     `json:"added_pss_kib"`  // sum over new processes
	AddedRss  int64     `json:"added_rss_kib"`  //
	GrownPss  int64     `json:"grown_pss_kib"`  // sum of after−before over pre-existing ones
	GrownRss  int64     `json:"grown_rss_kib"`  //
	ByExe     []exeSum  `json:"by_exe"`         // the same, per executable
	Processes []memProc `json:"processes"`      // every process counted
	Excluded  []memProc `json:"excluded_other"` // new processes below the runner that no engine claims
	Errors    []string  `json:"errors,omitempty"`
}

// exeSum is job (c)'s total for one executable name.
type exeSum struct {
	Exe    string `json:"exe"`
	Kind   string `json:"kind"`
	Count  int    `json:"count"`
	PssKiB int64  `json:"pss_kib"`
	RssKiB int64  `json:"rss_kib"`
}

// engineProcs snapshots the processes below the runner that e owns, in the
// runner's pid namespace (the containers' own processes, busybox sleep, are
// in their own pid namespaces and are never counted), with their memory.
func engineProcs(e engine) (map[int]procInfo, map[int]memInfo, error) {
	procs, err := listProcs()
	if err != nil {
		return nil, nil, err
	}
	selfNS, _ := os.Readlink("/proc/self/ns/pid")
	self := os.Getpid()
	owned := map[int]procInfo{}
	mem := map[int]memInfo{}
	for pid, p := range procs {
		if pid == self || p.State == 'Z' || p.PidNS != selfNS || !descendsFrom(procs, pid, self) || ownerOf(procs, p) != e.Name() {
			continue
		}
		m, err := readMem(pid)
		if err != nil {
			continue // exited meanwhile
		}
		owned[pid], mem[pid] = p, m
	}
	return owned, mem, nil
}

// jobMemory is job (c): start n idle containers, then add up what the
// engine added for them: every new process it owns (shims, conmons) plus
// the growth of the ones that were already there (daemons), in PSS and RSS
// from /proc/PID/smaps_rollup, divided by n.
func jobMemory(ctx context.Context, e engine, n int, settle time.Duration) *memoryResult {
	r := &memoryResult{N: n, SettleS: settle.Seconds()}
	if err := ensureNoContainers(ctx, e); err != nil {
		r.Errors = append(r.Errors, err.Error())
		return r
	}
	// Warm up first, so that one-time costs of the first container (lazy
	// initialisation in a daemon, a shim binary paged in) do not count as
	// per-container memory; containers that are gone again leave nothing.
	warm := runArgs(e, "--rm", "--network", "none", "busybox", "true")
	for i := 0; i < 3 && ctx.Err() == nil; i++ {
		if out := cli(ctx, e, warm...); out.Err != nil {
			r.Errors = append(r.Errors, out.Error(e.Name(), warm).Error())
		}
	}
	sleepCtx(ctx, settle)
	reapOrphans()
	before, beforeMem, err := engineProcs(e)
	if err != nil {
		r.Errors = append(r.Errors, err.Error())
		return r
	}
	args := runArgs(e, "-d", "--network", "none", "busybox", "sleep", "1000")
	var ids []string
	for i := 0; i < n && ctx.Err() == nil; i++ {
		out := cli(ctx, e, args...)
		if out.Err != nil {
			r.Errors = append(r.Errors, out.Error(e.Name(), args).Error())
			continue
		}
		ids = append(ids, strings.TrimSpace(out.Stdout))
	}
	r.Started = len(ids)
	sleepCtx(ctx, settle)
	reapOrphans()
	if ctx.Err() != nil {
		return r
	}
	after, afterMem, err := engineProcs(e)
	if err != nil {
		r.Errors = append(r.Errors, err.Error())
	} else {
		r.account(before, beforeMem, after, afterMem)
		r.Excluded = unclaimed(before)
	}
	if len(ids) > 0 {
		out := cli(ctx, e, append([]string{"rm", "-f"}, ids...)...)
		reapOrphans()
		if out.Err != nil {
			r.Errors = append(r.Errors, out.Error(e.Name(), []string{"rm", "-f", "<ids>"}).Error())
		}
	}
	return r
}

// account fills in the sums from the two snapshots. A process counts as the
// same one in both when pid and start time match.
func (r *memoryResult) account(before map[int]procInfo, beforeMem map[int]memInfo, after map[int]procInfo, afterMem map[int]memInfo) {
	byExe := map[[2]string]*exeSum{}
	for pid, p := range after {
		mp := memProc{PID: pid, Exe: p.Exe, After: afterMem[pid], Kind: "added"}
		if b, ok := before[pid]; ok && b.StartTime == p.StartTime {
			bm := beforeMem[pid]
			mp.Kind, mp.Before = "grown", &bm
			r.GrownPss += mp.After.PssKiB - bm.PssKiB
			r.GrownRss += mp.After.RssKiB - bm.RssKiB
		} else {
			r.AddedPss += mp.After.PssKiB
			r.AddedRss += mp.After.RssKiB
		}
		r.Processes = append(r.Processes, mp)
		k := [2]string{p.Exe, mp.Kind}
		s := byExe[k]
		if s == nil {
			s = &exeSum{Exe: p.Exe, Kind: mp.Kind}
			byExe[k] = s
		}
		s.Count++
		if mp.Before != nil {
			s.PssKiB += mp.After.PssKiB - mp.Before.PssKiB
			s.RssKiB += mp.After.RssKiB - mp.Before.RssKiB
		} else {
			s.PssKiB += mp.After.PssKiB
			s.RssKiB += mp.After.RssKiB
		}
	}
	for _, s := range byExe {
		r.ByExe = append(r.ByExe, *s)
	}
	sort.Slice(r.ByExe, func(i, j int) bool {
		if r.ByExe[i].Kind != r.ByExe[j].Kind {
			return r.ByExe[i].Kind < r.ByExe[j].Kind
		}
		return r.ByExe[i].Exe < r.ByExe[j].Exe
	})
	sort.Slice(r.Processes, func(i, j int) bool { return r.Processes[i].PID < r.Processes[j].PID })
	if r.Started > 0 {
		r.PssMiB = float64(r.AddedPss+r.GrownPss) / 1024 / float64(r.Started)
		r.RssMiB = float64(r.AddedRss+r.GrownRss) / 1024 / float64(r.Started)
	}
}

// unclaimed lists new processes below the runner, in its pid namespace,
// that no engine claims: normally none. They are reported, not counted, so
// that a process the attribution missed shows up in the JSON.
func unclaimed(before map[int]procInfo) []memProc {
	procs, err := listProcs()
	if err != nil {
		return nil
	}
	selfNS, _ := os.Readlink("/proc/self/ns/pid")
	self := os.Getpid()
	var out []memProc
	for pid, p := range procs {
		if pid == self || p.State == 'Z' || p.PidNS != selfNS || !descendsFrom(procs, pid, self) || children.has(pid) {
			continue
		}
		if _, ok := before[pid]; ok {
			continue
		}
		if ownerOf(procs, p) != "" {
			continue
		}
		m, err := readMem(pid)
		if err != nil {
			continue
		}
		out = append(out, memProc{PID: pid, Exe: p.Exe, Kind: "unclaimed", After: m})
	}
	return out
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
