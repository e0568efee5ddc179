package test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/lockguard/lockguard/proxy"
)

// These tests drive the proxy's verdict machinery with a hook that matches
// marker comments in the SQL, so that each mechanism (refuse, notice, inject,
// hold, retry) is checked against PostgreSQL on its own. The guard's own
// decisions are tested elsewhere.

func markerHook(decide func(sql string, b *proxy.Batch) *proxy.Verdict) *proxy.Hooks {
	return &proxy.Hooks{Batch: func(ctx context.Context, s *proxy.Session, b *proxy.Batch) *proxy.Verdict {
		var all strings.Builder
		for _, st := range b.Stmts {
			all.Write(st.SQL)
			all.WriteByte('\n')
		}
		return decide(all.String(), b)
	}}
}

var refusal = &proxy.Error{Code: "LG001", Message: "lockguard: refused by test", Detail: "rule test-rule", Hint: "do something else"}

func TestInterceptRefuse(t *testing.T) {
	lg := startLockguard(t, func(c *proxy.Config) {
		c.Hooks = markerHook(func(sql string, b *proxy.Batch) *proxy.Verdict {
			if strings.Contains(sql, "/*refuse*/") {
				return &proxy.Verdict{Refuse: refusal}
			}
			return nil
		})
	})
	ctx := ctxT(t, 30*time.Second)
	conn := connect(t, lg.superDSN())
	tbl := uniqueName(t, "refuse")
	if _, err := conn.Exec(ctx, "CREATE TABLE "+tbl+" (i int)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { connect(t, directDSN()).Exec(context.Background(), "DROP TABLE "+tbl) })
	check := func(err error) {
		t.Helper()
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "LG001" || pe.Message != refusal.Message || pe.Detail != refusal.Detail || pe.Hint != refusal.Hint || pe.Severity != "ERROR" {
			t.Fatalf("got %v, want the refusal", err)
		}
	}
	// Simple protocol, autocommit; the session stays usable.
	_, err := conn.PgConn().Exec(ctx, "INSERT INTO "+tbl+" VALUES (1) /*refuse*/").ReadAll()
	check(err)
	// Extended protocol (prepare + execute), autocommit.
	_, err = conn.Exec(ctx, "INSERT INTO "+tbl+" VALUES ($1) /*refuse*/", 2)
	check(err)
	// Inside a transaction the refusal aborts it, as any error does: the
	// earlier insert is rolled back at COMMIT.
	tx, _ := conn.Begin(ctx)
	if _, err := tx.Exec(ctx, "INSERT INTO "+tbl+" VALUES (3)"); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, "INSERT INTO "+tbl+" VALUES (4) /*refuse*/")
	check(err)
	if _, err := tx.Exec(ctx, "SELECT 1"); pgCode(err) != "25P02" {
		t.Fatalf("after a refusal in a transaction: %v, want 25P02", err)
	}
	tx.Rollback(ctx)
	// A pipeline whose batch is refused: nothing in it runs.
	bt := &pgx.Batch{}
	bt.Queue("INSERT INTO " + tbl + " VALUES (5)")
	bt.Queue("INSERT INTO " + tbl + " VALUES (6) /*refuse*/")
	br := conn.SendBatch(ctx, bt)
	_, err = br.Exec()
	br.Close()
	check(err)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+tbl).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows = %d (%v), want 0: a refused statement ran", n, err)
	}
}

func TestInterceptNoticesAndInjection(t *testing.T) {
	var results []string
	var mu sync.Mutex
	lg := startLockguard(t, func(c *proxy.Config) {
		c.Hooks = markerHook(func(sql string, b *proxy.Batch) *proxy.Verdict {
			if !strings.Contains(sql, "/*protect*/") {
				return nil
			}
			return &proxy.Verdict{
				Notices: []*proxy.Error{{Code: "01000", Message: "lockguard: protected", Detail: "d", Hint: "h"}},
				Before:  []string{"SET lock_timeout = '1234ms'"},
				After:   []string{"RESET lock_timeout"},
				Result: func(code string, completed int) {
					mu.Lock()
					results = append(results, fmt.Sprintf("%s/%d", code, completed))
					mu.Unlock()
				},
			}
		})
	})
	ctx := ctxT(t, 30*time.Second)
	var notices []*pgconn.Notice
	cfg, _ := pgx.ParseConfig(lg.superDSN())
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { mu.Lock(); notices = append(notices, n); mu.Unlock() }
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeDescribeExec} {
		var during, after string
		if err := conn.QueryRow(ctx, "SELECT current_setting('lock_timeout') /*protect*/", mode).Scan(&during); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, "SELECT current_setting('lock_timeout')", mode).Scan(&after); err != nil {
			t.Fatal(err)
		}
		if during != "1234ms" || after != "0" {
			t.Fatalf("mode %v: lock_timeout during = %q, after = %q", mode, during, after)
		}
	}
	// A failing protected statement: its error reaches the client, the
	// injected RESET still runs.
	_, err = conn.Exec(ctx, "SELECT 1/0 /*protect*/", pgx.QueryExecModeSimpleProtocol)
	if pgCode(err) != "22012" {
		t.Fatalf("protected failing statement: %v", err)
	}
	// Result counts the statements that completed before the error.
	_, err = conn.Exec(ctx, "SELECT 1; SELECT 2; SELECT 1/0 /*protect*/", pgx.QueryExecModeSimpleProtocol)
	if pgCode(err) != "22012" {
		t.Fatalf("protected failing string: %v", err)
	}
	var after string
	conn.QueryRow(ctx, "SHOW lock_timeout").Scan(&after)
	mu.Lock()
	defer mu.Unlock()
	if after != "0" {
		t.Fatalf("lock_timeout after a failed protected statement = %q", after)
	}
	if len(notices) < 4 || notices[0].Code != "01000" || notices[0].Message != "lockguard: protected" {
		t.Fatalf("notices = %+v", notices)
	}
	if len(results) < 5 || results[len(results)-2] != "22012/0" || results[len(results)-1] != "22012/2" || results[0] != "/0" {
		t.Fatalf("results = %q", results)
	}
}

func TestInterceptHold(t *testing.T) {
	var held atomic.Int32
	lg := startLockguard(t, func(c *proxy.Config) {
		c.Hooks = markerHook(func(sql string, b *proxy.Batch) *proxy.Verdict {
			switch {
			case strings.Contains(sql, "/*hold-ok*/"):
				return &proxy.Verdict{Hold: func(ctx context.Context) *proxy.Error {
					held.Add(1)
					time.Sleep(200 * time.Millisecond)
					return nil
				}}
			case strings.Contains(sql, "/*hold-shed*/"):
				return &proxy.Verdict{Hold: func(ctx context.Context) *proxy.Error { return refusal }}
			}
			return nil
		})
	})
	ctx := ctxT(t, 30*time.Second)
	conn := connect(t, lg.superDSN())
	start := time.Now()
	var n int
	if err := conn.QueryRow(ctx, "SELECT 1 /*hold-ok*/").Scan(&n); err != nil || n != 1 {
		t.Fatal(err)
	}
	// pgx prepares, then executes: both batches carry the statement.
	if time.Since(start) < 200*time.Millisecond || held.Load() < 1 {
		t.Fatalf("hold did not run: %v, %d", time.Since(start), held.Load())
	}
	if _, err := conn.Exec(ctx, "SELECT 1 /*hold-shed*/"); pgCode(err) != "LG001" {
		t.Fatalf("shed: %v", err)
	}
}

// startRetrying starts a lockguard that gives a statement marked /*retry*/
// a lock timeout of 100 ms and retries it after a 55P03, 8 attempts at
// most, 100 ms apart, counting them in attempts; then it gives up with
// "lockguard: gave up". Any other answer reaches the client as it is.
func startRetrying(t *testing.T, attempts *atomic.Int32) *lockguard {
	return startLockguard(t, func(c *proxy.Config) {
		c.Hooks = markerHook(func(sql string, b *proxy.Batch) *proxy.Verdict {
			if !strings.Contains(sql, "/*retry*/") {
				return nil
			}
			return &proxy.Verdict{
				Before: []string{"SET lock_timeout = '100ms'"},
				After:  []string{"RESET lock_timeout"},
				Retry: func(attempt int, code string) (bool, time.Duration, *proxy.Error) {
					attempts.Add(1)
					switch {
					case code != "55P03":
						return false, 0, nil // the answer as PostgreSQL gave it
					case attempt < 8:
						return true, 100 * time.Millisecond, nil
					}
					return false, 0, &proxy.Error{Code: "55P03", Message: "lockguard: gave up", Detail: "attempts", Hint: "later"}
				},
			}
		})
	})
}

// TestInterceptRetry retries a statement that fails with 55P03 until the lock
// is released, and gives up with the verdict's final error otherwise.
func TestInterceptRetry(t *testing.T) {
	var attempts atomic.Int32
	lg := startRetrying(t, &attempts)
	ctx := ctxT(t, 60*time.Second)
	direct := connect(t, directDSN())
	tbl := createTable(t, ctx, "retry", "i int")
	conn := connect(t, lg.superDSN())
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		attempts.Store(0)
		blocker, _ := connect(t, directDSN()).Begin(ctx)
		if _, err := blocker.Exec(ctx, "LOCK TABLE "+tbl+" IN ACCESS SHARE MODE"); err != nil {
			t.Fatal(err)
		}
		released := make(chan struct{})
		go func() { time.Sleep(450 * time.Millisecond); blocker.Rollback(context.Background()); close(released) }()
		col := uniqueName(t, "c")
		if _, err := conn.Exec(ctx, "ALTER TABLE "+tbl+" ADD COLUMN "+col+" int /*retry*/", mode); err != nil {
			t.Fatalf("mode %v: retried ALTER failed: %v", mode, err)
		}
		<-released
		if a := attempts.Load(); a < 2 {
			t.Fatalf("mode %v: %d attempts, want retries", mode, a)
		}
		var lt string
		conn.QueryRow(ctx, "SHOW lock_timeout").Scan(&lt)
		if lt != "0" {
			t.Fatalf("lock_timeout after retries = %q", lt)
		}
	}
	// The lock is never released: the final error replaces PostgreSQL's.
	attempts.Store(0)
	blocker, _ := direct.Begin(ctx)
	blocker.Exec(ctx, "LOCK TABLE "+tbl+" IN ACCESS SHARE MODE")
	defer blocker.Rollback(context.Background())
	_, err := conn.Exec(ctx, "ALTER TABLE "+tbl+" ADD COLUMN never int /*retry*/")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "55P03" || pe.Message != "lockguard: gave up" {
		t.Fatalf("got %v, want the final error", err)
	}
	if attempts.Load() != 8 {
		t.Fatalf("%d attempts, want 8", attempts.Load())
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
		t.Fatalf("session after final failure: %v", err)
	}
}

// TestInterceptRetryReparsesANamedStatement: postgres.js (and node-postgres
// for a named query the first time) sends Parse of a named statement, Bind,
// Describe, Execute and Sync in one batch. A prepared statement outlives the
// error that ends its batch, so the Parse of a retry would fail with 42P05
// "prepared statement … already exists" unless the statement the failed
// attempt created is closed first; one that existed before the batch is
// left alone.
func TestInterceptRetryReparsesANamedStatement(t *testing.T) {
	var attempts atomic.Int32
	lg := startRetrying(t, &attempts)
	ctx := ctxT(t, 60*time.Second)
	tbl := createTable(t, ctx, "reparse", "i int")
	rc := rawSession(t, lg)
	// A statement prepared before, whose name the batch parses again after
	// the DDL: PostgreSQL skips that Parse in every failed attempt, and
	// must answer it with 42P05 in the last.
	rc.send(&pgproto3.Parse{Name: "before", Query: "SELECT 1"}, &pgproto3.Sync{})
	if a := rc.readUntil(isReady); a.code != "" {
		t.Fatalf("Parse of the earlier statement: %s %s", a.code, a.message)
	}
	blocker, err := connect(t, directDSN()).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blocker.Exec(ctx, "LOCK TABLE "+tbl+" IN ACCESS SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	released := make(chan struct{})
	go func() { time.Sleep(450 * time.Millisecond); blocker.Rollback(context.Background()); close(released) }()
	ddl := "ALTER TABLE " + tbl + " ALTER COLUMN i SET DEFAULT 7 /*retry*/"
	rc.send(&pgproto3.Parse{Name: "named_ddl", Query: ddl}, &pgproto3.Bind{PreparedStatement: "named_ddl"},
		&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{},
		&pgproto3.Parse{Name: "before", Query: "SELECT 2"}, &pgproto3.Sync{})
	a := rc.readUntil(isReady)
	<-released
	if n := attempts.Load(); n < 2 {
		t.Fatalf("%d attempts, want retries (the blocker held the lock for 450 ms)", n)
	}
	want := []string{"ParseComplete", "BindComplete", "NoData", "CommandComplete", "ErrorResponse", "ReadyForQuery"}
	if a.code != "42P05" || !slices.Equal(a.types, want) {
		t.Fatalf("the retried batch answered %v (first error %s %q), want %v with 42P05 for the second Parse of \"before\" only",
			a.types, a.code, a.message, want)
	}
	// Both statements exist, and "before" is still the earlier one.
	rc.send(&pgproto3.Bind{PreparedStatement: "named_ddl"}, &pgproto3.Execute{},
		&pgproto3.Bind{PreparedStatement: "before"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if a := rc.readUntil(isReady); a.code != "" || !slices.Equal(a.rows, []string{"1"}) {
		t.Fatalf("executing the statements after the retry: %v rows %v, %s %q", a.types, a.rows, a.code, a.message)
	}
}

// TestInterceptBatchContinuedAfterAFlush: a client may send part of an
// extended-protocol batch, Flush, and go on with the rest before its Sync.
// Each part goes to the hook on its own, and all share one sync point.
// Every part's Verdict must be carried out: its Result reports the sync
// point's first error with the statements completed before it counted
// from the part's own first one (0 when an earlier part failed, and a part
// whose statements never ran does not succeed), its notices reach the
// client, and its refusal replaces the server's error; whichever of the
// parts the hook left alone.
func TestInterceptBatchContinuedAfterAFlush(t *testing.T) {
	var mu sync.Mutex
	var results []string
	lg := startLockguard(t, func(c *proxy.Config) {
		c.Hooks = markerHook(func(sql string, b *proxy.Batch) *proxy.Verdict {
			v := &proxy.Verdict{Notices: []*proxy.Error{{Code: "01000", Message: "lockguard: part " + strings.TrimSpace(sql)}}}
			switch {
			case strings.Contains(sql, "/*refuse*/"):
				v.Refuse = refusal
			case !strings.Contains(sql, "/*plan*/"):
				return nil
			}
			v.Result = func(code string, completed int) {
				mu.Lock()
				results = append(results, fmt.Sprintf("%s/%d", code, completed))
				mu.Unlock()
			}
			return v
		})
	})
	exec := func(sqls ...string) []pgproto3.FrontendMessage {
		var msgs []pgproto3.FrontendMessage
		for _, q := range sqls {
			msgs = append(msgs, &pgproto3.Parse{Query: q}, &pgproto3.Bind{}, &pgproto3.Execute{})
		}
		return msgs
	}
	cases := []struct {
		name          string
		first, second []string // sent before the Flush and after it
		results       []string // of the planned parts, in order
		notices       int
		code          string // the first error the client sees
	}{
		{"both parts succeed", []string{"SELECT 1 /*plan*/"}, []string{"SELECT 2 /*plan*/"}, []string{"/0", "/0"}, 2, ""},
		{"the second part fails", []string{"SELECT 1 /*plan*/", "SELECT 2 /*plan*/"}, []string{"SELECT 1/0 /*plan*/", "SELECT 3 /*plan*/"},
			[]string{"22012/2", "22012/0"}, 2, "22012"},
		{"the second part fails after an unplanned first", []string{"SELECT 1", "SELECT 2"}, []string{"SELECT 3 /*plan*/", "SELECT 1/0 /*plan*/"},
			[]string{"22012/1"}, 1, "22012"},
		{"an unplanned first part fails", []string{"SELECT 1/0"}, []string{"SELECT 1 /*plan*/"}, []string{"22012/0"}, 1, "22012"},
		{"the second part is refused", []string{"SELECT 1 /*plan*/"}, []string{"SELECT 2 /*refuse*/"}, nil, 2, "LG001"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mu.Lock()
			results = nil
			mu.Unlock()
			conn, fe := rawStartup(t, lg.addr)
			r := &rawProto{t: t, conn: conn, fe: fe}
			r.send(append(exec(c.first...), &pgproto3.Flush{})...)
			done := 0
			first := r.readUntil(func(m pgproto3.BackendMessage) bool {
				switch m.(type) {
				case *pgproto3.ErrorResponse:
					return true
				case *pgproto3.CommandComplete:
					done++
				}
				return done == len(c.first)
			})
			r.send(append(exec(c.second...), &pgproto3.Sync{})...)
			second := r.readUntil(isReady)
			code := first.code
			if code == "" {
				code = second.code
			}
			if code != c.code {
				t.Errorf("the client saw error %q (%s), want %q", code, second.message, c.code)
			}
			if c.code == "LG001" && second.message != refusal.Message {
				t.Errorf("the refusal reached the client as %q", second.message)
			}
			if n := len(first.notices) + len(second.notices); n != c.notices {
				t.Errorf("%d notices, want %d", n, c.notices)
			}
			mu.Lock()
			got := slices.Clone(results)
			mu.Unlock()
			if c.results != nil && !slices.Equal(got, c.results) {
				t.Errorf("results %q, want %q", got, c.results)
			}
			if r := r.query("SELECT 1"); r.code != "" {
				t.Errorf("the session is broken after the batch: %s %s", r.code, r.message)
			}
		})
	}
	// A cursor read a row at a time, as node-postgres's pg-cursor does:
	// each part is an Execute of the same portal with a row limit and a
	// Flush, the last one runs into an error and ends with a Sync. Each
	// part's Result counts from its own Execute (suspended ones ran).
	t.Run("a cursor read in parts", func(t *testing.T) {
		mu.Lock()
		results = nil
		mu.Unlock()
		conn, fe := rawStartup(t, lg.addr)
		r := &rawProto{t: t, conn: conn, fe: fe}
		suspended := func(m pgproto3.BackendMessage) bool { _, ok := m.(*pgproto3.PortalSuspended); return ok }
		r.send(&pgproto3.Parse{Query: "SELECT 1/(3-g) FROM generate_series(1, 5) g /*plan*/"}, &pgproto3.Bind{DestinationPortal: "c"},
			&pgproto3.Execute{Portal: "c", MaxRows: 1}, &pgproto3.Flush{})
		n := len(r.readUntil(suspended).notices)
		r.send(&pgproto3.Execute{Portal: "c", MaxRows: 1}, &pgproto3.Flush{})
		n += len(r.readUntil(suspended).notices)
		r.send(&pgproto3.Execute{Portal: "c"}, &pgproto3.Sync{})
		last := r.readUntil(isReady)
		n += len(last.notices)
		mu.Lock()
		got := slices.Clone(results)
		mu.Unlock()
		if want := []string{"22012/2", "22012/1", "22012/0"}; last.code != "22012" || n != 3 || !slices.Equal(got, want) {
			t.Errorf("error %q, %d notices, results %q; want 22012, 3 and %q", last.code, n, got, want)
		}
	})
}

// TestInterceptResultOfAFailedFlushedBatchAQueryEnds: a batch part fails
// after one of its statements completed, and the Query that ends the
// batch is skipped by PostgreSQL up to the client's Sync. The part's
// Result must count the statement that completed before the error, as
// for any failed sync point, and the skipped Query's Result reports the
// error with none of its own.
func TestInterceptResultOfAFailedFlushedBatchAQueryEnds(t *testing.T) {
	var mu sync.Mutex
	var results []string
	lg := startLockguard(t, func(c *proxy.Config) {
		c.Hooks = markerHook(func(sql string, b *proxy.Batch) *proxy.Verdict {
			if !strings.Contains(sql, "/*plan*/") {
				return nil
			}
			return &proxy.Verdict{Result: func(code string, completed int) {
				mu.Lock()
				results = append(results, fmt.Sprintf("%s/%d", code, completed))
				mu.Unlock()
			}}
		})
	})
	part := []pgproto3.FrontendMessage{
		&pgproto3.Parse{Query: "SELECT 1 /*plan*/"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Parse{Query: "SELECT 1/0"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{}}
	then := []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT 2 /*plan*/"}, &pgproto3.Sync{}}
	for _, pipelined := range []bool{false, true} {
		mu.Lock()
		results = nil
		mu.Unlock()
		r := rawSession(t, lg)
		if pipelined {
			r.send(append(part, then...)...)
		} else {
			r.send(part...)
			r.readUntil(isError)
			r.send(then...)
		}
		r.readUntil(isReady)
		if a := r.query("SELECT 3"); a.code != "" {
			t.Fatalf("pipelined %v: after it: %s %s", pipelined, a.code, a.message)
		}
		mu.Lock()
		got := strings.Join(results, " ")
		mu.Unlock()
		if want := "22012/1 22012/0"; got != want {
			t.Errorf("pipelined %v: results %q, want %q", pipelined, got, want)
		}
	}
}

// TestInterceptCancelReachesTheClientsStatement: a CancelRequest that comes
// while PostgreSQL runs a statement lockguard injected (Verdict.Before or
// After) waits for it to end, and then cancels the client's statement.
// Forwarded at once, it would cancel lockguard's statement: a SET
// lock_timeout ahead of a DDL, which would then run without it and with the
// client's cancel spent. A cancel that reaches PostgreSQL another way and
// hits a statement lockguard sent ahead of the client's is passed on to the
// client's. The injected statements here take half a second so that the
// cancel comes while they run; each leaves a row when it ran whole.
func TestInterceptCancelReachesTheClientsStatement(t *testing.T) {
	ctx := ctxT(t, 60*time.Second)
	tbl := createTable(t, ctx, "cancelinj", "who text")
	slow := func(who string) string {
		return "INSERT INTO " + tbl + " SELECT '" + who + "' FROM pg_sleep(0.5)"
	}
	lg := startLockguard(t, func(c *proxy.Config) {
		c.Hooks = markerHook(func(sql string, b *proxy.Batch) *proxy.Verdict {
			switch {
			case strings.Contains(sql, "/*slow-before*/"):
				return &proxy.Verdict{Before: []string{slow("before")}}
			case strings.Contains(sql, "/*slow-after*/"):
				return &proxy.Verdict{After: []string{slow("after")}}
			}
			return nil
		})
	})
	rows := func() []string {
		t.Helper()
		var got []string
		if err := connect(t, directDSN()).QueryRow(ctx, "SELECT coalesce(array_agg(who ORDER BY who), '{}') FROM "+tbl).Scan(&got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		if _, err := connect(t, directDSN()).Exec(ctx, "TRUNCATE "+tbl); err != nil {
			t.Fatal(err)
		}
		conn := connect(t, lg.superDSN())
		// The cancel comes while the injected statement ahead runs.
		canceled := make(chan struct{})
		go func() {
			defer close(canceled)
			time.Sleep(200 * time.Millisecond)
			conn.PgConn().CancelRequest(context.Background())
		}()
		start := time.Now()
		_, err := conn.Exec(ctx, "INSERT INTO "+tbl+" SELECT 'client' FROM pg_sleep(20) /*slow-before*/", mode)
		<-canceled
		if pgCode(err) != "57014" {
			t.Fatalf("mode %v: the client's statement, cancelled while lockguard's own ahead of it ran, ended with %v after %v, want 57014", mode, err, time.Since(start).Round(time.Millisecond))
		}
		if got := rows(); !slices.Equal(got, []string{"before"}) {
			t.Fatalf("mode %v: rows %q, want only lockguard's statement's ('before'): the cancel hit lockguard's statement, or missed the client's", mode, got)
		}
		// The cancel comes while the injected statement after the
		// client's runs: it finds the backend idle, and lockguard's
		// statement runs whole.
		if _, err := conn.Exec(ctx, "SELECT 1 /*slow-after*/", mode); err != nil {
			t.Fatal(err)
		}
		if err := conn.PgConn().CancelRequest(ctx); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT 1", mode).Scan(&n); err != nil {
			t.Fatalf("mode %v: the statement after a cancel that came while lockguard's own ran: %v", mode, err)
		}
		if got := rows(); !slices.Equal(got, []string{"after", "before"}) {
			t.Fatalf("mode %v: rows %q, want lockguard's statement after the client's to have run whole", mode, got)
		}
		// A cancel that does not pass through this lockguard (another
		// replica's, pg_cancel_backend from a console) hits lockguard's
		// statement ahead of the client's: lockguard passes it on.
		pid, console := conn.PgConn().PID(), connect(t, directDSN())
		canceled = make(chan struct{})
		go func() {
			defer close(canceled)
			time.Sleep(200 * time.Millisecond)
			console.Exec(context.Background(), "SELECT pg_cancel_backend($1)", pid)
		}()
		start = time.Now()
		_, err = conn.Exec(ctx, "INSERT INTO "+tbl+" SELECT 'client' FROM pg_sleep(20) /*slow-before*/", mode)
		<-canceled
		if pgCode(err) != "57014" {
			t.Fatalf("mode %v: the client's statement, whose backend was cancelled while lockguard's own ahead of it ran, ended with %v after %v, want 57014", mode, err, time.Since(start).Round(time.Millisecond))
		}
		if got := rows(); !slices.Equal(got, []string{"after", "before"}) {
			t.Fatalf("mode %v: rows %q, want no more: the cancel hit lockguard's statement, and the client's should have been cancelled", mode, got)
		}
		conn.Close(ctx)
	}
}
