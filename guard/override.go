package guard

import "strings"

// Inline overrides. A comment in the statement text
//
//	/* lockguard:allow add-fk-validated reason="backfill window" */
//	-- lockguard:allow drop-foreign-key,multi-lock-txn reason='one-off cleanup'
//
// lowers the named rules' findings for that statement to allow and marks
// them Overridden with the Reason, which the runtime logs. A warning can
// always be lowered; a block only when the rule's config says overridable
// (the default, except for ddl-freeze and ddl-outside-window). With
// require-reason an override without reason="…" is ignored; with
// overrides: false every override is. An override that did not take says
// why in Finding.Note. Only comments count: the same words in a string
// literal do nothing.
//
// At runtime an override anywhere in the query string applies to each of
// its statements. Offline (a migration file) it applies to the statement
// it is written in, or that starts below it, or that ends on its line.

const overrideMarker = "lockguard:allow"

// override is one `lockguard:allow` comment.
type override struct {
	rules  []string
	reason string
}

// parseOverrides returns the overrides in the comments of sql.
func parseOverrides(sql string) []override {
	if !strings.Contains(sql, overrideMarker) {
		return nil
	}
	var out []override
	forEachComment(sql, func(body string) {
		for {
			i := strings.Index(body, overrideMarker)
			if i < 0 {
				return
			}
			body = body[i+len(overrideMarker):]
			end := strings.Index(body, overrideMarker)
			part := body
			if end >= 0 {
				part = body[:end]
			}
			if o, ok := parseOverride(part); ok {
				out = append(out, o)
			}
		}
	})
	return out
}

// parseOverride reads ` rule1,rule2 reason="…"`.
func parseOverride(s string) (override, bool) {
	var o override
	if s != "" && !IsSpace(s[0]) {
		return o, false // "lockguard:allowed", not the marker
	}
	for {
		s = strings.TrimLeft(s, " \t\r\n\f\v")
		if s == "" {
			break
		}
		if strings.HasPrefix(s, "reason=") {
			s = s[len("reason="):]
			if s != "" && (s[0] == '"' || s[0] == '\'') {
				q := s[0]
				if j := strings.IndexByte(s[1:], q); j >= 0 {
					o.reason = s[1 : 1+j]
					s = s[2+j:]
					continue
				}
				o.reason = s[1:]
				break
			}
			j := strings.IndexAny(s, " \t\r\n")
			if j < 0 {
				j = len(s)
			}
			o.reason = s[:j]
			s = s[j:]
			continue
		}
		j := strings.IndexAny(s, " \t\r\n")
		if j < 0 {
			j = len(s)
		}
		word := s[:j]
		s = s[j:]
		for _, id := range strings.Split(word, ",") {
			if id = strings.TrimSpace(id); id != "" && id != "*/" {
				o.rules = append(o.rules, strings.TrimSuffix(id, "*/"))
			}
		}
	}
	o.reason = strings.TrimSpace(o.reason)
	return o, len(o.rules) > 0
}

// forEachComment calls fn with the body of every comment in sql, skipping
// string literals, quoted identifiers and dollar-quoted strings (with the
// scanners of normalize.go).
func forEachComment(sql string, fn func(body string)) {
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			j := lineCommentEnd(sql, i, len(sql))
			fn(sql[i+2 : j])
			i = j
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			end := skipBlockComment(sql, i)
			body := sql[i+2 : end]
			body = strings.TrimSuffix(body, "*/")
			fn(body)
			i = end
		case c == '\'':
			i = skipQuoted(sql, i, len(sql), '\'', i > 0 && (sql[i-1] == 'E' || sql[i-1] == 'e'))
		case c == '"':
			i = skipQuoted(sql, i, len(sql), '"', false)
		case c == '$':
			i = skipDollar(sql, i, len(sql))
		default:
			i++
		}
	}
}

// applyOverrides lowers the findings that an inline override names.
func (e *evaluator) applyOverrides() {
	raw := e.c.RawSQL
	if raw == "" {
		raw = e.a.SQL
	}
	if !strings.Contains(raw, overrideMarker) {
		return
	}
	var whole []override
	var perStmt map[int][]override
	if e.c.Offline {
		perStmt = map[int][]override{}
	} else {
		whole = parseOverrides(raw)
	}
	for i := range e.out {
		f := &e.out[i]
		ovs := whole
		if perStmt != nil {
			var ok bool
			if ovs, ok = perStmt[f.Statement]; !ok {
				ovs = parseOverrides(e.segment(raw, f.Statement))
				perStmt[f.Statement] = ovs
			}
		}
		for _, o := range ovs {
			if !contains(o.rules, f.Rule) {
				continue
			}
			r := ruleIndex[f.Rule]
			switch {
			case e.p.requireReason && o.reason == "":
				f.Note = joinNote(f.Note, "inline override ignored: the policy requires reason=\"…\"")
			case f.Action == ActionBlock && !e.p.rules[r].overridable:
				f.Note = joinNote(f.Note, "inline override refused: rule "+f.Rule+" is not overridable (set overridable: true in its policy config)")
			default:
				f.Action, f.Overridden, f.Reason = ActionAllow, true, o.reason
			}
			break
		}
	}
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// segment returns the part of raw that belongs to statement i of a file:
// from the end of the line on which the previous statement ends to the end
// of the line on which statement i ends.
func (e *evaluator) segment(raw string, i int) string {
	base := strings.Index(raw, e.a.SQL)
	if base < 0 {
		raw, base = e.a.SQL, 0
	}
	lineEnd := func(p int) int {
		if p >= len(raw) {
			return len(raw)
		}
		if j := strings.IndexByte(raw[p:], '\n'); j >= 0 {
			return p + j + 1
		}
		return len(raw)
	}
	st := &e.a.Statements[i]
	start := 0
	if i > 0 {
		start = min(lineEnd(base+e.a.Statements[i-1].End), base+st.Start)
	}
	end := lineEnd(base + st.End)
	if start > end {
		start = end
	}
	return raw[start:end]
}
