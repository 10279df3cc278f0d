//go:build cgo && seccomp

// This file is added to runc's libcontainer/seccomp package by
// berth-runtime's build (go build -overlay, see the Makefile): a cache of
// compiled seccomp programs, so that libseccomp's compiler (~17 ms for
// docker's default profile) runs once per distinct profile rather than in
// every container's init.
//
// berth-runtime compiles a configuration with Compile, stores the program
// under CacheKey and puts it into the configuration (BerthProgram), which
// travels to the container's init and to every exec's; InitSeccomp loads
// that program instead of compiling.

package seccomp

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"

	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/seccomp/patchbpf"
)

// CachedProgram is a compiled, patched filter ready for the kernel.
type CachedProgram struct {
	Flags   uint
	Program []unix.SockFilter
}

// CacheKey identifies a configuration's program: a hash of the
// configuration, the architecture, the libseccomp version (whose
// compiler output it is) and API level. "" for configurations that are never cached
// (a notify listener needs libseccomp's own path).
func CacheKey(config *configs.Seccomp) string {
	if config == nil {
		return ""
	}
	for _, call := range config.Syscalls {
		if call != nil && call.Action == configs.Notify {
			return ""
		}
	}
	keyed := *config
	keyed.BerthProgram = nil // the program is what the key names
	b, err := json.Marshal(&keyed)
	if err != nil {
		return ""
	}
	major, minor, micro := libseccomp.GetLibraryVersion()
	// The API level is what libseccomp found the kernel supports (it
	// decides the filter's flags).
	api, _ := libseccomp.GetAPI()
	h := sha256.New()
	fmt.Fprintf(h, "berth-seccomp-v1 %s %d.%d.%d api%d\n", runtime.GOARCH, major, minor, micro, api)
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// Compile builds config's program exactly as InitSeccomp would load it,
// without loading it.
func Compile(config *configs.Seccomp) (CachedProgram, error) {
	defaultAction, err := getAction(config.DefaultAction, config.DefaultErrnoRet)
	if err != nil {
		return CachedProgram{}, errors.New("error initializing seccomp - invalid default action")
	}
	filter, err := buildFilter(config, defaultAction)
	if err != nil {
		return CachedProgram{}, err
	}
	defer filter.Release()
	prog, flags, err := patchbpf.Compile(config, filter)
	if err != nil {
		return CachedProgram{}, err
	}
	return CachedProgram{Flags: flags, Program: prog}, nil
}

// Marshal encodes a program for the cache: flags, then the instructions.
func (p CachedProgram) Marshal() []byte {
	b := make([]byte, 8, 8+8*len(p.Program))
	binary.LittleEndian.PutUint64(b, uint64(p.Flags))
	for _, in := range p.Program {
		b = binary.LittleEndian.AppendUint16(b, in.Code)
		b = append(b, in.Jt, in.Jf)
		b = binary.LittleEndian.AppendUint32(b, in.K)
	}
	return b
}

// UnmarshalProgram decodes what Marshal encoded.
func UnmarshalProgram(b []byte) (CachedProgram, error) {
	if len(b) < 16 || len(b)%8 != 0 || (len(b)-8)/8 > 0xffff {
		return CachedProgram{}, errors.New("malformed cached seccomp program")
	}
	p := CachedProgram{Flags: uint(binary.LittleEndian.Uint64(b))}
	for b = b[8:]; len(b) > 0; b = b[8:] {
		p.Program = append(p.Program, unix.SockFilter{
			Code: binary.LittleEndian.Uint16(b), Jt: b[2], Jf: b[3], K: binary.LittleEndian.Uint32(b[4:]),
		})
	}
	return p, nil
}

// loadCached loads the program berth-runtime compiled into config. ok is
// false when there is none (InitSeccomp then compiles it).
func loadCached(config *configs.Seccomp) (fd int, ok bool, err error) {
	if len(config.BerthProgram) == 0 {
		return -1, false, nil
	}
	p, err := UnmarshalProgram(config.BerthProgram)
	if err != nil {
		return -1, true, err
	}
	fd, err = patchbpf.Load(p.Flags, p.Program)
	if err != nil {
		return -1, true, fmt.Errorf("error loading seccomp filter into kernel: %w", err)
	}
	return fd, true, nil
}
