package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runc/libcontainer/utils"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	// Device cgroup management for the cgroupfs manager (v1 files, v2 eBPF).
	_ "github.com/opencontainers/cgroups/devices"
)

// cmdCreate creates a container from the bundle and leaves it "created":
// its init has set everything up and waits on the exec fifo for start.
// Without a terminal the init inherits our stdio; with one, the pty master
// goes to the --console-socket.
func cmdCreate(g *globals, p parsedArgs) (retErr error) {
	id := p.pos[0]
	defer func() {
		if retErr != nil {
			retErr = fmt.Errorf("berth-runtime create failed: %w", retErr)
		}
	}()
	bundle, err := bundleDir(p)
	if err != nil {
		return err
	}
	pidFile := p.str("pid-file")
	if pidFile != "" {
		if pidFile, err = filepath.Abs(pidFile); err != nil {
			return err
		}
	}
	preserve := 0
	if s := p.str("preserve-fds"); s != "" {
		if preserve, err = strconv.Atoi(s); err != nil || preserve < 0 {
			return fmt.Errorf("invalid --preserve-fds %q", s)
		}
	}
	consoleSocket := p.str("console-socket")

	spec, err := loadSpec(filepath.Join(bundle, "config.json"))
	if err != nil {
		return err
	}
	stopWarm := startCgroupWarm(cgroupsPathOf(spec))
	defer stopWarm()
	if spec.Process.Terminal && consoleSocket == "" {
		return errors.New("cannot allocate tty if runc will detach without setting console socket")
	}
	if !spec.Process.Terminal && consoleSocket != "" {
		return errors.New("cannot use console socket if runc will not detach or allocate tty")
	}
	c, err := createContainer(g, p, id, bundle, spec)
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			if err := c.Destroy(); err != nil {
				slog.Warn("destroy after failed create", "err", err)
			}
		}
	}()

	proc, err := newInitProcess(spec.Process)
	if err != nil {
		return err
	}
	for fd := 3; fd < 3+preserve; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			return fmt.Errorf("unable to stat preserved-fd %d (of %d): %w", fd-3, preserve, err)
		}
		proc.ExtraFiles = append(proc.ExtraFiles, os.NewFile(uintptr(fd), "preserved-fd:"+strconv.Itoa(fd)))
	}
	if spec.Process.Terminal {
		sock, err := dialUnix(consoleSocket)
		if err != nil {
			return fmt.Errorf("connect to console socket %s: %w", consoleSocket, err)
		}
		defer sock.Close()
		proc.ConsoleSocket = sock
	} else {
		proc.Stdin, proc.Stdout, proc.Stderr = os.Stdin, os.Stdout, os.Stderr
	}

	err = c.Start(proc)
	stopWarm()
	if err != nil {
		return err
	}
	if pidFile != "" {
		pid, err := proc.Pid()
		if err == nil {
			err = writePidFile(pidFile, pid)
		}
		if err != nil {
			_ = proc.Signal(unix.SIGKILL)
			_, _ = proc.Wait()
			return err
		}
	}
	return nil
}

// bundleDir is the --bundle directory (default: the working directory),
// made absolute.
func bundleDir(p parsedArgs) (string, error) {
	bundle := p.str("bundle")
	if bundle == "" {
		bundle = "."
	}
	return filepath.Abs(bundle)
}

// cgroupsPathOf is the spec's cgroup path, "" when it has none.
func cgroupsPathOf(spec *specs.Spec) string {
	if spec.Linux == nil {
		return ""
	}
	return spec.Linux.CgroupsPath
}

// createContainer turns the bundle's spec into libcontainer's config and
// creates the container from it; create and run share it so that both
// leave the same state (the compiled seccomp program, not its rules).
func createContainer(g *globals, p parsedArgs, id, bundle string, spec *specs.Spec) (*libcontainer.Container, error) {
	// A relative root path is relative to the bundle, which libcontainer
	// takes from the working directory.
	if err := os.Chdir(bundle); err != nil {
		return nil, err
	}
	config, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:   id,
		NoPivotRoot:  p.bool("no-pivot"),
		NoNewKeyring: p.bool("no-new-keyring"),
		Spec:         spec,
	})
	if err != nil {
		return nil, err
	}
	if err := ensureSeccompCache(config.Seccomp); err != nil {
		return nil, err
	}
	stripSeccompRules(config.Seccomp)
	return libcontainer.Create(g.root, id, config)
}

// loadSpec reads and checks a bundle's config.json.
func loadSpec(path string) (*specs.Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("JSON specification file %s not found", path)
		}
		return nil, err
	}
	var spec *specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if spec == nil {
		return nil, errors.New("config cannot be null")
	}
	pr := spec.Process
	switch {
	case pr == nil:
		return nil, errors.New("process property must not be empty")
	case pr.Cwd == "":
		return nil, errors.New("cwd property must not be empty")
	case !filepath.IsAbs(pr.Cwd):
		return nil, errors.New("cwd must be an absolute path")
	case len(pr.Args) == 0:
		return nil, errors.New("args must not be empty")
	case pr.SelinuxLabel != "":
		return nil, errors.New("selinux label is specified in config, but selinux is not supported")
	}
	return spec, nil
}

// rlimitTypes maps the spec's rlimit names to the kernel's resources.
var rlimitTypes = map[string]int{
	"RLIMIT_CPU": unix.RLIMIT_CPU, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_DATA": unix.RLIMIT_DATA,
	"RLIMIT_STACK": unix.RLIMIT_STACK, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK,
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE, "RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME": unix.RLIMIT_RTTIME,
}

// newInitProcess is a container's first process, for create and run.
func newInitProcess(p *specs.Process) (*libcontainer.Process, error) {
	proc, err := newProcess(p)
	if err != nil {
		return nil, err
	}
	proc.Init = true
	proc.LogLevel = strconv.Itoa(int(logrus.GetLevel()))
	return proc, nil
}

// newProcess converts the spec's process to libcontainer's.
func newProcess(p *specs.Process) (*libcontainer.Process, error) {
	lp := &libcontainer.Process{
		Args:            p.Args,
		Env:             p.Env,
		UID:             int(p.User.UID),
		GID:             int(p.User.GID),
		Cwd:             p.Cwd,
		NoNewPrivileges: &p.NoNewPrivileges,
		AppArmorProfile: p.ApparmorProfile,
		Scheduler:       p.Scheduler,
		IOPriority:      p.IOPriority,
	}
	if p.ConsoleSize != nil {
		lp.ConsoleWidth, lp.ConsoleHeight = uint16(p.ConsoleSize.Width), uint16(p.ConsoleSize.Height)
	}
	if c := p.Capabilities; c != nil {
		lp.Capabilities = &configs.Capabilities{
			Bounding: c.Bounding, Effective: c.Effective, Inheritable: c.Inheritable,
			Permitted: c.Permitted, Ambient: c.Ambient,
		}
	}
	for _, g := range p.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	for _, rl := range p.Rlimits {
		t, ok := rlimitTypes[rl.Type]
		if !ok {
			return nil, fmt.Errorf("wrong rlimit value: %s", rl.Type)
		}
		lp.Rlimits = append(lp.Rlimits, configs.Rlimit{Type: t, Hard: rl.Hard, Soft: rl.Soft})
	}
	aff, err := configs.ConvertCPUAffinity(p.ExecCPUAffinity)
	if err != nil {
		return nil, err
	}
	lp.CPUAffinity = aff
	return lp, nil
}

// dialUnix connects to a unix socket without the net package (its
// initialisation is start-up latency this binary does not need).
func dialUnix(path string) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

// writePidFile writes the pid atomically (temp file, rename): the shim
// reads it as soon as create returns and must never see half a number.
func writePidFile(path string, pid int) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path))
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(strconv.Itoa(pid))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}

func load(g *globals, id string) (*libcontainer.Container, error) {
	return libcontainer.Load(g.root, id)
}

// cmdStart runs the user process of a created container: it opens the
// exec fifo, which releases the waiting init into execve.
func cmdStart(g *globals, p parsedArgs) error {
	c, err := load(g, p.pos[0])
	if err != nil {
		return err
	}
	status, err := c.Status()
	if err != nil {
		return err
	}
	switch status {
	case libcontainer.Created:
		return c.Exec()
	case libcontainer.Stopped:
		return errors.New("cannot start a container that has stopped")
	case libcontainer.Running:
		return errors.New("cannot start an already running container")
	default:
		return fmt.Errorf("cannot start a container in the %s state", status)
	}
}

// containerState is runc's `state` output.
type containerState struct {
	Version        string            `json:"ociVersion"`
	ID             string            `json:"id"`
	InitProcessPid int               `json:"pid"`
	Status         string            `json:"status"`
	Bundle         string            `json:"bundle"`
	Rootfs         string            `json:"rootfs"`
	Created        time.Time         `json:"created"`
	Annotations    map[string]string `json:"annotations,omitempty"`
	Owner          string            `json:"owner"`
}

func cmdState(g *globals, p parsedArgs) error {
	c, err := load(g, p.pos[0])
	if err != nil {
		return err
	}
	status, err := c.Status()
	if err != nil {
		return err
	}
	st, err := c.State()
	if err != nil {
		return err
	}
	pid := st.BaseState.InitProcessPid
	if status == libcontainer.Stopped {
		pid = 0
	}
	bundle, annotations := utils.Annotations(st.Config.Labels)
	b, err := json.MarshalIndent(containerState{
		Version:        st.BaseState.Config.Version,
		ID:             st.BaseState.ID,
		InitProcessPid: pid,
		Status:         status.String(),
		Bundle:         bundle,
		Rootfs:         st.BaseState.Config.Rootfs,
		Created:        st.BaseState.Created,
		Annotations:    annotations,
	}, "", "  ")
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(b)
	return err
}

// cmdKill signals the container's init. With --all a container that is
// not running is no error, and without its own pid namespace every
// process of its cgroup gets the signal (SIGKILL always reaches all).
func cmdKill(g *globals, p parsedArgs) error {
	c, err := load(g, p.pos[0])
	if err != nil {
		return err
	}
	sigstr := "SIGTERM"
	if len(p.pos) > 1 {
		sigstr = p.pos[1]
	}
	sig, err := parseSignal(sigstr)
	if err != nil {
		return err
	}
	all := p.bool("all")
	if all && sig != unix.SIGKILL && !c.Config().Namespaces.IsPrivate(configs.NEWPID) {
		pids, err := c.Processes()
		if err != nil {
			return err
		}
		for _, pid := range pids {
			if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("signal %d: %w", pid, err)
			}
		}
		return nil
	}
	err = c.Signal(sig)
	if all && errors.Is(err, libcontainer.ErrNotRunning) {
		return nil
	}
	return err
}

// cmdDelete removes a container's state and cgroup. A created container
// is killed first; a running or paused one only with --force.
func cmdDelete(g *globals, p parsedArgs) error {
	id := p.pos[0]
	c, err := load(g, id)
	if err != nil {
		if errors.Is(err, libcontainer.ErrNotExist) {
			// An aborted create can leave the state directory without
			// state.json; libcontainer then does not see the container.
			if err := os.RemoveAll(filepath.Join(g.root, id)); err != nil {
				slog.Warn("remove state directory", "id", id, "err", err)
			}
			if p.bool("force") {
				return nil
			}
		}
		return err
	}
	if p.bool("force") {
		return killAndDestroy(c)
	}
	status, err := c.Status()
	if err != nil {
		return err
	}
	switch status {
	case libcontainer.Stopped:
		return c.Destroy()
	case libcontainer.Created:
		return killAndDestroy(c)
	default:
		return fmt.Errorf("cannot delete container %s that is not stopped: %s", id, status)
	}
}

// killAndDestroy kills the container and destroys it once its init is
// gone. The init is not our child, so its end is polled; the first checks
// come quickly, as a container being deleted is usually already dead
// (runc sleeps 100 ms before the first).
func killAndDestroy(c *libcontainer.Container) error {
	_ = c.Signal(unix.SIGKILL)
	delay := 500 * time.Microsecond
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if err := c.Signal(unix.Signal(0)); err != nil {
			return c.Destroy()
		}
		time.Sleep(delay)
		delay = min(2*delay, 100*time.Millisecond)
	}
	return errors.New("container init still running")
}

func cmdPause(g *globals, p parsedArgs) error {
	c, err := load(g, p.pos[0])
	if err != nil {
		return err
	}
	return c.Pause()
}

func cmdResume(g *globals, p parsedArgs) error {
	c, err := load(g, p.pos[0])
	if err != nil {
		return err
	}
	return c.Resume()
}

// cmdExec runs a new process in a running container (runc's `exec
// --process FILE`): it joins the container's namespaces and cgroup through
// libcontainer's setns path. With --detach it writes --pid-file and leaves
// the process to our parent (a child subreaper reaps it); otherwise it
// waits, relays signals and exits with the process's status. Without a
// terminal the process inherits our stdio; with one (--tty) the pty master
// goes to --console-socket.
func cmdExec(g *globals, p parsedArgs) (retErr error) {
	id := p.pos[0]
	defer func() {
		if retErr != nil {
			retErr = fmt.Errorf("exec failed: %w", retErr)
		}
	}()
	stopWarm := startCgroupWarm("")
	defer stopWarm()
	c, err := load(g, id)
	if err != nil {
		return err
	}
	status, err := c.Status()
	if err != nil {
		return err
	}
	switch status {
	case libcontainer.Stopped:
		return errors.New("cannot exec in a stopped container")
	case libcontainer.Paused:
		if !p.bool("ignore-paused") {
			return errors.New("cannot exec in a paused container (use --ignore-paused to override)")
		}
	}
	procPath := p.str("process")
	if procPath == "" {
		return errors.New("exec: --process is required")
	}
	b, err := os.ReadFile(procPath)
	if err != nil {
		return err
	}
	var sp specs.Process
	if err := json.Unmarshal(b, &sp); err != nil {
		return fmt.Errorf("parse %s: %w", procPath, err)
	}
	switch {
	case len(sp.Args) == 0:
		return errors.New("args must not be empty")
	case sp.Cwd == "" || !filepath.IsAbs(sp.Cwd):
		return errors.New("cwd must be an absolute path")
	}
	if p.bool("tty") {
		sp.Terminal = true
	}
	consoleSocket := p.str("console-socket")
	detach := p.bool("detach")
	if sp.Terminal && consoleSocket == "" {
		return errors.New("cannot allocate tty without a console socket")
	}
	if !sp.Terminal && consoleSocket != "" {
		return errors.New("cannot use console socket if runc will not detach or allocate tty")
	}
	pidFile := p.str("pid-file")
	if pidFile != "" {
		if pidFile, err = filepath.Abs(pidFile); err != nil {
			return err
		}
	}
	proc, err := newProcess(&sp)
	if err != nil {
		return err
	}
	proc.Init = false
	proc.LogLevel = strconv.Itoa(int(logrus.GetLevel()))
	if err := ensureSeccompCache(c.Config().Seccomp); err != nil {
		return err
	}
	if sp.Terminal {
		sock, err := dialUnix(consoleSocket)
		if err != nil {
			return fmt.Errorf("connect to console socket %s: %w", consoleSocket, err)
		}
		defer sock.Close()
		proc.ConsoleSocket = sock
	} else {
		proc.Stdin, proc.Stdout, proc.Stderr = os.Stdin, os.Stdout, os.Stderr
	}
	var sigs chan os.Signal
	if !detach {
		sigs = make(chan os.Signal, 32)
		signal.Notify(sigs)
	}
	err = c.Run(proc)
	stopWarm()
	if err != nil {
		return err
	}
	pid, err := proc.Pid()
	if err != nil {
		_ = proc.Signal(unix.SIGKILL)
		_, _ = proc.Wait()
		return err
	}
	if pidFile != "" {
		if err := writePidFile(pidFile, pid); err != nil {
			_ = proc.Signal(unix.SIGKILL)
			_, _ = proc.Wait()
			return err
		}
	}
	if detach {
		return nil
	}
	code, err := waitForwarding(proc, sigs)
	if err != nil {
		return err
	}
	os.Exit(code)
	return nil
}

// waitForwarding passes the signals this process receives on to proc
// until it exits, and returns its exit code as a shell gives it (128+n
// when killed by signal n).
func waitForwarding(proc *libcontainer.Process, sigs <-chan os.Signal) (int, error) {
	go func() {
		for s := range sigs {
			if s == unix.SIGCHLD || s == unix.SIGURG || s == unix.SIGPIPE {
				continue // ours, not the container's
			}
			_ = proc.Signal(s)
		}
	}()
	st, err := proc.Wait()
	if st == nil {
		return 0, fmt.Errorf("wait for the container: %w", err)
	}
	ws := st.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}

// cmdUpdate changes the resources of a running container (runc's `update
// --resources FILE`, "-" for stdin): the JSON is an OCI LinuxResources;
// fields it leaves out keep their values.
func cmdUpdate(g *globals, p parsedArgs) error {
	c, err := load(g, p.pos[0])
	if err != nil {
		return err
	}
	path := p.str("resources")
	if path == "" {
		return errors.New("update: --resources is required")
	}
	var b []byte
	if path == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return err
	}
	var r specs.LinuxResources
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("parse resources: %w", err)
	}
	config := c.Config()
	res := config.Cgroups.Resources
	if m := r.Memory; m != nil {
		if m.Limit != nil {
			res.Memory = *m.Limit
		}
		if m.Reservation != nil {
			res.MemoryReservation = *m.Reservation
		}
		if m.Swap != nil {
			res.MemorySwap = *m.Swap
		}
	}
	if cpu := r.CPU; cpu != nil {
		if cpu.Shares != nil {
			res.CpuShares = *cpu.Shares
		}
		if cpu.Quota != nil {
			res.CpuQuota = *cpu.Quota
		}
		if cpu.Period != nil {
			res.CpuPeriod = *cpu.Period
		}
		if cpu.Cpus != "" {
			res.CpusetCpus = cpu.Cpus
		}
		if cpu.Mems != "" {
			res.CpusetMems = cpu.Mems
		}
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		l := *r.Pids.Limit
		res.PidsLimit = &l
	}
	if r.BlockIO != nil && r.BlockIO.Weight != nil {
		res.BlkioWeight = *r.BlockIO.Weight
	}
	return c.Set(config)
}
