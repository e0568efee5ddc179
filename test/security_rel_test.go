package test

// Security (issue 8): client-facing TLS versions and cipher suites, client
// certificates, and logs that never carry query literals or passwords.
// SECURITY.md names these tests.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/lockguard/lockguard/internal/pgserver"
	"github.com/lockguard/lockguard/proxy"
)

// relTLSDial sends SSLRequest to addr and runs a TLS handshake with cfg. On
// success it also completes a PostgreSQL startup over the TLS connection, so
// that a client certificate refused after a TLS 1.3 handshake shows up too.
func relTLSDial(addr string, cfg *tls.Config) (*tls.ConnectionState, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(relU32s(8, relSSLCode)); err != nil {
		return nil, err
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'S' {
		return nil, fmt.Errorf("SSLRequest answered %q, %v", b[0], err)
	}
	tc := tls.Client(c, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("handshake: %w", err)
	}
	if _, err := tc.Write(relSuperStartup("lg_sec_tls")); err != nil {
		return nil, fmt.Errorf("startup: %w", err)
	}
	msgs, _, err := relReadUntilClosed(tc, 10*time.Second, 1)
	if err != nil || len(msgs) == 0 || msgs[len(msgs)-1].typ != 'Z' {
		return nil, fmt.Errorf("no session over TLS: %d messages, %v", len(msgs), err)
	}
	st := tc.ConnectionState()
	return &st, nil
}

// TestSecurityTLSVersionsAndSuites: lockguard's client-facing TLS accepts
// TLS 1.3 and TLS 1.2 with AEAD, forward-secret suites only; TLS 1.0 and 1.1,
// CBC and RC4 suites and RSA key exchange are refused.
func TestSecurityTLSVersionsAndSuites(t *testing.T) {
	lg := startLockguard(t, withClientTLS(t))
	base := func() *tls.Config { return &tls.Config{RootCAs: caPool(t), ServerName: "localhost"} }
	refused := []struct {
		name string
		cfg  func(*tls.Config)
	}{
		{"TLS 1.0", func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS10 }},
		{"TLS 1.1", func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS11, tls.VersionTLS11 }},
		{"TLS 1.0-1.1", func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 }},
		{"TLS 1.2 ECDHE-ECDSA AES-128-CBC-SHA", func(c *tls.Config) {
			c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
		}},
		{"TLS 1.2 ECDHE-ECDSA AES-256-CBC-SHA", func(c *tls.Config) {
			c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}
		}},
		{"TLS 1.2 ECDHE-ECDSA AES-128-CBC-SHA256", func(c *tls.Config) {
			c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}
		}},
		{"TLS 1.2 ECDHE-ECDSA RC4-128-SHA", func(c *tls.Config) {
			c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA}
		}},
		{"TLS 1.2 RSA key exchange AES-128-GCM (no forward secrecy)", func(c *tls.Config) {
			c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384}
		}},
		{"TLS 1.2 RSA key exchange AES-128-CBC", func(c *tls.Config) {
			c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}
		}},
	}
	for _, tc := range refused {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			cfg := base()
			tc.cfg(cfg)
			if st, err := relTLSDial(lg.addr, cfg); err == nil {
				t.Fatalf("handshake succeeded with version %x, suite %s", st.Version, tls.CipherSuiteName(st.CipherSuite))
			}
		})
	}
	accepted := []struct {
		name    string
		version uint16
		suite   uint16
	}{
		{"TLS 1.3", tls.VersionTLS13, 0},
		{"TLS 1.2 ECDHE-ECDSA AES-128-GCM", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		{"TLS 1.2 ECDHE-ECDSA AES-256-GCM", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
		{"TLS 1.2 ECDHE-ECDSA CHACHA20-POLY1305", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
	}
	for _, tc := range accepted {
		t.Run("accepts "+tc.name, func(t *testing.T) {
			cfg := base()
			cfg.MinVersion, cfg.MaxVersion = tc.version, tc.version
			if tc.suite != 0 {
				cfg.CipherSuites = []uint16{tc.suite}
			}
			st, err := relTLSDial(lg.addr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if st.Version != tc.version || (tc.suite != 0 && st.CipherSuite != tc.suite) {
				t.Fatalf("negotiated %x %s", st.Version, tls.CipherSuiteName(st.CipherSuite))
			}
		})
	}
	// What a default client gets.
	st, err := relTLSDial(lg.addr, base())
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != tls.VersionTLS13 {
		t.Fatalf("default client negotiated version %x, want TLS 1.3", st.Version)
	}
}

// relCA is a throwaway certificate authority for client certificates.
type relCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func relNewCA(t testing.TB, dir, name string) *relCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	file := filepath.Join(dir, name+".crt")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &relCA{cert: cert, key: key, file: file}
}

// issueClient writes a client certificate and key signed by ca and returns
// their files.
func (ca *relCA) issueClient(t testing.TB, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, cn+".crt"), filepath.Join(dir, cn+".key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// TestSecurityClientCertificates runs the binary with --tls-client-ca: a TLS
// client must present a certificate signed by that CA (none, or one from
// another CA, is refused in the handshake); with one, the session works.
// Without TLS at all, the session is accepted: tls-client-ca applies to TLS
// clients only (see SECURITY.md).
func TestSecurityClientCertificates(t *testing.T) {
	dir := t.TempDir()
	serverCert, serverKey, err := pgserver.IssueCert(pg.CAFile, pg.CAKeyFile, []string{"127.0.0.1", "localhost"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	clientCA := relNewCA(t, dir, "lockguard-client-ca")
	goodCert, goodKey := clientCA.issueClient(t, dir, "app")
	otherCA := relNewCA(t, dir, "other-ca")
	rogueCert, rogueKey := otherCA.issueClient(t, dir, "rogue")
	p := startBinary(t, "--upstream", pg.Addr(), "--upstream-sslmode", "disable",
		"--tls-cert", serverCert, "--tls-key", serverKey, "--tls-client-ca", clientCA.file)
	host, port, _ := net.SplitHostPort(p.listen)
	dsn := func(extra string) string {
		return fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=verify-full sslrootcert=%s %s",
			host, port, pgserver.Superuser, pgserver.TestDB, pg.CAFile, extra)
	}
	ctx := ctxT(t, 30*time.Second)
	for _, tc := range []struct {
		name, extra string
	}{
		{"no client certificate", ""},
		{"certificate from another CA", fmt.Sprintf("sslcert=%s sslkey=%s", rogueCert, rogueKey)},
	} {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			conn, err := pgx.Connect(ctx, dsn(tc.extra))
			if err == nil {
				conn.Close(ctx)
				t.Fatal("session opened")
			}
			if !strings.Contains(err.Error(), "certificate") && !strings.Contains(err.Error(), "tls") {
				t.Fatalf("refused, but not in the TLS handshake: %v", err)
			}
		})
	}
	// The handshake itself, at both TLS versions.
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		if _, err := relTLSDial(p.listen, &tls.Config{RootCAs: caPool(t), ServerName: "localhost", MinVersion: v, MaxVersion: v}); err == nil {
			t.Fatalf("TLS %x without a client certificate opened a session", v)
		}
	}
	t.Run("accepts a certificate from the client CA", func(t *testing.T) {
		conn := connect(t, dsn(fmt.Sprintf("sslcert=%s sslkey=%s", goodCert, goodKey)))
		var n int
		if err := conn.QueryRow(ctx, "SELECT 17").Scan(&n); err != nil || n != 17 {
			t.Fatal(err)
		}
	})
	t.Run("plaintext clients are refused", func(t *testing.T) {
		// tls-client-ca implies client-tls: require: skipping TLS must not
		// skip the certificate check.
		_, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=disable", host, port, pgserver.Superuser, pgserver.TestDB))
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "28000" {
			t.Fatalf("plaintext client with --tls-client-ca: %v, want 28000", err)
		}
	})
}

// TestSecurityLogsHaveNoSecrets runs sessions that authenticate with every
// password method (and a wrong password), send secret-looking literals in
// simple and extended queries, DDL, COPY data, errors, oversized and malformed
// messages — with lockguard logging at debug level, in process (the relay)
// and as the binary (the relay and the guard, which is on by default) — and
// checks that no literal or password reaches the logs.
func TestSecurityLogsHaveNoSecrets(t *testing.T) {
	secrets := []string{
		pgserver.ScramPassword, pgserver.MD5Password, pgserver.PasswordPassword,
		"WRONG-pw-s3cr3t", "sk_live_SIMPLE", "sk_live_PARAM", "sk_live_ERROR", "sk_live_BIG",
		"sk_live_COPY", "sk_live_PARSE", "sk_live_STARTUP", "sk_live_NAME", "sk_live_DDL", "sk_live_CHECK",
	}
	// session exercises lockguard at addr, with passwords over dsn.
	session := func(t *testing.T, addr string, dsn func(user, pw string) string) {
		ctx := ctxT(t, 30*time.Second)
		for _, u := range []struct{ user, pw string }{
			{pgserver.ScramUser, pgserver.ScramPassword},
			{pgserver.MD5User, pgserver.MD5Password},
			{pgserver.PasswordUser, pgserver.PasswordPassword},
		} {
			conn := connect(t, dsn(u.user, u.pw))
			var s string
			if err := conn.QueryRow(ctx, "SELECT 'sk_live_SIMPLE'", pgx.QueryExecModeSimpleProtocol).Scan(&s); err != nil {
				t.Fatal(err)
			}
			if err := conn.QueryRow(ctx, "SELECT $1::text", "sk_live_PARAM").Scan(&s); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, "SELECT 'sk_live_ERROR'::int"); err == nil {
				t.Fatal("bad cast succeeded")
			}
			if _, err := conn.Prepare(ctx, "sk_live_NAME", "SELECT 'sk_live_PARSE'"); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, "CREATE TEMP TABLE sec_copy (t text)"); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader("sk_live_COPY\n"), "COPY sec_copy FROM STDIN"); err != nil {
				t.Fatal(err)
			}
			// DDL that the guard (on by default in the binary) analyses,
			// warns about or protects with a lock timeout.
			table := uniqueName(t, "sec_"+u.user)
			for _, sql := range []string{
				"CREATE TABLE " + table + " (id int)",
				"ALTER TABLE " + table + " ADD COLUMN s text DEFAULT 'sk_live_DDL'",
				"ALTER TABLE " + table + " ADD CONSTRAINT c CHECK (s <> 'sk_live_CHECK')",
				"DROP TABLE " + table,
			} {
				if _, err := conn.Exec(ctx, sql); err != nil {
					t.Fatalf("%s: %v", sql, err)
				}
			}
			if _, err := pgx.Connect(ctx, dsn(u.user, "WRONG-pw-s3cr3t")); err == nil {
				t.Fatal("wrong password accepted")
			}
		}
		// Oversized Query carrying a secret (max-message-size is 64 KiB).
		c, _, err := relSession(addr, "lg_sec_logs", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		q, _ := (&pgproto3.Query{String: "SELECT 'sk_live_BIG" + strings.Repeat("x", 100<<10) + "'"}).Encode(nil)
		c.Write(q)
		relReadUntilClosed(c, 5*time.Second, 0)
		c.Close()
		// A malformed Bind after a Parse carrying a secret.
		c, _, err = relSession(addr, "lg_sec_logs", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		parse := []byte("s\x00SELECT 'sk_live_PARSE'\x00\x00\x00")
		bind := []byte("sk_live_NAME")
		c.Write(relCat([]byte{'P'}, relU32s(uint32(4+len(parse))), parse, []byte{'B'}, relU32s(uint32(4+len(bind))), bind))
		relReadUntilClosed(c, 5*time.Second, 0)
		c.Close()
		// A startup packet with a secret in an unterminated parameter.
		c = rawConn(t, addr)
		body := []byte("user\x00postgres\x00options\x00sk_live_STARTUP")
		c.Write(relCat(relU32s(uint32(8+len(body)), relProto30), body))
		relReadUntilClosed(c, 5*time.Second, 0)
	}
	check := func(t *testing.T, logs string, minSessions int) {
		if n := strings.Count(logs, "session started"); n < minSessions {
			t.Fatalf("only %d \"session started\" lines at debug level: is the log being captured?\n%s", n, logs)
		}
		for _, s := range secrets {
			if i := strings.Index(logs, s); i >= 0 {
				line := logs[strings.LastIndexByte(logs[:i], '\n')+1:]
				if j := strings.IndexByte(line, '\n'); j >= 0 {
					line = line[:j]
				}
				t.Errorf("the log contains %q: %s", s, line)
			}
		}
	}

	t.Run("in process", func(t *testing.T) {
		var logs lockedBuffer
		lg := startLockguard(t, func(c *proxy.Config) {
			c.MaxMessageSize = 64 << 10
			c.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		})
		session(t, lg.addr, func(user, pw string) string { return lg.dsn(user, pw) })
		// End every session so that their last lines are logged too.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		lg.srv.Shutdown(sctx)
		check(t, logs.String(), 5)
	})
	t.Run("binary", func(t *testing.T) {
		p := startBinary(t, "--upstream", pg.Addr(), "--upstream-sslmode", "disable", "--log-level", "debug", "--max-message-size", "65536")
		session(t, p.listen, func(user, pw string) string {
			return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", user, pw, p.listen, pgserver.TestDB)
		})
		p.cmd.Process.Signal(os.Interrupt)
		<-p.exited
		p.exited <- nil
		check(t, p.out.String(), 5)
	})
}
