package guard

import (
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Sanitize returns sql with every literal replaced by a placeholder ($1, $2,
// …) and its comments removed, for text that leaves the client it came from:
// error details shown to other sessions, logs, traces and the status page.
//
// pg_query's normalizer replaces the constants of DML (and passwords of
// CREATE/ALTER ROLE) but keeps those of other DDL: a DEFAULT, a CHECK, an
// index predicate, a COMMENT, a function body. So the text is also run
// through the scanner, and every string, number, bit-string and
// dollar-quoted token left is replaced too. Text that does not scan (for
// example a query cut off by track_activity_query_size) is reduced to its
// first keyword.
//
// Replacing a literal can make text parse that did not (a string literal
// followed by ".a" is a syntax error, "$1.a" a parameter's field), and the
// parser would then normalize more of it; text that did not parse gets a
// second round, so that Sanitize(Sanitize(s)) == Sanitize(s).
func Sanitize(sql string) string {
	out, parsed := sanitize(sql)
	if !parsed {
		out, _ = sanitize(out)
	}
	return out
}

// sanitize is one round of Sanitize; parsed reports whether the parser's
// normalizer took the text (or the text was reduced to its first keyword).
func sanitize(sql string) (_ string, parsed bool) {
	out, err := pg.Normalize(sql)
	if err != nil {
		out = sql
	}
	res, serr := pg.Scan(out)
	if serr != nil || (err != nil && !scanComplete(out, res)) {
		if kw := FirstKeyword(sql); kw != "" {
			return kw + " …", true
		}
		return "…", true
	}
	next := 1
	for _, t := range res.Tokens {
		if t.Token == pg.Token_PARAM {
			if n, err := strconv.Atoi(strings.TrimPrefix(out[t.Start:t.End], "$")); err == nil && n >= next {
				next = n + 1
			}
		}
	}
	var b strings.Builder
	b.Grow(len(out))
	// put appends s, with a space first where s would otherwise read as
	// one token with what precedes it: a removed comment separates tokens
	// as white space does ("a/**/b" is two words, "//**/*" two operators,
	// not the start of a new comment), and a placeholder must not join a
	// "$" or a word before it or after it.
	var last byte
	put := func(s string) {
		if s == "" {
			return
		}
		if b.Len() > 0 && pastes(last, s[0]) {
			b.WriteByte(' ')
		}
		b.WriteString(s)
		last = s[len(s)-1]
	}
	pos := 0
	for _, t := range res.Tokens {
		switch t.Token {
		case pg.Token_SCONST, pg.Token_USCONST, pg.Token_ICONST, pg.Token_FCONST, pg.Token_BCONST, pg.Token_XCONST:
			put(out[pos:t.Start])
			put("$" + strconv.Itoa(next))
			next++
			pos = int(t.End)
		case pg.Token_SQL_COMMENT, pg.Token_C_COMMENT:
			put(strings.TrimRight(out[pos:t.Start], " \t\r\n"))
			pos = int(t.End)
		}
	}
	put(out[pos:])
	return trimSQLSpace(b.String()), err == nil
}

// pastes reports whether a token ending in a and one starting with b would
// read as one token with nothing between them.
func pastes(a, b byte) bool {
	word := func(c byte) bool {
		return c == '_' || c == '$' || c == '.' || c >= 0x80 || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
	}
	const op = "+-*/<>=~!@#%^&|`?"
	return word(a) && word(b) || strings.IndexByte(op, a) >= 0 && strings.IndexByte(op, b) >= 0
}

// scanComplete reports whether the scanner's tokens cover sql up to its end
// (apart from white space): an unterminated string or comment ends the scan
// early, and what follows must not be shown.
func scanComplete(sql string, res *pg.ScanResult) bool {
	if len(res.Tokens) == 0 {
		return trimSQLSpace(sql) == ""
	}
	return trimSQLSpace(sql[res.Tokens[len(res.Tokens)-1].End:]) == ""
}

// trimSQLSpace trims what PostgreSQL reads as white space: ASCII only, since
// it reads other bytes above 0x7F, Unicode spaces included, as part of an
// identifier.
func trimSQLSpace(s string) string { return strings.Trim(s, " \t\r\n\f\v") }
