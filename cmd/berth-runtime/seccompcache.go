//go:build seccomp && berthseccompcache

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/seccomp"
)

const (
	// seccompCacheDir holds compiled seccomp programs, by configuration
	// hash, which `create` reads and writes. A fixed path: shared by every
	// daemon's runtime.
	seccompCacheDir = "/run/berth-runtime/seccomp"
	// maxSeccompCache bounds the cache, which `create` reads and writes.
	maxSeccompCache = 32
	// maxSeccompProgram is the largest program accepted (BPF_MAXINSNS
	// instructions of 8 bytes, and the flags).
	maxSeccompProgram = 8 + 8*4096
)

func ownedByRoot(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == 0
}

// trustedCacheDir tells whether the cache may be read: a program from it
// becomes a container's filter, so only a root-owned directory nobody
// else can write is trusted. One that does not exist yet is created
// below as root's, 0700.
func trustedCacheDir() bool {
	fi, err := os.Lstat(seccompCacheDir)
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	return err == nil && fi.IsDir() && fi.Mode().Perm()&0o022 == 0 && ownedByRoot(fi)
}

// ensureSeccompCache compiles config's seccomp filter into the cache
// unless it is there already: libseccomp's compiler (~17 ms for docker's
// profile) then runs once per distinct profile, not once per container
// start. The program goes into config itself (BerthProgram), which
// libcontainer stores with the container and sends to its init and to
// the init of every exec, which load it as is (an exec's init already
// sees only the container's filesystem, so the program must travel). A
// cache that cannot be written only costs time.
func ensureSeccompCache(config *configs.Seccomp) error {
	if config != nil && len(config.BerthProgram) > 0 {
		// An exec of a container whose create compiled the program: the
		// container's state (root's, in the runtime's root) carries it,
		// and no longer the rules it came from (stripSeccompRules), so a
		// bad one is an error, never a reason to compile those again.
		if len(config.BerthProgram) > maxSeccompProgram {
			return errors.New("the container's compiled seccomp program is too large")
		}
		if _, err := seccomp.UnmarshalProgram(config.BerthProgram); err != nil {
			return fmt.Errorf("the container's compiled seccomp program: %w", err)
		}
		return nil
	}
	key := seccomp.CacheKey(config)
	if key == "" {
		return nil
	}
	path := filepath.Join(seccompCacheDir, key)
	if !trustedCacheDir() {
		path = "" // compiled below, and the cache left alone
	} else if b, err := os.ReadFile(path); err == nil && len(b) <= maxSeccompProgram {
		if _, err := seccomp.UnmarshalProgram(b); err == nil {
			config.BerthProgram = b
			return nil
		}
	}
	prog, err := seccomp.Compile(config)
	if err != nil {
		return fmt.Errorf("compile seccomp filter: %w", err)
	}
	b := prog.Marshal()
	config.BerthProgram = b
	if path == "" {
		return nil
	}
	if err := os.MkdirAll(seccompCacheDir, 0o700); err != nil {
		return nil
	}
	pruneSeccompCache()
	tmp, err := os.CreateTemp(seccompCacheDir, ".tmp-")
	if err != nil {
		return nil
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return nil
	}
	if err := tmp.Close(); err != nil {
		return nil
	}
	// Atomic: a concurrent create never reads half a program.
	_ = os.Rename(tmp.Name(), path)
	return nil
}

// stripSeccompRules drops the rules of a filter whose compiled program
// config carries (BerthProgram): that program is all any init of the
// container loads, and the rules, ~25 KiB of JSON for docker's profile,
// would otherwise sit in the container's state, which libcontainer
// decodes by reflection in every later command, and travel to every
// exec's init, which decodes them again (~1.3 ms of CPU each time).
func stripSeccompRules(config *configs.Seccomp) {
	if config != nil && len(config.BerthProgram) > 0 {
		config.Syscalls = nil
	}
}

// pruneSeccompCache keeps the cache below maxSeccompCache entries,
// dropping the least recently written.
func pruneSeccompCache() {
	ents, err := os.ReadDir(seccompCacheDir)
	if err != nil || len(ents) < maxSeccompCache {
		return
	}
	type ent struct {
		name string
		mod  int64
	}
	var es []ent
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			es = append(es, ent{e.Name(), fi.ModTime().UnixNano()})
		}
	}
	slices.SortFunc(es, func(a, b ent) int { return int(a.mod - b.mod) })
	for _, e := range es[:len(es)-maxSeccompCache/2] {
		_ = os.Remove(filepath.Join(seccompCacheDir, e.name))
	}
}
