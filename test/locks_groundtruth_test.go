package test

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/guard/pgcatalog"
	"github.com/lockguard/lockguard/internal/pgserver"
)

// TestLocksGroundTruth runs every statement below on the real server and
// compares the table-level locks its backend holds (pg_locks) with what
// guard.Analyze predicts, with catalog facts read by pgcatalog from the same
// server. Statements that may run in a transaction block run inside BEGIN …
// ROLLBACK and pg_locks is read before the ROLLBACK. Statements that may not
// (CREATE INDEX CONCURRENTLY, VACUUM, …) run on a third connection while a
// second one holds a lock that makes them wait part-way; their backend's
// locks, granted and awaited, are read while they wait.
//
// Per relation the strongest mode is compared. Relations created by the
// statement, system catalogs, TOAST tables, sequences and indexes are ignored
// unless the prediction names them. A prediction marked Conditional (a
// foreign-key check, a partition that pruning may skip) may be absent or
// weaker (the part that did not run), but never stronger. Every mismatch fails the test, and
// all of them are listed.
func TestLocksGroundTruth(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	dsn := pg.DSN(pgserver.Superuser, "", pgserver.TestDB)
	conn := gtConnect(t, dsn)
	if err := gtSetup(ctx, conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS lg_gt CASCADE", pgx.QueryExecModeSimpleProtocol)
	})

	catConn := gtConnect(t, dsn)
	cat, err := pgcatalog.New(ctx, catConn)
	if err != nil {
		t.Fatal(err)
	}
	az := guard.NewAnalyzer(cat, 0)

	var mismatches []string
	checked, skippedConditional := 0, 0
	for _, c := range groundTruthCases {
		if c.min > pg.Version {
			continue
		}
		an := az.Analyze(c.sql)
		if an.Err != nil {
			mismatches = append(mismatches, fmt.Sprintf("%s\n\tdoes not parse: %v", c.sql, an.Err))
			continue
		}
		pred := predicted(an)
		var obs map[guard.RelName]observedLock
		var snap map[uint32]gtRel
		if c.block == "" {
			snap, obs, err = runInTx(ctx, conn, c)
		} else {
			snap, obs, err = runWaiting(ctx, t, dsn, conn, c)
			cat.Reset() // the schema was rebuilt
		}
		if err != nil {
			mismatches = append(mismatches, fmt.Sprintf("%s\n\tstatement failed: %v", c.sql, err))
			if c.block != "" || ctx.Err() != nil {
				if err := gtSetup(ctx, conn); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		checked++
		var diffs []string
		names := map[guard.RelName]bool{}
		for n := range pred {
			names[n] = true
		}
		for n := range obs {
			names[n] = true
		}
		for _, n := range sortedNames(names) {
			p, havePred := pred[n]
			o, haveObs := obs[n]
			switch {
			case havePred && haveObs && p.Mode == o.mode:
			case havePred && p.Conditional && (!haveObs || o.mode < p.Mode):
				// The conditional part did not run (no key changed, the
				// partition was pruned); what did run is weaker.
				skippedConditional++
			case havePred && !haveObs && c.partial:
			case havePred && !haveObs:
				if !isTableKind(kindOf(snap, n)) && !isIndexKind(kindOf(snap, n)) {
					continue // a relation the statement creates, or unknown
				}
				diffs = append(diffs, fmt.Sprintf("%s: predicted %s (%s), not locked", n, p.Mode, p.Role))
			case !havePred && haveObs:
				if !isTableKind(o.kind) {
					continue // an index, sequence or TOAST table nobody predicted
				}
				diffs = append(diffs, fmt.Sprintf("%s: locked %s, not predicted", n, o.mode))
			default:
				diffs = append(diffs, fmt.Sprintf("%s: predicted %s (%s), locked %s", n, p.Mode, p.Role, o.mode))
			}
		}
		if testing.Verbose() {
			t.Logf("%-60.60s  pg_locks: %s", c.sql, describeObserved(obs))
		}
		if len(diffs) > 0 {
			mismatches = append(mismatches, fmt.Sprintf("%s\n\t%s", c.sql, strings.Join(diffs, "\n\t")))
		}
	}
	t.Logf("ground truth: %d statements checked against pg_locks on PostgreSQL %d (%d conditional predictions not exercised)",
		checked, pg.Version, skippedConditional)
	if checked < 150 {
		t.Errorf("only %d statements checked, want at least 150", checked)
	}
	if len(mismatches) > 0 {
		t.Errorf("%d of %d statements disagree with pg_locks:\n%s", len(mismatches), len(groundTruthCases), strings.Join(mismatches, "\n"))
	}
}

//go:embed testdata/groundtruth_schema.sql
var groundTruthSchema string

// gtCase is one ground-truth statement. block, when set, marks a statement
// that cannot run in a transaction block: a second connection runs block in
// an open transaction, and the statement is observed while it waits.
type gtCase struct {
	sql   string
	block string
	copy  string // data for COPY … FROM STDIN
	// partial: the blocker stops the statement before it takes all its
	// locks, so predicted locks may be missing (never wrong).
	partial bool
	// min is the first major version with the syntax (0: every version
	// guard supports, 12+).
	min int
}

type gtRel struct {
	name guard.RelName
	kind byte
}

type observedLock struct {
	mode guard.LockMode
	kind byte
}

func gtConnect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn := connect(t, dsn)
	if _, err := conn.Exec(context.Background(), "SET search_path = lg_gt", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	return conn
}

func gtSetup(ctx context.Context, conn *pgx.Conn) error {
	if _, err := conn.Exec(ctx, "ROLLBACK", pgx.QueryExecModeSimpleProtocol); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	if err := conn.PgConn().Exec(ctx, groundTruthSchema).Close(); err != nil {
		return fmt.Errorf("creating the ground-truth schema: %w", err)
	}
	_, err := conn.Exec(ctx, "SET search_path = lg_gt", pgx.QueryExecModeSimpleProtocol)
	return err
}

// predicted merges the locks of every statement in the analysis.
func predicted(an *guard.Analysis) map[guard.RelName]guard.RelationLock {
	out := map[guard.RelName]guard.RelationLock{}
	for _, s := range an.Statements {
		for _, l := range s.Locks {
			if p, ok := out[l.Rel]; !ok || l.Mode > p.Mode || l.Mode == p.Mode && !l.Conditional {
				out[l.Rel] = l
			}
		}
	}
	return out
}

// snapshot maps the oids of the schema's relations to their names. It is
// taken before the statement runs, so dropped and renamed relations are still
// named as the statement named them.
func snapshot(ctx context.Context, conn *pgx.Conn) (map[uint32]gtRel, error) {
	rows, err := conn.Query(ctx, `SELECT c.oid, n.nspname, c.relname, c.relkind::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'lg_gt'`)
	if err != nil {
		return nil, err
	}
	snap := map[uint32]gtRel{}
	for rows.Next() {
		var oid uint32
		var r gtRel
		var kind string
		if err := rows.Scan(&oid, &r.name.Schema, &r.name.Name, &kind); err != nil {
			return nil, err
		}
		r.kind = kind[0]
		snap[oid] = r
	}
	return snap, rows.Err()
}

// locksOf reads the relation locks of backend pid, granted or awaited,
// keeping the strongest mode per relation of the snapshot.
func locksOf(ctx context.Context, conn *pgx.Conn, pid uint32, snap map[uint32]gtRel) (map[guard.RelName]observedLock, error) {
	rows, err := conn.Query(ctx, `SELECT relation, mode FROM pg_locks
		WHERE pid = $1 AND locktype = 'relation'
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, pid)
	if err != nil {
		return nil, err
	}
	out := map[guard.RelName]observedLock{}
	for rows.Next() {
		var oid uint32
		var mode string
		if err := rows.Scan(&oid, &mode); err != nil {
			return nil, err
		}
		r, ok := snap[oid]
		if !ok {
			continue // created by the statement, or a system relation
		}
		m, err := guard.ParseLockMode(mode)
		if err != nil {
			return nil, err
		}
		if o, ok := out[r.name]; !ok || m > o.mode {
			out[r.name] = observedLock{mode: m, kind: r.kind}
		}
	}
	return out, rows.Err()
}

func runInTx(ctx context.Context, conn *pgx.Conn, c gtCase) (map[uint32]gtRel, map[guard.RelName]observedLock, error) {
	snap, err := snapshot(ctx, conn)
	if err != nil {
		return nil, nil, err
	}
	if _, err := conn.Exec(ctx, "BEGIN", pgx.QueryExecModeSimpleProtocol); err != nil {
		return nil, nil, err
	}
	defer conn.Exec(ctx, "ROLLBACK", pgx.QueryExecModeSimpleProtocol) //nolint:errcheck
	if err := execCase(ctx, conn, c); err != nil {
		return nil, nil, err
	}
	obs, err := locksOf(ctx, conn, conn.PgConn().PID(), snap)
	return snap, obs, err
}

func execCase(ctx context.Context, conn *pgx.Conn, c gtCase) error {
	upper := strings.ToUpper(c.sql)
	switch {
	case strings.HasPrefix(upper, "COPY") && strings.Contains(upper, "FROM STDIN"):
		_, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(c.copy), c.sql)
		return err
	case strings.HasPrefix(upper, "COPY") && strings.Contains(upper, "TO STDOUT"):
		_, err := conn.PgConn().CopyTo(ctx, io.Discard, c.sql)
		return err
	}
	_, err := conn.PgConn().Exec(ctx, c.sql).ReadAll()
	return err
}

// runWaiting observes a statement that cannot run in a transaction block:
// blocker holds c.block's lock in an open transaction, runner executes the
// statement, and conn reads runner's locks once it waits.
func runWaiting(ctx context.Context, t *testing.T, dsn string, conn *pgx.Conn, c gtCase) (map[uint32]gtRel, map[guard.RelName]observedLock, error) {
	snap, err := snapshot(ctx, conn)
	if err != nil {
		return nil, nil, err
	}
	blocker := gtConnect(t, dsn)
	runner := gtConnect(t, dsn)
	if _, err := blocker.Exec(ctx, "BEGIN; "+c.block, pgx.QueryExecModeSimpleProtocol); err != nil {
		return nil, nil, fmt.Errorf("blocker: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- execCase(ctx, runner, c) }()

	pid := runner.PgConn().PID()
	deadline := time.Now().Add(20 * time.Second)
	var obs map[guard.RelName]observedLock
	for {
		var waiting bool
		err := conn.QueryRow(ctx, `SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&waiting)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, nil, err
		}
		if waiting {
			obs, err = locksOf(ctx, conn, pid, snap)
			if err != nil {
				return nil, nil, err
			}
			break
		}
		select {
		case err := <-done:
			_, _ = blocker.Exec(ctx, "ROLLBACK", pgx.QueryExecModeSimpleProtocol)
			return nil, nil, fmt.Errorf("finished without waiting (err %v): the blocker %q did not block it", err, c.block)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("never waited for a lock")
		}
	}
	if _, err := blocker.Exec(ctx, "ROLLBACK", pgx.QueryExecModeSimpleProtocol); err != nil {
		return nil, nil, err
	}
	if err := <-done; err != nil {
		return nil, nil, err
	}
	if err := gtSetup(ctx, conn); err != nil {
		return nil, nil, err
	}
	return snap, obs, nil
}

func describeObserved(obs map[guard.RelName]observedLock) string {
	names := map[guard.RelName]bool{}
	for n, o := range obs {
		if isTableKind(o.kind) {
			names[n] = true
		}
	}
	var parts []string
	for _, n := range sortedNames(names) {
		parts = append(parts, n.Name+"="+obs[n].mode.PgName())
	}
	if len(parts) == 0 {
		return "(no table locks)"
	}
	return strings.Join(parts, " ")
}

func sortedNames(m map[guard.RelName]bool) []guard.RelName {
	out := make([]guard.RelName, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

func kindOf(snap map[uint32]gtRel, n guard.RelName) byte {
	for _, r := range snap {
		if r.name == n {
			return r.kind
		}
	}
	return 0
}

// isTableKind: ordinary and partitioned tables, views, materialized views and
// foreign tables are compared; indexes, sequences and TOAST tables only when
// predicted.
func isTableKind(k byte) bool { return k == 'r' || k == 'p' || k == 'v' || k == 'm' || k == 'f' }

func isIndexKind(k byte) bool { return k == 'i' || k == 'I' }

// groundTruthCases covers every family of statements guard maps. Where the
// reference and Postgres disagreed, Postgres won; guard's source notes each
// such fact.
var groundTruthCases = []gtCase{
	// Reads.
	{sql: "SELECT * FROM users"},
	{sql: "SELECT * FROM users u JOIN orders o ON o.user_id = u.id"},
	{sql: "SELECT * FROM users WHERE id IN (SELECT user_id FROM orders)"},
	{sql: "SELECT (SELECT count(*) FROM items) AS n"},
	{sql: "WITH recent AS (SELECT * FROM orders ORDER BY id DESC LIMIT 5) SELECT * FROM recent r JOIN users u ON u.id = r.user_id"},
	{sql: "WITH users AS (SELECT 1 AS id) SELECT * FROM users"},
	{sql: "SELECT * FROM events"},
	{sql: "SELECT * FROM ONLY events"},
	{sql: "SELECT * FROM events WHERE at = '2024-03-01'"},
	{sql: "SELECT * FROM animals"},
	{sql: "SELECT * FROM ONLY animals"},
	{sql: "SELECT * FROM big_orders"},
	{sql: "SELECT * FROM user_totals"},
	{sql: "SELECT * FROM users FOR UPDATE"},
	{sql: "SELECT * FROM users FOR NO KEY UPDATE"},
	{sql: "SELECT * FROM users FOR SHARE"},
	{sql: "SELECT * FROM users FOR KEY SHARE"},
	{sql: "SELECT * FROM users u JOIN orders o ON o.user_id = u.id FOR UPDATE OF u"},
	{sql: "SELECT * FROM users u JOIN orders o ON o.user_id = u.id FOR SHARE"},
	{sql: "SELECT * FROM (SELECT * FROM orders WHERE id < 10) s FOR UPDATE"},
	{sql: "SELECT * FROM users u WHERE u.id < 5 FOR UPDATE SKIP LOCKED"},
	{sql: "SELECT id FROM users UNION SELECT user_id FROM orders"},
	{sql: "TABLE tags"},
	{sql: "SELECT * FROM users u WHERE EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id AND EXISTS (SELECT 1 FROM items i WHERE i.order_id = o.id))"},
	{sql: "SELECT * FROM users u, LATERAL (SELECT * FROM orders o WHERE o.user_id = u.id LIMIT 1) x"},
	{sql: "SELECT count(*) FROM users TABLESAMPLE SYSTEM (50)"},
	{sql: "VALUES (1), (2)"},
	{sql: "SELECT 1"},
	{sql: "SELECT * FROM big_orders FOR UPDATE"},
	{sql: "SELECT set_config('lock_timeout', '5s', true)"},
	{sql: "DECLARE c1 CURSOR FOR SELECT * FROM users JOIN orders ON orders.user_id = users.id"},
	{sql: "EXPLAIN SELECT * FROM users JOIN orders ON orders.user_id = users.id"},
	{sql: "EXPLAIN UPDATE orders SET user_id = 3"},
	{sql: "EXPLAIN SELECT * FROM events"},
	{sql: "EXPLAIN ANALYZE DELETE FROM items WHERE id = 1"},
	{sql: "PREPARE gt_p1 AS SELECT * FROM orders JOIN users ON users.id = orders.user_id WHERE orders.id = $1"},
	{sql: "PREPARE gt_p2 AS INSERT INTO orders (id, user_id) VALUES ($1, $2)"},
	{sql: "PREPARE gt_p3 AS SELECT * FROM big_orders"},
	{sql: "PREPARE gt_p4 AS SELECT * FROM events"},
	{sql: "DECLARE c2 CURSOR FOR SELECT * FROM events"},
	{sql: "EXPLAIN SELECT * FROM big_orders"},
	{sql: "SELECT * FROM lg_gt.users JOIN lg_gt.tags USING (id)"},
	{sql: "SELECT u.id FROM users u LEFT JOIN LATERAL (SELECT max(amount) FROM orders WHERE user_id = u.id) m ON true WHERE u.id IN (SELECT user_id FROM ledger)"},

	// Writes.
	{sql: "INSERT INTO users (id, email) VALUES (1000, 'new@example.com')"},
	{sql: "INSERT INTO orders (id, user_id, amount) VALUES (10000, 5, 10)"},
	{sql: "INSERT INTO orders (id, user_id, amount) SELECT 10001, id, 1 FROM users WHERE id = 7"},
	{sql: "INSERT INTO items (id, order_id, sku) VALUES (10000, 1, 'x')"},
	{sql: "INSERT INTO events VALUES (1, '2024-02-02', 'x')"},
	{sql: "INSERT INTO events VALUES (1, '2024-02-02', 'x'), (2, '2030-01-01', 'y')"},
	{sql: "INSERT INTO metrics VALUES (1, 1, 1)"},
	{sql: "INSERT INTO users (id, email) VALUES (1, 'dup') ON CONFLICT (id) DO UPDATE SET name = excluded.name"},
	{sql: "INSERT INTO users (id, email) VALUES (1, 'dup') ON CONFLICT DO NOTHING"},
	{sql: "INSERT INTO audit (user_id, msg) VALUES (3, 'hi')"},
	{sql: "INSERT INTO animals VALUES (3, 'cat')"},
	{sql: "UPDATE big_orders SET user_id = 4 WHERE user_id = 5"},
	{sql: "UPDATE users SET name = 'x' WHERE id = 3"},
	{sql: "UPDATE users SET id = id WHERE id = 3"},
	{sql: "UPDATE users SET id = 5000 WHERE id = 99"},
	{sql: "UPDATE orders SET amount = amount + 1 WHERE id = 1"},
	{sql: "UPDATE orders SET user_id = 2 WHERE id = 1"},
	{sql: "UPDATE orders o SET note = u.name FROM users u WHERE u.id = o.user_id AND o.id < 5"},
	{sql: "UPDATE events SET payload = 'y' WHERE id = 3"},
	{sql: "UPDATE events SET payload = 'y' WHERE at = '2024-05-05'"},
	{sql: "UPDATE animals SET name = 'x'"},
	{sql: "UPDATE ONLY animals SET name = 'x'"},
	{sql: "DELETE FROM items WHERE id = 1"},
	{sql: "DELETE FROM orders WHERE id = 7"},
	{sql: "DELETE FROM users WHERE id = 95"},
	{sql: "DELETE FROM users u USING orders o WHERE o.user_id = u.id AND false"},
	{sql: "DELETE FROM events WHERE at < '2024-02-01'"},
	{sql: "DELETE FROM animals WHERE id = 1"},
	{sql: "DELETE FROM tags WHERE id IN (SELECT id FROM scratch)"},
	{sql: "MERGE INTO scratch s USING (VALUES (1, 'a'), (99, 'z')) v(id, name) ON s.id = v.id WHEN MATCHED THEN UPDATE SET name = v.name WHEN NOT MATCHED THEN INSERT (id, name) VALUES (v.id, v.name)", min: 15},
	{sql: "MERGE INTO orders o USING users u ON o.id = u.id WHEN MATCHED THEN UPDATE SET note = u.name", min: 15},
	{sql: "MERGE INTO orders o USING (SELECT 20000 AS id, 3 AS user_id) s ON o.id = s.id WHEN NOT MATCHED THEN INSERT (id, user_id) VALUES (s.id, s.user_id)", min: 15},
	{sql: "MERGE INTO items i USING (SELECT 5 AS id) s ON i.id = s.id WHEN MATCHED THEN DELETE", min: 15},
	{sql: "COPY users TO STDOUT"},
	{sql: "COPY (SELECT * FROM orders JOIN users ON users.id = orders.user_id) TO STDOUT"},
	{sql: "COPY tags FROM STDIN", copy: "500\tx\n"},
	{sql: "COPY orders (id, user_id) FROM STDIN", copy: "30000\t4\n"},
	{sql: "COPY events FROM STDIN", copy: "9\t2025-03-03\tz\n"},
	{sql: "WITH d AS (DELETE FROM items WHERE id = 2 RETURNING *) SELECT count(*) FROM d"},
	{sql: "WITH n AS (INSERT INTO scratch VALUES (600, 'n') RETURNING id) SELECT * FROM n"},
	{sql: "WITH u AS (UPDATE orders SET status = 'paid' WHERE id = 3 RETURNING user_id) SELECT * FROM users WHERE id IN (SELECT user_id FROM u)"},

	// Transaction control and settings take no table locks.
	{sql: "SET LOCAL lock_timeout = '1s'"},
	{sql: "SET statement_timeout = 0"},
	{sql: "RESET work_mem"},
	{sql: "SAVEPOINT s1"},
	{sql: "SHOW lock_timeout"},
	{sql: "SET CONSTRAINTS ALL DEFERRED"},

	// LOCK TABLE.
	{sql: "LOCK TABLE users"},
	{sql: "LOCK TABLE users IN ACCESS SHARE MODE"},
	{sql: "LOCK TABLE users IN ROW SHARE MODE"},
	{sql: "LOCK TABLE users IN ROW EXCLUSIVE MODE"},
	{sql: "LOCK TABLE users IN SHARE UPDATE EXCLUSIVE MODE"},
	{sql: "LOCK TABLE users IN SHARE MODE"},
	{sql: "LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE"},
	{sql: "LOCK TABLE users IN EXCLUSIVE MODE"},
	{sql: "LOCK TABLE events IN SHARE MODE"},
	{sql: "LOCK TABLE ONLY events IN SHARE MODE"},
	{sql: "LOCK TABLE big_orders IN SHARE MODE"},
	{sql: "LOCK TABLE users, orders IN EXCLUSIVE MODE NOWAIT"},
	{sql: "LOCK animals"},

	// ALTER TABLE, one subcommand family at a time.
	{sql: "ALTER TABLE users ADD COLUMN nickname text"},
	{sql: "ALTER TABLE users ADD COLUMN flag boolean NOT NULL DEFAULT false"},
	{sql: "ALTER TABLE users ADD COLUMN r float8 DEFAULT random()"},
	{sql: "ALTER TABLE users ADD COLUMN s bigserial"},
	{sql: "ALTER TABLE users ADD COLUMN ident int GENERATED ALWAYS AS IDENTITY"},
	{sql: "ALTER TABLE users ADD COLUMN g int GENERATED ALWAYS AS (score * 2) STORED"},
	{sql: "ALTER TABLE orders ADD COLUMN ref_user bigint REFERENCES users (id)"},
	{sql: "ALTER TABLE tags ADD COLUMN code text UNIQUE"},
	{sql: "ALTER TABLE users ALTER COLUMN name SET DEFAULT 'anon'"},
	{sql: "ALTER TABLE users ALTER COLUMN created_at DROP DEFAULT"},
	{sql: "ALTER TABLE users ALTER COLUMN name SET NOT NULL"},
	{sql: "ALTER TABLE orders ALTER COLUMN user_id DROP NOT NULL"},
	{sql: "ALTER TABLE users ALTER COLUMN score SET STATISTICS 500"},
	{sql: "ALTER TABLE users ALTER COLUMN score SET (n_distinct = 100)"},
	{sql: "ALTER TABLE users ALTER COLUMN score RESET (n_distinct)"},
	{sql: "ALTER TABLE users ALTER COLUMN name SET STORAGE EXTERNAL"},
	{sql: "ALTER TABLE users ALTER COLUMN name SET COMPRESSION pglz", min: 14},
	{sql: "ALTER TABLE users DROP COLUMN score"},
	{sql: "ALTER TABLE items DROP COLUMN order_id"},
	{sql: "ALTER TABLE orders DROP COLUMN id CASCADE"},
	{sql: "ALTER TABLE orders ALTER COLUMN note TYPE varchar(200)"},
	{sql: "ALTER TABLE tags ALTER COLUMN name TYPE varchar(50)"},
	{sql: "ALTER TABLE items ALTER COLUMN order_id TYPE int"},
	{sql: "ALTER TABLE users OWNER TO postgres"},
	{sql: "ALTER TABLE users CLUSTER ON users_pkey"},
	{sql: "ALTER TABLE users SET WITHOUT CLUSTER"},
	{sql: "ALTER TABLE scratch SET UNLOGGED"},
	{sql: "ALTER TABLE scratch SET ACCESS METHOD heap", min: 15},
	{sql: "ALTER TABLE scratch SET TABLESPACE pg_default"},
	{sql: "ALTER TABLE users SET (fillfactor = 70)"},
	{sql: "ALTER TABLE users SET (autovacuum_vacuum_scale_factor = 0.01)"},
	{sql: "ALTER TABLE users RESET (fillfactor)"},
	{sql: "ALTER TABLE users SET (parallel_workers = 2, toast_tuple_target = 256)"},
	{sql: "ALTER TABLE users SET (user_catalog_table = false)"},
	{sql: "ALTER TABLE users SET (fillfactor = 70, user_catalog_table = false)"},
	{sql: "ALTER TABLE tags ENABLE TRIGGER tags_trg"},
	{sql: "ALTER TABLE tags DISABLE TRIGGER ALL"},
	{sql: "ALTER TABLE tags ENABLE REPLICA TRIGGER tags_trg"},
	{sql: "ALTER TABLE tags DISABLE RULE tags_rule"},
	{sql: "ALTER TABLE tags ENABLE ROW LEVEL SECURITY"},
	{sql: "ALTER TABLE tags FORCE ROW LEVEL SECURITY"},
	{sql: "ALTER TABLE tags REPLICA IDENTITY FULL"},
	{sql: "ALTER TABLE dogs NO INHERIT animals"},
	{sql: "ALTER TABLE scratch INHERIT animals"},
	{sql: "ALTER TABLE orders ADD CONSTRAINT orders_amount_pos CHECK (amount >= 0)"},
	{sql: "ALTER TABLE orders ADD CONSTRAINT orders_amount_pos CHECK (amount >= 0) NOT VALID"},
	{sql: "ALTER TABLE items ADD CONSTRAINT items_order_fk2 FOREIGN KEY (order_id) REFERENCES orders (id)"},
	{sql: "ALTER TABLE items ADD CONSTRAINT items_order_fk2 FOREIGN KEY (order_id) REFERENCES orders (id) NOT VALID"},
	{sql: "ALTER TABLE tags ADD CONSTRAINT tags_name_key UNIQUE (name)"},
	{sql: "ALTER TABLE scratch ADD PRIMARY KEY (id)"},
	{sql: "CREATE UNIQUE INDEX tags_name_uidx ON tags (name); ALTER TABLE tags ADD CONSTRAINT tags_name_uq UNIQUE USING INDEX tags_name_uidx"},
	{sql: "ALTER TABLE payments VALIDATE CONSTRAINT payments_order_fk"},
	{sql: "ALTER TABLE payments VALIDATE CONSTRAINT payments_amount_check"},
	{sql: "ALTER TABLE orders VALIDATE CONSTRAINT orders_user_fk"},
	{sql: "ALTER TABLE orders DROP CONSTRAINT orders_user_fk"},
	{sql: "ALTER TABLE items DROP CONSTRAINT items_order_fk"},
	{sql: "ALTER TABLE payments DROP CONSTRAINT payments_order_fk"},
	{sql: "ALTER TABLE orders DROP CONSTRAINT orders_pkey CASCADE"},
	{sql: "ALTER TABLE tags DROP CONSTRAINT tags_pkey"},
	{sql: "ALTER TABLE payments DROP CONSTRAINT payments_amount_check"},
	{sql: "ALTER TABLE orders ALTER CONSTRAINT orders_user_fk DEFERRABLE"},
	{sql: "ALTER TABLE events ATTACH PARTITION events_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')"},
	{sql: "ALTER TABLE events DETACH PARTITION events_2025"},
	{sql: "ALTER TABLE metrics ATTACH PARTITION metrics_3 FOR VALUES IN (3)"},
	{sql: "ALTER TABLE metrics DETACH PARTITION metrics_2"},
	{sql: "ALTER TABLE events ADD COLUMN extra int"},
	{sql: "ALTER TABLE events ALTER COLUMN payload SET STATISTICS 100"},
	{sql: "ALTER TABLE events ADD CONSTRAINT events_id_pos CHECK (id > 0)"},
	{sql: "ALTER TABLE events DROP COLUMN payload"},
	{sql: "ALTER TABLE events ALTER COLUMN payload TYPE varchar(100)"},
	{sql: "ALTER TABLE events OWNER TO postgres"},
	{sql: "ALTER TABLE events ENABLE TRIGGER ALL"},
	{sql: "ALTER TABLE events ALTER COLUMN payload SET DEFAULT 'x'"},
	{sql: "ALTER TABLE events ALTER COLUMN payload SET NOT NULL"},
	{sql: "ALTER TABLE ONLY animals ALTER COLUMN name SET DEFAULT 'x'"},
	{sql: "ALTER TABLE animals ADD COLUMN legs int"},
	{sql: "ALTER TABLE animals ALTER COLUMN name SET STATISTICS 10"},
	{sql: "ALTER TABLE orders ADD COLUMN c1 int, ADD CONSTRAINT orders_fk_tags FOREIGN KEY (c1) REFERENCES tags (id)"},
	{sql: "ALTER TABLE orders SET (fillfactor = 60), ALTER COLUMN note SET STATISTICS 10"},
	{sql: "ALTER TABLE users ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY"},
	{sql: "ALTER TABLE audit ALTER COLUMN id DROP DEFAULT"},
	{sql: "ALTER TABLE items ALTER COLUMN sku SET DEFAULT 'x'"},
	{sql: "ALTER TABLE IF EXISTS scratch ADD COLUMN IF NOT EXISTS v text"},
	{sql: "ALTER TABLE counters ALTER COLUMN n2 DROP EXPRESSION"},
	{sql: "ALTER TABLE counters ALTER COLUMN id SET INCREMENT BY 2"},
	{sql: "ALTER TABLE counters ALTER COLUMN id RESTART WITH 100"},
	{sql: "ALTER TABLE counters ALTER COLUMN id SET GENERATED ALWAYS"},
	{sql: "ALTER TABLE counters ALTER COLUMN id DROP IDENTITY"},
	{sql: "ALTER TABLE tags ADD CONSTRAINT tags_excl EXCLUDE USING btree (id WITH =)"},
	{sql: "ALTER TABLE scratch SET LOGGED"},
	{sql: "ALTER TABLE scratch SET WITHOUT OIDS"},
	{sql: "ALTER TABLE tags ENABLE ALWAYS TRIGGER tags_trg"},
	{sql: "ALTER TABLE tags DISABLE TRIGGER USER"},
	{sql: "ALTER TABLE tags ENABLE ALWAYS RULE tags_rule"},
	{sql: "ALTER TABLE tags DISABLE ROW LEVEL SECURITY"},
	{sql: "ALTER TABLE tags NO FORCE ROW LEVEL SECURITY"},
	{sql: "ALTER TABLE scratch OF scratch_type"},
	{sql: "ALTER TABLE scratch OF scratch_type; ALTER TABLE scratch NOT OF"},
	{sql: "ALTER TABLE users ALTER COLUMN name SET DATA TYPE varchar(300) USING name::varchar(300)"},
	{sql: "ALTER INDEX events_at_idx ATTACH PARTITION events_2024_at_idx"},
	{sql: "ALTER INDEX orders_user_id_idx RESET (fillfactor)"},
	{sql: "ALTER TABLE orders ALTER COLUMN note SET DEFAULT 'n', ALTER COLUMN status SET NOT NULL, ADD COLUMN z int"},
	{sql: "ALTER TABLE users RENAME TO people"},
	{sql: "ALTER TABLE users RENAME COLUMN name TO full_name"},
	{sql: "ALTER TABLE animals RENAME COLUMN name TO title"},
	{sql: "ALTER TABLE orders RENAME CONSTRAINT orders_user_fk TO orders_user_fk2"},
	{sql: "ALTER TABLE users SET SCHEMA public"},
	{sql: "ALTER INDEX orders_user_id_idx RENAME TO orders_uid_idx"},
	{sql: "ALTER INDEX orders_user_id_idx SET (fillfactor = 80)"},
	{sql: "ALTER INDEX orders_user_id_idx SET TABLESPACE pg_default"},
	{sql: "ALTER VIEW big_orders RENAME TO big_orders2"},
	{sql: "ALTER MATERIALIZED VIEW user_totals RENAME TO user_totals2"},
	{sql: "ALTER TRIGGER tags_trg ON tags RENAME TO tags_trg2"},
	{sql: "ALTER POLICY tags_pol ON tags USING (id > 0)"},
	{sql: "ALTER POLICY tags_pol ON tags RENAME TO tags_pol2"},

	// Partitioned tables with a foreign key (shipments → users).
	{sql: "INSERT INTO shipments VALUES (1, 3, '2024-05-05')"},
	{sql: "DELETE FROM users WHERE id = 96"},
	{sql: "UPDATE users SET id = 6000 WHERE id = 97"},
	{sql: "ALTER TABLE shipments DROP CONSTRAINT shipments_user_id_fkey"},
	{sql: "ALTER TABLE shipments ADD CONSTRAINT shipments_user_fk2 FOREIGN KEY (user_id) REFERENCES users (id)"},
	{sql: "ALTER TABLE shipments VALIDATE CONSTRAINT shipments_id_check"},
	{sql: "ALTER TABLE shipments DROP CONSTRAINT shipments_at_check"},
	{sql: "ALTER TABLE shipments ADD PRIMARY KEY (id, at)"},
	{sql: "ALTER TABLE shipments ALTER COLUMN user_id SET STORAGE PLAIN"},
	{sql: "ALTER TABLE shipments ALTER COLUMN user_id TYPE int"},
	{sql: "ALTER TABLE shipments DROP COLUMN user_id"},
	{sql: "ALTER TABLE shipments REPLICA IDENTITY FULL"},
	{sql: "ALTER TABLE shipments ATTACH PARTITION shipments_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')"},
	{sql: "ALTER TABLE shipments DETACH PARTITION shipments_2025"},
	{sql: "CREATE TABLE shipments_2027 PARTITION OF shipments FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')"},
	{sql: "DROP TABLE shipments"},
	{sql: "TRUNCATE shipments"},
	{sql: "CREATE INDEX ON shipments (user_id)"},
	{sql: "CREATE TRIGGER shipments_trg AFTER INSERT ON shipments FOR EACH STATEMENT EXECUTE FUNCTION suppress_redundant_updates_trigger()"},
	{sql: "DROP TABLE users CASCADE"},
	{sql: "DROP TABLE orders CASCADE"},
	{sql: "DROP VIEW big_orders CASCADE"},
	{sql: "INSERT INTO metric_notes VALUES (1000, 2, 1)"},
	{sql: "DELETE FROM metrics WHERE id = 3"},

	// CREATE TABLE and friends.
	{sql: "CREATE TABLE t_new (id int PRIMARY KEY, user_id bigint REFERENCES users (id))"},
	{sql: "CREATE TABLE t_new (id int, CONSTRAINT f FOREIGN KEY (id) REFERENCES tags (id))"},
	{sql: "CREATE TABLE events_2027 PARTITION OF events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')"},
	{sql: "CREATE TABLE metrics_4 PARTITION OF metrics FOR VALUES IN (4)"},
	{sql: "CREATE TABLE t_like (LIKE users INCLUDING ALL)"},
	{sql: "CREATE TABLE cats (lives int) INHERITS (animals)"},
	{sql: "CREATE TABLE t_as AS SELECT * FROM orders WHERE amount > 10"},
	{sql: "SELECT * INTO t_into FROM tags"},
	{sql: "CREATE MATERIALIZED VIEW mv2 AS SELECT * FROM items"},
	{sql: "CREATE VIEW v2 AS SELECT u.id, o.amount FROM users u JOIN orders o ON o.user_id = u.id"},
	{sql: "CREATE OR REPLACE VIEW big_orders AS SELECT user_id, amount FROM orders WHERE amount > 100"},
	{sql: "CREATE TABLE t_part (id int, k int) PARTITION BY RANGE (k)"},
	{sql: "CREATE VIEW v3 AS SELECT * FROM big_orders"},
	{sql: "CREATE VIEW v4 AS SELECT * FROM events"},
	{sql: "CREATE TABLE t_as2 AS SELECT * FROM big_orders"},
	{sql: "CREATE MATERIALIZED VIEW mv3 AS SELECT * FROM events WHERE id < 10"},
	{sql: "CREATE TABLE default_events PARTITION OF shipments DEFAULT"},
	{sql: "CREATE TABLE t_plain (id int)"},

	// DROP and TRUNCATE.
	{sql: "DROP TABLE scratch"},
	{sql: "DROP TABLE items"},
	{sql: "DROP TABLE payments"},
	{sql: "DROP TABLE ledger, audit"},
	{sql: "DROP TABLE items CASCADE"},
	{sql: "DROP TABLE events"},
	{sql: "DROP TABLE animals CASCADE"},
	{sql: "DROP TABLE events_2026"},
	{sql: "DROP TABLE IF EXISTS no_such_table"},
	{sql: "DROP VIEW big_orders"},
	{sql: "DROP MATERIALIZED VIEW user_totals"},
	{sql: "DROP INDEX orders_user_id_idx"},
	{sql: "DROP INDEX user_totals_id"},
	{sql: "DROP TRIGGER tags_trg ON tags"},
	{sql: "DROP POLICY tags_pol ON tags"},
	{sql: "DROP RULE tags_rule ON tags"},
	{sql: "DROP STATISTICS users_stats"},
	{sql: "TRUNCATE scratch"},
	{sql: "TRUNCATE items"},
	{sql: "TRUNCATE users CASCADE"},
	{sql: "TRUNCATE users, shipments CASCADE"},
	{sql: "TRUNCATE events"},
	{sql: "TRUNCATE ONLY animals"},
	{sql: "TRUNCATE orders, items, payments"},
	{sql: "TRUNCATE animals"},
	{sql: "TRUNCATE events_2024"},

	// Indexes and maintenance.
	{sql: "CREATE INDEX ON orders (note)"},
	{sql: "CREATE UNIQUE INDEX tags_name_uidx ON tags (name)"},
	{sql: "CREATE INDEX ON events (id)"},
	{sql: "CREATE INDEX ON ONLY events (id)"},
	{sql: "CREATE INDEX ON user_totals (n)"},
	{sql: "REINDEX INDEX orders_user_id_idx"},
	{sql: "REINDEX TABLE orders"},
	{sql: "REINDEX INDEX user_totals_id"},
	{sql: "CLUSTER users USING users_pkey"},
	{sql: "CLUSTER orders USING orders_pkey"},
	{sql: "ANALYZE users"},
	{sql: "ANALYZE events"},
	{sql: "ANALYZE users (score), orders"},
	{sql: "REFRESH MATERIALIZED VIEW user_totals"},
	{sql: "REFRESH MATERIALIZED VIEW CONCURRENTLY user_totals"},
	{sql: "REFRESH MATERIALIZED VIEW user_totals WITH NO DATA"},

	// Triggers, rules, policies, comments, statistics, grants.
	{sql: "CREATE TRIGGER orders_trg BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()"},
	{sql: "CREATE TRIGGER events_trg BEFORE UPDATE ON events FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()"},
	{sql: "CREATE TRIGGER tags_stmt_trg AFTER UPDATE ON tags FOR EACH STATEMENT EXECUTE FUNCTION suppress_redundant_updates_trigger()"},
	{sql: "CREATE RULE scratch_rule AS ON UPDATE TO scratch DO INSTEAD NOTHING"},
	{sql: "CREATE POLICY orders_pol ON orders USING (user_id > 0)"},
	{sql: "CREATE POLICY orders_pol2 ON orders USING (EXISTS (SELECT 1 FROM users u WHERE u.id = user_id))"},
	{sql: "COMMENT ON TABLE users IS 'people'"},
	{sql: "COMMENT ON COLUMN users.name IS 'x'"},
	{sql: "COMMENT ON INDEX orders_user_id_idx IS 'x'"},
	{sql: "COMMENT ON CONSTRAINT orders_user_fk ON orders IS 'x'"},
	{sql: "COMMENT ON TRIGGER tags_trg ON tags IS 'x'"},
	{sql: "COMMENT ON VIEW big_orders IS 'x'"},
	{sql: "COMMENT ON MATERIALIZED VIEW user_totals IS 'x'"},
	{sql: "COMMENT ON POLICY tags_pol ON tags IS 'x'"},
	{sql: "COMMENT ON RULE tags_rule ON tags IS 'x'"},
	{sql: "COMMENT ON STATISTICS users_stats IS 'x'"},
	{sql: "CREATE STATISTICS tags_stats ON id, name FROM tags"},
	{sql: "ALTER STATISTICS users_stats SET STATISTICS 100"},
	{sql: "GRANT SELECT ON users TO PUBLIC"},
	{sql: "REVOKE SELECT ON users FROM PUBLIC"},
	{sql: "CREATE DOMAIN posint AS int CHECK (VALUE > 0)"},
	{sql: "CREATE SEQUENCE gt_seq"},
	{sql: "CREATE FUNCTION gt_f() RETURNS int LANGUAGE sql AS 'SELECT 1'"},
	{sql: "CREATE TYPE gt_mood AS ENUM ('ok', 'sad')"},

	// PL/pgSQL code blocks: the union of their statements' locks.
	{sql: "DO $$ BEGIN ALTER TABLE orders DROP CONSTRAINT orders_user_fk; END $$"},
	{sql: "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'payments_order_fk2') THEN ALTER TABLE payments ADD CONSTRAINT payments_order_fk2 FOREIGN KEY (order_id) REFERENCES orders (id) NOT VALID; END IF; END $$"},
	{sql: "DO $$ DECLARE n int; BEGIN SELECT count(*) INTO n FROM tags; UPDATE scratch SET v = 'x' WHERE id = n; EXECUTE 'LOCK TABLE ledger IN SHARE MODE'; END $$"},
	{sql: "DO $$ BEGIN IF false THEN DROP TABLE tags; END IF; END $$"},
	{sql: "DO $$ BEGIN PERFORM 1 FROM users WHERE id = 1 FOR UPDATE; END $$"},
	{sql: "DO $$ DECLARE r record; BEGIN FOR r IN SELECT id FROM tags LOOP UPDATE tags SET name = 'x' WHERE id = r.id; END LOOP; END $$"},
	{sql: "CALL gt_proc(1)"},
	{sql: "CALL lg_gt.gt_proc(2, 'y')"},
	{sql: "DO LANGUAGE plpgsql 'DECLARE m numeric := (SELECT max(amount) FROM payments); BEGIN ALTER TABLE users ALTER COLUMN score SET NOT NULL; EXCEPTION WHEN others THEN TRUNCATE scratch; END'"},

	// Statements that cannot run in a transaction block, observed while they
	// wait behind the second connection's lock.
	{sql: "CREATE INDEX CONCURRENTLY orders_note_idx ON orders (note)", block: "LOCK TABLE orders IN ROW EXCLUSIVE MODE"},
	{sql: "CREATE INDEX CONCURRENTLY ON users (lower(email))", block: "LOCK TABLE users IN ROW EXCLUSIVE MODE"},
	{sql: "DROP INDEX CONCURRENTLY orders_user_id_idx", block: "LOCK TABLE orders IN ROW EXCLUSIVE MODE"},
	{sql: "REINDEX INDEX CONCURRENTLY orders_user_id_idx", block: "LOCK TABLE orders IN ROW EXCLUSIVE MODE"},
	{sql: "REINDEX TABLE CONCURRENTLY orders", block: "LOCK TABLE orders IN ROW EXCLUSIVE MODE"},
	{sql: "VACUUM users", block: "LOCK TABLE users IN SHARE UPDATE EXCLUSIVE MODE"},
	{sql: "VACUUM FULL users", block: "LOCK TABLE users IN ACCESS SHARE MODE"},
	{sql: "VACUUM (ANALYZE) orders", block: "LOCK TABLE orders IN SHARE UPDATE EXCLUSIVE MODE"},
	// The second transaction of DETACH … CONCURRENTLY takes ACCESS EXCLUSIVE on
	// the partition: a reader of the partition makes it wait there, before it
	// locks the table whose foreign key references the parent; a reader of
	// that table makes it wait after.
	{sql: "ALTER TABLE metrics DETACH PARTITION metrics_2 CONCURRENTLY", block: "SELECT count(*) FROM metrics_2", partial: true, min: 14},
	{sql: "ALTER TABLE metrics DETACH PARTITION metrics_2 CONCURRENTLY", block: "SELECT count(*) FROM metric_notes", min: 14},
}
