package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/moby/moby/api/types/common"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/jsonstream"
)

// BuildBackend serves POST /build (docker's classic builder protocol) and
// the routes that share its layer-diff machinery: POST /commit and
// GET /containers/{id}/changes.
type BuildBackend interface {
	// Build reads the build context from src, writes progress text to out
	// and returns the ID of the image built.
	Build(ctx context.Context, src io.Reader, opts BuildOptions, out io.Writer) (string, error)
	// Commit makes an image of a container's changes and returns its ID.
	Commit(ctx context.Context, opts CommitOptions) (string, error)
	// Changes lists the changes in a container's filesystem.
	Changes(ctx context.Context, container string) ([]container.FilesystemChange, error)
}

// CommitOptions are the query parameters (and body) of POST /commit.
type CommitOptions struct {
	Container string
	Repo, Tag string
	Comment   string
	Author    string
	Pause     bool
	Changes   []string
	Config    *container.Config // the request body, if any
}

// BuildOptions are the query parameters of POST /build.
type BuildOptions struct {
	Tags        []string
	Dockerfile  string
	BuildArgs   map[string]*string
	Target      string
	NoCache     bool
	Labels      map[string]string
	Quiet       bool
	NetworkMode string
	Platform    string
	Pull        bool
}

func (rt *router) addBuildRoutes() {
	ok := rt.b.Build != nil
	rt.add(http.MethodPost, "/build", need(ok, "build", rt.postBuild))
	rt.add(http.MethodPost, "/commit", need(ok, "build", rt.postCommit))
	rt.add(http.MethodGet, "/containers/{name}/changes", need(ok, "build", rt.getContainerChanges))
}

func (rt *router) postCommit(c *call) error {
	opts := CommitOptions{
		Container: c.str("container"),
		Repo:      c.str("repo"),
		Tag:       c.str("tag"),
		Comment:   c.str("comment"),
		Author:    c.str("author"),
		Pause:     boolValueOrDefault(c.form, "pause", true),
		Changes:   c.form["changes"],
	}
	if opts.Container == "" {
		return invalidArg("container is required")
	}
	if c.r.Body != nil && c.r.Body != http.NoBody && c.r.ContentLength != 0 {
		var cfg container.Config
		dec := json.NewDecoder(io.LimitReader(c.r.Body, maxJSONBody))
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return invalidArg("invalid JSON: " + err.Error())
		}
		opts.Config = &cfg
	}
	id, err := rt.b.Build.Commit(c.ctx, opts)
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusCreated, common.IDResponse{ID: id})
}

func (rt *router) getContainerChanges(c *call) error {
	changes, err := rt.b.Build.Changes(c.ctx, c.name)
	if err != nil {
		return err
	}
	if changes == nil {
		changes = []container.FilesystemChange{}
	}
	return c.writeJSON(http.StatusOK, changes)
}

func (rt *router) postBuild(c *call) error {
	opts := BuildOptions{
		Tags:        c.form["t"],
		Dockerfile:  c.str("dockerfile"),
		Target:      c.str("target"),
		NoCache:     c.bool("nocache"),
		Quiet:       c.bool("q"),
		NetworkMode: c.str("networkmode"),
		Platform:    c.str("platform"),
		Pull:        c.bool("pull"),
	}
	if v := c.str("buildargs"); v != "" {
		if err := json.Unmarshal([]byte(v), &opts.BuildArgs); err != nil {
			return invalidArg("invalid buildargs: " + err.Error())
		}
	}
	if v := c.str("labels"); v != "" {
		if err := json.Unmarshal([]byte(v), &opts.Labels); err != nil {
			return invalidArg("invalid labels: " + err.Error())
		}
	}
	if strings.HasPrefix(c.str("remote"), "http") || strings.HasPrefix(c.str("remote"), "git") {
		return invalidArg("remote build contexts are not supported by berth")
	}
	c.w.Header().Set("Content-Type", "application/json")
	w := newStreamWriter(c.w, true)
	sw := &buildStream{w: w}
	var out io.Writer = sw
	if opts.Quiet {
		out = io.Discard
	}
	id, err := rt.b.Build.Build(c.ctx, c.r.Body, opts, out)
	if err != nil {
		var coded interface{ ExitCode() int }
		code := 0
		if errors.As(err, &coded) {
			code = coded.ExitCode()
		}
		sw.mu.Lock()
		defer sw.mu.Unlock()
		_ = writeJSONMessage(w, jsonErrorMessage{
			ErrorDetail: &jsonstream.Error{Code: code, Message: err.Error()},
			Error:       err.Error(),
		})
		return nil
	}
	sw.mu.Lock()
	defer sw.mu.Unlock()
	_ = writeJSONMessage(w, struct {
		Aux struct {
			ID string `json:"ID"`
		} `json:"aux"`
	}{Aux: struct {
		ID string `json:"ID"`
	}{ID: id}})
	if opts.Quiet {
		_ = writeJSONMessage(w, jsonstream.Message{Stream: id + "\n"})
	}
	return nil
}

// buildStream turns progress text into {"stream": …} messages.
type buildStream struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *buildStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := writeJSONMessage(s.w, jsonstream.Message{Stream: string(p)}); err != nil {
		return 0, err
	}
	return len(p), nil
}
