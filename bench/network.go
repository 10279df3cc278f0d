package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
)

// dockerBridgeAddr is the address of the bridge the runner makes for
// dockerd in job (n) (a TEST-NET-2 range: routed nowhere).
const dockerBridgeAddr = "198.51.100.1/24"

func makeBridge(name, addr string) error {
	_ = deleteBridge(name)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("create bridge %s: %w", name, err)
	}
	a, err := netlink.ParseAddr(addr)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(br, a); err != nil {
		return err
	}
	return netlink.LinkSetUp(br)
}

func deleteBridge(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil
	}
	return netlink.LinkDel(l)
}

// networkResult is job (n) for one engine.
type networkResult struct {
	BridgeMs   []float64 `json:"run_rm_bridge_ms"`
	NoneMs     []float64 `json:"run_rm_none_ms"`
	Busy       int       `json:"busy_containers"`
	BusyMs     []float64 `json:"run_rm_bridge_busy_ms"`
	BusyNoneMs []float64 `json:"run_rm_none_busy_ms"`
	// IdleMs and IdleNoneMs are the busy figures' reference: the same
	// runs with no container running, in spells before, between and
	// after the busy ones (-net-busy-blocks), so that a drift of the
	// machine's load over the busy runs falls on both.
	IdleMs     []float64 `json:"run_rm_bridge_idle_ms"`
	IdleNoneMs []float64 `json:"run_rm_none_idle_ms"`
	// HostMounts counts the host's mounts when the idle and the busy runs
	// start: another engine's or user's containers on a shared machine
	// show here, and every one of them costs every start a little.
	IdleHostMounts int       `json:"idle_host_mounts,omitempty"`
	BusyHostMounts int       `json:"busy_host_mounts,omitempty"`
	C2CGbps        []float64 `json:"container_to_container_gbit_s"`
	HostPubGbp     []float64 `json:"host_to_published_gbit_s"`
	LoopGbps       []float64 `json:"loopback_gbit_s,omitempty"`
	// LoopCgGbps is host loopback with the server and the client each
	// in a cgroup of its own at the containers' depth (see refCgroups).
	LoopCgGbps []float64 `json:"loopback_cgroup_gbit_s,omitempty"`
	Errors     []string  `json:"errors,omitempty"`
}

// buildTCPBench compiles the static throughput probe into dir.
func buildTCPBench(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "tcpbench")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/berth-engine/berth/bench/tcpbench")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build tcpbench (run the bench from the berth module): %v: %s", err, b)
	}
	return out, nil
}

func gbps(out string) (float64, error) {
	return strconv.ParseFloat(strings.TrimSpace(out), 64)
}

// jobNetwork is job (n): `run --rm` latency with the default bridge and
// with --network none (engines taking turns run by run), the same with
// `busy` containers running on the bridge, and TCP throughput
// container→container on the bridge and host→published port on
// 127.0.0.1, against host loopback.
func jobNetwork(ctx context.Context, es []engine, root string, warmup, runs, busy, blocks, tputRuns int, secs float64) map[string]*networkResult {
	res := map[string]*networkResult{}
	for _, e := range es {
		res[e.Name()] = &networkResult{Busy: busy}
	}
	loop := &networkResult{}
	res["host"] = loop
	tool, err := buildTCPBench(ctx, root)
	if err != nil {
		loop.Errors = append(loop.Errors, err.Error())
		return res
	}
	refParent := "/" + filepath.Base(root) + "-loopref"
	refSrv, refCli, err := refCgroups(refParent)
	if err != nil {
		loop.Errors = append(loop.Errors, fmt.Sprintf("loopback reference cgroups: %v", err))
	}
	defer func() {
		if err := removeCgroups(refParent); err != nil {
			slog.Warn("remove the loopback reference cgroups", "err", err)
		}
	}()
	rmRun := func(e engine, extra ...string) (float64, error) {
		args := runArgs(e, append(append([]string{"--rm"}, extra...), "busybox", "true")...)
		out := cli(ctx, e, args...)
		reapOrphans()
		if out.Err != nil {
			return 0, out.Error(e.Name(), args)
		}
		return ms(out.Dur), nil
	}
	// Latency, bridge vs none.
	for round := 0; round < warmup+runs && ctx.Err() == nil; round++ {
		for k := range es {
			e := es[(round+k)%len(es)]
			r := res[e.Name()]
			b, err := rmRun(e)
			if err != nil {
				r.Errors = append(r.Errors, err.Error())
				continue
			}
			n, err := rmRun(e, "--network", "none")
			if err != nil {
				r.Errors = append(r.Errors, err.Error())
				continue
			}
			if round >= warmup {
				r.BridgeMs = append(r.BridgeMs, b)
				r.NoneMs = append(r.NoneMs, n)
			}
		}
	}
	// Throughput. Every engine's server runs first; then the engines take
	// turns run by run (who goes first rotates), with host loopback between
	// rounds, so that noise from other work on a shared machine falls on
	// all of them and on the reference alike.
	type tputSrv struct {
		e        engine
		ip, port string
	}
	var srvs []tputSrv
	for _, e := range es {
		if ctx.Err() != nil {
			break
		}
		r := res[e.Name()]
		port := freeLocalPort()
		srvArgs := runArgs(e, "-d", "--name", "nbench-srv", "-v", tool+":/tcpbench:ro", "-p", "127.0.0.1:"+port+":5001", "busybox", "/tcpbench", "server", ":5001")
		if out := cli(ctx, e, srvArgs...); out.Err != nil {
			r.Errors = append(r.Errors, out.Error(e.Name(), srvArgs).Error())
			continue
		}
		ipOut := cli(ctx, e, "inspect", "-f", "{{.NetworkSettings.Networks.bridge.IPAddress}}", "nbench-srv")
		if ipOut.Err != nil {
			r.Errors = append(r.Errors, fmt.Sprintf("inspect the throughput server: %v", ipOut.Err))
			_ = cli(context.WithoutCancel(ctx), e, "rm", "-f", "nbench-srv")
			continue
		}
		srvs = append(srvs, tputSrv{e: e, ip: strings.TrimSpace(ipOut.Stdout), port: port})
	}
	for i := 0; i < tputRuns && ctx.Err() == nil && len(srvs) > 0; i++ {
		for k := range srvs {
			s := srvs[(i+k)%len(srvs)]
			r := res[s.e.Name()]
			cargs := runArgs(s.e, "--rm", "-v", tool+":/tcpbench:ro", "busybox", "/tcpbench", "client", net.JoinHostPort(s.ip, "5001"), fmt.Sprint(secs))
			out := cli(ctx, s.e, cargs...)
			if g, err := gbps(out.Stdout); out.Err == nil && err == nil {
				r.C2CGbps = append(r.C2CGbps, g)
			} else {
				r.Errors = append(r.Errors, fmt.Sprintf("container to container: %v %s", out.Err, out.Stderr))
			}
			hb, err := exec.CommandContext(ctx, tool, "client", "127.0.0.1:"+s.port, fmt.Sprint(secs)).Output()
			if g, gerr := gbps(string(hb)); err == nil && gerr == nil {
				r.HostPubGbp = append(r.HostPubGbp, g)
			} else {
				r.Errors = append(r.Errors, fmt.Sprintf("host to published port: %v", err))
			}
		}
		// The two references take turns too.
		for k := range 2 {
			if (i+k)%2 == 0 {
				loop.LoopGbps = appendGbps(loop.LoopGbps, measureLoopback(ctx, tool, secs, nil, nil))
			} else if refSrv != nil {
				loop.LoopCgGbps = appendGbps(loop.LoopCgGbps, measureLoopback(ctx, tool, secs, refSrv, refCli))
			}
		}
	}
	for _, s := range srvs {
		// Also after an interrupt: the servers must not outlive the run.
		_ = cli(context.WithoutCancel(ctx), s.e, "rm", "-f", "nbench-srv")
	}
	// Start latency with busy containers on the bridge, against the same
	// engine's idle figure taken around it. Bridge and none take turns.
	turns := func(e engine, n int, br, none *[]float64) {
		r := res[e.Name()]
		for i := 0; i < n && ctx.Err() == nil; i++ {
			d, err := rmRun(e)
			if err != nil {
				r.Errors = append(r.Errors, err.Error())
				continue
			}
			dn, err := rmRun(e, "--network", "none")
			if err != nil {
				r.Errors = append(r.Errors, err.Error())
				continue
			}
			*br = append(*br, d)
			*none = append(*none, dn)
		}
	}
	// The busy containers run in `blocks` spells with idle spells
	// before, between and after them (idle, busy, idle, busy, idle), so
	// that a machine whose load drifts over minutes weighs on both alike.
	startBusy := func(e engine) []string {
		r := res[e.Name()]
		var ids []string
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for i := 0; i < busy; i++ {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				args := runArgs(e, "-d", "busybox", "sleep", "100000")
				out := cli(ctx, e, args...)
				mu.Lock()
				defer mu.Unlock()
				if out.Err != nil {
					r.Errors = append(r.Errors, out.Error(e.Name(), args).Error())
					return
				}
				ids = append(ids, strings.TrimSpace(out.Stdout))
			}()
		}
		wg.Wait()
		slog.Info("network job: containers running", "engine", e.Name(), "n", len(ids))
		return ids
	}
	blocks = max(blocks, 1)
	idleEach, busyEach := max(runs/(blocks+1), 1), max(runs/blocks, 1)
	for _, e := range es {
		if ctx.Err() != nil || busy <= 0 {
			break
		}
		r := res[e.Name()]
		for b := 0; b <= blocks && ctx.Err() == nil; b++ {
			for i := 0; i < warmup && ctx.Err() == nil; i++ {
				_, _ = rmRun(e)
			}
			r.IdleHostMounts = max(r.IdleHostMounts, hostMounts())
			turns(e, idleEach, &r.IdleMs, &r.IdleNoneMs)
			if b == blocks {
				break
			}
			ids := startBusy(e)
			for i := 0; i < warmup && ctx.Err() == nil; i++ {
				_, _ = rmRun(e)
			}
			r.BusyHostMounts = max(r.BusyHostMounts, hostMounts())
			turns(e, busyEach, &r.BusyMs, &r.BusyNoneMs)
			if len(ids) > 0 {
				// Also after an interrupt: they must not outlive the run.
				_ = cli(context.WithoutCancel(ctx), e, append([]string{"rm", "-f"}, ids...)...)
			}
		}
	}
	return res
}

// hostMounts is the number of mounts in the runner's mount namespace.
func hostMounts() int {
	mps, _ := mountPoints()
	return len(mps)
}

func appendGbps(s []float64, g float64) []float64 {
	if g > 0 {
		s = append(s, g)
	}
	return s
}

// measureLoopback runs the probe's server and client on host loopback,
// each in the cgroups given (nil: the runner's own), and returns Gbit/s
// (0 when it failed).
func measureLoopback(ctx context.Context, tool string, secs float64, srvCg, cliCg []string) float64 {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	addr := l.Addr().String()
	l.Close()
	srv := inCgroups(ctx, srvCg, tool, "server", addr)
	if err := srv.Start(); err != nil {
		return 0
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	out, err := inCgroups(ctx, cliCg, tool, "client", addr, fmt.Sprint(secs)).Output()
	if g, gerr := gbps(string(out)); err == nil && gerr == nil {
		return g
	}
	return 0
}

// inCgroups is a command that joins the cgroup directories given before
// it runs (through /bin/sh: on cgroup v1 a process can only be moved
// into each hierarchy by writing its pid, and it must be there before the
// probe starts measuring).
func inCgroups(ctx context.Context, dirs []string, argv ...string) *exec.Cmd {
	if len(dirs) == 0 {
		return exec.CommandContext(ctx, argv[0], argv[1:]...)
	}
	const script = `n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1/cgroup.procs" || exit 1; shift; n=$((n-1)); done; exec "$@"`
	args := append([]string{"-c", script, "sh", strconv.Itoa(len(dirs))}, dirs...)
	return exec.CommandContext(ctx, "/bin/sh", append(args, argv...)...)
}

// refCgroups makes parent/srv and parent/cli in every cgroup hierarchy
// (each v1 controller and the v2 tree) and returns their directories: the
// loopback reference's server and client then sit as the containers'
// processes do, each in a cgroup of its own two levels below the root
// (the engines' --cgroup-parent, then the container), with the default
// settings an engine leaves a container with (no limits, equal weights).
// Under load that matters: the CPU scheduler gives a cgroup one share
// however many processes it holds, where processes in the root cgroup
// each get one.
func refCgroups(parent string) (srv, cli []string, err error) {
	mps, err := mountPoints()
	if err != nil {
		return nil, nil, err
	}
	for _, m := range mps {
		if m[1] != "cgroup" && m[1] != "cgroup2" {
			continue
		}
		for _, d := range []string{filepath.Join(m[0], parent), filepath.Join(m[0], parent, "srv"), filepath.Join(m[0], parent, "cli")} {
			if err := os.Mkdir(d, 0o755); err != nil && !os.IsExist(err) {
				return nil, nil, err
			}
			// A v1 cpuset cgroup starts with no CPUs and no memory nodes:
			// give it its parent's, as engines do.
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if b, err := os.ReadFile(filepath.Join(filepath.Dir(d), f)); err == nil && m[1] == "cgroup" {
					if err := os.WriteFile(filepath.Join(d, f), b, 0o644); err != nil {
						return nil, nil, err
					}
				}
			}
		}
		srv = append(srv, filepath.Join(m[0], parent, "srv"))
		cli = append(cli, filepath.Join(m[0], parent, "cli"))
	}
	if len(srv) == 0 {
		return nil, nil, fmt.Errorf("no cgroup hierarchy mounted")
	}
	return srv, cli, nil
}

func freeLocalPort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "18080"
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}

func printNetwork(w io.Writer, res map[string]*networkResult, engines []string) {
	if len(res) == 0 {
		return
	}
	loop := summarize(res["host"].LoopGbps).Median
	loopCg := summarize(res["host"].LoopCgGbps).Median
	fmt.Fprintf(w, "\n(n) networking: run --rm busybox true (median ms) and TCP throughput (256 KiB writes, median Gbit/s)\n")
	fmt.Fprintf(w, "%-8s %8s %8s %8s %10s %10s %8s %8s %8s %8s\n", "engine", "bridge", "none", "br-none", "busy-br", "busy-none", "c2c", "c2c/lo", "host→pub", "pub/lo")
	fmt.Fprintf(w, "%-8s %8s %8s %8s %10s %10s %8.2f %8s %8s %8s\n", "loopback", "-", "-", "-", "-", "-", loop, "1.00", "-", "-")
	if loopCg > 0 {
		fmt.Fprintf(w, "%-8s %8s %8s %8s %10s %10s %8.2f %8.2f %8s %8s\n", "lo-cg", "-", "-", "-", "-", "-", loopCg, loopCg/max(loop, 1e-9), "-", "-")
	}
	for _, n := range engines {
		r := res[n]
		if r == nil {
			continue
		}
		b, no := summarize(r.BridgeMs).Median, summarize(r.NoneMs).Median
		busy, busyNone := summarize(r.BusyMs).Median, summarize(r.BusyNoneMs).Median
		c2c, pub := summarize(r.C2CGbps).Median, summarize(r.HostPubGbp).Median
		fmt.Fprintf(w, "%-8s %8.1f %8.1f %8.1f %10.1f %10.1f %8.2f %8.2f %8.2f %8.2f\n", n, b, no, b-no, busy, busyNone, c2c, c2c/max(loop, 1e-9), pub, pub/max(loop, 1e-9))
		for _, e := range r.Errors {
			fmt.Fprintf(w, "  %s error: %s\n", n, e)
		}
	}
	if len(engines) > 0 {
		fmt.Fprintf(w, "busy: with %d containers running on the bridge, bridge and none taking turns\n", res[engines[0]].busyN())
		// The target: start latency with 200 running within 10%
		// of with none running, against the same engine's idle runs
		// taken around the busy ones.
		fmt.Fprintf(w, "\n(n) start latency with %d running vs none running (median ms; idle and busy spells alternate: idle, busy, idle, …)\n", res[engines[0]].busyN())
		fmt.Fprintf(w, "%-8s %8s %8s %10s %10s %10s %10s %14s\n", "engine", "idle-br", "busy-br", "busy/idle", "idle-none", "busy-none", "busy/idle", "host mounts")
		for _, n := range engines {
			r := res[n]
			if r == nil || len(r.IdleMs) == 0 || len(r.BusyMs) == 0 {
				continue
			}
			ib, bb := summarize(r.IdleMs).Median, summarize(r.BusyMs).Median
			in, bn := summarize(r.IdleNoneMs).Median, summarize(r.BusyNoneMs).Median
			fmt.Fprintf(w, "%-8s %8.1f %8.1f %9.2f× %10.1f %10.1f %9.2f× %14s\n", n, ib, bb, bb/max(ib, 1e-9), in, bn, bn/max(in, 1e-9), fmt.Sprintf("%d → %d", r.IdleHostMounts, r.BusyHostMounts))
		}
		fmt.Fprintln(w, "target: busy-br/idle-br ≤ 1.10 (the issue: \"start latency with 200 running within 10% of with none\")")
	}
	if b, d := res["berth"], res["docker"]; b != nil && d != nil {
		bp, dp := summarize(b.HostPubGbp).Median, summarize(d.HostPubGbp).Median
		fmt.Fprintf(w, "host→pub berth/docker: %.2f×\n", bp/max(dp, 1e-9))
	}
	if loopCg > 0 {
		fmt.Fprintf(w, "lo-cg: loopback with server and client each in a cgroup at the containers' depth;")
		for _, n := range engines {
			if r := res[n]; r != nil {
				fmt.Fprintf(w, " %s c2c/lo-cg %.2f", n, summarize(r.C2CGbps).Median/loopCg)
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "targets: berth bridge ≤ 1/5 of docker's; busy-br ≤ 1.10 × idle-br (above); c2c ≥ 0.90 of loopback (the root cgroup's, not lo-cg); host→pub ≥ 2× docker's")
}

func (r *networkResult) busyN() int {
	if r == nil {
		return 0
	}
	return r.Busy
}
