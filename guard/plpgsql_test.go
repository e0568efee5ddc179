package guard

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// A code block takes what its statements take: conditional where only some
// paths run them; a literal EXECUTE is read, a computed one is unknown; a
// COMMIT inside makes the block one that cannot be retried or run in a
// transaction block. TestLocksGroundTruth (test/) holds the modes against
// PostgreSQL's pg_locks.
func TestDoBlock(t *testing.T) {
	type lk struct {
		rel  string
		mode LockMode
		cond bool
	}
	cases := []struct {
		sql      string
		class    Class
		locks    []lk
		noTx     bool
		unknown  string // a substring of one Unknown
		settings []string
	}{
		{sql: "DO $$ BEGIN ALTER TABLE a ADD COLUMN c int; END $$", class: ClassDDL,
			locks: []lk{{"a", AccessExclusive, false}}},
		{sql: "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM b) THEN ALTER TABLE a ADD COLUMN c int; END IF; END $$", class: ClassDDL,
			locks: []lk{{"b", AccessShare, false}, {"a", AccessExclusive, true}}},
		{sql: "DO $$ DECLARE n int := (SELECT count(*) FROM d); BEGIN n := (SELECT max(id) FROM e); PERFORM 1 FROM f FOR UPDATE; END $$", class: ClassOther,
			locks: []lk{{"d", AccessShare, false}, {"e", AccessShare, false}, {"f", RowShare, false}}},
		{sql: "DO $$ DECLARE r record; BEGIN FOR r IN SELECT * FROM g LOOP DELETE FROM h; END LOOP; END $$", class: ClassOther,
			locks: []lk{{"g", AccessShare, false}, {"h", RowExclusive, true}}},
		{sql: "DO $$ BEGIN UPDATE i SET x = 1; EXCEPTION WHEN others THEN TRUNCATE j; END $$", class: ClassDDL,
			locks: []lk{{"i", RowExclusive, false}, {"j", AccessExclusive, true}}},
		{sql: "DO $$ BEGIN EXECUTE 'LOCK TABLE k IN SHARE MODE'; EXECUTE format('DROP TABLE %I', 'l'); END $$", class: ClassOther,
			locks: []lk{{"k", Share, false}}, unknown: "EXECUTE of a computed string"},
		{sql: "DO $$ BEGIN INSERT INTO m VALUES (1); COMMIT; ALTER TABLE m ADD COLUMN c int; END $$", class: ClassDDL,
			locks: []lk{{"m", AccessExclusive, false}}, noTx: true},
		{sql: "DO $$ BEGIN SET LOCAL lock_timeout = '2s'; DROP TABLE n; END $$", class: ClassDDL,
			locks: []lk{{"n", AccessExclusive, false}}, settings: []string{"lock_timeout"}},
		// The body may hold lockguard's own dollar quote.
		{sql: "DO $x$ BEGIN RAISE NOTICE '$lockguard$'; DROP TABLE o; END $x$", class: ClassDDL,
			locks: []lk{{"o", AccessExclusive, false}}},
		{sql: "DO LANGUAGE plpgsql 'BEGIN DROP TABLE p; END'", class: ClassDDL,
			locks: []lk{{"p", AccessExclusive, false}}},
		{sql: "DO $$ BEGIN EXECUTE 'DO $i$ BEGIN DROP TABLE q; END $i$'; END $$", class: ClassDDL,
			locks: []lk{{"q", AccessExclusive, false}}},
		{sql: "DO LANGUAGE plperl $$ 1 $$", class: ClassOther, unknown: "plperl code block"},
		{sql: "DO $$ BEGIN $$", class: ClassOther, unknown: "does not parse as PL/pgSQL"},
	}
	for _, c := range cases {
		an := Analyze(c.sql)
		if an.Err != nil || len(an.Statements) != 1 {
			t.Fatalf("%s: %v, %d statements", c.sql, an.Err, len(an.Statements))
		}
		st := &an.Statements[0]
		var got []lk
		for _, l := range st.Locks {
			got = append(got, lk{l.Rel.Name, l.Mode, l.Conditional})
		}
		if st.Tag != "DO" || st.Class != c.class || !slices.Equal(got, c.locks) || st.NoTxBlock != c.noTx {
			t.Errorf("%s:\n\tgot %s %v locks %v notx %v\n\twant DO %v locks %v notx %v", c.sql, st.Tag, st.Class, got, st.NoTxBlock, c.class, c.locks, c.noTx)
		}
		if c.unknown != "" && !slices.ContainsFunc(st.Unknown, func(u string) bool { return strings.Contains(u, c.unknown) }) {
			t.Errorf("%s: unknown %q, want one with %q", c.sql, st.Unknown, c.unknown)
		}
		var set []string
		for _, s := range st.Settings {
			set = append(set, s.Name)
		}
		if !slices.Equal(set, c.settings) {
			t.Errorf("%s: settings %v, want %v", c.sql, set, c.settings)
		}
	}
}

// FuzzDoBlock feeds PL/pgSQL bodies to the analysis of a DO block: the
// PL/pgSQL parser and the walk of its tree must not fail on any.
func FuzzDoBlock(f *testing.F) {
	f.Add("DECLARE r record; BEGIN IF true THEN EXECUTE 'ALTER TABLE t ADD c int'; END IF; FOR r IN SELECT * FROM t LOOP COMMIT; END LOOP; END")
	f.Add("BEGIN CASE WHEN x THEN DROP TABLE a; ELSE NULL; END CASE; RETURN QUERY EXECUTE 'SELECT 1'; EXCEPTION WHEN others THEN RAISE; END")
	f.Add("<<l>> DECLARE c CURSOR FOR SELECT * FROM b; BEGIN OPEN c; WHILE found LOOP EXIT l; END LOOP; END")
	f.Fuzz(func(t *testing.T, body string) {
		if strings.Contains(body, "$f$") {
			return
		}
		an := Analyze("DO $f$" + body + "$f$")
		if errors.Is(an.Err, errInternal) {
			t.Fatalf("body %q: %v", body, an.Err)
		}
		for i := range an.Statements {
			for _, l := range an.Statements[i].Locks {
				if l.Rel.Name == "" || l.Mode == NoLock || l.Mode > AccessExclusive {
					t.Fatalf("body %q: bad lock %+v", body, l)
				}
			}
		}
	})
}

// procCatalog adds procedures to the fixture catalog.
type procCatalog struct {
	*StaticCatalog
	procs map[string][3]string // name → language, parameters, body
}

func (c procCatalog) Procedure(name string, nargs int) (string, string, string, bool) {
	p, ok := c.procs[name]
	return p[0], p[1], p[2], ok
}

// CALL reads the procedure's body from the catalog, its parameters
// declared; without a catalog that knows procedures, or for another
// language, its locks are unknown. A procedure that calls itself stops at
// the nesting bound.
func TestCallReadsTheProcedure(t *testing.T) {
	cat := procCatalog{fixture(), map[string][3]string{
		"migrate":    {"plpgsql", "n integer, note text DEFAULT 'x'", "BEGIN n := n + 1; UPDATE orders SET note = note WHERE id = n; COMMIT; ALTER TABLE users ADD COLUMN c int; END"},
		"app.nested": {"plpgsql", "", "BEGIN CALL migrate(1); END"},
		"loop":       {"plpgsql", "", "BEGIN CALL loop(); END"},
		"perl":       {"plperl", "", "1"},
	}}
	// Procedures that call the next one twice, twelve deep: thousands of
	// statements to read, stopped at maxInner.
	for i := range 12 {
		cat.procs[fmt.Sprintf("fan%d", i)] = [3]string{"plpgsql", "", fmt.Sprintf("BEGIN CALL fan%d(); CALL fan%[1]d(); END", i+1)}
	}
	cat.procs["fan12"] = [3]string{"plpgsql", "", "BEGIN UPDATE orders SET note = 'x'; END"}
	az := NewAnalyzer(cat, 0)
	for _, c := range []struct {
		sql     string
		locks   []string
		noTx    bool
		unknown string
	}{
		{sql: "CALL migrate(1)", locks: []string{"orders ROW EXCLUSIVE", "users ACCESS EXCLUSIVE"}, noTx: true},
		{sql: "CALL app.nested()", locks: []string{"orders ROW EXCLUSIVE", "users ACCESS EXCLUSIVE"}, noTx: true},
		{sql: "CALL loop()", unknown: "nested too deeply"},
		{sql: "CALL perl()", unknown: "plperl procedure"},
		{sql: "CALL fan0()", locks: []string{"orders ROW EXCLUSIVE"}, unknown: "more than 1000 statements"},
		{sql: "CALL missing()", unknown: "no single procedure"},
	} {
		an := az.Analyze(c.sql)
		if an.Err != nil || len(an.Statements) != 1 {
			t.Fatalf("%s: %v", c.sql, an.Err)
		}
		st := &an.Statements[0]
		var got []string
		for _, l := range st.Locks {
			got = append(got, l.Rel.Name+" "+l.Mode.String())
		}
		if st.Tag != "CALL" || !slices.Equal(got, c.locks) || st.NoTxBlock != c.noTx {
			t.Errorf("%s: %s locks %v notx %v, want CALL %v notx %v", c.sql, st.Tag, got, st.NoTxBlock, c.locks, c.noTx)
		}
		if c.unknown != "" && !slices.ContainsFunc(st.Unknown, func(u string) bool { return strings.Contains(u, c.unknown) }) {
			t.Errorf("%s: unknown %q, want one with %q", c.sql, st.Unknown, c.unknown)
		}
	}
	// The rules judge what a called procedure runs, through procedures it
	// calls, and stop at a procedure that calls itself.
	for _, sql := range []string{"CALL migrate(1)", "CALL app.nested()"} {
		fs := (*Policy)(nil).Evaluate(az.Analyze(sql), &Context{Offline: true, Catalog: cat})
		if !slices.ContainsFunc(fs, func(f Finding) bool {
			return f.Rule == "missing-lock-timeout" && strings.Contains(f.Message, "ALTER TABLE takes ACCESS EXCLUSIVE on public.users")
		}) {
			t.Errorf("%s: findings %+v, want missing-lock-timeout for the ALTER TABLE inside", sql, fs)
		}
	}
	(*Policy)(nil).Evaluate(az.Analyze("CALL loop()"), &Context{Offline: true, Catalog: cat})
	if an := Analyze("CALL migrate(1)"); len(an.Statements) != 1 || len(an.Statements[0].Locks) != 0 ||
		!slices.ContainsFunc(an.Statements[0].Unknown, func(u string) bool { return strings.Contains(u, "only the catalog has") }) {
		t.Errorf("CALL without a catalog: %+v", an.Statements)
	}
}

// CALLs of one procedure with other arguments have other texts, so each
// misses the analysis cache; the analysis of the procedure's body is kept
// (Analyzer.codes) and reused, until Purge.
func TestCallKeepsTheBodysAnalysis(t *testing.T) {
	cat := procCatalog{fixture(), map[string][3]string{
		"process": {"plpgsql", "n integer", "BEGIN UPDATE orders SET note = 'x' WHERE id = n; IF n > 3 THEN DELETE FROM users WHERE id = n; END IF; END"},
	}}
	az := NewAnalyzer(cat, 100)
	var first []RelationLock
	for i := range 3 {
		an := az.Analyze(fmt.Sprintf("CALL process(%d)", i))
		st := &an.Statements[0]
		if i == 0 {
			first = st.Locks
			if len(first) < 2 || first[0].Conditional || !first[1].Conditional || len(st.block) != 2 {
				t.Fatalf("CALL process(0): locks %+v, block %q", st.Locks, st.block)
			}
		} else if !slices.Equal(st.Locks, first) || len(st.block) != 2 {
			t.Fatalf("CALL process(%d): locks %+v, block %q; want those of the first CALL", i, st.Locks, st.block)
		}
	}
	if n := len(az.codes.m); n != 1 {
		t.Fatalf("%d procedure bodies kept, want 1", n)
	}
	az.Purge()
	if n := len(az.codes.m); n != 0 {
		t.Fatalf("%d procedure bodies kept after Purge, want 0", n)
	}
	read := testing.AllocsPerRun(20, func() { az.Purge(); az.Analyze("CALL process(7)") })
	n := 1000
	kept := testing.AllocsPerRun(20, func() { n++; az.Analyze("CALL process(" + strconv.Itoa(n) + ")") })
	if kept >= read/2 {
		t.Fatalf("a CALL whose procedure's body is kept allocates %.0f times, one whose body is read %.0f: the body is not reused", kept, read)
	}
}

// TestCallBodiesBoundedBytes: a procedure's body can be megabytes; the kept
// bodies are bounded in bytes, like the facts cache.
func TestCallBodiesBoundedBytes(t *testing.T) {
	cat := procCatalog{fixture(), map[string][3]string{}}
	pad := strings.Repeat("z", 1<<20)
	for i := range 2 * factsCacheBytes >> 20 {
		cat.procs[fmt.Sprint("big", i)] = [3]string{"plpgsql", "", fmt.Sprintf("BEGIN UPDATE orders SET note = '%d%s'; END", i, pad)}
	}
	az := NewAnalyzer(cat, 100)
	for i := range 2 * factsCacheBytes >> 20 {
		an := az.Analyze(fmt.Sprint("CALL big", i, "()"))
		if len(an.Statements) != 1 || len(an.Statements[0].Locks) == 0 {
			t.Fatalf("CALL big%d(): %+v", i, an.Statements)
		}
	}
	checkTextBytes(t, "procedure bodies", az.codes, factsCacheBytes)
}
