package cli

import (
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/moby/moby/api/types/jsonstream"
)

// vt is just enough of a terminal for the build view's escapes: it keeps
// the screen as lines and a cursor row.
type vt struct {
	lines []string
	row   int
}

func (t *vt) Write(p []byte) (int, error) {
	s := string(p)
	for len(s) > 0 {
		switch {
		case strings.HasPrefix(s, "\x1b["):
			end := strings.IndexAny(s[2:], "ABCDJK")
			arg, op := s[2:2+end], s[2+end]
			s = s[3+end:]
			switch op {
			case 'A':
				n, _ := strconv.Atoi(arg)
				t.row = max(t.row-n, 0)
			case 'K':
				t.set("")
			case 'J':
				t.lines = t.lines[:min(t.row+1, len(t.lines))]
				t.set("")
			}
		case s[0] == '\r':
			s = s[1:]
		case s[0] == '\n':
			t.row++
			s = s[1:]
		default:
			i := strings.IndexAny(s, "\x1b\r\n")
			if i < 0 {
				i = len(s)
			}
			t.set(t.get() + s[:i])
			s = s[i:]
		}
	}
	return len(p), nil
}

func (t *vt) get() string {
	if t.row < len(t.lines) {
		return t.lines[t.row]
	}
	return ""
}

func (t *vt) set(l string) {
	for len(t.lines) <= t.row {
		t.lines = append(t.lines, "")
	}
	t.lines[t.row] = l
}

func (t *vt) screen() string {
	return strings.TrimRight(strings.Join(t.lines, "\n"), "\n")
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func newTestView(w int) (*buildView, *vt, *fakeClock) {
	term := &vt{}
	clk := &fakeClock{t: time.Unix(1000, 0)}
	v := newBuildView(term, func() int { return w })
	v.now, v.start = clk.now, clk.t
	return v, term, clk
}

func stream(s string) jsonstream.Message { return jsonstream.Message{Stream: s} }

func TestBuildViewCompactsFinishedSteps(t *testing.T) {
	v, term, clk := newTestView(60)
	v.handle(stream("Step 1/3 : FROM busybox\n"))
	v.handle(stream(" ---> 0123456789ab\n"))
	clk.t = clk.t.Add(100 * time.Millisecond)
	v.handle(stream("Step 2/3 : RUN for i in 1 2 3 4 5 6 7 8; do echo line$i; done\n"))
	v.handle(stream(" ---> Running in abcdef012345\n"))
	for i := 1; i <= 8; i++ {
		// Output arrives in chunks that do not end at line ends.
		v.handle(stream("li"))
		v.handle(stream("ne" + strconv.Itoa(i) + "\n"))
	}
	clk.t = clk.t.Add(1500 * time.Millisecond)
	live := term.screen()
	// While step 2 runs: its last six lines are visible, the first two not.
	if !strings.Contains(live, " => => line8") || !strings.Contains(live, " => => line3") || strings.Contains(live, "line2\n") {
		t.Fatalf("live view shows the wrong tail:\n%s", live)
	}
	if !strings.Contains(live, "[+] Building 0.1s (1/3)") {
		t.Fatalf("live view has no status line:\n%s", live)
	}
	v.handle(stream("Removing intermediate container abcdef012345\n ---> 1111111111aa\n"))
	v.handle(stream("Step 3/3 : CMD [\"sh\"]\n ---> Using cache\n ---> 2222222222bb\n"))
	v.handle(stream("Successfully built 2222222222bb\nSuccessfully tagged x:latest\n"))
	v.finish(false)
	want := ` => [1/3] FROM busybox                                  0.1s
 => [2/3] RUN for i in 1 2 3 4 5 6 7 8; do echo line... 1.5s
 => CACHED [3/3] CMD ["sh"]                             0.0s
[+] Built 1.6s (3/3)
Successfully built 2222222222bb
Successfully tagged x:latest`
	if got := term.screen(); got != want {
		t.Fatalf("final screen:\n%s\nwant:\n%s", got, want)
	}
}

func TestBuildViewShowsFailingStepOutput(t *testing.T) {
	v, term, _ := newTestView(80)
	v.handle(stream("Step 1/2 : FROM busybox\n ---> 0123456789ab\nStep 2/2 : RUN sh -c 'seq 10; exit 3'\n"))
	for i := 1; i <= 10; i++ {
		v.handle(stream(strconv.Itoa(i) + "\n"))
	}
	v.finish(true)
	got := term.screen()
	if !strings.Contains(got, "[+] Failed") {
		t.Fatalf("no failed status:\n%s", got)
	}
	// The compact tail hides lines 1-4; the full output follows the frame.
	full := got[strings.Index(got, "------"):]
	for i := 1; i <= 10; i++ {
		if !strings.Contains(full, "\n"+strconv.Itoa(i)+"\n") {
			t.Fatalf("line %d of the failing step is missing:\n%s", i, got)
		}
	}
}

func TestBuildViewClipsAndStripsControls(t *testing.T) {
	v, term, _ := newTestView(30)
	v.handle(stream("Step 1/1 : RUN printf x\n"))
	v.handle(stream("\x1b[2Jcleared? " + strings.Repeat("é", 40) + "\n"))
	// Had the container's escape reached the terminal, the vt would have
	// acted on it and the step line would be gone.
	if !strings.Contains(term.screen(), "[1/1] RUN printf x") {
		t.Fatalf("the step line was erased:\n%s", term.screen())
	}
	for _, l := range term.lines {
		if len(l) > 30 {
			t.Fatalf("line wider than the terminal: %q", l)
		}
		if !utf8.ValidString(l) {
			t.Fatalf("invalid UTF-8 after clipping: %q", l)
		}
	}
	if got := clip("a\x1b]0;title\x07b\tc", 80); got != "a]0;titleb c" {
		t.Fatalf("clip = %q", got)
	}
}
