package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/moby/moby/api/types/jsonstream"
)

// BuildBackend serves POST /build (docker's classic builder protocol).
type BuildBackend interface {
	// Build reads the build context from src, writes progress text to out
	// and returns the ID of the image built.
	Build(ctx context.Context, src io.Reader, opts BuildOptions, out io.Writer) (string, error)
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
	rt.add(http.MethodPost, "/build", need(rt.b.Build != nil, "build", rt.postBuild))
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
