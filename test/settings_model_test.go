package test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lockguard/lockguard/guard"
)

// TestSettingsFollowPostgres checks guard.Settings, lockguard's model of a
// session's lock_timeout, against PostgreSQL itself: random sequences of
// SET, SET LOCAL, RESET, set_config, transaction ends, savepoints and
// failing statements run on a direct connection, and after each the value
// PostgreSQL shows must be the one the model holds. Between them run
// lockguard's own injections and restores (guard.Inject and
// Settings.AppendRestore), also at session level in a block opened after
// the injection, as when a query string begins a block after its DDL: a
// restore that does not put back what the model holds shows up in a later
// comparison. As lockguard does, a session-level restore that ran in a
// block is done again ahead of the next statement outside a block (a
// rollback may have undone it); until then, in a block chained to the one
// rolled back, lockguard's value stays in force (README), and that is the
// one state not compared.
func TestSettingsFollowPostgres(t *testing.T) {
	ctx := ctxT(t, 120*time.Second)
	// Every other sequence on a session that starts with a lock_timeout
	// of its own, which RESET returns to.
	conns := []*pgconn.PgConn{connect(t, directDSN()).PgConn(), connect(t, directDSN()+"&lock_timeout=5s").PgConn()}
	an := guard.NewAnalyzer(nil, 0)
	values := []string{"1s", "2s", "7s", "250ms", "0"}
	set := func(r *rand.Rand) string {
		local := []string{"", "LOCAL "}[r.IntN(2)]
		return "SET " + local + "lock_timeout = '" + values[r.IntN(len(values))] + "'"
	}
	vocab := []func(r *rand.Rand) string{
		func(*rand.Rand) string { return "BEGIN" },
		func(*rand.Rand) string { return "COMMIT" },
		func(*rand.Rand) string { return "ROLLBACK" },
		func(*rand.Rand) string { return "COMMIT AND CHAIN" },
		func(*rand.Rand) string { return "ROLLBACK AND CHAIN" },
		func(r *rand.Rand) string { return "SAVEPOINT " + string(rune('a'+r.IntN(2))) },
		func(r *rand.Rand) string { return "RELEASE " + string(rune('a'+r.IntN(2))) },
		func(r *rand.Rand) string { return "ROLLBACK TO " + string(rune('a'+r.IntN(2))) },
		set, set,
		func(*rand.Rand) string { return "RESET lock_timeout" },
		func(*rand.Rand) string { return "SET LOCAL lock_timeout TO DEFAULT" },
		func(*rand.Rand) string { return "RESET ALL" },
		func(*rand.Rand) string { return "DISCARD ALL" },
		func(r *rand.Rand) string {
			return fmt.Sprintf("SELECT set_config('lock_timeout', '%s', %v)", values[r.IntN(len(values))], r.IntN(2) == 0)
		},
		func(*rand.Rand) string { return "SELECT 1/0" },
	}
	const sequences, steps = 400, 40
	for seq := range sequences {
		r := rand.New(rand.NewPCG(uint64(seq), 7))
		var s guard.Settings
		conn := conns[seq%2]
		s.Start(func(n string) string {
			if n == "lock_timeout" && seq%2 == 1 {
				return "5s"
			}
			return ""
		})
		var log []string
		// reassert: a session-level restore ran in a block; stale: a
		// rollback that chained a new block undid it.
		reassert, stale := false, false
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("sequence %d: %s\nafter:\n  %s", seq, fmt.Sprintf(format, args...), strings.Join(log, "\n  "))
		}
		// run executes sql on the server and, when it succeeds, in the
		// model (apply); it returns whether it succeeded.
		run := func(sql string, apply bool) bool {
			inTx := conn.TxStatus() == 'T'
			log = append(log, sql)
			_, err := conn.Exec(ctx, sql).ReadAll()
			if err != nil {
				var pe *pgconn.PgError
				if !errors.As(err, &pe) {
					fail("%s: %v", sql, err)
				}
				log[len(log)-1] += "  -- " + pe.Code
				if conn.TxStatus() == 'E' {
					s.Failed()
				}
				return false
			}
			if apply {
				a := an.Analyze(sql)
				if a.Err != nil || len(a.Statements) != 1 {
					fail("analysing %s: %v", sql, a.Err)
				}
				s.Apply(&a.Statements[0], inTx)
			}
			return true
		}
		restore := func(inTx bool) {
			for _, q := range s.AppendRestore(nil, "lock_timeout", inTx) {
				if !run(q, false) {
					fail("lockguard's restore %q failed", q)
				}
			}
		}
		// redo is what lockguard sends ahead of a client's statement.
		redo := func() {
			if reassert && conn.TxStatus() == 'I' {
				restore(false)
				reassert, stale = false, false
			}
		}
		compare := func() {
			redo()
			if conn.TxStatus() == 'E' || stale {
				return // a failed block shows nothing; stale is README's limit
			}
			rs, err := conn.Exec(ctx, "SHOW lock_timeout").ReadAll()
			if err != nil {
				fail("SHOW: %v", err)
			}
			got := string(rs[0].Rows[0][0])
			want, ok := s.Effective("lock_timeout")
			if !ok {
				want = "0"
			}
			if got != want {
				fail("PostgreSQL shows lock_timeout %q, lockguard's model %q", got, want)
			}
		}
		for range steps {
			redo()
			switch k := r.IntN(len(vocab) + 2); {
			case k < len(vocab):
				sql := vocab[k](r)
				failed := conn.TxStatus() == 'E'
				if run(sql, true) && reassert && conn.TxStatus() == 'T' &&
					(strings.HasPrefix(sql, "ROLLBACK AND") || failed && strings.HasPrefix(sql, "COMMIT AND")) {
					stale = true
				}
			case conn.TxStatus() == 'E':
				continue // lockguard injects nothing in a failed block
			case k == len(vocab):
				// An injection around a DDL, in or out of a block.
				inTx := conn.TxStatus() == 'T'
				if !run(guard.Inject("lock_timeout", 300*time.Millisecond, inTx), false) {
					fail("lockguard's injection failed")
				}
				restore(inTx)
			case conn.TxStatus() == 'I':
				// "BEGIN; ALTER …; SET …" in one string: the
				// injection before it at session level, the restore
				// after it in the block it leaves open.
				if !run(guard.Inject("lock_timeout", 300*time.Millisecond, false), false) {
					fail("lockguard's injection failed")
				}
				run("BEGIN", true)
				for range r.IntN(3) {
					run(set(r), true)
				}
				if conn.TxStatus() == 'T' {
					restore(false)
					reassert = true
				}
			}
			compare()
		}
		if conn.TxStatus() != 'I' {
			run("ROLLBACK", true)
		}
		run("RESET ALL", true)
		compare()
	}
}
