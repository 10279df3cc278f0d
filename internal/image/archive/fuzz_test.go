package archive_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/berth-engine/berth/internal/image/archive"
	"github.com/containerd/errdefs"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// FuzzLoad feeds arbitrary bytes to Load: it must never panic, and a
// failed load must leave the stores exactly as they were.
func FuzzLoad(f *testing.F) {
	small := func(seed string) []byte {
		return writeTar(f, []tarEntry{file("etc/hostname", seed), symlink("bin/sh", "busybox")})
	}
	a := newFixture(f, "a", [][]byte{small("a"), small("b")}, "busybox:latest")
	b := newFixture(f, "b", [][]byte{small("a")})
	legacy := legacySave(f, a, b)
	d25 := docker25Save(f, a)
	oci := ociLayout(f, ociEntry{fx: b, compressed: [][]byte{gz(f, small("a"))}, mediaTypes: []string{ocispec.MediaTypeImageLayerGzip},
		annotations: map[string]string{"io.containerd.image.name": "docker.io/library/b:1"}, multiArch: true})
	for _, seed := range [][]byte{legacy, d25, oci, d25[:len(d25)/2], legacy[:1536], nil, []byte("not a tar"),
		writeTar(f, []tarEntry{file("manifest.json", "[]")}),
		writeTar(f, []tarEntry{file("manifest.json", `[{"Config":"../x","Layers":["/etc/passwd"]}]`)}),
		writeTar(f, []tarEntry{file("index.json", `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:00","size":1}]}`)}),
		writeTar(f, []tarEntry{symlink("a", "b"), symlink("b", "a"), file("manifest.json", `[{"Config":"a"}]`)}),
	} {
		f.Add(seed)
	}
	s := newStores(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		before := s.state(t)
		res, err := archive.Load(context.Background(), s.cs, s.is, bytes.NewReader(data))
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("Load error %v is not invalid argument", err)
			}
			if after := s.state(t); after.String() != before.String() {
				t.Fatalf("failed load changed the stores:\n%s\n%s", before, after)
			}
			return
		}
		// A successful load recorded what it says, with all its blobs.
		for _, li := range res.Images {
			img, err := s.is.Get(context.Background(), li.ID)
			if err != nil {
				t.Fatalf("loaded image %s: %v", li.ID, err)
			}
			for _, l := range img.Layers {
				if _, err := s.cs.Info(context.Background(), l.Digest); err != nil {
					t.Fatalf("layer %s: %v", l.Digest, err)
				}
			}
		}
	})
}

// FuzzImportChanges feeds arbitrary --change values to the Dockerfile
// parser and the change rules: never a panic, only invalid-argument
// errors, and a config that still encodes.
func FuzzImportChanges(f *testing.F) {
	for _, seed := range []string{
		`CMD ["echo", "hi"]`, `ENTRYPOINT /bin/sh`, `ENV A=1 B="2 3"`, `ENV PATH=$PATH:/x`, `EXPOSE 80/tcp 1-2`,
		`LABEL "a b"=c`, `USER ${U:-nobody}`, `VOLUME ["/a", "/b"]`, `WORKDIR rel/../x`, `STOPSIGNAL 9`,
		`ONBUILD RUN x`, `HEALTHCHECK --interval=1s --retries=3 CMD ["true"]`, `RUN x`, `CMD ["unterminated`,
		"ENV A=1\nCMD x", "# escape=`\nCMD a`\nb", `EXPOSE ${P}`, "CMD <<EOF\nhi\nEOF", `HEALTHCHECK --interval=-1s CMD x`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, change string) {
		var cfg dockerspec.DockerOCIImageConfig
		cfg.Env = []string{"PATH=/bin"}
		err := archive.ApplyChanges(&cfg, []string{change})
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("ApplyChanges(%q) = %v, not invalid argument", change, err)
			}
			return
		}
		if _, err := json.Marshal(cfg); err != nil {
			t.Fatalf("config does not encode: %v", err)
		}
	})
}
