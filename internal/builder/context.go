package builder

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
	goarchive "github.com/moby/go-archive"
	"github.com/moby/go-archive/compression"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// maxDockerfile bounds the Dockerfile a build reads into memory.
const maxDockerfile = 8 << 20

// buildContext is a build's context, extracted to a directory, with its
// .dockerignore applied.
type buildContext struct {
	dir        string
	name       string // the Dockerfile's name in the context
	dockerfile []byte
}

// readContext extracts src (a tar, possibly compressed, or a bare
// Dockerfile) into dir.
func readContext(ctx context.Context, src io.Reader, dir, name string) (*buildContext, error) {
	br := bufio.NewReaderSize(ctxReader{ctx, src}, 64<<10)
	head, _ := br.Peek(512)
	bc := &buildContext{dir: dir, name: name}
	if bc.name == "" {
		bc.name = "Dockerfile"
	}
	if !isArchive(head) {
		// A Dockerfile on its own (`docker build - < Dockerfile`).
		b, err := io.ReadAll(io.LimitReader(br, maxDockerfile+1))
		if err != nil {
			return nil, err
		}
		if len(b) > maxDockerfile {
			return nil, errdefs.ErrInvalidArgument.WithMessage("the Dockerfile is too large")
		}
		bc.dockerfile = b
		bc.name = "Dockerfile"
		return bc, nil
	}
	if err := goarchive.Untar(br, dir, &goarchive.TarOptions{NoLchown: false}); err != nil {
		if ctx.Err() != nil {
			return nil, errCancelled
		}
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("failed to read the build context: %v", err))
	}
	p, err := securejoin.SecureJoin(dir, bc.name)
	if err != nil {
		return nil, err
	}
	b, err := readLimited(p)
	if err != nil && errors.Is(err, fs.ErrNotExist) && bc.name == "Dockerfile" {
		// docker also accepts a lowercase dockerfile
		if p2, err2 := securejoin.SecureJoin(dir, "dockerfile"); err2 == nil {
			if b2, err2 := readLimited(p2); err2 == nil {
				b, err = b2, nil
			}
		}
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("Cannot locate specified Dockerfile: %s", bc.name))
		}
		return nil, err
	}
	bc.dockerfile = b
	if err := bc.applyIgnore(); err != nil {
		return nil, err
	}
	return bc, nil
}

func readLimited(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, errdefs.ErrInvalidArgument.WithMessage("the Dockerfile is a directory")
	}
	b, err := io.ReadAll(io.LimitReader(f, maxDockerfile+1))
	if err == nil && len(b) > maxDockerfile {
		return nil, errdefs.ErrInvalidArgument.WithMessage("the Dockerfile is too large")
	}
	return b, err
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

// applyIgnore removes what .dockerignore excludes (never the Dockerfile
// or the .dockerignore itself, as docker).
func (bc *buildContext) applyIgnore() error {
	f, err := os.Open(filepath.Join(bc.dir, ".dockerignore"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	patterns, err := ignorefile.ReadAll(f)
	f.Close()
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
	keep := map[string]bool{filepath.Clean(bc.name): true, ".dockerignore": true}
	var remove []string
	err = filepath.WalkDir(bc.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(bc.dir, p)
		if err != nil || rel == "." {
			return err
		}
		if keep[rel] {
			return nil
		}
		m, err := pm.MatchesOrParentMatches(rel)
		if err != nil {
			return err
		}
		if m {
			remove = append(remove, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Remove deepest first; a directory whose contents are partly
	// re-included ("!") keeps what is kept.
	for i := len(remove) - 1; i >= 0; i-- {
		p := remove[i]
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		if fi.IsDir() {
			_ = os.Remove(p) // only if empty
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
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
