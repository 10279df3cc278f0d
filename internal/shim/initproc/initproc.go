// Package initproc is berth-shim's init mode: the minimal PID 1 that
// `docker run --init` puts in a container (bind-mounted as
// /sbin/docker-init), behaving like tini's defaults. It starts the command
// in its own process group (in the terminal's foreground when there is
// one), forwards the signals it gets to it, reaps every zombie, and exits
// with the command's status (128+N when a signal N killed it).
package initproc

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"unsafe"
)

// Options are init mode's command-line settings.
type Options struct {
	// Group sends forwarded signals to the command's whole process group
	// (tini -g) instead of the command alone.
	Group bool
	// Args is the command and its arguments.
	Args []string
}

// ParseArgs reads `[-g] [-s] [-v…] [--] cmd args…` (the flags tini accepts
// that matter here; -s and -v are accepted and ignored).
func ParseArgs(args []string) (Options, error) {
	var o Options
	for len(args) > 0 {
		a := args[0]
		if a == "--" {
			args = args[1:]
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			break
		}
		switch {
		case a == "-g":
			o.Group = true
		case a == "-s", strings.Trim(a, "v") == "-":
		default:
			return o, fmt.Errorf("unknown option %q", a)
		}
		args = args[1:]
	}
	if len(args) == 0 {
		return o, fmt.Errorf("no command given")
	}
	o.Args = args
	return o, nil
}

// notForwarded are the signals init keeps: SIGCHLD drives the reaping;
// SIGURG is the Go runtime's own preemption signal; SIGTTIN and SIGTTOU
// would only stop init; the rest are faults that mean nothing sent from
// outside (tini's list).
var notForwarded = map[os.Signal]bool{
	syscall.SIGCHLD: true, syscall.SIGURG: true,
	syscall.SIGTTIN: true, syscall.SIGTTOU: true,
	syscall.SIGFPE: true, syscall.SIGILL: true, syscall.SIGSEGV: true, syscall.SIGBUS: true,
	syscall.SIGABRT: true, syscall.SIGTRAP: true, syscall.SIGSYS: true,
}

// leanEnv marks init re-executed with GOMAXPROCS=1; its value is the
// command's own GOMAXPROCS after a "=" (empty when it had none), restored
// for it.
const leanEnv = "BERTH_INIT_GOMAXPROCS"

// reexecLean makes init run with one P from the start: the Go runtime
// sizes per-P state before main can lower GOMAXPROCS, and a container's
// init is paid once per container (measured: ~0.86 → ~0.70 MiB PSS). It
// returns only if the exec failed or was already done.
func reexecLean() {
	if _, done := os.LookupEnv(leanEnv); done {
		return
	}
	orig := ""
	if v, ok := os.LookupEnv("GOMAXPROCS"); ok {
		orig = "=" + v
	}
	env := append(withoutEnv(os.Environ(), "GOMAXPROCS"), "GOMAXPROCS=1", leanEnv+"="+orig)
	// The binary's own path rather than /proc/self/exe, so that the
	// process keeps its name (comm) for ps and top.
	if exe, err := os.Executable(); err == nil {
		_ = syscall.Exec(exe, os.Args, env)
	}
	_ = syscall.Exec("/proc/self/exe", os.Args, env)
}

// commandEnv is the environment the command gets: init's own, without
// what init set for itself.
func commandEnv() []string {
	orig, lean := os.LookupEnv(leanEnv)
	if !lean {
		return os.Environ()
	}
	env := withoutEnv(withoutEnv(os.Environ(), leanEnv), "GOMAXPROCS")
	if strings.HasPrefix(orig, "=") {
		env = append(env, "GOMAXPROCS"+orig)
	}
	return env
}

func withoutEnv(env []string, name string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// Main runs the command and returns the exit code init should exit with.
func Main(opts Options) int {
	reexecLean()
	// Init allocates next to nothing once the command runs: no GC cycle
	// (and its working set) unless memory actually grows.
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(8 << 20)
	// Every signal is caught rather than ignored: caught signals are reset
	// to their defaults in the child, ignored ones would stay ignored.
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs)
	if os.Getpid() != 1 {
		// Not PID 1 (run by hand or nested): orphans still come to us.
		_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
	}
	path, err := lookPath(opts.Args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "docker-init: exec %s: %v\n", opts.Args[0], err)
		return execErrorCode(err)
	}
	tty := isTerminal(0)
	pid, err := syscall.ForkExec(path, opts.Args, &syscall.ProcAttr{
		Env:   commandEnv(),
		Files: []uintptr{0, 1, 2},
		Sys: &syscall.SysProcAttr{
			Setpgid: true,
			// Let the command own the terminal, so that ^C reaches it.
			Foreground: tty,
			Ctty:       0,
		},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "docker-init: exec %s: %v\n", opts.Args[0], err)
		return execErrorCode(err)
	}
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			if !notForwarded[sig] {
				target := pid
				if opts.Group {
					target = -pid
				}
				_ = syscall.Kill(target, sig.(syscall.Signal))
			}
			continue
		}
		if code, done := reap(pid); done {
			return code
		}
	}
	return 0
}

const prSetChildSubreaper = 36

// reap collects every exited child; done reports that the command itself
// has exited, with its exit code.
func reap(child int) (code int, done bool) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return code, done
		}
		if pid == child {
			done = true
			if ws.Signaled() {
				code = 128 + int(ws.Signal())
			} else {
				code = ws.ExitStatus()
			}
		}
	}
}

// execErrorCode is the shell's convention: 127 for a command not found,
// 126 for one that cannot be executed.
func execErrorCode(err error) int {
	if os.IsNotExist(err) || strings.Contains(err.Error(), "not found") {
		return 127
	}
	return 126
}

// lookPath finds the command as execvp would, through PATH when the name
// has no slash.
func lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		if err := executable(name); err != nil {
			return "", err
		}
		return name, nil
	}
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	var firstErr error
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		err := executable(p)
		if err == nil {
			return p, nil
		}
		if firstErr == nil && !os.IsNotExist(err) {
			firstErr = err
		}
	}
	if firstErr != nil {
		return "", firstErr
	}
	return "", fmt.Errorf("executable file not found in $PATH")
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return os.ErrPermission
	}
	return nil
}

func isTerminal(fd int) bool {
	var t syscall.Termios
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return errno == 0
}
