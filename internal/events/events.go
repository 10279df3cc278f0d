// Package events is the daemon's event bus: every lifecycle event
// (container create/start/die…, image tag/delete…, exec, health) is
// published here, kept in a bounded in-memory history backed by a bounded
// on-disk log (so `events --since` reaches back across daemon restarts),
// and fanned out to subscribers (GET /events).
package events

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/events"
)

// Message is docker's event message.
type Message = events.Message

const (
	// DefaultHistory is how many past events are kept in memory.
	DefaultHistory = 4096
	// DefaultMaxLogSize is the size at which the on-disk log is rotated;
	// one rotated file is kept.
	DefaultMaxLogSize = 4 << 20
	// subscriberBuffer is how far a subscriber may fall behind before it
	// is dropped (its channel closed), as dockerd does with slow readers.
	subscriberBuffer = 1024
)

// Options configure a Bus.
type Options struct {
	// LogPath is the on-disk log ("" = memory only).
	LogPath    string
	History    int   // 0 = DefaultHistory
	MaxLogSize int64 // 0 = DefaultMaxLogSize
	Logger     *slog.Logger
}

// Bus publishes events. The zero value is not usable; a nil *Bus drops
// everything, so callers need no checks.
type Bus struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	history []Message // ring, oldest at head
	head    int
	n       int
	subs    map[*subscriber]struct{}
	f       *os.File
	size    int64
}

type subscriber struct {
	ch    chan Message
	match func(Message) bool
}

// New opens the bus, loading the recorded history from the log.
func New(opts Options) (*Bus, error) {
	if opts.History <= 0 {
		opts.History = DefaultHistory
	}
	if opts.MaxLogSize <= 0 {
		opts.MaxLogSize = DefaultMaxLogSize
	}
	b := &Bus{opts: opts, log: opts.Logger, history: make([]Message, opts.History), subs: map[*subscriber]struct{}{}}
	if b.log == nil {
		b.log = slog.Default()
	}
	if opts.LogPath == "" {
		return b, nil
	}
	for _, p := range []string{opts.LogPath + ".1", opts.LogPath} {
		b.load(p)
	}
	f, err := os.OpenFile(opts.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err == nil {
		b.size = fi.Size()
	}
	b.f = f
	return b, nil
}

// load appends the events recorded in path to the history; bad lines (a
// crash mid-write) are skipped.
func (b *Bus) load(path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m Message
		if json.Unmarshal(sc.Bytes(), &m) == nil && m.TimeNano != 0 {
			b.push(m)
		}
	}
}

func (b *Bus) push(m Message) {
	size := len(b.history)
	if b.n < size {
		b.history[(b.head+b.n)%size] = m
		b.n++
		return
	}
	b.history[b.head] = m
	b.head = (b.head + 1) % size
}

// Close closes the on-disk log.
func (b *Bus) Close() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		close(s.ch)
		delete(b.subs, s)
	}
	if b.f != nil {
		err := b.f.Close()
		b.f = nil
		return err
	}
	return nil
}

// Publish records m (stamping its time and scope if unset) and sends it to
// the subscribers.
func (b *Bus) Publish(m Message) {
	if b == nil {
		return
	}
	if m.TimeNano == 0 {
		now := time.Now()
		m.Time, m.TimeNano = now.Unix(), now.UnixNano()
	}
	if m.Scope == "" {
		m.Scope = "local"
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.push(m)
	b.write(m)
	for s := range b.subs {
		if s.match != nil && !s.match(m) {
			continue
		}
		select {
		case s.ch <- m:
		default:
			b.log.Warn("event subscriber too slow; dropping it")
			close(s.ch)
			delete(b.subs, s)
		}
	}
}

// write appends m to the log, rotating it when it is full.
func (b *Bus) write(m Message) {
	if b.f == nil {
		return
	}
	line, err := json.Marshal(m)
	if err != nil {
		return
	}
	line = append(line, '\n')
	if b.size+int64(len(line)) > b.opts.MaxLogSize {
		b.f.Close()
		b.f = nil
		if err := os.Rename(b.opts.LogPath, b.opts.LogPath+".1"); err != nil {
			b.log.Warn("rotate event log", "err", err)
		}
		f, err := os.OpenFile(b.opts.LogPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o600)
		if err != nil {
			b.log.Warn("reopen event log", "err", err)
			return
		}
		b.f, b.size = f, 0
	}
	n, err := b.f.Write(line)
	b.size += int64(n)
	if err != nil {
		b.log.Warn("write event log", "err", err)
	}
}

// Subscribe returns the recorded events in [since, until] that match
// (oldest first) and, unless until is in the past, a channel of the new
// ones that match. The channel is closed when ctx ends, the bus closes, or
// the subscriber falls too far behind.
func (b *Bus) Subscribe(ctx context.Context, since, until time.Time, match func(Message) bool) ([]Message, <-chan Message) {
	if b == nil {
		return nil, nil
	}
	in := func(m Message) bool {
		t := time.Unix(0, m.TimeNano)
		if !since.IsZero() && t.Before(since) {
			return false
		}
		if !until.IsZero() && t.After(until) {
			return false
		}
		return match == nil || match(m)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var past []Message
	if !since.IsZero() || !until.IsZero() {
		size := len(b.history)
		for i := 0; i < b.n; i++ {
			if m := b.history[(b.head+i)%size]; in(m) {
				past = append(past, m)
			}
		}
	}
	if !until.IsZero() && !until.After(time.Now()) {
		return past, nil
	}
	s := &subscriber{ch: make(chan Message, subscriberBuffer), match: match}
	b.subs[s] = struct{}{}
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if _, ok := b.subs[s]; ok {
			close(s.ch)
			delete(b.subs, s)
		}
	})
	return past, s.ch
}

// Filters are the "filters" of GET /events: term → accepted values.
type Filters map[string][]string

// Validate checks the filter terms docker accepts for events.
func (f Filters) Validate() error {
	for k := range f {
		switch k {
		case "container", "image", "event", "type", "label", "daemon", "network", "volume", "plugin", "scope", "node", "service", "secret", "config":
		default:
			return &InvalidFilterError{Term: k}
		}
	}
	return nil
}

// InvalidFilterError is an unknown filter term.
type InvalidFilterError struct{ Term string }

func (e *InvalidFilterError) Error() string { return "invalid filter '" + e.Term + "'" }

// Match reports whether m passes the filters, with docker's rules: every
// term must match one of its values.
func (f Filters) Match(m Message) bool {
	any := func(term string, ok func(v string) bool) bool {
		vals, set := f[term]
		if !set || len(vals) == 0 {
			return true
		}
		for _, v := range vals {
			if ok(v) {
				return true
			}
		}
		return false
	}
	attrs := m.Actor.Attributes
	action := string(m.Action)
	if i := strings.IndexByte(action, ':'); i >= 0 {
		action = action[:i]
	}
	return any("type", func(v string) bool { return string(m.Type) == v }) &&
		any("event", func(v string) bool { return v == action || v == string(m.Action) }) &&
		any("scope", func(v string) bool { return v == m.Scope }) &&
		any("container", func(v string) bool {
			return m.Type == events.ContainerEventType && (v == attrs["name"] || strings.HasPrefix(m.Actor.ID, v) && v != "")
		}) &&
		any("image", func(v string) bool {
			if m.Type == events.ImageEventType {
				return v == m.Actor.ID || v == attrs["name"] || strings.TrimPrefix(m.Actor.ID, "sha256:") == v
			}
			return v == attrs["image"] || stripTag(attrs["image"]) == v
		}) &&
		any("label", func(v string) bool {
			k, val, hasVal := strings.Cut(v, "=")
			got, ok := attrs[k]
			return ok && (!hasVal || got == val)
		}) &&
		any("daemon", func(v string) bool {
			return m.Type == events.DaemonEventType && (v == m.Actor.ID || v == attrs["name"])
		}) &&
		any("network", func(v string) bool {
			return m.Type == events.NetworkEventType && (v == m.Actor.ID || v == attrs["name"])
		}) &&
		any("volume", func(v string) bool {
			return m.Type == events.VolumeEventType && (v == m.Actor.ID || v == attrs["name"])
		})
}

// stripTag drops a ":tag" (not a registry port) from an image reference.
func stripTag(ref string) string {
	i := strings.LastIndexByte(ref, ':')
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ref
	}
	return ref[:i]
}
