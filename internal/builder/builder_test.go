package builder

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/berth-engine/berth/internal/api"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

func parseRun(t testing.TB, df string, opts api.BuildOptions) (*run, error) {
	t.Helper()
	res, err := parser.Parse(strings.NewReader(df))
	if err != nil {
		return nil, err
	}
	stages, meta, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return nil, err
	}
	r := &run{opts: opts, escape: res.EscapeToken, stages: stages, used: map[string]bool{}, built: map[int]*stageState{}, mu: &sync.Mutex{}}
	if err := r.metaArgs(meta); err != nil {
		return nil, err
	}
	return r, nil
}

func TestNeededStages(t *testing.T) {
	df := `ARG V=1
FROM busybox AS base
FROM base AS a
FROM busybox AS b
COPY --from=a /x /y
FROM busybox AS unused
FROM scratch
COPY --from=b /y /z
COPY --from=0 /q /q
`
	cases := []struct {
		target string
		want   []int
	}{
		{"", []int{0, 1, 2, 4}},
		{"b", []int{0, 1, 2}},
		{"unused", []int{3}},
		{"BASE", []int{0}},
	}
	for _, c := range cases {
		r, err := parseRun(t, df, api.BuildOptions{Target: c.target})
		if err != nil {
			t.Fatal(err)
		}
		target, err := r.targetIndex()
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.neededStages(target)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(c.want) {
			t.Errorf("target %q: stages %v, want %v", c.target, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("target %q: stages %v, want %v", c.target, got, c.want)
			}
		}
	}
	r, _ := parseRun(t, df, api.BuildOptions{Target: "nope"})
	if _, err := r.targetIndex(); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing target: %v", err)
	}
}

func TestMetaArgs(t *testing.T) {
	v := "override"
	r, err := parseRun(t, "ARG A=default\nARG B=${A}-b\nARG C\nFROM img:${B}\n", api.BuildOptions{BuildArgs: map[string]*string{"A": &v, "UNUSED": &v}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.expandMeta(r.stages[0].BaseName)
	if err != nil {
		t.Fatal(err)
	}
	// B's default is expanded from A's default (build args override only
	// the ARG they name, after its own default is evaluated).
	if got != "img:default-b" && got != "img:override-b" {
		t.Errorf("FROM expands to %q", got)
	}
	if r.meta["C"] != nil {
		t.Errorf("C has a value: %v", *r.meta["C"])
	}
	if !r.used["A"] || r.used["UNUSED"] {
		t.Errorf("used = %v", r.used)
	}
}

func TestIsArchive(t *testing.T) {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	_ = tw.WriteHeader(&tar.Header{Name: "a", Size: 1, Mode: 0o644})
	_, _ = tw.Write([]byte("x"))
	_ = tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(tb.Bytes())
	_ = zw.Close()
	for name, c := range map[string]struct {
		b    []byte
		want bool
	}{
		"tar":        {tb.Bytes(), true},
		"gzip":       {gz.Bytes(), true},
		"dockerfile": {[]byte("FROM busybox\nRUN true\n"), false},
		"empty":      {nil, false},
	} {
		if got := isArchive(c.b[:min(len(c.b), 512)]); got != c.want {
			t.Errorf("%s: isArchive = %v", name, got)
		}
	}
}

func TestRelClean(t *testing.T) {
	for in, want := range map[string]string{
		"a/b":        "a/b",
		"/a/../../b": "b",
		"../../etc":  "etc",
		".":          "",
		"./x/":       "x",
	} {
		if got := relClean(in); got != want {
			t.Errorf("relClean(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseTags(t *testing.T) {
	refs, err := parseTags([]string{"a", "b:1", "", "reg.io:5000/x/y:z"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"docker.io/library/a:latest", "docker.io/library/b:1", "reg.io:5000/x/y:z"}
	for i, r := range refs {
		if r.String() != want[i] {
			t.Errorf("tag %d = %s, want %s", i, r, want[i])
		}
	}
	if _, err := parseTags([]string{"UPPER"}); err == nil {
		t.Error("an invalid tag was accepted")
	}
}

func TestCacheKey(t *testing.T) {
	r := &run{}
	a := r.cacheKey(&stageState{id: "sha256:1"}, "run", "echo a")
	if a != r.cacheKey(&stageState{id: "sha256:1"}, "run", "echo a") {
		t.Error("cache key is not stable")
	}
	for _, other := range []string{
		r.cacheKey(&stageState{id: "sha256:2"}, "run", "echo a"),
		r.cacheKey(&stageState{id: "sha256:1"}, "run", "echo b"),
		r.cacheKey(&stageState{id: "sha256:1"}, "runecho a"),
		r.cacheKey(&stageState{id: "sha256:1"}, "ru", "necho a"),
	} {
		if other == a {
			t.Error("different steps share a cache key")
		}
	}
}

// FuzzDockerfile feeds arbitrary Dockerfiles through parsing, argument
// expansion and stage planning: they must fail cleanly, never panic.
func FuzzDockerfile(f *testing.F) {
	f.Add("FROM busybox\nRUN echo hi\n")
	f.Add("ARG A=b\nFROM ${A} AS x\nFROM x\nCOPY --from=x /a /b\n")
	f.Add("FROM scratch\nCOPY --from=1 / /\n")
	f.Fuzz(func(t *testing.T, df string) {
		r, err := parseRun(t, df, api.BuildOptions{})
		if err != nil || len(r.stages) == 0 {
			return
		}
		target, err := r.targetIndex()
		if err != nil {
			return
		}
		_, _ = r.neededStages(target)
	})
}

func TestTarFS(t *testing.T) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	add := func(h *tar.Header, data string) {
		h.Size = int64(len(data))
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write([]byte(data))
	}
	add(&tar.Header{Name: "Dockerfile", Mode: 0o644}, "FROM scratch\n")
	add(&tar.Header{Name: "a/b/c.txt", Mode: 0o600}, "cee")
	add(&tar.Header{Name: "./link", Typeflag: tar.TypeSymlink, Linkname: "a/b"}, "")
	add(&tar.Header{Name: "hard", Typeflag: tar.TypeLink, Linkname: "a/b/c.txt"}, "")
	add(&tar.Header{Name: "x.md", Mode: 0o644}, "x")
	add(&tar.Header{Name: "ignored/keep.md", Mode: 0o644}, "k")
	add(&tar.Header{Name: "ignored/drop.txt", Mode: 0o644}, "d")
	add(&tar.Header{Name: ".dockerignore", Mode: 0o644}, "ignored\n!ignored/*.md\n*.md\n!x.md\n")
	_ = tw.Close()
	bc, err := readContext(t.Context(), bytes.NewReader(b.Bytes()), t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer bc.close()
	if string(bc.dockerfile) != "FROM scratch\n" {
		t.Errorf("dockerfile = %q", bc.dockerfile)
	}
	fi, real, err := bc.fs.Stat("link/c.txt")
	if err != nil || real != "a/b/c.txt" || fi.Mode().Perm() != 0o600 {
		t.Errorf("stat through a symlink: %v %q %v", fi, real, err)
	}
	if fi, _, err := bc.fs.Stat("a"); err != nil || !fi.IsDir() {
		t.Errorf("implied directory: %v %v", fi, err)
	}
	for rel, want := range map[string]string{"hard": "cee", "a/b/c.txt": "cee", "x.md": "x", "ignored/keep.md": "k"} {
		f, err := bc.fs.Open(rel)
		if err != nil {
			t.Errorf("open %s: %v", rel, err)
			continue
		}
		var got bytes.Buffer
		_, _ = got.ReadFrom(f)
		if got.String() != want {
			t.Errorf("%s = %q, want %q", rel, got.String(), want)
		}
	}
	if _, _, err := bc.fs.Stat("ignored/drop.txt"); err == nil {
		t.Error(".dockerignore'd file still in the context")
	}
	if ms, _ := bc.fs.Glob("*.md"); len(ms) != 1 || ms[0] != "x.md" {
		t.Errorf("glob *.md = %v", ms)
	}
	if names, _ := bc.fs.ReadDir("ignored"); len(names) != 1 || names[0] != "keep.md" {
		t.Errorf("ignored/ = %v", names)
	}
}

// FuzzContext feeds arbitrary bytes as a build context: reading, indexing
// and resolving paths must fail cleanly, never panic or escape.
func FuzzContext(f *testing.F) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	_ = tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: 5, Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte("FROM "))
	_ = tw.WriteHeader(&tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "../../l"})
	_ = tw.Close()
	f.Add(b.Bytes())
	f.Add([]byte("FROM busybox\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		bc, err := readContext(t.Context(), bytes.NewReader(data), t.TempDir(), "")
		if err != nil {
			return
		}
		defer bc.close()
		for name := range bc.fs.entries {
			if strings.HasPrefix(name, "/") || strings.HasPrefix(name, "..") {
				t.Fatalf("entry %q escapes the context", name)
			}
			_, real, err := bc.fs.Stat(name)
			if err == nil && (strings.HasPrefix(real, "..") || strings.HasPrefix(real, "/")) {
				t.Fatalf("%q resolves outside: %q", name, real)
			}
		}
	})
}

func TestStageOutputOrder(t *testing.T) {
	a, b, c := newStageOutput(), newStageOutput(), newStageOutput()
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, o := range []*stageOutput{a, b, c} {
			if o.copyTo(&out) {
				return
			}
		}
	}()
	// Later stages write first; the output still comes in stage order.
	fmt.Fprint(c, "c1 ")
	fmt.Fprint(b, "b1 ")
	b.close(false)
	fmt.Fprint(a, "a1 ")
	fmt.Fprint(a, "a2 ")
	a.close(true) // a failed: nothing after it is shown
	c.close(false)
	<-done
	if out.String() != "a1 a2 " {
		t.Errorf("output = %q", out.String())
	}
}
