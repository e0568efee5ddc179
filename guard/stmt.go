package guard

import (
	"reflect"
	"strings"
	"unicode"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// stmt analyses one top-level statement.
func (b *builder) stmt(n *pg.Node) {
	st := &b.st
	switch x := n.GetNode().(type) {
	case *pg.Node_SelectStmt:
		st.Tag, st.Class = "SELECT", ClassRead
		if x.SelectStmt.IntoClause != nil {
			st.Tag, st.Class = "SELECT INTO", ClassDDL
		}
		b.selectStmt(x.SelectStmt, NoLock)
		b.upgradeForWritingCTEs()
	case *pg.Node_InsertStmt:
		st.Tag, st.Class = "INSERT", ClassWrite
		b.insert(x.InsertStmt)
	case *pg.Node_UpdateStmt:
		st.Tag, st.Class = "UPDATE", ClassWrite
		b.update(x.UpdateStmt)
	case *pg.Node_DeleteStmt:
		st.Tag, st.Class = "DELETE", ClassWrite
		b.delete(x.DeleteStmt)
	case *pg.Node_MergeStmt:
		st.Tag, st.Class = "MERGE", ClassWrite
		b.merge(x.MergeStmt)
	case *pg.Node_CopyStmt:
		b.copyStmt(x.CopyStmt)
	case *pg.Node_ExplainStmt:
		b.explainStmt(x.ExplainStmt)
	case *pg.Node_PrepareStmt:
		// PREPARE runs parse analysis, which locks the query's relations in
		// the modes execution will use, until the end of the transaction.
		st.Tag, st.Class = "PREPARE", ClassOther
		st.Lasting = true // a prepared statement outlives its transaction
		b.query(x.PrepareStmt.Query)
		b.dropExecOnly(false)
	case *pg.Node_ExecuteStmt:
		st.Tag, st.Class = "EXECUTE", ClassOther
		b.unknown("EXECUTE " + x.ExecuteStmt.Name + ": the prepared statement's text is needed to know its locks")
	case *pg.Node_DeclareCursorStmt:
		st.Tag, st.Class = "DECLARE CURSOR", ClassRead
		b.query(x.DeclareCursorStmt.Query)
	case *pg.Node_FetchStmt:
		st.Tag, st.Class = "FETCH", ClassRead
		if x.FetchStmt.Ismove {
			st.Tag = "MOVE"
		}
	case *pg.Node_ClosePortalStmt:
		st.Tag, st.Class = "CLOSE CURSOR", ClassRead
	case *pg.Node_TransactionStmt:
		b.transactionStmt(x.TransactionStmt)
	case *pg.Node_VariableSetStmt:
		b.setStmt(x.VariableSetStmt)
	case *pg.Node_VariableShowStmt:
		st.Tag, st.Class = "SHOW", ClassSession
	case *pg.Node_DiscardStmt:
		st.Tag, st.Class = "DISCARD", ClassSession
		switch x.DiscardStmt.Target {
		case pg.DiscardMode_DISCARD_ALL:
			st.Tag = "DISCARD ALL"
			st.NoTxBlock = true
			st.Settings = append(st.Settings, SettingChange{Name: "all", Reset: true})
		case pg.DiscardMode_DISCARD_PLANS:
			st.Tag = "DISCARD PLANS"
		case pg.DiscardMode_DISCARD_SEQUENCES:
			st.Tag = "DISCARD SEQUENCES"
		case pg.DiscardMode_DISCARD_TEMP:
			st.Tag = "DISCARD TEMP"
		}
	case *pg.Node_LockStmt:
		b.lockStmt(x.LockStmt)
	case *pg.Node_CallStmt:
		b.callStmt(x.CallStmt)
	case *pg.Node_DoStmt:
		b.doStmt(x.DoStmt)
	case *pg.Node_CheckPointStmt:
		st.Tag, st.Class = "CHECKPOINT", ClassMaintenance
	case *pg.Node_VacuumStmt:
		b.vacuumStmt(x.VacuumStmt)
	case *pg.Node_ClusterStmt:
		b.clusterStmt(x.ClusterStmt)
	case *pg.Node_ReindexStmt:
		b.reindexStmt(x.ReindexStmt)
	case *pg.Node_RefreshMatViewStmt:
		b.refreshStmt(x.RefreshMatViewStmt)
	case *pg.Node_AlterTableStmt:
		b.alterTable(x.AlterTableStmt)
	case *pg.Node_CreateStmt:
		b.createTable(x.CreateStmt)
	case *pg.Node_CreateTableAsStmt:
		b.createTableAs(x.CreateTableAsStmt)
	case *pg.Node_ViewStmt:
		b.createView(x.ViewStmt)
	case *pg.Node_DropStmt:
		b.dropStmt(x.DropStmt)
	case *pg.Node_TruncateStmt:
		b.truncateStmt(x.TruncateStmt)
	case *pg.Node_IndexStmt:
		b.createIndex(x.IndexStmt)
	case *pg.Node_CreateTrigStmt:
		b.createTrigger(x.CreateTrigStmt)
	case *pg.Node_RuleStmt:
		st.Tag, st.Class = "CREATE RULE", ClassDDL
		rel := b.rel(x.RuleStmt.Relation)
		b.lock(rel, AccessExclusive, RoleTarget, "", false)
		b.ruleActions(x.RuleStmt)
	case *pg.Node_CreatePolicyStmt:
		st.Tag, st.Class = "CREATE POLICY", ClassDDL
		b.lock(b.rel(x.CreatePolicyStmt.Table), AccessExclusive, RoleTarget, "", false)
		b.policyExprs(x.CreatePolicyStmt.Qual, x.CreatePolicyStmt.WithCheck)
	case *pg.Node_AlterPolicyStmt:
		st.Tag, st.Class = "ALTER POLICY", ClassDDL
		b.lock(b.rel(x.AlterPolicyStmt.Table), AccessExclusive, RoleTarget, "", false)
		b.policyExprs(x.AlterPolicyStmt.Qual, x.AlterPolicyStmt.WithCheck)
	case *pg.Node_CommentStmt:
		b.commentStmt(x.CommentStmt)
	case *pg.Node_CreateStatsStmt:
		st.Tag, st.Class = "CREATE STATISTICS", ClassDDL
		for _, r := range x.CreateStatsStmt.Relations {
			if rv := r.GetRangeVar(); rv != nil {
				b.lock(b.rel(rv), ShareUpdateExclusive, RoleTarget, "", false)
			}
		}
	case *pg.Node_RenameStmt:
		b.renameStmt(x.RenameStmt)
	case *pg.Node_AlterObjectSchemaStmt:
		b.alterSchemaStmt(x.AlterObjectSchemaStmt)
	case *pg.Node_AlterDomainStmt:
		st.Tag, st.Class = "ALTER DOMAIN", ClassDDL
		if x.AlterDomainStmt.Subtype == "C" || x.AlterDomainStmt.Subtype == "V" || x.AlterDomainStmt.Subtype == "O" {
			b.unknown("ALTER DOMAIN: every table with a column of this domain is locked SHARE and scanned to check the constraint")
			st.Scan = true
		}
	case *pg.Node_AlterEnumStmt:
		st.Tag, st.Class = "ALTER TYPE", ClassDDL
	case *pg.Node_GrantStmt:
		st.Tag, st.Class = "GRANT", ClassDDL
		if !x.GrantStmt.IsGrant {
			st.Tag = "REVOKE"
		}
	case *pg.Node_CreatedbStmt:
		st.Tag, st.Class, st.NoTxBlock = "CREATE DATABASE", ClassDDL, true
	case *pg.Node_DropdbStmt:
		st.Tag, st.Class, st.NoTxBlock = "DROP DATABASE", ClassDDL, true
	case *pg.Node_AlterSystemStmt:
		st.Tag, st.Class, st.NoTxBlock = "ALTER SYSTEM", ClassSession, true
	case *pg.Node_CreateTableSpaceStmt:
		st.Tag, st.Class, st.NoTxBlock = "CREATE TABLESPACE", ClassDDL, true
	case *pg.Node_DropTableSpaceStmt:
		st.Tag, st.Class, st.NoTxBlock = "DROP TABLESPACE", ClassDDL, true
	case *pg.Node_AlterTableMoveAllStmt:
		st.Tag, st.Class = "ALTER TABLE", ClassDDL
		st.Rewrite = true
		b.unknown("ALTER … ALL IN TABLESPACE locks every moved relation ACCESS EXCLUSIVE")
	case *pg.Node_CreateSubscriptionStmt:
		st.Tag, st.Class = "CREATE SUBSCRIPTION", ClassDDL
		st.NoTxBlock = true // unless create_slot = false
	case *pg.Node_DropSubscriptionStmt:
		st.Tag, st.Class = "DROP SUBSCRIPTION", ClassDDL
		st.NoTxBlock = true // when it drops a replication slot
	case *pg.Node_NotifyStmt:
		st.Tag, st.Class = "NOTIFY", ClassOther
	case *pg.Node_ListenStmt:
		st.Tag, st.Class = "LISTEN", ClassSession
	case *pg.Node_UnlistenStmt:
		st.Tag, st.Class = "UNLISTEN", ClassSession
	case *pg.Node_DeallocateStmt:
		st.Tag, st.Class = "DEALLOCATE", ClassSession
		st.Lasting = true
	case *pg.Node_ConstraintsSetStmt:
		st.Tag, st.Class = "SET CONSTRAINTS", ClassTransaction
	case *pg.Node_CreateSchemaStmt:
		st.Tag, st.Class = "CREATE SCHEMA", ClassDDL
		for _, e := range x.CreateSchemaStmt.SchemaElts {
			sub := newBuilder(b.cat)
			sub.stmt(e)
			for _, l := range sub.st.Locks {
				b.lock(l.Rel, l.Mode, l.Role, l.Index, l.Conditional)
			}
		}
	default:
		st.Tag = tagFromNode(n)
		st.Class = ClassOther
		if strings.HasPrefix(st.Tag, "CREATE ") || strings.HasPrefix(st.Tag, "ALTER ") || strings.HasPrefix(st.Tag, "DROP ") || strings.HasPrefix(st.Tag, "IMPORT ") || strings.HasPrefix(st.Tag, "SECURITY ") || strings.HasPrefix(st.Tag, "REASSIGN ") {
			st.Class = ClassDDL
		}
	}
}

// tagFromNode derives a tag from the node type: CreateFunctionStmt →
// "CREATE FUNCTION".
func tagFromNode(n *pg.Node) string {
	v := n.GetNode()
	if v == nil {
		return ""
	}
	t := reflect.TypeOf(v)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	name := strings.TrimPrefix(t.Name(), "Node_")
	name = strings.TrimSuffix(name, "Stmt")
	var sb strings.Builder
	for i, r := range name {
		if i > 0 && unicode.IsUpper(r) {
			sb.WriteByte(' ')
		}
		sb.WriteRune(unicode.ToUpper(r))
	}
	return sb.String()
}

// upgradeForWritingCTEs marks a SELECT that writes through a data-modifying
// CTE as a write.
func (b *builder) upgradeForWritingCTEs() {
	for _, l := range b.st.Locks {
		if l.Role == RoleTarget && l.Mode == RowExclusive {
			b.st.Class = ClassWrite
			return
		}
	}
}

// dropExecOnly removes the locks that only execution takes (foreign-key
// checks, partitions rows are routed to): EXPLAIN without ANALYZE plans the
// statement and PREPARE only parses it. planned is false for PREPARE, which
// does not plan either, so it does not lock partitions.
func (b *builder) dropExecOnly(planned bool) {
	out := b.st.Locks[:0]
	for _, l := range b.st.Locks {
		if b.exec[l.Rel] || !planned && l.Conditional && l.Role == RolePartition {
			continue
		}
		out = append(out, l)
	}
	b.st.Locks = out
	b.idx = map[RelName]int{}
	for i, l := range b.st.Locks {
		b.idx[l.Rel] = i
	}
}

func (b *builder) copyStmt(s *pg.CopyStmt) {
	st := &b.st
	st.Tag = "COPY"
	if s.IsFrom {
		st.Class = ClassWrite
		st.CopyIn = s.Filename == "" && !s.IsProgram
		rel := b.target(s.Relation, true)
		b.fkInsertChecks(rel)
		b.walkNode(s.WhereClause)
		return
	}
	st.Class = ClassRead
	if s.Query != nil {
		b.query(s.Query)
		b.upgradeForWritingCTEs()
		if st.Class == ClassWrite || len(st.Locks) > 0 && st.Locks[0].Role == RoleTarget {
			st.Class = ClassWrite
		}
		return
	}
	if s.Relation != nil {
		rel := b.rel(s.Relation)
		b.lock(rel, AccessShare, RoleTarget, "", false)
	}
}

func (b *builder) explainStmt(s *pg.ExplainStmt) {
	analyze := false
	for _, o := range s.Options {
		if d := o.GetDefElem(); d != nil && d.Defname == "analyze" {
			analyze = defElemBool(d)
		}
	}
	inner := newBuilder(b.cat)
	inner.stmt(s.Query)
	b.st.Locks = inner.st.Locks
	b.idx = inner.idx
	b.exec = inner.exec
	b.st.Unknown = append(b.st.Unknown, inner.st.Unknown...)
	b.st.Tag = "EXPLAIN"
	b.st.Class = ClassRead
	if analyze {
		b.st.Class = inner.st.Class
		b.st.Subcommands = append(b.st.Subcommands, "ANALYZE")
		b.note("EXPLAIN ANALYZE executes the statement")
		return
	}
	b.dropExecOnly(true)
}

func defElemBool(d *pg.DefElem) bool {
	if d.Arg == nil {
		return true
	}
	switch v := d.Arg.GetNode().(type) {
	case *pg.Node_Boolean:
		return v.Boolean.Boolval
	case *pg.Node_Integer:
		return v.Integer.Ival != 0
	case *pg.Node_String_:
		s := strings.ToLower(v.String_.Sval)
		return s == "true" || s == "on" || s == "1" || s == "yes"
	case *pg.Node_AConst:
		if bv := v.AConst.GetBoolval(); bv != nil {
			return bv.Boolval
		}
		if iv := v.AConst.GetIval(); iv != nil {
			return iv.Ival != 0
		}
		if sv := v.AConst.GetSval(); sv != nil {
			s := strings.ToLower(sv.Sval)
			return s == "true" || s == "on" || s == "1" || s == "yes"
		}
	}
	return true
}

func (b *builder) transactionStmt(s *pg.TransactionStmt) {
	st := &b.st
	st.Class = ClassTransaction
	st.Savepoint, st.Chain = s.SavepointName, s.Chain
	switch s.Kind {
	case pg.TransactionStmtKind_TRANS_STMT_BEGIN:
		st.Tag, st.TxKind = "BEGIN", TxBegin
	case pg.TransactionStmtKind_TRANS_STMT_START:
		st.Tag, st.TxKind = "START TRANSACTION", TxBegin
	case pg.TransactionStmtKind_TRANS_STMT_COMMIT:
		st.Tag, st.TxKind = "COMMIT", TxCommit
	case pg.TransactionStmtKind_TRANS_STMT_ROLLBACK:
		st.Tag, st.TxKind = "ROLLBACK", TxRollback
	case pg.TransactionStmtKind_TRANS_STMT_SAVEPOINT:
		st.Tag, st.TxKind = "SAVEPOINT", TxSavepoint
	case pg.TransactionStmtKind_TRANS_STMT_RELEASE:
		st.Tag, st.TxKind = "RELEASE", TxRelease
	case pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
		st.Tag, st.TxKind = "ROLLBACK", TxRollbackTo
	case pg.TransactionStmtKind_TRANS_STMT_PREPARE:
		st.Tag, st.TxKind = "PREPARE TRANSACTION", TxPrepare
	case pg.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED:
		st.Tag, st.TxKind, st.NoTxBlock = "COMMIT PREPARED", TxCommitPrepared, true
	case pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED:
		st.Tag, st.TxKind, st.NoTxBlock = "ROLLBACK PREPARED", TxRollbackPrepared, true
	}
}

func (b *builder) setStmt(s *pg.VariableSetStmt) {
	st := &b.st
	st.Class = ClassSession
	st.Tag = "SET"
	name := strings.ToLower(s.Name)
	switch s.Kind {
	case pg.VariableSetKind_VAR_SET_VALUE:
		v := argsString(s.Args)
		if name == "search_path" {
			v = identListString(s.Args)
		}
		st.Settings = append(st.Settings, SettingChange{Name: name, Value: v, Local: s.IsLocal})
	case pg.VariableSetKind_VAR_SET_DEFAULT:
		st.Settings = append(st.Settings, SettingChange{Name: name, Local: s.IsLocal, Reset: true})
	case pg.VariableSetKind_VAR_SET_CURRENT:
		st.Settings = append(st.Settings, SettingChange{Name: name, Value: "FROM CURRENT", Local: s.IsLocal})
	case pg.VariableSetKind_VAR_SET_MULTI:
		// SET TRANSACTION …, SET SESSION CHARACTERISTICS …, SET TIME ZONE
		// INTERVAL …: not parameters a guard tracks by name.
		st.Settings = append(st.Settings, SettingChange{Name: name, Value: argsString(s.Args), Local: s.IsLocal})
		if strings.HasPrefix(name, "transaction") {
			st.Class = ClassTransaction
		}
	case pg.VariableSetKind_VAR_RESET:
		st.Tag = "RESET"
		st.Settings = append(st.Settings, SettingChange{Name: name, Reset: true})
	case pg.VariableSetKind_VAR_RESET_ALL:
		st.Tag = "RESET"
		st.Settings = append(st.Settings, SettingChange{Name: "all", Reset: true})
	}
}

// paramNumber returns n for a bind parameter $n, also under a cast
// ($1::text), and 0 for anything else.
func paramNumber(n *pg.Node) int {
	if tc := n.GetTypeCast(); tc != nil {
		n = tc.Arg
	}
	if p := n.GetParamRef(); p != nil {
		return int(p.Number)
	}
	return 0
}

// argsString renders SET arguments as Postgres would show them.
func argsString(args []*pg.Node) string {
	parts := make([]string, 0, len(args))
	for _, a := range args {
		parts = append(parts, constString(a))
	}
	return strings.Join(parts, ", ")
}

// identListString renders the arguments of a SET of a list of names
// (search_path) as PostgreSQL stores them: each name quoted unless it is
// lower case (quoteIdent), so that a quoted name keeps its case and a
// string with a comma stays one name when the list is read back
// (SplitIdentifiers).
func identListString(args []*pg.Node) string {
	parts := make([]string, 0, len(args))
	for _, a := range args {
		parts = append(parts, quoteIdent(constString(a)))
	}
	return strings.Join(parts, ", ")
}

func constString(n *pg.Node) string {
	switch v := n.GetNode().(type) {
	case *pg.Node_AConst:
		switch c := v.AConst.Val.(type) {
		case *pg.A_Const_Sval:
			return c.Sval.Sval
		case *pg.A_Const_Ival:
			return itoa(int(c.Ival.Ival))
		case *pg.A_Const_Fval:
			return c.Fval.Fval
		case *pg.A_Const_Boolval:
			if c.Boolval.Boolval {
				return "on"
			}
			return "off"
		case *pg.A_Const_Bsval:
			return c.Bsval.Bsval
		}
		if v.AConst.Isnull {
			return "NULL"
		}
	case *pg.Node_String_:
		return v.String_.Sval
	case *pg.Node_Integer:
		return itoa(int(v.Integer.Ival))
	case *pg.Node_TypeCast:
		return constString(v.TypeCast.Arg)
	case *pg.Node_DefElem:
		return v.DefElem.Defname
	}
	return "?"
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	neg := i < 0
	if neg {
		i = -i
	}
	var buf [20]byte
	p := len(buf)
	for i > 0 {
		p--
		buf[p] = byte('0' + i%10)
		i /= 10
	}
	if neg {
		p--
		buf[p] = '-'
	}
	return string(buf[p:])
}

// settingsFromSelect records set_config(name, value, is_local) calls with
// constant arguments in a SELECT's target list.
func (b *builder) settingsFromSelect(s *pg.SelectStmt) {
	for _, t := range s.TargetList {
		rt := t.GetResTarget()
		if rt == nil {
			continue
		}
		fc := rt.Val.GetFuncCall()
		if fc == nil || len(fc.Args) != 3 {
			continue
		}
		name := strs(fc.Funcname)
		if len(name) == 0 || name[len(name)-1] != "set_config" {
			continue
		}
		// Each argument is a constant or a bind parameter, whose value
		// comes with each Bind (Statement.Bound): PostgREST sends
		// set_config('search_path', $1, true), others set_config($1, $2,
		// $3).
		var c SettingChange
		var l string
		var ok [3]bool
		c.Name, c.NameParam, ok[0] = constOrParam(fc.Args[0])
		c.Value, c.Param, ok[1] = constOrParam(fc.Args[1])
		l, c.LocalParam, ok[2] = constOrParam(fc.Args[2])
		if !ok[0] || !ok[1] || !ok[2] {
			b.unknown("set_config with arguments that are neither constants nor parameters")
			continue
		}
		c.Name = strings.ToLower(c.Name)
		c.Local, _ = boundBool(l) // "" while it is a parameter
		b.st.Settings = append(b.st.Settings, c)
	}
}

// constOrParam reads a function argument that is a constant (its text) or a
// bind parameter, cast or not (its number; text ""); ok is false for
// anything else.
func constOrParam(n *pg.Node) (text string, param int, ok bool) {
	if p := paramNumber(n); p > 0 {
		return "", p, true
	}
	text = constString(n)
	return text, 0, text != "?"
}

func (b *builder) lockStmt(s *pg.LockStmt) {
	st := &b.st
	st.Tag, st.Class = "LOCK TABLE", ClassOther
	mode := LockMode(s.Mode)
	if mode == NoLock || mode > AccessExclusive {
		mode = AccessExclusive
	}
	for _, r := range s.Relations {
		rv := r.GetRangeVar()
		if rv == nil {
			continue
		}
		rel := b.rel(rv)
		b.lock(rel, mode, RoleTarget, "", false)
		info, ok := b.info(rel)
		switch {
		case ok && info.Kind == KindView:
			// LOCK on a view locks the relations in its query, recursively.
			b.lockViewReads(info, mode)
		case rv.Inh:
			b.lockDescendants(rel, mode, false)
		}
	}
	if s.Nowait {
		b.sub("NOWAIT")
	}
}

func (b *builder) lockViewReads(info RelInfo, mode LockMode) {
	if !b.enter() {
		return
	}
	defer b.leave()
	for _, r := range info.Reads {
		b.lock(r, mode, RoleRead, "", false)
		if ri, ok := b.info(r); ok {
			if ri.Kind == KindView {
				b.lockViewReads(ri, mode)
			} else {
				b.lockDescendants(r, mode, false)
			}
		}
	}
}

func (b *builder) ruleActions(r *pg.RuleStmt) {
	// Rule actions are parsed, not executed: they reference relations but
	// CREATE RULE takes no lock on them beyond parse analysis.
	b.walkNode(r.WhereClause)
}

func (b *builder) policyExprs(qual, check *pg.Node) {
	b.walkNode(qual)
	b.walkNode(check)
}
