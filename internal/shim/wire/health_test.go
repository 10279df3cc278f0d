package wire

import (
	"strings"
	"testing"
	"time"
)

func TestHealthConfigRoundTrip(t *testing.T) {
	in := HealthConfig{Process: "/b/health-process.json", Interval: time.Second, Timeout: 2 * time.Second,
		StartPeriod: 3 * time.Second, StartInterval: 5 * time.Second, Retries: 3, Notify: "/run/berth/health.sock"}
	out, err := ParseHealthConfig(AppendHealthConfig(nil, in))
	if err != nil || out != in {
		t.Fatalf("round trip: %+v %v", out, err)
	}
	for name, bad := range map[string]string{
		"relative process": `{"process":"p","interval":1,"timeout":1,"start_interval":1,"retries":1}`,
		"zero interval":    `{"process":"/p","interval":0,"timeout":1,"start_interval":1,"retries":1}`,
		"negative":         `{"process":"/p","interval":1,"timeout":-1,"start_interval":1,"retries":1}`,
		"no retries":       `{"process":"/p","interval":1,"timeout":1,"start_interval":1,"retries":0}`,
		"wrong type":       `{"process":"/p","interval":"1s","timeout":1,"start_interval":1,"retries":1}`,
		"long socket":      `{"process":"/p","interval":1,"timeout":1,"start_interval":1,"retries":1,"notify":"/` + strings.Repeat("x", 120) + `"}`,
	} {
		if _, err := ParseHealthConfig([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestHealthStateRoundTrip(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	in := HealthState{Status: HealthUnhealthy, FailingStreak: 4, Log: []HealthResult{
		{Start: t0, End: t0.Add(time.Millisecond), ExitCode: 1, Output: "no\n\"quoted\"\x01"},
		{Start: t0, End: t0, ExitCode: -1, Output: ""},
	}}
	line := AppendHealthState(nil, in)
	if line[len(line)-1] != '\n' {
		t.Fatalf("no newline: %q", line)
	}
	out, err := ParseHealthState(line)
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != in.Status || out.FailingStreak != 4 || len(out.Log) != 2 || out.Log[0] != in.Log[0] || out.Log[1] != in.Log[1] {
		t.Fatalf("round trip: %+v", out)
	}
	// The reply must fit a line even when every output is full of bytes
	// that JSON escapes six-fold.
	big := HealthState{Status: HealthHealthy}
	for range MaxHealthLog {
		big.Log = append(big.Log, HealthResult{Output: strings.Repeat("\x01", MaxProbeOutput)})
	}
	line = AppendHealthState(nil, big)
	if len(line) >= MaxLine {
		t.Fatalf("line of %d bytes", len(line))
	}
	if out, err := ParseHealthState(line); err != nil || len(out.Log) != MaxHealthLog || out.Log[0].Output == "" {
		t.Fatalf("big state: %v", err)
	}
	if _, err := ParseHealthState([]byte(`{"status":"sick"}`)); err == nil {
		t.Fatal("unknown status accepted")
	}
}

func TestHealthNotice(t *testing.T) {
	in := HealthNotice{ID: "abc", Status: HealthHealthy, FailingStreak: 0}
	out, err := ParseHealthNotice(AppendHealthNotice(nil, in))
	if err != nil || out != in {
		t.Fatalf("round trip: %+v %v", out, err)
	}
	for _, bad := range []string{`{"status":"healthy"}`, `{"id":"a","status":"ok"}`, `{"id":1}`, `[`} {
		if _, err := ParseHealthNotice([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func FuzzParseHealthState(f *testing.F) {
	f.Add(AppendHealthState(nil, HealthState{Status: HealthStarting, Log: []HealthResult{{Output: "x"}}}))
	f.Add([]byte(`{"status":"healthy","log":[{"exit_code":-1}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseHealthState(data)
		if err != nil {
			return
		}
		// What parses re-encodes to something that parses the same.
		again, err := ParseHealthState(AppendHealthState(nil, st))
		if err != nil || again.Status != st.Status || len(again.Log) != len(st.Log) {
			t.Fatalf("re-encode: %+v → %+v (%v)", st, again, err)
		}
	})
}

func FuzzParseHealthNotice(f *testing.F) {
	f.Add(AppendHealthNotice(nil, HealthNotice{ID: "x", Status: HealthUnhealthy, FailingStreak: 3}))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := ParseHealthNotice(data)
		if err != nil {
			return
		}
		if again, err := ParseHealthNotice(AppendHealthNotice(nil, n)); err != nil || again != n {
			t.Fatalf("re-encode: %+v → %+v (%v)", n, again, err)
		}
	})
}
