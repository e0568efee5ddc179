package test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lockguard/lockguard/guard"
)

// TestSuggestedNamesMatchPostgres checks the names lockguard writes into its
// suggested rewrites for an unnamed constraint or serial column against the
// names PostgreSQL gives them: running the rewrite instead of the original
// must leave the same schema, or a later migration that drops the
// constraint by its default name fails. Long names are where this goes
// wrong: PostgreSQL cuts the table's and the columns' part, the longer
// first, and keeps the suffix whole (makeObjectName), at a character
// boundary.
func TestSuggestedNamesMatchPostgres(t *testing.T) {
	conn := connect(t, pg.DSN("postgres", "", "postgres"))
	ctx := ctxT(t, time.Minute)
	long := func(prefix string, n int) string { return prefix + strings.Repeat("x", n-len(prefix)) }
	tables := []string{
		"orders",
		long("t60_", 60),
		long("t63_", 63),
		strings.Repeat("ñ", 31), // 62 bytes: cut inside a character unless at a boundary
		long("t40_", 40),
	}
	cols := [][2]string{
		{"a", "b"},
		{long("c60_", 60), long("d60_", 60)},
		{long("c30_", 30), long("d30_", 30)},
		{"é" + strings.Repeat("ü", 30), "b"},
	}
	type probe struct {
		rule string
		sql  string         // with %[1]s the table, %[2]s and %[3]s the columns
		hint *regexp.Regexp // the name in the hint (in the message with inMsg)
		name string         // query for PostgreSQL's name; $1 the table
		adds bool           // the statement adds column %[2]s
		// inMsg: the name is in the finding's message, not its hint.
		inMsg bool
	}
	conname := func(kind string) string {
		return `SELECT conname FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = '` + kind + `'`
	}
	validate := regexp.MustCompile(`VALIDATE CONSTRAINT ("(?:[^"]|"")*"|\S+);`)
	excludeName := regexp.MustCompile(`^add-exclusion-constraint: EXCLUDE constraint ("(?:[^"]|"")*"|\S+) added to`)
	probes := []probe{
		{"add-fk-validated", "ALTER TABLE %[1]s ADD FOREIGN KEY (%[2]s, %[3]s) REFERENCES parent (id, id2)", validate, conname("f"), false, false},
		{"add-fk-validated", "ALTER TABLE %[1]s ADD FOREIGN KEY (%[2]s) REFERENCES parent (id)", validate, conname("f"), false, false},
		{"add-check-validated", "ALTER TABLE %[1]s ADD CHECK (%[2]s > 0)", validate, conname("c"), false, false},
		{"add-check-validated", "ALTER TABLE %[1]s ADD CHECK (%[2]s > %[3]s)", validate, conname("c"), false, false},
		{"add-unique-constraint", "ALTER TABLE %[1]s ADD UNIQUE (%[2]s, %[3]s)",
			regexp.MustCompile(`ADD CONSTRAINT ("(?:[^"]|"")*"|\S+) UNIQUE USING INDEX`), conname("u"), false, false},
		{"add-primary-key", "ALTER TABLE %[1]s ADD PRIMARY KEY (%[2]s)",
			regexp.MustCompile(`ADD CONSTRAINT ("(?:[^"]|"")*"|\S+) PRIMARY KEY USING INDEX`), conname("p"), false, false},
		{"add-column-inline-constraint", "ALTER TABLE %[1]s ADD COLUMN n int REFERENCES parent (id)", validate, conname("f"), false, false},
		{"add-column-serial-identity", "ALTER TABLE %[1]s ADD COLUMN %[2]s serial",
			regexp.MustCompile(`CREATE SEQUENCE ("(?:[^"]|"")*"|\S+)(?: AS \w+)? OWNED BY`),
			`SELECT c.relname FROM pg_depend d JOIN pg_class c ON c.oid = d.objid WHERE d.refobjid = to_regclass($1) AND c.relkind = 'S'`, true, false},
		// An index's name covers its INCLUDE columns.
		{"add-unique-constraint", "ALTER TABLE %[1]s ADD UNIQUE (%[2]s) INCLUDE (%[3]s)",
			regexp.MustCompile(`ADD CONSTRAINT ("(?:[^"]|"")*"|\S+) UNIQUE USING INDEX`), conname("u"), false, false},
		// An EXCLUDE constraint is named after its elements: an
		// expression after the function it calls, or "expr".
		{"add-exclusion-constraint", "ALTER TABLE %[1]s ADD EXCLUDE USING btree (%[2]s WITH =, %[3]s WITH =)",
			excludeName, conname("x"), false, true},
		{"add-exclusion-constraint", "ALTER TABLE %[1]s ADD EXCLUDE USING btree ((%[2]s + 1) WITH =, abs(%[3]s) WITH =, (%[3]s::text) WITH =)",
			excludeName, conname("x"), false, true},
	}
	unquote := func(s string) string {
		if strings.HasPrefix(s, `"`) {
			return strings.ReplaceAll(s[1:len(s)-1], `""`, `"`)
		}
		return s
	}
	mustExec := execer(t, ctx, conn)
	mustExec(`DROP SCHEMA IF EXISTS names CASCADE; CREATE SCHEMA names; SET search_path = names;
		CREATE TABLE parent (id int, id2 int, PRIMARY KEY (id), UNIQUE (id, id2))`)
	defer conn.Exec(ctx, "DROP SCHEMA names CASCADE")
	checked := 0
	for _, tbl := range tables {
		for _, cs := range cols {
			for _, p := range probes {
				qt := pgx.Identifier{tbl}.Sanitize()
				a, b := pgx.Identifier{cs[0]}.Sanitize(), pgx.Identifier{cs[1]}.Sanitize()
				sql := fmt.Sprintf(p.sql, qt, a, b)
				var want []string
				for _, f := range guard.DefaultPolicy().Evaluate(guard.Analyze(sql), &guard.Context{}) {
					if f.Rule != p.rule {
						continue
					}
					text := f.Hint
					if p.inMsg {
						text = f.Message
					}
					if m := p.hint.FindStringSubmatch(text); m != nil {
						want = append(want, unquote(m[1]))
					}
				}
				if len(want) == 0 {
					t.Errorf("%s: no %s finding with a name in its hint", sql, p.rule)
					continue
				}
				create := fmt.Sprintf("DROP TABLE IF EXISTS %[1]s; CREATE TABLE %[1]s (%[2]s int NOT NULL, %[3]s int NOT NULL)", qt, a, b)
				if p.adds {
					create = fmt.Sprintf("DROP TABLE IF EXISTS %[1]s; CREATE TABLE %[1]s (%[2]s int NOT NULL)", qt, b)
				}
				mustExec(create)
				mustExec(sql)
				var got string
				if err := conn.QueryRow(ctx, p.name, "names."+qt).Scan(&got); err != nil {
					t.Fatalf("%s: reading the name PostgreSQL gave: %v", sql, err)
				}
				checked++
				if want[0] != got {
					t.Errorf("%s\n lockguard's hint names it %q (%d bytes)\n PostgreSQL named it %q (%d bytes)", sql, want[0], len(want[0]), got, len(got))
				}
			}
		}
	}
	t.Logf("%d names compared", checked)
}

// TestRewritesMatchPostgres runs the online rewrite in lockguard's hint
// for a statement that adds a constraint (CREATE UNIQUE INDEX CONCURRENTLY
// and ADD CONSTRAINT … USING INDEX for UNIQUE and PRIMARY KEY; NOT VALID
// and VALIDATE for FOREIGN KEY and CHECK; the CHECK that proves SET NOT
// NULL), as a table constraint or inline in ADD COLUMN, on one table, and
// the original statement on a twin in another schema, and compares what
// PostgreSQL made of each: the columns, and each constraint's name,
// definition and deferrability and its index's definition. A rewrite that
// drops INCLUDE, NULLS NOT DISTINCT, a storage parameter, the tablespace,
// DEFERRABLE or a referential action leaves a different schema.
func TestRewritesMatchPostgres(t *testing.T) {
	conn := connect(t, pg.DSN("postgres", "", "postgres"))
	ctx := ctxT(t, time.Minute)
	mustExec := execer(t, ctx, conn)
	mustExec("DROP SCHEMA IF EXISTS rw_orig CASCADE; DROP SCHEMA IF EXISTS rw_hint CASCADE; CREATE SCHEMA rw_orig; CREATE SCHEMA rw_hint")
	defer conn.Exec(ctx, "DROP SCHEMA rw_orig CASCADE; DROP SCHEMA rw_hint CASCADE")
	cases := []struct{ rule, sql, setup string }{
		{"add-unique-constraint", "ALTER TABLE t ADD UNIQUE (a, b)", ""},
		{"add-unique-constraint", "ALTER TABLE t ADD UNIQUE (a) INCLUDE (b)", ""},
		{"add-unique-constraint", "ALTER TABLE t ADD UNIQUE NULLS NOT DISTINCT (b, a) WITH (fillfactor = 70, deduplicate_items = off)", ""},
		{"add-unique-constraint", `ALTER TABLE t ADD CONSTRAINT "U q" UNIQUE (b) USING INDEX TABLESPACE pg_default DEFERRABLE INITIALLY DEFERRED`, ""},
		{"add-primary-key", "ALTER TABLE t ADD PRIMARY KEY (a) INCLUDE (b)", ""},
		{"add-primary-key", "ALTER TABLE t ADD CONSTRAINT pk PRIMARY KEY (a, b) DEFERRABLE", ""},
		{"add-column-inline-constraint", "ALTER TABLE t ADD COLUMN z int UNIQUE NULLS NOT DISTINCT WITH (fillfactor = 80)", ""},
		{"add-column-inline-constraint", "ALTER TABLE t ADD COLUMN z int CONSTRAINT zk PRIMARY KEY DEFERRABLE INITIALLY DEFERRED", ""},
		{"add-fk-validated", "ALTER TABLE t ADD FOREIGN KEY (a, b) REFERENCES parent (id, id2) MATCH FULL ON DELETE CASCADE ON UPDATE SET NULL DEFERRABLE INITIALLY DEFERRED", ""},
		{"add-fk-validated", "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES parent ON DELETE SET NULL (a)", ""},
		{"add-check-validated", "ALTER TABLE t ADD CHECK (a > 0 AND b < a) NO INHERIT", ""},
		{"add-column-inline-constraint", "ALTER TABLE t ADD COLUMN z int REFERENCES parent (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED", ""},
		{"add-column-inline-constraint", "ALTER TABLE t ADD COLUMN z int CONSTRAINT zc CHECK (z > 0) REFERENCES parent (id) NOT DEFERRABLE", ""},
		{"set-not-null", "ALTER TABLE t ALTER COLUMN b SET NOT NULL", ""},
		{"create-index-blocking", "CREATE INDEX ON t (lower(b::text)) INCLUDE (a) WITH (fillfactor = 50) WHERE a > 0", ""},
		{"create-index-blocking", "CREATE UNIQUE INDEX IF NOT EXISTS tu ON t USING btree (b DESC NULLS LAST) NULLS NOT DISTINCT", ""},
		{"drop-index-blocking", "DROP INDEX ti CASCADE", "CREATE INDEX ti ON t (b)"},
		{"drop-index-blocking", "DROP INDEX IF EXISTS ti, tj", "CREATE INDEX ti ON t (b); CREATE INDEX tj ON t (a, b)"},
	}
	describe := func(schema string) string {
		t.Helper()
		return strings.Join(queryStrings(t, ctx, conn, `SELECT format('%s %s not_null=%s default=%s', attname, format_type(atttypid, atttypmod), attnotnull,
				pg_get_expr(d.adbin, d.adrelid))
			FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
			WHERE a.attrelid = ($1 || '.t')::regclass AND a.attnum > 0 AND NOT a.attisdropped
			UNION ALL
			SELECT format('%s %s %s deferrable=%s deferred=%s; %s', c.conname, c.contype, replace(pg_get_constraintdef(c.oid), $1 || '.', ''),
				c.condeferrable, c.condeferred, replace(pg_get_indexdef(c.conindid), $1 || '.', ''))
			FROM pg_constraint c WHERE c.conrelid = ($1 || '.t')::regclass
			UNION ALL
			SELECT replace(pg_get_indexdef(i.indexrelid), $1 || '.', '') || CASE WHEN i.indisvalid THEN '' ELSE ' (INVALID)' END
			FROM pg_index i WHERE i.indrelid = ($1 || '.t')::regclass
			ORDER BY 1`, schema), "\n  ")
	}
	var version int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		var hint string
		// The version of the server the test runs against: the hint
		// then holds one way, not each version's.
		for _, f := range guard.DefaultPolicy().Evaluate(guard.Analyze(c.sql), &guard.Context{ServerVersion: version}) {
			if f.Rule == c.rule {
				hint = f.Hint
			}
		}
		if hint == "" {
			t.Errorf("%s: no %s finding with a hint", c.sql, c.rule)
			continue
		}
		for _, s := range []string{"rw_orig", "rw_hint"} {
			mustExec("DROP TABLE IF EXISTS " + s + ".t, " + s + ".parent; CREATE TABLE " + s + ".parent (id int PRIMARY KEY, id2 int, UNIQUE (id, id2)); CREATE TABLE " + s + ".t (a int NOT NULL, b int)")
		}
		for _, s := range []string{"rw_orig", "rw_hint"} {
			if c.setup != "" {
				mustExec("SET search_path = " + s + "; " + c.setup)
			}
		}
		mustExec("SET search_path = rw_orig")
		mustExec(c.sql)
		mustExec("SET search_path = rw_hint")
		runHint(mustExec, hint)
		mustExec("RESET search_path")
		if orig, rewritten := describe("rw_orig"), describe("rw_hint"); orig != rewritten {
			t.Errorf("%s\n the original made:\n  %s\n lockguard's rewrite made:\n  %s\n (the rewrite: %s)", c.sql, orig, rewritten, hint)
		}
	}
}

// TestSerialRewriteSequenceMatchesPostgres: the rewrite lockguard hints for
// adding a serial or identity column (the bare column, then its sequence
// and default; the backfill is left to the author) makes the sequence
// PostgreSQL would have made: the same name, counting in the column's type
// up to the same maximum.
func TestSerialRewriteSequenceMatchesPostgres(t *testing.T) {
	conn := connect(t, pg.DSN("postgres", "", "postgres"))
	ctx := ctxT(t, time.Minute)
	mustExec := execer(t, ctx, conn)
	defer conn.Exec(ctx, "DROP SCHEMA IF EXISTS sq_orig CASCADE; DROP SCHEMA IF EXISTS sq_hint CASCADE")
	sequences := func(schema string) string {
		return strings.Join(queryStrings(t, ctx, conn, `SELECT format('%s %s max=%s', c.relname, format_type(s.seqtypid, NULL), s.seqmax)
			FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 ORDER BY 1`, schema), "; ")
	}
	for _, sql := range []string{
		"ALTER TABLE t ADD COLUMN n serial",
		"ALTER TABLE t ADD COLUMN n smallserial",
		"ALTER TABLE t ADD COLUMN n bigserial",
		"ALTER TABLE t ADD COLUMN n int GENERATED BY DEFAULT AS IDENTITY",
		"ALTER TABLE t ADD COLUMN n smallint GENERATED ALWAYS AS IDENTITY",
	} {
		var hint string
		for _, f := range guard.DefaultPolicy().Evaluate(guard.Analyze(sql), &guard.Context{}) {
			if f.Rule == "add-column-serial-identity" {
				hint = f.Hint
			}
		}
		if !strings.Contains(hint, "CREATE SEQUENCE") {
			t.Errorf("%s: no add-column-serial-identity hint with a sequence (%q)", sql, hint)
			continue
		}
		mustExec(`DROP SCHEMA IF EXISTS sq_orig CASCADE; DROP SCHEMA IF EXISTS sq_hint CASCADE; CREATE SCHEMA sq_orig; CREATE SCHEMA sq_hint;
			CREATE TABLE sq_orig.t (a int); CREATE TABLE sq_hint.t (a int)`)
		mustExec("SET search_path = sq_orig; " + sql)
		mustExec("SET search_path = sq_hint")
		runHint(mustExec, hint)
		mustExec("RESET search_path")
		if orig, rewritten := sequences("sq_orig"), sequences("sq_hint"); orig != rewritten {
			t.Errorf("%s\n the original made the sequence %s\n lockguard's rewrite made %s", sql, orig, rewritten)
		}
	}
}

// execer returns a function that runs sql on conn and fails t on an error.
func execer(t *testing.T, ctx context.Context, conn *pgx.Conn) func(sql string) {
	return func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
}

// runHint runs the statements of a hint, one per line, with exec, skipping
// its comment lines: each on its own, as CONCURRENTLY runs outside a
// transaction block.
func runHint(exec func(string), hint string) {
	for _, line := range strings.Split(hint, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "--") {
			exec(line)
		}
	}
}

// queryStrings returns the one text column of the rows of sql.
func queryStrings(t *testing.T, ctx context.Context, conn *pgx.Conn, sql string, args ...any) []string {
	t.Helper()
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return got
}
