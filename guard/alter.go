package guard

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// This file maps ALTER TABLE (and ALTER INDEX, VIEW, MATERIALIZED VIEW,
// SEQUENCE, FOREIGN TABLE, which share its parse node). The lock level of
// each subcommand follows tablecmds.c's AlterTableGetLockLevel; the
// strongest level across the subcommands is taken on the table.

// alterCtx is the state of one ALTER TABLE statement.
type alterCtx struct {
	rel   RelName
	only  bool // ALTER TABLE ONLY
	index bool // ALTER INDEX
}

func (b *builder) alterTable(s *pg.AlterTableStmt) {
	st := &b.st
	st.Class = ClassDDL
	word := objectTypeWord(s.Objtype)
	st.Tag = "ALTER " + word
	if s.Relation == nil {
		return
	}
	ac := &alterCtx{
		rel:   b.rel(s.Relation),
		only:  !s.Relation.Inh,
		index: s.Objtype == pg.ObjectType_OBJECT_INDEX,
	}
	role := RoleTarget
	if ac.index {
		role = RoleIndex
	}
	var mode LockMode
	var recurseMode LockMode
	for _, n := range s.Cmds {
		cmd := n.GetAlterTableCmd()
		if cmd == nil {
			continue
		}
		m, recurse := b.alterCmd(ac, cmd)
		if m > mode {
			mode = m
		}
		if recurse && m > recurseMode {
			recurseMode = m
		}
	}
	b.lockFirst(ac.rel, mode, role)
	if recurseMode != NoLock && !ac.only && !ac.index {
		b.lockDescendants(ac.rel, recurseMode, false)
	}
}

// lockFirst records the statement's lock on its own relation ahead of the
// locks subcommands added on other relations, so that Locks lists the
// target first.
func (b *builder) lockFirst(rel RelName, mode LockMode, role Role) {
	if mode == NoLock {
		return
	}
	if b.has(rel) {
		b.lock(rel, mode, role, "", false)
		return
	}
	b.lock(rel, mode, role, "", false)
	n := len(b.st.Locks)
	if n > 1 {
		last := b.st.Locks[n-1]
		copy(b.st.Locks[1:], b.st.Locks[:n-1])
		b.st.Locks[0] = last
		for i, l := range b.st.Locks {
			b.idx[l.Rel] = i
		}
	}
}

// alterCmd returns the lock level of one subcommand on the altered relation
// and whether the subcommand recurses to partitions and inheritance
// children; it records any lock on other relations itself.
func (b *builder) alterCmd(ac *alterCtx, cmd *pg.AlterTableCmd) (LockMode, bool) {
	st := &b.st
	name := func(s string) { b.sub(s) }
	switch cmd.Subtype {
	case pg.AlterTableType_AT_AddColumn, pg.AlterTableType_AT_AddColumnToView:
		name("ADD COLUMN")
		if cd := cmd.Def.GetColumnDef(); cd != nil {
			b.addColumn(ac, cd)
		}
		return AccessExclusive, true
	case pg.AlterTableType_AT_ColumnDefault, pg.AlterTableType_AT_CookedColumnDefault:
		if cmd.Def == nil {
			name("DROP DEFAULT")
		} else {
			name("SET DEFAULT")
		}
		return AccessExclusive, true
	case pg.AlterTableType_AT_DropNotNull:
		name("DROP NOT NULL")
		return AccessExclusive, true
	case pg.AlterTableType_AT_SetNotNull:
		name("SET NOT NULL")
		st.Scan = true
		b.note("SET NOT NULL scans the table under ACCESS EXCLUSIVE unless a valid CHECK (col IS NOT NULL) constraint proves it")
		return AccessExclusive, true
	case pg.AlterTableType_AT_SetExpression:
		name("SET EXPRESSION")
		st.Rewrite = true
		return AccessExclusive, true
	case pg.AlterTableType_AT_DropExpression:
		name("DROP EXPRESSION")
		return AccessExclusive, true
	case pg.AlterTableType_AT_CheckNotNull:
		return AccessShare, true
	case pg.AlterTableType_AT_SetStatistics:
		name("SET STATISTICS")
		return ShareUpdateExclusive, true
	case pg.AlterTableType_AT_SetOptions:
		name("SET (attribute_option)")
		return ShareUpdateExclusive, true
	case pg.AlterTableType_AT_ResetOptions:
		name("RESET (attribute_option)")
		return ShareUpdateExclusive, true
	case pg.AlterTableType_AT_SetStorage:
		name("SET STORAGE")
		return AccessExclusive, true
	case pg.AlterTableType_AT_SetCompression:
		name("SET COMPRESSION")
		return AccessExclusive, true
	case pg.AlterTableType_AT_DropColumn:
		name("DROP COLUMN")
		b.dropColumn(ac, cmd)
		return AccessExclusive, true
	case pg.AlterTableType_AT_AddIndex, pg.AlterTableType_AT_ReAddIndex:
		name("ADD INDEX")
		st.Scan = true
		return AccessExclusive, false
	case pg.AlterTableType_AT_AddConstraint, pg.AlterTableType_AT_ReAddConstraint, pg.AlterTableType_AT_ReAddDomainConstraint:
		return b.addConstraint(ac, cmd.Def.GetConstraint())
	case pg.AlterTableType_AT_AlterConstraint:
		name("ALTER CONSTRAINT")
		return AccessExclusive, false
	case pg.AlterTableType_AT_ValidateConstraint:
		name("VALIDATE CONSTRAINT")
		b.validateConstraint(ac, cmd.Name)
		return ShareUpdateExclusive, true
	case pg.AlterTableType_AT_AddIndexConstraint:
		name("ADD CONSTRAINT USING INDEX")
		return AccessExclusive, false
	case pg.AlterTableType_AT_DropConstraint:
		name("DROP CONSTRAINT")
		b.dropConstraint(ac, cmd)
		return AccessExclusive, true
	case pg.AlterTableType_AT_AlterColumnType:
		name("ALTER COLUMN TYPE")
		b.alterColumnType(ac, cmd)
		return AccessExclusive, true
	case pg.AlterTableType_AT_AlterColumnGenericOptions:
		name("ALTER COLUMN OPTIONS")
		return AccessExclusive, false
	case pg.AlterTableType_AT_ChangeOwner:
		name("OWNER TO")
		return AccessExclusive, false
	case pg.AlterTableType_AT_ClusterOn:
		name("CLUSTER ON")
		return ShareUpdateExclusive, false
	case pg.AlterTableType_AT_DropCluster:
		name("SET WITHOUT CLUSTER")
		return ShareUpdateExclusive, false
	case pg.AlterTableType_AT_SetLogged:
		name("SET LOGGED")
		st.Rewrite = true
		return AccessExclusive, false
	case pg.AlterTableType_AT_SetUnLogged:
		name("SET UNLOGGED")
		st.Rewrite = true
		return AccessExclusive, false
	case pg.AlterTableType_AT_DropOids:
		name("SET WITHOUT OIDS")
		return AccessExclusive, true
	case pg.AlterTableType_AT_SetAccessMethod:
		name("SET ACCESS METHOD")
		st.Rewrite = true
		return AccessExclusive, false
	case pg.AlterTableType_AT_SetTableSpace:
		name("SET TABLESPACE")
		if !ac.index && !b.isPartitioned(ac.rel) {
			st.Rewrite = true // the table is copied to the new tablespace
		}
		return AccessExclusive, false
	case pg.AlterTableType_AT_SetRelOptions, pg.AlterTableType_AT_ResetRelOptions:
		verb := "SET"
		if cmd.Subtype == pg.AlterTableType_AT_ResetRelOptions {
			verb = "RESET"
		}
		names := defNames(cmd.Def)
		name(verb + " (" + strings.Join(names, ", ") + ")")
		return relOptionsLockLevel(names), false
	case pg.AlterTableType_AT_ReplaceRelOptions:
		name("REPLACE OPTIONS")
		return AccessExclusive, false
	case pg.AlterTableType_AT_EnableTrig, pg.AlterTableType_AT_EnableAlwaysTrig, pg.AlterTableType_AT_EnableReplicaTrig,
		pg.AlterTableType_AT_EnableTrigAll, pg.AlterTableType_AT_EnableTrigUser:
		name("ENABLE TRIGGER")
		return ShareRowExclusive, false
	case pg.AlterTableType_AT_DisableTrig, pg.AlterTableType_AT_DisableTrigAll, pg.AlterTableType_AT_DisableTrigUser:
		name("DISABLE TRIGGER")
		return ShareRowExclusive, false
	case pg.AlterTableType_AT_EnableRule, pg.AlterTableType_AT_EnableAlwaysRule, pg.AlterTableType_AT_EnableReplicaRule:
		name("ENABLE RULE")
		return AccessExclusive, false
	case pg.AlterTableType_AT_DisableRule:
		name("DISABLE RULE")
		return AccessExclusive, false
	case pg.AlterTableType_AT_AddInherit:
		name("INHERIT")
		if rv := cmd.Def.GetRangeVar(); rv != nil {
			b.lock(b.rel(rv), ShareUpdateExclusive, RolePartitionParent, "", false)
		}
		return AccessExclusive, false
	case pg.AlterTableType_AT_DropInherit:
		name("NO INHERIT")
		if rv := cmd.Def.GetRangeVar(); rv != nil {
			b.lock(b.rel(rv), AccessShare, RolePartitionParent, "", false)
		}
		return AccessExclusive, false
	case pg.AlterTableType_AT_AddOf:
		name("OF")
		return AccessExclusive, false
	case pg.AlterTableType_AT_DropOf:
		name("NOT OF")
		return AccessExclusive, false
	case pg.AlterTableType_AT_ReplicaIdentity:
		name("REPLICA IDENTITY")
		return AccessExclusive, false
	case pg.AlterTableType_AT_EnableRowSecurity:
		name("ENABLE ROW LEVEL SECURITY")
		return AccessExclusive, false
	case pg.AlterTableType_AT_DisableRowSecurity:
		name("DISABLE ROW LEVEL SECURITY")
		return AccessExclusive, false
	case pg.AlterTableType_AT_ForceRowSecurity:
		name("FORCE ROW LEVEL SECURITY")
		return AccessExclusive, false
	case pg.AlterTableType_AT_NoForceRowSecurity:
		name("NO FORCE ROW LEVEL SECURITY")
		return AccessExclusive, false
	case pg.AlterTableType_AT_GenericOptions:
		name("OPTIONS")
		return AccessExclusive, false
	case pg.AlterTableType_AT_AttachPartition:
		return b.attachPartition(ac, cmd.Def.GetPartitionCmd())
	case pg.AlterTableType_AT_DetachPartition:
		return b.detachPartition(ac, cmd.Def.GetPartitionCmd())
	case pg.AlterTableType_AT_DetachPartitionFinalize:
		name("DETACH PARTITION FINALIZE")
		if pc := cmd.Def.GetPartitionCmd(); pc != nil && pc.Name != nil {
			b.lock(b.rel(pc.Name), ShareUpdateExclusive, RolePartition, "", false)
		}
		return ShareUpdateExclusive, false
	case pg.AlterTableType_AT_AddIdentity:
		name("ADD IDENTITY")
		return AccessExclusive, true
	case pg.AlterTableType_AT_SetIdentity:
		name("SET IDENTITY")
		return AccessExclusive, true
	case pg.AlterTableType_AT_DropIdentity:
		name("DROP IDENTITY")
		return AccessExclusive, true
	case pg.AlterTableType_AT_ReAddStatistics:
		return AccessExclusive, false
	}
	name(strings.TrimPrefix(cmd.Subtype.String(), "AT_"))
	return AccessExclusive, false
}

func defNames(n *pg.Node) []string {
	var out []string
	if l := n.GetList(); l != nil {
		for _, it := range l.Items {
			if d := it.GetDefElem(); d != nil {
				name := d.Defname
				if d.Defnamespace != "" {
					name = d.Defnamespace + "." + name
				}
				out = append(out, name)
			}
		}
	}
	return out
}

// relOptionsLockLevel is AlterTableGetRelOptionsLockLevel: the strongest
// level among the storage parameters set. Parameters that only steer
// maintenance and the planner take SHARE UPDATE EXCLUSIVE; the rest (and
// unknown ones) ACCESS EXCLUSIVE.
func relOptionsLockLevel(names []string) LockMode {
	if len(names) == 0 {
		return AccessExclusive
	}
	mode := NoLock
	for _, n := range names {
		m := AccessExclusive
		base := n
		if i := strings.IndexByte(n, '.'); i >= 0 {
			base = n[i+1:]
		}
		switch {
		case base == "fillfactor", base == "parallel_workers", base == "toast_tuple_target",
			base == "vacuum_index_cleanup", base == "vacuum_truncate", base == "log_autovacuum_min_duration",
			strings.HasPrefix(base, "autovacuum_"),
			// index storage parameters
			base == "deduplicate_items", base == "fastupdate", base == "gin_pending_list_limit",
			base == "pages_per_range", base == "autosummarize":
			m = ShareUpdateExclusive
		}
		if m > mode {
			mode = m
		}
	}
	return mode
}

// addColumn works out whether ADD COLUMN rewrites the table and what its
// inline constraints lock.
func (b *builder) addColumn(ac *alterCtx, cd *pg.ColumnDef) {
	st := &b.st
	if cd.TypeName != nil {
		tn := strs(cd.TypeName.Names)
		if len(tn) > 0 {
			switch strings.ToLower(tn[len(tn)-1]) {
			case "serial", "bigserial", "smallserial", "serial2", "serial4", "serial8":
				st.Rewrite = true
				b.sub("ADD COLUMN serial")
			}
		}
	}
	if cd.Identity != "" {
		st.Rewrite = true
	}
	if cd.RawDefault != nil {
		b.checkDefaultVolatility(cd.RawDefault)
	}
	for _, n := range cd.Constraints {
		c := n.GetConstraint()
		if c == nil {
			continue
		}
		switch c.Contype {
		case pg.ConstrType_CONSTR_DEFAULT:
			b.checkDefaultVolatility(c.RawExpr)
		case pg.ConstrType_CONSTR_IDENTITY:
			st.Rewrite = true
			b.sub("ADD COLUMN identity")
		case pg.ConstrType_CONSTR_GENERATED:
			// STORED generated columns are computed for every row.
			st.Rewrite = true
			b.sub("ADD COLUMN generated")
		case pg.ConstrType_CONSTR_PRIMARY, pg.ConstrType_CONSTR_UNIQUE, pg.ConstrType_CONSTR_EXCLUSION:
			st.Scan = true
			b.sub("ADD COLUMN " + constraintWord(c.Contype))
		case pg.ConstrType_CONSTR_CHECK:
			if !c.SkipValidation {
				st.Scan = true
			}
		case pg.ConstrType_CONSTR_FOREIGN:
			if c.Pktable != nil {
				ref := b.rel(c.Pktable)
				b.sub("ADD COLUMN REFERENCES")
				if ref != ac.rel {
					b.lock(ref, ShareRowExclusive, RoleReferenced, "", false)
				}
			}
		}
	}
}

// volatileBuiltins are volatile functions a default commonly calls; a
// column added with such a default is filled row by row (table rewrite).
var volatileBuiltins = map[string]bool{
	"random": true, "clock_timestamp": true, "timeofday": true, "gen_random_uuid": true,
	"uuid_generate_v1": true, "uuid_generate_v1mc": true, "uuid_generate_v4": true, "uuidv4": true, "uuidv7": true,
	"nextval": true, "setval": true, "currval": true, "lastval": true, "txid_current": true,
	"random_normal": true, "gen_random_bytes": true, "statement_timestamp": false,
	"now": false, "transaction_timestamp": false, "current_timestamp": false,
	"current_date": false, "localtimestamp": false,
}

// checkDefaultVolatility sets Rewrite when a default expression calls a
// volatile function (PG 11+ stores non-volatile defaults without a rewrite).
func (b *builder) checkDefaultVolatility(expr *pg.Node) {
	if expr == nil {
		return
	}
	var calls []string
	collectFuncCalls(expr, &calls, 0)
	for _, fn := range calls {
		base := fn
		if i := strings.LastIndexByte(fn, '.'); i >= 0 {
			base = fn[i+1:]
		}
		if b.cat != nil {
			if v, ok := b.cat.FunctionVolatility(fn); ok {
				if v == Volatile {
					b.st.Rewrite = true
					b.sub("ADD COLUMN DEFAULT volatile")
				}
				continue
			}
		}
		if vol, known := volatileBuiltins[base]; known {
			if vol {
				b.st.Rewrite = true
				b.sub("ADD COLUMN DEFAULT volatile")
			}
			continue
		}
		b.unknown("the volatility of " + fn + "() (a volatile DEFAULT rewrites the table)")
	}
}

func collectFuncCalls(n *pg.Node, out *[]string, depth int) {
	if n == nil || depth > maxDepth {
		return
	}
	switch v := n.GetNode().(type) {
	case *pg.Node_FuncCall:
		*out = append(*out, strings.Join(strs(v.FuncCall.Funcname), "."))
		for _, a := range v.FuncCall.Args {
			collectFuncCalls(a, out, depth+1)
		}
	case *pg.Node_TypeCast:
		collectFuncCalls(v.TypeCast.Arg, out, depth+1)
	case *pg.Node_AExpr:
		collectFuncCalls(v.AExpr.Lexpr, out, depth+1)
		collectFuncCalls(v.AExpr.Rexpr, out, depth+1)
	case *pg.Node_CoalesceExpr:
		for _, a := range v.CoalesceExpr.Args {
			collectFuncCalls(a, out, depth+1)
		}
	case *pg.Node_CaseExpr:
		collectFuncCalls(v.CaseExpr.Arg, out, depth+1)
		collectFuncCalls(v.CaseExpr.Defresult, out, depth+1)
		for _, w := range v.CaseExpr.Args {
			if cw := w.GetCaseWhen(); cw != nil {
				collectFuncCalls(cw.Expr, out, depth+1)
				collectFuncCalls(cw.Result, out, depth+1)
			}
		}
	case *pg.Node_BoolExpr:
		for _, a := range v.BoolExpr.Args {
			collectFuncCalls(a, out, depth+1)
		}
	case *pg.Node_SubLink:
		*out = append(*out, "(subquery)")
	}
}

func constraintWord(t pg.ConstrType) string {
	switch t {
	case pg.ConstrType_CONSTR_PRIMARY:
		return "PRIMARY KEY"
	case pg.ConstrType_CONSTR_UNIQUE:
		return "UNIQUE"
	case pg.ConstrType_CONSTR_EXCLUSION:
		return "EXCLUDE"
	case pg.ConstrType_CONSTR_CHECK:
		return "CHECK"
	case pg.ConstrType_CONSTR_FOREIGN:
		return "FOREIGN KEY"
	case pg.ConstrType_CONSTR_NOTNULL:
		return "NOT NULL"
	}
	return strings.TrimPrefix(t.String(), "CONSTR_")
}

func (b *builder) addConstraint(ac *alterCtx, c *pg.Constraint) (LockMode, bool) {
	st := &b.st
	if c == nil {
		b.sub("ADD CONSTRAINT")
		return AccessExclusive, true
	}
	word := constraintWord(c.Contype)
	suffix := ""
	if c.SkipValidation {
		suffix = " NOT VALID"
	}
	switch c.Contype {
	case pg.ConstrType_CONSTR_FOREIGN:
		// Adding a foreign key creates triggers on both tables: SHARE ROW
		// EXCLUSIVE on each, held while the referencing table is scanned
		// (unless NOT VALID).
		b.sub("ADD CONSTRAINT FOREIGN KEY" + suffix)
		if !c.SkipValidation {
			st.Scan = true
		}
		if c.Pktable != nil {
			ref := b.rel(c.Pktable)
			if ref != ac.rel {
				b.lock(ref, ShareRowExclusive, RoleReferenced, "", false)
				if b.isPartitioned(ref) {
					b.lockDescendants(ref, ShareRowExclusive, false)
				}
			}
		}
		return ShareRowExclusive, true
	case pg.ConstrType_CONSTR_CHECK:
		b.sub("ADD CONSTRAINT CHECK" + suffix)
		if !c.SkipValidation {
			st.Scan = true
		}
		return AccessExclusive, !c.IsNoInherit
	case pg.ConstrType_CONSTR_PRIMARY, pg.ConstrType_CONSTR_UNIQUE, pg.ConstrType_CONSTR_EXCLUSION:
		if c.Indexname != "" {
			b.sub("ADD CONSTRAINT " + word + " USING INDEX")
			if c.Contype == pg.ConstrType_CONSTR_PRIMARY {
				b.note("ADD PRIMARY KEY USING INDEX scans the table for NULLs unless its columns are already NOT NULL")
			}
			return AccessExclusive, false
		}
		b.sub("ADD CONSTRAINT " + word)
		st.Scan = true
		return AccessExclusive, true
	case pg.ConstrType_CONSTR_NOTNULL:
		b.sub("ADD CONSTRAINT NOT NULL" + suffix)
		if !c.SkipValidation {
			st.Scan = true
		}
		return AccessExclusive, true
	}
	b.sub("ADD CONSTRAINT " + word)
	return AccessExclusive, true
}

func (b *builder) validateConstraint(ac *alterCtx, name string) {
	st := &b.st
	if b.cat == nil {
		st.Scan = true
		b.unknown("whether constraint " + name + " is a foreign key (VALIDATE then locks the referenced table ROW SHARE)")
		return
	}
	c, ok := b.constraintNamed(ac.rel, name)
	if !ok {
		st.Scan = true
		b.unknown("constraint " + name + " on " + ac.rel.String() + " not found in the catalog")
		return
	}
	if c.Validated {
		b.note("constraint " + name + " is already valid: VALIDATE does nothing")
		return
	}
	st.Scan = true
	if c.Type == ConstraintForeignKey && c.RefTable != ac.rel {
		b.lock(c.RefTable, RowShare, RoleReferenced, "", false)
	}
}

// dropConstraint: dropping a foreign key drops its triggers on the
// referenced table too, which takes ACCESS EXCLUSIVE there — the lock behind
// lockguard's founding incident. Dropping a key that foreign keys depend on
// (with CASCADE) drops those, locking their tables the same way.
func (b *builder) dropConstraint(ac *alterCtx, cmd *pg.AlterTableCmd) {
	if b.cat == nil {
		b.unknown("whether constraint " + cmd.Name + " is a foreign key (dropping one locks the other table ACCESS EXCLUSIVE too)")
		return
	}
	c, ok := b.constraintNamed(ac.rel, cmd.Name)
	if !ok {
		if !cmd.MissingOk {
			b.unknown("constraint " + cmd.Name + " on " + ac.rel.String() + " not found in the catalog")
		}
		return
	}
	switch c.Type {
	case ConstraintForeignKey:
		b.st.Subcommands[len(b.st.Subcommands)-1] = "DROP CONSTRAINT FOREIGN KEY"
		if c.RefTable != ac.rel {
			b.lock(c.RefTable, AccessExclusive, RoleReferenced, "", false)
		}
	case ConstraintPrimaryKey, ConstraintUnique:
		if cmd.Behavior != pg.DropBehavior_DROP_CASCADE {
			return
		}
		for _, fk := range b.referencedBy(ac.rel) {
			if sameColumns(fk.RefColumns, c.Columns) {
				b.lock(fk.Table, AccessExclusive, RoleCascaded, "", false)
			}
		}
	}
}

func sameColumns(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !contains(b, x) {
			return false
		}
	}
	return true
}

// dropColumn: a foreign key that uses the column is dropped with it, locking
// the other table ACCESS EXCLUSIVE.
func (b *builder) dropColumn(ac *alterCtx, cmd *pg.AlterTableCmd) {
	if b.cat == nil {
		b.unknown("whether column " + cmd.Name + " is part of a foreign key (dropping it locks the other table ACCESS EXCLUSIVE)")
		return
	}
	for _, c := range b.foreignKeys(ac.rel) {
		if contains(c.Columns, cmd.Name) && c.RefTable != ac.rel {
			b.lock(c.RefTable, AccessExclusive, RoleReferenced, "", false)
		}
	}
	if cmd.Behavior == pg.DropBehavior_DROP_CASCADE {
		for _, c := range b.referencedBy(ac.rel) {
			if contains(c.RefColumns, cmd.Name) {
				b.lock(c.Table, AccessExclusive, RoleCascaded, "", false)
			}
		}
		b.unknown("CASCADE also drops, and locks ACCESS EXCLUSIVE, views that use the column")
	}
}

// alterColumnType: the table is rewritten unless the new type is
// binary-coercible; foreign keys on the column are rebuilt.
func (b *builder) alterColumnType(ac *alterCtx, cmd *pg.AlterTableCmd) {
	st := &b.st
	st.Rewrite = true
	b.note("ALTER COLUMN TYPE rewrites the table and rebuilds its indexes unless the old type is binary-coercible to the new one (e.g. varchar(n) → varchar(m>n) or text)")
	if b.cat == nil {
		b.unknown("whether column " + cmd.Name + " is part of a foreign key (its other table is then locked too)")
		return
	}
	for _, c := range b.foreignKeys(ac.rel) {
		if contains(c.Columns, cmd.Name) && c.RefTable != ac.rel {
			b.lock(c.RefTable, AccessExclusive, RoleReferenced, "", false)
		}
	}
	for _, c := range b.referencedBy(ac.rel) {
		if contains(c.RefColumns, cmd.Name) {
			b.lock(c.Table, AccessExclusive, RoleReferenced, "", false)
		}
	}
}

// attachPartition: SHARE UPDATE EXCLUSIVE on the parent (PG 12+), ACCESS
// EXCLUSIVE on the table attached and on the default partition, both
// scanned unless a constraint proves the bound.
func (b *builder) attachPartition(ac *alterCtx, pc *pg.PartitionCmd) (LockMode, bool) {
	st := &b.st
	b.sub("ATTACH PARTITION")
	if pc == nil || pc.Name == nil {
		return ShareUpdateExclusive, false
	}
	part := b.rel(pc.Name)
	if ac.index {
		// ALTER INDEX … ATTACH PARTITION: SHARE UPDATE EXCLUSIVE on the
		// parent index, ACCESS EXCLUSIVE on the attached one and ACCESS
		// SHARE on both tables (pg_locks).
		b.lock(part, AccessExclusive, RoleIndex, "", false)
		for _, idx := range []RelName{ac.rel, part} {
			if info, ok := b.info(idx); ok && info.Table.Name != "" {
				b.lock(info.Table, AccessShare, RoleIndexTable, idx.String(), false)
			} else {
				b.unknown("the table of index " + idx.String() + " (locked ACCESS SHARE)")
			}
		}
		return ShareUpdateExclusive, false
	}
	st.Scan = true
	b.lock(part, AccessExclusive, RolePartition, "", false)
	b.lockDescendants(part, AccessExclusive, false)
	if def, ok := b.defaultPartition(ac.rel); ok {
		b.lock(def, AccessExclusive, RolePartition, "", false)
	} else if b.cat == nil {
		b.unknown("whether " + ac.rel.String() + " has a default partition (locked ACCESS EXCLUSIVE and scanned)")
	}
	b.inheritedForeignKeys(ac.rel)
	b.referencingPartitionFKs(ac.rel, ShareRowExclusive)
	mode := ShareUpdateExclusive
	if v := b.serverVersion(); v > 0 && v < 120000 {
		mode = AccessExclusive
	}
	return mode, false
}

// referencingPartitionFKs locks, in mode, the tables whose foreign keys
// reference the partitioned table parent: attaching or creating a partition
// adds a clone of each such key pointing at it (SHARE ROW EXCLUSIVE),
// detaching one drops it (ACCESS EXCLUSIVE).
func (b *builder) referencingPartitionFKs(parent RelName, mode LockMode) {
	for _, c := range b.referencedBy(parent) {
		b.lock(c.Table, mode, RoleReferenced, "", false)
	}
}

// detachPartition: ACCESS EXCLUSIVE on the parent and the partition (and the
// default partition). CONCURRENTLY runs as two transactions, so not in a
// transaction block: the first takes SHARE UPDATE EXCLUSIVE on both, the
// second SHARE UPDATE EXCLUSIVE on the parent and ACCESS EXCLUSIVE on the
// partition (pg_locks shows it waiting for that behind a reader of the
// partition), so the partition's strongest mode is ACCESS EXCLUSIVE.
func (b *builder) detachPartition(ac *alterCtx, pc *pg.PartitionCmd) (LockMode, bool) {
	st := &b.st
	mode := AccessExclusive
	if pc != nil && pc.Concurrent {
		b.sub("DETACH PARTITION CONCURRENTLY")
		st.Concurrently, st.NoTxBlock = true, true
		mode = ShareUpdateExclusive
	} else {
		b.sub("DETACH PARTITION")
	}
	if pc == nil || pc.Name == nil {
		return mode, false
	}
	part := b.rel(pc.Name)
	b.lock(part, AccessExclusive, RolePartition, "", false)
	// The partition keeps a standalone copy of each of the parent's foreign
	// keys, whose new triggers lock the referenced table SHARE ROW
	// EXCLUSIVE (pg_locks; the reference did not list it).
	for _, c := range b.foreignKeys(ac.rel) {
		b.lock(c.RefTable, ShareRowExclusive, RoleReferenced, "", false)
	}
	// A table whose foreign key references the parent loses the clone of
	// that key which points at the partition: ACCESS EXCLUSIVE there
	// (pg_locks; the reference said SHARE).
	b.referencingPartitionFKs(ac.rel, AccessExclusive)
	if !st.Concurrently {
		if def, ok := b.defaultPartition(ac.rel); ok {
			b.lock(def, AccessExclusive, RolePartition, "", false)
		} else if b.cat == nil {
			b.unknown("whether " + ac.rel.String() + " has a default partition (locked ACCESS EXCLUSIVE)")
		}
	}
	return mode, false
}
