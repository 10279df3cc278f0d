//go:build !(seccomp && berthseccompcache)

package main

import "github.com/opencontainers/runc/libcontainer/configs"

// seccompCacheEnabled says this build has the compiled-program cache: it
// needs the seccomp tag and the overlay the Makefile applies.
const seccompCacheEnabled = false

func ensureSeccompCache(*configs.Seccomp) error { return nil }

func preloadSeccomp() {}
