package engine

import (
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/api"
	"github.com/containerd/errdefs"
)

func TestParsePruneUntil(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"2026-01-02", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)},
		{"2026-01-02T03:04:05Z", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		{"1700000000", time.Unix(1700000000, 0)},
		{"1700000000.5", time.Unix(1700000000, 500000000)},
	} {
		got, err := parsePruneUntil(tc.in)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("parsePruneUntil(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if got, err := parsePruneUntil("1h"); err != nil || got.After(now.Add(-time.Hour+time.Minute)) || got.Before(now.Add(-time.Hour-time.Minute)) {
		t.Errorf("parsePruneUntil(1h) = %v, %v; want an hour ago", got, err)
	}
	for _, bad := range []string{"", "yesterday", "1.5.6"} {
		if _, err := parsePruneUntil(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("parsePruneUntil(%q): %v, want invalid argument", bad, err)
		}
	}
	if _, err := untilFilter([]string{"1h", "2h"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("two until values: %v, want invalid argument", err)
	}
	if _, err := labelUntilFilters(api.Filters{"dangling": {"true"}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("a dangling filter on a container or network prune: %v, want invalid argument", err)
	}
	if u, err := labelUntilFilters(api.Filters{"label": {"a=b"}, "until": {"1700000000"}}); err != nil || !u.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("label and until: %v, %v", u, err)
	}
}
