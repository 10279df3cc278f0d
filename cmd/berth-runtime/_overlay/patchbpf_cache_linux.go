//go:build cgo && seccomp

// This file is added to runc's libcontainer/seccomp/patchbpf package by
// berth-runtime's build (go build -overlay, see the Makefile): it exposes
// PatchAndLoad's two halves, compiling and loading, so that a compiled
// program can be cached and loaded later.

package patchbpf

import (
	"errors"
	"fmt"

	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"

	"github.com/opencontainers/runc/libcontainer/configs"
)

// Compile returns the patched program and the seccomp(2) flags that
// PatchAndLoad would load for filter.
func Compile(config *configs.Seccomp, filter *libseccomp.ScmpFilter) ([]unix.SockFilter, uint, error) {
	prog, err := enosysPatchFilter(config, filter)
	if err != nil {
		return nil, 0, fmt.Errorf("error patching filter: %w", err)
	}
	flags, noNewPrivs, err := filterFlags(config, filter)
	if err != nil {
		return nil, 0, fmt.Errorf("unable to fetch seccomp filter flags: %w", err)
	}
	if noNewPrivs {
		// runc always clears the filter's bit; a cached program never sets it.
		return nil, 0, errors.New("seccomp filter with no_new_privs bit cannot be cached")
	}
	return prog, flags, nil
}

// Load loads a compiled program into the kernel for the current process.
func Load(flags uint, prog []unix.SockFilter) (int, error) {
	if len(prog) == 0 {
		return -1, errors.New("empty seccomp program")
	}
	return sysSeccompSetFilter(flags, prog)
}
