package api

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
)

func (rt *router) postContainersCreate(c *call) error {
	body, err := c.jsonBody()
	if err != nil {
		return err
	}
	req, err := decodeCreateRequest(body)
	if err != nil {
		return err
	}
	warnings, err := adaptCreateRequest(c.version, &req)
	if err != nil {
		return err
	}
	var platform string
	if versionAtLeast(c.version, "1.41") {
		platform = c.str("platform")
	}
	resp, err := rt.b.Containers.Create(c.ctx, ContainerCreateRequest{
		Name:             c.str("name"),
		Platform:         platform,
		Config:           req.Config,
		HostConfig:       req.HostConfig,
		NetworkingConfig: req.NetworkingConfig,
		APIVersion:       c.version,
	})
	if err != nil {
		return err
	}
	resp.Warnings = append(resp.Warnings, warnings...)
	if resp.Warnings == nil {
		resp.Warnings = []string{}
	}
	return c.writeJSON(http.StatusCreated, resp)
}

// adaptCreateRequest applies dockerd's API-version compatibility rules to a
// create request: fields an older client could not have meant are reset,
// and combinations it could not have sent are refused. It returns warnings
// for the response.
func adaptCreateRequest(version string, req *container.CreateRequest) ([]string, error) {
	cfg, hc, nc := req.Config, req.HostConfig, req.NetworkingConfig
	var warnings []string
	if versionLess(version, "1.25") {
		hc.AutoRemove = false // the client removed the container itself
	}
	if versionLess(version, "1.40") {
		for i := range hc.Mounts {
			if bo := hc.Mounts[i].BindOptions; bo != nil {
				bo.NonRecursive = false
			}
		}
		if hc.IpcMode == "" {
			hc.IpcMode = container.IPCModeShareable
		}
	}
	if versionLess(version, "1.42") {
		for i := range hc.Mounts {
			m := &hc.Mounts[i]
			if bo := m.BindOptions; bo != nil {
				bo.CreateMountpoint = false
			}
			// Invalid, but not validated before 1.42.
			if m.VolumeOptions != nil && m.Type != mount.TypeVolume {
				m.VolumeOptions = nil
			}
			if m.TmpfsOptions != nil && m.Type != mount.TypeTmpfs {
				m.TmpfsOptions = nil
			}
		}
		hc.ConsoleSize = [2]uint{0, 0}
	} else {
		for _, m := range hc.Mounts {
			if m.VolumeOptions != nil && m.Type != mount.TypeVolume {
				return nil, invalidArg(fmt.Sprintf("VolumeOptions must not be specified on mount type %q", m.Type))
			}
			if m.BindOptions != nil && m.Type != mount.TypeBind {
				return nil, invalidArg(fmt.Sprintf("BindOptions must not be specified on mount type %q", m.Type))
			}
			if m.TmpfsOptions != nil && m.Type != mount.TypeTmpfs {
				return nil, invalidArg(fmt.Sprintf("TmpfsOptions must not be specified on mount type %q", m.Type))
			}
		}
	}
	if versionLess(version, "1.43") {
		hc.Annotations = nil
	}
	if versionLess(version, "1.44") {
		if cfg.Healthcheck != nil {
			cfg.Healthcheck.StartInterval = 0
		}
		for _, m := range hc.Mounts {
			if m.Type == mount.TypeBind && m.BindOptions != nil && m.BindOptions.ReadOnlyForceRecursive {
				return nil, invalidArg("BindOptions.ReadOnlyForceRecursive needs API v1.44 or newer")
			}
		}
		if len(nc.EndpointsConfig) > 1 {
			names := make([]string, 0, len(nc.EndpointsConfig))
			for k := range nc.EndpointsConfig {
				names = append(names, k)
			}
			return nil, invalidArg("Container cannot be created with multiple network endpoints: " + strings.Join(names, ", "))
		}
	}
	if versionLess(version, "1.45") {
		for _, m := range hc.Mounts {
			if m.VolumeOptions != nil && m.VolumeOptions.Subpath != "" {
				return nil, invalidArg("VolumeOptions.Subpath needs API v1.45 or newer")
			}
		}
	}
	if versionLess(version, "1.48") {
		for _, ep := range nc.EndpointsConfig {
			ep.GwPriority = 0
		}
		for _, m := range hc.Mounts {
			if m.Type == mount.TypeImage {
				return nil, invalidArg(`Mount type "Image" needs API v1.48 or newer`)
			}
		}
	}
	// Before 1.53 an empty binding list meant "any address, any port";
	// from 1.53 on it means nothing.
	var empty []string
	for port, bindings := range hc.PortBindings {
		if len(bindings) > 0 {
			continue
		}
		if compareVersions(version, "1.52") > 0 {
			delete(hc.PortBindings, port)
			continue
		}
		if compareVersions(version, "1.52") == 0 {
			empty = append(empty, port.String())
		}
		hc.PortBindings[port] = []network.PortBinding{{}}
	}
	if len(empty) > 0 {
		warnings = append(warnings, "Following container port(s) have an empty list of port-bindings: "+strings.Join(empty, ", ")+". Starting with API 1.53, such bindings will be discarded.")
	}
	if hc.PidsLimit != nil && *hc.PidsLimit <= 0 {
		hc.PidsLimit = nil // 0 and -1 both mean unlimited
	}
	return warnings, nil
}

func (rt *router) postContainerStart(c *call) error {
	// A non-empty body was the pre-1.24 HostConfig; "{}" or "null" is
	// tolerated, anything larger is refused like dockerd.
	if c.r.ContentLength > 7 || c.r.ContentLength == -1 {
		return invalidArg("starting container with non-empty request body was deprecated since API v1.22 and removed in v1.24")
	}
	if err := rt.b.Containers.Start(c.ctx, c.name); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// stopOptions reads the signal and timeout of stop and restart. The
// timeout is "t" (what docker clients send) or "timeout".
func stopOptions(c *call) (StopOptions, error) {
	var opts StopOptions
	if versionAtLeast(c.version, "1.42") {
		opts.Signal = c.str("signal")
	}
	key := "t"
	if _, ok := c.form["t"]; !ok {
		key = "timeout"
	}
	if n, ok, err := intValue(c.form, key); err != nil {
		return opts, err
	} else if ok {
		opts.Timeout = &n
	}
	return opts, nil
}

func (rt *router) postContainerStop(c *call) error {
	opts, err := stopOptions(c)
	if err != nil {
		return err
	}
	if err := rt.b.Containers.Stop(c.ctx, c.name, opts); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (rt *router) postContainerRestart(c *call) error {
	opts, err := stopOptions(c)
	if err != nil {
		return err
	}
	if err := rt.b.Containers.Restart(c.ctx, c.name, opts); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (rt *router) postContainerKill(c *call) error {
	if err := rt.b.Containers.Kill(c.ctx, c.name, c.str("signal")); err != nil {
		return fmt.Errorf("cannot kill container: %s: %w", c.name, err)
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (rt *router) postContainerWait(c *call) error {
	// Before 1.30 there were no conditions and the status line came with
	// the result; since then the header is sent as soon as the wait is
	// registered, which `docker run` relies on to start the container only
	// then.
	legacy := versionLess(c.version, "1.30")
	cond := container.WaitConditionNotRunning
	legacyRemoval := false
	if !legacy {
		switch v := container.WaitCondition(c.str("condition")); v {
		case "", container.WaitConditionNotRunning:
		case container.WaitConditionNextExit:
			cond = v
		case container.WaitConditionRemoved:
			cond = v
			legacyRemoval = versionLess(c.version, "1.34")
		default:
			return invalidArg(fmt.Sprintf("invalid condition: %q", string(v)))
		}
	}
	ctx, cancel := untilStopping(c.ctx)
	defer cancel()
	ch, err := rt.b.Containers.Wait(ctx, c.name, cond)
	if err != nil {
		return err
	}
	c.w.Header().Set("Content-Type", "application/json")
	if !legacy {
		c.w.WriteHeader(http.StatusOK)
		c.w.Flush()
	}
	resp, ok := <-ch
	if !ok {
		if ctx.Err() != nil {
			// The client or the daemon went away: nobody to tell, and a
			// client reading the body sees it end without a result.
			return nil
		}
		resp = container.WaitResponse{StatusCode: -1, Error: &container.WaitExitError{Message: "wait ended without a result"}}
	}
	if legacyRemoval && resp.Error != nil {
		// API < 1.34 reported a failed removal with an empty body.
		return nil
	}
	if legacy {
		return c.writeJSON(http.StatusOK, resp)
	}
	return writeJSONBody(c.w, resp)
}

func (rt *router) postContainerResize(c *call) error {
	h, err := strconv.ParseUint(strings.TrimSpace(c.str("h")), 10, 32)
	if err != nil {
		return invalidArg(fmt.Sprintf("invalid value for \"h\": %q is not a terminal height", c.str("h")))
	}
	w, err := strconv.ParseUint(strings.TrimSpace(c.str("w")), 10, 32)
	if err != nil {
		return invalidArg(fmt.Sprintf("invalid value for \"w\": %q is not a terminal width", c.str("w")))
	}
	if err := rt.b.Containers.Resize(c.ctx, c.name, uint(h), uint(w)); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}

func (rt *router) postContainerRename(c *call) error {
	newName := c.str("name")
	if strings.TrimSpace(newName) == "" {
		return invalidArg("Neither old nor new names may be empty")
	}
	if err := rt.b.Containers.Rename(c.ctx, c.name, newName); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (rt *router) getContainersJSON(c *call) error {
	fs, err := c.filters()
	if err != nil {
		return err
	}
	// The pre-1.24 "since"/"before" parameters are filters today.
	for _, k := range []string{"since", "before"} {
		if v := c.str(k); v != "" {
			fs[k] = append(fs[k], v)
		}
	}
	opts := ListOptions{All: c.bool("all"), Size: c.bool("size"), Filters: fs}
	for _, k := range []string{"limit", "last"} {
		n, ok, err := intValue(c.form, k)
		if err != nil {
			return err
		}
		if ok && n > 0 {
			opts.Limit = n
			break
		}
	}
	list, err := rt.b.Containers.List(c.ctx, opts)
	if err != nil {
		return err
	}
	if list == nil {
		list = []container.Summary{}
	}
	for i := range list {
		if versionLess(c.version, "1.46") {
			list[i].HostConfig.Annotations = nil
		}
		if versionLess(c.version, "1.48") {
			list[i].ImageManifestDescriptor = nil
		}
		if versionLess(c.version, "1.52") {
			list[i].Health = nil
		}
	}
	return c.writeJSON(http.StatusOK, list)
}

func (rt *router) getContainerInspect(c *call) error {
	resp, err := rt.b.Containers.Inspect(c.ctx, c.name, c.bool("size"))
	if err != nil {
		return err
	}
	if resp == nil {
		return errdefs.ErrNotFound.WithMessage("No such container: " + c.name)
	}
	if versionLess(c.version, "1.48") {
		resp.ImageManifestDescriptor = nil
	}
	out := inspectBody{InspectResponse: resp, NetworkSettings: resp.NetworkSettings}
	if versionLess(c.version, "1.52") {
		out.NetworkSettings = legacyNetworkSettingsOf(resp)
	}
	if si, ok := rt.b.Containers.(SecurityInspector); ok {
		out.BerthSecurity = si.InspectSecurity(c.ctx, resp.ID)
	}
	return c.writeJSON(http.StatusOK, out)
}

func (rt *router) deleteContainer(c *call) error {
	err := rt.b.Containers.Remove(c.ctx, c.name, RemoveOptions{
		Force:         c.bool("force"),
		RemoveVolumes: c.bool("v"),
		RemoveLink:    c.bool("link"),
	})
	if err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (rt *router) postContainersPrune(c *call) error {
	fs, err := c.filters()
	if err != nil {
		return err
	}
	rep, err := rt.b.Containers.Prune(c.ctx, fs)
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, rep)
}
