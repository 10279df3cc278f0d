package jsonfile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// DefaultMaxBuffer is how many encoded bytes may wait for the disk before
// a Writer pushes back on (or, non-blocking, drops) output: a disk that
// stalls for a moment does not stall the container, and the memory this
// costs is bounded.
const DefaultMaxBuffer = 1 << 20

// WriterOptions configures rotation and buffering.
type WriterOptions struct {
	// MaxSize is the size a file may reach before it is rotated, like
	// docker's --log-opt max-size; 0 means unlimited.
	MaxSize int64
	// MaxFiles is how many files are kept, the current one included, like
	// --log-opt max-file. 1 (or less) truncates the file in place.
	MaxFiles int
	// MaxBuffer bounds the bytes queued for the disk; 0 means
	// DefaultMaxBuffer.
	MaxBuffer int
	// NonBlocking drops output when the queue is full instead of making
	// the writer wait, like docker's --log-opt mode=non-blocking. By
	// default (docker's "blocking" mode) nothing is lost: a writer waits
	// for room, which slows the container to the disk's pace.
	NonBlocking bool
}

// Writer appends log entries to a json-file log, rotating it. Entries are
// encoded by the caller's goroutine into a bounded queue and written by a
// short-lived flusher goroutine, so a slow disk costs memory up to
// MaxBuffer before the writer has to wait (or, NonBlocking, output is
// dropped).
type Writer struct {
	path string
	opts WriterOptions

	mu       sync.Mutex
	queue    []byte
	spare    []byte
	flushing bool          // a flusher goroutine runs
	idle     chan struct{} // closed when the running flusher ends; nil when none
	space    sync.Cond     // signalled when the flusher takes the queue
	closed   bool
	dropped  int64
	err      error
	streams  []*Stream

	// Owned by the flusher (one at a time).
	f    *os.File
	size int64
}

// OpenWriter opens (creating it if needed) the log at path for appending.
func OpenWriter(path string, opts WriterOptions) (*Writer, error) {
	if opts.MaxFiles < 1 {
		opts.MaxFiles = 1
	}
	if opts.MaxBuffer <= 0 {
		opts.MaxBuffer = DefaultMaxBuffer
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open log: %w", err)
	}
	w := &Writer{path: path, opts: opts, f: f, size: fi.Size()}
	w.space.L = &w.mu
	return w, nil
}

// Stream returns a writer for one output stream ("stdout" or "stderr")
// that splits what it is given into log entries at newlines. A Stream is
// used by one goroutine at a time; different streams may write
// concurrently.
func (w *Writer) Stream(name string) *Stream {
	s := &Stream{w: w, name: name}
	w.mu.Lock()
	w.streams = append(w.streams, s)
	w.mu.Unlock()
	return s
}

// Dropped is how many bytes of output were lost because the queue was
// full or the disk failed.
func (w *Writer) Dropped() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped
}

// WriteEntry queues one entry as is (no splitting). It waits while the
// queue is full (unless NonBlocking); it reports false when the entry was
// dropped.
func (w *Writer) WriteEntry(stream string, line []byte, t time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for !w.opts.NonBlocking && !w.closed && len(w.queue) >= w.opts.MaxBuffer {
		w.space.Wait()
	}
	if w.closed || len(w.queue) >= w.opts.MaxBuffer {
		w.dropped += int64(len(line))
		return false
	}
	w.queue = AppendEntry(w.queue, stream, line, t)
	if !w.flushing {
		w.flushing = true
		w.idle = make(chan struct{})
		go w.flush(w.idle)
	}
	return true
}

// flush writes the queue until it is empty, then ends; one runs at a time.
func (w *Writer) flush(idle chan struct{}) {
	defer close(idle)
	for {
		w.mu.Lock()
		batch := w.queue
		if len(batch) == 0 {
			w.flushing = false
			w.mu.Unlock()
			return
		}
		w.queue = w.spare[:0]
		w.spare = nil
		w.space.Broadcast()
		w.mu.Unlock()

		err := w.writeBatch(batch)

		w.mu.Lock()
		if err != nil {
			if w.err == nil {
				w.err = err
			}
		}
		// A burst may have grown the buffers; an idle shim should not
		// keep a megabyte it no longer needs.
		if cap(batch) <= 64<<10 {
			w.spare = batch[:0]
		}
		w.mu.Unlock()
	}
}

// writeBatch writes whole entries, rotating between two of them when the
// next would take the file past MaxSize. An entry larger than MaxSize still
// gets written, to a file of its own.
func (w *Writer) writeBatch(batch []byte) error {
	var firstErr error
	note := func(err error) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	start, n := 0, 0
	for n < len(batch) {
		l := bytes.IndexByte(batch[n:], '\n') + 1
		if l == 0 {
			l = len(batch) - n
		}
		if pending := w.size + int64(n-start); w.opts.MaxSize > 0 && pending > 0 && pending+int64(l) > w.opts.MaxSize {
			note(w.writeFile(batch[start:n]))
			start = n
			note(w.rotate())
		}
		n += l
	}
	note(w.writeFile(batch[start:n]))
	return firstErr
}

func (w *Writer) writeFile(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if w.f == nil {
		// An earlier rotation failed to create the file; try again.
		f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			w.mu.Lock()
			w.dropped += int64(len(p))
			w.mu.Unlock()
			return fmt.Errorf("reopen log: %w", err)
		}
		w.f, w.size = f, 0
	}
	n, err := w.f.Write(p)
	w.size += int64(n)
	if err != nil {
		w.mu.Lock()
		w.dropped += int64(len(p) - n)
		w.mu.Unlock()
		return fmt.Errorf("write log: %w", err)
	}
	return nil
}

// rotate starts a new file: with MaxFiles 1 the file is truncated in place,
// otherwise path.N-2 → path.N-1 … path → path.1 and a fresh path.
func (w *Writer) rotate() error {
	if w.opts.MaxFiles <= 1 {
		if w.f == nil {
			return nil
		}
		if err := w.f.Truncate(0); err != nil {
			return fmt.Errorf("truncate log: %w", err)
		}
		w.size = 0
		return nil
	}
	if w.f != nil {
		if err := w.f.Close(); err != nil {
			return fmt.Errorf("close log for rotation: %w", err)
		}
		w.f = nil
	}
	for i := w.opts.MaxFiles - 1; i > 1; i-- {
		err := os.Rename(w.path+"."+strconv.Itoa(i-1), w.path+"."+strconv.Itoa(i))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate log: %w", err)
		}
	}
	if err := os.Rename(w.path, w.path+".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rotate log: %w", err)
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("rotate log: %w", err)
	}
	w.f = f
	w.size = 0
	return nil
}

// Sync waits until everything queued so far has reached the file.
func (w *Writer) Sync() {
	for {
		w.mu.Lock()
		idle := w.idle
		busy := w.flushing
		w.mu.Unlock()
		if !busy {
			return
		}
		<-idle
	}
}

// Close writes out the streams' partial lines and everything queued, then
// closes the file. It returns the first write error, if any.
func (w *Writer) Close() error {
	w.mu.Lock()
	streams := w.streams
	w.mu.Unlock()
	for _, s := range streams {
		s.Flush()
	}
	w.mu.Lock()
	w.closed = true
	w.space.Broadcast()
	w.mu.Unlock()
	w.Sync()
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.err
	if w.f != nil {
		if cerr := w.f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close log: %w", cerr)
		}
		w.f = nil
	}
	return err
}

// Stream splits one output stream into log entries: at each newline (kept
// in the entry), and every MaxLineSize bytes of a longer line.
type Stream struct {
	w       *Writer
	name    string
	partial []byte
	t       time.Time // when the first byte of partial arrived
}

// Write logs p. It never fails; it waits while the Writer's queue is full
// (NonBlocking: output that does not fit is counted in Dropped).
func (s *Stream) Write(p []byte) (int, error) {
	n := len(p)
	now := time.Now()
	for len(p) > 0 {
		if len(s.partial) == 0 {
			s.t = now
		}
		i := bytes.IndexByte(p, '\n')
		room := MaxLineSize - len(s.partial)
		if i < 0 || i+1 > room {
			if len(p) < room {
				s.partial = append(s.partial, p...)
				break
			}
			s.partial = append(s.partial, p[:room]...)
			p = p[room:]
			s.emit()
			continue
		}
		if len(s.partial) == 0 {
			s.w.WriteEntry(s.name, p[:i+1], now)
		} else {
			s.partial = append(s.partial, p[:i+1]...)
			s.emit()
		}
		p = p[i+1:]
	}
	return n, nil
}

// Flush logs a pending partial line (output that did not end in a
// newline), as docker does when the stream ends.
func (s *Stream) Flush() {
	if len(s.partial) > 0 {
		s.emit()
	}
}

func (s *Stream) emit() {
	s.w.WriteEntry(s.name, s.partial, s.t)
	if cap(s.partial) > 4<<10 {
		s.partial = nil
	} else {
		s.partial = s.partial[:0]
	}
}
