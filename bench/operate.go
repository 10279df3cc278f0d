package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The operate jobs (issue 7):
//
//	(d) exec latency: `exec CONTAINER true`, timed around the CLI, the
//	    engines taking turns as in (a);
//	(e) health-check load: N idle containers each running `--health-cmd
//	    true` every second; the daemon's CPU (its own and its reaped
//	    children's: the runtime and probe processes) over a window, and its
//	    memory growth per container;
//	(f) `stats --no-stream` time with those N containers.

// healthResult is job (e) for one engine.
type healthResult struct {
	N                int       `json:"n"`
	WindowS          float64   `json:"window_s"`
	DaemonCPUPercent float64   `json:"daemon_cpu_percent_of_a_core"`
	EngineCPUPercent float64   `json:"engine_cpu_percent_of_a_core"`
	DaemonPssBefore  int64     `json:"daemon_pss_kib_before"`
	DaemonPssAfter   int64     `json:"daemon_pss_kib_after"`
	PerContainerKiB  float64   `json:"daemon_pss_kib_per_container"`
	StatsMs          summary   `json:"stats_no_stream_ms"`
	StatsSamplesMs   []float64 `json:"stats_no_stream_samples_ms"`
	Errors           []string  `json:"errors,omitempty"`
}

// daemonPID is the engine's daemon process, 0 when it has none.
func daemonPID(e engine) int {
	switch x := e.(type) {
	case *berthEngine:
		if x.daemon != nil {
			return x.daemon.pid
		}
	case *dockerEngine:
		if x.daemon != nil {
			return x.daemon.pid
		}
	}
	return 0
}

// cpuTicks is a process's CPU time in clock ticks, with that of the
// children it has reaped.
func cpuTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat of %d: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	// utime, stime, cutime, cstime are fields 14–17 (f[11]–f[14]).
	if len(f) < 15 {
		return 0, fmt.Errorf("stat of %d: short", pid)
	}
	var total uint64
	for _, v := range f[11:15] {
		n, _ := strconv.ParseUint(v, 10, 64)
		total += n
	}
	return total, nil
}

// jobExecLatency is job (d).
func jobExecLatency(ctx context.Context, es []engine, warmup, runs int) map[string]*latencyResult {
	res := map[string]*latencyResult{}
	ids := map[string]string{}
	for _, e := range es {
		r := &latencyResult{}
		res[e.Name()] = r
		args := runArgs(e, "-d", "--network", "none", "busybox", "sleep", "100000")
		out := cli(ctx, e, args...)
		if out.Err != nil {
			r.Errors = append(r.Errors, out.Error(e.Name(), args).Error())
			continue
		}
		ids[e.Name()] = strings.TrimSpace(out.Stdout)
		r.Command = []string{e.Name(), "exec", "<container>", "true"}
	}
	defer func() {
		for _, e := range es {
			if id := ids[e.Name()]; id != "" {
				cli(context.Background(), e, "rm", "-f", id)
			}
			res[e.Name()].Ms = summarize(res[e.Name()].SamplesMs)
		}
	}()
	for round := 0; round < warmup+runs && ctx.Err() == nil; round++ {
		for k := range es {
			e := es[(round+k)%len(es)]
			id := ids[e.Name()]
			if id == "" {
				continue
			}
			r := res[e.Name()]
			start := time.Now()
			out := cli(ctx, e, "exec", id, "true")
			d := time.Since(start)
			if out.Err != nil {
				r.Errors = append(r.Errors, out.Error(e.Name(), []string{"exec", id, "true"}).Error())
				continue
			}
			if round < warmup {
				r.WarmupMs = append(r.WarmupMs, ms(d))
			} else {
				r.SamplesMs = append(r.SamplesMs, ms(d))
			}
		}
	}
	return res
}

// jobHealth is jobs (e) and (f) for one engine.
func jobHealth(ctx context.Context, e engine, n int, settle, window time.Duration, statsRuns int) *healthResult {
	r := &healthResult{N: n, WindowS: window.Seconds()}
	pid := daemonPID(e)
	if pid == 0 {
		r.Errors = append(r.Errors, "no daemon process to measure")
		return r
	}
	if err := ensureNoContainers(ctx, e); err != nil {
		r.Errors = append(r.Errors, err.Error())
		return r
	}
	sleepCtx(ctx, settle)
	if m, err := readMem(pid); err == nil {
		r.DaemonPssBefore = m.PssKiB
	}
	args := runArgs(e, "-d", "--network", "none", "--health-cmd", "true", "--health-interval", "1s", "busybox", "sleep", "100000")
	var ids []string
	for i := 0; i < n && ctx.Err() == nil; i++ {
		out := cli(ctx, e, args...)
		if out.Err != nil {
			r.Errors = append(r.Errors, out.Error(e.Name(), args).Error())
			continue
		}
		ids = append(ids, strings.TrimSpace(out.Stdout))
	}
	defer func() {
		if len(ids) > 0 {
			cli(context.Background(), e, append([]string{"rm", "-f"}, ids...)...)
			reapOrphans()
		}
	}()
	sleepCtx(ctx, settle)
	engineTicks := func() map[int][2]uint64 {
		out := map[int][2]uint64{}
		procs, _, err := engineProcs(e)
		if err != nil {
			return out
		}
		for p, info := range procs {
			if t, err := cpuTicks(p); err == nil {
				out[p] = [2]uint64{info.StartTime, t}
			}
		}
		return out
	}
	e0 := engineTicks()
	t0, err := cpuTicks(pid)
	if err != nil {
		r.Errors = append(r.Errors, err.Error())
		return r
	}
	start := time.Now()
	sleepCtx(ctx, window)
	t1, err := cpuTicks(pid)
	if err != nil {
		r.Errors = append(r.Errors, err.Error())
		return r
	}
	e1 := engineTicks()
	elapsed := time.Since(start).Seconds()
	r.DaemonCPUPercent = float64(t1-t0) / 100 / elapsed * 100
	// The whole engine: every process of it alive at both ends (daemons,
	// shims, containerd), with the children they reaped (runtimes, probes).
	var total uint64
	for p, v1 := range e1 {
		if v0, ok := e0[p]; ok && v0[0] == v1[0] && v1[1] >= v0[1] {
			total += v1[1] - v0[1]
		}
	}
	r.EngineCPUPercent = float64(total) / 100 / elapsed * 100
	if m, err := readMem(pid); err == nil {
		r.DaemonPssAfter = m.PssKiB
		if len(ids) > 0 {
			r.PerContainerKiB = float64(r.DaemonPssAfter-r.DaemonPssBefore) / float64(len(ids))
		}
	}
	for i := 0; i < statsRuns && ctx.Err() == nil; i++ {
		s := time.Now()
		out := cli(ctx, e, "stats", "--no-stream")
		if out.Err != nil {
			r.Errors = append(r.Errors, out.Error(e.Name(), []string{"stats", "--no-stream"}).Error())
			continue
		}
		r.StatsSamplesMs = append(r.StatsSamplesMs, ms(time.Since(s)))
	}
	r.StatsMs = summarize(r.StatsSamplesMs)
	return r
}

// measureOperate runs the selected operate jobs.
func measureOperate(ctx context.Context, rep *report, jobs []string, warmup, runs, n int, settle, window time.Duration) {
	has := func(j string) bool {
		for _, x := range jobs {
			if x == j {
				return true
			}
		}
		return false
	}
	if has("d") && ctx.Err() == nil {
		slog.Info("job (d): exec latency", "engines", len(activeEngines), "warmup", warmup, "runs", runs)
		rep.Exec = jobExecLatency(ctx, activeEngines, warmup, runs)
	}
	if (has("e") || has("f")) && ctx.Err() == nil {
		rep.Health = map[string]*healthResult{}
		for _, e := range activeEngines {
			if e.Name() == "podman" || ctx.Err() != nil {
				continue // podman runs health checks from systemd timers only
			}
			slog.Info("jobs (e, f): health-check load and stats", "engine", e.Name(), "n", n)
			rep.Health[e.Name()] = jobHealth(ctx, e, n, settle, window, 5)
		}
	}
}

// printOperate prints the operate jobs' table.
func (r *report) printOperate(w io.Writer) {
	if len(r.Exec) > 0 {
		fmt.Fprintf(w, "\n(d) exec latency, `exec CONTAINER true`, ms\n%-8s %8s %8s %8s %6s\n", "engine", "median", "p10", "p90", "n")
		for _, n := range r.Config.Engines {
			if x := r.Exec[n]; x != nil {
				fmt.Fprintf(w, "%-8s %8.1f %8.1f %8.1f %6d\n", n, x.Ms.Median, x.Ms.P10, x.Ms.P90, x.Ms.N)
			}
		}
		if b, d := r.Exec["berth"], r.Exec["docker"]; b != nil && d != nil && d.Ms.Median > 0 {
			fmt.Fprintf(w, "berth/docker exec median: %.2f (target ≤ 0.33)\n", b.Ms.Median/d.Ms.Median)
		}
	}
	if len(r.Health) > 0 {
		fmt.Fprintf(w, "\n(e) N containers, health check every 1s: CPU in %% of a core (daemon with its reaped children; whole engine), daemon PSS growth; (f) stats --no-stream\n%-8s %5s %11s %11s %14s %14s\n", "engine", "N", "daemon CPU", "engine CPU", "KiB/container", "stats ms (med)")
		for _, n := range r.Config.Engines {
			if x := r.Health[n]; x != nil {
				fmt.Fprintf(w, "%-8s %5d %11.2f %11.2f %14.1f %14.1f\n", n, x.N, x.DaemonCPUPercent, x.EngineCPUPercent, x.PerContainerKiB, x.StatsMs.Median)
			}
		}
	}
}
