package pgcatalog

import (
	"sync"

	"github.com/lockguard/lockguard/guard"
)

// The optional catalog extensions the policy uses: table sizes for the
// min-rows / min-bytes scopes, column types for change-column-type, and
// constraint definitions for set-not-null. Answers are memoized like the
// rest until Reset.
var (
	_ guard.SizeCatalog          = (*Catalog)(nil)
	_ guard.ColumnCatalog        = (*Catalog)(nil)
	_ guard.ConstraintDefCatalog = (*Catalog)(nil)
)

type extMemo struct {
	mu    sync.Mutex
	sizes map[guard.RelName][3]int64 // rows, bytes, ok
	cols  map[[2]string]colAnswer
	defs  map[[2]string]defAnswer
}

type colAnswer struct {
	typ            string
	notNull, found bool
}

type defAnswer struct {
	def   string
	found bool
}

func (c *Catalog) memo() *extMemo { return &c.ext }

// TableSize implements guard.SizeCatalog: pg_class.reltuples (negative when
// never analysed) and pg_total_relation_size.
func (c *Catalog) TableSize(rel guard.RelName) (rows, bytes int64, ok bool) {
	m := c.memo()
	m.mu.Lock()
	if a, hit := m.sizes[rel]; hit {
		m.mu.Unlock()
		return a[0], a[1], a[2] == 1
	}
	m.mu.Unlock()
	c.mu.Lock()
	ctx, cancel := c.ctx()
	var r float64
	err := c.conn.QueryRow(ctx, `SELECT c.reltuples::float8, pg_catalog.pg_total_relation_size(c.oid)
		FROM pg_catalog.pg_class c WHERE c.oid = to_regclass($1)`, regclassText(rel)).Scan(&r, &bytes)
	cancel()
	c.lastErr = err
	c.mu.Unlock()
	ok = err == nil
	rows = int64(r)
	m.mu.Lock()
	if m.sizes == nil || len(m.sizes) > 10000 {
		m.sizes = map[guard.RelName][3]int64{}
	}
	var okv int64
	if ok {
		okv = 1
	}
	m.sizes[rel] = [3]int64{rows, bytes, okv}
	m.mu.Unlock()
	return rows, bytes, ok
}

// ColumnType implements guard.ColumnCatalog.
func (c *Catalog) ColumnType(rel guard.RelName, column string) (string, bool, bool) {
	key := [2]string{rel.String(), column}
	m := c.memo()
	m.mu.Lock()
	if a, hit := m.cols[key]; hit {
		m.mu.Unlock()
		return a.typ, a.notNull, a.found
	}
	m.mu.Unlock()
	var a colAnswer
	c.mu.Lock()
	ctx, cancel := c.ctx()
	err := c.conn.QueryRow(ctx, `SELECT pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull
		FROM pg_catalog.pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped`,
		regclassText(rel), column).Scan(&a.typ, &a.notNull)
	cancel()
	c.mu.Unlock()
	a.found = err == nil
	m.mu.Lock()
	if m.cols == nil || len(m.cols) > 10000 {
		m.cols = map[[2]string]colAnswer{}
	}
	m.cols[key] = a
	m.mu.Unlock()
	return a.typ, a.notNull, a.found
}

// ConstraintDef implements guard.ConstraintDefCatalog; only validated
// constraints are returned.
func (c *Catalog) ConstraintDef(table guard.RelName, name string) (string, bool) {
	key := [2]string{table.String(), name}
	m := c.memo()
	m.mu.Lock()
	if a, hit := m.defs[key]; hit {
		m.mu.Unlock()
		return a.def, a.found
	}
	m.mu.Unlock()
	var a defAnswer
	c.mu.Lock()
	ctx, cancel := c.ctx()
	err := c.conn.QueryRow(ctx, `SELECT pg_catalog.pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint
		WHERE conrelid = to_regclass($1) AND conname = $2 AND convalidated`, regclassText(table), name).Scan(&a.def)
	cancel()
	c.mu.Unlock()
	a.found = err == nil
	m.mu.Lock()
	if m.defs == nil || len(m.defs) > 10000 {
		m.defs = map[[2]string]defAnswer{}
	}
	m.defs[key] = a
	m.mu.Unlock()
	return a.def, a.found
}
