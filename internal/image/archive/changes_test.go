package archive_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/image/archive"
	"github.com/containerd/errdefs"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
)

func TestApplyChanges(t *testing.T) {
	type cfg = dockerspec.DockerOCIImageConfig
	cases := []struct {
		name    string
		start   func(c *cfg)
		changes []string
		check   func(t *testing.T, c cfg)
	}{
		{"cmd exec form", nil, []string{`CMD ["echo", "from cmd"]`}, func(t *testing.T, c cfg) {
			want(t, c.Cmd, []string{"echo", "from cmd"})
		}},
		{"cmd shell form", nil, []string{`CMD echo hi there`}, func(t *testing.T, c cfg) {
			want(t, c.Cmd, []string{"/bin/sh", "-c", "echo hi there"})
		}},
		{"cmd shell form uses SHELL", func(c *cfg) { c.Shell = []string{"/bin/bash", "-xc"} }, []string{`CMD echo hi`}, func(t *testing.T, c cfg) {
			want(t, c.Cmd, []string{"/bin/bash", "-xc", "echo hi"})
		}},
		{"entrypoint drops inherited cmd", func(c *cfg) { c.Cmd = []string{"sh"} }, []string{`ENTRYPOINT ["/bin/app"]`}, func(t *testing.T, c cfg) {
			want(t, c.Entrypoint, []string{"/bin/app"})
			if c.Cmd != nil {
				t.Errorf("Cmd = %v, want nil", c.Cmd)
			}
		}},
		{"entrypoint keeps cmd set alongside", nil, []string{`CMD ["--help"]`, `ENTRYPOINT /bin/app`}, func(t *testing.T, c cfg) {
			want(t, c.Entrypoint, []string{"/bin/sh", "-c", "/bin/app"})
			want(t, c.Cmd, []string{"--help"})
		}},
		{"env forms and replacement", func(c *cfg) { c.Env = []string{"PATH=/bin", "A=old"} }, []string{`ENV A=1 B="two words"`, `ENV C 3 4`, `ENV PATH=/opt/bin:$PATH`}, func(t *testing.T, c cfg) {
			want(t, c.Env, []string{"PATH=/opt/bin:/bin", "A=1", "B=two words", "C=3 4"})
		}},
		{"env expands from config env", func(c *cfg) { c.Env = []string{"HOME=/home/me"} }, []string{`WORKDIR $HOME/src`, `USER ${NOBODY:-nobody}`}, func(t *testing.T, c cfg) {
			if c.WorkingDir != "/home/me/src" || c.User != "nobody" {
				t.Errorf("WorkingDir %q User %q", c.WorkingDir, c.User)
			}
		}},
		{"workdir relative", nil, []string{`WORKDIR /a`, `WORKDIR b/../c`, `WORKDIR d`}, func(t *testing.T, c cfg) {
			if c.WorkingDir != "/a/c/d" {
				t.Errorf("WorkingDir %q", c.WorkingDir)
			}
		}},
		{"expose", nil, []string{`EXPOSE 80 443/udp 8000-8001/tcp`}, func(t *testing.T, c cfg) {
			want(t, keys(c.ExposedPorts), []string{"443/udp", "80/tcp", "8000/tcp", "8001/tcp"})
		}},
		{"label", nil, []string{`LABEL a=b "c d"=e`, `LABEL a=z`}, func(t *testing.T, c cfg) {
			if !reflect.DeepEqual(c.Labels, map[string]string{"a": "z", "c d": "e"}) {
				t.Errorf("Labels %v", c.Labels)
			}
		}},
		{"volume", nil, []string{`VOLUME /data`, `VOLUME ["/x", "/y"]`}, func(t *testing.T, c cfg) {
			want(t, keys(c.Volumes), []string{"/data", "/x", "/y"})
		}},
		{"stopsignal", nil, []string{`STOPSIGNAL SIGQUIT`}, func(t *testing.T, c cfg) {
			if c.StopSignal != "SIGQUIT" {
				t.Errorf("StopSignal %q", c.StopSignal)
			}
		}},
		{"onbuild", nil, []string{`ONBUILD RUN echo hi`}, func(t *testing.T, c cfg) {
			want(t, c.OnBuild, []string{"RUN echo hi"})
		}},
		{"healthcheck", nil, []string{`HEALTHCHECK --interval=5s CMD true`}, func(t *testing.T, c cfg) {
			if c.Healthcheck == nil || c.Healthcheck.Interval != 5*time.Second || !reflect.DeepEqual(c.Healthcheck.Test, []string{"CMD-SHELL", "true"}) {
				t.Errorf("Healthcheck %+v", c.Healthcheck)
			}
		}},
		{"lower case instruction", nil, []string{`cmd ["x"]`}, func(t *testing.T, c cfg) {
			want(t, c.Cmd, []string{"x"})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c cfg
			if tc.start != nil {
				tc.start(&c)
			}
			if err := archive.ApplyChanges(&c, tc.changes); err != nil {
				t.Fatalf("ApplyChanges: %v", err)
			}
			tc.check(t, c)
		})
	}
}

func TestApplyChangesRejects(t *testing.T) {
	cases := []struct {
		change, msg string
	}{
		{"RUN echo no", "RUN is not a valid change command"},
		{"FROM busybox", "FROM is not a valid change command"},
		{"COPY a b", "COPY is not a valid change command"},
		{"ADD a b", "ADD is not a valid change command"},
		{"ARG x", "ARG is not a valid change command"},
		{"SHELL [\"/bin/bash\"]", "SHELL is not a valid change command"},
		{"MAINTAINER me", "MAINTAINER is not a valid change command"},
		{"BOGUS x", "BOGUS is not a valid change command"},
		{"STOPSIGNAL NOPE", "NOPE"},
		{"EXPOSE notaport", "notaport"},
		{"ENV", "ENV requires at least one argument"},
		{`VOLUME [""]`, "VOLUME specified can not be an empty string"},
		{"WORKDIR", "WORKDIR requires exactly one argument"},
	}
	for _, tc := range cases {
		c := dockerspec.DockerOCIImageConfig{}
		c.Env = []string{"KEEP=1"}
		err := archive.ApplyChanges(&c, []string{`LABEL before=1`, tc.change})
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("%q: error %v, want invalid argument", tc.change, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: error %q lacks %q", tc.change, err, tc.msg)
		}
		// A failing set of changes leaves the config alone.
		if c.Labels != nil || len(c.Env) != 1 {
			t.Errorf("%q: config changed to %+v", tc.change, c)
		}
	}
}

// docker keeps the instruction as typed in its message.
func TestApplyChangesMessageCase(t *testing.T) {
	var c dockerspec.DockerOCIImageConfig
	if err := archive.ApplyChanges(&c, []string{"run echo"}); err == nil || err.Error() != "run is not a valid change command" {
		t.Errorf("error %v", err)
	}
	// Blank changes are an error, as in docker ("file with no
	// instructions"), and change nothing.
	if err := archive.ApplyChanges(&c, []string{"", "  "}); !errdefs.IsInvalidArgument(err) || c.Cmd != nil {
		t.Errorf("blank changes: %v, %+v", err, c)
	}
}

func want(t *testing.T, got, w []string) {
	t.Helper()
	if !reflect.DeepEqual(got, w) {
		t.Errorf("got %q, want %q", got, w)
	}
}

func keys(m map[string]struct{}) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}
