package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/system"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	runnerID = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
	threeID  = "b1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
	freshID  = "c1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
	imgID    = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	img2ID   = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	danglyID = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
)

// fixtureEngine serves a small, fixed world: three containers, three
// images, a history, inspect data, logs, info and version. Times are
// relative to now and far from the boundaries of docker's human durations,
// so outputs are stable without asserting on the clock.
func fixtureEngine(f *fakeEngine) {
	now := time.Now()
	ago := func(d time.Duration) int64 { return now.Add(-d).Unix() }
	containers := []container.Summary{
		{
			ID: runnerID, Names: []string{"/runner"}, Image: "busybox", ImageID: imgID,
			Command: "sleep 1000", Created: ago(3*time.Hour + 10*time.Minute), State: "running", Status: "Up 3 hours",
			Labels: map[string]string{"role": "a", "tier": "web"},
			Ports: []container.PortSummary{
				{IP: netip.MustParseAddr("0.0.0.0"), PrivatePort: 80, PublicPort: 8080, Type: "tcp"},
				{IP: netip.MustParseAddr("::"), PrivatePort: 80, PublicPort: 8080, Type: "tcp"},
				{PrivatePort: 9000, Type: "tcp"},
				{PrivatePort: 9001, Type: "tcp"},
				{PrivatePort: 53, Type: "udp"},
			},
			SizeRw: 12, SizeRootFs: 4260000,
		},
		{
			ID: threeID, Names: []string{"/three"}, Image: "other:1", ImageID: img2ID,
			Command: `sh -c 'echo a very long command line that goes on'`, Created: ago(50 * time.Hour), State: "exited",
			Status: "Exited (3) 2 days ago", Labels: map[string]string{"role": "b"},
		},
		{
			ID: freshID, Names: []string{"/fresh"}, Image: imgID, ImageID: imgID,
			Command: "true", Created: ago(20 * time.Minute), State: "created", Status: "Created",
		},
	}
	f.handle("GET", `/containers/json`, func(w http.ResponseWriter, r *http.Request, _ []string) {
		q := r.URL.Query()
		out := []container.Summary{}
		for _, c := range containers {
			if q.Get("all") != "1" && q.Get("limit") == "" && c.State != "running" {
				continue
			}
			if q.Get("size") != "1" {
				c.SizeRw, c.SizeRootFs = 0, 0
			}
			out = append(out, c)
		}
		if q.Get("limit") == "1" {
			out = out[len(out)-1:]
		}
		writeJSON(w, out)
	})
	images := []image.Summary{
		{ID: imgID, RepoTags: []string{"busybox:latest", "example.com:5000/team/bb:prod"}, RepoDigests: []string{"busybox@sha256:abababababababababababababababababababababababababababababababab"},
			Created: ago(30 * 24 * time.Hour), Size: 4261550, Containers: -1, SharedSize: -1},
		{ID: img2ID, RepoTags: []string{"other:1"}, Created: ago(5 * time.Hour), Size: 1234567890, Containers: -1, SharedSize: -1},
		{ID: danglyID, Created: ago(2 * time.Hour), Size: 999, Containers: -1, SharedSize: -1},
	}
	f.handle("GET", `/images/json`, func(w http.ResponseWriter, r *http.Request, _ []string) {
		writeJSON(w, images)
	})
	history := []image.HistoryResponseItem{
		{ID: imgID, Created: ago(30 * 24 * time.Hour), CreatedBy: "/bin/sh -c #(nop)  CMD [\"sh\"]\twith a tab and a long tail of words", Size: 0, Comment: "my message", Tags: []string{"busybox:latest"}},
		{ID: "<missing>", Created: ago(31 * 24 * time.Hour), CreatedBy: "/bin/sh -c #(nop) ADD file:abc in / ", Size: 4261550},
	}
	f.handle("GET", `/images/([^/]+)/history`, func(w http.ResponseWriter, r *http.Request, m []string) {
		if m[1] != "busybox" && m[1] != "busybox:latest" {
			apiError(w, http.StatusNotFound, "No such image: "+m[1])
			return
		}
		writeJSON(w, history)
	})
	ctrInspect := container.InspectResponse{
		ID: runnerID, Name: "/runner", Created: now.Add(-3 * time.Hour).UTC().Format(time.RFC3339Nano), Path: "sleep", Args: []string{"1000"},
		State:  &container.State{Status: "running", Running: true, Pid: 42, StartedAt: "2026-11-22T10:00:00Z", FinishedAt: "0001-01-01T00:00:00Z"},
		Image:  imgID,
		Config: &container.Config{Image: "busybox", Cmd: []string{"sleep", "1000"}, Labels: map[string]string{"role": "a"}, Env: []string{"PATH=/bin"}},
		HostConfig: &container.HostConfig{
			NetworkMode: "default", RestartPolicy: container.RestartPolicy{Name: "no"},
		},
		LogPath: "/var/lib/berth/containers/" + runnerID + "/" + runnerID + "-json.log",
	}
	f.handle("GET", `/containers/([^/]+)/json`, func(w http.ResponseWriter, r *http.Request, m []string) {
		if m[1] != "runner" && !strings.HasPrefix(runnerID, m[1]) {
			apiError(w, http.StatusNotFound, "No such container: "+m[1])
			return
		}
		writeJSON(w, ctrInspect)
	})
	imgInspect := image.InspectResponse{
		ID: imgID, RepoTags: []string{"busybox:latest"}, Created: now.Add(-30 * 24 * time.Hour).UTC().Format(time.RFC3339Nano),
		Comment: "my message", Os: "linux", Architecture: "amd64", Size: 4261550,
		Config: &dockerspec.DockerOCIImageConfig{ImageConfig: ocispec.ImageConfig{Cmd: []string{"sh"}, Labels: map[string]string{"a": "b"}}},
	}
	f.handle("GET", `/images/([^/]+)/json`, func(w http.ResponseWriter, r *http.Request, m []string) {
		if m[1] != "busybox" && m[1] != "busybox:latest" && m[1] != imgID && m[1] != "runner" {
			apiError(w, http.StatusNotFound, "No such image: "+m[1])
			return
		}
		writeJSON(w, imgInspect)
	})
	for _, kind := range []string{"networks", "volumes"} {
		kind := kind
		f.handle("GET", `/`+kind+`/([^/]+)`, func(w http.ResponseWriter, r *http.Request, m []string) {
			apiError(w, http.StatusNotFound, "No such "+strings.TrimSuffix(kind, "s")+": "+m[1])
		})
	}
	f.handle("GET", `/containers/([^/]+)/logs`, func(w http.ResponseWriter, r *http.Request, m []string) {
		w.Header().Set("Content-Type", "application/vnd.docker.multiplexed-stream")
		_, _ = w.Write(frames([2]string{"stdout", "line1\n"}, [2]string{"stderr", "oops\n"}, [2]string{"stdout", "line2\n"}))
	})
	okOrMissing := func(code int) func(w http.ResponseWriter, r *http.Request, m []string) {
		return func(w http.ResponseWriter, r *http.Request, m []string) {
			if strings.HasPrefix(m[1], "nosuch") {
				apiError(w, http.StatusNotFound, "No such container: "+m[1])
				return
			}
			if strings.HasPrefix(m[1], "busy") {
				apiError(w, http.StatusConflict, "cannot remove container \""+m[1]+"\": container is running: stop the container before removing or force remove")
				return
			}
			w.WriteHeader(code)
		}
	}
	f.handle("DELETE", `/containers/([^/]+)`, okOrMissing(http.StatusNoContent))
	f.handle("POST", `/containers/([^/]+)/stop`, okOrMissing(http.StatusNoContent))
	f.handle("POST", `/containers/([^/]+)/kill`, okOrMissing(http.StatusNoContent))
	f.handle("POST", `/containers/([^/]+)/restart`, okOrMissing(http.StatusNoContent))
	f.handle("POST", `/containers/([^/]+)/wait`, func(w http.ResponseWriter, r *http.Request, m []string) {
		if strings.HasPrefix(m[1], "nosuch") {
			apiError(w, http.StatusNotFound, "No such container: "+m[1])
			return
		}
		writeJSON(w, container.WaitResponse{StatusCode: 7})
	})
	f.handle("POST", `/containers/([^/]+)/rename`, func(w http.ResponseWriter, r *http.Request, m []string) {
		if r.URL.Query().Get("name") == "taken" {
			apiError(w, http.StatusConflict, `Conflict. The container name "/taken" is already in use by container "abc". You have to remove (or rename) that container to be able to reuse that name.`)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	f.handle("POST", `/containers/prune`, func(w http.ResponseWriter, r *http.Request, _ []string) {
		writeJSON(w, container.PruneReport{ContainersDeleted: []string{threeID, freshID}, SpaceReclaimed: 2048})
	})
	f.handle("POST", `/images/prune`, func(w http.ResponseWriter, r *http.Request, _ []string) {
		writeJSON(w, image.PruneReport{ImagesDeleted: []image.DeleteResponse{{Untagged: "other:1"}, {Deleted: img2ID}}, SpaceReclaimed: 1234567890})
	})
	f.handle("DELETE", `/images/(.+)`, func(w http.ResponseWriter, r *http.Request, m []string) {
		switch m[1] {
		case "other:1":
			writeJSON(w, []image.DeleteResponse{{Untagged: "other:1"}, {Deleted: img2ID}})
		case "busybox":
			writeJSON(w, []image.DeleteResponse{{Untagged: "busybox:latest"}})
		case "multi":
			apiError(w, http.StatusConflict, "conflict: unable to delete 0123456789ab (must be forced) - image is referenced in multiple repositories")
		default:
			apiError(w, http.StatusNotFound, "No such image: "+m[1]+":latest")
		}
	})
	f.handle("POST", `/images/(.+)/tag`, func(w http.ResponseWriter, r *http.Request, m []string) {
		if m[1] == "nosuchimage" {
			apiError(w, http.StatusNotFound, "No such image: nosuchimage:latest")
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	f.handle("GET", `/info`, func(w http.ResponseWriter, r *http.Request, _ []string) {
		writeJSON(w, system.Info{
			ID: "ABCD", Containers: 3, ContainersRunning: 1, ContainersStopped: 2, Images: 3, Driver: "overlay2",
			DriverStatus: [][2]string{{"Backing Filesystem", "extfs"}}, LoggingDriver: "json-file", CgroupDriver: "cgroupfs",
			CgroupVersion: "1", DockerRootDir: "/var/lib/berth", OSType: "linux", Architecture: "x86_64", NCPU: 2,
			MemTotal: 4 << 30, Name: "host1", ServerVersion: "0.1.0", KernelVersion: "6.18.0", OperatingSystem: "Debian GNU/Linux 12",
			DefaultRuntime: "berth", Runtimes: map[string]system.RuntimeWithStatus{"berth": {}, "runc": {}},
			SecurityOptions: []string{"name=seccomp,profile=builtin", "name=cgroupns"},
			Warnings:        []string{"WARNING: No swap limit support"},
		})
	})
	f.handle("GET", `/version`, func(w http.ResponseWriter, r *http.Request, _ []string) {
		writeJSON(w, system.VersionResponse{
			Platform: system.PlatformInfo{Name: "berth"}, Version: "0.1.0", APIVersion: "1.47", MinAPIVersion: "1.24",
			Os: "linux", Arch: "amd64", GoVersion: "go1.26.8",
			Components: []system.ComponentVersion{{Name: "Engine", Version: "0.1.0", Details: map[string]string{
				"ApiVersion": "1.47", "MinAPIVersion": "1.24", "GoVersion": "go1.26.8", "GitCommit": "abc", "BuildTime": "2026-11-22T10:00:00Z",
				"Os": "linux", "Arch": "amd64", "Experimental": "false",
			}}},
		})
	})
	f.handle("POST", `/images/load`, func(w http.ResponseWriter, r *http.Request, _ []string) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		if !strings.HasPrefix(string(b), "TAR") {
			_ = json.NewEncoder(w).Encode(map[string]any{"errorDetail": map[string]string{"message": "unexpected EOF"}, "error": "unexpected EOF"})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"stream": "Loaded image: busybox:latest\n"})
	})
	f.handle("GET", `/images/get`, func(w http.ResponseWriter, r *http.Request, _ []string) {
		w.Header().Set("Content-Type", "application/x-tar")
		_, _ = io.WriteString(w, "TAR:"+strings.Join(r.URL.Query()["names"], ","))
	})
	f.handle("POST", `/images/create`, func(w http.ResponseWriter, r *http.Request, _ []string) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("fromSrc") == "-" {
			b, _ := io.ReadAll(r.Body)
			if !strings.HasPrefix(string(b), "TAR") {
				_ = json.NewEncoder(w).Encode(map[string]any{"errorDetail": map[string]string{"message": "archive/tar: invalid tar header"}})
				return
			}
			_ = json.NewEncoder(w).Encode(map[string]string{"status": imgID})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "Pulling from library/busybox", "id": "latest"})
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "Digest: sha256:abababababababababababababababababababababababababababababababab"})
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "Status: Image is up to date for busybox:latest"})
	})
}
