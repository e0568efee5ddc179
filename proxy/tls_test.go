package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// testCert returns a self-signed certificate for 127.0.0.1.
func testCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lockguard-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestRequireTLS: with RequireTLS, or with a TLS configuration that demands
// client certificates, a plaintext StartupMessage gets FATAL 28000 and
// nothing reaches the server; a plaintext CancelRequest is still forwarded;
// a TLS client gets its session.
func TestRequireTLS(t *testing.T) {
	cert := testCert(t)
	for _, tc := range []struct {
		name    string
		mutate  func(*Config)
		require bool
		hint    string
	}{
		{"allow", func(c *Config) { c.TLS = ServerTLSConfig(cert) }, false, ""},
		{"require", func(c *Config) { c.TLS = ServerTLSConfig(cert); c.RequireTLS = true }, true, "sslmode=require"},
		{"client certificates", func(c *Config) {
			c.TLS = ServerTLSConfig(cert)
			c.TLS.ClientAuth = tls.RequireAndVerifyClientCert
			c.TLS.ClientCAs = x509.NewCertPool()
		}, true, "sslcert"},
		{"require without a certificate", func(c *Config) { c.RequireTLS = true }, true, "tls-cert"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFakeServer(t)
			startups := make(chan map[string]string, 4)
			cancels := make(chan []byte, 4)
			script := func(c net.Conn) {
				var hdr [8]byte
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					return
				}
				if be32(hdr[4:]) == codeCancel {
					cancels <- hdr[:]
					return
				}
				rest := make([]byte, be32(hdr[:4])-8)
				io.ReadFull(c, rest)
				p, _ := startupParams(rest)
				startups <- p
				sendAll(t, c, &pgproto3.AuthenticationOk{}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
				io.Copy(io.Discard, c)
			}
			for range 3 {
				fs.scripts <- script
			}
			cfg := &Config{Upstream: Upstream{Address: fs.ln.Addr().String(), SSLMode: SSLDisable},
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			tc.mutate(cfg)
			srv := New(cfg)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go srv.Serve(ln)
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				srv.Shutdown(ctx)
			})
			addr := ln.Addr().String()

			// Plaintext startup.
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			fe := pgproto3.NewFrontend(c, c)
			fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "u"}})
			fe.Flush()
			msg, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			if !tc.require {
				if _, ok := msg.(*pgproto3.AuthenticationOk); !ok {
					t.Fatalf("plaintext client got %T, want AuthenticationOk", msg)
				}
				<-startups
				return
			}
			e, ok := msg.(*pgproto3.ErrorResponse)
			if !ok {
				t.Fatalf("plaintext client got %T, want ErrorResponse", msg)
			}
			if e.Severity != "FATAL" || e.Code != CodeInvalidAuthSpec || !strings.HasPrefix(e.Message, "lockguard: ") ||
				e.Detail == "" || !strings.Contains(e.Hint, tc.hint) {
				t.Fatalf("refusal: %+v", e)
			}
			if _, err := fe.Receive(); err == nil {
				t.Fatal("connection still open after the refusal")
			}
			select {
			case p := <-startups:
				t.Fatalf("startup %v reached the server", p)
			default:
			}

			// A plaintext CancelRequest is still forwarded, as PostgreSQL accepts it.
			cc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			cc.Write(encode(t, &pgproto3.CancelRequest{ProcessID: 7, SecretKey: []byte{1, 2, 3, 4}}))
			select {
			case <-cancels:
			case <-time.After(5 * time.Second):
				t.Fatal("plaintext cancel not forwarded")
			}
			if cfg.TLS == nil || cfg.TLS.ClientAuth != tls.NoClientCert {
				return
			}

			// Over TLS the session opens.
			tc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer tc.Close()
			tc.SetDeadline(time.Now().Add(5 * time.Second))
			tc.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f})
			var b [1]byte
			if _, err := io.ReadFull(tc, b[:]); err != nil || b[0] != 'S' {
				t.Fatalf("SSLRequest answered %q, %v", b[0], err)
			}
			tlsConn := tls.Client(tc, &tls.Config{InsecureSkipVerify: true})
			fe = pgproto3.NewFrontend(tlsConn, tlsConn)
			fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "u"}})
			fe.Flush()
			if msg, err := fe.Receive(); err != nil {
				t.Fatal(err)
			} else if _, ok := msg.(*pgproto3.AuthenticationOk); !ok {
				t.Fatalf("TLS client got %T, want AuthenticationOk", msg)
			}
			<-startups
		})
	}
}
