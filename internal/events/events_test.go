package events

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/moby/moby/api/types/events"
)

func msg(typ events.Type, action, id string, attrs map[string]string) Message {
	return Message{Type: typ, Action: events.Action(action), Actor: events.Actor{ID: id, Attributes: attrs}}
}

func TestFiltersMatch(t *testing.T) {
	ctr := msg(events.ContainerEventType, "exec_create: sh -c true", "abcdef0123", map[string]string{"name": "web", "image": "busybox:latest", "team": "a"})
	img := msg(events.ImageEventType, "tag", "sha256:1234", map[string]string{"name": "other:1"})
	for _, tc := range []struct {
		f    Filters
		m    Message
		want bool
	}{
		{Filters{}, ctr, true},
		{Filters{"type": {"container"}}, ctr, true},
		{Filters{"type": {"image"}}, ctr, false},
		{Filters{"event": {"exec_create"}}, ctr, true},
		{Filters{"event": {"die", "exec_create"}}, ctr, true},
		{Filters{"event": {"die"}}, ctr, false},
		{Filters{"container": {"web"}}, ctr, true},
		{Filters{"container": {"abcdef"}}, ctr, true},
		{Filters{"container": {"other"}}, ctr, false},
		{Filters{"container": {"web"}}, img, false},
		{Filters{"image": {"busybox"}}, ctr, true},
		{Filters{"image": {"busybox:latest"}}, ctr, true},
		{Filters{"image": {"other:1"}}, img, true},
		{Filters{"image": {"1234"}}, img, true},
		{Filters{"label": {"team"}}, ctr, true},
		{Filters{"label": {"team=a"}}, ctr, true},
		{Filters{"label": {"team=b"}}, ctr, false},
		{Filters{"type": {"container"}, "label": {"team=b"}}, ctr, false},
	} {
		if got := tc.f.Match(tc.m); got != tc.want {
			t.Errorf("%v on %s %s: %v, want %v", tc.f, tc.m.Type, tc.m.Action, got, tc.want)
		}
	}
	if err := (Filters{"bogus": {"x"}}).Validate(); err == nil || err.Error() != "invalid filter 'bogus'" {
		t.Errorf("Validate: %v", err)
	}
}

func TestBusHistoryLogAndSubscribe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.log")
	b, err := New(Options{LogPath: path, History: 3, MaxLogSize: 400})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	past, live := b.Subscribe(ctx, time.Time{}, time.Time{}, Filters{"event": {"start"}}.Match)
	if len(past) != 0 || live == nil {
		t.Fatalf("fresh subscription: %v %v", past, live)
	}
	for _, a := range []string{"create", "start", "die", "destroy"} {
		b.Publish(msg(events.ContainerEventType, a, "c1", nil))
	}
	if m := <-live; m.Action != "start" || m.Scope != "local" || m.TimeNano == 0 {
		t.Fatalf("live event: %+v", m)
	}
	cancel()
	if _, ok := <-live; ok {
		t.Fatal("channel open after cancel")
	}
	// The history is bounded (3), oldest first.
	past, _ = b.Subscribe(context.Background(), start.Add(-time.Second), time.Now(), nil)
	if len(past) != 3 || past[0].Action != "start" || past[2].Action != "destroy" {
		t.Fatalf("history: %+v", past)
	}
	// The on-disk log (rotated at 400 bytes, one old file kept) reloads.
	b.Close()
	b2, err := New(Options{LogPath: path, History: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	past, _ = b2.Subscribe(context.Background(), start.Add(-time.Second), time.Now(), nil)
	if len(past) < 2 || past[len(past)-1].Action != "destroy" {
		t.Fatalf("reloaded history: %+v", past)
	}
	// A nil bus drops everything.
	var nb *Bus
	nb.Publish(msg(events.ContainerEventType, "x", "y", nil))
	if p, l := nb.Subscribe(context.Background(), time.Time{}, time.Time{}, nil); p != nil || l != nil {
		t.Fatal("nil bus subscription")
	}
}
