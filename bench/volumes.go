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
	"time"
)

// volumeIOResult is job (v) for one engine: sequential write (dd with
// fsync) and read (after dropping the page cache) throughput in MB/s, as
// timed around dd, into a named volume, a bind mount and the
// container's writable layer; "host" is dd run directly on the host's
// file system under the bench root (the physical reference).
type volumeIOResult struct {
	WriteMBs map[string][]float64 `json:"write_mb_s"`
	ReadMBs  map[string][]float64 `json:"read_mb_s"`
	Errors   []string             `json:"errors,omitempty"`
}

// ddRate runs cmd (a dd of bytes) and returns MB/s over its wall time
// minus overhead (the cost of an empty exec into the container, measured
// beforehand; 0 on the host). Debian's busybox dd prints no timing.
func ddRate(cmd *exec.Cmd, bytes int64, overhead time.Duration) (float64, error) {
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start) - overhead
	if err != nil {
		return 0, fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
	}
	if took <= 0 {
		return 0, fmt.Errorf("dd took %v after the exec overhead", took)
	}
	return float64(bytes) / 1e6 / took.Seconds(), nil
}

// execOverhead is the median wall time of `exec NAME true`.
func execOverhead(ctx context.Context, e engine, name string) time.Duration {
	var ds []float64
	for i := 0; i < 5; i++ {
		start := time.Now()
		if err := e.CLI(ctx, "exec", name, "true").Run(); err != nil {
			return 0
		}
		ds = append(ds, float64(time.Since(start)))
	}
	return time.Duration(summarize(ds).Median)
}

func dropCaches() { _ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200) }

// jobVolumeIO is job (v).
func jobVolumeIO(ctx context.Context, es []engine, root string, mib, runs int) map[string]*volumeIOResult {
	bytes := int64(mib) << 20
	count := strconv.Itoa(mib)
	res := map[string]*volumeIOResult{}
	host := &volumeIOResult{WriteMBs: map[string][]float64{}, ReadMBs: map[string][]float64{}}
	res["host"] = host
	hostDir := filepath.Join(root, "volio-host")
	_ = os.MkdirAll(hostDir, 0o755)
	defer os.RemoveAll(hostDir)
	busybox, _ := exec.LookPath("busybox")
	// measureHost runs one host round; rounds are interleaved with the
	// engines' so that the machine's noise (a VM's disk) falls on all.
	measureHost := func() {
		if busybox == "" || ctx.Err() != nil {
			return
		}
		f := filepath.Join(hostDir, "f")
		if r, err := ddRate(exec.CommandContext(ctx, busybox, "dd", "if=/dev/zero", "of="+f, "bs=1M", "count="+count, "conv=fsync"), bytes, 0); err == nil {
			host.WriteMBs["host"] = append(host.WriteMBs["host"], r)
		} else {
			host.Errors = append(host.Errors, err.Error())
		}
		dropCaches()
		if r, err := ddRate(exec.CommandContext(ctx, busybox, "dd", "if="+f, "of=/dev/null", "bs=1M"), bytes, 0); err == nil {
			host.ReadMBs["host"] = append(host.ReadMBs["host"], r)
		}
		_ = os.Remove(f)
	}
	for _, e := range es {
		r := &volumeIOResult{WriteMBs: map[string][]float64{}, ReadMBs: map[string][]float64{}}
		res[e.Name()] = r
		bind := filepath.Join(root, "volio-"+e.Name())
		_ = os.MkdirAll(bind, 0o755)
		targets := map[string][]string{
			"volume":  {"-v", "benchvol:/t"},
			"bind":    {"-v", bind + ":/t"},
			"overlay": nil,
		}
		for i := 0; i < runs && ctx.Err() == nil; i++ {
			measureHost()
			for _, kind := range []string{"volume", "bind", "overlay"} {
				// One container writes, syncs, drops the cache (from the
				// host, between the two dd's) and reads.
				name := fmt.Sprintf("volio-%s-%d", kind, i)
				args := append(append([]string{"run", "-d", "--name", name, "--network", "none"}, targets[kind]...), "busybox", "sh", "-c", "mkdir -p /t; sleep 1000")
				if out := cli(ctx, e, args...); out.Err != nil {
					r.Errors = append(r.Errors, out.Error(e.Name(), args).Error())
					continue
				}
				overhead := execOverhead(ctx, e, name)
				w, err := ddRate(e.CLI(ctx, "exec", name, "dd", "if=/dev/zero", "of=/t/f", "bs=1M", "count="+count, "conv=fsync"), bytes, overhead)
				if err != nil {
					r.Errors = append(r.Errors, err.Error())
				} else {
					r.WriteMBs[kind] = append(r.WriteMBs[kind], w)
				}
				dropCaches()
				if rd, err := ddRate(e.CLI(ctx, "exec", name, "dd", "if=/t/f", "of=/dev/null", "bs=1M"), bytes, overhead); err == nil {
					r.ReadMBs[kind] = append(r.ReadMBs[kind], rd)
				}
				_ = cli(ctx, e, "exec", name, "rm", "-f", "/t/f")
				_ = cli(ctx, e, "rm", "-f", name)
			}
		}
		_ = cli(ctx, e, "volume", "rm", "-f", "benchvol")
		_ = os.RemoveAll(bind)
		slog.Info("job (v) done", "engine", e.Name())
	}
	return res
}

// printVolumeIO prints job (v).
func printVolumeIO(w io.Writer, res map[string]*volumeIOResult, engines []string) {
	if len(res) == 0 {
		return
	}
	fmt.Fprintf(w, "\n(v) sequential I/O (busybox dd, fsync on write, page cache dropped before read), median MB/s\n%-8s %-8s %10s %10s %12s %12s\n", "engine", "target", "write", "read", "write/host", "read/host")
	h := res["host"]
	hw, hr := medianMBs(h.WriteMBs["host"]), medianMBs(h.ReadMBs["host"])
	fmt.Fprintf(w, "%-8s %-8s %10.0f %10.0f\n", "host", "-", hw, hr)
	for _, n := range engines {
		r := res[n]
		if r == nil {
			continue
		}
		for _, kind := range []string{"volume", "bind", "overlay"} {
			wm, rm := medianMBs(r.WriteMBs[kind]), medianMBs(r.ReadMBs[kind])
			fmt.Fprintf(w, "%-8s %-8s %10.0f %10.0f %12.2f %12.2f\n", n, kind, wm, rm, wm/max(hw, 1e-9), rm/max(hr, 1e-9))
		}
	}
	fmt.Fprintln(w, "target: volume and bind within 5% of the host (≥ 0.95)")
}

func medianMBs(xs []float64) float64 { return summarize(xs).Median }
