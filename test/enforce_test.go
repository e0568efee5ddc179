package test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/guard/pgcatalog"
	"github.com/lockguard/lockguard/internal/enforce"
	"github.com/lockguard/lockguard/internal/pgserver"
	"github.com/lockguard/lockguard/proxy"
)

// startGuarded starts a proxy with the guard on: catalog and blocker lookups
// through side connections as the superuser, a short lock timeout so tests
// run fast.
func startGuarded(t *testing.T, mutate func(*enforce.Guard)) *lockguard {
	t.Helper()
	return startGuardedWith(t, mutate, nil)
}

// startGuardedWith is startGuarded whose proxy configuration mutateProxy
// may change too.
func startGuardedWith(t *testing.T, mutate func(*enforce.Guard), mutateProxy func(*proxy.Config)) *lockguard {
	t.Helper()
	ctx := ctxT(t, 20*time.Second)
	catConn := connect(t, directDSN())
	cat, err := pgcatalog.New(ctx, catConn)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, directDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	g := &enforce.Guard{
		Analyzer:    guard.NewAnalyzer(cat, 1000),
		LockTimeout: 300 * time.Millisecond,
		Backoff:     guard.Backoff{Attempts: 4, Base: 100 * time.Millisecond, Cap: 200 * time.Millisecond, Deadline: 20 * time.Second},
		Blockers:    &enforce.PGBlockers{Pool: pool},
		Logger:      testLogger(),
	}
	if mutate != nil {
		mutate(g)
	}
	lg := startLockguard(t, func(c *proxy.Config) {
		c.Hooks = g.Hooks()
		if mutateProxy != nil {
			mutateProxy(c)
		}
	})
	lg.guard = g
	return lg
}

// holdLock opens a direct transaction that reads tbl and stays idle in it,
// returning its pid and a function that ends it.
func holdLock(t *testing.T, tbl string) (int, func()) {
	t.Helper()
	return holdLockOn(t, directDSN(), tbl)
}

// gaveUp returns err as lockguard's 55P03 for a DDL that gave up waiting
// for its locks after its retries, and whether it is one.
func gaveUp(err error) (*pgconn.PgError, bool) {
	var pe *pgconn.PgError
	ok := errors.As(err, &pe) && pe.Code == "55P03" && strings.HasPrefix(pe.Message, "lockguard: gave up waiting for")
	return pe, ok
}

// lockDirect takes LOCK TABLE tbl IN mode MODE in a transaction on a
// direct connection (a session that bypasses lockguard); release ends it.
func lockDirect(t *testing.T, ctx context.Context, tbl, mode string) (release func()) {
	t.Helper()
	tx, err := connect(t, directDSN()).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE "+tbl+" IN "+mode+" MODE"); err != nil {
		t.Fatal(err)
	}
	return func() { tx.Rollback(context.Background()) }
}

// holdLockOn is holdLock on the server dsn names.
func holdLockOn(t *testing.T, dsn, tbl string) (int, func()) {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	c := connect(t, dsn)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT count(*) FROM "+tbl); err != nil {
		t.Fatal(err)
	}
	var pid int
	tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid)
	return pid, func() { tx.Rollback(context.Background()) }
}

// waitingOnLock is a condition for waitFor: backend pid waits for a lock,
// as pg_stat_activity shows on direct.
func waitingOnLock(t *testing.T, ctx context.Context, direct *pgx.Conn, pid uint32) func() bool {
	return func() bool {
		var n int
		if err := direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'", pid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
}

func showLockTimeout(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var v string
	if err := conn.QueryRow(context.Background(), "SHOW lock_timeout").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// guardedTable starts a guarded lockguard and creates a table (id int),
// dropped when the test ends.
func guardedTable(t *testing.T, prefix string) (*lockguard, context.Context, string) {
	t.Helper()
	lg := startGuarded(t, nil)
	ctx := ctxT(t, 60*time.Second)
	return lg, ctx, createTable(t, ctx, prefix, "id int")
}

// wantOwnLockTimeout fails unless err is PostgreSQL's own 55P03, from the
// client's own lock_timeout, and not lockguard's after its retries.
func wantOwnLockTimeout(t *testing.T, what string, err error) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "55P03" || strings.HasPrefix(pe.Message, "lockguard") {
		t.Fatalf("%s: %v, want PostgreSQL's own 55P03 from the client's lock_timeout", what, err)
	}
}

// fkTables creates a users table and an orders table whose foreign key fk
// references it, dropped when the test ends.
func fkTables(t *testing.T, ctx context.Context, direct *pgx.Conn) (users, orders, fk string) {
	t.Helper()
	users, orders = uniqueName(t, "users"), uniqueName(t, "orders")
	fk = orders + "_user_fk"
	if _, err := direct.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY);
		CREATE TABLE %s (id int PRIMARY KEY, user_id int CONSTRAINT %s REFERENCES %s(id))`, users, orders, fk, users)); err != nil {
		t.Fatal(err)
	}
	dropAtEnd(t, orders, users)
	return users, orders, fk
}

func TestEnforceLockTimeoutAndRetry(t *testing.T) {
	lg := startGuarded(t, nil)
	ctx := ctxT(t, 120*time.Second)
	direct := connect(t, directDSN())
	users, orders, fk := fkTables(t, ctx, direct)

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		t.Run(mode.String(), func(t *testing.T) {
			conn := connect(t, lg.superDSN())
			conn.Exec(ctx, "SET lock_timeout = '7s'", mode)
			// The blocker never ends: the DDL fails after every attempt,
			// and the error names the blocker and both tables.
			pid, release := holdLock(t, users)
			start := time.Now()
			_, err := conn.Exec(ctx, "ALTER TABLE "+orders+" DROP CONSTRAINT "+fk, mode)
			release()
			pe, ok := gaveUp(err)
			if !ok {
				t.Fatalf("got %v, want lockguard's 55P03", err)
			}
			if !strings.Contains(pe.Message, orders) || !strings.Contains(pe.Message, users) {
				t.Errorf("message does not name both tables: %q", pe.Message)
			}
			if !strings.Contains(pe.Detail, "4 attempts") || !strings.Contains(pe.Detail, fmt.Sprintf("pid %d", pid)) ||
				!strings.Contains(pe.Detail, "idle in transaction") {
				t.Errorf("detail = %q, want attempts and blocker pid %d", pe.Detail, pid)
			}
			if pe.Hint == "" {
				t.Error("no hint")
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("gave up after %v", el)
			}
			if v := showLockTimeout(t, conn); v != "7s" {
				t.Fatalf("client's lock_timeout after the DDL = %q, want 7s", v)
			}
			// The blocker ends during the retries: the client only sees
			// success.
			_, release = holdLock(t, users)
			released := make(chan struct{})
			go func() { time.Sleep(700 * time.Millisecond); release(); close(released) }()
			_, err = conn.Exec(ctx, "ALTER TABLE "+orders+" ADD COLUMN c_"+strings.ToLower(mode.String()[:3])+" int", mode)
			<-released
			if err != nil {
				t.Fatalf("DDL during a released blocker: %v", err)
			}
			if v := showLockTimeout(t, conn); v != "7s" {
				t.Fatalf("client's lock_timeout after retries = %q, want 7s", v)
			}
		})
	}
	// Inside an explicit transaction: one attempt, a hint, no retry.
	conn := connect(t, lg.superDSN())
	_, release := holdLock(t, users)
	defer release()
	tx, _ := conn.Begin(ctx)
	start := time.Now()
	_, err := tx.Exec(ctx, "ALTER TABLE "+users+" ADD COLUMN in_tx int")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "55P03" || !strings.Contains(pe.Hint, "retries a DDL only outside a transaction block") {
		t.Fatalf("in a transaction: %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("in a transaction it took %v: retried?", el)
	}
	tx.Rollback(ctx)
	if v := showLockTimeout(t, conn); v != "0" {
		t.Fatalf("lock_timeout after the transaction = %q", v)
	}
	// A client's own lower lock_timeout is kept and its 55P03 is its own.
	conn.Exec(ctx, "SET lock_timeout = '100ms'")
	_, err = conn.Exec(ctx, "ALTER TABLE "+users+" ADD COLUMN low int")
	wantOwnLockTimeout(t, "own lower lock_timeout", err)
}

// TestEnforceRetriesANamedStatementBatch is postgres.js's way with a DDL:
// Parse of a named statement, Bind, Describe, Execute and Sync in one
// batch. The guard retries it after the lock timeout like any autocommit
// DDL, and the client sees it land (the proxy closes the statement the
// failed attempt left; TestInterceptRetryReparsesANamedStatement).
func TestEnforceRetriesANamedStatementBatch(t *testing.T) {
	lg := startGuarded(t, nil)
	ctx := ctxT(t, 60*time.Second)
	tbl := createTable(t, ctx, "named_ddl", "id int")
	rc := rawSession(t, lg)
	_, release := holdLock(t, tbl)
	released := make(chan struct{})
	go func() { time.Sleep(500 * time.Millisecond); release(); close(released) }()
	rc.send(&pgproto3.Parse{Name: "n6n48hu5eca5", Query: "ALTER TABLE " + tbl + " ADD COLUMN c int"},
		&pgproto3.Bind{PreparedStatement: "n6n48hu5eca5"}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{})
	a := rc.readUntil(isReady)
	<-released
	if a.code != "" {
		t.Fatalf("the DDL ended with %s %q; want it retried until the blocker left after 500 ms", a.code, a.message)
	}
	var n int
	if err := connect(t, directDSN()).QueryRow(ctx, "SELECT count(*) FROM information_schema.columns WHERE table_name = $1 AND column_name = 'c'", tbl).Scan(&n); err != nil || n != 1 {
		t.Fatalf("column c: %d, %v", n, err)
	}
}

// TestEnforceDoesNotRetryWhatOutlivesTheBatch: a prepared statement and a
// session-level advisory lock stay when the batch that made them fails, so
// lockguard must not send such a batch again when its DDL hits the lock
// timeout: the retry would take the advisory lock a second time (one
// unlock would then leave it held, and the next deploy waiting for it) or
// fail on the PREPARE. One attempt, and a HINT that says why.
func TestEnforceDoesNotRetryWhatOutlivesTheBatch(t *testing.T) {
	lg := startGuarded(t, nil)
	ctx := ctxT(t, 60*time.Second)
	tbl := createTable(t, ctx, "lasting", "id int")
	conn := connect(t, lg.superDSN())
	key := time.Now().UnixNano() % 1e9
	for _, c := range []struct{ name, first string }{
		{"advisory lock", fmt.Sprintf("SELECT pg_advisory_lock(%d)", key)},
		{"PREPARE", "PREPARE lasting_p AS SELECT 1"},
	} {
		_, release := holdLock(t, tbl)
		start := time.Now()
		_, err := conn.Exec(ctx, c.first+"; ALTER TABLE "+tbl+" ADD COLUMN c int", pgx.QueryExecModeSimpleProtocol)
		release()
		pe, ok := gaveUp(err)
		if !ok {
			t.Fatalf("%s: got %v, want lockguard's 55P03", c.name, err)
		}
		if !strings.Contains(pe.Detail, "1 attempt.") || !strings.Contains(pe.Hint, "does not retry a batch that also runs PREPARE, DEALLOCATE or a session-level advisory lock function") {
			t.Errorf("%s: detail %q, hint %q; want one attempt and why", c.name, pe.Detail, pe.Hint)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("%s: gave up after %v: retried?", c.name, el)
		}
	}
	// The advisory lock was taken once: one unlock releases it.
	var first, second bool
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT pg_advisory_unlock(%d)", key)).Scan(&first); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT pg_advisory_unlock(%d)", key)).Scan(&second); err != nil {
		t.Fatal(err)
	}
	if !first || second {
		t.Errorf("unlocking the advisory lock twice answered %v then %v; want true then false (taken once)", first, second)
	}
	var one int
	if err := conn.QueryRow(ctx, "EXECUTE lasting_p").Scan(&one); err != nil || one != 1 {
		t.Errorf("EXECUTE lasting_p: %v, %v", one, err)
	}
}

// TestEnforceRetriesWithSetConstraints: Django drops a foreign key with
// one string, `SET CONSTRAINTS "fk" IMMEDIATE; ALTER TABLE … DROP
// CONSTRAINT "fk"`. SET CONSTRAINTS and SET TRANSACTION act on the
// transaction they run in, an implicit one here that a retry runs anew:
// such a string is retried like the DDL alone (it was given one attempt,
// as if it had its own BEGIN or COMMIT).
func TestEnforceRetriesWithSetConstraints(t *testing.T) {
	lg := startGuarded(t, nil)
	ctx := ctxT(t, 60*time.Second)
	tbl := createTable(t, ctx, "setcons", "id int")
	conn := connect(t, lg.superDSN())
	for i, first := range []string{"SET CONSTRAINTS ALL IMMEDIATE", "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"} {
		_, release := holdLock(t, tbl)
		released := make(chan struct{})
		go func() {
			time.Sleep(700 * time.Millisecond)
			release()
			close(released)
		}()
		_, err := conn.Exec(ctx, fmt.Sprintf("%s; ALTER TABLE %s ADD COLUMN c%d int", first, tbl, i), pgx.QueryExecModeSimpleProtocol)
		<-released
		if err != nil {
			t.Fatalf("%s; ALTER TABLE behind a reader that ends after 700 ms: %v, want it to land after retries", first, err)
		}
	}
}

// TestEnforceGiveUpSaysWhyItWasNotRetried: a DDL after a BEGIN of its own
// batch (pgjdbc with autocommit off sends BEGIN with the first statement;
// golang-migrate sends a `BEGIN; …; COMMIT;` file as one string) runs in a
// transaction block and is not retried; it got the autocommit HINT ("retry
// when it is done") and was logged in_transaction=false. A string that
// runs as several transactions says so.
func TestEnforceGiveUpSaysWhyItWasNotRetried(t *testing.T) {
	lg := startGuarded(t, nil)
	ctx := ctxT(t, 60*time.Second)
	tbl := createTable(t, ctx, "whynot", "id int")
	conn := connect(t, lg.superDSN())
	_, release := holdLock(t, tbl)
	defer release()
	inBlock := "retries a DDL only outside a transaction block"
	check := func(name string, err error, hint string) {
		t.Helper()
		pe, ok := gaveUp(err)
		if !ok {
			t.Fatalf("%s: %v, want lockguard's 55P03", name, err)
		}
		if !strings.Contains(pe.Detail, "1 attempt.") || !strings.Contains(pe.Hint, hint) {
			t.Errorf("%s: detail %q, hint %q; want one attempt and a hint with %q", name, pe.Detail, pe.Hint, hint)
		}
	}
	_, err := conn.Exec(ctx, "BEGIN; ALTER TABLE "+tbl+" ADD COLUMN a int; COMMIT", pgx.QueryExecModeSimpleProtocol)
	check("BEGIN; ALTER; COMMIT in one string", err, inBlock)
	if pe, ok := gaveUp(err); ok && (!strings.Contains(pe.Hint, "ROLLBACK TO a savepoint") || !strings.Contains(pe.Hint, "atomic = False")) {
		t.Errorf("the in-block hint %q names neither a savepoint nor the migration tools' switches", pe.Hint)
	}
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil { // the COMMIT did not run
		t.Fatal(err)
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("ALTER TABLE " + tbl + " ADD COLUMN b int")
	br := conn.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		t.Fatalf("BEGIN in a batch: %v", err)
	}
	_, err = br.Exec()
	br.Close()
	check("BEGIN and the DDL in one extended-protocol batch", err, inBlock)
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, "SELECT 1; COMMIT; ALTER TABLE "+tbl+" ADD COLUMN c int", pgx.QueryExecModeSimpleProtocol)
	check("a string of two transactions", err, "runs as more than one transaction")
}

// TestEnforceLogsALockTimeoutSetInTheQuery: a string that sets its own
// longer lock_timeout before its DDL runs the DDL without lockguard's. The
// client got a WARNING, which lib/pq and psycopg2 do not show; lockguard's
// log said nothing, so nobody learnt that the DDL ran unprotected.
func TestEnforceLogsALockTimeoutSetInTheQuery(t *testing.T) {
	var logs lockedBuffer
	lg := startGuarded(t, func(g *enforce.Guard) { g.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	ctx := ctxT(t, 30*time.Second)
	tbl := createTable(t, ctx, "ownlt", "id int")
	conn := connect(t, lg.superDSN())
	if _, err := conn.Exec(ctx, "SET lock_timeout = '10s'; ALTER TABLE "+tbl+" ADD COLUMN x int", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "client_lock_timeout=10s") {
		t.Errorf("no warning in lockguard's log for the DDL under the query's own lock_timeout:\n%s", l)
	}
}

// TestEnforceGivesUpInATransactionQuietly: a DDL in a transaction block
// that gives up aborts the block, so the statement lockguard sends after it
// to restore lock_timeout fails with 25P02; the block's rollback restores
// it. That is no failure of lockguard's and must not be logged as a
// warning, which on-call engineers would chase.
func TestEnforceGivesUpInATransactionQuietly(t *testing.T) {
	var logs lockedBuffer
	lg := startGuardedWith(t, nil, func(c *proxy.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	ctx := ctxT(t, 30*time.Second)
	tbl := createTable(t, ctx, "quiet", "id int")
	conn := connect(t, lg.superDSN())
	_, release := holdLock(t, tbl)
	defer release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, "ALTER TABLE "+tbl+" ADD COLUMN in_tx int")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "55P03" {
		t.Fatalf("in a transaction behind a held lock: %v, want 55P03", err)
	}
	tx.Rollback(ctx)
	if v := showLockTimeout(t, conn); v != "0" {
		t.Fatalf("lock_timeout after the transaction = %q, want 0", v)
	}
	if l := logs.String(); !strings.Contains(l, "sqlstate=25P02") || strings.Contains(l, "level=WARN") {
		t.Errorf("logs: %s\nwant the restore's 25P02 at DEBUG and no warning", l)
	}
}

// TestEnforceFollowsSetConfig: a client may set lock_timeout with
// SELECT set_config(…) instead of SET. lockguard once let such a SELECT pass
// without following it, so the RESET it sends after an injected lock_timeout
// put the client's 7s back to 0, and a client's own lower timeout set that
// way was overridden by the injected 300ms.
func TestEnforceFollowsSetConfig(t *testing.T) {
	lg, ctx, tbl := guardedTable(t, "setcfg")
	for i, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		conn := connect(t, lg.superDSN())
		if _, err := conn.Exec(ctx, "SELECT set_config('lock_timeout', '7s', false)", mode); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN a%d int", tbl, i), mode); err != nil {
			t.Fatalf("mode %v: %v", mode, err)
		}
		if v := showLockTimeout(t, conn); v != "7s" {
			t.Fatalf("mode %v: lock_timeout after the DDL = %q, want the client's 7s", mode, v)
		}
		// set_config(…, true) inside a transaction block is SET LOCAL.
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "SELECT set_config('lock_timeout', '6s', true)", mode); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN b%d int", tbl, i), mode); err != nil {
			t.Fatalf("mode %v: in a transaction: %v", mode, err)
		}
		var inTx string
		if err := tx.QueryRow(ctx, "SHOW lock_timeout").Scan(&inTx); err != nil || inTx != "6s" {
			t.Fatalf("mode %v: lock_timeout after the DDL in the transaction = %q (%v), want 6s", mode, inTx, err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if v := showLockTimeout(t, conn); v != "7s" {
			t.Fatalf("mode %v: lock_timeout after COMMIT = %q, want 7s", mode, v)
		}
		// A lower timeout set this way is the client's own: kept, and
		// its 55P03 is PostgreSQL's, not lockguard's after retries.
		if _, err := conn.Exec(ctx, "SELECT set_config('lock_timeout', '100ms', false)", mode); err != nil {
			t.Fatal(err)
		}
		_, release := holdLock(t, tbl)
		_, err = conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN c%d int", tbl, i), mode)
		release()
		wantOwnLockTimeout(t, fmt.Sprintf("mode %v: own lower lock_timeout from set_config", mode), err)
		if v := showLockTimeout(t, conn); v != "100ms" {
			t.Fatalf("mode %v: lock_timeout after the refused DDL = %q, want 100ms", mode, v)
		}
	}
}

// TestEnforceFollowsBoundSetConfig: set_config with its value as a bind
// parameter (set_config('lock_timeout', $1, false), the way PostgREST and
// drivers without client-side interpolation send it) is followed: the value
// comes from the Bind message. lockguard once restored the value before it
// after an injected lock_timeout.
func TestEnforceFollowsBoundSetConfig(t *testing.T) {
	lg, ctx, tbl := guardedTable(t, "bindcfg")
	conn := connect(t, lg.superDSN())
	for i, c := range []struct {
		v    string
		mode pgx.QueryExecMode
	}{
		// pgx's default mode prepares the statement in a batch of its
		// own and binds it in the next; the second round binds it again.
		{"7s", pgx.QueryExecModeCacheStatement},
		{"8s", pgx.QueryExecModeCacheStatement},
		// Parse, Bind and Execute of the unnamed statement in one batch.
		{"6s", pgx.QueryExecModeExec},
	} {
		if _, err := conn.Exec(ctx, "SELECT set_config('lock_timeout', $1, false)", c.mode, c.v); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN a%d int", tbl, i)); err != nil {
			t.Fatal(err)
		}
		if got := showLockTimeout(t, conn); got != c.v {
			t.Fatalf("mode %v: lock_timeout after the DDL = %q, want the client's %s", c.mode, got, c.v)
		}
	}
	// The name and is_local bound too (pgx sends the boolean in binary).
	for i, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec} {
		v := fmt.Sprintf("%ds", 9+i)
		if _, err := conn.Exec(ctx, "SELECT set_config($1, $2, $3)", mode, "Lock_Timeout", v, false); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN n%d int", tbl, i)); err != nil {
			t.Fatal(err)
		}
		if got := showLockTimeout(t, conn); got != v {
			t.Fatalf("mode %v: lock_timeout after the DDL = %q, want the client's %s from set_config($1, $2, $3)", mode, got, v)
		}
	}
	if _, err := conn.Exec(ctx, "SELECT set_config('lock_timeout', $1, false)", "6s"); err != nil {
		t.Fatal(err)
	}
	// A cast, and is_local inside a transaction block.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT set_config('lock_timeout', $1::text, true)", "100ms"); err != nil {
		t.Fatal(err)
	}
	_, release := holdLock(t, tbl)
	_, err = tx.Exec(ctx, "ALTER TABLE "+tbl+" ADD COLUMN b int")
	release()
	wantOwnLockTimeout(t, "a lower lock_timeout bound in the transaction", err)
	tx.Rollback(ctx)
	if tx, err = conn.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT set_config($1, $2, $3)", "lock_timeout", "100ms", true); err != nil {
		t.Fatal(err)
	}
	_, release = holdLock(t, tbl)
	_, err = tx.Exec(ctx, "ALTER TABLE "+tbl+" ADD COLUMN b int")
	release()
	wantOwnLockTimeout(t, "a lower lock_timeout from set_config($1, $2, $3) in the transaction", err)
	tx.Rollback(ctx)
	if got := showLockTimeout(t, conn); got != "6s" {
		t.Fatalf("lock_timeout after the rollback = %q, want 6s", got)
	}
}

// TestEnforceFollowsUndecidedBegin: a bare BEGIN passes the guard undecided
// (pgbench's and most drivers' transactions change nothing it follows). A
// SET inside that transaction must still count as the transaction's, so
// that a ROLLBACK undoes it, also when the client pipelines the SET behind
// the BEGIN without waiting for it.
func TestEnforceFollowsUndecidedBegin(t *testing.T) {
	lg, ctx, tbl := guardedTable(t, "txbegin")
	for i, pipelined := range []bool{false, true} {
		conn := connect(t, lg.superDSN())
		if !pipelined {
			for _, q := range []string{"BEGIN", "SET lock_timeout = '5s'", "ROLLBACK"} {
				if _, err := conn.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol); err != nil {
					t.Fatal(err)
				}
			}
		} else {
			p := conn.PgConn().StartPipeline(ctx)
			for _, q := range []string{"BEGIN", "SET lock_timeout = '5s'", "ROLLBACK"} {
				p.SendQueryParams(q, nil, nil, nil, nil)
				if err := p.Sync(); err != nil {
					t.Fatal(err)
				}
			}
			for {
				r, err := p.GetResults()
				if err != nil {
					t.Fatal(err)
				}
				if r == nil {
					break
				}
				if rr, ok := r.(*pgconn.ResultReader); ok {
					if _, err := rr.Close(); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN a%d int", tbl, i)); err != nil {
			t.Fatal(err)
		}
		if v := showLockTimeout(t, conn); v != "0" {
			t.Fatalf("pipelined %v: lock_timeout after the DDL = %q, want 0 (the 5s was rolled back)", pipelined, v)
		}
	}
}

// TestEnforceFollowsSavepoints: ROLLBACK TO SAVEPOINT undoes the SETs made
// since the savepoint. lockguard once kept them, and restored a value the
// client had rolled back after an injected lock_timeout.
func TestEnforceFollowsSavepoints(t *testing.T) {
	lg, ctx, tbl := guardedTable(t, "savept")
	for i, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		conn := connect(t, lg.superDSN())
		for _, q := range []string{"BEGIN", "SET lock_timeout = '5s'", "SAVEPOINT a", "SET lock_timeout = '4s'",
			"SAVEPOINT b", "SET lock_timeout = '3s'", "RELEASE b", "ROLLBACK TO SAVEPOINT a",
			fmt.Sprintf("ALTER TABLE %s ADD COLUMN c%d int", tbl, i)} {
			if _, err := conn.Exec(ctx, q, mode); err != nil {
				t.Fatalf("mode %v: %s: %v", mode, q, err)
			}
		}
		if v := showLockTimeout(t, conn); v != "5s" {
			t.Fatalf("mode %v: lock_timeout after the DDL = %q, want 5s (the 4s and 3s were rolled back)", mode, v)
		}
		if _, err := conn.Exec(ctx, "COMMIT", mode); err != nil {
			t.Fatal(err)
		}
		if v := showLockTimeout(t, conn); v != "5s" {
			t.Fatalf("mode %v: lock_timeout after COMMIT = %q, want 5s", mode, v)
		}
	}
}

// TestEnforceRestoreSurvivesRollback: a DDL sent in one string with the
// BEGIN before it ("BEGIN; ALTER TABLE …") starts outside a transaction
// block, so lockguard injects its lock_timeout at session level, and the
// restore after the string runs inside the block the string left open. A
// ROLLBACK undoes that restore: lockguard's 300ms once stayed in force for
// the rest of the session. It must be the client's value again.
func TestEnforceRestoreSurvivesRollback(t *testing.T) {
	lg, ctx, tbl := guardedTable(t, "rbrest")
	simple := pgx.QueryExecModeSimpleProtocol
	for i, c := range []struct {
		name, ddl, end, set, want string
	}{
		{"rolled back", "ALTER TABLE %s ADD COLUMN a%d int", "ROLLBACK", "", "0"},
		{"failed, rolled back", "ALTER TABLE %s_missing ADD COLUMN b%d int", "ROLLBACK", "", "0"},
		{"committed after a SET", "ALTER TABLE %s ADD COLUMN c%d int", "COMMIT", "SET lock_timeout = '7s'", "7s"},
		{"rolled back after a SET", "ALTER TABLE %s ADD COLUMN d%d int", "ROLLBACK", "SET lock_timeout = '7s'", "0"},
	} {
		conn := connect(t, lg.superDSN())
		_, err := conn.Exec(ctx, "BEGIN; "+fmt.Sprintf(c.ddl, tbl, i), simple)
		if err != nil && !strings.Contains(c.name, "failed") {
			t.Fatalf("%s: %v", c.name, err)
		}
		if c.set != "" {
			if _, err := conn.Exec(ctx, c.set, simple); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := conn.Exec(ctx, c.end, simple); err != nil {
			t.Fatal(err)
		}
		// A plain read first: the restore must not wait for a statement
		// the guard decides anyway.
		var v string
		if err := conn.QueryRow(ctx, "SELECT current_setting('lock_timeout')", simple).Scan(&v); err != nil || v != c.want {
			t.Fatalf("%s: lock_timeout after %s = %q (%v), want %q", c.name, c.end, v, err, c.want)
		}
	}
}

// TestEnforceCommitThenDDL: inside a transaction block, "COMMIT; ALTER
// TABLE …" in one string runs the ALTER outside the block. lockguard once
// injected SET LOCAL before the string: the COMMIT ended it and the ALTER
// waited behind the reader with no lock timeout.
func TestEnforceCommitThenDDL(t *testing.T) {
	lg, ctx, tbl := guardedTable(t, "commitddl")
	conn := connect(t, lg.superDSN())
	if _, err := conn.Exec(ctx, "BEGIN", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	_, release := holdLock(t, tbl)
	released := make(chan struct{})
	go func() { time.Sleep(4 * time.Second); release(); close(released) }()
	start := time.Now()
	_, err := conn.Exec(ctx, "COMMIT; ALTER TABLE "+tbl+" ADD COLUMN x int", pgx.QueryExecModeSimpleProtocol)
	took := time.Since(start)
	<-released
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "55P03" || took > 3*time.Second {
		t.Fatalf("ALTER after COMMIT in one string behind a reader: %v after %v, want 55P03 from the injected 300ms", err, took)
	}
	if v := showLockTimeout(t, conn); v != "0" {
		t.Fatalf("lock_timeout afterwards = %q, want 0", v)
	}
}

// TestEnforceRollbackThenDDL: "ROLLBACK; ALTER TABLE …" in one string
// inside a transaction block runs the ALTER outside the block, and so does
// "ROLLBACK; …" or "COMMIT; …" in a failed block. lockguard's SET made in
// the block was rolled back with it (in a failed block it was not even
// tried), so the ALTER waited behind the reader with no lock timeout. With
// AND CHAIN the ALTER runs in the block the chain opens, which nothing sent
// before the string reached either.
func TestEnforceRollbackThenDDL(t *testing.T) {
	lg, ctx, tbl := guardedTable(t, "rollbackddl")
	conn := connect(t, lg.superDSN())
	simple := pgx.QueryExecModeSimpleProtocol
	for _, c := range []struct{ name, begin, sql string }{
		{"in a transaction block", "BEGIN", "ROLLBACK; ALTER TABLE %s ADD COLUMN x int"},
		{"in a failed transaction block", "BEGIN; SELECT 1/0", "ROLLBACK; ALTER TABLE %s ADD COLUMN x int"},
		{"COMMIT in a failed transaction block", "BEGIN; SELECT 1/0", "COMMIT; ALTER TABLE %s ADD COLUMN x int"},
		// The DDL runs in the block AND CHAIN opens; lockguard's SET,
		// session-level and made in the block COMMIT ends, reaches it.
		{"COMMIT AND CHAIN", "BEGIN", "COMMIT AND CHAIN; ALTER TABLE %s ADD COLUMN x int"},
		{"ROLLBACK AND CHAIN", "BEGIN", "ROLLBACK AND CHAIN; ALTER TABLE %s ADD COLUMN x int"},
		{"ROLLBACK AND CHAIN in a failed transaction block", "BEGIN; SELECT 1/0", "ROLLBACK AND CHAIN; ALTER TABLE %s ADD COLUMN x int"},
		{"COMMIT AND CHAIN in a failed transaction block", "BEGIN; SELECT 1/0", "COMMIT AND CHAIN; ALTER TABLE %s ADD COLUMN x int"},
	} {
		conn.Exec(ctx, c.begin, simple) // the division fails on purpose
		_, release := holdLock(t, tbl)
		released := make(chan struct{})
		go func() { time.Sleep(4 * time.Second); release(); close(released) }()
		start := time.Now()
		_, err := conn.Exec(ctx, fmt.Sprintf(c.sql, tbl), simple)
		took := time.Since(start)
		<-released
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "55P03" || took > 3*time.Second {
			t.Fatalf("%s: %q behind a reader: %v after %v, want 55P03 from the injected 300ms", c.name, c.sql, err, took)
		}
		conn.Exec(ctx, "ROLLBACK", simple) // what AND CHAIN opened
		if v := showLockTimeout(t, conn); v != "0" {
			t.Fatalf("%s: lock_timeout afterwards = %q, want 0", c.name, v)
		}
	}
	// Without a reader: the client's AND CHAIN must still find a block
	// to end (outside one it fails, 25P01), and the block the DDL runs in
	// must have the isolation level it has straight to PostgreSQL: the
	// client's from a healthy block, the default from a failed one.
	direct := connect(t, directDSN())
	for i, c := range []struct{ begin, chain string }{
		{"BEGIN ISOLATION LEVEL REPEATABLE READ", "ROLLBACK AND CHAIN"},
		{"BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1/0", "ROLLBACK AND CHAIN"},
		{"BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1/0", "COMMIT AND CHAIN"},
	} {
		var isolation [2]string
		for j, cn := range []*pgx.Conn{conn, direct} {
			cn.Exec(ctx, c.begin, simple) // the division fails on purpose
			rs, err := cn.PgConn().Exec(ctx, fmt.Sprintf("%s; ALTER TABLE %s ADD COLUMN z%d_%d int; SHOW transaction_isolation", c.chain, tbl, i, j)).ReadAll()
			if err != nil {
				t.Fatalf("%s; %s then DDL: %v", c.begin, c.chain, err)
			}
			if rows := rs[len(rs)-1].Rows; len(rows) == 1 {
				isolation[j] = string(rows[0][0])
			}
			if st := cn.PgConn().TxStatus(); st != 'T' {
				t.Fatalf("%s; %s then DDL: transaction status %q, want T", c.begin, c.chain, st)
			}
			if _, err := cn.Exec(ctx, "ROLLBACK", simple); err != nil {
				t.Fatal(err)
			}
		}
		if isolation[0] != isolation[1] || isolation[0] == "" {
			t.Fatalf("%s; %s then DDL: transaction_isolation %q through lockguard, %q straight to PostgreSQL", c.begin, c.chain, isolation[0], isolation[1])
		}
		if v := showLockTimeout(t, conn); v != "0" {
			t.Fatalf("%s; %s then DDL: lock_timeout afterwards = %q, want 0", c.begin, c.chain, v)
		}
	}
	// Without a reader the string succeeds and leaves no block open.
	conn.Exec(ctx, "BEGIN; SELECT 1/0", simple)
	if _, err := conn.Exec(ctx, fmt.Sprintf("ROLLBACK; ALTER TABLE %s ADD COLUMN y int", tbl), simple); err != nil {
		t.Fatal(err)
	}
	if st := conn.PgConn().TxStatus(); st != 'I' {
		t.Fatalf("transaction status afterwards %q, want I", st)
	}
}

// TestEnforceFailedBlockEnds: PostgreSQL rolls a failed transaction block
// back even when the client sends COMMIT. lockguard applied such a COMMIT
// as a commit, took the block's SET for the client's session value, and
// restored it after the next DDL: the client, whose lock_timeout was 0,
// found it 5s. AND CHAIN in a string opens the next block at once, where a
// SET LOCAL later in the string counts.
func TestEnforceFailedBlockEnds(t *testing.T) {
	lg, ctx, tbl := guardedTable(t, "failedend")
	conn := connect(t, lg.superDSN())
	simple := pgx.QueryExecModeSimpleProtocol
	for i, c := range []struct {
		name  string
		steps []string
		want  string // lock_timeout after a DDL that follows the steps
	}{
		{"COMMIT of a failed block", []string{"BEGIN", "SET lock_timeout = '5s'", "SELECT 1/0", "COMMIT"}, "0"},
		// lockguard lets the read pass undecided and decides the COMMIT
		// before the read's error is back.
		{"pipelined", []string{"BEGIN", "SET lock_timeout = '5s'", "|SELECT 1/0", "|COMMIT"}, "0"},
		{"COMMIT AND CHAIN of a failed block", []string{"BEGIN", "SET lock_timeout = '5s'", "SELECT 1/0", "COMMIT AND CHAIN", "COMMIT"}, "0"},
		{"failed block in one string", []string{"BEGIN; SET lock_timeout = '5s'; SELECT 1/0", "COMMIT"}, "0"},
		{"recovered by ROLLBACK TO", []string{"BEGIN", "SAVEPOINT a", "SET lock_timeout = '5s'", "SELECT 1/0", "ROLLBACK TO a",
			"SET lock_timeout = '4s'", "COMMIT"}, "4s"},
		{"SET LOCAL after AND CHAIN in the string", []string{"BEGIN", "COMMIT AND CHAIN; SET LOCAL lock_timeout = '100ms'"}, "100ms"},
	} {
		var piped []string // steps marked "|": one pipeline, a Sync after each
		for _, q := range c.steps {
			if p, ok := strings.CutPrefix(q, "|"); ok {
				piped = append(piped, p)
				continue
			}
			conn.Exec(ctx, q, simple) // the divisions fail on purpose
		}
		if piped != nil {
			p := conn.PgConn().StartPipeline(ctx)
			for _, q := range piped {
				p.SendQueryParams(q, nil, nil, nil, nil)
				if err := p.Sync(); err != nil {
					t.Fatal(err)
				}
			}
			for syncs := 0; syncs < len(piped); {
				r, err := p.GetResults()
				var pe *pgconn.PgError
				if err != nil && !errors.As(err, &pe) { // the division fails on purpose
					t.Fatalf("%s: %v", c.name, err)
				}
				switch r := r.(type) {
				case *pgconn.ResultReader:
					r.Close() // the division fails on purpose
				case *pgconn.PipelineSync:
					syncs++
				}
			}
			if err := p.Close(); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
		}
		if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN c%d int", tbl, i), simple); err != nil {
			t.Fatalf("%s: DDL: %v", c.name, err)
		}
		if v := showLockTimeout(t, conn); v != c.want {
			t.Fatalf("%s: lock_timeout after a DDL = %q, want %q", c.name, v, c.want)
		}
		conn.Exec(ctx, "ROLLBACK", simple)
		conn.Exec(ctx, "RESET lock_timeout", simple)
	}
}

// TestEnforceSetLocalInTheBlockAStringLeavesOpen: a string that leaves a
// transaction block open ("BEGIN; ALTER …; SET LOCAL lock_timeout = …", or
// one that starts with COMMIT AND CHAIN) gets lockguard's session-level
// SET before it, and its restore runs in that block after the client's SET
// LOCAL. The restore once set the client's block value at session level: it
// outlived the block, and the client's own session value was gone until
// lockguard restored it again ahead of the next string.
func TestEnforceSetLocalInTheBlockAStringLeavesOpen(t *testing.T) {
	lg, ctx, tbl := guardedTable(t, "setlocalopen")
	conn := connect(t, lg.superDSN())
	simple := pgx.QueryExecModeSimpleProtocol
	for i, c := range []struct {
		name, before, sql, end string
		inBlock                string // lock_timeout in the block after the string
	}{
		{"BEGIN in the string", "", "BEGIN; ALTER TABLE %s ADD COLUMN c%d int; SET LOCAL lock_timeout = '100ms'", "COMMIT", "100ms"},
		{"COMMIT AND CHAIN", "BEGIN", "COMMIT AND CHAIN; ALTER TABLE %s ADD COLUMN c%d int; SET LOCAL lock_timeout = '100ms'", "COMMIT", "100ms"},
		{"ROLLBACK AND CHAIN", "BEGIN", "ROLLBACK AND CHAIN; ALTER TABLE %s ADD COLUMN c%d int; SET LOCAL lock_timeout = '100ms'", "COMMIT", "100ms"},
		{"SET LOCAL TO DEFAULT", "", "BEGIN; ALTER TABLE %s ADD COLUMN c%d int; SET LOCAL lock_timeout TO DEFAULT", "COMMIT", "0"},
		{"rolled back", "BEGIN", "COMMIT AND CHAIN; ALTER TABLE %s ADD COLUMN c%d int; SET LOCAL lock_timeout = '100ms'", "ROLLBACK", "100ms"},
	} {
		// The client's session value, longer than lockguard's 300ms.
		if _, err := conn.Exec(ctx, "SET lock_timeout = '1s'", simple); err != nil {
			t.Fatal(err)
		}
		if c.before != "" {
			if _, err := conn.Exec(ctx, c.before, simple); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := conn.Exec(ctx, fmt.Sprintf(c.sql, tbl, i), simple); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if st := conn.PgConn().TxStatus(); st != 'T' {
			t.Fatalf("%s: transaction status after the string %q, want T", c.name, st)
		}
		if v := showLockTimeout(t, conn); v != c.inBlock {
			t.Fatalf("%s: lock_timeout in the block = %q, want %q", c.name, v, c.inBlock)
		}
		// After a COMMIT the client's value must be in force at once,
		// for the rest of the string that ends the block too. A ROLLBACK
		// undoes the restore as well; lockguard restores again ahead of
		// the next string.
		end := c.end + "; SHOW lock_timeout"
		if c.end == "ROLLBACK" {
			end = c.end
		}
		rs, err := conn.PgConn().Exec(ctx, end).ReadAll()
		if err != nil {
			t.Fatalf("%s: %s: %v", c.name, end, err)
		}
		v := ""
		if rows := rs[len(rs)-1].Rows; len(rows) == 1 {
			v = string(rows[0][0])
		} else {
			v = showLockTimeout(t, conn)
		}
		if v != "1s" {
			t.Fatalf("%s: lock_timeout after %s = %q, want the session's 1s", c.name, c.end, v)
		}
	}
}

// TestEnforceSetLocalAfterSetInABlock: a SET LOCAL after a session-level
// SET in the same block masks the SET until the block ends, and COMMIT
// keeps the SET's value, as PostgreSQL does. lockguard once kept one value
// per block: it took the SET LOCAL's for the block's last word, believed
// the session's value unchanged, and its restore after the next DDL put
// that older value back in place of the client's committed one.
func TestEnforceSetLocalAfterSetInABlock(t *testing.T) {
	lg, ctx, tbl := guardedTable(t, "setlocalafter")
	alter := func(i int) string { return fmt.Sprintf("ALTER TABLE %s ADD COLUMN c%d int", tbl, i) }
	i := 0
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		for _, c := range []struct {
			name  string
			block []string // between BEGIN and COMMIT
		}{
			{"same level", []string{"SET lock_timeout = '7s'", "SET LOCAL lock_timeout = '1s'"}},
			{"released savepoint", []string{"SET lock_timeout = '7s'", "SAVEPOINT a", "SET LOCAL lock_timeout = '1s'", "RELEASE a"}},
		} {
			i++
			conn := connect(t, lg.superDSN())
			qs := append(append([]string{"SET lock_timeout = '2s'", "BEGIN"}, c.block...), "COMMIT", alter(i))
			for _, q := range qs {
				if _, err := conn.Exec(ctx, q, mode); err != nil {
					t.Fatalf("mode %v, %s: %s: %v", mode, c.name, q, err)
				}
			}
			if v := showLockTimeout(t, conn); v != "7s" {
				t.Fatalf("mode %v, %s: lock_timeout after the DDL = %q, want the committed 7s", mode, c.name, v)
			}
		}
	}
	// The same in a block the DDL's string leaves open: the restore runs
	// in it at session level.
	i++
	conn := connect(t, lg.superDSN())
	simple := pgx.QueryExecModeSimpleProtocol
	for _, q := range []string{"SET lock_timeout = '2s'",
		"BEGIN; " + alter(i) + "; SET lock_timeout = '7s'; SET LOCAL lock_timeout = '1s'"} {
		if _, err := conn.Exec(ctx, q, simple); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if v := showLockTimeout(t, conn); v != "1s" {
		t.Fatalf("lock_timeout in the block left open = %q, want the SET LOCAL's 1s", v)
	}
	// In the string that commits: lockguard restores the session's value
	// again ahead of the next string, which would hide a wrong restore.
	rs, err := conn.PgConn().Exec(ctx, "COMMIT; SHOW lock_timeout").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if rows := rs[len(rs)-1].Rows; len(rows) != 1 || string(rows[0][0]) != "7s" {
		t.Fatalf("lock_timeout after COMMIT of the block left open = %q, want the committed 7s", rows)
	}
}

// TestEnforceBeginInsideABlock: a BEGIN inside a transaction block only
// draws PostgreSQL's WARNING. lockguard once took it for a new block,
// forgot the client's SET LOCAL before it, and its restore after the next
// DDL in the block put the session's value in place of the client's.
func TestEnforceBeginInsideABlock(t *testing.T) {
	lg, ctx, tbl := guardedTable(t, "begininblock")
	for i, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		conn := connect(t, lg.superDSN())
		for _, q := range []string{"BEGIN", "SET LOCAL lock_timeout = '1s'", "BEGIN",
			fmt.Sprintf("ALTER TABLE %s ADD COLUMN c%d int", tbl, i)} {
			if _, err := conn.Exec(ctx, q, mode); err != nil {
				t.Fatalf("mode %v: %s: %v", mode, q, err)
			}
		}
		if v := showLockTimeout(t, conn); v != "1s" {
			t.Fatalf("mode %v: lock_timeout after the DDL = %q, want the block's 1s", mode, v)
		}
		if _, err := conn.Exec(ctx, "ROLLBACK", mode); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEnforceFollowsSetsInTheSameString: a migration file sent as one
// query string ("SET lock_timeout = '100ms'; ALTER TABLE …", as
// golang-migrate sends it) sets the timeout its DDL runs with. lockguard's
// SET goes before the string and its restore after it, so it once retried
// the client's own 55P03 as if it were its own, and its restore reset the
// client's SET for the rest of the session.
func TestEnforceFollowsSetsInTheSameString(t *testing.T) {
	lg, ctx, tbl := guardedTable(t, "instring")
	simple := pgx.QueryExecModeSimpleProtocol
	conn, notices := connectNotices(t, lg.superDSN())
	exec := func(sql string) error {
		notices.take()
		_, err := conn.Exec(ctx, sql, simple)
		return err
	}
	warned := func() bool {
		for _, n := range notices.take() {
			if n.Code == guard.CodeWarning && strings.HasPrefix(n.Message, "lockguard: lock_timeout") && n.Hint != "" {
				return true
			}
		}
		return false
	}

	// A lower timeout set before the DDL is the client's: its 55P03 is
	// PostgreSQL's, at once, and the failed string's SET is rolled back.
	_, release := holdLock(t, tbl)
	start := time.Now()
	err := exec("SET lock_timeout = '100ms'; ALTER TABLE " + tbl + " ADD COLUMN a int")
	took := time.Since(start)
	release()
	wantOwnLockTimeout(t, "behind a reader", err)
	if took > time.Second {
		t.Fatalf("the client's own 100ms lock timeout was retried: %v", took)
	}
	if v := showLockTimeout(t, conn); v != "0" {
		t.Fatalf("lock_timeout after the failed string = %q, want 0", v)
	}

	for _, c := range []struct {
		sql, want string
		warn      bool
	}{
		{"SET lock_timeout = '100ms'; ALTER TABLE %s ADD COLUMN b int", "100ms", false},
		// Longer than lockguard's 300ms: it runs, with a warning.
		{"SET lock_timeout = '1s'; ALTER TABLE %s ADD COLUMN c int", "1s", true},
		{"SELECT set_config('lock_timeout', '2s', false); ALTER TABLE %s ADD COLUMN d int", "2s", true},
		// After the DDL: lockguard's injected timeout governs it, and
		// its restore must leave the client's new value.
		{"ALTER TABLE %s ADD COLUMN e int; SET lock_timeout = '5s'", "5s", false},
	} {
		sql := fmt.Sprintf(c.sql, tbl)
		if err := exec(sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if v := showLockTimeout(t, conn); v != c.want {
			t.Fatalf("%s: lock_timeout afterwards = %q, want %q", sql, v, c.want)
		}
		if w := warned(); w != c.warn {
			t.Fatalf("%s: warned %v, want %v", sql, w, c.warn)
		}
	}

	// The same string failing behind a reader: PostgreSQL rolls its SET
	// back, so the value before it (5s) must be what the session has.
	_, release = holdLock(t, tbl)
	err = exec("ALTER TABLE " + tbl + " ADD COLUMN f int; SET lock_timeout = '6s'")
	release()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "55P03" {
		t.Fatalf("behind a reader: %v, want 55P03", err)
	}
	if v := showLockTimeout(t, conn); v != "5s" {
		t.Fatalf("lock_timeout after the failed string = %q, want the 5s from before it", v)
	}

	// A SET between two DDL: lockguard's timeout governs the first, the
	// client's longer one the second, which waits it out behind a reader.
	// lockguard warns, does not retry, and passes PostgreSQL's own 55P03
	// on: it once reported it as its own "gave up".
	free := createTable(t, ctx, "instring_free", "id int")
	_, release = holdLock(t, tbl)
	start = time.Now()
	err = exec(fmt.Sprintf("ALTER TABLE %s ADD COLUMN h int; SET lock_timeout = '1s'; ALTER TABLE %s ADD COLUMN h int", free, tbl))
	took = time.Since(start)
	release()
	wantOwnLockTimeout(t, "a SET between two DDL, behind a reader", err)
	if took < time.Second || took > 2500*time.Millisecond {
		t.Fatalf("a SET between two DDL: failed after %v, want once the client's 1s", took)
	}
	if !warned() {
		t.Fatal("a SET of 1s between two DDL: no warning that it overrides lockguard's 300ms")
	}

	// The same in one pipeline of the extended protocol (one Sync).
	_, release = holdLock(t, tbl)
	batch := &pgx.Batch{}
	batch.Queue("SET lock_timeout = '100ms'")
	batch.Queue("ALTER TABLE " + tbl + " ADD COLUMN g int")
	start = time.Now()
	err = conn.SendBatch(ctx, batch).Close()
	took = time.Since(start)
	release()
	wantOwnLockTimeout(t, "pipeline behind a reader", err)
	if took > time.Second {
		t.Fatalf("pipeline: the client's own 100ms lock timeout was retried: %v", took)
	}
}

// TestEnforceKeepsServerLockTimeout: a lock_timeout a database
// administrator configured for the role (ALTER ROLE … SET, likewise ALTER
// DATABASE or postgresql.conf) is not known to lockguard. When it is
// shorter than lockguard's it must stay in force: lockguard once set its
// own over it, so the DDL waited longer than the administrator allowed.
// When it is longer, lockguard's applies.
func TestEnforceKeepsServerLockTimeout(t *testing.T) {
	ctx := ctxT(t, 60*time.Second)
	tbl := createTable(t, ctx, "srvlt", "id int")
	direct := connect(t, directDSN())
	for _, c := range []struct {
		role, timeout string
		lockguards    time.Duration
	}{
		{"short", "100ms", 20 * time.Second}, // far longer than the role's
		{"long", "1h", 300 * time.Millisecond},
	} {
		lg := startGuarded(t, func(g *enforce.Guard) {
			g.LockTimeout = c.lockguards
			g.Backoff.Attempts = 1 // no retry to wait for
		})
		role := uniqueName(t, "lt_"+c.role)
		if _, err := direct.Exec(ctx, fmt.Sprintf("CREATE ROLE %[1]s LOGIN; ALTER ROLE %[1]s SET lock_timeout = '%[2]s'; ALTER TABLE %[3]s OWNER TO %[1]s",
			role, c.timeout, tbl)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			direct.Exec(context.Background(), "ALTER TABLE "+tbl+" OWNER TO "+pgserver.Superuser)
			direct.Exec(context.Background(), "DROP ROLE "+role)
		})
		conn := connect(t, lg.dsn(role, ""))
		_, release := holdLock(t, tbl)
		done := startExec(ctx, conn, "ALTER TABLE "+tbl+" ADD COLUMN c_"+c.role+" int")
		var err error
		select {
		case err = <-done:
			release()
		case <-time.After(5 * time.Second):
			release()
			err = <-done
			t.Fatalf("role's lock_timeout %s: the ALTER waited more than 5 s behind the reader (then: %v)", c.timeout, err)
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "55P03" {
			t.Fatalf("role's lock_timeout %s: %v, want 55P03", c.timeout, err)
		}
		if v := showLockTimeout(t, conn); v != c.timeout {
			t.Fatalf("role's lock_timeout %s: afterwards %q", c.timeout, v)
		}
	}
}

// TestEnforceStatementTimeoutNeverLonger: with ddl-statement-timeout on,
// lockguard once set its statement_timeout over a client's shorter one.
func TestEnforceStatementTimeoutNeverLonger(t *testing.T) {
	ctx := ctxT(t, 60*time.Second)
	lg := startGuarded(t, func(g *enforce.Guard) {
		g.StatementTimeout = 30 * time.Second
		g.Backoff.Attempts = 1
	})
	tbl := createTable(t, ctx, "stmtlt", "id int")
	conn := connect(t, lg.superDSN())
	if _, err := conn.Exec(ctx, "ALTER TABLE "+tbl+" ADD COLUMN a int"); err != nil {
		t.Fatal(err)
	}
	var v string
	if err := conn.QueryRow(ctx, "SHOW statement_timeout").Scan(&v); err != nil || v != "0" {
		t.Fatalf("statement_timeout after the DDL = %q (%v), want 0", v, err)
	}
	// The client's 100ms is shorter than lockguard's 300ms lock timeout
	// and 30s statement timeout: it must be what cancels the DDL.
	if _, err := conn.Exec(ctx, "SET statement_timeout = '100ms'"); err != nil {
		t.Fatal(err)
	}
	_, release := holdLock(t, tbl)
	_, err := conn.Exec(ctx, "ALTER TABLE "+tbl+" ADD COLUMN b int")
	release()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" {
		t.Fatalf("behind a reader with the client's statement_timeout of 100ms: %v, want 57014 from it", err)
	}
	if err := conn.QueryRow(ctx, "SHOW statement_timeout").Scan(&v); err != nil || v != "100ms" {
		t.Fatalf("statement_timeout afterwards = %q (%v), want 100ms", v, err)
	}
}

// TestEnforceKeepsStartupLockTimeout: a lock_timeout the client sets in its
// connection string (a startup parameter, or -c in options) is its own:
// lockguard once did not know it, injected its longer one over it during a
// DDL and answered with its own 55P03 after retries.
func TestEnforceKeepsStartupLockTimeout(t *testing.T) {
	lg, ctx, tbl := guardedTable(t, "startlt")
	for i, param := range []string{"lock_timeout=100ms", "options=-c%20lock_timeout%3D100ms"} {
		conn := connect(t, lg.superDSN()+"&"+param)
		if v := showLockTimeout(t, conn); v != "100ms" {
			t.Fatalf("%s: lock_timeout at start = %q", param, v)
		}
		_, release := holdLock(t, tbl)
		_, err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN c%d int", tbl, i))
		release()
		wantOwnLockTimeout(t, param, err)
		if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN d%d int", tbl, i)); err != nil {
			t.Fatalf("%s: %v", param, err)
		}
		if v := showLockTimeout(t, conn); v != "100ms" {
			t.Fatalf("%s: lock_timeout after the DDL = %q, want 100ms", param, v)
		}
	}
}

// TestEnforceCommentsDoNotHideDDL: what PostgreSQL reads as SQL, lockguard
// must analyse as SQL. Two scanners once took SQL for comment, so the DDL
// was relayed unprotected and waited behind the reader without a lock
// timeout:
//   - PostgreSQL ends a "--" comment at a carriage return as well as at a
//     line feed; lockguard's scanner ended it only at a line feed;
//   - a "/*" inside a line comment or a literal opens no comment;
//     lockguard's cache key took the first "/*" of a text that ends in
//     "*/" for the start of a trailing sqlcommenter comment, and analysed
//     "SELECT 1;" alone.
func TestEnforceCommentsDoNotHideDDL(t *testing.T) {
	lg := startGuarded(t, nil)
	ctx := ctxT(t, 60*time.Second)
	tbl := createTable(t, ctx, "comments", "id int")
	conn := connect(t, lg.superDSN())
	// Unprotected, the DDL would wait this long and fail with 57014.
	if _, err := conn.Exec(ctx, "SET statement_timeout = '5s'"); err != nil {
		t.Fatal(err)
	}
	_, release := holdLock(t, tbl)
	defer release()
	for _, sql := range []string{
		"-- migration 42\rALTER TABLE--\r" + tbl + " ADD COLUMN c int",
		"SELECT 1; -- /* disabled:\nALTER TABLE " + tbl + " ADD COLUMN c int; -- */",
		"SELECT '/*'; ALTER TABLE " + tbl + " ADD COLUMN c int; -- */",
	} {
		start := time.Now()
		_, err := conn.PgConn().Exec(ctx, sql).ReadAll()
		if _, ok := gaveUp(err); !ok {
			t.Fatalf("%q after %v: got %v, want lockguard's 55P03", sql, time.Since(start).Round(time.Millisecond), err)
		}
	}
}

// TestEnforceMigrationPatterns: what migration tools and DBAs send still
// works through the guard.
func TestEnforceMigrationPatterns(t *testing.T) {
	lg := startGuarded(t, nil)
	ctx := ctxT(t, 60*time.Second)
	conn := connect(t, lg.superDSN())
	tbl := uniqueName(t, "mig")
	dropAtEnd(t, tbl, tbl+"_versions")
	steps := []string{
		"CREATE TABLE " + tbl + " (id bigint PRIMARY KEY, email text); CREATE TABLE " + tbl + "_versions (v text)",
		"BEGIN; ALTER TABLE " + tbl + " ADD COLUMN created_at timestamptz; INSERT INTO " + tbl + "_versions VALUES ('1'); COMMIT",
		"CREATE INDEX CONCURRENTLY " + tbl + "_email ON " + tbl + " (email)",
		"VACUUM (ANALYZE) " + tbl,
		"REINDEX INDEX CONCURRENTLY " + tbl + "_email",
		"DROP INDEX CONCURRENTLY " + tbl + "_email",
		"ALTER TABLE " + tbl + " ADD CONSTRAINT " + tbl + "_email_chk CHECK (email <> '') NOT VALID",
		"ALTER TABLE " + tbl + " VALIDATE CONSTRAINT " + tbl + "_email_chk",
	}
	for _, sql := range steps {
		if _, err := conn.PgConn().Exec(ctx, sql).ReadAll(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// Extended protocol, in a transaction, as ORMs do.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "ALTER TABLE "+tbl+" ADD COLUMN note text"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+tbl+"_versions VALUES ($1)", "2"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+tbl+"_versions").Scan(&n); err != nil || n != 2 {
		t.Fatalf("versions = %d, %v", n, err)
	}
	if v := showLockTimeout(t, conn); v != "0" {
		t.Fatalf("lock_timeout after migrations = %q", v)
	}
	var valid bool
	conn.QueryRow(ctx, "SELECT convalidated FROM pg_constraint WHERE conname = $1", tbl+"_email_chk").Scan(&valid)
	if !valid {
		t.Fatal("constraint not validated")
	}
}

// TestEnforceCatalogFollowsDDL: a foreign key added through lockguard is
// known at once: dropping it is then analysed as locking both tables, so
// its protection names both (catalog facts are forgotten when DDL passes).
func TestEnforceCatalogFollowsDDL(t *testing.T) {
	lg := startGuarded(t, nil)
	ctx := ctxT(t, 30*time.Second)
	a, b := uniqueName(t, "cat_a"), uniqueName(t, "cat_b")
	conn := connect(t, lg.superDSN())
	dropAtEnd(t, b, a)
	for _, sql := range []string{
		"CREATE TABLE " + a + " (id int PRIMARY KEY)",
		"CREATE TABLE " + b + " (id int PRIMARY KEY, a_id int)",
		// Analysed (and its catalog facts remembered) before the FK exists.
		"ALTER TABLE " + b + " DROP CONSTRAINT IF EXISTS " + b + "_fk",
		"ALTER TABLE " + b + " ADD CONSTRAINT " + b + "_fk FOREIGN KEY (a_id) REFERENCES " + a + "(id)",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	_, release := holdLock(t, a)
	defer release()
	_, err := conn.Exec(ctx, "ALTER TABLE "+b+" DROP CONSTRAINT "+b+"_fk")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "55P03" || !strings.Contains(pe.Message, a) {
		t.Fatalf("got %v, want lockguard's 55P03 naming %s (the FK's other table)", err, a)
	}
}

// TestEnforceTerminateAfterUnsyncedBatch: a client that sends Parse, Bind
// and Execute with no Sync and then Terminate. lockguard holds such a batch
// for the guard until its Sync; it sent neither the batch nor the
// Terminate, yet waited for PostgreSQL to close after the Terminate, so
// the backend stayed 5 s. The batch goes undecided (PostgreSQL would roll
// it back without a Sync) and the Terminate alone: the backend ends at
// once, and the INSERT is not applied.
func TestEnforceTerminateAfterUnsyncedBatch(t *testing.T) {
	lg, ctx, tbl := guardedTable(t, "unsyncedterm")
	conn := connect(t, lg.superDSN())
	pid := conn.PgConn().PID()
	var raw []byte
	for _, m := range []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "INSERT INTO " + tbl + " VALUES (1)"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Terminate{}} {
		var err error
		if raw, err = m.Encode(raw); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if _, err := conn.PgConn().Conn().Write(raw); err != nil {
		t.Fatal(err)
	}
	direct := connect(t, directDSN())
	gone := waitUntil(2*time.Second, func() bool {
		var n int
		if err := direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	if !gone {
		t.Fatalf("backend %d still there %v after the client's Terminate", pid, time.Since(start))
	}
	var rows int
	if err := direct.QueryRow(ctx, "SELECT count(*) FROM "+tbl).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("%s has %d rows (%v), want 0: nothing was synced", tbl, rows, err)
	}
}

// TestEnforceRestoreCancelledIsRedone: a cancel meant for a DDL that comes
// just as the DDL ends cancels the restore lockguard sends after it, and
// leaves lockguard's short lock_timeout in force for the session — a
// pooled connection whose later statements would fail after 300 ms waits
// for row locks. The proxy reports the failed restore (Hooks.AfterFailed)
// and the guard sends it again ahead of the session's next statement. The
// restore is over in microseconds, too fast to cancel on purpose, so this
// test makes it sleep first: the guard's own SET runs in a DO block after
// half a second.
func TestEnforceRestoreCancelledIsRedone(t *testing.T) {
	lg := startGuardedWith(t, nil, func(c *proxy.Config) {
		decide := c.Hooks.Batch
		c.Hooks.Batch = func(ctx context.Context, s *proxy.Session, b *proxy.Batch) *proxy.Verdict {
			v := decide(ctx, s, b)
			if v != nil && len(b.Stmts) == 1 && strings.Contains(string(b.Stmts[0].SQL), "/*slow-restore*/") {
				for i, q := range v.After {
					v.After[i] = "DO $$ BEGIN PERFORM pg_sleep(0.5); " + q + "; END $$"
				}
			}
			return v
		}
	})
	ctx := ctxT(t, 60*time.Second)
	tbl := createTable(t, ctx, "redo", "id int")
	direct := connect(t, directDSN())
	conn := connect(t, lg.superDSN())
	if _, err := conn.Exec(ctx, "SET lock_timeout = '7s'"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "ALTER TABLE "+tbl+" ADD COLUMN c int /*slow-restore*/"); err != nil {
		t.Fatal(err)
	}
	// The DDL is done; its restore sleeps. A cancel now hits the restore.
	pid := conn.PgConn().PID()
	if _, err := direct.Exec(ctx, "SELECT pg_cancel_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool {
		var state string
		direct.QueryRow(ctx, "SELECT state FROM pg_stat_activity WHERE pid = $1", pid).Scan(&state)
		return state == "idle"
	})
	time.Sleep(100 * time.Millisecond) // for lockguard to read the restore's error
	if v := showLockTimeout(t, conn); v != "7s" {
		t.Fatalf("lock_timeout after a cancel hit lockguard's restore = %q, want the client's 7s", v)
	}
}

// TestEnforceConcurrentStatementTimeout: with concurrent-statement-timeout
// set, a CREATE INDEX CONCURRENTLY gets that statement_timeout (it never
// gets a lock timeout) and the session's is back afterwards. No test ran
// the setting before.
func TestEnforceConcurrentStatementTimeout(t *testing.T) {
	lg := startGuarded(t, func(g *enforce.Guard) { g.ConcurrentStatementTimeout = 500 * time.Millisecond })
	ctx := ctxT(t, 30*time.Second)
	tbl := createTable(t, ctx, "cic_timeout", "id int")
	conn := connect(t, lg.superDSN())
	if _, err := conn.Exec(ctx, "CREATE INDEX CONCURRENTLY "+tbl+"_a ON "+tbl+" (id)"); err != nil {
		t.Fatalf("CREATE INDEX CONCURRENTLY on an idle table: %v", err)
	}
	// A transaction that holds a snapshot and a lock on the table makes
	// the build wait for it, past the 500 ms.
	_, release := holdLock(t, tbl)
	start := time.Now()
	_, err := conn.Exec(ctx, "CREATE INDEX CONCURRENTLY "+tbl+"_b ON "+tbl+" (id)")
	release()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" || time.Since(start) > 5*time.Second {
		t.Fatalf("CREATE INDEX CONCURRENTLY behind a reader: %v after %v, want PostgreSQL's statement timeout (57014) after about 500 ms", err, time.Since(start))
	}
	var v string
	if err := conn.QueryRow(ctx, "SHOW statement_timeout").Scan(&v); err != nil || v != "0" {
		t.Errorf("statement_timeout after the build = %q (%v), want 0", v, err)
	}
}

// TestEnforceGiveUpAgesTheBlockersTransaction: the DETAIL's "transaction
// open" is the blocker's age at the error. It was its age when lockguard
// looked it up, half a lock timeout before, rounded to seconds: a helper
// saw "transaction open 1s" for a transaction 2.3 s old.
func TestEnforceGiveUpAgesTheBlockersTransaction(t *testing.T) {
	lg := startGuarded(t, func(g *enforce.Guard) {
		g.LockTimeout = time.Second
		g.Backoff = guard.Backoff{Attempts: 1}
	})
	ctx := ctxT(t, 30*time.Second)
	tbl := createTable(t, ctx, "xactage", "id int")
	conn := connect(t, lg.superDSN())
	began := time.Now()
	_, release := holdLock(t, tbl)
	defer release()
	_, err := conn.Exec(ctx, "ALTER TABLE "+tbl+" ADD COLUMN x int")
	atError := time.Since(began)
	pe, ok := gaveUp(err)
	if !ok {
		t.Fatalf("ALTER behind a reader: %v, want lockguard's give-up", err)
	}
	var age time.Duration
	if i := strings.Index(pe.Detail, "transaction open "); i < 0 {
		t.Fatalf("detail %q names no transaction age", pe.Detail)
	} else if age, err = time.ParseDuration(strings.SplitN(pe.Detail[i+len("transaction open "):], ")", 2)[0]); err != nil {
		t.Fatalf("detail %q: %v", pe.Detail, err)
	}
	if age < atError-250*time.Millisecond || age > atError+100*time.Millisecond {
		t.Errorf("transaction open %v in the detail, %v at the error", age, atError)
	}
}
