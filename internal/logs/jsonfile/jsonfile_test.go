package jsonfile

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// dockerEntry is docker's jsonlog.JSONLog as encoding/json writes it.
type dockerEntry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

func TestAppendEntryMatchesDocker(t *testing.T) {
	at := time.Date(2024, 5, 1, 10, 0, 0, 123456789, time.FixedZone("X", 3600))
	for _, line := range []string{"hello\n", "", "tab\tquote\" back\\ <html>&\n", "bad \xff utf8", "ctl \x01\x1f"} {
		got := AppendEntry(nil, "stdout", []byte(line), at)
		want, err := json.Marshal(dockerEntry{Log: line, Stream: "stdout", Time: at.UTC()})
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want)+"\n" {
			t.Errorf("AppendEntry(%q) = %s, want %s", line, got, want)
		}
	}
	got := string(AppendEntry(nil, "stderr", []byte("x\n"), time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)))
	if got != `{"log":"x\n","stream":"stderr","time":"2024-05-01T10:00:00Z"}`+"\n" {
		t.Errorf("entry = %s", got)
	}
}

func TestParseLine(t *testing.T) {
	m, err := ParseLine([]byte(`{"log":"hi\n","stream":"stderr","attrs":{"a":"b"},"time":"2024-05-01T10:00:00.5Z"}` + "\n"))
	if err != nil || string(m.Line) != "hi\n" || m.Stream != "stderr" || !m.Time.Equal(time.Date(2024, 5, 1, 10, 0, 0, 5e8, time.UTC)) {
		t.Errorf("ParseLine = %+v, %v", m, err)
	}
	for _, bad := range []string{``, `{}`, `{"log":"x"`, `{"log":1}`, `{"log":"x","time":"yesterday"}`, `garbage`} {
		if _, err := ParseLine([]byte(bad)); err == nil {
			t.Errorf("ParseLine(%q) accepted", bad)
		}
	}
}

func FuzzParseLine(f *testing.F) {
	f.Add([]byte(`{"log":"hello\n","stream":"stdout","time":"2024-05-01T10:00:00.123456789Z"}`))
	f.Add([]byte(`{"log":"\u00e9\ud83d\ude00","stream":"stderr","time":"2024-05-01T10:00:00Z"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		m, err := ParseLine(line)
		if err != nil {
			return
		}
		// The reference: encoding/json, with exact key matching (it
		// would also match keys case-insensitively into a struct).
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(line, &raw); err != nil {
			t.Fatalf("accepted %q, which encoding/json rejects: %v", line, err)
		}
		var ref dockerEntry
		for k, dst := range map[string]any{"log": &ref.Log, "stream": &ref.Stream, "time": &ref.Time} {
			if v, ok := raw[k]; ok && string(v) != "null" {
				if err := json.Unmarshal(v, dst); err != nil {
					t.Fatalf("accepted %q; encoding/json: %v", line, err)
				}
			}
		}
		if string(m.Line) != ref.Log || m.Stream != ref.Stream || !m.Time.Equal(ref.Time) {
			t.Fatalf("ParseLine(%q) = %+v, encoding/json %+v", line, m, ref)
		}
		// What was read writes back to a line that reads the same.
		m2, err := ParseLine(AppendEntry(nil, m.Stream, m.Line, m.Time))
		if err != nil || !bytes.Equal(m2.Line, m.Line) || m2.Stream != m.Stream {
			t.Fatalf("round trip of %+v: %+v, %v", m, m2, err)
		}
	})
}

// entries reads a log file directly.
func entries(t *testing.T, path string) []Message {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []Message
	for _, l := range bytes.SplitAfter(b, []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		m, err := ParseLine(l)
		if err != nil {
			t.Fatalf("%s: bad line %q: %v", path, l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestStreamSplitsLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c-json.log")
	w, err := OpenWriter(path, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, errs := w.Stream("stdout"), w.Stream("stderr")
	out.Write([]byte("one\ntw"))
	errs.Write([]byte("err\n"))
	out.Write([]byte("o\nthree"))
	long := strings.Repeat("x", MaxLineSize+10) + "\n"
	out.Write([]byte(long))
	errs.Write([]byte("no newline at the end"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range entries(t, path) {
		got = append(got, m.Stream+":"+string(m.Line))
	}
	want := []string{
		"stdout:one\n", "stderr:err\n", "stdout:two\n",
		"stdout:three" + strings.Repeat("x", MaxLineSize-5), "stdout:" + strings.Repeat("x", 15) + "\n",
		"stderr:no newline at the end",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("entries:\n got %.200q\nwant %.200q", got, want)
	}
	if w.Dropped() != 0 {
		t.Errorf("dropped %d", w.Dropped())
	}
}

func writeLines(t *testing.T, w *Writer, from, to int) {
	t.Helper()
	s := w.Stream("stdout")
	for i := from; i <= to; i++ {
		s.Write([]byte(fmt.Sprintf("line-%04d\n", i)))
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c-json.log")
	w, err := OpenWriter(path, WriterOptions{MaxSize: 500, MaxFiles: 3})
	if err != nil {
		t.Fatal(err)
	}
	writeLines(t, w, 1, 100)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var all []Message
	for _, name := range []string{path + ".2", path + ".1", path} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if fi.Size() > 500 || fi.Size() == 0 {
			t.Errorf("%s is %d bytes (max-size 500)", name, fi.Size())
		}
		all = append(all, entries(t, name)...)
	}
	if _, err := os.Stat(path + ".3"); err == nil {
		t.Error("max-file 3 kept path.3")
	}
	for i, m := range all {
		if want := fmt.Sprintf("line-%04d\n", 100-len(all)+1+i); string(m.Line) != want {
			t.Fatalf("entry %d = %q, want %q", i, m.Line, want)
		}
	}
	// Reopening appends and keeps rotating from the current size.
	w, err = OpenWriter(path, WriterOptions{MaxSize: 500, MaxFiles: 3})
	if err != nil {
		t.Fatal(err)
	}
	writeLines(t, w, 101, 110)
	w.Close()
	last := entries(t, path)
	if string(last[len(last)-1].Line) != "line-0110\n" {
		t.Errorf("last entry after reopen = %q", last[len(last)-1].Line)
	}
}

func TestMaxFileOneTruncates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c-json.log")
	w, err := OpenWriter(path, WriterOptions{MaxSize: 300, MaxFiles: 1})
	if err != nil {
		t.Fatal(err)
	}
	writeLines(t, w, 1, 50)
	w.Close()
	fi, err := os.Stat(path)
	if err != nil || fi.Size() > 300 {
		t.Fatalf("stat: %v, size %d", err, fi.Size())
	}
	if _, err := os.Stat(path + ".1"); err == nil {
		t.Error("max-file 1 rotated to path.1")
	}
	got := entries(t, path)
	if string(got[len(got)-1].Line) != "line-0050\n" {
		t.Errorf("last entry %q", got[len(got)-1].Line)
	}
}

// stuckLog opens a Writer on a FIFO nobody reads yet: a stand-in for a
// disk that does not keep up. read drains it.
func stuckLog(t *testing.T, opts WriterOptions) (w *Writer, read func() int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c-json.log")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	w, err = OpenWriter(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	syscall.SetNonblock(int(r.Fd()), false) // the reader blocks from now on
	return w, func() int {
		b, _ := io.ReadAll(r)
		return bytes.Count(b, []byte("\n"))
	}
}

// By default (docker's blocking mode) a stuck disk makes the writer wait
// once MaxBuffer is queued, and nothing is lost.
func TestStuckDiskBackpressure(t *testing.T) {
	w, read := stuckLog(t, WriterOptions{MaxBuffer: 16 << 10})
	total := make(chan int)
	go func() { total <- read() }()
	s := w.Stream("stdout")
	line := []byte(strings.Repeat("y", 99) + "\n")
	for i := 0; i < 5000; i++ { // ~700 KB: far more than the FIFO and the buffer hold
		s.Write(line)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := <-total; n != 5000 || w.Dropped() != 0 {
		t.Errorf("read %d entries, dropped %d bytes; want 5000 and 0", n, w.Dropped())
	}
}

// NonBlocking (docker's mode=non-blocking): the writer never waits for a
// stuck disk; what does not fit is dropped.
func TestStuckDiskNonBlocking(t *testing.T) {
	w, read := stuckLog(t, WriterOptions{MaxBuffer: 16 << 10, NonBlocking: true})
	s := w.Stream("stdout")
	line := []byte(strings.Repeat("y", 99) + "\n")
	for i := 0; i < 5000; i++ {
		s.Write(line) // would hang here if it waited for the disk
	}
	if w.Dropped() == 0 {
		t.Error("nothing dropped although the log is stuck")
	}
	total := make(chan int)
	go func() { total <- read() }()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := <-total; n == 0 || n >= 5000 {
		t.Errorf("read %d entries", n)
	}
}

// writeLog writes entries with given times to path (no rotation).
func writeLog(t *testing.T, path string, start time.Time, n int) {
	t.Helper()
	var b []byte
	for i := 0; i < n; i++ {
		b = AppendEntry(b, "stdout", []byte(fmt.Sprintf("line-%04d\n", i)), start.Add(time.Duration(i)*time.Second))
	}
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

func collect(t *testing.T, ch <-chan Message) []string {
	t.Helper()
	var out []string
	timeout := time.After(30 * time.Second)
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				return out
			}
			if m.Err != nil {
				t.Fatalf("read: %v", m.Err)
			}
			out = append(out, strings.TrimSuffix(string(m.Line), "\n"))
		case <-timeout:
			t.Fatalf("reader did not end; got %d lines", len(out))
		}
	}
}

func TestReadTailSinceUntilAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c-json.log")
	t0 := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	// Three files, oldest first: .2 has 0-9, .1 has 10-19, current 20-29.
	var all []byte
	for i := 0; i < 30; i++ {
		all = AppendEntry(all, "stdout", []byte(fmt.Sprintf("line-%04d\n", i)), t0.Add(time.Duration(i)*time.Second))
	}
	lines := bytes.SplitAfter(all, []byte("\n"))
	for f, name := range []string{path + ".2", path + ".1", path} {
		if err := os.WriteFile(name, bytes.Join(lines[f*10:f*10+10], nil), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	// Noise that must be skipped or ignored: a damaged line (in the
	// oldest file, so that it does not count towards the tails below),
	// a file that is not a rotation.
	os.WriteFile(path+".x", []byte("not a log"), 0o640)
	old, _ := os.ReadFile(path + ".2")
	os.WriteFile(path+".2", append([]byte("{broken json\n"), old...), 0o640)

	read := func(opts ReadOptions) []string {
		ch, err := Read(context.Background(), path, opts)
		if err != nil {
			t.Fatal(err)
		}
		return collect(t, ch)
	}
	span := func(a, b int) string {
		var s []string
		for i := a; i <= b; i++ {
			s = append(s, fmt.Sprintf("line-%04d", i))
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		name string
		opts ReadOptions
		want string
	}{
		{"all", ReadOptions{Tail: -1}, span(0, 29)},
		{"tail 5", ReadOptions{Tail: 5}, span(25, 29)},
		{"tail across files", ReadOptions{Tail: 15}, span(15, 29)},
		{"tail more than there is", ReadOptions{Tail: 100}, span(0, 29)},
		{"tail 0", ReadOptions{Tail: 0}, ""},
		{"since", ReadOptions{Tail: -1, Since: t0.Add(12 * time.Second)}, span(12, 29)},
		{"until", ReadOptions{Tail: -1, Until: t0.Add(3 * time.Second)}, span(0, 3)},
		{"since until", ReadOptions{Tail: -1, Since: t0.Add(8 * time.Second), Until: t0.Add(21 * time.Second)}, span(8, 21)},
		{"tail then since", ReadOptions{Tail: 10, Since: t0.Add(25 * time.Second)}, span(25, 29)},
	} {
		if got := strings.Join(read(tc.opts), ","); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestReadMissing(t *testing.T) {
	dir := t.TempDir()
	ch, err := Read(context.Background(), filepath.Join(dir, "none.log"), ReadOptions{Tail: -1})
	if err != nil {
		t.Fatal(err)
	}
	if got := collect(t, ch); len(got) != 0 {
		t.Errorf("missing log read %v", got)
	}
	if _, err := Read(context.Background(), filepath.Join(dir, "nodir", "x.log"), ReadOptions{}); err == nil {
		t.Error("Read in a missing directory succeeded")
	}
}

// A follower reads every entry exactly once, in order, while the writer
// rotates under it, and ends when Done is closed after the writer.
func TestFollowAcrossRotation(t *testing.T) {
	for _, files := range []int{1, 2, 5} {
		t.Run(fmt.Sprintf("max-file=%d", files), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "c-json.log")
			w, err := OpenWriter(path, WriterOptions{MaxSize: 2000, MaxFiles: files})
			if err != nil {
				t.Fatal(err)
			}
			writeLines(t, w, 0, 9)
			w.Sync()
			done := make(chan struct{})
			ch, err := Read(context.Background(), path, ReadOptions{Tail: -1, Follow: true, Done: done})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			var mu sync.Mutex
			readDone := make(chan struct{})
			go func() {
				defer close(readDone)
				for m := range ch {
					mu.Lock()
					got = append(got, strings.TrimSuffix(string(m.Line), "\n"))
					mu.Unlock()
				}
			}()
			// Write in bursts, letting the reader keep up between them
			// (with max-file 1 the file is truncated in place, and a reader
			// that is a whole file behind loses lines, as with docker).
			for b := 1; b < 40; b++ {
				writeLines(t, w, b*10, b*10+9)
				w.Sync()
				want := fmt.Sprintf("line-%04d", b*10+9)
				deadline := time.Now().Add(30 * time.Second)
				for {
					mu.Lock()
					n := len(got)
					last := ""
					if n > 0 {
						last = got[n-1]
					}
					mu.Unlock()
					if last == want {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("follower stuck at %q (want %q)", last, want)
					}
					time.Sleep(2 * time.Millisecond)
				}
			}
			w.Close()
			close(done)
			select {
			case <-readDone:
			case <-time.After(30 * time.Second):
				t.Fatal("follower did not end after Done")
			}
			if files == 1 {
				// Truncation in place can remove entries before the reader
				// gets to them (as with docker); nothing is repeated or
				// reordered, and the end is there.
				prev := ""
				for _, l := range got {
					if l <= prev {
						t.Fatalf("%q after %q: repeated or reordered", l, prev)
					}
					prev = l
				}
				if prev != "line-0399" {
					t.Fatalf("last entry %q", prev)
				}
				return
			}
			for i, l := range got {
				if want := fmt.Sprintf("line-%04d", i); l != want {
					t.Fatalf("entry %d = %q, want %q (lost or repeated)", i, l, want)
				}
			}
			if len(got) != 400 {
				t.Fatalf("got %d entries, want 400", len(got))
			}
		})
	}
}

func TestFollowWaitsForFileAndContext(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c-json.log")
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := Read(ctx, path, ReadOptions{Tail: -1, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	w, err := OpenWriter(path, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writeLines(t, w, 1, 3)
	w.Close()
	for i := 1; i <= 3; i++ {
		select {
		case m := <-ch:
			if want := fmt.Sprintf("line-%04d\n", i); string(m.Line) != want {
				t.Fatalf("got %q, want %q", m.Line, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("follower did not see the new file")
		}
	}
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("message after cancel")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("follower did not end on cancel")
	}
}

func TestFollowUntilInThePast(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c-json.log")
	writeLog(t, path, time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC), 5)
	ch, err := Read(context.Background(), path, ReadOptions{Tail: -1, Follow: true, Until: time.Date(2024, 5, 1, 10, 0, 2, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	if got := collect(t, ch); strings.Join(got, ",") != "line-0000,line-0001,line-0002" {
		t.Errorf("got %v", got)
	}
}

// tailOffset agrees with a plain count on arbitrary content.
func FuzzTailOffset(f *testing.F) {
	f.Add([]byte("a\nb\nc\n"), 2)
	f.Add([]byte("a\nb\npartial"), 1)
	f.Add([]byte("\n\n\n"), 5)
	f.Fuzz(func(t *testing.T, data []byte, n int) {
		if n < 0 || n > 1000 {
			return
		}
		p := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		off, found, err := tailOffset(fh, n)
		if err != nil {
			t.Fatal(err)
		}
		// The reference: complete lines are those ending in '\n'.
		end := bytes.LastIndexByte(data, '\n') + 1
		complete := bytes.Count(data[:end], []byte("\n"))
		wantFound := min(n, complete)
		if found != wantFound {
			t.Fatalf("found %d, want %d", found, wantFound)
		}
		if got := bytes.Count(data[off:end], []byte("\n")); end >= int(off) && got != wantFound {
			t.Fatalf("offset %d leaves %d complete lines, want %d", off, got, wantFound)
		}
		if off > 0 && data[off-1] != '\n' {
			t.Fatalf("offset %d is not at a line start", off)
		}
	})
}

// A writer far ahead of the follower, rotating many times between two of
// its reads, still loses nothing while the files are kept.
func TestFollowFastWriter(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c-json.log")
	w, err := OpenWriter(path, WriterOptions{MaxSize: 300, MaxFiles: 1000})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	ch, err := Read(context.Background(), path, ReadOptions{Tail: -1, Follow: true, Done: done})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		writeLines(t, w, 0, 999)
		w.Close()
		close(done)
	}()
	got := collect(t, ch)
	if len(got) != 1000 {
		t.Fatalf("got %d entries, want 1000", len(got))
	}
	for i, l := range got {
		if want := fmt.Sprintf("line-%04d", i); l != want {
			t.Fatalf("entry %d = %q, want %q", i, l, want)
		}
	}
}
