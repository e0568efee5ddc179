package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/lockguard/lockguard/internal/pgserver"
	"github.com/lockguard/lockguard/proxy"
)

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// TestRelayAuthentication relays every authentication method end to end, over
// plain TCP and over TLS that ends at the proxy.
func TestRelayAuthentication(t *testing.T) {
	lg := startLockguard(t, withClientTLS(t))
	users := []struct{ user, password, method string }{
		{pgserver.Superuser, "", "trust"},
		{pgserver.ScramUser, pgserver.ScramPassword, "scram-sha-256"},
		{pgserver.MD5User, pgserver.MD5Password, "md5"},
		{pgserver.PasswordUser, pgserver.PasswordPassword, "password"},
	}
	for _, u := range users {
		for _, sslmode := range []string{"disable", "verify-full"} {
			t.Run(u.method+"/"+sslmode, func(t *testing.T) {
				ctx := ctxT(t, 20*time.Second)
				extra := []string{"sslmode", sslmode}
				if sslmode != "disable" {
					extra = append(extra, "sslrootcert", pg.CAFile)
				}
				conn := connect(t, lg.dsn(u.user, u.password, extra...))
				var who string
				if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil {
					t.Fatal(err)
				}
				if who != u.user {
					t.Fatalf("current_user = %q, want %q", who, u.user)
				}
				_, isTLS := conn.PgConn().Conn().(*tls.Conn)
				if isTLS != (sslmode != "disable") {
					t.Fatalf("client connection TLS = %v with sslmode=%s", isTLS, sslmode)
				}
				if u.password != "" {
					_, err := pgx.Connect(ctx, lg.dsn(u.user, "wrong-"+u.password, extra...))
					if pgCode(err) != "28P01" {
						t.Fatalf("wrong password: got %v, want SQLSTATE 28P01", err)
					}
				}
			})
		}
	}
}

// TestRelayUpstreamTLS verifies PostgreSQL's certificate and shows what
// happens to SCRAM channel binding when both legs use TLS.
func TestRelayUpstreamTLS(t *testing.T) {
	tlsOpt := withClientTLS(t)
	lg := startLockguard(t, func(c *proxy.Config) {
		tlsOpt(c)
		c.Upstream.SSLMode = proxy.SSLVerifyFull
		c.Upstream.RootCAs = caPool(t)
	})
	ctx := ctxT(t, 20*time.Second)

	// Plain client, TLS upstream: SCRAM works, the backend sees TLS.
	conn := connect(t, lg.dsn(pgserver.ScramUser, pgserver.ScramPassword))
	var ssl bool
	if err := conn.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil {
		t.Fatal(err)
	}
	if !ssl {
		t.Fatal("upstream connection does not use TLS with sslmode=verify-full")
	}
	// TLS client without channel binding: works.
	connect(t, lg.dsn(pgserver.ScramUser, pgserver.ScramPassword, "sslmode", "require", "channel_binding", "disable"))
	// TLS client that supports binding: a clear refusal from lockguard.
	_, err := pgx.Connect(ctx, lg.dsn(pgserver.ScramUser, pgserver.ScramPassword, "sslmode", "require"))
	if pgCode(err) != "28000" || !strings.Contains(err.Error(), "lockguard: SCRAM channel binding") {
		t.Fatalf("TLS client offering channel binding: got %v, want lockguard's 28000", err)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Hint == "" || pe.Detail == "") {
		t.Fatalf("refusal lacks DETAIL or HINT: %+v", pe)
	}
	// channel_binding=require cannot be satisfied: PLUS is not offered.
	_, err = pgx.Connect(ctx, lg.dsn(pgserver.ScramUser, pgserver.ScramPassword, "sslmode", "require", "channel_binding", "require"))
	if err == nil || !strings.Contains(err.Error(), "SCRAM-SHA-256-PLUS") {
		t.Fatalf("channel_binding=require: got %v, want the client to refuse for lack of SCRAM-SHA-256-PLUS", err)
	}

	// A wrong CA fails verification with a clear 08006.
	lg2 := startLockguard(t, func(c *proxy.Config) {
		c.Upstream.SSLMode = proxy.SSLVerifyFull
		c.Upstream.RootCAs = x509EmptyPool()
	})
	_, err = pgx.Connect(ctx, lg2.superDSN())
	if pgCode(err) != "08006" || !strings.Contains(err.Error(), "lockguard: could not connect to upstream") {
		t.Fatalf("bad upstream CA: got %v, want 08006 from lockguard", err)
	}
}

// TestRelayQueries covers simple and extended queries, named prepared
// statements, a 1000-statement pipeline and an error in the middle of one.
func TestRelayQueries(t *testing.T) {
	lg := startLockguard(t, nil)
	ctx := ctxT(t, 60*time.Second)
	conn := connect(t, lg.superDSN())
	tbl := uniqueName(t, "q")
	if _, err := conn.Exec(ctx, "CREATE TABLE "+tbl+" (id int PRIMARY KEY, v text)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { connect(t, directDSN()).Exec(context.Background(), "DROP TABLE "+tbl) })

	// Simple protocol, multi-statement string.
	if _, err := conn.PgConn().Exec(ctx, "INSERT INTO "+tbl+" VALUES (1,'a'); INSERT INTO "+tbl+" VALUES (2,'b')").ReadAll(); err != nil {
		t.Fatal(err)
	}
	// Named prepared statement, executed many times.
	if _, err := conn.Prepare(ctx, "ins", "INSERT INTO "+tbl+" VALUES ($1, $2)"); err != nil {
		t.Fatal(err)
	}
	for i := 3; i < 50; i++ {
		if _, err := conn.Exec(ctx, "ins", i, fmt.Sprint("v", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Pipeline of 1000 statements before one Sync.
	b := &pgx.Batch{}
	for i := 0; i < 1000; i++ {
		b.Queue("SELECT $1::int + 1", i)
	}
	br := conn.SendBatch(ctx, b)
	for i := 0; i < 1000; i++ {
		var n int
		if err := br.QueryRow().Scan(&n); err != nil {
			t.Fatalf("pipeline statement %d: %v", i, err)
		}
		if n != i+1 {
			t.Fatalf("pipeline statement %d returned %d", i, n)
		}
	}
	if err := br.Close(); err != nil {
		t.Fatal(err)
	}
	// An error in the middle of a pipeline: the statements after it are
	// skipped up to the Sync, and the session stays usable.
	b = &pgx.Batch{}
	b.Queue("INSERT INTO " + tbl + " VALUES (1000, 'x')")
	b.Queue("INSERT INTO " + tbl + " VALUES (1, 'duplicate')")
	b.Queue("INSERT INTO " + tbl + " VALUES (1001, 'y')")
	br = conn.SendBatch(ctx, b)
	_, err1 := br.Exec()
	_, err2 := br.Exec()
	_, err3 := br.Exec()
	br.Close()
	if err1 != nil || pgCode(err2) != "23505" || err3 == nil {
		t.Fatalf("pipeline errors: %v / %v / %v", err1, err2, err3)
	}
	var count int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+tbl+" WHERE id >= 1000").Scan(&count); err != nil {
		t.Fatal(err)
	}
	if count != 0 {
		t.Fatalf("rows from the failed implicit transaction were committed: %d", count)
	}
	// The prepared statement still works after the failed batch.
	if _, err := conn.Exec(ctx, "ins", 60, "after"); err != nil {
		t.Fatal(err)
	}
	// Explicit transaction: status tracking does not disturb it.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "ins", 61, "tx"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+tbl).Scan(&count); err != nil {
		t.Fatal(err)
	}
	if count != 50 {
		t.Fatalf("row count = %d, want 50", count)
	}
}

// TestRelayCopy moves more than 50 MB each way with COPY.
func TestRelayCopy(t *testing.T) {
	lg := startLockguard(t, nil)
	ctx := ctxT(t, 120*time.Second)
	conn := connect(t, lg.superDSN())
	tbl := uniqueName(t, "copy")
	if _, err := conn.Exec(ctx, "CREATE TABLE "+tbl+" (id int, payload text)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { connect(t, directDSN()).Exec(context.Background(), "DROP TABLE "+tbl) })

	// 52 MB: 200k rows of 256 bytes, plus rows of 1 MB that span many reads.
	var in bytes.Buffer
	row := strings.Repeat("x", 250)
	for i := 0; i < 200000; i++ {
		fmt.Fprintf(&in, "%d\t%s\n", i, row)
	}
	big := strings.Repeat("y", 1<<20)
	for i := 0; i < 3; i++ {
		fmt.Fprintf(&in, "%d\t%s\n", 1000000+i, big)
	}
	want := sha256.Sum256(in.Bytes())
	size := in.Len()
	tag, err := conn.PgConn().CopyFrom(ctx, bytes.NewReader(in.Bytes()), "COPY "+tbl+" FROM STDIN")
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != 200003 {
		t.Fatalf("COPY FROM: %d rows", tag.RowsAffected())
	}
	var out bytes.Buffer
	if _, err := conn.PgConn().CopyTo(ctx, &out, "COPY (SELECT * FROM "+tbl+" ORDER BY id) TO STDOUT"); err != nil {
		t.Fatal(err)
	}
	if out.Len() != size || sha256.Sum256(out.Bytes()) != want {
		t.Fatalf("COPY TO returned %d bytes (want %d) or different content", out.Len(), size)
	}
	// A COPY that fails midway leaves the session usable.
	_, err = conn.PgConn().CopyFrom(ctx, strings.NewReader("1\tok\nnot-a-number\tbad\n"), "COPY "+tbl+" FROM STDIN")
	if pgCode(err) != "22P02" {
		t.Fatalf("bad COPY data: got %v, want 22P02", err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
		t.Fatal(err)
	}
}

// TestRelayNotifications delivers NotificationResponse messages that arrive
// while the client is idle, through the plain and the guarded relay; with
// the guard, also one that PostgreSQL sends between the attempts of a DDL
// that lockguard retries, whose answers it drops until the last attempt.
func TestRelayNotifications(t *testing.T) {
	t.Run("guarded", func(t *testing.T) {
		lg := startGuarded(t, nil)
		ctx := ctxT(t, 20*time.Second)
		tbl := createTable(t, ctx, "notify", "id int")
		listener := connect(t, lg.superDSN())
		checkNotifications(t, listener)

		_, release := holdLock(t, tbl)
		notifier := connect(t, directDSN())
		done := make(chan error, 1)
		go func() {
			time.Sleep(400 * time.Millisecond) // the first attempt has given up
			_, err := notifier.Exec(ctx, "NOTIFY lockguard_chan, 'while retrying'")
			time.Sleep(300 * time.Millisecond)
			release()
			done <- err
		}()
		_, err := listener.Exec(ctx, "ALTER TABLE "+tbl+" ALTER COLUMN id SET DEFAULT 1")
		if nerr := <-done; nerr != nil {
			t.Fatal(nerr)
		}
		if err != nil {
			t.Fatal(err)
		}
		n, err := listener.WaitForNotification(ctxT(t, 5*time.Second))
		if err != nil || n.Payload != "while retrying" {
			t.Fatalf("the notification sent while lockguard retried the DDL: %+v %v", n, err)
		}
	})
	lg := startLockguard(t, nil)
	ctx := ctxT(t, 20*time.Second)
	checkNotifications(t, connect(t, lg.superDSN()))
	// A NoticeResponse is relayed too.
	var notices []string
	var mu sync.Mutex
	cfg, _ := pgx.ParseConfig(lg.superDSN())
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { mu.Lock(); notices = append(notices, n.Message); mu.Unlock() }
	c2, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(ctx)
	if _, err := c2.Exec(ctx, "DO $$ BEGIN RAISE NOTICE 'lockguard notice'; END $$"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(notices) != 1 || notices[0] != "lockguard notice" {
		t.Fatalf("notices = %q", notices)
	}
}

// checkNotifications has listener LISTEN and receives three notifications
// sent from a direct connection.
func checkNotifications(t *testing.T, listener *pgx.Conn) {
	t.Helper()
	ctx := ctxT(t, 20*time.Second)
	if _, err := listener.Exec(ctx, "LISTEN lockguard_chan"); err != nil {
		t.Fatal(err)
	}
	notifier := connect(t, directDSN())
	for i := 0; i < 3; i++ {
		if _, err := notifier.Exec(ctx, "SELECT pg_notify('lockguard_chan', $1)", fmt.Sprint("hello ", i)); err != nil {
			t.Fatal(err)
		}
		n, err := listener.WaitForNotification(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n.Channel != "lockguard_chan" || n.Payload != fmt.Sprint("hello ", i) {
			t.Fatalf("notification %d = %+v", i, n)
		}
	}
}

// TestRelayCancel cancels pg_sleep through the proxy: the CancelRequest comes
// on a new connection and must reach the right backend.
func TestRelayCancel(t *testing.T) {
	var logs lockedBuffer
	lg := startLockguard(t, func(c *proxy.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	conn := connect(t, lg.superDSN())
	other := connect(t, lg.superDSN())
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := conn.Exec(ctx, "SELECT pg_sleep(30)")
	if err == nil {
		t.Fatal("pg_sleep(30) returned without error")
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("cancel took %v", el)
	}
	// pgx closes a connection whose query was interrupted by its context;
	// the other session on the proxy is untouched.
	var n int
	if err := other.QueryRow(context.Background(), "SELECT 42").Scan(&n); err != nil || n != 42 {
		t.Fatalf("other session: %v", err)
	}
	// The cancel itself reached PostgreSQL: the error is 57014 via PgConn.
	pc, err := pgconn.Connect(context.Background(), lg.superDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := pc.Exec(context.Background(), "SELECT pg_sleep(30)").ReadAll()
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if err := pc.CancelRequest(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if pgCode(err) != "57014" {
			t.Fatalf("after CancelRequest: got %v, want 57014", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("CancelRequest did not stop pg_sleep")
	}
	// The connections that brought the cancels did what they were for:
	// the log says so, not that they failed.
	waitFor(t, 5*time.Second, func() bool { return strings.Count(logs.String(), "cancel request relayed") >= 2 })
	if strings.Contains(logs.String(), "startup failed") {
		t.Fatalf("a relayed cancel request was logged as a failed startup:\n%s", logs.String())
	}
}

// TestRelayProtocol32 asks for protocol 3.2; PostgreSQL 15 answers with
// NegotiateProtocolVersion, which must reach the client.
func TestRelayProtocol32(t *testing.T) {
	lg := startLockguard(t, nil)
	ctx := ctxT(t, 10*time.Second)
	conn := connect(t, lg.superDSN("max_protocol_version", "3.2"))
	var n int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
		t.Fatal(err)
	}
	// Raw: a 3.2 StartupMessage with an unknown _pq_ option gets
	// NegotiateProtocolVersion naming version 3.0 and the option.
	c := rawConn(t, lg.addr)
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion32,
		Parameters: map[string]string{"user": pgserver.Superuser, "database": pgserver.TestDB, "_pq_.lockguard_test": "1"}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var sawNPV, sawReady bool
	for !sawReady {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *pgproto3.NegotiateProtocolVersion:
			sawNPV = true
			if m.NewestMinorProtocol != pgproto3.ProtocolVersion30 || len(m.UnrecognizedOptions) != 1 || m.UnrecognizedOptions[0] != "_pq_.lockguard_test" {
				t.Fatalf("NegotiateProtocolVersion = %+v", m)
			}
		case *pgproto3.ReadyForQuery:
			sawReady = true
		case *pgproto3.ErrorResponse:
			t.Fatalf("error: %+v", m)
		}
	}
	if !sawNPV {
		t.Fatal("no NegotiateProtocolVersion relayed")
	}
}

// TestRelayStartupPackets checks SSLRequest without TLS, GSSENCRequest, bad
// startup packets and the startup timeout.
func TestRelayStartupPackets(t *testing.T) {
	lg := startLockguard(t, func(c *proxy.Config) { c.StartupTimeout = 500 * time.Millisecond })
	send := func(t *testing.T, c net.Conn, code uint32) byte {
		var b [8]byte
		binary.BigEndian.PutUint32(b[:], 8)
		binary.BigEndian.PutUint32(b[4:], code)
		if _, err := c.Write(b[:]); err != nil {
			t.Fatal(err)
		}
		var r [1]byte
		if _, err := io.ReadFull(c, r[:]); err != nil {
			t.Fatal(err)
		}
		return r[0]
	}
	t.Run("ssl and gssenc refused, then startup", func(t *testing.T) {
		c := rawConn(t, lg.addr)
		if r := send(t, c, 80877104); r != 'N' {
			t.Fatalf("GSSENCRequest answer %q", r)
		}
		if r := send(t, c, 80877103); r != 'N' {
			t.Fatalf("SSLRequest answer %q", r)
		}
		fe := pgproto3.NewFrontend(c, c)
		fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": pgserver.Superuser, "database": pgserver.TestDB}})
		fe.Flush()
		for {
			msg, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
	})
	for _, tc := range []struct {
		name string
		pkt  []byte
		code string
	}{
		{"length too large", []byte{0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0}, "08P01"},
		{"length too small", []byte{0, 0, 0, 2}, "08P01"},
		{"protocol 2", []byte{0, 0, 0, 8, 0, 2, 0, 0}, "0A000"},
		{"no user", append([]byte{0, 0, 0, 9, 0, 3, 0, 0}, 0), "28000"},
		{"unterminated parameters", []byte{0, 0, 0, 12, 0, 3, 0, 0, 'u', 's', 'e', 'r'}, "08P01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := rawConn(t, lg.addr)
			c.Write(tc.pkt)
			e := readError(t, c)
			if e.Code != tc.code || !strings.HasPrefix(e.Message, "lockguard: ") || e.Detail == "" || e.Hint == "" {
				t.Fatalf("got %+v, want %s from lockguard with DETAIL and HINT", e, tc.code)
			}
		})
	}
	t.Run("startup timeout", func(t *testing.T) {
		c := rawConn(t, lg.addr)
		c.Write([]byte{0, 0})
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		_, err := c.Read(make([]byte, 1))
		if err == nil || time.Since(start) > 3*time.Second {
			t.Fatalf("slow client not closed in time: %v after %v", err, time.Since(start))
		}
	})
}

// TestRelayFunctionCall relays the FunctionCall message.
func TestRelayFunctionCall(t *testing.T) {
	lg := startLockguard(t, nil)
	ctx := ctxT(t, 10*time.Second)
	conn := connect(t, directDSN())
	var oid uint32
	if err := conn.QueryRow(ctx, "SELECT 'pg_backend_pid'::regproc::oid").Scan(&oid); err != nil {
		t.Fatal(err)
	}
	c, fe := rawStartup(t, lg.addr)
	_ = c
	fe.Send(&pgproto3.FunctionCall{Function: oid, ResultFormatCode: 1})
	fe.Flush()
	var got []byte
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if r, ok := msg.(*pgproto3.FunctionCallResponse); ok {
			got = append([]byte(nil), r.Result...)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	if len(got) != 4 || binary.BigEndian.Uint32(got) == 0 {
		t.Fatalf("FunctionCallResponse = %v", got)
	}
}

// TestRelayMessageTooLarge answers an oversized message with 08P01 and closes
// only that session.
func TestRelayMessageTooLarge(t *testing.T) {
	lg := startLockguard(t, func(c *proxy.Config) { c.MaxMessageSize = 64 << 10 })
	ctx := ctxT(t, 10*time.Second)
	other := connect(t, lg.superDSN())
	conn := connect(t, lg.superDSN())
	_, err := conn.Exec(ctx, "SELECT '"+strings.Repeat("x", 100<<10)+"'")
	if pgCode(err) != "08P01" || !strings.Contains(err.Error(), "lockguard: message too large") {
		t.Fatalf("got %v, want 08P01 message too large", err)
	}
	// A message that claims 2^31-1 bytes is refused at once.
	c, fe := rawStartup(t, lg.addr)
	_ = fe
	c.Write([]byte{'Q', 0x7f, 0xff, 0xff, 0xff})
	if e := readError(t, c); e.Code != "08P01" {
		t.Fatalf("huge length: %+v", e)
	}
	var n int
	if err := other.QueryRow(ctx, "SELECT 7").Scan(&n); err != nil || n != 7 {
		t.Fatalf("other session disturbed: %v", err)
	}
	// Large messages within the limit and large COPY rows pass.
	big := strings.Repeat("z", 60<<10)
	var s string
	if err := other.QueryRow(ctx, "SELECT $1::text", big).Scan(&s); err != nil || s != big {
		t.Fatalf("large parameter: %v", err)
	}
}

// TestRelayUpstreamUnreachable answers 08006 naming the upstream.
func TestRelayUpstreamUnreachable(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	lg := startLockguard(t, func(c *proxy.Config) { c.Upstream.Address = dead })
	_, err := pgx.Connect(ctxT(t, 10*time.Second), lg.superDSN())
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "08006" || !strings.Contains(pe.Message, dead) || pe.Hint == "" {
		t.Fatalf("got %v, want 08006 naming %s", err, dead)
	}
}

// TestRelayMaxConnections refuses a session over the cap with 53300.
func TestRelayMaxConnections(t *testing.T) {
	lg := startLockguard(t, func(c *proxy.Config) { c.MaxConnections = 2 })
	connect(t, lg.superDSN())
	connect(t, lg.superDSN())
	_, err := pgx.Connect(ctxT(t, 10*time.Second), lg.superDSN())
	if pgCode(err) != "53300" {
		t.Fatalf("third session: got %v, want 53300", err)
	}
}

// TestRelayClientVanishes: a client that disappears mid-query has its
// statement cancelled and its backend closed, and its transaction rolled back.
func TestRelayClientVanishes(t *testing.T) {
	lg := startLockguard(t, nil)
	ctx := ctxT(t, 30*time.Second)
	direct := connect(t, directDSN())
	tag := uniqueName(t, "vanish")
	for _, query := range []string{
		"SELECT pg_sleep(60) /*" + tag + "*/",
		"BEGIN; CREATE TEMP TABLE " + tag + " (i int); SELECT pg_sleep(60) /*" + tag + "*/",
	} {
		c, fe := rawStartup(t, lg.addr)
		fe.Send(&pgproto3.Query{String: query})
		fe.Flush()
		waitFor(t, 10*time.Second, func() bool {
			var n int
			direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%"+tag+"%' AND pid <> pg_backend_pid()").Scan(&n)
			return n == 1
		})
		c.Close()
		waitFor(t, 10*time.Second, func() bool {
			var n int
			direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%"+tag+"%' AND pid <> pg_backend_pid()").Scan(&n)
			return n == 0
		})
	}
}

// TestRelayDrain: Shutdown closes idle sessions at once, lets a transaction
// finish, refuses new connections and reports not ready.
func TestRelayDrain(t *testing.T) {
	lg := startLockguard(t, nil)
	ctx := ctxT(t, 30*time.Second)
	tbl := uniqueName(t, "drain")
	direct := connect(t, directDSN())
	if _, err := direct.Exec(ctx, "CREATE TABLE "+tbl+" (i int)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { connect(t, directDSN()).Exec(context.Background(), "DROP TABLE "+tbl) })
	idle := connect(t, lg.superDSN())
	busy := connect(t, lg.superDSN())
	tx, err := busy.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+tbl+" VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- lg.srv.Shutdown(sctx)
	}()
	waitFor(t, 5*time.Second, func() bool { return !lg.srv.Ready() })
	if _, err := pgx.Connect(ctx, lg.superDSN()); err == nil {
		t.Fatal("new connection accepted while draining")
	}
	_, err = idle.Exec(ctx, "SELECT 1")
	if err == nil {
		t.Fatal("idle session still served while draining")
	}
	if pgCode(err) != "57P01" && !strings.Contains(err.Error(), "57P01") {
		t.Logf("idle session error: %v", err) // may be a closed socket if the FATAL was read first
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+tbl+" VALUES (2)"); err != nil {
		t.Fatalf("transaction interrupted by drain: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit during drain: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not finish after the last transaction")
	}
	var n int
	direct.QueryRow(ctx, "SELECT count(*) FROM "+tbl).Scan(&n)
	if n != 2 {
		t.Fatalf("committed rows = %d, want 2", n)
	}
}

// TestRelayDrainTimeout closes a session whose transaction outlives the drain
// timeout; PostgreSQL rolls it back and the client is told.
func TestRelayDrainTimeout(t *testing.T) {
	lg := startLockguard(t, nil)
	ctx := ctxT(t, 30*time.Second)
	conn := connect(t, lg.superDSN())
	tx, _ := conn.Begin(ctx)
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := lg.srv.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want deadline exceeded", err)
	}
	if err := tx.Commit(ctx); err == nil {
		t.Fatal("commit succeeded after the session was closed")
	}
}

// TestRelayReload: sessions opened after Reload use the new settings.
func TestRelayReload(t *testing.T) {
	lg := startLockguard(t, nil)
	ctx := ctxT(t, 10*time.Second)
	before := connect(t, lg.superDSN())
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	cfg := *lg.cfg
	cfg.Upstream.Address = dead
	lg.srv.Reload(&cfg)
	if _, err := pgx.Connect(ctx, lg.superDSN()); pgCode(err) != "08006" {
		t.Fatalf("after reload to a dead upstream: %v", err)
	}
	var n int
	if err := before.QueryRow(ctx, "SELECT 3").Scan(&n); err != nil {
		t.Fatalf("session opened before the reload: %v", err)
	}
}

// TestRelayUnixSockets listens on and connects upstream through unix sockets.
func TestRelayUnixSockets(t *testing.T) {
	dir := t.TempDir()
	cfg := &proxy.Config{Upstream: proxy.Upstream{Address: fmt.Sprintf("%s:%d", pg.SocketDir, pg.Port)}}
	srv := proxy.New(cfg)
	network, addr := proxy.SplitAddress(dir + ":6543")
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	conn := connect(t, fmt.Sprintf("host=%s port=6543 user=%s dbname=%s", dir, pgserver.Superuser, pgserver.TestDB))
	var n int
	if err := conn.QueryRow(ctxT(t, 5*time.Second), "SELECT 5").Scan(&n); err != nil || n != 5 {
		t.Fatal(err)
	}
}

// TestRelayPgbench runs pgbench through the proxy in all three protocol modes.
func TestRelayPgbench(t *testing.T) {
	if _, err := exec.LookPath("pgbench"); err != nil {
		t.Fatal("pgbench not found: make test installs postgresql-client")
	}
	lg := startLockguard(t, nil)
	host, port, _ := net.SplitHostPort(lg.addr)
	db := uniqueName(t, "bench")
	direct := connect(t, directDSN())
	if _, err := direct.Exec(context.Background(), "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { connect(t, directDSN()).Exec(context.Background(), "DROP DATABASE "+db+" WITH (FORCE)") })
	args := []string{"-h", host, "-p", port, "-U", pgserver.Superuser}
	if out, err := exec.Command("pgbench", append(args, "-i", "-s", "1", "-q", db)...).CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	for _, mode := range []string{"simple", "extended", "prepared"} {
		out, err := exec.Command("pgbench", append(args, "-M", mode, "-c", "4", "-j", "2", "-t", "200", db)...).CombinedOutput()
		if err != nil {
			t.Fatalf("pgbench -M %s: %v\n%s", mode, err, out)
		}
		if !strings.Contains(string(out), "number of failed transactions: 0") || !strings.Contains(string(out), "number of transactions actually processed: 800/800") {
			t.Fatalf("pgbench -M %s:\n%s", mode, out)
		}
	}
}

// TestRelayPsql uses psql through the proxy over TLS.
func TestRelayPsql(t *testing.T) {
	lg := startLockguard(t, withClientTLS(t))
	host, port, _ := net.SplitHostPort(lg.addr)
	conninfo := fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=verify-full sslrootcert=%s", host, port, pgserver.ScramUser, pgserver.TestDB, pg.CAFile)
	cmd := exec.Command("psql", conninfo, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-c", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
		"-c", "SELECT current_user")
	cmd.Env = append(cmd.Environ(), "PGPASSWORD="+pgserver.ScramPassword, "PGCHANNELBINDING=prefer")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	if got := strings.Fields(string(out)); len(got) != 2 || got[1] != pgserver.ScramUser {
		t.Fatalf("psql output %q", out)
	}
}

// TestTerminateEndsQuietly: a client that sends Terminate and reads on sees
// the connection close, with no FATAL about the upstream connection that its
// own Terminate ended, plain and guarded.
func TestTerminateEndsQuietly(t *testing.T) {
	for _, tc := range []struct {
		name string
		lg   *lockguard
	}{
		{"plain", startLockguard(t, nil)},
		{"guarded", startGuarded(t, nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := relSession(tc.lg.addr, "lg_terminate", 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, _, err := relQuery(c, "SELECT 1", 10*time.Second); err != nil {
				t.Fatal(err)
			}
			x, _ := (&pgproto3.Terminate{}).Encode(nil)
			if _, err := c.Write(x); err != nil {
				t.Fatal(err)
			}
			msgs, closed, err := relReadUntilClosed(c, 10*time.Second, -1)
			if !closed || len(msgs) > 0 {
				var got []string
				for _, m := range msgs {
					s := string(m.typ)
					if m.typ == 'E' {
						e := m.errorResponse()
						s += " " + e.Code + " " + e.Message
					}
					got = append(got, s)
				}
				t.Fatalf("after Terminate: messages %v, closed %v (%v); want the connection closed and nothing else", got, closed, err)
			}
		})
	}
}
