package monitor

import (
	"encoding/binary"
	"io"
	"os"
	"sync"
	"syscall"
)

// Stream numbers, as in docker's stdcopy frame header.
const (
	streamStdout = 1
	streamStderr = 2
)

// Bounds that keep one slow party from costing the container or the shim
// more than a fixed amount.
const (
	readBufSize      = 16 << 10 // one read from the container's stdout/stderr
	maxClientPending = 4 << 20  // output queued for one attach client before it is dropped
	maxHeld          = 64 << 10 // output held while the container is being created
)

// readBufs lends read buffers to the copiers only while data is ready, so
// an idle shim holds none.
var readBufs = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// copyOutput reads f (a pipe or the pty master) until EOF and hands each
// chunk to emit. A pty master reports EIO once the container's side is
// closed: that is its EOF.
func copyOutput(f *os.File, emit func([]byte)) {
	rc, err := f.SyscallConn()
	if err != nil {
		logError("output stream", "err", err)
		return
	}
	for {
		var buf *[]byte
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			if buf == nil {
				// Borrow a buffer only when there is something to read.
				if !pollReady(int(fd)) {
					return false
				}
				buf = readBufs.Get().(*[]byte)
			}
			for {
				n, rerr = syscall.Read(int(fd), *buf)
				if rerr != syscall.EINTR {
					break
				}
			}
			if rerr == syscall.EAGAIN {
				readBufs.Put(buf)
				buf = nil
				return false
			}
			return true
		})
		if n > 0 {
			emit((*buf)[:n])
		}
		if buf != nil {
			readBufs.Put(buf)
		}
		if err != nil || rerr != nil || n <= 0 {
			return
		}
	}
}

// broadcaster fans the container's output out to the log and to attach
// clients. Nothing in it waits for a client or the disk: the log queue and
// each client's queue are bounded.
type broadcaster struct {
	tty bool

	mu      sync.Mutex
	held    bool // the container is being created: keep output back (see release)
	heldOut []heldChunk
	heldLen int
	log     [3]io.Writer // by stream; nil when there is no log
	clients map[*client]struct{}
	closed  bool // the container's output ended
}

type heldChunk struct {
	stream int
	data   []byte
}

func newBroadcaster(tty bool, stdout, stderr io.Writer) *broadcaster {
	b := &broadcaster{tty: tty, clients: map[*client]struct{}{}}
	b.log[streamStdout] = stdout
	b.log[streamStderr] = stderr
	return b
}

// write distributes one chunk of output. The log comes first, outside the
// lock: when the log's queue is full it holds back this stream's copier,
// and with it the container (docker's blocking mode), but never the
// control path or the other stream's clients.
func (b *broadcaster) write(stream int, p []byte) {
	if b.tty {
		stream = streamStdout // docker logs a TTY's output as stdout
	}
	b.mu.Lock()
	if b.held && b.heldLen+len(p) <= maxHeld {
		b.heldOut = append(b.heldOut, heldChunk{stream, append([]byte(nil), p...)})
		b.heldLen += len(p)
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	if w := b.log[stream]; w != nil {
		_, _ = w.Write(p)
	}
	b.mu.Lock()
	b.toClients(stream, p)
	b.mu.Unlock()
}

func (b *broadcaster) distribute(stream int, p []byte) {
	if w := b.log[stream]; w != nil {
		_, _ = w.Write(p)
	}
	b.toClients(stream, p)
}

func (b *broadcaster) toClients(stream int, p []byte) {
	for c := range b.clients {
		if !c.wants(stream) {
			continue
		}
		if !c.queue(stream, p, b.tty) {
			delete(b.clients, c)
			logWarn("attach client too slow; dropped it", "pending", maxClientPending)
		}
	}
}

// release ends the hold: what the runtime printed while creating goes out
// like any other output.
func (b *broadcaster) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.heldOut {
		b.distribute(c.stream, c.data)
	}
	b.held, b.heldOut, b.heldLen = false, nil, 0
}

// heldText is the held stderr (stdout for a TTY), the runtime's own words
// when creating failed.
func (b *broadcaster) heldText() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []byte
	for _, c := range b.heldOut {
		if c.stream == streamStderr || b.tty {
			out = append(out, c.data...)
		}
	}
	return out
}

// add registers an attach client; it gets all output from now on. It
// reports false when the output has already ended.
func (b *broadcaster) add(c *client) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.clients[c] = struct{}{}
	return true
}

func (b *broadcaster) remove(c *client) {
	b.mu.Lock()
	delete(b.clients, c)
	b.mu.Unlock()
}

// close marks the end of the output: clients get what is queued, then
// their stream ends. It returns them so the caller can wait for that.
func (b *broadcaster) close() []*client {
	b.mu.Lock()
	b.closed = true
	clients := make([]*client, 0, len(b.clients))
	for c := range b.clients {
		clients = append(clients, c)
	}
	b.clients = map[*client]struct{}{}
	b.mu.Unlock()
	for _, c := range clients {
		c.finish()
	}
	return clients
}

// client is one attach connection's output side: a bounded queue and the
// goroutine that writes it.
type client struct {
	conn           *os.File
	stdout, stderr bool

	mu      sync.Mutex
	cond    *sync.Cond
	pending []byte
	ending  bool // no more output will come
	dropped bool
	done    chan struct{} // closed when the writer is finished
}

func newClient(conn *os.File, stdout, stderr bool) *client {
	c := &client{conn: conn, stdout: stdout, stderr: stderr, done: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *client) wants(stream int) bool {
	return stream == streamStdout && c.stdout || stream == streamStderr && c.stderr
}

// queue appends a chunk (framed for a non-TTY container); false means the
// client fell too far behind and was dropped.
func (c *client) queue(stream int, p []byte, tty bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dropped {
		return false
	}
	if len(c.pending)+len(p)+8 > maxClientPending {
		c.dropped = true
		c.pending = nil
		c.cond.Signal()
		// Closing unblocks a writer stuck on a client that stopped reading.
		c.conn.Close()
		return false
	}
	if !tty {
		var hdr [8]byte
		hdr[0] = byte(stream)
		binary.BigEndian.PutUint32(hdr[4:], uint32(len(p)))
		c.pending = append(c.pending, hdr[:]...)
	}
	c.pending = append(c.pending, p...)
	c.cond.Signal()
	return true
}

// finish lets the writer flush what is queued and end the stream.
func (c *client) finish() {
	c.mu.Lock()
	c.ending = true
	c.cond.Signal()
	c.mu.Unlock()
}

// writeLoop sends queued output until the stream ends. Once everything is
// sent it half-closes the connection: the client sees EOF, and the
// connection's reader (the attach handler) closes it when the client is
// done too. Closing with the client's bytes unread would make it see a
// reset instead of EOF.
func (c *client) writeLoop() {
	defer close(c.done)
	var spare []byte
	for {
		c.mu.Lock()
		for len(c.pending) == 0 && !c.ending && !c.dropped {
			c.cond.Wait()
		}
		if c.dropped {
			c.mu.Unlock()
			return
		}
		if len(c.pending) == 0 && c.ending {
			c.mu.Unlock()
			break
		}
		out := c.pending
		c.pending = spare[:0]
		c.mu.Unlock()

		if _, err := c.conn.Write(out); err != nil {
			c.mu.Lock()
			c.dropped = true
			c.pending = nil
			c.mu.Unlock()
			c.conn.Close()
			return
		}
		if cap(out) <= 64<<10 {
			spare = out
		} else {
			spare = nil
		}
	}
	_ = closeWrite(c.conn)
}
