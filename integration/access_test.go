package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/testutil"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, written in docker's layout (ca.pem, cert.pem, key.pem for
// the client; server-cert.pem, server-key.pem).
type testPKI struct {
	dir        string
	ca         *x509.Certificate
	caKey      *ecdsa.PrivateKey
	serverCert string
	serverKey  string
}

func newTestPKI(t *testing.T, dir string) *testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "berth test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: dir, ca: ca, caKey: caKey}
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", der)
	p.serverCert, p.serverKey = filepath.Join(dir, "server-cert.pem"), filepath.Join(dir, "server-key.pem")
	p.issue(t, p.serverCert, p.serverKey, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	p.issue(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), "client", x509.ExtKeyUsageClientAuth)
	return p
}

func (p *testPKI) issue(t *testing.T, certPath, keyPath, cn string, usage x509.ExtKeyUsage) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	if ip := net.ParseIP(cn); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, certPath, "CERTIFICATE", der)
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, keyPath, "EC PRIVATE KEY", kb)
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// freePort finds a loopback TCP port nobody listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestDaemonTLSVerify: a TCP listener with --tlsverify serves the stock
// docker CLI and berth holding a client certificate of the CA (by flags
// and by DOCKER_TLS_VERIFY/DOCKER_CERT_PATH) and refuses everyone else.
func TestDaemonTLSVerify(t *testing.T) {
	testutil.RequiresDockerCLI(t)
	pki := newTestPKI(t, t.TempDir())
	port := freePort(t)
	tcpHost := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	d := testutil.StartDaemon(t, binDir, "-H", tcpHost, "--tlsverify",
		"--tlscacert", filepath.Join(pki.dir, "ca.pem"), "--tlscert", pki.serverCert, "--tlskey", pki.serverKey)

	flags := []string{"--tlsverify", "--tlscacert", filepath.Join(pki.dir, "ca.pem"),
		"--tlscert", filepath.Join(pki.dir, "cert.pem"), "--tlskey", filepath.Join(pki.dir, "key.pem"), "-H", tcpHost}
	out := d.MustDocker(t, append(flags, "version", "--format", "{{.Server.Os}}")...)
	if strings.TrimSpace(out) != "linux" {
		t.Errorf("docker --tlsverify version: %q", out)
	}
	out = d.MustBerth(t, append(flags, "version", "--format", "{{.Server.Os}}")...)
	if strings.TrimSpace(out) != "linux" {
		t.Errorf("berth --tlsverify version: %q", out)
	}
	// The environment docker's users set instead of flags.
	for _, cmd := range []*exec.Cmd{d.DockerCmd("info", "--format", "{{.OSType}}"), d.Cmd("info", "--format", "{{.OSType}}")} {
		cmd.Env = append(cmd.Env, "DOCKER_HOST="+tcpHost, "BERTH_HOST="+tcpHost, "DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH="+pki.dir)
		if r := testutil.Run(t, cmd, ""); r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != "linux" {
			t.Errorf("%s with DOCKER_TLS_VERIFY: %s", cmd.Args[0], r)
		}
	}

	// Without a client certificate: refused, by both CLIs.
	empty := t.TempDir()
	noCert := []string{"--tlsverify", "--tlscacert", filepath.Join(pki.dir, "ca.pem"), "-H", tcpHost, "version", "--format", "{{.Server.Os}}"}
	for _, cmd := range []*exec.Cmd{d.DockerCmd(noCert...), d.Cmd(noCert...)} {
		cmd.Env = append(cmd.Env, "DOCKER_CERT_PATH="+empty)
		if r := testutil.Run(t, cmd, ""); r.ExitCode == 0 || strings.Contains(r.Stdout, "linux") || !strings.Contains(r.Stderr, "certificate required") {
			t.Errorf("%s without a client certificate: %s", cmd.Args[0], r)
		}
	}
	// Raw clients: no certificate, a certificate from another CA, plain HTTP.
	pool := x509.NewCertPool()
	pool.AddCert(pki.ca)
	other := newTestPKI(t, t.TempDir())
	foreign, err := tls.LoadX509KeyPair(filepath.Join(other.dir, "cert.pem"), filepath.Join(other.dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for name, certs := range map[string][]tls.Certificate{"no certificate": nil, "foreign CA": {foreign}} {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}}
		resp, err := hc.Get(fmt.Sprintf("https://127.0.0.1:%d/version", port))
		if err == nil {
			resp.Body.Close()
			t.Errorf("%s: got %s, want a refused handshake", name, resp.Status)
		}
		hc.CloseIdleConnections()
	}
	if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/version", port)); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP on the TLS port answered %s", resp.Status)
		}
	}
	// The unix socket is still served as before.
	d.MustDocker(t, "version", "--format", "{{.Server.Os}}")
}

// TestDaemonRefusesInsecureTCP: plain TCP (or TLS without client
// verification) on a non-loopback address is refused before anything is
// bound or created; loopback plain TCP is served with a warning.
func TestDaemonRefusesInsecureTCP(t *testing.T) {
	pki := newTestPKI(t, t.TempDir())
	port := freePort(t)
	for name, args := range map[string][]string{
		"plain":           {"-H", fmt.Sprintf("tcp://0.0.0.0:%d", port)},
		"tls, no verify":  {"-H", fmt.Sprintf("tcp://0.0.0.0:%d", port), "--tls", "--tlscert", pki.serverCert, "--tlskey", pki.serverKey},
		"all interfaces":  {"-H", fmt.Sprintf("tcp://:%d", port)},
		"bad certificate": {"-H", fmt.Sprintf("tcp://127.0.0.1:%d", port), "--tlsverify", "--tlscacert", pki.serverKey, "--tlscert", pki.serverCert, "--tlskey", pki.serverKey},
	} {
		d := testutil.NewDaemon(t, binDir, args...)
		if err := d.TryStart(); err == nil {
			t.Errorf("%s: daemon started", name)
			continue
		}
		if name != "bad certificate" && !strings.Contains(d.Log(), "refusing to listen on tcp://") {
			t.Errorf("%s: no refusal in the log:\n%s", name, d.Log())
		}
		if _, err := os.Stat(d.DataRoot); !os.IsNotExist(err) {
			t.Errorf("%s: the refused daemon created its data-root (%v)", name, err)
		}
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			t.Errorf("%s: something listens on port %d", name, port)
		}
	}

	port = freePort(t)
	d := testutil.StartDaemon(t, binDir, "-H", fmt.Sprintf("tcp://127.0.0.1:%d", port))
	eventually(t, "the warning about the plain loopback listener", func() bool {
		return strings.Contains(d.Log(), "without TLS client-certificate verification")
	})
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/version", port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("loopback plain TCP: %s", resp.Status)
	}
}

// TestDaemonForcedInsecureTCP: --allow-insecure-tcp binds a non-loopback
// address — inside a network namespace the test made — with a loud warning.
func TestDaemonForcedInsecureTCP(t *testing.T) {
	testutil.RequiresDockerCLI(t)
	ns := "btns-" + randHex(t, 4)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	for _, args := range [][]string{{"link", "set", "lo", "up"}, {"addr", "add", "192.0.2.10/32", "dev", "lo"}} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	// The daemon runs inside the namespace through a wrapper named berth;
	// helper binaries are found next to the real executable.
	wrap := t.TempDir()
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n", ns, filepath.Join(binDir, "berth"))
	if err := os.WriteFile(filepath.Join(wrap, "berth"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	host := "tcp://192.0.2.10:2375"
	d := testutil.NewDaemon(t, wrap, "-H", host, "--allow-insecure-tcp")
	d.Start(t)
	// The unix socket answers the start-up ping; the TCP listener (and
	// its warning) may come a moment later.
	eventually(t, "the loud warning", func() bool { return strings.Contains(d.Log(), "!!! INSECURE") })
	cmd := exec.Command("ip", "netns", "exec", ns, testutil.DockerCLI(), "-H", host, "version", "--format", "{{.Server.Os}}")
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir())
	if r := testutil.Run(t, cmd, ""); r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != "linux" {
		t.Errorf("docker over the forced listener: %s", r)
	}
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestDaemonSocketGroup: --group NAME creates a missing group and gives
// it the socket (root:NAME, 0660): its members reach the daemon, other
// users do not; --group "" leaves the socket root:root.
func TestDaemonSocketGroup(t *testing.T) {
	testutil.RequiresDockerCLI(t)
	group := "btg-" + randHex(t, 4)
	if _, err := user.LookupGroup(group); err == nil {
		t.Fatalf("group %s exists already", group)
	}
	t.Cleanup(func() {
		if _, err := user.LookupGroup(group); err == nil {
			if out, err := exec.Command("groupdel", group).CombinedOutput(); err != nil {
				t.Errorf("groupdel %s: %v: %s", group, err, out)
			}
		}
	})
	d := testutil.StartDaemon(t, binDir, "--group", group)
	g, err := user.LookupGroup(group)
	if err != nil {
		t.Fatalf("the daemon did not create group %s: %v\n%s", group, err, d.Log())
	}
	gid, _ := strconv.Atoi(g.Gid)
	st, err := os.Stat(d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if st.Mode().Perm() != 0o660 || sys.Uid != 0 || int(sys.Gid) != gid {
		t.Errorf("socket %v %d:%d, want 0660 0:%d", st.Mode().Perm(), sys.Uid, sys.Gid, gid)
	}
	// The test's temp root is 0700; let others reach the socket's
	// directory so that only the socket's own mode decides.
	if err := os.Chmod(d.Root, 0o711); err != nil {
		t.Fatal(err)
	}
	asNobody := func(groups string) testutil.Result {
		args := []string{"--reuid=65534", "--regid=65534"}
		if groups == "" {
			args = append(args, "--clear-groups")
		} else {
			args = append(args, "--groups="+groups)
		}
		cmd := exec.Command("setpriv", append(args, testutil.DockerCLI(), "-H", d.Host, "version", "--format", "{{.Server.Os}}")...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent", "DOCKER_CONFIG=" + filepath.Join(d.Root, "nobodycfg")}
		return testutil.Run(t, cmd, "")
	}
	if r := asNobody(""); r.ExitCode == 0 || !strings.Contains(r.Stderr, "permission denied") {
		t.Errorf("a user outside the group reached the daemon: %s", r)
	}
	if r := asNobody(g.Gid); r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != "linux" {
		t.Errorf("a member of %s could not reach the daemon: %s", group, r)
	}

	// The test harness's daemons run with --group "": root:root.
	plain := testutil.StartDaemon(t, binDir)
	st, err = os.Stat(plain.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if sys := st.Sys().(*syscall.Stat_t); st.Mode().Perm() != 0o660 || sys.Uid != 0 || sys.Gid != 0 {
		t.Errorf("--group \"\": socket %v %d:%d, want 0660 0:0", st.Mode().Perm(), sys.Uid, sys.Gid)
	}
}
