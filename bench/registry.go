package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"
)

// Job (r): registry pull and push throughput. A multi-layer image of about
// 200 MB (three incompressible layers of random bytes, three compressible
// ones of text) is generated once and pushed to `berth registry serve` on
// 127.0.0.1; then, engine after engine, run by run:
//   - pull: the image is removed, then `<cli> pull` is timed; MB/s is the
//     image's gzipped size over the CLI's wall time (as the issue quotes
//     docker's 39 MB/s);
//   - pull (present): `<cli> pull` of the image that is already there;
//   - push: `<cli> push` to a fresh registry (new storage each run, so no
//     layer exists or can be mounted there); MB/s is the bytes the registry
//     stored over the CLI's wall time.

// registryResult is job (r) for one engine.
type registryResult struct {
	GzipBytes     int64     `json:"gzip_bytes"`
	PullS         []float64 `json:"pull_s"`
	PullMBps      summary   `json:"pull_mbps"`
	PullPresentS  summary   `json:"pull_present_s"`
	PushS         []float64 `json:"push_s"`
	PushBytes     []int64   `json:"push_bytes"`
	PushMBps      summary   `json:"push_mbps"`
	Errors        []string  `json:"errors,omitempty"`
	pullPresentXs []float64
}

// benchRegistry is a `berth registry serve` process.
type benchRegistry struct {
	cmd  *exec.Cmd
	addr string
	root string
	done chan struct{}
}

var regListening = regexp.MustCompile(`msg="registry listening" addr=(\S+)`)

func startBenchRegistry(binDir, root string) (*benchRegistry, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	logPath := root + ".log"
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(binDir, "berth"), "registry", "serve", "--addr", "127.0.0.1:0", "--root", root, "--gc-interval", "0")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &benchRegistry{cmd: cmd, root: root, done: make(chan struct{})}
	children.add(cmd.Process.Pid)
	go func() { _ = cmd.Wait(); children.remove(cmd.Process.Pid); close(r.done) }()
	for i := 0; i < 1000; i++ {
		b, _ := os.ReadFile(logPath)
		if m := regListening.FindSubmatch(b); m != nil {
			r.addr = string(m[1])
			return r, nil
		}
		select {
		case <-r.done:
			return nil, fmt.Errorf("registry exited: %s", b)
		case <-time.After(10 * time.Millisecond):
		}
	}
	r.stop()
	return nil, fmt.Errorf("registry did not start")
}

func (r *benchRegistry) stop() {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
}

// storedBytes is the size of the blobs in the registry's storage.
func (r *benchRegistry) storedBytes() int64 {
	var n int64
	_ = filepath.WalkDir(filepath.Join(r.root, "blobs"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// benchLayer is a tar with one file of size bytes: random bytes, or text
// that gzip shrinks about fourfold.
func benchLayer(seed int64, size int, compressible bool) (v1.Layer, error) {
	rng := rand.New(rand.NewSource(seed))
	data := make([]byte, size)
	if compressible {
		words := []string{"container ", "registry ", "layer ", "berth ", "digest ", "manifest ", "pull ", "push ", "blob ", "index "}
		for i := 0; i < size; {
			w := words[rng.Intn(len(words))]
			i += copy(data[i:], w)
			if rng.Intn(7) == 0 && i < size {
				data[i] = byte('a' + rng.Intn(26))
				i++
			}
		}
	} else {
		rng.Read(data)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("data-%d", seed), Mode: 0o644, Size: int64(size), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, tarball.WithCompressedCaching)
}

// seedRegistry pushes the benchmark image and returns its gzipped size.
func seedRegistry(ctx context.Context, addr, tarPath string) (string, int64, error) {
	// The busybox rootfs at the bottom, so every engine can run it.
	bb, err := tarball.LayerFromFile(tarPath, tarball.WithCompressedCaching)
	if err != nil {
		return "", 0, err
	}
	layers := []v1.Layer{bb}
	for i := 0; i < 6; i++ {
		compressible := i%2 == 1
		size := 35 << 20
		if compressible {
			size = 30 << 20
		}
		l, err := benchLayer(int64(i+1), size, compressible)
		if err != nil {
			return "", 0, err
		}
		layers = append(layers, l)
	}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{OS: "linux", Architecture: hostArch(), Config: v1.Config{Cmd: []string{"sh"}}, RootFS: v1.RootFS{Type: "layers"}})
	if err != nil {
		return "", 0, err
	}
	if img, err = mutate.AppendLayers(img, layers...); err != nil {
		return "", 0, err
	}
	var total int64
	for _, l := range layers {
		n, err := l.Size()
		if err != nil {
			return "", 0, err
		}
		total += n
	}
	ref := addr + "/bench/image:latest"
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return "", 0, err
	}
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		return "", 0, err
	}
	return ref, total, nil
}

func hostArch() string {
	out, err := exec.Command("uname", "-m").Output()
	if err == nil && strings.TrimSpace(string(out)) == "aarch64" {
		return "arm64"
	}
	return "amd64"
}

// settleDisk writes out all dirty data (sync(2)) before a timed pull or
// push, so that no engine pays for what the one before it left unwritten:
// docker's pull leaves its layers dirty in the page cache, and an engine
// that syncs (berth syncfs's each layer it records) would otherwise write
// them out during its own timed pull. Nothing is dropped from the page
// cache: the registry's blobs stay cached for every engine alike.
func settleDisk() {
	unix.Sync()
}

// registryFlags are the flags an engine's CLI needs for a plain-HTTP
// registry on 127.0.0.1 (docker and berth allow loopback by default).
func registryFlags(e engine) []string {
	if e.Name() == "podman" {
		return []string{"--tls-verify=false"}
	}
	return nil
}

func jobRegistry(ctx context.Context, es []engine, binDir, root, tarPath string, runs int) map[string]*registryResult {
	out := map[string]*registryResult{}
	fail := func(err error) map[string]*registryResult {
		for _, e := range es {
			out[e.Name()] = &registryResult{Errors: []string{err.Error()}}
		}
		return out
	}
	src, err := startBenchRegistry(binDir, filepath.Join(root, "registry-src"))
	if err != nil {
		return fail(err)
	}
	defer src.stop()
	slog.Info("job (r): generating and pushing the benchmark image")
	ref, gz, err := seedRegistry(ctx, src.addr, tarPath)
	if err != nil {
		return fail(fmt.Errorf("seed the registry: %w", err))
	}
	slog.Info("job (r): image ready", "ref", ref, "gzip_MB", float64(gz)/1e6)
	// The engines take turns run by run, so that a change in the machine's
	// load during the job weighs on all of them alike.
	pullMBps := map[string][]float64{}
	pushMBps := map[string][]float64{}
	failed := map[string]bool{}
	for _, e := range es {
		out[e.Name()] = &registryResult{GzipBytes: gz}
	}
	for i := 0; i < runs && ctx.Err() == nil; i++ {
		for _, e := range es {
			if failed[e.Name()] || ctx.Err() != nil {
				continue
			}
			res := out[e.Name()]
			fail := func(err error) { res.Errors = append(res.Errors, err.Error()); failed[e.Name()] = true }
			// Pull with nothing present.
			_ = cli(ctx, e, "rmi", "-f", ref)
			settleDisk()
			args := append(append([]string{"pull"}, registryFlags(e)...), ref)
			r := cli(ctx, e, args...)
			if r.Err != nil {
				fail(r.Error(e.Name(), args))
				continue
			}
			res.PullS = append(res.PullS, r.Dur.Seconds())
			pullMBps[e.Name()] = append(pullMBps[e.Name()], float64(gz)/1e6/r.Dur.Seconds())
			// Pull again: every layer is there.
			r = cli(ctx, e, args...)
			if r.Err != nil {
				fail(r.Error(e.Name(), args))
				continue
			}
			res.pullPresentXs = append(res.pullPresentXs, r.Dur.Seconds())
			// Push to a registry that has nothing.
			dst, err := startBenchRegistry(binDir, filepath.Join(root, fmt.Sprintf("registry-%s-%d", e.Name(), i)))
			if err != nil {
				fail(err)
				continue
			}
			target := dst.addr + "/pushed/image:latest"
			_ = cli(ctx, e, "tag", ref, target)
			settleDisk()
			pargs := append(append([]string{"push"}, registryFlags(e)...), target)
			r = cli(ctx, e, pargs...)
			stored := dst.storedBytes()
			dst.stop()
			_ = os.RemoveAll(dst.root)
			_ = cli(ctx, e, "rmi", target)
			if r.Err != nil {
				fail(r.Error(e.Name(), pargs))
				continue
			}
			res.PushS = append(res.PushS, r.Dur.Seconds())
			res.PushBytes = append(res.PushBytes, stored)
			pushMBps[e.Name()] = append(pushMBps[e.Name()], float64(stored)/1e6/r.Dur.Seconds())
			slog.Info("job (r)", "engine", e.Name(), "run", i+1, "pull_MBps", pullMBps[e.Name()][len(pullMBps[e.Name()])-1],
				"present_s", res.pullPresentXs[len(res.pullPresentXs)-1], "push_MBps", pushMBps[e.Name()][len(pushMBps[e.Name()])-1])
		}
	}
	for _, e := range es {
		_ = cli(ctx, e, "rmi", "-f", ref)
		res := out[e.Name()]
		res.PullMBps = summarize(pullMBps[e.Name()])
		res.PushMBps = summarize(pushMBps[e.Name()])
		res.PullPresentS = summarize(res.pullPresentXs)
	}
	return out
}

// printRegistry prints job (r)'s table with berth's ratios.
func printRegistry(w io.Writer, rs map[string]*registryResult, engines []string) {
	if len(rs) == 0 {
		return
	}
	var gz int64
	for _, r := range rs {
		if r.GzipBytes > 0 {
			gz = r.GzipBytes
		}
	}
	fmt.Fprintf(w, "\n(r) registry on 127.0.0.1: a %.0f MB (gzipped) 7-layer image, medians of %s runs\n", float64(gz)/1e6, runsOf(rs))
	header := []string{"", "pull MB/s", "pull present (s)", "push MB/s"}
	rows := [][]string{header}
	b := rs["berth"]
	for _, n := range engines {
		r := rs[n]
		if r == nil {
			continue
		}
		row := []string{n, fmt.Sprintf("%.1f", r.PullMBps.Median), fmt.Sprintf("%.3f", r.PullPresentS.Median), fmt.Sprintf("%.1f", r.PushMBps.Median)}
		if len(r.Errors) > 0 {
			row = append(row, "error: "+firstOf(r.Errors[0]))
		}
		rows = append(rows, row)
	}
	for _, n := range engines {
		r := rs[n]
		if n == "berth" || r == nil || b == nil || r.PullMBps.N == 0 || b.PullMBps.N == 0 {
			continue
		}
		rows = append(rows, []string{"berth ÷ " + n,
			fmt.Sprintf("%.2f×", b.PullMBps.Median/r.PullMBps.Median),
			fmt.Sprintf("%.2f× faster", r.PullPresentS.Median/b.PullPresentS.Median),
			fmt.Sprintf("%.2f×", b.PushMBps.Median/r.PushMBps.Median)})
	}
	writeColumns(w, rows)
}

func runsOf(rs map[string]*registryResult) string {
	for _, r := range rs {
		if r.PullMBps.N > 0 {
			return fmt.Sprint(r.PullMBps.N)
		}
	}
	return "0"
}
