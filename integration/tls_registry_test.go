package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/testutil"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "berth test registry"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certPath, keyPath
}

// TestRegistryOverTLS: berth's registry serving TLS, reached over https by
// the daemon (loopback registries are insecure, so the self-signed
// certificate is accepted without a CA, as dockerd does).
func TestRegistryOverTLS(t *testing.T) {
	d := daemonWithBusybox(t)
	cert, key := selfSigned(t, t.TempDir())
	reg := testutil.StartRegistry(t, binDir, "--tls-cert", cert, "--tls-key", key)
	name := reg.Addr + "/tls/bb:v1"
	mustCfgBerth(t, d, "tag", "busybox", name)
	out := mustCfgBerth(t, d, "push", name)
	assertContains(t, "push over TLS", out, "v1: digest: sha256:")
	mustCfgBerth(t, d, "rmi", "busybox", name)
	out = mustCfgBerth(t, d, "pull", name)
	assertContains(t, "pull over TLS", out, "Pull complete")
	if got := mustCfgBerth(t, d, "run", "--rm", name, "echo", "tls"); got != "tls\n" {
		t.Errorf("run: %q", got)
	}
}
