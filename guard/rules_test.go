package guard

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// policyCatalog is a catalog for the policy tests, with the optional
// extensions the rules use (sizes, column types, constraint definitions).
type policyCatalog struct {
	*StaticCatalog
	sizes map[string][2]int64 // "public.orders" → rows, bytes
	cols  map[string]string   // "public.orders.note" → "type" or "type NOT NULL"
	defs  map[string]string   // constraint name → pg_get_constraintdef
}

func (c *policyCatalog) TableSize(rel RelName) (int64, int64, bool) {
	info, ok := c.Relation(rel)
	if !ok {
		return 0, 0, false
	}
	s, ok := c.sizes[info.Name.Schema+"."+info.Name.Name]
	return s[0], s[1], ok
}

func (c *policyCatalog) ColumnType(rel RelName, column string) (string, bool, bool) {
	info, ok := c.Relation(rel)
	if !ok {
		return "", false, false
	}
	t, ok := c.cols[info.Name.Schema+"."+info.Name.Name+"."+column]
	if !ok {
		return "", false, false
	}
	typ, nn := strings.CutSuffix(t, " NOT NULL")
	return typ, nn, true
}

func (c *policyCatalog) ConstraintDef(table RelName, name string) (string, bool) {
	d, ok := c.defs[name]
	return d, ok
}

func testCatalog() *policyCatalog {
	p := func(name string) RelName { return RelName{"public", name} }
	t := func(name string) RelInfo { return RelInfo{Name: p(name), Kind: KindTable, Bytes: -1} }
	part := func(name, parent string, def bool) RelInfo {
		r := t(name)
		r.Parent, r.IsDefault = p(parent), def
		return r
	}
	idx := func(name, table string) RelInfo {
		return RelInfo{Name: p(name), Kind: KindIndex, Table: p(table)}
	}
	events := t("events")
	events.Kind = KindPartitionedTable
	return &policyCatalog{
		StaticCatalog: &StaticCatalog{
			Relations: []RelInfo{
				t("users"), t("orders"), t("items"), t("payments"), t("tags"), t("bookings"),
				events, part("events_2024", "events", false), part("events_default", "events", true), t("events_2026"),
				{Name: p("user_totals"), Kind: KindMatView, Reads: []RelName{p("users"), p("orders")}},
				idx("orders_user_id_idx", "orders"), idx("orders_pkey", "orders"),
			},
			Cons: []Constraint{
				{Name: "orders_user_fk", Table: p("orders"), Type: ConstraintForeignKey, Columns: []string{"user_id"}, RefTable: p("users"), RefColumns: []string{"id"}, Validated: true},
				{Name: "items_order_fk", Table: p("items"), Type: ConstraintForeignKey, Columns: []string{"order_id"}, RefTable: p("orders"), RefColumns: []string{"id"}, Validated: true},
				{Name: "orders_pkey", Table: p("orders"), Type: ConstraintPrimaryKey, Columns: []string{"id"}, Validated: true},
				{Name: "payments_amount_check", Table: p("payments"), Type: ConstraintCheck, Columns: []string{"amount"}, Validated: true},
				{Name: "orders_code_nn", Table: p("orders"), Type: ConstraintCheck, Columns: []string{"code"}, Validated: true},
				{Name: "orders_ref_nn", Table: p("orders"), Type: ConstraintCheck, Columns: []string{"ref"}, Validated: false},
			},
			Functions:  map[string]Volatility{"random": Volatile, "now": Stable, "my_stable": Stable, "my_volatile": Volatile},
			VersionNum: 150004,
		},
		sizes: map[string][2]int64{"public.orders": {5_000_000, 2 << 30}, "public.users": {100, 16 << 10}},
		cols: map[string]string{
			"public.orders.total": "integer NOT NULL", "public.orders.note": "character varying(50)",
			"public.orders.amount": "numeric(10,2)", "public.orders.created_at": "timestamp without time zone",
			"public.payments.amount": "numeric(10,2) NOT NULL", "public.orders.cidr": "cidr",
		},
		defs: map[string]string{"orders_code_nn": "CHECK ((code IS NOT NULL))", "orders_ref_nn": "CHECK ((ref IS NOT NULL)) NOT VALID"},
	}
}

// ruleCase is one statement (or script) and whether rule fires on it.
type ruleCase struct {
	rule    string
	sql     string
	fire    bool
	cat     bool   // with testCatalog
	offline bool   // Context.Offline
	inTx    bool   // InTransaction
	prior   string // statements run (and Recorded) earlier in the transaction
	version int
	policy  *PolicyConfig
	now     time.Time
	user    string
}

var monday = time.Date(2025, 3, 3, 12, 0, 0, 0, time.UTC) // a Monday

var ruleCases = []ruleCase{
	{rule: "add-column-volatile-default", sql: "ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid()", fire: true},
	{rule: "add-column-volatile-default", sql: "ALTER TABLE orders ADD COLUMN r float8 DEFAULT random() * 10", fire: true, cat: true},
	{rule: "add-column-volatile-default", sql: "ALTER TABLE orders ADD COLUMN r int DEFAULT my_volatile()", fire: true, cat: true},
	{rule: "add-column-volatile-default", sql: "ALTER TABLE orders ADD COLUMN r int DEFAULT mystery()", fire: true},
	{rule: "add-column-volatile-default", sql: "ALTER TABLE orders ADD COLUMN r int DEFAULT 0", fire: true, version: 100000},
	{rule: "add-column-volatile-default", sql: "ALTER TABLE orders ADD COLUMN created timestamptz DEFAULT now()"},
	{rule: "add-column-volatile-default", sql: "ALTER TABLE orders ADD COLUMN d date DEFAULT CURRENT_DATE"},
	{rule: "add-column-volatile-default", sql: "ALTER TABLE orders ADD COLUMN r int DEFAULT my_stable()", cat: true},
	{rule: "add-column-volatile-default", sql: "ALTER TABLE orders ADD COLUMN r int DEFAULT 0", version: 110000},
	{rule: "add-column-volatile-default", sql: "CREATE TABLE t (id int); ALTER TABLE t ADD COLUMN u uuid DEFAULT gen_random_uuid()"},

	{rule: "add-column-stored-generated", sql: "ALTER TABLE orders ADD COLUMN t2 numeric GENERATED ALWAYS AS (total * 2) STORED", fire: true},
	{rule: "add-column-stored-generated", sql: "ALTER TABLE orders ADD COLUMN t2 numeric"},

	{rule: "add-column-serial-identity", sql: "ALTER TABLE orders ADD COLUMN seq bigserial", fire: true},
	{rule: "add-column-serial-identity", sql: "ALTER TABLE orders ADD COLUMN seq bigint GENERATED BY DEFAULT AS IDENTITY", fire: true},
	{rule: "add-column-serial-identity", sql: "ALTER TABLE orders ADD COLUMN seq bigint"},

	{rule: "add-column-required", sql: "ALTER TABLE orders ADD COLUMN code text NOT NULL", fire: true},
	{rule: "add-column-required", sql: "ALTER TABLE orders ADD COLUMN code text NOT NULL DEFAULT ''"},
	{rule: "add-column-required", sql: "ALTER TABLE orders ADD COLUMN code text"},

	{rule: "add-column-inline-constraint", sql: "ALTER TABLE orders ADD COLUMN ref bigint REFERENCES users (id)", fire: true},
	{rule: "add-column-inline-constraint", sql: "ALTER TABLE orders ADD COLUMN code text UNIQUE", fire: true},
	{rule: "add-column-inline-constraint", sql: "ALTER TABLE orders ADD COLUMN qty int CHECK (qty > 0)", fire: true},
	{rule: "add-column-inline-constraint", sql: "ALTER TABLE orders ADD COLUMN ref bigint"},

	{rule: "change-column-type", sql: "ALTER TABLE orders ALTER COLUMN total TYPE bigint", fire: true, cat: true},
	{rule: "change-column-type", sql: "ALTER TABLE orders ALTER COLUMN total TYPE bigint", fire: true},
	{rule: "change-column-type", sql: "ALTER TABLE orders ALTER COLUMN note TYPE varchar(20)", fire: true, cat: true},
	{rule: "change-column-type", sql: "ALTER TABLE orders ALTER COLUMN note TYPE varchar(100) USING note::varchar(100)", fire: true, cat: true},
	{rule: "change-column-type", sql: "ALTER TABLE orders ALTER COLUMN created_at TYPE timestamptz", fire: true, cat: true},
	{rule: "change-column-type", sql: "ALTER TABLE orders ALTER COLUMN amount TYPE numeric(12,3)", fire: true, cat: true},
	{rule: "change-column-type", sql: "ALTER TABLE orders ALTER COLUMN note TYPE varchar(100)", cat: true},
	{rule: "change-column-type", sql: "ALTER TABLE orders ALTER COLUMN note TYPE text", cat: true},
	{rule: "change-column-type", sql: "ALTER TABLE orders ALTER COLUMN amount TYPE numeric(12,2)", cat: true},
	{rule: "change-column-type", sql: "ALTER TABLE orders ALTER COLUMN cidr TYPE inet", cat: true},
	{rule: "change-column-type", sql: "SET TIME ZONE 'UTC'; ALTER TABLE orders ALTER COLUMN created_at TYPE timestamptz", cat: true},
	{rule: "change-column-type", sql: "CREATE TABLE t (a int); ALTER TABLE t ALTER COLUMN a TYPE bigint"},

	{rule: "change-type-recheck", sql: "ALTER TABLE payments ALTER COLUMN amount TYPE numeric(12,2)", fire: true, cat: true},
	{rule: "change-type-recheck", sql: "ALTER TABLE orders ALTER COLUMN amount TYPE numeric(12,2)", cat: true},

	{rule: "set-not-null", sql: "ALTER TABLE orders ALTER COLUMN note SET NOT NULL", fire: true},
	{rule: "set-not-null", sql: "ALTER TABLE orders ALTER COLUMN note SET NOT NULL", fire: true, cat: true},
	{rule: "set-not-null", sql: "ALTER TABLE orders ALTER COLUMN ref SET NOT NULL", fire: true, cat: true}, // its CHECK is not validated
	{rule: "set-not-null", sql: "ALTER TABLE orders ALTER COLUMN code SET NOT NULL", fire: true, cat: true, version: 110000},
	{rule: "set-not-null", sql: "ALTER TABLE orders ALTER COLUMN code SET NOT NULL", cat: true},
	{rule: "set-not-null", offline: true, sql: "ALTER TABLE orders ADD CONSTRAINT c CHECK (note IS NOT NULL) NOT VALID;\nALTER TABLE orders VALIDATE CONSTRAINT c;\nALTER TABLE orders ALTER COLUMN note SET NOT NULL"},
	{rule: "set-not-null", offline: true, sql: "ALTER TABLE orders ADD CONSTRAINT c CHECK (note IS NOT NULL) NOT VALID;\nALTER TABLE orders ALTER COLUMN note SET NOT NULL", fire: true},

	{rule: "add-check-validated", sql: "ALTER TABLE orders ADD CONSTRAINT c CHECK (total > 0)", fire: true},
	{rule: "add-check-validated", sql: "ALTER TABLE orders ADD CONSTRAINT c CHECK (total > 0) NOT VALID"},

	{rule: "add-fk-validated", sql: "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id)", fire: true},
	{rule: "add-fk-validated", sql: "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID"},
	{rule: "add-fk-validated", sql: "CREATE TABLE t (id int, user_id int); ALTER TABLE t ADD FOREIGN KEY (user_id) REFERENCES users"},

	{rule: "create-table-fk-to-hot-table", sql: "CREATE TABLE t (id int, user_id bigint REFERENCES users (id))", fire: true},
	{rule: "create-table-fk-to-hot-table", sql: "CREATE TABLE t (id int, user_id bigint)"},
	{rule: "create-table-fk-to-hot-table", sql: "CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE c (p_id int REFERENCES p)"},

	{rule: "validate-same-txn", sql: "BEGIN; ALTER TABLE orders ADD CONSTRAINT c CHECK (total > 0) NOT VALID; ALTER TABLE orders VALIDATE CONSTRAINT c; COMMIT", fire: true},
	{rule: "validate-same-txn", sql: "ALTER TABLE orders VALIDATE CONSTRAINT c", inTx: true, prior: "ALTER TABLE users ADD COLUMN x int", fire: true},
	{rule: "validate-same-txn", sql: "ALTER TABLE orders VALIDATE CONSTRAINT c"},
	{rule: "validate-same-txn", offline: true, sql: "ALTER TABLE orders ADD CONSTRAINT c CHECK (total > 0) NOT VALID;\nALTER TABLE orders VALIDATE CONSTRAINT c"},

	{rule: "add-unique-constraint", sql: "ALTER TABLE orders ADD CONSTRAINT u UNIQUE (note)", fire: true},
	{rule: "add-unique-constraint", sql: "ALTER TABLE orders ADD CONSTRAINT u UNIQUE USING INDEX u_idx"},

	{rule: "add-primary-key", sql: "ALTER TABLE tags ADD PRIMARY KEY (id)", fire: true},
	{rule: "add-primary-key", offline: true, cat: true, sql: "CREATE UNIQUE INDEX CONCURRENTLY orders_note_idx ON orders (note);\nALTER TABLE orders ADD CONSTRAINT pk PRIMARY KEY USING INDEX orders_note_idx", fire: true},
	{rule: "add-primary-key", offline: true, cat: true, sql: "CREATE UNIQUE INDEX CONCURRENTLY orders_total_idx ON orders (total);\nALTER TABLE orders ADD CONSTRAINT pk PRIMARY KEY USING INDEX orders_total_idx"},
	// An unnamed index is named after its INCLUDE columns too (PostgreSQL's
	// ChooseIndexColumnNames): lockguard finds it by that name.
	{rule: "add-primary-key", offline: true, cat: true, sql: "CREATE UNIQUE INDEX CONCURRENTLY ON orders (note) INCLUDE (total);\nALTER TABLE orders ADD CONSTRAINT pk PRIMARY KEY USING INDEX orders_note_total_idx", fire: true},
	{rule: "add-primary-key", sql: "ALTER TABLE tags ADD CONSTRAINT pk PRIMARY KEY USING INDEX tags_id_idx"},

	{rule: "add-exclusion-constraint", sql: "ALTER TABLE bookings ADD CONSTRAINT no_overlap EXCLUDE USING gist (room WITH =, during WITH &&)", fire: true},
	{rule: "add-exclusion-constraint", sql: "CREATE TABLE b2 (room int, during tstzrange, EXCLUDE USING gist (room WITH =, during WITH &&))"},

	{rule: "drop-foreign-key", sql: "ALTER TABLE orders DROP CONSTRAINT orders_user_fk", fire: true, cat: true},
	{rule: "drop-foreign-key", sql: "ALTER TABLE orders DROP CONSTRAINT orders_user_id_fkey", fire: true},
	{rule: "drop-foreign-key", sql: "ALTER TABLE items DROP COLUMN order_id", fire: true, cat: true},
	{rule: "drop-foreign-key", offline: true, sql: "ALTER TABLE orders ADD CONSTRAINT owner_ref FOREIGN KEY (user_id) REFERENCES users NOT VALID;\nALTER TABLE orders DROP CONSTRAINT owner_ref", fire: true},
	{rule: "drop-foreign-key", sql: "ALTER TABLE orders DROP CONSTRAINT orders_pkey", cat: true},
	{rule: "drop-foreign-key", sql: "ALTER TABLE orders DROP CONSTRAINT orders_total_check"},

	{rule: "create-index-blocking", sql: "CREATE INDEX i ON orders (note)", fire: true},
	{rule: "create-index-blocking", sql: "CREATE INDEX i ON events (id)", fire: true, cat: true},
	// ON ONLY a partitioned table builds nothing (the first step of the
	// per-partition recipe); on a plain table, or one the catalog does not
	// know, it builds the index.
	{rule: "create-index-blocking", sql: "CREATE INDEX i ON ONLY events (id)", cat: true},
	{rule: "create-index-blocking", sql: "CREATE INDEX i ON ONLY orders (note)", fire: true, cat: true},
	{rule: "create-index-blocking", sql: "CREATE INDEX i ON ONLY events (id)", fire: true},
	{rule: "create-index-blocking", sql: "CREATE INDEX CONCURRENTLY i ON orders (note)"},
	{rule: "create-index-blocking", sql: "CREATE TABLE t (a int); CREATE INDEX ON t (a)"},
	{rule: "create-index-blocking", sql: "CREATE INDEX ON t (a)", inTx: true, prior: "CREATE TABLE t (a int)"},

	{rule: "drop-index-blocking", sql: "DROP INDEX orders_user_id_idx", fire: true, cat: true},
	{rule: "drop-index-blocking", sql: "DROP INDEX orders_user_id_idx", fire: true},
	{rule: "drop-index-blocking", sql: "DROP INDEX CONCURRENTLY orders_user_id_idx"},

	{rule: "reindex-blocking", sql: "REINDEX INDEX orders_user_id_idx", fire: true, cat: true},
	{rule: "reindex-blocking", sql: "REINDEX TABLE orders", fire: true},
	{rule: "reindex-blocking", sql: "REINDEX INDEX CONCURRENTLY orders_user_id_idx"},

	{rule: "concurrently-in-txn", sql: "BEGIN; CREATE INDEX CONCURRENTLY i ON orders (note); COMMIT", fire: true},
	{rule: "concurrently-in-txn", sql: "CREATE INDEX CONCURRENTLY i ON orders (note)", inTx: true, fire: true},
	{rule: "concurrently-in-txn", sql: "SELECT 1; CREATE INDEX CONCURRENTLY i ON orders (note)", fire: true},
	{rule: "concurrently-in-txn", sql: "DROP INDEX CONCURRENTLY i", inTx: true, fire: true},
	{rule: "concurrently-in-txn", sql: "CREATE INDEX CONCURRENTLY i ON orders (note)"},
	{rule: "concurrently-in-txn", offline: true, sql: "CREATE INDEX CONCURRENTLY a ON orders (note);\nCREATE INDEX CONCURRENTLY b ON orders (total)"},
	{rule: "concurrently-in-txn", sql: "REFRESH MATERIALIZED VIEW CONCURRENTLY user_totals", inTx: true},

	{rule: "detach-partition-blocking", sql: "ALTER TABLE events DETACH PARTITION events_2024", fire: true},
	{rule: "detach-partition-blocking", sql: "ALTER TABLE events DETACH PARTITION events_2024 CONCURRENTLY"},

	{rule: "attach-partition-scan", sql: "ALTER TABLE events ATTACH PARTITION events_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')", fire: true, cat: true},
	{rule: "attach-partition-scan", sql: "CREATE TABLE events_2027 PARTITION OF events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')", fire: true},
	{rule: "attach-partition-scan", sql: "CREATE TABLE e27 (LIKE events); ALTER TABLE events ATTACH PARTITION e27 FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')"},

	{rule: "table-rewrite-maintenance", sql: "VACUUM FULL orders", fire: true},
	{rule: "table-rewrite-maintenance", sql: "CLUSTER orders USING orders_pkey", fire: true},
	{rule: "table-rewrite-maintenance", sql: "ALTER TABLE orders SET TABLESPACE fast", fire: true},
	{rule: "table-rewrite-maintenance", sql: "ALTER TABLE orders SET LOGGED", fire: true},
	{rule: "table-rewrite-maintenance", sql: "ALTER TABLE orders SET ACCESS METHOD heap2", fire: true},
	{rule: "table-rewrite-maintenance", sql: "VACUUM orders"},
	{rule: "table-rewrite-maintenance", sql: "ALTER TABLE orders SET (fillfactor = 70)"},

	{rule: "refresh-matview-blocking", sql: "REFRESH MATERIALIZED VIEW user_totals", fire: true},
	{rule: "refresh-matview-blocking", sql: "REFRESH MATERIALIZED VIEW CONCURRENTLY user_totals"},

	{rule: "truncate", sql: "TRUNCATE orders", fire: true},
	{rule: "truncate", sql: "TRUNCATE orders CASCADE"},
	{rule: "truncate", sql: "CREATE TABLE t (a int); TRUNCATE t"},
	{rule: "truncate", sql: "TRUNCATE schema_migrations"},
	{rule: "truncate", sql: "TRUNCATE schema_migrations, orders", fire: true},

	{rule: "truncate-cascade", sql: "TRUNCATE users CASCADE", fire: true},
	{rule: "truncate-cascade", sql: "TRUNCATE users"},

	{rule: "drop-table", sql: "DROP TABLE orders", fire: true},
	{rule: "drop-table", sql: "CREATE TABLE t (a int); DROP TABLE t"},

	{rule: "drop-column", sql: "ALTER TABLE orders DROP COLUMN note", fire: true},
	{rule: "drop-column", sql: "ALTER TABLE orders ADD COLUMN note2 text"},

	{rule: "rename-column", sql: "ALTER TABLE orders RENAME COLUMN note TO comment", fire: true},
	{rule: "rename-column", sql: "CREATE TABLE t (a int); ALTER TABLE t RENAME COLUMN a TO b"},

	{rule: "rename-table", sql: "ALTER TABLE orders RENAME TO purchases", fire: true},
	{rule: "rename-table", sql: "ALTER TABLE orders SET SCHEMA archive", fire: true},
	{rule: "rename-table", sql: "CREATE TABLE t (a int); ALTER TABLE t RENAME TO t2"},
	{rule: "rename-table", sql: "ALTER INDEX orders_user_id_idx RENAME TO orders_owner_idx"},

	{rule: "rename-schema", sql: "ALTER SCHEMA shop RENAME TO store", fire: true},
	{rule: "rename-schema", sql: "CREATE SCHEMA store"},

	{rule: "trigger-ddl", sql: "CREATE TRIGGER t BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION touch()", fire: true},
	{rule: "trigger-ddl", sql: "DROP TRIGGER t ON orders", fire: true},
	{rule: "trigger-ddl", sql: "ALTER TABLE orders DISABLE TRIGGER t", fire: true},
	{rule: "trigger-ddl", sql: "CREATE TABLE t (a int); CREATE TRIGGER tr BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION touch()"},

	{rule: "domain-constraint", sql: "CREATE DOMAIN posint AS int CHECK (VALUE > 0)", fire: true},
	{rule: "domain-constraint", sql: "ALTER DOMAIN posint ADD CONSTRAINT c CHECK (VALUE < 100)", fire: true},
	{rule: "domain-constraint", sql: "ALTER DOMAIN posint VALIDATE CONSTRAINT c", fire: true},
	{rule: "domain-constraint", sql: "CREATE DOMAIN email AS text"},
	{rule: "domain-constraint", sql: "ALTER DOMAIN posint ADD CONSTRAINT c CHECK (VALUE < 100) NOT VALID"},

	{rule: "missing-lock-timeout", offline: true, sql: "ALTER TABLE orders ADD COLUMN x int", fire: true},
	{rule: "missing-lock-timeout", offline: true, sql: "SET lock_timeout = 0;\nALTER TABLE orders ADD COLUMN x int", fire: true},
	{rule: "missing-lock-timeout", offline: true, sql: "BEGIN;\nSET LOCAL lock_timeout = '1s';\nCOMMIT;\nALTER TABLE orders ADD COLUMN x int", fire: true},
	{rule: "missing-lock-timeout", offline: true, sql: "SET lock_timeout = '2s';\nALTER TABLE orders ADD COLUMN x int"},
	{rule: "missing-lock-timeout", offline: true, sql: "BEGIN;\nSET LOCAL lock_timeout = '1s';\nALTER TABLE orders ADD COLUMN x int;\nCOMMIT;"},
	{rule: "missing-lock-timeout", sql: "ALTER TABLE orders ADD COLUMN x int"},
	{rule: "missing-lock-timeout", offline: true, sql: "SET lock_timeout = '2s';\nBEGIN;\nSET LOCAL lock_timeout = 0;\nALTER TABLE orders ADD COLUMN x int;\nCOMMIT;", fire: true},
	{rule: "missing-lock-timeout", offline: true, sql: "SET lock_timeout = '2s';\nBEGIN;\nSET LOCAL lock_timeout = 0;\nCOMMIT;\nALTER TABLE orders ADD COLUMN x int"},
	{rule: "missing-lock-timeout", offline: true, sql: "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'fk') THEN ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id); END IF; END $$", fire: true},
	{rule: "missing-lock-timeout", offline: true, sql: "DO $$ BEGIN SET LOCAL lock_timeout = '2s'; ALTER TABLE orders ADD COLUMN x int; END $$"},
	{rule: "missing-lock-timeout", offline: true, sql: "DO $$ BEGIN SET LOCAL lock_timeout = 0; ALTER TABLE orders ADD COLUMN x int; END $$", fire: true},
	{rule: "missing-lock-timeout", offline: true, sql: "BEGIN;\nSET LOCAL lock_timeout = 0;\nSET lock_timeout = '2s';\nALTER TABLE orders ADD COLUMN x int;\nCOMMIT;"},
	{rule: "missing-lock-timeout", offline: true, sql: "CREATE INDEX CONCURRENTLY i ON orders (note)"},

	{rule: "missing-statement-timeout", offline: true, sql: "ALTER TABLE orders ADD COLUMN x int", fire: true},
	{rule: "missing-statement-timeout", offline: true, sql: "SET statement_timeout = '5min';\nALTER TABLE orders ADD COLUMN x int"},

	{rule: "work-after-access-exclusive", sql: "BEGIN; ALTER TABLE orders ADD COLUMN x int; UPDATE orders SET x = 1; COMMIT", fire: true},
	{rule: "work-after-access-exclusive", sql: "UPDATE orders SET x = 1", inTx: true, prior: "ALTER TABLE orders ADD COLUMN x int", fire: true},
	{rule: "work-after-access-exclusive", sql: "CREATE INDEX CONCURRENTLY i ON users (x)", inTx: true, prior: "ALTER TABLE orders ADD COLUMN x int", fire: true},
	{rule: "work-after-access-exclusive", sql: "BEGIN; ALTER TABLE orders ADD COLUMN x int; COMMIT; UPDATE orders SET x = 1"},
	{rule: "work-after-access-exclusive", sql: "BEGIN; CREATE TABLE t (a int); INSERT INTO t VALUES (1); COMMIT"},
	// A migration tool's history row and introspection, not work.
	{rule: "work-after-access-exclusive", sql: "BEGIN; ALTER TABLE orders ADD COLUMN x int; INSERT INTO django_migrations (app, name, applied) VALUES ('a', 'b', now()); COMMIT"},
	{rule: "work-after-access-exclusive", sql: "BEGIN; ALTER TABLE orders ADD COLUMN x int; UPDATE alembic_version SET version_num = 'r2'; COMMIT"},
	{rule: "work-after-access-exclusive", sql: "BEGIN; ALTER TABLE orders ADD COLUMN x int; SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace; SELECT column_name FROM information_schema.columns; COMMIT"},
	{rule: "work-after-access-exclusive", sql: "BEGIN; ALTER TABLE orders ADD COLUMN x int; INSERT INTO schema_migrations SELECT id FROM users; COMMIT", fire: true},
	{rule: "work-after-access-exclusive", sql: "BEGIN; ALTER TABLE orders ADD COLUMN x int; SELECT 1; COMMIT", fire: true},
	{rule: "work-after-access-exclusive", sql: "UPDATE orders SET x = 1", inTx: true, prior: "CREATE INDEX CONCURRENTLY i ON orders (note)"},
	// ROLLBACK TO releases the locks taken since the savepoint; RELEASE keeps them.
	{rule: "work-after-access-exclusive", sql: "BEGIN; SAVEPOINT a; ALTER TABLE orders ADD COLUMN x int; ROLLBACK TO a; UPDATE orders SET note = ''; COMMIT"},
	{rule: "work-after-access-exclusive", sql: "BEGIN; SAVEPOINT a; ALTER TABLE orders ADD COLUMN x int; RELEASE a; UPDATE orders SET note = ''; COMMIT", fire: true},
	{rule: "work-after-access-exclusive", sql: "BEGIN; ALTER TABLE orders ADD COLUMN x int; SAVEPOINT a; ROLLBACK TO a; UPDATE orders SET note = ''; COMMIT", fire: true},
	{rule: "multi-lock-txn", sql: "BEGIN; SAVEPOINT a; ALTER TABLE orders ADD COLUMN x int; ROLLBACK TO SAVEPOINT a; ALTER TABLE users ADD COLUMN y int; COMMIT"},

	{rule: "multi-lock-txn", sql: "BEGIN; ALTER TABLE orders ADD COLUMN x int; ALTER TABLE users ADD COLUMN y int; COMMIT", fire: true},
	{rule: "multi-lock-txn", sql: "ALTER TABLE users ADD COLUMN y int", inTx: true, prior: "ALTER TABLE orders ADD COLUMN x int", fire: true},
	{rule: "multi-lock-txn", sql: "BEGIN; ALTER TABLE orders ADD COLUMN x int; ALTER TABLE orders ADD COLUMN y int; COMMIT"},
	// A DO block is one transaction; outside a block it ends with the DO.
	{rule: "multi-lock-txn", offline: true, sql: "DO $$ BEGIN ALTER TABLE orders ADD COLUMN x int; ALTER TABLE users ADD COLUMN y int; END $$", fire: true},
	{rule: "multi-lock-txn", offline: true, sql: "DO $$ BEGIN ALTER TABLE orders ADD COLUMN x int; END $$;\nBEGIN;\nALTER TABLE users ADD COLUMN y int;\nCOMMIT;"},
	{rule: "multi-lock-txn", offline: true, sql: "BEGIN;\nDO $$ BEGIN ALTER TABLE orders ADD COLUMN x int; END $$;\nALTER TABLE users ADD COLUMN y int;\nCOMMIT;", fire: true},
	{rule: "multi-lock-txn", sql: "DO $$ BEGIN ALTER TABLE orders ADD COLUMN x int; END $$; ALTER TABLE users ADD COLUMN y int", fire: true},
	{rule: "multi-lock-txn", offline: true, sql: "ALTER TABLE orders ADD COLUMN x int;\nALTER TABLE users ADD COLUMN y int"},

	{rule: "cic-pg14-corruption", sql: "CREATE INDEX CONCURRENTLY i ON orders (note)", version: 140002, fire: true},
	{rule: "cic-pg14-corruption", sql: "REINDEX INDEX CONCURRENTLY i", version: 140000, fire: true},
	{rule: "cic-pg14-corruption", sql: "CREATE INDEX CONCURRENTLY i ON orders (note)", version: 140005},
	{rule: "cic-pg14-corruption", sql: "CREATE INDEX CONCURRENTLY i ON orders (note)"},

	{rule: "access-exclusive-lock", sql: "ALTER TABLE orders ALTER COLUMN note SET DEFAULT 'x'", fire: true},
	{rule: "access-exclusive-lock", sql: "ALTER TABLE orders ADD COLUMN note2 text", fire: true},
	{rule: "access-exclusive-lock", sql: "ALTER TABLE orders SET (fillfactor = 70)"},
	{rule: "access-exclusive-lock", sql: "DROP TABLE orders"},

	{rule: "ddl-freeze", sql: "ALTER TABLE orders ADD COLUMN x int", policy: &PolicyConfig{Freeze: true}, fire: true},
	{rule: "ddl-freeze", sql: "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", policy: &PolicyConfig{Freeze: true}, fire: true},
	{rule: "ddl-freeze", sql: "CREATE TEMP TABLE t (a int)", policy: &PolicyConfig{Freeze: true}},
	{rule: "ddl-freeze", sql: "ALTER TABLE orders ADD COLUMN x int"},
	{rule: "ddl-freeze", sql: "ALTER TABLE orders ADD COLUMN x int", policy: &PolicyConfig{Freeze: true}, offline: true},
	{rule: "ddl-freeze", sql: "SELECT * FROM orders", policy: &PolicyConfig{Freeze: true}},
	{rule: "ddl-freeze", sql: "ALTER TABLE orders ADD COLUMN x int", policy: &PolicyConfig{Freeze: true, Rules: map[string]RuleConfig{"ddl-freeze": {Users: []string{"!dba"}}}}, user: "dba"},
	{rule: "ddl-freeze", sql: "ALTER TABLE orders ADD COLUMN x int", policy: &PolicyConfig{Freeze: true, Rules: map[string]RuleConfig{"ddl-freeze": {Users: []string{"!dba"}}}}, user: "app", fire: true},

	{rule: "ddl-outside-window", sql: "ALTER TABLE orders ADD COLUMN x int", policy: &PolicyConfig{Windows: []string{"Mon-Fri 02:00-05:00 UTC"}}, now: monday, fire: true},
	{rule: "ddl-outside-window", sql: "ALTER TABLE orders ADD COLUMN x int", policy: &PolicyConfig{Windows: []string{"Mon-Fri 02:00-05:00 UTC"}}, now: monday.Add(-9 * time.Hour)},
	{rule: "ddl-outside-window", sql: "ALTER TABLE orders ADD COLUMN x int", policy: &PolicyConfig{Windows: []string{"Sun 22:00-02:00"}}, now: monday.Add(-11 * time.Hour)},
	{rule: "ddl-outside-window", sql: "ALTER TABLE orders ADD COLUMN x int", policy: &PolicyConfig{Windows: []string{"Sun 22:00-02:00"}}, now: monday.Add(-9 * time.Hour), fire: true},
	{rule: "ddl-outside-window", sql: "ALTER TABLE orders ADD COLUMN x int", policy: &PolicyConfig{Windows: []string{"12:30-13:30 Europe/Berlin"}}, now: monday, fire: false},
	{rule: "ddl-outside-window", sql: "ALTER TABLE orders ADD COLUMN x int", policy: &PolicyConfig{Windows: []string{"12:30-13:30 America/New_York"}}, now: monday, fire: true},

	{rule: "drop-not-null", sql: "ALTER TABLE orders ALTER COLUMN note DROP NOT NULL", fire: true},
	{rule: "drop-not-null", sql: "CREATE TABLE t (a int NOT NULL); ALTER TABLE t ALTER COLUMN a DROP NOT NULL"},

	{rule: "drop-database", sql: "DROP DATABASE shop", fire: true},
	{rule: "drop-database", sql: "CREATE DATABASE shop"},

	{rule: "drop-schema", sql: "DROP SCHEMA old CASCADE", fire: true},
	{rule: "drop-schema", sql: "DROP SCHEMA old"},

	{rule: "rename-enum-value", sql: "ALTER TYPE mood RENAME VALUE 'sad' TO 'unhappy'", fire: true},
	{rule: "rename-enum-value", sql: "ALTER TYPE mood ADD VALUE 'meh'"},

	{rule: "add-column-json", sql: "ALTER TABLE orders ADD COLUMN meta json", fire: true},
	{rule: "add-column-json", sql: "CREATE TABLE t (meta json)", fire: true},
	{rule: "add-column-json", sql: "ALTER TABLE orders ADD COLUMN meta jsonb"},

	{rule: "prefer-bigint", sql: "CREATE TABLE t (id serial PRIMARY KEY)", fire: true},
	{rule: "prefer-bigint", sql: "CREATE TABLE t (id int, PRIMARY KEY (id))", fire: true},
	{rule: "prefer-bigint", sql: "CREATE TABLE t (id bigint PRIMARY KEY, n int)"},

	{rule: "prefer-timestamptz", sql: "CREATE TABLE t (at timestamp)", fire: true},
	{rule: "prefer-timestamptz", sql: "ALTER TABLE orders ADD COLUMN at timestamp(3) without time zone", fire: true},
	{rule: "prefer-timestamptz", sql: "CREATE TABLE t (at timestamptz)"},

	{rule: "prefer-identity", sql: "CREATE TABLE t (id bigserial PRIMARY KEY)", fire: true},
	{rule: "prefer-identity", sql: "CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY)"},

	{rule: "index-too-many-columns", sql: "CREATE INDEX CONCURRENTLY i ON orders (a, b, c, d)", fire: true},
	{rule: "index-too-many-columns", sql: "CREATE INDEX CONCURRENTLY i ON orders (a, b, c)"},

	{rule: "txn-nesting", sql: "BEGIN; BEGIN; COMMIT", fire: true},
	{rule: "txn-nesting", sql: "BEGIN", inTx: true, fire: true},
	{rule: "txn-nesting", sql: "BEGIN; COMMIT; BEGIN; COMMIT"},

	{rule: "uncommitted-txn", offline: true, sql: "BEGIN;\nALTER TABLE orders ADD COLUMN x int;", fire: true},
	{rule: "uncommitted-txn", offline: true, sql: "BEGIN;\nALTER TABLE orders ADD COLUMN x int;\nCOMMIT;"},
	{rule: "uncommitted-txn", sql: "BEGIN; ALTER TABLE orders ADD COLUMN x int"},
}

// run evaluates c and returns the findings.
func (c *ruleCase) run(t testing.TB) []Finding {
	t.Helper()
	p := DefaultPolicy()
	if c.policy != nil {
		var err error
		if p, err = NewPolicy(*c.policy); err != nil {
			t.Fatalf("NewPolicy: %v", err)
		}
	}
	ctx := &Context{Offline: c.offline, InTransaction: c.inTx, ServerVersion: c.version, Now: c.now, RawSQL: c.sql, User: c.user}
	an := NewAnalyzer(nil, 0)
	if c.cat {
		cat := testCatalog()
		ctx.Catalog = cat
		an = NewAnalyzer(cat, 0)
	}
	if c.prior != "" {
		tx := &TxState{}
		pctx := *ctx
		pctx.RawSQL = c.prior
		a := an.Analyze(c.prior)
		if a.Err != nil {
			t.Fatalf("prior %q: %v", c.prior, a.Err)
		}
		p.Evaluate(a, &pctx)
		for i := range a.Statements {
			tx.Record(&a.Statements[i])
		}
		ctx.Tx, ctx.InTransaction = tx, true
	}
	a := an.Analyze(c.sql)
	if a.Err != nil {
		t.Fatalf("%q: %v", c.sql, a.Err)
	}
	return p.Evaluate(a, ctx)
}

func TestRules(t *testing.T) {
	for _, c := range ruleCases {
		name := c.rule + "/" + c.sql
		if len(name) > 90 {
			name = name[:90]
		}
		t.Run(name, func(t *testing.T) {
			if _, ok := LookupRule(c.rule); !ok {
				t.Fatalf("no rule %q", c.rule)
			}
			fs := c.run(t)
			got := false
			for _, f := range fs {
				if f.Rule == c.rule {
					got = true
					checkFinding(t, f)
				}
			}
			if got != c.fire {
				t.Errorf("%s fired = %v, want %v; findings:\n%s", c.rule, got, c.fire, dumpFindings(fs))
			}
		})
	}
}

// checkFinding checks what every finding must carry.
func checkFinding(t *testing.T, f Finding) {
	t.Helper()
	if !strings.HasPrefix(f.Message, f.Rule+": ") {
		t.Errorf("message %q does not start with the rule id", f.Message)
	}
	if strings.HasPrefix(f.Message, "lockguard") {
		t.Errorf("message %q starts with lockguard (the runtime adds it)", f.Message)
	}
	if f.Detail == "" || f.Hint == "" {
		t.Errorf("finding %s has no detail or hint: %+v", f.Rule, f)
	}
	if strings.Contains(f.Message+f.Detail+f.Hint, "%!") {
		t.Errorf("formatting error in %+v", f)
	}
}

func dumpFindings(fs []Finding) string {
	var sb strings.Builder
	for _, f := range fs {
		sb.WriteString("  [" + f.Action.String() + "] " + f.Message + "\n")
	}
	return sb.String()
}

// TestRuleCases checks that every rule has a case where it fires and one
// where it (or its safe alternative) does not.
func TestRuleCases(t *testing.T) {
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, c := range ruleCases {
		if c.fire {
			fires[c.rule] = true
		} else {
			quiet[c.rule] = true
		}
	}
	for _, r := range Rules() {
		if !fires[r.ID] {
			t.Errorf("rule %s has no case where it fires", r.ID)
		}
		if !quiet[r.ID] {
			t.Errorf("rule %s has no case where it does not fire", r.ID)
		}
	}
}

var kebab = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)

func TestRuleCatalog(t *testing.T) {
	rules := Rules()
	if len(rules) < 36 {
		t.Fatalf("%d rules, want at least 36", len(rules))
	}
	seen := map[string]bool{}
	for _, r := range rules {
		if !kebab.MatchString(r.ID) {
			t.Errorf("rule id %q is not kebab-case", r.ID)
		}
		if seen[r.ID] {
			t.Errorf("rule id %q twice", r.ID)
		}
		seen[r.ID] = true
		if r.Summary == "" || r.Detects == "" || r.Lock == "" || r.Alternative == "" {
			t.Errorf("rule %s lacks text: %+v", r.ID, r)
		}
		switch r.Category {
		case "lock", "compat", "hygiene", "transaction", "operations":
		default:
			t.Errorf("rule %s: category %q", r.ID, r.Category)
		}
		if r.NeedsCatalog != (r.Catalog != "") {
			t.Errorf("rule %s: NeedsCatalog %v but Catalog %q", r.ID, r.NeedsCatalog, r.Catalog)
		}
		if r.Default == ActionBlock && r.Category != "operations" {
			t.Errorf("rule %s blocks by default: the default policy must not break migrations", r.ID)
		}
		if r.Category == "hygiene" && r.Default != ActionAllow {
			t.Errorf("hygiene rule %s should only record by default", r.ID)
		}
		if r.Category == "lock" && r.Strict == ActionAllow && r.ID != "access-exclusive-lock" {
			t.Errorf("lock rule %s allows under strict", r.ID)
		}
		if got, ok := LookupRule(r.ID); !ok || got.ID != r.ID {
			t.Errorf("LookupRule(%q) = %v, %v", r.ID, got.ID, ok)
		}
	}
	// Rules returns a copy.
	rules[0].ID = "changed"
	if Rules()[0].ID == "changed" {
		t.Error("Rules returned the catalog itself")
	}
}

// TestPresets runs every case under the default and the strict preset: the
// default never blocks (freeze and windows are opt-in switches), strict
// blocks the lock hazards.
func TestPresets(t *testing.T) {
	strict := mustPolicy(PolicyConfig{Preset: "strict"})
	for _, c := range ruleCases {
		if c.policy != nil {
			continue
		}
		for _, f := range c.run(t) {
			if f.Action == ActionBlock {
				t.Errorf("default policy blocks %q: %s", c.sql, f.Message)
			}
			info, _ := LookupRule(f.Rule)
			if f.Action != info.Default {
				t.Errorf("%s: action %v, want the default %v", f.Rule, f.Action, info.Default)
			}
		}
		cc := c
		cc.policy = &PolicyConfig{Preset: "strict"}
		for _, f := range cc.run(t) {
			info, _ := LookupRule(f.Rule)
			if f.Action != info.Strict {
				t.Errorf("strict %s: action %v, want %v", f.Rule, f.Action, info.Strict)
			}
		}
	}
	if a, _ := strict.Action("add-fk-validated"); a != ActionBlock {
		t.Errorf("strict add-fk-validated = %v", a)
	}
	off := mustPolicy(PolicyConfig{Preset: "off", Rules: map[string]RuleConfig{"drop-table": {Action: "block"}}})
	fs := off.Evaluate(Analyze("DROP TABLE orders; CREATE INDEX i ON orders (a)"), nil)
	if len(fs) != 1 || fs[0].Rule != "drop-table" || fs[0].Action != ActionBlock {
		t.Errorf("preset off with drop-table: block: %s", dumpFindings(fs))
	}
}

// TestFindingText pins the wording of the founding incident's finding.
func TestFindingText(t *testing.T) {
	c := ruleCase{sql: "ALTER TABLE orders DROP CONSTRAINT orders_user_fk", cat: true}
	fs := c.run(t)
	var f *Finding
	for i := range fs {
		if fs[i].Rule == "drop-foreign-key" {
			f = &fs[i]
		}
	}
	if f == nil {
		t.Fatalf("no drop-foreign-key: %s", dumpFindings(fs))
	}
	if f.Relation != (RelName{"public", "orders"}) || f.Lock != AccessExclusive || f.Action != ActionWarn {
		t.Errorf("finding = %+v", f)
	}
	wantDetail := "ACCESS EXCLUSIVE on public.orders and public.users: blocks every read and write of both until the transaction ends"
	if !strings.HasPrefix(f.Detail, wantDetail) {
		t.Errorf("detail = %q, want prefix %q", f.Detail, wantDetail)
	}
	if !strings.Contains(f.Hint, "SET lock_timeout") || f.Note != "" {
		t.Errorf("hint %q note %q", f.Hint, f.Note)
	}

	c = ruleCase{sql: "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id)"}
	fs = c.run(t)
	if len(fs) != 1 {
		t.Fatalf("findings: %s", dumpFindings(fs))
	}
	wantHint := "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;"
	if !strings.Contains(fs[0].Hint, wantHint) || !strings.Contains(fs[0].Hint, "ALTER TABLE orders VALIDATE CONSTRAINT orders_user_fk;") {
		t.Errorf("hint = %q", fs[0].Hint)
	}
	if fs[0].Lock != ShareRowExclusive || !strings.Contains(fs[0].Detail, "SHARE ROW EXCLUSIVE on orders and users") {
		t.Errorf("finding = %+v", fs[0])
	}
}

var updateDocs = flag.Bool("update-docs", false, "rewrite docs/rules.md from the rule catalog")

// TestRulesDoc keeps docs/rules.md in step with the catalog: go test
// ./guard -run TestRulesDoc -update-docs rewrites it.
func TestRulesDoc(t *testing.T) {
	const path = "../docs/rules.md"
	want := rulesMarkdown()
	if *updateDocs {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s is out of date: go test ./guard -run TestRulesDoc -update-docs", path)
	}
	// The documented example config is valid.
	_, rest, _ := strings.Cut(want, "```yaml\n")
	example, _, _ := strings.Cut(rest, "```")
	var doc struct {
		Policy PolicyConfig `yaml:"policy"`
	}
	dec := yaml.NewDecoder(strings.NewReader(example))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("example config: %v", err)
	}
	if _, err := NewPolicy(doc.Policy); err != nil || len(doc.Policy.Rules) != 3 {
		t.Errorf("example config: %v (%d rules)", err, len(doc.Policy.Rules))
	}
}

func rulesMarkdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	b.WriteString(docIntro)
	w("\n## The rules at a glance\n\n")
	w("| Rule | Category | Default | Strict | Catalog | Where |\n|---|---|---|---|---|---|\n")
	for _, r := range Rules() {
		where := "proxy + check"
		switch {
		case r.OfflineOnly:
			where = "check only"
		case r.RuntimeOnly:
			where = "proxy only"
		}
		cat := ""
		if r.NeedsCatalog {
			cat = "uses"
		}
		w("| [`%s`](#%s) | %s | %s | %s | %s | %s |\n", r.ID, r.ID, r.Category, r.Default, r.Strict, cat, where)
	}
	w("\n%d rules.\n\n## Rules\n", len(Rules()))
	for _, r := range Rules() {
		w("\n### %s\n\n%s.\n\n", r.ID, upperFirst(r.Summary))
		w("- **Detects:** %s\n", r.Detects)
		w("- **Lock and what it blocks:** %s\n", r.Lock)
		w("- **Safe alternative:** %s\n", r.Alternative)
		w("- **Action:** %s by default, %s under strict.", r.Default, r.Strict)
		if !r.Overridable {
			w(" Not overridable inline unless its config says `overridable: true`.")
		}
		w("\n")
		if r.NeedsCatalog {
			w("- **Catalog:** %s\n", r.Catalog)
		}
		if r.OfflineOnly {
			w("- **Runs in:** `lockguard check` only.\n")
		}
		if r.RuntimeOnly {
			w("- **Runs in:** the proxy only.\n")
		}
		if r.Anchors != "" {
			w("- **Same as:** %s\n", r.Anchors)
		}
	}
	return b.String()
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

const docIntro = `# lockguard's DDL policy and rules

<!-- Generated from guard/rules.go by: go test ./guard -run TestRulesDoc -update-docs. Edit there. -->

lockguard judges every DDL and maintenance statement it sees — in the proxy,
from every client, and offline in ` + "`lockguard check`" + ` over migration files — against
a catalog of rules; the statements a PL/pgSQL ` + "`DO`" + ` block (or a PL/pgSQL procedure
that ` + "`CALL`" + ` runs) runs are judged as if sent in one transaction, and their findings
are the block's. Each rule that fires
produces a finding with one of three actions:

- **allow** — the statement runs; the finding is only recorded (logged at debug
  level by the proxy, printed by ` + "`lockguard check --all`" + `).
- **warn** — the statement runs; the client gets a NoticeResponse (WARNING,
  SQLSTATE 01000) that psql prints and drivers pass to their notice handlers.
- **block** — the statement is refused with an ErrorResponse, SQLSTATE
  **LG001**, a DETAIL naming the rule and the lock, and a HINT with the safe
  alternative. ` + "`lockguard check`" + ` exits 1.

Every finding has a message (` + "`rule-id: what was detected`" + `), a detail (the lock
taken and what it blocks), a hint (the safe alternative, as SQL where there is
one) and, when lockguard could not know something, a note saying what.

## Presets

| Preset | What it does |
|---|---|
| ` + "`default`" + ` | Protects without breaking any migration: **nothing blocks**. Lock and availability hazards and changes that break running clients **warn**; pure hygiene rules (and brief ACCESS EXCLUSIVE DDL) **allow** — recorded only. At runtime lockguard also injects a lock_timeout and retries lock-taking DDL, which is why a brief lock is fine. |
| ` + "`strict`" + ` | **Blocks** the lock and availability hazards and client-breaking changes; hygiene rules warn. Anything it blocks can still run with an inline override (below) unless the rule's config says ` + "`overridable: false`" + `. |
| ` + "`off`" + ` | Evaluates only the rules the config gives an ` + "`action`" + `; ` + "`freeze`" + ` and ` + "`windows`" + ` still apply when set. |

The two operations rules, ` + "`ddl-freeze`" + ` and ` + "`ddl-outside-window`" + `, block under every
preset — but only when ` + "`freeze`" + ` or ` + "`windows`" + ` is set, which is off by default.

## Configuration

The policy is the ` + "`policy:`" + ` section of lockguard's YAML config (reloaded on SIGHUP);
` + "`lockguard check --policy FILE`" + ` reads the same section. Unknown keys are errors.

` + "```yaml" + `
policy:
  preset: default              # default | strict | off
  freeze: false                # true: block all DDL (rule ddl-freeze)
  windows:                     # when set, DDL only inside these (rule ddl-outside-window)
    - "Mon-Fri 02:00-05:00 UTC"
    - "Sat,Sun 22:00-06:00 Europe/Berlin"
  overrides: true              # honour inline lockguard:allow comments
  require-reason: false        # ...only those that give reason="…"
  rules:
    add-fk-validated:
      action: block            # allow | warn | block | off
      tables: ["public.*", "!public.tmp_*"]
      min-rows: 1M             # only tables with at least 1M rows (or min-bytes)
      otherwise: warn          # action outside the scope; empty = rule not applied there
      overridable: false       # inline comments may not lower this block
    drop-table:
      users: ["!dba"]          # everyone but dba
      databases: ["prod*"]
      applications: ["rails*"]
      min-bytes: 10GB
      versions: ">= 12, < 18"
    prefer-bigint:
      action: "off"
` + "```" + `

Per rule (every key optional):

| Key | Meaning |
|---|---|
| ` + "`action`" + ` | ` + "`allow`, `warn`, `block`" + ` or ` + "`off`" + ` (not evaluated). Empty keeps the preset's. |
| ` + "`databases`, `users`, `applications`" + ` | Glob patterns (` + "`*`, `?`, `[a-z]`" + `) for the session's database, user and application_name (the application_name in force: one the client SETs after connecting, as pgjdbc does, counts from its next statement on). A pattern starting with ` + "`!`" + ` excludes. A value matches when it matches a positive pattern (or there is none) and no negative one. |
| ` + "`tables`" + ` | Patterns for the relation a finding names, as ` + "`schema.name`" + `; a pattern without a dot matches the name in any schema; an unqualified name the catalog could not resolve counts as ` + "`public.name`" + `. A finding that names no relation does not match a tables scope. |
| ` + "`min-rows`, `min-bytes`" + ` | Apply the rule only to tables with at least this many rows (estimate, pg_class.reltuples) **or** bytes (pg_total_relation_size). Rows take k/M/G suffixes (×1000); bytes take kB/MB/GB/TB (×1024). A table of unknown size counts as large enough; a table created in the same transaction as empty. |
| ` + "`versions`" + ` | Server versions the rule applies to: comma-separated comparisons such as ` + "`>= 12, < 18`" + `, ` + "`= 14`" + ` (any 14.x), ` + "`< 14.4`" + `. An unknown server version matches. The version is ` + "`server_version_num`" + ` as read on ` + "`monitor-dsn`" + ` when that connection opens and whenever it is reopened (after a restart or an upgrade of PostgreSQL); ` + "`--pg-version`" + ` for ` + "`lockguard check`" + `. |
| ` + "`otherwise`" + ` | The action where the scope does not match (needs a scope). Empty: the rule does not apply there. |
| ` + "`overridable`" + ` | Whether an inline override may lower a **block** (a warning can always be lowered). Default true, except ddl-freeze and ddl-outside-window. |

All scope keys given must match for the rule's action to apply.

## Inline overrides

A comment in the statement lowers the named rules' findings to allow:

` + "```sql" + `
/* lockguard:allow add-fk-validated reason="orders is empty until launch" */
ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);

-- lockguard:allow drop-foreign-key,multi-lock-txn reason='one-off cleanup'
ALTER TABLE orders DROP CONSTRAINT orders_legacy_fk;
` + "```" + `

The finding is kept, marked overridden with its reason, and logged by the
proxy. Only comments count (not string literals). A block is lowered only when
the rule is overridable; with ` + "`require-reason: true`" + ` an override without
` + "`reason=`" + ` is ignored; with ` + "`overrides: false`" + ` all are. An override that did not
take says why in the finding's note. In the proxy an override anywhere in a
query string covers all its statements; in a migration file it covers the
statement it is written in, the statement that starts below it, or the one that
ends on its line.

## Freeze and windows

` + "`freeze: true`" + ` blocks every DDL statement (rule ddl-freeze) until it is set back
and the config reloaded. ` + "`windows`" + ` lists when DDL may run — ` + "`[DAYS] HH:MM-HH:MM [ZONE]`" + `,
DAYS a comma list of days or ranges (` + "`Mon-Fri`, `Sat,Sun`, `weekdays`, `weekends`, `daily`" + `;
default every day), ZONE an IANA time zone (default UTC); an end before the start
runs past midnight (the days name the start day). Outside every window DDL is
blocked (rule ddl-outside-window). Both exempt temporary tables, apply in the
proxy only, and are scoped like any rule — e.g. ` + "`ddl-freeze: {users: [\"!dba\"]}`" + `
lets the DBA through.

## What counts as a new table

A table created earlier in the same transaction (in ` + "`lockguard check`" + `: earlier in
the same file) is empty and unused, so the rules that are about scanning,
rewriting or blocking a live table do not fire on it: indexes, constraints,
defaults, NOT NULL, renames and drops on it are fine. At runtime the proxy learns
this from ` + "`TxState.Record`" + `, after each statement of a transaction block.

Savepoints count as PostgreSQL counts them: ` + "`ROLLBACK TO SAVEPOINT`" + ` releases the
locks taken since the savepoint and undoes the tables created since, so the
transaction rules (` + "`work-after-access-exclusive`" + `, ` + "`multi-lock-txn`" + `,
` + "`validate-same-txn`" + `) and the new-table exemption see the transaction as it was
at the savepoint; ` + "`RELEASE SAVEPOINT`" + ` keeps everything.

## Without a catalog: lockguard check

` + "`lockguard check [--format text|json|github] [--pg-version N] [--policy FILE] [--preset P] [--large-table T]… [--all] [--list-rules] FILE…|DIR|-`" + `
runs the same engine over migration files. Each file is one migration whose
statements run in autocommit mode unless the file says BEGIN … COMMIT. Files of
one run (a directory: every *.sql in path order) are one history: column types,
constraints and indexes defined by earlier files inform later ones.
There is no live catalog, so the rules marked "uses" above fall back to what the
files define and say so in a note (for example, whether a dropped constraint is
a foreign key is guessed from its name when no earlier file defined it).
` + "`--pg-version`" + ` sets the server version; ` + "`--large-table schema.table`" + ` marks tables
as large for min-rows/min-bytes scopes (the others then count as small). The
check-only rules (missing-lock-timeout, missing-statement-timeout,
uncommitted-txn) run there; the proxy-only ones (ddl-freeze,
ddl-outside-window) do not. Exit status: 1 when a finding blocks or a statement
does not parse, 2 on usage or I/O errors, 0 otherwise.
`
