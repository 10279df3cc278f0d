package builder

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/go-archive/compression"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// maxDockerfile bounds the Dockerfile a build reads into memory.
const maxDockerfile = 8 << 20

// buildContext is a build's context (an indexed tar) with its
// .dockerignore applied.
type buildContext struct {
	fs         *tarFS
	name       string // the Dockerfile's name in the context
	dockerfile []byte
}

// readContext reads src (a tar, possibly compressed, or a bare
// Dockerfile), spooling a tar into dir/context.tar.
func readContext(ctx context.Context, src io.Reader, dir, name string) (*buildContext, error) {
	br := bufio.NewReaderSize(ctxReader{ctx, src}, 64<<10)
	head, _ := br.Peek(512)
	bc := &buildContext{name: name}
	if bc.name == "" {
		bc.name = "Dockerfile"
	}
	f, err := os.Create(filepath.Join(dir, "context.tar"))
	if err != nil {
		return nil, err
	}
	// The file stays open for reading COPY sources; Build closes it.
	if !isArchive(head) {
		// A Dockerfile on its own (`docker build - < Dockerfile`).
		b, err := io.ReadAll(io.LimitReader(br, maxDockerfile+1))
		if err != nil {
			f.Close()
			return nil, err
		}
		if len(b) > maxDockerfile {
			f.Close()
			return nil, errdefs.ErrInvalidArgument.WithMessage("the Dockerfile is too large")
		}
		bc.fs = &tarFS{f: f, entries: map[string]*tarEntry{}, children: map[string][]string{}}
		bc.dockerfile = b
		bc.name = "Dockerfile"
		return bc, nil
	}
	dec, err := compression.DecompressStream(br)
	if err != nil {
		f.Close()
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("failed to read the build context: %v", err))
	}
	defer dec.Close()
	bc.fs, err = newTarFS(dec, f)
	if err != nil {
		f.Close()
		if ctx.Err() != nil {
			return nil, errCancelled
		}
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("failed to read the build context: %v", err))
	}
	b, err := bc.readFile(relClean(bc.name))
	if err != nil && errors.Is(err, fs.ErrNotExist) && bc.name == "Dockerfile" {
		// docker also accepts a lowercase dockerfile
		if b2, err2 := bc.readFile("dockerfile"); err2 == nil {
			b, err = b2, nil
		}
	}
	if err != nil {
		bc.close()
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("Cannot locate specified Dockerfile: %s", bc.name))
		}
		return nil, err
	}
	bc.dockerfile = b
	if err := bc.applyIgnore(); err != nil {
		bc.close()
		return nil, err
	}
	return bc, nil
}

func (bc *buildContext) close() {
	if bc != nil && bc.fs != nil && bc.fs.f != nil {
		bc.fs.f.Close()
	}
}

// readFile reads a (small) file of the context, following symlinks.
func (bc *buildContext) readFile(rel string) ([]byte, error) {
	fi, real, err := bc.fs.Stat(rel)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, errdefs.ErrInvalidArgument.WithMessage("the Dockerfile is a directory")
	}
	if fi.Size() > maxDockerfile {
		return nil, errdefs.ErrInvalidArgument.WithMessage("the Dockerfile is too large")
	}
	r, err := bc.fs.Open(real)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// isArchive tells a tar (or compressed stream) from a bare Dockerfile.
func isArchive(head []byte) bool {
	if len(head) == 0 {
		return false
	}
	if compression.Detect(head) != compression.None {
		return true
	}
	return len(head) >= 262 && bytes.Equal(head[257:262], []byte("ustar"))
}

// applyIgnore drops what .dockerignore excludes from the context (never
// the Dockerfile or the .dockerignore itself, as docker).
func (bc *buildContext) applyIgnore() error {
	data, err := bc.readFile(".dockerignore")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	patterns, err := ignorefile.ReadAll(bytes.NewReader(data))
	if err != nil {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("failed to read .dockerignore: %v", err))
	}
	if len(patterns) == 0 {
		return nil
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid .dockerignore: %v", err))
	}
	keep := map[string]bool{relClean(bc.name): true, ".dockerignore": true}
	names := make([]string, 0, len(bc.fs.entries))
	for n := range bc.fs.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var matched []string
	for _, n := range names {
		if keep[n] {
			continue
		}
		m, err := pm.MatchesOrParentMatches(filepath.FromSlash(n))
		if err != nil {
			return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid .dockerignore: %v", err))
		}
		if m {
			matched = append(matched, n)
		}
	}
	// Deepest first; a directory with re-included ("!") contents stays.
	for i := len(matched) - 1; i >= 0; i-- {
		n := matched[i]
		if e := bc.fs.entries[n]; e != nil && e.hdr.Typeflag == tar.TypeDir && len(bc.fs.children[n]) > 0 {
			continue
		}
		bc.fs.remove(n)
	}
	return nil
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// relClean turns a source path of COPY into a clean path relative to the
// context root.
func relClean(p string) string {
	p = filepath.Clean("/" + p)
	return strings.TrimPrefix(p, "/")
}
