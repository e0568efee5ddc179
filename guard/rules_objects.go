package guard

import (
	"slices"
	"strings"
)

// The rules about CREATE, DROP, TRUNCATE, renames, domains, enums, indexes
// and maintenance.

func (e *evaluator) checkCreateTable() {
	f := e.f
	rel := e.target()
	if rel.Name == "" {
		rel = f.target
	}
	if f.temp {
		return
	}
	for _, l := range e.st.Locks {
		if l.Role != RoleReferenced || l.Rel.Matches(rel) || e.isNew(l.Rel) {
			continue
		}
		e.fire(rCreateTableFKToHotTable, hit{
			rel: l.Rel, lock: l.Mode,
			msg:    "CREATE TABLE " + rel.String() + " references " + l.Rel.String() + ", which it locks " + l.Mode.String(),
			detail: lockDetail(l.Mode, one(l.Rel), " (briefly: its foreign-key triggers are added)") + "; while it waits behind a long transaction on " + l.Rel.String() + ", every later writer queues behind it",
			hint:   "fine with a short lock_timeout and retries (lockguard injects both at runtime); on a very busy table create " + rel.String() + " without the foreign key and add it later NOT VALID",
		})
	}
	if f.partitionOf.Name != "" {
		parent := f.partitionOf
		for _, l := range e.st.Locks {
			if l.Role == RolePartitionParent {
				parent = l.Rel
			}
		}
		if !e.isNew(parent) {
			rels := append(one(parent), e.others(parent, AccessExclusive, RolePartition)...)
			e.fire(rAttachPartitionScan, hit{
				rel: parent, lock: AccessExclusive,
				msg:    "CREATE TABLE " + rel.String() + " PARTITION OF " + parent.String() + " takes ACCESS EXCLUSIVE on " + parent.String(),
				detail: lockDetail(AccessExclusive, rels, "") + " (the whole partitioned table)",
				hint: lines("CREATE TABLE "+rel.String()+" (LIKE "+parent.String()+" INCLUDING DEFAULTS INCLUDING CONSTRAINTS);",
					"-- add a CHECK matching the partition bound NOT VALID and VALIDATE it, then:",
					"ALTER TABLE "+parent.String()+" ATTACH PARTITION "+rel.String()+" FOR VALUES …;  -- SHARE UPDATE EXCLUSIVE on the parent"),
			})
		}
	}
	var pk []string
	for _, k := range f.tableCons {
		if k.kind == ConstraintPrimaryKey {
			pk = append(pk, k.columns...)
		}
	}
	for i := range f.columns {
		col := &f.columns[i]
		e.checkColumnHygiene(rel, col, col.primaryKey || contains(pk, col.name))
	}
}

func (e *evaluator) checkCreateIndex() {
	f, st := e.f, e.st
	rel := e.target()
	if rel.Name == "" {
		rel = f.target
	}
	partitioned := false
	if cat := e.c.Catalog; cat != nil {
		info, ok := cat.Relation(rel)
		partitioned = ok && info.Kind == KindPartitionedTable
	}
	// ON ONLY a partitioned table builds nothing: the index is INVALID
	// until each partition's is attached, and only the parent is locked,
	// briefly. It is the first step of the recipe below.
	if !st.Concurrently && !e.isNew(rel) && !e.isTemp(rel) && !(partitioned && f.indexOnly) {
		hint := lines(semi(f.safeSQL), "-- outside a transaction block; if it fails, DROP INDEX CONCURRENTLY the INVALID index it leaves and retry")
		if partitioned {
			hint = lines("-- CONCURRENTLY does not work on a partitioned table itself:",
				"CREATE INDEX "+qi(orDefault(f.indexName, "parent_idx"))+" ON ONLY "+rel.String()+" (…);  -- invalid until every partition has one",
				"-- for each partition: CREATE INDEX CONCURRENTLY part_idx ON partition (…);",
				"-- ALTER INDEX "+qi(orDefault(f.indexName, "parent_idx"))+" ATTACH PARTITION part_idx;")
		}
		rels := append(one(rel), e.others(rel, Share, RolePartition)...)
		e.fire(rCreateIndexBlocking, hit{
			rel: rel, lock: Share,
			msg:    "CREATE INDEX on " + rel.String() + " without CONCURRENTLY: writes are blocked for the whole build",
			detail: lockDetail(Share, rels, " for the whole index build"),
			hint:   hint,
		})
	}
	if len(f.indexColumns) > 3 {
		e.fire(rIndexTooManyColumns, hit{
			rel: rel, lock: e.lockOn(rel),
			msg:    "index on " + rel.String() + " has " + itoa(len(f.indexColumns)) + " columns",
			detail: "a wide index is slow to build and maintain, and queries rarely use it beyond its leading columns",
			hint:   "index the leading, selective columns; use INCLUDE (…) for covering columns",
		})
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func (e *evaluator) checkDropIndex() {
	f, st := e.f, e.st
	if st.Concurrently {
		return
	}
	var table RelName
	for _, l := range st.Locks {
		if l.Role == RoleIndexTable {
			table = l.Rel
			break
		}
	}
	var index RelName
	if len(f.dropNames) > 0 {
		index = f.dropNames[0]
	}
	if table.Name == "" {
		for _, ix := range e.idxs {
			if ix.name == index.Name {
				table = ix.rel
			}
		}
	}
	note := ""
	rel := table
	if table.Name == "" {
		rel = index
		if e.c.Catalog == nil {
			note = noCatalog + ": the index's table is unknown"
		}
	} else if e.isNew(table) || e.isTemp(table) {
		return
	}
	on := "its table"
	detail := "ACCESS EXCLUSIVE on the table of index " + index.String() + " (briefly): blocks every read and write of it until the transaction ends"
	if table.Name != "" {
		on = table.String()
		detail = lockDetail(AccessExclusive, one(rel), " (briefly)")
	}
	e.fire(rDropIndexBlocking, hit{
		rel: rel, lock: AccessExclusive,
		msg:    "DROP INDEX " + index.String() + " without CONCURRENTLY: ACCESS EXCLUSIVE on " + on,
		detail: detail + "; while it waits behind a long transaction, every later query on the table queues behind it",
		hint:   lines(f.safeSQL, "-- one index per statement, outside a transaction block"),
		note:   note,
	})
}

func (e *evaluator) checkDrop() {
	f, st := e.f, e.st
	switch f.dropWhat {
	case "TABLE", "FOREIGN TABLE":
		for _, l := range st.Locks {
			if l.Role != RoleTarget || e.isNew(l.Rel) || e.isTemp(l.Rel) {
				continue
			}
			rel := l.Rel
			others := e.others(rel, AccessExclusive, RoleReferenced, RoleCascaded)
			for _, m := range e.cons {
				if m.kind == ConstraintForeignKey && m.rel.Matches(rel) && m.ref.Name != "" && !slices.ContainsFunc(others, m.ref.Matches) && !m.ref.Matches(rel) {
					others = append(others, m.ref)
				}
			}
			note := ""
			if e.c.Catalog == nil {
				note = noCatalog + ": the tables its foreign keys reference (locked ACCESS EXCLUSIVE too) are unknown"
			}
			detail := lockDetail(AccessExclusive, append(one(rel), others...), "")
			if len(others) > 0 {
				detail += " — " + relsText(others) + " because the dropped table's foreign keys are dropped with it"
			}
			e.fire(rDropTable, hit{
				rel: rel, lock: AccessExclusive,
				msg:    "DROP TABLE " + rel.String() + ": deletes its data and breaks clients that still use it",
				detail: detail,
				hint: lines("-- stop all use of the table and deploy first; drop its foreign keys one per transaction",
					"-- with a short lock_timeout (lockguard injects one at runtime); then drop the table"),
				note: note,
			})
		}
	case "TRIGGER":
		if rel := e.target(); rel.Name != "" && !e.isNew(rel) {
			e.fireTrigger(rel, "DROP TRIGGER")
		}
	case "SCHEMA":
		if !f.dropCascade {
			return // fails unless the schema is empty
		}
		for _, n := range f.dropNames {
			e.fire(rDropSchema, hit{
				msg:    "DROP SCHEMA " + qi(n.Name) + " CASCADE deletes every object in the schema",
				detail: "with CASCADE, ACCESS EXCLUSIVE on every relation in the schema and on the tables whose foreign keys reference them",
				hint:   "drop the objects one by one, foreign keys first, each with a short lock_timeout",
			})
		}
	}
}

func (e *evaluator) checkRename() {
	f := e.f
	rel := e.target()
	if rel.Name == "" {
		rel = f.target
	}
	tbl := rel.String()
	switch f.renameWhat {
	case "column":
		if e.isNew(rel) {
			return
		}
		e.fire(rRenameColumn, hit{
			rel: rel, lock: AccessExclusive,
			msg:    "column " + qi(f.oldName) + " of " + tbl + " renamed to " + qi(f.newName) + ": clients that use the old name fail",
			detail: lockDetail(AccessExclusive, one(rel), " (briefly)") + "; every running query or prepared statement that names " + qi(f.oldName) + " fails from commit on",
			hint: lines("-- expand and contract:",
				"ALTER TABLE "+tbl+" ADD COLUMN "+qi(f.newName)+" …;",
				"-- write both columns, backfill in batches, move readers, then drop "+qi(f.oldName)+";",
				"-- or rename and keep a view with the old column name for old clients"),
		})
	case "table", "view", "materialized view", "foreign table":
		if e.isNew(rel) {
			return
		}
		what := "renamed to " + qi(f.newName)
		if f.kind == factSetSchema {
			what = "moved to schema " + qi(f.newName)
		}
		e.fire(rRenameTable, hit{
			rel: rel, lock: AccessExclusive,
			msg:    f.renameWhat + " " + tbl + " " + what + ": clients that use the old name fail",
			detail: lockDetail(AccessExclusive, one(rel), " (briefly)") + "; every running query that names " + tbl + " fails from commit on",
			hint:   "create the new table and copy, or rename and create a view with the old name (simple views are updatable) until every client has moved",
		})
	case "schema":
		e.fire(rRenameSchema, hit{
			msg:    "schema " + qi(f.oldName) + " renamed to " + qi(f.newName) + ": every query that names the old schema fails",
			detail: "no table lock, but clients that qualify names with " + qi(f.oldName) + " (or have it on search_path) fail from commit on",
			hint:   "create the new schema and move objects one by one (ALTER … SET SCHEMA), keeping the old name on search_path meanwhile",
		})
	}
}

func (e *evaluator) checkEnum() {
	f := e.f
	if !f.enumRenameValue {
		return
	}
	e.fire(rRenameEnumValue, hit{
		msg:    "enum " + f.target.String() + " value '" + f.oldName + "' renamed to '" + f.newName + "': clients that send the old label fail",
		detail: "no table lock, but every query or row written with the old label fails from commit on",
		hint:   "ALTER TYPE " + f.target.String() + " ADD VALUE '" + strings.ReplaceAll(f.newName, "'", "''") + "'; then move data and clients over and stop using the old label",
	})
}

func (e *evaluator) checkDomain() {
	f := e.f
	if !f.domainCheck {
		return
	}
	if f.kind == factCreateDomain {
		e.fire(rDomainConstraint, hit{
			msg:    "domain " + f.target.String() + " created with a CHECK constraint: changing it later scans every table that uses it",
			detail: "ALTER DOMAIN … ADD CONSTRAINT / VALIDATE later locks every table with a column of the domain SHARE while scanning it: blocks writes to all of them",
			hint:   "use a plain type with table-level CHECK constraints (added NOT VALID, then VALIDATE)",
		})
		return
	}
	e.fire(rDomainConstraint, hit{
		lock:   Share,
		msg:    "ALTER DOMAIN " + f.target.String() + " " + f.domainVerb + " scans every table with a column of the domain",
		detail: "SHARE on each of those tables while it is scanned: blocks every write to them",
		hint:   "use table-level CHECK constraints (NOT VALID, then VALIDATE CONSTRAINT in its own transaction) instead of domain constraints",
	})
}

func (e *evaluator) checkDropDatabase() {
	e.fire(rDropDatabase, hit{
		msg:    "DROP DATABASE " + qi(e.f.target.Name) + " deletes the whole database",
		detail: "it fails while anyone is connected; WITH (FORCE) terminates them",
		hint:   "not in a migration",
	})
}

func (e *evaluator) checkTruncate() {
	st := e.st
	var targets []RelName
	history := false // a migration tool's history table among them
	for _, l := range st.Locks {
		if l.Role == RoleTarget && !e.isNew(l.Rel) && !e.isTemp(l.Rel) {
			targets = append(targets, l.Rel)
			history = history || migrationHistory[l.Rel.Name]
		}
	}
	cascade := slices.Contains(st.Subcommands, "CASCADE")
	if !cascade && history {
		// golang-migrate records each migration with TRUNCATE
		// schema_migrations; INSERT: the tool's bookkeeping, not data.
		targets = slices.DeleteFunc(targets, func(r RelName) bool { return migrationHistory[r.Name] })
	}
	if len(targets) == 0 {
		return
	}
	if cascade {
		all := append(slices.Clone(targets), e.others(RelName{}, AccessExclusive, RoleCascaded)...)
		note := ""
		if e.c.Catalog == nil {
			note = noCatalog + ": the tables CASCADE reaches are unknown"
		}
		e.fire(rTruncateCascade, hit{
			rel: targets[0], lock: AccessExclusive,
			msg:    "TRUNCATE " + relsText(targets) + " CASCADE also empties every table that references them through foreign keys",
			detail: lockDetail(AccessExclusive, all, ""),
			hint:   "list every table to empty explicitly, without CASCADE, so nothing is emptied by surprise",
			note:   note,
		})
		return
	}
	e.fire(rTruncate, hit{
		rel: targets[0], lock: AccessExclusive,
		msg:    "TRUNCATE " + relsText(targets) + ": deletes every row under ACCESS EXCLUSIVE",
		detail: lockDetail(AccessExclusive, targets, ""),
		hint:   "delete in batches, or swap in a new empty table; keep TRUNCATE off busy tables",
	})
}

func (e *evaluator) checkMaintenance() {
	st, f := e.st, e.f
	var targets []RelName
	seen := false
	for _, l := range st.Locks {
		if l.Role != RoleTarget && l.Role != RoleIndexTable && l.Role != RoleIndex {
			continue
		}
		seen = true
		if !e.isNew(l.Rel) && !e.isTemp(l.Rel) {
			targets = append(targets, l.Rel)
		}
	}
	newOnly := seen && len(targets) == 0
	var rel RelName
	if len(targets) > 0 {
		rel = targets[0]
	}
	switch st.Tag {
	case "VACUUM":
		if slices.Contains(st.Subcommands, "FULL") && !newOnly {
			e.fireRewrite(rel, "VACUUM FULL "+relsTextOr(targets, "(every table)"))
		}
	case "CLUSTER":
		if !newOnly {
			e.fireRewrite(rel, "CLUSTER "+relsTextOr(targets, "(every clustered table)"))
		}
	case "REINDEX":
		if st.Concurrently || newOnly {
			return
		}
		hint := "REINDEX … CONCURRENTLY (PostgreSQL 12+, outside a transaction block)"
		if f != nil && f.safeSQL != "" {
			hint = lines(semi(f.safeSQL), "-- PostgreSQL 12+, outside a transaction block")
		}
		var tables, indexes []RelName
		for _, l := range st.Locks {
			switch l.Role {
			case RoleIndex:
				indexes = append(indexes, l.Rel)
			case RoleTarget, RoleIndexTable:
				tables = append(tables, l.Rel)
			}
		}
		what := relsTextOr(tables, "every table it covers")
		if len(tables) == 0 && len(indexes) > 0 {
			what = "the table of index " + relsText(indexes)
		}
		e.fire(rReindexBlocking, hit{
			rel: rel, lock: Share,
			msg:    "REINDEX without CONCURRENTLY: writes to " + what + " are blocked, and reads that plan with the index wait",
			detail: "SHARE on " + what + " (blocks every write) and ACCESS EXCLUSIVE on each index while it is rebuilt (queries whose planning considers it wait) until the rebuild ends",
			hint:   hint,
		})
	case "REFRESH MATERIALIZED VIEW":
		if st.Concurrently || newOnly {
			return
		}
		hint := "REFRESH MATERIALIZED VIEW CONCURRENTLY …"
		if f != nil && f.safeSQL != "" {
			hint = semi(f.safeSQL)
		}
		e.fire(rRefreshMatviewBlocking, hit{
			rel: rel, lock: AccessExclusive,
			msg:    "REFRESH MATERIALIZED VIEW " + relsTextOr(targets, "") + " without CONCURRENTLY: readers of the view wait for the whole rebuild",
			detail: lockDetail(AccessExclusive, one(rel), " for the whole rebuild"),
			hint:   lines(hint, "-- needs a unique index on the materialized view; takes EXCLUSIVE, so reads continue"),
		})
	}
}

func relsTextOr(rels []RelName, def string) string {
	if len(rels) == 0 {
		return def
	}
	return relsText(rels)
}
