package guard

import (
	"errors"
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// FuzzAnalyze checks that no input makes the analysis panic (a panic inside
// the mapping is recovered into errInternal, which fails here), and that the
// results are self-consistent. Seeds live in testdata/fuzz/FuzzAnalyze: the
// ground-truth statements of test/locks_groundtruth_test.go.
func FuzzAnalyze(f *testing.F) {
	f.Add("ALTER TABLE orders DROP CONSTRAINT orders_user_fk /*traceparent='00-01'*/")
	f.Add("WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x FOR UPDATE")
	f.Add("-- c\nSELECT 1; /* a /* b */ */")
	f.Add("DO $$ DECLARE r record; BEGIN IF true THEN EXECUTE 'ALTER TABLE t ADD c int'; END IF; FOR r IN SELECT * FROM t LOOP COMMIT; END LOOP; END $$")
	cat := fixture()
	f.Fuzz(func(t *testing.T, sql string) {
		for _, an := range []*Analysis{Analyze(sql), NewAnalyzer(cat, 0).Analyze(sql)} {
			if errors.Is(an.Err, errInternal) {
				t.Fatalf("Analyze(%q): %v", sql, an.Err)
			}
			for i := range an.Statements {
				s := &an.Statements[i]
				if s.Start < 0 || s.End > len(an.SQL) || s.Start > s.End {
					t.Fatalf("Analyze(%q): statement %d has offsets [%d,%d) outside %d bytes", sql, i, s.Start, s.End, len(an.SQL))
				}
				seen := map[RelName]bool{}
				for _, l := range s.Locks {
					if l.Rel.Name == "" || l.Mode == NoLock || l.Mode > AccessExclusive {
						t.Fatalf("Analyze(%q): bad lock %+v", sql, l)
					}
					if seen[l.Rel] {
						t.Fatalf("Analyze(%q): %s listed twice", sql, l.Rel)
					}
					seen[l.Rel] = true
				}
			}
		}
		k := cacheKey(sql)
		if cacheKey(k) != k {
			t.Fatalf("cacheKey is not idempotent on %q: %q then %q", sql, k, cacheKey(k))
		}
		// The cache looks a text up by its candidate first: a cached key
		// (a fixed point of cacheKey) found there must be the text's key.
		c, exact, quick := keyCandidate(sql)
		// However the cache is filled, a lookup finds the analysis of
		// the text's key: here with every text it may look up first
		// already cached. (Not for text with a NUL: the parser reads it
		// only up to the NUL, and PostgreSQL refuses a Query or Parse
		// whose string has one before its end, so it runs nothing.)
		if strings.IndexByte(sql, 0) < 0 {
			ca := NewAnalyzer(nil, 16)
			for _, pre := range []string{c, finishKey(c), lexedKey(sql)} {
				ca.Analyze(pre)
			}
			if got := ca.Analyze(sql); got.SQL != k {
				t.Fatalf("with its candidates cached, Analyze(%q) found the analysis of %q, not of its key %q", sql, got.SQL, k)
			}
		}
		switch {
		case quick && plainPrefix(c) && c != k:
			t.Fatalf("keyCandidate(%q) = %q, quick and checked; cacheKey %q", sql, c, k)
		case quick && c != k && cacheKey(c) == c && strings.IndexByte(c, 0) < 0:
			// The cache trusts a hit on an unchecked candidate whose
			// analysis parsed: that must not happen when it is wrong.
			if _, err := pg.Parse(c); err == nil {
				t.Fatalf("keyCandidate(%q) = %q, quick, parses, but cacheKey %q", sql, c, k)
			}
		case !quick && (exact && c != k || !exact && (finishKey(c) != k || cacheKey(c) != k)):
			t.Fatalf("keyCandidate(%q) = %q, %v; cacheKey %q, cacheKey of the candidate %q", sql, c, exact, k, cacheKey(c))
		}
		// The analysis is made of the key, so the key must mean what the
		// text means: both fail to parse, or both parse to the same tree.
		// A text that is only an unclosed comment fails, and its key is
		// empty: PostgreSQL runs nothing either way. Text with a NUL does
		// not reach the parser whole (C strings; and the protocol's
		// strings end at the first NUL).
		if strings.IndexByte(sql, 0) >= 0 {
			return
		}
		full, ferr := pg.Parse(sql)
		keyed, kerr := pg.Parse(k)
		if ferr != nil && kerr == nil && len(keyed.Stmts) == 0 {
			return
		}
		if (ferr == nil) != (kerr == nil) {
			t.Fatalf("cacheKey(%q) = %q: parse error %v for the text, %v for the key", sql, k, ferr, kerr)
		}
		if ferr == nil {
			fd, err1 := pg.Deparse(full)
			kd, err2 := pg.Deparse(keyed)
			if err1 == nil && (err2 != nil || fd != kd) {
				t.Fatalf("cacheKey(%q) = %q changes the statement: %q against %q (%v)", sql, k, fd, kd, err2)
			}
		}
		QuickClass(sql)
		// Sanitized text keeps no string literal of the input: once
		// sanitized, sanitizing again finds nothing more to replace.
		if out := Sanitize(sql); Sanitize(out) != out && !strings.HasSuffix(out, "…") {
			t.Fatalf("Sanitize(%q) = %q is not a fixed point: %q", sql, out, Sanitize(out))
		}
	})
}
