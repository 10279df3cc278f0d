package monitor

import (
	"runtime/debug"
	"sync"
	"time"
)

// A shim spends nearly all its life idle, once per container, so its
// footprint is what a host with hundreds of containers pays. Measured on
// the CI machine kind: the first garbage collection alone adds ~280 KiB
// of PSS to a shim (mark bitmaps, work buffers, the mark worker), and the
// runtime forces one every two minutes when the GC is on. So the shim runs
// with the GC off and a soft memory limit: a GC happens only when memory
// actually grows (a burst of output), and an idle shim never builds the
// GC's working set. After a burst, the trimmer hands the garbage back.
const (
	// memLimit is the soft limit the GC works to once it is needed; it
	// leaves room for the log queue and a few attach clients' queues.
	memLimit = 32 << 20
	// trimAfter is how much output (a proxy for garbage: every chunk is
	// copied into the log queue and the attach queues) makes a quiet
	// spell worth a collection.
	trimAfter = 1 << 20
	// requestGarbage is what a control request counts for towards trimAfter.
	requestGarbage = 4 << 10
	// trimDelay is how long the shim must be quiet before it trims.
	trimDelay = time.Second
)

// tuneMemory switches the GC to memory-limit-only operation.
func tuneMemory() {
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(memLimit)
}

// trimmer collects garbage and returns free memory to the kernel once a
// burst of activity has settled.
type trimmer struct {
	mu      sync.Mutex
	t       *time.Timer
	pending int // bytes of output since the last trim
}

// add counts n bytes of output and (re)arms the trim for trimDelay from
// now once enough has accumulated; it is cheap enough for every chunk.
func (tr *trimmer) add(n int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.pending += n
	if tr.pending < trimAfter {
		return
	}
	if tr.t == nil {
		tr.t = time.AfterFunc(trimDelay, tr.fire)
		return
	}
	tr.t.Reset(trimDelay)
}

func (tr *trimmer) fire() {
	tr.mu.Lock()
	tr.pending = 0
	tr.mu.Unlock()
	debug.FreeOSMemory()
}
