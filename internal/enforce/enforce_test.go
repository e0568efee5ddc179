package enforce

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/proxy"
)

func plainBatch(sql string) *proxy.Batch {
	return &proxy.Batch{Simple: true, Complete: true, TxStatus: 'I',
		Stmts: []proxy.BatchStmt{{SQL: []byte(sql), Executed: true}}}
}

func newTestGuard() (*Guard, *proxy.Session) {
	g := &Guard{Analyzer: guard.NewAnalyzer(nil, 100), LockTimeout: DefaultLockTimeout,
		Backoff: guard.DefaultBackoff, Admission: &Admission{Board: &guard.Board{}}}
	ps := &proxy.Session{}
	ps.State = g.Hooks().Open(ps)
	return g, ps
}

// TestPlainStatementsCostNothing: a cached plain statement with no hazard is
// forwarded unchanged, without allocating.
func TestPlainStatementsCostNothing(t *testing.T) {
	g, ps := newTestGuard()
	for _, sql := range []string{"SELECT abalance FROM pgbench_accounts WHERE aid = $1",
		"UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2"} {
		b := plainBatch(sql)
		if v := g.batch(context.Background(), ps, b); v != nil {
			t.Fatalf("%s: verdict %+v, want none", sql, v)
		}
		if n := testing.AllocsPerRun(1000, func() { g.batch(context.Background(), ps, b) }); n != 0 {
			t.Fatalf("%s: %v allocations per batch, want 0", sql, n)
		}
	}
}

// TestDDLGetsProtection: a blocking DDL gets the lock timeout and its
// restoration; a CONCURRENTLY build does not.
func TestDDLGetsProtection(t *testing.T) {
	g, ps := newTestGuard()
	v := g.batch(context.Background(), ps, plainBatch("ALTER TABLE users ADD COLUMN c int"))
	if v == nil || len(v.Before) != 1 || v.Before[0] != guard.InjectAtMost("lock_timeout", 2*time.Second, false) || len(v.After) != 1 ||
		v.After[0] != "RESET lock_timeout" || v.Retry == nil {
		t.Fatalf("ALTER TABLE verdict = %+v", v)
	}
	v = g.batch(context.Background(), ps, plainBatch("CREATE INDEX CONCURRENTLY i ON users (c)"))
	if v != nil && len(v.Before) != 0 {
		t.Fatalf("CREATE INDEX CONCURRENTLY got %q", v.Before)
	}
}

// TestAdmissionSheds: with a pending ACCESS EXCLUSIVE on users, a read of
// users is held and shed; a read of another table is not.
func TestAdmissionSheds(t *testing.T) {
	g, ps := newTestGuard()
	g.Admission.Board.Add([]guard.Hazard{{Rel: guard.RelName{Schema: "public", Name: "users"},
		Mode: guard.AccessExclusive, PID: 42, Query: "ALTER TABLE orders DROP CONSTRAINT $1"}})
	v := g.batch(context.Background(), ps, plainBatch("SELECT * FROM users WHERE id = 1"))
	if v == nil || v.Hold == nil {
		t.Fatalf("read of users: verdict %+v, want a hold", v)
	}
	e := v.Hold(context.Background())
	if e == nil || e.Code != guard.CodeLockNotAvailable || e.Detail == "" || e.Hint == "" {
		t.Fatalf("hold ended with %+v, want a shed", e)
	}
	if v := g.batch(context.Background(), ps, plainBatch("SELECT * FROM products")); v != nil && v.Hold != nil {
		t.Fatalf("unrelated read held: %+v", v)
	}
}

func BenchmarkBatch(b *testing.B) {
	for _, tc := range []struct{ name, sql string }{
		{"select", "SELECT abalance FROM pgbench_accounts WHERE aid = $1"},
		{"update", "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			g, ps := newTestGuard()
			batch := plainBatch(tc.sql)
			b.ReportAllocs()
			for b.Loop() {
				g.batch(context.Background(), ps, batch)
			}
		})
	}
}

// BenchmarkAdmissionCheckNoHazard is the admission check alone when no
// hazard exists: one atomic pointer load.
func BenchmarkAdmissionCheckNoHazard(b *testing.B) {
	board := &guard.Board{}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if !board.Snapshot().Empty() {
			n++
		}
	}
	if n != 0 {
		b.Fatal("hazard on an empty board")
	}
}

func TestPlainDML(t *testing.T) {
	for sql, want := range map[string]bool{
		"SELECT abalance FROM pgbench_accounts WHERE aid = 42":         true,
		"UPDATE pgbench_accounts SET abalance = abalance + 1;":         true,
		"INSERT INTO t VALUES (1)":                                     true,
		"SELECT 1; DROP TABLE t":                                       false,
		"SELECT * INTO new_t FROM t":                                   false,
		"SELECT set_config('lock_timeout', '1s', false)":               false,
		"ALTER TABLE t ADD COLUMN c int":                               false,
		"WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d": false,
		"BEGIN": false,
	} {
		if _, got := plainDML([]byte(sql)); got != want {
			t.Errorf("plainDML(%q) = %v, want %v", sql, got, want)
		}
	}
}

func TestPlainTxControl(t *testing.T) {
	for sql, want := range map[string][2]bool{ // begin, ok
		"BEGIN":                              {true, true},
		" begin ;\n":                         {true, true},
		"\tSTART TRANSACTION;;":              {true, true},
		"commit":                             {false, true},
		"END;":                               {false, true},
		"\f ROLLBACK \v":                     {false, true},
		"BEGIN ISOLATION LEVEL SERIALIZABLE": {false, false},
		"BEGIN; DROP TABLE t":                {false, false},
		"ROLLBACK TO SAVEPOINT a":            {false, false},
		"COMMIT AND CHAIN":                   {false, false},
		"start  transaction":                 {false, false},
		"/* app */ BEGIN":                    {false, false},
		"UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1;": {false, false},
		"":    {false, false},
		" ; ": {false, false},
	} {
		if begin, ok := plainTxControl([]byte(sql)); [2]bool{begin, ok} != want {
			t.Errorf("plainTxControl(%q) = %v, %v, want %v", sql, begin, ok, want)
		}
	}
}

// BenchmarkPlainDML is the guard's check of a plain statement on the
// relay's path: pgbench's UPDATE, and a 1.2 MB INSERT whose text is full
// of the first letter of set_config (a search that started over at every
// candidate took 6.5 s on it, with the event loop's other sessions waiting).
func BenchmarkPlainDML(b *testing.B) {
	for _, tc := range []struct{ name, sql string }{
		{"tpcb-update", "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;"},
		{"insert-1.2MB", "INSERT INTO t VALUES ('" + strings.Repeat("is ", 400_000) + "')"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			sql := []byte(tc.sql)
			b.SetBytes(int64(len(sql)))
			for b.Loop() {
				if _, ok := plainDML(sql); !ok {
					b.Fatal("not plain")
				}
			}
		})
	}
}

func TestCatalogFree(t *testing.T) {
	for sql, want := range map[string]bool{
		"BEGIN":                             true,
		"  commit":                          true,
		"/* app */ SET search_path = a":     true,
		"ROLLBACK TO SAVEPOINT s":           true,
		"SELECT * FROM t":                   false,
		"ALTER TABLE t ADD COLUMN c int":    false,
		"INSERT INTO t VALUES (1)":          false,
		"begin_work_table_that_is_a_name()": false,
	} {
		if got := catalogFree(sql); got != want {
			t.Errorf("catalogFree(%q) = %v, want %v", sql, got, want)
		}
	}
}

// TestTxStateReadWhileResultsArrive: with batches pipelined, the upstream
// side records results into the transaction's state while the client side
// decides the next batch from a copy of it; the copy must share no storage
// (under -race, a shallow copy is reported).
func TestTxStateReadWhileResultsArrive(t *testing.T) {
	g, ps := newTestGuard()
	g.Policy = guard.DefaultPolicy()
	s := ps.State.(*session)
	alter := s.analyze("ALTER TABLE t ADD COLUMN c int")
	if alter.Err != nil || len(alter.Statements[0].Locks) == 0 {
		t.Fatalf("analysis %+v", alter)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { // the upstream side, recording results until the end
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.mu.Lock()
			s.inTx = true
			s.tx.Reset()
			s.tx.Record(&alter.Statements[0])
			s.mu.Unlock()
			runtime.Gosched()
		}
	}()
	b := &proxy.Batch{Simple: true, Complete: true, TxStatus: 'T',
		Stmts: []proxy.BatchStmt{{SQL: []byte("ALTER TABLE u ADD COLUMN d int"), Executed: true}}}
	for range 500 {
		if v := g.batch(context.Background(), ps, b); v == nil {
			t.Fatal("no verdict for a DDL in a transaction")
		}
		s.mu.Lock()
		s.pending = s.pending[:0]
		s.mu.Unlock()
	}
	close(stop)
	<-done
}

// TestDescribeLocksNamesEachLockOnce: a string of two ALTERs of one table
// gave up "waiting for ACCESS EXCLUSIVE on public.t, ACCESS EXCLUSIVE on
// public.t".
func TestDescribeLocksNamesEachLockOnce(t *testing.T) {
	an := guard.Analyze("ALTER TABLE t ADD COLUMN a int; ALTER TABLE t ADD COLUMN b int; ALTER TABLE u ADD COLUMN c int")
	if an.Err != nil {
		t.Fatal(an.Err)
	}
	if got, want := describeLocks(an.StatementPtrs()), "ACCESS EXCLUSIVE on t, ACCESS EXCLUSIVE on u"; got != want {
		t.Errorf("describeLocks = %q, want %q", got, want)
	}
}
