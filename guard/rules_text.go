package guard

import "strings"

// Wording shared by the rules' findings.

// relsText joins relation names: "a", "a and b", "a, b and c".
func relsText(rels []RelName) string {
	names := make([]string, 0, len(rels))
	for _, r := range rels {
		if r.Name != "" {
			names = append(names, r.String())
		}
	}
	switch len(names) {
	case 0:
		return "the table"
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// blocksText says what holding mode on a table stops others from doing.
func blocksText(mode LockMode) string {
	switch mode {
	case AccessExclusive:
		return "blocks every read and write"
	case Exclusive:
		return "blocks every write and SELECT … FOR UPDATE/SHARE"
	case ShareRowExclusive, Share:
		return "blocks every write"
	case ShareUpdateExclusive:
		return "blocks other DDL, VACUUM and index builds; reads and writes continue"
	case RowExclusive, RowShare, AccessShare:
		return "blocks only DDL"
	}
	return "blocks nothing"
}

// lockDetail writes "MODE on a and b<during>: blocks … of both until the
// transaction ends".
func lockDetail(mode LockMode, rels []RelName, during string) string {
	of := " of it"
	switch n := len(rels); {
	case n == 2:
		of = " of both"
	case n > 2:
		of = " of all of them"
	}
	switch {
	case mode <= ShareUpdateExclusive:
		of = ""
	case mode < AccessExclusive:
		of = strings.Replace(of, " of ", " to ", 1)
	}
	return mode.String() + " on " + relsText(rels) + during + ": " + blocksText(mode) + of + " until the transaction ends"
}

func one(r RelName) []RelName { return []RelName{r} }

func qi(s string) string { return quoteIdent(s) }

func colList(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = quoteIdent(c)
	}
	return strings.Join(q, ", ")
}

func lines(parts ...string) string {
	out := parts[:0:0]
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "\n")
}

func semi(sql string) string {
	if sql == "" || strings.HasSuffix(sql, ";") {
		return sql
	}
	return sql + ";"
}

const noCatalog = "no catalog"
