package guard

import "testing"

func TestLasting(t *testing.T) {
	for _, c := range []struct {
		sql  string
		want bool
	}{
		{"PREPARE p AS SELECT 1", true},
		{"DEALLOCATE p", true},
		{"DEALLOCATE ALL", true},
		{"SELECT pg_advisory_lock(1)", true},
		{"select PG_TRY_ADVISORY_LOCK_SHARED(1, 2)", true},
		{"SELECT pg_catalog.pg_advisory_unlock(1)", true},
		{"SELECT pg_advisory_unlock_all()", true},
		{"SELECT x FROM t WHERE pg_try_advisory_lock(t.id)", true},
		{"UPDATE t SET a = 1 WHERE pg_try_advisory_lock(id)", true},
		{"ALTER TABLE t ADD COLUMN c boolean DEFAULT pg_try_advisory_lock(7)", true},
		{"DO $$ BEGIN PERFORM pg_advisory_lock(1); ALTER TABLE t ADD COLUMN c int; END $$", true},
		{"DO $$ DECLARE ok boolean; BEGIN ok := pg_try_advisory_lock(1); END $$", true},
		// The transaction's own locks end with it.
		{"SELECT pg_advisory_xact_lock(1)", false},
		{"SELECT pg_try_advisory_xact_lock_shared(1)", false},
		// Named, not called.
		{"SELECT 'pg_advisory_lock(1)'", false},
		{"SELECT 1 -- pg_advisory_lock(1)", false},
		{"CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC SELECT pg_advisory_lock(1); END", false},
		{"CREATE VIEW v AS SELECT pg_try_advisory_lock(1)", false},
		{"SELECT advisory FROM t", false},
		{"ALTER TABLE t ADD COLUMN c int", false},
		{"EXECUTE p", false},
	} {
		an := Analyze(c.sql)
		if an.Err != nil || len(an.Statements) != 1 {
			t.Fatalf("%s: %v, %d statements", c.sql, an.Err, len(an.Statements))
		}
		if got := an.Statements[0].Lasting; got != c.want {
			t.Errorf("%s: Lasting %v, want %v", c.sql, got, c.want)
		}
	}
}
