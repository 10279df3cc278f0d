package shim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/berth-engine/berth/internal/fsutil"
	"github.com/berth-engine/berth/internal/runtime"
	"github.com/berth-engine/berth/internal/shim/wire"
	"github.com/containerd/errdefs"
)

// Spawn writes cfg to <Bundle>/shim.json and starts `<shimBinary>
// <Bundle>/shim.json` detached (its own session, stdio /dev/null), then
// waits on a sync pipe (the shim's fd 3) for the shim to report the
// container created — not started — and returns a client for it and the
// pid of the container's init. On failure the error carries the runtime's
// own message (e.g. `exec: "foo": executable file not found in $PATH`) and
// neither shim nor container is left. If ctx ends first, the shim is
// killed and the container deleted.
//
// The shim stays a child of the calling process, which reaps it when it
// exits; after a restart of the caller it is re-parented to init.
func Spawn(ctx context.Context, shimBinary string, cfg Config) (c *Client, pid int, err error) {
	if cfg.LogMaxFiles < 1 {
		cfg.LogMaxFiles = 1
	}
	if err := cfg.Validate(); err != nil {
		return nil, 0, errdefs.ErrInvalidArgument.WithMessage(err.Error())
	}
	data := wire.AppendConfig(nil, cfg)
	cfgPath := filepath.Join(cfg.Bundle, "shim.json")
	// The bundle is in the exec-root, whose content means nothing after a
	// reboot: atomic, not durable.
	if err := fsutil.WriteFileAtomicSync(cfgPath, data, 0o600, fsutil.SyncNone); err != nil {
		return nil, 0, fmt.Errorf("write shim config: %w", err)
	}

	r, w, err := os.Pipe()
	if err != nil {
		return nil, 0, fmt.Errorf("sync pipe: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(shimBinary, cfgPath)
	// GOMAXPROCS=1, as for a runtime command: the Go runtime sizes its
	// per-P state and GC workers at start-up, before main could lower it,
	// and an idle shim needs one P (measured: ~130 KiB less PSS per shim).
	// The shim passes the same on to the runtimes it runs.
	cmd.Env = runtime.Env(os.Environ())
	cmd.Dir = "/"
	cmd.ExtraFiles = []*os.File{w} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return nil, 0, fmt.Errorf("start shim %s: %w", shimBinary, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- waitShim(cmd) }() // reaps the shim whenever it ends (reap.go)

	type report struct {
		msg wire.SyncMessage
		err error
	}
	got := make(chan report, 1)
	go func() {
		line, err := bufio.NewReaderSize(io.LimitReader(r, wire.MaxLine), 4096).ReadBytes('\n')
		if len(line) == 0 && err != nil {
			got <- report{err: err}
			return
		}
		m, err := wire.ParseSync(line)
		got <- report{msg: m, err: err}
	}()

	select {
	case rep := <-got:
		switch {
		case rep.err != nil:
			// The shim died (or spoke nonsense) before reporting.
			killShim(cmd, exited)
			deleteContainer(cfg)
			return nil, 0, fmt.Errorf("berth-shim for %s failed before reporting: %v%s", cfg.ID, rep.err, shimLogTail(cfg.Bundle))
		case rep.msg.Error != "":
			// The shim cleans up before it reports an error; wait for it to
			// be gone so that nothing is left when we return.
			select {
			case <-exited:
			case <-ctx.Done():
				killShim(cmd, exited)
			}
			return nil, 0, errors.New(rep.msg.Error)
		}
		return Dial(cfg.Socket), rep.msg.Pid, nil
	case <-ctx.Done():
		killShim(cmd, exited)
		deleteContainer(cfg)
		return nil, 0, fmt.Errorf("spawn shim for %s: %w", cfg.ID, ctx.Err())
	}
}

// killShim kills a shim that must not live on and waits until it is gone.
func killShim(cmd *exec.Cmd, exited <-chan error) {
	_ = cmd.Process.Kill()
	<-exited
	// A shim killed mid-way leaves its sockets behind.
}

// deleteContainer removes whatever a killed shim's runtime create left.
func deleteContainer(cfg Config) {
	argv := append(append([]string{}, cfg.RuntimeArgs...), "delete", "--force", cfg.ID)
	cmd := exec.Command(cfg.Runtime, argv...)
	_ = cmd.Run()
	_ = os.Remove(cfg.Socket)
	_ = os.Remove(cfg.Socket + ".con")
}

// shimLogTail quotes the last line of the shim's own log, the only trace
// of a shim that crashed.
func shimLogTail(bundle string) string {
	b, err := os.ReadFile(filepath.Join(bundle, "shim.log"))
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 500 {
		s = s[len(s)-500:]
	}
	if s == "" {
		return ""
	}
	return " (shim log: " + s + ")"
}
