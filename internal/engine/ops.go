package engine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/container"
	"github.com/berth-engine/berth/internal/oci"
	"github.com/containerd/errdefs"
	containertypes "github.com/moby/moby/api/types/container"
	eventtypes "github.com/moby/moby/api/types/events"
)

var _ api.ContainerOpsBackend = (*ContainerService)(nil)
var _ api.ExecBackend = (*ContainerService)(nil)

// runtimeOp runs one runtime command (pause, resume, update) on a running
// container and returns the runtime's own error message when it fails.
func (s *ContainerService) runtimeOp(ctx context.Context, c *container.Container, stdin []byte, args ...string) error {
	rt, err := s.st.Runtimes.Get(c.Runtime)
	if err != nil {
		return err
	}
	logFile := filepath.Join(s.cfg.bundleDir(c.ID), "ops-"+strconv.FormatInt(time.Now().UnixNano(), 36)+".log")
	defer os.Remove(logFile)
	cmd := rt.Command(ctx, append([]string{"--log", logFile, "--log-format", "json"}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err == nil {
		return nil
	}
	msg := lastRuntimeError(logFile)
	if msg == "" {
		msg = strings.TrimSpace(string(out))
	}
	if msg == "" {
		msg = err.Error()
	}
	return fmt.Errorf("%s", msg)
}

// Pause implements POST /containers/{id}/pause (the cgroup freezer,
// through the runtime's pause).
func (s *ContainerService) Pause(ctx context.Context, id string) error {
	e, err := s.get(id)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	c := e.snapshot()
	switch {
	case c.State.Status == container.StatusPaused:
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("container %s is already paused", c.ID))
	case c.State.Status == container.StatusRestarting:
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("container %s is restarting, wait until the container is running", c.ID))
	case c.State.Status != container.StatusRunning:
		return errNotRunning(c.ID)
	}
	if err := s.runtimeOp(ctx, c, nil, "pause", c.ID); err != nil {
		return fmt.Errorf("cannot pause container %s: %w", c.ID, err)
	}
	e.smu.Lock()
	e.c.State.Status = container.StatusPaused
	e.smu.Unlock()
	_ = s.persist(e)
	s.emitContainer(c, eventtypes.ActionPause, nil)
	return nil
}

// Unpause implements POST /containers/{id}/unpause.
func (s *ContainerService) Unpause(ctx context.Context, id string) error {
	e, err := s.get(id)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	c := e.snapshot()
	if c.State.Status != container.StatusPaused {
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("container %s is not paused", c.ID))
	}
	if err := s.runtimeOp(ctx, c, nil, "resume", c.ID); err != nil {
		return fmt.Errorf("cannot unpause container %s: %w", c.ID, err)
	}
	e.smu.Lock()
	if e.c.State.Status == container.StatusPaused {
		e.c.State.Status = container.StatusRunning
	}
	e.smu.Unlock()
	_ = s.persist(e)
	s.emitContainer(c, eventtypes.ActionUnPause, nil)
	return nil
}

// thawIfPaused resumes a paused container after a signal was sent, so that
// the signal is delivered (frozen tasks act on signals only once thawed).
func (s *ContainerService) thawIfPaused(ctx context.Context, e *entry) {
	c := e.snapshot()
	if c.State.Status != container.StatusPaused {
		return
	}
	if err := s.runtimeOp(ctx, c, nil, "resume", c.ID); err != nil {
		s.log.Warn("resume a paused container to deliver a signal", "id", c.ID, "err", err)
		return
	}
	e.smu.Lock()
	if e.c.State.Status == container.StatusPaused {
		e.c.State.Status = container.StatusRunning
	}
	e.smu.Unlock()
	s.emitContainer(c, eventtypes.ActionUnPause, nil)
}

// Top implements GET /containers/{id}/top: the host's ps, limited to the
// processes of the container's cgroup.
func (s *ContainerService) Top(ctx context.Context, id, psArgs string) (*containertypes.TopResponse, error) {
	e, err := s.get(id)
	if err != nil {
		return nil, err
	}
	c := e.snapshot()
	if !c.State.Running() || c.State.Pid == 0 {
		return nil, errNotRunning(c.ID)
	}
	if c.State.Status == container.StatusRestarting {
		return nil, errdefs.ErrConflict.WithMessage(fmt.Sprintf("container %s is restarting, wait until the container is running", c.ID))
	}
	if psArgs == "" {
		psArgs = "-ef"
	}
	cg, err := cgroupsOf(c.State.Pid)
	if err != nil {
		return nil, err
	}
	pids, err := cg.pids()
	if err != nil {
		return nil, err
	}
	args := strings.Fields(psArgs)
	out, err := exec.CommandContext(ctx, "ps", args...).Output()
	if err != nil {
		var ee *exec.ExitError
		msg := err.Error()
		if ok := asExitError(err, &ee); ok && len(ee.Stderr) > 0 {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("ps: %s", msg))
	}
	resp, err := parsePSOutput(out, pids)
	if err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(err.Error())
	}
	return resp, nil
}

func asExitError(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	if ok {
		*ee = e
	}
	return ok
}

// parsePSOutput keeps the rows of ps's output whose PID is one of pids,
// as moby does: the header gives the columns, the last one (the command)
// keeps its spaces.
func parsePSOutput(output []byte, pids []int) (*containertypes.TopResponse, error) {
	lines := strings.Split(string(output), "\n")
	if len(lines) == 0 || strings.TrimSpace(lines[0]) == "" {
		return nil, fmt.Errorf("ps printed nothing")
	}
	titles := strings.Fields(lines[0])
	pidIndex := slices.Index(titles, "PID")
	if pidIndex < 0 {
		//lint:ignore ST1005 docker's exact message
		return nil, fmt.Errorf("Couldn't find PID field in ps output")
	}
	resp := &containertypes.TopResponse{Titles: titles, Processes: [][]string{}}
	for _, line := range lines[1:] {
		if strings.TrimSpace(line) == "" {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) <= pidIndex {
			continue
		}
		pid, err := strconv.Atoi(fields[pidIndex])
		if err != nil {
			//lint:ignore ST1005 docker's exact message
			return nil, fmt.Errorf("Unexpected pid '%s': %s", fields[pidIndex], err)
		}
		if !slices.Contains(pids, pid) {
			continue
		}
		if len(fields) > len(titles) {
			// The command's own spaces.
			last := strings.Join(fields[len(titles)-1:], " ")
			fields = append(fields[:len(titles)-1], last)
		}
		resp.Processes = append(resp.Processes, fields)
	}
	return resp, nil
}

// Update implements POST /containers/{id}/update: resources (through the
// runtime's update, on a running container) and the restart policy.
func (s *ContainerService) Update(ctx context.Context, id string, u containertypes.UpdateConfig) (*containertypes.UpdateResponse, error) {
	e, err := s.get(id)
	if err != nil {
		return nil, err
	}
	e.op.Lock()
	defer e.op.Unlock()
	c := e.snapshot()
	hc := *c.HostConfig
	r := &hc.Resources
	n := u.Resources
	if n.Memory != 0 && n.Memory < 6*1024*1024 {
		return nil, errdefs.ErrInvalidArgument.WithMessage("Minimum memory limit allowed is 6MB")
	}
	if n.Memory != 0 && n.MemorySwap == 0 && r.MemorySwap > 0 && n.Memory > r.MemorySwap {
		return nil, errdefs.ErrInvalidArgument.WithMessage("Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time")
	}
	setI64 := func(dst *int64, v int64) {
		if v != 0 {
			*dst = v
		}
	}
	setI64(&r.Memory, n.Memory)
	setI64(&r.MemorySwap, n.MemorySwap)
	setI64(&r.MemoryReservation, n.MemoryReservation)
	setI64(&r.CPUShares, n.CPUShares)
	setI64(&r.CPUPeriod, n.CPUPeriod)
	setI64(&r.CPUQuota, n.CPUQuota)
	setI64(&r.NanoCPUs, n.NanoCPUs)
	if n.NanoCPUs != 0 {
		r.CPUPeriod, r.CPUQuota = 0, 0
	}
	if n.CpusetCpus != "" {
		r.CpusetCpus = n.CpusetCpus
	}
	if n.CpusetMems != "" {
		r.CpusetMems = n.CpusetMems
	}
	if n.BlkioWeight != 0 {
		r.BlkioWeight = n.BlkioWeight
	}
	if n.PidsLimit != nil {
		l := *n.PidsLimit
		r.PidsLimit = &l
	}
	if u.RestartPolicy.Name != "" {
		hc.RestartPolicy = u.RestartPolicy
		if err := validateRestartPolicy(&hc); err != nil {
			return nil, err
		}
	}
	res, err := oci.Resources(&hc, oci.DetectCgroupV2())
	if err != nil {
		return nil, err
	}
	if c.State.Running() && c.State.Status != container.StatusRestarting && resourcesChanged(n) {
		res.Devices = nil
		b, err := json.Marshal(res)
		if err != nil {
			return nil, err
		}
		if err := s.runtimeOp(ctx, c, b, "update", "--resources", "-", c.ID); err != nil {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("Cannot update container %s: %v", c.ID, err))
		}
	}
	e.smu.Lock()
	e.c.HostConfig = &hc
	e.smu.Unlock()
	if err := s.persist(e); err != nil {
		return nil, err
	}
	s.emitContainer(c, eventtypes.ActionUpdate, nil)
	return &containertypes.UpdateResponse{Warnings: []string{}}, nil
}

func resourcesChanged(n containertypes.Resources) bool {
	return n.Memory != 0 || n.MemorySwap != 0 || n.MemoryReservation != 0 || n.CPUShares != 0 ||
		n.CPUPeriod != 0 || n.CPUQuota != 0 || n.NanoCPUs != 0 || n.CpusetCpus != "" || n.CpusetMems != "" ||
		n.BlkioWeight != 0 || n.PidsLimit != nil
}

// Stats implements GET /containers/{id}/stats.
func (s *ContainerService) Stats(ctx context.Context, id string, opts api.StatsOptions, send func(*containertypes.StatsResponse) error) error {
	e, err := s.get(id)
	if err != nil {
		return err
	}
	sample := func() *containertypes.StatsResponse {
		c := e.snapshot()
		st := &containertypes.StatsResponse{ID: c.ID, Name: "/" + c.Name, OSType: "linux", Read: time.Now().UTC()}
		if !c.State.Running() || c.State.Pid == 0 {
			return st
		}
		cg, err := cgroupsOf(c.State.Pid)
		if err != nil {
			return st
		}
		cg.fill(st)
		fillNetworkStats(c, st)
		return st
	}
	cur := sample()
	if !opts.Stream {
		if !opts.OneShot && cur.CPUStats.SystemUsage != 0 {
			// A second sample shortly after gives the CPU delta the
			// client computes its percentage from.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(statsInterval / 10):
			}
			next := sample()
			next.PreCPUStats, next.PreRead = cur.CPUStats, cur.Read
			cur = next
		}
		return send(cur)
	}
	t := time.NewTicker(statsInterval)
	defer t.Stop()
	for {
		if err := send(cur); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		next := sample()
		next.PreCPUStats, next.PreRead = cur.CPUStats, cur.Read
		cur = next
	}
}

// statsInterval is the period of streamed stats, as dockerd's.
const statsInterval = time.Second

// readLines calls fn for each line of a small file.
func readLines(path string, fn func(string)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fn(sc.Text())
	}
	return sc.Err()
}
