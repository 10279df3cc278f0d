package jsonfile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ReadOptions selects what Read returns.
type ReadOptions struct {
	// Tail is how many of the last entries (across rotated files) to
	// return; -1 means all.
	Tail int
	// Since and Until bound the entries' timestamps (both inclusive); the
	// zero time means unbounded.
	Since, Until time.Time
	// Follow keeps reading new entries as they are written, across
	// rotations, until ctx ends, Done is closed or Until passes.
	Follow bool
	// Done is closed when the container stops: the follower then reads
	// what is left and ends. Nil means follow until ctx ends.
	Done <-chan struct{}
}

// Message is one log entry, or a read error (Err set) after which the
// channel is closed.
type Message struct {
	Stream string // "stdout" or "stderr"
	Line   []byte // the output, with its newline unless the line was split or unterminated
	Time   time.Time
	Err    error
}

// maxEntry bounds one encoded line the reader accepts; the writer never
// produces more than about 6×MaxLineSize, so anything larger is damage.
const maxEntry = 1 << 20

// pollInterval is the fallback wake-up of a follower, for file systems
// where inotify says nothing (or when inotify instances run out).
const pollInterval = time.Second

// Read streams the entries of the json-file log at path, oldest first,
// across its rotated files (path.N … path.1, path). Malformed lines are
// skipped. The channel is closed when the entries are exhausted (without
// Follow), when Done has been closed and everything written was read, when
// an entry newer than Until is reached, or when ctx ends. A missing log
// is an empty log (a follower waits for it to appear).
func Read(ctx context.Context, path string, opts ReadOptions) (<-chan Message, error) {
	if path == "" {
		return nil, errors.New("read log: empty path")
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("read log: %s is not a directory", filepath.Dir(path))
	}
	r := &reader{path: path, opts: opts, out: make(chan Message, 16)}
	var w *watcher
	if opts.Follow {
		// Watch before the first read so that nothing written between the
		// read and the watch goes unnoticed.
		w = newWatcher(filepath.Dir(path))
	}
	files := openFiles(path)
	go func() {
		defer close(r.out)
		defer w.close()
		defer func() {
			for _, f := range files {
				f.close()
			}
			if r.cur != nil {
				r.cur.close()
			}
		}()
		r.run(ctx, files, w)
	}()
	return r.out, nil
}

type reader struct {
	path string
	opts ReadOptions
	out  chan Message
	cur  *logFile // the file being followed
}

// logFile is one open file of the log and the reader's position in it.
type logFile struct {
	f     *os.File
	ino   uint64
	off   int64 // bytes consumed from f
	lines lineReader
}

func (l *logFile) close() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

func openLogFile(name string) (*logFile, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, err
	}
	l := &logFile{f: f, ino: st.Ino}
	l.lines.r = f
	return l, nil
}

// openFiles opens the current file first, then the rotated ones newest to
// oldest, skipping a file seen twice (a rotation between two opens), and
// returns them oldest first. The last one is the current file when it
// exists.
func openFiles(path string) []*logFile {
	var newestFirst []*logFile
	seen := map[uint64]bool{}
	add := func(name string) {
		l, err := openLogFile(name)
		if err != nil {
			return
		}
		if seen[l.ino] {
			l.close()
			return
		}
		seen[l.ino] = true
		newestFirst = append(newestFirst, l)
	}
	add(path)
	for _, n := range rotatedIndexes(path) {
		add(path + "." + strconv.Itoa(n))
	}
	files := make([]*logFile, len(newestFirst))
	for i, l := range newestFirst {
		files[len(files)-1-i] = l
	}
	return files
}

// rotatedIndexes lists N of the existing path.N files, ascending.
func rotatedIndexes(path string) []int {
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		return nil
	}
	prefix := filepath.Base(path) + "."
	var idx []int
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		n, err := strconv.Atoi(name[len(prefix):])
		if err != nil || n < 1 || strconv.Itoa(n) != name[len(prefix):] {
			continue
		}
		idx = append(idx, n)
	}
	sort.Ints(idx)
	return idx
}

// errStop ends a read early: Until was passed or ctx ended.
var errStop = errors.New("stop")

func (r *reader) run(ctx context.Context, files []*logFile, w *watcher) {
	if r.opts.Tail >= 0 {
		files = r.applyTail(files)
	}
	// The newest file opened is where a follower continues, even if it was
	// rotated meanwhile: catchUp then walks on to its successors.
	var newest *logFile
	if n := len(files); n > 0 {
		newest = files[n-1]
	}
	for _, l := range files {
		if err := r.drain(ctx, l); err != nil {
			if !errors.Is(err, errStop) {
				r.send(ctx, Message{Err: err})
			}
			return
		}
		if l != newest {
			l.close()
		}
	}
	if !r.opts.Follow {
		return
	}
	r.cur = newest
	if err := r.follow(ctx, w); err != nil && !errors.Is(err, errStop) {
		r.send(ctx, Message{Err: err})
	}
}

// applyTail positions the files so that only the last Tail complete
// entries remain, and drops the files before them. The current file is
// kept even when empty, because a follower continues from it.
func (r *reader) applyTail(files []*logFile) []*logFile {
	if len(files) == 0 {
		return files
	}
	remaining := r.opts.Tail
	first := len(files) - 1
	for i := len(files) - 1; i >= 0; i-- {
		first = i
		off, found, err := tailOffset(files[i].f, remaining)
		if err != nil {
			break
		}
		if err := files[i].seek(off); err != nil {
			break
		}
		remaining -= found
		if remaining == 0 {
			break
		}
	}
	for _, l := range files[:first] {
		l.close()
	}
	return files[first:]
}

func (l *logFile) seek(off int64) error {
	if _, err := l.f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	l.off = off
	l.lines.reset()
	return nil
}

// tailOffset finds where the last n complete lines of f start; found is
// how many complete lines there are from that offset (fewer than n when
// the file is short). n == 0 gives the end of the last complete line.
func tailOffset(f *os.File, n int) (off int64, found int, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	const block = 32 << 10
	buf := make([]byte, block)
	end := fi.Size()
	newlines := 0 // seen from the end
	for end > 0 {
		start := end - block
		if start < 0 {
			start = 0
		}
		b := buf[:end-start]
		if _, err := f.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, 0, err
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != '\n' {
				continue
			}
			// The first newline from the end closes the last complete
			// line; the (n+1)th is just before the n lines wanted.
			newlines++
			if newlines == n+1 {
				return start + int64(i) + 1, n, nil
			}
		}
		end = start
	}
	return 0, newlines, nil
}

// drain sends the complete entries of l up to its current end.
func (r *reader) drain(ctx context.Context, l *logFile) error {
	for {
		line, err := l.lines.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read log: %w", err)
		}
		l.off += int64(len(line))
		m, err := ParseLine(line)
		if err != nil {
			continue // damaged line: skip, as docker does
		}
		if !r.opts.Since.IsZero() && m.Time.Before(r.opts.Since) {
			continue
		}
		if !r.opts.Until.IsZero() && m.Time.After(r.opts.Until) {
			return errStop
		}
		if !r.send(ctx, m) {
			return errStop
		}
	}
}

func (r *reader) send(ctx context.Context, m Message) bool {
	select {
	case r.out <- m:
		return true
	case <-ctx.Done():
		return false
	}
}

// follow reads new entries of the current file as they come. When the file
// is rotated (path names another inode) it finishes the old file and moves
// on to the one that was created after it; when it is truncated in place
// (max-file 1) it starts over at the beginning.
func (r *reader) follow(ctx context.Context, w *watcher) error {
	var until <-chan time.Time
	if !r.opts.Until.IsZero() {
		t := time.NewTimer(time.Until(r.opts.Until))
		defer t.Stop()
		until = t.C
	}
	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	done := r.opts.Done
	final := false
	for {
		if err := r.catchUp(ctx); err != nil {
			return err
		}
		if final {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-done:
			// The writer is finished: one more pass reads what is left.
			final = true
		case <-until:
			final = true
		case <-w.events():
		case <-poll.C:
		}
	}
}

// catchUp reads the current file to its end, then follows rotations until
// the current file is the one path names.
func (r *reader) catchUp(ctx context.Context) error {
	for {
		if r.cur == nil {
			l, err := openLogFile(r.path)
			if err != nil {
				return nil // not there (yet, or mid-rotation)
			}
			r.cur = l
		}
		if err := r.checkTruncated(); err != nil {
			return err
		}
		if err := r.drain(ctx, r.cur); err != nil {
			return err
		}
		st, err := os.Stat(r.path)
		if err != nil {
			return nil // mid-rotation: the next wake-up will see the new file
		}
		if st.Sys().(*syscall.Stat_t).Ino == r.cur.ino {
			return nil
		}
		// Rotated. Everything the writer wrote to the old file is in it
		// now (it renames before it writes to the new one): finish it.
		if err := r.drain(ctx, r.cur); err != nil {
			return err
		}
		next := r.successor()
		if next == nil {
			return nil // not clear yet; the next wake-up tries again
		}
		r.cur.close()
		r.cur = next
	}
}

// checkTruncated notices max-file 1 truncation: the file is shorter than
// what was read from it.
func (r *reader) checkTruncated() error {
	fi, err := r.cur.f.Stat()
	if err != nil {
		return fmt.Errorf("read log: %w", err)
	}
	if fi.Size() < r.cur.off {
		return r.cur.seek(0)
	}
	return nil
}

// successor opens the file written after the current one: if the current
// file is now path.K, that is path.K-1 (or path for K = 1). If it is gone
// altogether (rotated out), every remaining file is newer: the oldest of
// them comes next. It returns nil when there is no clear successor yet.
func (r *reader) successor() *logFile {
	names, pos := r.locate(r.cur.ino)
	var next string
	switch {
	case pos == 0:
		return nil // path names the current file after all
	case pos > 0:
		next = names[pos-1]
	default:
		next = names[len(names)-1]
	}
	l, err := openLogFile(next)
	if err != nil {
		return nil
	}
	if l.ino == r.cur.ino {
		l.close()
		return nil
	}
	// A rotation may have shifted the names between the scan and the
	// open (the writer renames path.K to path.K+1 from the oldest down),
	// so the name may now hold a later file. Renames keep the files'
	// order, so the one opened is the successor if, now, it sits right
	// after the current one (or the current one is gone and it is the
	// oldest); otherwise try again at the next wake-up.
	names, pos = r.locate(r.cur.ino)
	var want string
	switch {
	case pos > 0:
		want = names[pos-1]
	case pos < 0:
		want = names[len(names)-1]
	}
	var st syscall.Stat_t
	if want == "" || syscall.Stat(want, &st) != nil || st.Ino != l.ino {
		l.close()
		return nil
	}
	return l
}

// locate lists path and its rotated files, newest first, and the position
// of the file with inode ino among them (-1: none).
func (r *reader) locate(ino uint64) (names []string, pos int) {
	idx := rotatedIndexes(r.path)
	names = make([]string, 0, len(idx)+1)
	names = append(names, r.path)
	for _, n := range idx {
		names = append(names, r.path+"."+strconv.Itoa(n))
	}
	var st syscall.Stat_t
	for i, name := range names {
		if syscall.Stat(name, &st) == nil && st.Ino == ino {
			return names, i
		}
	}
	return names, -1
}

// lineReader yields complete lines from a file that may still be growing:
// a partial line at the end is kept until its newline arrives. Lines
// longer than maxEntry are skipped.
type lineReader struct {
	r        io.Reader
	buf      []byte
	start    int
	skipping bool // discarding an over-long line up to its newline
}

func (lr *lineReader) reset() {
	lr.buf = lr.buf[:0]
	lr.start = 0
	lr.skipping = false
}

// next returns the next complete line, newline included, valid until the
// following call; io.EOF when no complete line is available yet.
func (lr *lineReader) next() ([]byte, error) {
	for {
		if i := bytes.IndexByte(lr.buf[lr.start:], '\n'); i >= 0 {
			line := lr.buf[lr.start : lr.start+i+1]
			lr.start += i + 1
			if lr.skipping {
				lr.skipping = false
				continue
			}
			return line, nil
		}
		// Compact, then read more.
		if lr.start > 0 {
			n := copy(lr.buf, lr.buf[lr.start:])
			lr.buf = lr.buf[:n]
			lr.start = 0
		}
		if len(lr.buf) >= maxEntry {
			lr.buf = lr.buf[:0]
			lr.skipping = true
		}
		if cap(lr.buf)-len(lr.buf) < 4<<10 {
			nb := make([]byte, len(lr.buf), 2*cap(lr.buf)+32<<10)
			copy(nb, lr.buf)
			lr.buf = nb
		}
		n, err := lr.r.Read(lr.buf[len(lr.buf):cap(lr.buf)])
		lr.buf = lr.buf[:len(lr.buf)+n]
		if n > 0 {
			continue
		}
		if err == nil {
			err = io.EOF
		}
		return nil, err
	}
}

// watcher wakes a follower when the log's directory changes. Without
// inotify it never fires and the follower polls.
type watcher struct {
	f  *os.File
	ch chan struct{}
}

func newWatcher(dir string) *watcher {
	w := &watcher{ch: make(chan struct{}, 1)}
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return w
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_MODIFY|syscall.IN_CREATE|syscall.IN_MOVED_TO|syscall.IN_MOVED_FROM|syscall.IN_DELETE|syscall.IN_CLOSE_WRITE); err != nil {
		syscall.Close(fd)
		return w
	}
	w.f = os.NewFile(uintptr(fd), "inotify")
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := w.f.Read(buf); err != nil {
				return
			}
			select {
			case w.ch <- struct{}{}:
			default:
			}
		}
	}()
	return w
}

func (w *watcher) events() <-chan struct{} {
	if w == nil {
		return nil
	}
	return w.ch
}

func (w *watcher) close() {
	if w != nil && w.f != nil {
		w.f.Close()
	}
}
