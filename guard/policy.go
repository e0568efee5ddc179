package guard

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Policy decides what lockguard does about each statement: it runs the rules
// of the catalog (Rules) with the actions, scopes and switches of a
// PolicyConfig. A Policy is immutable and safe for concurrent use; build a
// new one to change it (config reload).
type Policy struct {
	rules         [numRules]ruleSetting
	freeze        bool
	windows       []window
	windowText    []string
	overrides     bool
	requireReason bool
}

type ruleSetting struct {
	on          bool
	action      Action
	overridable bool
	scope       *ruleScope
	otherwiseOn bool
	otherwise   Action
}

type ruleScope struct {
	databases, users, apps, tables []pattern
	minRows, minBytes              int64
	versions                       []versionBound
}

// SizeCatalog is an optional extension of Catalog for the min-rows and
// min-bytes scopes: a table's estimated row count (pg_class.reltuples;
// rows < 0 when never analysed) and its total size on disk
// (pg_total_relation_size). Without it RelInfo.Bytes is used for min-bytes.
type SizeCatalog interface {
	TableSize(rel RelName) (rows, bytes int64, ok bool)
}

// ColumnCatalog is an optional extension of Catalog: a column's type as
// format_type prints it ("character varying(50)", "timestamp(3) without time
// zone") and whether it is NOT NULL. change-column-type needs the old type to
// tell a binary-coercible change from a rewrite; add-primary-key … USING
// INDEX needs the nullability.
type ColumnCatalog interface {
	ColumnType(rel RelName, column string) (typ string, notNull bool, ok bool)
}

// CastCatalog is an optional extension of Catalog: whether PostgreSQL
// casts type from to type to (names as to_regtype reads them) without a
// function (pg_cast.castmethod 'b': binary-coercible), and whether it knows
// both types. change-column-type asks it about changes its own list of
// binary-coercible changes does not cover (integer to oid, xml to text …).
type CastCatalog interface {
	BinaryCoercible(from, to string) (coercible, ok bool)
}

// PartitionKeyCatalog is an optional extension of Catalog: the partition
// key of partitioned table rel — its strategy ('r' range, 'l' list, 'h'
// hash) and its columns (ok is false when one is an expression).
// attach-partition-scan uses it to see whether a validated CHECK on the
// table being attached proves its bound, so that PostgreSQL skips that
// scan.
type PartitionKeyCatalog interface {
	PartitionKey(rel RelName) (strategy byte, columns []string, ok bool)
}

// ConstraintDefCatalog is an optional extension of Catalog: a constraint's
// definition as pg_get_constraintdef prints it ("CHECK ((email IS NOT
// NULL))"). set-not-null uses it to find a validated CHECK that proves the
// column not null, so that PostgreSQL 12+ skips the scan.
type ConstraintDefCatalog interface {
	ConstraintDef(table RelName, name string) (def string, ok bool)
}

var defaultPolicy = mustPolicy(PolicyConfig{})

func mustPolicy(cfg PolicyConfig) *Policy {
	p, err := NewPolicy(cfg)
	if err != nil {
		panic("BUG: " + err.Error())
	}
	return p
}

// DefaultPolicy returns the default policy: nothing blocks, lock and
// availability hazards warn, hygiene rules are recorded (allow).
func DefaultPolicy() *Policy { return defaultPolicy }

// NewPolicy validates cfg and builds the policy. Every problem is reported,
// joined in one error: unknown presets, rule ids or actions, bad patterns,
// version constraints and windows.
func NewPolicy(cfg PolicyConfig) (*Policy, error) {
	p := &Policy{freeze: cfg.Freeze, overrides: true, requireReason: cfg.RequireReason}
	if cfg.Overrides != nil {
		p.overrides = *cfg.Overrides
	}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf("policy: "+format, args...)) }
	preset := cfg.Preset
	switch preset {
	case "", "default", "strict", "off":
	default:
		fail("unknown preset %q (want default, strict or off)", preset)
		preset = "default"
	}
	for i := range p.rules {
		info := &ruleCatalog[i]
		s := &p.rules[i]
		s.on = preset != "off"
		s.action = info.Default
		if preset == "strict" {
			s.action = info.Strict
		}
		s.overridable = info.Overridable
	}
	ids := make([]string, 0, len(cfg.Rules))
	for id := range cfg.Rules {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		rc := cfg.Rules[id]
		r, ok := ruleIndex[id]
		if !ok {
			if sug := suggestRules(id); len(sug) > 0 {
				fail("rules: unknown rule %q (did you mean %s?)", id, strings.Join(sug, ", "))
			} else {
				fail("rules: unknown rule %q (lockguard check --list-rules lists them)", id)
			}
			continue
		}
		s := &p.rules[r]
		switch rc.Action {
		case "":
		case "off":
			s.on = false
		default:
			a, ok := ParseAction(rc.Action)
			if !ok {
				fail("rules.%s.action: unknown action %q (want allow, warn, block or off)", id, rc.Action)
			}
			s.on, s.action = true, a
		}
		if rc.Overridable != nil {
			s.overridable = *rc.Overridable
		}
		if rc.hasScope() {
			sc, err := buildScope(id, &rc)
			if err != nil {
				errs = append(errs, err)
			}
			s.scope = sc
		}
		if rc.Otherwise != "" {
			if !rc.hasScope() {
				fail("rules.%s.otherwise: needs a scope (databases, users, applications, tables, min-rows, min-bytes or versions)", id)
			}
			if rc.Otherwise == "off" {
				s.otherwiseOn = false
			} else if a, ok := ParseAction(rc.Otherwise); ok {
				s.otherwiseOn, s.otherwise = true, a
			} else {
				fail("rules.%s.otherwise: unknown action %q (want allow, warn, block or off)", id, rc.Otherwise)
			}
		}
	}
	for i, w := range cfg.Windows {
		pw, err := parseWindow(w)
		if err != nil {
			fail("windows[%d]: %v", i, err)
			continue
		}
		p.windows = append(p.windows, pw)
		p.windowText = append(p.windowText, w)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

func buildScope(id string, rc *RuleConfig) (*ruleScope, error) {
	var errs []error
	sc := &ruleScope{minRows: int64(rc.MinRows), minBytes: int64(rc.MinBytes)}
	field := func(name string, pats []string) []pattern {
		out, err := parsePatterns("policy: rules."+id+"."+name, pats)
		if err != nil {
			errs = append(errs, err)
		}
		return out
	}
	sc.databases = field("databases", rc.Databases)
	sc.users = field("users", rc.Users)
	sc.apps = field("applications", rc.Applications)
	sc.tables = field("tables", rc.Tables)
	if rc.MinRows < 0 || rc.MinBytes < 0 {
		errs = append(errs, fmt.Errorf("policy: rules.%s: min-rows and min-bytes must not be negative", id))
	}
	if rc.Versions != "" {
		v, err := parseVersions(rc.Versions)
		if err != nil {
			errs = append(errs, fmt.Errorf("policy: rules.%s.%w", id, err))
		}
		sc.versions = v
	}
	return sc, errors.Join(errs...)
}

// Action returns the action rule id has under p when its scope matches, and
// false when the rule is off or unknown.
func (p *Policy) Action(id string) (Action, bool) {
	r, ok := ruleIndex[id]
	if !ok || !p.rules[r].on {
		return 0, false
	}
	return p.rules[r].action, true
}

// Evaluate runs the rules over every statement of a and returns one Finding
// per rule that fired, in statement order, with the action after scopes and
// inline overrides. c may be nil (no session facts). It returns nil, without
// allocating, when a holds no DDL or maintenance statement and the
// transaction holds no ACCESS EXCLUSIVE lock — the path of ordinary traffic.
//
// At runtime (c.Offline unset) a is one query string: several statements in
// it run as one implicit transaction unless they say BEGIN, and an inline
// override anywhere in c.RawSQL applies to all of them. The findings do not
// change c.Tx: the caller records each statement that succeeded with
// TxState.Record.
func (p *Policy) Evaluate(a *Analysis, c *Context) []Finding {
	if a == nil || len(a.Statements) == 0 || !mayFire(a, c) {
		return nil
	}
	if p == nil {
		p = defaultPolicy
	}
	return p.evaluate(a, c)
}

// mayFire is the allocation-free test that ordinary traffic takes.
func mayFire(a *Analysis, c *Context) bool {
	if c != nil && (c.Offline || c.Tx != nil && c.Tx.AccessExclusive) {
		return true
	}
	return MayFire(a, c != nil && c.InTransaction, false)
}

// MayFire reports whether Evaluate may find anything in a, for a statement
// sent in a transaction block when inTx, in a transaction holding ACCESS
// EXCLUSIVE when txAccessExclusive. When it is false, Evaluate returns
// nothing: a caller can skip building the Context.
func MayFire(a *Analysis, inTx, txAccessExclusive bool) bool {
	if txAccessExclusive {
		return true
	}
	for i := range a.Statements {
		switch a.Statements[i].Class {
		case ClassDDL, ClassMaintenance:
			return true
		case ClassTransaction:
			if a.Statements[i].TxKind == TxBegin && (len(a.Statements) > 1 || inTx) {
				return true
			}
		}
	}
	return false
}

// evaluator is the state of one Evaluate call: the simulated transaction
// state as the statements of a run one after another, and what the earlier
// statements of the text (a migration file) created and set.
type evaluator struct {
	p *Policy
	c *Context
	a *Analysis

	i  int
	st *Statement
	f  *stmtFacts

	multi    bool // runtime multi-statement string (implicit transaction)
	blocks   int  // nesting of checkBlock
	inTx     bool // inside a transaction block, explicit or implicit
	explicit bool // inside BEGIN … COMMIT
	beginAt  int
	tx       TxState

	// What earlier statements of the text did (a file, offline).
	created     []RelName
	temp        []RelName
	cols        []colMem
	cons        []conMem
	idxs        []idxMem
	lockTimeout timeoutState
	stmtTimeout timeoutState
	utc         bool
	firedLT     bool
	firedST     bool

	out   []Finding
	start int // first finding of the current statement
}

// timeoutState says whether a timeout is in force: the session's, or a SET
// LOCAL's (masked) that overrides it until the block ends.
type timeoutState struct{ session, local, masked bool }

func (t timeoutState) set() bool {
	if t.masked {
		return t.local
	}
	return t.session
}

type colMem struct {
	rel     RelName
	name    string
	typ     typeRef
	notNull bool
}

type conMem struct {
	rel       RelName
	name      string
	kind      ConstraintType
	columns   []string
	notNullOf []string
	validated bool
	ref       RelName
}

type idxMem struct {
	rel     RelName
	name    string
	columns []string
}

var emptyContext Context

// History is what earlier migration files defined, for Context.History.
// The zero value is ready to use.
type History struct {
	cols []colMem
	cons []conMem
	idxs []idxMem
}

func (p *Policy) evaluate(a *Analysis, c *Context) []Finding {
	if c == nil {
		c = &emptyContext
	}
	e := &evaluator{p: p, c: c, a: a, beginAt: -1}
	e.inTx = c.InTransaction
	e.explicit = c.InTransaction
	if c.Tx != nil {
		e.tx = c.Tx.Clone()
	}
	if h := c.History; c.Offline && h != nil {
		e.cols, e.cons, e.idxs = slices.Clone(h.cols), slices.Clone(h.cons), slices.Clone(h.idxs)
		defer func() { h.cols, h.cons, h.idxs = e.cols, e.cons, e.idxs }()
	}
	e.multi = !c.Offline && len(a.Statements) > 1
	if e.multi {
		e.inTx = true
	}
	for i := range a.Statements {
		e.i, e.st = i, &a.Statements[i]
		e.judge()
	}
	e.finish()
	if len(e.out) == 0 {
		return nil
	}
	if p.overrides {
		e.applyOverrides()
	}
	return e.out
}

// judge runs the rules over e.st, a statement of e.a — over the statements
// it runs, when it is a code block or a CALL whose procedure is known — and
// moves the simulated state past it.
func (e *evaluator) judge() {
	if len(e.st.block) > 0 && e.blocks < maxBlockDepth {
		e.blocks++
		e.checkBlock()
		e.blocks--
		return
	}
	e.f = nil
	if e.st.Class == ClassDDL || e.st.Class == ClassMaintenance {
		e.f = factsFor(e.a, e.st)
	}
	e.start = len(e.out)
	e.check()
	e.advance()
}

// hit is what a rule found.
type hit struct {
	rel    RelName
	lock   LockMode
	msg    string // what was detected, without the "rule-id: " prefix
	detail string
	hint   string
	note   string
}

// fire records a finding of rule r for the current statement, after the
// rule's switches and scope.
func (e *evaluator) fire(r ruleID, h hit) {
	info := r.info()
	if info.OfflineOnly && !e.c.Offline || info.RuntimeOnly && e.c.Offline {
		return
	}
	s := &e.p.rules[r]
	if !s.on {
		return
	}
	action := s.action
	if s.scope != nil && !e.inScope(s.scope, h.rel) {
		if !s.otherwiseOn {
			return
		}
		action = s.otherwise
	}
	e.out = append(e.out, Finding{
		Rule:      info.ID,
		Action:    action,
		Statement: e.i,
		Relation:  h.rel,
		Lock:      h.lock,
		Message:   info.ID + ": " + h.msg,
		Detail:    h.detail,
		Hint:      h.hint,
		Note:      h.note,
	})
}

// firedHere reports whether a rule of one of the categories fired for the
// current statement.
func (e *evaluator) firedHere(categories ...string) bool {
	for _, f := range e.out[e.start:] {
		if info, ok := LookupRule(f.Rule); ok && slices.Contains(categories, info.Category) {
			return true
		}
	}
	return false
}

func (e *evaluator) firedRule(r ruleID) bool {
	for _, f := range e.out[e.start:] {
		if f.Rule == ruleCatalog[r].ID {
			return true
		}
	}
	return false
}

func (e *evaluator) inScope(sc *ruleScope, rel RelName) bool {
	c := e.c
	if len(sc.databases) > 0 && !matchList(sc.databases, c.Database) {
		return false
	}
	if len(sc.users) > 0 && !matchList(sc.users, c.User) {
		return false
	}
	if len(sc.apps) > 0 && !matchList(sc.apps, c.Application) {
		return false
	}
	if len(sc.tables) > 0 && !matchTables(sc.tables, rel) {
		return false
	}
	if len(sc.versions) > 0 && !matchVersions(sc.versions, e.version()) {
		return false
	}
	if sc.minRows > 0 || sc.minBytes > 0 {
		rows, bytes := e.size(rel)
		large := sc.minRows > 0 && (rows < 0 || rows >= sc.minRows) ||
			sc.minBytes > 0 && (bytes < 0 || bytes >= sc.minBytes)
		if !large {
			return false
		}
	}
	return true
}

// size returns rel's row count and bytes, -1 for what is unknown.
func (e *evaluator) size(rel RelName) (rows, bytes int64) {
	if rel.Name == "" {
		return -1, -1
	}
	if e.isNew(rel) {
		return 0, 0
	}
	rows, bytes = -1, -1
	cat := e.c.Catalog
	if cat != nil {
		if sc, ok := cat.(SizeCatalog); ok {
			if r, b, ok := sc.TableSize(rel); ok {
				return r, b
			}
		}
	}
	if e.c.Sizes != nil {
		if r, b, ok := e.c.Sizes.TableSize(rel); ok {
			return r, b
		}
	}
	if cat != nil {
		if info, ok := cat.Relation(rel); ok && info.Bytes >= 0 {
			bytes = info.Bytes
		}
	}
	return
}

func (e *evaluator) version() int {
	if e.c.ServerVersion > 0 {
		return e.c.ServerVersion
	}
	if e.c.Catalog != nil {
		return e.c.Catalog.ServerVersion()
	}
	return 0
}

// isNew reports whether rel was created earlier in this transaction (or,
// offline, earlier in the file): such a table is empty and unused, so what
// would be a hazard on a live table is not.
func (e *evaluator) isNew(rel RelName) bool {
	if rel.Name == "" {
		return false
	}
	for _, r := range e.tx.Created {
		if r.Matches(rel) {
			return true
		}
	}
	for _, r := range e.created {
		if r.Matches(rel) {
			return true
		}
	}
	return false
}

func (e *evaluator) isTemp(rel RelName) bool {
	for _, r := range e.temp {
		if r.Matches(rel) {
			return true
		}
	}
	return false
}

// target returns the relation the statement acts on: the analysis's
// (catalog-resolved) target when it has one, else the name as written.
func (e *evaluator) target() RelName {
	for _, l := range e.st.Locks {
		if l.Role == RoleTarget {
			return l.Rel
		}
	}
	if e.f != nil {
		return e.f.target
	}
	return RelName{}
}

// lockOn returns the mode the statement takes on rel.
func (e *evaluator) lockOn(rel RelName) LockMode {
	if l, ok := e.st.LockOn(rel); ok {
		return l.Mode
	}
	return NoLock
}

// others returns the relations besides rel the statement locks with at
// least mode, in the given roles.
func (e *evaluator) others(rel RelName, mode LockMode, roles ...Role) []RelName {
	var out []RelName
	for _, l := range e.st.Locks {
		if l.Rel.Matches(rel) || l.Mode < mode || !slices.Contains(roles, l.Role) {
			continue
		}
		out = append(out, l.Rel)
	}
	return out
}

// advance updates the simulated state after the current statement ran.
func (e *evaluator) advance() {
	st, f := e.st, e.f
	if st.Class == ClassTransaction {
		switch st.TxKind {
		case TxBegin:
			if !e.explicit {
				e.beginAt = e.i
			}
			e.explicit, e.inTx = true, true
		case TxCommit, TxRollback, TxPrepare:
			e.explicit = false
			e.inTx = e.multi
			e.beginAt = -1
			e.tx.Reset()
			e.lockTimeout.masked, e.stmtTimeout.masked = false, false
		case TxSavepoint:
			e.tx.Savepoint(st.Savepoint)
		case TxRelease:
			e.tx.Release(st.Savepoint)
		case TxRollbackTo:
			e.tx.RollbackTo(st.Savepoint)
		}
		return
	}
	for _, s := range st.Settings {
		switch s.Name {
		case "lock_timeout":
			e.lockTimeout.apply(s, e.inTx)
		case "statement_timeout":
			e.stmtTimeout.apply(s, e.inTx)
		case "timezone":
			e.utc = !s.Reset && isUTC(s.Value)
		case "all":
			e.lockTimeout, e.stmtTimeout = timeoutState{}, timeoutState{}
			e.utc = false
		}
	}
	if e.inTx {
		e.tx.record(st, f)
	}
	if f != nil {
		e.remember(f)
	}
}

func (t *timeoutState) apply(s SettingChange, inTx bool) {
	on := !s.Reset
	if on {
		if d, ok := ParseTimeout(s.Value); ok && d == 0 {
			on = false
		}
	}
	if s.Local {
		if inTx {
			t.local, t.masked = on, true
		}
		return
	}
	t.session, t.masked = on, false
}

func isUTC(v string) bool {
	switch strings.ToLower(strings.Trim(strings.TrimSpace(v), "'")) {
	case "utc", "etc/utc", "gmt", "etc/gmt", "z", "zulu", "universal", "+00", "+00:00", "0":
		return true
	}
	return false
}

// remember keeps what a DDL statement created, for the statements after it.
func (e *evaluator) remember(f *stmtFacts) {
	switch f.kind {
	case factCreateTable, factCreateTableAs:
		for _, r := range f.creates {
			e.created = append(e.created, r)
			if f.temp {
				e.temp = append(e.temp, r)
			}
		}
		for _, c := range f.columns {
			e.cols = append(e.cols, colMem{rel: f.target, name: c.name, typ: c.typ, notNull: c.notNull})
			for _, k := range c.inline {
				e.rememberCon(f.target, k, c.name)
			}
		}
		for _, k := range f.tableCons {
			e.rememberCon(f.target, k, "")
		}
	case factAlterTable:
		for _, c := range f.cmds {
			switch c.kind {
			case cmdAddColumn:
				if c.col != nil {
					e.cols = append(e.cols, colMem{rel: f.target, name: c.col.name, typ: c.col.typ, notNull: c.col.notNull})
					for _, k := range c.col.inline {
						e.rememberCon(f.target, k, c.col.name)
					}
				}
			case cmdAlterType:
				if m := e.colMem(f.target, c.column); m != nil && c.col != nil {
					m.typ = c.col.typ
				}
			case cmdSetNotNull, cmdDropNotNull:
				if m := e.colMem(f.target, c.column); m != nil {
					m.notNull = c.kind == cmdSetNotNull
				}
			case cmdAddConstraint:
				if c.con != nil {
					e.rememberCon(f.target, *c.con, "")
				}
			case cmdValidate:
				for i := range e.cons {
					if e.cons[i].name == c.name && e.cons[i].rel.Matches(f.target) {
						e.cons[i].validated = true
					}
				}
			case cmdDropConstraint:
				e.cons = slices.DeleteFunc(e.cons, func(m conMem) bool { return m.name == c.name && m.rel.Matches(f.target) })
			}
		}
	case factCreateIndex:
		name := f.indexName
		if name == "" {
			name = defaultIndexName(f.target, f.indexNameParts)
		}
		e.idxs = append(e.idxs, idxMem{rel: f.target, name: name, columns: f.indexColumns})
	}
}

func (e *evaluator) rememberCon(rel RelName, k conFact, column string) {
	name := k.nameOn(rel)
	cols := k.columns
	if len(cols) == 0 && column != "" {
		cols = []string{column}
	}
	e.cons = append(e.cons, conMem{rel: rel, name: name, kind: k.kind, columns: cols, notNullOf: k.notNullOf, validated: !k.notValid, ref: k.ref})
}

func (e *evaluator) colMem(rel RelName, name string) *colMem {
	for i := len(e.cols) - 1; i >= 0; i-- {
		if e.cols[i].name == name && e.cols[i].rel.Matches(rel) {
			return &e.cols[i]
		}
	}
	return nil
}

// nameOn is the constraint's name on table rel: its own, or the one
// PostgreSQL gives it (defaultConstraintName).
func (k conFact) nameOn(rel RelName) string {
	if k.name != "" {
		return k.name
	}
	return defaultConstraintName(rel, k)
}

// defaultConstraintName is the name PostgreSQL gives an unnamed constraint
// (ChooseConstraintName): orders_user_id_fkey, orders_check, users_pkey.
func defaultConstraintName(rel RelName, k conFact) string {
	suffix := "check"
	switch k.kind {
	case ConstraintForeignKey:
		suffix = "fkey"
	case ConstraintPrimaryKey:
		return objectName(rel.Name, "", "pkey")
	case ConstraintUnique:
		suffix = "key"
	case ConstraintExclusion:
		suffix = "excl"
	case ConstraintNotNull:
		suffix = "not_null"
	}
	cols := k.columns
	if k.kind == ConstraintCheck && len(cols) != 1 {
		// A CHECK is named after its column only when its expression
		// uses exactly one (AddRelationNewConstraints).
		cols = nil
	}
	if len(k.including) > 0 {
		// An index's name covers its INCLUDE columns too
		// (ChooseIndexColumnNames).
		cols = append(slices.Clip(cols), k.including...)
	}
	return objectName(rel.Name, nameAddition(cols), suffix)
}

// defaultIndexName is the name PostgreSQL gives an unnamed index
// (ChooseIndexName) named after parts (stmtFacts.indexNameParts).
func defaultIndexName(rel RelName, parts []string) string {
	return objectName(rel.Name, nameAddition(parts), "idx")
}

// nameAddition joins column names with "_" for an object's name, stopping
// once 63 bytes are reached (ChooseIndexNameAddition).
func nameAddition(cols []string) string {
	var b strings.Builder
	for _, c := range cols {
		if b.Len() > 0 {
			b.WriteByte('_')
		}
		b.WriteString(truncateIdent(c))
		if b.Len() >= maxIdentLen+1 {
			break
		}
	}
	return b.String()
}

// objectName is the name PostgreSQL makes up for an object from a table's
// name, an addition and a label (makeObjectName): name1_name2_label.
// When that is longer than 63 bytes, name1 and name2 are cut, the longer
// of the two first, so that the label is always whole: the primary key of
// a 63-byte table name still ends in _pkey.
func objectName(name1, name2, label string) string {
	n1, n2 := len(name1), len(name2)
	overhead := 0
	if name2 != "" {
		overhead++
	}
	if label != "" {
		overhead += len(label) + 1
	}
	for avail := maxIdentLen - overhead; n1+n2 > avail; {
		if n1 > n2 {
			n1--
		} else {
			n2--
		}
	}
	var b strings.Builder
	b.WriteString(clipUTF8(name1, n1))
	if name2 != "" {
		b.WriteByte('_')
		b.WriteString(clipUTF8(name2, n2))
	}
	if label != "" {
		b.WriteByte('_')
		b.WriteString(label)
	}
	return b.String()
}

// finish runs the rules that judge the text as a whole.
func (e *evaluator) finish() {
	if e.c.Offline && e.explicit && e.beginAt >= 0 {
		e.i, e.st, e.f = e.beginAt, &e.a.Statements[e.beginAt], nil
		e.fire(rUncommittedTxn, hit{
			msg:    "the file opens a transaction with BEGIN and never commits it",
			detail: "every lock taken after BEGIN stays held until the connection commits or closes",
			hint:   "COMMIT;",
		})
	}
	sort.SliceStable(e.out, func(i, j int) bool { return e.out[i].Statement < e.out[j].Statement })
}

// now is the time windows are judged at.
func (e *evaluator) now() time.Time {
	if !e.c.Now.IsZero() {
		return e.c.Now
	}
	return time.Now()
}
