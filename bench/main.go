// Command bench measures the same jobs on berth, Docker and Podman side by
// side and prints how berth compares: (a) latency of `run --rm … true`,
// (b) container starts per second from parallel CLIs, (c) idle memory per
// container. Each engine runs on private state that the runner creates and
// removes again. See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// activeEngines are the engines that started.
var activeEngines []engine

func main() {
	os.Exit(run())
}

func run() int {
	var (
		enginesFlag = flag.String("engines", "", "comma-separated engines to measure: berth,docker,podman (default: all installed)")
		volMiB      = flag.Int("volume-mib", 1024, "job (v): MiB written and read per run")
		volRuns     = flag.Int("volume-runs", 3, "job (v): runs per engine and target")
		jobsFlag    = flag.String("jobs", "a,b,c,r", "jobs to run: a (latency), b (throughput), c (idle memory), r (registry pull/push), d (exec latency), e (health-check load), f (stats --no-stream), g (docker build cold and cached), v (volume/bind/overlay I/O vs the host), s (confinement cost: default vs --privileged start, syscall loop with and without seccomp), n (networking: bridge start latency, 200 running, TCP throughput)")
		regRuns     = flag.Int("registry-runs", 5, "measured runs per engine for job (r)")
		netBusy     = flag.Int("net-busy", 200, "job (n): containers running on the bridge for the busy start latency")
		netBlocks   = flag.Int("net-busy-blocks", 2, "job (n): spells of busy runs, between idle ones (idle, busy, idle, …)")
		netRuns     = flag.Int("net-tput-runs", 5, "job (n): throughput runs per engine")
		netSecs     = flag.Float64("net-secs", 3, "job (n): seconds per throughput run")
		buildRuns   = flag.Int("build-runs", 5, "measured cold/cached build pairs per engine in job (g), after one warm-up")
		healthN     = flag.Int("health-n", 100, "containers with a health check in jobs (e, f)")
		healthWin   = flag.Duration("health-window", 20*time.Second, "CPU measurement window in job (e)")
		runs        = flag.Int("runs", 30, "measured runs per engine for job (a)")
		warmup      = flag.Int("warmup", 3, "warm-up runs per engine for job (a)")
		binDir      = flag.String("bin", "./bin", "directory with the berth binaries (berth, berth-shim, berth-runtime)")
		tpN         = flag.Int("throughput-n", 50, "containers started in job (b)")
		parallel    = flag.Int("parallel", 8, "parallel CLI processes in job (b)")
		memN        = flag.Int("memory-n", 20, "idle containers in job (c)")
		settle      = flag.Duration("settle", 3*time.Second, "pause before each memory snapshot in job (c)")
		dockerCLI   = flag.String("docker-cli", "docker", "docker CLI used against dockerd")
		podmanConf  = flag.String("podman-conf", "", "CONTAINERS_CONF for podman (default: "+sharedPodmanConf+" if present, else a built-in copy)")
		outPath     = flag.String("out", "", "JSON results file (default: bench/results/<date>.json)")
	)
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./bench [flags]   (as root)\n\nMeasures berth, Docker and Podman side by side. Flags:\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))

	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: must run as root: the engines need namespaces, mounts and cgroups (try: sudo go run ./bench)")
		return 2
	}
	jobs, err := parseList(*jobsFlag, []string{"a", "b", "c", "r", "d", "e", "f", "g", "v", "s", "n"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: -jobs:", err)
		return 2
	}
	if *runs < 1 || *warmup < 0 || *tpN < 1 || *parallel < 1 || *memN < 1 {
		fmt.Fprintln(os.Stderr, "bench: -runs, -throughput-n, -parallel and -memory-n must be ≥ 1, -warmup ≥ 0")
		return 2
	}
	if *runs < 30 && slices.Contains(jobs, "a") {
		slog.Warn("fewer than 30 runs: the issue quotes medians of at least 30", "runs", *runs)
	}
	var names []string
	explicit := *enginesFlag != ""
	if explicit {
		if names, err = parseList(*enginesFlag, []string{"berth", "docker", "podman"}); err != nil {
			fmt.Fprintln(os.Stderr, "bench: -engines:", err)
			return 2
		}
	} else {
		names = installed(*binDir, *dockerCLI)
		if len(names) == 0 {
			fmt.Fprintln(os.Stderr, "bench: no engine found (no berth in -bin, no dockerd+docker, no podman)")
			return 2
		}
	}
	if *outPath == "" {
		dir := "results"
		if st, err := os.Stat("bench"); err == nil && st.IsDir() {
			dir = filepath.Join("bench", "results")
		}
		*outPath = filepath.Join(dir, time.Now().Format("2006-01-02T150405")+".json")
	}

	if err := becomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}

	// The first SIGINT/SIGTERM/SIGHUP stops the measurements; the cleanup
	// below still runs. Further signals only say that it is running.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		n := 0
		for s := range sigs {
			n++
			if n == 1 {
				fmt.Fprintf(os.Stderr, "\nbench: %v: stopping, removing containers and engine state…\n", s)
				cancel()
			} else {
				fmt.Fprintf(os.Stderr, "bench: still cleaning up (kill -9 %d abandons it and leaves state behind)\n", os.Getpid())
			}
		}
	}()

	root, err := os.MkdirTemp("", "berth-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	rep := &report{
		Started: time.Now(),
		Host:    hostInfo{Kernel: kernelRelease(), CPUs: runtime.NumCPU(), Cgroups: cgroupLayout(), LoadStart: loadavg()},
		Config: config{Jobs: jobs, Warmup: *warmup, Runs: *runs, ThroughputN: *tpN, Parallel: *parallel,
			MemoryN: *memN, SettleS: settle.Seconds(), BinDir: *binDir},
		Engines: map[string]engineInfo{},
	}
	rep.Host.Hostname, _ = os.Hostname()
	if st, err := os.Stat(busyboxPath); err == nil {
		rep.Config.BusyboxBytes = st.Size()
	}

	defer func() {
		// Cleanup gets its own time, whatever happened to ctx.
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer ccancel()
		for _, e := range allEngines {
			if err := e.Stop(cctx); err != nil {
				slog.Warn("cleanup", "engine", e.Name(), "err", err)
			}
		}
		killAllDescendants()
		if err := unmountUnder(root); err != nil {
			slog.Error("cleanup: not removing the state directory", "dir", root, "err", err)
			return
		}
		if err := os.RemoveAll(root); err != nil {
			slog.Warn("cleanup", "err", err)
		}
	}()

	tarPath := filepath.Join(root, "busybox.tar")
	if err := writeBusyboxTar(tarPath); err != nil {
		fmt.Fprintln(os.Stderr, "bench: build the busybox image:", err)
		return 1
	}

	// Construct every engine before starting any: each records which of its
	// host paths exist before anything ran.
	for _, n := range names {
		var e engine
		var err error
		switch n {
		case "berth":
			e, err = newBerth(root, *binDir)
		case "docker":
			var cli string
			if cli, err = exec.LookPath(*dockerCLI); err == nil {
				var de *dockerEngine
				if de, err = newDocker(root, cli); err == nil {
					if slices.Contains(jobs, "n") {
						de.bridge = fmt.Sprintf("dbench%d", os.Getpid()%100000)
					}
					e = de
				}
			}
		case "podman":
			e, err = newPodman(root, *podmanConf)
		}
		if err != nil {
			rep.Engines[n] = engineInfo{Error: err.Error()}
			rep.Errors = append(rep.Errors, err.Error())
			continue
		}
		allEngines = append(allEngines, e)
	}
	for _, e := range allEngines {
		if ctx.Err() != nil {
			break
		}
		slog.Info("starting engine", "engine", e.Name())
		err := e.Start(ctx, tarPath)
		info := e.Info()
		if err != nil {
			info.Error = err.Error()
			rep.Errors = append(rep.Errors, fmt.Sprintf("%s: start: %v", e.Name(), err))
			slog.Error("engine did not start; measuring the others", "engine", e.Name(), "err", err)
			if err := e.Stop(ctx); err != nil {
				slog.Warn("cleanup", "engine", e.Name(), "err", err)
			}
		} else {
			activeEngines = append(activeEngines, e)
		}
		rep.Engines[e.Name()] = info
	}
	for _, n := range names {
		if _, ok := rep.Engines[n]; ok {
			rep.Config.Engines = append(rep.Config.Engines, n)
		}
	}

	if len(activeEngines) > 0 {
		measure(ctx, rep, jobs, *warmup, *runs, *tpN, *parallel, *memN, *settle)
		if slices.Contains(jobs, "r") && ctx.Err() == nil {
			rep.Registry = jobRegistry(ctx, activeEngines, *binDir, root, tarPath, max(*regRuns, 1))
		}
		measureOperate(ctx, rep, jobs, *warmup, *runs, *healthN, *settle, *healthWin)
		if slices.Contains(jobs, "v") && ctx.Err() == nil {
			rep.VolumeIO = jobVolumeIO(ctx, activeEngines, root, *volMiB, *volRuns)
		}
		if slices.Contains(jobs, "g") && ctx.Err() == nil {
			rep.Build = jobBuild(ctx, activeEngines, root, max(*buildRuns, 1))
		}
		if slices.Contains(jobs, "s") && ctx.Err() == nil {
			rep.Confinement = jobConfinement(ctx, activeEngines, root, *warmup, *runs)
		}
		if slices.Contains(jobs, "n") && ctx.Err() == nil {
			var netEngines []engine
			for _, e := range activeEngines {
				if e.Name() != "podman" { // its bridge (netavark) is not set up by the runner
					netEngines = append(netEngines, e)
				}
			}
			rep.Network = jobNetwork(ctx, netEngines, root, *warmup, *runs, *netBusy, *netBlocks, max(*netRuns, 1), *netSecs)
		}
	}
	if ctx.Err() != nil {
		rep.Errors = append(rep.Errors, "interrupted: results are partial")
	}
	rep.Finished = time.Now()
	rep.Host.LoadEnd = loadavg()
	rep.checkTargets()
	rep.printTable(os.Stdout)
	printRegistry(os.Stdout, rep.Registry, rep.Config.Engines)
	rep.printOperate(os.Stdout)
	printVolumeIO(os.Stdout, rep.VolumeIO, rep.Config.Engines)
	printBuild(os.Stdout, rep.Build, rep.Config.Engines)
	printConfinement(os.Stdout, rep.Confinement, rep.Config.Engines)
	printNetwork(os.Stdout, rep.Network, rep.Config.Engines)
	if err := rep.writeJSON(*outPath); err != nil {
		slog.Error("write results", "err", err)
	} else {
		fmt.Printf("\nall samples: %s\n", *outPath)
	}

	failed := ctx.Err() != nil || len(activeEngines) == 0
	if explicit && len(activeEngines) < len(names) {
		failed = true
	}
	for _, r := range rep.Latency {
		failed = failed || len(r.Errors) > 0
	}
	for _, r := range rep.Throughput {
		failed = failed || len(r.Errors) > 0
	}
	for _, r := range rep.Memory {
		failed = failed || len(r.Errors) > 0
	}
	for _, r := range rep.Registry {
		failed = failed || len(r.Errors) > 0
	}
	for _, r := range rep.Exec {
		failed = failed || len(r.Errors) > 0
	}
	for _, r := range rep.Health {
		failed = failed || len(r.Errors) > 0
	}
	for _, r := range rep.Build {
		failed = failed || len(r.Errors) > 0
	}
	for _, r := range rep.Confinement {
		failed = failed || len(r.Errors) > 0
	}
	for _, r := range rep.Network {
		failed = failed || len(r.Errors) > 0
	}
	if failed {
		return 1
	}
	return 0
}

// measure runs the selected jobs: (c) first, while the daemons' heaps hold
// no garbage from hundreds of earlier containers (a collection during the
// job would show up as negative growth); then (a), interleaved across
// engines; then (b), one engine at a time. The other engines sit idle
// while one is measured alone.
func measure(ctx context.Context, rep *report, jobs []string, warmup, runs, tpN, parallel, memN int, settle time.Duration) {
	if slices.Contains(jobs, "c") {
		rep.Memory = map[string]*memoryResult{}
		for _, e := range activeEngines {
			if ctx.Err() != nil {
				break
			}
			slog.Info("job (c): idle memory", "engine", e.Name(), "n", memN)
			rep.Memory[e.Name()] = jobMemory(ctx, e, memN, settle)
		}
	}
	if slices.Contains(jobs, "a") && ctx.Err() == nil {
		slog.Info("job (a): latency", "engines", len(activeEngines), "warmup", warmup, "runs", runs)
		rep.Latency = jobLatency(ctx, activeEngines, warmup, runs)
	}
	if slices.Contains(jobs, "b") {
		rep.Throughput = map[string]*throughputResult{}
		for _, e := range activeEngines {
			if ctx.Err() != nil {
				break
			}
			slog.Info("job (b): throughput", "engine", e.Name(), "n", tpN, "parallel", parallel)
			rep.Throughput[e.Name()] = jobThroughput(ctx, e, tpN, parallel)
		}
	}
}

// installed lists the engines present on this host.
func installed(binDir, dockerCLI string) []string {
	var names []string
	if _, err := os.Stat(filepath.Join(binDir, "berth")); err == nil {
		names = append(names, "berth")
	}
	_, errD := exec.LookPath("dockerd")
	_, errC := exec.LookPath(dockerCLI)
	if errD == nil && errC == nil {
		names = append(names, "docker")
	}
	if _, err := exec.LookPath("podman"); err == nil {
		names = append(names, "podman")
	}
	return names
}

// parseList splits a comma-separated flag value and checks each item.
func parseList(s string, allowed []string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !slices.Contains(allowed, f) {
			return nil, fmt.Errorf("unknown %q (want some of %s)", f, strings.Join(allowed, ","))
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	// Keep a stable order (berth first) whatever the flag's order.
	slices.SortStableFunc(out, func(a, b string) int { return slices.Index(allowed, a) - slices.Index(allowed, b) })
	return out, nil
}
