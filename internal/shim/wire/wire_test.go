package wire

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestConfigRoundTrip(t *testing.T) {
	c := Config{
		ID: "abc", Bundle: "/run/b", Runtime: "/usr/bin/runc", RuntimeArgs: []string{"--root", "/run/r"},
		Socket: "/run/s.sock", ExitFile: "/run/b/exit.json", LogPath: "/var/l.log", LogMaxSize: 1 << 20, LogMaxFiles: 3, LogNonBlocking: true,
		Stdin: true, StdinOnce: true, Tty: true, ConsoleHeight: 40, ConsoleWidth: 120, RuntimeState: "/run/r/abc",
	}
	got, err := ParseConfig(AppendConfig(nil, c))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("round trip: %+v, want %+v", got, c)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{ID: "a", Bundle: "/b", Runtime: "runc", Socket: "/s", ExitFile: "/e"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for name, mut := range map[string]func(*Config){
		"no id":           func(c *Config) { c.ID = "" },
		"relative bundle": func(c *Config) { c.Bundle = "b" },
		"no runtime":      func(c *Config) { c.Runtime = "" },
		"no socket":       func(c *Config) { c.Socket = "" },
		"long socket":     func(c *Config) { c.Socket = "/" + strings.Repeat("x", 110) },
		"no exit file":    func(c *Config) { c.ExitFile = "" },
		"negative size":   func(c *Config) { c.LogMaxSize = -1 },
		"relative state":  func(c *Config) { c.RuntimeState = "r/a" },
		"unclean state":   func(c *Config) { c.RuntimeState = "/r/../a" },
		"other state":     func(c *Config) { c.RuntimeState = "/r/b" },
	} {
		c := ok
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRequests(t *testing.T) {
	for _, r := range []Request{
		{Op: OpStart}, {Op: OpState}, {Op: OpWait},
		{Op: OpKill, Signal: 9, All: true},
		{Op: OpAttach, AttachOptions: AttachOptions{Stdin: true, Stderr: true}},
		{Op: OpResize, Height: 24, Width: 80},
	} {
		line := AppendRequest(nil, r)
		if line[len(line)-1] != '\n' || strings.Count(string(line), "\n") != 1 {
			t.Errorf("request %+v is not one line: %q", r, line)
		}
		got, err := ParseRequest(line)
		if err != nil || got != r {
			t.Errorf("ParseRequest(%q) = %+v, %v; want %+v", line, got, err, r)
		}
	}
	for _, bad := range []string{
		`{"op":"kill"}`, `{"op":"kill","signal":65}`, `{"op":"resize","height":0,"width":3}`,
		`{"op":"dance"}`, `{"op":1}`, `{"op":"start","stdin":"yes"}`, `not json`, `{"op":"resize","height":70000,"width":1}`,
	} {
		if _, err := ParseRequest([]byte(bad)); err == nil {
			t.Errorf("ParseRequest(%s) accepted", bad)
		}
	}
}

func TestResponses(t *testing.T) {
	at := time.Date(2024, 5, 1, 10, 0, 0, 123456789, time.UTC)
	exit := &ExitStatus{Code: 137, ExitedAt: at, Signal: 9, OOMKilled: true, Error: "x"}
	for _, r := range []Response{
		{},
		{Error: "boom", Kind: KindNotFound},
		{State: &State{Pid: 42, Status: StatusRunning}},
		{State: &State{Pid: 42, Status: StatusStopped, Exit: exit}},
		{Exit: exit},
	} {
		got, err := ParseResponse(AppendResponse(nil, r))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("round trip %+v gave %+v", r, got)
		}
	}
}

func TestExitFileAndSync(t *testing.T) {
	st := ExitStatus{Code: 3, ExitedAt: time.Date(2024, 5, 1, 10, 0, 0, 5, time.UTC)}
	got, err := ParseExitFile(AppendExitStatus(nil, st))
	if err != nil || !reflect.DeepEqual(got, st) {
		t.Errorf("exit file round trip: %+v, %v", got, err)
	}
	if _, err := ParseExitFile([]byte(`{"code":"x"}`)); err == nil {
		t.Error("bad exit file accepted")
	}
	m, err := ParseSync(AppendSync(nil, SyncMessage{Pid: 7}))
	if err != nil || m.Pid != 7 {
		t.Errorf("sync round trip: %+v, %v", m, err)
	}
	m, err = ParseSync(AppendSync(nil, SyncMessage{Error: `exec: "foo": executable file not found in $PATH`}))
	if err != nil || !strings.Contains(m.Error, `"foo"`) {
		t.Errorf("sync error round trip: %+v, %v", m, err)
	}
	if _, err := ParseSync([]byte(`{}`)); err == nil {
		t.Error("empty sync report accepted")
	}
}

// The fuzz targets feed the parsers what a confused or hostile peer could
// send: they must not panic, and what they accept must survive a round
// trip.

func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"op":"kill","signal":9,"all":true}`))
	f.Add([]byte(`{"op":"attach","stdin":true,"stdout":true}`))
	f.Add([]byte(`{"op":"resize","height":24,"width":80}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := ParseRequest(line)
		if err != nil {
			return
		}
		r2, err := ParseRequest(AppendRequest(nil, r))
		if err != nil || r2 != r {
			t.Fatalf("round trip of %+v: %+v, %v", r, r2, err)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	f.Add([]byte(`{"state":{"pid":1,"status":"running","exit":{"code":0,"exited_at":"2024-05-01T10:00:00Z"}}}`))
	f.Add([]byte(`{"error":"x","kind":"not_found"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := ParseResponse(line)
		if err != nil {
			return
		}
		r2, err := ParseResponse(AppendResponse(nil, r))
		if err != nil || r2.Error != r.Error || r2.Kind != r.Kind || (r2.State == nil) != (r.State == nil) || (r2.Exit == nil) != (r.Exit == nil) {
			t.Fatalf("round trip of %+v: %+v, %v", r, r2, err)
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	f.Add(AppendConfig(nil, Config{ID: "a", Bundle: "/b", RuntimeArgs: []string{"--root", "/r"}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		c2, err := ParseConfig(AppendConfig(nil, c))
		if err != nil || !reflect.DeepEqual(c2, c) && !(len(c.RuntimeArgs) == 0 && len(c2.RuntimeArgs) == 0) {
			t.Fatalf("round trip of %+v: %+v, %v", c, c2, err)
		}
		_ = c.Validate()
	})
}

func FuzzParseExitFile(f *testing.F) {
	f.Add([]byte(`{"code":137,"exited_at":"2024-05-01T10:00:00.5Z","signal":9,"oom_killed":true}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseExitFile(data)
		if err != nil {
			return
		}
		st2, err := ParseExitFile(AppendExitStatus(nil, st))
		if err != nil || st2.Code != st.Code || !st2.ExitedAt.Equal(st.ExitedAt) && st.ExitedAt.Year() >= 0 && st.ExitedAt.Year() < 10000 {
			t.Fatalf("round trip of %+v: %+v, %v", st, st2, err)
		}
	})
}

func FuzzParseSync(f *testing.F) {
	f.Add([]byte(`{"pid":42}`))
	f.Add([]byte(`{"error":"boom"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseSync(data)
	})
}
