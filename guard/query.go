package guard

import (
	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// This file maps queries — SELECT and DML, and the queries inside other
// statements — to the relations they read and write.

// walk visits every node under m and analyses the queries found there
// (sublinks, subqueries in expressions).
func (b *builder) walk(m protoreflect.Message) {
	if !m.IsValid() {
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || fd.IsMap() {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				b.walkMsg(l.Get(i).Message())
			}
			return true
		}
		b.walkMsg(v.Message())
		return true
	})
}

func (b *builder) walkMsg(m protoreflect.Message) {
	if !b.enter() {
		return
	}
	defer b.leave()
	switch x := m.Interface().(type) {
	case *pg.Node:
		if x.GetNode() == nil {
			return
		}
	case *pg.SelectStmt:
		b.selectStmt(x, NoLock)
		return
	case *pg.InsertStmt:
		b.insert(x)
		return
	case *pg.UpdateStmt:
		b.update(x)
		return
	case *pg.DeleteStmt:
		b.delete(x)
		return
	case *pg.MergeStmt:
		b.merge(x)
		return
	case *pg.RangeVar:
		b.readRel(x, AccessShare)
		return
	}
	b.walk(m)
}

func (b *builder) walkNode(n *pg.Node) {
	if n != nil {
		b.walkMsg(n.ProtoReflect())
	}
}

func (b *builder) walkNodes(ns []*pg.Node) {
	for _, n := range ns {
		b.walkNode(n)
	}
}

// query analyses a query node: SELECT, INSERT, UPDATE, DELETE, MERGE, or
// anything else by walking it.
func (b *builder) query(n *pg.Node) {
	switch x := n.GetNode().(type) {
	case *pg.Node_SelectStmt:
		b.selectStmt(x.SelectStmt, NoLock)
	case *pg.Node_InsertStmt:
		b.insert(x.InsertStmt)
	case *pg.Node_UpdateStmt:
		b.update(x.UpdateStmt)
	case *pg.Node_DeleteStmt:
		b.delete(x.DeleteStmt)
	case *pg.Node_MergeStmt:
		b.merge(x.MergeStmt)
	default:
		b.walkNode(n)
	}
}

// pushCTEs brings the CTE names of w into scope and analyses their bodies.
// It returns the scope depth to restore.
func (b *builder) pushCTEs(w *pg.WithClause) int {
	mark := len(b.ctes)
	if w == nil {
		return mark
	}
	for _, n := range w.Ctes {
		if c := n.GetCommonTableExpr(); c != nil {
			b.ctes = append(b.ctes, c.Ctename)
		}
	}
	for _, n := range w.Ctes {
		if c := n.GetCommonTableExpr(); c != nil && c.Ctequery != nil {
			b.query(c.Ctequery)
		}
	}
	return mark
}

func (b *builder) isCTE(rv *pg.RangeVar) bool {
	if rv.Schemaname != "" || rv.Catalogname != "" {
		return false
	}
	for i := len(b.ctes) - 1; i >= 0; i-- {
		if b.ctes[i] == rv.Relname {
			return true
		}
	}
	return false
}

// selectStmt analyses a SELECT. inherited is the lock mode a locking clause
// of an outer query imposes on this one's FROM items (FOR UPDATE applies to
// subqueries in FROM).
func (b *builder) selectStmt(s *pg.SelectStmt, inherited LockMode) {
	if s == nil || !b.enter() {
		return
	}
	defer b.leave()
	mark := b.pushCTEs(s.WithClause)
	defer func() { b.ctes = b.ctes[:mark] }()

	if s.Op != pg.SetOperation_SETOP_NONE && s.Op != pg.SetOperation_SET_OPERATION_UNDEFINED {
		b.selectStmt(s.Larg, inherited)
		b.selectStmt(s.Rarg, inherited)
		b.walkNodes(s.SortClause)
		b.walkNode(s.LimitOffset)
		b.walkNode(s.LimitCount)
		return
	}
	all := inherited
	var named map[string]LockMode
	for _, n := range s.LockingClause {
		lc := n.GetLockingClause()
		if lc == nil {
			continue
		}
		// Every row-locking strength (FOR UPDATE, FOR NO KEY UPDATE, FOR
		// SHARE, FOR KEY SHARE) takes ROW SHARE on the table.
		if len(lc.LockedRels) == 0 {
			all = RowShare
			continue
		}
		for _, r := range lc.LockedRels {
			if rv := r.GetRangeVar(); rv != nil {
				if named == nil {
					named = map[string]LockMode{}
				}
				named[rv.Relname] = RowShare
			}
		}
	}
	for _, f := range s.FromClause {
		b.fromItem(f, all, named)
	}
	b.walkNodes(s.TargetList)
	b.walkNode(s.WhereClause)
	b.walkNodes(s.GroupClause)
	b.walkNode(s.HavingClause)
	b.walkNodes(s.WindowClause)
	b.walkNodes(s.DistinctClause)
	for _, v := range s.ValuesLists {
		b.walkNode(v)
	}
	b.walkNodes(s.SortClause)
	b.walkNode(s.LimitOffset)
	b.walkNode(s.LimitCount)
	b.settingsFromSelect(s)
}

// fromItem analyses one FROM-clause item read with at least mode all (or
// the named mode for its alias).
func (b *builder) fromItem(n *pg.Node, all LockMode, named map[string]LockMode) {
	if n == nil || !b.enter() {
		return
	}
	defer b.leave()
	modeFor := func(alias string) LockMode {
		m := AccessShare
		if all > m {
			m = all
		}
		if nm, ok := named[alias]; ok && nm > m {
			m = nm
		}
		return m
	}
	switch x := n.GetNode().(type) {
	case *pg.Node_RangeVar:
		rv := x.RangeVar
		alias := rv.Relname
		if rv.Alias != nil && rv.Alias.Aliasname != "" {
			alias = rv.Alias.Aliasname
		}
		b.readRel(rv, modeFor(alias))
	case *pg.Node_JoinExpr:
		b.fromItem(x.JoinExpr.Larg, all, named)
		b.fromItem(x.JoinExpr.Rarg, all, named)
		b.walkNode(x.JoinExpr.Quals)
	case *pg.Node_RangeSubselect:
		inh := all
		if x.RangeSubselect.Alias != nil {
			if nm, ok := named[x.RangeSubselect.Alias.Aliasname]; ok && nm > inh {
				inh = nm
			}
		}
		if sel := x.RangeSubselect.Subquery.GetSelectStmt(); sel != nil {
			b.selectStmt(sel, inh)
		} else {
			b.walkNode(x.RangeSubselect.Subquery)
		}
	case *pg.Node_RangeTableSample:
		b.fromItem(x.RangeTableSample.Relation, all, named)
		b.walkNodes(x.RangeTableSample.Args)
	default:
		b.walkNode(n)
	}
}

// readRel records a read of rv in mode, expanding partitions and views.
func (b *builder) readRel(rv *pg.RangeVar, mode LockMode) {
	if rv == nil || rv.Relname == "" || b.isCTE(rv) {
		return
	}
	rel := b.rel(rv)
	b.lock(rel, mode, RoleRead, "", false)
	b.expandRead(rel, mode, rv.Inh)
}

// expandRead adds what reading rel touches besides rel: its partitions or
// children (which plan-time pruning may skip) and the relations a view
// reads.
func (b *builder) expandRead(rel RelName, mode LockMode, inh bool) {
	info, ok := b.info(rel)
	if !ok || !b.enter() {
		return
	}
	defer b.leave()
	switch info.Kind {
	case KindView:
		if b.parseOnly {
			return
		}
		for _, r := range info.Reads {
			b.lock(r, mode, RoleRead, "", false)
			b.expandRead(r, mode, true)
		}
	case KindTable, KindPartitionedTable, KindForeignTable:
		if inh {
			b.lockDescendants(rel, mode, true)
		}
	}
}

// target records the target of a DML statement and returns the table whose
// foreign keys apply: the target itself, or the base table of an
// auto-updatable view.
func (b *builder) target(rv *pg.RangeVar, routing bool) RelName {
	rel := b.rel(rv)
	b.lock(rel, RowExclusive, RoleTarget, "", false)
	info, ok := b.info(rel)
	if ok && info.Kind == KindView {
		// An auto-updatable view writes its single base relation.
		if len(info.Reads) != 1 || !b.enter() {
			for _, r := range info.Reads {
				b.lock(r, RowExclusive, RoleRead, "", false)
			}
			return rel
		}
		defer b.leave()
		base := info.Reads[0]
		b.lock(base, RowExclusive, RoleRead, "", false)
		return b.targetExpand(base, routing, true)
	}
	return b.targetExpand(rel, routing, rv.Inh)
}

func (b *builder) targetExpand(rel RelName, routing, inh bool) RelName {
	info, ok := b.info(rel)
	switch {
	case routing:
		// INSERT and COPY FROM route rows into partitions at execution: only
		// the partitions that receive rows are locked.
		if ok && info.Kind == KindPartitionedTable {
			for _, p := range b.partitions(rel) {
				b.lockExec(p.Name, RowExclusive, RolePartition)
			}
		}
	case inh:
		// UPDATE and DELETE lock every partition or child that survives
		// plan-time pruning.
		b.lockDescendants(rel, RowExclusive, true)
	}
	return rel
}

func (b *builder) insert(s *pg.InsertStmt) {
	if s == nil || !b.enter() {
		return
	}
	defer b.leave()
	mark := b.pushCTEs(s.WithClause)
	defer func() { b.ctes = b.ctes[:mark] }()
	rel := b.target(s.Relation, true)
	b.fkInsertChecks(rel)
	if s.SelectStmt != nil {
		b.query(s.SelectStmt)
	}
	if s.OnConflictClause != nil {
		b.walkMsg(s.OnConflictClause.ProtoReflect())
		if s.OnConflictClause.Action == pg.OnConflictAction_ONCONFLICT_UPDATE {
			b.fkUpdateChecks(rel, resTargetNames(s.OnConflictClause.TargetList))
		}
	}
	b.walkNodes(s.ReturningList)
}

func (b *builder) update(s *pg.UpdateStmt) {
	if s == nil || !b.enter() {
		return
	}
	defer b.leave()
	mark := b.pushCTEs(s.WithClause)
	defer func() { b.ctes = b.ctes[:mark] }()
	rel := b.target(s.Relation, false)
	b.fkUpdateChecks(rel, resTargetNames(s.TargetList))
	for _, f := range s.FromClause {
		b.fromItem(f, NoLock, nil)
	}
	b.walkNodes(s.TargetList)
	b.walkNode(s.WhereClause)
	b.walkNodes(s.ReturningList)
}

func (b *builder) delete(s *pg.DeleteStmt) {
	if s == nil || !b.enter() {
		return
	}
	defer b.leave()
	mark := b.pushCTEs(s.WithClause)
	defer func() { b.ctes = b.ctes[:mark] }()
	rel := b.target(s.Relation, false)
	b.fkDeleteActions(rel, map[RelName]bool{rel: true})
	for _, f := range s.UsingClause {
		b.fromItem(f, NoLock, nil)
	}
	b.walkNode(s.WhereClause)
	b.walkNodes(s.ReturningList)
}

func (b *builder) merge(s *pg.MergeStmt) {
	if s == nil || !b.enter() {
		return
	}
	defer b.leave()
	mark := b.pushCTEs(s.WithClause)
	defer func() { b.ctes = b.ctes[:mark] }()
	rel := b.target(s.Relation, true)
	b.fromItem(s.SourceRelation, NoLock, nil)
	b.walkNode(s.JoinCondition)
	for _, n := range s.MergeWhenClauses {
		w := n.GetMergeWhenClause()
		if w == nil {
			continue
		}
		switch w.CommandType {
		case pg.CmdType_CMD_INSERT:
			b.fkInsertChecks(rel)
		case pg.CmdType_CMD_UPDATE:
			b.fkUpdateChecks(rel, resTargetNames(w.TargetList))
		case pg.CmdType_CMD_DELETE:
			b.fkDeleteActions(rel, map[RelName]bool{rel: true})
		}
		b.walkNode(w.Condition)
		b.walkNodes(w.TargetList)
		b.walkNodes(w.Values)
	}
	b.walkNodes(s.ReturningList)
}

func resTargetNames(list []*pg.Node) []string {
	var out []string
	for _, n := range list {
		if rt := n.GetResTarget(); rt != nil && rt.Name != "" {
			out = append(out, rt.Name)
		}
	}
	return out
}

// fkInsertChecks: a row inserted into a referencing table is checked against
// the referenced table with SELECT … FOR KEY SHARE, which takes ROW SHARE on
// it (skipped when the key is NULL).
func (b *builder) fkInsertChecks(rel RelName) {
	for _, c := range b.foreignKeys(rel) {
		b.lockExec(c.RefTable, RowShare, RoleReferenced)
	}
}

// fkUpdateChecks: an UPDATE that sets a referencing column is checked like an
// INSERT; one that sets a referenced column fires the referencing tables'
// ON UPDATE action when the key really changes.
func (b *builder) fkUpdateChecks(rel RelName, cols []string) {
	for _, c := range b.foreignKeys(rel) {
		if intersects(c.Columns, cols) {
			b.lockExec(c.RefTable, RowShare, RoleReferenced)
		}
	}
	for _, c := range b.referencedBy(rel) {
		if !intersects(c.RefColumns, cols) {
			continue
		}
		b.fkAction(c, c.OnUpdate)
	}
}

// fkDeleteActions: deleting referenced rows fires each referencing table's
// ON DELETE action: NO ACTION and RESTRICT look for referencing rows (ROW
// SHARE), CASCADE deletes them and SET NULL/DEFAULT updates them (ROW
// EXCLUSIVE). A cascaded delete fires the next level's actions.
func (b *builder) fkDeleteActions(rel RelName, visited map[RelName]bool) {
	if !b.enter() {
		return
	}
	defer b.leave()
	for _, c := range b.referencedBy(rel) {
		b.fkAction(c, c.OnDelete)
		if c.OnDelete == FKCascade && !visited[c.Table] {
			visited[c.Table] = true
			b.fkDeleteActions(c.Table, visited)
		}
	}
}

func (b *builder) fkAction(c Constraint, action FKAction) {
	mode, role := RowShare, RoleReferenced
	switch action {
	case FKCascade, FKSetNull, FKSetDefault:
		mode, role = RowExclusive, RoleCascaded
	}
	b.lockExec(c.Table, mode, role)
	if b.isPartitioned(c.Table) {
		for _, p := range b.partitions(c.Table) {
			b.lockExec(p.Name, mode, RolePartition)
		}
	}
}
