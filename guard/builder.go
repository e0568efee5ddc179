package guard

import (
	pg "github.com/pganalyze/pg_query_go/v6"
)

// builder accumulates the analysis of one statement.
type builder struct {
	cat   Catalog
	st    Statement
	idx   map[RelName]int
	infos map[RelName]relLookup
	cons  map[RelName][]Constraint
	parts map[RelName][]RelInfo
	ctes  []string // CTE names in scope, innermost last
	seen  map[string]bool
	exec  map[RelName]bool // relations only execution locks (see lockExec)
	// parseOnly is set for statements that only parse-analyse a query
	// (CREATE VIEW): views it reads are not expanded (the rewriter does not
	// run) and partitions are not locked (the planner does not run).
	parseOnly bool
	depth     int
	// inner counts the statements of code read so far (plpgsql), shared
	// with the builders of the statements inside.
	inner *int
	codes *codeCache // see Analyzer.codes; passed to inner builders
}

type relLookup struct {
	info RelInfo
	ok   bool
}

func newBuilder(cat Catalog) *builder {
	return &builder{cat: cat}
}

// maxDepth bounds recursion through views, cascades and nested queries.
const maxDepth = 64

func (b *builder) enter() bool {
	if b.depth >= maxDepth {
		b.note("statement nested too deeply: analysis stopped early")
		return false
	}
	b.depth++
	return true
}

func (b *builder) leave() { b.depth-- }

// finish adds the statement-wide caveats.
func (b *builder) finish() {
	if b.cat == nil && len(b.st.Locks) > 0 && b.st.Class != ClassTransaction && b.st.Class != ClassSession {
		b.unknown("no catalog: partitions, inheritance children, foreign keys and view definitions of the relations above were not expanded")
	}
}

func (b *builder) unknown(msg string) {
	if b.seen == nil {
		b.seen = map[string]bool{}
	}
	if b.seen["u"+msg] {
		return
	}
	b.seen["u"+msg] = true
	b.st.Unknown = append(b.st.Unknown, msg)
}

func (b *builder) note(msg string) {
	if b.seen == nil {
		b.seen = map[string]bool{}
	}
	if b.seen["n"+msg] {
		return
	}
	b.seen["n"+msg] = true
	b.st.Notes = append(b.st.Notes, msg)
}

func (b *builder) sub(s string) { b.st.Subcommands = append(b.st.Subcommands, s) }

// lock records mode on rel, keeping the strongest mode per relation. On a
// tie, the entry met first keeps its role; a lock that is certain replaces a
// conditional one of the same mode.
func (b *builder) lock(rel RelName, mode LockMode, role Role, index string, cond bool) {
	if rel.Name == "" || mode == NoLock {
		return
	}
	if b.idx == nil {
		b.idx = map[RelName]int{}
	}
	if !cond && b.exec[rel] {
		delete(b.exec, rel)
	}
	if i, ok := b.idx[rel]; ok {
		l := &b.st.Locks[i]
		switch {
		case mode > l.Mode:
			l.Mode, l.Role, l.Index, l.Conditional = mode, role, index, cond
		case mode == l.Mode && l.Conditional && !cond:
			l.Conditional = false
		}
		return
	}
	b.idx[rel] = len(b.st.Locks)
	b.st.Locks = append(b.st.Locks, RelationLock{Rel: rel, Mode: mode, Role: role, Index: index, Conditional: cond})
}

// lockExec records a conditional lock that only execution takes — a
// foreign-key check, the partition a row is routed to — and that planning
// alone (EXPLAIN, PREPARE) does not.
func (b *builder) lockExec(rel RelName, mode LockMode, role Role) {
	if rel.Name == "" {
		return
	}
	if _, ok := b.idx[rel]; !ok {
		if b.exec == nil {
			b.exec = map[RelName]bool{}
		}
		b.exec[rel] = true
	}
	b.lock(rel, mode, role, "", true)
}

func (b *builder) has(rel RelName) bool {
	_, ok := b.idx[rel]
	return ok
}

// rangeVarName returns the name as written.
func rangeVarName(rv *pg.RangeVar) RelName {
	if rv == nil {
		return RelName{}
	}
	return RelName{Schema: rv.Schemaname, Name: rv.Relname}
}

// rel returns the resolved name of rv.
func (b *builder) rel(rv *pg.RangeVar) RelName { return b.resolve(rangeVarName(rv)) }

// resolve qualifies n through the catalog, or returns it as written.
func (b *builder) resolve(n RelName) RelName {
	if info, ok := b.info(n); ok && info.Name.Name != "" {
		return info.Name
	}
	return n
}

func (b *builder) info(n RelName) (RelInfo, bool) {
	if b.cat == nil || n.Name == "" {
		return RelInfo{}, false
	}
	if l, ok := b.infos[n]; ok {
		return l.info, l.ok
	}
	info, ok := b.cat.Relation(n)
	if b.infos == nil {
		b.infos = map[RelName]relLookup{}
	}
	b.infos[n] = relLookup{info, ok}
	if ok {
		b.infos[info.Name] = relLookup{info, ok}
	}
	return info, ok
}

func (b *builder) constraints(n RelName) []Constraint {
	if b.cat == nil || n.Name == "" {
		return nil
	}
	if c, ok := b.cons[n]; ok {
		return c
	}
	c, _ := b.cat.Constraints(n)
	if b.cons == nil {
		b.cons = map[RelName][]Constraint{}
	}
	b.cons[n] = c
	return c
}

// partitions returns every descendant of n (partitions and inheritance
// children).
func (b *builder) partitions(n RelName) []RelInfo {
	if b.cat == nil || n.Name == "" {
		return nil
	}
	if p, ok := b.parts[n]; ok {
		return p
	}
	p, _ := b.cat.Partitions(n)
	if b.parts == nil {
		b.parts = map[RelName][]RelInfo{}
	}
	b.parts[n] = p
	return p
}

// defaultPartition returns the default partition of a partitioned table.
func (b *builder) defaultPartition(parent RelName) (RelName, bool) {
	return defaultPartitionIn(b.partitions(parent), parent)
}

// defaultPartitionIn returns the default partition of parent among parts,
// its descendants (Catalog.Partitions).
func defaultPartitionIn(parts []RelInfo, parent RelName) (RelName, bool) {
	for _, p := range parts {
		if p.Parent == parent && p.IsDefault {
			return p.Name, true
		}
	}
	return RelName{}, false
}

func (b *builder) isPartitioned(n RelName) bool {
	info, ok := b.info(n)
	return ok && info.Kind == KindPartitionedTable
}

// lockDescendants locks every partition or inheritance child of rel.
func (b *builder) lockDescendants(rel RelName, mode LockMode, cond bool) {
	for _, p := range b.partitions(rel) {
		b.lock(p.Name, mode, RolePartition, "", cond)
	}
}

// lockWithDescendants locks rel and, unless only is set, its descendants.
func (b *builder) lockWithDescendants(rel RelName, mode LockMode, role Role, only bool) {
	b.lock(rel, mode, role, "", false)
	if !only {
		b.lockDescendants(rel, mode, false)
	}
}

// foreignKeys returns the foreign keys defined on table (not those that
// reference it).
func (b *builder) foreignKeys(table RelName) []Constraint {
	var out []Constraint
	for _, c := range b.constraints(table) {
		if c.Type == ConstraintForeignKey && c.Table == table {
			out = append(out, c)
		}
	}
	return out
}

// referencedBy returns the foreign keys of other tables that reference table.
func (b *builder) referencedBy(table RelName) []Constraint {
	var out []Constraint
	for _, c := range b.constraints(table) {
		if c.Type == ConstraintForeignKey && c.RefTable == table && c.Table != table {
			out = append(out, c)
		}
	}
	return out
}

func (b *builder) constraintNamed(table RelName, name string) (Constraint, bool) {
	for _, c := range b.constraints(table) {
		if c.Table == table && c.Name == name {
			return c, true
		}
	}
	return Constraint{}, false
}

// strs returns the String values of a name list ("public", "users").
func strs(nodes []*pg.Node) []string {
	out := make([]string, 0, len(nodes))
	for _, n := range nodes {
		if s := n.GetString_(); s != nil {
			out = append(out, s.Sval)
		}
	}
	return out
}

// relFromNames turns a qualified name list into a RelName (the last two
// parts).
func relFromNames(parts []string) RelName {
	switch len(parts) {
	case 0:
		return RelName{}
	case 1:
		return RelName{Name: parts[0]}
	}
	return RelName{Schema: parts[len(parts)-2], Name: parts[len(parts)-1]}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if contains(b, x) {
			return true
		}
	}
	return false
}
