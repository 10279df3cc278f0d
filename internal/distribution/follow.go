package distribution

import (
	"errors"
	"io"
	"sync"

	"github.com/berth-engine/berth/internal/content"
)

// follower lets a layer be extracted while it downloads: it reads the
// blob's ingest file behind the download. The download never waits for
// the extraction (so a slow extraction holds no download slot and no
// memory); the extraction waits at the end of what has arrived. Nothing it
// reads is verified: the extraction's result is used only if the blob is
// then committed (see stageRun).
type follower struct {
	f content.IngestFile

	mu   sync.Mutex
	cond sync.Cond
	n    int64 // bytes the download has written to the ingest
	off  int64 // bytes the extraction has read
	// ended: the download is over; err nil means complete and verified.
	ended bool
	err   error
	// want > 0: the extraction waits until off+want bytes are there.
	want int64

	// Extraction progress, reported once the download is complete
	// (docker shows extraction after the download).
	p      *Progress
	id     string
	total  int64
	report bool
}

func newFollower(f content.IngestFile, p *Progress, id string, total int64) *follower {
	fl := &follower{f: f, p: p, id: id, total: total}
	fl.cond.L = &fl.mu
	return fl
}

// Write records that b was written to the ingest (it is called after the
// ingest's own write).
func (fl *follower) Write(b []byte) (int, error) {
	fl.mu.Lock()
	fl.n += int64(len(b))
	wake := fl.want > 0 && fl.n-fl.off >= fl.want
	fl.mu.Unlock()
	if wake {
		fl.cond.Broadcast()
	}
	return len(b), nil
}

// followChunk is how much the extraction waits for before it reads on:
// the network delivers some 64 KiB at a time, and waking the extraction
// for each would cost thread switches for little work.
const followChunk = 256 << 10

// end marks the end of the download: err nil once the blob is verified
// (the extraction then reads to the end and gets io.EOF), else why it
// failed (the extraction's next read fails with it). Only the first call
// counts.
func (fl *follower) end(err error) {
	fl.mu.Lock()
	if !fl.ended {
		fl.ended, fl.err = true, err
	}
	fl.mu.Unlock()
	fl.cond.Broadcast()
}

// reportProgress starts showing the extraction's progress.
func (fl *follower) reportProgress() {
	fl.mu.Lock()
	fl.report = true
	off := fl.off
	fl.mu.Unlock()
	if fl.id != "" {
		fl.p.Bar(fl.id, "Extracting", off, fl.total)
	}
}

func (fl *follower) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	fl.mu.Lock()
	if want := min(int64(len(b)), followChunk); fl.n-fl.off < want && !fl.ended {
		fl.want = want
		for fl.n-fl.off < want && !fl.ended {
			fl.cond.Wait()
		}
		fl.want = 0
	}
	off, n, ended, err := fl.off, fl.n, fl.ended, fl.err
	fl.mu.Unlock()
	if ended && err != nil {
		return 0, err
	}
	if off == n {
		return 0, io.EOF
	}
	if int64(len(b)) > n-off {
		b = b[:n-off]
	}
	k, rerr := fl.f.ReadAt(b, off)
	if errors.Is(rerr, io.EOF) {
		// Every byte up to n was written before n grew.
		rerr = nil
		if k < len(b) {
			rerr = io.ErrUnexpectedEOF
		}
	}
	fl.mu.Lock()
	fl.off += int64(k)
	off, report := fl.off, fl.report
	fl.mu.Unlock()
	if report && k > 0 && fl.id != "" {
		fl.p.Bar(fl.id, "Extracting", off, fl.total)
	}
	return k, rerr
}

// stageRun is one extraction following one download attempt.
type stageRun struct {
	fl  *follower
	res chan stageResult
}

func startStage(f content.IngestFile, stage stageFunc, p *Progress, id string, total int64) *stageRun {
	r := &stageRun{fl: newFollower(f, p, id, total), res: make(chan stageResult, 1)}
	go func() {
		st, err := stage(r.fl)
		f.Close()
		r.res <- stageResult{st: st, err: err}
	}()
	return r
}

// abandon stops an extraction whose download failed and removes what it
// staged: a stream cut short or wrong must never be committed.
func (r *stageRun) abandon(err error) {
	r.fl.end(err)
	if sr := <-r.res; sr.st != nil {
		sr.st.Discard()
	}
}
