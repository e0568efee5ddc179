package test

// Scale-out (issue 8): replicas need no coordination. The claim that carries
// the most weight is about cancels: a CancelRequest arrives on a new
// connection, which a load balancer may send to any replica, and it must still
// reach the backend of a session that another replica carries. It works
// because lockguard passes BackendKeyData through unchanged and forwards a
// CancelRequest to PostgreSQL as it is. See docs/scale-out.md.

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestScaleOutCancelOnAnotherReplica runs pg_sleep through replica A and
// sends its CancelRequest to replica B: a wrong key does nothing, the right
// key stops the query on A with 57014, and A's session carries on.
func TestScaleOutCancelOnAnotherReplica(t *testing.T) {
	a := startLockguard(t, nil)
	b := startLockguard(t, nil)
	ctx := ctxT(t, time.Minute)
	direct := connect(t, directDSN())
	const app = "lg_scaleout_cancel"
	conn, key, err := relSession(a.addr, app, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if key == nil {
		t.Fatal("no BackendKeyData relayed by replica A")
	}
	// The key is PostgreSQL's own: its pid is the backend's.
	var pid uint32
	if err := direct.QueryRow(ctx, "SELECT pid FROM pg_stat_activity WHERE application_name = $1", app).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if pid != key.ProcessID {
		t.Fatalf("BackendKeyData names pid %d, PostgreSQL's backend is %d", key.ProcessID, pid)
	}
	q, _ := (&pgproto3.Query{String: "SELECT pg_sleep(60)"}).Encode(nil)
	if _, err := conn.Write(q); err != nil {
		t.Fatal(err)
	}
	sleeping := func() bool {
		var n int
		direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event = 'PgSleep'", app).Scan(&n)
		return n == 1
	}
	waitFor(t, 10*time.Second, sleeping)

	cancel := func(secret []byte) { t.Helper(); sendCancel(t, b.addr, key.ProcessID, secret) }

	// A wrong key: PostgreSQL ignores it, the query goes on sleeping.
	wrong := append([]byte(nil), key.SecretKey...)
	wrong[0] ^= 0xff
	cancel(wrong)
	time.Sleep(500 * time.Millisecond)
	if !sleeping() {
		t.Fatal("a CancelRequest with a wrong key stopped the query")
	}

	start := time.Now()
	cancel(key.SecretKey)
	msgs, closed, err := relReadUntilClosed(conn, 10*time.Second, 1)
	if err != nil || closed {
		t.Fatalf("replica A: no answer within 10s of the cancel on replica B (closed=%t): %v", closed, err)
	}
	var code string
	for _, m := range msgs {
		if m.typ == 'E' {
			code = m.errorResponse().Code
		}
	}
	if code != "57014" {
		t.Fatalf("query on replica A ended with %q, want 57014 (query_canceled)", code)
	}
	t.Logf("cancel sent to replica B stopped the query on replica A after %v", time.Since(start).Round(time.Millisecond))
	if v, perr, err := relQuery(conn, "SELECT 'still here'", 5*time.Second); v != "still here" || perr != nil || err != nil {
		t.Fatalf("session on replica A after the cancel: %q %v %v", v, perr, err)
	}
	if b.srv.Stats().Total < 2 {
		t.Fatalf("replica B saw %d connections; the cancels did not go through it", b.srv.Stats().Total)
	}
}

// sendCancel sends a CancelRequest for backend pid with secret to addr and
// expects the connection closed without an answer, as PostgreSQL does.
func sendCancel(t *testing.T, addr string, pid uint32, secret []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pkt, _ := (&pgproto3.CancelRequest{ProcessID: pid, SecretKey: secret}).Encode(nil)
	if _, err := c.Write(pkt); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("%s answered a CancelRequest with data or kept the connection open: %d, %v", addr, n, err)
	}
}

// TestScaleOutCancelEndsARetryOnAnotherReplica: two lockguard binaries in
// front of one PostgreSQL with the same replica-secret. A DDL through
// replica A gives up on its lock timeout and waits in A to retry; its
// client's CancelRequest lands on replica B. PostgreSQL's backend is idle
// then and ignores the cancel B forwards, so A went on retrying (up to
// retry-deadline) and the cancelled DDL could still run. B now tells A
// through PostgreSQL's LISTEN/NOTIFY, and A answers 57014 at once. A wrong
// key changes nothing; the listening connections, terminated first, come
// back by themselves.
func TestScaleOutCancelEndsARetryOnAnotherReplica(t *testing.T) {
	a, b := twoReplicas(t, "--lock-timeout", "300ms", "--retry-attempts", "8",
		"--retry-base-delay", "20s", "--retry-max-delay", "20s", "--retry-deadline", "90s")
	ctx := ctxT(t, time.Minute)
	tbl := createTable(t, ctx, "scaleout_retry", "id int")
	_, release := holdLock(t, tbl)
	defer release()
	conn, key, err := relSession(a.listen, "lg_scaleout_retry", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	direct := connect(t, directDSN())
	// Each replica listens on a connection of its own, and opens it again
	// when it breaks (PostgreSQL restarted, the backend terminated).
	listeners := func() int {
		var n int
		if err := direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN lockguard_cancel'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor(t, 10*time.Second, func() bool { return listeners() == 2 })
	if _, err := direct.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN lockguard_cancel'"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return listeners() == 0 })
	waitFor(t, 10*time.Second, func() bool { return listeners() == 2 })
	waiting := waitingOnLock(t, ctx, direct, key.ProcessID)
	q, _ := (&pgproto3.Query{String: "ALTER TABLE " + tbl + " ADD COLUMN c int"}).Encode(nil)
	if _, err := conn.Write(q); err != nil {
		t.Fatal(err)
	}
	// The first attempt waits for the lock and gives up; then A sleeps up
	// to 20 s before the next, a delay drawn with full jitter. The test
	// needs a few seconds of it, so it lets attempts with a short one pass.
	waitFor(t, 10*time.Second, waiting)
	longRetryWait(t, a.out, 5*time.Second)

	wrong := append([]byte(nil), key.SecretKey...)
	wrong[0] ^= 0xff
	sendCancel(t, b.listen, key.ProcessID, wrong)
	if msgs, _, _ := relReadUntilClosed(conn, time.Second, 1); len(msgs) != 0 {
		t.Fatalf("a CancelRequest with a wrong key on replica B ended the DDL's wait on A: %d messages", len(msgs))
	}

	e, took := cancelThrough(t, b, conn, key)
	if e == nil || e.Code != "57014" || !strings.HasPrefix(e.Message, "lockguard: canceling statement") || !strings.Contains(e.Detail, "waited to retry") {
		t.Fatalf("the DDL on replica A ended with %+v, want lockguard's 57014 saying it waited to retry", e)
	}
	t.Logf("cancel sent to replica B ended the retry wait on replica A after %v", took)
	// Logged after the wait ended, so perhaps just after the answer.
	if !waitUntil(2*time.Second, func() bool {
		return strings.Contains(a.out.String(), "a cancel request that came to another replica ended a wait here")
	}) {
		t.Errorf("replica A did not log the cancel it heard of:\n%s", a.out)
	}
	release()
	var n int
	if err := direct.QueryRow(ctx, "SELECT count(*) FROM information_schema.columns WHERE table_name = $1 AND column_name = 'c'", tbl).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the cancelled DDL ran (%d columns c, %v)", n, err)
	}
	if v, perr, err := relQuery(conn, "SELECT 'still here'", 5*time.Second); v != "still here" || perr != nil || err != nil {
		t.Fatalf("session on replica A after the cancel: %q %v %v", v, perr, err)
	}
}

// cancelThrough sends the CancelRequest for key to replica b and reads the
// answer on conn, a session through another replica, up to its
// ReadyForQuery within 5 s. It returns the answer's ErrorResponse (nil for
// none) and how long the answer took.
func cancelThrough(t *testing.T, b *process, conn net.Conn, key *pgproto3.BackendKeyData) (*pgproto3.ErrorResponse, time.Duration) {
	t.Helper()
	start := time.Now()
	sendCancel(t, b.listen, key.ProcessID, key.SecretKey)
	msgs, closed, err := relReadUntilClosed(conn, 5*time.Second, 1)
	if err != nil || closed {
		t.Fatalf("no answer within 5 s of the cancel on replica B (closed=%t): %v", closed, err)
	}
	var e *pgproto3.ErrorResponse
	for _, m := range msgs {
		if m.typ == 'E' {
			e = m.errorResponse()
		}
	}
	return e, time.Since(start).Round(time.Millisecond)
}

// twoReplicas starts two lockguard binaries in front of the test server
// with a monitor connection, the same replica-secret and args.
func twoReplicas(t *testing.T, args ...string) (a, b *process) {
	t.Helper()
	args = append([]string{"--upstream", pg.Addr(), "--upstream-sslmode", "disable", "--monitor-dsn", directDSN(),
		"--replica-secret", "0123456789abcdef-test"}, args...)
	return startBinary(t, args...), startBinary(t, args...)
}

// TestScaleOutCancelEndsAHoldOnAnotherReplica: replica A holds a read back
// because a DDL waits for its table (admission, hold-budget 20 s); the
// client's CancelRequest lands on replica B. The read never reached
// PostgreSQL, so the cancel B forwards finds the backend idle; A now hears
// of it from B and answers 57014 at once instead of holding the read on.
func TestScaleOutCancelEndsAHoldOnAnotherReplica(t *testing.T) {
	a, b := twoReplicas(t, "--hold-budget", "20s", "--monitor-interval", "100ms", "--monitor-busy-interval", "50ms")
	ctx := ctxT(t, time.Minute)
	tbl := createTable(t, ctx, "scaleout_hold", "id int")
	_, release := holdLock(t, tbl)
	defer release()
	// A DDL straight to PostgreSQL queues behind the reader: a pending
	// ACCESS EXCLUSIVE both replicas' monitors see.
	ddlCtx, stopDDL := context.WithCancel(ctx)
	defer stopDDL()
	ddl := startExec(ddlCtx, connect(t, directDSN()), "ALTER TABLE "+tbl+" ADD COLUMN x int")
	direct := connect(t, directDSN())
	waitFor(t, 10*time.Second, func() bool {
		var n int
		if err := direct.QueryRow(ctx, "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = $1 AND NOT l.granted", tbl).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	})
	time.Sleep(300 * time.Millisecond) // a few of A's monitor polls

	conn, key, err := relSession(a.listen, "lg_scaleout_hold", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	q, _ := (&pgproto3.Query{String: "SELECT count(*) FROM " + tbl}).Encode(nil)
	if _, err := conn.Write(q); err != nil {
		t.Fatal(err)
	}
	if msgs, _, _ := relReadUntilClosed(conn, time.Second, 1); len(msgs) != 0 {
		t.Fatalf("the read behind the waiting DDL was not held on replica A: %d messages", len(msgs))
	}
	e, took := cancelThrough(t, b, conn, key)
	if e == nil || e.Code != "57014" || !strings.Contains(e.Detail, "held the statement back") {
		t.Fatalf("the held read on replica A ended with %+v, want lockguard's 57014 saying it held the statement back", e)
	}
	t.Logf("cancel sent to replica B ended the hold on replica A after %v", took)
	stopDDL()
	<-ddl
}
