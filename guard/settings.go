package guard

import (
	"strconv"
	"strings"
	"time"
)

// Settings follows the values a client gives the parameters lockguard
// injects (lock_timeout, statement_timeout), through SET, SET LOCAL, RESET,
// SELECT set_config(…) with constant arguments and transaction ends, so that
// an injected value can be undone exactly and a client's own lower timeout
// respected.
//
// Known limits: values from postgresql.conf, ALTER ROLE or ALTER DATABASE are
// not seen (RESET restores them, which is what Restore uses); a set_config
// whose value is a parameter or an expression is not followed (the value
// before it is restored); and ROLLBACK TO SAVEPOINT is treated as not undoing
// SETs made after the savepoint.
// A Settings belongs to one session and is not safe for concurrent use.
type Settings struct {
	session map[string]string // committed session values; absent = default
	tx      map[string]txValue
	inTx    bool
}

type txValue struct {
	value string
	reset bool // RESET inside the transaction
	local bool // SET LOCAL: ends with the transaction
}

// Tracked reports whether name is a parameter Settings follows.
func Tracked(name string) bool {
	return name == "lock_timeout" || name == "statement_timeout" || name == "search_path" || name == "all"
}

// Apply records the effect of a statement that completed successfully.
// inTx says whether it ran inside an explicit transaction block.
func (s *Settings) Apply(st *Statement, inTx bool) {
	if st.Class == ClassTransaction {
		switch st.TxKind {
		case TxBegin:
			s.begin()
		case TxCommit:
			s.end(true)
		case TxRollback, TxPrepare:
			s.end(st.TxKind == TxPrepare)
		}
		return
	}
	if inTx && !s.inTx {
		s.begin()
	}
	for _, c := range st.Settings {
		if !Tracked(c.Name) {
			continue
		}
		names := []string{c.Name}
		if c.Name == "all" {
			names = []string{"lock_timeout", "statement_timeout", "search_path"}
		}
		for _, n := range names {
			s.set(n, c, inTx)
		}
	}
}

func (s *Settings) begin() {
	s.inTx = true
	clear(s.tx)
}

// end closes the transaction; commit applies its session-level changes.
func (s *Settings) end(commit bool) {
	if commit {
		for n, v := range s.tx {
			if v.local {
				continue
			}
			if v.reset {
				delete(s.session, n)
			} else {
				s.setSession(n, v.value)
			}
		}
	}
	s.inTx = false
	clear(s.tx)
}

// TxEnded tells Settings that the transaction ended without a statement it
// saw (for example an error aborted it and ROLLBACK came in a batch the guard
// did not analyse, or the session returned to idle).
func (s *Settings) TxEnded(committed bool) {
	if s.inTx {
		s.end(committed)
	}
}

func (s *Settings) set(name string, c SettingChange, inTx bool) {
	if !inTx {
		if c.Local {
			return // SET LOCAL outside a transaction has no effect
		}
		if c.Reset {
			delete(s.session, name)
		} else {
			s.setSession(name, c.Value)
		}
		return
	}
	if s.tx == nil {
		s.tx = make(map[string]txValue)
	}
	s.tx[name] = txValue{value: c.Value, reset: c.Reset, local: c.Local}
}

func (s *Settings) setSession(name, value string) {
	if s.session == nil {
		s.session = make(map[string]string)
	}
	s.session[name] = value
}

// Effective returns the value in force for name if the client set one, and
// ok = false when the server's default applies.
func (s *Settings) Effective(name string) (value string, ok bool) {
	if s.inTx {
		if v, found := s.tx[name]; found {
			if v.reset {
				return "", false
			}
			return v.value, true
		}
	}
	v, ok := s.session[name]
	return v, ok
}

// Restore returns the statement that undoes an injected SET of name: in a
// transaction block a SET LOCAL back to the client's value (or its default);
// outside one a session SET to the client's value, or RESET.
func (s *Settings) Restore(name string, inTx bool) string {
	v, ok := s.Effective(name)
	switch {
	case inTx && ok:
		return "SET LOCAL " + name + " = " + quoteLiteral(v)
	case inTx:
		return "SET LOCAL " + name + " TO DEFAULT"
	case ok:
		return "SET " + name + " = " + quoteLiteral(v)
	default:
		return "RESET " + name
	}
}

// Inject returns the statement that sets name to d for the next statement.
func Inject(name string, d time.Duration, inTx bool) string {
	v := strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	if inTx {
		return "SET LOCAL " + name + " = '" + v + "'"
	}
	return "SET " + name + " = '" + v + "'"
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// ParseTimeout reads a timeout parameter value the way PostgreSQL does: a
// number is milliseconds; units us, ms, s, min, h and d are accepted. 0 means
// no timeout. ok = false for a value it cannot read.
func ParseTimeout(v string) (time.Duration, bool) {
	v = strings.TrimSpace(strings.Trim(strings.TrimSpace(v), "'"))
	i := 0
	for i < len(v) && (v[i] >= '0' && v[i] <= '9' || v[i] == '.') {
		i++
	}
	num, err := strconv.ParseFloat(v[:i], 64)
	if err != nil || num < 0 {
		return 0, false
	}
	unit := map[string]time.Duration{"": time.Millisecond, "us": time.Microsecond, "ms": time.Millisecond,
		"s": time.Second, "min": time.Minute, "h": time.Hour, "d": 24 * time.Hour}
	u, ok := unit[strings.ToLower(strings.TrimSpace(v[i:]))]
	if !ok {
		return 0, false
	}
	return time.Duration(num * float64(u)), true
}

// SearchPath returns the schemas of the session's search_path as far as the
// client set it, with "$user" replaced by user; PostgreSQL's default
// ("$user", public) when it did not.
func (s *Settings) SearchPath(user string) []string {
	v, ok := s.Effective("search_path")
	if !ok {
		return []string{user, "public"}
	}
	var out []string
	for _, p := range strings.Split(v, ",") {
		p = strings.Trim(strings.TrimSpace(p), `'"`)
		if p == "$user" {
			p = user
		}
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}
