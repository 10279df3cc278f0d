package distribution

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	units "github.com/docker/go-units"
	"github.com/moby/moby/api/types/jsonstream"
)

// Progress writes docker's JSON message stream (what `docker pull` and
// `docker push` render): one JSON object per line, each with a status and,
// for per-layer lines, the short layer ID and progress details. It is safe
// for concurrent use; a nil *Progress discards everything.
type Progress struct {
	mu  sync.Mutex
	w   io.Writer
	err error
	// last rate-limits progress-bar updates per ID.
	last map[string]time.Time
}

// NewProgress writes messages to w (nil: discard).
func NewProgress(w io.Writer) *Progress {
	if w == nil {
		return nil
	}
	return &Progress{w: w, last: map[string]time.Time{}}
}

// message is one line; "progress" is the pre-rendered bar older clients
// show, as dockerd still sends it.
type message struct {
	Status         string               `json:"status,omitempty"`
	ProgressDetail *jsonstream.Progress `json:"progressDetail,omitempty"`
	ProgressString string               `json:"progress,omitempty"`
	ID             string               `json:"id,omitempty"`
	Aux            any                  `json:"aux,omitempty"`
}

func (p *Progress) write(m message) {
	if p == nil {
		return
	}
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return
	}
	_, p.err = p.w.Write(append(b, '\r', '\n'))
}

// Status writes a status line without an ID ("Digest: sha256:…").
func (p *Progress) Status(format string, args ...any) {
	p.write(message{Status: fmt.Sprintf(format, args...)})
}

// Layer writes a status line for one layer ("Pull complete").
func (p *Progress) Layer(id, status string) {
	p.write(message{Status: status, ID: id, ProgressDetail: &jsonstream.Progress{}})
}

// IDStatus writes a status line with an ID and no progress ("latest:
// Pulling from library/busybox" is {"status":"Pulling from …","id":"latest"}).
func (p *Progress) IDStatus(id, status string) {
	p.write(message{Status: status, ID: id})
}

// Aux writes an auxiliary message (push's tag/digest/size record).
func (p *Progress) Aux(v any) {
	p.write(message{ProgressDetail: &jsonstream.Progress{}, Aux: v})
}

// Bar writes a progress-bar update for one layer, at most every 100ms per
// layer unless it is the last one (current == total).
func (p *Progress) Bar(id, status string, current, total int64) {
	if p == nil {
		return
	}
	now := time.Now()
	p.mu.Lock()
	last := p.last[id+status]
	if current != total && now.Sub(last) < 100*time.Millisecond {
		p.mu.Unlock()
		return
	}
	p.last[id+status] = now
	p.mu.Unlock()
	p.write(message{
		Status:         status,
		ID:             id,
		ProgressDetail: &jsonstream.Progress{Current: current, Total: total},
		ProgressString: renderBar(current, total),
	})
}

// renderBar draws docker's bar: "[=====>      ]  1.2MB/3.4MB".
func renderBar(current, total int64) string {
	const width = 50
	if total <= 0 {
		return units.HumanSize(float64(current))
	}
	n := int(float64(width) * float64(current) / float64(total))
	n = min(max(n, 0), width)
	bar := strings.Repeat("=", n)
	if n < width {
		bar += ">" + strings.Repeat(" ", width-n-1)
	}
	return fmt.Sprintf("[%s] %8s/%s", bar, units.HumanSize(float64(current)), units.HumanSize(float64(total)))
}

// progressReader reports reads as a progress bar.
type progressReader struct {
	r      io.Reader
	p      *Progress
	id     string
	status string
	n      int64
	total  int64
}

func (r *progressReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.n += int64(n)
	if n > 0 {
		r.p.Bar(r.id, r.status, r.n, r.total)
	}
	return n, err
}

// shortID is the 12-hex-digit ID docker shows for a layer.
func shortID(d fmt.Stringer) string {
	s := d.String()
	if i := strings.IndexByte(s, ':'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 12 {
		s = s[:12]
	}
	return s
}
