package guard

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Settings follows the values a client gives the parameters lockguard
// injects (lock_timeout, statement_timeout), through SET, SET LOCAL, RESET,
// SELECT set_config(…) with constant or bound arguments
// (Statement.Bound) and transaction ends, so that
// an injected value can be undone exactly and a client's own lower timeout
// respected.
//
// The values a client gives at connection start (startup parameters and
// -c switches in options, Start) are the session's baseline: RESET returns
// to them, and they count as the client's own.
//
// A SET LOCAL after a session-level SET in the same block masks the SET
// until the block ends, and COMMIT keeps the SET's value, as in PostgreSQL.
// ROLLBACK TO SAVEPOINT undoes the SETs made since the savepoint, as in
// PostgreSQL. A COMMIT (or PREPARE TRANSACTION) of a block the caller says
// has failed (Failed) rolls it back, as PostgreSQL does; AND CHAIN opens the
// next block at once.
//
// Known limits: values from postgresql.conf, ALTER ROLE or ALTER DATABASE are
// not seen (RESET restores them, which is what Restore uses); and a
// set_config with an argument that is an expression, or a parameter not
// bound, is not followed (the value before it is restored).
// A Settings belongs to one session and is not safe for concurrent use.
type Settings struct {
	session map[string]string // committed session values; absent = baseline
	tx      map[string]txValue
	inTx    bool
	failed  bool              // the block has failed: its end rolls it back
	base    map[string]string // values from the startup packet; absent = default
	saves   savepoints[map[string]txValue]
	// batch: the statements of one string or pipeline follow (StartBatch);
	// implicit: the block is the implicit transaction they run in.
	batch, implicit bool
}

// txValue is a parameter's state in a transaction block: the value in force
// and what a COMMIT leaves. As in PostgreSQL, a SET LOCAL after a
// session-level SET in the same block masks the SET's value until the
// block ends but does not undo it, and a SET after a SET LOCAL replaces
// both.
type txValue struct {
	value string
	reset bool // the value in force is the baseline (RESET, SET … TO DEFAULT)
	local bool // the value in force came from SET LOCAL: it ends with the block

	session     bool // a session-level SET or RESET ran in the block
	commitValue string
	commitReset bool // what COMMIT leaves when session
}

// Start records the followed parameters a session starts with, from its
// startup packet (param returns a startup parameter, "" when absent). As
// PostgreSQL does, the -c name=value and --name=value switches of the
// options parameter come first and parameters of their own override them.
func (s *Settings) Start(param func(name string) string) {
	for _, kv := range startupOptions(param("options")) {
		s.baseline(kv[0], kv[1])
	}
	for _, n := range followed {
		if v := param(n); v != "" {
			s.baseline(n, v)
		}
	}
}

func (s *Settings) baseline(name, value string) {
	if !slices.Contains(followed[:], name) {
		return
	}
	if s.base == nil {
		s.base = make(map[string]string)
	}
	s.base[name] = value
}

// startupOptions returns the name=value pairs of the -c and -- switches in
// a startup packet's options, split as PostgreSQL splits them (whitespace
// separates, a backslash takes the next byte literally). Names are lower
// case with '-' read as '_'.
func startupOptions(opts string) [][2]string {
	var words []string
	var w []byte
	in := false
	for i := 0; i < len(opts); i++ {
		c := opts[i]
		switch {
		case c == '\\':
			if i++; i < len(opts) {
				w, in = append(w, opts[i]), true
			}
		case IsSpace(c):
			if in {
				words, w, in = append(words, string(w)), w[:0], false
			}
		default:
			w, in = append(w, c), true
		}
	}
	if in {
		words = append(words, string(w))
	}
	var out [][2]string
	for i := 0; i < len(words); i++ {
		var kv string
		switch {
		case words[i] == "-c" && i+1 < len(words):
			i++
			kv = words[i]
		case strings.HasPrefix(words[i], "-c") && len(words[i]) > 2:
			kv = words[i][2:]
		case strings.HasPrefix(words[i], "--"):
			kv = words[i][2:]
		default:
			continue
		}
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		out = append(out, [2]string{strings.ReplaceAll(strings.ToLower(name), "-", "_"), value})
	}
	return out
}

// followed are the parameters Settings follows.
var followed = [...]string{"lock_timeout", "statement_timeout", "search_path", "role", "session_authorization", "client_min_messages"}

// Tracked reports whether name is a parameter Settings follows, or "all"
// (RESET ALL), which changes them all.
func Tracked(name string) bool {
	return name == "all" || slices.Contains(followed[:], name)
}

// Apply records the effect of a statement that completed successfully.
// inTx says whether it ran inside an explicit transaction block.
func (s *Settings) Apply(st *Statement, inTx bool) {
	if st.Class == ClassTransaction {
		switch st.TxKind {
		case TxBegin:
			switch {
			case s.implicit:
				s.implicit = false // the implicit transaction becomes the block
			case !inTx || !s.inTx:
				s.begin()
			} // else PostgreSQL warns and the block goes on
		case TxCommit, TxRollback, TxPrepare:
			s.implicit = false
			s.end(st.TxKind != TxRollback && !s.failed)
			if st.Chain {
				s.begin()
			}
		case TxSavepoint:
			if s.inTx {
				s.saves.set(st.Savepoint, maps.Clone(s.tx))
			}
		case TxRelease:
			s.saves.release(st.Savepoint)
		case TxRollbackTo:
			if tx, ok := s.saves.rollbackTo(st.Savepoint); ok {
				s.tx = maps.Clone(tx)
			}
			s.failed = false // it succeeded: the block is usable again
		}
		return
	}
	if s.batch && !inTx && !s.inTx {
		s.begin()
		s.implicit = true
	}
	if s.implicit {
		inTx = true
	} else if inTx && !s.inTx {
		s.begin()
	}
	for _, c := range st.Settings {
		if c.Unbound() || !Tracked(c.Name) {
			continue // not followed, or a value not bound (Statement.Bound)
		}
		if c.Name != "all" {
			s.set(c.Name, c, inTx)
			if c.Name == "session_authorization" {
				// It sets the current user as well: SET ROLE no longer
				// applies.
				s.set("role", SettingChange{Name: "role", Local: c.Local, Reset: true}, inTx)
			}
			continue
		}
		for _, n := range followed {
			if (n == "role" || n == "session_authorization") && st.Tag != "DISCARD ALL" {
				continue // RESET ALL leaves them (GUC_NO_RESET_ALL)
			}
			if _, set := s.explicit(n); !set {
				// PostgreSQL's RESET ALL skips a parameter whose value
				// is not a SET's: a SET LOCAL … TO DEFAULT earlier in
				// the block still ends with the block.
				continue
			}
			s.set(n, c, inTx)
		}
	}
}

// Outlasting returns the statements of done, those a failed query string
// or pipeline completed before its error, whose effects outlast the error:
// all of them when the error came inside a transaction block (which it
// fails, and whose end then decides), else those up to the last that
// ended a block, as PostgreSQL rolls back the implicit transaction the
// rest ran in. inTx says whether the batch started in a block.
func Outlasting(done []*Statement, inTx bool) []*Statement {
	kept := 0
	for i, st := range done {
		if !inTx && st.Class != ClassTransaction && txControlAhead(done[i+1:]) {
			inTx = true
		}
		switch st.TxKind {
		case TxBegin:
			inTx = true
		case TxCommit, TxRollback, TxPrepare:
			inTx = st.Chain
			if !inTx {
				kept = i + 1
			}
		}
	}
	if inTx {
		return done
	}
	return done[:kept]
}

// txControlAhead reports whether rest, the statements after one that ran
// outside a transaction block in the same query string or pipeline, holds
// a BEGIN, COMMIT, ROLLBACK or PREPARE TRANSACTION. PostgreSQL runs the
// statements of a string or pipeline in one implicit transaction, which a
// BEGIN turns into the block (the SETs and locks of the statements before
// it then last as long as the block, and their SET LOCALs hold in it), a
// COMMIT commits and a ROLLBACK rolls back (with a WARNING): the statement
// is then best taken as one run in a block.
func txControlAhead(rest []*Statement) bool {
	for _, st := range rest {
		switch st.TxKind {
		case TxBegin, TxCommit, TxRollback, TxPrepare:
			return true
		}
	}
	return false
}

// StartBatch tells Settings that the statements of one query string or
// pipeline of several statements follow (through Apply), and EndBatch that
// they ended. PostgreSQL runs those outside a transaction block in one
// implicit transaction: a SET LOCAL lasts until its end, a ROLLBACK in it
// undoes the SETs before it (with a WARNING), a BEGIN makes it the block,
// and its end commits it. Of a batch that failed, pass only the
// statements whose effects outlast the failure.
func (s *Settings) StartBatch() { s.batch = true }

// EndBatch ends what StartBatch started.
func (s *Settings) EndBatch() {
	if s.implicit {
		s.end(true)
	}
	s.batch, s.implicit = false, false
}

func (s *Settings) begin() {
	s.inTx, s.failed = true, false
	clear(s.tx)
	s.saves.reset()
}

// end closes the transaction; commit applies its session-level changes.
func (s *Settings) end(commit bool) {
	if commit {
		for n, v := range s.tx {
			switch {
			case !v.session:
			case v.commitReset:
				delete(s.session, n)
			default:
				s.setSession(n, v.commitValue)
			}
		}
	}
	s.inTx, s.failed = false, false
	clear(s.tx)
	s.saves.reset()
}

// Began tells Settings that a transaction block started without a BEGIN it
// saw (the guard let it pass undecided); nothing when it knows of one.
func (s *Settings) Began() {
	if !s.inTx {
		s.begin()
	}
}

// Failed tells Settings that the transaction block has failed (the server
// reported status 'E'): PostgreSQL ends it with a rollback even when the
// client sends COMMIT, unless a ROLLBACK TO SAVEPOINT recovers it first.
func (s *Settings) Failed() {
	if s.inTx {
		s.failed = true
	}
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
	e := s.tx[name]
	e.value, e.reset, e.local = c.Value, c.Reset, c.Local
	if !c.Local {
		e.session, e.commitValue, e.commitReset = true, c.Value, c.Reset
	}
	s.tx[name] = e
}

func (s *Settings) setSession(name, value string) {
	if s.session == nil {
		s.session = make(map[string]string)
	}
	s.session[name] = value
}

// Effective returns the value in force for name if the client set one (a
// SET, or at connection start), and ok = false when the server's default
// applies.
func (s *Settings) Effective(name string) (value string, ok bool) {
	if v, set := s.explicit(name); set {
		return v, true
	}
	v, ok := s.base[name]
	return v, ok
}

// explicit returns the value a SET in this session gave name; set is false
// when none did, or a RESET (or SET … TO DEFAULT) undid it.
func (s *Settings) explicit(name string) (value string, set bool) {
	if s.inTx {
		if v, found := s.tx[name]; found {
			return v.value, !v.reset
		}
	}
	v, set := s.session[name]
	return v, set
}

// Clone returns a copy that changes independently of s.
func (s *Settings) Clone() Settings {
	c := Settings{session: maps.Clone(s.session), tx: maps.Clone(s.tx), inTx: s.inTx, failed: s.failed, base: s.base}
	for _, sp := range s.saves {
		c.saves.set(sp.name, maps.Clone(sp.state))
	}
	return c
}

// After returns the value change c gives name (c's parameter, or "all")
// for the statements that follow it in the same transaction or query
// string: its value, or for a reset the session's baseline (ok = false:
// the server's default).
func (s *Settings) After(name string, c SettingChange) (value string, ok bool) {
	if !c.Reset {
		return c.Value, true
	}
	v, ok := s.base[name]
	return v, ok
}

// AppendRestore appends to dst the statements that undo an injected SET of
// name and returns the result: in a transaction block (inTx) a SET LOCAL
// back to the client's value (or TO DEFAULT, which is its baseline);
// outside one a session SET to the client's value, or RESET.
//
// A session-level restore may run in a block the client's statements left
// open (a string that ends in one begun by BEGIN or AND CHAIN). When the
// client set name LOCAL in that block, the restore puts back the value a
// COMMIT of the block would leave (the session's, or a session-level SET
// made earlier in the block) and then the block's with SET LOCAL: a
// session-level SET of the block's value would outlive the block.
func (s *Settings) AppendRestore(dst []string, name string, inTx bool) []string {
	if e, ok := s.tx[name]; !inTx && s.inTx && ok && e.local {
		v, set := s.session[name]
		if e.session {
			v, set = e.commitValue, !e.commitReset
		}
		if set {
			dst = append(dst, "SET "+name+" = "+quoteLiteral(v))
		} else {
			dst = append(dst, "RESET "+name)
		}
		inTx = true // and the block's value
	}
	v, set := s.explicit(name)
	switch {
	case inTx && set:
		return append(dst, "SET LOCAL "+name+" = "+quoteLiteral(v))
	case inTx:
		return append(dst, "SET LOCAL "+name+" TO DEFAULT")
	case set:
		return append(dst, "SET "+name+" = "+quoteLiteral(v))
	default:
		return append(dst, "RESET "+name)
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

// InjectAtMost returns a statement that sets name to d for the next
// statement unless the value in force is already shorter (and not 0, which
// means none). For when the client's value is not known: one from
// postgresql.conf, ALTER ROLE or ALTER DATABASE. lockguard then never
// lengthens a timeout a database administrator configured.
func InjectAtMost(name string, d time.Duration, inTx bool) string {
	v := "'" + strconv.FormatInt(d.Milliseconds(), 10) + "ms'"
	cur := "current_setting('" + name + "')::interval"
	return "SELECT set_config('" + name + "', " + v + ", " + strconv.FormatBool(inTx) + ") WHERE " +
		cur + " = interval '0' OR " + cur + " > interval " + v
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
// client set it, with "$user" replaced by the role the session set (SET
// ROLE, set_config('role', …)), or else the user SET SESSION AUTHORIZATION
// made it, or else by user; PostgreSQL's default ("$user", public) when it
// did not.
func (s *Settings) SearchPath(user string) []string {
	user = s.CurrentUser(user)
	v, ok := s.Effective("search_path")
	if !ok {
		return []string{user, "public"}
	}
	out := SplitIdentifiers(v)
	for i, p := range out {
		if p == "$user" {
			out[i] = user
		}
	}
	return out
}

// CurrentUser returns the role "$user" stands for: the one the session set
// (SET ROLE, set_config('role', …)), or else the user SET SESSION
// AUTHORIZATION made it, or else user, the session's.
func (s *Settings) CurrentUser(user string) string {
	if r, ok := s.Effective("role"); ok && r != "" && !strings.EqualFold(r, "none") {
		return r
	}
	if a, ok := s.Effective("session_authorization"); ok && a != "" {
		return a
	}
	return user
}

// SplitIdentifiers reads a comma-separated list of names as PostgreSQL
// reads search_path (SplitIdentifierString): blanks around a name are
// dropped, an unquoted name is folded to lower case, a double-quoted one
// keeps its case ("" stands for a quote), and each is cut to 63 bytes. It
// stops at the first malformed element, which PostgreSQL would not have
// accepted.
func SplitIdentifiers(list string) []string {
	var out []string
	i := 0
	skip := func() {
		for i < len(list) && IsSpace(list[i]) {
			i++
		}
	}
	for {
		skip()
		if i == len(list) {
			return out
		}
		var name string
		if list[i] == '"' {
			var b strings.Builder
			for i++; ; i++ {
				if i == len(list) {
					return out // unterminated
				}
				if list[i] == '"' {
					if i+1 < len(list) && list[i+1] == '"' {
						b.WriteByte('"')
						i++
						continue
					}
					i++
					break
				}
				b.WriteByte(list[i])
			}
			name = b.String()
		} else {
			start := i
			for i < len(list) && list[i] != ',' && !IsSpace(list[i]) {
				i++
			}
			name = asciiLower(list[start:i])
		}
		if name == "" {
			return out
		}
		out = append(out, truncateIdent(name))
		skip()
		if i == len(list) || list[i] != ',' {
			return out
		}
		i++
	}
}

// asciiLower folds A-Z only, as PostgreSQL does for names in UTF-8.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// maxIdentLen is the most bytes of a PostgreSQL identifier (NAMEDATALEN-1).
const maxIdentLen = 63

// truncateIdent cuts name to PostgreSQL's 63 bytes, at a character
// boundary.
func truncateIdent(name string) string {
	return clipUTF8(name, maxIdentLen)
}

// clipUTF8 cuts s to at most n bytes, at a character boundary
// (pg_mbcliplen).
func clipUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
