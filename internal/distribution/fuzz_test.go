package distribution

import (
	"encoding/json"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Registry answers and client headers are untrusted: parsing them must
// never panic.
func FuzzDecodeAuthHeader(f *testing.F) {
	f.Add("eyJ1c2VybmFtZSI6InUiLCJwYXNzd29yZCI6InAifQ==")
	f.Add("")
	f.Add("%%%")
	f.Fuzz(func(t *testing.T, s string) {
		ac, err := DecodeAuthHeader(s)
		if err == nil {
			_, _ = Authenticator(ac)
		}
	})
}

func FuzzManifest(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1,"platform":{"os":"linux","architecture":"arm","variant":"v6"}}]}`))
	f.Add([]byte(`{"schemaVersion":2,"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:00","size":-1},"layers":[{"mediaType":"x"}]}`))
	f.Add([]byte(`{"schemaVersion":1,"fsLayers":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		mt := sniffMediaType(b)
		if isIndex(mt) {
			var idx ocispec.Index
			if json.Unmarshal(b, &idx) == nil {
				for _, p := range []string{"", "linux/arm64", "linux/arm/v5", "windows/amd64"} {
					pl, err := ParsePlatform(p)
					if err == nil {
						selectManifest(&idx, pl)
					}
				}
			}
		}
		var m ocispec.Manifest
		if json.Unmarshal(b, &m) == nil {
			_ = validateManifest(&m)
		}
	})
}
