// Command berth-runtime is berth's OCI runtime: runc's command line on
// libcontainer, lean enough to be exec'd several times per container
// start. The shim drives it exactly as containerd's shim drives runc:
//
//	berth-runtime [--root DIR] --log FILE --log-format json create --bundle DIR --pid-file FILE [--console-socket SOCK] ID
//	berth-runtime start ID
//	berth-runtime state ID
//	berth-runtime kill [--all] ID [SIGNAL]
//	berth-runtime delete [--force] ID
//	berth-runtime pause|resume ID
//	berth-runtime exec --process FILE [--detach --pid-file FILE] [--tty --console-socket SOCK] ID
//	berth-runtime update --resources FILE|- ID
//	berth-runtime run --bundle DIR ID   (no terminal: create, start, wait, delete; exits with the container's status)
//
// It manages cgroups with the cgroupfs driver only (v1, hybrid or v2) and
// applies no seccomp filter unless built with the seccomp tag.
package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/berth-engine/berth/internal/version"
	"github.com/opencontainers/runc/libcontainer"
	// The container init's namespace setup (C, runs before the Go runtime).
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
)

func init() {
	// libcontainer re-executes this binary as the container's init:
	// nsexec (C) has already joined the namespaces; Init never returns.
	if len(os.Args) > 1 && os.Args[1] == "init" {
		// The seccomp program, compiled by create, comes in the
		// container's config (BerthProgram): no cache to read here.
		libcontainer.Init()
	}
}

// defaultRoot is where container state lives when --root is not given.
const defaultRoot = "/run/berth/runtime"

var globalFlags = []flagDef{
	{name: "root", value: true},
	{name: "log", value: true},
	{name: "log-format", value: true},
	{name: "debug"},
	{name: "systemd-cgroup"},
	{name: "rootless", value: true},
	{name: "version", short: "v"},
	{name: "help", short: "h"},
}

// globals are the parsed global options.
type globals struct {
	root string
}

// command is one subcommand: its flags, its positional-argument bounds and
// what it does.
type command struct {
	flags    []flagDef
	min, max int
	run      func(g *globals, p parsedArgs) error
}

var commands = map[string]command{
	"create": {flags: []flagDef{
		{name: "bundle", short: "b", value: true},
		{name: "console-socket", value: true},
		{name: "pid-file", value: true},
		{name: "no-pivot"},
		{name: "no-new-keyring"},
		{name: "preserve-fds", value: true},
	}, min: 1, max: 1, run: cmdCreate},
	"start":  {min: 1, max: 1, run: cmdStart},
	"state":  {min: 1, max: 1, run: cmdState},
	"kill":   {flags: []flagDef{{name: "all", short: "a"}}, min: 1, max: 2, run: cmdKill},
	"delete": {flags: []flagDef{{name: "force", short: "f"}}, min: 1, max: 1, run: cmdDelete},
	"pause":  {min: 1, max: 1, run: cmdPause},
	"resume": {min: 1, max: 1, run: cmdResume},
	"exec": {flags: []flagDef{
		{name: "process", short: "p", value: true},
		{name: "console-socket", value: true},
		{name: "pid-file", value: true},
		{name: "detach", short: "d"},
		{name: "tty", short: "t"},
		{name: "ignore-paused"},
		{name: "preserve-fds", value: true},
	}, min: 1, max: 1, run: cmdExec},
	"update": {flags: []flagDef{{name: "resources", short: "r", value: true}}, min: 1, max: 1, run: cmdUpdate},
	"run": {flags: []flagDef{
		{name: "bundle", short: "b", value: true},
		{name: "detach", short: "d"},
		{name: "no-pivot"},
		{name: "no-new-keyring"},
	}, min: 1, max: 1, run: cmdRun},
}

const usage = `berth-runtime: berth's OCI runtime (runc's command line)

Usage: berth-runtime [global options] command [options] <container-id> [args]

Commands:
  create   create a container from a bundle (--bundle, --pid-file, --console-socket)
  start    run the user process of a created container
  state    print the container's state as JSON
  kill     send a signal (default SIGTERM) to the container's init (--all)
  delete   delete the container's resources (--force kills it first)
  pause    freeze all processes of the container
  resume   thaw them
  exec     run a process in a running container (--process, --detach, --pid-file, --tty, --console-socket)
  update   change a running container's resources (--resources FILE|-)
  run      create, start and wait for a container without a terminal, then delete it (--bundle)

Global options:
  --root DIR          state directory (default ` + defaultRoot + `)
  --log FILE          log file (default stderr)
  --log-format FMT    text or json
  --debug             debug logging
  --version, -v       print the version
`

func main() {
	os.Exit(run(os.Args[1:]))
}

// run executes one invocation and returns the exit status.
func run(args []string) int {
	gp, err := parseArgs(args, globalFlags, true)
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth-runtime: %v\n", err)
		return 1
	}
	if gp.bool("version") {
		fmt.Printf("berth-runtime version %s\nspec: %s\ngo: %s\n", version.Version, specs.Version, goruntime.Version())
		return 0
	}
	if gp.bool("help") || len(gp.pos) == 0 || gp.pos[0] == "help" {
		fmt.Print(usage)
		return 0
	}
	logToStderr, err := setupLogging(gp.str("log"), gp.str("log-format"), gp.bool("debug"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth-runtime: %v\n", err)
		return 1
	}
	if err := dispatch(gp); err != nil {
		slog.Error(err.Error())
		if !logToStderr {
			fmt.Fprintln(os.Stderr, err)
		}
		return 1
	}
	return 0
}

func dispatch(gp parsedArgs) error {
	if gp.bool("systemd-cgroup") {
		return fmt.Errorf("the systemd cgroup driver is not supported: berth-runtime uses cgroupfs")
	}
	g := &globals{root: defaultRoot}
	if r := gp.str("root"); r != "" {
		abs, err := filepath.Abs(r)
		if err != nil {
			return fmt.Errorf("--root %s: %w", r, err)
		}
		if abs == "/" {
			return fmt.Errorf("option --root argument should not be set to /")
		}
		g.root = abs
	}
	name := gp.pos[0]
	cmd, ok := commands[name]
	if !ok {
		return fmt.Errorf("no such command: %s", name)
	}
	p, err := parseArgs(gp.pos[1:], cmd.flags, false)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := wantArgs(name, p, cmd.min, cmd.max); err != nil {
		return err
	}
	if p.pos[0] == "" {
		return fmt.Errorf("container id cannot be empty")
	}
	return cmd.run(g, p)
}

// setupLogging sends both berth-runtime's own log (slog) and libcontainer's
// (logrus, including what the container's init forwards) to the log file,
// in runc's format: with json, one {"level":…,"msg":…,"time":…} object a
// line, where the shim finds the error that made a command fail.
func setupLogging(path, format string, debug bool) (toStderr bool, err error) {
	var out io.Writer = os.Stderr
	toStderr = true
	if path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return false, fmt.Errorf("open log %s: %w", path, err)
		}
		out, toStderr = f, false
	}
	level := slog.LevelInfo
	logrus.SetLevel(logrus.InfoLevel)
	if debug {
		level = slog.LevelDebug
		logrus.SetLevel(logrus.DebugLevel)
	}
	logrus.SetOutput(out)
	hopts := &slog.HandlerOptions{Level: level, ReplaceAttr: runcAttrs}
	var h slog.Handler
	switch format {
	case "", "text":
		logrus.SetFormatter(&logrus.TextFormatter{DisableColors: true, FullTimestamp: true, TimestampFormat: time.RFC3339Nano})
		h = slog.NewTextHandler(out, hopts)
	case "json":
		logrus.SetFormatter(&logrus.JSONFormatter{TimestampFormat: time.RFC3339Nano})
		h = slog.NewJSONHandler(out, hopts)
	default:
		return toStderr, fmt.Errorf("invalid log-format: %s", format)
	}
	slog.SetDefault(slog.New(h))
	return toStderr, nil
}

// runcAttrs renders slog's level and time as logrus (and so runc) does:
// lower-case level names, "warning", RFC 3339 times (with nanoseconds,
// which tell where a start spends its time).
func runcAttrs(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.LevelKey:
		l, _ := a.Value.Any().(slog.Level)
		s := strings.ToLower(l.String())
		if l == slog.LevelWarn {
			s = "warning"
		}
		return slog.String(slog.LevelKey, s)
	case slog.TimeKey:
		return slog.String(slog.TimeKey, a.Value.Time().Format(time.RFC3339Nano))
	}
	return a
}
