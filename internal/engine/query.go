package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/container"
	"github.com/containerd/errdefs"
	containertypes "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/storage"
)

// Inspect implements GET /containers/{id}/json.
func (s *ContainerService) Inspect(ctx context.Context, id string, size bool) (*containertypes.InspectResponse, error) {
	e, err := s.get(id)
	if err != nil {
		return nil, err
	}
	c := e.snapshot()
	s.liveHealth(ctx, e, c)
	r := &containertypes.InspectResponse{
		ID:      c.ID,
		Created: c.Created.Format(time.RFC3339Nano),
		Path:    c.Path,
		Args:    nonNil(c.Args),
		State: &containertypes.State{
			Status:     containertypes.ContainerState(c.State.Status),
			Running:    c.State.Running(),
			Paused:     c.State.Status == container.StatusPaused,
			Restarting: c.State.Status == container.StatusRestarting,
			OOMKilled:  c.State.OOMKilled,
			Dead:       c.State.Status == container.StatusDead,
			Pid:        c.State.Pid,
			ExitCode:   c.State.ExitCode,
			Error:      c.State.Error,
			StartedAt:  timeString(c.State.StartedAt),
			FinishedAt: timeString(c.State.FinishedAt),
			Health:     c.State.Health,
		},
		Image:          c.ImageID.String(),
		ResolvConfPath: c.ResolvConfPath,
		HostnamePath:   c.HostnamePath,
		HostsPath:      c.HostsPath,
		LogPath:        c.LogPath,
		Name:           "/" + c.Name,
		RestartCount:   c.RestartCount,
		Driver:         c.Driver,
		Platform:       "linux",
		HostConfig:     inspectHostConfig(c.HostConfig),
		GraphDriver:    &storage.DriverData{Name: c.Driver, Data: map[string]string{}},
		Mounts:         s.inspectMounts(c),
		Config:         c.Config,
		NetworkSettings: &containertypes.NetworkSettings{
			SandboxKey: "",
			Ports:      network.PortMap{},
			Networks:   networksOf(c),
		},
	}
	r.NetworkSettings = inspectNetworkSettings(c)
	if c.State.Running() {
		r.GraphDriver.Data["MergedDir"] = filepath.Join(s.cfg.bundleDir(c.ID), "rootfs")
	}
	if size {
		rw, rootfs := s.sizes(ctx, c)
		r.SizeRw, r.SizeRootFs = &rw, &rootfs
	}
	return r, nil
}

// sizes is the container's writable layer size and its total with the image.
func (s *ContainerService) sizes(ctx context.Context, c *container.Container) (rw, rootfs int64) {
	if u, err := s.st.Snapshots.Usage(ctx, c.ID); err == nil {
		rw = u.Size
	}
	rootfs = rw
	if img, err := s.st.Images.Get(ctx, c.ImageID); err == nil {
		for _, chain := range img.ChainIDs() {
			if u, err := s.st.Snapshots.Usage(ctx, chain.String()); err == nil {
				rootfs += u.Size
			}
		}
	}
	return rw, rootfs
}

func networksOf(c *container.Container) map[string]*network.EndpointSettings {
	if ns := c.NetworkSettings; ns != nil {
		out := make(map[string]*network.EndpointSettings, len(ns.Networks))
		for k, es := range ns.Networks {
			out[k] = es.Copy()
		}
		return out
	}
	mode := string(c.HostConfig.NetworkMode)
	if mode == "" {
		mode = "bridge"
	}
	return map[string]*network.EndpointSettings{mode: {}}
}

// inspectNetworkSettings is inspect's NetworkSettings: the exposed ports
// (unpublished ones with no bindings) and the attachments.
func inspectNetworkSettings(c *container.Container) *containertypes.NetworkSettings {
	ns := &containertypes.NetworkSettings{Ports: network.PortMap{}, Networks: networksOf(c)}
	if rec := c.NetworkSettings; rec != nil {
		ns.SandboxID, ns.SandboxKey = rec.SandboxID, rec.SandboxKey
		for p, bs := range rec.Ports {
			ns.Ports[p] = bs
		}
	}
	return ns
}

func timeString(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// List implements GET /containers/json.
func (s *ContainerService) List(ctx context.Context, opts api.ListOptions) ([]containertypes.Summary, error) {
	f, err := s.newListFilter(ctx, opts.Filters)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := []containertypes.Summary{}
	for _, e := range s.all() {
		c := e.snapshot()
		// "all" is implied by a status filter other than running, as in docker.
		if !opts.All && !c.State.Running() && len(opts.Filters["status"]) == 0 && opts.Limit <= 0 {
			continue
		}
		if !f.match(c) {
			continue
		}
		sum := containertypes.Summary{
			ID:              c.ID,
			Names:           []string{"/" + c.Name},
			Image:           s.imageName(ctx, c),
			ImageID:         c.ImageID.String(),
			Command:         c.CommandString(),
			Created:         c.Created.Unix(),
			Ports:           portSummaries(c),
			Labels:          c.Config.Labels,
			State:           containertypes.ContainerState(c.State.Status),
			Status:          c.StatusString(now),
			Mounts:          s.inspectMounts(c),
			NetworkSettings: &containertypes.NetworkSettingsSummary{Networks: networksOf(c)},
		}
		if sum.Labels == nil {
			sum.Labels = map[string]string{}
		}
		if h := c.State.Health; h != nil {
			sum.Health = &containertypes.HealthSummary{Status: h.Status, FailingStreak: h.FailingStreak}
		}
		sum.HostConfig.NetworkMode = string(c.HostConfig.NetworkMode)
		if opts.Size {
			sum.SizeRw, sum.SizeRootFs = s.sizes(ctx, c)
		}
		out = append(out, sum)
		if opts.Limit > 0 && len(out) >= opts.Limit {
			break
		}
	}
	return out, nil
}

// imageName is what ps shows in IMAGE: the name the user gave while it still
// points at the container's image, otherwise the short image ID.
func (s *ContainerService) imageName(ctx context.Context, c *container.Container) string {
	if img, err := s.st.Images.Resolve(ctx, c.Config.Image); err == nil && img.ID == c.ImageID {
		return c.Config.Image
	}
	return c.ImageID.String()
}

// listFilter is docker's container filter set.
type listFilter struct {
	status, names, ids, exited []string
	labels                     []string
	ancestors                  map[string]bool
	before, since              *container.Container
	networks, expose, volumes  []string
	health                     []string
	// Filters on things berth containers do not have (tasks; other
	// isolations) match as docker would for a container without them.
	publish, isTask, isolation []string
}

var validListFilters = map[string]bool{
	"status": true, "name": true, "id": true, "label": true, "ancestor": true, "exited": true,
	"before": true, "since": true, "health": true, "isolation": true, "network": true, "volume": true,
	"publish": true, "expose": true, "is-task": true,
}

func (s *ContainerService) newListFilter(ctx context.Context, fs api.Filters) (*listFilter, error) {
	f := &listFilter{}
	for k, vs := range fs {
		if !validListFilters[k] {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid filter '%s'", k))
		}
		switch k {
		case "status":
			for _, v := range vs {
				switch v {
				case "created", "restarting", "running", "removing", "paused", "exited", "dead":
				default:
					return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid filter 'status=%s'", v))
				}
			}
			f.status = vs
		case "name":
			for _, v := range vs {
				if _, err := regexp.Compile(v); err != nil {
					return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid filter 'name=%s': %v", v, err))
				}
			}
			f.names = vs
		case "id":
			f.ids = vs
		case "label":
			f.labels = vs
		case "exited":
			for _, v := range vs {
				if _, err := strconv.Atoi(v); err != nil {
					return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid filter 'exited=%s'", v))
				}
			}
			f.exited = vs
		case "ancestor":
			f.ancestors = map[string]bool{}
			for _, v := range vs {
				img, err := s.st.Images.Resolve(ctx, v)
				if err != nil {
					continue // docker ignores ancestors that don't exist
				}
				f.ancestors[img.ID.String()] = true
			}
			if len(f.ancestors) == 0 {
				f.ancestors["none"] = true
			}
		case "network":
			f.networks = vs
		case "expose":
			for _, v := range vs {
				if !strings.Contains(v, "/") {
					v += "/tcp"
				}
				f.expose = append(f.expose, v)
			}
		case "volume":
			f.volumes = vs
		case "publish":
			f.publish = vs
		case "health":
			for _, v := range vs {
				switch v {
				case "starting", "healthy", "unhealthy", "none":
				default:
					return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("Unrecognised filter value for health: %s", v))
				}
			}
			f.health = vs
		case "is-task":
			for _, v := range vs {
				if v != "true" && v != "false" {
					return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("Invalid filter 'is-task=%s'", v))
				}
			}
			f.isTask = vs
		case "isolation":
			f.isolation = vs
		case "before", "since":
			if len(vs) != 1 {
				return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid filter '%s': one value only", k))
			}
			e, err := s.get(vs[0])
			if err != nil {
				return nil, err
			}
			if k == "before" {
				f.before = e.snapshot()
			} else {
				f.since = e.snapshot()
			}
		}
	}
	return f, nil
}

func (f *listFilter) match(c *container.Container) bool {
	if len(f.status) > 0 && !contains(f.status, c.State.Status) {
		return false
	}
	if len(f.names) > 0 {
		ok := false
		for _, n := range f.names {
			if re, err := regexp.Compile(n); err == nil && re.MatchString("/"+c.Name) {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	if len(f.ids) > 0 {
		ok := false
		for _, id := range f.ids {
			if strings.HasPrefix(c.ID, id) {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	if len(f.exited) > 0 {
		if c.State.Status != container.StatusExited || !contains(f.exited, strconv.Itoa(c.State.ExitCode)) {
			return false
		}
	}
	if !matchLabels(f.labels, c.Config.Labels) {
		return false
	}
	if f.ancestors != nil && !f.ancestors[c.ImageID.String()] {
		return false
	}
	if len(f.networks) > 0 && !contains(f.networks, string(c.HostConfig.NetworkMode)) && !onNetworks(c, f.networks) {
		return false
	}
	if len(f.expose) > 0 && !slices.ContainsFunc(f.expose, func(p string) bool {
		for port := range c.Config.ExposedPorts {
			if fmt.Sprint(port) == p {
				return true
			}
		}
		return false
	}) {
		return false
	}
	if len(f.volumes) > 0 && !slices.ContainsFunc(c.MountPoints, func(mp container.MountPoint) bool {
		return contains(f.volumes, mp.Name) || contains(f.volumes, mp.Destination) || (mp.Source != "" && contains(f.volumes, mp.Source))
	}) {
		return false
	}
	if len(f.publish) > 0 && !slices.ContainsFunc(f.publish, func(p string) bool { return publishes(c, p) }) {
		return false
	}
	if len(f.health) > 0 {
		status := "none" // no health check
		if h := c.State.Health; h != nil && h.Status != "" {
			status = string(h.Status)
		}
		if !contains(f.health, status) {
			return false
		}
	}
	if len(f.isTask) > 0 && !contains(f.isTask, "false") {
		return false
	}
	if len(f.isolation) > 0 && !contains(f.isolation, "default") {
		return false
	}
	if f.before != nil && !c.Created.Before(f.before.Created) {
		return false
	}
	if f.since != nil && !c.Created.After(f.since.Created) {
		return false
	}
	return true
}

// matchLabels applies docker's label filters: "key" or "key=value", all
// of which must match.
func matchLabels(filters []string, labels map[string]string) bool {
	for _, l := range filters {
		k, v, hasValue := strings.Cut(l, "=")
		got, ok := labels[k]
		if !ok || hasValue && got != v {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Prune implements POST /containers/prune.
func (s *ContainerService) Prune(ctx context.Context, fs api.Filters) (containertypes.PruneReport, error) {
	until, err := labelUntilFilters(fs)
	if err != nil {
		return containertypes.PruneReport{}, err
	}
	report := containertypes.PruneReport{ContainersDeleted: []string{}}
	for _, e := range s.all() {
		c := e.snapshot()
		if c.State.Running() || c.State.Status == container.StatusRemoving {
			continue
		}
		if !until.IsZero() && !c.Created.Before(until) {
			continue
		}
		if !matchLabels(fs["label"], c.Config.Labels) {
			continue
		}
		if neg := fs["label!"]; len(neg) > 0 && matchAnyLabel(neg, c.Config.Labels) {
			continue
		}
		rw, _ := s.sizes(ctx, c)
		if err := s.Remove(ctx, c.ID, api.RemoveOptions{}); err != nil {
			s.log.Warn("prune: remove container", "id", c.ID, "err", err)
			continue
		}
		report.ContainersDeleted = append(report.ContainersDeleted, c.ID)
		report.SpaceReclaimed += uint64(rw)
	}
	return report, nil
}

func matchAnyLabel(filters []string, labels map[string]string) bool {
	for _, l := range filters {
		if matchLabels([]string{l}, labels) {
			return true
		}
	}
	return false
}

// labelUntilFilters checks the filters of a container or network prune
// (label, label! and until, as docker takes them) and returns the until
// time (zero without one).
func labelUntilFilters(fs api.Filters) (time.Time, error) {
	var until time.Time
	for k, vs := range fs {
		switch k {
		case "label", "label!":
		case "until":
			t, err := untilFilter(vs)
			if err != nil {
				return time.Time{}, err
			}
			until = t
		default:
			return time.Time{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid filter '%s'", k))
		}
	}
	return until, nil
}

// untilFilter is the time of an until filter, which takes one value.
func untilFilter(vs []string) (time.Time, error) {
	if len(vs) != 1 {
		return time.Time{}, errdefs.ErrInvalidArgument.WithMessage("invalid filter 'until': one value only")
	}
	return parsePruneUntil(vs[0])
}

// parsePruneUntil reads an until filter as docker does: a duration before
// now, an RFC 3339 time or date, or Unix seconds with an optional fraction.
func parsePruneUntil(v string) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		return time.Now().Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, time.RFC3339, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		return time.Unix(0, int64(secs*1e9)), nil
	}
	return time.Time{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid filter 'until=%s'", v))
}
