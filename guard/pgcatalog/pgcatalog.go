package pgcatalog

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lockguard/lockguard/guard"
)

// Catalog is a guard.Catalog backed by one connection. Answers are memoized
// until Reset (at most maxMemo per kind of fact; beyond that the memo starts
// over); errors are not memoized (the fact is reported as unknown and asked
// again next time). It is safe for concurrent use: queries are serialised on
// the connection.
type Catalog struct {
	// Timeout bounds each catalog query. Zero means 5 seconds.
	Timeout time.Duration
	// Reconnect, when set, opens a new connection to replace one that
	// broke (PostgreSQL restarted, the backend was terminated): before a
	// query on a connection idle for a second or more, the Catalog checks
	// it (a ping), and at most once a second it replaces a broken one,
	// forgets what it remembered and closes the old connection. The
	// Catalog then owns its connection: Close closes it. Without
	// Reconnect a broken connection leaves every fact unknown.
	Reconnect func(ctx context.Context) (*pgx.Conn, error)
	// Reconnected, if set, is called on a goroutine of its own after
	// Reconnect replaced the connection and the Catalog forgot what it
	// remembered: what others worked out from those facts (cached
	// analyses) is out of date too. The server version is read anew
	// first (an in-place upgrade keeps the address).
	Reconnected func()

	version atomic.Int64 // server_version_num

	mu       sync.Mutex
	conn     *pgx.Conn
	lastErr  error
	lastUse  time.Time // end of the last query
	lastDial time.Time // last Reconnect attempt

	rels  map[guard.RelName]relResult
	cons  map[guard.RelName]consResult
	parts map[guard.RelName]partsResult
	funcs map[string]funcResult
	stats map[guard.RelName]relResult

	ext extMemo // extensions.go
}

type relResult struct {
	info guard.RelInfo
	ok   bool
}

type consResult struct {
	list []guard.Constraint
	ok   bool
}

type partsResult struct {
	list []guard.RelInfo
	ok   bool
}

type funcResult struct {
	v  guard.Volatility
	ok bool
}

var (
	_ guard.Catalog           = (*Catalog)(nil)
	_ guard.StatisticsCatalog = (*Catalog)(nil)
)

// New returns a Catalog that queries conn, which it uses from then on (the
// caller keeps ownership and closes it). It reads the server version at once.
func New(ctx context.Context, conn *pgx.Conn) (*Catalog, error) {
	c := &Catalog{conn: conn}
	c.Reset()
	v, err := readVersion(ctx, conn)
	if err != nil {
		return nil, err
	}
	c.version.Store(int64(v))
	return c, nil
}

// readVersion returns the server_version_num of conn's server.
func readVersion(ctx context.Context, conn *pgx.Conn) (int, error) {
	var v string
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')").Scan(&v); err != nil {
		return 0, fmt.Errorf("reading server_version_num: %w", err)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("parsing server_version_num %q: %w", v, err)
	}
	return n, nil
}

// Reset forgets every memoized answer. Call it (and guard.Analyzer.Purge)
// after the schema changed.
func (c *Catalog) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resetLocked()
}

func (c *Catalog) resetLocked() {
	c.rels = map[guard.RelName]relResult{}
	c.cons = map[guard.RelName]consResult{}
	c.parts = map[guard.RelName]partsResult{}
	c.funcs = map[string]funcResult{}
	c.stats = map[guard.RelName]relResult{}
	c.ext.mu.Lock()
	c.ext.sizes, c.ext.cols, c.ext.defs, c.ext.casts, c.ext.keys, c.ext.procs = nil, nil, nil, nil, nil, nil
	c.ext.mu.Unlock()
}

// Err returns the last query error, if any.
func (c *Catalog) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// maxMemo bounds each memo map, so that a stream of distinct names (temporary
// tables, generated names) cannot grow it without limit.
const maxMemo = 10000

func trim[K comparable, V any](m map[K]V) {
	if len(m) >= maxMemo {
		clear(m)
	}
}

// ctx returns the context of one query, made under c.mu, after making sure
// (with Reconnect) that the connection is live.
func (c *Catalog) ctx() (context.Context, context.CancelFunc) {
	t := c.Timeout
	if t <= 0 {
		t = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), t)
	if c.Reconnect != nil {
		c.ensureLive(ctx)
	}
	return ctx, func() {
		c.lastUse = time.Now()
		cancel()
	}
}

// idleCheck is how long the connection may have been idle before a query
// pings it first: long enough that a burst of lookups pays nothing, short
// enough that the first lookup after a restart of PostgreSQL finds out.
const idleCheck = time.Second

// redialEvery is how often, at most, a broken connection is replaced: a
// PostgreSQL that is down does not make every lookup wait for a connect.
const redialEvery = time.Second

// ensureLive replaces a broken connection, if it can, under c.mu. A
// connection is broken when pgx closed it after a failure, or when a ping
// of one idle for idleCheck fails.
func (c *Catalog) ensureLive(ctx context.Context) {
	broken := c.conn.IsClosed()
	if !broken && time.Since(c.lastUse) >= idleCheck {
		broken = c.conn.Ping(ctx) != nil
	}
	if !broken || time.Since(c.lastDial) < redialEvery {
		return
	}
	c.lastDial = time.Now()
	conn, err := c.Reconnect(ctx)
	if err == nil {
		var v int
		if v, err = readVersion(ctx, conn); err == nil {
			c.version.Store(int64(v))
		} else {
			closeConn(conn)
		}
	}
	if err != nil {
		c.lastErr = fmt.Errorf("reconnecting the catalog connection: %w", err)
		return
	}
	old := c.conn
	c.conn = conn
	// The schema may have changed while the connection was down (a
	// restore, a failover to a replica that was behind).
	c.resetLocked()
	closeConn(old)
	if c.Reconnected != nil {
		go c.Reconnected()
	}
}

// closeConn closes conn, waiting at most a second for its Terminate to be
// sent (a broken connection has nowhere to send it).
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// Close closes the Catalog's current connection; only for a Catalog with
// Reconnect, which owns its connection.
func (c *Catalog) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	closeConn(c.conn)
}

// regclassText renders rel for to_regclass: quoted identifiers, unqualified
// when no schema was given so that search_path applies.
func regclassText(rel guard.RelName) string {
	if rel.Schema == "" {
		return pgx.Identifier{rel.Name}.Sanitize()
	}
	return pgx.Identifier{rel.Schema, rel.Name}.Sanitize()
}

// ServerVersion implements guard.Catalog.
// It is read again whenever the connection is replaced.
func (c *Catalog) ServerVersion() int { return int(c.version.Load()) }

const relationQuery = `
SELECT n.nspname, c.relname, c.relkind::text,
       coalesce(tn.nspname, ''), coalesce(t.relname, ''),
       coalesce(pn.nspname, ''), coalesce(p.relname, ''),
       EXISTS (SELECT 1 FROM pg_catalog.pg_partitioned_table pt WHERE pt.partdefid = c.oid),
       c.relpages::bigint * current_setting('block_size')::bigint,
       coalesce(ARRAY(
         SELECT DISTINCT quote_ident(dn.nspname) || '.' || quote_ident(dc.relname)
           FROM pg_catalog.pg_rewrite r
           JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid
                                      AND d.refclassid = 'pg_catalog.pg_class'::regclass
           JOIN pg_catalog.pg_class dc ON dc.oid = d.refobjid
           JOIN pg_catalog.pg_namespace dn ON dn.oid = dc.relnamespace
          WHERE r.ev_class = c.oid AND d.refobjid <> c.oid AND dc.relkind IN ('r', 'p', 'v', 'm', 'f')
            AND c.relkind IN ('v', 'm')), '{}'),
       coalesce(ARRAY(
         SELECT DISTINCT quote_ident(vn.nspname) || '.' || quote_ident(v.relname)
           FROM pg_catalog.pg_depend d
           JOIN pg_catalog.pg_rewrite r ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid
           JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
           JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
          WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = c.oid
            AND v.oid <> c.oid AND v.relkind IN ('v', 'm')), '{}')
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
  LEFT JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
  LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
  LEFT JOIN pg_catalog.pg_inherits h ON h.inhrelid = c.oid
  LEFT JOIN pg_catalog.pg_class p ON p.oid = h.inhparent
  LEFT JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
 WHERE c.oid = to_regclass($1)
 ORDER BY h.inhseqno
 LIMIT 1`

// Relation implements guard.Catalog.
func (c *Catalog) Relation(rel guard.RelName) (guard.RelInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.rels[rel]; ok {
		return r.info, r.ok
	}
	ctx, cancel := c.ctx()
	defer cancel()
	var (
		info              guard.RelInfo
		kind              string
		tSchema, tName    string
		pSchema, pName    string
		reads, dependents []string
	)
	err := c.conn.QueryRow(ctx, relationQuery, regclassText(rel)).Scan(
		&info.Name.Schema, &info.Name.Name, &kind, &tSchema, &tName, &pSchema, &pName,
		&info.IsDefault, &info.Bytes, &reads, &dependents)
	trim(c.rels)
	if errors.Is(err, pgx.ErrNoRows) {
		c.rels[rel] = relResult{}
		return guard.RelInfo{}, false
	}
	if err != nil {
		c.lastErr = fmt.Errorf("looking up relation %s: %w", rel, err)
		return guard.RelInfo{}, false
	}
	if kind != "" {
		info.Kind = guard.RelKindFromPg(kind[0])
	}
	info.Table = guard.RelName{Schema: tSchema, Name: tName}
	info.Parent = guard.RelName{Schema: pSchema, Name: pName}
	for _, r := range reads {
		info.Reads = append(info.Reads, parseQualified(r))
	}
	for _, r := range dependents {
		info.Dependents = append(info.Dependents, parseQualified(r))
	}
	c.rels[rel] = relResult{info, true}
	c.rels[info.Name] = relResult{info, true}
	return info, true
}

// parseQualified splits quote_ident(schema) || '.' || quote_ident(name).
func parseQualified(s string) guard.RelName {
	parts := splitIdent(s)
	if len(parts) == 2 {
		return guard.RelName{Schema: parts[0], Name: parts[1]}
	}
	return guard.RelName{Name: s}
}

func splitIdent(s string) []string {
	var parts []string
	var cur strings.Builder
	quoted := false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case quoted && ch == '"' && i+1 < len(s) && s[i+1] == '"':
			cur.WriteByte('"')
			i++
		case ch == '"':
			quoted = !quoted
		case !quoted && ch == '.':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(ch)
		}
	}
	return append(parts, cur.String())
}

const constraintsQuery = `
SELECT con.conname, tn.nspname, t.relname, con.contype::text,
       coalesce(ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o)
                        JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n
                       ORDER BY k.o), '{}'),
       coalesce(rn.nspname, ''), coalesce(r.relname, ''),
       coalesce(ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o)
                        JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n
                       ORDER BY k.o), '{}'),
       con.confdeltype::text, con.confupdtype::text, con.convalidated
  FROM pg_catalog.pg_constraint con
  JOIN pg_catalog.pg_class t ON t.oid = con.conrelid
  JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
  LEFT JOIN pg_catalog.pg_class r ON r.oid = con.confrelid
  LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
 WHERE con.conrelid = to_regclass($1)
    OR (con.contype = 'f' AND con.confrelid = to_regclass($1))
 ORDER BY con.conname`

// Constraints implements guard.Catalog.
func (c *Catalog) Constraints(rel guard.RelName) ([]guard.Constraint, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.cons[rel]; ok {
		return r.list, r.ok
	}
	ctx, cancel := c.ctx()
	defer cancel()
	rows, err := c.conn.Query(ctx, constraintsQuery, regclassText(rel))
	if err != nil {
		c.lastErr = fmt.Errorf("reading constraints of %s: %w", rel, err)
		return nil, false
	}
	var list []guard.Constraint
	for rows.Next() {
		var k guard.Constraint
		var typ, del, upd string
		if err := rows.Scan(&k.Name, &k.Table.Schema, &k.Table.Name, &typ, &k.Columns,
			&k.RefTable.Schema, &k.RefTable.Name, &k.RefColumns, &del, &upd, &k.Validated); err != nil {
			rows.Close()
			c.lastErr = fmt.Errorf("reading constraints of %s: %w", rel, err)
			return nil, false
		}
		k.Type = guard.ConstraintType(firstByte(typ))
		k.OnDelete = guard.FKAction(firstByte(del))
		k.OnUpdate = guard.FKAction(firstByte(upd))
		list = append(list, k)
	}
	if err := rows.Err(); err != nil {
		c.lastErr = fmt.Errorf("reading constraints of %s: %w", rel, err)
		return nil, false
	}
	trim(c.cons)
	c.cons[rel] = consResult{list, true}
	return list, true
}

func firstByte(s string) byte {
	if s == "" {
		return 0
	}
	return s[0]
}

const partitionsQuery = `
WITH RECURSIVE tree(oid, parent, level) AS (
    SELECT inhrelid, inhparent, 1 FROM pg_catalog.pg_inherits WHERE inhparent = to_regclass($1)
  UNION ALL
    SELECT i.inhrelid, i.inhparent, tree.level + 1
      FROM pg_catalog.pg_inherits i JOIN tree ON i.inhparent = tree.oid
     WHERE tree.level < 64
)
SELECT n.nspname, c.relname, c.relkind::text, pn.nspname, p.relname,
       EXISTS (SELECT 1 FROM pg_catalog.pg_partitioned_table pt WHERE pt.partdefid = c.oid),
       c.relpages::bigint * current_setting('block_size')::bigint
  FROM tree
  JOIN pg_catalog.pg_class c ON c.oid = tree.oid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_class p ON p.oid = tree.parent
  JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
 WHERE c.relkind IN ('r', 'p', 'f')
 ORDER BY tree.level, n.nspname, c.relname`

// Partitions implements guard.Catalog.
func (c *Catalog) Partitions(rel guard.RelName) ([]guard.RelInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.parts[rel]; ok {
		return r.list, r.ok
	}
	ctx, cancel := c.ctx()
	defer cancel()
	rows, err := c.conn.Query(ctx, partitionsQuery, regclassText(rel))
	if err != nil {
		c.lastErr = fmt.Errorf("reading partitions of %s: %w", rel, err)
		return nil, false
	}
	var list []guard.RelInfo
	for rows.Next() {
		var p guard.RelInfo
		var kind string
		if err := rows.Scan(&p.Name.Schema, &p.Name.Name, &kind, &p.Parent.Schema, &p.Parent.Name, &p.IsDefault, &p.Bytes); err != nil {
			rows.Close()
			c.lastErr = fmt.Errorf("reading partitions of %s: %w", rel, err)
			return nil, false
		}
		p.Kind = guard.RelKindFromPg(firstByte(kind))
		list = append(list, p)
	}
	if err := rows.Err(); err != nil {
		c.lastErr = fmt.Errorf("reading partitions of %s: %w", rel, err)
		return nil, false
	}
	trim(c.parts)
	c.parts[rel] = partsResult{list, true}
	return list, true
}

const volatilityQuery = `
SELECT max(CASE p.provolatile WHEN 'v' THEN 3 WHEN 's' THEN 2 ELSE 1 END)
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE p.proname = $2
   AND CASE WHEN $1 = '' THEN pg_catalog.pg_function_is_visible(p.oid) ELSE n.nspname = $1 END`

// FunctionVolatility implements guard.Catalog.
func (c *Catalog) FunctionVolatility(name string) (guard.Volatility, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.funcs[name]; ok {
		return r.v, r.ok
	}
	schema, fn := "", name
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		schema, fn = name[:i], name[i+1:]
	}
	ctx, cancel := c.ctx()
	defer cancel()
	var level *int
	if err := c.conn.QueryRow(ctx, volatilityQuery, schema, fn).Scan(&level); err != nil {
		c.lastErr = fmt.Errorf("reading volatility of %s: %w", name, err)
		return 0, false
	}
	r := funcResult{}
	if level != nil {
		r.ok = true
		switch *level {
		case 3:
			r.v = guard.Volatile
		case 2:
			r.v = guard.Stable
		default:
			r.v = guard.Immutable
		}
	}
	trim(c.funcs)
	c.funcs[name] = r
	return r.v, r.ok
}

const statisticsQuery = `
SELECT tn.nspname, t.relname
  FROM pg_catalog.pg_statistic_ext s
  JOIN pg_catalog.pg_namespace sn ON sn.oid = s.stxnamespace
  JOIN pg_catalog.pg_class t ON t.oid = s.stxrelid
  JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
 WHERE s.stxname = $2
   AND CASE WHEN $1 = '' THEN pg_catalog.pg_statistics_obj_is_visible(s.oid) ELSE sn.nspname = $1 END
 LIMIT 1`

// StatisticsTable implements guard.StatisticsCatalog.
func (c *Catalog) StatisticsTable(stat guard.RelName) (guard.RelName, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.stats[stat]; ok {
		return r.info.Name, r.ok
	}
	ctx, cancel := c.ctx()
	defer cancel()
	var t guard.RelName
	err := c.conn.QueryRow(ctx, statisticsQuery, stat.Schema, stat.Name).Scan(&t.Schema, &t.Name)
	trim(c.stats)
	if errors.Is(err, pgx.ErrNoRows) {
		c.stats[stat] = relResult{}
		return guard.RelName{}, false
	}
	if err != nil {
		c.lastErr = fmt.Errorf("looking up statistics object %s: %w", stat, err)
		return guard.RelName{}, false
	}
	c.stats[stat] = relResult{info: guard.RelInfo{Name: t}, ok: true}
	return t, true
}
