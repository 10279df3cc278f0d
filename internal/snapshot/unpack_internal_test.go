package snapshot

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// Mounts that are neither an overlay with an upper dir nor a plain bind
// are unpacked through a temporary mount.
func TestApplyLayerThroughTemporaryMount(t *testing.T) {
	requiresRoot(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "old"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []tar.Header{
		{Name: "new", Typeflag: tar.TypeReg, Mode: 0o640, Size: 3},
		{Name: ".wh.old", Typeflag: tar.TypeReg, Mode: 0o600},
	} {
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("new"))
		}
	}
	tw.Close()
	mounts := []Mount{{Type: "none", Source: dir, Options: []string{"rbind", "rw"}}}
	if _, ok := UpperDir(mounts); ok {
		t.Fatal("UpperDir of a bind mount")
	}
	if err := applyLayer(mounts, &buf); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "new")); err != nil || string(b) != "new" {
		t.Errorf("new: %q %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "old")); !os.IsNotExist(err) {
		t.Errorf("old survived its whiteout: %v", err)
	}
}

func TestUpperDir(t *testing.T) {
	m := []Mount{{Type: "overlay", Source: "overlay", Options: []string{"index=off", "workdir=/w", "upperdir=/u", "lowerdir=/l"}}}
	if u, ok := UpperDir(m); !ok || u != "/u" {
		t.Errorf("UpperDir = %q %v", u, ok)
	}
	if _, ok := UpperDir([]Mount{{Type: "overlay", Options: []string{"lowerdir=/a:/b"}}}); ok {
		t.Error("UpperDir of a read-only overlay")
	}
	if _, ok := UpperDir(append(m, m...)); ok {
		t.Error("UpperDir of two mounts")
	}
}

// brokenReader returns its data in small reads, then err.
type brokenReader struct {
	data []byte
	err  error
}

func (b *brokenReader) Read(p []byte) (int, error) {
	if len(b.data) == 0 {
		return 0, b.err
	}
	n := copy(p, b.data[:min(len(b.data), 100)])
	b.data = b.data[n:]
	return n, nil
}

func TestChunkPipeBatchesAndKeepsErrors(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 1000)
	p := newChunkPipe(2, 4096)
	h := sha256.New()
	done := make(chan error, 1)
	go func() { done <- p.fill(&brokenReader{data: data, err: io.EOF}, h) }()
	var chunks []int
	var got []byte
	for {
		b := make([]byte, 8192)
		n, err := p.Read(b)
		if n > 0 && len(p.cur) == 0 {
			chunks = append(chunks, len(p.buf))
		}
		got = append(got, b[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) || fmt.Sprint(chunks) != "[4096 4096 1808]" {
		t.Errorf("read %d bytes in chunks %v (want %d in [4096 4096 1808])", len(got), chunks, len(data))
	}
	if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Errorf("hash of the stream is wrong")
	}
	// A stream that breaks off is an error, not an end: a decompressor
	// reports a truncated layer as io.ErrUnexpectedEOF.
	for _, want := range []error{io.ErrUnexpectedEOF, errors.New("reset")} {
		p := newChunkPipe(2, 4096)
		go p.fill(&brokenReader{data: data, err: want}, sha256.New())
		got, err := io.ReadAll(p)
		if !errors.Is(err, want) || len(got) != len(data) {
			t.Errorf("a stream ending in %v read as %v after %d bytes", want, err, len(got))
		}
	}
	// The reader giving up stops the writer.
	p = newChunkPipe(2, 4096)
	go func() { done <- p.fill(&brokenReader{data: bytes.Repeat(data, 100), err: io.EOF}, sha256.New()) }()
	p.Read(make([]byte, 10))
	p.closeRead()
	if err := <-done; !errors.Is(err, errApplyDone) {
		t.Errorf("writer after the reader left: %v", err)
	}
}
