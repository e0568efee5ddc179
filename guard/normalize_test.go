package guard

import (
	"strings"
	"testing"
)

func TestCacheKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"SELECT 1", "SELECT 1"},
		{"  SELECT 1  \n", "SELECT 1"},
		{"SELECT * FROM users WHERE id = $1 /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',tracestate='congo%3Dt61rcWkgMzE'*/", "SELECT * FROM users WHERE id = $1"},
		{"/* controller='users',action='show' */ SELECT 1", "SELECT 1"},
		{"-- name: GetUser :one\nSELECT 1", "SELECT 1"},
		{"SELECT 1 -- trailing", "SELECT 1"},
		{"SELECT 1; -- trailing\n", "SELECT 1;"},
		{"SELECT 1 /* a */ /* b */", "SELECT 1"},
		{"SELECT 1 /* outer /* nested */ still */", "SELECT 1"},
		{"SELECT /* inner */ 1", "SELECT /* inner */ 1"},
		{"SELECT '--not a comment'", "SELECT '--not a comment'"},
		{"SELECT 'a' -- it's a comment", "SELECT 'a'"},
		{"SELECT $$ -- $$", "SELECT $$ -- $$"},
		{"SELECT $tag$ x -- $tag$ -- real", "SELECT $tag$ x -- $tag$"},
		{`SELECT "--col" FROM t`, `SELECT "--col" FROM t`},
		{"SELECT E'\\' --' -- c", "SELECT E'\\' --'"},
		{"SELECT 1 - -1", "SELECT 1 - -1"},
		{"-- only a comment", ""},
		{"/* unterminated", ""},
		{"", ""},
		// PostgreSQL ends a "--" comment at a carriage return too: the
		// DROP below is SQL it runs, which the key must keep.
		{"ALTER TABLE--\rt DROP COLUMN a", "ALTER TABLE--\rt DROP COLUMN a"},
		{"-- x\rDROP TABLE t -- y", "DROP TABLE t"},
		// "/*/*/" opens a nested comment and closes only one: the text is
		// not closed, and the key keeps it so that it fails to parse too.
		{"ALTER TABLE a DROP b/*/*/", "ALTER TABLE a DROP b/*/*/"},
		{"SELECT 1 /*/ c */", "SELECT 1"},
		// A "/*" inside a line comment or a literal opens nothing: the
		// DROP after it runs, and the key must keep it.
		{"SELECT 1 --/*\nDROP TABLE t; --*/", "SELECT 1 --/*\nDROP TABLE t;"},
		{"SELECT '/*'; DROP TABLE t; --*/", "SELECT '/*'; DROP TABLE t;"},
		{`SELECT "/*"; DROP TABLE t; --*/`, `SELECT "/*"; DROP TABLE t;`},
		{"SELECT $q$/*$q$; DROP TABLE t; --*/", "SELECT $q$/*$q$; DROP TABLE t;"},
		{"SELECT--/*\n*/", "SELECT--/*\n*/"},
		// Parameters and names with '$' keep the fast path's answer.
		{"SELECT a$1 FROM t WHERE id = $12 /* c='d' */", "SELECT a$1 FROM t WHERE id = $12"},
	}
	for _, tt := range tests {
		if got := cacheKey(tt.in); got != tt.want {
			t.Errorf("cacheKey(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestCacheLookupByCandidate: the cache is looked up first by the text
// before its line-comment scan; a text that does end in a line comment must
// still find the analysis of its key, and one that does not must not find
// another's.
func TestCacheLookupByCandidate(t *testing.T) {
	a := NewAnalyzer(nil, 100)
	first := a.Analyze("SELECT 1 -- name: One")
	for _, sql := range []string{"SELECT 1", "SELECT 1 /*traceparent='00-01'*/", "SELECT 1 -- other /*c*/", " SELECT 1 --\n"} {
		if got := a.Analyze(sql); got != first {
			t.Errorf("Analyze(%q) did not find the cached analysis of %q", sql, first.SQL)
		}
	}
	if got := a.Analyze("SELECT 1 - -1 /*c*/"); got == first || got.SQL != "SELECT 1 - -1" {
		t.Errorf("Analyze(\"SELECT 1 - -1 /*c*/\") = analysis of %q", got.SQL)
	}
	if n := a.CacheLen(); n != 2 {
		t.Errorf("%d cached analyses, want 2", n)
	}
	// A "/*" in a line comment or a literal opens no comment: with the
	// text before it cached (as parsed, or as a parse error), the DROP
	// after it must still be analysed.
	a.Analyze("SELECT 1;")
	a.Analyze("SELECT '")
	for _, sql := range []string{"SELECT 1; --/*\nDROP TABLE t; --*/", "SELECT '/*'; DROP TABLE t; --*/"} {
		if got := a.Analyze(sql); got.Err != nil || len(got.Statements) != 2 || got.Statements[1].Tag != "DROP TABLE" {
			t.Errorf("Analyze(%q) = analysis of %q (error %v)", sql, got.SQL, got.Err)
		}
	}
}

func TestIndexPair(t *testing.T) {
	for _, s := range []string{"", "-", "--", "a-b-", "a-b--c", "-x-", "x/-/*", "//*", "/", "ab"} {
		for _, p := range []string{"--", "/*", "*/"} {
			if got, want := indexPair(s, p[0], p[1]), strings.Index(s, p); got != want {
				t.Errorf("indexPair(%q, %q) = %d, want %d", s, p, got, want)
			}
		}
	}
}

func TestFirstKeyword(t *testing.T) {
	tests := []struct{ in, want string }{
		{"select 1", "SELECT"},
		{"  /* x */ -- y\n (SELECT 1)", "SELECT"},
		{"Insert into t values (1)", "INSERT"},
		{"WITH x AS (SELECT 1) SELECT * FROM x", "WITH"},
		{"alter table t add column c int", "ALTER"},
		{"vacuum", "VACUUM"},
		{"frobnicate", "frobnicate"},
		{"", ""},
		{"123", ""},
		{"-- c\rdrop table t", "DROP"},
	}
	for _, tt := range tests {
		if got := FirstKeyword(tt.in); got != tt.want {
			t.Errorf("FirstKeyword(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	for _, k := range firstKeywords {
		for _, in := range []string{k, strings.ToLower(k), strings.ToLower(k[:1]) + k[1:]} {
			if got := FirstKeyword(in + " x"); got != k {
				t.Errorf("FirstKeyword(%q) = %q, want %q", in+" x", got, k)
			}
		}
		if got := FirstKeyword(k + "_x"); got != k+"_x" {
			t.Errorf("FirstKeyword(%q) = %q, want the word as written", k+"_x", got)
		}
	}
	if n := testing.AllocsPerRun(100, func() { FirstKeyword("/* c */ select * from users") }); n != 0 {
		t.Errorf("FirstKeyword allocates %v times", n)
	}
}

func TestQuickClass(t *testing.T) {
	tests := []struct {
		in   string
		want Class
		ok   bool
	}{
		{"SELECT 1", ClassRead, true},
		{"update t set a = 1", ClassWrite, true},
		{"DELETE FROM t", ClassWrite, true},
		{"ALTER TABLE t ADD c int", ClassDDL, true},
		{"VACUUM t", ClassMaintenance, true},
		{"begin", ClassTransaction, true},
		{"SET x = 1", ClassSession, true},
		{"WITH d AS (DELETE FROM t RETURNING *) SELECT 1", ClassOther, false},
		{"EXPLAIN ANALYZE DELETE FROM t", ClassOther, false},
		{"COPY t FROM STDIN", ClassOther, false},
	}
	for _, tt := range tests {
		c, ok := QuickClass(tt.in)
		if c != tt.want || ok != tt.ok {
			t.Errorf("QuickClass(%q) = %v, %v; want %v, %v", tt.in, c, ok, tt.want, tt.ok)
		}
		// QuickClass never contradicts the parser when it is sure.
		if ok {
			if an := Analyze(tt.in); an.Err == nil && len(an.Statements) > 0 && an.Statements[0].Class != c && c != ClassOther {
				t.Errorf("QuickClass(%q) = %v, Analyze says %v", tt.in, c, an.Statements[0].Class)
			}
		}
	}
}
