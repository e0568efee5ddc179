package test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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

// TestInterceptRetry retries a statement that fails with 55P03 until the lock
// is released, and gives up with the verdict's final error otherwise.
func TestInterceptRetry(t *testing.T) {
	var attempts atomic.Int32
	lg := startLockguard(t, func(c *proxy.Config) {
		c.Hooks = markerHook(func(sql string, b *proxy.Batch) *proxy.Verdict {
			if !strings.Contains(sql, "/*retry*/") {
				return nil
			}
			return &proxy.Verdict{
				Before: []string{"SET lock_timeout = '100ms'"},
				After:  []string{"RESET lock_timeout"},
				Retry: func(attempt int, code string) (bool, time.Duration, *proxy.Error) {
					attempts.Add(1)
					if code == "55P03" && attempt < 8 {
						return true, 100 * time.Millisecond, nil
					}
					return false, 0, &proxy.Error{Code: "55P03", Message: "lockguard: gave up", Detail: "attempts", Hint: "later"}
				},
			}
		})
	})
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
