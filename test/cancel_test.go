package test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/internal/enforce"
	"github.com/lockguard/lockguard/proxy"
)

// wantCanceled cancels conn's statement with a CancelRequest through
// lockguard and expects lockguard's 57014, with a DETAIL and a HINT, within
// 5 seconds. The session then goes on.
func wantCanceled(t *testing.T, ctx context.Context, conn *pgx.Conn, errc <-chan error, detail string) {
	t.Helper()
	if err := conn.PgConn().CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-errc:
	case <-time.After(5 * time.Second):
		t.Fatal("no answer within 5 s of the CancelRequest: lockguard went on waiting")
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" || !strings.HasPrefix(pe.Message, "lockguard: canceling statement") ||
		!strings.Contains(pe.Detail, detail) || pe.Hint == "" {
		t.Fatalf("after the CancelRequest: %v (%+v), want lockguard's 57014 whose DETAIL says %q", err, pe, detail)
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("the session after the cancel: %v", err)
	}
}

// TestCancelStopsARetry: a client cancels its DDL (psql's Ctrl-C, a
// driver's context) while lockguard waits to retry it after it gave up on
// the lock timeout. PostgreSQL's backend is idle then and ignores the
// cancel: lockguard went on retrying, up to half a minute by default, and
// the DDL the user had cancelled could still run.
func TestCancelStopsARetry(t *testing.T) {
	tr := newTraced(t, nil)
	var logs lockedBuffer
	lg := startGuarded(t, func(g *enforce.Guard) {
		tr.install(g)
		g.LockTimeout = 300 * time.Millisecond
		g.Backoff = guard.Backoff{Attempts: 8, Base: 20 * time.Second, Cap: 20 * time.Second, Deadline: 90 * time.Second}
		g.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	ctx := ctxT(t, 60*time.Second)
	tbl := createTable(t, ctx, "cancelretry", "id int")
	_, release := holdLock(t, tbl)
	conn := connect(t, lg.superDSN())
	pid := conn.PgConn().PID() // lockguard passes the backend's key through
	direct := connect(t, directDSN())
	waiting := waitingOnLock(t, ctx, direct, pid)
	errc := startExec(ctx, conn, "ALTER TABLE "+tbl+" ADD COLUMN c int")
	// The first attempt waits for the lock and gives up; then lockguard
	// sleeps up to 20 s before the next (a random delay: attempts with a
	// short one pass).
	waitFor(t, 10*time.Second, waiting)
	longRetryWait(t, &logs, 2*time.Second)
	wantCanceled(t, ctx, conn, errc, "waited to retry")
	if lt := showLockTimeout(t, conn); lt != "0" {
		t.Errorf("lock_timeout after the cancelled DDL = %s, want the session's own 0", lt)
	}
	m := tr.scrape(t)
	if c, g := metricValue(m, "lockguard_ddl_outcomes_total", `lockguard_outcome="canceled"`),
		metricValue(m, "lockguard_ddl_outcomes_total", `lockguard_outcome="gave_up"`); c != 1 || g != 0 {
		t.Errorf("DDL outcomes: canceled %v, gave_up %v; want 1 and 0", c, g)
	}
	release()
	var n int
	if err := direct.QueryRow(ctx, "SELECT count(*) FROM information_schema.columns WHERE table_name = $1 AND column_name = 'c'", tbl).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the cancelled DDL ran (%d columns c, %v)", n, err)
	}
}

// TestVanishedClientIsNotRetried: a client goes away (a deploy killed:
// its socket closed, with no Terminate and no CancelRequest) while its DDL
// waits for a lock with lockguard's timeout. Nothing reads the client's
// socket while lockguard carries out a DDL it may retry, so after the lock
// timeout lockguard retried, and the DDL landed for nobody once its lock
// was free. Now lockguard checks for
// the hang-up before each retry and ends the session instead; over TLS too,
// whose hang-up it sees on the socket beneath.
func TestVanishedClientIsNotRetried(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "tls"}[tlsOn]
		t.Run(name, func(t *testing.T) {
			tr := newTraced(t, nil)
			var mutateProxy func(*proxy.Config)
			if tlsOn {
				mutateProxy = withClientTLS(t)
			}
			lg := startGuardedWith(t, func(g *enforce.Guard) {
				tr.install(g)
				g.LockTimeout = time.Second // the test closes the client in it
				g.Backoff = guard.Backoff{Attempts: 4, Base: 3 * time.Second, Cap: 3 * time.Second, Deadline: 60 * time.Second}
			}, mutateProxy)
			ctx := ctxT(t, 60*time.Second)
			tbl := createTable(t, ctx, "vanishretry_"+name, "id int")
			_, release := holdLock(t, tbl)
			sock, fe, pid := rawOpen(t, lg.addr, tlsOn)
			direct := connect(t, directDSN())
			waiting := waitingOnLock(t, ctx, direct, pid)
			fe.Send(&pgproto3.Query{String: "ALTER TABLE " + tbl + " ADD COLUMN c int"})
			if err := fe.Flush(); err != nil {
				t.Fatal(err)
			}
			// The client vanishes while the first attempt waits for the
			// lock; the attempt gives up, and then the lock is free.
			waitFor(t, 10*time.Second, waiting)
			if err := sock.Close(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, func() bool { return !waiting() })
			release()
			// lockguard ends the session where it would have retried.
			waitFor(t, 5*time.Second, func() bool {
				var n int
				if err := direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n == 0
			})
			var n int
			if err := direct.QueryRow(ctx, "SELECT count(*) FROM information_schema.columns WHERE table_name = $1 AND column_name = 'c'", tbl).Scan(&n); err != nil || n != 0 {
				t.Fatalf("the DDL of the vanished client ran (%d columns c, %v)", n, err)
			}
			if f := metricValue(tr.scrape(t), "lockguard_ddl_outcomes_total", `lockguard_outcome="failed"`); f != 1 {
				t.Errorf("DDL outcomes: failed %v, want 1 (the client's connection failed)", f)
			}
		})
	}
}

// TestCancelEndsAHold: a client cancels a statement that admission holds
// in lockguard because it would queue behind a waiting DDL. It never
// reached PostgreSQL, so the forwarded cancel found the backend idle:
// lockguard held it until the DDL gave up and then ran it, after the
// client had cancelled.
func TestCancelEndsAHold(t *testing.T) {
	tr := newTraced(t, nil)
	s := startShedding(t, 5*time.Second, func(g *enforce.Guard) {
		tr.install(g)
		g.Admission.HoldBudget = 20 * time.Second
		g.Backoff = guard.Backoff{Attempts: 1}
	})
	ctx := ctxT(t, 60*time.Second)
	_, release := holdLock(t, s.users)
	defer release()
	ddl := startExec(ctx, connect(t, s.lg.superDSN()), "ALTER TABLE "+s.users+" ADD COLUMN x int")
	waitHazard(t, s.board, s.users)
	conn := connect(t, s.lg.superDSN())
	errc := startExec(ctx, conn, "SELECT count(*) FROM "+s.users)
	time.Sleep(300 * time.Millisecond) // held: the DDL waits up to 5 s
	select {
	case err := <-errc:
		t.Fatalf("the SELECT behind the waiting DDL was not held: %v", err)
	default:
	}
	wantCanceled(t, ctx, conn, errc, "held the statement back")
	if n := metricValue(tr.scrape(t), "lockguard_shed_total", `lockguard_reason="canceled"`); n != 1 {
		t.Errorf("statements shed for a cancel: %v, want 1", n)
	}
	if err := <-ddl; err == nil {
		t.Fatal("the DDL behind the held lock succeeded")
	}
}
