package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/common"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
)

// initOperateRoutes adds the routes for operating running containers:
// exec, pause/unpause, top, stats, update and events.
func (rt *router) initOperateRoutes() {
	ex := rt.b.Exec != nil
	rt.add(http.MethodPost, "/containers/{name}/exec", need(ex, "exec", rt.postContainerExecCreate))
	rt.add(http.MethodPost, "/exec/{name}/start", need(ex, "exec", rt.postExecStart))
	rt.add(http.MethodPost, "/exec/{name}/resize", need(ex, "exec", rt.postExecResize))
	rt.add(http.MethodGet, "/exec/{name}/json", need(ex, "exec", rt.getExecInspect))

	ops := rt.b.ContainerOps != nil
	rt.add(http.MethodPost, "/containers/{name}/pause", need(ops, "containers", rt.postContainerPause))
	rt.add(http.MethodPost, "/containers/{name}/unpause", need(ops, "containers", rt.postContainerUnpause))
	rt.add(http.MethodGet, "/containers/{name}/top", need(ops, "containers", rt.getContainerTop))
	rt.add(http.MethodGet, "/containers/{name}/stats", need(ops, "containers", rt.getContainerStats))
	rt.add(http.MethodPost, "/containers/{name}/update", need(ops, "containers", rt.postContainerUpdate))

	ev := rt.b.Events != nil
	rt.add(http.MethodGet, "/events", need(ev, "events", rt.getEvents))
}

func (rt *router) postContainerExecCreate(c *call) error {
	body, err := c.jsonBody()
	if err != nil {
		return err
	}
	var req container.ExecCreateRequest
	if err := decodeJSON(body, &req, ""); err != nil {
		return err
	}
	if len(req.Cmd) == 0 {
		return invalidArg("No exec command specified")
	}
	if req.ConsoleSize != nil && !versionAtLeast(c.version, "1.42") {
		req.ConsoleSize = nil
	}
	id, err := rt.b.Exec.ExecCreate(c.ctx, c.name, req)
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusCreated, common.IDResponse{ID: id})
}

func (rt *router) postExecStart(c *call) error {
	var req container.ExecStartRequest
	if c.r.Body != nil && c.r.ContentLength != 0 {
		if err := checkForJSON(c.r); err != nil {
			return err
		}
		if err := decodeJSON(http.MaxBytesReader(c.w.ResponseWriter, c.r.Body, maxJSONBody), &req, ""); err != nil {
			return err
		}
	}
	if req.ConsoleSize != nil && !versionAtLeast(c.version, "1.42") {
		req.ConsoleSize = nil
	}
	opts := ExecStartOptions{Detach: req.Detach, Tty: req.Tty, ConsoleSize: req.ConsoleSize}
	if req.Detach {
		if err := rt.b.Exec.ExecStart(c.ctx, c.name, opts); err != nil {
			return err
		}
		c.w.WriteHeader(http.StatusOK)
		return nil
	}
	h := newHijacker(c, true)
	defer h.cancel()
	opts.Hijack = h.hijack
	err := rt.b.Exec.ExecStart(h.ctx, c.name, opts)
	return h.finish(err, false, "exec", c.name)
}

func (rt *router) postExecResize(c *call) error {
	height, width, err := resizeParams(c)
	if err != nil {
		return err
	}
	if err := rt.b.Exec.ExecResize(c.ctx, c.name, height, width); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}

// resizeParams reads the h and w query parameters (docker's messages).
func resizeParams(c *call) (uint, uint, error) {
	h, err := strconv.ParseUint(strings.TrimSpace(c.str("h")), 10, 32)
	if err != nil {
		return 0, 0, invalidArg(fmt.Sprintf("invalid value for \"h\": %q is not a terminal height", c.str("h")))
	}
	w, err := strconv.ParseUint(strings.TrimSpace(c.str("w")), 10, 32)
	if err != nil {
		return 0, 0, invalidArg(fmt.Sprintf("invalid value for \"w\": %q is not a terminal width", c.str("w")))
	}
	return uint(h), uint(w), nil
}

// contextUntil ends ctx at t.
func contextUntil(ctx context.Context, t time.Time) (context.Context, context.CancelFunc) {
	return context.WithDeadline(ctx, t)
}

func (rt *router) getExecInspect(c *call) error {
	resp, err := rt.b.Exec.ExecInspect(c.ctx, c.name)
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, resp)
}

func (rt *router) postContainerPause(c *call) error {
	if err := rt.b.ContainerOps.Pause(c.ctx, c.name); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (rt *router) postContainerUnpause(c *call) error {
	if err := rt.b.ContainerOps.Unpause(c.ctx, c.name); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (rt *router) getContainerTop(c *call) error {
	resp, err := rt.b.ContainerOps.Top(c.ctx, c.name, c.str("ps_args"))
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, resp)
}

func (rt *router) getContainerStats(c *call) error {
	opts := StatsOptions{Stream: boolValueOrDefault(c.form, "stream", true)}
	if !opts.Stream && versionAtLeast(c.version, "1.41") {
		opts.OneShot = c.bool("one-shot")
	}
	ctx, cancel := untilStopping(c.ctx)
	defer cancel()
	started := false
	err := rt.b.ContainerOps.Stats(ctx, c.name, opts, func(s *container.StatsResponse) error {
		if !started {
			c.w.Header().Set("Content-Type", "application/json")
			c.w.WriteHeader(http.StatusOK)
			started = true
		}
		if err := writeJSONBody(c.w, s); err != nil {
			return err
		}
		c.w.Flush()
		return nil
	})
	if err != nil && started {
		if !clientGone(ctx, err) {
			c.log.Debug("stats stream ended", "container", c.name, "err", err)
		}
		return nil
	}
	return err
}

func (rt *router) postContainerUpdate(c *call) error {
	body, err := c.jsonBody()
	if err != nil {
		return err
	}
	var req container.UpdateConfig
	if err := decodeJSON(body, &req, ""); err != nil {
		return err
	}
	resp, err := rt.b.ContainerOps.Update(c.ctx, c.name, req)
	if err != nil {
		return err
	}
	if resp.Warnings == nil {
		resp.Warnings = []string{}
	}
	return c.writeJSON(http.StatusOK, resp)
}

// eventMessage is docker's event JSON: the message plus, for containers
// and images, the fields clients before API 1.22 read.
type eventMessage struct {
	Status string `json:"status,omitempty"`
	ID     string `json:"id,omitempty"`
	From   string `json:"from,omitempty"`
	events.Message
}

func legacyEvent(m events.Message) eventMessage {
	em := eventMessage{Message: m}
	switch m.Type {
	case events.ContainerEventType:
		em.Status, em.ID, em.From = string(m.Action), m.Actor.ID, m.Actor.Attributes["image"]
	case events.ImageEventType:
		em.Status, em.ID = string(m.Action), m.Actor.ID
	}
	return em
}

func (rt *router) getEvents(c *call) error {
	now := time.Now()
	var opts EventsOptions
	var err error
	if opts.Since, err = parseTime(c.str("since"), now); err != nil {
		return err
	}
	if opts.Until, err = parseTime(c.str("until"), now); err != nil {
		return err
	}
	if !opts.Since.IsZero() && !opts.Until.IsZero() && opts.Until.Before(opts.Since) {
		return invalidArg("`since` time (" + c.str("since") + ") cannot be after `until` time (" + c.str("until") + ")")
	}
	if opts.Filters, err = c.filters(); err != nil {
		return err
	}
	ctx, cancel := untilStopping(c.ctx)
	defer cancel()
	if !opts.Until.IsZero() {
		var cancelUntil func()
		ctx, cancelUntil = contextUntil(ctx, opts.Until)
		defer cancelUntil()
	}
	past, live, err := rt.b.Events.Events(ctx, opts)
	if err != nil {
		return err
	}
	c.w.Header().Set("Content-Type", "application/json")
	c.w.WriteHeader(http.StatusOK)
	c.w.Flush()
	enc := json.NewEncoder(c.w)
	for _, m := range past {
		if err := enc.Encode(legacyEvent(m)); err != nil {
			return nil
		}
	}
	c.w.Flush()
	if live == nil {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-live:
			if !ok {
				return nil
			}
			if err := enc.Encode(legacyEvent(m)); err != nil {
				return nil
			}
			c.w.Flush()
		}
	}
}
