package image_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/image"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// id makes a valid image ID starting with prefix, so tests control which
// short IDs are unique.
func id(prefix string) digest.Digest {
	return digest.Digest("sha256:" + prefix + strings.Repeat("0", 64-len(prefix)))
}

func newStore(t *testing.T) image.Store {
	t.Helper()
	s, err := image.NewStore(filepath.Join(t.TempDir(), "image"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.(io.Closer).Close() })
	return s
}

func testImage(idv digest.Digest, layers int) *image.Image {
	img := &image.Image{ID: idv}
	created := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	img.Config.Created = &created
	img.Config.OS = "linux"
	img.Config.Architecture = "amd64"
	img.Config.Config.Env = []string{"PATH=/bin"}
	img.Config.Config.Cmd = []string{"sh"}
	img.Config.RootFS.Type = "layers"
	for i := 0; i < layers; i++ {
		d := digest.FromString(fmt.Sprintf("%s layer %d", idv, i))
		img.Config.RootFS.DiffIDs = append(img.Config.RootFS.DiffIDs, d)
		img.Layers = append(img.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: int64(100 + i)})
	}
	return img
}

func mustPut(t *testing.T, s image.Store, img *image.Image) {
	t.Helper()
	if err := s.Put(context.Background(), img); err != nil {
		t.Fatalf("Put %s: %v", img.ID, err)
	}
}

func mustRef(t *testing.T, s string) reference.Named {
	t.Helper()
	r, err := image.ParseReference(s)
	if err != nil {
		t.Fatalf("ParseReference(%q): %v", s, err)
	}
	return r
}

func mustTag(t *testing.T, s image.Store, ref string, idv digest.Digest) {
	t.Helper()
	if err := s.AddReference(context.Background(), mustRef(t, ref), idv); err != nil {
		t.Fatalf("AddReference(%s, %s): %v", ref, idv, err)
	}
}

func refStrings(t *testing.T, s image.Store, idv digest.Digest) []string {
	t.Helper()
	refs, err := s.References(context.Background(), idv)
	if err != nil {
		t.Fatalf("References: %v", err)
	}
	out := []string{}
	for _, r := range refs {
		out = append(out, r.String())
	}
	return out
}

func TestPutGetListDelete(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a, b := testImage(id("aa"), 2), testImage(id("bb"), 0)
	a.Manifest = digest.FromString("manifest")
	a.Parent = id("cc")
	mustPut(t, s, a)
	mustPut(t, s, b)
	if a.Added.IsZero() {
		t.Error("Put did not set Added")
	}
	got, err := s.Get(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != a.ID || got.Manifest != a.Manifest || got.Parent != a.Parent || len(got.Layers) != 2 ||
		got.Layers[1].Digest != a.Layers[1].Digest || got.Layers[1].Size != 101 ||
		got.Config.Config.Cmd[0] != "sh" || !got.Config.Created.Equal(*a.Config.Created) ||
		got.Config.RootFS.DiffIDs[0] != a.Config.RootFS.DiffIDs[0] || !got.Added.Equal(a.Added) {
		t.Errorf("Get = %+v", got)
	}
	// The caller's copy is not shared with the store.
	got.Config.Config.Cmd[0] = "changed"
	if again, _ := s.Get(ctx, a.ID); again.Config.Config.Cmd[0] != "sh" {
		t.Error("Get returned shared state")
	}
	all, err := s.List(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("List = %d images, %v", len(all), err)
	}
	if err := s.Delete(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, b.ID); !errdefs.IsNotFound(err) {
		t.Errorf("Get after Delete = %v", err)
	}
	if err := s.Delete(ctx, b.ID); !errdefs.IsNotFound(err) {
		t.Errorf("second Delete = %v", err)
	}
	if all, _ := s.List(ctx); len(all) != 1 {
		t.Errorf("List after Delete = %d", len(all))
	}
}

func TestPutKeepsAdded(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a := testImage(id("aa"), 1)
	a.Added = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	mustPut(t, s, a)
	b := testImage(id("aa"), 1)
	b.Manifest = digest.FromString("new manifest")
	mustPut(t, s, b)
	got, _ := s.Get(ctx, a.ID)
	if !got.Added.Equal(a.Added) || got.Manifest != b.Manifest {
		t.Errorf("after re-Put: Added %v Manifest %s", got.Added, got.Manifest)
	}
}

func TestPutRejectsBadImages(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if err := s.Put(ctx, nil); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Put(nil) = %v", err)
	}
	for _, bad := range []digest.Digest{"", "sha256:abc", "md5:00", "sha256:../../x"} {
		if err := s.Put(ctx, testImage(bad, 0)); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Put(ID %q) = %v", bad, err)
		}
		if _, err := s.Get(ctx, bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Get(%q) = %v", bad, err)
		}
	}
	img := testImage(id("aa"), 2)
	img.Layers = img.Layers[:1]
	if err := s.Put(ctx, img); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Put with layers ≠ diff IDs = %v", err)
	}
	if all, _ := s.List(ctx); len(all) != 0 {
		t.Errorf("bad Puts stored %d images", len(all))
	}
}

func TestReferences(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a, b := testImage(id("aa"), 1), testImage(id("bb"), 1)
	mustPut(t, s, a)
	mustPut(t, s, b)

	if err := s.AddReference(ctx, mustRef(t, "busybox"), id("ff")); !errdefs.IsNotFound(err) {
		t.Errorf("tag of a missing image = %v", err)
	}
	mustTag(t, s, "busybox", a.ID)
	mustTag(t, s, "example.com:5000/team/app:v1", a.ID)
	mustTag(t, s, "busybox:1.36", a.ID)
	want := []string{"docker.io/library/busybox:1.36", "docker.io/library/busybox:latest", "example.com:5000/team/app:v1"}
	if got := refStrings(t, s, a.ID); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("References = %v, want %v", got, want)
	}
	if got, _ := s.Get(ctx, a.ID); got.LastTagTime.IsZero() {
		t.Error("LastTagTime not set")
	}
	if got, err := s.Lookup(ctx, mustRef(t, "docker.io/library/busybox:latest")); err != nil || got != a.ID {
		t.Errorf("Lookup = %s, %v", got, err)
	}
	// A name without tag means :latest.
	named, _ := reference.ParseNormalizedNamed("busybox")
	if got, err := s.Lookup(ctx, named); err != nil || got != a.ID {
		t.Errorf("Lookup(name only) = %s, %v", got, err)
	}

	// Tagging again moves the tag; the old image keeps its other names.
	mustTag(t, s, "busybox:latest", b.ID)
	if got := refStrings(t, s, b.ID); len(got) != 1 || got[0] != "docker.io/library/busybox:latest" {
		t.Errorf("References(b) = %v", got)
	}
	if got := refStrings(t, s, a.ID); len(got) != 2 {
		t.Errorf("References(a) after move = %v", got)
	}
	// Re-tagging the same image is fine.
	mustTag(t, s, "busybox:latest", b.ID)

	// Digest references; a tag next to a digest is dropped.
	dg := digest.FromString("some manifest")
	both, err := reference.ParseNormalizedNamed("busybox:1.36@" + dg.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddReference(ctx, both, a.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Lookup(ctx, mustRef(t, "busybox@"+dg.String())); err != nil || got != a.ID {
		t.Errorf("Lookup(digest ref) = %s, %v", got, err)
	}

	if err := s.DeleteReference(ctx, mustRef(t, "busybox:1.36")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteReference(ctx, mustRef(t, "busybox:1.36")); !errdefs.IsNotFound(err) {
		t.Errorf("second DeleteReference = %v", err)
	}
	if _, err := s.Lookup(ctx, mustRef(t, "busybox:1.36")); !errdefs.IsNotFound(err) || err.Error() != "No such image: busybox:1.36" {
		t.Errorf("Lookup after DeleteReference = %v", err)
	}

	// Deleting an image drops its references, and only its.
	if err := s.Delete(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(ctx, mustRef(t, "example.com:5000/team/app:v1")); !errdefs.IsNotFound(err) {
		t.Errorf("reference survived its image: %v", err)
	}
	if got, err := s.Lookup(ctx, mustRef(t, "busybox")); err != nil || got != b.ID {
		t.Errorf("other image's reference: %s, %v", got, err)
	}
	if got := refStrings(t, s, a.ID); len(got) != 0 {
		t.Errorf("References of a deleted image = %v", got)
	}
}

func TestAddReferenceRejects(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a := testImage(id("aa"), 0)
	mustPut(t, s, a)
	if err := s.AddReference(ctx, mustRef(t, "sha256:v1"), a.ID); !errdefs.IsInvalidArgument(err) {
		t.Errorf("tag named sha256 = %v", err)
	}
	if err := s.AddReference(ctx, nil, a.ID); !errdefs.IsInvalidArgument(err) {
		t.Errorf("nil reference = %v", err)
	}
	if err := s.AddReference(ctx, mustRef(t, "ok"), "sha256:nothex"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad ID = %v", err)
	}
}

func TestResolve(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a := testImage(id("abc1"), 1)
	b := testImage(id("abc2"), 1)
	c := testImage(id("def0"), 1)
	b.Manifest = digest.FromString("b's manifest")
	for _, img := range []*image.Image{a, b, c} {
		mustPut(t, s, img)
	}
	mustTag(t, s, "busybox", a.ID)
	mustTag(t, s, "example.com:5000/team/app:v1", b.ID)
	mustTag(t, s, "abc2", c.ID) // a name that is also a prefix of b's ID
	pinned := digest.FromString("pinned")
	mustTag(t, s, "busybox@"+pinned.String(), a.ID)

	cases := []struct {
		in          string
		want        digest.Digest
		notFoundMsg string
		invalid     string
	}{
		{in: "busybox", want: a.ID},
		{in: "busybox:latest", want: a.ID},
		{in: "library/busybox", want: a.ID},
		{in: "docker.io/library/busybox:latest", want: a.ID},
		{in: "busybox@" + pinned.String(), want: a.ID},
		{in: "example.com:5000/team/app:v1", want: b.ID},
		{in: "example.com:5000/team/app@" + b.Manifest.String(), want: b.ID},
		{in: "busybox@" + b.Manifest.String(), notFoundMsg: "No such image: busybox@" + b.Manifest.String()},
		{in: a.ID.String(), want: a.ID},
		{in: a.ID.Encoded(), want: a.ID},
		{in: "abc1", want: a.ID},
		{in: "sha256:abc1", want: a.ID},
		{in: "abc2", want: c.ID}, // the name wins over the ID prefix
		{in: "sha256:abc2", want: b.ID},
		{in: "def", want: c.ID},
		{in: "d", want: c.ID},
		{in: "abc", notFoundMsg: "No such image: abc"}, // ambiguous
		{in: "a", notFoundMsg: "No such image: a"},
		{in: "busybox:1.0", notFoundMsg: "No such image: busybox:1.0"},
		{in: "nosuch", notFoundMsg: "No such image: nosuch:latest"},
		{in: "example.com:5000/team/app", notFoundMsg: "No such image: example.com:5000/team/app:latest"},
		{in: id("ff").String(), notFoundMsg: "No such image: " + id("ff").String()},
		{in: id("ff").Encoded(), notFoundMsg: "No such image: " + id("ff").String()},
		{in: "Busybox", invalid: "invalid reference format: repository name (library/Busybox) must be lowercase"},
		{in: "", invalid: "invalid reference format"},
		{in: "busybox:", invalid: "invalid reference format"},
		{in: "a b", invalid: "invalid reference format"},
	}
	for _, tc := range cases {
		img, err := s.Resolve(ctx, tc.in)
		switch {
		case tc.want != "":
			if err != nil || img.ID != tc.want {
				t.Errorf("Resolve(%q) = %v, %v; want %s", tc.in, img, err, tc.want)
			}
		case tc.notFoundMsg != "":
			if !errdefs.IsNotFound(err) || err.Error() != tc.notFoundMsg {
				t.Errorf("Resolve(%q) error = %v; want not found %q", tc.in, err, tc.notFoundMsg)
			}
		default:
			if !errdefs.IsInvalidArgument(err) || err.Error() != tc.invalid {
				t.Errorf("Resolve(%q) error = %v; want invalid argument %q", tc.in, err, tc.invalid)
			}
		}
	}
}

func TestParseReference(t *testing.T) {
	cases := []struct{ in, want, familiar, err string }{
		{in: "busybox", want: "docker.io/library/busybox:latest", familiar: "busybox:latest"},
		{in: "busybox:1.36", want: "docker.io/library/busybox:1.36", familiar: "busybox:1.36"},
		{in: "team/app", want: "docker.io/team/app:latest", familiar: "team/app:latest"},
		{in: "localhost:5000/app", want: "localhost:5000/app:latest", familiar: "localhost:5000/app:latest"},
		{in: "busybox@sha256:" + strings.Repeat("a", 64), want: "docker.io/library/busybox@sha256:" + strings.Repeat("a", 64), familiar: "busybox@sha256:" + strings.Repeat("a", 64)},
		{in: "Busybox", err: "invalid reference format: repository name (library/Busybox) must be lowercase"},
		{in: strings.Repeat("a", 64), err: "invalid repository name (" + strings.Repeat("a", 64) + "), cannot specify 64-byte hexadecimal strings"},
		{in: "", err: "invalid reference format"},
	}
	for _, tc := range cases {
		r, err := image.ParseReference(tc.in)
		if tc.err != "" {
			if !errdefs.IsInvalidArgument(err) || err.Error() != tc.err {
				t.Errorf("ParseReference(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || r.String() != tc.want || image.FamiliarString(r) != tc.familiar {
			t.Errorf("ParseReference(%q) = %v (%s), %v", tc.in, r, image.FamiliarString(r), err)
		}
	}
}

func TestPersistsAcrossReopen(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "image")
	s, err := image.NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	a := testImage(id("aa"), 3)
	mustPut(t, s, a)
	mustTag(t, s, "busybox:1", a.ID)
	if err := s.(io.Closer).Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := image.NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.(io.Closer).Close()
	img, err := s2.Resolve(ctx, "busybox:1")
	if err != nil || img.ID != a.ID || len(img.Layers) != 3 {
		t.Fatalf("after reopen: %v, %v", img, err)
	}
}

// Only one process may hold the database; a second open fails with
// "unavailable" instead of hanging.
func TestSecondOpenIsUnavailable(t *testing.T) {
	root := filepath.Join(t.TempDir(), "image")
	s, err := image.NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.(io.Closer).Close()
	s2, err := image.NewStore(root)
	if err == nil {
		s2.(io.Closer).Close()
		t.Fatal("second NewStore on the same root succeeded")
	}
	if !errdefs.IsUnavailable(err) {
		t.Errorf("second NewStore = %v, want unavailable", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, 4*n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			img := testImage(id(fmt.Sprintf("%02x", i)), 1)
			if err := s.Put(ctx, img); err != nil {
				errs <- err
				return
			}
			r, _ := image.ParseReference(fmt.Sprintf("img%d", i))
			if err := s.AddReference(ctx, r, img.ID); err != nil {
				errs <- err
			}
			// Everyone fights over one tag too.
			shared, _ := image.ParseReference("shared")
			if err := s.AddReference(ctx, shared, img.ID); err != nil {
				errs <- err
			}
			if _, err := s.Resolve(ctx, fmt.Sprintf("img%d", i)); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	all, _ := s.List(ctx)
	if len(all) != n {
		t.Fatalf("%d images", len(all))
	}
	// The shared tag points at exactly one image, and exactly that image
	// lists it.
	owner, err := s.Lookup(ctx, mustRef(t, "shared"))
	if err != nil {
		t.Fatal(err)
	}
	holders := 0
	for _, img := range all {
		for _, r := range refStrings(t, s, img.ID) {
			if r == "docker.io/library/shared:latest" {
				holders++
				if img.ID != owner {
					t.Errorf("%s lists the shared tag, which points at %s", img.ID, owner)
				}
			}
		}
	}
	if holders != 1 {
		t.Errorf("%d images list the shared tag", holders)
	}
}

func TestCancelledContext(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Put(ctx, testImage(id("aa"), 0)); !errors.Is(err, context.Canceled) {
		t.Errorf("Put = %v", err)
	}
	if _, err := s.Resolve(ctx, "busybox"); !errors.Is(err, context.Canceled) {
		t.Errorf("Resolve = %v", err)
	}
}

func TestChainIDs(t *testing.T) {
	d1, d2, d3 := digest.FromString("1"), digest.FromString("2"), digest.FromString("3")
	got := image.ChainIDs([]digest.Digest{d1, d2, d3})
	c2 := digest.FromString(d1.String() + " " + d2.String())
	c3 := digest.FromString(c2.String() + " " + d3.String())
	if len(got) != 3 || got[0] != d1 || got[1] != c2 || got[2] != c3 {
		t.Errorf("ChainIDs = %v", got)
	}
}

// FuzzResolve feeds arbitrary user input to Resolve: it must never panic,
// fail only with not-found or invalid-argument, and return only an image
// the input really names.
func FuzzResolve(f *testing.F) {
	for _, seed := range []string{"busybox", "abc", "abc1", "sha256:abc2", "Busybox", "", "a@sha256:", "busybox@sha256:" + strings.Repeat("0", 64), id("abc1").String(), "x/../y", "::", strings.Repeat("a", 300)} {
		f.Add(seed)
	}
	s, err := image.NewStore(filepath.Join(f.TempDir(), "image"))
	if err != nil {
		f.Fatal(err)
	}
	defer s.(io.Closer).Close()
	ctx := context.Background()
	a, b := testImage(id("abc1"), 1), testImage(id("abc2"), 0)
	for _, img := range []*image.Image{a, b} {
		if err := s.Put(ctx, img); err != nil {
			f.Fatal(err)
		}
	}
	r, _ := image.ParseReference("busybox")
	if err := s.AddReference(ctx, r, a.ID); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in string) {
		img, err := s.Resolve(ctx, in)
		if err != nil {
			if !errdefs.IsNotFound(err) && !errdefs.IsInvalidArgument(err) {
				t.Fatalf("Resolve(%q) = %v", in, err)
			}
			return
		}
		short := strings.TrimPrefix(in, "sha256:")
		byID := strings.HasPrefix(img.ID.Encoded(), short) && short != ""
		byName := false
		if named, err := reference.ParseNormalizedNamed(in); err == nil {
			byName = reference.TagNameOnly(named).String() == "docker.io/library/busybox:latest"
		}
		if !byID && !byName {
			t.Fatalf("Resolve(%q) = %s, which the input does not name", in, img.ID)
		}
	})
}
