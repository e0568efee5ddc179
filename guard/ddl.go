package guard

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// This file maps DDL and maintenance statements other than ALTER TABLE.

func (b *builder) vacuumStmt(s *pg.VacuumStmt) {
	st := &b.st
	st.Class = ClassMaintenance
	full, analyze := false, !s.IsVacuumcmd
	for _, o := range s.Options {
		if d := o.GetDefElem(); d != nil {
			switch d.Defname {
			case "full":
				full = defElemBool(d)
			case "analyze":
				analyze = defElemBool(d)
			}
		}
	}
	mode := ShareUpdateExclusive
	if s.IsVacuumcmd {
		st.Tag = "VACUUM"
		st.NoTxBlock = true
		if full {
			st.Subcommands = append(st.Subcommands, "FULL")
			mode = AccessExclusive
			st.Rewrite = true
		}
		if analyze {
			st.Subcommands = append(st.Subcommands, "ANALYZE")
		}
	} else {
		st.Tag = "ANALYZE"
	}
	st.Scan = true
	if len(s.Rels) == 0 {
		b.unknown(st.Tag + " without a table list processes every table in the database, one at a time")
		return
	}
	for _, r := range s.Rels {
		vr := r.GetVacuumRelation()
		if vr == nil || vr.Relation == nil {
			continue
		}
		rel := b.rel(vr.Relation)
		b.lock(rel, mode, RoleTarget, "", false)
		// A partitioned table is processed partition by partition; VACUUM
		// and ANALYZE lock each one in turn (and ANALYZE of the parent
		// samples them all).
		if vr.Relation.Inh && b.isPartitioned(rel) {
			b.lockDescendants(rel, mode, false)
		}
	}
}

func (b *builder) clusterStmt(s *pg.ClusterStmt) {
	st := &b.st
	st.Tag, st.Class = "CLUSTER", ClassMaintenance
	if s.Relation == nil {
		st.NoTxBlock = true
		b.unknown("CLUSTER without a table re-clusters every previously clustered table, each ACCESS EXCLUSIVE")
		return
	}
	st.Rewrite, st.Scan = true, true
	rel := b.rel(s.Relation)
	b.lock(rel, AccessExclusive, RoleTarget, s.Indexname, false)
	if b.isPartitioned(rel) {
		st.NoTxBlock = true
		b.lockDescendants(rel, AccessExclusive, false)
	}
}

func (b *builder) reindexStmt(s *pg.ReindexStmt) {
	st := &b.st
	st.Tag, st.Class = "REINDEX", ClassMaintenance
	st.Scan = true
	for _, p := range s.Params {
		if d := p.GetDefElem(); d != nil && d.Defname == "concurrently" && defElemBool(d) {
			st.Concurrently = true
		}
	}
	tableMode, indexMode := Share, AccessExclusive
	if st.Concurrently {
		st.NoTxBlock = true
		tableMode, indexMode = ShareUpdateExclusive, ShareUpdateExclusive
		st.Subcommands = append(st.Subcommands, "CONCURRENTLY")
	}
	switch s.Kind {
	case pg.ReindexObjectType_REINDEX_OBJECT_INDEX:
		st.Subcommands = append(st.Subcommands, "INDEX")
		idx := b.rel(s.Relation)
		b.lock(idx, indexMode, RoleIndex, "", false)
		if !st.Concurrently {
			b.note("REINDEX holds ACCESS EXCLUSIVE on the index: queries whose planning considers it wait, so reads of the table stall too")
		}
		if info, ok := b.info(idx); ok && info.Table.Name != "" {
			b.lock(info.Table, tableMode, RoleIndexTable, idx.String(), false)
			if info.Kind == KindPartitionedIndex {
				st.NoTxBlock = true
			}
		} else {
			b.unknown("the table of index " + idx.String() + " (locked " + tableMode.String() + ")")
		}
	case pg.ReindexObjectType_REINDEX_OBJECT_TABLE:
		st.Subcommands = append(st.Subcommands, "TABLE")
		rel := b.rel(s.Relation)
		b.lock(rel, tableMode, RoleTarget, "", false)
		if b.isPartitioned(rel) {
			// Partitions are reindexed one per transaction.
			st.NoTxBlock = true
			b.lockDescendants(rel, tableMode, false)
		}
		if !st.Concurrently {
			b.note("REINDEX TABLE holds ACCESS EXCLUSIVE on each index while rebuilding it: queries whose planning considers them wait")
		}
	default:
		st.NoTxBlock = true
		b.unknown("REINDEX SCHEMA/DATABASE/SYSTEM processes every table, one transaction each")
	}
}

func (b *builder) refreshStmt(s *pg.RefreshMatViewStmt) {
	st := &b.st
	st.Tag, st.Class = "REFRESH MATERIALIZED VIEW", ClassMaintenance
	st.Scan = true
	mode := AccessExclusive
	if s.Concurrent {
		st.Concurrently = true
		st.Subcommands = append(st.Subcommands, "CONCURRENTLY")
		mode = Exclusive
	} else {
		st.Rewrite = true
	}
	rel := b.rel(s.Relation)
	b.lock(rel, mode, RoleTarget, "", false)
	if s.SkipData {
		return
	}
	info, ok := b.info(rel)
	if !ok {
		b.unknown("the relations " + rel.String() + " reads (ACCESS SHARE while it runs)")
		return
	}
	for _, r := range info.Reads {
		b.lock(r, AccessShare, RoleRead, "", false)
		b.expandRead(r, AccessShare, true)
	}
}

// createTable: REFERENCES takes SHARE ROW EXCLUSIVE on each referenced table
// (it adds triggers there); PARTITION OF takes ACCESS EXCLUSIVE on the
// parent and its default partition (which is scanned); INHERITS takes SHARE
// UPDATE EXCLUSIVE on each parent; LIKE reads its source.
func (b *builder) createTable(s *pg.CreateStmt) {
	st := &b.st
	st.Tag, st.Class = "CREATE TABLE", ClassDDL
	self := b.rel(s.Relation)
	for _, e := range s.TableElts {
		switch x := e.GetNode().(type) {
		case *pg.Node_ColumnDef:
			for _, c := range x.ColumnDef.Constraints {
				b.createConstraint(self, c.GetConstraint())
			}
		case *pg.Node_Constraint:
			b.createConstraint(self, x.Constraint)
		case *pg.Node_TableLikeClause:
			if rv := x.TableLikeClause.Relation; rv != nil {
				b.lock(b.rel(rv), AccessShare, RoleRead, "", false)
			}
		}
	}
	for _, c := range s.Constraints {
		b.createConstraint(self, c.GetConstraint())
	}
	for _, p := range s.InhRelations {
		rv := p.GetRangeVar()
		if rv == nil {
			continue
		}
		parent := b.rel(rv)
		if s.Partbound == nil {
			st.Subcommands = append(st.Subcommands, "INHERITS")
			b.lock(parent, ShareUpdateExclusive, RolePartitionParent, "", false)
			continue
		}
		st.Subcommands = append(st.Subcommands, "PARTITION OF")
		b.lock(parent, AccessExclusive, RolePartitionParent, "", false)
		if !s.Partbound.IsDefault {
			if def, ok := b.defaultPartition(parent); ok {
				// Rows of the default partition that belong to the new
				// partition are looked for, under ACCESS EXCLUSIVE.
				b.lock(def, AccessExclusive, RolePartition, "", false)
				st.Scan = true
			} else if b.cat == nil {
				b.unknown("whether " + parent.String() + " has a default partition (locked ACCESS EXCLUSIVE and scanned)")
			}
		}
		b.inheritedForeignKeys(parent)
		b.referencingPartitionFKs(parent, ShareRowExclusive)
	}
}

// inheritedForeignKeys: a new partition gets a clone of each foreign key of
// its parent, which locks the referenced table like ADD FOREIGN KEY.
func (b *builder) inheritedForeignKeys(parent RelName) {
	for _, c := range b.foreignKeys(parent) {
		b.lock(c.RefTable, ShareRowExclusive, RoleReferenced, "", false)
	}
}

func (b *builder) createConstraint(self RelName, c *pg.Constraint) {
	if c == nil || c.Contype != pg.ConstrType_CONSTR_FOREIGN || c.Pktable == nil {
		return
	}
	ref := b.rel(c.Pktable)
	if ref == self || c.Pktable.Schemaname == "" && c.Pktable.Relname == self.Name && self.Schema == "" {
		return
	}
	b.st.Subcommands = append(b.st.Subcommands, "REFERENCES "+ref.String())
	b.lock(ref, ShareRowExclusive, RoleReferenced, "", false)
}

func (b *builder) createTableAs(s *pg.CreateTableAsStmt) {
	st := &b.st
	st.Class = ClassDDL
	switch s.Objtype {
	case pg.ObjectType_OBJECT_MATVIEW:
		st.Tag = "CREATE MATERIALIZED VIEW"
	default:
		st.Tag = "CREATE TABLE AS"
		if s.IsSelectInto {
			st.Tag = "SELECT INTO"
		}
	}
	b.query(s.Query)
}

func (b *builder) createView(s *pg.ViewStmt) {
	st := &b.st
	st.Tag, st.Class = "CREATE VIEW", ClassDDL
	if s.Replace {
		// Replacing an existing view takes ACCESS EXCLUSIVE on it.
		if info, ok := b.info(rangeVarName(s.View)); ok {
			b.lock(info.Name, AccessExclusive, RoleTarget, "", false)
		} else if b.cat == nil {
			b.unknown("whether view " + rangeVarName(s.View).String() + " exists (OR REPLACE then locks it ACCESS EXCLUSIVE)")
		}
	}
	// CREATE VIEW only parse-analyses its query: the relations it names are
	// locked ACCESS SHARE, the views among them are not expanded (pg_locks).
	b.parseOnly = true
	b.query(s.Query)
	b.parseOnly = false
	b.dropExecOnly(false)
}

func (b *builder) createIndex(s *pg.IndexStmt) {
	st := &b.st
	st.Tag, st.Class = "CREATE INDEX", ClassDDL
	st.Scan = true
	mode := Share
	if s.Concurrent {
		st.Concurrently, st.NoTxBlock = true, true
		st.Subcommands = append(st.Subcommands, "CONCURRENTLY")
		mode = ShareUpdateExclusive
	}
	if s.Unique {
		st.Subcommands = append(st.Subcommands, "UNIQUE")
	}
	rel := b.rel(s.Relation)
	b.lock(rel, mode, RoleTarget, "", false)
	if s.Relation.Inh && b.isPartitioned(rel) {
		// An index on a partitioned table is built on every partition.
		b.lockDescendants(rel, mode, false)
	}
}

func (b *builder) createTrigger(s *pg.CreateTrigStmt) {
	st := &b.st
	st.Tag, st.Class = "CREATE TRIGGER", ClassDDL
	if s.Isconstraint {
		st.Tag = "CREATE CONSTRAINT TRIGGER"
	}
	rel := b.rel(s.Relation)
	b.lock(rel, ShareRowExclusive, RoleTarget, "", false)
	if b.isPartitioned(rel) {
		// A row trigger on a partitioned table is cloned to every partition.
		if s.Row {
			b.lockDescendants(rel, ShareRowExclusive, false)
		}
	}
	if s.Constrrel != nil {
		b.lock(b.rel(s.Constrrel), AccessShare, RoleReferenced, "", false)
	}
}

func (b *builder) commentStmt(s *pg.CommentStmt) {
	st := &b.st
	st.Tag, st.Class = "COMMENT", ClassDDL
	// COMMENT ON a relation or a column locks the relation SHARE UPDATE
	// EXCLUSIVE. COMMENT ON a constraint, trigger, policy or rule only
	// looks its table up with ACCESS SHARE (pg_locks; the reference said
	// SHARE UPDATE EXCLUSIVE for every COMMENT).
	parts := objectNames(s.Object)
	var rel RelName
	role, mode := RoleTarget, ShareUpdateExclusive
	switch s.Objtype {
	case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW,
		pg.ObjectType_OBJECT_FOREIGN_TABLE, pg.ObjectType_OBJECT_SEQUENCE:
		rel = relFromNames(parts)
	case pg.ObjectType_OBJECT_INDEX:
		rel, role = relFromNames(parts), RoleIndex
	case pg.ObjectType_OBJECT_COLUMN:
		if len(parts) >= 2 {
			rel = relFromNames(parts[:len(parts)-1])
		}
	case pg.ObjectType_OBJECT_TABCONSTRAINT, pg.ObjectType_OBJECT_TRIGGER,
		pg.ObjectType_OBJECT_POLICY, pg.ObjectType_OBJECT_RULE:
		mode = AccessShare
		if len(parts) >= 2 {
			rel = relFromNames(parts[:len(parts)-1])
		}
	default:
		// COMMENT ON STATISTICS locks only the statistics object, not its
		// table (pg_locks).
		return
	}
	b.lock(b.resolve(rel), mode, role, "", false)
}

// statisticsTable locks the table of an extended-statistics object, which
// only the catalog knows.
func (b *builder) statisticsTable(stat RelName, mode LockMode) {
	sc, ok := b.cat.(StatisticsCatalog)
	if ok {
		if t, found := sc.StatisticsTable(stat); found {
			b.lock(t, mode, RoleTarget, "", false)
			return
		}
	}
	b.unknown("the table of statistics object " + stat.String() + " (locked " + mode.String() + ")")
}

// objectNames returns the name parts of a COMMENT/DROP object node: a List
// of Strings, or a single String.
func objectNames(n *pg.Node) []string {
	switch v := n.GetNode().(type) {
	case *pg.Node_List:
		return strs(v.List.Items)
	case *pg.Node_String_:
		return []string{v.String_.Sval}
	case *pg.Node_TypeName:
		return strs(v.TypeName.Names)
	}
	return nil
}

func (b *builder) renameStmt(s *pg.RenameStmt) {
	st := &b.st
	st.Class = ClassDDL
	switch s.RenameType {
	case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW,
		pg.ObjectType_OBJECT_FOREIGN_TABLE, pg.ObjectType_OBJECT_SEQUENCE:
		st.Tag = "ALTER " + objectTypeWord(s.RenameType)
		st.Subcommands = append(st.Subcommands, "RENAME")
		b.lock(b.rel(s.Relation), AccessExclusive, RoleTarget, "", false)
	case pg.ObjectType_OBJECT_INDEX:
		st.Tag = "ALTER INDEX"
		st.Subcommands = append(st.Subcommands, "RENAME")
		// Lowered from ACCESS EXCLUSIVE to SHARE UPDATE EXCLUSIVE in PG 12.
		mode := ShareUpdateExclusive
		if v := b.serverVersion(); v > 0 && v < 120000 {
			mode = AccessExclusive
		}
		b.lock(b.rel(s.Relation), mode, RoleIndex, "", false)
	case pg.ObjectType_OBJECT_COLUMN:
		st.Tag = "ALTER " + objectTypeWord(s.RelationType)
		st.Subcommands = append(st.Subcommands, "RENAME COLUMN")
		rel := b.rel(s.Relation)
		b.lockWithDescendants(rel, AccessExclusive, RoleTarget, !s.Relation.Inh)
	case pg.ObjectType_OBJECT_TABCONSTRAINT:
		st.Tag = "ALTER TABLE"
		st.Subcommands = append(st.Subcommands, "RENAME CONSTRAINT")
		rel := b.rel(s.Relation)
		b.lockWithDescendants(rel, AccessExclusive, RoleTarget, !s.Relation.Inh)
	case pg.ObjectType_OBJECT_TRIGGER:
		st.Tag = "ALTER TRIGGER"
		rel := b.rel(s.Relation)
		b.lock(rel, AccessExclusive, RoleTarget, "", false)
		// Renaming a trigger on a partitioned table renames its clones.
		if b.isPartitioned(rel) {
			b.lockDescendants(rel, AccessExclusive, false)
		}
	case pg.ObjectType_OBJECT_POLICY:
		st.Tag = "ALTER POLICY"
		b.lock(b.rel(s.Relation), AccessExclusive, RoleTarget, "", false)
	case pg.ObjectType_OBJECT_RULE:
		st.Tag = "ALTER RULE"
		b.lock(b.rel(s.Relation), AccessExclusive, RoleTarget, "", false)
	default:
		st.Tag = "ALTER " + objectTypeWord(s.RenameType)
	}
}

func (b *builder) serverVersion() int {
	if b.cat == nil {
		return 0
	}
	return b.cat.ServerVersion()
}

func (b *builder) alterSchemaStmt(s *pg.AlterObjectSchemaStmt) {
	st := &b.st
	st.Class = ClassDDL
	st.Tag = "ALTER " + objectTypeWord(s.ObjectType)
	st.Subcommands = append(st.Subcommands, "SET SCHEMA")
	switch s.ObjectType {
	case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW,
		pg.ObjectType_OBJECT_FOREIGN_TABLE, pg.ObjectType_OBJECT_SEQUENCE:
		b.lock(b.rel(s.Relation), AccessExclusive, RoleTarget, "", false)
	}
}

func objectTypeWord(t pg.ObjectType) string {
	switch t {
	case pg.ObjectType_OBJECT_MATVIEW:
		return "MATERIALIZED VIEW"
	case pg.ObjectType_OBJECT_FOREIGN_TABLE:
		return "FOREIGN TABLE"
	case pg.ObjectType_OBJECT_TABCONSTRAINT:
		return "TABLE"
	case pg.ObjectType_OBJECT_STATISTIC_EXT:
		return "STATISTICS"
	case pg.ObjectType_OBJECT_FDW:
		return "FOREIGN DATA WRAPPER"
	case pg.ObjectType_OBJECT_FOREIGN_SERVER:
		return "SERVER"
	case pg.ObjectType_OBJECT_ACCESS_METHOD:
		return "ACCESS METHOD"
	case pg.ObjectType_OBJECT_EVENT_TRIGGER:
		return "EVENT TRIGGER"
	case pg.ObjectType_OBJECT_TSCONFIGURATION:
		return "TEXT SEARCH CONFIGURATION"
	case pg.ObjectType_OBJECT_TSDICTIONARY:
		return "TEXT SEARCH DICTIONARY"
	case pg.ObjectType_OBJECT_TSPARSER:
		return "TEXT SEARCH PARSER"
	case pg.ObjectType_OBJECT_TSTEMPLATE:
		return "TEXT SEARCH TEMPLATE"
	case pg.ObjectType_OBJECT_USER_MAPPING:
		return "USER MAPPING"
	case pg.ObjectType_OBJECT_LARGEOBJECT:
		return "LARGE OBJECT"
	case pg.ObjectType_OBJECT_OPCLASS:
		return "OPERATOR CLASS"
	case pg.ObjectType_OBJECT_OPFAMILY:
		return "OPERATOR FAMILY"
	}
	s := strings.TrimPrefix(t.String(), "OBJECT_")
	return strings.ReplaceAll(s, "_", " ")
}

func (b *builder) truncateStmt(s *pg.TruncateStmt) {
	st := &b.st
	st.Tag, st.Class = "TRUNCATE TABLE", ClassDDL
	cascade := s.Behavior == pg.DropBehavior_DROP_CASCADE
	if cascade {
		st.Subcommands = append(st.Subcommands, "CASCADE")
	}
	var queue []RelName
	for _, r := range s.Relations {
		rv := r.GetRangeVar()
		if rv == nil {
			continue
		}
		rel := b.rel(rv)
		b.lockWithDescendants(rel, AccessExclusive, RoleTarget, !rv.Inh)
		queue = append(queue, rel)
		if rv.Inh {
			for _, p := range b.partitions(rel) {
				queue = append(queue, p.Name)
			}
		}
	}
	if !cascade {
		return
	}
	if b.cat == nil {
		b.unknown("the tables that reference the truncated tables through foreign keys (CASCADE truncates them too, ACCESS EXCLUSIVE)")
		return
	}
	done := map[RelName]bool{}
	for len(queue) > 0 && b.enter() {
		rel := queue[0]
		queue = queue[1:]
		b.leave()
		if done[rel] {
			continue
		}
		done[rel] = true
		for _, c := range b.referencedBy(rel) {
			if !b.has(c.Table) {
				b.lock(c.Table, AccessExclusive, RoleCascaded, "", false)
				b.lockDescendants(c.Table, AccessExclusive, false)
			}
			queue = append(queue, c.Table)
		}
	}
}

func (b *builder) dropStmt(s *pg.DropStmt) {
	st := &b.st
	st.Class = ClassDDL
	st.Tag = "DROP " + objectTypeWord(s.RemoveType)
	cascade := s.Behavior == pg.DropBehavior_DROP_CASCADE
	if cascade {
		st.Subcommands = append(st.Subcommands, "CASCADE")
	}
	if s.Concurrent {
		st.Concurrently, st.NoTxBlock = true, true
		st.Subcommands = append(st.Subcommands, "CONCURRENTLY")
	}
	switch s.RemoveType {
	case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_FOREIGN_TABLE:
		var dropped []RelName
		for _, o := range s.Objects {
			rel := b.resolve(relFromNames(objectNames(o)))
			b.lock(rel, AccessExclusive, RoleTarget, "", false)
			dropped = append(dropped, rel)
			for _, p := range b.partitions(rel) {
				b.lock(p.Name, AccessExclusive, RolePartition, "", false)
				dropped = append(dropped, p.Name)
			}
		}
		b.dropTableDeps(dropped, cascade)
	case pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW, pg.ObjectType_OBJECT_SEQUENCE:
		var dropped []RelName
		for _, o := range s.Objects {
			rel := b.resolve(relFromNames(objectNames(o)))
			b.lock(rel, AccessExclusive, RoleTarget, "", false)
			dropped = append(dropped, rel)
		}
		if cascade {
			b.dropDependentViews(dropped)
		}
	case pg.ObjectType_OBJECT_INDEX:
		// DROP INDEX locks the table first (ACCESS EXCLUSIVE), then the
		// index; CONCURRENTLY takes SHARE UPDATE EXCLUSIVE on both, in every
		// phase (pg_locks; the reference suspected a final escalation on the
		// index, there is none), and waits for transactions that use the
		// index.
		mode := AccessExclusive
		if s.Concurrent {
			mode = ShareUpdateExclusive
		}
		for _, o := range s.Objects {
			idx := b.resolve(relFromNames(objectNames(o)))
			b.lock(idx, mode, RoleIndex, "", false)
			if info, ok := b.info(idx); ok && info.Table.Name != "" {
				b.lock(info.Table, mode, RoleIndexTable, idx.String(), false)
			} else {
				b.unknown("the table of index " + idx.String() + " (locked " + mode.String() + ")")
			}
		}
	case pg.ObjectType_OBJECT_TRIGGER, pg.ObjectType_OBJECT_RULE, pg.ObjectType_OBJECT_POLICY:
		for _, o := range s.Objects {
			parts := objectNames(o)
			if len(parts) < 2 {
				continue
			}
			rel := b.resolve(relFromNames(parts[:len(parts)-1]))
			b.lock(rel, AccessExclusive, RoleTarget, "", false)
			if s.RemoveType == pg.ObjectType_OBJECT_TRIGGER && b.isPartitioned(rel) {
				b.lockDescendants(rel, AccessExclusive, false)
			}
		}
	case pg.ObjectType_OBJECT_STATISTIC_EXT:
		for _, o := range s.Objects {
			b.statisticsTable(relFromNames(objectNames(o)), ShareUpdateExclusive)
		}
	case pg.ObjectType_OBJECT_SCHEMA:
		if cascade {
			b.unknown("DROP SCHEMA … CASCADE locks ACCESS EXCLUSIVE every relation in the schema and the tables whose foreign keys reference them")
		}
	case pg.ObjectType_OBJECT_TYPE, pg.ObjectType_OBJECT_DOMAIN, pg.ObjectType_OBJECT_FUNCTION,
		pg.ObjectType_OBJECT_PROCEDURE, pg.ObjectType_OBJECT_ROUTINE, pg.ObjectType_OBJECT_EXTENSION:
		if cascade {
			b.unknown("CASCADE also drops, and locks ACCESS EXCLUSIVE, the objects that depend on it")
		}
	}
}

// dropTableDeps adds what dropping tables locks besides the tables: the
// tables their foreign keys reference (the FK's triggers there are dropped)
// and, with CASCADE, the tables whose foreign keys reference them.
func (b *builder) dropTableDeps(dropped []RelName, cascade bool) {
	if b.cat == nil {
		b.unknown("the tables the dropped tables' foreign keys reference (locked ACCESS EXCLUSIVE)")
		if cascade {
			b.unknown("the tables whose foreign keys reference the dropped tables (CASCADE locks them ACCESS EXCLUSIVE)")
			b.dropDependentViews(dropped)
		}
		return
	}
	isDropped := map[RelName]bool{}
	for _, d := range dropped {
		isDropped[d] = true
	}
	for _, d := range dropped {
		for _, c := range b.foreignKeys(d) {
			if !isDropped[c.RefTable] {
				b.lock(c.RefTable, AccessExclusive, RoleReferenced, "", false)
			}
		}
		if !cascade {
			continue
		}
		for _, c := range b.referencedBy(d) {
			if !isDropped[c.Table] {
				b.lock(c.Table, AccessExclusive, RoleCascaded, "", false)
			}
		}
	}
	if cascade {
		b.dropDependentViews(dropped)
	}
}

// dropDependentViews: DROP … CASCADE drops, under ACCESS EXCLUSIVE, the
// views and materialized views built on the dropped relations, and the ones
// built on those.
func (b *builder) dropDependentViews(dropped []RelName) {
	if b.cat == nil {
		b.unknown("the views and materialized views built on the dropped relations (CASCADE drops them, ACCESS EXCLUSIVE)")
		return
	}
	queue := append([]RelName(nil), dropped...)
	done := map[RelName]bool{}
	for len(queue) > 0 && len(done) < 10000 {
		rel := queue[0]
		queue = queue[1:]
		if done[rel] {
			continue
		}
		done[rel] = true
		info, ok := b.info(rel)
		if !ok {
			continue
		}
		for _, d := range info.Dependents {
			b.lock(d, AccessExclusive, RoleCascaded, "", false)
			queue = append(queue, d)
		}
	}
}
