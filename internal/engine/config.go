package engine

import (
	"fmt"
	"github.com/berth-engine/berth/internal/oci"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/docker/go-units"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	containertypes "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
)

// mergeImageConfig fills what the user left unset from the image's config,
// with docker's rules (moby's daemon merge): the user's entrypoint discards
// the image's cmd; env and labels merge by key with the user winning.
func mergeImageConfig(cfg *containertypes.Config, img *dockerspec.DockerOCIImageConfig) {
	if cfg.User == "" {
		cfg.User = img.User
	}
	if len(cfg.ExposedPorts) == 0 && len(img.ExposedPorts) > 0 {
		cfg.ExposedPorts = network.PortSet{}
	}
	for p := range img.ExposedPorts {
		if port, err := network.ParsePort(p); err == nil {
			if _, ok := cfg.ExposedPorts[port]; !ok {
				cfg.ExposedPorts[port] = struct{}{}
			}
		}
	}
	cfg.Env = mergeEnv(img.Env, cfg.Env)
	if len(cfg.Entrypoint) == 0 {
		if len(cfg.Cmd) == 0 {
			cfg.Cmd = slices.Clone(img.Cmd)
		}
		if cfg.Entrypoint == nil {
			cfg.Entrypoint = slices.Clone(img.Entrypoint)
		}
	}
	if cfg.WorkingDir == "" {
		cfg.WorkingDir = img.WorkingDir
	}
	if len(img.Labels) > 0 {
		labels := map[string]string{}
		for k, v := range img.Labels {
			labels[k] = v
		}
		for k, v := range cfg.Labels {
			labels[k] = v
		}
		cfg.Labels = labels
	}
	if len(img.Volumes) > 0 {
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		for v := range img.Volumes {
			cfg.Volumes[v] = struct{}{}
		}
	}
	if cfg.StopSignal == "" {
		cfg.StopSignal = img.StopSignal
	}
	if cfg.Healthcheck == nil && img.Healthcheck != nil {
		hc := *img.Healthcheck
		cfg.Healthcheck = &hc
	}
	if len(cfg.OnBuild) == 0 {
		cfg.OnBuild = slices.Clone(img.OnBuild)
	}
	if len(cfg.Shell) == 0 {
		cfg.Shell = slices.Clone(img.Shell)
	}
}

// mergeEnv overlays user KEY=VALUE pairs on the image's, keeping order.
func mergeEnv(base, user []string) []string {
	out := slices.Clone(base)
	idx := map[string]int{}
	for i, kv := range out {
		k, _, _ := strings.Cut(kv, "=")
		idx[k] = i
	}
	for _, kv := range user {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// validateHostConfig applies docker's defaults and refuses what docker
// refuses (or what berth cannot do yet), with docker's messages.
func (s *ContainerService) validateHostConfig(hc *containertypes.HostConfig) ([]string, error) {
	var warnings []string
	bad := func(format string, a ...any) ([]string, error) {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf(format, a...))
	}
	r := &hc.Resources
	if r.Memory > 0 && r.Memory < 6*1024*1024 {
		return bad("Minimum memory limit allowed is 6MB")
	}
	if r.Memory < 0 {
		return bad("invalid memory limit %d", r.Memory)
	}
	if r.MemorySwap > 0 && r.Memory == 0 {
		return bad("You should always set the Memory limit when using Memoryswap limit, see usage")
	}
	if r.MemorySwap > 0 && r.MemorySwap < r.Memory {
		return bad("Minimum memoryswap limit should be larger than memory limit, see usage")
	}
	if r.MemoryReservation > 0 && r.Memory > 0 && r.MemoryReservation > r.Memory {
		return bad("Minimum memory limit can not be less than memory reservation limit, see usage")
	}
	if r.NanoCPUs > 0 && r.CPUPeriod > 0 {
		return bad("Conflicting options: Nano CPUs and CPU Period cannot both be set")
	}
	if r.NanoCPUs > 0 && r.CPUQuota > 0 {
		return bad("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
	}
	if ncpu := int64(runtime.NumCPU()); r.NanoCPUs < 0 || r.NanoCPUs > ncpu*1e9 {
		return bad("Range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available", ncpu, ncpu)
	}
	if r.CPUShares < 0 {
		return bad("invalid CPU shares %d: must be positive", r.CPUShares)
	}
	if r.CPUPeriod != 0 && (r.CPUPeriod < 1000 || r.CPUPeriod > 1000000) {
		return bad("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
	}
	if r.CPUQuota > 0 && r.CPUQuota < 1000 {
		return bad("CPU cfs quota can not be less than 1ms (i.e. 1000)")
	}

	// Settings this host cannot apply are dropped at start (internal/oci);
	// the client hears about it now, in docker's words.
	host := oci.DetectHostSupport(oci.DetectCgroupV2())
	if r.MemorySwap != 0 && !host.SwapLimit {
		warnings = append(warnings, "Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.")
	}
	if r.BlkioWeight > 0 && !host.BlkioWeight {
		warnings = append(warnings, "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.")
	}
	if len(r.BlkioWeightDevice) > 0 && !host.BlkioWeightDevice {
		warnings = append(warnings, "Your kernel does not support Block I/O weight_device or the cgroup is not mounted. Weight-device discarded.")
	}
	switch hc.Isolation {
	case "", "default":
	default:
		return bad("Invalid isolation: %q - linux only supports 'default'", hc.Isolation)
	}

	if err := validateRestartPolicy(hc); err != nil {
		return nil, err
	}
	if err := validateLogConfig(&hc.LogConfig); err != nil {
		return nil, err
	}
	if err := oci.ValidateSecurity(hc); err != nil {
		return nil, err
	}

	switch mode := string(hc.NetworkMode); {
	case mode == "" || mode == "default":
		hc.NetworkMode = "bridge"
	case mode == "bridge" || mode == "none" || mode == "host":
	case strings.HasPrefix(mode, "container:"):
		if strings.TrimPrefix(mode, "container:") == "" {
			return bad("invalid network mode: %s", mode)
		}
		if len(hc.PortBindings) > 0 || hc.PublishAllPorts {
			return bad("conflicting options: port publishing and the container type network mode")
		}
		if len(hc.DNS) > 0 || len(hc.DNSSearch) > 0 || len(hc.DNSOptions) > 0 {
			return bad("conflicting options: dns and the network mode")
		}
		if len(hc.ExtraHosts) > 0 {
			return bad("conflicting options: custom host-to-IP mapping and the network mode")
		}
	default:
		// As docker: a network is looked up at start, not at create (a
		// 404 from create would read to clients as a missing image).
	}
	if hc.NetworkMode == "host" && (len(hc.PortBindings) > 0 || hc.PublishAllPorts) {
		warnings = append(warnings, "Published ports are discarded when using host network mode")
		hc.PortBindings, hc.PublishAllPorts = nil, false
	}
	for p, bs := range hc.PortBindings {
		if !p.IsValid() {
			return bad("invalid port specification: %q", p.String())
		}
		for _, b := range bs {
			if err := validHostPort(b.HostPort); err != nil {
				return nil, err
			}
		}
	}
	if hc.ShmSize < 0 {
		return bad("SHM size can not be less than 0")
	}
	return warnings, nil
}

func validateRestartPolicy(hc *containertypes.HostConfig) error {
	p := hc.RestartPolicy
	switch p.Name {
	case "", containertypes.RestartPolicyDisabled:
		if p.MaximumRetryCount != 0 {
			return errdefs.ErrInvalidArgument.WithMessage("invalid restart policy: maximum retry count can only be used with 'on-failure'")
		}
	case containertypes.RestartPolicyAlways, containertypes.RestartPolicyUnlessStopped:
		if p.MaximumRetryCount != 0 {
			return errdefs.ErrInvalidArgument.WithMessage("invalid restart policy: maximum retry count can only be used with 'on-failure'")
		}
	case containertypes.RestartPolicyOnFailure:
		if p.MaximumRetryCount < 0 {
			return errdefs.ErrInvalidArgument.WithMessage("invalid restart policy: maximum retry count cannot be negative")
		}
	default:
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid restart policy: unknown policy '%s'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'", p.Name))
	}
	if hc.AutoRemove && p.Name != "" && p.Name != containertypes.RestartPolicyDisabled {
		return errdefs.ErrInvalidArgument.WithMessage("can't create 'AutoRemove' container with restart policy")
	}
	return nil
}

// logDriver is the effective log driver name.
func logDriver(hc *containertypes.HostConfig) string {
	if hc.LogConfig.Type == "" {
		return "json-file"
	}
	return hc.LogConfig.Type
}

// jsonFileOpts are the json-file driver's options berth honours.
var jsonFileOpts = []string{"max-size", "max-file", "compress", "labels", "labels-regex", "env", "env-regex", "tag", "mode", "max-buffer-size"}

func validateLogConfig(lc *containertypes.LogConfig) error {
	switch lc.Type {
	case "", "json-file":
		lc.Type = "json-file"
		for k := range lc.Config {
			if !slices.Contains(jsonFileOpts, k) {
				return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("unknown log opt '%s' for json-file log driver", k))
			}
		}
		switch m := lc.Config["mode"]; m {
		case "", "blocking", "non-blocking":
		default:
			return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("logger: logging mode not supported: %s", m))
		}
		_, _, err := logRotation(lc)
		return err
	case "none":
		if len(lc.Config) > 0 {
			return errdefs.ErrInvalidArgument.WithMessage("none driver does not support log options")
		}
		return nil
	}
	return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("failed to create task for container: failed to initialize logging driver: logger: no log driver named '%s' is registered", lc.Type))
}

// logRotation parses max-size and max-file as docker's json-file does.
func logRotation(lc *containertypes.LogConfig) (maxSize int64, maxFiles int, err error) {
	maxSize, maxFiles = -1, 1
	if s, ok := lc.Config["max-size"]; ok && s != "" {
		maxSize, err = units.FromHumanSize(s)
		if err != nil || maxSize < 0 {
			return 0, 0, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid max-size %q: %v", s, err))
		}
		if maxSize == 0 {
			maxSize = -1
		}
	}
	if s, ok := lc.Config["max-file"]; ok && s != "" {
		maxFiles, err = strconv.Atoi(s)
		if err != nil || maxFiles < 1 {
			return 0, 0, errdefs.ErrInvalidArgument.WithMessage("max-file cannot be less than 1")
		}
		if maxFiles > 1 && maxSize <= 0 {
			return 0, 0, errdefs.ErrInvalidArgument.WithMessage("max-file cannot be set without max-size")
		}
	}
	if maxSize < 0 {
		maxSize = 0
	}
	return maxSize, maxFiles, nil
}

// validHostPort checks a binding's host port: empty, a port or a range.
func validHostPort(s string) error {
	if s == "" {
		return nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	a, err1 := strconv.ParseUint(lo, 10, 16)
	b := a
	var err2 error
	if isRange {
		b, err2 = strconv.ParseUint(hi, 10, 16)
	}
	if err1 != nil || err2 != nil || b < a {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid port specification: %q", s))
	}
	return nil
}

// checkNetwork refuses, at start, a network berth does not have: only
// bridge (loopback only until issue 5), host and none exist.
func checkNetwork(hc *containertypes.HostConfig) error {
	switch mode := string(hc.NetworkMode); mode {
	case "", "default", "bridge", "host", "none":
		return nil
	default:
		return errdefs.ErrNotFound.WithMessage("failed to set up container networking: network " + mode + " not found")
	}
}
