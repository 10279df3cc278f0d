package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/testutil"
)

// Named volumes: create with labels, ls with filters, inspect, data kept
// across containers and a daemon restart, rm refused while in use.
func TestVolumeLifecycle(t *testing.T) {
	d := daemonWithBusybox(t)
	if got := strings.TrimSpace(d.MustBerth(t, "volume", "create", "--label", "app=db", "data")); got != "data" {
		t.Fatalf("volume create printed %q", got)
	}
	d.MustBerth(t, "volume", "create", "other")
	if got := d.MustBerth(t, "volume", "ls", "-q", "--filter", "label=app=db"); got != "data\n" {
		t.Errorf("ls --filter label: %q", got)
	}
	if got := d.MustBerth(t, "volume", "ls", "-q", "--filter", "name=oth"); got != "other\n" {
		t.Errorf("ls --filter name: %q", got)
	}
	mp := strings.TrimSpace(d.MustBerth(t, "volume", "inspect", "-f", "{{.Driver}} {{.Mountpoint}} {{.Labels.app}}", "data"))
	if want := "local " + filepath.Join(d.DataRoot, "volumes", "data", "_data") + " db"; mp != want {
		t.Errorf("inspect: %q, want %q", mp, want)
	}
	if got := d.MustBerth(t, "inspect", "-f", "{{.Name}} {{.Scope}}", "data"); got != "data local\n" {
		t.Errorf("inspect of a volume by name: %q", got)
	}
	d.MustBerth(t, "run", "--name", "writer", "-v", "data:/data", "busybox", "sh", "-c", "echo hello > /data/f")
	if got := d.MustBerth(t, "volume", "ls", "-q", "--filter", "dangling=true"); got != "other\n" {
		t.Errorf("ls dangling=true: %q", got)
	}
	r := d.Berth(t, "volume", "rm", "data")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "volume is in use") {
		t.Errorf("rm of a volume in use: %s", r)
	}
	r = d.Berth(t, "volume", "rm", "-f", "data")
	if r.ExitCode == 0 {
		t.Errorf("rm -f of a volume in use succeeded: %s", r)
	}
	d.MustBerth(t, "rm", "-v", "writer")
	if got := d.MustBerth(t, "run", "--rm", "-v", "data:/d:ro", "busybox", "cat", "/d/f"); got != "hello\n" {
		t.Errorf("data after rm of the writer: %q", got)
	}
	d.Stop(t)
	d.Start(t)
	if got := d.MustBerth(t, "run", "--rm", "-v", "data:/d", "busybox", "cat", "/d/f"); got != "hello\n" {
		t.Errorf("data after daemon restart: %q", got)
	}
	r = d.Berth(t, "run", "--rm", "-v", "data:/d:ro", "busybox", "sh", "-c", "echo x > /d/g")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "Read-only file system") {
		t.Errorf("write into a :ro volume: %s", r)
	}
	d.MustBerth(t, "volume", "rm", "data", "other")
	if got := d.MustBerth(t, "volume", "ls", "-q"); got != "" {
		t.Errorf("volumes left: %q", got)
	}
	if _, err := os.Stat(filepath.Join(d.DataRoot, "volumes", "data")); !os.IsNotExist(err) {
		t.Errorf("volume dir left behind: %v", err)
	}
}

// Bad input is refused with docker's messages and leaves nothing behind.
func TestVolumeBadInput(t *testing.T) {
	d := daemonWithBusybox(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"volume", "create", "bad/name"}, "includes invalid characters for a local volume name"},
		{[]string{"volume", "create", "-o", "bogus=1", "v1"}, `invalid option: "bogus"`},
		{[]string{"run", "--rm", "-v", "rel/dir:/x", "busybox", "true"}, "includes invalid characters for a local volume name"},
		{[]string{"run", "--rm", "-v", "a:b:c:d", "busybox", "true"}, "too many colons"},
		{[]string{"run", "--rm", "-v", "vol1:/x:bogus", "busybox", "true"}, "invalid mode: bogus"},
		{[]string{"run", "--rm", "--mount", "type=bind,src=/nonexistent-berth,dst=/x", "busybox", "true"}, "bind source path does not exist"},
		{[]string{"run", "--rm", "-v", "vol2:/x", "-v", "vol3:/x", "busybox", "true"}, "Duplicate mount point"},
		{[]string{"volume", "rm", "nosuch"}, "no such volume"},
	} {
		r := d.Berth(t, tc.args...)
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("%v: want error %q, got %s", tc.args, tc.want, r)
		}
	}
	if got := d.MustBerth(t, "volume", "ls", "-q"); got != "" {
		t.Errorf("bad input left volumes: %q", got)
	}
	if got := d.MustBerth(t, "ps", "-aq"); got != "" {
		t.Errorf("bad input left containers: %q", got)
	}
	if _, err := os.Stat("/nonexistent-berth"); err == nil {
		t.Errorf("--mount created a missing bind source")
	}
}

// Binds, anonymous volumes with copy-up, tmpfs, --read-only,
// --volumes-from, rm -v and two running containers sharing a volume.
func TestMounts(t *testing.T) {
	d := daemonWithBusybox(t)
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "in"), []byte("from host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := d.MustBerth(t, "run", "--rm", "-v", host+":/h", "busybox", "sh", "-c", "cat /h/in; echo out > /h/out"); got != "from host\n" {
		t.Errorf("bind read: %q", got)
	}
	if b, _ := os.ReadFile(filepath.Join(host, "out")); string(b) != "out\n" {
		t.Errorf("bind write: %q", b)
	}
	r := d.Berth(t, "run", "--rm", "--mount", "type=bind,src="+host+",dst=/h,readonly", "busybox", "touch", "/h/x")
	if r.ExitCode == 0 {
		t.Errorf("write to a readonly bind: %s", r)
	}
	missing := filepath.Join(host, "made", "by", "v")
	d.MustBerth(t, "run", "--rm", "-v", missing+":/m", "busybox", "true")
	if fi, err := os.Stat(missing); err != nil || !fi.IsDir() {
		t.Errorf("-v did not create the missing source: %v", err)
	}

	// Copy-up: /etc of the image into a new anonymous volume, owners and
	// modes kept; nocopy leaves it empty.
	id := strings.TrimSpace(d.MustBerth(t, "create", "-v", "/etc", "busybox", "ls", "/etc"))
	d.MustBerth(t, "start", "-a", id)
	name := inspectField(t, d, id, "{{range .Mounts}}{{.Name}}{{end}}")
	if len(name) != 64 {
		t.Fatalf("anonymous volume name %q", name)
	}
	if got := inspectField(t, d, id, "{{range .Mounts}}{{.Type}} {{.Destination}} {{.RW}}{{end}}"); got != "volume /etc true" {
		t.Errorf("inspect .Mounts: %q", got)
	}
	if _, err := os.Stat(filepath.Join(d.DataRoot, "volumes", name, "_data", "passwd")); err != nil {
		t.Errorf("copy-up: %v", err)
	}
	if got := d.MustBerth(t, "ps", "-aq", "--no-trunc", "--filter", "volume="+name); strings.TrimSpace(got) != id {
		t.Errorf("ps --filter volume: %q", got)
	}
	if got := d.MustBerth(t, "run", "--rm", "--mount", "type=volume,dst=/etc,volume-nocopy", "busybox", "sh", "-c", "test -e /etc/passwd || echo empty"); got != "empty\n" {
		t.Errorf("nocopy: %q", got)
	}
	// --volumes-from shares the anonymous volume.
	if got := d.MustBerth(t, "run", "--rm", "--volumes-from", id+":ro", "busybox", "sh", "-c", "test -f /etc/passwd && ! touch /etc/x 2>/dev/null && echo ok"); got != "ok\n" {
		t.Errorf("--volumes-from :ro: %q", got)
	}
	d.MustBerth(t, "rm", "-v", id)
	if _, err := os.Stat(filepath.Join(d.DataRoot, "volumes", name)); !os.IsNotExist(err) {
		t.Errorf("rm -v left the anonymous volume: %v", err)
	}

	// volume-subpath mounts a directory of the volume; a missing one fails.
	d.MustBerth(t, "run", "--rm", "-v", "sp:/v", "busybox", "sh", "-c", "mkdir /v/sub && echo in-sub > /v/sub/x")
	if got := d.MustBerth(t, "run", "--rm", "--mount", "type=volume,src=sp,dst=/m,volume-subpath=sub", "busybox", "cat", "/m/x"); got != "in-sub\n" {
		t.Errorf("volume-subpath: %q", got)
	}
	if r := d.Berth(t, "run", "--rm", "--mount", "type=volume,src=sp,dst=/m,volume-subpath=nope", "busybox", "true"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "cannot access path nope") {
		t.Errorf("missing volume-subpath: %s", r)
	}
	d.MustBerth(t, "volume", "rm", "sp")

	// tmpfs and read-only root.
	if got := d.MustBerth(t, "run", "--rm", "--read-only", "--mount", "type=tmpfs,dst=/scratch,tmpfs-size=1m", "busybox", "sh", "-c", "echo t > /scratch/x && cat /scratch/x && ! touch /y 2>/dev/null && echo ro"); got != "t\nro\n" {
		t.Errorf("tmpfs + --read-only: %q", got)
	}

	// Two running containers share a named volume.
	a := strings.TrimSpace(d.MustBerth(t, "run", "-d", "-v", "shared:/s", "busybox", "sh", "-c", "echo a > /s/a; sleep 1000"))
	b := strings.TrimSpace(d.MustBerth(t, "run", "-d", "-v", "shared:/s", "busybox", "sleep", "1000"))
	eventually(t, "shared write", func() bool {
		r := d.Berth(t, "exec", b, "cat", "/s/a")
		return r.Stdout == "a\n"
	})
	d.MustBerth(t, "rm", "-f", a, b)
	d.MustBerth(t, "volume", "rm", "shared")
	// run --rm took its anonymous volumes with it.
	if got := d.MustBerth(t, "volume", "ls", "-q"); got != "" {
		t.Errorf("volumes left: %q", got)
	}
	// Volume events: create, mount, unmount, destroy.
	ev := d.MustBerth(t, "events", "--since", "0", "--until", strconv.FormatInt(time.Now().Unix()+1, 10), "--filter", "type=volume", "--filter", "volume=shared", "--format", "{{.Action}}")
	if !strings.Contains(ev, "create\n") || !strings.Contains(ev, "mount\n") || !strings.Contains(ev, "unmount\n") || !strings.HasSuffix(ev, "destroy\n") {
		t.Errorf("volume events: %q", ev)
	}
}

// The stock docker CLI drives volumes too.
func TestVolumeDockerCLI(t *testing.T) {
	testutil.RequiresDockerCLI(t)
	d := daemonWithBusybox(t)
	d.MustDocker(t, "volume", "create", "--label", "k=v", "dv")
	if got := d.MustDocker(t, "volume", "ls", "-q"); got != "dv\n" {
		t.Errorf("docker volume ls: %q", got)
	}
	d.MustDocker(t, "run", "--rm", "-v", "dv:/d", "busybox", "sh", "-c", "echo x > /d/x")
	if got := d.MustDocker(t, "run", "--rm", "--mount", "source=dv,target=/d", "busybox", "cat", "/d/x"); got != "x\n" {
		t.Errorf("docker run --mount: %q", got)
	}
	d.MustDocker(t, "volume", "create")
	out := d.MustDocker(t, "volume", "prune", "-f")
	if !strings.Contains(out, "Total reclaimed space") {
		t.Errorf("docker volume prune: %q", out)
	}
	if got := d.MustDocker(t, "volume", "ls", "-q"); got != "dv\n" {
		t.Errorf("after prune (anonymous only): %q", got)
	}
	d.MustDocker(t, "volume", "prune", "-af")
	if got := d.MustDocker(t, "volume", "ls", "-q"); got != "" {
		t.Errorf("after prune -a: %q", got)
	}
}

// The local driver's mount options: a tmpfs volume and a bind-device
// volume, mounted while a container uses them and unmounted after.
func TestVolumeDriverOptions(t *testing.T) {
	d := daemonWithBusybox(t)
	d.MustBerth(t, "volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=1m", "tv")
	if got := d.MustBerth(t, "run", "--rm", "-v", "tv:/t", "busybox", "sh", "-c", "grep ' /t ' /proc/mounts | cut -d' ' -f3"); got != "tmpfs\n" {
		t.Errorf("tmpfs volume: %q", got)
	}
	if m := testutil.MountsUnder(filepath.Join(d.DataRoot, "volumes")); len(m) != 0 {
		t.Errorf("tmpfs volume still mounted after the container exited: %v", m)
	}
	// Shared by two running containers: the first one's exit leaves it
	// mounted for the second and for a newcomer, also across a restart.
	a := strings.TrimSpace(d.MustBerth(t, "run", "-d", "-v", "tv:/t", "busybox", "sh", "-c", "echo shared > /t/s; sleep 1000"))
	b := strings.TrimSpace(d.MustBerth(t, "run", "-d", "-v", "tv:/t", "busybox", "sleep", "1000"))
	eventually(t, "shared tmpfs write", func() bool { return d.Berth(t, "exec", b, "cat", "/t/s").Stdout == "shared\n" })
	d.Stop(t)
	d.Start(t)
	d.MustBerth(t, "rm", "-f", a)
	if got := d.MustBerth(t, "run", "--rm", "-v", "tv:/t", "busybox", "cat", "/t/s"); got != "shared\n" {
		t.Errorf("tmpfs volume after one user left: %q", got)
	}
	d.MustBerth(t, "rm", "-f", b)
	if m := testutil.MountsUnder(filepath.Join(d.DataRoot, "volumes")); len(m) != 0 {
		t.Errorf("tmpfs volume still mounted after its last user: %v", m)
	}
	host := t.TempDir()
	d.MustBerth(t, "volume", "create", "-o", "type=none", "-o", "o=bind", "-o", "device="+host, "bv")
	d.MustBerth(t, "run", "--rm", "-v", "bv:/b", "busybox", "sh", "-c", "echo via-volume > /b/f")
	if b, _ := os.ReadFile(filepath.Join(host, "f")); string(b) != "via-volume\n" {
		t.Errorf("bind-device volume: %q", b)
	}
	if got := d.MustBerth(t, "volume", "inspect", "-f", "{{.Options.type}} {{.Options.device}}", "bv"); got != "none "+host+"\n" {
		t.Errorf("inspect options: %q", got)
	}
	d.MustBerth(t, "volume", "rm", "tv", "bv")
	if _, err := os.Stat(host); err != nil {
		t.Errorf("removing a bind-device volume touched its device: %v", err)
	}
}

// A daemon killed with SIGKILL while containers use volumes comes back
// with every volume, the running container's mounts and its data.
func TestVolumeKill9(t *testing.T) {
	d := daemonWithBusybox(t)
	d.MustBerth(t, "volume", "create", "--label", "x=y", "kv")
	id := strings.TrimSpace(d.MustBerth(t, "run", "-d", "-v", "kv:/k", "-v", "/anon", "busybox", "sh", "-c", "echo before > /k/f; sleep 1000"))
	anon := inspectField(t, d, id, `{{range .Mounts}}{{if eq .Destination "/anon"}}{{.Name}}{{end}}{{end}}`)
	eventually(t, "write", func() bool { return d.Berth(t, "exec", id, "cat", "/k/f").Stdout == "before\n" })
	d.Kill9(t)
	d.Start(t)
	if got := d.MustBerth(t, "volume", "ls", "-q", "--filter", "label=x=y"); got != "kv\n" {
		t.Errorf("volumes after kill -9: %q", got)
	}
	if got := d.MustBerth(t, "exec", id, "cat", "/k/f"); got != "before\n" {
		t.Errorf("running container's volume after kill -9: %q", got)
	}
	r := d.Berth(t, "volume", "rm", "kv")
	if r.ExitCode == 0 {
		t.Errorf("volume in use removed after restart")
	}
	d.MustBerth(t, "rm", "-fv", id)
	if got := d.MustBerth(t, "volume", "ls", "-q"); got != "kv\n" {
		t.Errorf("rm -v removed named or left anonymous volumes (anon %s): %q", anon, got)
	}
}
