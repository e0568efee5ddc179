package pgserver

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestPGServerLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	begin := time.Now()
	s, err := Start(ctx, Options{Settings: map[string]string{"work_mem": "7MB"}, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Start took %s", time.Since(begin))
	defer s.Stop()

	if s.Version < 10 {
		t.Errorf("Version = %d, want a major version", s.Version)
	}
	// With synchronous_commit=off only a checkpoint after the commit makes
	// the rows survive an immediate stop.
	if err := s.Exec(ctx, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (1), (2);"); err != nil {
		t.Fatal(err)
	}
	if err := s.Exec(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	port := s.Port

	if err := s.Restart(ctx, "immediate"); err != nil {
		t.Fatal(err)
	}
	if s.Port != port {
		t.Errorf("Port changed from %d to %d on restart", port, s.Port)
	}
	conn, err := pgx.Connect(ctx, s.DSN(Superuser, "", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var workMem string
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM kept").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SHOW work_mem").Scan(&workMem); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if n != 2 {
		t.Errorf("after restart: %d rows, want 2", n)
	}
	if workMem != "7MB" {
		t.Errorf("work_mem = %q, want the Options.Settings value 7MB", workMem)
	}

	if err := s.StopServer("fast"); err != nil {
		t.Fatal(err)
	}
	if err := s.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("Exec succeeded on a stopped server")
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Dir %s still there after Stop: %v", s.Dir, err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := s.StartServer(ctx); err == nil {
		t.Error("StartServer after Stop succeeded")
	}
}

func TestPGServerIssueCert(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, err := newCA()
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := encodeKey(caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile, caKeyFile := dir+"/ca.crt", dir+"/ca.key"
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caKeyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	certFile, keyFile, err := IssueCert(caFile, caKeyFile, []string{"127.0.0.1", "localhost"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file %s: %v, mode %v; want mode 0600", keyFile, err, fi.Mode().Perm())
	}
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("no PEM block in issued certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, host := range []string{"127.0.0.1", "localhost"} {
		t.Run(host, func(t *testing.T) {
			_, err := leaf.Verify(x509.VerifyOptions{
				DNSName:   host,
				Roots:     roots,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: roots}); err == nil {
		t.Error("certificate verified for a host it was not issued for")
	}
}

func TestPGServerStartFailure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{Settings: map[string]string{"max_connections": "many"}})
	if err == nil {
		s.Stop()
		t.Fatal("Start succeeded with an invalid setting")
	}
	t.Logf("Start: %v", err)
	// The server's own complaint must reach the caller.
	if !strings.Contains(err.Error(), `"max_connections"`) {
		t.Errorf("error does not include the server log: %v", err)
	}
}

// A server's port must not come from the ephemeral range: while the server
// is stopped for a restart, an outgoing connection anywhere on the machine
// could take it as its local port and the restart would fail with "Address
// already in use".
func TestFreePortOutsideEphemeralRange(t *testing.T) {
	lo, hi := ephemeralRange()
	if len(portSpans(lo, hi)) == 0 {
		t.Skipf("ephemeral range %d-%d leaves no room outside it", lo, hi)
	}
	for range 50 {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if p >= lo && p <= hi {
			t.Fatalf("FreePort() = %d, inside the ephemeral range %d-%d", p, lo, hi)
		}
	}
}
