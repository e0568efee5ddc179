package test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/internal/enforce"
)

// TestEnforceWarnsWhenARollbackUndoesItsTimeout: lockguard sets its
// lock_timeout ahead of a query string. A string that starts in a
// transaction block and rolls back (ROLLBACK, or ROLLBACK TO a savepoint
// made before the string) ahead of its DDL undoes that, and in a failed
// block lockguard can set nothing before the string's ROLLBACK TO lets it
// run on. The DDL then runs without lockguard's timeout; lockguard must say
// so with a WARNING rather than stay silent. Strings where its timeout does
// hold (a ROLLBACK the string starts with, which lockguard does first
// itself; a savepoint the string makes; a COMMIT before the rollback) get
// no warning, and their DDL gives up behind a held lock.
func TestEnforceWarnsWhenARollbackUndoesItsTimeout(t *testing.T) {
	lg, ctx, tbl := guardedTable(t, "unprotected")
	cases := []struct {
		pre  []string
		sql  string
		warn string // the rollback the WARNING names; "" for none
	}{
		{[]string{"BEGIN", "SAVEPOINT a"}, "ROLLBACK TO a; ALTER TABLE {t} ADD COLUMN x int", "ROLLBACK TO a"},
		{[]string{"BEGIN"}, "SELECT 1; ROLLBACK; ALTER TABLE {t} ADD COLUMN x int", "ROLLBACK"},
		{[]string{"BEGIN", "SAVEPOINT a"}, "SELECT 1; ROLLBACK TO a; ALTER TABLE {t} ADD COLUMN x int", "ROLLBACK TO a"},
		{[]string{"BEGIN", "SAVEPOINT a", "SELECT 1/0"}, "ROLLBACK TO a; ALTER TABLE {t} ADD COLUMN x int", "ROLLBACK TO a"},
		{[]string{"BEGIN", "SAVEPOINT a", "SELECT 1/0"}, "ROLLBACK TO a; COMMIT; ALTER TABLE {t} ADD COLUMN x int", "ROLLBACK TO a"},
		{[]string{"BEGIN"}, "ROLLBACK; ALTER TABLE {t} ADD COLUMN x int", ""},
		{[]string{"BEGIN"}, "SAVEPOINT b; ROLLBACK TO b; ALTER TABLE {t} ADD COLUMN x int", ""},
		{[]string{"BEGIN"}, "COMMIT; BEGIN; ROLLBACK; ALTER TABLE {t} ADD COLUMN x int", ""},
	}
	simple := pgx.QueryExecModeSimpleProtocol
	for _, c := range cases {
		conn, notices := connectNotices(t, lg.superDSN())
		for _, q := range c.pre {
			conn.Exec(ctx, q, simple) // SELECT 1/0 fails the block on purpose
		}
		sql := strings.ReplaceAll(c.sql, "{t}", tbl)
		if c.warn == "" {
			// lockguard's timeout holds: behind a held lock the DDL ends
			// with lockguard's 55P03 instead of waiting.
			_, release := holdLock(t, tbl)
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			_, err := conn.Exec(cctx, sql, simple)
			cancel()
			release()
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "55P03" || !strings.HasPrefix(pe.Message, "lockguard") {
				t.Errorf("%v then %q behind a held lock: %v, want lockguard's 55P03", c.pre, c.sql, err)
			}
		} else if _, err := conn.Exec(ctx, sql, simple); err != nil {
			t.Errorf("%v then %q: %v", c.pre, c.sql, err)
		}
		var warned []*pgconn.Notice
		for _, n := range notices.take() {
			if n.Code == guard.CodeWarning && strings.Contains(n.Message, "runs without lockguard's lock_timeout") {
				warned = append(warned, n)
			}
		}
		switch {
		case c.warn == "" && len(warned) > 0:
			t.Errorf("%v then %q: warned %q, though lockguard's timeout holds", c.pre, c.sql, warned[0].Message)
		case c.warn != "" && len(warned) != 1:
			t.Errorf("%v then %q: %d warnings that the DDL runs without lockguard's lock_timeout, want 1", c.pre, c.sql, len(warned))
		case c.warn != "" && (!strings.Contains(warned[0].Detail, c.warn+" ") || !strings.HasPrefix(warned[0].Hint, "Send "+c.warn+" as a query of its own")):
			t.Errorf("%v then %q: the warning's DETAIL %q and HINT %q do not name %s", c.pre, c.sql, warned[0].Detail, warned[0].Hint, c.warn)
		}
		conn.Exec(ctx, "ROLLBACK", simple)
		conn.Exec(ctx, "ALTER TABLE "+tbl+" DROP COLUMN IF EXISTS x", simple)
	}
	// A lockguard that sets no lock_timeout has nothing to warn about.
	conn, notices := connectNotices(t, startGuarded(t, func(g *enforce.Guard) { g.LockTimeout = 0 }).superDSN())
	for _, q := range []string{"BEGIN", "SELECT 1; ROLLBACK; ALTER TABLE " + tbl + " ADD COLUMN x int"} {
		if _, err := conn.Exec(ctx, q, simple); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, n := range notices.take() {
		if strings.HasPrefix(n.Message, "lockguard: ") {
			t.Errorf("with no lock_timeout configured: %q", n.Message)
		}
	}
}
