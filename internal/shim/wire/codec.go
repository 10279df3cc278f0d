package wire

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/berth-engine/berth/internal/logs/jsonlite"
)

// The codecs are written out by hand over jsonlite: encoding/json's type
// caches cost every shim tens of KiB (measured), and these few flat
// objects do not need it. Unknown members are ignored, so that either side
// can learn new ones first; members of the wrong type are errors.

// AppendConfig encodes c as JSON.
func AppendConfig(dst []byte, c Config) []byte {
	w := jsonlite.NewObject(dst)
	w.String("id", c.ID).String("bundle", c.Bundle).String("runtime", c.Runtime)
	w.Strings("runtime_args", c.RuntimeArgs).String("socket", c.Socket).String("exit_file", c.ExitFile)
	w.String("log_path", c.LogPath).Int("log_max_size", c.LogMaxSize).Int("log_max_files", int64(c.LogMaxFiles))
	w.Bool("log_non_blocking", c.LogNonBlocking)
	w.Bool("stdin", c.Stdin).Bool("stdin_once", c.StdinOnce).Bool("tty", c.Tty)
	w.Int("console_height", int64(c.ConsoleHeight)).Int("console_width", int64(c.ConsoleWidth))
	if c.RuntimeState != "" {
		w.String("runtime_state", c.RuntimeState)
	}
	return w.End()
}

// ParseConfig decodes a shim configuration (it does not validate it).
func ParseConfig(data []byte) (Config, error) {
	var c Config
	err := jsonlite.Members(data, func(k string, v jsonlite.Value) error {
		var err error
		switch k {
		case "id":
			c.ID, err = v.Str()
		case "bundle":
			c.Bundle, err = v.Str()
		case "runtime":
			c.Runtime, err = v.Str()
		case "runtime_args":
			c.RuntimeArgs = nil
			err = v.Each(func(e jsonlite.Value) error {
				s, err := e.Str()
				c.RuntimeArgs = append(c.RuntimeArgs, s)
				return err
			})
		case "socket":
			c.Socket, err = v.Str()
		case "exit_file":
			c.ExitFile, err = v.Str()
		case "log_path":
			c.LogPath, err = v.Str()
		case "log_max_size":
			c.LogMaxSize, err = v.Int()
		case "log_max_files":
			c.LogMaxFiles, err = intIn(v, 0, 1<<20)
		case "log_non_blocking":
			c.LogNonBlocking, err = v.Bool()
		case "stdin":
			c.Stdin, err = v.Bool()
		case "stdin_once":
			c.StdinOnce, err = v.Bool()
		case "tty":
			c.Tty, err = v.Bool()
		case "console_height":
			c.ConsoleHeight, err = uint16Of(v)
		case "console_width":
			c.ConsoleWidth, err = uint16Of(v)
		case "runtime_state":
			c.RuntimeState, err = v.Str()
		}
		return member(k, err)
	})
	if err != nil {
		return Config{}, fmt.Errorf("decode shim config: %w", err)
	}
	return c, nil
}

// AppendRequest encodes r as one line (newline included).
func AppendRequest(dst []byte, r Request) []byte {
	w := jsonlite.NewObject(dst).String("op", r.Op)
	if r.Signal != 0 {
		w.Int("signal", int64(r.Signal))
	}
	if r.All {
		w.Bool("all", true)
	}
	if r.Stdin {
		w.Bool("stdin", true)
	}
	if r.Stdout {
		w.Bool("stdout", true)
	}
	if r.Stderr {
		w.Bool("stderr", true)
	}
	if r.Height != 0 || r.Width != 0 {
		w.Int("height", int64(r.Height)).Int("width", int64(r.Width))
	}
	return append(w.End(), '\n')
}

// ParseRequest decodes and checks one request line.
func ParseRequest(line []byte) (Request, error) {
	var r Request
	line = bytes.TrimSpace(line)
	if len(line) > MaxLine {
		return r, errors.New("request too long")
	}
	err := jsonlite.Members(line, func(k string, v jsonlite.Value) error {
		var err error
		switch k {
		case "op":
			r.Op, err = v.Str()
		case "signal":
			r.Signal, err = intIn(v, 0, 1<<16)
		case "all":
			r.All, err = v.Bool()
		case "stdin":
			r.Stdin, err = v.Bool()
		case "stdout":
			r.Stdout, err = v.Bool()
		case "stderr":
			r.Stderr, err = v.Bool()
		case "height":
			r.Height, err = uint16Of(v)
		case "width":
			r.Width, err = uint16Of(v)
		}
		return member(k, err)
	})
	if err != nil {
		return Request{}, fmt.Errorf("decode request: %w", err)
	}
	switch r.Op {
	case OpStart, OpWait, OpAttach, OpState, OpHealth:
	case OpKill:
		if r.Signal <= 0 || r.Signal > 64 {
			return r, fmt.Errorf("invalid signal %d", r.Signal)
		}
	case OpResize:
		if r.Height == 0 || r.Width == 0 {
			return r, fmt.Errorf("invalid console size %dx%d", r.Height, r.Width)
		}
	default:
		return r, fmt.Errorf("unknown operation %q", r.Op)
	}
	return r, nil
}

// AppendResponse encodes r as one line (newline included).
func AppendResponse(dst []byte, r Response) []byte {
	w := jsonlite.NewObject(dst)
	if r.Error != "" {
		w.String("error", r.Error)
	}
	if r.Kind != "" {
		w.String("kind", r.Kind)
	}
	if r.State != nil {
		sw := jsonlite.NewObject(nil).Int("pid", int64(r.State.Pid)).String("status", r.State.Status)
		if r.State.Exit != nil {
			sw.Raw("exit", AppendExitStatus(nil, *r.State.Exit))
		}
		w.Raw("state", sw.End())
	}
	if r.Exit != nil {
		w.Raw("exit", AppendExitStatus(nil, *r.Exit))
	}
	return append(w.End(), '\n')
}

// ParseResponse decodes one response line.
func ParseResponse(line []byte) (Response, error) {
	var r Response
	if len(line) > MaxLine {
		return r, errors.New("response too long")
	}
	err := jsonlite.Members(line, func(k string, v jsonlite.Value) error {
		var err error
		switch k {
		case "error":
			r.Error, err = v.Str()
		case "kind":
			r.Kind, err = v.Str()
		case "state":
			if v.Kind() == jsonlite.Null {
				return nil
			}
			st := &State{}
			err = v.Members(func(k string, v jsonlite.Value) error {
				var err error
				switch k {
				case "pid":
					st.Pid, err = intIn(v, 0, 1<<31-1)
				case "status":
					st.Status, err = v.Str()
				case "exit":
					st.Exit, err = exitOf(v)
				}
				return member(k, err)
			})
			r.State = st
		case "exit":
			r.Exit, err = exitOf(v)
		}
		return member(k, err)
	})
	if err != nil {
		return Response{}, fmt.Errorf("decode shim response: %w", err)
	}
	return r, nil
}

// AppendExitStatus encodes st; it is also the exit file's content.
func AppendExitStatus(dst []byte, st ExitStatus) []byte {
	w := jsonlite.NewObject(dst).Int("code", int64(st.Code))
	w.String("exited_at", st.ExitedAt.UTC().Format(time.RFC3339Nano))
	if st.Signal != 0 {
		w.Int("signal", int64(st.Signal))
	}
	if st.OOMKilled {
		w.Bool("oom_killed", true)
	}
	if st.Error != "" {
		w.String("error", st.Error)
	}
	return w.End()
}

// ParseExitFile decodes the content of an exit file.
func ParseExitFile(data []byte) (ExitStatus, error) {
	var st ExitStatus
	err := jsonlite.Members(data, func(k string, v jsonlite.Value) error {
		return member(k, exitMember(&st, k, v))
	})
	if err != nil {
		return ExitStatus{}, fmt.Errorf("decode exit file: %w", err)
	}
	return st, nil
}

func exitOf(v jsonlite.Value) (*ExitStatus, error) {
	if v.Kind() == jsonlite.Null {
		return nil, nil
	}
	st := &ExitStatus{}
	err := v.Members(func(k string, v jsonlite.Value) error {
		return member(k, exitMember(st, k, v))
	})
	return st, err
}

func exitMember(st *ExitStatus, k string, v jsonlite.Value) error {
	var err error
	switch k {
	case "code":
		st.Code, err = intIn(v, -1<<31, 1<<31-1)
	case "exited_at":
		var s string
		if s, err = v.Str(); err == nil && s != "" {
			st.ExitedAt, err = time.Parse(time.RFC3339Nano, s)
		}
	case "signal":
		st.Signal, err = intIn(v, 0, 1<<16)
	case "oom_killed":
		st.OOMKilled, err = v.Bool()
	case "error":
		st.Error, err = v.Str()
	}
	return err
}

// AppendSync encodes the sync report as one line.
func AppendSync(dst []byte, m SyncMessage) []byte {
	w := jsonlite.NewObject(dst)
	if m.Pid != 0 {
		w.Int("pid", int64(m.Pid))
	}
	if m.Error != "" {
		w.String("error", m.Error)
	}
	return append(w.End(), '\n')
}

// ParseSync decodes the sync pipe's message.
func ParseSync(line []byte) (SyncMessage, error) {
	var m SyncMessage
	err := jsonlite.Members(bytes.TrimSpace(line), func(k string, v jsonlite.Value) error {
		var err error
		switch k {
		case "pid":
			m.Pid, err = intIn(v, 0, 1<<31-1)
		case "error":
			m.Error, err = v.Str()
		}
		return member(k, err)
	})
	if err != nil {
		return SyncMessage{}, fmt.Errorf("decode shim report %q: %w", truncate(line, 200), err)
	}
	if m.Error == "" && m.Pid <= 0 {
		return m, fmt.Errorf("shim reported neither a pid nor an error: %q", truncate(line, 200))
	}
	return m, nil
}

func member(k string, err error) error {
	if err != nil {
		return fmt.Errorf("member %q: %w", k, err)
	}
	return nil
}

// intIn decodes an integer within [lo, hi].
func intIn(v jsonlite.Value, lo, hi int64) (int, error) {
	n, err := v.Int()
	if err != nil {
		return 0, err
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%d out of range", n)
	}
	return int(n), nil
}

func uint16Of(v jsonlite.Value) (uint16, error) {
	n, err := intIn(v, 0, 1<<16-1)
	return uint16(n), err
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
