package guard

import (
	"slices"
	"strings"
)

// maxPathAnalyzers bounds the search paths ForPath keeps an analyzer for;
// sessions with still other paths are analysed from the text alone.
const maxPathAnalyzers = 64

// ForPath returns the analyzer for a session whose search_path is path
// (its schemas in order, "$user" replaced by the role). Its catalog
// resolves an unqualified table name in those schemas, as PostgreSQL does
// for that session, where a's resolves it in the search_path of a's own
// connection: with a schema per tenant, `orders` is tenant_a.orders for
// one session and tenant_b.orders for the next. Each path's analyses are
// cached apart; Purge purges them too. Without a catalog, names stay as
// written, and a itself serves every path.
func (a *Analyzer) ForPath(path []string) *Analyzer {
	if a.Catalog == nil {
		return a
	}
	key := strings.Join(path, "\x00")
	a.pathMu.Lock()
	defer a.pathMu.Unlock()
	if c, ok := a.paths[key]; ok {
		return c
	}
	size := 0 // no cache when a has none
	if a.size > 0 {
		size = max(a.size/8, 64)
	}
	if len(a.paths) >= maxPathAnalyzers {
		if a.textOnly == nil {
			a.textOnly = NewAnalyzer(nil, size)
		}
		return a.textOnly
	}
	if a.paths == nil {
		a.paths = make(map[string]*Analyzer)
	}
	c := NewAnalyzer(&pathCatalog{cat: a.Catalog, path: slices.Clone(path)}, size)
	a.paths[key] = c
	return c
}

// purgePaths purges the analyzers ForPath made.
func (a *Analyzer) purgePaths() {
	a.pathMu.Lock()
	defer a.pathMu.Unlock()
	for _, c := range a.paths {
		c.Purge()
	}
}

// pathCatalog is a Catalog that resolves unqualified table names in the
// schemas of path (after pg_catalog, which PostgreSQL searches first when
// the path does not name it) and asks cat about the qualified name.
// Function and procedure names are passed on as written.
type pathCatalog struct {
	cat  Catalog
	path []string
}

// qualify returns rel in the first schema of the path that has it, or rel
// itself when it is qualified or no schema has it.
func (p *pathCatalog) qualify(rel RelName) (RelInfo, RelName, bool) {
	if rel.Schema != "" || rel.Name == "" {
		info, ok := p.cat.Relation(rel)
		return info, rel, ok
	}
	try := func(schema string) (RelInfo, RelName, bool) {
		q := RelName{Schema: schema, Name: rel.Name}
		info, ok := p.cat.Relation(q)
		return info, q, ok
	}
	if !slices.Contains(p.path, "pg_catalog") {
		if info, q, ok := try("pg_catalog"); ok {
			return info, q, true
		}
	}
	for _, s := range p.path {
		if s == "" {
			continue
		}
		if info, q, ok := try(s); ok {
			return info, q, true
		}
	}
	return RelInfo{}, rel, false
}

// name returns rel qualified (qualify), for the lookups that take a name.
// A name no schema of the path has is qualified with the path's first
// schema, so that cat finds nothing rather than resolving it in its own
// search_path.
func (p *pathCatalog) name(rel RelName) RelName {
	_, q, ok := p.qualify(rel)
	if !ok && q.Schema == "" && len(p.path) > 0 {
		q.Schema = p.path[0]
	}
	return q
}

func (p *pathCatalog) Relation(rel RelName) (RelInfo, bool) {
	info, _, ok := p.qualify(rel)
	return info, ok
}

func (p *pathCatalog) Constraints(rel RelName) ([]Constraint, bool) {
	return p.cat.Constraints(p.name(rel))
}

func (p *pathCatalog) Partitions(rel RelName) ([]RelInfo, bool) {
	return p.cat.Partitions(p.name(rel))
}

func (p *pathCatalog) FunctionVolatility(name string) (Volatility, bool) {
	return p.cat.FunctionVolatility(name)
}

func (p *pathCatalog) ServerVersion() int { return p.cat.ServerVersion() }

func (p *pathCatalog) Procedure(name string, nargs int) (lang, params, body string, found bool) {
	if c, ok := p.cat.(ProcedureCatalog); ok {
		return c.Procedure(name, nargs)
	}
	return "", "", "", false
}

func (p *pathCatalog) StatisticsTable(stat RelName) (RelName, bool) {
	if c, ok := p.cat.(StatisticsCatalog); ok {
		return c.StatisticsTable(stat)
	}
	return RelName{}, false
}

func (p *pathCatalog) TableSize(rel RelName) (rows, bytes int64, ok bool) {
	if c, ok := p.cat.(SizeCatalog); ok {
		return c.TableSize(p.name(rel))
	}
	return 0, 0, false
}

func (p *pathCatalog) ColumnType(rel RelName, column string) (typ string, notNull bool, ok bool) {
	if c, ok := p.cat.(ColumnCatalog); ok {
		return c.ColumnType(p.name(rel), column)
	}
	return "", false, false
}

func (p *pathCatalog) BinaryCoercible(from, to string) (coercible, ok bool) {
	if c, ok := p.cat.(CastCatalog); ok {
		return c.BinaryCoercible(from, to)
	}
	return false, false
}

func (p *pathCatalog) PartitionKey(rel RelName) (strategy byte, columns []string, ok bool) {
	if c, ok := p.cat.(PartitionKeyCatalog); ok {
		return c.PartitionKey(p.name(rel))
	}
	return 0, nil, false
}

func (p *pathCatalog) ConstraintDef(table RelName, name string) (string, bool) {
	if c, ok := p.cat.(ConstraintDefCatalog); ok {
		return c.ConstraintDef(p.name(table), name)
	}
	return "", false
}
