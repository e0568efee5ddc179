package guard

import (
	pg "github.com/pganalyze/pg_query_go/v6"
)

// Sanitize returns sql with every literal replaced by a placeholder ($1, $2,
// …), for text that leaves the client it came from: error details shown to
// other sessions, logs and traces. Text that does not parse (for example a
// query cut off by track_activity_query_size) is reduced to its first keyword.
func Sanitize(sql string) string {
	out, err := pg.Normalize(sql)
	if err != nil {
		if kw := FirstKeyword(sql); kw != "" {
			return kw + " …"
		}
		return "…"
	}
	return out
}
