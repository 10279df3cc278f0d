package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/berth-engine/berth/internal/cli/opts"
	"github.com/docker/go-connections/nat"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/spf13/pflag"
)

// containerOptions are the flags shared by `run` and `create`: everything
// that ends up in the container's Config, HostConfig and networking
// config.
type containerOptions struct {
	attach            opts.ListOpts
	volumes           opts.ListOpts
	tmpfs             opts.ListOpts
	mounts            opts.MountOpt
	blkioWeightDevice opts.WeightDeviceOpt
	deviceReadBps     opts.ThrottleDeviceOpt
	deviceWriteBps    opts.ThrottleDeviceOpt
	deviceReadIOps    opts.ThrottleDeviceOpt
	deviceWriteIOps   opts.ThrottleDeviceOpt
	links             opts.ListOpts
	aliases           opts.ListOpts
	linkLocalIPs      opts.ListOpts
	env               opts.ListOpts
	labels            opts.ListOpts
	deviceCgroupRules opts.ListOpts
	devices           opts.ListOpts
	ulimits           *opts.UlimitOpt
	sysctls           *opts.MapOpts
	publish           opts.ListOpts
	expose            opts.ListOpts
	dns               opts.ListOpts
	dnsSearch         opts.ListOpts
	dnsOptions        opts.ListOpts
	extraHosts        opts.ListOpts
	volumesFrom       opts.ListOpts
	envFile           opts.ListOpts
	capAdd            opts.ListOpts
	capDrop           opts.ListOpts
	groupAdd          opts.ListOpts
	securityOpt       opts.ListOpts
	storageOpt        opts.ListOpts
	labelsFile        opts.ListOpts
	loggingOpts       opts.ListOpts
	annotations       *opts.MapOpts
	netMode           opts.NetworkOpt

	privileged        bool
	pidMode           string
	utsMode           string
	usernsMode        string
	cgroupnsMode      string
	publishAll        bool
	stdin             bool
	tty               bool
	oomKillDisable    bool
	oomScoreAdj       int
	containerIDFile   string
	entrypoint        string
	hostname          string
	domainname        string
	memory            opts.MemBytes
	memoryReservation opts.MemBytes
	memorySwap        opts.MemSwapBytes
	user              string
	workingDir        string
	cpuCount          int64
	cpuShares         int64
	cpuPercent        int64
	cpuPeriod         int64
	cpuRTPeriod       int64
	cpuRTRuntime      int64
	cpuQuota          int64
	cpus              opts.NanoCPUs
	cpusetCpus        string
	cpusetMems        string
	blkioWeight       uint16
	ioMaxBandwidth    opts.MemBytes
	ioMaxIOps         uint64
	swappiness        int64
	macAddress        string
	ipv4Address       net.IP
	ipv6Address       net.IP
	ipcMode           string
	pidsLimit         int64
	restartPolicy     string
	readonlyRootfs    bool
	loggingDriver     string
	cgroupParent      string
	volumeDriver      string
	stopSignal        string
	stopTimeout       int
	isolation         string
	shmSize           opts.MemBytes
	noHealthcheck     bool
	healthCmd         string
	healthInterval    time.Duration
	healthTimeout     time.Duration
	healthStartPeriod time.Duration
	healthStartIntvl  time.Duration
	healthRetries     int
	runtime           string
	autoRemove        bool
	init              bool

	lookupEnv func(string) (string, bool)

	Image string
	Args  []string
}

// addContainerFlags registers docker's run/create flags on flags.
func addContainerFlags(flags *pflag.FlagSet, lookupEnv func(string) (string, bool)) *containerOptions {
	c := &containerOptions{
		attach:            opts.NewListOpts(validateAttach),
		volumes:           opts.NewListOpts(nil),
		tmpfs:             opts.NewListOpts(nil),
		blkioWeightDevice: opts.WeightDeviceOpt{},
		deviceReadBps:     opts.NewThrottleDeviceOpt(true),
		deviceWriteBps:    opts.NewThrottleDeviceOpt(true),
		deviceReadIOps:    opts.NewThrottleDeviceOpt(false),
		deviceWriteIOps:   opts.NewThrottleDeviceOpt(false),
		links:             opts.NewListOpts(opts.ValidateLink),
		aliases:           opts.NewListOpts(nil),
		linkLocalIPs:      opts.NewListOpts(nil),
		env:               opts.NewListOpts(opts.NewEnvValidator(lookupEnv)),
		labels:            opts.NewListOpts(opts.ValidateLabel),
		deviceCgroupRules: opts.NewListOpts(validateDeviceCgroupRule),
		devices:           opts.NewListOpts(nil),
		ulimits:           opts.NewUlimitOpt(),
		sysctls:           opts.NewMapOpts(opts.ValidateSysctl),
		publish:           opts.NewListOpts(nil),
		expose:            opts.NewListOpts(nil),
		dns:               opts.NewListOpts(opts.ValidateIPAddress),
		dnsSearch:         opts.NewListOpts(opts.ValidateDNSSearch),
		dnsOptions:        opts.NewListOpts(nil),
		extraHosts:        opts.NewListOpts(opts.ValidateExtraHost),
		volumesFrom:       opts.NewListOpts(nil),
		envFile:           opts.NewListOpts(nil),
		capAdd:            opts.NewListOpts(nil),
		capDrop:           opts.NewListOpts(nil),
		groupAdd:          opts.NewListOpts(nil),
		securityOpt:       opts.NewListOpts(nil),
		storageOpt:        opts.NewListOpts(nil),
		labelsFile:        opts.NewListOpts(nil),
		loggingOpts:       opts.NewListOpts(nil),
		annotations:       opts.NewMapOpts(nil),
		lookupEnv:         lookupEnv,
	}

	// General purpose
	flags.VarP(&c.attach, "attach", "a", "Attach to STDIN, STDOUT or STDERR")
	flags.Var(&c.deviceCgroupRules, "device-cgroup-rule", "Add a rule to the cgroup allowed devices list")
	flags.Var(&c.devices, "device", "Add a host device to the container")
	flags.VarP(&c.env, "env", "e", "Set environment variables")
	flags.Var(&c.envFile, "env-file", "Read in a file of environment variables")
	flags.StringVar(&c.entrypoint, "entrypoint", "", "Overwrite the default ENTRYPOINT of the image")
	flags.Var(&c.groupAdd, "group-add", "Add additional groups to join")
	flags.StringVarP(&c.hostname, "hostname", "h", "", "Container host name")
	flags.StringVar(&c.domainname, "domainname", "", "Container NIS domain name")
	flags.BoolVarP(&c.stdin, "interactive", "i", false, "Keep STDIN open even if not attached")
	flags.VarP(&c.labels, "label", "l", "Set meta data on a container")
	flags.Var(&c.labelsFile, "label-file", "Read in a line delimited file of labels")
	flags.BoolVar(&c.readonlyRootfs, "read-only", false, "Mount the container's root filesystem as read only")
	flags.StringVar(&c.restartPolicy, "restart", string(container.RestartPolicyDisabled), "Restart policy to apply when a container exits")
	flags.StringVar(&c.stopSignal, "stop-signal", "", "Signal to stop the container")
	flags.IntVar(&c.stopTimeout, "stop-timeout", 0, "Timeout (in seconds) to stop a container")
	flags.Var(c.sysctls, "sysctl", "Sysctl options")
	flags.BoolVarP(&c.tty, "tty", "t", false, "Allocate a pseudo-TTY")
	flags.Var(c.ulimits, "ulimit", "Ulimit options")
	flags.StringVarP(&c.user, "user", "u", "", "Username or UID (format: <name|uid>[:<group|gid>])")
	flags.StringVarP(&c.workingDir, "workdir", "w", "", "Working directory inside the container")
	flags.BoolVar(&c.autoRemove, "rm", false, "Automatically remove the container and its associated anonymous volumes when it exits")

	// Security
	flags.Var(&c.capAdd, "cap-add", "Add Linux capabilities")
	flags.Var(&c.capDrop, "cap-drop", "Drop Linux capabilities")
	flags.BoolVar(&c.privileged, "privileged", false, "Give extended privileges to this container")
	flags.Var(&c.securityOpt, "security-opt", "Security Options")
	flags.StringVar(&c.usernsMode, "userns", "", "User namespace to use")
	flags.StringVar(&c.cgroupnsMode, "cgroupns", "", `Cgroup namespace to use (host|private)
'host':    Run the container in the host's cgroup namespace
'private': Run the container in its own private cgroup namespace
'':        Use the cgroup namespace as configured by the
           default-cgroupns-mode option on the daemon (default)`)

	// Network and ports
	flags.Var(&c.extraHosts, "add-host", "Add a custom host-to-IP mapping (host:ip)")
	flags.Var(&c.dns, "dns", "Set custom DNS servers")
	flags.Var(&c.dnsOptions, "dns-opt", "Set DNS options")
	flags.Var(&c.dnsOptions, "dns-option", "Set DNS options")
	_ = flags.MarkHidden("dns-opt")
	flags.Var(&c.dnsSearch, "dns-search", "Set custom DNS search domains")
	flags.Var(&c.expose, "expose", "Expose a port or a range of ports")
	flags.Var(&ipValue{ip: &c.ipv4Address}, "ip", "IPv4 address (e.g., 172.30.100.104)")
	flags.Var(&ipValue{ip: &c.ipv6Address}, "ip6", "IPv6 address (e.g., 2001:db8::33)")
	flags.Var(&c.links, "link", "Add link to another container")
	flags.Var(&c.linkLocalIPs, "link-local-ip", "Container IPv4/IPv6 link-local addresses")
	flags.StringVar(&c.macAddress, "mac-address", "", "Container MAC address (e.g., 92:d0:c6:0a:29:33)")
	flags.VarP(&c.publish, "publish", "p", "Publish a container's port(s) to the host")
	flags.BoolVarP(&c.publishAll, "publish-all", "P", false, "Publish all exposed ports to random ports")
	flags.Var(&c.netMode, "net", "Connect a container to a network")
	flags.Var(&c.netMode, "network", "Connect a container to a network")
	_ = flags.MarkHidden("net")
	flags.Var(&c.aliases, "net-alias", "Add network-scoped alias for the container")
	flags.Var(&c.aliases, "network-alias", "Add network-scoped alias for the container")
	_ = flags.MarkHidden("net-alias")

	// Logging and storage
	flags.StringVar(&c.loggingDriver, "log-driver", "", "Logging driver for the container")
	flags.StringVar(&c.volumeDriver, "volume-driver", "", "Optional volume driver for the container")
	flags.Var(&c.loggingOpts, "log-opt", "Log driver options")
	flags.Var(&c.storageOpt, "storage-opt", "Storage driver options for the container")
	flags.Var(&c.tmpfs, "tmpfs", "Mount a tmpfs directory")
	flags.Var(&c.volumesFrom, "volumes-from", "Mount volumes from the specified container(s)")
	flags.VarP(&c.volumes, "volume", "v", "Bind mount a volume")
	flags.Var(&c.mounts, "mount", "Attach a filesystem mount to the container")

	// Health checks
	flags.StringVar(&c.healthCmd, "health-cmd", "", "Command to run to check health")
	flags.DurationVar(&c.healthInterval, "health-interval", 0, "Time between running the check (ms|s|m|h) (default 0s)")
	flags.IntVar(&c.healthRetries, "health-retries", 0, "Consecutive failures needed to report unhealthy")
	flags.DurationVar(&c.healthTimeout, "health-timeout", 0, "Maximum time to allow one check to run (ms|s|m|h) (default 0s)")
	flags.DurationVar(&c.healthStartPeriod, "health-start-period", 0, "Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)")
	flags.DurationVar(&c.healthStartIntvl, "health-start-interval", 0, "Time between running the check during the start period (ms|s|m|h) (default 0s)")
	flags.BoolVar(&c.noHealthcheck, "no-healthcheck", false, "Disable any container-specified HEALTHCHECK")

	// Resources
	flags.Uint16Var(&c.blkioWeight, "blkio-weight", 0, "Block IO (relative weight), between 10 and 1000, or 0 to disable (default 0)")
	flags.Var(&c.blkioWeightDevice, "blkio-weight-device", "Block IO weight (relative device weight)")
	flags.StringVar(&c.containerIDFile, "cidfile", "", "Write the container ID to the file")
	flags.StringVar(&c.cpusetCpus, "cpuset-cpus", "", "CPUs in which to allow execution (0-3, 0,1)")
	flags.StringVar(&c.cpusetMems, "cpuset-mems", "", "MEMs in which to allow execution (0-3, 0,1)")
	flags.Int64Var(&c.cpuCount, "cpu-count", 0, "CPU count (Windows only)")
	flags.Int64Var(&c.cpuPercent, "cpu-percent", 0, "CPU percent (Windows only)")
	flags.Int64Var(&c.cpuPeriod, "cpu-period", 0, "Limit CPU CFS (Completely Fair Scheduler) period")
	flags.Int64Var(&c.cpuQuota, "cpu-quota", 0, "Limit CPU CFS (Completely Fair Scheduler) quota")
	flags.Int64Var(&c.cpuRTPeriod, "cpu-rt-period", 0, "Limit CPU real-time period in microseconds")
	flags.Int64Var(&c.cpuRTRuntime, "cpu-rt-runtime", 0, "Limit CPU real-time runtime in microseconds")
	flags.Int64VarP(&c.cpuShares, "cpu-shares", "c", 0, "CPU shares (relative weight)")
	flags.Var(&c.cpus, "cpus", "Number of CPUs")
	flags.Var(&c.deviceReadBps, "device-read-bps", "Limit read rate (bytes per second) from a device")
	flags.Var(&c.deviceReadIOps, "device-read-iops", "Limit read rate (IO per second) from a device")
	flags.Var(&c.deviceWriteBps, "device-write-bps", "Limit write rate (bytes per second) to a device")
	flags.Var(&c.deviceWriteIOps, "device-write-iops", "Limit write rate (IO per second) to a device")
	flags.Var(&c.ioMaxBandwidth, "io-maxbandwidth", "Maximum IO bandwidth limit for the system drive (Windows only)")
	flags.Uint64Var(&c.ioMaxIOps, "io-maxiops", 0, "Maximum IOps limit for the system drive (Windows only)")
	flags.VarP(&c.memory, "memory", "m", "Memory limit")
	flags.Var(&c.memoryReservation, "memory-reservation", "Memory soft limit")
	flags.Var(&c.memorySwap, "memory-swap", "Swap limit equal to memory plus swap: '-1' to enable unlimited swap")
	flags.Int64Var(&c.swappiness, "memory-swappiness", -1, "Tune container memory swappiness (0 to 100)")
	flags.BoolVar(&c.oomKillDisable, "oom-kill-disable", false, "Disable OOM Killer")
	flags.IntVar(&c.oomScoreAdj, "oom-score-adj", 0, "Tune host's OOM preferences (-1000 to 1000)")
	flags.Int64Var(&c.pidsLimit, "pids-limit", 0, "Tune container pids limit (set -1 for unlimited)")

	// Low-level execution
	flags.StringVar(&c.cgroupParent, "cgroup-parent", "", "Optional parent cgroup for the container")
	flags.StringVar(&c.ipcMode, "ipc", "", "IPC mode to use")
	flags.StringVar(&c.isolation, "isolation", "", "Container isolation technology")
	flags.StringVar(&c.pidMode, "pid", "", "PID namespace to use")
	flags.Var(&c.shmSize, "shm-size", "Size of /dev/shm")
	flags.StringVar(&c.utsMode, "uts", "", "UTS namespace to use")
	flags.StringVar(&c.runtime, "runtime", "", "Runtime to use for this container")
	flags.BoolVar(&c.init, "init", false, "Run an init inside the container that forwards signals and reaps processes")
	flags.Var(c.annotations, "annotation", "Add an annotation to the container (passed through to the OCI runtime)")
	// Accepted for compatibility and ignored: cgroup v2 has no kernel
	// memory limit, and the API no longer carries one.
	var kmem opts.MemBytes
	flags.Var(&kmem, "kernel-memory", "Kernel memory limit")
	return c
}

// ipValue is an IP address flag shown as "string" in help, as docker's.
type ipValue struct{ ip *net.IP }

func (v *ipValue) String() string {
	if v.ip == nil || *v.ip == nil {
		return ""
	}
	return v.ip.String()
}

func (v *ipValue) Set(s string) error {
	ip := net.ParseIP(strings.TrimSpace(s))
	if ip == nil {
		return fmt.Errorf("invalid string being converted to IP address: %s", s)
	}
	*v.ip = ip
	return nil
}

func (v *ipValue) Type() string { return "string" }

// containerConfig is what a create request carries.
type containerConfig struct {
	Config           *container.Config
	HostConfig       *container.HostConfig
	NetworkingConfig *network.NetworkingConfig
}

var deviceCgroupRuleRegexp = regexp.MustCompile(`^[acb] ([0-9]+|\*):([0-9]+|\*) [rwm]{1,3}$`)

func validateDeviceCgroupRule(val string) (string, error) {
	if deviceCgroupRuleRegexp.MatchString(val) {
		return val, nil
	}
	return val, fmt.Errorf("invalid device cgroup format '%s'", val)
}

func validateAttach(val string) (string, error) {
	s := strings.ToLower(val)
	switch s {
	case "stdin", "stdout", "stderr":
		return s, nil
	}
	return val, errors.New("valid streams are STDIN, STDOUT and STDERR")
}

// parse turns the flags into a create request, as docker's CLI does; bad
// values are reported before anything is sent to the daemon.
func (c *containerOptions) parse(flags *pflag.FlagSet) (*containerConfig, error) {
	attachStdin := c.attach.Get("stdin")
	attachStdout := c.attach.Get("stdout")
	attachStderr := c.attach.Get("stderr")

	if c.macAddress != "" {
		if _, err := net.ParseMAC(strings.TrimSpace(c.macAddress)); err != nil {
			return nil, fmt.Errorf("%s is not a valid mac address", c.macAddress)
		}
	}
	if c.stdin {
		attachStdin = true
	}
	if c.attach.Len() == 0 {
		attachStdout, attachStderr = true, true
	}
	if c.swappiness != -1 && (c.swappiness < 0 || c.swappiness > 100) {
		return nil, fmt.Errorf("invalid value: %d. Valid memory swappiness range is 0-100", c.swappiness)
	}

	var binds []string
	volumes := c.volumes.GetMap()
	for _, spec := range c.volumes.GetSlice() {
		src, target, err := splitVolumeSpec(spec)
		if err != nil {
			return nil, err
		}
		if src == "" {
			continue // an anonymous volume stays in Config.Volumes
		}
		// Binds and named volumes go to HostConfig.Binds, so that they
		// are not recorded in an image committed from the container.
		delete(volumes, spec)
		if !filepath.IsAbs(src) && strings.HasPrefix(src, ".") {
			if abs, err := filepath.Abs(src); err == nil {
				spec = abs + ":" + target
			}
		}
		binds = append(binds, spec)
	}

	tmpfs := map[string]string{}
	for _, t := range c.tmpfs.GetSlice() {
		k, v, _ := strings.Cut(t, ":")
		tmpfs[k] = v
	}

	var runCmd, entrypoint []string
	if len(c.Args) > 0 {
		runCmd = c.Args
	}
	if c.entrypoint != "" {
		entrypoint = []string{c.entrypoint}
	} else if flags.Changed("entrypoint") {
		entrypoint = []string{""}
	}

	publish, err := convertToStandardNotation(c.publish.GetSlice())
	if err != nil {
		return nil, err
	}
	natPorts, natBindings, err := nat.ParsePortSpecs(publish)
	if err != nil {
		return nil, err
	}
	portBindings := network.PortMap{}
	for port, bindings := range natBindings {
		p, err := network.ParsePort(string(port))
		if err != nil {
			return nil, err
		}
		portBindings[p] = []network.PortBinding{}
		for _, b := range bindings {
			var hostIP netip.Addr
			if b.HostIP != "" {
				if hostIP, err = netip.ParseAddr(b.HostIP); err != nil {
					return nil, err
				}
			}
			portBindings[p] = append(portBindings[p], network.PortBinding{HostIP: hostIP, HostPort: b.HostPort})
		}
	}
	exposed := network.PortSet{}
	for port := range natPorts {
		p, err := network.ParsePort(string(port))
		if err != nil {
			return nil, err
		}
		exposed[p] = struct{}{}
	}
	for _, e := range c.expose.GetSlice() {
		pr, err := network.ParsePortRange(e)
		if err != nil {
			return nil, fmt.Errorf("invalid range format for --expose: %w", err)
		}
		for p := range pr.All() {
			exposed[p] = struct{}{}
		}
	}

	deviceMappings := make([]container.DeviceMapping, 0, c.devices.Len())
	var cdiDevices []string
	for _, d := range c.devices.GetSlice() {
		if isCDIName(d) {
			cdiDevices = append(cdiDevices, d)
			continue
		}
		if _, err := validateLinuxPath(d, validDeviceMode); err != nil {
			return nil, err
		}
		m, err := parseDevice(d)
		if err != nil {
			return nil, err
		}
		deviceMappings = append(deviceMappings, m)
	}

	env, err := opts.ReadKVEnvStrings(c.envFile.GetSlice(), c.env.GetSlice(), c.lookupEnv)
	if err != nil {
		return nil, err
	}
	labels, err := opts.ReadKVStrings(c.labelsFile.GetSlice(), c.labels.GetSlice())
	if err != nil {
		return nil, err
	}

	pidMode := container.PidMode(c.pidMode)
	if !pidMode.Valid() {
		return nil, errors.New("--pid: invalid PID mode")
	}
	utsMode := container.UTSMode(c.utsMode)
	if !utsMode.Valid() {
		return nil, errors.New("--uts: invalid UTS mode")
	}
	usernsMode := container.UsernsMode(c.usernsMode)
	if !usernsMode.Valid() {
		return nil, errors.New("--userns: invalid USER mode")
	}
	cgroupnsMode := container.CgroupnsMode(c.cgroupnsMode)
	if !cgroupnsMode.Valid() {
		return nil, errors.New("--cgroupns: invalid CGROUP mode")
	}
	restartPolicy, err := opts.ParseRestartPolicy(c.restartPolicy)
	if err != nil {
		return nil, err
	}
	logOpts := opts.ConvertKVStringsToMap(c.loggingOpts.GetSlice())
	if c.loggingDriver == "none" && c.loggingOpts.Len() > 0 {
		return nil, fmt.Errorf("invalid logging opts for driver %s", c.loggingDriver)
	}
	securityOpts, err := parseSecurityOpts(c.securityOpt.GetSlice())
	if err != nil {
		return nil, err
	}
	securityOpts, maskedPaths, readonlyPaths := parseSystemPaths(securityOpts)
	storageOpts := map[string]string{}
	for _, o := range c.storageOpt.GetSlice() {
		k, v, ok := strings.Cut(o, "=")
		if !ok {
			return nil, errors.New("invalid storage option")
		}
		storageOpts[k] = v
	}

	var health *container.HealthConfig
	haveHealth := c.healthCmd != "" || c.healthInterval != 0 || c.healthTimeout != 0 ||
		c.healthStartPeriod != 0 || c.healthRetries != 0 || c.healthStartIntvl != 0
	if c.noHealthcheck {
		if haveHealth {
			return nil, errors.New("--no-healthcheck conflicts with --health-* options")
		}
		health = &container.HealthConfig{Test: []string{"NONE"}}
	} else if haveHealth {
		var probe []string
		if c.healthCmd != "" {
			probe = []string{"CMD-SHELL", c.healthCmd}
		}
		for _, d := range []struct {
			name string
			v    time.Duration
		}{{"--health-interval", c.healthInterval}, {"--health-timeout", c.healthTimeout}, {"--health-start-period", c.healthStartPeriod}, {"--health-start-interval", c.healthStartIntvl}} {
			if d.v < 0 {
				return nil, errors.New(d.name + " cannot be negative")
			}
		}
		if c.healthRetries < 0 {
			return nil, errors.New("--health-retries cannot be negative")
		}
		health = &container.HealthConfig{
			Test: probe, Interval: c.healthInterval, Timeout: c.healthTimeout,
			StartPeriod: c.healthStartPeriod, StartInterval: c.healthStartIntvl, Retries: c.healthRetries,
		}
	}

	var deviceRequests []container.DeviceRequest
	if len(cdiDevices) > 0 {
		deviceRequests = append(deviceRequests, container.DeviceRequest{Driver: "cdi", DeviceIDs: cdiDevices})
	}

	swappiness, oomKillDisable, pidsLimit := c.swappiness, c.oomKillDisable, c.pidsLimit
	resources := container.Resources{
		CgroupParent:         c.cgroupParent,
		Memory:               c.memory.Value(),
		MemoryReservation:    c.memoryReservation.Value(),
		MemorySwap:           c.memorySwap.Value(),
		MemorySwappiness:     &swappiness,
		OomKillDisable:       &oomKillDisable,
		NanoCPUs:             c.cpus.Value(),
		CPUCount:             c.cpuCount,
		CPUPercent:           c.cpuPercent,
		CPUShares:            c.cpuShares,
		CPUPeriod:            c.cpuPeriod,
		CpusetCpus:           c.cpusetCpus,
		CpusetMems:           c.cpusetMems,
		CPUQuota:             c.cpuQuota,
		CPURealtimePeriod:    c.cpuRTPeriod,
		CPURealtimeRuntime:   c.cpuRTRuntime,
		PidsLimit:            &pidsLimit,
		BlkioWeight:          c.blkioWeight,
		BlkioWeightDevice:    c.blkioWeightDevice.GetList(),
		BlkioDeviceReadBps:   c.deviceReadBps.GetList(),
		BlkioDeviceWriteBps:  c.deviceWriteBps.GetList(),
		BlkioDeviceReadIOps:  c.deviceReadIOps.GetList(),
		BlkioDeviceWriteIOps: c.deviceWriteIOps.GetList(),
		IOMaximumIOps:        c.ioMaxIOps,
		IOMaximumBandwidth:   uint64(c.ioMaxBandwidth.Value()),
		Ulimits:              c.ulimits.GetList(),
		DeviceCgroupRules:    c.deviceCgroupRules.GetSlice(),
		Devices:              deviceMappings,
		DeviceRequests:       deviceRequests,
	}

	config := &container.Config{
		Hostname:     c.hostname,
		Domainname:   c.domainname,
		ExposedPorts: exposed,
		User:         c.user,
		Tty:          c.tty,
		OpenStdin:    c.stdin,
		AttachStdin:  attachStdin,
		AttachStdout: attachStdout,
		AttachStderr: attachStderr,
		Env:          env,
		Cmd:          runCmd,
		Image:        c.Image,
		Volumes:      volumes,
		Entrypoint:   entrypoint,
		WorkingDir:   c.workingDir,
		Labels:       opts.ConvertKVStringsToMap(labels),
		StopSignal:   c.stopSignal,
		Healthcheck:  health,
	}
	if flags.Changed("stop-timeout") {
		t := c.stopTimeout
		config.StopTimeout = &t
	}

	hostConfig := &container.HostConfig{
		Binds:           binds,
		ContainerIDFile: c.containerIDFile,
		OomScoreAdj:     c.oomScoreAdj,
		AutoRemove:      c.autoRemove,
		Privileged:      c.privileged,
		PortBindings:    portBindings,
		Links:           c.links.GetSlice(),
		PublishAllPorts: c.publishAll,
		DNS:             toNetipAddrs(c.dns.GetAllOrEmpty()),
		DNSSearch:       c.dnsSearch.GetAllOrEmpty(),
		DNSOptions:      c.dnsOptions.GetAllOrEmpty(),
		ExtraHosts:      c.extraHosts.GetSlice(),
		VolumesFrom:     c.volumesFrom.GetSlice(),
		IpcMode:         container.IpcMode(c.ipcMode),
		NetworkMode:     container.NetworkMode(c.netMode.NetworkMode()),
		PidMode:         pidMode,
		UTSMode:         utsMode,
		UsernsMode:      usernsMode,
		CgroupnsMode:    cgroupnsMode,
		CapAdd:          c.capAdd.GetSlice(),
		CapDrop:         c.capDrop.GetSlice(),
		GroupAdd:        c.groupAdd.GetSlice(),
		RestartPolicy:   restartPolicy,
		SecurityOpt:     securityOpts,
		StorageOpt:      storageOpts,
		ReadonlyRootfs:  c.readonlyRootfs,
		LogConfig:       container.LogConfig{Type: c.loggingDriver, Config: logOpts},
		VolumeDriver:    c.volumeDriver,
		Isolation:       container.Isolation(c.isolation),
		ShmSize:         c.shmSize.Value(),
		Resources:       resources,
		Tmpfs:           tmpfs,
		Sysctls:         c.sysctls.GetAll(),
		Runtime:         c.runtime,
		Mounts:          c.mounts.Value(),
		MaskedPaths:     maskedPaths,
		ReadonlyPaths:   readonlyPaths,
		Annotations:     c.annotations.GetAll(),
	}
	if c.autoRemove && !hostConfig.RestartPolicy.IsNone() {
		return nil, errors.New("conflicting options: cannot specify both --restart and --rm")
	}
	if flags.Changed("init") {
		v := c.init
		hostConfig.Init = &v
	}
	if config.OpenStdin && config.AttachStdin {
		config.StdinOnce = true
	}
	endpoints, err := c.parseNetworkOpts()
	if err != nil {
		return nil, err
	}
	return &containerConfig{
		Config:           config,
		HostConfig:       hostConfig,
		NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: endpoints},
	}, nil
}

// splitVolumeSpec splits -v's "[source:]target[:mode]" into source and
// target. A single element is an anonymous volume.
func splitVolumeSpec(spec string) (source, target string, err error) {
	parts := strings.Split(spec, ":")
	switch len(parts) {
	case 1:
		if parts[0] == "" {
			return "", "", fmt.Errorf("invalid spec: %s: empty section between colons", spec)
		}
		return "", parts[0], nil
	case 2, 3:
		for _, p := range parts {
			if p == "" {
				return "", "", fmt.Errorf("invalid spec: %s: empty section between colons", spec)
			}
		}
		if len(parts) == 2 && !strings.HasPrefix(parts[1], "/") {
			// "/target:ro": a mode, not a target.
			return "", parts[0], nil
		}
		return parts[0], strings.Join(parts[1:], ":"), nil
	default:
		return "", "", fmt.Errorf("invalid spec: %s: too many colons", spec)
	}
}

func isCDIName(s string) bool {
	vendorClass, name, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return false
	}
	vendor, class, ok := strings.Cut(vendorClass, "/")
	return ok && vendor != "" && class != "" && strings.Contains(vendor, ".")
}

func convertToStandardNotation(ports []string) ([]string, error) {
	out := make([]string, 0, len(ports))
	for _, p := range ports {
		if !strings.Contains(p, "=") {
			out = append(out, p)
			continue
		}
		params := map[string]string{"protocol": "tcp"}
		for _, param := range strings.Split(p, ",") {
			k, v, ok := strings.Cut(param, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("invalid publish opts format (should be name=value but got '%s')", param)
			}
			params[k] = v
		}
		out = append(out, fmt.Sprintf("%s:%s/%s", params["published"], params["target"], params["protocol"]))
	}
	return out, nil
}

func parseSecurityOpts(in []string) ([]string, error) {
	out := append([]string(nil), in...)
	for i, o := range out {
		k, v, ok := strings.Cut(o, "=")
		if !ok && k != "no-new-privileges" {
			k, v, ok = strings.Cut(o, ":")
		}
		if (!ok || v == "") && k != "no-new-privileges" {
			return nil, fmt.Errorf("invalid --security-opt: %q", o)
		}
		if k == "seccomp" && v != "builtin" && v != "unconfined" {
			b, err := os.ReadFile(v)
			if err != nil {
				return nil, fmt.Errorf("opening seccomp profile (%s) failed: %w", v, err)
			}
			var buf bytes.Buffer
			if err := json.Compact(&buf, b); err != nil {
				return nil, fmt.Errorf("compacting json for seccomp profile (%s) failed: %w", v, err)
			}
			out[i] = "seccomp=" + buf.String()
		}
	}
	return out, nil
}

// parseSystemPaths handles systempaths=unconfined client-side, as docker
// does: it empties the masked and read-only path lists.
func parseSystemPaths(in []string) (filtered, masked, readonly []string) {
	for _, o := range in {
		if o == "systempaths=unconfined" {
			masked, readonly = []string{}, []string{}
			continue
		}
		filtered = append(filtered, o)
	}
	return filtered, masked, readonly
}

func validDeviceMode(mode string) bool {
	if mode == "" {
		return false
	}
	seen := map[rune]bool{}
	for _, c := range mode {
		if (c != 'r' && c != 'w' && c != 'm') || seen[c] {
			return false
		}
		seen[c] = true
	}
	return true
}

// validateLinuxPath checks "[host-dir:]container-path[:mode]".
func validateLinuxPath(val string, validMode func(string) bool) (string, error) {
	if strings.Count(val, ":") > 2 {
		return val, fmt.Errorf("bad format for path: %s", val)
	}
	split := strings.SplitN(val, ":", 3)
	if split[0] == "" {
		return val, fmt.Errorf("bad format for path: %s", val)
	}
	var containerPath string
	switch len(split) {
	case 1:
		containerPath = split[0]
	case 2:
		if validMode(split[1]) {
			containerPath = split[0]
		} else {
			containerPath = split[1]
		}
	case 3:
		containerPath = split[1]
		if !validMode(split[2]) {
			return val, fmt.Errorf("bad mode specified: %s", split[2])
		}
	}
	if !path.IsAbs(containerPath) {
		return val, fmt.Errorf("%s is not an absolute path", containerPath)
	}
	return val, nil
}

func parseDevice(device string) (container.DeviceMapping, error) {
	var src, dst string
	perms := "rwm"
	arr := strings.SplitN(device, ":", 4)
	switch len(arr) {
	case 3:
		perms = arr[2]
		fallthrough
	case 2:
		if validDeviceMode(arr[1]) {
			perms = arr[1]
		} else {
			dst = arr[1]
		}
		fallthrough
	case 1:
		src = arr[0]
	default:
		return container.DeviceMapping{}, fmt.Errorf("invalid device specification: %s", device)
	}
	if dst == "" {
		dst = src
	}
	return container.DeviceMapping{PathOnHost: src, PathInContainer: dst, CgroupPermissions: perms}, nil
}

func toNetipAddrs(ips []string) []netip.Addr {
	if len(ips) == 0 {
		return nil
	}
	out := make([]netip.Addr, 0, len(ips))
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// parseNetworkOpts builds the endpoint settings of --network (and the
// older --network-alias, --link, --ip, --ip6, --mac-address,
// --link-local-ip, which apply to the first network).
func (c *containerOptions) parseNetworkOpts() (map[string]*network.EndpointSettings, error) {
	nets := c.netMode.Value()
	endpoints := make(map[string]*network.EndpointSettings, len(nets))
	if len(nets) == 0 {
		n := opts.NetworkAttachment{Target: "default"}
		if err := c.applyLegacyNetworkOptions(&n); err != nil {
			return nil, err
		}
		ep, err := endpointSettings(n)
		if err != nil {
			return nil, err
		}
		endpoints["default"] = ep
		return endpoints, nil
	}
	var hasUserDefined, hasBuiltin bool
	for i, n := range nets {
		if isUserDefinedNetwork(n.Target) {
			hasUserDefined = true
		} else {
			hasBuiltin = true
		}
		if i == 0 {
			if err := c.applyLegacyNetworkOptions(&n); err != nil {
				return nil, err
			}
		}
		ep, err := endpointSettings(n)
		if err != nil {
			return nil, err
		}
		if _, ok := endpoints[n.Target]; ok {
			return nil, fmt.Errorf("network %q is specified multiple times", n.Target)
		}
		if i == 0 && len(nets) == 1 && reflect.DeepEqual(*ep, network.EndpointSettings{}) {
			continue
		}
		endpoints[n.Target] = ep
	}
	if hasUserDefined && hasBuiltin {
		return nil, errors.New("conflicting options: cannot attach both user-defined and non-user-defined network-modes")
	}
	return endpoints, nil
}

func isUserDefinedNetwork(name string) bool {
	switch name {
	case "default", "bridge", "host", "none":
		return false
	}
	return !strings.HasPrefix(name, "container:")
}

func (c *containerOptions) applyLegacyNetworkOptions(n *opts.NetworkAttachment) error {
	if len(n.Aliases) > 0 && c.aliases.Len() > 0 {
		return errors.New("conflicting options: cannot specify both --network-alias and per-network alias")
	}
	if n.IPv4Address.IsValid() && c.ipv4Address != nil {
		return errors.New("conflicting options: cannot specify both --ip and per-network IPv4 address")
	}
	if n.IPv6Address.IsValid() && c.ipv6Address != nil {
		return errors.New("conflicting options: cannot specify both --ip6 and per-network IPv6 address")
	}
	if n.MacAddress != "" && c.macAddress != "" {
		return errors.New("conflicting options: cannot specify both --mac-address and per-network MAC address")
	}
	if len(n.LinkLocalIPs) > 0 && c.linkLocalIPs.Len() > 0 {
		return errors.New("conflicting options: cannot specify both --link-local-ip and per-network link-local IP addresses")
	}
	if c.aliases.Len() > 0 {
		n.Aliases = append([]string(nil), c.aliases.GetSlice()...)
	}
	if isUserDefinedNetwork(n.Target) && c.links.Len() > 0 {
		n.Links = append([]string(nil), c.links.GetSlice()...)
	}
	if c.ipv4Address != nil {
		if a, ok := netip.AddrFromSlice(c.ipv4Address.To4()); ok {
			n.IPv4Address = a
		}
	}
	if c.ipv6Address != nil {
		if a, ok := netip.AddrFromSlice(c.ipv6Address.To16()); ok {
			n.IPv6Address = a
		}
	}
	if c.macAddress != "" {
		n.MacAddress = c.macAddress
	}
	if c.linkLocalIPs.Len() > 0 {
		n.LinkLocalIPs = toNetipAddrs(c.linkLocalIPs.GetSlice())
	}
	return nil
}

func endpointSettings(n opts.NetworkAttachment) (*network.EndpointSettings, error) {
	if strings.TrimSpace(n.Target) == "" {
		return nil, errors.New("no name set for network")
	}
	if !isUserDefinedNetwork(n.Target) {
		if len(n.Aliases) > 0 {
			return nil, errors.New("network-scoped aliases are only supported for user-defined networks")
		}
		if len(n.Links) > 0 {
			return nil, errors.New("links are only supported for user-defined networks")
		}
	}
	ep := &network.EndpointSettings{GwPriority: n.GwPriority}
	ep.Aliases = append(ep.Aliases, n.Aliases...)
	if len(n.DriverOpts) > 0 {
		ep.DriverOpts = n.DriverOpts
	}
	if len(n.Links) > 0 {
		ep.Links = n.Links
	}
	if n.IPv4Address.IsValid() || n.IPv6Address.IsValid() || len(n.LinkLocalIPs) > 0 {
		ep.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: n.IPv4Address, IPv6Address: n.IPv6Address, LinkLocalIPs: n.LinkLocalIPs}
	}
	if n.MacAddress != "" {
		ma, err := net.ParseMAC(strings.TrimSpace(n.MacAddress))
		if err != nil {
			return nil, fmt.Errorf("%s is not a valid mac address", n.MacAddress)
		}
		ep.MacAddress = network.HardwareAddr(ma)
	}
	return ep, nil
}
