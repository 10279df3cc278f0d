package main

import (
	"io/fs"
	"syscall"
)

const (
	// seccompCacheDir holds compiled seccomp programs, by configuration
	// hash. A fixed path: the container's init must find it before it
	// knows anything about its container.
	seccompCacheDir = "/run/berth-runtime/seccomp"
	// maxSeccompCache bounds the cache (every init reads all of it).
	maxSeccompCache = 32
	// maxSeccompProgram is the largest program accepted (BPF_MAXINSNS
	// instructions of 8 bytes, and the flags).
	maxSeccompProgram = 8 + 8*4096
)

func ownedByRoot(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == 0
}
