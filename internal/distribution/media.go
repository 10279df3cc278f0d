package distribution

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of Docker's image formats (OCI's are in image-spec).
const (
	MediaTypeDockerManifest       = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList   = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig         = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer          = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerLayerPlain     = "application/vnd.docker.image.rootfs.diff.tar"
	MediaTypeDockerForeignLayer   = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	MediaTypeDockerSchema1        = "application/vnd.docker.distribution.manifest.v1+json"
	MediaTypeDockerSchema1Signed  = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	mediaTypeOCINondistributable  = "application/vnd.oci.image.layer.nondistributable.v1.tar"
	mediaTypeOCINondistGzip       = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
	mediaTypeOCINondistZstd       = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
	mediaTypeInTotoAttestation    = "application/vnd.in-toto+json"
	dockerReferenceTypeAnnotation = "vnd.docker.reference.type"
)

func isIndex(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == MediaTypeDockerManifestList
}

func isManifest(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == MediaTypeDockerManifest
}

func isConfig(mt string) bool {
	return mt == ocispec.MediaTypeImageConfig || mt == MediaTypeDockerConfig
}

// isForeign reports layers that registries may not serve (Windows base
// layers, OCI non-distributable layers): docker fetches them from their
// URLs when the registry does not have them.
func isForeign(mt string) bool {
	switch mt {
	case MediaTypeDockerForeignLayer, mediaTypeOCINondistributable, mediaTypeOCINondistGzip, mediaTypeOCINondistZstd:
		return true
	}
	return false
}

func isLayer(mt string) bool {
	switch mt {
	case MediaTypeDockerLayer, MediaTypeDockerLayerPlain,
		ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd:
		return true
	}
	return isForeign(mt)
}

// sniffMediaType finds the media type of a manifest whose response header
// did not say (or said something generic), from its mediaType field or shape.
func sniffMediaType(b []byte) string {
	var probe struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		Manifests     json.RawMessage   `json:"manifests"`
		Config        json.RawMessage   `json:"config"`
		FSLayers      []json.RawMessage `json:"fsLayers"`
	}
	if json.Unmarshal(b, &probe) != nil {
		return ""
	}
	switch {
	case probe.MediaType != "":
		return probe.MediaType
	case probe.SchemaVersion == 1 || probe.FSLayers != nil:
		return MediaTypeDockerSchema1
	case probe.Manifests != nil:
		return ocispec.MediaTypeImageIndex
	case probe.Config != nil:
		return ocispec.MediaTypeImageManifest
	}
	return ""
}

// HostPlatform is the platform images are pulled for by default.
func HostPlatform() ocispec.Platform {
	p := ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
	switch runtime.GOARCH {
	case "arm64":
		p.Variant = "v8"
	case "arm":
		p.Variant = "v7"
	}
	return p
}

// ParsePlatform parses docker's os[/arch[/variant]]; "" is the host.
func ParsePlatform(s string) (ocispec.Platform, error) {
	if s == "" {
		return HostPlatform(), nil
	}
	parts := strings.Split(strings.ToLower(s), "/")
	if len(parts) > 3 || parts[0] == "" {
		return ocispec.Platform{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("%q: unknown operating system or architecture: invalid argument", s))
	}
	p := ocispec.Platform{OS: parts[0], Architecture: runtime.GOARCH}
	if len(parts) > 1 {
		p.Architecture = parts[1]
	}
	if len(parts) > 2 {
		p.Variant = parts[2]
	}
	return normalizePlatform(p), nil
}

// normalizePlatform applies containerd's aliases (aarch64 → arm64, x86_64 →
// amd64, arm64's default variant v8, arm's v7).
func normalizePlatform(p ocispec.Platform) ocispec.Platform {
	switch p.Architecture {
	case "x86_64", "x86-64":
		p.Architecture, p.Variant = "amd64", ""
	case "aarch64":
		p.Architecture = "arm64"
	case "armhf":
		p.Architecture, p.Variant = "arm", "v7"
	case "armel":
		p.Architecture, p.Variant = "arm", "v6"
	case "i386":
		p.Architecture = "386"
	}
	switch p.Architecture {
	case "arm64":
		if p.Variant == "" || p.Variant == "8" {
			p.Variant = "v8"
		}
	case "arm":
		if p.Variant == "" {
			p.Variant = "v7"
		} else if !strings.HasPrefix(p.Variant, "v") {
			p.Variant = "v" + p.Variant
		}
	case "amd64":
		if p.Variant == "v1" {
			p.Variant = ""
		}
	}
	return p
}

// platformMatches reports whether an index entry's platform serves want.
// An arm/v7 host also runs v6 and v5 images (the best is picked by order
// of preference in selectManifest).
func platformMatches(have *ocispec.Platform, want ocispec.Platform) bool {
	if have == nil {
		return false
	}
	h := normalizePlatform(*have)
	if h.OS != want.OS || h.Architecture != want.Architecture {
		return false
	}
	return want.Variant == "" || h.Variant == want.Variant || (want.Architecture == "arm" && h.Variant < want.Variant)
}

// formatPlatform is docker's os/arch[/variant].
func formatPlatform(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// selectManifest picks the image manifest of an index for the platform:
// attestation manifests are skipped; among matches the highest variant not
// above the wanted one wins, then the first listed.
func selectManifest(idx *ocispec.Index, want ocispec.Platform) (ocispec.Descriptor, bool) {
	best := -1
	for i, d := range idx.Manifests {
		if !isManifest(d.MediaType) || d.Annotations[dockerReferenceTypeAnnotation] == "attestation-manifest" {
			continue
		}
		if !platformMatches(d.Platform, want) {
			continue
		}
		if best < 0 || normalizePlatform(*d.Platform).Variant > normalizePlatform(*idx.Manifests[best].Platform).Variant {
			best = i
		}
	}
	if best < 0 {
		return ocispec.Descriptor{}, false
	}
	return idx.Manifests[best], true
}
