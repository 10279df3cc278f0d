package image

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// ParseReference parses an image name the way docker does: normalised
// ("busybox" is docker.io/library/busybox), with the tag "latest" added
// when neither a tag nor a digest is given. Invalid input fails with
// errdefs.ErrInvalidArgument and docker's "invalid reference format" message.
func ParseReference(s string) (reference.Named, error) {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return nil, invalidReference(err)
	}
	return reference.TagNameOnly(named), nil
}

// FamiliarString is the short form docker shows for a reference:
// "busybox:latest" for docker.io/library/busybox:latest.
func FamiliarString(ref reference.Named) string {
	return reference.FamiliarString(ref)
}

// invalidReference keeps the reference library's message, which is already
// docker's ("invalid reference format: repository name (library/Busybox)
// must be lowercase"), and classifies it as invalid input.
func invalidReference(err error) error {
	return errdefs.ErrInvalidArgument.WithMessage(err.Error())
}

// refKey is the canonical string a reference is stored under: the full
// name with its tag, or with its digest when it has one (a digest pins the
// content, so a tag next to it adds nothing).
func refKey(ref reference.Named) (string, reference.Named, error) {
	if ref == nil {
		return "", nil, errdefs.ErrInvalidArgument.WithMessage("invalid reference format: empty reference")
	}
	// Re-parse: callers may hand in references built by hand.
	named, err := reference.ParseNormalizedNamed(ref.String())
	if err != nil {
		return "", nil, invalidReference(err)
	}
	if d, ok := named.(reference.Digested); ok {
		c, err := reference.WithDigest(reference.TrimNamed(named), d.Digest())
		if err != nil {
			return "", nil, invalidReference(err)
		}
		return c.String(), c, nil
	}
	named = reference.TagNameOnly(named)
	return named.String(), named, nil
}

// noSuchImage is docker's not-found error for what the user typed: a
// name gets its familiar form with the default tag ("No such image:
// busybox:latest"); something that can only be an ID is shown as typed.
func noSuchImage(input string, named reference.Named) error {
	shown := input
	if named != nil && !isHexID(strings.TrimPrefix(input, "sha256:")) {
		shown = reference.FamiliarString(reference.TagNameOnly(named))
	}
	return errdefs.ErrNotFound.WithMessage(fmt.Sprintf("No such image: %s", shown))
}

// isHexID reports whether s could be a full or truncated image ID.
func isHexID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// fullID recognises a complete image ID, with or without "sha256:".
func fullID(s string) (digest.Digest, bool) {
	hex := strings.TrimPrefix(s, "sha256:")
	if len(hex) != 64 || !isHexID(hex) {
		return "", false
	}
	return digest.NewDigestFromEncoded(digest.SHA256, hex), true
}
