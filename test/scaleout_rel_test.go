package test

// Scale-out (issue 8): replicas need no coordination. The claim that carries
// the most weight is about cancels: a CancelRequest arrives on a new
// connection, which a load balancer may send to any replica, and it must still
// reach the backend of a session that another replica carries. It works
// because lockguard passes BackendKeyData through unchanged and forwards a
// CancelRequest to PostgreSQL as it is. See docs/scale-out.md.

import (
	"net"
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

	cancel := func(secret []byte) {
		t.Helper()
		c, err := net.DialTimeout("tcp", b.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		pkt, _ := (&pgproto3.CancelRequest{ProcessID: key.ProcessID, SecretKey: secret}).Encode(nil)
		if _, err := c.Write(pkt); err != nil {
			t.Fatal(err)
		}
		// Replica B forwards it and closes the connection, as PostgreSQL does.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Fatalf("replica B answered a CancelRequest with data or kept the connection open: %d, %v", n, err)
		}
	}

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
