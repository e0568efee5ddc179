package test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/internal/pgserver"
)

// modelRun runs one sequence of statements on a direct connection and in
// guard.Settings, the model lockguard keeps of the session.
type modelRun struct {
	t    *testing.T
	ctx  context.Context
	conn *pgconn.PgConn
	an   *guard.Analyzer
	s    guard.Settings
	seq  int
	log  []string
}

func (m *modelRun) fail(format string, args ...any) {
	m.t.Helper()
	m.t.Fatalf("sequence %d: %s\nafter:\n  %s", m.seq, fmt.Sprintf(format, args...), strings.Join(m.log, "\n  "))
}

// run executes sql on the server and, when it succeeds, in the model
// (apply); it returns whether it succeeded.
func (m *modelRun) run(sql string, apply bool) bool {
	m.t.Helper()
	inTx := m.conn.TxStatus() == 'T'
	m.log = append(m.log, sql)
	_, err := m.conn.Exec(m.ctx, sql).ReadAll()
	if err != nil {
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			m.fail("%s: %v", sql, err)
		}
		m.log[len(m.log)-1] += "  -- " + pe.Code
		if m.conn.TxStatus() == 'E' {
			m.s.Failed()
		}
		return false
	}
	if apply {
		a := m.an.Analyze(sql)
		if a.Err != nil || len(a.Statements) != 1 {
			m.fail("analysing %s: %v", sql, a.Err)
		}
		m.s.Apply(&a.Statements[0], inTx)
	}
	return true
}

// show returns the one value sql selects.
func (m *modelRun) show(sql string) string {
	m.t.Helper()
	rs, err := m.conn.Exec(m.ctx, sql).ReadAll()
	if err != nil || len(rs) != 1 || len(rs[0].Rows) != 1 {
		m.fail("%s: %v", sql, err)
	}
	return string(rs[0].Rows[0][0])
}

// txVocab is the transaction control, resets and failures both model tests
// mix in.
var txVocab = []func(r *rand.Rand) string{
	func(*rand.Rand) string { return "BEGIN" },
	func(*rand.Rand) string { return "COMMIT" },
	func(*rand.Rand) string { return "ROLLBACK" },
	func(*rand.Rand) string { return "COMMIT AND CHAIN" },
	func(*rand.Rand) string { return "ROLLBACK AND CHAIN" },
	func(r *rand.Rand) string { return "SAVEPOINT " + string(rune('a'+r.IntN(2))) },
	func(r *rand.Rand) string { return "RELEASE " + string(rune('a'+r.IntN(2))) },
	func(r *rand.Rand) string { return "ROLLBACK TO " + string(rune('a'+r.IntN(2))) },
	func(*rand.Rand) string { return "RESET ALL" },
	func(*rand.Rand) string { return "DISCARD ALL" },
	func(*rand.Rand) string { return "SELECT 1/0" },
}

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
	vocab := append([]func(r *rand.Rand) string{
		set, set, set,
		func(*rand.Rand) string { return "RESET lock_timeout" },
		func(*rand.Rand) string { return "SET LOCAL lock_timeout TO DEFAULT" },
		func(r *rand.Rand) string {
			return fmt.Sprintf("SELECT set_config('lock_timeout', '%s', %v)", values[r.IntN(len(values))], r.IntN(2) == 0)
		},
	}, txVocab...)
	const sequences, steps = 400, 40
	for seq := range sequences {
		r := rand.New(rand.NewPCG(uint64(seq), 7))
		m := &modelRun{t: t, ctx: ctx, conn: conns[seq%2], an: an, seq: seq}
		conn, s, run := m.conn, &m.s, m.run
		s.Start(func(n string) string {
			if n == "lock_timeout" && seq%2 == 1 {
				return "5s"
			}
			return ""
		})
		// reassert: a session-level restore ran in a block; stale: a
		// rollback that chained a new block undid it.
		reassert, stale := false, false
		fail := m.fail
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
			got := m.show("SHOW lock_timeout")
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

// TestSearchPathFollowsPostgres checks the schemas lockguard takes a
// session's unqualified names to resolve in (Settings.SearchPath, which
// admission matches held locks by) against PostgreSQL's
// current_schemas(false), through random sequences of SET [LOCAL]
// search_path, set_config, SET ROLE, SET SESSION AUTHORIZATION and the
// transaction control of TestSettingsFollowPostgres. Every schema a path
// names exists (but one), so the two must list the same schemas in the
// same order.
func TestSearchPathFollowsPostgres(t *testing.T) {
	ctx := ctxT(t, 120*time.Second)
	admin := connect(t, directDSN())
	roles := []string{"lg_sp_r1", "lg_sp_r2"}
	schemas := []string{"tenant_a", "tenant_b", `"Tenant_B"`, pgserver.Superuser, roles[0], roles[1]}
	var setup, cleanup []string
	for _, r := range roles {
		setup = append(setup, "DROP ROLE IF EXISTS "+r, "CREATE ROLE "+r+" NOLOGIN")
	}
	for _, n := range schemas {
		setup = append(setup, "CREATE SCHEMA IF NOT EXISTS "+n, "GRANT USAGE ON SCHEMA "+n+" TO PUBLIC")
		cleanup = append(cleanup, "DROP SCHEMA IF EXISTS "+n+" CASCADE")
	}
	for _, r := range roles {
		cleanup = append(cleanup, "DROP ROLE IF EXISTS "+r)
	}
	for _, q := range setup {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		for _, q := range cleanup {
			if _, err := admin.Exec(context.Background(), q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
	})
	exists := map[string]bool{"public": true}
	for _, n := range schemas {
		exists[strings.Trim(n, `"`)] = true
	}

	conn := connect(t, directDSN()).PgConn()
	an := guard.NewAnalyzer(nil, 0)
	paths := []string{"tenant_a", "tenant_a, public", `"$user", public`, `"$user"`, `"Tenant_B", tenant_b`,
		"Tenant_B", "public", "nosuch, tenant_b", "'tenant_a'", `tenant_b, "$user", tenant_a`}
	configs := []string{"tenant_a, public", `"$user",tenant_b`, "Tenant_B", `"Tenant_B"`, " tenant_b , tenant_a "}
	pick := func(r *rand.Rand, from []string) string { return from[r.IntN(len(from))] }
	local := func(r *rand.Rand) string { return []string{"", "LOCAL "}[r.IntN(2)] }
	vocab := append([]func(r *rand.Rand) string{
		func(r *rand.Rand) string { return "SET " + local(r) + "search_path = " + pick(r, paths) },
		func(r *rand.Rand) string { return "SET " + local(r) + "search_path = " + pick(r, paths) },
		func(r *rand.Rand) string {
			return fmt.Sprintf("SELECT set_config('search_path', '%s', %v)", strings.ReplaceAll(pick(r, configs), "'", "''"), r.IntN(2) == 0)
		},
		func(*rand.Rand) string { return "RESET search_path" },
		func(*rand.Rand) string { return "SET search_path TO DEFAULT" },
		func(r *rand.Rand) string { return "SET " + local(r) + "ROLE " + pick(r, append(roles, "NONE")) },
		func(*rand.Rand) string { return "RESET ROLE" },
		func(r *rand.Rand) string {
			return fmt.Sprintf("SELECT set_config('role', '%s', %v)", pick(r, roles), r.IntN(2) == 0)
		},
		func(r *rand.Rand) string {
			return "SET " + local(r) + "SESSION AUTHORIZATION " + pick(r, append(roles, "DEFAULT"))
		},
		func(*rand.Rand) string { return "RESET SESSION AUTHORIZATION" },
	}, txVocab...)
	const sequences, steps = 300, 40
	for seq := range sequences {
		r := rand.New(rand.NewPCG(uint64(seq), 11))
		m := &modelRun{t: t, ctx: ctx, conn: conn, an: an, seq: seq}
		m.s.Start(func(string) string { return "" })
		for range steps {
			m.run(vocab[r.IntN(len(vocab))](r), true)
			if conn.TxStatus() == 'E' {
				continue // a failed block shows nothing
			}
			got := m.show("SELECT array_to_string(current_schemas(false), ',')")
			var want []string
			for _, n := range m.s.SearchPath(pgserver.Superuser) {
				if exists[n] && !slices.Contains(want, n) {
					want = append(want, n)
				}
			}
			if got != strings.Join(want, ",") {
				m.fail("PostgreSQL resolves names in %q, lockguard's model in %q (from %q)", got, strings.Join(want, ","), m.s.SearchPath(pgserver.Superuser))
			}
		}
		if conn.TxStatus() != 'I' {
			m.run("ROLLBACK", true)
		}
		m.run("RESET ALL", true)
		m.run("RESET SESSION AUTHORIZATION", true)
	}
}
