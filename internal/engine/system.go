package engine

import (
	"bufio"
	"context"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/oci"
	"github.com/moby/moby/api/types/system"
	"golang.org/x/sys/unix"
)

// SystemService implements api.SystemBackend.
type SystemService struct {
	cfg        Config
	st         Stores
	containers *ContainerService
	images     *ImageService
	id         string
}

var _ api.SystemBackend = (*SystemService)(nil)

// NewSystemService returns the service behind /info and /version; id is the
// daemon's persistent identity.
func NewSystemService(cfg Config, st Stores, c *ContainerService, i *ImageService, id string) *SystemService {
	return &SystemService{cfg: cfg, st: st, containers: c, images: i, id: id}
}

// Info implements GET /info.
func (s *SystemService) Info(ctx context.Context) (*system.Info, error) {
	total, running, paused, stopped := s.containers.Counts()
	imgs, _ := s.st.Images.List(ctx)
	cgroupVersion := "1"
	if oci.DetectCgroupV2() {
		cgroupVersion = "2"
	}
	hostname, _ := os.Hostname()
	var si unix.Sysinfo_t
	_ = unix.Sysinfo(&si)
	runtimes := map[string]system.RuntimeWithStatus{}
	for _, name := range s.st.Runtimes.Names() {
		rt, err := s.st.Runtimes.Get(name)
		if err != nil {
			continue
		}
		runtimes[name] = system.RuntimeWithStatus{Runtime: system.Runtime{Path: rt.Path, Args: rt.Args}}
	}
	info := &system.Info{
		ID:                s.id,
		Containers:        total,
		ContainersRunning: running,
		ContainersPaused:  paused,
		ContainersStopped: stopped,
		Images:            len(imgs),
		Driver:            s.st.Snapshots.Name(),
		DriverStatus:      [][2]string{{"Backing Filesystem", backingFS(s.cfg.DataRoot)}},
		Plugins: system.PluginsInfo{
			Volume:  []string{},
			Network: []string{"bridge", "host", "null"},
			Log:     []string{"json-file", "none"},
		},
		MemoryLimit:        true,
		SwapLimit:          fileExists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes") || cgroupVersion == "2",
		CPUCfsPeriod:       true,
		CPUCfsQuota:        true,
		CPUShares:          true,
		CPUSet:             true,
		PidsLimit:          true,
		IPv4Forwarding:     readTrim("/proc/sys/net/ipv4/ip_forward") == "1",
		NFd:                countFDs(),
		NGoroutines:        runtime.NumGoroutine(),
		SystemTime:         time.Now().Format(time.RFC3339Nano),
		LoggingDriver:      "json-file",
		CgroupDriver:       "cgroupfs",
		CgroupVersion:      cgroupVersion,
		KernelVersion:      kernelVersion(),
		OperatingSystem:    osRelease("PRETTY_NAME"),
		OSVersion:          osRelease("VERSION_ID"),
		OSType:             "linux",
		Architecture:       machine(),
		IndexServerAddress: "https://index.docker.io/v1/",
		NCPU:               runtime.NumCPU(),
		MemTotal:           int64(si.Totalram) * int64(si.Unit),
		DockerRootDir:      s.cfg.DataRoot,
		Name:               hostname,
		Labels:             []string{},
		ServerVersion:      s.cfg.Version,
		Runtimes:           runtimes,
		DefaultRuntime:     s.st.Runtimes.Default(),
		LiveRestoreEnabled: true,
		Isolation:          "",
		InitBinary:         "docker-init",
		SecurityOptions:    securityOptions(),
		CDISpecDirs:        []string{},
		Warnings:           []string{},
	}
	info.Swarm.LocalNodeState = "inactive"
	if s.cfg.Remap != nil {
		// dockerd's entry; DockerRootDir is already the mapping's own
		// <data-root>/<uid>.<gid>.
		info.SecurityOptions = append(info.SecurityOptions, "name=userns")
	}
	if s.cfg.StorageNote != "" {
		info.Warnings = append(info.Warnings, "WARNING: "+s.cfg.StorageNote)
	}
	return info, nil
}

// Version implements GET /version.
func (s *SystemService) Version(ctx context.Context) system.VersionResponse {
	kv := kernelVersion()
	return system.VersionResponse{
		Platform:      system.PlatformInfo{Name: "berth"},
		Version:       s.cfg.Version,
		APIVersion:    api.APIVersion,
		MinAPIVersion: api.MinAPIVersion,
		Os:            runtime.GOOS,
		Arch:          runtime.GOARCH,
		GoVersion:     runtime.Version(),
		KernelVersion: kv,
		Components: []system.ComponentVersion{{
			Name:    "Engine",
			Version: s.cfg.Version,
			Details: map[string]string{
				"ApiVersion":    api.APIVersion,
				"MinAPIVersion": api.MinAPIVersion,
				"GoVersion":     runtime.Version(),
				"Os":            runtime.GOOS,
				"Arch":          runtime.GOARCH,
				"KernelVersion": kv,
				"Experimental":  "false",
			},
		}},
	}
}

func kernelVersion() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

func machine() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return runtime.GOARCH
	}
	return unix.ByteSliceToString(u.Machine[:])
}

func osRelease(key string) string {
	f, err := os.Open("/etc/os-release")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok && k == key {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

func backingFS(path string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return "unknown"
	}
	switch st.Type {
	case unix.EXT4_SUPER_MAGIC:
		return "extfs"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	case 0x2fc12fc1: // ZFS, which x/sys/unix does not name
		return "zfs"
	}
	return "unknown"
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func countFDs() int {
	entries, _ := os.ReadDir("/proc/self/fd")
	return len(entries)
}

// securityOptions is /info's SecurityOptions: seccomp (docker's profile),
// AppArmor where the host has it, cgroupns. userns-remap and rootless
// add theirs here.
func securityOptions() []string {
	return oci.InfoSecurityOptions("")
}
