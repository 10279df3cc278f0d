package engine

import (
	"testing"

	"github.com/berth-engine/berth/internal/runtime"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestDirectDeleteState(t *testing.T) {
	berth := runtime.Runtime{Name: runtime.DefaultName, Args: []string{"--root", "/run/berth/runtime/berth"}}
	runc := runtime.Runtime{Name: "runc", Args: []string{"--root", "/run/berth/runtime/runc"}}
	spec := func(mut func(*specs.Spec)) *specs.Spec {
		s := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.MountNamespace}, {Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace, Path: "/run/berth/netns/x"},
		}}}
		if mut != nil {
			mut(s)
		}
		return s
	}
	if got := directDeleteState(berth, "abc", spec(nil)); got != "/run/berth/runtime/berth/abc" {
		t.Errorf("own pid namespace on berth's runtime: %q", got)
	}
	for name, tc := range map[string]struct {
		rt   runtime.Runtime
		spec *specs.Spec
	}{
		"another runtime": {runc, spec(nil)},
		"--pid=host": {berth, spec(func(s *specs.Spec) {
			s.Linux.Namespaces = s.Linux.Namespaces[:1]
		})},
		"--pid=container:x": {berth, spec(func(s *specs.Spec) {
			s.Linux.Namespaces[1].Path = "/proc/42/ns/pid"
		})},
		"hooks":     {berth, spec(func(s *specs.Spec) { s.Hooks = &specs.Hooks{} })},
		"intel rdt": {berth, spec(func(s *specs.Spec) { s.Linux.IntelRdt = &specs.LinuxIntelRdt{} })},
		"no linux":  {berth, &specs.Spec{}},
	} {
		if got := directDeleteState(tc.rt, "abc", tc.spec); got != "" {
			t.Errorf("%s: %q, want the runtime's delete", name, got)
		}
	}
}
