package guard

import (
	"strings"
	"testing"
)

// fixture mirrors the schema of the ground-truth test (test/testdata/
// groundtruth_schema.sql) in schema public, so that these unit tests pin the
// mapping that pg_locks confirmed.
func fixture() *StaticCatalog {
	t := func(name string) RelInfo { return RelInfo{Name: RelName{"public", name}, Kind: KindTable, Bytes: -1} }
	part := func(name, parent string, def bool) RelInfo {
		r := t(name)
		r.Parent = RelName{"public", parent}
		r.IsDefault = def
		return r
	}
	idx := func(name, table string) RelInfo {
		return RelInfo{Name: RelName{"public", name}, Kind: KindIndex, Table: RelName{"public", table}}
	}
	p := func(name string) RelName { return RelName{"public", name} }
	events, metrics := t("events"), t("metrics")
	events.Kind, metrics.Kind = KindPartitionedTable, KindPartitionedTable
	return &StaticCatalog{
		Relations: []RelInfo{
			t("users"), t("orders"), t("items"), t("payments"), t("ledger"), t("audit"), t("tags"), t("scratch"),
			events, part("events_2024", "events", false), part("events_2025", "events", false), part("events_default", "events", true),
			t("events_2026"),
			metrics, part("metrics_1", "metrics", false), part("metrics_2", "metrics", false), t("metrics_3"),
			t("animals"), part("dogs", "animals", false),
			{Name: p("user_totals"), Kind: KindMatView, Reads: []RelName{p("users"), p("orders")}},
			{Name: p("big_orders"), Kind: KindView, Reads: []RelName{p("orders")}},
			idx("orders_user_id_idx", "orders"), idx("users_pkey", "users"), idx("orders_pkey", "orders"),
			idx("user_totals_id", "user_totals"),
		},
		Cons: []Constraint{
			{Name: "orders_user_fk", Table: p("orders"), Type: ConstraintForeignKey, Columns: []string{"user_id"}, RefTable: p("users"), RefColumns: []string{"id"}, OnDelete: FKNoAction, OnUpdate: FKNoAction, Validated: true},
			{Name: "items_order_fk", Table: p("items"), Type: ConstraintForeignKey, Columns: []string{"order_id"}, RefTable: p("orders"), RefColumns: []string{"id"}, OnDelete: FKCascade, OnUpdate: FKNoAction, Validated: true},
			{Name: "payments_order_fk", Table: p("payments"), Type: ConstraintForeignKey, Columns: []string{"order_id"}, RefTable: p("orders"), RefColumns: []string{"id"}, OnDelete: FKNoAction, OnUpdate: FKNoAction},
			{Name: "payments_amount_check", Table: p("payments"), Type: ConstraintCheck, Columns: []string{"amount"}},
			{Name: "ledger_user_id_fkey", Table: p("ledger"), Type: ConstraintForeignKey, Columns: []string{"user_id"}, RefTable: p("users"), RefColumns: []string{"id"}, OnDelete: FKCascade, OnUpdate: FKNoAction, Validated: true},
			{Name: "audit_user_id_fkey", Table: p("audit"), Type: ConstraintForeignKey, Columns: []string{"user_id"}, RefTable: p("users"), RefColumns: []string{"id"}, OnDelete: FKSetNull, OnUpdate: FKNoAction, Validated: true},
			{Name: "orders_pkey", Table: p("orders"), Type: ConstraintPrimaryKey, Columns: []string{"id"}, Validated: true},
			{Name: "users_pkey", Table: p("users"), Type: ConstraintPrimaryKey, Columns: []string{"id"}, Validated: true},
			{Name: "tags_pkey", Table: p("tags"), Type: ConstraintPrimaryKey, Columns: []string{"id"}, Validated: true},
		},
		Functions:  map[string]Volatility{"random": Volatile, "now": Stable, "my_stable": Stable},
		Statistics: map[RelName]RelName{p("users_stats"): p("users")},
		VersionNum: 150004,
	}
}

var modeAbbr = map[LockMode]string{
	AccessShare: "AS", RowShare: "RS", RowExclusive: "RE", ShareUpdateExclusive: "SUE",
	Share: "S", ShareRowExclusive: "SRE", Exclusive: "E", AccessExclusive: "AEL",
}

// lockSpec renders locks compactly: "orders:AEL users:AEL/ref items:RE?"
// (the role after a slash unless target or read, ? when conditional).
func lockSpec(locks []RelationLock) string {
	var parts []string
	for _, l := range locks {
		s := l.Rel.Name + ":" + modeAbbr[l.Mode]
		switch l.Role {
		case RoleReferenced:
			s += "/ref"
		case RolePartitionParent:
			s += "/parent"
		case RolePartition:
			s += "/part"
		case RoleIndexTable:
			s += "/idxtable"
		case RoleCascaded:
			s += "/cascade"
		case RoleIndex:
			s += "/index"
		}
		if l.Conditional {
			s += "?"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func TestAnalyzeMapping(t *testing.T) {
	tests := []struct {
		sql  string
		want string
	}{
		// Reads.
		{"SELECT * FROM users", "users:AS"},
		{"SELECT * FROM users u JOIN orders o ON o.user_id = u.id", "users:AS orders:AS"},
		{"SELECT * FROM users WHERE id IN (SELECT user_id FROM orders)", "users:AS orders:AS"},
		{"WITH users AS (SELECT 1 AS id) SELECT * FROM users", ""},
		{"WITH r AS (SELECT * FROM orders) SELECT * FROM r JOIN users u ON u.id = r.user_id", "orders:AS users:AS"},
		{"SELECT * FROM events", "events:AS events_2024:AS/part? events_2025:AS/part? events_default:AS/part?"},
		{"SELECT * FROM ONLY events", "events:AS"},
		{"SELECT * FROM animals", "animals:AS dogs:AS/part?"},
		{"SELECT * FROM big_orders", "big_orders:AS orders:AS"},
		{"SELECT * FROM user_totals", "user_totals:AS"},
		{"SELECT * FROM users FOR UPDATE", "users:RS"},
		{"SELECT * FROM users FOR KEY SHARE", "users:RS"},
		{"SELECT * FROM users u JOIN orders o ON o.user_id = u.id FOR UPDATE OF u", "users:RS orders:AS"},
		{"SELECT * FROM users u JOIN orders o ON o.user_id = u.id FOR SHARE", "users:RS orders:RS"},
		{"SELECT * FROM (SELECT * FROM orders) s FOR UPDATE", "orders:RS"},
		{"SELECT * FROM big_orders FOR UPDATE", "big_orders:RS orders:RS"},
		{"SELECT 1", ""},
		{"SELECT * FROM public.users", "users:AS"},
		{"EXPLAIN UPDATE orders SET user_id = 3", "orders:RE"},
		{"EXPLAIN SELECT * FROM events", "events:AS events_2024:AS/part? events_2025:AS/part? events_default:AS/part?"},
		{"PREPARE p AS INSERT INTO orders (id, user_id) VALUES ($1, $2)", "orders:RE"},
		{"PREPARE p AS SELECT * FROM events", "events:AS"},
		{"COPY users TO STDOUT", "users:AS"},

		// Writes: foreign-key checks and actions are conditional.
		{"INSERT INTO users (id) VALUES (1)", "users:RE"},
		{"INSERT INTO orders (id, user_id) VALUES (1, 2)", "orders:RE users:RS/ref?"},
		{"INSERT INTO events VALUES (1, '2024-02-02', 'x')", "events:RE events_2024:RE/part? events_2025:RE/part? events_default:RE/part?"},
		{"UPDATE users SET name = 'x'", "users:RE"},
		{"UPDATE users SET id = 5000 WHERE id = 99", "users:RE orders:RS/ref? ledger:RS/ref? audit:RS/ref?"},
		{"UPDATE orders SET user_id = 2", "orders:RE users:RS/ref?"},
		{"UPDATE big_orders SET user_id = 4", "big_orders:RE orders:RE users:RS/ref?"},
		{"DELETE FROM users WHERE id = 95", "users:RE orders:RS/ref? ledger:RE/cascade? audit:RE/cascade?"},
		{"DELETE FROM orders WHERE id = 7", "orders:RE items:RE/cascade? payments:RS/ref?"},
		{"DELETE FROM animals", "animals:RE dogs:RE/part?"},
		{"MERGE INTO orders o USING users u ON o.id = u.id WHEN MATCHED THEN UPDATE SET note = u.name", "orders:RE users:AS"},
		{"COPY orders (id, user_id) FROM STDIN", "orders:RE users:RS/ref?"},
		{"WITH d AS (DELETE FROM items WHERE id = 2 RETURNING *) SELECT count(*) FROM d", "items:RE"},

		// LOCK.
		{"LOCK TABLE users", "users:AEL"},
		{"LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE", "users:SRE"},
		{"LOCK TABLE events IN SHARE MODE", "events:S events_2024:S/part events_2025:S/part events_default:S/part"},
		{"LOCK TABLE ONLY events IN SHARE MODE", "events:S"},
		{"LOCK TABLE big_orders IN SHARE MODE", "big_orders:S orders:S"},

		// ALTER TABLE.
		{"ALTER TABLE orders DROP CONSTRAINT orders_user_fk", "orders:AEL users:AEL/ref"},
		{"ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id)", "orders:SRE users:SRE/ref"},
		{"ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID", "orders:SRE users:SRE/ref"},
		{"ALTER TABLE payments VALIDATE CONSTRAINT payments_order_fk", "payments:SUE orders:RS/ref"},
		{"ALTER TABLE orders VALIDATE CONSTRAINT orders_user_fk", "orders:SUE"},
		{"ALTER TABLE orders DROP CONSTRAINT orders_pkey CASCADE", "orders:AEL items:AEL/cascade payments:AEL/cascade"},
		{"ALTER TABLE items DROP COLUMN order_id", "items:AEL orders:AEL/ref"},
		{"ALTER TABLE orders DROP COLUMN id CASCADE", "orders:AEL items:AEL/cascade payments:AEL/cascade"},
		{"ALTER TABLE items ALTER COLUMN order_id TYPE int", "items:AEL orders:AEL/ref"},
		{"ALTER TABLE orders ADD COLUMN ref_user bigint REFERENCES users (id)", "orders:AEL users:SRE/ref"},
		{"ALTER TABLE users ALTER COLUMN score SET STATISTICS 500", "users:SUE"},
		{"ALTER TABLE users SET (fillfactor = 70)", "users:SUE"},
		{"ALTER TABLE users SET (fillfactor = 70, user_catalog_table = false)", "users:AEL"},
		{"ALTER TABLE orders SET (fillfactor = 60), ALTER COLUMN note SET STATISTICS 10", "orders:SUE"},
		{"ALTER TABLE tags ENABLE TRIGGER ALL", "tags:SRE"},
		{"ALTER TABLE users CLUSTER ON users_pkey", "users:SUE"},
		{"ALTER TABLE events ADD COLUMN extra int", "events:AEL events_2024:AEL/part events_2025:AEL/part events_default:AEL/part"},
		{"ALTER TABLE events ENABLE TRIGGER ALL", "events:SRE"},
		{"ALTER TABLE events OWNER TO postgres", "events:AEL"},
		{"ALTER TABLE ONLY animals ALTER COLUMN name SET DEFAULT 'x'", "animals:AEL"},
		{"ALTER TABLE events ATTACH PARTITION events_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')", "events:SUE events_2026:AEL/part events_default:AEL/part"},
		{"ALTER TABLE events DETACH PARTITION events_2025", "events:AEL events_2025:AEL/part events_default:AEL/part"},
		{"ALTER TABLE metrics DETACH PARTITION metrics_2 CONCURRENTLY", "metrics:SUE metrics_2:AEL/part"},
		{"ALTER TABLE dogs NO INHERIT animals", "dogs:AEL animals:AS/parent"},
		{"ALTER TABLE scratch INHERIT animals", "scratch:AEL animals:SUE/parent"},
		{"ALTER TABLE users RENAME TO people", "users:AEL"},
		{"ALTER TABLE animals RENAME COLUMN name TO title", "animals:AEL dogs:AEL/part"},
		{"ALTER INDEX orders_user_id_idx RENAME TO x", "orders_user_id_idx:SUE/index"},
		{"ALTER INDEX orders_user_id_idx SET TABLESPACE pg_default", "orders_user_id_idx:AEL/index"},

		// CREATE, DROP, TRUNCATE.
		{"CREATE TABLE t (id int REFERENCES users (id))", "users:SRE/ref"},
		{"CREATE TABLE e PARTITION OF events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')", "events:AEL/parent events_default:AEL/part"},
		{"CREATE TABLE m PARTITION OF metrics FOR VALUES IN (4)", "metrics:AEL/parent"},
		{"CREATE TABLE c (x int) INHERITS (animals)", "animals:SUE/parent"},
		{"CREATE TABLE l (LIKE users)", "users:AS"},
		{"CREATE OR REPLACE VIEW big_orders AS SELECT user_id FROM orders", "big_orders:AEL orders:AS"},
		{"DROP TABLE items", "items:AEL orders:AEL/ref"},
		{"DROP TABLE ledger, audit", "ledger:AEL audit:AEL users:AEL/ref"},
		{"DROP TABLE events", "events:AEL events_2024:AEL/part events_2025:AEL/part events_default:AEL/part"},
		{"DROP INDEX orders_user_id_idx", "orders_user_id_idx:AEL/index orders:AEL/idxtable"},
		{"DROP INDEX CONCURRENTLY orders_user_id_idx", "orders_user_id_idx:SUE/index orders:SUE/idxtable"},
		{"DROP TRIGGER t ON tags", "tags:AEL"},
		{"DROP STATISTICS users_stats", "users:SUE"},
		{"TRUNCATE users CASCADE", "users:AEL orders:AEL/cascade ledger:AEL/cascade audit:AEL/cascade items:AEL/cascade payments:AEL/cascade"},
		{"TRUNCATE events", "events:AEL events_2024:AEL/part events_2025:AEL/part events_default:AEL/part"},
		{"TRUNCATE ONLY animals", "animals:AEL"},

		// Indexes, maintenance, the rest.
		{"CREATE INDEX ON orders (note)", "orders:S"},
		{"CREATE INDEX CONCURRENTLY ON orders (note)", "orders:SUE"},
		{"CREATE INDEX ON events (id)", "events:S events_2024:S/part events_2025:S/part events_default:S/part"},
		{"CREATE INDEX ON ONLY events (id)", "events:S"},
		{"REINDEX INDEX orders_user_id_idx", "orders_user_id_idx:AEL/index orders:S/idxtable"},
		{"REINDEX INDEX CONCURRENTLY orders_user_id_idx", "orders_user_id_idx:SUE/index orders:SUE/idxtable"},
		{"REINDEX TABLE orders", "orders:S"},
		{"CLUSTER users USING users_pkey", "users:AEL"},
		{"VACUUM users", "users:SUE"},
		{"VACUUM FULL users", "users:AEL"},
		{"ANALYZE events", "events:SUE events_2024:SUE/part events_2025:SUE/part events_default:SUE/part"},
		{"REFRESH MATERIALIZED VIEW user_totals", "user_totals:AEL users:AS orders:AS"},
		{"REFRESH MATERIALIZED VIEW CONCURRENTLY user_totals", "user_totals:E users:AS orders:AS"},
		{"CREATE TRIGGER t BEFORE UPDATE ON events FOR EACH ROW EXECUTE FUNCTION f()", "events:SRE events_2024:SRE/part events_2025:SRE/part events_default:SRE/part"},
		{"CREATE RULE r AS ON UPDATE TO scratch DO INSTEAD NOTHING", "scratch:AEL"},
		{"CREATE POLICY p ON orders USING (EXISTS (SELECT 1 FROM users u WHERE u.id = user_id))", "orders:AEL users:AS"},
		{"COMMENT ON TABLE users IS 'x'", "users:SUE"},
		{"COMMENT ON CONSTRAINT orders_user_fk ON orders IS 'x'", "orders:AS"},
		{"COMMENT ON INDEX orders_user_id_idx IS 'x'", "orders_user_id_idx:SUE/index"},
		{"CREATE STATISTICS s ON id, name FROM tags", "tags:SUE"},
		{"GRANT SELECT ON users TO PUBLIC", ""},
		{"BEGIN", ""},
		{"SET lock_timeout = '1s'", ""},
	}
	a := NewAnalyzer(fixture(), 0)
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			an := a.Analyze(tt.sql)
			if an.Err != nil {
				t.Fatalf("Analyze: %v", an.Err)
			}
			if len(an.Statements) != 1 {
				t.Fatalf("got %d statements, want 1", len(an.Statements))
			}
			if got := lockSpec(an.Statements[0].Locks); got != tt.want {
				t.Errorf("locks\n got  %s\n want %s", got, tt.want)
			}
			if u := an.Statements[0].Unknown; len(u) > 0 && !strings.Contains(tt.sql, "no_such") {
				t.Logf("unknown: %q", u)
			}
		})
	}
}

func TestAnalyzeStatementFacts(t *testing.T) {
	a := NewAnalyzer(fixture(), 0)
	type facts struct {
		tag                                    string
		class                                  Class
		rewrite, scan, concurrently, noTxBlock bool
		copyIn                                 bool
	}
	tests := []struct {
		sql  string
		want facts
	}{
		{"SELECT 1", facts{tag: "SELECT", class: ClassRead}},
		{"WITH d AS (DELETE FROM items RETURNING *) SELECT * FROM d", facts{tag: "SELECT", class: ClassWrite}},
		{"INSERT INTO users VALUES (1)", facts{tag: "INSERT", class: ClassWrite}},
		{"MERGE INTO tags t USING tags s ON t.id = s.id WHEN MATCHED THEN DELETE", facts{tag: "MERGE", class: ClassWrite}},
		{"COPY users FROM STDIN", facts{tag: "COPY", class: ClassWrite, copyIn: true}},
		{"COPY users (id) FROM STDIN WITH (FORMAT csv)", facts{tag: "COPY", class: ClassWrite, copyIn: true}},
		{"COPY users FROM '/tmp/users.csv'", facts{tag: "COPY", class: ClassWrite}},
		{"COPY users FROM PROGRAM 'cat /tmp/users.csv'", facts{tag: "COPY", class: ClassWrite}},
		{"COPY users TO STDOUT", facts{tag: "COPY", class: ClassRead}},
		{"ALTER TABLE users ADD COLUMN c text", facts{tag: "ALTER TABLE", class: ClassDDL}},
		{"ALTER TABLE users ADD COLUMN c text DEFAULT 'x'", facts{tag: "ALTER TABLE", class: ClassDDL}},
		{"ALTER TABLE users ADD COLUMN c float8 DEFAULT random()", facts{tag: "ALTER TABLE", class: ClassDDL, rewrite: true}},
		{"ALTER TABLE users ADD COLUMN c timestamptz DEFAULT now()", facts{tag: "ALTER TABLE", class: ClassDDL}},
		{"ALTER TABLE users ADD COLUMN c timestamptz DEFAULT clock_timestamp()", facts{tag: "ALTER TABLE", class: ClassDDL, rewrite: true}},
		{"ALTER TABLE users ADD COLUMN c bigserial", facts{tag: "ALTER TABLE", class: ClassDDL, rewrite: true}},
		{"ALTER TABLE users ADD COLUMN c int GENERATED ALWAYS AS IDENTITY", facts{tag: "ALTER TABLE", class: ClassDDL, rewrite: true}},
		{"ALTER TABLE users ADD COLUMN c int GENERATED ALWAYS AS (score * 2) STORED", facts{tag: "ALTER TABLE", class: ClassDDL, rewrite: true}},
		{"ALTER TABLE users ALTER COLUMN name SET NOT NULL", facts{tag: "ALTER TABLE", class: ClassDDL, scan: true}},
		{"ALTER TABLE users ALTER COLUMN name TYPE varchar(10)", facts{tag: "ALTER TABLE", class: ClassDDL, rewrite: true}},
		{"ALTER TABLE orders ADD CONSTRAINT c CHECK (amount > 0)", facts{tag: "ALTER TABLE", class: ClassDDL, scan: true}},
		{"ALTER TABLE orders ADD CONSTRAINT c CHECK (amount > 0) NOT VALID", facts{tag: "ALTER TABLE", class: ClassDDL}},
		{"ALTER TABLE orders ADD CONSTRAINT f FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID", facts{tag: "ALTER TABLE", class: ClassDDL}},
		{"ALTER TABLE payments VALIDATE CONSTRAINT payments_order_fk", facts{tag: "ALTER TABLE", class: ClassDDL, scan: true}},
		{"ALTER TABLE scratch SET TABLESPACE pg_default", facts{tag: "ALTER TABLE", class: ClassDDL, rewrite: true}},
		{"ALTER TABLE scratch SET LOGGED", facts{tag: "ALTER TABLE", class: ClassDDL, rewrite: true}},
		{"ALTER TABLE metrics DETACH PARTITION metrics_2 CONCURRENTLY", facts{tag: "ALTER TABLE", class: ClassDDL, concurrently: true, noTxBlock: true}},
		{"ALTER INDEX orders_user_id_idx RENAME TO x", facts{tag: "ALTER INDEX", class: ClassDDL}},
		{"CREATE INDEX ON users (name)", facts{tag: "CREATE INDEX", class: ClassDDL, scan: true}},
		{"CREATE INDEX CONCURRENTLY ON users (name)", facts{tag: "CREATE INDEX", class: ClassDDL, scan: true, concurrently: true, noTxBlock: true}},
		{"DROP INDEX CONCURRENTLY orders_user_id_idx", facts{tag: "DROP INDEX", class: ClassDDL, concurrently: true, noTxBlock: true}},
		{"REINDEX TABLE CONCURRENTLY orders", facts{tag: "REINDEX", class: ClassMaintenance, scan: true, concurrently: true, noTxBlock: true}},
		{"REINDEX INDEX orders_user_id_idx", facts{tag: "REINDEX", class: ClassMaintenance, scan: true}},
		{"REINDEX DATABASE lockguard", facts{tag: "REINDEX", class: ClassMaintenance, scan: true, noTxBlock: true}},
		{"VACUUM users", facts{tag: "VACUUM", class: ClassMaintenance, scan: true, noTxBlock: true}},
		{"VACUUM FULL users", facts{tag: "VACUUM", class: ClassMaintenance, scan: true, rewrite: true, noTxBlock: true}},
		{"ANALYZE users", facts{tag: "ANALYZE", class: ClassMaintenance, scan: true}},
		{"CLUSTER users USING users_pkey", facts{tag: "CLUSTER", class: ClassMaintenance, scan: true, rewrite: true}},
		{"CLUSTER", facts{tag: "CLUSTER", class: ClassMaintenance, noTxBlock: true}},
		{"REFRESH MATERIALIZED VIEW user_totals", facts{tag: "REFRESH MATERIALIZED VIEW", class: ClassMaintenance, scan: true, rewrite: true}},
		{"REFRESH MATERIALIZED VIEW CONCURRENTLY user_totals", facts{tag: "REFRESH MATERIALIZED VIEW", class: ClassMaintenance, scan: true, concurrently: true}},
		{"TRUNCATE users", facts{tag: "TRUNCATE TABLE", class: ClassDDL}},
		{"DROP TABLE users", facts{tag: "DROP TABLE", class: ClassDDL}},
		{"CREATE TABLE t (id int)", facts{tag: "CREATE TABLE", class: ClassDDL}},
		{"CREATE TABLE e PARTITION OF events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')", facts{tag: "CREATE TABLE", class: ClassDDL, scan: true}},
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", facts{tag: "CREATE FUNCTION", class: ClassDDL}},
		{"CREATE DATABASE x", facts{tag: "CREATE DATABASE", class: ClassDDL, noTxBlock: true}},
		{"LOCK users", facts{tag: "LOCK TABLE", class: ClassOther}},
		{"DISCARD ALL", facts{tag: "DISCARD ALL", class: ClassSession, noTxBlock: true}},
		{"SHOW lock_timeout", facts{tag: "SHOW", class: ClassSession}},
		{"COMMIT PREPARED 'x'", facts{tag: "COMMIT PREPARED", class: ClassTransaction, noTxBlock: true}},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			an := a.Analyze(tt.sql)
			if an.Err != nil || len(an.Statements) != 1 {
				t.Fatalf("Analyze: err %v, %d statements", an.Err, len(an.Statements))
			}
			s := an.Statements[0]
			got := facts{s.Tag, s.Class, s.Rewrite, s.Scan, s.Concurrently, s.NoTxBlock, s.CopyIn}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestTransactionAndSettings(t *testing.T) {
	tests := []struct {
		sql  string
		kind TxKind
		set  []SettingChange
	}{
		{"BEGIN", TxBegin, nil},
		{"START TRANSACTION ISOLATION LEVEL SERIALIZABLE", TxBegin, nil},
		{"COMMIT", TxCommit, nil},
		{"END", TxCommit, nil},
		{"ROLLBACK", TxRollback, nil},
		{"ABORT", TxRollback, nil},
		{"SAVEPOINT a", TxSavepoint, nil},
		{"RELEASE SAVEPOINT a", TxRelease, nil},
		{"ROLLBACK TO SAVEPOINT a", TxRollbackTo, nil},
		{"PREPARE TRANSACTION 'x'", TxPrepare, nil},
		{"ROLLBACK PREPARED 'x'", TxRollbackPrepared, nil},
		{"SET lock_timeout = '2s'", TxNone, []SettingChange{{Name: "lock_timeout", Value: "2s"}}},
		{"SET LOCAL lock_timeout TO 500", TxNone, []SettingChange{{Name: "lock_timeout", Value: "500", Local: true}}},
		{"SET statement_timeout = 0", TxNone, []SettingChange{{Name: "statement_timeout", Value: "0"}}},
		{"SET search_path = app, public", TxNone, []SettingChange{{Name: "search_path", Value: "app, public"}}},
		// As PostgreSQL stores it: each name quoted unless it is lower case.
		{`SET search_path = "Tenant_B", tenant_b, 'a,b', "$user"`, TxNone, []SettingChange{{Name: "search_path", Value: `"Tenant_B", tenant_b, "a,b", "$user"`}}},
		{"SET SESSION Lock_Timeout = DEFAULT", TxNone, []SettingChange{{Name: "lock_timeout", Reset: true}}},
		{"RESET lock_timeout", TxNone, []SettingChange{{Name: "lock_timeout", Reset: true}}},
		{"RESET ALL", TxNone, []SettingChange{{Name: "all", Reset: true}}},
		{"DISCARD ALL", TxNone, []SettingChange{{Name: "all", Reset: true}}},
		{"SET TIME ZONE 'UTC'", TxNone, []SettingChange{{Name: "timezone", Value: "UTC"}}},
		{"SELECT set_config('lock_timeout', '3s', true)", TxNone, []SettingChange{{Name: "lock_timeout", Value: "3s", Local: true}}},
		{"SELECT set_config('statement_timeout', '0', false)", TxNone, []SettingChange{{Name: "statement_timeout", Value: "0"}}},
		// The value as a bind parameter, bare or cast: filled in per Bind.
		{"SELECT set_config('search_path', $1, true)", TxNone, []SettingChange{{Name: "search_path", Param: 1, Local: true}}},
		{"SELECT set_config('lock_timeout', $2::text, false), $1", TxNone, []SettingChange{{Name: "lock_timeout", Param: 2}}},
		// The name and is_local as parameters too.
		{"SELECT set_config($1, 'x', false)", TxNone, []SettingChange{{NameParam: 1, Value: "x"}}},
		{"SELECT set_config('search_path', $1, $2)", TxNone, []SettingChange{{Name: "search_path", Param: 1, LocalParam: 2}}},
		{"SELECT set_config($1::text, $2::text, $3::boolean)", TxNone, []SettingChange{{NameParam: 1, Param: 2, LocalParam: 3}}},
		{"SELECT set_config('lock_timeout', '1s', 't')", TxNone, []SettingChange{{Name: "lock_timeout", Value: "1s", Local: true}}},
		// Not followed: an expression.
		{"SELECT set_config('search_path', 'a' || $1, false)", TxNone, nil},
		{"SELECT set_config(lower($1), 'x', false)", TxNone, nil},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			an := Analyze(tt.sql)
			if an.Err != nil || len(an.Statements) != 1 {
				t.Fatalf("Analyze: err %v, %d statements", an.Err, len(an.Statements))
			}
			s := an.Statements[0]
			if s.TxKind != tt.kind {
				t.Errorf("TxKind = %v, want %v", s.TxKind, tt.kind)
			}
			if tt.kind != TxNone && s.Class != ClassTransaction {
				t.Errorf("Class = %v, want transaction", s.Class)
			}
			if len(s.Settings) != len(tt.set) {
				t.Fatalf("Settings = %+v, want %+v", s.Settings, tt.set)
			}
			for i := range tt.set {
				if s.Settings[i] != tt.set[i] {
					t.Errorf("Settings[%d] = %+v, want %+v", i, s.Settings[i], tt.set[i])
				}
			}
		})
	}
}

// Without a catalog, the analysis says what it could not know.
func TestAnalyzeWithoutCatalog(t *testing.T) {
	tests := []struct {
		sql     string
		locks   string
		unknown string // substring of one Unknown entry
	}{
		{"ALTER TABLE orders DROP CONSTRAINT orders_user_fk", "orders:AEL", "whether constraint orders_user_fk is a foreign key"},
		{"ALTER TABLE payments VALIDATE CONSTRAINT payments_order_fk", "payments:SUE", "ROW SHARE"},
		{"DROP INDEX orders_user_id_idx", "orders_user_id_idx:AEL/index", "the table of index orders_user_id_idx"},
		{"REINDEX INDEX orders_user_id_idx", "orders_user_id_idx:AEL/index", "the table of index"},
		{"DROP TABLE items", "items:AEL", "foreign keys reference"},
		{"TRUNCATE users CASCADE", "users:AEL", "CASCADE truncates them too"},
		{"REFRESH MATERIALIZED VIEW user_totals", "user_totals:AEL", "reads"},
		{"ALTER TABLE events ATTACH PARTITION e FOR VALUES IN (1)", "events:SUE e:AEL/part", "default partition"},
		{"ALTER TABLE users ADD COLUMN c text DEFAULT my_func()", "users:AEL", "volatility of my_func()"},
		{"SELECT * FROM users", "users:AS", "no catalog"},
		{"DROP STATISTICS users_stats", "", "the table of statistics object users_stats"},
		{"EXECUTE p(1)", "", "prepared statement"},
		{"VACUUM", "", "every table"},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			an := Analyze(tt.sql)
			if an.Err != nil || len(an.Statements) != 1 {
				t.Fatalf("Analyze: err %v, %d statements", an.Err, len(an.Statements))
			}
			s := an.Statements[0]
			if got := lockSpec(s.Locks); got != tt.locks {
				t.Errorf("locks\n got  %s\n want %s", got, tt.locks)
			}
			found := false
			for _, u := range s.Unknown {
				found = found || strings.Contains(u, tt.unknown)
			}
			if !found {
				t.Errorf("Unknown = %q, want an entry containing %q", s.Unknown, tt.unknown)
			}
		})
	}
	// With a catalog, a complete analysis has no Unknown.
	a := NewAnalyzer(fixture(), 0)
	for _, sql := range []string{
		"ALTER TABLE orders DROP CONSTRAINT orders_user_fk",
		"SELECT * FROM users JOIN orders ON orders.user_id = users.id",
		"DROP INDEX orders_user_id_idx",
		"ALTER TABLE users ADD COLUMN c text DEFAULT my_stable()",
	} {
		if u := a.Analyze(sql).Statements[0].Unknown; len(u) > 0 {
			t.Errorf("%s: Unknown = %q, want none", sql, u)
		}
	}
}

func TestAnalyzeMultipleStatementsAndOffsets(t *testing.T) {
	sql := "  /* app=web */ BEGIN; SET LOCAL lock_timeout = '2s';\n" +
		"ALTER TABLE orders DROP CONSTRAINT orders_user_fk; -- drop it\n" +
		"COMMIT /*traceparent='00-abc-01'*/"
	an := NewAnalyzer(fixture(), 16).Analyze(sql)
	if an.Err != nil {
		t.Fatal(an.Err)
	}
	var texts, tags []string
	for i := range an.Statements {
		texts = append(texts, an.Text(&an.Statements[i]))
		tags = append(tags, an.Statements[i].Tag)
	}
	want := []string{"BEGIN", "SET LOCAL lock_timeout = '2s'", "ALTER TABLE orders DROP CONSTRAINT orders_user_fk", "COMMIT"}
	if strings.Join(texts, "|") != strings.Join(want, "|") {
		t.Errorf("statement texts = %q, want %q", texts, want)
	}
	if got := strings.Join(tags, ","); got != "BEGIN,SET,ALTER TABLE,COMMIT" {
		t.Errorf("tags = %s", got)
	}
	if an.Strongest() != AccessExclusive {
		t.Errorf("Strongest = %v", an.Strongest())
	}
}

func TestAnalyzeParseError(t *testing.T) {
	an := Analyze("SELEC 1")
	if an.Err == nil || len(an.Statements) != 0 {
		t.Fatalf("got err %v, %d statements; want a parse error", an.Err, len(an.Statements))
	}
	if an := Analyze("  -- nothing\n /* at all */ "); an.Err != nil || len(an.Statements) != 0 {
		t.Errorf("comment-only input: err %v, %d statements", an.Err, len(an.Statements))
	}
}

func TestWaitsBehind(t *testing.T) {
	a := NewAnalyzer(fixture(), 0)
	sel := a.Analyze("SELECT * FROM users").Statements[0]
	users := RelName{"public", "users"}
	if !sel.WaitsBehind(users, AccessExclusive) {
		t.Error("SELECT on users must wait behind a pending ACCESS EXCLUSIVE on users")
	}
	if sel.WaitsBehind(users, ShareRowExclusive) {
		t.Error("SELECT must not wait behind SHARE ROW EXCLUSIVE")
	}
	if !sel.WaitsBehind(RelName{Name: "users"}, AccessExclusive) {
		t.Error("an unqualified name must match")
	}
	if sel.WaitsBehind(RelName{"other", "users"}, AccessExclusive) {
		t.Error("another schema's users must not match")
	}
	ins := a.Analyze("INSERT INTO orders (id, user_id) VALUES (1, 2)").Statements[0]
	if !ins.WaitsBehind(users, Exclusive) {
		t.Error("INSERT into orders checks users with ROW SHARE, which waits behind EXCLUSIVE")
	}
	if ins.WaitsBehind(users, Share) {
		t.Error("INSERT into orders must not wait behind SHARE on users")
	}
	if l, ok := ins.LockOn(users); !ok || l.Mode != RowShare || l.Role != RoleReferenced {
		t.Errorf("LockOn(users) = %+v, %v", l, ok)
	}
}

// A "--" comment ends at a carriage return, as in PostgreSQL's lexer: the
// statement after it is analysed, not hidden in the comment.
func TestLineCommentEndsAtCarriageReturn(t *testing.T) {
	an := NewAnalyzer(nil, 16).Analyze("-- migration 42\rALTER TABLE--\rorders DROP COLUMN note")
	if an.Err != nil || len(an.Statements) != 1 {
		t.Fatalf("got %d statements, error %v", len(an.Statements), an.Err)
	}
	if m := an.Strongest(); m != AccessExclusive {
		t.Fatalf("strongest lock %v, want ACCESS EXCLUSIVE", m)
	}
}
