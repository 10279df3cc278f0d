package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/registry"
	"github.com/berth-engine/berth/internal/testutil"
)

// cfgBerth runs the berth CLI with the same client config directory the
// docker CLI gets in these tests, so the two share logins (and neither
// touches the real ~/.docker).
func cfgBerth(t *testing.T, d *testutil.Daemon, stdin string, args ...string) testutil.Result {
	t.Helper()
	cmd := d.Cmd(args...)
	dir := filepath.Join(d.Root, "dockercfg")
	_ = os.MkdirAll(dir, 0o700)
	cmd.Env = append(cmd.Env, "DOCKER_CONFIG="+dir)
	return testutil.Run(t, cmd, stdin)
}

func mustCfgBerth(t *testing.T, d *testutil.Daemon, args ...string) string {
	t.Helper()
	r := cfgBerth(t, d, "", args...)
	if r.ExitCode != 0 {
		t.Fatalf("berth %s: %s", strings.Join(args, " "), r)
	}
	return r.Stdout
}

func assertContains(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, got)
		}
	}
}

func TestRegistryPushPull(t *testing.T) {
	d := daemonWithBusybox(t)
	reg := testutil.StartRegistry(t, binDir)
	name := reg.Addr + "/team/bb"

	mustCfgBerth(t, d, "tag", "busybox", name+":v1")
	mustCfgBerth(t, d, "tag", "busybox", name+":v2")
	out := mustCfgBerth(t, d, "push", name+":v1")
	assertContains(t, "push", out, "The push refers to repository ["+name+"]", ": Pushed", "v1: digest: sha256:")
	pushedDigest := out[strings.Index(out, "digest: ")+8:]
	pushedDigest = pushedDigest[:71]

	// Pushing again: every layer exists; -a pushes both tags.
	out = mustCfgBerth(t, d, "push", "-a", name)
	assertContains(t, "push -a", out, "Layer already exists", "v1: digest: "+pushedDigest, "v2: digest: "+pushedDigest)
	if strings.Contains(out, "Pushed") {
		t.Errorf("push -a pushed existing layers again:\n%s", out)
	}

	// Remove everything local, then pull by tag.
	mustCfgBerth(t, d, "rmi", "busybox", name+":v1", name+":v2")
	if out := mustCfgBerth(t, d, "images", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("images left: %s", out)
	}
	out = mustCfgBerth(t, d, "pull", name+":v1")
	assertContains(t, "pull", out, "v1: Pulling from team/bb", "Pull complete", "Digest: "+pushedDigest,
		"Status: Downloaded newer image for "+name+":v1", name+":v1\n")
	if got := mustCfgBerth(t, d, "run", "--rm", name+":v1", "echo", "pulled"); got != "pulled\n" {
		t.Errorf("run pulled image: %q", got)
	}
	digests := mustCfgBerth(t, d, "image", "inspect", "-f", "{{json .RepoDigests}}", name+":v1")
	if strings.TrimSpace(digests) != `["`+name+"@"+pushedDigest+`"]` {
		t.Errorf("RepoDigests: %s", digests)
	}
	// Pull and push are image events, as in docker.
	until := strconv.FormatInt(time.Now().Add(time.Second).Unix(), 10)
	ev := mustCfgBerth(t, d, "events", "--since", "0", "--until", until, "--filter", "type=image", "--filter", "event=pull", "--filter", "event=push", "--format", "{{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}}")
	assertContains(t, "events", ev, "push "+name+":v1 "+name+"\n", "pull "+name+":v1 "+name+"\n")

	// Again: up to date; by digest; quiet; all tags.
	out = mustCfgBerth(t, d, "pull", name+":v1")
	assertContains(t, "second pull", out, "Already exists", "Status: Image is up to date for "+name+":v1")
	out = mustCfgBerth(t, d, "pull", name+"@"+pushedDigest)
	assertContains(t, "pull by digest", out, "Digest: "+pushedDigest)
	if out := mustCfgBerth(t, d, "pull", "-q", name+":v2"); out != name+":v2\n" {
		t.Errorf("pull -q printed %q", out)
	}
	out = mustCfgBerth(t, d, "pull", "-a", name)
	assertContains(t, "pull -a", out, "v1: Pulling from team/bb", "v2: Pulling from team/bb")
	// Another repository of the same registry: layers are mounted, not sent.
	mustCfgBerth(t, d, "tag", name+":v1", reg.Addr+"/other/bb:v1")
	out = mustCfgBerth(t, d, "push", reg.Addr+"/other/bb:v1")
	assertContains(t, "push to another repository", out, ": Mounted from team/bb", "v1: digest: "+pushedDigest)

	// Errors as docker's.
	r := cfgBerth(t, d, "", "pull", name+":nope")
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "Error response from daemon: manifest for "+name+":nope not found: manifest unknown") {
		t.Errorf("pull of an unknown tag: %s", r)
	}
	r = cfgBerth(t, d, "", "push", reg.Addr+"/notlocal:v1")
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "An image does not exist locally with the tag: "+reg.Addr+"/notlocal") {
		t.Errorf("push of a missing image: %s", r)
	}

	// The registry's storage survives a restart.
	addr := reg.Addr
	reg.Stop(t)
	r = cfgBerth(t, d, "", "pull", name+":v1")
	if r.ExitCode == 0 {
		t.Errorf("pull from a stopped registry succeeded: %s", r)
	}
	reg.Start(t, addr)
	mustCfgBerth(t, d, "rmi", name+":v1", name+":v2")
	mustCfgBerth(t, d, "pull", name+":v1")
}

func TestRegistryDockerCLI(t *testing.T) {
	testutil.RequiresDockerCLI(t)
	d := daemonWithBusybox(t)
	reg := testutil.StartRegistry(t, binDir)
	name := reg.Addr + "/bb"
	d.MustDocker(t, "tag", "busybox", name+":latest")
	out := d.MustDocker(t, "push", name)
	assertContains(t, "docker push", out, "Using default tag: latest", "The push refers to repository ["+name+"]", "latest: digest: sha256:")
	d.MustDocker(t, "rmi", "busybox", name)
	out = d.MustDocker(t, "pull", name)
	assertContains(t, "docker pull", out, "latest: Pulling from bb", "Pull complete", "Status: Downloaded newer image for "+name+":latest", name+":latest")
	if got := d.MustDocker(t, "run", "--rm", name, "echo", "via docker"); got != "via docker\n" {
		t.Errorf("docker run: %q", got)
	}
	// run of an image that is not local pulls it first.
	d.MustDocker(t, "rmi", name)
	r0 := d.Docker(t, "run", "--rm", name, "echo", "pulled by run")
	if r0.ExitCode != 0 || r0.Stdout != "pulled by run\n" || !strings.Contains(r0.Stderr, "Unable to find image '"+name+":latest' locally") {
		t.Errorf("docker run of a missing image: %s", r0)
	}
	if got := d.MustDocker(t, "image", "inspect", "-f", "{{len .RepoDigests}}", name); strings.TrimSpace(got) != "1" {
		t.Errorf("RepoDigests: %s", got)
	}
	r := d.Docker(t, "pull", name+":nope")
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "Error response from daemon: manifest for "+name+":nope not found: manifest unknown") {
		t.Errorf("docker pull of an unknown tag: %s", r)
	}
	r = d.Docker(t, "pull", reg.Addr+"/nothere")
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "repository does not exist or may require 'docker login'") {
		t.Errorf("docker pull of an unknown repository: %s", r)
	}
	// GET /distribution/{name}/json.
	cmd := exec.Command("curl", "-s", "--unix-socket", d.Socket, "http://berth/distribution/"+name+"/json")
	res := testutil.Run(t, cmd, "")
	var di struct {
		Descriptor struct{ MediaType, Digest string }
		Platforms  []struct{ OS, Architecture string }
	}
	if err := json.Unmarshal([]byte(res.Stdout), &di); err != nil || !strings.HasPrefix(di.Descriptor.Digest, "sha256:") || len(di.Platforms) != 1 || di.Platforms[0].OS != "linux" {
		t.Errorf("distribution inspect: %v %s", err, res.Stdout)
	}
}

func TestRegistryLogin(t *testing.T) {
	d := daemonWithBusybox(t)
	line, err := registry.HashPassword("alice", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(d.Root, "htpasswd")
	if err := os.WriteFile(pw, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := testutil.StartRegistry(t, binDir, "--htpasswd", pw)
	name := reg.Addr + "/private/bb:v1"
	mustCfgBerth(t, d, "tag", "busybox", name)

	r := cfgBerth(t, d, "", "push", name)
	if r.ExitCode == 0 {
		t.Fatalf("anonymous push succeeded: %s", r)
	}
	r = cfgBerth(t, d, "wrong\n", "login", "-u", "alice", "--password-stdin", reg.Addr)
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "Error response from daemon") {
		t.Errorf("login with a wrong password: %s", r)
	}
	r = cfgBerth(t, d, "s3cret\n", "login", "-u", "alice", "--password-stdin", reg.Addr)
	if r.ExitCode != 0 || !strings.Contains(r.Stdout, "Login Succeeded") {
		t.Fatalf("login: %s", r)
	}
	// docker's config.json format.
	b, err := os.ReadFile(filepath.Join(d.Root, "dockercfg", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Auths map[string]struct{ Auth string } `json:"auths"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil || cfg.Auths[reg.Addr].Auth == "" {
		t.Fatalf("config.json: %v %s", err, b)
	}
	out := mustCfgBerth(t, d, "push", name)
	assertContains(t, "push with login", out, "v1: digest:")
	mustCfgBerth(t, d, "rmi", name)
	mustCfgBerth(t, d, "pull", name)

	// The stock docker CLI uses the same login.
	if _, err := os.Stat(testutil.DockerCLI()); err == nil {
		d.MustDocker(t, "rmi", name)
		d.MustDocker(t, "pull", name)
	}

	out = mustCfgBerth(t, d, "logout", reg.Addr)
	assertContains(t, "logout", out, "Removing login credentials for "+reg.Addr)
	mustCfgBerth(t, d, "rmi", name)
	r = cfgBerth(t, d, "", "pull", name)
	if r.ExitCode != 1 {
		t.Errorf("pull after logout: %s", r)
	}
	if out := mustCfgBerth(t, d, "logout", reg.Addr); !strings.Contains(out, "Not logged in to "+reg.Addr) {
		t.Errorf("second logout: %s", out)
	}
}

func TestRegistryCorruptBlobStoresNothing(t *testing.T) {
	d := daemonWithBusybox(t)
	reg := testutil.StartRegistry(t, binDir)
	name := reg.Addr + "/bb:v1"
	mustCfgBerth(t, d, "tag", "busybox", name)
	mustCfgBerth(t, d, "push", name)
	mustCfgBerth(t, d, "rmi", "busybox", name)

	// The registry's copy of the layer rots: flip a byte in its file.
	entries, err := os.ReadDir(filepath.Join(reg.Root, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var biggest string
	var size int64
	for _, e := range entries {
		fi, _ := e.Info()
		if fi.Size() > size {
			biggest, size = e.Name(), fi.Size()
		}
	}
	p := filepath.Join(reg.Root, "blobs", "sha256", biggest)
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	r := cfgBerth(t, d, "", "pull", name)
	if r.ExitCode != 1 || !strings.Contains(r.Combined(), "filesystem layer verification failed for digest sha256:"+biggest) {
		t.Errorf("pull of a corrupt layer: %s", r)
	}
	if out := mustCfgBerth(t, d, "images", "-aq"); strings.TrimSpace(out) != "" {
		t.Errorf("a failed pull left images: %s", out)
	}
	if _, err := os.Stat(filepath.Join(d.DataRoot, "content", "blobs", "sha256", biggest)); err == nil {
		t.Errorf("the corrupt blob was stored")
	}
	// The registry heals; the pull completes.
	b[len(b)/2] ^= 0xff
	os.WriteFile(p, b, 0o644)
	mustCfgBerth(t, d, "pull", name)
}

// TestRegistryCredentialHelper: with credHelpers in config.json, login
// stores through docker-credential-<helper> and pulls read through it; the
// password never lands in config.json.
func TestRegistryCredentialHelper(t *testing.T) {
	d := daemonWithBusybox(t)
	line, err := registry.HashPassword("bob", "pw2")
	if err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(d.Root, "htpasswd")
	os.WriteFile(pw, []byte(line+"\n"), 0o600)
	reg := testutil.StartRegistry(t, binDir, "--htpasswd", pw)

	helperDir := filepath.Join(d.Root, "helper")
	os.MkdirAll(helperDir, 0o755)
	store := filepath.Join(helperDir, "creds.json")
	script := "#!/bin/sh\ncase \"$1\" in\nstore) cat > " + store + " ;;\nget) read server; if [ -f " + store + " ]; then cat " + store + "; else echo 'credentials not found in native keychain'; exit 1; fi ;;\nerase) rm -f " + store + " ;;\nlist) echo '{}' ;;\nesac\n"
	if err := os.WriteFile(filepath.Join(helperDir, "docker-credential-berthtest"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cfgDir := filepath.Join(d.Root, "dockercfg")
	os.MkdirAll(cfgDir, 0o700)
	os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(`{"credHelpers":{"`+reg.Addr+`":"berthtest"}}`), 0o600)
	run := func(stdin string, args ...string) testutil.Result {
		cmd := d.Cmd(args...)
		cmd.Env = append(cmd.Env, "DOCKER_CONFIG="+cfgDir, "PATH="+helperDir+":"+os.Getenv("PATH"))
		return testutil.Run(t, cmd, stdin)
	}
	if r := run("pw2\n", "login", "-u", "bob", "--password-stdin", reg.Addr); r.ExitCode != 0 || !strings.Contains(r.Stdout, "Login Succeeded") {
		t.Fatalf("login: %s", r)
	}
	if b, _ := os.ReadFile(store); !strings.Contains(string(b), `"Secret":"pw2"`) {
		t.Errorf("the helper did not get the credentials: %s", b)
	}
	if b, _ := os.ReadFile(filepath.Join(cfgDir, "config.json")); strings.Contains(string(b), "pw2") || strings.Contains(string(b), `"auth"`) {
		t.Errorf("the password landed in config.json: %s", b)
	}
	run("", "tag", "busybox", reg.Addr+"/h:v1")
	if r := run("", "push", reg.Addr+"/h:v1"); r.ExitCode != 0 {
		t.Fatalf("push through the helper's credentials: %s", r)
	}
	run("", "rmi", reg.Addr+"/h:v1")
	if r := run("", "pull", reg.Addr+"/h:v1"); r.ExitCode != 0 {
		t.Fatalf("pull through the helper's credentials: %s", r)
	}
	if r := run("", "logout", reg.Addr); r.ExitCode != 0 {
		t.Fatalf("logout: %s", r)
	}
	if _, err := os.Stat(store); err == nil {
		t.Errorf("logout did not erase through the helper")
	}
}
