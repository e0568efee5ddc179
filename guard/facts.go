package guard

import (
	"slices"
	"strconv"
	"strings"
	"sync"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// This file derives, from a DDL statement's parse tree, the facts the policy
// rules need and the Analysis does not carry: the column an ADD COLUMN adds
// (type, default and the functions it calls, NOT NULL, identity, serial,
// generated, inline constraints), the constraint an ADD CONSTRAINT adds (kind,
// name, columns, NOT VALID, USING INDEX, CHECK (col IS NOT NULL)), the new
// type of ALTER COLUMN TYPE (with USING and COLLATE), the names a statement
// creates, renames or drops, and the statement rewritten in its safe form
// (CONCURRENTLY, NOT VALID) for hints.
//
// Only DDL is parsed here, once per statement text: facts are cached by text,
// so a DDL the proxy sees again costs a map lookup. Nothing here is exported;
// pg_query types stay inside guard.

// factKind is the kind of statement the facts describe.
type factKind uint8

const (
	factOther factKind = iota
	factAlterTable
	factCreateTable
	factCreateTableAs
	factCreateIndex
	factDropIndex
	factDrop
	factRename
	factSetSchema
	factAlterEnum
	factCreateDomain
	factAlterDomain
	factDropDatabase
)

// typeRef is a column type as written: canonical base name ("varchar",
// "int4", "timestamptz"), its type modifiers and whether it is an array.
type typeRef struct {
	schema string // "" for built-in types
	name   string
	mods   []int32
	// modsUnknown is set when a modifier is not an integer constant.
	modsUnknown bool
	array       bool
}

func (t typeRef) known() bool { return t.name != "" }

// String renders the type for messages: "varchar(20)", "numeric(10,2)[]".
func (t typeRef) String() string {
	if t.name == "" {
		return "?"
	}
	var sb strings.Builder
	if t.schema != "" {
		sb.WriteString(t.schema)
		sb.WriteByte('.')
	}
	if d, ok := typeDisplay[t.name]; ok && t.schema == "" {
		sb.WriteString(d)
	} else {
		sb.WriteString(t.name)
	}
	if len(t.mods) > 0 {
		sb.WriteByte('(')
		for i, m := range t.mods {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(itoa(int(m)))
		}
		sb.WriteByte(')')
	}
	if t.array {
		sb.WriteString("[]")
	}
	return sb.String()
}

func (t typeRef) equal(o typeRef) bool {
	if t.schema != o.schema || t.name != o.name || t.array != o.array || len(t.mods) != len(o.mods) || t.modsUnknown || o.modsUnknown {
		return false
	}
	for i := range t.mods {
		if t.mods[i] != o.mods[i] {
			return false
		}
	}
	return true
}

// typeAliases maps the spellings of built-in types to the names pg_type
// uses.
var typeAliases = map[string]string{
	"int": "int4", "integer": "int4", "int4": "int4", "smallint": "int2", "int2": "int2", "bigint": "int8", "int8": "int8",
	"serial": "serial4", "serial4": "serial4", "bigserial": "serial8", "serial8": "serial8", "smallserial": "serial2", "serial2": "serial2",
	"varchar": "varchar", "character varying": "varchar", "char": "bpchar", "character": "bpchar", "bpchar": "bpchar",
	"timestamp": "timestamp", "timestamp without time zone": "timestamp", "timestamptz": "timestamptz", "timestamp with time zone": "timestamptz",
	"time": "time", "time without time zone": "time", "timetz": "timetz", "time with time zone": "timetz",
	"decimal": "numeric", "numeric": "numeric", "float8": "float8", "double precision": "float8", "float4": "float4", "real": "float4",
	"bool": "bool", "boolean": "bool", "varbit": "varbit", "bit varying": "varbit", "bit": "bit",
}

// typeDisplay is how messages spell the canonical names.
var typeDisplay = map[string]string{
	"int2": "smallint", "int4": "integer", "int8": "bigint", "serial2": "smallserial", "serial4": "serial", "serial8": "bigserial",
	"bpchar": "char", "float4": "real", "float8": "double precision", "bool": "boolean",
}

func canonicalType(name string) string {
	n := strings.ToLower(name)
	if c, ok := typeAliases[n]; ok {
		return c
	}
	return n
}

func typeRefOf(tn *pg.TypeName) typeRef {
	if tn == nil {
		return typeRef{}
	}
	names := strs(tn.Names)
	if len(names) == 0 {
		return typeRef{}
	}
	t := typeRef{name: canonicalType(names[len(names)-1])}
	if len(names) > 1 && names[len(names)-2] != "pg_catalog" {
		t.schema = names[len(names)-2]
	}
	for _, m := range tn.Typmods {
		if c := m.GetAConst(); c != nil {
			if iv := c.GetIval(); iv != nil {
				t.mods = append(t.mods, iv.Ival)
				continue
			}
		}
		t.modsUnknown = true
	}
	t.array = len(tn.ArrayBounds) > 0
	return t
}

// parseTypeName reads a type as format_type prints it ("character
// varying(50)", "timestamp(3) without time zone").
func parseTypeName(s string) (typeRef, bool) {
	if s == "" || strings.ContainsAny(s, ";") {
		return typeRef{}, false
	}
	tree, err := pg.Parse("SELECT NULL::" + s)
	if err != nil || len(tree.Stmts) != 1 {
		return typeRef{}, false
	}
	sel := tree.Stmts[0].Stmt.GetSelectStmt()
	if sel == nil || len(sel.TargetList) != 1 {
		return typeRef{}, false
	}
	rt := sel.TargetList[0].GetResTarget()
	if rt == nil || rt.Val.GetTypeCast() == nil {
		return typeRef{}, false
	}
	t := typeRefOf(rt.Val.GetTypeCast().TypeName)
	return t, t.known()
}

func (t typeRef) isSerial() bool {
	return t.schema == "" && (t.name == "serial2" || t.name == "serial4" || t.name == "serial8")
}

// conFact is a constraint being added.
type conFact struct {
	kind       ConstraintType
	name       string // "" when the statement lets Postgres name it
	notValid   bool
	usingIndex string
	// columns are the constraint's columns; for an EXCLUDE, the names
	// PostgreSQL gives its elements (indexElemName).
	columns []string
	// including are the INCLUDE columns of a UNIQUE, PRIMARY KEY or
	// EXCLUDE constraint.
	including  []string
	ref        RelName
	refColumns []string
	// notNullOf lists the columns a CHECK constraint proves not null: col
	// IS NOT NULL, alone or AND-ed at the top level.
	notNullOf []string
	// safeSQL is the online form of adding the constraint, named: for a
	// FOREIGN KEY or CHECK inline in ADD COLUMN, as a table constraint NOT
	// VALID; for a UNIQUE or PRIMARY KEY, its index built CONCURRENTLY and
	// the constraint added USING INDEX (usingIndexSQL).
	safeSQL string
}

// colFact is a column being defined (CREATE TABLE, ADD COLUMN) or retyped.
type colFact struct {
	name      string
	typ       typeRef
	identity  bool
	generated bool // GENERATED ALWAYS AS (…) STORED
	// hasDefault is set for a DEFAULT other than NULL.
	hasDefault bool
	// defaultCalls lists the functions the default calls, as written
	// ("pg_catalog.now", "gen_random_uuid"); "(subquery)" for a sub-select.
	defaultCalls []string
	notNull      bool
	primaryKey   bool
	inline       []conFact // UNIQUE, PRIMARY KEY, REFERENCES, CHECK, EXCLUDE
	collate      bool
}

// cmdKind is the kind of an ALTER TABLE subcommand the rules look at.
type cmdKind uint8

const (
	cmdOther cmdKind = iota
	cmdAddColumn
	cmdAlterType
	cmdSetNotNull
	cmdDropNotNull
	cmdDropColumn
	cmdAddConstraint
	cmdValidate
	cmdDropConstraint
	cmdAttach
	cmdDetach
	cmdDetachConcurrently
	cmdSetTablespace
	cmdSetLogged
	cmdSetUnlogged
	cmdSetAccessMethod
	cmdTrigger
)

// cmdFact is one ALTER TABLE subcommand.
type cmdFact struct {
	kind    cmdKind
	column  string // ALTER COLUMN …, DROP COLUMN …
	name    string // constraint of VALIDATE / DROP CONSTRAINT
	part    RelName
	bound   boundFact // ATTACH PARTITION's bound
	col     *colFact  // ADD COLUMN; for ALTER TYPE the new type is col.typ
	using   bool      // ALTER COLUMN TYPE … USING
	con     *conFact
	cascade bool
	// safeSQL is the subcommand alone, rewritten in its safe form (ADD
	// CONSTRAINT … NOT VALID, DETACH … CONCURRENTLY); "" if none.
	safeSQL string
	// For ADD COLUMN: the column added bare (type only; a serial becomes
	// its integer type) and the SET DEFAULT of its default, as SQL.
	bareSQL, defaultSQL string
}

// stmtFacts is what one DDL statement does, read from its parse tree.
type stmtFacts struct {
	kind   factKind
	target RelName // the relation acted on, as written
	temp   bool    // creates a temporary relation
	// creates lists the relations the statement creates.
	creates     []RelName
	columns     []colFact // CREATE TABLE
	tableCons   []conFact // CREATE TABLE table constraints
	partitionOf RelName
	cmds        []cmdFact
	// CREATE INDEX
	indexName    string
	indexColumns []string // "" for an expression
	indexOnly    bool     // CREATE INDEX … ON ONLY
	// indexNameParts are what PostgreSQL names an unnamed index after
	// (ChooseIndexColumnNames): its columns' names and its expressions'
	// (indexElemName), then its INCLUDE columns.
	indexNameParts []string
	// renames
	renameWhat       string // "column", "table", "view", "schema", "constraint", "index", …
	oldName, newName string
	enumRenameValue  bool
	domainCheck      bool // CREATE DOMAIN … CHECK, ALTER DOMAIN ADD CONSTRAINT (validated)
	domainVerb       string
	dropWhat         string // DROP <what>
	dropNames        []RelName
	dropCascade      bool
	// safeSQL is the whole statement in its safe form (CREATE INDEX
	// CONCURRENTLY, DROP INDEX CONCURRENTLY, one statement per index);
	// "" if none.
	safeSQL string
}

// factsCache holds facts by statement text, and by statement for the ones
// that create relations (TxState.Record, which gets no text, needs those).
type factsCache struct {
	byText textMap[*stmtFacts]
	mu     sync.Mutex // byStmt's
	byStmt map[*Statement]*stmtFacts
}

// factsCacheSize bounds each map's entries, and factsCacheBytes the text
// byText keeps (a DDL statement can be megabytes: a function's body).
const (
	factsCacheSize  = 2048
	factsCacheBytes = 16 << 20
)

var facts = factsCache{byText: textMap[*stmtFacts]{maxLen: factsCacheSize, maxBytes: factsCacheBytes},
	byStmt: map[*Statement]*stmtFacts{}}

// factsFor returns the facts of st, a statement of a. Only DDL and
// maintenance statements are parsed; others get nil.
func factsFor(a *Analysis, st *Statement) *stmtFacts {
	if st.Class != ClassDDL && st.Class != ClassMaintenance {
		return nil
	}
	text := a.Text(st)
	f, ok := facts.byText.get(text)
	if !ok {
		f = deriveFacts(text)
		facts.byText.put(text, f)
	}
	if len(f.creates) > 0 {
		facts.mu.Lock()
		if len(facts.byStmt) >= factsCacheSize {
			clear(facts.byStmt)
		}
		facts.byStmt[st] = f
		facts.mu.Unlock()
	}
	return f
}

// createdBy returns what st creates, if Evaluate has seen it.
func createdBy(st *Statement) []RelName {
	facts.mu.Lock()
	f := facts.byStmt[st]
	facts.mu.Unlock()
	if f == nil {
		return nil
	}
	return f.creates
}

func deriveFacts(text string) (f *stmtFacts) {
	f = &stmtFacts{}
	defer func() {
		// A parse tree the mapping did not expect costs the facts of one
		// statement, never the proxy.
		if r := recover(); r != nil {
			*f = stmtFacts{}
		}
	}()
	tree, err := pg.Parse(text)
	if err != nil || len(tree.Stmts) != 1 {
		return f
	}
	raw := tree.Stmts[0]
	raw.StmtLocation, raw.StmtLen = 0, 0
	deparse := func() string {
		s, err := pg.Deparse(tree)
		if err != nil {
			return ""
		}
		return s
	}
	switch x := raw.Stmt.GetNode().(type) {
	case *pg.Node_AlterTableStmt:
		f.kind = factAlterTable
		s := x.AlterTableStmt
		f.target = rangeVarName(s.Relation)
		if s.Objtype != pg.ObjectType_OBJECT_TABLE {
			f.kind = factOther
			return f
		}
		all := s.Cmds
		for i, n := range all {
			cmd := n.GetAlterTableCmd()
			if cmd == nil {
				continue
			}
			c := alterCmdFact(cmd)
			// The safe form of this subcommand alone.
			switch {
			case c.kind == cmdAddConstraint && c.con != nil && !c.con.notValid &&
				(c.con.kind == ConstraintForeignKey || c.con.kind == ConstraintCheck):
				con := cmd.Def.GetConstraint()
				s.Cmds = all[i : i+1]
				name := con.Conname
				con.Conname = c.con.nameOn(f.target)
				con.SkipValidation, con.InitiallyValid = true, false
				c.safeSQL = deparse()
				con.SkipValidation, con.InitiallyValid, con.Conname = false, true, name
			case c.kind == cmdAddConstraint && c.con != nil && c.con.usingIndex == "" &&
				(c.con.kind == ConstraintUnique || c.con.kind == ConstraintPrimaryKey):
				c.con.safeSQL = usingIndexSQL(raw, s, cmd.Def.GetConstraint(), c.con.columns, c.con.nameOn(f.target), deparse)
			case c.kind == cmdDetach:
				pc := cmd.Def.GetPartitionCmd()
				s.Cmds = all[i : i+1]
				pc.Concurrent = true
				c.safeSQL = deparse()
				pc.Concurrent = false
			}
			if c.kind == cmdAddColumn && c.col != nil {
				c.bareSQL, c.defaultSQL = addColumnSafeSQL(s, cmd.Def.GetColumnDef(), deparse)
				cd := cmd.Def.GetColumnDef()
				for j, k := range c.col.inline {
					switch k.kind {
					case ConstraintForeignKey, ConstraintCheck:
						c.col.inline[j].safeSQL = inlineConstraintSQL(s, cd, j, deparse)
					case ConstraintUnique, ConstraintPrimaryKey:
						if pk := withAttributes(cd, nthInlineConstraint(cd, j)); pk != nil && k.usingIndex == "" {
							c.col.inline[j].safeSQL = usingIndexSQL(raw, s, pk, []string{cd.Colname}, k.nameOn(f.target), deparse)
						}
					}
				}
			}
			s.Cmds = all
			f.cmds = append(f.cmds, c)
		}
	case *pg.Node_CreateStmt:
		s := x.CreateStmt
		f.kind = factCreateTable
		f.target = rangeVarName(s.Relation)
		f.temp = s.Relation != nil && s.Relation.Relpersistence == "t"
		f.creates = []RelName{f.target}
		for _, e := range s.TableElts {
			switch el := e.GetNode().(type) {
			case *pg.Node_ColumnDef:
				f.columns = append(f.columns, columnFact(el.ColumnDef))
			case *pg.Node_Constraint:
				f.tableCons = append(f.tableCons, constraintFact(el.Constraint, ""))
			}
		}
		if s.Partbound != nil {
			for _, p := range s.InhRelations {
				if rv := p.GetRangeVar(); rv != nil {
					f.partitionOf = rangeVarName(rv)
				}
			}
		}
	case *pg.Node_CreateTableAsStmt:
		s := x.CreateTableAsStmt
		f.kind = factCreateTableAs
		if s.Into != nil && s.Into.Rel != nil {
			f.target = rangeVarName(s.Into.Rel)
			f.temp = s.Into.Rel.Relpersistence == "t"
			f.creates = []RelName{f.target}
		}
	case *pg.Node_SelectStmt:
		if into := x.SelectStmt.IntoClause; into != nil && into.Rel != nil {
			f.kind = factCreateTableAs
			f.target = rangeVarName(into.Rel)
			f.temp = into.Rel.Relpersistence == "t"
			f.creates = []RelName{f.target}
		}
	case *pg.Node_ViewStmt:
		if v := x.ViewStmt.View; v != nil {
			f.target = rangeVarName(v)
			f.temp = v.Relpersistence == "t"
		}
	case *pg.Node_CreateSeqStmt:
		if v := x.CreateSeqStmt.Sequence; v != nil {
			f.target = rangeVarName(v)
			f.temp = v.Relpersistence == "t"
		}
	case *pg.Node_IndexStmt:
		s := x.IndexStmt
		f.kind = factCreateIndex
		f.target = rangeVarName(s.Relation)
		f.indexName = s.Idxname
		f.indexOnly = s.Relation != nil && !s.Relation.Inh
		for _, p := range s.IndexParams {
			if ie := p.GetIndexElem(); ie != nil {
				f.indexColumns = append(f.indexColumns, ie.Name)
				f.indexNameParts = append(f.indexNameParts, indexElemName(ie))
			}
		}
		for _, p := range s.IndexIncludingParams {
			if ie := p.GetIndexElem(); ie != nil {
				f.indexNameParts = append(f.indexNameParts, indexElemName(ie))
			}
		}
		if !s.Concurrent {
			s.Concurrent = true
			f.safeSQL = deparse()
			s.Concurrent = false
		}
	case *pg.Node_DropStmt:
		s := x.DropStmt
		f.kind = factDrop
		f.dropWhat = objectTypeWord(s.RemoveType)
		f.dropCascade = s.Behavior == pg.DropBehavior_DROP_CASCADE
		for _, o := range s.Objects {
			f.dropNames = append(f.dropNames, relFromNames(objectNames(o)))
		}
		if s.RemoveType == pg.ObjectType_OBJECT_INDEX {
			f.kind = factDropIndex
			if !s.Concurrent {
				// DROP INDEX CONCURRENTLY takes one index and no
				// CASCADE: what depends on the index goes first.
				objs, behavior := s.Objects, s.Behavior
				var out []string
				if f.dropCascade {
					out = append(out, "-- CONCURRENTLY cannot CASCADE: drop what depends on the index first")
				}
				s.Concurrent, s.Behavior = true, pg.DropBehavior_DROP_RESTRICT
				for i := range objs {
					s.Objects = objs[i : i+1]
					if q := deparse(); q != "" {
						out = append(out, q+";")
					}
				}
				s.Objects, s.Concurrent, s.Behavior = objs, false, behavior
				f.safeSQL = strings.Join(out, "\n")
			}
		}
	case *pg.Node_RenameStmt:
		s := x.RenameStmt
		f.kind = factRename
		f.target = rangeVarName(s.Relation)
		f.oldName, f.newName = s.Subname, s.Newname
		switch s.RenameType {
		case pg.ObjectType_OBJECT_COLUMN:
			f.renameWhat = "column"
		case pg.ObjectType_OBJECT_SCHEMA:
			f.renameWhat = "schema"
		case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW, pg.ObjectType_OBJECT_FOREIGN_TABLE:
			f.renameWhat = strings.ToLower(objectTypeWord(s.RenameType))
			f.oldName = f.target.Name
		case pg.ObjectType_OBJECT_TABCONSTRAINT:
			f.renameWhat = "constraint"
		default:
			f.renameWhat = strings.ToLower(objectTypeWord(s.RenameType))
		}
	case *pg.Node_AlterObjectSchemaStmt:
		s := x.AlterObjectSchemaStmt
		switch s.ObjectType {
		case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW, pg.ObjectType_OBJECT_FOREIGN_TABLE:
			f.kind = factSetSchema
			f.target = rangeVarName(s.Relation)
			f.renameWhat = strings.ToLower(objectTypeWord(s.ObjectType))
			f.oldName, f.newName = f.target.Name, s.Newschema
		}
	case *pg.Node_AlterEnumStmt:
		s := x.AlterEnumStmt
		f.kind = factAlterEnum
		f.target = relFromNames(strs(s.TypeName))
		if s.OldVal != "" {
			f.enumRenameValue = true
			f.oldName, f.newName = s.OldVal, s.NewVal
		}
	case *pg.Node_CreateDomainStmt:
		s := x.CreateDomainStmt
		f.kind = factCreateDomain
		f.target = relFromNames(strs(s.Domainname))
		for _, c := range s.Constraints {
			if k := c.GetConstraint(); k != nil && k.Contype == pg.ConstrType_CONSTR_CHECK {
				f.domainCheck = true
			}
		}
	case *pg.Node_AlterDomainStmt:
		s := x.AlterDomainStmt
		f.kind = factAlterDomain
		f.target = relFromNames(strs(s.TypeName))
		switch s.Subtype {
		case "C":
			if k := s.Def.GetConstraint(); k != nil && !k.SkipValidation {
				f.domainCheck = true
				f.domainVerb = "ADD CONSTRAINT"
			}
		case "V":
			f.domainCheck = true
			f.domainVerb = "VALIDATE CONSTRAINT"
		case "O":
			f.domainCheck = true
			f.domainVerb = "SET NOT NULL"
		}
	case *pg.Node_ReindexStmt:
		s := x.ReindexStmt
		conc := false
		for _, p := range s.Params {
			if d := p.GetDefElem(); d != nil && d.Defname == "concurrently" {
				conc = true
			}
		}
		if !conc {
			// REINDEX (CONCURRENTLY) … needs PostgreSQL 14; this form 12.
			name := s.Name
			if s.Relation != nil {
				name = rangeVarName(s.Relation).String()
			} else if name != "" {
				name = quoteIdent(name)
			}
			kind := strings.TrimPrefix(s.Kind.String(), "REINDEX_OBJECT_")
			f.safeSQL = strings.TrimSpace("REINDEX " + kind + " CONCURRENTLY " + name)
		}
	case *pg.Node_RefreshMatViewStmt:
		s := x.RefreshMatViewStmt
		f.target = rangeVarName(s.Relation)
		if !s.Concurrent {
			s.Concurrent = true
			f.safeSQL = deparse()
			s.Concurrent = false
		}
	case *pg.Node_DropdbStmt:
		f.kind = factDropDatabase
		f.target = RelName{Name: x.DropdbStmt.Dbname}
	}
	return f
}

func alterCmdFact(cmd *pg.AlterTableCmd) cmdFact {
	c := cmdFact{column: cmd.Name, cascade: cmd.Behavior == pg.DropBehavior_DROP_CASCADE}
	switch cmd.Subtype {
	case pg.AlterTableType_AT_AddColumn:
		c.kind = cmdAddColumn
		if cd := cmd.Def.GetColumnDef(); cd != nil {
			col := columnFact(cd)
			c.col = &col
			c.column = cd.Colname
		}
	case pg.AlterTableType_AT_AlterColumnType:
		c.kind = cmdAlterType
		if cd := cmd.Def.GetColumnDef(); cd != nil {
			c.col = &colFact{name: cmd.Name, typ: typeRefOf(cd.TypeName), collate: cd.CollClause != nil}
			c.using = cd.RawDefault != nil
		}
	case pg.AlterTableType_AT_SetNotNull:
		c.kind = cmdSetNotNull
	case pg.AlterTableType_AT_DropNotNull:
		c.kind = cmdDropNotNull
	case pg.AlterTableType_AT_DropColumn:
		c.kind = cmdDropColumn
	case pg.AlterTableType_AT_AddConstraint, pg.AlterTableType_AT_AddIndexConstraint:
		c.kind = cmdAddConstraint
		if k := cmd.Def.GetConstraint(); k != nil {
			con := constraintFact(k, "")
			c.con = &con
		}
	case pg.AlterTableType_AT_ValidateConstraint:
		c.kind = cmdValidate
		c.name = cmd.Name
	case pg.AlterTableType_AT_DropConstraint:
		c.kind = cmdDropConstraint
		c.name = cmd.Name
		c.column = ""
	case pg.AlterTableType_AT_AttachPartition:
		c.kind = cmdAttach
		if pc := cmd.Def.GetPartitionCmd(); pc != nil {
			c.part = rangeVarName(pc.Name)
			c.bound = partitionBound(pc.Bound)
		}
	case pg.AlterTableType_AT_DetachPartition:
		c.kind = cmdDetach
		if pc := cmd.Def.GetPartitionCmd(); pc != nil {
			c.part = rangeVarName(pc.Name)
			if pc.Concurrent {
				c.kind = cmdDetachConcurrently
			}
		}
	case pg.AlterTableType_AT_SetTableSpace:
		c.kind = cmdSetTablespace
		c.name = cmd.Name
	case pg.AlterTableType_AT_SetLogged:
		c.kind = cmdSetLogged
	case pg.AlterTableType_AT_SetUnLogged:
		c.kind = cmdSetUnlogged
	case pg.AlterTableType_AT_SetAccessMethod:
		c.kind = cmdSetAccessMethod
		c.name = cmd.Name
	case pg.AlterTableType_AT_EnableTrig, pg.AlterTableType_AT_EnableAlwaysTrig, pg.AlterTableType_AT_EnableReplicaTrig,
		pg.AlterTableType_AT_EnableTrigAll, pg.AlterTableType_AT_EnableTrigUser,
		pg.AlterTableType_AT_DisableTrig, pg.AlterTableType_AT_DisableTrigAll, pg.AlterTableType_AT_DisableTrigUser:
		c.kind = cmdTrigger
		c.name = cmd.Name
	}
	return c
}

func columnFact(cd *pg.ColumnDef) colFact {
	c := colFact{name: cd.Colname, typ: typeRefOf(cd.TypeName), notNull: cd.IsNotNull, collate: cd.CollClause != nil}
	if cd.Identity != "" {
		c.identity = true
	}
	if cd.Generated != "" {
		c.generated = true
	}
	if cd.RawDefault != nil {
		c.setDefault(cd.RawDefault)
	}
	for _, n := range cd.Constraints {
		k := n.GetConstraint()
		if k == nil {
			continue
		}
		switch k.Contype {
		case pg.ConstrType_CONSTR_DEFAULT:
			c.setDefault(k.RawExpr)
		case pg.ConstrType_CONSTR_IDENTITY:
			c.identity = true
		case pg.ConstrType_CONSTR_GENERATED:
			c.generated = true
		case pg.ConstrType_CONSTR_NOTNULL:
			c.notNull = true
		case pg.ConstrType_CONSTR_NULL:
			c.notNull = false
		case pg.ConstrType_CONSTR_PRIMARY:
			c.primaryKey, c.notNull = true, true
			c.inline = append(c.inline, constraintFact(k, cd.Colname))
		case pg.ConstrType_CONSTR_UNIQUE, pg.ConstrType_CONSTR_FOREIGN, pg.ConstrType_CONSTR_CHECK, pg.ConstrType_CONSTR_EXCLUSION:
			c.inline = append(c.inline, constraintFact(k, cd.Colname))
		}
	}
	return c
}

func (c *colFact) setDefault(expr *pg.Node) {
	if expr == nil {
		return
	}
	if ac := expr.GetAConst(); ac != nil && ac.Isnull {
		c.hasDefault = false
		return
	}
	if tc := expr.GetTypeCast(); tc != nil {
		if ac := tc.Arg.GetAConst(); ac != nil && ac.Isnull {
			c.hasDefault = false
			return
		}
	}
	c.hasDefault = true
	c.defaultCalls = c.defaultCalls[:0]
	walkMessages(expr.ProtoReflect(), func(m protoreflect.Message) {
		switch v := m.Interface().(type) {
		case *pg.FuncCall:
			c.defaultCalls = append(c.defaultCalls, strings.Join(strs(v.Funcname), "."))
		case *pg.SubLink:
			c.defaultCalls = append(c.defaultCalls, "(subquery)")
		}
	})
}

// walkMessages calls fn for m and every message below it.
func walkMessages(m protoreflect.Message, fn func(protoreflect.Message)) {
	walkMessagesDepth(m, fn, 0)
}

func walkMessagesDepth(m protoreflect.Message, fn func(protoreflect.Message), depth int) {
	if !m.IsValid() || depth > 2*maxDepth {
		return
	}
	fn(m)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walkMessagesDepth(l.Get(i).Message(), fn, depth+1)
			}
			return true
		}
		if fd.IsMap() {
			return true
		}
		walkMessagesDepth(v.Message(), fn, depth+1)
		return true
	})
}

func constraintFact(k *pg.Constraint, column string) conFact {
	c := conFact{name: k.Conname, notValid: k.SkipValidation, usingIndex: k.Indexname}
	switch k.Contype {
	case pg.ConstrType_CONSTR_CHECK:
		c.kind = ConstraintCheck
		c.notNullOf = notNullColumns(k.RawExpr, nil, 0)
		if column != "" {
			c.columns = []string{column}
		} else {
			walkMessages(k.RawExpr.ProtoReflect(), func(m protoreflect.Message) {
				if cr, ok := m.Interface().(*pg.ColumnRef); ok {
					if f := strs(cr.Fields); len(f) > 0 && !contains(c.columns, f[len(f)-1]) {
						c.columns = append(c.columns, f[len(f)-1])
					}
				}
			})
		}
	case pg.ConstrType_CONSTR_FOREIGN:
		c.kind = ConstraintForeignKey
		c.ref = rangeVarName(k.Pktable)
		c.columns = strs(k.FkAttrs)
		c.refColumns = strs(k.PkAttrs)
		if column != "" {
			c.columns = []string{column}
		}
	case pg.ConstrType_CONSTR_PRIMARY:
		c.kind = ConstraintPrimaryKey
		c.columns = strs(k.Keys)
		c.including = strs(k.Including)
	case pg.ConstrType_CONSTR_UNIQUE:
		c.kind = ConstraintUnique
		c.columns = strs(k.Keys)
		c.including = strs(k.Including)
	case pg.ConstrType_CONSTR_EXCLUSION:
		c.kind = ConstraintExclusion
		for _, n := range k.Exclusions {
			// Each element is a list: the IndexElem and its operator.
			if l := n.GetList(); l != nil && len(l.Items) > 0 {
				if ie := l.Items[0].GetIndexElem(); ie != nil {
					c.columns = append(c.columns, indexElemName(ie))
				}
			}
		}
		c.including = strs(k.Including)
	case pg.ConstrType_CONSTR_NOTNULL:
		c.kind = ConstraintNotNull
		c.columns = strs(k.Keys)
	default:
		c.kind = 0
	}
	if column != "" && len(c.columns) == 0 {
		c.columns = []string{column}
	}
	return c
}

// constraintKindWord names a constraint kind for messages.
func constraintKindWord(k ConstraintType) string {
	switch k {
	case ConstraintCheck:
		return "CHECK"
	case ConstraintForeignKey:
		return "FOREIGN KEY"
	case ConstraintPrimaryKey:
		return "PRIMARY KEY"
	case ConstraintUnique:
		return "UNIQUE"
	case ConstraintExclusion:
		return "EXCLUDE"
	case ConstraintNotNull:
		return "NOT NULL"
	}
	return "constraint"
}

// addColumnSafeSQL returns, for ADD COLUMN cd of s, the column added with
// its type only, and the SET DEFAULT of its default ("" when none).
func addColumnSafeSQL(s *pg.AlterTableStmt, cd *pg.ColumnDef, deparse func() string) (bare, setDefault string) {
	if cd == nil || cd.TypeName == nil {
		return "", ""
	}
	tn := proto.Clone(cd.TypeName).(*pg.TypeName)
	if t := typeRefOf(tn); t.isSerial() {
		base := map[string]string{"serial2": "int2", "serial4": "int4", "serial8": "int8"}[t.name]
		tn = &pg.TypeName{Names: []*pg.Node{pg.MakeStrNode("pg_catalog"), pg.MakeStrNode(base)}, Typemod: -1}
	}
	col := &pg.ColumnDef{Colname: cd.Colname, TypeName: tn, IsLocal: true}
	s.Cmds = []*pg.Node{{Node: &pg.Node_AlterTableCmd{AlterTableCmd: &pg.AlterTableCmd{
		Subtype: pg.AlterTableType_AT_AddColumn, Def: &pg.Node{Node: &pg.Node_ColumnDef{ColumnDef: col}}, Behavior: pg.DropBehavior_DROP_RESTRICT,
	}}}}
	bare = deparse()
	expr := cd.RawDefault
	for _, n := range cd.Constraints {
		if k := n.GetConstraint(); k != nil && k.Contype == pg.ConstrType_CONSTR_DEFAULT {
			expr = k.RawExpr
		}
	}
	if expr != nil {
		s.Cmds = []*pg.Node{{Node: &pg.Node_AlterTableCmd{AlterTableCmd: &pg.AlterTableCmd{
			Subtype: pg.AlterTableType_AT_ColumnDefault, Name: cd.Colname, Def: expr, Behavior: pg.DropBehavior_DROP_RESTRICT,
		}}}}
		setDefault = deparse()
	}
	return bare, setDefault
}

// inlineConstraintSQL returns the j-th inline FK or CHECK constraint of ADD
// COLUMN cd as ALTER TABLE … ADD CONSTRAINT name … NOT VALID.
func inlineConstraintSQL(s *pg.AlterTableStmt, cd *pg.ColumnDef, j int, deparse func() string) string {
	k := withAttributes(cd, nthInlineConstraint(cd, j)) // a copy
	if k == nil {
		return ""
	}
	if k.Contype == pg.ConstrType_CONSTR_FOREIGN && len(k.FkAttrs) == 0 {
		k.FkAttrs = []*pg.Node{pg.MakeStrNode(cd.Colname)}
	}
	if k.Conname == "" {
		k.Conname = defaultConstraintName(rangeVarName(s.Relation), constraintFact(k, cd.Colname))
	}
	k.SkipValidation, k.InitiallyValid = true, false
	s.Cmds = []*pg.Node{{Node: &pg.Node_AlterTableCmd{AlterTableCmd: &pg.AlterTableCmd{
		Subtype: pg.AlterTableType_AT_AddConstraint, Def: &pg.Node{Node: &pg.Node_Constraint{Constraint: k}}, Behavior: pg.DropBehavior_DROP_RESTRICT,
	}}}}
	return deparse()
}

// nthInlineConstraint returns the j-th constraint of column definition cd
// that colFact.inline holds (a PRIMARY KEY, UNIQUE, FOREIGN KEY, CHECK or
// EXCLUDE), or nil.
func nthInlineConstraint(cd *pg.ColumnDef, j int) *pg.Constraint {
	n := 0
	for _, c := range cd.Constraints {
		con := c.GetConstraint()
		if con == nil {
			continue
		}
		switch con.Contype {
		case pg.ConstrType_CONSTR_PRIMARY, pg.ConstrType_CONSTR_UNIQUE, pg.ConstrType_CONSTR_FOREIGN, pg.ConstrType_CONSTR_CHECK, pg.ConstrType_CONSTR_EXCLUSION:
			if n == j {
				return con
			}
			n++
		}
	}
	return nil
}

// withAttributes returns column constraint k of cd with the DEFERRABLE and
// INITIALLY DEFERRED that follow it in cd as attributes of their own
// applied, as PostgreSQL applies them (transformConstraintAttrs).
func withAttributes(cd *pg.ColumnDef, k *pg.Constraint) *pg.Constraint {
	if k == nil {
		return nil
	}
	var out *pg.Constraint
	seen := false
	for _, n := range cd.Constraints {
		c := n.GetConstraint()
		if c == nil {
			continue
		}
		if c == k {
			seen = true
			out = proto.Clone(k).(*pg.Constraint)
			continue
		}
		if !seen {
			continue
		}
		switch c.Contype {
		case pg.ConstrType_CONSTR_ATTR_DEFERRABLE:
			out.Deferrable = true
		case pg.ConstrType_CONSTR_ATTR_NOT_DEFERRABLE:
			out.Deferrable = false
		case pg.ConstrType_CONSTR_ATTR_DEFERRED:
			out.Deferrable, out.Initdeferred = true, true
		case pg.ConstrType_CONSTR_ATTR_IMMEDIATE:
			out.Initdeferred = false
		default:
			return out
		}
	}
	return out
}

// notNullColumns returns the columns expr proves not null: col IS NOT NULL,
// alone or in a top-level AND.
func notNullColumns(expr *pg.Node, out []string, depth int) []string {
	if expr == nil || depth > maxDepth {
		return out
	}
	if nt := expr.GetNullTest(); nt != nil && nt.Nulltesttype == pg.NullTestType_IS_NOT_NULL {
		if cr := nt.Arg.GetColumnRef(); cr != nil {
			if f := strs(cr.Fields); len(f) > 0 {
				out = append(out, f[len(f)-1])
			}
		}
	}
	if be := expr.GetBoolExpr(); be != nil && be.Boolop == pg.BoolExprType_AND_EXPR {
		for _, a := range be.Args {
			out = notNullColumns(a, out, depth+1)
		}
	}
	return out
}

// constraintDefProvesNotNull reports whether a constraint definition as
// pg_get_constraintdef prints it ("CHECK ((email IS NOT NULL))") proves
// column not null.
func constraintDefProvesNotNull(def, column string) bool {
	k := parseCheckDef(def)
	if k == nil || k.SkipValidation {
		return false
	}
	return contains(notNullColumns(k.RawExpr, nil, 0), column)
}

// parseCheckDef parses a CHECK constraint's definition as
// pg_get_constraintdef prints it, or returns nil.
func parseCheckDef(def string) *pg.Constraint {
	if !strings.HasPrefix(strings.TrimSpace(def), "CHECK") || strings.Contains(def, ";") {
		return nil
	}
	tree, err := pg.Parse("ALTER TABLE t ADD CONSTRAINT c " + def)
	if err != nil || len(tree.Stmts) != 1 {
		return nil
	}
	at := tree.Stmts[0].Stmt.GetAlterTableStmt()
	if at == nil || len(at.Cmds) != 1 {
		return nil
	}
	return at.Cmds[0].GetAlterTableCmd().GetDef().GetConstraint()
}

// indexElemName is the name PostgreSQL gives an index element when it
// names the index after its columns (ChooseIndexColumnNames): the column's
// name, or for an expression the name FigureIndexColname finds in it
// ("lower" for lower(email)), or "expr".
func indexElemName(ie *pg.IndexElem) string {
	switch {
	case ie.Indexcolname != "":
		return ie.Indexcolname
	case ie.Name != "":
		return ie.Name
	}
	if name, _ := figureColname(ie.Expr, 0); name != "" {
		return name
	}
	return "expr"
}

// figureColname is PostgreSQL's FigureColnameInternal for the expressions
// an index or a result column is named after: the name and its strength
// (2 for a column, function or construct name, 1 for a type name or
// "case", 0 for none). XML and JSON constructs are not named here.
func figureColname(n *pg.Node, depth int) (string, int) {
	if n == nil || depth > maxDepth {
		return "", 0
	}
	lastString := func(nodes []*pg.Node) string {
		name := ""
		for _, f := range nodes {
			if s := f.GetString_(); s != nil {
				name = s.Sval
			}
		}
		return name
	}
	switch x := n.GetNode().(type) {
	case *pg.Node_ColumnRef:
		if name := lastString(x.ColumnRef.Fields); name != "" {
			return name, 2
		}
	case *pg.Node_AIndirection:
		if name := lastString(x.AIndirection.Indirection); name != "" {
			return name, 2
		}
		return figureColname(x.AIndirection.Arg, depth+1)
	case *pg.Node_FuncCall:
		if name := lastString(x.FuncCall.Funcname); name != "" {
			return name, 2
		}
	case *pg.Node_AExpr:
		if x.AExpr.Kind == pg.A_Expr_Kind_AEXPR_NULLIF {
			return "nullif", 2
		}
	case *pg.Node_TypeCast:
		name, strength := figureColname(x.TypeCast.Arg, depth+1)
		if strength <= 1 && x.TypeCast.TypeName != nil {
			if t := lastString(x.TypeCast.TypeName.Names); t != "" {
				return t, 1
			}
		}
		return name, strength
	case *pg.Node_CollateClause:
		return figureColname(x.CollateClause.Arg, depth+1)
	case *pg.Node_GroupingFunc:
		return "grouping", 2
	case *pg.Node_SubLink:
		switch x.SubLink.SubLinkType {
		case pg.SubLinkType_EXISTS_SUBLINK:
			return "exists", 2
		case pg.SubLinkType_ARRAY_SUBLINK:
			return "array", 2
		case pg.SubLinkType_EXPR_SUBLINK:
			if sel := x.SubLink.Subselect.GetSelectStmt(); sel != nil && len(sel.TargetList) > 0 {
				if rt := sel.TargetList[0].GetResTarget(); rt != nil {
					if rt.Name != "" {
						return rt.Name, 2
					}
					return figureColname(rt.Val, depth+1)
				}
			}
		}
	case *pg.Node_CaseExpr:
		name, strength := figureColname(x.CaseExpr.Defresult, depth+1)
		if strength <= 1 {
			return "case", 1
		}
		return name, strength
	case *pg.Node_AArrayExpr:
		return "array", 2
	case *pg.Node_RowExpr:
		return "row", 2
	case *pg.Node_CoalesceExpr:
		return "coalesce", 2
	case *pg.Node_MinMaxExpr:
		if x.MinMaxExpr.Op == pg.MinMaxOp_IS_LEAST {
			return "least", 2
		}
		return "greatest", 2
	case *pg.Node_SqlvalueFunction:
		return sqlValueFunctionName(x.SqlvalueFunction.Op), 2
	}
	return "", 0
}

// sqlValueFunctionName is the column name of CURRENT_DATE and its kind.
func sqlValueFunctionName(op pg.SQLValueFunctionOp) string {
	switch op {
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_DATE:
		return "current_date"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_TIME, pg.SQLValueFunctionOp_SVFOP_CURRENT_TIME_N:
		return "current_time"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP, pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP_N:
		return "current_timestamp"
	case pg.SQLValueFunctionOp_SVFOP_LOCALTIME, pg.SQLValueFunctionOp_SVFOP_LOCALTIME_N:
		return "localtime"
	case pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP, pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP_N:
		return "localtimestamp"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_ROLE:
		return "current_role"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_USER:
		return "current_user"
	case pg.SQLValueFunctionOp_SVFOP_USER:
		return "user"
	case pg.SQLValueFunctionOp_SVFOP_SESSION_USER:
		return "session_user"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_CATALOG:
		return "current_catalog"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_SCHEMA:
		return "current_schema"
	}
	return ""
}

// usingIndexSQL is the online form of adding UNIQUE or PRIMARY KEY
// constraint k, named name, over columns cols, to the table of s (the
// statement of raw): its index built CONCURRENTLY as the constraint would
// build it (INCLUDE, NULLS NOT DISTINCT, WITH, TABLESPACE), then the
// constraint added over it, DEFERRABLE as asked. raw and s are changed to
// deparse them, and restored.
func usingIndexSQL(raw *pg.RawStmt, s *pg.AlterTableStmt, k *pg.Constraint, cols []string, name string, deparse func() string) string {
	if s.Relation == nil {
		return ""
	}
	elems := func(names []string) []*pg.Node {
		out := make([]*pg.Node, len(names))
		for i, n := range names {
			out[i] = &pg.Node{Node: &pg.Node_IndexElem{IndexElem: &pg.IndexElem{Name: n,
				Ordering: pg.SortByDir_SORTBY_DEFAULT, NullsOrdering: pg.SortByNulls_SORTBY_NULLS_DEFAULT}}}
		}
		return out
	}
	rel := proto.Clone(s.Relation).(*pg.RangeVar)
	rel.Inh = true
	stmt := raw.Stmt
	raw.Stmt = &pg.Node{Node: &pg.Node_IndexStmt{IndexStmt: &pg.IndexStmt{Idxname: name, Relation: rel,
		IndexParams: elems(cols), IndexIncludingParams: elems(strs(k.Including)), Options: k.Options,
		TableSpace: k.Indexspace, Unique: true, NullsNotDistinct: k.NullsNotDistinct, Concurrent: true}}}
	create := deparse()
	raw.Stmt = stmt
	cmds := s.Cmds
	s.Cmds = []*pg.Node{{Node: &pg.Node_AlterTableCmd{AlterTableCmd: &pg.AlterTableCmd{
		Subtype: pg.AlterTableType_AT_AddConstraint, Behavior: pg.DropBehavior_DROP_RESTRICT,
		Def: &pg.Node{Node: &pg.Node_Constraint{Constraint: &pg.Constraint{Contype: k.Contype, Conname: name, Indexname: name,
			Deferrable: k.Deferrable, Initdeferred: k.Initdeferred}}},
	}}}}
	alter := deparse()
	s.Cmds = cmds
	if create == "" || alter == "" {
		return ""
	}
	return create + ";\n" + alter + ";"
}

// boundFact is a partition bound of one column with constant values:
// FOR VALUES FROM (lower) TO (upper) (kind 'r'; "" for MINVALUE or
// MAXVALUE) or FOR VALUES IN (list…) (kind 'l'), as constText; kind 0 for
// any other.
type boundFact struct {
	kind         byte
	lower, upper string
	list         []string
}

// partitionBound reads b as a boundFact.
func partitionBound(b *pg.PartitionBoundSpec) boundFact {
	if b == nil {
		return boundFact{}
	}
	if b.Strategy == "l" {
		f := boundFact{kind: 'l'}
		for _, n := range b.Listdatums {
			c := constText(n)
			if c == "" {
				return boundFact{} // NULL or not a constant
			}
			f.list = append(f.list, c)
		}
		return f
	}
	lo, hi, ok := rangeBound(b)
	if !ok {
		return boundFact{}
	}
	return boundFact{kind: 'r', lower: lo, upper: hi}
}

// rangeBound returns the constants of a FOR VALUES FROM (lo) TO (hi) bound
// of one column (constText; "" for MINVALUE / MAXVALUE), and whether the
// bound is of that form.
func rangeBound(b *pg.PartitionBoundSpec) (lo, hi string, ok bool) {
	if b.Strategy != "r" || len(b.Lowerdatums) != 1 || len(b.Upperdatums) != 1 {
		return "", "", false
	}
	datum := func(n *pg.Node) (string, bool) {
		if p := n.GetPartitionRangeDatum(); p != nil {
			switch p.Kind {
			case pg.PartitionRangeDatumKind_PARTITION_RANGE_DATUM_MINVALUE, pg.PartitionRangeDatumKind_PARTITION_RANGE_DATUM_MAXVALUE:
				return "", true
			}
			n = p.Value
		}
		if cr := n.GetColumnRef(); cr != nil {
			// MINVALUE / MAXVALUE as the raw grammar leaves them.
			if f := strs(cr.Fields); len(f) == 1 && (strings.EqualFold(f[0], "minvalue") || strings.EqualFold(f[0], "maxvalue")) {
				return "", true
			}
		}
		c := constText(n)
		return c, c != ""
	}
	lo, okLo := datum(b.Lowerdatums[0])
	hi, okHi := datum(b.Upperdatums[0])
	return lo, hi, okLo && okHi
}

// constText is a constant, under any casts, as text ("0", "2026-01-01"),
// or "" when n is not one. Two constants of the same column with the same
// text are the same value.
func constText(n *pg.Node) string {
	for depth := 0; n != nil && depth < maxDepth; depth++ {
		if tc := n.GetTypeCast(); tc != nil {
			n = tc.Arg
			continue
		}
		c := n.GetAConst()
		if c == nil || c.Isnull {
			return ""
		}
		switch v := c.Val.(type) {
		case *pg.A_Const_Ival:
			return strconv.Itoa(int(v.Ival.Ival))
		case *pg.A_Const_Fval:
			return v.Fval.Fval
		case *pg.A_Const_Sval:
			if plainNumber(v.Sval.Sval) {
				// pg_get_constraintdef prints a negative constant as a
				// quoted literal ('-5'::integer, '-1.5'::numeric) where
				// the bound has the number -5: the same value of the
				// column's type, as the same text always is.
				return v.Sval.Sval
			}
			return "'" + v.Sval.Sval
		}
		return ""
	}
	return ""
}

// plainNumber reports whether s is written as the parser writes an
// integer or decimal constant: an optional minus sign, digits, and
// optionally a point and more digits.
func plainNumber(s string) bool {
	s = strings.TrimPrefix(s, "-")
	whole, frac, dot := strings.Cut(s, ".")
	digits := func(d string) bool {
		return d != "" && strings.Trim(d, "0123456789") == ""
	}
	return digits(whole) && (!dot || digits(frac))
}

// checkProvesBound reports what CHECK definition def (as
// pg_get_constraintdef prints it) proves of column against bound b, by its
// top-level conjuncts with b's own constants: for a range, column >= lower
// (or lower <= column) and column < upper (or upper > column); for a list,
// column = ANY (ARRAY[…]), column IN (…) or column = v with values all in
// b's list (both reported in lower and upper); and whether it proves column
// IS NOT NULL.
func checkProvesBound(def, column string, b boundFact) (lower, upper, notNull bool) {
	lo, hi := b.lower, b.upper
	k := parseCheckDef(def)
	if k == nil {
		return false, false, false
	}
	notNull = contains(notNullColumns(k.RawExpr, nil, 0), column)
	isColumn := func(n *pg.Node) bool {
		cr := n.GetColumnRef()
		if cr == nil {
			return false
		}
		f := strs(cr.Fields)
		return len(f) == 1 && f[0] == column
	}
	var walk func(n *pg.Node, depth int)
	walk = func(n *pg.Node, depth int) {
		if n == nil || depth > maxDepth {
			return
		}
		if be := n.GetBoolExpr(); be != nil && be.Boolop == pg.BoolExprType_AND_EXPR {
			for _, a := range be.Args {
				walk(a, depth+1)
			}
			return
		}
		e := n.GetAExpr()
		if e == nil || len(e.Name) != 1 {
			return
		}
		op := strs(e.Name)
		if len(op) != 1 {
			return
		}
		if b.kind == 'l' {
			// Every value the CHECK allows is in the bound's list.
			var vals []*pg.Node
			switch {
			case e.Kind == pg.A_Expr_Kind_AEXPR_OP_ANY && op[0] == "=" && isColumn(e.Lexpr):
				if a := e.Rexpr.GetAArrayExpr(); a != nil {
					vals = a.Elements
				}
			case e.Kind == pg.A_Expr_Kind_AEXPR_IN && op[0] == "=" && isColumn(e.Lexpr):
				if l := e.Rexpr.GetList(); l != nil {
					vals = l.Items
				}
			case e.Kind == pg.A_Expr_Kind_AEXPR_OP && op[0] == "=" && isColumn(e.Lexpr):
				vals = []*pg.Node{e.Rexpr}
			}
			in := len(vals) > 0
			for _, v := range vals {
				in = in && slices.Contains(b.list, constText(v))
			}
			if in {
				lower, upper = true, true
			}
			return
		}
		if b.kind != 'r' || e.Kind != pg.A_Expr_Kind_AEXPR_OP {
			return
		}
		switch {
		case isColumn(e.Lexpr) && op[0] == ">=" && lo != "" && constText(e.Rexpr) == lo,
			isColumn(e.Rexpr) && op[0] == "<=" && lo != "" && constText(e.Lexpr) == lo:
			lower = true
		case isColumn(e.Lexpr) && op[0] == "<" && hi != "" && constText(e.Rexpr) == hi,
			isColumn(e.Rexpr) && op[0] == ">" && hi != "" && constText(e.Lexpr) == hi:
			upper = true
		}
	}
	walk(k.RawExpr, 0)
	return lower, upper, notNull
}
