package test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/guard/pgmonitor"
	"github.com/lockguard/lockguard/internal/enforce"
)

// shedSetup is a guarded lockguard with the lock monitor and admission on,
// and the incident's schema: users, orders (FK to users) and an unrelated
// products table.
type shedSetup struct {
	lg                      *lockguard
	board                   *guard.Board
	users, orders, products string
	fk                      string
}

func startShedding(t *testing.T, lockTimeout time.Duration, extra ...func(*enforce.Guard)) *shedSetup {
	t.Helper()
	ctx := ctxT(t, 20*time.Second)
	s := &shedSetup{board: &guard.Board{}}
	s.users, s.orders, s.products = uniqueName(t, "users"), uniqueName(t, "orders"), uniqueName(t, "products")
	s.fk = s.orders + "_user_fk"
	direct := connect(t, directDSN())
	if _, err := direct.Exec(ctx, fmt.Sprintf(`
		CREATE TABLE %[1]s (id int PRIMARY KEY, name text);
		INSERT INTO %[1]s SELECT g, 'u' || g FROM generate_series(1, 100) g;
		CREATE TABLE %[2]s (id int PRIMARY KEY, user_id int CONSTRAINT %[4]s REFERENCES %[1]s(id));
		INSERT INTO %[2]s SELECT g, 1 + g %% 100 FROM generate_series(1, 100) g;
		CREATE TABLE %[3]s (id int PRIMARY KEY);
		INSERT INTO %[3]s SELECT generate_series(1, 100);`, s.users, s.orders, s.products, s.fk)); err != nil {
		t.Fatal(err)
	}
	dropAtEnd(t, s.orders, s.users, s.products)
	pool := runMonitor(t, s.board, 200*time.Millisecond, 50*time.Millisecond)
	s.lg = startGuarded(t, func(g *enforce.Guard) {
		g.LockTimeout = lockTimeout
		g.Backoff = guard.Backoff{Attempts: 20, Base: 50 * time.Millisecond, Cap: 200 * time.Millisecond, Deadline: 30 * time.Second}
		g.Admission = &enforce.Admission{Board: s.board, HoldBudget: 150 * time.Millisecond,
			HeldBy: func(ctx context.Context, pid int, db string, rel guard.RelName) (bool, error) {
				return pgmonitor.HeldBy(ctx, pool, pid, db, rel)
			}}
		for _, f := range extra {
			f(g)
		}
	})
	return s
}

// runMonitor runs a lock monitor that publishes on board, polling every idle
// while nothing is held or awaited and every busy while something is, until
// the test ends; it returns its pool of direct connections.
func runMonitor(t *testing.T, board *guard.Board, idle, busy time.Duration) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), directDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		(&pgmonitor.Monitor{Pool: pool, Board: board, Idle: idle, Busy: busy, Logger: testLogger()}).Run(ctx)
		close(done)
	}()
	t.Cleanup(func() { stop(); <-done })
	return pool
}

// probe runs sql through lockguard on a fresh connection and reports how it
// ended and how long it took. It never waits more than 10 s.
func (s *shedSetup) probe(t *testing.T, sql string) (code string, took time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn := connect(t, s.lg.superDSN())
	start := time.Now()
	_, err := conn.Exec(ctx, sql)
	took = time.Since(start)
	var pe *pgconn.PgError
	switch {
	case err == nil:
		return "ok", took
	case errors.As(err, &pe):
		if pe.Code == "55P03" && !strings.HasPrefix(pe.Message, "lockguard: shed") {
			t.Errorf("55P03 that is not lockguard's shed: %v", pe)
		}
		if pe.Code == "55P03" && (pe.Detail == "" || pe.Hint == "") {
			t.Errorf("shed without DETAIL or HINT: %+v", pe)
		}
		return pe.Code, took
	default:
		return err.Error(), took
	}
}

// expectNoQueue checks that a statement on the hazard table is answered
// within the hold budget (shed or served) and that the unrelated table is
// served at once.
func (s *shedSetup) expectNoQueue(t *testing.T, blockedSQL string) {
	t.Helper()
	for i := 0; i < 3; i++ {
		code, took := s.probe(t, blockedSQL)
		if code != "55P03" || took > 2*time.Second {
			t.Fatalf("%s during the hazard: %s after %v, want shed within the budget", blockedSQL, code, took)
		}
	}
	code, took := s.probe(t, "SELECT count(*) FROM "+s.products)
	if code != "ok" || took > time.Second {
		t.Fatalf("unrelated table during the hazard: %s after %v", code, took)
	}
}

func waitHazard(t *testing.T, b *guard.Board, table string) {
	t.Helper()
	waitFor(t, 10*time.Second, func() bool {
		for _, h := range b.Snapshot().All() {
			if h.Rel.Name == table && !h.Granted {
				return true
			}
		}
		return false
	})
}

// waitHeld waits until the board shows a granted strong lock on table.
func waitHeld(t *testing.T, b *guard.Board, table string) {
	t.Helper()
	waitFor(t, 5*time.Second, func() bool {
		for _, h := range b.Snapshot().All() {
			if h.Rel.Name == table && h.Granted {
				return true
			}
		}
		return false
	})
}

// TestShedBehindPendingDropFK is the incident: a reader holds users, a DROP
// CONSTRAINT of the FK from orders waits for ACCESS EXCLUSIVE on both. New
// reads of users are shed instead of queueing, the unrelated table is
// served, and the DDL lands once the reader commits.
func TestShedBehindPendingDropFK(t *testing.T) {
	for _, via := range []string{"lockguard", "direct"} {
		t.Run("ddl "+via, func(t *testing.T) {
			s := startShedding(t, 3*time.Second)
			_, release := holdLock(t, s.users)
			ddlDSN := s.lg.superDSN()
			if via == "direct" {
				ddlDSN = directDSN() // a session that bypasses lockguard
			}
			ddl := connect(t, ddlDSN)
			ddlDone := make(chan error, 1)
			go func() {
				_, err := ddl.Exec(context.Background(), "ALTER TABLE "+s.orders+" DROP CONSTRAINT "+s.fk)
				ddlDone <- err
			}()
			waitHazard(t, s.board, s.users)
			s.expectNoQueue(t, "SELECT count(*) FROM "+s.users)
			release()
			select {
			case err := <-ddlDone:
				if err != nil {
					t.Fatalf("DDL after the reader committed: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("DDL did not land after the reader committed")
			}
			waitFor(t, 5*time.Second, func() bool { return s.board.Snapshot().Empty() })
			if code, _ := s.probe(t, "SELECT count(*) FROM "+s.users); code != "ok" {
				t.Fatalf("read of users after the DDL: %s", code)
			}
		})
	}
}

// TestShedNamesWhatTheDDLWaitsFor: a statement shed behind a pending DDL
// is told which session that DDL waits for. The DETAIL named only the
// DDL ("pid … waits for ACCESS EXCLUSIVE on it (ALTER …)"), and the log
// line the DDL's pid as blocking_pid: the session an on-call engineer has
// to look at, the long transaction, was in neither.
func TestShedNamesWhatTheDDLWaitsFor(t *testing.T) {
	s := startShedding(t, 3*time.Second)
	ctx := ctxT(t, 30*time.Second)
	holder, release := holdLock(t, s.users)
	defer release()
	ddl := startExec(ctx, connect(t, directDSN()), "ALTER TABLE "+s.users+" ADD COLUMN behind int")
	defer func() { release(); <-ddl }()
	waitHazard(t, s.board, s.users)
	_, err := connect(t, s.lg.superDSN()).Exec(ctx, "SELECT count(*) FROM "+s.users)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "55P03" {
		t.Fatalf("read behind the pending DDL: %v, want shed", err)
	}
	if want := fmt.Sprintf("behind pid %d", holder); !strings.Contains(pe.Detail, want) {
		t.Errorf("detail %q does not say %q", pe.Detail, want)
	}
}

// TestShedFollowsTenantSchema: a schema-per-tenant application picks its
// schema per request with set_config('search_path', $1, …) as a bind
// parameter, or with the role whose name the schema has ("$user" in the
// default search_path), as PostgREST does with set_config('role', $1,
// true). An unqualified name must then resolve in that schema, so that a
// read of the tenant's table is shed behind a DDL pending on it instead of
// queueing in PostgreSQL.
func TestShedFollowsTenantSchema(t *testing.T) {
	s := startShedding(t, 3*time.Second)
	ctx := ctxT(t, 60*time.Second)
	tenant, items := uniqueName(t, "tenant"), uniqueName(t, "items")
	direct := connect(t, directDSN())
	if _, err := direct.Exec(ctx, fmt.Sprintf(`CREATE ROLE %[1]s NOLOGIN; CREATE SCHEMA %[1]s AUTHORIZATION %[1]s;
		CREATE TABLE %[1]s.%[2]s (id int); ALTER TABLE %[1]s.%[2]s OWNER TO %[1]s`, tenant, items)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		direct.Exec(context.Background(), "DROP SCHEMA "+tenant+" CASCADE")
		direct.Exec(context.Background(), "DROP ROLE "+tenant)
	})
	_, release := holdLock(t, tenant+"."+items)
	ddl := connect(t, s.lg.superDSN())
	ddlDone := make(chan error, 1)
	go func() {
		_, err := ddl.Exec(context.Background(), "ALTER TABLE "+tenant+"."+items+" ADD COLUMN x int")
		ddlDone <- err
	}()
	defer func() { release(); <-ddlDone }()
	waitHazard(t, s.board, items)

	for _, c := range []struct {
		name, set string
		inTx      bool
		arg       string // $1, when not the tenant's name
	}{
		{"search_path", "SELECT set_config('search_path', $1, false)", false, ""},
		{"search_path, is_local", "SELECT set_config('search_path', $1, true)", true, ""},
		// PostgreSQL folds an unquoted name in the list to lower case.
		{"search_path in capitals", "SELECT set_config('search_path', $1, false)", false, " " + strings.ToUpper(tenant) + " , public"},
		{"SET ROLE", "SET ROLE " + tenant, false, ""},
		{"role, is_local", "SELECT set_config('role', $1, true)", true, ""},
		{"SET SESSION AUTHORIZATION", "SET SESSION AUTHORIZATION " + tenant, false, ""},
	} {
		conn := connect(t, s.lg.superDSN())
		q := conn.Exec
		var tx pgx.Tx
		if c.inTx {
			var err error
			if tx, err = conn.Begin(ctx); err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			q = tx.Exec
		}
		var args []any
		if c.arg != "" {
			args = append(args, c.arg)
		} else if strings.Contains(c.set, "$1") {
			args = append(args, tenant)
		}
		if _, err := q(ctx, c.set, args...); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		start := time.Now()
		_, err := q(qctx, "SELECT count(*) FROM "+items)
		cancel()
		wantShed(t, c.name, err, time.Since(start))
	}

	// The schema picked in the same string or pipeline as the read.
	conn := connect(t, s.lg.superDSN())
	start := time.Now()
	_, err := conn.Exec(ctx, "SET search_path = "+tenant+"; SELECT count(*) FROM "+items, pgx.QueryExecModeSimpleProtocol)
	wantShed(t, "one string", err, time.Since(start))
	// …also after AND CHAIN, whose new block a SET LOCAL then applies to.
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	start = time.Now()
	_, err = conn.Exec(qctx, "COMMIT AND CHAIN; SET LOCAL search_path = "+tenant+"; SELECT count(*) FROM "+items, pgx.QueryExecModeSimpleProtocol)
	cancel()
	wantShed(t, "one string after COMMIT AND CHAIN", err, time.Since(start))
	conn.Exec(ctx, "ROLLBACK")
	// Parse, Bind and Execute per statement: a prepare-first pipeline
	// would fail to parse the read before the schema is set.
	cfg, err := pgx.ParseConfig(s.lg.superDSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	pconn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pconn.Close(context.Background())
	batch := &pgx.Batch{}
	batch.Queue("SELECT set_config('search_path', $1, false)", tenant)
	batch.Queue("SELECT count(*) FROM " + items)
	start = time.Now()
	err = pconn.SendBatch(ctx, batch).Close()
	wantShed(t, "one pipeline", err, time.Since(start))
}

// wantShed fails unless err is lockguard's shed, answered within the hold
// budget rather than after queueing.
func wantShed(t *testing.T, what string, err error, took time.Duration) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "55P03" || !strings.HasPrefix(pe.Message, "lockguard: shed") || took > 2*time.Second {
		t.Fatalf("%s: read of the tenant's table behind the pending DDL: %v after %v, want lockguard's shed", what, err, took)
	}
}

// TestShedBehindPendingAddFK: ADD FOREIGN KEY waits for SHARE ROW EXCLUSIVE
// on both tables behind a writer of users. Writes of users would queue and
// are shed; reads do not conflict and are served.
func TestShedBehindPendingAddFK(t *testing.T) {
	s := startShedding(t, 3*time.Second)
	ctx := ctxT(t, 30*time.Second)
	writer := connect(t, directDSN())
	tx, err := writer.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "UPDATE "+s.users+" SET name = name WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	ddl := connect(t, s.lg.superDSN())
	ddlDone := make(chan error, 1)
	go func() {
		_, err := ddl.Exec(context.Background(), "ALTER TABLE "+s.orders+" ADD CONSTRAINT "+s.fk+"2 FOREIGN KEY (user_id) REFERENCES "+s.users+"(id)")
		ddlDone <- err
	}()
	waitHazard(t, s.board, s.users)
	s.expectNoQueue(t, "UPDATE "+s.users+" SET name = 'x' WHERE id = 2")
	if code, took := s.probe(t, "SELECT count(*) FROM "+s.users); code != "ok" || took > time.Second {
		t.Fatalf("read of users (no conflict with SHARE ROW EXCLUSIVE): %s after %v", code, took)
	}
	tx.Commit(ctx)
	select {
	case err := <-ddlDone:
		if err != nil {
			t.Fatalf("ADD FOREIGN KEY after the writer committed: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("ADD FOREIGN KEY did not land")
	}
}

// TestShedOwnerNeverShed: the session whose transaction holds the strong
// lock keeps working on its table.
func TestShedOwnerNeverShed(t *testing.T) {
	s := startShedding(t, 3*time.Second)
	ctx := ctxT(t, 30*time.Second)
	owner := connect(t, s.lg.superDSN())
	tx, err := owner.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE "+s.products+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	waitHeld(t, s.board, s.products)
	if _, err := tx.Exec(ctx, "INSERT INTO "+s.products+" VALUES (1000)"); err != nil {
		t.Fatalf("owner of the lock was refused: %v", err)
	}
	if code, took := s.probe(t, "SELECT count(*) FROM "+s.products); code != "55P03" || took > 2*time.Second {
		t.Fatalf("other session during a held ACCESS EXCLUSIVE: %s after %v", code, took)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestDDLYields: a DDL through lockguard waits behind a reader while
// sessions that bypass lockguard queue behind it in PostgreSQL. Once the
// oldest has waited yield-wait, lockguard cancels the DDL (long before its
// lock timeout), the queue drains, and the DDL lands on a retry after the
// reader commits.
func TestDDLYields(t *testing.T) {
	s := startShedding(t, 10*time.Second)
	s.lg.guard.Yield = enforce.Yield{Waiters: 100, Wait: 400 * time.Millisecond}
	_, release := holdLock(t, s.users)
	ddl := connect(t, s.lg.superDSN())
	ddlDone := make(chan error, 1)
	go func() {
		_, err := ddl.Exec(context.Background(), "ALTER TABLE "+s.users+" ADD COLUMN yielded int")
		ddlDone <- err
	}()
	waitHazard(t, s.board, s.users)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := connect(t, directDSN())
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer cancel()
			_, err := c.Exec(ctx, "SELECT count(*) FROM "+s.users)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a reader queued behind the DDL failed: %v", err)
		}
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("readers behind the DDL waited %v: the DDL did not yield (its lock timeout is 10 s)", el)
	}
	release()
	select {
	case err := <-ddlDone:
		if err != nil {
			t.Fatalf("DDL after yielding: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("DDL did not land after the reader committed")
	}
}

// TestDDLYieldsInATransaction: a DDL in a transaction block that lockguard
// cancels to yield is not retried; its error says it was cancelled for the
// queue behind it (it said only "lock_timeout 10s per attempt; 1 attempt",
// which the client had not hit).
func TestDDLYieldsInATransaction(t *testing.T) {
	s := startShedding(t, 10*time.Second)
	s.lg.guard.Yield = enforce.Yield{Waiters: 1, Wait: 300 * time.Millisecond}
	_, release := holdLock(t, s.users)
	defer release()
	ddl := connect(t, s.lg.superDSN())
	ctx := ctxT(t, 30*time.Second)
	tx, err := ddl.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	ddlDone := startExec(ctx, ddl, "ALTER TABLE "+s.users+" ADD COLUMN yielded_tx int")
	waitHazard(t, s.board, s.users)
	reader := startExec(ctx, connect(t, directDSN()), "SELECT count(*) FROM "+s.users)
	select {
	case err = <-ddlDone:
	case <-time.After(8 * time.Second):
		t.Fatal("the DDL did not yield to the reader queued behind it")
	}
	pe, ok := gaveUp(err)
	if !ok {
		t.Fatalf("DDL cancelled to yield: %v, want lockguard's 55P03", err)
	}
	if !strings.Contains(pe.Detail, "requests queued behind it") {
		t.Errorf("detail %q does not say lockguard cancelled the DDL for the queue behind it", pe.Detail)
	}
	if err := <-reader; err != nil {
		t.Fatalf("the reader queued behind the DDL: %v", err)
	}
}

// TestReadsRunBetweenRetries: between the attempts of a DDL that hit its
// lock timeout, the DDL waits in lockguard, not in PostgreSQL's queue, and
// reads of its table have nothing to queue behind. lockguard kept shedding
// them through every backoff, up to the retry deadline (seen with five ORM
// stacks: every read of users shed for the whole 7 s a reader held it).
// Reads are shed while an attempt waits, and run between attempts.
func TestReadsRunBetweenRetries(t *testing.T) {
	s := startShedding(t, 300*time.Millisecond, func(g *enforce.Guard) {
		g.Backoff = guard.Backoff{Attempts: 4, Base: time.Second, Cap: time.Second, Deadline: 30 * time.Second}
	})
	ctx := ctxT(t, 30*time.Second)
	_, release := holdLock(t, s.users)
	defer release()
	ddl := startExec(ctx, connect(t, s.lg.superDSN()), "ALTER TABLE "+s.users+" ADD COLUMN between_retries int")
	reader := connect(t, s.lg.superDSN())
	var ran, shed int
	for done := false; !done; {
		_, err := reader.Exec(ctx, "SELECT count(*) FROM "+s.users)
		select {
		case derr := <-ddl:
			// The DDL ended: this read may have run after it.
			if _, ok := gaveUp(derr); !ok {
				t.Fatalf("DDL behind a reader that never ends: %v, want lockguard's give-up", derr)
			}
			done = true
			continue
		default:
		}
		var pe *pgconn.PgError
		switch {
		case err == nil && shed > 0: // reads before the first attempt was seen do not count
			ran++
		case err == nil:
		case errors.As(err, &pe) && pe.Code == "55P03":
			shed++
		default:
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if shed == 0 || ran == 0 {
		t.Fatalf("reads while the DDL retried: %d shed, %d ran after the first shed; want some shed (during attempts) and some run (between them)", shed, ran)
	}
	t.Logf("%d reads shed, %d ran after the first shed", shed, ran)
}

// TestWatchdog: a session idle in its transaction that a DDL waits behind is
// warned about, or terminated when the policy says so; then the DDL lands.
func TestWatchdog(t *testing.T) {
	for _, action := range []string{pgmonitor.WatchWarn, pgmonitor.WatchTerminate} {
		t.Run(action, func(t *testing.T) {
			s := startShedding(t, 3*time.Second)
			ctx := ctxT(t, 30*time.Second)
			pool, err := pgxpool.New(ctx, directDSN())
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			var logs lockedBuffer
			wd := &pgmonitor.Watchdog{Pool: pool, Board: s.board, Action: action, IdleBudget: 300 * time.Millisecond,
				RunBudget: time.Minute, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			wctx, stop := context.WithCancel(context.Background())
			wdone := make(chan struct{})
			go func() { wd.Run(wctx); close(wdone) }()
			defer func() { stop(); <-wdone }()

			pid, release := holdLock(t, s.users)
			defer release()
			ddl := connect(t, directDSN())
			ddlDone := make(chan error, 1)
			go func() {
				dctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
				defer cancel()
				_, err := ddl.Exec(dctx, "ALTER TABLE "+s.users+" ADD COLUMN wd int")
				ddlDone <- err
			}()
			waitFor(t, 10*time.Second, func() bool { return strings.Contains(logs.String(), fmt.Sprintf("pid=%d", pid)) })
			err = <-ddlDone
			var alive int
			connect(t, directDSN()).QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&alive)
			switch action {
			case pgmonitor.WatchWarn:
				if !strings.Contains(logs.String(), "lock holder blocks others") || alive != 1 {
					t.Fatalf("warn: logs %q, holder alive %d", logs.String(), alive)
				}
				if err == nil {
					t.Fatal("DDL landed although the holder was only warned about")
				}
			case pgmonitor.WatchTerminate:
				if !strings.Contains(logs.String(), "action=terminate") || alive != 0 {
					t.Fatalf("terminate: logs %q, holder alive %d", logs.String(), alive)
				}
				if err != nil {
					t.Fatalf("DDL after the holder was terminated: %v", err)
				}
			}
		})
	}
}

// TestShedKeepsRestoreToRedo: after "BEGIN; ALTER …" in one string and a
// ROLLBACK, lockguard's session-level lock_timeout must be restored with the
// next batch. When that batch is shed, its restore never ran: it must be
// redone with the one after, not forgotten.
func TestShedKeepsRestoreToRedo(t *testing.T) {
	s := startShedding(t, 300*time.Millisecond)
	ctx := ctxT(t, 30*time.Second)
	conn := connect(t, s.lg.superDSN())
	if _, err := conn.Exec(ctx, "BEGIN; ALTER TABLE "+s.products+" ADD COLUMN z int", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	tx, err := connect(t, directDSN()).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE "+s.users+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	waitHeld(t, s.board, s.users)
	_, err = conn.Exec(ctx, "SELECT count(*) FROM "+s.users, pgx.QueryExecModeSimpleProtocol)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "55P03" || !strings.HasPrefix(pe.Message, "lockguard: shed") {
		t.Fatalf("read behind the held lock: %v, want lockguard's shed", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	var v string
	if err := conn.QueryRow(ctx, "SELECT current_setting('lock_timeout')", pgx.QueryExecModeSimpleProtocol).Scan(&v); err != nil || v != "0" {
		t.Fatalf("lock_timeout after the shed batch = %q (%v), want the client's 0", v, err)
	}
}

// TestHeldStatementAsksForAFreshReading: a lock that a session outside
// lockguard held is released between two readings of pg_locks. A statement
// that comes then is held on what the last reading found; it must ask the
// monitor for a new reading and run, not wait out its hold budget and be
// shed for a lock that is gone (the monitor's next poll is 10 s away here;
// by default it is up to 100 ms, which sheds every conflicting statement
// that comes in that time with a hold budget of 25 ms).
func TestHeldStatementAsksForAFreshReading(t *testing.T) {
	ctx := ctxT(t, 60*time.Second)
	tbl := createTable(t, ctx, "fresh", "id int")
	board := &guard.Board{}
	runMonitor(t, board, 100*time.Millisecond, 10*time.Second)
	lg := startGuarded(t, func(g *enforce.Guard) {
		g.Admission = &enforce.Admission{Board: board, HoldBudget: 2 * time.Second}
	})
	conn := connect(t, lg.superDSN())
	for round := range 3 {
		holder, err := connect(t, directDSN()).Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := holder.Exec(ctx, "LOCK TABLE "+tbl+" IN ACCESS EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
		waitHeld(t, board, tbl)
		if err := holder.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var n int
		err = conn.QueryRow(ctx, "SELECT count(*) FROM "+tbl).Scan(&n)
		if took := time.Since(start); err != nil || took > time.Second {
			t.Fatalf("round %d: a read after the lock was released ended with %v after %v; want it run at once", round, err, took.Round(time.Millisecond))
		}
	}
}

// TestFreshReadingsAreRateLimited: statements held on a lock that stays
// may ask for a new reading of pg_locks as often as they come; the monitor
// reads at most one per pgmonitor.FreshGap.
func TestFreshReadingsAreRateLimited(t *testing.T) {
	ctx := ctxT(t, 60*time.Second)
	tbl := createTable(t, ctx, "freshgap", "id int")
	board := &guard.Board{}
	runMonitor(t, board, 100*time.Millisecond, 10*time.Second)
	holder, err := connect(t, directDSN()).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(context.Background())
	if _, err := holder.Exec(ctx, "LOCK TABLE "+tbl+" IN SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	waitHeld(t, board, tbl)
	// Count the readings published while requests come every millisecond.
	const span = 600 * time.Millisecond
	readings := 0
	last := board.Snapshot().Polled()
	end := time.Now().Add(span)
	for time.Now().Before(end) {
		board.RequestFresh()
		time.Sleep(time.Millisecond)
		if p := board.Snapshot().Polled(); p.After(last) {
			readings, last = readings+1, p
		}
	}
	if max := int(span/pgmonitor.FreshGap) + 1; readings < 5 || readings > max {
		t.Fatalf("%d readings of pg_locks in %v of requests; want some, and at most %d", readings, span, max)
	}
}
