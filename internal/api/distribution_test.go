package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/registry"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

type fakeDistribution struct {
	pushName string
	pushOpts PushOptions
	pushErr  error
	auth     *registry.AuthConfig
}

func (f *fakeDistribution) Push(ctx context.Context, name string, opts PushOptions, progress io.Writer) error {
	f.pushName, f.pushOpts = name, opts
	if f.pushErr != nil {
		return f.pushErr
	}
	_, err := io.WriteString(progress, `{"status":"The push refers to repository [`+name+`]"}`+"\r\n")
	return err
}

func (f *fakeDistribution) DistributionInspect(ctx context.Context, name, auth string) (*registry.DistributionInspect, error) {
	if name == "nope" {
		return nil, errdefs.ErrNotFound.WithMessage("manifest unknown")
	}
	return &registry.DistributionInspect{Descriptor: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: "sha256:0000000000000000000000000000000000000000000000000000000000000000"},
		Platforms: []ocispec.Platform{{OS: "linux", Architecture: "amd64"}}}, nil
}

func (f *fakeDistribution) Login(ctx context.Context, ac *registry.AuthConfig) (registry.AuthResponse, error) {
	f.auth = ac
	if ac.Password != "right" {
		return registry.AuthResponse{}, errdefs.ErrUnauthenticated.WithMessage("login attempt failed with status: 401 Unauthorized")
	}
	return registry.AuthResponse{Status: "Login Succeeded"}, nil
}

func TestDistributionRoutes(t *testing.T) {
	log, _ := testLogger(t)
	f := &fakeDistribution{}
	h := NewRouter(Backends{System: fakeSystem{}, Distribution: f}, RouterOptions{Logger: log})
	do := func(method, path, body string, hdr ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	r := do("POST", "/v1.47/images/localhost:5000/a/b/push?tag=v1", "", registry.AuthHeader, "e30=")
	if r.Code != 200 || f.pushName != "localhost:5000/a/b" || f.pushOpts.Tag != "v1" || f.pushOpts.RegistryAuth != "e30=" || !strings.Contains(r.Body.String(), "The push refers to repository") {
		t.Errorf("push: %d %s %+v", r.Code, r.Body, f)
	}
	f.pushErr = errdefs.ErrNotFound.WithMessage("An image does not exist locally with the tag: x")
	if r := do("POST", "/images/x/push", ""); r.Code != 404 || !strings.Contains(r.Body.String(), `"message":"An image does not exist locally with the tag: x"`) {
		t.Errorf("push error: %d %s", r.Code, r.Body)
	}
	r = do("GET", "/distribution/docker.io/library/busybox:latest/json", "")
	var di registry.DistributionInspect
	if r.Code != 200 || json.Unmarshal(r.Body.Bytes(), &di) != nil || di.Descriptor.MediaType != ocispec.MediaTypeImageIndex || len(di.Platforms) != 1 {
		t.Errorf("distribution inspect: %d %s", r.Code, r.Body)
	}
	if r := do("GET", "/distribution/nope/json", ""); r.Code != 404 {
		t.Errorf("distribution inspect of nothing: %d", r.Code)
	}
	r = do("POST", "/auth", `{"username":"u","password":"right","serveraddress":"localhost:5000"}`, "Content-Type", "application/json")
	if r.Code != 200 || !strings.Contains(r.Body.String(), `"Status":"Login Succeeded"`) || f.auth.ServerAddress != "localhost:5000" {
		t.Errorf("auth: %d %s", r.Code, r.Body)
	}
	if r := do("POST", "/auth", `{"username":"u","password":"wrong"}`, "Content-Type", "application/json"); r.Code != http.StatusUnauthorized {
		t.Errorf("auth with a wrong password: %d %s", r.Code, r.Body)
	}
	if r := do("POST", "/auth", `{`, "Content-Type", "application/json"); r.Code != 400 {
		t.Errorf("auth with bad JSON: %d", r.Code)
	}
	// Not wired: 501.
	h2 := NewRouter(Backends{System: fakeSystem{}}, RouterOptions{Logger: log})
	rec := httptest.NewRecorder()
	h2.ServeHTTP(rec, httptest.NewRequest("POST", "/images/x/push", nil))
	if rec.Code != 501 {
		t.Errorf("unwired push: %d", rec.Code)
	}
}
