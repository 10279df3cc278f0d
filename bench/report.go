package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"
)

// report is everything one run measured; it is written as JSON with every
// sample so that figures can be quoted and re-analysed later.
type report struct {
	Started    time.Time                    `json:"started"`
	Finished   time.Time                    `json:"finished"`
	Host       hostInfo                     `json:"host"`
	Config     config                       `json:"config"`
	Engines    map[string]engineInfo        `json:"engines"`
	Latency    map[string]*latencyResult    `json:"latency,omitempty"`
	Throughput map[string]*throughputResult `json:"throughput,omitempty"`
	Memory     map[string]*memoryResult     `json:"memory,omitempty"`
	Registry   map[string]*registryResult   `json:"registry,omitempty"`
	Exec       map[string]*latencyResult    `json:"exec,omitempty"`
	Health     map[string]*healthResult     `json:"health,omitempty"`
	VolumeIO   map[string]*volumeIOResult   `json:"volume_io,omitempty"`
	Build      map[string]*buildResult      `json:"build,omitempty"`
	// Confinement is job (s).
	Confinement map[string]*confinementResult `json:"confinement,omitempty"`
	// Network is job (n).
	Network map[string]*networkResult `json:"network,omitempty"`
	Targets []targetResult            `json:"targets,omitempty"`
	Errors  []string                  `json:"errors,omitempty"`
}

// hostInfo says where the figures come from: on a shared, noisy VM the load
// average before and after matters when comparing runs.
type hostInfo struct {
	Hostname  string `json:"hostname"`
	Kernel    string `json:"kernel"`
	CPUs      int    `json:"cpus"`
	Cgroups   string `json:"cgroups"`
	LoadStart string `json:"loadavg_start"`
	LoadEnd   string `json:"loadavg_end"`
}

// config is the run's settings.
type config struct {
	Engines      []string `json:"engines"`
	Jobs         []string `json:"jobs"`
	Warmup       int      `json:"warmup"`
	Runs         int      `json:"runs"`
	ThroughputN  int      `json:"throughput_n"`
	Parallel     int      `json:"parallel"`
	MemoryN      int      `json:"memory_n"`
	SettleS      float64  `json:"settle_s"`
	BinDir       string   `json:"bin_dir"`
	BusyboxBytes int64    `json:"busybox_bytes"`
}

// targetResult is one of the targets checked against this run.
type targetResult struct {
	Job    string  `json:"job"`
	Target string  `json:"target"`
	Value  float64 `json:"value"` // the ratio or absolute figure the target is about
	Met    bool    `json:"met"`
	Note   string  `json:"note"`
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return ""
}

func cgroupLayout() string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return "v2"
	}
	if _, err := os.Stat("/sys/fs/cgroup/unified/cgroup.controllers"); err == nil {
		return "v1 hybrid (cgroup2 at /sys/fs/cgroup/unified)"
	}
	return "v1"
}

func kernelRelease() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

// The targets, all relative to Docker except (c).
const (
	targetLatencyRatio = 0.2 // (a) berth's median ≤ 1/5 of Docker's
	targetRateRatio    = 5.0 // (b) berth's start rate ≥ 5× Docker's
	targetPssMiB       = 1.0 // (c) ≤ 1 MiB PSS per idle container
)

// checkTargets compares berth with Docker where both were measured.
func (r *report) checkTargets() {
	if l := r.Latency; l != nil && l["berth"] != nil && l["docker"] != nil && l["berth"].Ms.N > 0 && l["docker"].Ms.N > 0 {
		v := l["berth"].Ms.Median / l["docker"].Ms.Median
		r.Targets = append(r.Targets, targetResult{Job: "a", Target: "berth median ≤ 1/5 of docker's", Value: v, Met: v <= targetLatencyRatio,
			Note: fmt.Sprintf("berth %.1f ms / docker %.1f ms = %.3f", l["berth"].Ms.Median, l["docker"].Ms.Median, v)})
	}
	if t := r.Throughput; t != nil && t["berth"] != nil && t["docker"] != nil && t["berth"].PerSecond > 0 && t["docker"].PerSecond > 0 {
		v := t["berth"].PerSecond / t["docker"].PerSecond
		r.Targets = append(r.Targets, targetResult{Job: "b", Target: "berth start rate ≥ 5× docker's", Value: v, Met: v >= targetRateRatio,
			Note: fmt.Sprintf("berth %.1f/s / docker %.1f/s = %.2f×", t["berth"].PerSecond, t["docker"].PerSecond, v)})
	}
	if m := r.Memory; m != nil && m["berth"] != nil && m["berth"].Started > 0 {
		v := m["berth"].PssMiB
		r.Targets = append(r.Targets, targetResult{Job: "c", Target: "≤ 1 MiB PSS per idle container", Value: v, Met: v <= targetPssMiB,
			Note: fmt.Sprintf("berth %.2f MiB", v)})
	}
}

// writeJSON writes the report atomically enough for a results file (it is
// not state anyone recovers from): to a temp file, then renamed.
func (r *report) writeJSON(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// printTable writes the human summary: one column per engine, then how
// berth compares with each other engine (> 1× means berth is ahead).
func (r *report) printTable(w io.Writer) {
	names := r.Config.Engines
	fmt.Fprintf(w, "\nberth bench — %s, kernel %s, %d CPUs, cgroups %s, load %s → %s\n",
		r.Started.UTC().Format("2006-01-02 15:04 UTC"), r.Host.Kernel, r.Host.CPUs, r.Host.Cgroups, r.Host.LoadStart, r.Host.LoadEnd)
	for _, n := range names {
		i := r.Engines[n]
		v := i.Version
		if i.CLIVersion != "" && i.CLIVersion != i.Version {
			v += "; CLI " + i.CLIVersion
		}
		if i.Error != "" {
			v += "  [FAILED: " + firstOf(i.Error) + "]"
		}
		fmt.Fprintf(w, "  %-7s %s\n", n, v)
	}
	fmt.Fprintln(w)

	others := []string{}
	hasBerth := false
	for _, n := range names {
		if n == "berth" {
			hasBerth = true
		} else {
			others = append(others, n)
		}
	}
	cols := append([]string(nil), names...)
	if hasBerth {
		for _, o := range others {
			cols = append(cols, "berth vs "+o)
		}
	}
	var lines [][]string
	lines = append(lines, append([]string{"job"}, cols...))
	type row struct {
		label  string
		val    func(string) (float64, bool)
		format string
		better string // "lower" or "higher": which direction is better
	}
	var rows []row
	if r.Latency != nil {
		lat := func(f func(summary) float64) func(string) (float64, bool) {
			return func(n string) (float64, bool) {
				l := r.Latency[n]
				if l == nil || l.Ms.N == 0 {
					return 0, false
				}
				return f(l.Ms), true
			}
		}
		rows = append(rows,
			row{fmt.Sprintf("(a) run --rm true, median ms (n=%d)", r.Config.Runs), lat(func(s summary) float64 { return s.Median }), "%.1f", "lower"},
			row{"    p10 ms", lat(func(s summary) float64 { return s.P10 }), "%.1f", "lower"},
			row{"    p90 ms", lat(func(s summary) float64 { return s.P90 }), "%.1f", "lower"},
		)
	}
	if r.Throughput != nil {
		tp := func(f func(*throughputResult) float64) func(string) (float64, bool) {
			return func(n string) (float64, bool) {
				t := r.Throughput[n]
				if t == nil || t.Started == 0 {
					return 0, false
				}
				return f(t), true
			}
		}
		rows = append(rows,
			row{fmt.Sprintf("(b) run -d ×%d from %d CLIs, containers/s", r.Config.ThroughputN, r.Config.Parallel), tp(func(t *throughputResult) float64 { return t.PerSecond }), "%.1f", "higher"},
			row{"    median run -d CLI ms", tp(func(t *throughputResult) float64 { return t.StartCLIMs.Median }), "%.0f", "lower"},
			row{"    rm -f of all, s", tp(func(t *throughputResult) float64 {
				if t.RemoveCount == 0 {
					return math.NaN()
				}
				return t.RemoveS
			}), "%.2f", "lower"},
		)
	}
	if r.Memory != nil {
		mem := func(f func(*memoryResult) float64) func(string) (float64, bool) {
			return func(n string) (float64, bool) {
				m := r.Memory[n]
				if m == nil || m.Started == 0 {
					return 0, false
				}
				return f(m), true
			}
		}
		per := func(kib int64, m *memoryResult) float64 { return float64(kib) / 1024 / float64(m.Started) }
		rows = append(rows,
			row{fmt.Sprintf("(c) %d idle, PSS MiB per container", r.Config.MemoryN), mem(func(m *memoryResult) float64 { return m.PssMiB }), "%.2f", "lower"},
			row{"    of which new processes", mem(func(m *memoryResult) float64 { return per(m.AddedPss, m) }), "%.2f", "lower"},
			row{"    of which daemon growth", mem(func(m *memoryResult) float64 { return per(m.GrownPss, m) }), "%.2f", "lower"},
			row{"    RSS MiB per container", mem(func(m *memoryResult) float64 { return m.RssMiB }), "%.2f", "lower"},
		)
	}
	for _, rw := range rows {
		line := []string{rw.label}
		for _, n := range names {
			if v, ok := rw.val(n); ok && !math.IsNaN(v) {
				line = append(line, fmt.Sprintf(rw.format, v))
			} else {
				line = append(line, "–")
			}
		}
		if hasBerth {
			b, bok := rw.val("berth")
			for _, o := range others {
				ov, ook := rw.val(o)
				line = append(line, ratioCell(b, bok, ov, ook, rw.better))
			}
		}
		lines = append(lines, line)
	}
	writeColumns(w, lines)
	if hasBerth && len(others) > 0 {
		fmt.Fprintln(w, "  (berth vs X: how many times better berth is — faster, higher rate, less memory; > 1× means berth is ahead)")
	}

	fmt.Fprintln(w, "\ntargets (from the issue):")
	want := map[string]string{
		"a": "(a) berth median ≤ 1/5 of docker's",
		"b": "(b) berth start rate ≥ 5× docker's",
		"c": "(c) ≤ 1 MiB PSS per idle container",
	}
	done := map[string]bool{}
	for _, t := range r.Targets {
		status := "MISSED"
		if t.Met {
			status = "met"
		}
		fmt.Fprintf(w, "  %-38s %-6s  %s\n", want[t.Job], status, t.Note)
		done[t.Job] = true
	}
	for _, j := range []string{"a", "b", "c"} {
		if !done[j] {
			fmt.Fprintf(w, "  %-38s %-6s  %s\n", want[j], "n/a", "not measured on both engines in this run")
		}
	}
	if len(r.Errors) > 0 {
		fmt.Fprintln(w, "\nerrors:")
		for _, e := range r.Errors {
			fmt.Fprintln(w, "  "+firstOf(e))
		}
	}
}

// ratioCell formats "how many times better berth is than the other".
func ratioCell(b float64, bok bool, o float64, ook bool, better string) string {
	if !bok || !ook || math.IsNaN(b) || math.IsNaN(o) || b <= 0 || o <= 0 {
		return "–"
	}
	f := o / b
	if better == "higher" {
		f = b / o
	}
	return fmt.Sprintf("%.2f×", f)
}

func firstOf(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	if len(l) > 200 {
		l = l[:200] + "…"
	}
	return l
}

// writeColumns prints rows as a table: the first column left-aligned, the
// others right-aligned, two spaces apart.
func writeColumns(w io.Writer, rows [][]string) {
	var width []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i == 0 {
				b.WriteString("  " + c + pad)
			} else {
				b.WriteString("  " + pad + c)
			}
		}
		fmt.Fprintln(w, b.String())
	}
}
