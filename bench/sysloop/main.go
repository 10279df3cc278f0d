// Command sysloop is job (s)'s syscall-heavy workload, run inside the
// containers: rounds of getpid, open and close, timed in-process in
// batches. It prints two figures, the fastest batch's nanoseconds per
// round (three syscalls) and per getpid alone, so that the seccomp
// filter's cost per syscall shows without the CLI's and with as little
// of a shared machine's noise as possible (the fastest batch is the one
// least disturbed).
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

const batches = 5

func main() {
	n := 200000
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	best := func(f func()) float64 {
		b := time.Duration(1 << 62)
		for i := 0; i < batches; i++ {
			start := time.Now()
			f()
			b = min(b, time.Since(start))
		}
		return float64(b.Nanoseconds()) / float64(n/batches)
	}
	round := best(func() {
		for i := 0; i < n/batches; i++ {
			unix.Getpid()
			fd, err := unix.Open("/etc/passwd", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				fmt.Fprintln(os.Stderr, "sysloop:", err)
				os.Exit(1)
			}
			unix.Close(fd)
		}
	})
	getpid := best(func() {
		for i := 0; i < n/batches; i++ {
			unix.Getpid()
		}
	})
	fmt.Printf("%.1f %.1f\n", round, getpid)
}
