package builder

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
)

// The commit queue runs jobs one at a time in the order they were added,
// and none after a failure (a record must not name a parent whose record
// was not written).
func TestCommitQueueOrderAndFailure(t *testing.T) {
	var q commitQueue
	var mu sync.Mutex
	var ran []int
	boom := errors.New("boom")
	running := 0
	for i := range 50 {
		q.add(context.Background(), func(context.Context) error {
			mu.Lock()
			running++
			if running != 1 {
				t.Errorf("job %d runs alongside another", i)
			}
			ran = append(ran, i)
			running--
			mu.Unlock()
			if i == 30 {
				return boom
			}
			return nil
		})
	}
	if err := q.wait(); !errors.Is(err, boom) {
		t.Fatalf("wait = %v, want the failure", err)
	}
	if len(ran) != 31 {
		t.Fatalf("ran %d jobs, want 31 (up to the failing one)", len(ran))
	}
	for i, n := range ran {
		if n != i {
			t.Fatalf("jobs ran in order %v", ran)
		}
	}
	// An empty queue and a nil stage have nothing to wait for.
	var empty commitQueue
	if err := empty.wait(); err != nil {
		t.Errorf("empty queue: %v", err)
	}
	var st *stageState
	if err := st.flush(); err != nil {
		t.Errorf("nil stage: %v", err)
	}
}

func TestNumericOwner(t *testing.T) {
	for s, want := range map[string]bool{
		"0": true, "12:34": true, "1000": true,
		"": false, "app": false, "12:app": false, "app:12": false, "12:": false, ":12": false, "1a": false, "-1": false,
		"99999999999999999999": false, "1:99999999999999999999": false, "4294967296": false, "2147483648": false, "+1": false,
	} {
		if got := numericOwner(s); got != want {
			t.Errorf("numericOwner(%q) = %v, want %v", s, got, want)
		}
	}
	for s, want := range map[string][2]int{"0": {0, 0}, "1000": {1000, 1000}, "12:34": {12, 34}, "2147483647:0": {2147483647, 0}} {
		if u, g, ok := numericChown(s); !ok || u != want[0] || g != want[1] {
			t.Errorf("numericChown(%q) = %d, %d, %v; want %v", s, u, g, ok, want)
		}
	}
}

// A --chown that is not IDs, with no stage to look names up in (a
// prefetch), is an error, never a crash: a 20-digit "ID" took the daemon
// down once.
func TestChownIDsWithoutStage(t *testing.T) {
	r := &run{}
	for _, spec := range []string{"99999999999999999999", "app", "1:99999999999999999999"} {
		if _, _, err := r.chownIDs(t.Context(), nil, spec); err == nil {
			t.Errorf("chownIDs(%q) without a stage: no error", spec)
		}
	}
}

// A panic in a queued job fails it and every job after it, and the
// daemon lives on.
func TestCommitQueuePanic(t *testing.T) {
	var q commitQueue
	ran := false
	q.add(t.Context(), func(context.Context) error { panic("boom") })
	q.add(t.Context(), func(context.Context) error { ran = true; return nil })
	if err := q.wait(); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("wait after a panicking job: %v", err)
	}
	if ran {
		t.Error("a job after a failed one ran")
	}
}
