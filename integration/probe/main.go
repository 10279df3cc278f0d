// Command probe attempts one container escape primitive and reports
// whether the kernel allowed it: it is copied into test containers, which
// have no compiler and whose busybox lacks most of these syscalls.
//
//	probe ACTION   prints "ok" and exits 0 if the action succeeded, else
//	               prints "denied: ERRNO" and exits 1 (2 for bad usage).
//	probe exe-watch N
//	               scans /proc (up to N times, until /tmp/stop-watch
//	               exists) for processes whose executable is not the
//	               container's (a runtime's init entering the container,
//	               the CVE-2019-5736 window) and tries to open each for
//	               writing; prints "seen=S opened=O exes=[…]".
package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe ACTION")
		os.Exit(2)
	}
	if os.Args[1] == "exe-watch" {
		n := 1000
		if len(os.Args) > 2 {
			n, _ = strconv.Atoi(os.Args[2])
		}
		exeWatch(n)
		return
	}
	f, ok := actions[os.Args[1]]
	if !ok {
		fmt.Fprintln(os.Stderr, "probe: unknown action", os.Args[1])
		os.Exit(2)
	}
	if err := f(); err != nil {
		var errno unix.Errno
		if errors.As(err, &errno) {
			fmt.Printf("denied: %s\n", unix.ErrnoName(errno))
		} else {
			fmt.Printf("denied: %v\n", err)
		}
		os.Exit(1)
	}
	fmt.Println("ok")
}

func errnoErr(e unix.Errno) error {
	if e != 0 {
		return e
	}
	return nil
}

var actions = map[string]func() error{
	"mount": func() error {
		_ = os.MkdirAll("/tmp/probe-mnt", 0o755)
		return unix.Mount("tmpfs", "/tmp/probe-mnt", "tmpfs", 0, "")
	},
	"unshare-user":  func() error { return unix.Unshare(unix.CLONE_NEWUSER) },
	"unshare-mount": func() error { return unix.Unshare(unix.CLONE_NEWNS) },
	"clone-newns": func() error {
		// A raw clone with a namespace flag: the child exits at once.
		pid, _, e := unix.RawSyscall6(unix.SYS_CLONE, uintptr(unix.CLONE_NEWNS|unix.SIGCHLD), 0, 0, 0, 0, 0)
		if e != 0 {
			return e
		}
		if pid == 0 {
			unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
		}
		var ws unix.WaitStatus
		_, _ = unix.Wait4(int(pid), &ws, 0, nil)
		return nil
	},
	"keyctl": func() error {
		_, err := unix.KeyctlJoinSessionKeyring("berth-probe")
		return err
	},
	"add-key": func() error {
		_, err := unix.AddKey("user", "berth-probe", []byte("x"), unix.KEY_SPEC_PROCESS_KEYRING)
		return err
	},
	"request-key": func() error {
		_, err := unix.RequestKey("user", "berth-probe", "", unix.KEY_SPEC_PROCESS_KEYRING)
		if errors.Is(err, unix.ENOKEY) {
			return nil // the call ran: not filtered
		}
		return err
	},
	"kexec-load": func() error {
		_, _, e := unix.Syscall6(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0, 0, 0)
		return errnoErr(e)
	},
	"init-module": func() error {
		empty := []byte{0}
		_, _, e := unix.Syscall(unix.SYS_INIT_MODULE, 0, 0, uintptr(unsafe.Pointer(&empty[0])))
		return errnoErr(e)
	},
	"bpf": func() error {
		// BPF_MAP_CREATE of a one-entry array map.
		attr := [5]uint32{2 /* BPF_MAP_TYPE_ARRAY */, 4, 4, 1, 0}
		fd, _, e := unix.Syscall(unix.SYS_BPF, 0, uintptr(unsafe.Pointer(&attr[0])), unsafe.Sizeof(attr))
		if e != 0 {
			return e
		}
		unix.Close(int(fd))
		return nil
	},
	"perf-event-open": func() error {
		attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK, Size: uint32(unsafe.Sizeof(unix.PerfEventAttr{}))}
		fd, err := unix.PerfEventOpen(&attr, 0, -1, -1, 0)
		if err != nil {
			return err
		}
		unix.Close(fd)
		return nil
	},
	"open-by-handle-at": func() error {
		// The "shocker" pattern: a file handle opened through a mount fd
		// (on /dev/shm, a tmpfs: overlayfs roots may not export handles).
		h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, "/dev/shm", 0)
		if err != nil {
			return err
		}
		mfd, err := unix.Open("/dev/shm", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		defer unix.Close(mfd)
		fd, err := unix.OpenByHandleAt(mfd, h, unix.O_RDONLY)
		if err != nil {
			return err
		}
		unix.Close(fd)
		return nil
	},
	"personality": func() error {
		// ADDR_NO_RANDOMIZE: outside docker's allowed personalities.
		_, _, e := unix.Syscall(unix.SYS_PERSONALITY, 0x0040000, 0, 0)
		return errnoErr(e)
	},
}

// exeWatch looks for foreign executables in the container's pid
// namespace and tries to open them for writing, directly and by
// reopening an O_PATH descriptor (the CVE-2019-5736 attack).
func exeWatch(n int) {
	self := os.Getpid()
	seen, opened := 0, 0
	var names []string
	for i := 0; i < n; i++ {
		if _, err := os.Stat("/tmp/stop-watch"); err == nil {
			break
		}
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == self || pid == 1 {
				continue
			}
			exe := "/proc/" + e.Name() + "/exe"
			target, err := os.Readlink(exe)
			if err == nil && (strings.HasPrefix(target, "/bin/") || strings.HasPrefix(target, "/probe")) {
				continue
			}
			if err != nil {
				// A runtime's init hides its executable (it is not
				// dumpable): readlink fails, which counts as seen.
				if errors.Is(err, os.ErrNotExist) {
					continue // gone, or a kernel thread
				}
				target = "unreadable: " + err.Error()
			}
			seen++
			if len(names) < 3 {
				names = append(names, target)
			}
			if fd, err := unix.Open(exe, unix.O_WRONLY, 0); err == nil {
				opened += foreign(fd, &names)
				unix.Close(fd)
				continue
			}
			if fd, err := unix.Open(exe, unix.O_PATH, 0); err == nil {
				if wfd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_WRONLY, 0); err == nil {
					opened += foreign(wfd, &names)
					unix.Close(wfd)
				}
				unix.Close(fd)
			}
		}
	}
	fmt.Printf("seen=%d opened=%d exes=%q\n", seen, opened, names)
}

// foreign reports 1 when the file open for writing at fd is not one of
// the container's own: a process seen as a hidden runtime init may have
// exec'd a container binary (/bin/…, which the container may write, as
// a copy-up) by the time it is opened; that is no escape.
func foreign(fd int, names *[]string) int {
	target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err == nil && (strings.HasPrefix(target, "/bin/") || strings.HasPrefix(target, "/probe")) {
		return 0
	}
	*names = append(*names, "opened: "+target)
	return 1
}
