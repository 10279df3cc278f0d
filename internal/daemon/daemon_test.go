package daemon

import (
	"log/slog"
	"strings"
	"testing"
)

func TestNetworkConfigBridgeFlag(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		bridge, wantErr string
	}{
		{"berth0", ""},
		{"none", "not supported"},
		{"a-name-longer-than-15", "at most 15 characters"},
	} {
		cfg, err := networkConfig(Options{Bridge: tc.bridge}, log)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("--bridge %s: %v", tc.bridge, err)
		case tc.wantErr == "" && cfg.DefaultBridge != tc.bridge:
			t.Errorf("--bridge %s: default bridge %q", tc.bridge, cfg.DefaultBridge)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("--bridge %s: error %v, want one containing %q", tc.bridge, err, tc.wantErr)
		}
	}
}
