package test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
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

// checkTLSRefusal fails unless err is lockguard's refusal of a plaintext
// client: FATAL 28000 naming lockguard, with a DETAIL and a HINT that names
// the sslmode (and hintAlso) to use.
func checkTLSRefusal(t testing.TB, err error, hintAlso string) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("plaintext client: got %v, want an ErrorResponse", err)
	}
	if pe.Severity != "FATAL" || pe.Code != "28000" || !strings.HasPrefix(pe.Message, "lockguard: ") ||
		!strings.Contains(pe.Message, "TLS") || pe.Detail == "" ||
		!strings.Contains(pe.Hint, "sslmode=require") || !strings.Contains(pe.Hint, hintAlso) {
		t.Fatalf("plaintext client refused with %s %s %q, DETAIL %q, HINT %q; want FATAL 28000 from lockguard with a DETAIL and a HINT naming sslmode=require and %q",
			pe.Severity, pe.Code, pe.Message, pe.Detail, pe.Hint, hintAlso)
	}
}

// TestSecurityRequireClientTLS: with RequireTLS, a client that does not ask
// for TLS (pgx sslmode=disable) is refused with FATAL 28000 before anything
// reaches PostgreSQL, and the log says who; sslmode=require, verify-full,
// prefer and allow (which retries with TLS after the refusal) get sessions,
// with every authentication method; a plaintext CancelRequest still works.
func TestSecurityRequireClientTLS(t *testing.T) {
	var logs lockedBuffer
	tlsOn := withClientTLS(t)
	lg := startLockguard(t, func(c *proxy.Config) {
		tlsOn(c)
		c.RequireTLS = true
		c.Logger = relLogger(&logs)
	})
	ctx := ctxT(t, 60*time.Second)
	direct := connect(t, directDSN())
	app := uniqueName(t, "require_tls_plain")

	_, err := pgx.Connect(ctx, lg.dsn(pgserver.ScramUser, pgserver.ScramPassword, "sslmode", "disable", "application_name", app))
	checkTLSRefusal(t, err, "")
	var n int
	if err := direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n); err != nil || n != 0 {
		t.Fatalf("refused client reached PostgreSQL: %d backends, %v", n, err)
	}
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(logs.String(), "did not use TLS") })
	if line := logLine(logs.String(), "did not use TLS"); !strings.Contains(line, "user="+pgserver.ScramUser) || strings.Contains(line, pgserver.ScramPassword) {
		t.Fatalf("refusal log line %q: want the user name and no password", line)
	}

	for _, mode := range []string{"require", "prefer", "allow"} {
		for _, u := range [][2]string{{pgserver.ScramUser, pgserver.ScramPassword}, {pgserver.MD5User, pgserver.MD5Password}, {pgserver.Superuser, ""}} {
			t.Run("sslmode="+mode+"/"+u[0], func(t *testing.T) {
				conn := connect(t, lg.dsn(u[0], u[1], "sslmode", mode))
				if _, ok := conn.PgConn().Conn().(*tls.Conn); !ok {
					t.Fatalf("session over %T, want TLS", conn.PgConn().Conn())
				}
				var user string
				if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != u[0] {
					t.Fatalf("current_user %q, %v", user, err)
				}
			})
		}
	}
	t.Run("sslmode=verify-full", func(t *testing.T) {
		host, port, _ := net.SplitHostPort(lg.addr)
		conn := connect(t, fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=verify-full sslrootcert=%s",
			host, port, pgserver.Superuser, pgserver.TestDB, pg.CAFile))
		if err := conn.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("plaintext cancel", func(t *testing.T) {
		// pgx sends its CancelRequest without TLS, as libpq long did.
		conn := connect(t, lg.dsn(pgserver.Superuser, "", "sslmode", "require"))
		qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() { _, err := conn.Exec(qctx, "SELECT pg_sleep(30)"); done <- err }()
		waitFor(t, 10*time.Second, func() bool {
			var n int
			direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'").Scan(&n)
			return n > 0
		})
		if err := conn.PgConn().CancelRequest(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if pgCode(err) != "57014" {
				t.Fatalf("cancelled statement: %v, want 57014", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("plaintext cancel did not cancel")
		}
	})
}

// relLogger logs at debug level into buf.
func relLogger(buf io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// logLine returns the first line of logs that contains s.
func logLine(logs, s string) string {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// execLockguard runs the binary to its end and returns its output.
func execLockguard(ctx context.Context, t testing.TB, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, lockguardBinary(t), args...).CombinedOutput()
	return string(out), err
}

// TestSecurityClientCertificatesEveryClient runs the binary with
// --tls-client-ca only (client-tls left at its default): a plaintext client
// is refused with 28000 and a hint about client certificates, so the
// certificate check cannot be skipped by skipping TLS; a client with a
// certificate from the CA works.
func TestSecurityClientCertificatesEveryClient(t *testing.T) {
	dir := t.TempDir()
	serverCert, serverKey, err := pgserver.IssueCert(pg.CAFile, pg.CAKeyFile, []string{"127.0.0.1", "localhost"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	clientCA := relNewCA(t, dir, "lockguard-client-ca")
	goodCert, goodKey := clientCA.issueClient(t, dir, "app")
	p := startBinary(t, "--upstream", pg.Addr(), "--upstream-sslmode", "disable",
		"--tls-cert", serverCert, "--tls-key", serverKey, "--tls-client-ca", clientCA.file)
	host, port, _ := net.SplitHostPort(p.listen)
	ctx := ctxT(t, 30*time.Second)
	for _, mode := range []string{"disable", "allow"} {
		t.Run("sslmode="+mode+" without a certificate", func(t *testing.T) {
			conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=%s", host, port, pgserver.Superuser, pgserver.TestDB, mode))
			if err == nil {
				conn.Close(ctx)
				t.Fatal("session opened without a client certificate")
			}
			if mode == "disable" {
				checkTLSRefusal(t, err, "sslcert")
			}
		})
	}
	t.Run("sslmode=require with a certificate", func(t *testing.T) {
		conn := connect(t, fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=require sslcert=%s sslkey=%s",
			host, port, pgserver.Superuser, pgserver.TestDB, goodCert, goodKey))
		if err := conn.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if !strings.Contains(p.out.String(), "did not use TLS") {
		t.Errorf("the refusal is not logged:\n%s", p.out)
	}
}

// TestSecurityRequireClientTLSReload: client-tls is read from the file and
// LOCKGUARD_CLIENT_TLS, and a SIGHUP that turns it to require refuses new
// plaintext sessions while the open ones keep going; a file that requires
// TLS without a certificate is refused at start.
func TestSecurityRequireClientTLSReload(t *testing.T) {
	dir := t.TempDir()
	serverCert, serverKey, err := pgserver.IssueCert(pg.CAFile, pg.CAKeyFile, []string{"127.0.0.1", "localhost"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "lockguard.yaml")
	write := func(clientTLS string) {
		s := fmt.Sprintf("upstream: %s\nupstream-sslmode: disable\ntls-cert: %s\ntls-key: %s\nclient-tls: %s\n", pg.Addr(), serverCert, serverKey, clientTLS)
		if err := os.WriteFile(cfgFile, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("allow")
	p := startBinary(t, "--config", cfgFile)
	ctx := ctxT(t, 30*time.Second)
	before := connect(t, p.dsn())

	write("require")
	p.sighup(t)
	_, err = pgx.Connect(ctx, p.dsn())
	checkTLSRefusal(t, err, "")
	if err := before.Ping(ctx); err != nil {
		t.Fatalf("plaintext session opened before the reload: %v", err)
	}
	conn := connect(t, strings.Replace(p.dsn(), "sslmode=disable", "sslmode=require", 1))
	if err := conn.Ping(ctx); err != nil {
		t.Fatal(err)
	}

	t.Run("environment", func(t *testing.T) {
		t.Setenv("LOCKGUARD_CLIENT_TLS", "require")
		p := startBinary(t, "--upstream", pg.Addr(), "--upstream-sslmode", "disable", "--tls-cert", serverCert, "--tls-key", serverKey)
		_, err := pgx.Connect(ctx, p.dsn())
		checkTLSRefusal(t, err, "")
	})
	t.Run("require without a certificate", func(t *testing.T) {
		out, err := execLockguard(ctx, t, "serve", "--upstream", pg.Addr(), "--listen", freeAddr(t), "--admin", "", "--client-tls", "require")
		if err == nil || !strings.Contains(out, "client-tls require needs tls-cert") {
			t.Fatalf("lockguard started: %v\n%s", err, out)
		}
	})
}

// TestSecurityTLSStartupAbuse: the TLS handshake is inside the startup
// deadline and refusals of plaintext clients are cheap. A client that sends
// SSLRequest and then nothing, or stops half way through its ClientHello, is
// closed at the startup timeout; one that sends garbage instead of a
// ClientHello is closed at once; 200 plaintext clients at once against
// RequireTLS each get FATAL 28000 and leave nothing behind.
func TestSecurityTLSStartupAbuse(t *testing.T) {
	tlsOn := withClientTLS(t)
	const timeout = time.Second
	lg := startLockguard(t, func(c *proxy.Config) {
		tlsOn(c)
		c.RequireTLS = true
		c.StartupTimeout = timeout
	})
	sslRequest := []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}
	// The first 40 bytes of a real ClientHello.
	var hello []byte
	{
		a, b := net.Pipe()
		go func() { tls.Client(a, &tls.Config{InsecureSkipVerify: true}).Handshake(); a.Close() }()
		buf := make([]byte, 40)
		io.ReadFull(b, buf)
		b.Close()
		hello = buf
	}
	base := relSnapshot(t)
	for _, tc := range []struct {
		name     string
		send     []byte
		minClose time.Duration // 0: closed before the startup timeout
	}{
		{"SSLRequest, then silence", nil, timeout},
		{"half a ClientHello", hello, timeout},
		{"garbage instead of a ClientHello", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := rawConn(t, lg.addr)
			start := time.Now()
			c.Write(sslRequest)
			var b [1]byte
			if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'S' {
				t.Fatalf("SSLRequest answered %q, %v", b[0], err)
			}
			if tc.send != nil {
				c.Write(tc.send)
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := io.Copy(io.Discard, c) // until lockguard closes
			took := time.Since(start)
			if err != nil && !relIsConnError(err) {
				t.Fatalf("reading until the close: %v", err)
			}
			if took > timeout+3*time.Second || took < tc.minClose-100*time.Millisecond {
				t.Fatalf("closed after %v; want %s", took, map[bool]string{true: "at the startup timeout", false: "at once"}[tc.minClose > 0])
			}
		})
	}
	t.Run("200 plaintext clients at once", func(t *testing.T) {
		errs := make(chan error, 200)
		for i := 0; i < 200; i++ {
			go func() {
				_, err := pgx.Connect(ctxT(t, 20*time.Second), lg.superDSN())
				errs <- err
			}()
		}
		for i := 0; i < 200; i++ {
			if err := <-errs; pgCode(err) != "28000" {
				t.Fatalf("plaintext client %d: %v, want 28000", i, err)
			}
		}
	})
	after := relWaitSettled(t, base, 10, 8<<20, 15*time.Second)
	t.Logf("after: %v", after)
}

// TestSecurityEventsHaveNoLiterals: the statement text that the status
// page's events (/api/events) keep has its literals replaced, as
// telemetry.Event promises — in DDL too, whatever the protocol (pg_query's
// Normalize alone keeps DDL literals; fixed in aec5fea). The log never has
// them either.
func TestSecurityEventsHaveNoLiterals(t *testing.T) {
	const secret = "SEKRIT_lit_7f3a"
	p := startBinary(t, "--upstream", pg.Addr(), "--upstream-sslmode", "disable", "--log-level", "debug")
	ctx := ctxT(t, 30*time.Second)
	conn := connect(t, p.dsn())
	table := uniqueName(t, "sec_events")
	if _, err := conn.Exec(ctx, "CREATE TABLE "+table+" (id int)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	// A volatile default warns under the default policy: an event.
	for _, proto := range []string{"simple", "extended"} {
		sql := fmt.Sprintf("ALTER TABLE %s ADD COLUMN c_%s text DEFAULT md5(random()::text || '%s_%s')", table, proto, secret, proto)
		var err error
		if proto == "simple" {
			_, err = conn.PgConn().Exec(ctx, sql).ReadAll()
		} else {
			_, err = conn.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Close()
		}
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
	}
	var events string
	waitFor(t, 10*time.Second, func() bool {
		resp, err := http.Get("http://" + p.admin + "/api/events")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		events = string(b)
		return strings.Contains(events, "c_simple") && strings.Contains(events, "c_extended")
	})
	for _, proto := range []string{"simple", "extended"} {
		if strings.Contains(events, secret+"_"+proto) {
			t.Errorf("/api/events carries the literal of the %s-protocol statement", proto)
		}
		if strings.Contains(p.out.String(), secret+"_"+proto) {
			t.Errorf("the log carries the literal of the %s-protocol statement", proto)
		}
	}
	if t.Failed() {
		t.Logf("events: %s", events)
	}
}

// tlsSession is relSession over TLS: SSLRequest, a verified handshake, then
// startup as the superuser up to ReadyForQuery.
func tlsSession(t testing.TB, addr, appName string, d time.Duration) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, d)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(d))
	c.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f})
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'S' {
		t.Fatalf("SSLRequest answered %q, %v", b[0], err)
	}
	tc := tls.Client(c, &tls.Config{RootCAs: caPool(t), ServerName: "localhost"})
	if _, err := tc.Write(relSuperStartup(appName)); err != nil {
		t.Fatal(err)
	}
	msgs, _, err := relReadUntilClosed(tc, d, 1)
	if len(msgs) == 0 || msgs[len(msgs)-1].typ != 'Z' {
		t.Fatalf("TLS startup: %d messages, %v", len(msgs), err)
	}
	tc.SetDeadline(time.Time{})
	return tc
}

// TestSecurityTLSSlowReaders: TLS clients that ask for gigabytes and never
// read them cost lockguard no more memory than plaintext ones (TLS records
// are written one at a time into the socket, which is full), and vanishing
// readers release their backends.
func TestSecurityTLSSlowReaders(t *testing.T) {
	tlsOn := withClientTLS(t)
	lg := startLockguard(t, func(c *proxy.Config) { tlsOn(c); c.RequireTLS = true })
	ctx := ctxT(t, 2*time.Minute)
	direct := connect(t, directDSN())
	const app, readers = "lg_sec_tls_slowreader", 4
	base := relSnapshot(t)
	var conns []net.Conn
	for i := 0; i < readers; i++ {
		c := tlsSession(t, lg.addr, app, 10*time.Second)
		conns = append(conns, c)
		t.Cleanup(func() { c.Close() })
		q, _ := (&pgproto3.Query{String: "SELECT repeat('x', 8000) FROM generate_series(1, 200000)"}).Encode(nil)
		if _, err := c.Write(q); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, func() bool {
		var n int
		direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event = 'ClientWrite'", app).Scan(&n)
		return n == readers
	})
	stall := relSnapshot(t)
	time.Sleep(2 * time.Second)
	held := relSnapshot(t)
	t.Logf("baseline %v; %d stalled TLS readers %v; after 2 s %v", base, readers, stall, held)
	if stall.heapInuse > base.heapInuse+readers*(256<<10)+(8<<20) {
		t.Errorf("heap grew by %d MiB with %d stalled TLS readers", (stall.heapInuse-base.heapInuse)>>20, readers)
	}
	if held.heapInuse > stall.heapInuse+(4<<20) {
		t.Errorf("heap grew from %d to %d MiB while the TLS readers were held", stall.heapInuse>>20, held.heapInuse>>20)
	}
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, 20*time.Second, func() bool {
		var n int
		direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n)
		return n == 0
	})
	relWaitSettled(t, base, 10, 8<<20, 15*time.Second)
}

// TestSecurityUnparsedDDLLogHasNoLiterals: with unparsed-ddl: refuse, a
// DDL-looking statement that does not parse is refused and logged; the log
// line carries the parser's error, which must not quote the statement's
// literals ("syntax error at or near "'…'"").
func TestSecurityUnparsedDDLLogHasNoLiterals(t *testing.T) {
	const secret = "SEKRIT_unparsed_91c2"
	p := startBinary(t, "--upstream", pg.Addr(), "--upstream-sslmode", "disable", "--log-level", "debug", "--unparsed-ddl", "refuse")
	ctx := ctxT(t, 30*time.Second)
	conn := connect(t, p.dsn())
	_, err := conn.PgConn().Exec(ctx, "ALTER TABLE t ALTER COLUMN c SET DEFAULT 'a' '"+secret+"'").ReadAll()
	if pgCode(err) != "LG002" {
		t.Fatalf("got %v, want LG002", err)
	}
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(p.out.String(), "could not parse") })
	if line := logLine(p.out.String(), "could not parse"); strings.Contains(line, secret) {
		t.Errorf("the log quotes the literal: %s", line)
	}
}
