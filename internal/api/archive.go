package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"

	"github.com/moby/moby/api/types/container"
)

// ArchiveBackend serves docker cp (/containers/{id}/archive) and export.
// Paths are the container's, resolved inside its root filesystem (with its
// volumes and binds) with symlinks confined to it.
type ArchiveBackend interface {
	StatPath(ctx context.Context, id, path string) (*container.PathStat, error)
	// ArchivePath returns a tar of path; the reader must be closed.
	ArchivePath(ctx context.Context, id, path string) (io.ReadCloser, *container.PathStat, error)
	// ExtractToDir unpacks a tar into the directory path.
	ExtractToDir(ctx context.Context, id, path string, opts ExtractOptions, content io.Reader) error
	// Export returns the container's root filesystem as a tar.
	Export(ctx context.Context, id string) (io.ReadCloser, error)
}

// ExtractOptions are the query parameters of PUT /containers/{id}/archive.
type ExtractOptions struct {
	NoOverwriteDirNonDir bool
	CopyUIDGID           bool
}

func (rt *router) initArchiveRoutes() {
	a := rt.b.Archive != nil
	rt.add(http.MethodHead, "/containers/{name}/archive", need(a, "archive", rt.headContainerArchive))
	rt.add(http.MethodGet, "/containers/{name}/archive", need(a, "archive", rt.getContainerArchive))
	rt.add(http.MethodPut, "/containers/{name}/archive", need(a, "archive", rt.putContainerArchive))
	rt.add(http.MethodGet, "/containers/{name}/export", need(a, "archive", rt.getContainerExport))
}

func setPathStat(w http.ResponseWriter, st *container.PathStat) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	w.Header().Set("X-Docker-Container-Path-Stat", base64.StdEncoding.EncodeToString(b))
	return nil
}

func (rt *router) archivePathParam(c *call) (string, error) {
	p := c.str("path")
	if p == "" {
		return "", invalidArg("path cannot be empty")
	}
	return p, nil
}

func (rt *router) headContainerArchive(c *call) error {
	p, err := rt.archivePathParam(c)
	if err != nil {
		return err
	}
	st, err := rt.b.Archive.StatPath(c.ctx, c.name, p)
	if err != nil {
		return err
	}
	if err := setPathStat(c.w, st); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}

func (rt *router) getContainerArchive(c *call) error {
	p, err := rt.archivePathParam(c)
	if err != nil {
		return err
	}
	rc, st, err := rt.b.Archive.ArchivePath(c.ctx, c.name, p)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := setPathStat(c.w, st); err != nil {
		return err
	}
	c.w.Header().Set("Content-Type", "application/x-tar")
	c.w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(c.w, rc)
	return nil
}

func (rt *router) putContainerArchive(c *call) error {
	p, err := rt.archivePathParam(c)
	if err != nil {
		return err
	}
	opts := ExtractOptions{NoOverwriteDirNonDir: c.bool("noOverwriteDirNonDir"), CopyUIDGID: c.bool("copyUIDGID")}
	if err := rt.b.Archive.ExtractToDir(c.ctx, c.name, p, opts, c.r.Body); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}

func (rt *router) getContainerExport(c *call) error {
	rc, err := rt.b.Archive.Export(c.ctx, c.name)
	if err != nil {
		return err
	}
	defer rc.Close()
	c.w.Header().Set("Content-Type", "application/x-tar")
	c.w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(c.w, rc)
	return nil
}
