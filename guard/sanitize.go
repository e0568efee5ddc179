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
func Sanitize(sql string) string {
	out, err := pg.Normalize(sql)
	if err != nil {
		out = sql
	}
	res, serr := pg.Scan(out)
	if serr != nil || (err != nil && !scanComplete(out, res)) {
		if kw := FirstKeyword(sql); kw != "" {
			return kw + " …"
		}
		return "…"
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
	pos := 0
	for _, t := range res.Tokens {
		switch t.Token {
		case pg.Token_SCONST, pg.Token_USCONST, pg.Token_ICONST, pg.Token_FCONST, pg.Token_BCONST, pg.Token_XCONST:
			b.WriteString(out[pos:t.Start])
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(next))
			next++
			pos = int(t.End)
		case pg.Token_SQL_COMMENT, pg.Token_C_COMMENT:
			b.WriteString(strings.TrimRight(out[pos:t.Start], " \t\r\n"))
			pos = int(t.End)
		}
	}
	b.WriteString(out[pos:])
	return strings.TrimSpace(b.String())
}

// scanComplete reports whether the scanner's tokens cover sql up to its end
// (apart from white space): an unterminated string or comment ends the scan
// early, and what follows must not be shown.
func scanComplete(sql string, res *pg.ScanResult) bool {
	if len(res.Tokens) == 0 {
		return strings.TrimSpace(sql) == ""
	}
	return strings.TrimSpace(sql[res.Tokens[len(res.Tokens)-1].End:]) == ""
}
