package test

import (
	"crypto/x509"
	"net"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/lockguard/lockguard/internal/pgserver"
)

func rawConn(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// rawStartup opens a session as the superuser and reads up to ReadyForQuery.
func rawStartup(t testing.TB, addr string) (net.Conn, *pgproto3.Frontend) {
	t.Helper()
	c := rawConn(t, addr)
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": pgserver.Superuser, "database": pgserver.TestDB}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *pgproto3.ReadyForQuery:
			return c, fe
		case *pgproto3.ErrorResponse:
			t.Fatalf("startup: %+v", m)
		}
	}
}

// readError reads messages until an ErrorResponse.
func readError(t testing.TB, c net.Conn) *pgproto3.ErrorResponse {
	t.Helper()
	fe := pgproto3.NewFrontend(c, c)
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("waiting for ErrorResponse: %v", err)
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			cp := *e
			return &cp
		}
	}
}

func waitFor(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	if !waitUntil(d, cond) {
		t.Fatalf("condition not met within %v", d)
	}
}

// waitUntil polls cond every 50 ms until it holds or d passes, and reports
// whether it held.
func waitUntil(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

func caPool(t testing.TB) *x509.CertPool {
	b, err := os.ReadFile(pg.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(b)
	return p
}

func x509EmptyPool() *x509.CertPool { return x509.NewCertPool() }
