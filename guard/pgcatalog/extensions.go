package pgcatalog

import (
	"slices"
	"strings"
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
	_ guard.CastCatalog          = (*Catalog)(nil)
	_ guard.PartitionKeyCatalog  = (*Catalog)(nil)
	_ guard.ProcedureCatalog     = (*Catalog)(nil)
)

type extMemo struct {
	mu    sync.Mutex
	sizes map[guard.RelName]sizeAnswer
	cols  map[[2]string]colAnswer
	defs  map[[2]string]defAnswer
	casts map[[2]string]castAnswer
	keys  map[guard.RelName]keyAnswer
	procs map[procKey]procAnswer
}

type procKey struct {
	name  string
	nargs int
}

type procAnswer struct {
	lang, params, body string
	found              bool
}

type keyAnswer struct {
	strategy byte
	columns  []string
	found    bool
}

type castAnswer struct{ coercible, found bool }

type sizeAnswer struct {
	rows, bytes int64
	found       bool
}

type colAnswer struct {
	typ            string
	notNull, found bool
}

type defAnswer struct {
	def   string
	found bool
}

// memoized returns the answer for key from *m, or asks fetch (a query on
// the catalog connection, run under c.mu) and remembers its answer. The memo
// is bounded like the others.
func memoized[K comparable, V any](c *Catalog, m *map[K]V, key K, fetch func() V) V {
	c.ext.mu.Lock()
	if v, hit := (*m)[key]; hit {
		c.ext.mu.Unlock()
		return v
	}
	c.ext.mu.Unlock()
	c.mu.Lock()
	v := fetch()
	c.mu.Unlock()
	c.ext.mu.Lock()
	if *m == nil {
		*m = make(map[K]V)
	}
	trim(*m)
	(*m)[key] = v
	c.ext.mu.Unlock()
	return v
}

// TableSize implements guard.SizeCatalog: pg_class.reltuples (negative when
// never analysed) and pg_total_relation_size.
func (c *Catalog) TableSize(rel guard.RelName) (rows, bytes int64, ok bool) {
	a := memoized(c, &c.ext.sizes, rel, func() (a sizeAnswer) {
		ctx, cancel := c.ctx()
		defer cancel()
		var r float64
		err := c.conn.QueryRow(ctx, `SELECT c.reltuples::float8, pg_catalog.pg_total_relation_size(c.oid)
			FROM pg_catalog.pg_class c WHERE c.oid = to_regclass($1)`, regclassText(rel)).Scan(&r, &a.bytes)
		c.lastErr = err
		a.rows, a.found = int64(r), err == nil
		return a
	})
	return a.rows, a.bytes, a.found
}

// ColumnType implements guard.ColumnCatalog.
func (c *Catalog) ColumnType(rel guard.RelName, column string) (string, bool, bool) {
	a := memoized(c, &c.ext.cols, [2]string{rel.String(), column}, func() (a colAnswer) {
		ctx, cancel := c.ctx()
		defer cancel()
		err := c.conn.QueryRow(ctx, `SELECT pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull
			FROM pg_catalog.pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped`,
			regclassText(rel), column).Scan(&a.typ, &a.notNull)
		a.found = err == nil
		return a
	})
	return a.typ, a.notNull, a.found
}

// BinaryCoercible implements guard.CastCatalog.
func (c *Catalog) BinaryCoercible(from, to string) (bool, bool) {
	a := memoized(c, &c.ext.casts, [2]string{from, to}, func() (a castAnswer) {
		ctx, cancel := c.ctx()
		defer cancel()
		err := c.conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_cast
				WHERE castsource = to_regtype($1) AND casttarget = to_regtype($2) AND castmethod = 'b'),
			to_regtype($1) IS NOT NULL AND to_regtype($2) IS NOT NULL`, from, to).Scan(&a.coercible, &a.found)
		c.lastErr = err
		a.found = a.found && err == nil
		return a
	})
	return a.coercible, a.found
}

// PartitionKey implements guard.PartitionKeyCatalog.
func (c *Catalog) PartitionKey(rel guard.RelName) (byte, []string, bool) {
	a := memoized(c, &c.ext.keys, rel, func() (a keyAnswer) {
		ctx, cancel := c.ctx()
		defer cancel()
		var strategy string
		err := c.conn.QueryRow(ctx, `SELECT pt.partstrat::text,
				array(SELECT coalesce(a.attname::text, '') FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY AS k(attnum, i)
					LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = k.attnum ORDER BY k.i)
			FROM pg_catalog.pg_partitioned_table pt WHERE pt.partrelid = to_regclass($1)`,
			regclassText(rel)).Scan(&strategy, &a.columns)
		c.lastErr = err
		a.found = err == nil && len(strategy) == 1 && !slices.Contains(a.columns, "")
		if a.found {
			a.strategy = strategy[0]
		}
		return a
	})
	return a.strategy, a.columns, a.found
}

// ConstraintDef implements guard.ConstraintDefCatalog; only validated
// constraints are returned.
func (c *Catalog) ConstraintDef(table guard.RelName, name string) (string, bool) {
	a := memoized(c, &c.ext.defs, [2]string{table.String(), name}, func() (a defAnswer) {
		ctx, cancel := c.ctx()
		defer cancel()
		err := c.conn.QueryRow(ctx, `SELECT pg_catalog.pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint
			WHERE conrelid = to_regclass($1) AND conname = $2 AND convalidated`, regclassText(table), name).Scan(&a.def)
		a.found = err == nil
		return a
	})
	return a.def, a.found
}

// Procedure implements guard.ProcedureCatalog: the one procedure called
// name, visible on the search path unless name is qualified, that a CALL
// with nargs arguments may run (its defaults fill the rest).
func (c *Catalog) Procedure(name string, nargs int) (lang, params, body string, found bool) {
	a := memoized(c, &c.ext.procs, procKey{name, nargs}, func() (a procAnswer) {
		schema, fn := "", name
		if i := strings.LastIndexByte(name, '.'); i >= 0 {
			schema, fn = name[:i], name[i+1:]
		}
		ctx, cancel := c.ctx()
		defer cancel()
		rows, err := c.conn.Query(ctx, `SELECT l.lanname, pg_catalog.pg_get_function_arguments(p.oid), p.prosrc
			FROM pg_catalog.pg_proc p
			JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
			JOIN pg_catalog.pg_language l ON l.oid = p.prolang
			WHERE p.prokind = 'p' AND p.proname = $2
			  AND CASE WHEN $1 = '' THEN pg_catalog.pg_function_is_visible(p.oid) ELSE n.nspname = $1 END
			  AND $3 BETWEEN p.pronargs - p.pronargdefaults AND p.pronargs
			LIMIT 2`, schema, fn, nargs)
		if err != nil {
			c.lastErr = err
			return a
		}
		n := 0
		for rows.Next() {
			if err := rows.Scan(&a.lang, &a.params, &a.body); err != nil {
				c.lastErr = err
				rows.Close()
				return procAnswer{}
			}
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			c.lastErr = err
			return procAnswer{}
		}
		a.found = n == 1
		return a
	})
	return a.lang, a.params, a.body, a.found
}
