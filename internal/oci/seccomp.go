package oci

import (
	"fmt"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// seccompProfile returns the seccomp filter for a container whose process
// (capabilities included) s already describes: docker's default profile
// for "", whose rules depend on the capabilities (clone/unshare of
// namespaces, mount, bpf, … only with CAP_SYS_ADMIN and friends); none for
// "unconfined"; otherwise the profile JSON given, in docker's format.
func seccompProfile(profile string, s *specs.Spec) (*specs.LinuxSeccomp, error) {
	switch profile {
	case "":
		p, err := seccomp.GetDefaultProfile(s)
		if err != nil {
			return nil, fmt.Errorf("default seccomp profile: %w", err)
		}
		return p, nil
	case "unconfined":
		return nil, nil
	}
	p, err := seccomp.LoadProfile(profile, s)
	if err != nil {
		return nil, fmt.Errorf("loading seccomp profile failed: %w", err)
	}
	return p, nil
}
