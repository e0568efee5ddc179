package guard

import (
	"fmt"
	"slices"
	"strings"
)

// RelName names a relation. Schema is "" when the SQL did not qualify the name
// and no Catalog resolved it; such a name is resolved by the session's
// search_path when the statement runs.
type RelName struct {
	Schema string
	Name   string
}

// String returns schema.name, quoting either part when Postgres would need
// quotes to read it back.
func (r RelName) String() string {
	if r.Schema == "" {
		return quoteIdent(r.Name)
	}
	return quoteIdent(r.Schema) + "." + quoteIdent(r.Name)
}

// Matches reports whether r and o may name the same relation: the names are
// equal and the schemas are equal or either is unqualified.
func (r RelName) Matches(o RelName) bool {
	return r.Name == o.Name && (r.Schema == o.Schema || r.Schema == "" || o.Schema == "")
}

func quoteIdent(s string) string {
	plain := s != ""
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c == '_' || i > 0 && (c >= '0' && c <= '9' || c == '$')) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// Role says why a statement locks a relation.
type Role uint8

const (
	// RoleTarget is the relation the statement names and acts on.
	RoleTarget Role = iota
	// RoleReferenced is the other table of a foreign key: the referenced
	// table of an FK being added, dropped or checked, or a referencing table
	// whose FK is checked or dropped.
	RoleReferenced
	// RolePartitionParent is the partitioned (or inheritance) parent of the
	// table the statement acts on.
	RolePartitionParent
	// RolePartition is a partition or inheritance child reached through its
	// parent, including a default partition that must be checked.
	RolePartition
	// RoleIndexTable is the table of an index the statement names
	// (RelationLock.Index holds the index).
	RoleIndexTable
	// RoleCascaded is a table reached by CASCADE or a cascading foreign-key
	// action (TRUNCATE … CASCADE, DROP … CASCADE, ON DELETE CASCADE).
	RoleCascaded
	// RoleRead is any other relation the statement reads: joins, subqueries,
	// CTE bodies, the source of INSERT … SELECT, the tables of a view.
	RoleRead
	// RoleIndex is an index itself (Rel names the index). Planning a query
	// takes ACCESS SHARE on the indexes of its tables, so an ACCESS EXCLUSIVE
	// lock on an index stalls reads of its table as well.
	RoleIndex
)

var roleNames = [...]string{
	RoleTarget:          "target",
	RoleReferenced:      "referenced",
	RolePartitionParent: "partition parent",
	RolePartition:       "partition",
	RoleIndexTable:      "table of index",
	RoleCascaded:        "cascaded",
	RoleRead:            "read",
	RoleIndex:           "index",
}

func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// RelationLock is one table-level lock a statement takes.
type RelationLock struct {
	// Rel is the locked relation. A relation that only the Catalog could
	// name (the table of an index, say) is left out when there is none, and
	// Statement.Unknown says so.
	Rel  RelName
	Mode LockMode
	Role Role
	// Index is the index through which the table was reached (DROP INDEX,
	// REINDEX INDEX, CLUSTER … USING), "" otherwise.
	Index string
	// Conditional is set when the lock is taken only if execution reaches
	// it: a foreign-key check that runs only when a key value changes, a
	// partition that plan-time pruning may skip, the partition a row is
	// routed to. An admission check should treat it as taken.
	Conditional bool
}

// Class is the broad kind of a statement.
type Class uint8

const (
	ClassOther       Class = iota // anything else (LOCK, DO, CALL, EXECUTE, …)
	ClassRead                     // SELECT, TABLE, VALUES, COPY … TO, EXPLAIN
	ClassWrite                    // INSERT, UPDATE, DELETE, MERGE, COPY … FROM
	ClassDDL                      // CREATE, ALTER, DROP, TRUNCATE, COMMENT, GRANT, …
	ClassMaintenance              // VACUUM, ANALYZE, CLUSTER, REINDEX, REFRESH MATERIALIZED VIEW
	ClassTransaction              // BEGIN, COMMIT, ROLLBACK, SAVEPOINT, PREPARE TRANSACTION, …
	ClassSession                  // SET, RESET, SHOW, DISCARD
)

var classNames = [...]string{
	ClassOther:       "other",
	ClassRead:        "read",
	ClassWrite:       "write",
	ClassDDL:         "ddl",
	ClassMaintenance: "maintenance",
	ClassTransaction: "transaction",
	ClassSession:     "session",
}

func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return fmt.Sprintf("Class(%d)", uint8(c))
}

// TxKind is the kind of a transaction-control statement.
type TxKind uint8

const (
	TxNone TxKind = iota
	TxBegin
	TxCommit
	TxRollback
	TxSavepoint
	TxRelease
	TxRollbackTo
	TxPrepare
	TxCommitPrepared
	TxRollbackPrepared
)

var txKindNames = [...]string{
	TxNone:             "",
	TxBegin:            "begin",
	TxCommit:           "commit",
	TxRollback:         "rollback",
	TxSavepoint:        "savepoint",
	TxRelease:          "release",
	TxRollbackTo:       "rollback to",
	TxPrepare:          "prepare",
	TxCommitPrepared:   "commit prepared",
	TxRollbackPrepared: "rollback prepared",
}

func (k TxKind) String() string {
	if int(k) < len(txKindNames) {
		return txKindNames[k]
	}
	return fmt.Sprintf("TxKind(%d)", uint8(k))
}

// SettingChange is a SET or RESET of a run-time parameter.
type SettingChange struct {
	// Name is the parameter, lower case ("lock_timeout"); "all" for RESET
	// ALL and DISCARD ALL.
	Name string
	// Value is the new value as written, without quotes ("2s", "a, b");
	// empty for a reset.
	Value string
	// Local is set for SET LOCAL (and set_config(…, true)): the value lasts
	// until the end of the transaction.
	Local bool
	// Reset is set for RESET, SET … TO DEFAULT and DISCARD ALL.
	Reset bool
	// Param, when not 0, says the value is bind parameter $Param
	// (set_config(name, $1, …)): Value is then empty until Statement.Bound
	// fills it in for one execution, and Settings ignores the change.
	// NameParam and LocalParam do the same for set_config's name and
	// is_local (set_config($1, $2, $3)); Name is empty while NameParam is
	// set.
	Param, NameParam, LocalParam int
}

// Unbound reports whether c waits for a bind parameter (Statement.Bound).
func (c *SettingChange) Unbound() bool { return c.Param > 0 || c.NameParam > 0 || c.LocalParam > 0 }

// Statement is the analysis of one SQL statement.
type Statement struct {
	// Tag is the command tag Postgres reports for the statement: "ALTER
	// TABLE", "SELECT", "CREATE INDEX".
	Tag   string
	Class Class
	// Locks holds one entry per relation, with the strongest mode the
	// statement takes on it (after merging ALTER TABLE subcommands), in the
	// order the relations were first met: targets first.
	Locks []RelationLock
	// Rewrite is set when the statement rewrites the whole table (new
	// relfilenode with every row copied) while holding its lock.
	Rewrite bool
	// Scan is set when the statement reads the whole table while holding its
	// lock (validation, index build).
	Scan bool
	// Concurrently is set for the CONCURRENTLY forms.
	Concurrently bool
	// CopyIn is set for COPY … FROM STDIN: PostgreSQL then waits for the
	// client's data in the middle of the string or batch (copy-in mode),
	// and reads no other message until the data ends.
	CopyIn bool
	// NoTxBlock is set when the statement cannot run inside a transaction
	// block (CREATE INDEX CONCURRENTLY, VACUUM, …), and so must not be sent
	// as part of a multi-statement string either.
	NoTxBlock bool
	// TxKind is set for ClassTransaction.
	TxKind TxKind
	// Savepoint is the savepoint a SAVEPOINT, RELEASE or ROLLBACK TO names.
	Savepoint string
	// Chain is set for COMMIT AND CHAIN and ROLLBACK AND CHAIN, which start
	// a new transaction block as they end one.
	Chain bool
	// Settings lists the parameters the statement sets or resets.
	Settings []SettingChange
	// Lasting is set when the statement does something the rollback of
	// its transaction leaves in place: PREPARE, DEALLOCATE, a call of a
	// session-level advisory lock function (pg_advisory_lock,
	// pg_advisory_unlock, …), in a code block too. Running it again, as a
	// retry of its failed batch would, does it twice. Functions of the
	// database's own are not looked into.
	Lasting bool
	// Unknown lists, in words, facts the analysis needed from the Catalog
	// and could not get. An empty list means the locks are complete.
	Unknown []string
	// Notes lists other caveats worth showing to a person (explain).
	Notes []string
	// Subcommands names the ALTER TABLE subcommands, and similar parts of
	// other statements, for explain and policy: "ADD CONSTRAINT FOREIGN KEY".
	Subcommands []string
	// Start and End are the byte offsets of the statement within
	// Analysis.SQL.
	Start, End int
	// block holds the SQL statements a PL/pgSQL code block (DO) runs, in
	// order, for the policy's rules.
	block []string
}

// Strongest returns the strongest mode the statement takes on any relation.
func (s *Statement) Strongest() LockMode {
	var m LockMode
	for i := range s.Locks {
		if s.Locks[i].Mode > m {
			m = s.Locks[i].Mode
		}
	}
	return m
}

// LockOn returns the lock the statement takes on rel (matched with
// RelName.Matches).
func (s *Statement) LockOn(rel RelName) (RelationLock, bool) {
	for i := range s.Locks {
		if s.Locks[i].Rel.Matches(rel) {
			return s.Locks[i], true
		}
	}
	return RelationLock{}, false
}

// WaitsBehind reports whether the statement would wait because another
// session holds, or waits for, mode held on rel.
func (s *Statement) WaitsBehind(rel RelName, held LockMode) bool {
	for i := range s.Locks {
		if s.Locks[i].Rel.Matches(rel) && WouldWait(s.Locks[i].Mode, held) {
			return true
		}
	}
	return false
}

// Analysis is the result of analysing one query string.
//
// An Analysis returned by Analyzer.Analyze is shared by every caller that
// analyses the same text: treat it, and every slice in it, as read-only.
type Analysis struct {
	// SQL is the text that was analysed: the query string with leading and
	// trailing comments and white space removed. Statement offsets refer to
	// it.
	SQL        string
	Statements []Statement
	// Err is the parse error, if any. Statements is empty then.
	Err error

	// ptrs points at each of Statements, made once with the analysis.
	ptrs []*Statement
}

// Bound returns st with its bind-parameter settings filled in from param
// (which returns $n's bytes, ok = false when it has none); a change with a
// parameter that has no value, or an is_local that is not a boolean, is
// left out. It returns st itself when st has no such setting.
func (st *Statement) Bound(param func(n int) (string, bool)) *Statement {
	i := slices.IndexFunc(st.Settings, func(c SettingChange) bool { return c.Unbound() })
	if i < 0 {
		return st
	}
	c := *st
	c.Settings = make([]SettingChange, 0, len(st.Settings))
	for _, ch := range st.Settings {
		if ch.Param > 0 {
			v, ok := param(ch.Param)
			if !ok {
				continue
			}
			ch.Value, ch.Param = v, 0
		}
		if ch.NameParam > 0 {
			v, ok := param(ch.NameParam)
			if !ok {
				continue
			}
			ch.Name, ch.NameParam = strings.ToLower(v), 0
		}
		if ch.LocalParam > 0 {
			v, ok := param(ch.LocalParam)
			if ok {
				ch.Local, ok = boundBool(v)
			}
			if !ok {
				continue
			}
			ch.LocalParam = 0
		}
		c.Settings = append(c.Settings, ch)
	}
	return &c
}

// boundBool reads a boolean constant or bind parameter: one byte 1 or 0 in
// binary format, or the text forms PostgreSQL's boolin accepts (a unique
// prefix of true, false, yes, no; on, off; 1, 0), case-insensitive and
// trimmed.
func boundBool(v string) (b, ok bool) {
	if len(v) == 1 && v[0] <= 1 {
		return v[0] == 1, true
	}
	v = strings.ToLower(strings.TrimSpace(v))
	if v == "" {
		return false, false
	}
	switch {
	case strings.HasPrefix("true", v), strings.HasPrefix("yes", v), v == "on", v == "1":
		return true, true
	case strings.HasPrefix("false", v), strings.HasPrefix("no", v), v == "of", v == "off", v == "0":
		return false, true
	}
	return false, false
}

// StatementPtrs returns a pointer to each of a's statements. An analysis
// made by an Analyzer returns the same slice every time, without
// allocating; its capacity is its length, so appending to it copies. It
// must not be modified.
func (a *Analysis) StatementPtrs() []*Statement {
	if len(a.ptrs) == len(a.Statements) && (len(a.ptrs) == 0 || a.ptrs[0] == &a.Statements[0]) {
		return a.ptrs
	}
	return statementPtrs(a.Statements)
}

func statementPtrs(sts []Statement) []*Statement {
	if len(sts) == 0 {
		return nil
	}
	p := make([]*Statement, len(sts))
	for i := range sts {
		p[i] = &sts[i]
	}
	return p
}

// Text returns the SQL text of s, which must belong to a.
func (a *Analysis) Text(s *Statement) string {
	if s.Start < 0 || s.End > len(a.SQL) || s.Start > s.End {
		return ""
	}
	return a.SQL[s.Start:s.End]
}

// Strongest returns the strongest mode any statement of a takes.
func (a *Analysis) Strongest() LockMode {
	var m LockMode
	for i := range a.Statements {
		if s := a.Statements[i].Strongest(); s > m {
			m = s
		}
	}
	return m
}
