package distribution

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// certs.d: a registry whose certificate is signed by a CA found under
// <certs.d>/<host:port>/ca.crt is trusted; without it the TLS handshake fails.
func TestCertsDirCA(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("{}"))
	}))
	srv.Config.ErrorLog = nopLogger() // the refused handshake is expected
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	host := "myreg.test:5000"
	get := func(h *Hosts) error {
		cfg, err := h.TLSConfig(host)
		if err != nil {
			return err
		}
		cfg.ServerName = "example.com" // httptest's certificate names example.com
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := c.Get(srv.URL + "/v2/")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	h := &Hosts{CertsDir: dir}
	if err := get(h); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted registry: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, host), 0o755); err != nil {
		t.Fatal(err)
	}
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(dir, host, "ca.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := get(h); err != nil {
		t.Fatalf("registry with its CA in certs.d: %v", err)
	}
	// A client key without its certificate is a configuration error.
	os.WriteFile(filepath.Join(dir, host, "client.key"), []byte("x"), 0o600)
	if _, err := h.TLSConfig(host); err == nil {
		t.Error("a key without a certificate was accepted")
	}
	// Insecure registries skip verification.
	ih := &Hosts{CertsDir: t.TempDir(), Insecure: []string{host}}
	if err := get(ih); err != nil {
		t.Errorf("insecure registry: %v", err)
	}
}
