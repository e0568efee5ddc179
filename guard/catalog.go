package guard

import "strings"

// Catalog supplies the facts about the live schema that a statement's text
// does not carry: what a named constraint is, which foreign keys point to and
// from a table, its partitions, the table of an index, what a view reads and
// how volatile a function is.
//
// Every method is called while analysing a statement that missed the cache,
// never on the cached path. ok = false means "not known" (no such object, or
// the fact could not be fetched); the analysis then says so in
// Statement.Unknown. Names passed in may be unqualified; an implementation
// resolves them the way the session would (search_path) and returns
// schema-qualified names. Implementations must be safe for concurrent use.
//
// An Analyzer caches analyses that used catalog facts: call Analyzer.Purge
// after the schema changes.
type Catalog interface {
	// Relation describes rel.
	Relation(rel RelName) (RelInfo, bool)
	// Constraints returns the constraints defined on rel together with the
	// foreign keys of other tables that reference rel (Constraint.Table tells
	// them apart).
	Constraints(rel RelName) ([]Constraint, bool)
	// Partitions returns every descendant of rel, partitions and inheritance
	// children at all levels, each with its Parent set.
	Partitions(rel RelName) ([]RelInfo, bool)
	// FunctionVolatility returns the volatility of the function called name
	// (possibly schema-qualified); with overloads, the most volatile.
	FunctionVolatility(name string) (Volatility, bool)
	// ServerVersion returns server_version_num (150004), or 0 if unknown.
	ServerVersion() int
}

// ProcedureCatalog is an optional extension of Catalog: the procedure a
// CALL runs, whose body's statements take its locks.
type ProcedureCatalog interface {
	// Procedure returns the language, the parameter list (as
	// pg_get_function_arguments gives it) and the source of the one
	// procedure called name (possibly schema-qualified) that a CALL with
	// nargs arguments runs; found is false when there is none, or more
	// than one.
	Procedure(name string, nargs int) (lang, params, body string, found bool)
}

// StatisticsCatalog is an optional extension of Catalog: the table of an
// extended-statistics object, which DROP STATISTICS and COMMENT ON
// STATISTICS lock SHARE UPDATE EXCLUSIVE.
type StatisticsCatalog interface {
	StatisticsTable(stat RelName) (table RelName, ok bool)
}

// RelKind is the kind of a relation (pg_class.relkind).
type RelKind uint8

const (
	KindUnknown RelKind = iota
	KindTable
	KindPartitionedTable
	KindView
	KindMatView
	KindIndex
	KindPartitionedIndex
	KindSequence
	KindForeignTable
	KindOther
)

// RelKindFromPg maps a pg_class.relkind letter.
func RelKindFromPg(c byte) RelKind {
	switch c {
	case 'r':
		return KindTable
	case 'p':
		return KindPartitionedTable
	case 'v':
		return KindView
	case 'm':
		return KindMatView
	case 'i':
		return KindIndex
	case 'I':
		return KindPartitionedIndex
	case 'S':
		return KindSequence
	case 'f':
		return KindForeignTable
	case 0:
		return KindUnknown
	}
	return KindOther
}

// RelInfo describes one relation.
type RelInfo struct {
	Name RelName // schema-qualified
	Kind RelKind
	// Table is the table of an index.
	Table RelName
	// Parent is the parent of a partition or inheritance child.
	Parent RelName
	// IsDefault is set for the default partition of its parent.
	IsDefault bool
	// Reads lists the relations a view or materialized view reads.
	Reads []RelName
	// Dependents lists the views and materialized views whose definition
	// reads this relation (DROP … CASCADE drops them too).
	Dependents []RelName
	// Bytes is the total size on disk (pg_total_relation_size), -1 if unknown.
	Bytes int64
}

// ConstraintType is pg_constraint.contype.
type ConstraintType byte

const (
	ConstraintCheck      ConstraintType = 'c'
	ConstraintForeignKey ConstraintType = 'f'
	ConstraintPrimaryKey ConstraintType = 'p'
	ConstraintUnique     ConstraintType = 'u'
	ConstraintExclusion  ConstraintType = 'x'
	ConstraintNotNull    ConstraintType = 'n'
	ConstraintTrigger    ConstraintType = 't'
)

// FKAction is a foreign key's ON DELETE / ON UPDATE action
// (pg_constraint.confdeltype).
type FKAction byte

const (
	FKNoAction   FKAction = 'a'
	FKRestrict   FKAction = 'r'
	FKCascade    FKAction = 'c'
	FKSetNull    FKAction = 'n'
	FKSetDefault FKAction = 'd'
)

// Constraint describes one constraint.
type Constraint struct {
	Name    string
	Table   RelName // the table the constraint is defined on
	Type    ConstraintType
	Columns []string
	// RefTable, RefColumns, OnDelete and OnUpdate describe a foreign key.
	RefTable   RelName
	RefColumns []string
	OnDelete   FKAction
	OnUpdate   FKAction
	// Validated is false for a NOT VALID constraint not yet validated.
	Validated bool
}

// Volatility is a function's pg_proc.provolatile.
type Volatility byte

const (
	Immutable Volatility = 'i'
	Stable    Volatility = 's'
	Volatile  Volatility = 'v'
)

// StaticCatalog is a Catalog filled by hand, for tests and offline use.
// Unqualified names are looked up in SearchPath (default "public"). Fill it
// before use; it must not be modified while an Analyzer uses it.
type StaticCatalog struct {
	SearchPath []string
	Relations  []RelInfo
	Cons       []Constraint
	Functions  map[string]Volatility
	VersionNum int
	// Statistics maps extended-statistics objects to their tables.
	Statistics map[RelName]RelName
}

func (c *StaticCatalog) resolve(rel RelName) (RelInfo, bool) {
	if rel.Schema != "" {
		for _, r := range c.Relations {
			if r.Name == rel {
				return r, true
			}
		}
		return RelInfo{}, false
	}
	path := c.SearchPath
	if len(path) == 0 {
		path = []string{"public"}
	}
	for _, s := range path {
		for _, r := range c.Relations {
			if r.Name.Schema == s && r.Name.Name == rel.Name {
				return r, true
			}
		}
	}
	return RelInfo{}, false
}

// Relation implements Catalog.
func (c *StaticCatalog) Relation(rel RelName) (RelInfo, bool) { return c.resolve(rel) }

// Constraints implements Catalog.
func (c *StaticCatalog) Constraints(rel RelName) ([]Constraint, bool) {
	r, ok := c.resolve(rel)
	if !ok {
		return nil, false
	}
	var out []Constraint
	for _, k := range c.Cons {
		if k.Table == r.Name || k.Type == ConstraintForeignKey && k.RefTable == r.Name {
			out = append(out, k)
		}
	}
	return out, true
}

// Partitions implements Catalog.
func (c *StaticCatalog) Partitions(rel RelName) ([]RelInfo, bool) {
	r, ok := c.resolve(rel)
	if !ok {
		return nil, false
	}
	var out []RelInfo
	queue := []RelName{r.Name}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, x := range c.Relations {
			if x.Parent == p {
				out = append(out, x)
				queue = append(queue, x.Name)
			}
		}
	}
	return out, true
}

// FunctionVolatility implements Catalog.
func (c *StaticCatalog) FunctionVolatility(name string) (Volatility, bool) {
	v, ok := c.Functions[strings.ToLower(name)]
	if !ok {
		if i := strings.LastIndexByte(name, '.'); i >= 0 {
			v, ok = c.Functions[strings.ToLower(name[i+1:])]
		}
	}
	return v, ok
}

// ServerVersion implements Catalog.
func (c *StaticCatalog) ServerVersion() int { return c.VersionNum }

// StatisticsTable implements StatisticsCatalog.
func (c *StaticCatalog) StatisticsTable(stat RelName) (RelName, bool) {
	if t, ok := c.Statistics[stat]; ok {
		return t, true
	}
	if stat.Schema == "" {
		path := c.SearchPath
		if len(path) == 0 {
			path = []string{"public"}
		}
		for _, s := range path {
			if t, ok := c.Statistics[RelName{Schema: s, Name: stat.Name}]; ok {
				return t, true
			}
		}
	}
	return RelName{}, false
}
