package formatter

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func sampleContainers() []container.Summary {
	return []container.Summary{
		{
			ID: "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90", Names: []string{"/web"}, Image: "busybox",
			Command: "sh -c 'while true; do sleep 1; done'", Created: now.Add(-2 * time.Minute).Unix(), State: "running", Status: "Up 2 minutes",
			Ports:  []container.PortSummary{{IP: netip.MustParseAddr("0.0.0.0"), PrivatePort: 80, PublicPort: 8080, Type: "tcp"}},
			SizeRw: 0, SizeRootFs: 1_234_567, Labels: map[string]string{"b": "2", "a": "1"},
		},
		{
			ID: "ffff000000000000000000000000000000000000000000000000000000000000", Names: []string{"/old", "/web/link"}, Image: "other:1",
			Command: "true", Created: now.Add(-5 * time.Second).Unix(), State: "exited", Status: "Exited (3) 5 seconds ago",
		},
	}
}

func TestContainerTable(t *testing.T) {
	var b bytes.Buffer
	ctx := Context{Output: &b, Format: NewContainerFormat("", false, true), Trunc: true}
	if err := ContainerWrite(ctx, sampleContainers(), now); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"CONTAINER ID   IMAGE     COMMAND                  CREATED         STATUS                     PORTS                  NAMES     SIZE\n" +
		"a1b2c3d4e5f6   busybox   \"sh -c 'while true; …\"   2 minutes ago   Up 2 minutes               0.0.0.0:8080->80/tcp   web       0B (virtual 1.23MB)\n" +
		"ffff00000000   other:1   \"true\"                   5 seconds ago   Exited (3) 5 seconds ago                          old       0B\n"
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestContainerFormats(t *testing.T) {
	cases := []struct {
		format  string
		quiet   bool
		noTrunc bool
		want    string
	}{
		{"", true, false, "a1b2c3d4e5f6\nffff00000000\n"},
		{"", true, true, "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90\nffff000000000000000000000000000000000000000000000000000000000000\n"},
		{"{{.Names}}", false, false, "web\nold\n"},
		{"{{.Names}}", false, true, "web\nold,web/link\n"},
		{"{{.Labels}} {{.Label \"a\"}}", false, false, "a=1,b=2 1\n \n"},
		{`{{.Command}}`, false, true, "\"sh -c 'while true; do sleep 1; done'\"\n\"true\"\n"},
		{"table {{.ID}}\t{{.Status}}", false, false, "CONTAINER ID   STATUS\na1b2c3d4e5f6   Up 2 minutes\nffff00000000   Exited (3) 5 seconds ago\n"},
		{"table {{.Label \"com.example.role\"}}", false, false, "role\n\n\n"},
		{"{{upper .State}} {{lower \"X\"}} {{title \"ab cd\"}} {{join (split .Image \":\") \"/\"}} {{truncate .Image 3}} [{{pad .State 1 2}}]", false, false,
			"RUNNING x Ab Cd busybox bus [ running  ]\nEXITED x Ab Cd other/1 oth [ exited  ]\n"},
	}
	for _, c := range cases {
		var b bytes.Buffer
		ctx := Context{Output: &b, Format: NewContainerFormat(c.format, c.quiet, false), Trunc: !c.noTrunc}
		if err := ContainerWrite(ctx, sampleContainers(), now); err != nil {
			t.Fatalf("%q: %v", c.format, err)
		}
		if b.String() != c.want {
			t.Errorf("%q:\n%q\nwant\n%q", c.format, b.String(), c.want)
		}
	}
	var b bytes.Buffer
	if err := ContainerWrite(Context{Output: &b, Format: "json", Trunc: true}, sampleContainers()[:1], now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"Names":"web"`, `"State":"running"`, `"Ports":"0.0.0.0:8080-\u003e80/tcp"`, `"RunningFor":"2 minutes ago"`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("json lacks %s: %s", want, b.String())
		}
	}
	if err := ContainerWrite(Context{Output: &b, Format: "{{.Nope"}, nil, now); err == nil || !strings.Contains(err.Error(), "template parsing error") {
		t.Errorf("bad template: %v", err)
	}
}

func TestDisplayablePorts(t *testing.T) {
	ip := netip.MustParseAddr
	cases := []struct {
		ports []container.PortSummary
		want  string
	}{
		{nil, ""},
		{[]container.PortSummary{{PrivatePort: 9000, Type: "tcp"}, {PrivatePort: 9001, Type: "tcp"}, {PrivatePort: 9002, Type: "tcp"}, {PrivatePort: 53, Type: "udp"}},
			"53/udp, 9000-9002/tcp"},
		{[]container.PortSummary{{IP: ip("0.0.0.0"), PrivatePort: 80, PublicPort: 8080, Type: "tcp"}, {IP: ip("::"), PrivatePort: 80, PublicPort: 8080, Type: "tcp"}},
			"0.0.0.0:8080->80/tcp, [::]:8080->80/tcp"},
		{[]container.PortSummary{{IP: ip("0.0.0.0"), PrivatePort: 80, PublicPort: 80, Type: "tcp"}, {IP: ip("0.0.0.0"), PrivatePort: 81, PublicPort: 81, Type: "tcp"}},
			"0.0.0.0:80-81->80-81/tcp"},
	}
	for _, c := range cases {
		if got := DisplayablePorts(c.ports); got != c.want {
			t.Errorf("%+v: %q, want %q", c.ports, got, c.want)
		}
	}
}

func TestEllipsis(t *testing.T) {
	cases := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 20, "short"},
		{"exactly-twenty-chars", 20, "exactly-twenty-chars"},
		{"twenty-one characters", 20, "twenty-one characte…"},
		{"日本語のコマンドです", 8, "日本語…"},
		{"abc", 1, "a"},
		{"abc", 0, ""},
		{"", 5, ""},
	}
	for _, c := range cases {
		if got := Ellipsis(c.in, c.n); got != c.want {
			t.Errorf("Ellipsis(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

func TestImageTable(t *testing.T) {
	imgs := []image.Summary{
		{ID: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", RepoTags: []string{"busybox:latest", "bb:v1"},
			RepoDigests: []string{"busybox@sha256:abababababababababababababababababababababababababababababababab"}, Created: now.Add(-3 * 24 * time.Hour).Unix(), Size: 4_261_550},
		{ID: "sha256:1111111111111111111111111111111111111111111111111111111111111111", Created: now.Add(-90 * time.Minute).Unix(), Size: 999},
	}
	var b bytes.Buffer
	ctx := ImageContext{Context: Context{Output: &b, Format: NewImageFormat("", false, false), Trunc: true}, Now: now}
	if err := ImageWrite(ctx, imgs); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"REPOSITORY   TAG       IMAGE ID       CREATED       SIZE\n" +
		"bb           v1        0123456789ab   3 days ago    4.26MB\n" +
		"busybox      latest    0123456789ab   3 days ago    4.26MB\n" +
		"<none>       <none>    111111111111   2 hours ago   999B\n"
	if b.String() != want {
		t.Errorf("images:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	ctx = ImageContext{Context: Context{Output: &b, Format: NewImageFormat("", false, true), Trunc: true}, Digest: true, Now: now}
	if err := ImageWrite(ctx, imgs); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(b.String(), "\n"); !strings.HasPrefix(lines[0], "REPOSITORY   TAG       DIGEST") ||
		!strings.Contains(lines[2], "sha256:abab") || !strings.Contains(lines[1], "<none>") {
		t.Errorf("--digests:\n%s", b.String())
	}
	b.Reset()
	ctx = ImageContext{Context: Context{Output: &b, Format: NewImageFormat("", true, false), Trunc: true}, Now: now}
	_ = ImageWrite(ctx, imgs)
	if b.String() != "0123456789ab\n0123456789ab\n111111111111\n" {
		t.Errorf("-q: %q", b.String())
	}
}

func TestHistory(t *testing.T) {
	items := []image.HistoryResponseItem{
		{ID: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Created: now.Add(-48 * time.Hour).Unix(),
			CreatedBy: "/bin/sh -c #(nop)\tCMD [\"sh\"] and then quite a lot more text", Size: 0, Comment: "imported"},
		{ID: "<missing>", Created: now.Add(-72 * time.Hour).Unix(), CreatedBy: "ADD file", Size: 4_261_550},
	}
	var b bytes.Buffer
	if err := HistoryWrite(Context{Output: &b, Format: NewHistoryFormat("", false, true), Trunc: true}, true, now, items); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"IMAGE          CREATED      CREATED BY                                      SIZE      COMMENT\n" +
		"0123456789ab   2 days ago   /bin/sh -c #(nop) CMD [\"sh\"] and then quite …   0B        imported\n" +
		"<missing>      3 days ago   ADD file                                        4.26MB    \n"
	if b.String() != want {
		t.Errorf("history:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	_ = HistoryWrite(Context{Output: &b, Format: NewHistoryFormat("", false, false), Trunc: true}, false, now, items[1:])
	if !strings.Contains(b.String(), "2026-11-19T12:00:00Z") || !strings.Contains(b.String(), "4261550") {
		t.Errorf("-H=false:\n%s", b.String())
	}
}

func TestMarshalJSONRejectsNonStruct(t *testing.T) {
	if _, err := MarshalJSON(42); err == nil {
		t.Fatal("MarshalJSON(42) succeeded")
	}
}
