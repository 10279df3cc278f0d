package engine

import (
	"reflect"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/container"
	containertypes "github.com/moby/moby/api/types/container"
)

func TestParsePSOutput(t *testing.T) {
	out := []byte("UID   PID  PPID  C STIME TTY  TIME     CMD\nroot  10   1     0 10:00 ?    00:00:00 sleep 1000\nroot  11   10    0 10:00 ?    00:00:00 sh -c echo a b\nroot  99   1     0 10:00 ?    00:00:00 other\n")
	r, err := parsePSOutput(out, []int{10, 11})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"root", "10", "1", "0", "10:00", "?", "00:00:00", "sleep 1000"},
		{"root", "11", "10", "0", "10:00", "?", "00:00:00", "sh -c echo a b"},
	}
	if !reflect.DeepEqual(r.Processes, want) || len(r.Titles) != 8 {
		t.Fatalf("parsed: %q %q", r.Titles, r.Processes)
	}
	if _, err := parsePSOutput([]byte("USER COMMAND\nroot sleep\n"), nil); err == nil {
		t.Fatal("no PID column accepted")
	}
}

func TestProbeCommand(t *testing.T) {
	for _, tc := range []struct {
		test []string
		want []string
	}{
		{nil, nil},
		{[]string{"NONE"}, nil},
		{[]string{"CMD"}, nil},
		{[]string{"CMD", "true", "x"}, []string{"true", "x"}},
		{[]string{"CMD-SHELL", "curl -f localhost"}, []string{"/bin/sh", "-c", "curl -f localhost"}},
	} {
		if got := probeCommand(&containertypes.HealthConfig{Test: tc.test}); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.test, got, tc.want)
		}
	}
}

func TestShouldRestart(t *testing.T) {
	s := &ContainerService{}
	mk := func(policy string, max, code, count int, byUser bool) *container.Container {
		return &container.Container{
			ID:           "c",
			HostConfig:   &containertypes.HostConfig{RestartPolicy: containertypes.RestartPolicy{Name: containertypes.RestartPolicyMode(policy), MaximumRetryCount: max}},
			State:        container.State{ExitCode: code, StoppedByUser: byUser},
			RestartCount: count,
		}
	}
	for _, tc := range []struct {
		c    *container.Container
		want bool
	}{
		{mk("no", 0, 1, 0, false), false},
		{mk("", 0, 1, 0, false), false},
		{mk("always", 0, 0, 0, false), true},
		{mk("always", 0, 0, 0, true), false},
		{mk("unless-stopped", 0, 0, 0, false), true},
		{mk("unless-stopped", 0, 0, 0, true), false},
		{mk("on-failure", 0, 0, 0, false), false},
		{mk("on-failure", 0, 1, 100, false), true},
		{mk("on-failure", 2, 1, 1, false), true},
		{mk("on-failure", 2, 1, 2, false), false},
	} {
		if got, _ := s.shouldRestart(tc.c, 0); got != tc.want {
			t.Errorf("%+v %+v: %v", tc.c.HostConfig.RestartPolicy, tc.c.State, got)
		}
	}
	// Back-off: 100ms doubling to a minute, reset by a 10s run.
	c := mk("always", 0, 0, 0, false)
	c.ID = "fresh"
	var delays []time.Duration
	for range 12 {
		_, d := s.shouldRestart(c, time.Second)
		delays = append(delays, d)
	}
	if delays[0] != 100*time.Millisecond || delays[1] != 200*time.Millisecond || delays[11] != time.Minute {
		t.Fatalf("back-off: %v", delays)
	}
	if _, d := s.shouldRestart(c, 10*time.Second); d != 100*time.Millisecond {
		t.Fatalf("back-off after a long run: %v", d)
	}
}

func TestReplaceOrAppendEnv(t *testing.T) {
	got := replaceOrAppendEnv([]string{"PATH=/bin", "A=1"}, []string{"A=2", "B=3"})
	if !reflect.DeepEqual(got, []string{"PATH=/bin", "A=2", "B=3"}) {
		t.Fatalf("env: %q", got)
	}
}

func TestValidateHealthcheck(t *testing.T) {
	if err := validateHealthcheck(&containertypes.HealthConfig{Interval: time.Microsecond}); err == nil {
		t.Fatal("1µs interval accepted")
	}
	if err := validateHealthcheck(&containertypes.HealthConfig{Retries: -1}); err == nil {
		t.Fatal("negative retries accepted")
	}
	if err := validateHealthcheck(&containertypes.HealthConfig{Interval: time.Second, Retries: 3}); err != nil {
		t.Fatal(err)
	}
}
