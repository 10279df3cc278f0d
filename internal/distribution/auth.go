package distribution

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/moby/moby/api/types/registry"
)

// DecodeAuthHeader decodes the X-Registry-Auth header docker clients send:
// base64url (padded or not; some clients use standard base64) of a JSON
// registry.AuthConfig. An empty header is anonymous access.
func DecodeAuthHeader(h string) (*registry.AuthConfig, error) {
	if h == "" {
		return &registry.AuthConfig{}, nil
	}
	var raw []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.RawURLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
		if raw, err = enc.DecodeString(strings.TrimSpace(h)); err == nil {
			break
		}
	}
	if err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage("invalid X-Registry-Auth header: " + err.Error())
	}
	var ac registry.AuthConfig
	if err := json.Unmarshal(raw, &ac); err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage("invalid X-Registry-Auth header: " + err.Error())
	}
	return &ac, nil
}

// Authenticator turns docker's auth config into go-containerregistry's: an
// identity or registry token, a username and password (or the legacy "auth"
// field, base64 user:password), or anonymous.
func Authenticator(ac *registry.AuthConfig) (authn.Authenticator, error) {
	if ac == nil {
		return authn.Anonymous, nil
	}
	cfg := authn.AuthConfig{
		Username:      ac.Username,
		Password:      ac.Password,
		IdentityToken: ac.IdentityToken,
		RegistryToken: ac.RegistryToken,
	}
	if ac.Auth != "" && cfg.Username == "" {
		raw, err := base64.StdEncoding.DecodeString(ac.Auth)
		if err != nil {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid auth field: %v", err))
		}
		u, p, ok := strings.Cut(string(raw), ":")
		if !ok {
			return nil, errdefs.ErrInvalidArgument.WithMessage("invalid auth field: want base64(user:password)")
		}
		cfg.Username, cfg.Password = u, p
	}
	if cfg == (authn.AuthConfig{}) {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(cfg), nil
}
