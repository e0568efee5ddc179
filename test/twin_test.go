package test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestGuardedSessionMatchesDirect: lockguard's injections and restores
// must leave a session's own settings and outcomes as PostgreSQL alone
// would. Two twin sessions, one direct and one through a guarded
// lockguard, run the same seeded random query strings (one to three
// statements: SET [LOCAL], RESET, set_config, DDL on a table of their own,
// reads, transaction control, savepoints, failures), in the simple
// protocol or, for one statement, the extended one (prepared first or not);
// after each string their outcomes (SQLSTATE), transaction status,
// lock_timeout and statement_timeout must be the same.
//
// The one difference not compared is README's known limit: a rollback in a
// block undoes a restore lockguard made in it, and lockguard's timeout
// stays in force until the next string that starts outside a block. That
// is when a string that begins outside a block (or in a failed one, or
// ends the block it starts in) runs a DDL and leaves a block open, so that
// the restore runs in it, and the block is rolled back; or when a DDL
// string in a block makes a savepoint after lockguard's SET LOCAL and the
// client rolls back to it.
func TestGuardedSessionMatchesDirect(t *testing.T) {
	lg := startGuarded(t, nil)
	ctx := ctxT(t, 30*time.Second)
	// The tables first: their cleanup, which drops them, then runs after
	// the sessions, which may hold locks on them, are closed.
	direct, guarded := createTable(t, ctx, "twin_direct", "id int"), createTable(t, ctx, "twin_guarded", "id int")
	twins := [2]struct {
		conn *pgx.Conn
		tbl  string
	}{{connect(t, directDSN()), direct}, {connect(t, lg.superDSN()), guarded}}
	values := []string{"1s", "2s", "7s", "100ms", "250ms", "0"}
	pick := func(r *rand.Rand, from []string) string { return from[r.IntN(len(from))] }
	local := func(r *rand.Rand) string { return pick(r, []string{"", "LOCAL "}) }
	pieces := []func(r *rand.Rand) string{
		func(*rand.Rand) string { return "BEGIN" },
		func(*rand.Rand) string { return "COMMIT" },
		func(*rand.Rand) string { return "ROLLBACK" },
		func(*rand.Rand) string { return "COMMIT AND CHAIN" },
		func(*rand.Rand) string { return "ROLLBACK AND CHAIN" },
		func(*rand.Rand) string { return "SAVEPOINT a" },
		func(*rand.Rand) string { return "RELEASE a" },
		func(*rand.Rand) string { return "ROLLBACK TO a" },
		func(r *rand.Rand) string { return "SET " + local(r) + "lock_timeout = '" + pick(r, values) + "'" },
		func(r *rand.Rand) string { return "SET " + local(r) + "lock_timeout = '" + pick(r, values) + "'" },
		func(*rand.Rand) string { return "RESET lock_timeout" },
		func(*rand.Rand) string { return "SET LOCAL lock_timeout TO DEFAULT" },
		func(r *rand.Rand) string {
			return fmt.Sprintf("SELECT set_config('lock_timeout', '%s', %v)", pick(r, values), r.IntN(2) == 0)
		},
		func(r *rand.Rand) string {
			return "SET " + local(r) + "statement_timeout = '" + pick(r, []string{"30s", "45s"}) + "'"
		},
		func(*rand.Rand) string { return "RESET ALL" },
		func(*rand.Rand) string { return "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS c int" },
		func(*rand.Rand) string { return "ALTER TABLE {t} DROP COLUMN IF EXISTS c" },
		func(*rand.Rand) string { return "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS d int" },
		func(*rand.Rand) string { return "ALTER TABLE {t}_missing ADD COLUMN c int" },
		func(*rand.Rand) string { return "SELECT count(*) FROM {t}" },
		func(*rand.Rand) string { return "SELECT 1/0" },
	}
	var log []string
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s\nafter:\n  %s", fmt.Sprintf(format, args...), strings.Join(log, "\n  "))
	}
	code := func(err error) string {
		var pe *pgconn.PgError
		switch {
		case err == nil:
			return "ok"
		case errors.As(err, &pe):
			return pe.Code
		}
		fail("%v", err)
		return ""
	}
	// pending: lockguard's session-level restore ran (or failed) in a
	// block a string left open; savepoint: a DDL string in a block made a
	// savepoint after lockguard's SET LOCAL; undone: a rollback since may
	// have undone the restore.
	pending, savepoint, undone := false, false, false
	// 150 sequences of 25 strings, then sequences other seeds failed on
	// before the fixes they found.
	const sequences, steps = 150, 25
	seeds := make([][2]uint64, 0, sequences+5)
	for seq := range sequences {
		seeds = append(seeds, [2]uint64{uint64(seq), 13})
	}
	seeds = append(seeds, [2]uint64{13, 62}, [2]uint64{5, 65}, [2]uint64{134, 67}, [2]uint64{27, 69}, [2]uint64{129, 79})
	for _, seq := range seeds {
		r := rand.New(rand.NewPCG(seq[0], seq[1]))
		log = log[:0]
		for range steps {
			n := 1 + r.IntN(3)
			var parts []string
			for range n {
				parts = append(parts, pieces[r.IntN(len(pieces))](r))
			}
			sql := strings.Join(parts, "; ")
			mode := pgx.QueryExecModeSimpleProtocol
			if n == 1 {
				// Also a statement prepared first: a batch that only
				// parses and describes.
				mode = []pgx.QueryExecMode{mode, pgx.QueryExecModeExec, pgx.QueryExecModeCacheStatement}[r.IntN(3)]
			}
			start := twins[0].conn.PgConn().TxStatus()
			var codes [2]string
			for i, tw := range twins {
				_, err := tw.conn.Exec(ctx, strings.ReplaceAll(sql, "{t}", tw.tbl), mode)
				codes[i] = code(err)
			}
			log = append(log, fmt.Sprintf("%s  -- %s / %s", sql, codes[0], codes[1]))
			if codes[0] != codes[1] {
				fail("sequence %v: the direct session got %s, the guarded one %s", seq, codes[0], codes[1])
			}
			status := twins[0].conn.PgConn().TxStatus()
			if s := twins[1].conn.PgConn().TxStatus(); s != status {
				fail("sequence %v: transaction status %q direct, %q guarded", seq, status, s)
			}
			ddl := strings.Contains(sql, "ALTER TABLE")
			ends := strings.Contains(sql, "COMMIT") || strings.Contains(sql, "ROLLBACK")
			switch {
			case status == 'I':
				// lockguard restores ahead of the next string.
				pending, savepoint, undone = false, false, false
			case ddl && (start != 'T' || ends):
				// Injected at session level (before a string that
				// starts outside a block, in a failed one it rolls
				// back first, or that ends the block it starts in).
				pending, undone = true, undone || status == 'E' || strings.Contains(sql, "ROLLBACK")
			case ddl && strings.Contains(sql, "SAVEPOINT"):
				savepoint = true
			case (pending || savepoint) && (start == 'E' || ends || strings.Contains(sql, "CHAIN")):
				undone = true
			}
			if status == 'E' || undone {
				continue
			}
			var got [2]string
			for i, tw := range twins {
				var lt, st string
				if err := tw.conn.QueryRow(ctx, "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')",
					pgx.QueryExecModeSimpleProtocol).Scan(&lt, &st); err != nil {
					fail("sequence %v: reading the settings: %v", seq, err)
				}
				got[i] = "lock_timeout " + lt + ", statement_timeout " + st
			}
			if got[0] != got[1] {
				fail("sequence %v: direct session has %s, the guarded one %s", seq, got[0], got[1])
			}
		}
		for _, tw := range twins {
			if _, err := tw.conn.Exec(ctx, "ROLLBACK; RESET ALL", pgx.QueryExecModeSimpleProtocol); err != nil {
				fail("sequence %v: ending: %v", seq, err)
			}
		}
		pending, savepoint, undone = false, false, false
	}
}
