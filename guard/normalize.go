package guard

import "strings"

// This file holds the byte-level scans that run before, or instead of, the
// parser: trimming comments off the cache key and reading the first keyword.
// They must not allocate.

// cacheKey returns sql without leading and trailing white space and comments.
// Comments in the middle of the text are kept. The result is a substring of
// sql, so computing it does not allocate.
//
// sqlcommenter appends "/*key='value',…*/" to every query, and tools prepend
// "-- name: GetUser" or "/* controller:users */"; neither changes what a
// statement locks, so neither may change the cache key.
func cacheKey(sql string) string {
	c, exact, quick := keyCandidate(sql)
	if quick && !plainPrefix(c) {
		return lexedKey(sql)
	}
	if !exact {
		c = finishKey(c)
	}
	return c
}

// keyCandidate returns the cache key of sql when exact is set. Otherwise,
// unless quick is set, it returns the text the key is cut from, which may
// still end in a line comment: cacheKey(c) == cacheKey(sql), and
// finishKey(c) is that key. Every
// cached key is its own cache key (cacheKey is idempotent), so a cache hit
// on c is sql's analysis: the "--" scan of finishKey is left to misses.
//
// quick is set when sql ends in one comment and c is the text before that
// comment's "/*", unchecked: that "/*" opens a comment, and c is the key,
// only if plainPrefix(c) (otherwise the key is lexedKey(sql)). A cache hit
// on c whose analysis parsed needs no check: c then has no unclosed
// literal, and as a cached key it does not end in a line comment, so the
// "/*" after it does open a comment.
func keyCandidate(sql string) (c string, exact, quick bool) {
	start := skipSpaceAndComments(sql, 0)
	end := trimSpaceRight(sql, start, len(sql))
	if end-start >= 4 && sql[end-2] == '*' && sql[end-1] == '/' {
		// Fast path: the text's only comment is the trailing one, the
		// sqlcommenter case. The searches below are vectorised.
		p := indexPair(sql[start:end], '/', '*')
		if p < 0 || start+p+2 > end-2 || !plainCommentBody(sql[start+p+2:end-2]) {
			// Several or nested comments: scan forward as the lexer
			// does. (Scanning backward cannot tell "/*/" as an opening
			// from "/" before a closing.)
			return lexed(sql, start, end), true, false
		}
		// p is the first "/*" of the text.
		return sql[start:trimSpaceRight(sql, start, start+p)], false, true
	}
	return sql[start:end], false, false
}

// lexedKey is the cache key of sql found by scanning it as the lexer does.
func lexedKey(sql string) string {
	start := skipSpaceAndComments(sql, 0)
	return lexed(sql, start, trimSpaceRight(sql, start, len(sql)))
}

// lexed returns s[start:end] up to its last byte that is neither comment
// nor white space, found by scanning as the lexer does.
func lexed(s string, start, end int) string {
	return s[start:trimSpaceRight(s, start, lastTokenEnd(s, start, end))]
}

// finishKey cuts a trailing line comment off a candidate of keyCandidate.
// The result is a prefix of c.
func finishKey(c string) string {
	if mayEndInLineComment(c) {
		return lexed(c, 0, len(c))
	}
	return c
}

// plainCommentBody reports whether body, between a "/*" and the "*/" that
// ends the text, makes that one comment, closed: it holds neither "/*" nor
// "*/" (a body without '*' holds neither: one scan instead of two for
// sqlcommenter's comments), and does not end in '/', which would open a
// nested comment with the closing "*/" ("/*/*/" is not closed).
func plainCommentBody(body string) bool {
	if len(body) > 0 && body[len(body)-1] == '/' {
		return false
	}
	return strings.IndexByte(body, '*') < 0 || !strings.Contains(body, "/*") && !strings.Contains(body, "*/")
}

// plainPrefix reports whether the lexer is outside any literal, quoted
// identifier and comment at the end of k, which holds no "/*": k has no
// quote, no "--" and no '$' that may open a dollar quote (a '$' followed by
// a digit is a parameter or part of a name). Otherwise a "/*" after k may
// be text PostgreSQL does not read as a comment: in "SELECT 1 --/*",
// newline, "DROP TABLE t; --*/" it runs the DROP.
func plainPrefix(k string) bool {
	if strings.IndexByte(k, '\'') >= 0 || strings.IndexByte(k, '"') >= 0 || indexPair(k, '-', '-') >= 0 {
		return false
	}
	for i := 0; ; {
		j := strings.IndexByte(k[i:], '$')
		if j < 0 {
			return true
		}
		i += j + 1
		if i == len(k) || k[i] < '0' || k[i] > '9' {
			return false
		}
	}
}

// IsSpace reports whether c is white space to PostgreSQL's lexer.
func IsSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// lineCommentEnd returns the offset of the byte that ends the "--" comment
// starting at i, or end: PostgreSQL's lexer ends it at a carriage return as
// well as at a line feed.
func lineCommentEnd(s string, i, end int) int {
	if j := strings.IndexAny(s[i:end], "\n\r"); j >= 0 {
		return i + j
	}
	return end
}

func trimSpaceRight(s string, start, end int) int {
	for end > start && IsSpace(s[end-1]) {
		end--
	}
	return end
}

// skipSpaceAndComments returns the offset of the first byte at or after i that
// is neither white space nor inside a comment.
func skipSpaceAndComments(s string, i int) int {
	for i < len(s) {
		c := s[i]
		switch {
		case IsSpace(c):
			i++
		case c == '-' && i+1 < len(s) && s[i+1] == '-':
			i = lineCommentEnd(s, i, len(s))
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			i = skipBlockComment(s, i)
		default:
			return i
		}
	}
	return i
}

// skipBlockComment returns the offset just past the (possibly nested) block
// comment that starts at i, or len(s) if it is not closed.
func skipBlockComment(s string, i int) int {
	i, _ = blockComment(s, i)
	return i
}

// blockComment is skipBlockComment that also reports whether the comment
// was closed.
func blockComment(s string, i int) (int, bool) {
	depth := 0
	for i < len(s) {
		if s[i] == '/' && i+1 < len(s) && s[i+1] == '*' {
			depth++
			i += 2
			continue
		}
		if s[i] == '*' && i+1 < len(s) && s[i+1] == '/' {
			depth--
			i += 2
			if depth == 0 {
				return i, true
			}
			continue
		}
		i++
	}
	return len(s), false
}

// mayEndInLineComment reports whether the last line of t (lines
// end at '\n' or '\r') contains "--", the only case in which the text may
// end inside a line comment.
func mayEndInLineComment(t string) bool {
	if indexPair(t, '-', '-') < 0 {
		return false
	}
	if nl := strings.LastIndexAny(t, "\n\r"); nl >= 0 {
		t = t[nl:]
	}
	return indexPair(t, '-', '-') >= 0
}

// indexPair is strings.Index(s, string([]byte{a, b})) for a first byte that
// is rare in SQL ('-', '/'): IndexByte's vectorised scan finds most texts
// hold none, where a two-byte Index pays its setup on every call.
func indexPair(s string, a, b byte) int {
	for i := 0; ; {
		j := strings.IndexByte(s[i:], a)
		if j < 0 {
			return -1
		}
		i += j + 1
		if i < len(s) && s[i] == b {
			return i - 1
		}
	}
}

// lastTokenEnd scans s[start:end] as Postgres's lexer would (string literals,
// quoted identifiers, dollar quotes, comments) and returns the offset just
// past the last byte that is not a comment or white space.
func lastTokenEnd(s string, start, end int) int {
	last := start
	i := start
	for i < end {
		c := s[i]
		switch {
		case IsSpace(c):
			i++
			continue
		case c == '-' && i+1 < end && s[i+1] == '-':
			i = lineCommentEnd(s, i, end)
			continue
		case c == '/' && i+1 < end && s[i+1] == '*':
			j, closed := blockComment(s[:end], i)
			i = j
			if !closed {
				last = i // an unclosed comment is an error PostgreSQL must see
			}
			continue
		case c == '\'':
			i = skipQuoted(s, i, end, '\'', i > start && (s[i-1] == 'e' || s[i-1] == 'E'))
		case c == '"':
			i = skipQuoted(s, i, end, '"', false)
		case c == '$':
			i = skipDollar(s, i, end)
		default:
			i++
		}
		last = i
	}
	return last
}

func skipQuoted(s string, i, end int, q byte, backslash bool) int {
	i++
	for i < end {
		c := s[i]
		if backslash && c == '\\' {
			i += 2
			continue
		}
		if c == q {
			if i+1 < end && s[i+1] == q {
				i += 2
				continue
			}
			return i + 1
		}
		i++
	}
	return end
}

// skipDollar skips a dollar-quoted string starting at i ($tag$…$tag$), or just
// the '$' of a parameter or identifier character.
func skipDollar(s string, i, end int) int {
	j := i + 1
	for j < end && (s[j] == '_' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= 0x80 || j > i+1 && s[j] >= '0' && s[j] <= '9') {
		j++
	}
	if j >= end || s[j] != '$' {
		return i + 1
	}
	tag := s[i : j+1]
	for k := j + 1; k+len(tag) <= end; k++ {
		if s[k] == '$' && s[k:k+len(tag)] == tag {
			return k + len(tag)
		}
	}
	return end
}

// keywords that FirstKeyword recognises, upper case. The scan returns these
// constants, so it does not allocate.
var firstKeywords = [...]string{
	"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "WITH", "VALUES", "TABLE",
	"COPY", "EXPLAIN", "ALTER", "CREATE", "DROP", "TRUNCATE", "COMMENT",
	"GRANT", "REVOKE", "REINDEX", "VACUUM", "ANALYZE", "ANALYSE", "CLUSTER",
	"REFRESH", "LOCK", "BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT",
	"SAVEPOINT", "RELEASE", "PREPARE", "EXECUTE", "DEALLOCATE", "SET", "RESET",
	"SHOW", "DISCARD", "FETCH", "MOVE", "CLOSE", "DECLARE", "LISTEN",
	"UNLISTEN", "NOTIFY", "CALL", "DO", "CHECKPOINT", "LOAD", "SECURITY",
	"IMPORT", "REASSIGN",
}

// FirstKeyword returns the first keyword of sql in upper case, skipping
// white space, comments and opening parentheses: "SELECT" for
// "/* app */ (select 1)". A word it does not know is returned as written;
// "" means there is no word. It does not allocate.
func FirstKeyword(sql string) string {
	i := skipSpaceAndComments(sql, 0)
	for i < len(sql) && sql[i] == '(' {
		i = skipSpaceAndComments(sql, i+1)
	}
	j := i
	for j < len(sql) && (sql[j] >= 'a' && sql[j] <= 'z' || sql[j] >= 'A' && sql[j] <= 'Z' || sql[j] == '_') {
		j++
	}
	w := sql[i:j]
	if w == "" {
		return ""
	}
	c := w[0] &^ ('a' - 'A') // upper case
	if c < 'A' || c > 'Z' {
		return w // '_'
	}
	for _, k := range keywordsByLetter[c-'A'] {
		if equalFoldASCII(w, k) {
			return k
		}
	}
	return w
}

// keywordsByLetter holds firstKeywords by first letter, in their order.
var keywordsByLetter = func() (by [26][]string) {
	for _, k := range firstKeywords {
		by[k[0]-'A'] = append(by[k[0]-'A'], k)
	}
	return by
}()

func equalFoldASCII(a, upper string) bool {
	if len(a) != len(upper) {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != upper[i] {
			return false
		}
	}
	return true
}

// QuickClass classifies sql from its first keyword alone. It errs only in
// the direction the parser would refine: SELECT … INTO is DDL and a SELECT
// may change settings through set_config, a WITH may write. ok is false when
// the keyword does not decide the class (WITH, EXPLAIN, PREPARE, an unknown
// word) and the parser is needed. Only a statement string whose class is
// ClassRead or ClassWrite and ok can skip Analyze when no relation it might
// touch is under a hazard — which, without parsing, means when there is no
// hazard at all. A query string may hold several statements; QuickClass only
// looks at the first, so callers must not use it to skip checks for
// multi-statement strings that contain ';'.
func QuickClass(sql string) (c Class, ok bool) {
	switch FirstKeyword(sql) {
	case "SELECT", "VALUES", "TABLE", "FETCH", "MOVE", "CLOSE":
		return ClassRead, true
	case "INSERT", "UPDATE", "DELETE", "MERGE":
		return ClassWrite, true
	case "ALTER", "CREATE", "DROP", "TRUNCATE", "COMMENT", "GRANT", "REVOKE", "SECURITY", "IMPORT", "REASSIGN":
		return ClassDDL, true
	case "REINDEX", "VACUUM", "ANALYZE", "ANALYSE", "CLUSTER", "REFRESH", "CHECKPOINT":
		return ClassMaintenance, true
	case "BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE":
		return ClassTransaction, true
	case "SET", "RESET", "DISCARD", "SHOW":
		return ClassSession, true
	}
	return ClassOther, false
}
