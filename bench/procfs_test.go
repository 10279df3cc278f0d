package main

import (
	"os"
	"strings"
	"testing"
)

const rollup = `55ffa8c70000-7fff98c9f000 ---p 00000000 00:00 0                          [rollup]
Rss:                1672 kB
Pss:                 334 kB
Pss_Dirty:           116 kB
Pss_Anon:            116 kB
Pss_File:            218 kB
Shared_Clean:       1500 kB
Private_Dirty:       116 kB
SwapPss:               0 kB
`

func TestParseSmapsRollup(t *testing.T) {
	m, err := parseSmapsRollup(strings.NewReader(rollup))
	if err != nil {
		t.Fatal(err)
	}
	if m.PssKiB != 334 || m.RssKiB != 1672 {
		t.Fatalf("got %+v", m)
	}
}

func TestParseSmapsRollupErrors(t *testing.T) {
	for name, in := range map[string]string{
		"empty":       "",
		"no pss":      "Rss: 10 kB\n",
		"bad unit":    "Rss: 10 kB\nPss: 5 MB\n",
		"bad number":  "Rss: 10 kB\nPss: x kB\n",
		"negative":    "Rss: 10 kB\nPss: -5 kB\n",
		"extra field": "Rss: 10 kB\nPss: 5 kB extra\n",
	} {
		if _, err := parseSmapsRollup(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseSmapsRollupSelf(t *testing.T) {
	m, err := readMem(os.Getpid())
	if err != nil {
		t.Skipf("no smaps_rollup here: %v", err)
	}
	if m.PssKiB <= 0 || m.RssKiB < m.PssKiB {
		t.Fatalf("implausible own memory: %+v", m)
	}
}

func FuzzParseSmapsRollup(f *testing.F) {
	f.Add(rollup)
	f.Add("Rss: 1 kB\nPss: 1 kB\n")
	f.Add("Pss:\nRss:")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseSmapsRollup(strings.NewReader(s))
		if err == nil && (m.PssKiB < 0 || m.RssKiB < 0) {
			t.Fatalf("negative memory accepted: %+v", m)
		}
	})
}

func TestParseStat(t *testing.T) {
	// A command name with spaces and a ')' must not shift the fields.
	line := "1234 (a b) c) S 99 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 5555 1000 100 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	comm, state, ppid, start, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if comm != "a b) c" || state != 'S' || ppid != 99 || start != 5555 {
		t.Fatalf("got %q %c %d %d", comm, state, ppid, start)
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S", "1 (x) S notanumber 1 1 0 -1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 5"} {
		if _, _, _, _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1 (init) S 0 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 2 1 1 1 0\n"))
	f.Add([]byte("2 ((()) Z 1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _, _, _ = parseStat(b)
	})
}

func TestReadProcSelf(t *testing.T) {
	p, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if p.PPID != os.Getppid() || p.Exe == "" || p.PidNS == "" {
		t.Fatalf("readProc(self) = %+v", p)
	}
	procs, err := listProcs()
	if err != nil {
		t.Fatal(err)
	}
	if !descendsFrom(procs, os.Getpid(), os.Getppid()) {
		t.Fatal("self does not descend from its parent")
	}
	if descendsFrom(procs, os.Getpid(), os.Getpid()) {
		t.Fatal("a process must not descend from itself")
	}
}

func TestDescendsFromCycle(t *testing.T) {
	// A ppid cycle (impossible in /proc, possible in a racy snapshot) must end.
	procs := map[int]procInfo{5: {PID: 5, PPID: 6}, 6: {PID: 6, PPID: 5}}
	if descendsFrom(procs, 5, 7) {
		t.Fatal("found an ancestor that is not there")
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/tmp/a\040b\134c`); got != `/tmp/a b\c` {
		t.Fatalf("got %q", got)
	}
	if got := unescapeMount(`/x\04`); got != `/x\04` {
		t.Fatalf("truncated escape: got %q", got)
	}
}
