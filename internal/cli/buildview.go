package cli

import (
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/jsonstream"
)

// buildView is the compact live view of a classic-builder stream on a
// terminal: one line per step with its elapsed time, and under the running
// step only its last few output lines, redrawn in place. When the build
// fails the failing step's whole output is printed, so nothing the user
// needs to debug is hidden by the compaction.
type buildView struct {
	out   io.Writer
	width func() int
	now   func() time.Time

	mu        sync.Mutex
	start     time.Time
	total     int
	steps     []*viewStep
	pulls     map[string]string // pull progress by layer ID, shown under FROM
	pullIDs   []string
	partial   string   // an output line not yet ended by a newline
	tail      []string // lines printed after the last step (Successfully …)
	drawn     int      // lines of the live area, to move back over
	committed int      // steps already printed for good
	done      bool
	failed    bool
}

type viewStep struct {
	n      int
	text   string
	start  time.Time
	end    time.Time
	cached bool
	out    []string
}

// viewTailLines is how many output lines of the running step stay visible.
const viewTailLines = 6

var stepLine = regexp.MustCompile(`^Step (\d+)/(\d+) : (.*)$`)

func newBuildView(out io.Writer, width func() int) *buildView {
	return &buildView{out: out, width: width, now: time.Now, start: time.Now(), pulls: map[string]string{}}
}

// run redraws every interval until stop is closed, so timers advance while
// a step prints nothing.
func (v *buildView) run(interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			v.mu.Lock()
			if !v.done {
				v.draw()
			}
			v.mu.Unlock()
		}
	}
}

// handle takes one message of the stream.
func (v *buildView) handle(m jsonstream.Message) {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case m.Stream != "":
		v.text(m.Stream)
	case m.Status != "" && m.ID != "":
		if _, ok := v.pulls[m.ID]; !ok {
			v.pullIDs = append(v.pullIDs, m.ID)
		}
		v.pulls[m.ID] = m.ID + ": " + m.Status
	case m.Status != "":
		v.line(m.Status)
	}
	v.draw()
}

func (v *buildView) text(s string) {
	s = v.partial + s
	lines := strings.Split(s, "\n")
	v.partial = lines[len(lines)-1]
	for _, l := range lines[:len(lines)-1] {
		v.line(strings.TrimRight(l, "\r"))
	}
}

func (v *buildView) line(l string) {
	now := v.now()
	if sm := stepLine.FindStringSubmatch(l); sm != nil {
		v.finishStep(now)
		var n, total int
		fmt.Sscan(sm[1], &n)
		fmt.Sscan(sm[2], &total)
		v.total = total
		v.steps = append(v.steps, &viewStep{n: n, text: sm[3], start: now})
		return
	}
	cur := v.current()
	switch {
	case strings.HasPrefix(l, "Successfully built ") || strings.HasPrefix(l, "Successfully tagged "):
		v.finishStep(now)
		v.tail = append(v.tail, l)
	case cur == nil:
		v.tail = append(v.tail, l)
	case l == " ---> Using cache":
		cur.cached = true
	case strings.HasPrefix(l, " ---> ") || strings.HasPrefix(l, "Removing intermediate container "):
		// Bookkeeping lines of the classic builder; the view's step line
		// says the same.
	default:
		cur.out = append(cur.out, l)
	}
}

func (v *buildView) current() *viewStep {
	if len(v.steps) == 0 {
		return nil
	}
	if s := v.steps[len(v.steps)-1]; s.end.IsZero() {
		return s
	}
	return nil
}

func (v *buildView) finishStep(now time.Time) {
	if s := v.current(); s != nil {
		s.end = now
		v.pulls, v.pullIDs = map[string]string{}, nil
	}
}

// finish draws the last frame. With failed set, the running step's whole
// output follows, as a plain build would have shown it.
func (v *buildView) finish(failed bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.partial != "" {
		v.line(v.partial)
		v.partial = ""
	}
	cur := v.current()
	if !failed {
		v.finishStep(v.now())
	}
	v.done, v.failed = true, failed
	v.draw()
	if failed && cur != nil && len(cur.out) > viewTailLines {
		fmt.Fprintf(v.out, "------\n > [%d/%d] %s:\n", cur.n, v.total, cur.text)
		for _, l := range cur.out {
			fmt.Fprintf(v.out, "%s\n", l)
		}
		fmt.Fprintln(v.out, "------")
	}
}

// draw replaces the live area (the running step, its last output lines
// and a status line) with the current one. Finished steps are printed
// once above it and never redrawn, so the live area stays a few lines
// high however long the build and always fits the terminal.
func (v *buildView) draw() {
	w := v.width()
	if w <= 0 {
		w = 80
	}
	now := v.now()
	var b strings.Builder
	if v.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", v.drawn)
	}
	put := func(l string) {
		b.WriteString("\r\x1b[2K")
		b.WriteString(l)
		b.WriteString("\n")
	}
	finished := 0
	for ; v.committed < len(v.steps) && !v.steps[v.committed].end.IsZero(); v.committed++ {
		put(v.stepLabel(v.steps[v.committed], now, w))
	}
	finished = v.committed
	live := 0
	if cur := v.current(); cur != nil {
		put(v.stepLabel(cur, now, w))
		live++
		pulls := v.pullIDs
		if len(pulls) > viewTailLines {
			pulls = pulls[len(pulls)-viewTailLines:]
		}
		for _, id := range pulls {
			put(clip(" => => "+v.pulls[id], w))
			live++
		}
		tail := cur.out
		if len(tail) > viewTailLines {
			tail = tail[len(tail)-viewTailLines:]
		}
		for _, l := range tail {
			put(clip(" => => "+l, w))
			live++
		}
	}
	state, end := "Building", now
	if v.done {
		state = "Built"
		if v.failed {
			state = "Failed"
		}
		if len(v.steps) > 0 && !v.steps[len(v.steps)-1].end.IsZero() {
			end = v.steps[len(v.steps)-1].end
		}
	}
	put(fmt.Sprintf("[+] %s %.1fs (%d/%d)", state, end.Sub(v.start).Seconds(), finished, v.total))
	live++
	if v.done {
		for _, l := range v.tail {
			put(l)
		}
		live = 0
	}
	b.WriteString("\x1b[J")
	v.drawn = live
	_, _ = io.WriteString(v.out, b.String())
}

func (v *buildView) stepLabel(s *viewStep, now time.Time, w int) string {
	e := s.end
	if e.IsZero() {
		e = now
	}
	label := fmt.Sprintf(" => [%d/%d] %s", s.n, v.total, s.text)
	if s.cached {
		label = fmt.Sprintf(" => CACHED [%d/%d] %s", s.n, v.total, s.text)
	}
	return padRight(label, fmt.Sprintf("%.1fs", e.Sub(s.start).Seconds()), w)
}

// padRight puts right at the end of a width-wide line after left, clipping
// left if the two do not fit.
func padRight(left, right string, width int) string {
	room := width - len(right) - 1
	if room < 8 {
		return clip(left, width)
	}
	left = clip(left, room)
	return left + strings.Repeat(" ", room-len(left)+1) + right
}

// clip shortens s to at most width bytes (one terminal line), marking the
// cut; it never splits a UTF-8 sequence.
func clip(s string, width int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return -1 // a stray control sequence would break the redraw
		}
		return r
	}, s)
	s = strings.ReplaceAll(s, "\t", " ")
	if len(s) <= width {
		return s
	}
	cut := max(width-3, 0)
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "..."
}
