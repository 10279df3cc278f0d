package main

import (
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseArgs(t *testing.T) {
	create := commands["create"].flags
	kill := commands["kill"].flags
	tests := []struct {
		name     string
		args     []string
		defs     []flagDef
		stop     bool
		flags    map[string]string
		pos      []string
		errMatch string
	}{
		{name: "global then command", args: []string{"--root", "/r", "--log=/l", "--log-format", "json", "create", "--bundle", "b", "id"},
			defs: globalFlags, stop: true,
			flags: map[string]string{"root": "/r", "log": "/l", "log-format": "json"}, pos: []string{"create", "--bundle", "b", "id"}},
		{name: "single dash long", args: []string{"-root", "/r", "state", "x"}, defs: globalFlags, stop: true,
			flags: map[string]string{"root": "/r"}, pos: []string{"state", "x"}},
		{name: "debug bool", args: []string{"--debug", "start", "x"}, defs: globalFlags, stop: true,
			flags: map[string]string{"debug": "true"}, pos: []string{"start", "x"}},
		{name: "version short", args: []string{"-v"}, defs: globalFlags, stop: true, flags: map[string]string{"version": "true"}},
		{name: "create flags", args: []string{"--bundle", "/b", "--pid-file=/p", "--console-socket", "/s", "id"}, defs: create,
			flags: map[string]string{"bundle": "/b", "pid-file": "/p", "console-socket": "/s"}, pos: []string{"id"}},
		{name: "short bundle", args: []string{"-b", "/b", "id"}, defs: create, flags: map[string]string{"bundle": "/b"}, pos: []string{"id"}},
		{name: "flags after positional", args: []string{"id", "--bundle", "/b"}, defs: create,
			flags: map[string]string{"bundle": "/b"}, pos: []string{"id"}},
		{name: "kill all", args: []string{"--all", "id", "9"}, defs: kill, flags: map[string]string{"all": "true"}, pos: []string{"id", "9"}},
		{name: "bool explicit false", args: []string{"--all=false", "id"}, defs: kill, flags: map[string]string{"all": "false"}, pos: []string{"id"}},
		{name: "double dash", args: []string{"--", "--all", "id"}, defs: kill, flags: map[string]string{}, pos: []string{"--all", "id"}},
		{name: "unknown flag", args: []string{"--nope", "id"}, defs: kill, errMatch: "flag provided but not defined: --nope"},
		{name: "missing value", args: []string{"id", "--bundle"}, defs: create, errMatch: "flag needs an argument: --bundle"},
		{name: "bad bool", args: []string{"--all=maybe", "id"}, defs: kill, errMatch: "invalid boolean value"},
		{name: "lone dash is positional", args: []string{"-"}, defs: kill, flags: map[string]string{}, pos: []string{"-"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseArgs(tc.args, tc.defs, tc.stop)
			if tc.errMatch != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errMatch) {
					t.Fatalf("err = %v, want %q", err, tc.errMatch)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p.flags, tc.flags) {
				t.Errorf("flags = %v, want %v", p.flags, tc.flags)
			}
			if !reflect.DeepEqual(p.pos, tc.pos) {
				t.Errorf("pos = %q, want %q", p.pos, tc.pos)
			}
		})
	}
}

func TestWantArgs(t *testing.T) {
	p := parsedArgs{pos: []string{"a", "b"}}
	if err := wantArgs("start", p, 1, 1); err == nil || err.Error() != `"start" requires exactly 1 argument(s)` {
		t.Errorf("exact: %v", err)
	}
	if err := wantArgs("kill", p, 1, 2); err != nil {
		t.Errorf("kill: %v", err)
	}
	if err := wantArgs("kill", parsedArgs{}, 1, 2); err == nil || !strings.Contains(err.Error(), "minimum of 1") {
		t.Errorf("min: %v", err)
	}
	if err := wantArgs("kill", parsedArgs{pos: []string{"a", "b", "c"}}, 1, 2); err == nil || !strings.Contains(err.Error(), "maximum of 2") {
		t.Errorf("max: %v", err)
	}
}

func TestParseSignal(t *testing.T) {
	tests := []struct {
		in   string
		want unix.Signal
		bad  bool
	}{
		{in: "9", want: unix.SIGKILL},
		{in: "15", want: unix.SIGTERM},
		{in: "KILL", want: unix.SIGKILL},
		{in: "SIGTERM", want: unix.SIGTERM},
		{in: "sighup", want: unix.SIGHUP},
		{in: "usr1", want: unix.SIGUSR1},
		{in: "0", want: 0},
		{in: "65", bad: true},
		{in: "-1", bad: true},
		{in: "NOPE", bad: true},
		{in: "", bad: true},
	}
	for _, tc := range tests {
		got, err := parseSignal(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("parseSignal(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseSignal(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// The command line comes from whoever runs the runtime: no input may
// panic the parser, and what it returns must be consistent.
func FuzzParseArgs(f *testing.F) {
	f.Add("--root\x00/r\x00create\x00--bundle=/b\x00id", true)
	f.Add("--all\x00id\x00KILL", false)
	f.Add("-b\x00\x00--\x00-x", false)
	f.Add("--pid-file", false)
	f.Fuzz(func(t *testing.T, joined string, stop bool) {
		args := strings.Split(joined, "\x00")
		defs := append(append([]flagDef{}, globalFlags...), commands["create"].flags...)
		p, err := parseArgs(args, defs, stop)
		if err != nil {
			return
		}
		if len(p.pos) > len(args) {
			t.Fatalf("more positional arguments (%d) than arguments (%d)", len(p.pos), len(args))
		}
		for k := range p.flags {
			found := false
			for _, d := range defs {
				found = found || d.name == k
			}
			if !found {
				t.Fatalf("unknown flag %q accepted", k)
			}
		}
	})
}

func FuzzParseSignal(f *testing.F) {
	for _, s := range []string{"9", "KILL", "sigterm", "64", "65", "-3", "SIG", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sig, err := parseSignal(s)
		if err == nil && (sig < 0 || sig > maxSignal) {
			t.Fatalf("parseSignal(%q) = %d, out of range", s, sig)
		}
	})
}
