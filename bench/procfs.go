package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procInfo is what the runner needs to know about one process: enough to
// tell whose it is (ppid chain, executable, command line, pid namespace) and
// whether it is the same process as in an earlier snapshot (start time).
type procInfo struct {
	PID       int    `json:"pid"`
	PPID      int    `json:"ppid"`
	State     byte   `json:"-"`
	StartTime uint64 `json:"-"` // clock ticks since boot: pid + start time identifies a process
	Comm      string `json:"comm"`
	Exe       string `json:"exe"` // basename of /proc/PID/exe, "" for zombies and kernel threads
	Cmdline   string `json:"-"`
	PidNS     string `json:"-"`
}

// memInfo is a process's memory from /proc/PID/smaps_rollup, in KiB.
type memInfo struct {
	PssKiB int64 `json:"pss_kib"`
	RssKiB int64 `json:"rss_kib"`
}

// parseStat parses /proc/PID/stat. The command name is in parentheses and may
// itself contain spaces and parentheses, so the fields are found after the
// last ')'.
func parseStat(b []byte) (comm string, state byte, ppid int, start uint64, err error) {
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return "", 0, 0, 0, errors.New("stat: no command name")
	}
	comm = string(b[open+1 : closing])
	fields := strings.Fields(string(b[closing+1:]))
	// fields[0] is state (field 3), fields[1] ppid (4), fields[19] starttime (22).
	if len(fields) < 20 || len(fields[0]) != 1 {
		return "", 0, 0, 0, fmt.Errorf("stat: %d fields after the command name", len(fields))
	}
	state = fields[0][0]
	if ppid, err = strconv.Atoi(fields[1]); err != nil {
		return "", 0, 0, 0, fmt.Errorf("stat: ppid: %w", err)
	}
	if start, err = strconv.ParseUint(fields[19], 10, 64); err != nil {
		return "", 0, 0, 0, fmt.Errorf("stat: starttime: %w", err)
	}
	return comm, state, ppid, start, nil
}

// readProc reads one process's identity from /proc. It fails when the
// process is gone, which callers walking /proc treat as "skip".
func readProc(pid int) (procInfo, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return procInfo{}, err
	}
	comm, state, ppid, start, err := parseStat(b)
	if err != nil {
		return procInfo{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	p := procInfo{PID: pid, PPID: ppid, State: state, StartTime: start, Comm: comm}
	if exe, err := os.Readlink(filepath.Join(dir, "exe")); err == nil {
		p.Exe = filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
	}
	if cl, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil {
		p.Cmdline = strings.TrimRight(strings.ReplaceAll(string(cl), "\x00", " "), " ")
	}
	p.PidNS, _ = os.Readlink(filepath.Join(dir, "ns", "pid"))
	return p, nil
}

// listProcs walks /proc and returns every process that could be read.
func listProcs() (map[int]procInfo, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("read /proc: %w", err)
	}
	procs := make(map[int]procInfo, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, err := readProc(pid)
		if err != nil {
			continue // exited while we looked
		}
		procs[pid] = p
	}
	return procs, nil
}

// descendsFrom reports whether pid's parent chain reaches ancestor (a
// process does not descend from itself).
func descendsFrom(procs map[int]procInfo, pid, ancestor int) bool {
	seen := 0
	for p, ok := procs[pid]; ok && seen < len(procs); p, ok = procs[p.PPID] {
		if p.PPID == ancestor {
			return true
		}
		if p.PPID <= 1 {
			return false
		}
		seen++
	}
	return false
}

// parseSmapsRollup extracts Pss and Rss (in KiB) from the text of
// /proc/PID/smaps_rollup. Both fields must be present.
func parseSmapsRollup(r io.Reader) (memInfo, error) {
	var m memInfo
	var havePss, haveRss bool
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue // the header line: address range and "[rollup]"
		}
		if key != "Pss" && key != "Rss" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return memInfo{}, fmt.Errorf("smaps_rollup: malformed %s line %q", key, sc.Text())
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || v < 0 {
			return memInfo{}, fmt.Errorf("smaps_rollup: %s value %q", key, f[0])
		}
		if key == "Pss" {
			m.PssKiB, havePss = v, true
		} else {
			m.RssKiB, haveRss = v, true
		}
	}
	if err := sc.Err(); err != nil {
		return memInfo{}, fmt.Errorf("smaps_rollup: %w", err)
	}
	if !havePss || !haveRss {
		return memInfo{}, errors.New("smaps_rollup: no Pss or Rss line")
	}
	return m, nil
}

// readMem reads one process's PSS and RSS.
func readMem(pid int) (memInfo, error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "smaps_rollup"))
	if err != nil {
		return memInfo{}, err
	}
	defer f.Close()
	m, err := parseSmapsRollup(f)
	if err != nil {
		return memInfo{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	return m, nil
}
