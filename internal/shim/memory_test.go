package shim_test

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/shim"
)

// idleShims is how many idle shims TestIdleShimMemory measures together;
// their shared pages (the binary's text) are split among them in PSS.
const idleShims = 20

// maxIdlePss is the target mean PSS of an idle shim: 0.8 MiB. Measured on
// the CI machine kind: ~0.75 MiB (~0.68 with BERTH_SHIM_REEXEC=1; a
// trivial static Go program is ~0.63).
const maxIdlePss = 819 << 10

// memInfo reads Pss and Rss (kB) from /proc/PID/smaps_rollup.
func memInfo(pid int) (pss, rss int, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "Pss:":
			pss, _ = strconv.Atoi(f[1])
		case "Rss:":
			rss, _ = strconv.Atoi(f[1])
		}
	}
	return pss, rss, nil
}

func TestIdleShimMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 20 containers")
	}
	requireRuntime(t)
	var shimPidList []int
	for i := 0; i < idleShims; i++ {
		c := newContainer(t, spec{args: []string{"sh", "-c", "echo up; exec sleep 1000"}})
		ctx := testCtx(t)
		client, _ := c.spawn(ctx)
		if err := client.Start(ctx); err != nil {
			t.Fatal(err)
		}
		// Every container also has a waiting daemon, as in real life.
		waitDone := make(chan struct{})
		go func() {
			defer close(waitDone)
			_, _ = shim.Dial(c.cfg.Socket).Wait(ctx)
		}()
		t.Cleanup(func() {
			_ = client.Kill(ctx, syscall.SIGKILL, true)
			<-waitDone
		})
		pids := shimPids(c.cfg.Bundle)
		if len(pids) != 1 {
			t.Fatalf("shims for %s: %v", c.cfg.ID, pids)
		}
		shimPidList = append(shimPidList, pids[0])
	}
	// Let each shim finish its start-up (FreeOSMemory, the first log
	// write) before measuring: idle is what is measured.
	time.Sleep(time.Second)
	var sumPss, sumRss, maxPss int
	for _, pid := range shimPidList {
		pss, rss, err := memInfo(pid)
		if err != nil {
			t.Fatal(err)
		}
		sumPss += pss
		sumRss += rss
		maxPss = max(maxPss, pss)
	}
	n := len(shimPidList)
	avgPss := float64(sumPss) / float64(n) / 1024
	t.Logf("%d idle shims: mean PSS %.2f MiB (max %.2f MiB), mean RSS %.2f MiB",
		n, avgPss, float64(maxPss)/1024, float64(sumRss)/float64(n)/1024)
	if sumPss*1024/n > maxIdlePss {
		t.Errorf("mean idle shim PSS %.2f MiB is over the %d KiB target", avgPss, maxIdlePss>>10)
	}
}
