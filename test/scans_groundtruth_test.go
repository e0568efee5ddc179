package test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/guard/pgcatalog"
)

// scanRules are the rules whose findings say that the statement scans the
// whole table under a lock that blocks writes (or reads and writes).
var scanRules = []string{"set-not-null", "add-check-validated", "add-fk-validated", "change-type-recheck", "attach-partition-scan"}

// TestScanClaimsMatchPostgres checks lockguard's claim that a statement
// scans its table under a strong lock (a finding of scanRules, with the
// catalog) against PostgreSQL's own count of the scans of that table
// (pg_stat_user_tables, flushed after each statement). A scan lockguard
// does not report keeps a long lock out of sight; one it reports that
// PostgreSQL skips (SET NOT NULL proved by a validated CHECK) sends the
// author through the multi-step rewrite for nothing (ATTACH PARTITION of a
// table whose validated CHECK proves the bound, the recipe of
// attach-partition-scan's own hint).
func TestScanClaimsMatchPostgres(t *testing.T) {
	ctx := ctxT(t, 2*time.Minute)
	conn := connect(t, directDSN())
	catConn := connect(t, directDSN())
	cases := []struct{ setup, sql string }{
		{"", "ALTER TABLE sc_t ALTER COLUMN b SET NOT NULL"},
		{"ALTER TABLE sc_t ADD CONSTRAINT sc_b_nn CHECK (b IS NOT NULL)", "ALTER TABLE sc_t ALTER COLUMN b SET NOT NULL"},
		{"ALTER TABLE sc_t ADD CONSTRAINT sc_b_nn CHECK (b IS NOT NULL) NOT VALID", "ALTER TABLE sc_t ALTER COLUMN b SET NOT NULL"},
		{"", "ALTER TABLE sc_t ADD CONSTRAINT sc_c CHECK (a > 0)"},
		{"", "ALTER TABLE sc_t ADD CONSTRAINT sc_c CHECK (a > 0) NOT VALID"},
		{"", "ALTER TABLE sc_t ADD FOREIGN KEY (a) REFERENCES sc_p (id)"},
		{"", "ALTER TABLE sc_t ADD FOREIGN KEY (a) REFERENCES sc_p (id) NOT VALID"},
		{"ALTER TABLE sc_t ADD CONSTRAINT sc_c CHECK (length(b) < 50)", "ALTER TABLE sc_t ALTER COLUMN b TYPE varchar(40)"},
		{"", "ALTER TABLE sc_t ALTER COLUMN b TYPE varchar(40)"},
		{"ALTER TABLE sc_t ADD CONSTRAINT sc_c CHECK (a > 0)", "ALTER TABLE sc_t ALTER COLUMN b TYPE text"},
		{"CREATE TABLE sc_pp (a int, b varchar(20), id int) PARTITION BY RANGE (a)",
			"ALTER TABLE sc_pp ATTACH PARTITION sc_t FOR VALUES FROM (0) TO (1000)"},
		{"CREATE TABLE sc_pp (a int, b varchar(20), id int) PARTITION BY RANGE (a); ALTER TABLE sc_t ADD CONSTRAINT sc_bound CHECK (a IS NOT NULL AND a >= 0 AND a < 1000)",
			"ALTER TABLE sc_pp ATTACH PARTITION sc_t FOR VALUES FROM (0) TO (1000)"},
		{"CREATE TABLE sc_pp (a int, b varchar(20), id int) PARTITION BY RANGE (a); ALTER TABLE sc_t ALTER COLUMN a SET NOT NULL, ADD CONSTRAINT sc_lo CHECK (0 <= a), ADD CONSTRAINT sc_hi CHECK (a < 1000)",
			"ALTER TABLE sc_pp ATTACH PARTITION sc_t FOR VALUES FROM (0) TO (1000)"},
		{"CREATE TABLE sc_pp (a int, b varchar(20), id int) PARTITION BY RANGE (a); ALTER TABLE sc_t ADD CONSTRAINT sc_bound CHECK (a IS NOT NULL AND a < 1000)",
			"ALTER TABLE sc_pp ATTACH PARTITION sc_t FOR VALUES FROM (MINVALUE) TO (1000)"},
		{"CREATE TABLE sc_pp (a int, b varchar(20), id int) PARTITION BY RANGE (a); ALTER TABLE sc_t ADD CONSTRAINT sc_bound CHECK (a >= 0 AND a < 1000)",
			"ALTER TABLE sc_pp ATTACH PARTITION sc_t FOR VALUES FROM (0) TO (1000)"},
		{"CREATE TABLE sc_pp (a int, b varchar(20), id int) PARTITION BY RANGE (a); ALTER TABLE sc_t ADD CONSTRAINT sc_bound CHECK (a IS NOT NULL AND a >= 0 AND a < 1000) NOT VALID",
			"ALTER TABLE sc_pp ATTACH PARTITION sc_t FOR VALUES FROM (0) TO (1000)"},
		{"CREATE TABLE sc_pp (a int, b varchar(20), id int) PARTITION BY RANGE (a); ALTER TABLE sc_t ADD CONSTRAINT sc_bound CHECK (a IS NOT NULL AND a >= 0 AND a < 2000)",
			"ALTER TABLE sc_pp ATTACH PARTITION sc_t FOR VALUES FROM (0) TO (1000)"},
		{"CREATE TABLE sc_pp (a int, b varchar(20), id int) PARTITION BY RANGE (a); ALTER TABLE sc_t ADD CONSTRAINT sc_bound CHECK (a IS NOT NULL AND a >= 0 OR a < 1000)",
			"ALTER TABLE sc_pp ATTACH PARTITION sc_t FOR VALUES FROM (0) TO (1000)"},
		{"CREATE TABLE sc_pp (a int, b varchar(20), id int) PARTITION BY LIST (a); DELETE FROM sc_t WHERE a > 2; ALTER TABLE sc_t ADD CONSTRAINT sc_bound CHECK (a IS NOT NULL AND a IN (1, 2))",
			"ALTER TABLE sc_pp ATTACH PARTITION sc_t FOR VALUES IN (1, 2, 3)"},
		{"CREATE TABLE sc_pp (a int, b varchar(20), id int) PARTITION BY LIST (a); DELETE FROM sc_t WHERE a > 1; ALTER TABLE sc_t ADD CONSTRAINT sc_bound CHECK (a IS NOT NULL AND a IN (1, 2))",
			"ALTER TABLE sc_pp ATTACH PARTITION sc_t FOR VALUES IN (1, 3)"},
		// Negative constants: pg_get_constraintdef prints them quoted
		// ('-200'::integer, '-1.50'::numeric), the bound has the number.
		{"CREATE TABLE sc_pp (a int, b varchar(20), id int) PARTITION BY RANGE (a); UPDATE sc_t SET a = a - 200; ALTER TABLE sc_t ADD CONSTRAINT sc_bound CHECK (a IS NOT NULL AND a >= -200 AND a < -50)",
			"ALTER TABLE sc_pp ATTACH PARTITION sc_t FOR VALUES FROM (-200) TO (-50)"},
		{"CREATE TABLE sc_pp (a int, b varchar(20), id int) PARTITION BY RANGE (a); UPDATE sc_t SET a = a - 200; ALTER TABLE sc_t ADD CONSTRAINT sc_bound CHECK (a IS NOT NULL AND a >= -200 AND a < -40)",
			"ALTER TABLE sc_pp ATTACH PARTITION sc_t FOR VALUES FROM (-200) TO (-50)"},
		{"CREATE TABLE sc_pp (a int, b varchar(20), id int, n numeric) PARTITION BY RANGE (n); ALTER TABLE sc_t ADD COLUMN n numeric; UPDATE sc_t SET n = 0; ALTER TABLE sc_t ADD CONSTRAINT sc_bound CHECK (n IS NOT NULL AND n >= -1.50 AND n < 10.5)",
			"ALTER TABLE sc_pp ATTACH PARTITION sc_t FOR VALUES FROM (-1.50) TO (10.5)"},
		{"CREATE TABLE sc_pp (a int, b varchar(20), id int) PARTITION BY LIST (a); UPDATE sc_t SET a = -1 - a % 2; ALTER TABLE sc_t ADD CONSTRAINT sc_bound CHECK (a IS NOT NULL AND a IN (-1, -2))",
			"ALTER TABLE sc_pp ATTACH PARTITION sc_t FOR VALUES IN (-1, -2, 5)"},
		// The usual monthly partition of a date column.
		{"CREATE TABLE sc_pp (a int, b varchar(20), id int, d date) PARTITION BY RANGE (d); ALTER TABLE sc_t ADD COLUMN d date NOT NULL DEFAULT '2026-01-15'; ALTER TABLE sc_t ADD CONSTRAINT sc_bound CHECK (d >= '2026-01-01' AND d < '2026-02-01')",
			"ALTER TABLE sc_pp ATTACH PARTITION sc_t FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')"},
		{"CREATE TABLE sc_pp (a int, b varchar(20), id int) PARTITION BY RANGE (a); CREATE TABLE sc_pd PARTITION OF sc_pp DEFAULT; ALTER TABLE sc_t ADD CONSTRAINT sc_bound CHECK (a IS NOT NULL AND a >= 0 AND a < 1000)",
			"ALTER TABLE sc_pp ATTACH PARTITION sc_t FOR VALUES FROM (0) TO (1000)"},
	}
	var v int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&v); err != nil {
		t.Fatal(err)
	}
	scans := func() int64 {
		var n int64
		// The attached table, and the default partition an ATTACH
		// scans for rows of the new bound.
		if err := conn.QueryRow(ctx, `SELECT pg_stat_clear_snapshot(), coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)), 0)::int8
			FROM pg_stat_user_tables WHERE relname IN ('sc_t', 'sc_pd') AND schemaname = current_schema()`).Scan(nil, &n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// flush makes this backend's counts visible: they are reported when
	// it goes idle, forced by pg_stat_force_next_flush.
	flush := func() {
		if _, err := conn.Exec(ctx, "SELECT pg_stat_force_next_flush()"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var mismatches []string
	for _, c := range cases {
		if _, err := conn.Exec(ctx, `DROP TABLE IF EXISTS sc_pp, sc_t, sc_p;
			CREATE TABLE sc_p (id int PRIMARY KEY); INSERT INTO sc_p SELECT generate_series(1, 100);
			CREATE TABLE sc_t (a int, b varchar(20), id int PRIMARY KEY);
			INSERT INTO sc_t SELECT i, 'x', i FROM generate_series(1, 100) i`); err != nil {
			t.Fatal(err)
		}
		if c.setup != "" {
			if _, err := conn.Exec(ctx, c.setup); err != nil {
				t.Fatalf("%s: %v", c.setup, err)
			}
		}
		cat, err := pgcatalog.New(ctx, catConn)
		if err != nil {
			t.Fatal(err)
		}
		var claimed []string
		for _, f := range guard.DefaultPolicy().Evaluate(guard.NewAnalyzer(cat, 0).Analyze(c.sql), &guard.Context{Catalog: cat, ServerVersion: v}) {
			if slices.Contains(scanRules, f.Rule) {
				claimed = append(claimed, f.Message)
			}
		}
		flush()
		before := scans()
		if _, err := conn.Exec(ctx, "SELECT pg_stat_force_next_flush(); "+c.sql); err != nil {
			t.Fatalf("%s: %v", c.sql, err)
		}
		flush()
		scanned := scans() > before
		switch {
		case scanned && len(claimed) == 0:
			mismatches = append(mismatches, fmt.Sprintf("%s (after %q)\n\tPostgreSQL scanned the table; lockguard did not say so", c.sql, c.setup))
		case !scanned && len(claimed) > 0:
			mismatches = append(mismatches, fmt.Sprintf("%s (after %q)\n\tPostgreSQL did not scan the table; lockguard said: %s", c.sql, c.setup, claimed[0]))
		}
	}
	conn.Exec(ctx, "DROP TABLE IF EXISTS sc_pp, sc_t, sc_p")
	if len(mismatches) > 0 {
		t.Errorf("%d of %d scan claims differ from PostgreSQL:\n%s", len(mismatches), len(cases), strings.Join(mismatches, "\n"))
	}
}
