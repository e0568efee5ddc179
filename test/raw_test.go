package test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"regexp"
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
	c, fe, _ := rawOpen(t, addr, false)
	return c, fe
}

// rawOpen opens a session through lockguard at addr as the superuser,
// over TLS when tlsOn, and reads up to ReadyForQuery. It returns the TCP
// socket, the frontend and the backend's pid.
func rawOpen(t testing.TB, addr string, tlsOn bool) (net.Conn, *pgproto3.Frontend, uint32) {
	t.Helper()
	sock := rawConn(t, addr)
	var c net.Conn = sock
	if tlsOn {
		if _, err := sock.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err != nil { // SSLRequest
			t.Fatal(err)
		}
		var b [1]byte
		if _, err := io.ReadFull(sock, b[:]); err != nil || b[0] != 'S' {
			t.Fatalf("SSLRequest answered %q, %v", b[:], err)
		}
		host, _, _ := net.SplitHostPort(addr)
		c = tls.Client(sock, &tls.Config{RootCAs: caPool(t), ServerName: host})
	}
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": pgserver.Superuser, "database": pgserver.TestDB}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var pid uint32
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *pgproto3.BackendKeyData:
			pid = m.ProcessID
		case *pgproto3.ReadyForQuery:
			return sock, fe, pid
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

// retryDelay matches the delay lockguard logs when a DDL gave up on its lock
// timeout and waits to retry.
var retryDelay = regexp.MustCompile(`msg="DDL hit the lock timeout; retrying".* delay=(\S+)`)

// longRetryWait waits until the lockguard whose output is out logs a retry
// wait of at least least, and fails the test if every retry is shorter.
// The delay is drawn at random (full jitter): a test that must act during
// the wait cannot count on its upper bound.
func longRetryWait(t *testing.T, out *lockedBuffer, least time.Duration) {
	t.Helper()
	seen := 0
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		waits := retryDelay.FindAllStringSubmatch(out.String(), -1)
		for ; seen < len(waits); seen++ {
			d, err := time.ParseDuration(waits[seen][1])
			if err != nil {
				t.Fatalf("lockguard logged a retry delay %q: %v", waits[seen][1], err)
			}
			if d >= least && seen == len(waits)-1 {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("lockguard logged no retry wait of %v or more:\n%s", least, out)
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
