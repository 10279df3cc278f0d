package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Job (g), issue 4: a Dockerfile of 12 instructions after FROM (4 RUN,
// 3 COPY, 2 ENV, WORKDIR, LABEL, CMD) over a context of a few hundred
// files: the cold build (--no-cache) and the fully cached rebuild, timed
// around the CLI, the engines taking turns. Docker builds with its
// legacy builder (DOCKER_BUILDKIT=0) and, as "docker-buildkit", with the
// BuildKit built into dockerd (DOCKER_BUILDKIT=1; the 20.10 client speaks
// it without the buildx plugin), Podman with `podman build`.

const benchDockerfile = `FROM busybox
ENV APP=/app MODE=bench
WORKDIR /app
RUN echo one > /one.txt
COPY files/ /app/files/
RUN mkdir -p /data && for i in 1 2 3 4 5 6 7 8 9 10; do echo $i > /data/$i; done
COPY a.txt /app/
ENV EXTRA=1
RUN ls -R /app > /listing.txt
COPY b.txt c.txt /app/more/
LABEL bench=build
RUN rm /one.txt
CMD ["sh"]
`

// buildResult is job (g) for one engine.
type buildResult struct {
	ColdSamplesMs   []float64 `json:"cold_samples_ms"`
	CachedSamplesMs []float64 `json:"cached_samples_ms"`
	ColdMs          summary   `json:"cold_ms"`
	CachedMs        summary   `json:"cached_ms"`
	Errors          []string  `json:"errors,omitempty"`
}

// writeBuildContext makes the job's context: the Dockerfile, three small
// files and files/ with 300 files in 10 directories.
func writeBuildContext(dir string) error {
	files := map[string]string{"Dockerfile": benchDockerfile, "a.txt": "a\n", "b.txt": "b\n", "c.txt": "c\n"}
	for i := 0; i < 300; i++ {
		files[fmt.Sprintf("files/d%d/f%03d.txt", i%10, i)] = fmt.Sprintf("file %d %s\n", i, "0123456789abcdef0123456789abcdef")
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func jobBuild(ctx context.Context, es []engine, root string, runs int) map[string]*buildResult {
	res := map[string]*buildResult{}
	dir := filepath.Join(root, "build-context")
	if err := writeBuildContext(dir); err != nil {
		for _, e := range es {
			res[e.Name()] = &buildResult{Errors: []string{err.Error()}}
		}
		return res
	}
	// A variant is one engine with one builder.
	type variant struct {
		e        engine
		name     string
		buildkit bool
	}
	var vs []variant
	for _, e := range es {
		vs = append(vs, variant{e: e, name: e.Name()})
		if e.Name() == "docker" {
			vs = append(vs, variant{e: e, name: "docker-buildkit", buildkit: true})
		}
	}
	for _, v := range vs {
		res[v.name] = &buildResult{}
	}
	defer func() {
		for _, r := range res {
			r.ColdMs = summarize(r.ColdSamplesMs)
			r.CachedMs = summarize(r.CachedSamplesMs)
		}
	}()
	build := func(v variant, noCache bool) (time.Duration, error) {
		e := v.e
		// --network none: docker's BuildKit has no bridge under the
		// runner's --bridge=none dockerd, and the job measures building,
		// not network setup, so every engine's RUNs go without one.
		args := []string{"build", "-q", "--network", "none", "-t", "bench-build:latest"}
		if noCache {
			args = append(args, "--no-cache")
		}
		args = append(args, dir)
		cctx, cancel := context.WithTimeout(ctx, cmdTimeout)
		defer cancel()
		cmd := e.CLI(cctx, args...)
		if e.Name() == "docker" {
			bk := "DOCKER_BUILDKIT=0"
			if v.buildkit {
				bk = "DOCKER_BUILDKIT=1"
			}
			cmd.Env = append(append([]string(nil), cmd.Env...), bk)
		}
		start := time.Now()
		out := runCmd(cmd, nil)
		d := time.Since(start)
		reapOrphans()
		if out.Err != nil {
			return 0, out.Error(v.name, args)
		}
		return d, nil
	}
	for round := 0; round < runs+1; round++ {
		for k := range vs {
			if ctx.Err() != nil {
				return res
			}
			v := vs[(round+k)%len(vs)]
			r := res[v.name]
			if len(r.Errors) >= 3 {
				continue
			}
			cold, err := build(v, true)
			if err == nil {
				var cached time.Duration
				cached, err = build(v, false)
				if err == nil && round > 0 { // round 0 warms up (base image, page cache)
					r.ColdSamplesMs = append(r.ColdSamplesMs, ms(cold))
					r.CachedSamplesMs = append(r.CachedSamplesMs, ms(cached))
				}
			}
			if err != nil {
				slog.Warn("build run failed", "engine", v.name, "err", err)
				r.Errors = append(r.Errors, err.Error())
			}
		}
	}
	return res
}

func printBuild(w io.Writer, r map[string]*buildResult, engines []string) {
	if len(r) == 0 {
		return
	}
	if i := slices.Index(engines, "docker"); i >= 0 {
		engines = slices.Insert(slices.Clone(engines), i+1, "docker-buildkit")
	}
	fmt.Fprintf(w, "\n(g) build: 12-instruction Dockerfile, 300-file context; ms (median, p10–p90)\n%-15s %22s %22s %5s\n", "engine", "cold (--no-cache)", "fully cached", "n")
	for _, n := range engines {
		if x := r[n]; x != nil {
			fmt.Fprintf(w, "%-15s %8.0f (%5.0f–%5.0f) %8.1f (%5.1f–%5.1f) %5d\n", n, x.ColdMs.Median, x.ColdMs.P10, x.ColdMs.P90, x.CachedMs.Median, x.CachedMs.P10, x.CachedMs.P90, x.ColdMs.N)
		}
	}
	b := r["berth"]
	for _, n := range engines {
		x := r[n]
		if n == "berth" || b == nil || x == nil || x.ColdMs.Median == 0 || x.CachedMs.Median == 0 {
			continue
		}
		fmt.Fprintf(w, "berth/%s: cold %.2f, cached %.2f\n", n, b.ColdMs.Median/x.ColdMs.Median, b.CachedMs.Median/x.CachedMs.Median)
	}
}
