// Package runtime is the daemon's registry of OCI runtimes: the programs
// that create and run a container from an OCI bundle through runc's
// command line (berth's own berth-runtime, runc, crun, or any other
// registered with --add-runtime), each selected by name with --runtime.
// The shim, not the daemon, runs them; the registry only says which binary
// and which global arguments.
package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
)

const (
	// DefaultName is the name of berth's own runtime, the default.
	DefaultName = "berth"
	// BinaryName is the file name of berth's own runtime.
	BinaryName = "berth-runtime"
)

// Runtime is one registered OCI runtime.
type Runtime struct {
	// Name is the name --runtime selects it by.
	Name string
	// Path is its executable.
	Path string
	// Args are its global arguments, placed before the command; they
	// include --root, so that every runtime keeps its state under the
	// daemon's exec root.
	Args []string
}

// Argv returns the command line that runs cmd (e.g. "state", id) with this
// runtime: Path, Args, then cmd.
func (r Runtime) Argv(cmd ...string) []string {
	argv := make([]string, 0, 1+len(r.Args)+len(cmd))
	argv = append(argv, r.Path)
	argv = append(argv, r.Args...)
	return append(argv, cmd...)
}

// Command prepares cmd (e.g. "kill", id, "KILL") run with this runtime,
// in the environment Env gives it.
func (r Runtime) Command(ctx context.Context, cmd ...string) *exec.Cmd {
	argv := r.Argv(cmd...)
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.Env = Env(os.Environ())
	return c
}

// Env is env for a runtime command: with GOMAXPROCS=1 in place of any
// GOMAXPROCS. A runtime command is a short chain of syscalls with little to
// run in parallel; one P spares the idle spinning, wake-ups and thread
// hand-offs of a second (fewer context switches and page faults per
// create, measured). runc and berth-runtime hand it on to the container's
// init only: the user's process gets the spec's environment.
func Env(env []string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "GOMAXPROCS=") {
			out = append(out, kv)
		}
	}
	return append(out, "GOMAXPROCS=1")
}

// StateDir returns the directory where berth's own runtime keeps the
// state of container id (<root>/<id>, libcontainer's layout), or "" for
// any other runtime: only for its own does berth know that layout.
func (r Runtime) StateDir(id string) string {
	if r.Name != DefaultName {
		return ""
	}
	for i, a := range r.Args {
		switch {
		case a == "--root" && i+1 < len(r.Args):
			return filepath.Join(r.Args[i+1], id)
		case strings.HasPrefix(a, "--root="):
			return filepath.Join(strings.TrimPrefix(a, "--root="), id)
		}
	}
	return ""
}

// RegistryOptions configure a Registry.
type RegistryOptions struct {
	// ExecRoot is the daemon's exec root; a runtime's state lives in
	// <ExecRoot>/runtime/<name>.
	ExecRoot string
	// BerthRuntime is the path of berth-runtime ("" = next to the running
	// executable, else on PATH).
	BerthRuntime string
	// NoDiscover skips registering runc and crun found on PATH.
	NoDiscover bool
}

// Registry holds the runtimes by name. It is safe for concurrent use.
type Registry struct {
	execRoot string

	mu       sync.RWMutex
	runtimes map[string]Runtime
	def      string
}

// NewRegistry returns a registry with berth's own runtime as the default
// and, when found on PATH, runc and crun.
func NewRegistry(opts RegistryOptions) *Registry {
	r := &Registry{execRoot: opts.ExecRoot, runtimes: map[string]Runtime{}, def: DefaultName}
	path := opts.BerthRuntime
	if path == "" {
		path = findBerthRuntime()
	}
	r.runtimes[DefaultName] = r.make(DefaultName, path, nil)
	if !opts.NoDiscover {
		for _, name := range []string{"runc", "crun"} {
			if p, err := exec.LookPath(name); err == nil {
				r.runtimes[name] = r.make(name, p, nil)
			}
		}
	}
	return r
}

// findBerthRuntime looks for berth-runtime next to the running executable
// (a build or install directory), then on PATH. Not found, the bare name
// is kept: the error then comes, clearly, from the start of a container.
func findBerthRuntime() string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), BinaryName)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath(BinaryName); err == nil {
		return p
	}
	slog.Warn("berth-runtime not found next to the daemon nor on PATH", "name", BinaryName)
	return BinaryName
}

// make builds a Runtime, adding --root under the exec root unless the
// arguments name a root already.
func (r *Registry) make(name, path string, args []string) Runtime {
	rt := Runtime{Name: name, Path: path}
	if r.execRoot != "" && !slices.ContainsFunc(args, func(a string) bool { return a == "--root" || len(a) > 7 && a[:7] == "--root=" }) {
		rt.Args = []string{"--root", filepath.Join(r.execRoot, "runtime", name)}
	}
	rt.Args = append(rt.Args, args...)
	return rt
}

// validName mirrors docker's rule for runtime names.
func validName(name string) bool {
	if name == "" || len(name) > 128 {
		return false
	}
	for i, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// Add registers (or replaces) a runtime. A path without a slash is looked
// up on PATH. The default runtime's name cannot be taken.
func (r *Registry) Add(name, path string, args ...string) error {
	if !validName(name) {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid runtime name %q", name))
	}
	if name == DefaultName {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("runtime name %q is reserved", name))
	}
	if path == "" {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("runtime %s: empty path", name))
	}
	if !filepath.IsAbs(path) {
		p, err := exec.LookPath(path)
		if err != nil {
			return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("runtime %s: %v", name, err))
		}
		if p, err = filepath.Abs(p); err == nil {
			path = p
		}
	}
	rt := r.make(name, path, slices.Clone(args))
	r.mu.Lock()
	r.runtimes[name] = rt
	r.mu.Unlock()
	return nil
}

// Get returns the runtime called name ("" = the default). An unknown name
// is errdefs.ErrInvalidArgument, with docker's message.
func (r *Registry) Get(name string) (Runtime, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if name == "" {
		name = r.def
	}
	rt, ok := r.runtimes[name]
	if !ok {
		return Runtime{}, errdefs.ErrInvalidArgument.WithMessage("unknown or invalid runtime name: " + name)
	}
	rt.Args = slices.Clone(rt.Args)
	return rt, nil
}

// SetDefault makes a registered runtime the default.
func (r *Registry) SetDefault(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.runtimes[name]; !ok {
		return errdefs.ErrInvalidArgument.WithMessage("unknown or invalid runtime name: " + name)
	}
	r.def = name
	return nil
}

// Names returns the registered names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.runtimes))
	for n := range r.runtimes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Default returns the default runtime's name.
func (r *Registry) Default() string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.def
}
