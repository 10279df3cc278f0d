package cli

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestCommandTarget(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "busybox"}, "run"},
		{[]string{"-H", "unix:///x.sock", "exec", "c", "true"}, "exec"},
		{[]string{"--host", "unix:///x.sock", "ps"}, "ps"},
		{[]string{"--host=unix:///x.sock", "--debug", "create", "busybox"}, "create"},
		{[]string{"-Hunix:///x.sock", "rm", "c"}, "rm"},
		{[]string{"-D", "-l", "debug", "images"}, "images"},
		{[]string{"-Dl", "debug", "run", "x"}, "run"},
		{[]string{"--log-level", "debug", "--tls", "--tlsverify=false", "--tlscacert", "ca", "--tlscert", "c", "--tlskey", "k", "--config", "d", "start", "x"}, "start"},
		{[]string{"container", "run", "x"}, "container"},
		{[]string{"help", "run"}, "help"},
		{nil, ""},
		{[]string{"--help"}, ""},
		{[]string{"-v"}, ""},
		{[]string{"--no-such-flag", "run"}, ""},
		{[]string{"-x", "run"}, ""},
		{[]string{"-H"}, ""},
		{[]string{"--", "run"}, ""},
	} {
		if got := commandTarget(tc.args); got != tc.want {
			t.Errorf("commandTarget(%q) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

// run and create are built only when the invocation may need them, but
// every way of reaching them still works: directly, after root flags,
// through the container group and through help.
func TestRunAndCreateReachable(t *testing.T) {
	for _, args := range [][]string{
		{"run", "--help"},
		{"-H", "unix:///nonexistent.sock", "run", "--help"},
		{"--log-level=error", "create", "--help"},
		{"container", "run", "--help"},
		{"container", "create", "--help"},
		{"help", "run"},
	} {
		r := runCLI(t, "", "", nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout+r.stderr, "--publish") {
			t.Errorf("%q: exit %d, no run/create flags in:\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	// The top-level help still lists them when it is what runs.
	r := runCLI(t, "", "", nil, "--help")
	for _, name := range []string{"  run ", "  create ", "  exec "} {
		if !strings.Contains(r.stdout+r.stderr, name) {
			t.Errorf("berth --help does not list %q:\n%s%s", name, r.stdout, r.stderr)
		}
	}
	// Another command gets a tree without them, and runs as before.
	c := newCLI(Options{})
	c.target = commandTarget([]string{"ps"})
	root := c.newRootCommand()
	for _, path := range [][]string{{"run"}, {"create"}, {"container", "run"}, {"container", "create"}} {
		if cmd, _, err := root.Find(path); err == nil && cmd != root && cmd.Name() == path[len(path)-1] {
			t.Errorf("%q built for `berth ps`", path)
		}
	}
	if cmd, _, err := root.Find([]string{"ps"}); err != nil || cmd.Name() != "ps" {
		t.Errorf("ps not found: %v", err)
	}
}

// Every root flag is one commandTarget knows: a root flag added without it
// would silently cost every start the whole command tree.
func TestCommandTargetKnowsRootFlags(t *testing.T) {
	root := NewRootCommand()
	root.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "version" || f.Name == "help" {
			return // they print and exit: "" is right
		}
		args := []string{"--" + f.Name}
		if f.Value.Type() != "bool" {
			args = append(args, "value")
		}
		if got := commandTarget(append(args, "ps")); got != "ps" {
			t.Errorf("commandTarget(%q) = %q: root flag --%s unknown to it", append(args, "ps"), got, f.Name)
		}
		if f.Shorthand != "" {
			args[0] = "-" + f.Shorthand
			if got := commandTarget(append(args, "ps")); got != "ps" {
				t.Errorf("commandTarget(%q) = %q: root flag -%s unknown to it", append(args, "ps"), got, f.Shorthand)
			}
		}
	})
}
