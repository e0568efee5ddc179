package test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/internal/enforce"
)

// TestEnforceWarnsForDDLAfterAFlush: an extended-protocol batch may send a
// Flush and go on (Parse, Bind, Execute, Flush, then more, then Sync).
// What came before the Flush has gone to PostgreSQL in the client's
// implicit transaction, and lockguard sends nothing of its own between a
// batch's statements, so a DDL after the Flush runs without lockguard's
// lock_timeout. lockguard must say so with a WARNING, not stay silent;
// unless the client's own lock_timeout, at most lockguard's, covers it, or
// lockguard sets no lock_timeout at all. The same statements with a Sync
// in place of the Flush are protected: behind a held lock the DDL gives up
// with lockguard's 55P03.
func TestEnforceWarnsForDDLAfterAFlush(t *testing.T) {
	lg, _, tbl := guardedTable(t, "midbatch")
	noTimeout := startGuarded(t, func(g *enforce.Guard) { g.LockTimeout = 0 })
	alter := "ALTER TABLE " + tbl + " ADD COLUMN x int"
	cases := []struct {
		name    string
		lg      *lockguard
		session string // sent on its own before the batch
		before  string // the statement before the Flush
		after   string // run after the Flush, before the DDL
		warn    string // a substring of the WARNING's message; "" for none
	}{
		{"after a Flush", lg, "", "SELECT 1", "", "runs without lockguard's lock_timeout"},
		{"after a Flush, in a block", lg, "BEGIN", "SELECT 1", "", "runs without lockguard's lock_timeout"},
		{"the session's shorter lock_timeout", lg, "SET lock_timeout = '100ms'", "SELECT 1", "", ""},
		{"the session's longer lock_timeout", lg, "SET lock_timeout = '10s'", "SELECT 1", "", "runs without lockguard's lock_timeout"},
		{"a longer lock_timeout set after the Flush", lg, "", "SELECT 1", "SET lock_timeout = '10s'", "lock_timeout '10s' set in the same query"},
		{"no lock_timeout configured", noTimeout, "", "SELECT 1", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rc := rawSession(t, c.lg)
			if c.session != "" {
				rc.query(c.session)
			}
			rc.send(&pgproto3.Parse{Query: c.before}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
			rc.readUntil(func(m pgproto3.BackendMessage) bool { _, ok := m.(*pgproto3.CommandComplete); return ok })
			var rest []pgproto3.FrontendMessage
			if c.after != "" {
				rest = append(rest, &pgproto3.Parse{Query: c.after}, &pgproto3.Bind{}, &pgproto3.Execute{})
			}
			rest = append(rest, &pgproto3.Parse{Query: alter}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
			rc.send(rest...)
			r := rc.readUntil(isReady)
			if r.code != "" {
				t.Fatalf("the batch failed with %s", r.code)
			}
			var warned []*pgproto3.NoticeResponse
			for _, n := range r.notices {
				if n.Code == guard.CodeWarning && strings.HasPrefix(n.Message, "lockguard: ") {
					warned = append(warned, n)
				}
			}
			switch {
			case c.warn == "" && len(warned) > 0:
				t.Errorf("warned %q, though nothing is unprotected", warned[0].Message)
			case c.warn != "" && len(warned) != 1:
				t.Errorf("%d lockguard warnings, want 1 that says %q", len(warned), c.warn)
			case c.warn != "" && !strings.Contains(warned[0].Message, c.warn):
				t.Errorf("the warning %q does not say %q", warned[0].Message, c.warn)
			case strings.Contains(c.warn, "runs without") && (!strings.Contains(warned[0].Detail, "after a Flush") || !strings.HasPrefix(warned[0].Hint, "End the batch with a Sync")):
				t.Errorf("the warning's DETAIL %q and HINT %q do not name the Flush", warned[0].Detail, warned[0].Hint)
			}
			rc.query("ROLLBACK")
			rc.query("ALTER TABLE " + tbl + " DROP COLUMN IF EXISTS x")
		})
	}
	// With a Sync in place of the Flush, lockguard protects the DDL.
	rc := rawSession(t, lg)
	_, release := holdLock(t, tbl)
	defer release()
	rc.send(&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	rc.readUntil(isReady)
	rc.send(&pgproto3.Parse{Query: alter}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if r := rc.readUntil(isReady); r.code != "55P03" || !strings.HasPrefix(r.message, "lockguard") {
		t.Errorf("behind a held lock, the DDL in a batch of its own ended with %q %q, want lockguard's 55P03", r.code, r.message)
	}
}

// TestEnforceFollowsSettingsAcrossAFlush: lockguard follows the client's
// lock_timeout through every part of a batch the client continued after a
// Flush, as PostgreSQL ran it. A SET in a later part counts once the sync
// point succeeds, and a SET that an earlier part's error kept from running
// does not: otherwise lockguard would take a lock_timeout of the client's
// as shorter than its own, inject nothing, and a later DDL would wait
// behind a held lock for the client's longer one.
func TestEnforceFollowsSettingsAcrossAFlush(t *testing.T) {
	lg, _, tbl := guardedTable(t, "flushset")
	cases := []struct {
		name          string
		session       string // sent on its own first
		first, second string // before the Flush and after it
		between       string // sent on its own after the batch
	}{
		{"both parts set", "", "SET lock_timeout = '100ms'", "SET statement_timeout = '1min'", "SET lock_timeout = '10s'"},
		{"the first part fails", "SET lock_timeout = '10s'", "SELECT 1/0", "SET lock_timeout = '100ms'", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rc := rawSession(t, lg)
			if c.session != "" {
				rc.query(c.session)
			}
			rc.send(append(unnamedExec(c.first), &pgproto3.Flush{})...)
			rc.readUntil(func(m pgproto3.BackendMessage) bool {
				switch m.(type) {
				case *pgproto3.CommandComplete, *pgproto3.ErrorResponse:
					return true
				}
				return false
			})
			rc.send(append(unnamedExec(c.second), &pgproto3.Sync{})...)
			rc.readUntil(isReady)
			if c.between != "" {
				rc.query(c.between)
			}
			// The client's lock_timeout is 10s now: lockguard's 300ms
			// must govern the DDL.
			_, release := holdLock(t, tbl)
			defer release()
			start := time.Now()
			r := rc.query("ALTER TABLE " + tbl + " ADD COLUMN x int")
			if r.code != "55P03" || !strings.HasPrefix(r.message, "lockguard") {
				t.Errorf("behind a held lock the DDL ended after %v with %s %q, want lockguard's 55P03", time.Since(start).Round(time.Millisecond), r.code, r.message)
			}
		})
	}
}

// unnamedExec parses, binds and executes sql unnamed, with no Sync.
func unnamedExec(sql string) []pgproto3.FrontendMessage {
	return []pgproto3.FrontendMessage{&pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Execute{}}
}

func isReady(m pgproto3.BackendMessage) bool { _, ok := m.(*pgproto3.ReadyForQuery); return ok }

func isError(m pgproto3.BackendMessage) bool { _, ok := m.(*pgproto3.ErrorResponse); return ok }

// rawProto is a client connection to lockguard that speaks the protocol
// message by message (pgproto3), for batches pgx does not send.
type rawProto struct {
	t    *testing.T
	conn net.Conn
	fe   *pgproto3.Frontend
}

// rawAnswer is what the server answered until a message readUntil waited
// for.
type rawAnswer struct {
	notices       []*pgproto3.NoticeResponse
	code, message string   // the first ErrorResponse's
	rows          []string // each DataRow's first column
	types         []string // the type of every message, in order
}

// rawSession opens a session through lg with rawStartup.
func rawSession(t *testing.T, lg *lockguard) *rawProto {
	t.Helper()
	c, fe := rawStartup(t, lg.addr)
	return &rawProto{t: t, conn: c, fe: fe}
}

func (r *rawProto) send(msgs ...pgproto3.FrontendMessage) {
	r.t.Helper()
	for _, m := range msgs {
		r.fe.Send(m)
	}
	if err := r.fe.Flush(); err != nil {
		r.t.Fatal(err)
	}
}

// readUntil reads backend messages until one that stop accepts, for at most
// 20 seconds.
func (r *rawProto) readUntil(stop func(pgproto3.BackendMessage) bool) rawAnswer {
	r.t.Helper()
	var a rawAnswer
	r.conn.SetDeadline(time.Now().Add(20 * time.Second))
	for {
		m, err := r.fe.Receive()
		if err != nil {
			r.t.Fatalf("reading the answer: %v", err)
		}
		a.types = append(a.types, strings.TrimPrefix(fmt.Sprintf("%T", m), "*pgproto3."))
		switch m := m.(type) {
		case *pgproto3.DataRow:
			if len(m.Values) > 0 {
				a.rows = append(a.rows, string(m.Values[0]))
			}
		case *pgproto3.NoticeResponse:
			n := *m
			a.notices = append(a.notices, &n)
		case *pgproto3.ErrorResponse:
			if a.code == "" {
				a.code, a.message = m.Code, m.Message
			}
		}
		if stop(m) {
			return a
		}
	}
}

// query sends sql as a simple query and reads its answer.
func (r *rawProto) query(sql string) rawAnswer {
	r.t.Helper()
	r.send(&pgproto3.Query{String: sql})
	return r.readUntil(isReady)
}

// TestAdmissionAdmitsTheRestOfABatchThatHoldsTheLock: a client that sent
// part of a batch and a Flush holds that part's locks in its implicit
// transaction until its Sync. When a DDL from elsewhere then queues for
// ACCESS EXCLUSIVE behind those locks, the rest of the batch on the same
// table must run (PostgreSQL grants a transaction a lock it holds without
// queueing), as in an open transaction block: holding it back would keep
// the DDL waiting on this session until lockguard shed the client's batch.
func TestAdmissionAdmitsTheRestOfABatchThatHoldsTheLock(t *testing.T) {
	s := startShedding(t, 3*time.Second)
	ctx := ctxT(t, 30*time.Second)
	rc := rawSession(t, s.lg)
	count := func(end pgproto3.FrontendMessage) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "SELECT count(*) FROM " + s.products}, &pgproto3.Bind{}, &pgproto3.Execute{}, end}
	}
	rc.send(count(&pgproto3.Flush{})...)
	rc.readUntil(func(m pgproto3.BackendMessage) bool { _, ok := m.(*pgproto3.CommandComplete); return ok })
	// A DDL straight to PostgreSQL queues behind the batch's lock.
	ddl := connect(t, directDSN())
	done := startExec(ctx, ddl, "SET lock_timeout = '20s'; LOCK TABLE "+s.products+" IN ACCESS EXCLUSIVE MODE")
	waitHazard(t, s.board, s.products)
	start := time.Now()
	rc.send(count(&pgproto3.Sync{})...)
	if r := rc.readUntil(isReady); r.code != "" {
		t.Errorf("the rest of the batch, whose first part holds the lock the DDL waits for, ended with %s %q after %v; want it run",
			r.code, r.message, time.Since(start).Round(time.Millisecond))
	}
	if err := <-done; err != nil {
		t.Errorf("the DDL after the batch: %v", err)
	}
}

// TestEnforceProtectsDDLPreparedBeforeAFlush is asyncpg's way with every
// statement (and so SQLAlchemy's asyncpg dialect, and alembic on it): Parse
// and Describe, Flush, read the description, then Bind, Execute, Sync.
// Nothing has run when the Bind arrives, so lockguard ends the flushed part
// with a Sync of its own and protects the DDL as in a batch of its own:
// behind a held lock it gives up with lockguard's 55P03 after its retries
// instead of waiting without a timeout. The client sees the same messages
// as from PostgreSQL, one ReadyForQuery per Sync of its own; and when the
// flushed part failed, PostgreSQL's skipping to the Sync is kept: the DDL
// does not run.
func TestEnforceProtectsDDLPreparedBeforeAFlush(t *testing.T) {
	lg, ctx, tbl := guardedTable(t, "prepflush")
	addCol := func(c string) string { return "ALTER TABLE " + tbl + " ADD COLUMN " + c + " int" }
	describe := func(name string) pgproto3.FrontendMessage { return &pgproto3.Describe{ObjectType: 'S', Name: name} }
	// exchange sends each step and reads its answer (up to the message
	// stop accepts), returning the answers' message types.
	type step struct {
		msgs []pgproto3.FrontendMessage
		stop func(pgproto3.BackendMessage) bool
	}
	described := func(m pgproto3.BackendMessage) bool {
		switch m.(type) {
		case *pgproto3.NoData, *pgproto3.RowDescription, *pgproto3.ErrorResponse:
			return true
		}
		return false
	}
	exchange := func(addr string, steps ...step) (types []string, last rawAnswer) {
		c, fe := rawStartup(t, addr)
		rc := &rawProto{t: t, conn: c, fe: fe}
		for _, s := range steps {
			rc.send(s.msgs...)
			var kinds []string
			last = rc.readUntil(func(m pgproto3.BackendMessage) bool {
				if _, ok := m.(*pgproto3.NoticeResponse); !ok {
					kinds = append(kinds, strings.TrimPrefix(fmt.Sprintf("%T", m), "*pgproto3."))
				}
				return s.stop(m)
			})
			types = append(types, strings.Join(kinds, " "))
		}
		// Nothing more is pending: a simple query's answer comes next.
		rc.send(&pgproto3.Query{String: "SELECT 1"})
		var after []string
		rc.readUntil(func(m pgproto3.BackendMessage) bool {
			after = append(after, strings.TrimPrefix(fmt.Sprintf("%T", m), "*pgproto3."))
			return isReady(m)
		})
		types = append(types, strings.Join(after, " "))
		return types, last
	}
	hasColumn := func(c string) bool {
		var n int
		if err := connect(t, directDSN()).QueryRow(ctx, "SELECT count(*) FROM information_schema.columns WHERE table_name = $1 AND column_name = $2", tbl, c).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	prepared := func(name, sql string) []step {
		return []step{
			{[]pgproto3.FrontendMessage{&pgproto3.Parse{Name: name, Query: sql}, describe(name), &pgproto3.Flush{}}, described},
			{[]pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: name}, &pgproto3.Execute{}, &pgproto3.Sync{}}, isReady},
		}
	}

	// Behind a held lock: lockguard's timeout, retries, and its 55P03.
	_, release := holdLock(t, tbl)
	released := make(chan struct{})
	timer := time.AfterFunc(15*time.Second, func() { release(); close(released) })
	start := time.Now()
	_, last := exchange(lg.addr, prepared("s1", addCol("held"))...)
	if last.code != "55P03" || !strings.HasPrefix(last.message, "lockguard: gave up") {
		t.Errorf("behind a held lock the prepared DDL ended after %v with %q %q, want lockguard's 55P03",
			time.Since(start).Round(time.Millisecond), last.code, last.message)
	}
	if timer.Stop() {
		release()
	} else {
		<-released
	}

	// The same messages as from PostgreSQL, named or unnamed, landing.
	for _, name := range []string{"s2", ""} {
		want, _ := exchange(pg.Addr(), prepared(name, addCol("direct_"+name+"x"))...)
		got, last := exchange(lg.addr, prepared(name, addCol("via_"+name+"x"))...)
		if strings.Join(got, " | ") != strings.Join(want, " | ") || last.code != "" {
			t.Errorf("statement %q through lockguard answered\n\t%s (%s)\nPostgreSQL answered\n\t%s", name, strings.Join(got, " | "), last.code, strings.Join(want, " | "))
		}
		if !hasColumn("via_" + name + "x") {
			t.Errorf("the DDL prepared as %q did not run through lockguard", name)
		}
	}

	// A flushed part that failed: PostgreSQL skips the Bind and Execute.
	failing := func(col string) []step {
		return []step{
			{[]pgproto3.FrontendMessage{&pgproto3.Parse{Name: "ok", Query: addCol(col)}, &pgproto3.Parse{Name: "bad", Query: "SELEC 1"}, &pgproto3.Flush{}},
				isError},
			{[]pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: "ok"}, &pgproto3.Execute{}, &pgproto3.Sync{}}, isReady},
		}
	}
	want, _ := exchange(pg.Addr(), failing("skipped_direct")...)
	got, _ := exchange(lg.addr, failing("skipped_via")...)
	if strings.Join(got, " | ") != strings.Join(want, " | ") {
		t.Errorf("after a failed flushed part, lockguard answered\n\t%s\nPostgreSQL answered\n\t%s", strings.Join(got, " | "), strings.Join(want, " | "))
	}
	if hasColumn("skipped_direct") || hasColumn("skipped_via") {
		t.Errorf("a DDL after a failed flushed part ran (direct %v, through lockguard %v)", hasColumn("skipped_direct"), hasColumn("skipped_via"))
	}
}

// TestQueryAfterAFlushEndsTheBatch: asyncpg sends its COPY as Parse,
// Describe, Flush (for the table's columns), then a Query, with no Sync
// between. PostgreSQL answers the flushed batch and the Query with one
// ReadyForQuery, so lockguard must not count the Query as a sync point of
// its own: it did, and the session never looked idle again. Guarded, the
// next DDL that waited for the session to be idle (a retry) then hung for
// ever; unguarded, a drain could not close the idle session.
func TestQueryAfterAFlushEndsTheBatch(t *testing.T) {
	asyncpgCopy := func(rc *rawProto) {
		rc.send(&pgproto3.Parse{Name: "cols", Query: "SELECT 1 AS a"}, &pgproto3.Describe{ObjectType: 'S', Name: "cols"}, &pgproto3.Flush{})
		rc.readUntil(func(m pgproto3.BackendMessage) bool { _, ok := m.(*pgproto3.RowDescription); return ok })
		if r := rc.query("SELECT 2"); r.code != "" {
			t.Fatalf("the Query after the Flush failed: %s %s", r.code, r.message)
		}
	}

	lg, _, tbl := guardedTable(t, "qflush")
	rc := rawSession(t, lg)
	asyncpgCopy(rc)
	_, release := holdLock(t, tbl)
	defer release()
	start := time.Now()
	if r := rc.query("ALTER TABLE " + tbl + " ADD COLUMN y int"); r.code != "55P03" || !strings.HasPrefix(r.message, "lockguard: gave up") {
		t.Errorf("behind a held lock the DDL ended after %v with %q %q, want lockguard's 55P03 after its retries",
			time.Since(start).Round(time.Millisecond), r.code, r.message)
	}

	// A DDL sent as that Query is protected too: the flushed part only
	// prepared, so lockguard ends it with its own Sync first.
	rc = rawSession(t, lg)
	rc.send(&pgproto3.Parse{Name: "cols", Query: "SELECT 1 AS a"}, &pgproto3.Describe{ObjectType: 'S', Name: "cols"}, &pgproto3.Flush{})
	rc.readUntil(func(m pgproto3.BackendMessage) bool { _, ok := m.(*pgproto3.RowDescription); return ok })
	start = time.Now()
	if r := rc.query("ALTER TABLE " + tbl + " ADD COLUMN z int"); r.code != "55P03" || !strings.HasPrefix(r.message, "lockguard: gave up") {
		t.Errorf("behind a held lock the DDL sent as a Query after a Flush ended after %v with %q %q, want lockguard's 55P03 after its retries",
			time.Since(start).Round(time.Millisecond), r.code, r.message)
	}
	if r := rc.query("SHOW lock_timeout"); r.code != "" {
		t.Errorf("after the DDL: %s %s", r.code, r.message)
	}

	plain := startLockguard(t, nil)
	asyncpgCopy(rawSession(t, plain))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := plain.srv.Shutdown(ctx); err != nil {
		t.Errorf("draining with the idle session open: %v, want it closed at once", err)
	}
}

// TestQueryAfterAFailedFlushIsSkipped: when the flushed part of a batch
// fails, PostgreSQL skips everything up to the next Sync, Queries
// included, and answers them and the Sync with one ReadyForQuery.
// lockguard must not wait for more: before it protects the session's next
// DDL it waits for the session to be idle, and a drain closes an idle
// session at once. Each case is sent with the error already read, and
// pipelined, before PostgreSQL answered.
func TestQueryAfterAFailedFlushIsSkipped(t *testing.T) {
	type flushCase struct {
		name    string
		flushed []pgproto3.FrontendMessage
		fails   bool // the flushed part fails
		then    []pgproto3.FrontendMessage
		readies int // ReadyForQuery messages PostgreSQL sends for it all
	}
	q := func(sql string) pgproto3.FrontendMessage { return &pgproto3.Query{String: sql} }
	var cases []flushCase
	for _, f := range []struct {
		name    string
		flushed []pgproto3.FrontendMessage
		fails   bool
	}{
		{"parse fails", []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "SELEC 1"}}, true},
		{"execute fails", []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "SELECT 1/0"}, &pgproto3.Bind{}, &pgproto3.Execute{}}, true},
		{"describe fails", []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Describe{ObjectType: 'S', Name: "nosuch"}}, true},
		{"executes", []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}}, false},
	} {
		readies := func(queries int) int {
			if f.fails {
				return 1 // the Sync's
			}
			return queries + 1
		}
		cases = append(cases,
			flushCase{f.name + ", then a Query and a Sync", f.flushed, f.fails, []pgproto3.FrontendMessage{q("SELECT 2"), &pgproto3.Sync{}}, readies(1)},
			flushCase{f.name + ", then a failing Query and a Sync", f.flushed, f.fails, []pgproto3.FrontendMessage{q("SELECT 1/0"), &pgproto3.Sync{}}, readies(1)},
			flushCase{f.name + ", then two Queries, a Parse and a Sync", f.flushed, f.fails,
				[]pgproto3.FrontendMessage{q("SELECT 2"), q("SELECT 3"), &pgproto3.Parse{Query: "SELECT 4"}, &pgproto3.Sync{}}, readies(2)})
	}
	flushed := func(c flushCase) []pgproto3.FrontendMessage {
		return append(append([]pgproto3.FrontendMessage{}, c.flushed...), &pgproto3.Flush{})
	}
	run := func(rc *rawProto, c flushCase, pipelined bool) {
		t.Helper()
		if pipelined {
			rc.send(append(flushed(c), c.then...)...)
		} else {
			rc.send(flushed(c)...)
			if c.fails {
				rc.readUntil(isError)
			} else {
				rc.readUntil(func(m pgproto3.BackendMessage) bool { _, ok := m.(*pgproto3.CommandComplete); return ok })
			}
			rc.send(c.then...)
		}
		for range c.readies {
			rc.readUntil(isReady)
		}
		if r := rc.query("SELECT 5"); r.code != "" {
			t.Fatalf("%s: after the Sync: %s %s", c.name, r.code, r.message)
		}
	}

	lg, _, tbl := guardedTable(t, "qfail")
	for _, c := range cases {
		for _, pipelined := range []bool{false, true} {
			checkCountedAfter(t, lg, tbl, fmt.Sprintf("%s (pipelined %v)", c.name, pipelined), func(rc *rawProto) { run(rc, c, pipelined) })
		}
	}
}

// checkCountedAfter runs a client's exchange (run) through the guarded lg
// and through a lockguard without a guard, and checks that lockguard
// counted the session's sync points right: guarded, a DDL on tbl (which
// waits for the session to be idle) and a query after it are answered as
// sent; plain, a drain closes the idle session at once.
func checkCountedAfter(t *testing.T, lg *lockguard, tbl, label string, run func(rc *rawProto)) {
	t.Helper()
	rc := rawSession(t, lg)
	run(rc)
	if r := rc.query("ALTER TABLE " + tbl + " ALTER COLUMN id SET DEFAULT 1"); r.code != "" || len(r.types) != 2 {
		t.Errorf("%s: the DDL after it was answered %v %s %s, want CommandComplete and ReadyForQuery", label, r.types, r.code, r.message)
	}
	if r := rc.query("SELECT 'after'"); !slices.Equal(r.rows, []string{"after"}) {
		t.Errorf("%s: then SELECT 'after' was answered %v", label, r.types)
	}
	plain := startLockguard(t, nil)
	run(rawSession(t, plain))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := plain.srv.Shutdown(ctx); err != nil {
		t.Errorf("%s, without the guard: draining with the idle session open: %v, want it closed at once", label, err)
	}
}

// TestPipelinedQueryThenDDL: a client that sends a Query and a DDL behind
// it without waiting (tokio-postgres pipelines simple queries) puts both in
// one of lockguard's reads. lockguard protects the DDL once the session is
// idle, so the Query before it must be on its way to PostgreSQL first:
// holding it back with the DDL hung the session.
func TestPipelinedQueryThenDDL(t *testing.T) {
	lg, _, tbl := guardedTable(t, "qpipe")
	for i, first := range []string{"SELECT 1", "SELECT pg_sleep(0.3)", "SET application_name = 'piped'"} {
		rc := rawSession(t, lg)
		_, release := holdLock(t, tbl)
		start := time.Now()
		rc.send(&pgproto3.Query{String: first}, &pgproto3.Query{String: fmt.Sprintf("ALTER TABLE %s ADD COLUMN c%d int", tbl, i)})
		if r := rc.readUntil(isReady); r.code != "" {
			t.Fatalf("%s: %s %s", first, r.code, r.message)
		}
		if r := rc.readUntil(isReady); r.code != "55P03" || !strings.HasPrefix(r.message, "lockguard: gave up") {
			t.Errorf("%s, then behind a held lock the DDL ended after %v with %q %q, want lockguard's 55P03 after its retries",
				first, time.Since(start).Round(time.Millisecond), r.code, r.message)
		}
		release()
		if r := rc.query("SHOW lock_timeout"); !slices.Equal(r.rows, []string{"0"}) {
			t.Errorf("%s: lock_timeout after the DDL: %v, want 0", first, r.rows)
		}
	}
}

// TestInjectionKeepsTheUnnamedPortal: in a transaction block a portal lives
// until the block ends, the unnamed one included. lockguard's statements
// around a DDL in the block must not replace it: a client that bound the
// unnamed portal before the DDL may execute it after.
func TestInjectionKeepsTheUnnamedPortal(t *testing.T) {
	lg, _, tbl := guardedTable(t, "uportal")
	for _, addr := range []string{pg.Addr(), lg.addr} {
		c, fe := rawStartup(t, addr)
		rc := &rawProto{t: t, conn: c, fe: fe}
		rc.query("BEGIN")
		rc.send(&pgproto3.Parse{Query: "SELECT generate_series(1, 3)"}, &pgproto3.Bind{}, &pgproto3.Sync{})
		rc.readUntil(isReady)
		rc.send(&pgproto3.Parse{Name: "ddl", Query: "ALTER TABLE " + tbl + " ALTER COLUMN id SET DEFAULT 1"},
			&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "ddl"}, &pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{})
		if r := rc.readUntil(isReady); r.code != "" {
			t.Fatalf("%s: the DDL: %s %s", addr, r.code, r.message)
		}
		rc.send(&pgproto3.Execute{}, &pgproto3.Sync{})
		if r := rc.readUntil(isReady); r.code != "" || !slices.Equal(r.rows, []string{"1", "2", "3"}) {
			t.Errorf("%s: the unnamed portal bound before the DDL: %s %s, rows %v, want 1 2 3", addr, r.code, r.message, r.rows)
		}
		rc.query("ROLLBACK")
	}
}

// TestDDLAfterAFailedFlushIsSkipped: after a failed flushed part PostgreSQL
// skips a DDL sent before the client's Sync, as it skips any Query. The
// guard must neither wait for the session to be idle first (that waits for
// the client's Sync, which comes after the DDL) nor send its lock_timeout
// with a Sync of its own, which would end the skip and run the DDL. A
// Query between the batch and the DDL ends the batch, so that lockguard
// takes the DDL for one that starts a sync point of its own.
func TestDDLAfterAFailedFlushIsSkipped(t *testing.T) {
	lg, ctx, tbl := guardedTable(t, "skipddl")
	direct := connect(t, directDSN())
	for i, pipelined := range []bool{false, true} {
		rc := rawSession(t, lg)
		col := fmt.Sprintf("skipped%d", i)
		ddl := &pgproto3.Query{String: "ALTER TABLE " + tbl + " ADD COLUMN " + col + " int"}
		if pipelined {
			rc.send(&pgproto3.Parse{Query: "SELEC 1"}, &pgproto3.Flush{}, &pgproto3.Query{String: "SELECT 1"}, ddl, &pgproto3.Sync{})
		} else {
			rc.send(&pgproto3.Parse{Query: "SELEC 1"}, &pgproto3.Flush{})
			rc.readUntil(isError)
			rc.send(&pgproto3.Query{String: "SELECT 1"}, ddl, &pgproto3.Sync{})
		}
		r := rc.readUntil(isReady)
		if want := []string{"ReadyForQuery"}; !pipelined && !slices.Equal(r.types, want) {
			t.Errorf("pipelined %v: after the error, answered %v, want %v", pipelined, r.types, want)
		}
		if want := []string{"ErrorResponse", "ReadyForQuery"}; pipelined && (!slices.Equal(r.types, want) || r.code != "42601") {
			t.Errorf("pipelined %v: answered %v %s, want %v with 42601", pipelined, r.types, r.code, want)
		}
		var n int
		if err := direct.QueryRow(ctx, "SELECT count(*) FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2", tbl, col).Scan(&n); err != nil || n != 0 {
			t.Errorf("pipelined %v: the skipped DDL ran (%d columns %s, %v)", pipelined, n, col, err)
		}
		if r := rc.query("SHOW lock_timeout"); !slices.Equal(r.rows, []string{"0"}) {
			t.Errorf("pipelined %v: lock_timeout after it: %v %s", pipelined, r.rows, r.code)
		}
	}
}

// TestFlushedDDLRestoresLockTimeout: a DDL executed in the first part of a
// batch that the client flushes gets lockguard's lock_timeout ahead of the
// batch; the restore cannot go inside the batch, so it comes ahead of the
// next query that starts outside a block once the batch has answered. The
// session's own lock_timeout must be back, whatever ended the batch, and
// one the client set after the DDL must stay: lockguard once left its
// 300ms in force for good.
func TestFlushedDDLRestoresLockTimeout(t *testing.T) {
	lg, _, tbl := guardedTable(t, "flushrestore")
	q := func(sql string) pgproto3.FrontendMessage { return &pgproto3.Query{String: sql} }
	for _, c := range []struct {
		name    string
		then    []pgproto3.FrontendMessage
		readies [2]int // ReadyForQuery messages when the DDL succeeds, fails
	}{
		{"then a Sync", []pgproto3.FrontendMessage{&pgproto3.Sync{}}, [2]int{1, 1}},
		{"then more of the batch and a Sync", []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}}, [2]int{1, 1}},
		{"then a failing part and a Sync", []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "SELECT 1/0"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}}, [2]int{1, 1}},
		{"then a Query and a Sync", []pgproto3.FrontendMessage{q("SELECT 1"), &pgproto3.Sync{}}, [2]int{2, 1}},
		{"then a failing Query and a Sync", []pgproto3.FrontendMessage{q("SAVEPOINT a"), &pgproto3.Sync{}}, [2]int{2, 1}},
		{"then a Query, a block and a Sync", []pgproto3.FrontendMessage{q("SELECT 1"), q("BEGIN"), &pgproto3.Sync{}, q("ROLLBACK")}, [2]int{4, 2}},
		{"then a SET in the batch", []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "SET lock_timeout = '2s'"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}}, [2]int{1, 1}},
		{"then a Query and a SET", []pgproto3.FrontendMessage{q("SELECT 1"), q("SET lock_timeout = '2s'")}, [2]int{2, 0}},
	} {
		for f, failing := range []bool{false, true} {
			rc := rawSession(t, lg)
			rc.query("SET lock_timeout = '5s'")
			stmt := "ALTER TABLE " + tbl + " ALTER COLUMN id SET DEFAULT 4"
			if failing {
				stmt = "ALTER TABLE " + tbl + " ALTER COLUMN nosuch SET DEFAULT 4"
			}
			rc.send(append([]pgproto3.FrontendMessage{&pgproto3.Parse{Query: stmt}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{}}, c.then...)...)
			for range c.readies[f] {
				rc.readUntil(isReady)
			}
			if c.readies[f] == 0 {
				continue // PostgreSQL waits for a Sync
			}
			want := "5s"
			if strings.Contains(c.name, "SET") && !failing {
				want = "2s"
			}
			if r := rc.query("SHOW lock_timeout"); !slices.Equal(r.rows, []string{want}) {
				t.Errorf("%s (DDL fails %v): lock_timeout after it = %v, want %s", c.name, failing, r.rows, want)
			}
		}
	}
}

// TestQueryAfterUnterminatedExtendedMessages: a client may send Parse,
// Bind and Execute and then a Query (or a FunctionCall) with no Sync or
// Flush between them. PostgreSQL runs the extended messages and then the
// Query, whose end ends their batch. lockguard held the extended messages
// for their Sync or Flush, which never came: the session hung when the
// guard let the Query pass, and otherwise the extended messages went
// undecided, a DDL among them without lockguard's lock_timeout. They are
// now decided as the part of a batch a Flush ends.
func TestQueryAfterUnterminatedExtendedMessages(t *testing.T) {
	lg, ctx, tbl := guardedTable(t, "noterm")
	var fn uint32
	if err := connect(t, directDSN()).QueryRow(ctx, "SELECT 'pg_backend_pid'::regproc::oid").Scan(&fn); err != nil {
		t.Fatal(err)
	}
	for _, end := range []struct {
		name string
		msg  pgproto3.FrontendMessage
		want []string // its answer's message types, ReadyForQuery last
	}{
		{"a Query", &pgproto3.Query{String: "SELECT 3"}, []string{"RowDescription", "DataRow", "CommandComplete", "ReadyForQuery"}},
		{"a decided Query", &pgproto3.Query{String: "SET application_name = 'noterm'"}, []string{"CommandComplete", "ReadyForQuery"}},
		{"a FunctionCall", &pgproto3.FunctionCall{Function: fn, ResultFormatCode: 0}, []string{"FunctionCallResponse", "ReadyForQuery"}},
	} {
		t.Run(end.name, func(t *testing.T) {
			rc := rawSession(t, lg)
			rc.send(append(unnamedExec("SELECT 1"), end.msg)...)
			r := rc.readUntil(isReady)
			r.types = slices.DeleteFunc(r.types, func(s string) bool { return s == "ParameterStatus" })
			want := append([]string{"ParseComplete", "BindComplete", "DataRow", "CommandComplete"}, end.want...)
			if !slices.Equal(r.types, want) {
				t.Errorf("answered %v, want %v", r.types, want)
			}

			// A DDL among them gets lockguard's lock_timeout. Its error
			// makes PostgreSQL skip the rest up to a Sync.
			_, release := holdLock(t, tbl)
			defer release()
			rc.send(append(unnamedExec("ALTER TABLE "+tbl+" ALTER COLUMN id SET DEFAULT 5"), end.msg, &pgproto3.Sync{})...)
			r = rc.readUntil(isReady)
			if r.code != "55P03" {
				t.Errorf("behind a held lock the DDL ended with %s %q, want 55P03 (lock_timeout)", r.code, r.message)
			}
			if r := rc.query("SELECT 4"); !slices.Equal(r.rows, []string{"4"}) {
				t.Errorf("the session then answered %v %s", r.rows, r.code)
			}
		})
	}
}

// TestEnforceFollowsABlockBegunAcrossAFlush: the parts of a batch that a
// Flush split, and the Query that may end it, run in one implicit
// transaction, which a BEGIN anywhere in them turns into a transaction
// block: a SET before or after the BEGIN then lasts only as long as the
// block. lockguard once took such a SET as the session's for good when
// the BEGIN and the SET came in different parts, and after the block's
// ROLLBACK restored it behind the next DDL in place of the client's value.
// The batch may end with a Query, a FunctionCall or a lone Sync.
func TestEnforceFollowsABlockBegunAcrossAFlush(t *testing.T) {
	lg, ctx, tbl := guardedTable(t, "flushblock")
	var fn uint32
	if err := connect(t, directDSN()).QueryRow(ctx, "SELECT 'pg_backend_pid'::regproc::oid").Scan(&fn); err != nil {
		t.Fatal(err)
	}
	call := []pgproto3.FrontendMessage{&pgproto3.FunctionCall{Function: fn}}
	flush := []pgproto3.FrontendMessage{&pgproto3.Flush{}}
	q := func(sql string) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{&pgproto3.Query{String: sql}}
	}
	sync := []pgproto3.FrontendMessage{&pgproto3.Sync{}}
	cat := func(parts ...[]pgproto3.FrontendMessage) []pgproto3.FrontendMessage { return slices.Concat(parts...) }
	const set = "SET lock_timeout = '2s'"
	for _, c := range []struct {
		name    string
		first   []pgproto3.FrontendMessage // before the Flush
		rest    []pgproto3.FrontendMessage // after it
		end     string                     // ends the block
		readies int
		want    string // lock_timeout after the DDL
	}{
		{"BEGIN flushed, SET in the Query that ends the batch", unnamedExec("BEGIN"), q(set), "ROLLBACK", 1, "5s"},
		{"SET flushed, BEGIN in the Query that ends the batch", unnamedExec(set), q("BEGIN"), "ROLLBACK", 1, "5s"},
		{"BEGIN flushed, SET before the Sync", unnamedExec("BEGIN"), cat(unnamedExec(set), sync), "ROLLBACK", 1, "5s"},
		{"SET flushed, BEGIN before the Sync", unnamedExec(set), cat(unnamedExec("BEGIN"), sync), "ROLLBACK", 1, "5s"},
		{"SET flushed, BEGIN and a read before the Sync", unnamedExec(set), cat(unnamedExec("BEGIN"), unnamedExec("SELECT 1"), sync), "ROLLBACK", 1, "5s"},
		{"SET flushed, a read, then BEGIN in a Query", unnamedExec(set), cat(unnamedExec("SELECT 1"), q("BEGIN")), "ROLLBACK", 1, "5s"},
		{"BEGIN flushed, SET in the Query, committed", unnamedExec("BEGIN"), q(set), "COMMIT", 1, "2s"},
		{"SET flushed, BEGIN in the Query, committed", unnamedExec(set), q("BEGIN"), "COMMIT", 1, "2s"},
		{"SET flushed, the Query fails", unnamedExec(set), q("SELECT 1/0"), "", 1, "5s"},
		{"SET flushed, the rest fails", unnamedExec(set), cat(unnamedExec("SELECT 1/0"), sync), "", 1, "5s"},
		{"SET flushed, the rest succeeds", unnamedExec(set), cat(unnamedExec("SELECT 1"), sync), "", 1, "2s"},
		{"SET flushed, a lone Sync", unnamedExec(set), sync, "", 1, "2s"},
		{"SET flushed, a FunctionCall ends the batch", unnamedExec(set), call, "", 1, "2s"},
		{"BEGIN flushed, SET flushed, a lone Sync", unnamedExec("BEGIN"), cat(unnamedExec(set), flush, sync), "ROLLBACK", 1, "5s"},
		{"BEGIN flushed, SET flushed, a FunctionCall", unnamedExec("BEGIN"), cat(unnamedExec(set), flush, call), "ROLLBACK", 1, "5s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc := rawSession(t, lg)
			rc.query("SET lock_timeout = '5s'")
			rc.send(append(c.first, &pgproto3.Flush{})...)
			rc.readUntil(func(m pgproto3.BackendMessage) bool {
				_, ok := m.(*pgproto3.CommandComplete)
				return ok
			})
			rc.send(c.rest...)
			for range c.readies {
				rc.readUntil(isReady)
			}
			if c.end != "" {
				if r := rc.query(c.end); r.code != "" {
					t.Fatalf("%s: %s %s", c.end, r.code, r.message)
				}
			}
			if r := rc.query("ALTER TABLE " + tbl + " ALTER COLUMN id SET DEFAULT 4"); r.code != "" {
				t.Fatalf("the DDL failed: %s %s", r.code, r.message)
			}
			if r := rc.query("SHOW lock_timeout"); !slices.Equal(r.rows, []string{c.want}) {
				t.Errorf("lock_timeout after the DDL = %v, want %s", r.rows, c.want)
			}
		})
	}
}

// TestCopyInIgnoresSyncs: PostgreSQL ignores the Syncs it receives in
// copy-in mode. tokio-postgres sends one right behind the Execute of its
// COPY … FROM STDIN (Bind, Execute, Sync; then the data, CopyDone, Sync),
// and PostgreSQL answers both Syncs with one ReadyForQuery. lockguard
// counted two sync points and waited for a second ReadyForQuery for good:
// guarded, the session's next DDL hung waiting for it to be idle; plain,
// a drain could not close the session. The same for a Sync sent in the
// middle of the data of a simple COPY, and none of it when the COPY fails
// before copy-in (then PostgreSQL answers each Sync).
func TestCopyInIgnoresSyncs(t *testing.T) {
	lg, _, tbl := guardedTable(t, "copysync")
	copyIn := func(cols string) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "COPY " + tbl + cols + " FROM STDIN"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}}
	}
	data := func(rows string) *pgproto3.CopyData { return &pgproto3.CopyData{Data: []byte(rows)} }
	cases := []struct {
		name    string
		first   []pgproto3.FrontendMessage // then the client waits for CopyInResponse, unless pipelined
		then    []pgproto3.FrontendMessage
		readies int
		code    string // the COPY's error
	}{
		{"as tokio-postgres", copyIn(""), []pgproto3.FrontendMessage{data("1\n2\n"), &pgproto3.CopyDone{}, &pgproto3.Sync{}}, 1, ""},
		{"bad data", copyIn(""), []pgproto3.FrontendMessage{data("x\n"), &pgproto3.CopyDone{}, &pgproto3.Sync{}}, 1, "22P02"},
		{"CopyFail", copyIn(""), []pgproto3.FrontendMessage{data("3\n"), &pgproto3.CopyFail{Message: "no"}, &pgproto3.Sync{}}, 1, "57014"},
		{"a Sync in the data of a simple COPY", []pgproto3.FrontendMessage{&pgproto3.Query{String: "COPY " + tbl + " FROM STDIN"}},
			[]pgproto3.FrontendMessage{data("4\n"), &pgproto3.Sync{}, data("5\n"), &pgproto3.CopyDone{}}, 1, ""},
		{"a simple COPY fails first, then a Query fails", []pgproto3.FrontendMessage{&pgproto3.Query{String: "COPY " + tbl + " (nosuch) FROM STDIN"}},
			[]pgproto3.FrontendMessage{data("9\n"), &pgproto3.CopyDone{}, &pgproto3.Query{String: "SELECT 1/0"}}, 2, "42703"},
		{"a simple COPY fails first, then one with a Sync in its data", []pgproto3.FrontendMessage{&pgproto3.Query{String: "COPY " + tbl + " (nosuch) FROM STDIN"}},
			[]pgproto3.FrontendMessage{data("9\n"), &pgproto3.CopyDone{}, &pgproto3.Query{String: "COPY " + tbl + " FROM STDIN"},
				data("10\n"), &pgproto3.Sync{}, data("11\n"), &pgproto3.CopyDone{}}, 2, "42703"},
		// PostgreSQL answers an Execute of COPY … FROM STDIN at once, with
		// no Sync or Flush behind it.
		{"no Sync before the data", copyIn("")[:3], []pgproto3.FrontendMessage{data("12\n"), &pgproto3.CopyDone{}, &pgproto3.Sync{}}, 1, ""},
		{"the COPY fails first", copyIn(" (nosuch)"), []pgproto3.FrontendMessage{data("6\n"), &pgproto3.CopyDone{}, &pgproto3.Sync{}}, 2, "42703"},
	}
	run := func(rc *rawProto, name string, first, then []pgproto3.FrontendMessage, readies int, code string, pipelined bool) {
		t.Helper()
		var got string
		if pipelined {
			rc.send(slices.Concat(first, then)...)
		} else {
			rc.send(first...)
			got = rc.readUntil(func(m pgproto3.BackendMessage) bool {
				_, ok := m.(*pgproto3.CopyInResponse)
				return ok || isError(m)
			}).code
			rc.send(then...)
		}
		for range readies {
			if r := rc.readUntil(isReady); got == "" {
				got = r.code
			}
		}
		if got != code {
			t.Errorf("%s (pipelined %v): the COPY ended with %q, want %q", name, pipelined, got, code)
		}
	}
	for _, c := range cases {
		for _, pipelined := range []bool{false, true} {
			checkCountedAfter(t, lg, tbl, fmt.Sprintf("%s (pipelined %v)", c.name, pipelined), func(rc *rawProto) {
				run(rc, c.name, c.first, c.then, c.readies, c.code, pipelined)
			})
		}
	}
}

// TestDDLAndCopyInOneBatch: a protected DDL and a COPY … FROM STDIN in one
// query string or batch. PostgreSQL waits for the client's data after the
// COPY starts, and a client may wait for the CopyInResponse before it sends
// any. lockguard held the answers for a retry until the ReadyForQuery and
// sent its restore right after the batch, which reached PostgreSQL in
// copy-in mode: PostgreSQL ended the session (08P01). Such a batch is
// protected without a retry, and the restore comes before the next query
// that starts outside a transaction block.
func TestDDLAndCopyInOneBatch(t *testing.T) {
	lg, ctx, tbl := guardedTable(t, "ddlcopy")
	ddl := "ALTER TABLE " + tbl + " ALTER COLUMN id SET DEFAULT 3"
	data := []pgproto3.FrontendMessage{&pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{}}
	sync := []pgproto3.FrontendMessage{&pgproto3.Sync{}}
	cases := []struct {
		name        string
		first, then []pgproto3.FrontendMessage // the client waits for CopyInResponse between them
	}{
		{"a query string", []pgproto3.FrontendMessage{&pgproto3.Query{String: ddl + "; COPY " + tbl + " FROM STDIN"}}, data},
		{"a batch with its Sync first", slices.Concat(unnamedExec(ddl), unnamedExec("COPY "+tbl+" FROM STDIN"), sync), slices.Concat(data, sync)},
		{"a batch with a Flush", slices.Concat(unnamedExec(ddl), unnamedExec("COPY "+tbl+" FROM STDIN"), []pgproto3.FrontendMessage{&pgproto3.Flush{}}), slices.Concat(data, sync)},
		// PostgreSQL sends the CopyInResponse at once, with no Sync or
		// Flush, and waits for the data.
		{"a batch with neither", slices.Concat(unnamedExec(ddl), unnamedExec("COPY "+tbl+" FROM STDIN")), slices.Concat(data, sync)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rc := rawSession(t, lg)
			rc.query("SET lock_timeout = '5s'")
			var before int
			if err := connect(t, directDSN()).QueryRow(ctx, "SELECT count(*) FROM "+tbl).Scan(&before); err != nil {
				t.Fatal(err)
			}
			rc.send(c.first...)
			if r := rc.readUntil(func(m pgproto3.BackendMessage) bool {
				_, ok := m.(*pgproto3.CopyInResponse)
				return ok || isReady(m)
			}); r.code != "" || r.types[len(r.types)-1] != "CopyInResponse" {
				t.Fatalf("answered %v %s %s, want CopyInResponse", r.types, r.code, r.message)
			}
			rc.send(c.then...)
			if r := rc.readUntil(isReady); r.code != "" {
				t.Errorf("the COPY ended with %s %s", r.code, r.message)
			}
			if r := rc.query("SHOW lock_timeout"); !slices.Equal(r.rows, []string{"5s"}) {
				t.Errorf("lock_timeout after the batch = %v, want the client's 5s", r.rows)
			}
			var after int
			if err := connect(t, directDSN()).QueryRow(ctx, "SELECT count(*) FROM "+tbl).Scan(&after); err != nil || after != before+1 {
				t.Errorf("the COPY wrote %d rows (%v), want 1", after-before, err)
			}

			// Behind a held lock the DDL gives up at lockguard's timeout.
			_, release := holdLock(t, tbl)
			defer release()
			rc.send(c.first...)
			r := rc.readUntil(func(m pgproto3.BackendMessage) bool {
				_, ok := m.(*pgproto3.CopyInResponse)
				return ok || isError(m)
			})
			if r.code != "55P03" {
				t.Fatalf("behind a held lock: %v %s %s, want 55P03", r.types, r.code, r.message)
			}
			switch c.first[len(c.first)-1].(type) {
			case *pgproto3.Sync, *pgproto3.Query:
			default:
				rc.send(sync...) // PostgreSQL skips to it
			}
			rc.readUntil(isReady)
			if r := rc.query("SELECT 'after'"); !slices.Equal(r.rows, []string{"after"}) {
				t.Errorf("then SELECT 'after' was answered %v %s", r.types, r.code)
			}
		})
	}
}

// TestPipelinedStatementsPreparedAhead: a pipelining client may execute a
// statement, or a portal, that an earlier batch of the same write prepares,
// before PostgreSQL has answered that batch. lockguard looked such a
// statement up among those PostgreSQL had confirmed, found nothing, and
// let a SET lock_timeout go unseen: after the next DDL it restored the
// value before the SET.
func TestPipelinedStatementsPreparedAhead(t *testing.T) {
	lg, _, tbl := guardedTable(t, "ahead")
	sync := &pgproto3.Sync{}
	for _, c := range []struct {
		name string
		msgs []pgproto3.FrontendMessage
	}{
		{"a statement", []pgproto3.FrontendMessage{&pgproto3.Parse{Name: "ahead", Query: "SET lock_timeout = '2s'"}, sync,
			&pgproto3.Bind{PreparedStatement: "ahead"}, &pgproto3.Execute{}, sync}},
		{"a portal in a block", []pgproto3.FrontendMessage{&pgproto3.Query{String: "BEGIN"},
			&pgproto3.Parse{Name: "ahead", Query: "SET lock_timeout = '2s'"}, &pgproto3.Bind{DestinationPortal: "ahead", PreparedStatement: "ahead"}, sync,
			&pgproto3.Execute{Portal: "ahead"}, sync, &pgproto3.Query{String: "COMMIT"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc := rawSession(t, lg)
			rc.query("SET lock_timeout = '5s'")
			rc.send(c.msgs...)
			for _, m := range c.msgs {
				switch m.(type) {
				case *pgproto3.Sync, *pgproto3.Query:
					if r := rc.readUntil(isReady); r.code != "" {
						t.Fatalf("%s %s", r.code, r.message)
					}
				}
			}
			if r := rc.query("ALTER TABLE " + tbl + " ALTER COLUMN id SET DEFAULT 2"); r.code != "" {
				t.Fatalf("the DDL: %s %s", r.code, r.message)
			}
			if r := rc.query("SHOW lock_timeout"); !slices.Equal(r.rows, []string{"2s"}) {
				t.Errorf("lock_timeout after the DDL = %v, want the client's 2s", r.rows)
			}
		})
	}
}

// TestEnforceFollowsARollbackPipelinedBehindAFlushedBegin: a BEGIN in the
// flushed part of a batch, its Sync, then a ROLLBACK and a SET
// lock_timeout as Queries, all in one write. The guard let the ROLLBACK
// pass undecided, as it lets a transaction it has seen nothing of (the
// BEGIN's result was not in yet), then took the SET for one inside the
// block and dropped it when the session was idle after it: behind the next
// DDL it restored the value before the SET. The same for a SET and a
// COMMIT after the BEGIN (the SET committed).
func TestEnforceFollowsARollbackPipelinedBehindAFlushedBegin(t *testing.T) {
	lg, _, tbl := guardedTable(t, "pipedrollback")
	begin := []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "BEGIN"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{}, &pgproto3.Sync{}}
	q := func(sql string) pgproto3.FrontendMessage { return &pgproto3.Query{String: sql} }
	for _, c := range []struct {
		name string
		rest []pgproto3.FrontendMessage
		want string
	}{
		{"then ROLLBACK and a SET", []pgproto3.FrontendMessage{q("ROLLBACK"), q("SET lock_timeout = '3s'")}, "3s"},
		{"then a SET and COMMIT", []pgproto3.FrontendMessage{q("SET lock_timeout = '3s'"), q("COMMIT")}, "3s"},
		{"then a SET and ROLLBACK", []pgproto3.FrontendMessage{q("SET lock_timeout = '3s'"), q("ROLLBACK")}, "5s"},
	} {
		rc := rawSession(t, lg)
		rc.query("SET lock_timeout = '5s'")
		rc.send(append(begin, c.rest...)...)
		for range 3 {
			if r := rc.readUntil(isReady); r.code != "" {
				t.Fatalf("%s: %s %s", c.name, r.code, r.message)
			}
		}
		if r := rc.query("ALTER TABLE " + tbl + " ALTER COLUMN id SET DEFAULT 2"); r.code != "" {
			t.Fatalf("%s: the DDL: %s %s", c.name, r.code, r.message)
		}
		if r := rc.query("SHOW lock_timeout"); !slices.Equal(r.rows, []string{c.want}) {
			t.Errorf("%s: lock_timeout after the DDL = %v, want the client's %s", c.name, r.rows, c.want)
		}
	}
}
