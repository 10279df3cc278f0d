package distribution

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/berth-engine/berth/internal/content"
	"github.com/berth-engine/berth/internal/image"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/moby/moby/api/types/registry"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// LayerUnpacker unpacks pulled layers so the image is ready to run when the
// pull ends. The engine implements it over its snapshotter.
type LayerUnpacker interface {
	// HasLayer reports whether chainID is unpacked.
	HasLayer(ctx context.Context, chainID digest.Digest) bool
	// UnpackLayer unpacks the committed layer blob desc, whose
	// uncompressed digest is diffID, as chainID on top of parent ("" for
	// the bottom layer). wrap, when not nil, wraps the compressed stream
	// (for progress).
	UnpackLayer(ctx context.Context, parent string, chainID, diffID digest.Digest, desc ocispec.Descriptor, wrap func(io.Reader) io.Reader) error
}

// LayerStager is an optional capability of a LayerUnpacker: extracting a
// layer before its parent is unpacked, so that a pull extracts its layers
// in parallel, each while it downloads. A StageLayer or Commit error
// matching errdefs.ErrNotImplemented makes the pull unpack that layer the
// ordinary way.
type LayerStager interface {
	// StageLayer extracts the layer desc (uncompressed digest diffID) from
	// compressed, the blob's bytes as they arrive. Those bytes are not
	// verified yet: the pull commits the staged layer only once the blob
	// has been verified and committed, and discards it otherwise. The
	// stager verifies diffID itself.
	StageLayer(ctx context.Context, diffID digest.Digest, desc ocispec.Descriptor, compressed io.Reader) (StagedLayer, error)
}

// StagingChecker is an optional capability of a LayerStager that can say
// up front whether it stages layers at all (overlay2 does, vfs does not):
// one that cannot is handed no download to follow.
type StagingChecker interface {
	CanStageLayers() bool
}

// StagedLayer is a layer extracted ahead of its parent.
type StagedLayer interface {
	// Commit makes the staged layer the snapshot chainID on parent.
	Commit(ctx context.Context, parent string, chainID digest.Digest) error
	// Discard removes a staged layer that will not be committed.
	Discard()
}

// Client pulls and pushes images between berth's stores and registries.
type Client struct {
	Hosts    *Hosts
	Content  content.Store
	Images   image.Store
	Unpacker LayerUnpacker // nil: layers are unpacked on first use
	// Jobs is how many layers move at once (default 6).
	Jobs int
	// Backoff overrides the retry backoff on transient errors (tests).
	Backoff *remote.Backoff
	// UserAgent is sent to registries.
	UserAgent string
}

func (c *Client) jobs() int {
	if c.Jobs > 0 {
		return c.Jobs
	}
	return 6
}

func (c *Client) hosts() *Hosts {
	if c.Hosts != nil {
		return c.Hosts
	}
	return &Hosts{}
}

// ggcrRef converts a docker reference to go-containerregistry's, with the
// registry's insecure rules.
func (c *Client) ggcrRef(ref reference.Named) (name.Reference, error) {
	opts := c.hosts().nameOptions(reference.Domain(ref))
	r, err := name.ParseReference(ref.String(), opts...)
	if err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid reference %s: %v", ref, err))
	}
	return r, nil
}

func (c *Client) ggcrRepo(ref reference.Named) (name.Repository, error) {
	opts := c.hosts().nameOptions(reference.Domain(ref))
	r, err := name.NewRepository(reference.TrimNamed(ref).String(), opts...)
	if err != nil {
		return name.Repository{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid repository %s: %v", ref, err))
	}
	return r, nil
}

// remoteOptions are the go-containerregistry options for one registry.
func (c *Client) remoteOptions(ctx context.Context, ref reference.Named, ac *registry.AuthConfig) ([]remote.Option, error) {
	host := reference.Domain(ref)
	rt, err := c.hosts().Transport(host)
	if err != nil {
		return nil, err
	}
	auth, err := Authenticator(ac)
	if err != nil {
		return nil, err
	}
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(rt),
		remote.WithAuth(auth),
		remote.WithJobs(c.jobs()),
		remote.WithRetryStatusCodes(http.StatusRequestTimeout, http.StatusTooManyRequests,
			http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout),
	}
	if c.Backoff != nil {
		opts = append(opts, remote.WithRetryBackoff(*c.Backoff))
	}
	if c.UserAgent != "" {
		opts = append(opts, remote.WithUserAgent(c.UserAgent))
	}
	return opts, nil
}

// Login checks credentials against a registry (GET /v2/ with them, after
// the token dance for bearer-token registries) as `docker login` does
// through the daemon. serverAddress may be a URL or host[:port]; "" or
// Docker Hub's index URL means Docker Hub.
func (c *Client) Login(ctx context.Context, ac *registry.AuthConfig) (string, error) {
	host := RegistryHost(ac.ServerAddress)
	reg, err := name.NewRegistry(host, c.hosts().nameOptions(host)...)
	if err != nil {
		return "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid registry %q: %v", ac.ServerAddress, err))
	}
	rt, err := c.hosts().Transport(host)
	if err != nil {
		return "", err
	}
	auth, err := Authenticator(ac)
	if err != nil {
		return "", err
	}
	if auth == authn.Anonymous {
		return "", errdefs.ErrInvalidArgument.WithMessage("Error: Cannot perform an interactive login from a non TTY device")
	}
	t, err := transport.NewWithContext(ctx, reg, auth, rt, []string{reg.Scope(transport.PullScope)})
	if err != nil {
		return "", loginError(host, err)
	}
	scheme := reg.Scheme()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s/v2/", scheme, reg.RegistryStr()), nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: t, Timeout: 60 * time.Second}).Do(req)
	if err != nil && scheme == "http" {
		// the ping found https; retry on it
		req.URL.Scheme = "https"
		resp, err = (&http.Client{Transport: t, Timeout: 60 * time.Second}).Do(req)
	}
	if err != nil {
		return "", loginError(host, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return "", errdefs.ErrUnauthenticated.WithMessage(fmt.Sprintf("login attempt to %s://%s/v2/ failed with status: %d %s", req.URL.Scheme, reg.RegistryStr(), resp.StatusCode, http.StatusText(resp.StatusCode)))
	}
	if resp.StatusCode != http.StatusOK {
		return "", errdefs.ErrUnknown.WithMessage(fmt.Sprintf("login attempt to %s://%s/v2/ failed with status: %d %s", req.URL.Scheme, reg.RegistryStr(), resp.StatusCode, http.StatusText(resp.StatusCode)))
	}
	return "Login Succeeded", nil
}

func loginError(host string, err error) error {
	var te *transport.Error
	if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
		return errdefs.ErrUnauthenticated.WithMessage(fmt.Sprintf("Get \"https://%s/v2/\": unauthorized: incorrect username or password", host))
	}
	return errdefs.ErrUnknown.WithMessage(err.Error())
}

// RegistryHost is the registry host (as in image names) for a server
// address as `docker login` takes it: "https://index.docker.io/v1/",
// "localhost:5000", "http://myreg:5000/".
func RegistryHost(server string) string {
	s := server
	for _, p := range []string{"https://", "http://"} {
		if len(s) > len(p) && s[:len(p)] == p {
			s = s[len(p):]
		}
	}
	if i := indexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	switch s {
	case "", "index.docker.io", "registry-1.docker.io", "docker.io", "registry.hub.docker.com":
		return name.DefaultRegistry
	}
	return s
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// registryError turns a registry's answer into docker's error for it.
func registryError(what string, ref reference.Named, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var te *transport.Error
	if !errors.As(err, &te) {
		return errdefs.ErrUnknown.WithMessage(err.Error())
	}
	msg := ""
	codes := map[transport.ErrorCode]bool{}
	for _, d := range te.Errors {
		codes[d.Code] = true
		if msg == "" {
			msg = fmt.Sprintf("%s: %s", lowerCode(d.Code), d.Message)
		}
	}
	familiar := reference.FamiliarString(ref)
	switch {
	case codes[transport.ManifestUnknownErrorCode] || (te.StatusCode == http.StatusNotFound && what == "manifest" && !codes[transport.NameUnknownErrorCode]):
		if msg == "" {
			msg = "manifest unknown: manifest unknown"
		}
		return errdefs.ErrNotFound.WithMessage(fmt.Sprintf("manifest for %s not found: %s", familiar, msg))
	case codes[transport.NameUnknownErrorCode] || codes[transport.UnauthorizedErrorCode] || codes[transport.DeniedErrorCode] ||
		te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden:
		if msg == "" {
			msg = "denied: requested access to the resource is denied"
		}
		verb := "pull"
		if what == "push" {
			return errdefs.ErrPermissionDenied.WithMessage(msg)
		}
		return errdefs.ErrNotFound.WithMessage(fmt.Sprintf("%s access denied for %s, repository does not exist or may require 'docker login': %s", verb, reference.FamiliarName(ref), msg))
	case codes[transport.BlobUnknownErrorCode]:
		return errdefs.ErrNotFound.WithMessage(fmt.Sprintf("%s for %s: %s", what, familiar, msg))
	case te.StatusCode >= 500:
		return errdefs.ErrUnavailable.WithMessage(fmt.Sprintf("received unexpected HTTP status: %d %s", te.StatusCode, http.StatusText(te.StatusCode)))
	case te.StatusCode == http.StatusTooManyRequests:
		return errdefs.ErrUnavailable.WithMessage("toomanyrequests: " + err.Error())
	}
	return errdefs.ErrUnknown.WithMessage(err.Error())
}

// lowerCode is docker's rendering of a registry error code
// ("MANIFEST_UNKNOWN" → "manifest unknown").
func lowerCode(c transport.ErrorCode) string {
	b := []byte(c)
	for i, ch := range b {
		switch {
		case ch == '_':
			b[i] = ' '
		case ch >= 'A' && ch <= 'Z':
			b[i] = ch + 'a' - 'A'
		}
	}
	return string(b)
}
