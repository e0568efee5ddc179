package bench

import (
	"context"
	"strconv"
	"testing"

	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/proxy"
)

// Statements of pgbench's tpcb-like transaction and a DDL, as lockguard sees
// them with the extended protocol (parameters, so the text repeats).
var analysisCases = []struct{ name, sql string }{
	{"select", "SELECT abalance FROM pgbench_accounts WHERE aid = $1"},
	{"update", "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2"},
	{"insert", "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)"},
	{"sqlcommenter", "SELECT abalance FROM pgbench_accounts WHERE aid = $1 /*traceparent='00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'*/"},
	{"alter", "ALTER TABLE orders DROP CONSTRAINT orders_user_fk"},
}

// BenchmarkAnalysisCacheHit is a statement whose text was analysed before:
// what every repeated statement costs the guard (target: ≤ 100 ns, 0 allocs).
func BenchmarkAnalysisCacheHit(b *testing.B) {
	for _, tc := range analysisCases {
		b.Run(tc.name, func(b *testing.B) {
			a := guard.NewAnalyzer(nil, 10000)
			a.Analyze(tc.sql)
			b.ReportAllocs()
			for b.Loop() {
				a.Analyze(tc.sql)
			}
		})
	}
}

// BenchmarkAnalysisCacheMiss is a statement never seen before: a parse by
// libpg_query and the mapping to locks. In the simple protocol every text
// with new literals is one, unless the first-keyword fast path skips it
// (BenchmarkAdmission/no-hazard).
func BenchmarkAnalysisCacheMiss(b *testing.B) {
	for _, tc := range analysisCases {
		b.Run(tc.name, func(b *testing.B) {
			a := guard.NewAnalyzer(nil, 0) // no cache: every call parses
			b.ReportAllocs()
			for b.Loop() {
				a.Analyze(tc.sql)
			}
		})
	}
}

// TestAnalysisCacheHitAllocations asserts that a cached analysis allocates
// nothing.
func TestAnalysisCacheHitAllocations(t *testing.T) {
	for _, tc := range analysisCases {
		a := guard.NewAnalyzer(nil, 10000)
		if an := a.Analyze(tc.sql); an.Err != nil {
			t.Fatalf("%s: %v", tc.name, an.Err)
		}
		if n := testing.AllocsPerRun(1000, func() { a.Analyze(tc.sql) }); n != 0 {
			t.Errorf("%s: %v allocations per cached analysis, want 0", tc.name, n)
		}
	}
}

// BenchmarkAdmission is the guard's whole decision for one statement (what
// Hooks.Batch costs per Query or Sync): with no hazard anywhere (the normal
// case: one atomic load and the first-keyword fast path), with a hazard on
// an unrelated table (every statement is analysed and its locks checked),
// and with a conflicting hazard (the statement is shed; hold budget 0).
func BenchmarkAdmission(b *testing.B) {
	hazard := []guard.Hazard{{Rel: guard.RelName{Schema: "public", Name: "users"}, Mode: guard.AccessExclusive,
		PID: 42, Source: "monitor", Query: "ALTER TABLE orders DROP CONSTRAINT $1"}}
	for _, tc := range []struct {
		name   string
		sql    string
		hazard bool
	}{
		{"no-hazard", "SELECT abalance FROM pgbench_accounts WHERE aid = $1", false},
		{"hazard-elsewhere", "SELECT abalance FROM pgbench_accounts WHERE aid = $1", true},
		{"hazard-conflict", "SELECT * FROM users WHERE id = $1", true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			board := &guard.Board{}
			if tc.hazard {
				board.Add(hazard)
			}
			g := newGuard(board)
			g.Admission.HoldBudget = 0
			hooks := g.Hooks()
			ps := &proxy.Session{}
			ps.State = hooks.Open(ps)
			batch := &proxy.Batch{Simple: true, Complete: true, TxStatus: 'I',
				Stmts: []proxy.BatchStmt{{SQL: []byte(tc.sql), Executed: true}}}
			ctx := context.Background()
			shed := 0
			decide := func() {
				if v := hooks.Batch(ctx, ps, batch); v != nil && v.Hold != nil {
					if e := v.Hold(ctx); e != nil {
						shed++
					}
				}
			}
			decide()
			b.ReportAllocs()
			shed = 0
			for b.Loop() {
				decide()
			}
			if want := tc.name == "hazard-conflict"; (shed > 0) != want {
				b.Fatalf("shed %d statements; want shedding %v", shed, want)
			}
		})
	}
}

// TestAdmissionWithoutHazardAllocations: the decision for a plain statement
// allocates nothing when no hazard exists. (With a hazard on another table it
// allocates once, for the session's search path: BenchmarkAdmission shows it.)
func TestAdmissionWithoutHazardAllocations(t *testing.T) {
	hooks := newGuard(&guard.Board{}).Hooks()
	ps := &proxy.Session{}
	ps.State = hooks.Open(ps)
	batch := &proxy.Batch{Simple: true, Complete: true, TxStatus: 'I',
		Stmts: []proxy.BatchStmt{{SQL: []byte("SELECT abalance FROM pgbench_accounts WHERE aid = $1"), Executed: true}}}
	if v := hooks.Batch(context.Background(), ps, batch); v != nil {
		t.Fatalf("verdict %+v for a plain read", v)
	}
	if n := testing.AllocsPerRun(1000, func() { hooks.Batch(context.Background(), ps, batch) }); n != 0 {
		t.Errorf("%v allocations per decision, want 0", n)
	}
}

// BenchmarkHazardConflict is the lock check of one relation against a board
// of n hazards on other tables.
func BenchmarkHazardConflict(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			hs := make([]guard.Hazard, n)
			for i := range hs {
				hs[i] = guard.Hazard{Rel: guard.RelName{Schema: "public", Name: "t" + strconv.Itoa(i)}, Mode: guard.AccessExclusive, PID: 42}
			}
			board := &guard.Board{}
			board.Add(hs)
			rel := guard.RelName{Schema: "public", Name: "pgbench_accounts"}
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := board.Snapshot().Conflict(rel, guard.AccessShare, 7, "", nil); ok {
					b.Fatal("conflict")
				}
			}
		})
	}
}
