package distribution

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/content"
	"github.com/berth-engine/berth/internal/image"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/moby/moby/api/types/registry"
	"github.com/opencontainers/go-digest"
)

// env is a pull/push client over fresh stores and a registry on 127.0.0.1.
type env struct {
	c    *Client
	srv  *httptest.Server
	host string
	cs   content.Store
	is   image.Store
}

func newEnv(t *testing.T, h http.Handler) *env {
	t.Helper()
	if h == nil {
		h = ggcrregistry.New(ggcrregistry.Logger(nopLogger()))
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	cs, err := content.NewStore(dir + "/content")
	if err != nil {
		t.Fatal(err)
	}
	is, err := image.NewStore(dir + "/image")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c, ok := is.(io.Closer); ok {
			c.Close()
		}
	})
	c := &Client{Content: cs, Images: is, Backoff: &remote.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 2}}
	return &env{c: c, srv: srv, host: strings.TrimPrefix(srv.URL, "http://"), cs: cs, is: is}
}

func (e *env) ref(t *testing.T, s string) reference.Named {
	t.Helper()
	r, err := reference.ParseNormalizedNamed(e.host + "/" + s)
	if err != nil {
		t.Fatal(err)
	}
	return reference.TagNameOnly(r)
}

// tarLayer is a real tar layer with one file, compressed as asked.
func tarLayer(t *testing.T, name, body string, comp compression.Compression) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte(body))
	_ = tw.Close()
	b := buf.Bytes()
	opts := []tarball.LayerOption{tarball.WithCompression(comp)}
	if comp == compression.None {
		opts = append(opts, tarball.WithMediaType(types.OCIUncompressedLayer))
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testImage builds an image for a platform from layers.
func testImage(t *testing.T, platform v1.Platform, oci bool, layers ...v1.Layer) v1.Image {
	t.Helper()
	base := empty.Image
	if oci {
		base = mutate.MediaType(base, types.OCIManifestSchema1)
		base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	}
	img, err := mutate.ConfigFile(base, &v1.ConfigFile{OS: platform.OS, Architecture: platform.Architecture, Variant: platform.Variant,
		Config: v1.Config{Cmd: []string{"sh"}}, RootFS: v1.RootFS{Type: "layers"}})
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.AppendLayers(img, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func hostV1Platform() v1.Platform {
	p := HostPlatform()
	return v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
}

func write(t *testing.T, e *env, repoTag string, img v1.Image) v1.Hash {
	t.Helper()
	ref, err := name.ParseReference(e.host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func progressLines(b *bytes.Buffer) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(strings.TrimSpace(line)), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func statuses(b *bytes.Buffer) string {
	var s []string
	for _, m := range progressLines(b) {
		if st, _ := m["status"].(string); st != "" && st != "Downloading" && st != "Extracting" && st != "Pushing" {
			if id, _ := m["id"].(string); id != "" {
				st = id + ": " + st
			}
			s = append(s, st)
		}
	}
	return strings.Join(s, "\n")
}

func TestPullByTagAndDigest(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		oci  bool
		comp compression.Compression
	}{
		{"docker-gzip", false, compression.GZip},
		{"oci-zstd", true, compression.ZStd},
		{"oci-uncompressed", true, compression.None},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			img := testImage(t, hostV1Platform(), tc.oci,
				tarLayer(t, "a", "alpha", tc.comp), tarLayer(t, "b", "beta", tc.comp), tarLayer(t, "c", strings.Repeat("x", 100000), tc.comp))
			md := write(t, e, "team/app:v1", img)
			var buf bytes.Buffer
			res, err := e.c.Pull(ctx, e.ref(t, "team/app:v1"), PullOptions{Progress: NewProgress(&buf)})
			if err != nil {
				t.Fatal(err)
			}
			cfgName, _ := img.ConfigName()
			if res.Image.ID.String() != cfgName.String() || res.Digest.String() != md.String() || !res.Updated {
				t.Fatalf("pull result %+v", res)
			}
			if len(res.Image.Layers) != 3 {
				t.Fatalf("layers: %+v", res.Image.Layers)
			}
			for _, l := range res.Image.Layers {
				if _, err := e.cs.Info(ctx, l.Digest); err != nil {
					t.Errorf("layer %s not in the content store: %v", l.Digest, err)
				}
			}
			got := statuses(&buf)
			for _, want := range []string{"v1: Pulling from team/app", "Pulling fs layer", "Verifying Checksum", "Download complete", "Pull complete", "Digest: " + md.String(), "Status: Downloaded newer image for " + e.host + "/team/app:v1"} {
				if !strings.Contains(got, want) {
					t.Errorf("progress lacks %q:\n%s", want, got)
				}
			}
			// RepoDigests: name@manifest digest resolves to the image.
			byDigest, err := e.is.Resolve(ctx, e.host+"/team/app@"+md.String())
			if err != nil || byDigest.ID != res.Image.ID {
				t.Fatalf("resolve by digest: %v", err)
			}
			// Again: everything exists; and by digest.
			buf.Reset()
			res2, err := e.c.Pull(ctx, e.ref(t, "team/app:v1"), PullOptions{Progress: NewProgress(&buf)})
			if err != nil || res2.Updated {
				t.Fatalf("second pull: %v %+v", err, res2)
			}
			if got := statuses(&buf); strings.Count(got, "Already exists") != 3 || !strings.Contains(got, "Image is up to date") {
				t.Errorf("second pull progress:\n%s", got)
			}
			dref, _ := reference.ParseNormalizedNamed(e.host + "/team/app@" + md.String())
			if _, err := e.c.Pull(ctx, dref, PullOptions{}); err != nil {
				t.Fatalf("pull by digest: %v", err)
			}
		})
	}
}

func TestPullIndexPicksPlatform(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	amd := testImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, true, tarLayer(t, "amd", "amd64", compression.GZip))
	arm := testImage(t, v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, true, tarLayer(t, "arm", "arm64", compression.GZip))
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	)
	ref, _ := name.ParseReference(e.host + "/multi:latest")
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()
	for _, tc := range []struct {
		platform *string
		want     v1.Image
	}{
		{nil, map[string]v1.Image{"amd64": amd, "arm64": arm}[runtime.GOARCH]},
		{ptr("linux/arm64"), arm},
		{ptr("linux/amd64"), amd},
	} {
		opts := PullOptions{}
		if tc.platform != nil {
			p, err := ParsePlatform(*tc.platform)
			if err != nil {
				t.Fatal(err)
			}
			opts.Platform = &p
		}
		res, err := e.c.Pull(ctx, e.ref(t, "multi"), opts)
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := tc.want.ConfigName()
		md, _ := tc.want.Digest()
		if res.Image.ID.String() != cfg.String() || res.Image.Manifest.String() != md.String() || res.Digest.String() != idxDigest.String() {
			t.Errorf("platform %v: got image %s manifest %s repo digest %s", tc.platform, res.Image.ID, res.Image.Manifest, res.Digest)
		}
	}
	p, _ := ParsePlatform("linux/s390x")
	_, err := e.c.Pull(ctx, e.ref(t, "multi"), PullOptions{Platform: &p})
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "no matching manifest for linux/s390x in the manifest list entries") {
		t.Errorf("unknown platform: %v", err)
	}
	// A single-platform image that does not match --platform.
	write(t, e, "single:latest", amd)
	p, _ = ParsePlatform("linux/arm64")
	if _, err := e.c.Pull(ctx, e.ref(t, "single"), PullOptions{Platform: &p}); err == nil || !strings.Contains(err.Error(), "does not match the specified platform") {
		t.Errorf("mismatched platform: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestPullAllTags(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	for i, tag := range []string{"a", "b", "c"} {
		write(t, e, "many:"+tag, testImage(t, hostV1Platform(), false, tarLayer(t, "f", fmt.Sprint(i), compression.GZip)))
	}
	res, err := e.c.PullAllTags(ctx, e.ref(t, "many"), PullOptions{})
	if err != nil || len(res) != 3 {
		t.Fatalf("pull -a: %v %d", err, len(res))
	}
	for _, tag := range []string{"a", "b", "c"} {
		if _, err := e.is.Resolve(ctx, e.host+"/many:"+tag); err != nil {
			t.Errorf("tag %s: %v", tag, err)
		}
	}
}

// lying wraps a registry and rewrites blob responses.
type lying struct {
	h      http.Handler
	mu     sync.Mutex
	target string // blob digest to tamper with
	mode   string // "flip", "truncate", "5xx", "manifest-garbage", "manifest-huge"
	hits   atomic.Int32
}

func (l *lying) set(target, mode string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.target, l.mode = target, mode
}

func (l *lying) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	target, mode := l.target, l.mode
	l.mu.Unlock()
	(&lyingCall{l: l, target: target, mode: mode}).serve(w, r)
}

type lyingCall struct {
	l            *lying
	target, mode string
}

func (c *lyingCall) serve(w http.ResponseWriter, r *http.Request) {
	l := struct {
		h      http.Handler
		target string
		mode   string
		hits   *atomic.Int32
	}{c.l.h, c.target, c.mode, &c.l.hits}
	if l.mode == "5xx" && strings.Contains(r.URL.Path, "/manifests/") {
		l.hits.Add(1)
		http.Error(w, "boom", http.StatusServiceUnavailable)
		return
	}
	if strings.Contains(r.URL.Path, "/manifests/") && r.Method == http.MethodGet && strings.HasPrefix(l.mode, "manifest") {
		body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":`)
		if l.mode == "manifest-huge" {
			body = bytes.Repeat([]byte(" "), MaxManifestSize+10)
		}
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Write(body)
		return
	}
	if l.target == "" || !strings.HasSuffix(r.URL.Path, l.target) || r.Method != http.MethodGet {
		l.h.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	l.h.ServeHTTP(rec, r)
	b := rec.Body.Bytes()
	switch l.mode {
	case "flip":
		b = append([]byte{}, b...)
		b[len(b)/2] ^= 0xff
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.Write(b)
	case "truncate", "truncate-once":
		if l.mode == "truncate-once" && l.hits.Add(1) > 1 {
			w.Write(b)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.Write(b[:len(b)/2])
		// the handler returns: the connection ends short
		panic(http.ErrAbortHandler)
	}
}

func TestPullBadRegistriesStoreNothing(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []string{"flip", "truncate", "5xx", "manifest-garbage", "manifest-huge", "unknown-tag", "unknown-repo"} {
		t.Run(mode, func(t *testing.T) {
			l := &lying{h: ggcrregistry.New(ggcrregistry.Logger(nopLogger()))}
			e := newEnv(t, l)
			img := testImage(t, hostV1Platform(), false, tarLayer(t, "a", "alpha", compression.GZip), tarLayer(t, "b", strings.Repeat("beta", 5000), compression.GZip))
			write(t, e, "app:v1", img)
			layers, _ := img.Layers()
			ld, _ := layers[1].Digest()
			l.set(ld.String(), mode)
			ref := e.ref(t, "app:v1")
			switch mode {
			case "unknown-tag":
				ref = e.ref(t, "app:nope")
			case "unknown-repo":
				ref = e.ref(t, "nope:v1")
			}
			_, err := e.c.Pull(ctx, ref, PullOptions{})
			if err == nil {
				t.Fatal("pull succeeded")
			}
			switch mode {
			case "flip":
				if !strings.Contains(err.Error(), "filesystem layer verification failed for digest "+ld.String()) {
					t.Errorf("error: %v", err)
				}
			case "truncate":
				if errdefs.IsInvalidArgument(err) {
					t.Errorf("a short read is not a verification failure: %v", err)
				}
			case "5xx":
				if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "503") || l.hits.Load() < 2 {
					t.Errorf("error: %v (hits %d: no retry?)", err, l.hits.Load())
				}
			case "manifest-garbage", "manifest-huge":
				if !errdefs.IsInvalidArgument(err) {
					t.Errorf("error: %v", err)
				}
			case "unknown-tag":
				if want := "manifest for " + e.host + "/app:nope not found: manifest unknown"; !errdefs.IsNotFound(err) || !strings.HasPrefix(err.Error(), want) {
					t.Errorf("error: %v, want %q", err, want)
				}
			case "unknown-repo":
				if !errdefs.IsNotFound(err) {
					t.Errorf("error: %v", err)
				}
			}
			imgs, _ := e.is.List(ctx)
			if len(imgs) != 0 {
				t.Errorf("a failed pull left %d images", len(imgs))
			}
			if _, err := e.cs.Info(ctx, digest.Digest(ld.String())); err == nil {
				t.Errorf("the bad blob was stored")
			}
			// Nothing half-written either: the blobs that are there verify.
			_ = e.cs.Walk(ctx, func(i content.Info) error {
				rc, _ := e.cs.Open(ctx, i.Digest)
				defer rc.Close()
				if d, _ := digest.FromReader(rc); d != i.Digest {
					t.Errorf("corrupt blob %s", i.Digest)
				}
				return nil
			})
			if mode == "flip" || mode == "truncate" {
				// The registry heals: the pull completes, reusing what was verified.
				l.set("", mode)
				if _, err := e.c.Pull(ctx, ref, PullOptions{}); err != nil {
					t.Fatalf("pull after the registry healed: %v", err)
				}
			}
		})
	}
}

func TestPullRetriesCutDownloads(t *testing.T) {
	l := &lying{h: ggcrregistry.New(ggcrregistry.Logger(nopLogger()))}
	e := newEnv(t, l)
	// Incompressible, so the half that is sent leaves the server's buffers.
	noise := make([]byte, 256<<10)
	rand.Read(noise)
	img := testImage(t, hostV1Platform(), false, tarLayer(t, "b", string(noise), compression.GZip))
	write(t, e, "app:v1", img)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	l.set(ld.String(), "truncate-once")
	var buf bytes.Buffer
	if _, err := e.c.Pull(context.Background(), e.ref(t, "app:v1"), PullOptions{Progress: NewProgress(&buf)}); err != nil {
		t.Fatalf("pull with one cut download: %v", err)
	}
	if got := statuses(&buf); !strings.Contains(got, "Retrying in 1 second") {
		t.Errorf("no retry reported (%d blob GETs):\n%s", l.hits.Load(), got)
	}
}

func TestPush(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	img := testImage(t, hostV1Platform(), false, tarLayer(t, "a", "alpha", compression.GZip), tarLayer(t, "b", "beta", compression.ZStd))
	write(t, e, "src:v1", img)
	if _, err := e.c.Pull(ctx, e.ref(t, "src:v1"), PullOptions{}); err != nil {
		t.Fatal(err)
	}
	id, err := e.is.Lookup(ctx, e.ref(t, "src:v1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"dst:v1", "dst:v2"} {
		if err := e.c.Images.AddReference(ctx, e.ref(t, tag), id); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	res, err := e.c.Push(ctx, e.ref(t, "dst:v1"), PushOptions{Progress: NewProgress(&buf)})
	if err != nil {
		t.Fatal(err)
	}
	md, _ := img.Digest()
	if len(res) != 1 || res[0].Digest.String() != md.String() {
		t.Fatalf("push kept the manifest? %+v want %s", res, md)
	}
	if got := statuses(&buf); !strings.Contains(got, "The push refers to repository ["+e.host+"/dst]") || !strings.Contains(got, "v1: digest: "+md.String()) {
		t.Errorf("push progress:\n%s", got)
	}
	// -a: every tag; everything exists now.
	buf.Reset()
	res, err = e.c.Push(ctx, reference.TrimNamed(e.ref(t, "dst")), PushOptions{Progress: NewProgress(&buf)})
	if err != nil || len(res) != 2 {
		t.Fatalf("push -a: %v %+v", err, res)
	}
	if got := statuses(&buf); strings.Contains(got, ": Pushed") {
		t.Errorf("layers pushed twice:\n%s", got)
	}
	r, _ := name.ParseReference(e.host + "/dst:v2")
	pushed, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(pushed, validate.Fast); err != nil {
		t.Errorf("pushed image: %v", err)
	}
	// Not local.
	if _, err := e.c.Push(ctx, e.ref(t, "nothere:v1"), PushOptions{}); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "An image does not exist locally with the tag") {
		t.Errorf("push of a missing image: %v", err)
	}
}

// authRegistry wraps a registry with basic auth, or bearer tokens from a
// token endpoint that itself takes basic auth (Docker Hub's scheme).
func authRegistry(h http.Handler, bearer bool, user, pass string) http.Handler {
	const token = "s3cr3t-token"
	mux := http.NewServeMux()
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != pass {
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}`, http.StatusUnauthorized)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"token": token})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		ok := false
		if bearer {
			ok = r.Header.Get("Authorization") == "Bearer "+token
		} else {
			u, p, hasAuth := r.BasicAuth()
			ok = hasAuth && u == user && p == pass
		}
		if !ok {
			if bearer {
				w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="test"`, r.Host))
			} else {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		h.ServeHTTP(w, r)
	})
	return mux
}

func TestAuth(t *testing.T) {
	ctx := context.Background()
	for _, bearer := range []bool{false, true} {
		t.Run(fmt.Sprintf("bearer=%v", bearer), func(t *testing.T) {
			inner := ggcrregistry.New(ggcrregistry.Logger(nopLogger()))
			e := newEnv(t, authRegistry(inner, bearer, "alice", "pw"))
			// Seed through the inner registry directly.
			seed := httptest.NewServer(inner)
			defer seed.Close()
			img := testImage(t, hostV1Platform(), false, tarLayer(t, "a", "alpha", compression.GZip))
			sref, _ := name.ParseReference(strings.TrimPrefix(seed.URL, "http://") + "/private:v1")
			if err := remote.Write(sref, img); err != nil {
				t.Fatal(err)
			}
			good := &registry.AuthConfig{Username: "alice", Password: "pw", ServerAddress: e.host}
			bad := &registry.AuthConfig{Username: "alice", Password: "nope", ServerAddress: e.host}
			if _, err := e.c.Pull(ctx, e.ref(t, "private:v1"), PullOptions{}); err == nil || !strings.Contains(err.Error(), "may require 'docker login'") {
				t.Errorf("anonymous pull: %v", err)
			}
			if _, err := e.c.Pull(ctx, e.ref(t, "private:v1"), PullOptions{Auth: bad}); err == nil {
				t.Errorf("pull with a bad password succeeded")
			}
			if _, err := e.c.Pull(ctx, e.ref(t, "private:v1"), PullOptions{Auth: good}); err != nil {
				t.Fatalf("pull with credentials: %v", err)
			}
			// The legacy "auth" field, as in config.json.
			legacy := &registry.AuthConfig{Auth: base64.StdEncoding.EncodeToString([]byte("alice:pw"))}
			if _, err := e.c.Pull(ctx, e.ref(t, "private:v1"), PullOptions{Auth: legacy}); err != nil {
				t.Fatalf("pull with auth field: %v", err)
			}
			if st, err := e.c.Login(ctx, good); err != nil || st != "Login Succeeded" {
				t.Errorf("login: %q %v", st, err)
			}
			if _, err := e.c.Login(ctx, bad); !errdefs.IsUnauthorized(err) {
				t.Errorf("login with a bad password: %v", err)
			}
			id, _ := e.is.Lookup(ctx, e.ref(t, "private:v1"))
			_ = e.is.AddReference(ctx, e.ref(t, "pushed:v1"), id)
			if _, err := e.c.Push(ctx, e.ref(t, "pushed:v1"), PushOptions{Auth: good}); err != nil {
				t.Errorf("push with credentials: %v", err)
			}
			if _, err := e.c.Push(ctx, e.ref(t, "pushed:v1"), PushOptions{}); err == nil {
				t.Errorf("anonymous push succeeded")
			}
		})
	}
}

func TestDecodeAuthHeader(t *testing.T) {
	ac := registry.AuthConfig{Username: "u", Password: "p?>", ServerAddress: "localhost:5000"}
	b, _ := json.Marshal(ac)
	for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.RawURLEncoding, base64.StdEncoding} {
		got, err := DecodeAuthHeader(enc.EncodeToString(b))
		if err != nil || *got != ac {
			t.Errorf("%v: %+v %v", enc, got, err)
		}
	}
	if _, err := DecodeAuthHeader("!!!"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("garbage: %v", err)
	}
	if got, err := DecodeAuthHeader(""); err != nil || *got != (registry.AuthConfig{}) {
		t.Errorf("empty: %+v %v", got, err)
	}
}

func TestInsecureRules(t *testing.T) {
	h := &Hosts{Insecure: []string{"myreg:5000", "10.1.0.0/16"}}
	for host, want := range map[string]bool{
		"localhost": true, "localhost:5000": true, "127.0.0.1:5000": true, "127.3.4.5": true, "[::1]:5000": true,
		"myreg:5000": true, "myreg:5001": false, "10.1.2.3:443": true, "10.2.0.1": false,
		"docker.io": false, "index.docker.io": false, "192.168.1.1:5000": false,
	} {
		if got := h.IsInsecure(host); got != want {
			t.Errorf("IsInsecure(%q) = %v, want %v", host, got, want)
		}
	}
	for _, bad := range []string{"http://x", "a/b", ""} {
		if ValidateInsecure(bad) == nil {
			t.Errorf("ValidateInsecure(%q) accepted", bad)
		}
	}
	// A secure registry is never spoken to in plain HTTP.
	rt, err := (&Hosts{CertsDir: t.TempDir()}).Transport("registry.example.com")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://registry.example.com/v2/", nil)
	if _, err := rt.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "refusing plain HTTP") {
		t.Errorf("plain HTTP to a secure registry: %v", err)
	}
}

func TestParsePlatformAndSelect(t *testing.T) {
	for in, want := range map[string]string{
		"linux/amd64": "linux/amd64", "linux/arm64": "linux/arm64/v8", "linux/aarch64": "linux/arm64/v8",
		"linux/arm": "linux/arm/v7", "linux/arm/6": "linux/arm/v6", "linux/x86_64": "linux/amd64",
	} {
		p, err := ParsePlatform(in)
		if err != nil || formatPlatform(p) != want {
			t.Errorf("ParsePlatform(%q) = %v %v, want %s", in, formatPlatform(p), err, want)
		}
	}
	if _, err := ParsePlatform("a/b/c/d"); err == nil {
		t.Error("ParsePlatform accepted four parts")
	}
}

func TestRegistryHost(t *testing.T) {
	for in, want := range map[string]string{
		"": name.DefaultRegistry, "https://index.docker.io/v1/": name.DefaultRegistry, "docker.io": name.DefaultRegistry,
		"localhost:5000": "localhost:5000", "http://127.0.0.1:5000/": "127.0.0.1:5000",
	} {
		if got := RegistryHost(in); got != want {
			t.Errorf("RegistryHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// A foreign (non-distributable) layer the registry does not have is fetched
// from its URLs, and verified like any other; a push never uploads it.
func TestForeignLayer(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	fl := tarLayer(t, "win", "base layer", compression.GZip)
	blob, _ := fl.Compressed()
	b, _ := io.ReadAll(blob)
	urlSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(b) }))
	defer urlSrv.Close()
	base := testImage(t, hostV1Platform(), false)
	img, err := mutate.Append(base, mutate.Addendum{Layer: fl, MediaType: types.DockerForeignLayer, URLs: []string{urlSrv.URL + "/base.tar.gz"}})
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.AppendLayers(img, tarLayer(t, "app", "app", compression.GZip))
	if err != nil {
		t.Fatal(err)
	}
	write(t, e, "foreign:v1", img)
	fd, _ := fl.Digest()
	blobAt := func(repo string) int {
		r, err := http.Get(e.srv.URL + "/v2/" + repo + "/blobs/" + fd.String())
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode
	}
	// go-containerregistry uploaded it anyway; the registry must not have it.
	req, _ := http.NewRequest(http.MethodDelete, e.srv.URL+"/v2/foreign/blobs/"+fd.String(), nil)
	if r, err := http.DefaultClient.Do(req); err == nil {
		r.Body.Close()
	}
	if c := blobAt("foreign"); c != http.StatusNotFound {
		t.Fatalf("the registry has the foreign layer: %d", c)
	}
	res, err := e.c.Pull(ctx, e.ref(t, "foreign:v1"), PullOptions{})
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	if res.Image.Layers[0].MediaType != MediaTypeDockerForeignLayer || len(res.Image.Layers[0].URLs) != 1 {
		t.Errorf("foreign layer recorded as %+v", res.Image.Layers[0])
	}
	if _, err := e.cs.Info(ctx, res.Image.Layers[0].Digest); err != nil {
		t.Errorf("foreign layer not stored: %v", err)
	}
	if err := e.is.AddReference(ctx, e.ref(t, "copy:v1"), res.Image.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Push(ctx, e.ref(t, "copy:v1"), PushOptions{}); err != nil {
		t.Fatalf("push: %v", err)
	}
	if c := blobAt("copy"); c != http.StatusNotFound {
		t.Errorf("the foreign layer was pushed: %d", c)
	}
}
