package guard

// RuleInfo describes one policy rule: what it detects, the lock it is about,
// the safe alternative, and what it does under each preset. Rules returns
// the catalog; docs/rules.md and `lockguard check --list-rules` are made
// from it.
type RuleInfo struct {
	// ID is the rule's stable kebab-case id, used in the config, in inline
	// overrides and in findings. It never changes once released.
	ID string
	// Category is "lock" (lock and availability hazards), "compat" (breaks
	// running clients or deletes data), "hygiene" (schema style),
	// "transaction" (how statements are grouped) or "operations" (freeze
	// and windows).
	Category string
	// Summary is one line.
	Summary string
	// Detects says what the rule looks for.
	Detects string
	// Lock is the lock the statement takes and what that blocks.
	Lock string
	// Alternative is the safe way to get the same result.
	Alternative string
	// Default and Strict are the rule's action under the "default" and
	// "strict" presets.
	Default, Strict Action
	// NeedsCatalog is set when some cases can only be judged with facts
	// from the live catalog; Catalog says which, and what the rule does
	// without them (`lockguard check` has no catalog: it then says so in
	// Finding.Note).
	NeedsCatalog bool
	Catalog      string
	// OfflineOnly rules run only in `lockguard check` (Context.Offline): at
	// runtime the proxy itself makes them moot — missing-lock-timeout,
	// because lockguard injects a lock_timeout into lock-taking DDL.
	OfflineOnly bool
	// RuntimeOnly rules run only in the proxy (ddl-freeze,
	// ddl-outside-window): they are about when a statement runs, not what
	// it does.
	RuntimeOnly bool
	// Overridable is the default of the rule's `overridable` setting:
	// whether an inline `lockguard:allow` comment may lower a block. (A
	// warning can always be lowered.)
	Overridable bool
	// Anchors names the matching rules of other tools (strong_migrations,
	// squawk, eugene), for people coming from them.
	Anchors string
}

// ruleID indexes rules; the order is the catalog's order.
type ruleID uint8

const (
	rAddColumnVolatileDefault ruleID = iota
	rAddColumnStoredGenerated
	rAddColumnSerialIdentity
	rAddColumnRequired
	rAddColumnInlineConstraint
	rChangeColumnType
	rChangeTypeRecheck
	rSetNotNull
	rAddCheckValidated
	rAddFKValidated
	rCreateTableFKToHotTable
	rValidateSameTxn
	rAddUniqueConstraint
	rAddPrimaryKey
	rAddExclusionConstraint
	rDropForeignKey
	rCreateIndexBlocking
	rDropIndexBlocking
	rReindexBlocking
	rConcurrentlyInTxn
	rDetachPartitionBlocking
	rAttachPartitionScan
	rTableRewriteMaintenance
	rRefreshMatviewBlocking
	rTruncate
	rTruncateCascade
	rDropTable
	rDropColumn
	rRenameColumn
	rRenameTable
	rRenameSchema
	rTriggerDDL
	rDomainConstraint
	rMissingLockTimeout
	rMissingStatementTimeout
	rWorkAfterAccessExclusive
	rMultiLockTxn
	rCICPG14Corruption
	rAccessExclusiveLock
	rDDLFreeze
	rDDLOutsideWindow
	rDropNotNull
	rDropDatabase
	rDropSchema
	rRenameEnumValue
	rAddColumnJSON
	rPreferBigint
	rPreferTimestamptz
	rPreferIdentity
	rIndexTooManyColumns
	rTxnNesting
	rUncommittedTxn
	numRules
)

const (
	allow = ActionAllow
	warn  = ActionWarn
	block = ActionBlock
)

var ruleCatalog = [numRules]RuleInfo{
	rAddColumnVolatileDefault: {
		ID: "add-column-volatile-default", Category: "lock",
		Summary: "ADD COLUMN with a volatile DEFAULT rewrites the table",
		Detects: "`ALTER TABLE … ADD COLUMN … DEFAULT expr` where expr calls a volatile function (random(), gen_random_uuid(), " +
			"clock_timestamp(), nextval(), timeofday(), uuid_generate_v4(), …). now(), CURRENT_TIMESTAMP and CURRENT_DATE are " +
			"STABLE and fine. On PostgreSQL 10 and older any non-NULL default rewrites.",
		Lock:        "ACCESS EXCLUSIVE on the table while every row is rewritten and every index rebuilt: blocks all reads and writes until commit.",
		Alternative: "Add the column without a default, `ALTER COLUMN … SET DEFAULT` for new rows, then backfill existing rows in batches outside the migration transaction.",
		Default:     warn, Strict: block, Overridable: true,
		NeedsCatalog: true,
		Catalog:      "function volatility (pg_proc). Without it a built-in list is used; a function it does not know is reported as possibly volatile.",
		Anchors:      "strong_migrations add_column_default; squawk adding-field-with-default; eugene E10",
	},
	rAddColumnStoredGenerated: {
		ID: "add-column-stored-generated", Category: "lock",
		Summary:     "ADD COLUMN … GENERATED ALWAYS AS (…) STORED rewrites the table",
		Detects:     "A stored generated column added to an existing table.",
		Lock:        "ACCESS EXCLUSIVE on the table while every row is rewritten: blocks all reads and writes until commit.",
		Alternative: "Add a plain nullable column, fill it from a trigger or the application, and backfill in batches; on PostgreSQL 18 a VIRTUAL generated column needs no rewrite.",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "strong_migrations add_column_generated_stored; squawk adding-field-with-default; eugene E11",
	},
	rAddColumnSerialIdentity: {
		ID: "add-column-serial-identity", Category: "lock",
		Summary:     "adding a serial or identity column rewrites the table",
		Detects:     "`ADD COLUMN` of type serial/bigserial/smallserial or `GENERATED … AS IDENTITY` on an existing table.",
		Lock:        "ACCESS EXCLUSIVE on the table while every row gets its value: blocks all reads and writes until commit.",
		Alternative: "Add a nullable bigint column, attach a sequence as its DEFAULT afterwards (new rows), backfill old rows in batches; or build a new table and copy.",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "strong_migrations add_column_auto_incrementing; eugene E11",
	},
	rAddColumnRequired: {
		ID: "add-column-required", Category: "lock",
		Summary:     "ADD COLUMN … NOT NULL without a default fails on a non-empty table and breaks old INSERTs",
		Detects:     "`ADD COLUMN … NOT NULL` with no DEFAULT (and not identity, serial or generated) on an existing table.",
		Lock:        "ACCESS EXCLUSIVE on the table; the statement fails if the table has rows, and INSERTs that do not name the column fail once it exists.",
		Alternative: "Add the column nullable, or with a constant DEFAULT (PostgreSQL 11+ stores it without a rewrite); make it NOT NULL later through a validated CHECK.",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "squawk adding-required-field; Atlas MF103",
	},
	rAddColumnInlineConstraint: {
		ID: "add-column-inline-constraint", Category: "lock",
		Summary:     "ADD COLUMN with an inline UNIQUE, PRIMARY KEY, REFERENCES or CHECK builds or validates it under the lock",
		Detects:     "`ADD COLUMN` with an inline UNIQUE / PRIMARY KEY (index build), REFERENCES (SHARE ROW EXCLUSIVE on the referenced table) or CHECK (scan) on an existing table.",
		Lock:        "ACCESS EXCLUSIVE on the table for the index build or scan (and SHARE ROW EXCLUSIVE on a referenced table): blocks all reads and writes of the table until commit.",
		Alternative: "Add the bare column; then `CREATE UNIQUE INDEX CONCURRENTLY` + `ADD CONSTRAINT … USING INDEX`, or `ADD CONSTRAINT … NOT VALID` + `VALIDATE CONSTRAINT` in a separate transaction.",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "strong_migrations add_reference; squawk adding-foreign-key-constraint, adding-serial-primary-key-field; eugene E1/E6/E7",
	},
	rChangeColumnType: {
		ID: "change-column-type", Category: "lock",
		Summary: "ALTER COLUMN TYPE that is not binary-coercible rewrites the table",
		Detects: "`ALTER COLUMN … TYPE` unless the change is on the allowlist: varchar(n) → varchar(m ≥ n), varchar or text; " +
			"varchar ↔ text; numeric(p,s) → numeric(p' ≥ p, s) or numeric; varbit(n) → varbit(m ≥ n); cidr → inet; " +
			"timestamp/time/interval precision increases; timestamp ↔ timestamptz only when the session TimeZone is UTC " +
			"(PostgreSQL 12+; lockguard knows that only from a `SET TIME ZONE 'UTC'` earlier in the transaction or file). " +
			"Other changes between two types count as binary-coercible when the catalog's pg_cast says so and the new type has no modifier (integer → oid, …). " +
			"A USING clause always counts as a rewrite. A COLLATE on a binary-coercible change keeps the table but rebuilds the column's indexes under ACCESS EXCLUSIVE, and is reported as that. " +
			"Checked against PostgreSQL's relfilenodes by `TestRewriteClaimsMatchPostgres`.",
		Lock:        "ACCESS EXCLUSIVE on the table while every row is rewritten and every index rebuilt (and on tables whose foreign keys use the column): blocks all reads and writes until commit.",
		Alternative: "Expand and contract: add a new column, write both, backfill in batches, switch readers, drop the old column.",
		Default:     warn, Strict: block, Overridable: true,
		NeedsCatalog: true,
		Catalog:      "the column's current type (ColumnCatalog) and binary-coercible casts (CastCatalog). Without it the type is taken from a CREATE TABLE or ADD COLUMN earlier in the file or transaction; otherwise the change is reported as possibly rewriting.",
		Anchors:      "strong_migrations change_column; squawk changing-column-type; eugene E5",
	},
	rChangeTypeRecheck: {
		ID: "change-type-recheck", Category: "lock",
		Summary:     "a binary-coercible type change still rechecks the column's CHECK constraints",
		Detects:     "`ALTER COLUMN … TYPE` without a rewrite on a column that has CHECK constraints: they are re-validated with a full scan.",
		Lock:        "ACCESS EXCLUSIVE on the table for the scan: blocks all reads and writes until commit.",
		Alternative: "Drop the CHECK constraints, change the type, re-add them NOT VALID and VALIDATE them in a separate transaction.",
		Default:     warn, Strict: block, Overridable: true,
		NeedsCatalog: true,
		Catalog:      "the CHECK constraints on the column (Catalog.Constraints). Without it only constraints added earlier in the file or transaction are seen.",
		Anchors:      "strong_migrations change_column_constraint",
	},
	rSetNotNull: {
		ID: "set-not-null", Category: "lock",
		Summary: "SET NOT NULL scans the table under ACCESS EXCLUSIVE unless a validated CHECK proves it",
		Detects: "`ALTER COLUMN … SET NOT NULL` on an existing table, unless a validated `CHECK (col IS NOT NULL)` exists " +
			"(PostgreSQL 12+ then skips the scan) — from the catalog, or added and validated earlier in the file.",
		Lock:        "ACCESS EXCLUSIVE on the table for a full scan: blocks all reads and writes until commit.",
		Alternative: "PostgreSQL 12–17: `ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID`, `VALIDATE CONSTRAINT c` (own transaction), `SET NOT NULL`, `DROP CONSTRAINT c`. PostgreSQL 18: `ADD CONSTRAINT c NOT NULL col NOT VALID`, then `VALIDATE CONSTRAINT c`.",
		Default:     warn, Strict: block, Overridable: true,
		NeedsCatalog: true,
		Catalog:      "a validated CHECK (col IS NOT NULL) on the table (Catalog.Constraints and ConstraintDefCatalog); without it only the file's own statements count as proof.",
		Anchors:      "strong_migrations change_column_null_postgresql; squawk adding-not-nullable-field; eugene E2; Atlas PG303",
	},
	rAddCheckValidated: {
		ID: "add-check-validated", Category: "lock",
		Summary:     "ADD CHECK without NOT VALID scans the table under ACCESS EXCLUSIVE",
		Detects:     "`ADD CONSTRAINT … CHECK (…)` without NOT VALID on an existing table.",
		Lock:        "ACCESS EXCLUSIVE on the table for a full scan: blocks all reads and writes until commit.",
		Alternative: "`ADD CONSTRAINT … CHECK (…) NOT VALID` (brief lock), then `VALIDATE CONSTRAINT` in its own transaction (SHARE UPDATE EXCLUSIVE: reads and writes continue).",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "strong_migrations add_check_constraint; squawk constraint-missing-not-valid; eugene E1; Atlas PG305",
	},
	rAddFKValidated: {
		ID: "add-fk-validated", Category: "lock",
		Summary:     "ADD FOREIGN KEY without NOT VALID blocks writes to both tables while the child is scanned",
		Detects:     "`ADD CONSTRAINT … FOREIGN KEY … REFERENCES parent` without NOT VALID on an existing table.",
		Lock:        "SHARE ROW EXCLUSIVE on the table and on the referenced table, held while the table is scanned: blocks every write to both until commit.",
		Alternative: "Index the FK columns (CREATE INDEX CONCURRENTLY); `ADD CONSTRAINT … NOT VALID` (brief lock on both); `VALIDATE CONSTRAINT` in its own transaction (SHARE UPDATE EXCLUSIVE on the table, ROW SHARE on the parent). One foreign key per transaction.",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "strong_migrations add_foreign_key; squawk adding-foreign-key-constraint; eugene E1; Atlas PG306",
	},
	rCreateTableFKToHotTable: {
		ID: "create-table-fk-to-hot-table", Category: "lock",
		Summary:     "CREATE TABLE … REFERENCES locks the referenced table",
		Detects:     "`CREATE TABLE` with a foreign key to an existing table (not one created in the same transaction).",
		Lock:        "SHARE ROW EXCLUSIVE on the referenced table (its triggers are added): brief, but it blocks writes to it and, while waiting for the lock, queues every later writer of that busy table.",
		Alternative: "Fine with a short lock_timeout and retries (lockguard injects both); on a very busy parent, create the table without the FK and add it later NOT VALID.",
		Default:     warn, Strict: warn, Overridable: true,
		Anchors: "squawk #938 (gap)",
	},
	rValidateSameTxn: {
		ID: "validate-same-txn", Category: "lock",
		Summary:     "VALIDATE CONSTRAINT in the transaction that added it, or while holding a strong lock, keeps that lock for the whole scan",
		Detects:     "`VALIDATE CONSTRAINT` inside a transaction that added a NOT VALID constraint to the table or already holds a SHARE ROW EXCLUSIVE or stronger lock.",
		Lock:        "The earlier ACCESS EXCLUSIVE / SHARE ROW EXCLUSIVE stays held for the full validation scan: the table is blocked for reads and/or writes throughout.",
		Alternative: "COMMIT after `ADD … NOT VALID`; run `VALIDATE CONSTRAINT` alone in its own transaction.",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "strong_migrations validate_foreign_key; eugene E4",
	},
	rAddUniqueConstraint: {
		ID: "add-unique-constraint", Category: "lock",
		Summary:     "ADD UNIQUE builds its index under ACCESS EXCLUSIVE",
		Detects:     "`ADD CONSTRAINT … UNIQUE (…)` without USING INDEX on an existing table.",
		Lock:        "ACCESS EXCLUSIVE on the table for the index build: blocks all reads and writes until commit.",
		Alternative: "`CREATE UNIQUE INDEX CONCURRENTLY i ON t (…)`, then `ALTER TABLE t ADD CONSTRAINT c UNIQUE USING INDEX i`. The hint writes both out for the statement at hand, named as PostgreSQL would name the constraint, with its INCLUDE columns, NULLS NOT DISTINCT, storage parameters and tablespace on the index and its DEFERRABLE / INITIALLY DEFERRED on the constraint, so that running it leaves the schema the original would (checked against PostgreSQL by `TestRewritesMatchPostgres`).",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "strong_migrations add_unique_constraint; squawk disallowed-unique-constraint; eugene E7",
	},
	rAddPrimaryKey: {
		ID: "add-primary-key", Category: "lock",
		Summary:     "ADD PRIMARY KEY builds its index (and checks NOT NULL) under ACCESS EXCLUSIVE",
		Detects:     "`ADD PRIMARY KEY (…)` without USING INDEX on an existing table; or USING INDEX over columns known to be nullable.",
		Lock:        "ACCESS EXCLUSIVE on the table for the index build and the NOT NULL scan: blocks all reads and writes until commit.",
		Alternative: "Make the columns NOT NULL through a validated CHECK; `CREATE UNIQUE INDEX CONCURRENTLY i`; `ADD CONSTRAINT pk PRIMARY KEY USING INDEX i` (written out as for add-unique-constraint).",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "squawk adding-serial-primary-key-field; eugene W14; Atlas PG104",
	},
	rAddExclusionConstraint: {
		ID: "add-exclusion-constraint", Category: "lock",
		Summary:     "ADD EXCLUDE builds its index under ACCESS EXCLUSIVE and has no online path",
		Detects:     "`ADD CONSTRAINT … EXCLUDE …` on an existing table.",
		Lock:        "ACCESS EXCLUSIVE on the table for the index build: blocks all reads and writes until commit. Exclusion constraints cannot be NOT VALID nor use an existing index.",
		Alternative: "Only when the table is small or in a maintenance window; otherwise build a new table with the constraint and copy.",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "strong_migrations add_exclusion_constraint; eugene E8",
	},
	rDropForeignKey: {
		ID: "drop-foreign-key", Category: "lock",
		Summary:     "dropping a foreign key takes ACCESS EXCLUSIVE on both tables",
		Detects:     "`DROP CONSTRAINT` of a foreign key (and DROP COLUMN / ALTER COLUMN TYPE that drop or rebuild one): the referenced table's triggers are dropped too.",
		Lock:        "ACCESS EXCLUSIVE on the table and on the other table of the foreign key: blocks every read and write of both; while it waits behind one long reader, every later query on either table queues behind it.",
		Alternative: "Run it alone in its own transaction with a short lock_timeout and retries (lockguard injects both at runtime), at a quiet time; drop FKs before dropping their table or column.",
		Default:     warn, Strict: block, Overridable: true,
		NeedsCatalog: true,
		Catalog:      "whether the constraint is a foreign key and which table it references (Catalog.Constraints). Without it: a foreign key added earlier in the file, or a name that looks like one (_fkey, _fk, fk_) — the finding then says it guessed.",
		Anchors:      "squawk proposal #1294; lockguard's founding incident",
	},
	rCreateIndexBlocking: {
		ID: "create-index-blocking", Category: "lock",
		Summary:     "CREATE INDEX without CONCURRENTLY blocks writes for the whole build",
		Detects:     "`CREATE INDEX` without CONCURRENTLY on an existing table; not `CREATE INDEX … ON ONLY` a table the catalog shows partitioned, which builds nothing (the first step of the recipe below).",
		Lock:        "SHARE on the table for the full index build: blocks every INSERT, UPDATE and DELETE until commit.",
		Alternative: "`CREATE INDEX CONCURRENTLY` outside a transaction block (drop an INVALID leftover if it fails). On a partitioned table: `CREATE INDEX … ON ONLY parent`, CONCURRENTLY on each partition, then `ALTER INDEX … ATTACH PARTITION`.",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "strong_migrations add_index; squawk require-concurrent-index-creation; eugene E6; Atlas PG101",
	},
	rDropIndexBlocking: {
		ID: "drop-index-blocking", Category: "lock",
		Summary:     "DROP INDEX without CONCURRENTLY takes ACCESS EXCLUSIVE on the table",
		Detects:     "`DROP INDEX` without CONCURRENTLY.",
		Lock:        "ACCESS EXCLUSIVE on the index's table (brief): blocks all reads and writes, and queues every query on the table while it waits.",
		Alternative: "`DROP INDEX CONCURRENTLY` (one index per statement, outside a transaction block).",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "strong_migrations remove_index; squawk require-concurrent-index-deletion; Atlas PG102",
	},
	rReindexBlocking: {
		ID: "reindex-blocking", Category: "lock",
		Summary:     "REINDEX without CONCURRENTLY blocks writes, and reads that plan with the index",
		Detects:     "`REINDEX INDEX/TABLE/SCHEMA/DATABASE` without CONCURRENTLY.",
		Lock:        "SHARE on the table (blocks writes) and ACCESS EXCLUSIVE on each index being rebuilt (queries whose planning considers it wait, so reads stall too).",
		Alternative: "`REINDEX … CONCURRENTLY` (PostgreSQL 12+, outside a transaction block).",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "squawk require-concurrent-reindex; eugene E10",
	},
	rConcurrentlyInTxn: {
		ID: "concurrently-in-txn", Category: "transaction",
		Summary:     "CONCURRENTLY cannot run inside a transaction block",
		Detects:     "CREATE/DROP INDEX CONCURRENTLY, REINDEX CONCURRENTLY or DETACH PARTITION CONCURRENTLY inside an explicit transaction or a multi-statement query string (an implicit transaction).",
		Lock:        "None: PostgreSQL refuses it (SQLSTATE 25001), failing the migration.",
		Alternative: "Run it on its own, outside BEGIN/COMMIT (most migration tools have a per-migration switch to disable the transaction).",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "squawk ban-concurrent-index-creation-in-transaction; Atlas PG103",
	},
	rDetachPartitionBlocking: {
		ID: "detach-partition-blocking", Category: "lock",
		Summary:     "DETACH PARTITION without CONCURRENTLY takes ACCESS EXCLUSIVE on the parent",
		Detects:     "`ALTER TABLE parent DETACH PARTITION p` without CONCURRENTLY.",
		Lock:        "ACCESS EXCLUSIVE on the parent and the partition (SHARE on tables whose FKs reference the parent): blocks every read and write of the whole partitioned table.",
		Alternative: "`DETACH PARTITION … CONCURRENTLY` (PostgreSQL 14+, outside a transaction block, not with a default partition).",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "squawk require-concurrent-partition-detach",
	},
	rAttachPartitionScan: {
		ID: "attach-partition-scan", Category: "lock",
		Summary:     "ATTACH PARTITION scans the new partition; CREATE TABLE … PARTITION OF locks the parent",
		Detects:     "`ALTER TABLE parent ATTACH PARTITION t` of an existing table, and `CREATE TABLE … PARTITION OF parent`. With the catalog, not when t's validated CHECK constraints (and NOT NULL) prove a one-column range or list bound with the bound's own constants, as the recipe below writes them (PostgreSQL then skips the scan; checked by `TestScanClaimsMatchPostgres`): only the scan of the parent's default partition, if it has one, is reported then.",
		Lock:        "ATTACH: SHARE UPDATE EXCLUSIVE on the parent and ACCESS EXCLUSIVE on the attached table (and the default partition), scanned unless a CHECK proves the bound. PARTITION OF: ACCESS EXCLUSIVE on the parent, blocking every read and write of the partitioned table.",
		Alternative: "Create the table standalone, add a CHECK matching the partition bound NOT VALID and VALIDATE it, then ATTACH (no scan); drop the CHECK afterwards.",
		Default:     warn, Strict: block, Overridable: true,
	},
	rTableRewriteMaintenance: {
		ID: "table-rewrite-maintenance", Category: "lock",
		Summary:     "VACUUM FULL, CLUSTER, SET TABLESPACE, SET LOGGED/UNLOGGED and SET ACCESS METHOD rewrite the table",
		Detects:     "`VACUUM FULL`, `CLUSTER`, `ALTER TABLE … SET TABLESPACE / SET LOGGED / SET UNLOGGED / SET ACCESS METHOD`.",
		Lock:        "ACCESS EXCLUSIVE on the table for a full rewrite: blocks all reads and writes until it finishes.",
		Alternative: "pg_repack (or `REPACK … CONCURRENTLY` on PostgreSQL 19); for bloat, plain VACUUM; for a tablespace move, a new table and copy.",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "squawk prefer-repack; eugene E10",
	},
	rRefreshMatviewBlocking: {
		ID: "refresh-matview-blocking", Category: "lock",
		Summary:     "REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks readers of the view",
		Detects:     "`REFRESH MATERIALIZED VIEW` without CONCURRENTLY.",
		Lock:        "ACCESS EXCLUSIVE on the materialized view for the whole rebuild: blocks every read of it.",
		Alternative: "`REFRESH MATERIALIZED VIEW CONCURRENTLY` (needs a unique index on the view; takes EXCLUSIVE, so reads continue).",
		Default:     warn, Strict: block, Overridable: true,
	},
	rTruncate: {
		ID: "truncate", Category: "compat",
		Summary:     "TRUNCATE takes ACCESS EXCLUSIVE and deletes every row",
		Detects:     "`TRUNCATE` of existing tables (without CASCADE), but for migration tools' history tables (golang-migrate empties schema_migrations to record each migration).",
		Lock:        "ACCESS EXCLUSIVE on each table: blocks all reads and writes until commit.",
		Alternative: "Delete in batches, or swap in a new empty table; keep TRUNCATE off busy tables.",
		Default:     warn, Strict: block, Overridable: true,
	},
	rTruncateCascade: {
		ID: "truncate-cascade", Category: "compat",
		Summary:     "TRUNCATE … CASCADE also empties every table that references these through foreign keys",
		Detects:     "`TRUNCATE … CASCADE`.",
		Lock:        "ACCESS EXCLUSIVE on each listed table and on every table reached through foreign keys: blocks all reads and writes of all of them until commit.",
		Alternative: "List the tables explicitly (RESTRICT, the default) so nothing is emptied by surprise.",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "squawk ban-truncate-cascade",
	},
	rDropTable: {
		ID: "drop-table", Category: "compat",
		Summary:     "DROP TABLE deletes data and locks the tables its foreign keys reference",
		Detects:     "`DROP TABLE` of a table not created in the same transaction.",
		Lock:        "ACCESS EXCLUSIVE on the table and on every table its foreign keys reference (their FK triggers are dropped); with CASCADE also on referencing tables.",
		Alternative: "Stop all use of the table first; drop its foreign keys one per transaction with a short lock_timeout; then drop the table.",
		Default:     warn, Strict: block, Overridable: true,
		NeedsCatalog: true,
		Catalog:      "the tables its foreign keys reference (Catalog.Constraints), to name them in the finding.",
		Anchors:      "squawk ban-drop-table; Atlas DS102",
	},
	rDropColumn: {
		ID: "drop-column", Category: "compat",
		Summary:     "DROP COLUMN breaks clients that still use the column",
		Detects:     "`ALTER TABLE … DROP COLUMN` on an existing table.",
		Lock:        "ACCESS EXCLUSIVE on the table (brief), and on the other table of any foreign key that uses the column.",
		Alternative: "Make the application stop reading and writing the column (e.g. Rails ignored_columns) and deploy; drop dependent indexes and FKs concurrently; then drop the column.",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "strong_migrations remove_column; squawk ban-drop-column; Atlas DS103",
	},
	rRenameColumn: {
		ID: "rename-column", Category: "compat",
		Summary:     "renaming a column breaks clients that use the old name",
		Detects:     "`ALTER TABLE … RENAME COLUMN`.",
		Lock:        "ACCESS EXCLUSIVE on the table (brief); every running client that names the old column fails from commit on.",
		Alternative: "Expand and contract: add the new column, write both, backfill, move readers, drop the old one; or rename and leave a view with the old name.",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "strong_migrations rename_column; squawk renaming-column; Atlas BC102",
	},
	rRenameTable: {
		ID: "rename-table", Category: "compat",
		Summary:     "renaming a table (or moving it to another schema) breaks clients that use the old name",
		Detects:     "`ALTER TABLE/VIEW/MATERIALIZED VIEW … RENAME TO` and `… SET SCHEMA`.",
		Lock:        "ACCESS EXCLUSIVE on the relation (brief); every running client that names it fails from commit on.",
		Alternative: "Create the new table and copy, or rename and create a view with the old name until every client has moved.",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "strong_migrations rename_table; squawk renaming-table; Atlas BC101",
	},
	rRenameSchema: {
		ID: "rename-schema", Category: "compat",
		Summary:     "renaming a schema breaks every client that qualifies names with it",
		Detects:     "`ALTER SCHEMA … RENAME TO`.",
		Lock:        "No table lock, but every query that names the old schema fails from commit on.",
		Alternative: "Create the new schema and move objects one by one, or keep the old name on search_path.",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "strong_migrations rename_schema",
	},
	rTriggerDDL: {
		ID: "trigger-ddl", Category: "lock",
		Summary:     "trigger DDL locks the table",
		Detects:     "`CREATE TRIGGER`, `ALTER TABLE … ENABLE/DISABLE TRIGGER` (SHARE ROW EXCLUSIVE) and `DROP TRIGGER` (ACCESS EXCLUSIVE) on an existing table.",
		Lock:        "SHARE ROW EXCLUSIVE (blocks writes) or ACCESS EXCLUSIVE (blocks everything), briefly — but queued behind any long transaction on the table.",
		Alternative: "Fine with a short lock_timeout and retries (lockguard injects both at runtime); run it alone in its transaction.",
		Default:     allow, Strict: warn, Overridable: true,
	},
	rDomainConstraint: {
		ID: "domain-constraint", Category: "lock",
		Summary:     "domain CHECK constraints scan every table that uses the domain",
		Detects:     "`CREATE DOMAIN … CHECK` (future changes to it scan every user), `ALTER DOMAIN … ADD CONSTRAINT` (without NOT VALID), `VALIDATE CONSTRAINT` and `SET NOT NULL` on a domain.",
		Lock:        "SHARE on every table with a column of the domain while it is scanned: blocks writes to all of them.",
		Alternative: "Use table-level CHECK constraints (NOT VALID + VALIDATE) instead of domain constraints.",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "squawk ban-create-domain-with-constraint, ban-alter-domain-with-add-constraint",
	},
	rMissingLockTimeout: {
		ID: "missing-lock-timeout", Category: "transaction",
		Summary: "a migration takes a strong lock without a lock_timeout",
		Detects: "The first statement in a file that takes a lock blocking reads or writes (SHARE or stronger) on an existing table " +
			"with no `SET lock_timeout` (non-zero) earlier in the file. Offline only: at runtime lockguard injects a lock_timeout itself.",
		Lock:        "While the statement waits for its lock behind a long transaction, every later query on the table waits behind it: an outage as long as the oldest transaction.",
		Alternative: "`SET lock_timeout = '2s';` at the top of the migration (or `SET LOCAL` inside its transaction), and retry on 55P03 — or run migrations through lockguard, which does both.",
		Default:     warn, Strict: block, Overridable: true, OfflineOnly: true,
		Anchors: "squawk require-lock-timeout; eugene E9; strong_migrations lock_timeout",
	},
	rMissingStatementTimeout: {
		ID: "missing-statement-timeout", Category: "transaction",
		Summary:     "a migration runs lock-taking DDL without a statement_timeout",
		Detects:     "The first lock-taking DDL in a file with no `SET statement_timeout` earlier in the file. Offline only.",
		Lock:        "A runaway statement holds its locks without bound.",
		Alternative: "`SET statement_timeout = '5min';` (0 for CREATE INDEX CONCURRENTLY and VALIDATE, which hold only weak locks).",
		Default:     allow, Strict: warn, Overridable: true, OfflineOnly: true,
		Anchors: "squawk require-statement-timeout",
	},
	rWorkAfterAccessExclusive: {
		ID: "work-after-access-exclusive", Category: "transaction",
		Summary:     "the transaction keeps working after taking ACCESS EXCLUSIVE",
		Detects:     "A statement that reads or writes rows, scans or rewrites a table, or locks another table, in a transaction that already holds ACCESS EXCLUSIVE on an existing table. Not one that touches only system catalogs (pg_catalog, information_schema) and migration tools' history tables (schema_migrations, django_migrations, alembic_version, knex_migrations, pgmigrations, goose_db_version, flyway_schema_history, databasechangelog, …): every tool runs such introspection and writes its history row inside the migration's transaction, after the DDL.",
		Lock:        "The ACCESS EXCLUSIVE lock stays held for the extra work: the table is unreadable and unwritable until commit.",
		Alternative: "COMMIT right after the DDL; run backfills and other work in their own transactions.",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "eugene E4",
	},
	rMultiLockTxn: {
		ID: "multi-lock-txn", Category: "transaction",
		Summary:     "one transaction takes strong locks on several tables",
		Detects:     "A statement that takes SHARE ROW EXCLUSIVE or stronger on a table in a transaction that already holds such a lock on another existing table.",
		Lock:        "Every lock is held until commit and each is waited for separately: outages add up, and two such migrations can deadlock.",
		Alternative: "One table per transaction; or take the locks up front with `LOCK TABLE a, b IN … MODE` in a fixed order.",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "eugene W12",
	},
	rCICPG14Corruption: {
		ID: "cic-pg14-corruption", Category: "lock",
		Summary:     "CREATE INDEX / REINDEX CONCURRENTLY on PostgreSQL 14.0–14.3 can corrupt the index",
		Detects:     "A CONCURRENTLY index build or rebuild when the server is 14.0 to 14.3.",
		Lock:        "None beyond SHARE UPDATE EXCLUSIVE, but the index can silently miss rows.",
		Alternative: "Upgrade to 14.4 or later first (and REINDEX indexes built concurrently on 14.0–14.3).",
		Default:     warn, Strict: block, Overridable: true,
		NeedsCatalog: true,
		Catalog:      "the server version (Context.ServerVersion; `--pg-version` offline). Silent without it.",
		Anchors:      "strong_migrations add_index_corruption",
	},
	rAccessExclusiveLock: {
		ID: "access-exclusive-lock", Category: "lock",
		Summary:     "DDL that takes a brief ACCESS EXCLUSIVE lock",
		Detects:     "Any other DDL that takes ACCESS EXCLUSIVE on an existing table (ADD COLUMN with a constant default, SET/DROP DEFAULT, DROP CONSTRAINT, OWNER TO, policies, rules, …).",
		Lock:        "ACCESS EXCLUSIVE, briefly: safe when it gets the lock at once, an outage while it waits in the lock queue.",
		Alternative: "A short lock_timeout and retries, which lockguard injects at runtime. Recorded only, by default.",
		Default:     allow, Strict: allow, Overridable: true,
	},
	rDDLFreeze: {
		ID: "ddl-freeze", Category: "operations",
		Summary:     "a DDL freeze is in force",
		Detects:     "Any DDL (except on temporary objects) while `policy.freeze` is true. Runtime only.",
		Lock:        "—",
		Alternative: "Wait until the freeze is lifted (set `freeze: false` and reload).",
		Default:     block, Strict: block, Overridable: false, RuntimeOnly: true,
	},
	rDDLOutsideWindow: {
		ID: "ddl-outside-window", Category: "operations",
		Summary:     "DDL outside the allowed time windows",
		Detects:     "Any DDL (except on temporary objects) when `policy.windows` is set and the current time is in none of them. Runtime only.",
		Lock:        "—",
		Alternative: "Run it inside an allowed window.",
		Default:     block, Strict: block, Overridable: false, RuntimeOnly: true,
	},
	rDropNotNull: {
		ID: "drop-not-null", Category: "compat",
		Summary:     "DROP NOT NULL lets NULLs reach readers that do not expect them",
		Detects:     "`ALTER COLUMN … DROP NOT NULL` on an existing table.",
		Lock:        "ACCESS EXCLUSIVE on the table (brief).",
		Alternative: "Make every reader handle NULL first.",
		Default:     allow, Strict: warn, Overridable: true,
		Anchors: "squawk ban-drop-not-null",
	},
	rDropDatabase: {
		ID: "drop-database", Category: "compat",
		Summary:     "DROP DATABASE deletes a database",
		Detects:     "`DROP DATABASE`.",
		Lock:        "Exclusive use of the database: fails while anyone is connected (WITH (FORCE) terminates them).",
		Alternative: "Not in a migration.",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "squawk ban-drop-database; Atlas DS101",
	},
	rDropSchema: {
		ID: "drop-schema", Category: "compat",
		Summary:     "DROP SCHEMA … CASCADE deletes every object in it",
		Detects:     "`DROP SCHEMA … CASCADE` (without CASCADE it fails unless the schema is empty).",
		Lock:        "With CASCADE: ACCESS EXCLUSIVE on every relation in the schema and on the tables whose foreign keys reference them.",
		Alternative: "Drop the objects one by one, foreign keys first.",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "Atlas DS101",
	},
	rRenameEnumValue: {
		ID: "rename-enum-value", Category: "compat",
		Summary:     "renaming an enum value breaks clients that use the old label",
		Detects:     "`ALTER TYPE … RENAME VALUE`.",
		Lock:        "No table lock; clients sending the old label fail from commit on.",
		Alternative: "Add the new value, move the data and clients over, and stop using the old one.",
		Default:     warn, Strict: block, Overridable: true,
		Anchors: "strong_migrations rename_enum_value",
	},
	rAddColumnJSON: {
		ID: "add-column-json", Category: "hygiene",
		Summary:     "json column: prefer jsonb",
		Detects:     "A column of type json in CREATE TABLE or ADD COLUMN.",
		Lock:        "—",
		Alternative: "Use jsonb (it has an equality operator, so SELECT DISTINCT and UNION work on it, and it can be indexed).",
		Default:     allow, Strict: warn, Overridable: true,
		Anchors: "strong_migrations add_column_json; eugene E3",
	},
	rPreferBigint: {
		ID: "prefer-bigint", Category: "hygiene",
		Summary:     "32-bit or 16-bit key column: prefer bigint",
		Detects:     "An integer/smallint/serial/smallserial column that is a primary key or an identity column.",
		Lock:        "—; widening it later is a full table rewrite (change-column-type).",
		Alternative: "Use bigint (bigint GENERATED … AS IDENTITY).",
		Default:     allow, Strict: warn, Overridable: true,
		Anchors: "squawk prefer-bigint-over-int, prefer-bigint-over-smallint",
	},
	rPreferTimestamptz: {
		ID: "prefer-timestamptz", Category: "hygiene",
		Summary:     "timestamp without time zone: prefer timestamptz",
		Detects:     "A column of type timestamp (without time zone).",
		Lock:        "—; converting later rewrites the table unless the session TimeZone is UTC.",
		Alternative: "Use timestamptz.",
		Default:     allow, Strict: warn, Overridable: true,
		Anchors: "squawk prefer-timestamp-tz",
	},
	rPreferIdentity: {
		ID: "prefer-identity", Category: "hygiene",
		Summary:     "serial column: prefer an identity column",
		Detects:     "A serial/bigserial/smallserial column.",
		Lock:        "—",
		Alternative: "`bigint GENERATED BY DEFAULT AS IDENTITY` (standard SQL; the sequence belongs to the column and permissions follow the table).",
		Default:     allow, Strict: warn, Overridable: true,
		Anchors: "squawk prefer-identity",
	},
	rIndexTooManyColumns: {
		ID: "index-too-many-columns", Category: "hygiene",
		Summary:     "index with more than three columns",
		Detects:     "`CREATE INDEX` on more than three columns or expressions.",
		Lock:        "—; a wide index is slow to build and rarely used beyond its first columns.",
		Alternative: "Index the leading, selective columns only; consider INCLUDE for covering.",
		Default:     allow, Strict: warn, Overridable: true,
		Anchors: "strong_migrations add_index_columns",
	},
	rTxnNesting: {
		ID: "txn-nesting", Category: "transaction",
		Summary:     "BEGIN inside a transaction block",
		Detects:     "BEGIN / START TRANSACTION while a transaction block is already open: PostgreSQL ignores it with a warning, and the first COMMIT ends the whole block.",
		Lock:        "Locks taken so far stay held longer than the author intended.",
		Alternative: "Remove the inner BEGIN (most migration tools already wrap each migration in a transaction).",
		Default:     warn, Strict: warn, Overridable: true,
		Anchors: "squawk transaction-nesting",
	},
	rUncommittedTxn: {
		ID: "uncommitted-txn", Category: "transaction",
		Summary:     "a migration file leaves its transaction open",
		Detects:     "A file with BEGIN and no COMMIT or ROLLBACK after it. Offline only.",
		Lock:        "Every lock taken in the file stays held until the connection commits or closes.",
		Alternative: "End the file with COMMIT.",
		Default:     warn, Strict: block, Overridable: true, OfflineOnly: true,
		Anchors: "squawk ban-uncommitted-transaction",
	},
}

// ruleIndex maps ids to rules.
var ruleIndex = func() map[string]ruleID {
	m := make(map[string]ruleID, numRules)
	for i := range ruleCatalog {
		m[ruleCatalog[i].ID] = ruleID(i)
	}
	return m
}()

// Rules returns the rule catalog in its documented order. The slice is a
// copy; changing it changes nothing.
func Rules() []RuleInfo {
	out := make([]RuleInfo, numRules)
	copy(out, ruleCatalog[:])
	return out
}

// LookupRule returns the rule with the given id.
func LookupRule(id string) (RuleInfo, bool) {
	r, ok := ruleIndex[id]
	if !ok {
		return RuleInfo{}, false
	}
	return ruleCatalog[r], true
}

func (r ruleID) info() *RuleInfo { return &ruleCatalog[r] }
func (r ruleID) String() string  { return ruleCatalog[r].ID }
