package wire

import (
	"errors"
	"fmt"
	"time"

	"github.com/berth-engine/berth/internal/logs/jsonlite"
)

// Health checks run in the shim, not the daemon: the daemon writes
// <Bundle>/health.json (a HealthConfig) and the probe's OCI process next
// to it before it spawns the shim; the shim runs the probe on its
// schedule through `<runtime> exec`, keeps the last results, sends a
// HealthNotice datagram to the daemon when the status changes, answers
// OpHealth with its HealthState, and writes that state to HealthStateFile
// when the container exits (the daemon keeps it for inspect).

// HealthConfigFile, HealthProcessFile and HealthStateFile are the health
// check's files in the bundle.
const (
	HealthConfigFile  = "health.json"
	HealthProcessFile = "health-process.json"
	HealthStateFile   = "health-state.json"
)

// OpHealth asks the shim for its HealthState; the reply line is the
// encoded state (or a Response with an error).
const OpHealth = "health"

// Health statuses, as docker names them.
const (
	HealthStarting  = "starting"
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
)

// MaxHealthLog is how many results the shim keeps (docker's 5), and
// MaxProbeOutput how much of a probe's output (docker's 4096 bytes).
const (
	MaxHealthLog   = 5
	MaxProbeOutput = 4096
)

// HealthConfig is docker's HealthConfig with the defaults applied, and
// where the probe's process and the daemon's notification socket are.
type HealthConfig struct {
	Process       string // OCI process JSON for `<runtime> exec --process`
	Interval      time.Duration
	Timeout       time.Duration
	StartPeriod   time.Duration
	StartInterval time.Duration
	Retries       int
	Notify        string // unixgram socket of the daemon; "" = none
}

// HealthResult is one probe's outcome (docker's HealthcheckResult).
type HealthResult struct {
	Start    time.Time
	End      time.Time
	ExitCode int
	Output   string
}

// HealthState is the shim's health record of its container.
type HealthState struct {
	Status        string
	FailingStreak int
	Log           []HealthResult
}

// HealthNotice is the datagram a shim sends the daemon when its
// container's health status changes.
type HealthNotice struct {
	ID            string
	Status        string
	FailingStreak int
}

// AppendHealthConfig encodes c as JSON.
func AppendHealthConfig(dst []byte, c HealthConfig) []byte {
	return jsonlite.NewObject(dst).String("process", c.Process).
		Int("interval", int64(c.Interval)).Int("timeout", int64(c.Timeout)).
		Int("start_period", int64(c.StartPeriod)).Int("start_interval", int64(c.StartInterval)).
		Int("retries", int64(c.Retries)).String("notify", c.Notify).End()
}

// ParseHealthConfig decodes and checks a health configuration.
func ParseHealthConfig(data []byte) (HealthConfig, error) {
	var c HealthConfig
	dur := func(v jsonlite.Value, dst *time.Duration) error {
		n, err := v.Int()
		if err == nil && n < 0 {
			err = errors.New("negative duration")
		}
		*dst = time.Duration(n)
		return err
	}
	err := jsonlite.Members(data, func(k string, v jsonlite.Value) error {
		var err error
		switch k {
		case "process":
			c.Process, err = v.Str()
		case "interval":
			err = dur(v, &c.Interval)
		case "timeout":
			err = dur(v, &c.Timeout)
		case "start_period":
			err = dur(v, &c.StartPeriod)
		case "start_interval":
			err = dur(v, &c.StartInterval)
		case "retries":
			c.Retries, err = intIn(v, 0, 1<<31-1)
		case "notify":
			c.Notify, err = v.Str()
		}
		return member(k, err)
	})
	if err != nil {
		return HealthConfig{}, fmt.Errorf("decode health config: %w", err)
	}
	switch {
	case c.Process == "" || c.Process[0] != '/':
		return c, fmt.Errorf("health config: process %q is not an absolute path", c.Process)
	case c.Interval <= 0 || c.Timeout <= 0 || c.StartInterval <= 0:
		return c, errors.New("health config: interval, timeout and start interval must be positive")
	case c.Retries < 1:
		return c, errors.New("health config: retries must be at least 1")
	case len(c.Notify) > MaxSocketPath:
		return c, fmt.Errorf("health config: socket path %q is too long", c.Notify)
	}
	return c, nil
}

// AppendHealthState encodes st as one line (newline included). Outputs
// are cut so that the line stays within MaxLine.
func AppendHealthState(dst []byte, st HealthState) []byte {
	for _, limit := range []int{MaxProbeOutput, 1024, 128} {
		line := appendHealthState(nil, st, limit)
		if len(line) < MaxLine || limit == 128 {
			return append(dst, line...)
		}
	}
	return dst
}

func appendHealthState(dst []byte, st HealthState, limit int) []byte {
	w := jsonlite.NewObject(dst).String("status", st.Status).Int("failing_streak", int64(st.FailingStreak))
	log := []byte{'['}
	for i, r := range st.Log {
		if i > 0 {
			log = append(log, ',')
		}
		out := r.Output
		if len(out) > limit {
			out = out[:limit]
		}
		log = jsonlite.NewObject(log).String("start", r.Start.UTC().Format(time.RFC3339Nano)).
			String("end", r.End.UTC().Format(time.RFC3339Nano)).Int("exit_code", int64(r.ExitCode)).
			String("output", out).End()
	}
	log = append(log, ']')
	return append(w.Raw("log", log).End(), '\n')
}

// ParseHealthState decodes a health state line (or file).
func ParseHealthState(data []byte) (HealthState, error) {
	var st HealthState
	tm := func(v jsonlite.Value, dst *time.Time) error {
		s, err := v.Str()
		if err == nil && s != "" {
			*dst, err = time.Parse(time.RFC3339Nano, s)
		}
		return err
	}
	err := jsonlite.Members(data, func(k string, v jsonlite.Value) error {
		var err error
		switch k {
		case "status":
			st.Status, err = v.Str()
		case "failing_streak":
			st.FailingStreak, err = intIn(v, 0, 1<<31-1)
		case "log":
			st.Log = nil
			err = v.Each(func(e jsonlite.Value) error {
				var r HealthResult
				err := e.Members(func(k string, v jsonlite.Value) error {
					var err error
					switch k {
					case "start":
						err = tm(v, &r.Start)
					case "end":
						err = tm(v, &r.End)
					case "exit_code":
						r.ExitCode, err = intIn(v, -1<<31, 1<<31-1)
					case "output":
						r.Output, err = v.Str()
					}
					return member(k, err)
				})
				st.Log = append(st.Log, r)
				return err
			})
		}
		return member(k, err)
	})
	if err != nil {
		return HealthState{}, fmt.Errorf("decode health state: %w", err)
	}
	switch st.Status {
	case HealthStarting, HealthHealthy, HealthUnhealthy:
	default:
		return HealthState{}, fmt.Errorf("decode health state: unknown status %q", st.Status)
	}
	return st, nil
}

// AppendHealthNotice encodes n as one datagram.
func AppendHealthNotice(dst []byte, n HealthNotice) []byte {
	return jsonlite.NewObject(dst).String("id", n.ID).String("status", n.Status).
		Int("failing_streak", int64(n.FailingStreak)).End()
}

// ParseHealthNotice decodes and checks one datagram.
func ParseHealthNotice(data []byte) (HealthNotice, error) {
	var n HealthNotice
	err := jsonlite.Members(data, func(k string, v jsonlite.Value) error {
		var err error
		switch k {
		case "id":
			n.ID, err = v.Str()
		case "status":
			n.Status, err = v.Str()
		case "failing_streak":
			n.FailingStreak, err = intIn(v, 0, 1<<31-1)
		}
		return member(k, err)
	})
	if err != nil {
		return HealthNotice{}, fmt.Errorf("decode health notice: %w", err)
	}
	switch {
	case n.ID == "":
		return n, errors.New("health notice: no container ID")
	case n.Status != HealthStarting && n.Status != HealthHealthy && n.Status != HealthUnhealthy:
		return n, fmt.Errorf("health notice: unknown status %q", n.Status)
	}
	return n, nil
}
