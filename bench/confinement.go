package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// confinementResult is job (s) for one engine: the cost of the default
// confinement (docker's seccomp profile and capability set) against
// --privileged (no filter, all capabilities).
type confinementResult struct {
	// DefaultMs and PrivilegedMs: `run --rm --network none [--privileged]
	// busybox true`, timed around the CLI, the two taking turns run by run.
	DefaultMs    []float64 `json:"default_ms"`
	PrivilegedMs []float64 `json:"privileged_ms"`
	Default      summary   `json:"default_summary_ms"`
	Privileged   summary   `json:"privileged_summary_ms"`
	// DiffMs are the paired differences, default − privileged, of the two
	// runs of each round (back to back, so a burst of the machine's noise
	// mostly hits both): their median is the cost of confinement.
	DiffMs []float64 `json:"paired_diff_ms"`
	Diff   summary   `json:"paired_diff_summary_ms"`
	// PrivilegedFlags is what the second variant ran with: --privileged,
	// or, where the engine cannot start a privileged container on this
	// host (dockerd asks for capabilities root lacks here), the closest
	// it can: no seccomp filter, no masked paths.
	PrivilegedFlags []string `json:"privileged_flags"`
	// SeccompNs and UnconfinedNs: ns per getpid+open+close round of the
	// sysloop program (its fastest batch), with the default filter and
	// with --security-opt seccomp=unconfined (same capabilities);
	// GetpidNs the same for getpid alone.
	SeccompNs          []float64 `json:"seccomp_ns_per_round"`
	UnconfinedNs       []float64 `json:"unconfined_ns_per_round"`
	SeccompGetpidNs    []float64 `json:"seccomp_getpid_ns"`
	UnconfinedGetpidNs []float64 `json:"unconfined_getpid_ns"`
	Seccomp            summary   `json:"seccomp_summary_ns"`
	Unconfined         summary   `json:"unconfined_summary_ns"`
	SeccompGetpid      summary   `json:"seccomp_getpid_summary_ns"`
	UnconfinedGetpid   summary   `json:"unconfined_getpid_summary_ns"`
	SysloopRounds      int       `json:"sysloop_rounds"`
	Errors             []string  `json:"errors,omitempty"`
	consecutiveErr     int
}

// buildSysloop compiles bench/sysloop (static) into dir.
func buildSysloop(ctx context.Context, dir string) (string, error) {
	src := "./sysloop"
	if st, err := os.Stat("bench"); err == nil && st.IsDir() {
		src = "./bench/sysloop"
	}
	out := filepath.Join(dir, "sysloop")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build sysloop: %v: %s", err, b)
	}
	return out, nil
}

// jobConfinement is job (s): start latency with the default confinement
// vs --privileged, then the syscall loop with and without the seccomp
// filter; engines and variants take turns run by run.
func jobConfinement(ctx context.Context, es []engine, root string, warmup, runs int) map[string]*confinementResult {
	res := map[string]*confinementResult{}
	for _, e := range es {
		res[e.Name()] = &confinementResult{PrivilegedFlags: []string{"--privileged"}}
	}
	defer func() {
		for _, r := range res {
			r.Default, r.Privileged = summarize(r.DefaultMs), summarize(r.PrivilegedMs)
			r.Diff = summarize(r.DiffMs)
			r.Seccomp, r.Unconfined = summarize(r.SeccompNs), summarize(r.UnconfinedNs)
			r.SeccompGetpid, r.UnconfinedGetpid = summarize(r.SeccompGetpidNs), summarize(r.UnconfinedGetpidNs)
		}
	}()
	record := func(e engine, r *confinementResult, args []string, out cmdResult) bool {
		if out.Err == nil {
			r.consecutiveErr = 0
			return true
		}
		if ctx.Err() == nil {
			r.consecutiveErr++
			r.Errors = append(r.Errors, out.Error(e.Name(), args).Error())
			slog.Warn("confinement run failed", "engine", e.Name(), "err", out.Error(e.Name(), args))
		}
		return false
	}
	for round := 0; round < warmup+runs; round++ {
		for k := range es {
			e := es[(round+k)%len(es)]
			r := res[e.Name()]
			var pair [2]float64
			for v := 0; v < 2; v++ {
				if ctx.Err() != nil || r.consecutiveErr >= 5 {
					break
				}
				var flags []string
				if (round+v)%2 == 1 {
					flags = r.PrivilegedFlags
				}
				args := runArgs(e, append(append([]string{"--rm", "--network", "none"}, flags...), "busybox", "true")...)
				out := cli(ctx, e, args...)
				reapOrphans()
				if out.Err != nil && len(flags) > 0 && flags[0] == "--privileged" && strings.Contains(out.Stderr, "apply caps") {
					slog.Warn("engine cannot run --privileged on this host; comparing with seccomp and system paths unconfined", "engine", e.Name())
					r.PrivilegedFlags = []string{"--security-opt", "seccomp=unconfined", "--security-opt", "systempaths=unconfined"}
					continue
				}
				if !record(e, r, args, out) || round < warmup {
					continue
				}
				if len(flags) == 0 {
					r.DefaultMs = append(r.DefaultMs, ms(out.Dur))
					pair[0] = ms(out.Dur)
				} else {
					r.PrivilegedMs = append(r.PrivilegedMs, ms(out.Dur))
					pair[1] = ms(out.Dur)
				}
			}
			if pair[0] > 0 && pair[1] > 0 {
				r.DiffMs = append(r.DiffMs, pair[0]-pair[1])
			}
		}
	}

	sysloop, err := buildSysloop(ctx, root)
	if err != nil {
		for _, r := range res {
			r.Errors = append(r.Errors, err.Error())
		}
		return res
	}
	const rounds = 200000
	loopRuns := max(runs/3, 5)
	for _, r := range res {
		r.SysloopRounds = rounds
	}
	variants := [][]string{nil, {"--security-opt", "seccomp=unconfined"}}
	for round := 0; round < loopRuns; round++ {
		for k := range es {
			e := es[(round+k)%len(es)]
			r := res[e.Name()]
			for v := range variants {
				if ctx.Err() != nil || r.consecutiveErr >= 5 {
					break
				}
				flags := variants[(round+v)%2]
				args := runArgs(e, append(append([]string{"--rm", "--network", "none", "-v", sysloop + ":/sysloop:ro"}, flags...),
					"busybox", "/sysloop", strconv.Itoa(rounds))...)
				out := cli(ctx, e, args...)
				reapOrphans()
				if !record(e, r, args, out) {
					continue
				}
				var ns, getpid float64
				if _, err := fmt.Sscanf(out.Stdout, "%g %g", &ns, &getpid); err != nil {
					r.Errors = append(r.Errors, fmt.Sprintf("%s: sysloop printed %q", e.Name(), out.Stdout))
					continue
				}
				if len(flags) == 0 {
					r.SeccompNs = append(r.SeccompNs, ns)
					r.SeccompGetpidNs = append(r.SeccompGetpidNs, getpid)
				} else {
					r.UnconfinedNs = append(r.UnconfinedNs, ns)
					r.UnconfinedGetpidNs = append(r.UnconfinedGetpidNs, getpid)
				}
			}
		}
	}
	return res
}

// printConfinement prints job (s).
func printConfinement(w io.Writer, r map[string]*confinementResult, engines []string) {
	if len(r) == 0 {
		return
	}
	fmt.Fprintf(w, "\n(s) confinement cost: run --rm true, ms (median, p10–p90), default vs --privileged (*: seccomp and system paths unconfined instead);\n    syscall loop in the container, ns (median of runs' fastest batch) per getpid+open+close round and per getpid, seccomp vs unconfined\n")
	fmt.Fprintf(w, "    diff: the median of the paired differences (default − privileged, run back to back), p10–p90\n")
	fmt.Fprintf(w, "%-8s %22s %23s %20s %9s %9s %7s %8s %8s %6s\n", "engine", "default", "privileged", "diff", "round", "unconf.", "diff", "getpid", "unconf.", "diff")
	for _, n := range engines {
		x := r[n]
		if x == nil {
			continue
		}
		star := " "
		if len(x.PrivilegedFlags) == 0 || x.PrivilegedFlags[0] != "--privileged" {
			star = "*"
		}
		fmt.Fprintf(w, "%-8s %8.1f (%5.1f–%5.1f) %8.1f (%5.1f–%5.1f)%s %+6.1f (%+5.0f–%+4.0f) %9.0f %9.0f %+7.0f %8.0f %8.0f %+6.0f\n", n,
			x.Default.Median, x.Default.P10, x.Default.P90, x.Privileged.Median, x.Privileged.P10, x.Privileged.P90, star,
			x.Diff.Median, x.Diff.P10, x.Diff.P90, x.Seccomp.Median, x.Unconfined.Median, x.Seccomp.Median-x.Unconfined.Median,
			x.SeccompGetpid.Median, x.UnconfinedGetpid.Median, x.SeccompGetpid.Median-x.UnconfinedGetpid.Median)
	}
	if b := r["berth"]; b != nil && b.Diff.N > 0 {
		d := b.Diff.Median
		verdict := "met"
		if d >= 5 {
			verdict = "NOT met"
		}
		fmt.Fprintf(w, "target: berth default − privileged < 5 ms: %+.1f ms, %s\n", d, verdict)
	}
}
