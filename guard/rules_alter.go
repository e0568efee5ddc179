package guard

import (
	"slices"
	"strings"
)

// The rules about ALTER TABLE subcommands.

func (e *evaluator) checkAlterTable() {
	f := e.f
	rel := e.target()
	isNew := e.isNew(rel) || e.isTemp(rel)
	fkCmd := false
	for i := range f.cmds {
		c := &f.cmds[i]
		switch c.kind {
		case cmdAddColumn:
			if c.col != nil {
				e.checkAddColumn(rel, isNew, c)
			}
		case cmdAlterType:
			fkCmd = true
			if !isNew && c.col != nil {
				e.checkAlterType(rel, c)
			}
		case cmdSetNotNull:
			if !isNew {
				e.checkSetNotNull(rel, c)
			}
		case cmdDropNotNull:
			if !isNew {
				e.fire(rDropNotNull, hit{
					rel: rel, lock: AccessExclusive,
					msg:    "NOT NULL dropped from column " + qi(c.column) + " of " + rel.String() + ": readers may now get NULLs",
					detail: lockDetail(AccessExclusive, one(rel), " (briefly)") + "; code that assumed the column is never NULL may break",
					hint:   "make every reader handle NULL before dropping the constraint",
				})
			}
		case cmdDropColumn:
			fkCmd = true
			if !isNew {
				e.fire(rDropColumn, hit{
					rel: rel, lock: AccessExclusive,
					msg:    "column " + qi(c.column) + " dropped from " + rel.String() + ": clients that still use it fail",
					detail: lockDetail(AccessExclusive, one(rel), " (briefly)") + "; every running query or prepared statement that names the column fails from commit on",
					hint: lines("-- first make the application stop reading and writing the column (e.g. Rails ignored_columns) and deploy;",
						"-- drop indexes and foreign keys on it separately (DROP INDEX CONCURRENTLY), then:",
						semi("ALTER TABLE "+rel.String()+" DROP COLUMN "+qi(c.column))),
				})
			}
		case cmdAddConstraint:
			if c.con != nil {
				e.checkAddConstraint(rel, isNew, c)
			}
		case cmdValidate:
			e.checkValidate(rel, c)
		case cmdDropConstraint:
			e.checkDropConstraint(rel, isNew, c)
		case cmdAttach:
			e.checkAttach(rel, c)
		case cmdDetach:
			if !isNew {
				part := c.part
				if l, ok := e.findLock(part); ok {
					part = l.Rel
				}
				e.fire(rDetachPartitionBlocking, hit{
					rel: rel, lock: AccessExclusive,
					msg:    "DETACH PARTITION " + part.String() + " from " + rel.String() + " without CONCURRENTLY",
					detail: lockDetail(AccessExclusive, []RelName{rel, part}, "") + " (the whole partitioned table)",
					hint:   lines(semi(c.safeSQL), "-- PostgreSQL 14+, outside a transaction block, and only when the table has no default partition"),
				})
			}
		case cmdSetTablespace, cmdSetLogged, cmdSetUnlogged, cmdSetAccessMethod:
			if !isNew && e.st.Rewrite {
				what := map[cmdKind]string{cmdSetTablespace: "SET TABLESPACE", cmdSetLogged: "SET LOGGED",
					cmdSetUnlogged: "SET UNLOGGED", cmdSetAccessMethod: "SET ACCESS METHOD"}[c.kind]
				e.fireRewrite(rel, "ALTER TABLE "+rel.String()+" "+what)
			}
		case cmdTrigger:
			if !isNew {
				e.fireTrigger(rel, "ALTER TABLE … "+strings.Join(e.st.Subcommands, ", "))
			}
		}
	}
	// With the catalog, the analysis knows that DROP COLUMN or ALTER COLUMN
	// TYPE drops or rebuilds a foreign key, which locks its other table.
	if fkCmd && !e.firedRule(rDropForeignKey) {
		refs := e.others(rel, AccessExclusive, RoleReferenced, RoleCascaded)
		if len(refs) > 0 {
			all := append(one(rel), refs...)
			e.fire(rDropForeignKey, hit{
				rel: refs[0], lock: AccessExclusive,
				msg:    "ALTER TABLE " + rel.String() + " drops or rebuilds a foreign key: ACCESS EXCLUSIVE on " + relsText(refs) + " too",
				detail: lockDetail(AccessExclusive, all, "") + "; while it waits behind any open transaction on one of them, every later query on all of them queues behind it",
				hint:   "drop the foreign key first, alone in its own transaction with a short lock_timeout and retries (lockguard injects both at runtime)",
			})
		}
	}
}

// findLock returns the statement's lock on rel (by name).
func (e *evaluator) findLock(rel RelName) (RelationLock, bool) {
	return e.st.LockOn(rel)
}

func (e *evaluator) fireRewrite(rel RelName, what string) {
	e.fire(rTableRewriteMaintenance, hit{
		rel: rel, lock: AccessExclusive,
		msg:    what + " rewrites the whole table",
		detail: lockDetail(AccessExclusive, one(rel), " while every row is copied"),
		hint:   "use pg_repack (or REPACK … CONCURRENTLY on PostgreSQL 19), or build a new table and copy in batches; plain VACUUM for bloat",
	})
}

func (e *evaluator) fireTrigger(rel RelName, what string) {
	mode := e.lockOn(rel)
	if mode == NoLock {
		mode = ShareRowExclusive
	}
	e.fire(rTriggerDDL, hit{
		rel: rel, lock: mode,
		msg:    what + " locks " + rel.String() + " " + mode.String(),
		detail: lockDetail(mode, one(rel), " (briefly)") + "; while it waits behind a long transaction, later queries on the table queue behind it",
		hint:   "keep it alone in its transaction with a short lock_timeout and retries (lockguard injects both at runtime)",
	})
}

// ADD COLUMN.
func (e *evaluator) checkAddColumn(rel RelName, isNew bool, c *cmdFact) {
	col := c.col
	tbl := rel.String()
	name := qi(col.name)
	if !isNew {
		rewrite := lockDetail(AccessExclusive, one(rel), " while every row is rewritten and every index rebuilt")
		defExpr := ""
		if i := strings.Index(c.defaultSQL, " SET DEFAULT "); i >= 0 {
			defExpr = c.defaultSQL[i+len(" SET DEFAULT "):]
		}
		backfill := "-- then fill existing rows in batches, outside this transaction"
		if defExpr != "" {
			backfill += ":\n-- UPDATE " + tbl + " SET " + name + " = " + defExpr + " WHERE " + name + " IS NULL AND <key range>;"
		}
		if col.hasDefault && !col.generated && !col.identity && !col.typ.isSerial() {
			if v := e.version(); v > 0 && v < 110000 {
				e.fire(rAddColumnVolatileDefault, hit{
					rel: rel, lock: AccessExclusive,
					msg:    "column " + name + " added to " + tbl + " with a DEFAULT: before PostgreSQL 11 any default rewrites the table",
					detail: rewrite,
					hint:   lines(semi(c.bareSQL), semi(c.defaultSQL), backfill),
				})
			} else if vol, unknown, note := e.volatileCalls(col.defaultCalls); len(vol) > 0 {
				e.fire(rAddColumnVolatileDefault, hit{
					rel: rel, lock: AccessExclusive,
					msg:    "column " + name + " added to " + tbl + " with a DEFAULT that calls volatile " + strings.Join(vol, "(), ") + "(): every row gets its own value, so the table is rewritten",
					detail: rewrite,
					hint:   lines(semi(c.bareSQL), semi(c.defaultSQL), backfill),
				})
			} else if len(unknown) > 0 {
				e.fire(rAddColumnVolatileDefault, hit{
					rel: rel, lock: AccessExclusive,
					msg:    "column " + name + " added to " + tbl + " with a DEFAULT that calls " + strings.Join(unknown, "(), ") + "(): if that is volatile, the table is rewritten",
					detail: rewrite,
					hint:   lines(semi(c.bareSQL), semi(c.defaultSQL), backfill),
					note:   note,
				})
			}
		}
		if col.generated {
			e.fire(rAddColumnStoredGenerated, hit{
				rel: rel, lock: AccessExclusive,
				msg:    "stored generated column " + name + " added to " + tbl + ": every row is computed and the table rewritten",
				detail: rewrite,
				hint: lines(semi(c.bareSQL),
					"-- fill it from a trigger or the application, and backfill existing rows in batches;",
					"-- on PostgreSQL 18 a VIRTUAL generated column is added without a rewrite"),
			})
		}
		if col.typ.isSerial() || col.identity {
			kind := "identity"
			if col.typ.isSerial() {
				kind = "serial"
			}
			seq := objectName(rel.Name, col.name, "seq")
			qseq := qi(seq)
			if rel.Schema != "" {
				qseq = qi(rel.Schema) + "." + qseq
			}
			// The sequence a serial or identity column gets counts in
			// the column's type, as the one PostgreSQL would make.
			as := map[string]string{"serial2": " AS smallint", "int2": " AS smallint", "serial4": " AS integer", "int4": " AS integer"}[col.typ.name]
			if col.typ.schema != "" {
				as = ""
			}
			e.fire(rAddColumnSerialIdentity, hit{
				rel: rel, lock: AccessExclusive,
				msg:    kind + " column " + name + " added to " + tbl + ": every row gets a value and the table is rewritten",
				detail: rewrite,
				hint: lines(semi(c.bareSQL),
					"CREATE SEQUENCE "+qseq+as+" OWNED BY "+tbl+"."+name+";",
					"ALTER TABLE "+tbl+" ALTER COLUMN "+name+" SET DEFAULT nextval('"+strings.ReplaceAll(qseq, "'", "''")+"');",
					"-- then backfill existing rows in batches, outside this transaction:",
					"-- UPDATE "+tbl+" SET "+name+" = nextval('"+strings.ReplaceAll(qseq, "'", "''")+"') WHERE "+name+" IS NULL AND <key range>;"),
			})
		}
		if col.notNull && !col.hasDefault && !col.identity && !col.generated && !col.typ.isSerial() {
			bare := strings.TrimSuffix(c.bareSQL, ";")
			e.fire(rAddColumnRequired, hit{
				rel: rel, lock: AccessExclusive,
				msg:    "NOT NULL column " + name + " added to " + tbl + " without a default: fails if the table has rows, and INSERTs that do not name it fail",
				detail: lockDetail(AccessExclusive, one(rel), "") + "; existing rows would be NULL, so the statement errors on a non-empty table",
				hint: lines(bare+" DEFAULT <constant> NOT NULL;  -- a constant default: no rewrite on PostgreSQL 11+",
					"-- or add it nullable, backfill, and make it NOT NULL through a validated CHECK (rule set-not-null)"),
			})
		}
		if len(col.inline) > 0 {
			e.checkInlineConstraints(rel, c)
		}
	}
	e.checkColumnHygiene(rel, col, col.primaryKey)
}

func (e *evaluator) checkInlineConstraints(rel RelName, c *cmdFact) {
	col := c.col
	tbl := rel.String()
	var kinds []string
	hints := []string{semi(c.bareSQL)}
	rels := one(rel)
	for _, k := range col.inline {
		kinds = append(kinds, constraintKindWord(k.kind))
		name := k.nameOn(rel)
		switch k.kind {
		case ConstraintUnique, ConstraintPrimaryKey:
			hints = append(hints, usingIndexHint(tbl, name, &k, []string{col.name}))
		case ConstraintForeignKey, ConstraintCheck:
			if k.kind == ConstraintForeignKey {
				ref := k.ref
				for _, l := range e.st.Locks {
					if l.Role == RoleReferenced && l.Rel.Name == k.ref.Name {
						ref = l.Rel
					}
				}
				if ref.Name != "" && !ref.Matches(rel) {
					rels = append(rels, ref)
				}
			}
			hints = append(hints, semi(k.safeSQL),
				"-- then, in its own transaction:",
				"ALTER TABLE "+tbl+" VALIDATE CONSTRAINT "+qi(name)+";")
		case ConstraintExclusion:
			hints = append(hints, "-- an EXCLUDE constraint has no online path: build it on a new table and copy")
		}
	}
	detail := lockDetail(AccessExclusive, one(rel), " while the constraint is built or checked")
	if len(rels) > 1 {
		detail += "; SHARE ROW EXCLUSIVE on " + relsText(rels[1:]) + ": blocks every write to it"
	}
	e.fire(rAddColumnInlineConstraint, hit{
		rel: rel, lock: AccessExclusive,
		msg:    "column " + qi(col.name) + " added to " + tbl + " with inline " + strings.Join(kinds, ", ") + ": built or validated under the lock",
		detail: detail,
		hint:   lines(hints...),
	})
}

// volatileFunctions lists functions common in defaults and their
// volatility, for when the catalog cannot say.
var volatileFunctions = map[string]Volatility{
	"random": Volatile, "random_normal": Volatile, "gen_random_uuid": Volatile, "gen_random_bytes": Volatile,
	"uuid_generate_v1": Volatile, "uuid_generate_v1mc": Volatile, "uuid_generate_v4": Volatile, "uuidv4": Volatile, "uuidv7": Volatile,
	"clock_timestamp": Volatile, "timeofday": Volatile, "nextval": Volatile, "setval": Volatile, "currval": Volatile, "lastval": Volatile,
	"txid_current": Stable, "pg_current_xact_id": Volatile,
	"now": Stable, "transaction_timestamp": Stable, "statement_timestamp": Stable, "current_setting": Stable,
	"to_char": Stable, "to_timestamp": Stable, "to_date": Stable, "date_trunc": Stable, "timezone": Stable, "age": Stable,
	"make_interval": Immutable, "make_date": Immutable, "make_time": Immutable, "make_timestamp": Immutable, "make_timestamptz": Stable,
	"lower": Immutable, "upper": Immutable, "concat": Stable, "concat_ws": Stable, "md5": Immutable, "length": Immutable,
	"btrim": Immutable, "ltrim": Immutable, "rtrim": Immutable, "replace": Immutable, "substring": Immutable, "substr": Immutable,
	"jsonb_build_object": Stable, "json_build_object": Stable, "jsonb_build_array": Stable, "json_build_array": Stable,
	"to_jsonb": Stable, "to_json": Stable, "array_fill": Immutable, "abs": Immutable, "round": Immutable, "floor": Immutable,
	"ceil": Immutable, "encode": Immutable, "decode": Immutable, "uuid_nil": Immutable, "uuid_ns_dns": Immutable,
	"uuid_ns_url": Immutable, "uuid_ns_oid": Immutable, "uuid_ns_x500": Immutable, "date": Stable, "int8": Immutable,
}

// volatileCalls sorts the functions a default calls into known-volatile and
// unknown ones.
func (e *evaluator) volatileCalls(calls []string) (vol, unknown []string, note string) {
	cat := e.c.Catalog
	for _, fn := range calls {
		if fn == "(subquery)" {
			continue
		}
		base := strings.ToLower(fn)
		if i := strings.LastIndexByte(base, '.'); i >= 0 {
			base = base[i+1:]
		}
		if cat != nil {
			if v, ok := cat.FunctionVolatility(fn); ok {
				if v == Volatile {
					vol = append(vol, fn)
				}
				continue
			}
		}
		if v, ok := volatileFunctions[base]; ok {
			if v == Volatile {
				vol = append(vol, fn)
			}
			continue
		}
		unknown = append(unknown, fn)
	}
	if len(unknown) > 0 {
		if cat == nil {
			note = noCatalog + ": the volatility of " + strings.Join(unknown, "(), ") + "() is unknown"
		} else {
			note = "the catalog does not know " + strings.Join(unknown, "(), ") + "()"
		}
	}
	return vol, unknown, note
}

// ALTER COLUMN TYPE.
func (e *evaluator) checkAlterType(rel RelName, c *cmdFact) {
	nt := c.col.typ
	old, known, note := e.columnType(rel, c.column)
	ok, why := coercible(old, known, nt, c.using, e.utc, e.version())
	if !ok && why == "" && known && !c.using {
		ok = e.castsWithoutFunction(old, nt)
	}
	tbl := rel.String()
	name := qi(c.column)
	if ok {
		if c.col.collate {
			// A new collation keeps the table (its values do not
			// change) but not its indexes on the column, which sort by
			// it: PostgreSQL rebuilds them unless the collation is the
			// one the column has.
			e.fire(rChangeColumnType, hit{
				rel: rel, lock: AccessExclusive,
				msg:    "column " + name + " of " + tbl + " changed to " + nt.String() + " with a COLLATE: the table is not rewritten, but indexes on the column are rebuilt under ACCESS EXCLUSIVE",
				detail: lockDetail(AccessExclusive, one(rel), " while the column's indexes are rebuilt (unless the collation is the one it has)"),
				hint: lines("-- to keep the lock short: DROP INDEX CONCURRENTLY the column's indexes first,",
					"-- change the collation (no rewrite), then CREATE INDEX CONCURRENTLY them again;",
					"-- queries run without those indexes in between"),
				note: note,
			})
		}
		e.checkTypeRecheck(rel, c)
		return
	}
	var msg string
	if known {
		msg = "column " + name + " of " + tbl + " changed from " + old.String() + " to " + nt.String() + ", which is not binary-coercible"
	} else {
		msg = "column " + name + " of " + tbl + " changed to " + nt.String()
	}
	if why != "" {
		msg += " (" + why + ")"
	}
	if known || why != "" {
		msg += ": the table is rewritten"
	} else {
		msg += ": the table is rewritten unless the current type is binary-coercible to " + nt.String()
	}
	rels := append(one(rel), e.others(rel, AccessExclusive, RoleReferenced)...)
	hint := lines("-- expand and contract instead of rewriting in place:",
		"ALTER TABLE "+tbl+" ADD COLUMN "+qi(c.column+"_new")+" "+nt.String()+";",
		"-- write both columns (application or trigger), backfill the new one in batches,",
		"-- move readers to it, then drop "+name+" and rename the new column")
	if strings.Contains(why, "TimeZone") {
		hint = lines("SET TIME ZONE 'UTC';  -- in the same session first (PostgreSQL 12+): the change is then binary-coercible", hint)
	}
	e.fire(rChangeColumnType, hit{
		rel: rel, lock: AccessExclusive, msg: msg,
		detail: lockDetail(AccessExclusive, rels, " while every row is rewritten and every index rebuilt"),
		hint:   hint,
		note:   note,
	})
}

// columnType returns the current type of rel.column: from the catalog, or
// from an earlier statement of the file or transaction.
func (e *evaluator) columnType(rel RelName, column string) (typeRef, bool, string) {
	if m := e.colMem(rel, column); m != nil && m.typ.known() {
		return m.typ, true, ""
	}
	cat := e.c.Catalog
	if cat == nil {
		return typeRef{}, false, noCatalog + ": the column's current type is unknown"
	}
	cc, ok := cat.(ColumnCatalog)
	if !ok {
		return typeRef{}, false, "the catalog does not report column types"
	}
	s, _, ok := cc.ColumnType(rel, column)
	if !ok {
		return typeRef{}, false, "column " + column + " of " + rel.String() + " not found in the catalog"
	}
	t, ok := parseTypeName(s)
	if !ok {
		return typeRef{}, false, "could not read the column's type " + s
	}
	return t, true, ""
}

// coercible reports whether changing a column from old to nt is
// binary-coercible (no rewrite), and if not, why when there is a reason
// worth telling.
func coercible(old typeRef, known bool, nt typeRef, using, utc bool, version int) (bool, string) {
	switch {
	case using:
		return false, "USING computes every value anew"
	case !known || !nt.known():
		return false, ""
	case old.array != nt.array || old.schema != nt.schema || old.modsUnknown || nt.modsUnknown:
		return false, ""
	case old.equal(nt):
		return true, ""
	}
	// widen: the new modifier is absent (no limit) or not smaller.
	widen := func() bool {
		if len(nt.mods) == 0 {
			return true
		}
		return len(old.mods) > 0 && nt.mods[0] >= old.mods[0]
	}
	o, n := old.name, nt.name
	switch {
	case o == "varchar" && n == "varchar", o == "varbit" && n == "varbit":
		return widen(), ""
	case o == "varchar" && n == "text", o == "text" && n == "varchar" && len(nt.mods) == 0:
		return true, ""
	case o == "numeric" && n == "numeric":
		if len(nt.mods) == 0 {
			return true, ""
		}
		if len(old.mods) == 0 {
			return false, ""
		}
		scale := func(t typeRef) int32 {
			if len(t.mods) > 1 {
				return t.mods[1]
			}
			return 0
		}
		return scale(old) == scale(nt) && nt.mods[0] >= old.mods[0], ""
	case o == "cidr" && n == "inet":
		return true, ""
	case o == n && (o == "timestamp" || o == "timestamptz" || o == "time" || o == "timetz"):
		return widen(), ""
	case o == "timestamp" && n == "timestamptz", o == "timestamptz" && n == "timestamp":
		if version > 0 && version < 120000 {
			return false, "before PostgreSQL 12 it always rewrites"
		}
		if !utc {
			return false, "binary-coercible only when the session TimeZone is UTC, which lockguard has not seen set"
		}
		return widen(), ""
	}
	return false, ""
}

// castsWithoutFunction asks the catalog (CastCatalog) whether old casts to
// nt without a function, for a change between two different types that
// coercible does not know: binary-coercible when nt has no modifier to
// enforce.
func (e *evaluator) castsWithoutFunction(old, nt typeRef) bool {
	cc, ok := e.c.Catalog.(CastCatalog)
	if !ok || old.array || nt.array || len(nt.mods) > 0 || nt.modsUnknown || old.name == nt.name && old.schema == nt.schema {
		return false
	}
	regtype := func(t typeRef) string {
		if t.schema != "" {
			return quoteIdent(t.schema) + "." + quoteIdent(t.name)
		}
		return t.name
	}
	yes, known := cc.BinaryCoercible(regtype(old), regtype(nt))
	return yes && known
}

// checkTypeRecheck: a change without rewrite still re-validates the
// column's CHECK constraints.
func (e *evaluator) checkTypeRecheck(rel RelName, c *cmdFact) {
	var names []string
	for _, m := range e.cons {
		if m.kind == ConstraintCheck && m.rel.Matches(rel) && contains(m.columns, c.column) {
			names = append(names, m.name)
		}
	}
	if cat := e.c.Catalog; cat != nil {
		if cons, ok := cat.Constraints(rel); ok {
			for _, k := range cons {
				if k.Type == ConstraintCheck && k.Table.Matches(rel) && contains(k.Columns, c.column) && !contains(names, k.Name) {
					names = append(names, k.Name)
				}
			}
		}
	}
	if len(names) == 0 {
		return
	}
	tbl := rel.String()
	e.fire(rChangeTypeRecheck, hit{
		rel: rel, lock: AccessExclusive,
		msg:    "type change of column " + qi(c.column) + " of " + tbl + " re-validates CHECK " + strings.Join(names, ", ") + " with a full scan",
		detail: lockDetail(AccessExclusive, one(rel), " while every row is checked"),
		hint: lines("ALTER TABLE "+tbl+" DROP CONSTRAINT "+qi(names[0])+";",
			"-- change the type, re-add the constraint NOT VALID, and in its own transaction:",
			"ALTER TABLE "+tbl+" VALIDATE CONSTRAINT "+qi(names[0])+";"),
	})
}

// SET NOT NULL.
func (e *evaluator) checkSetNotNull(rel RelName, c *cmdFact) {
	v := e.version()
	note := ""
	if v == 0 || v >= 120000 {
		var proved bool
		if proved, note = e.notNullProved(rel, c.column); proved {
			return
		}
	}
	tbl := rel.String()
	col := qi(c.column)
	name := qi(objectName(rel.Name, c.column, "not_null"))
	pg12 := lines(
		"ALTER TABLE "+tbl+" ADD CONSTRAINT "+name+" CHECK ("+col+" IS NOT NULL) NOT VALID;",
		"-- then, in its own transaction (SHARE UPDATE EXCLUSIVE: reads and writes continue):",
		"ALTER TABLE "+tbl+" VALIDATE CONSTRAINT "+name+";",
		"ALTER TABLE "+tbl+" ALTER COLUMN "+col+" SET NOT NULL;  -- no scan: the CHECK proves it",
		"ALTER TABLE "+tbl+" DROP CONSTRAINT "+name+";")
	pg18 := lines(
		"ALTER TABLE "+tbl+" ADD CONSTRAINT "+name+" NOT NULL "+col+" NOT VALID;",
		"-- then, in its own transaction:",
		"ALTER TABLE "+tbl+" VALIDATE CONSTRAINT "+name+";")
	var hint string
	switch {
	case v >= 180000:
		hint = pg18
	case v >= 120000:
		hint = pg12
	case v > 0:
		hint = "-- before PostgreSQL 12 SET NOT NULL always scans the table: run it when the table is quiet, or upgrade"
	default:
		hint = lines("-- PostgreSQL 12–17:", pg12, "-- PostgreSQL 18:", pg18)
	}
	e.fire(rSetNotNull, hit{
		rel: rel, lock: AccessExclusive,
		msg:    "SET NOT NULL on column " + col + " of " + tbl + " scans the whole table under ACCESS EXCLUSIVE",
		detail: lockDetail(AccessExclusive, one(rel), " while every row is checked for NULL"),
		hint:   hint,
		note:   note,
	})
}

// notNullProved reports whether a validated CHECK proves rel.column not
// null, so that PostgreSQL 12+ skips SET NOT NULL's scan.
func (e *evaluator) notNullProved(rel RelName, column string) (bool, string) {
	for _, m := range e.cons {
		if m.kind == ConstraintCheck && m.validated && m.rel.Matches(rel) && contains(m.notNullOf, column) {
			return true, ""
		}
	}
	cat := e.c.Catalog
	if cat == nil {
		return false, noCatalog + ": a validated CHECK (" + column + " IS NOT NULL) in the database would make this safe on PostgreSQL 12+; only the statements lockguard saw count as proof"
	}
	cons, ok := cat.Constraints(rel)
	if !ok {
		return false, ""
	}
	dc, hasDefs := cat.(ConstraintDefCatalog)
	note := ""
	for _, k := range cons {
		if k.Type != ConstraintCheck || !k.Validated || !k.Table.Matches(rel) || len(k.Columns) > 0 && !contains(k.Columns, column) {
			continue
		}
		if !hasDefs {
			note = "the catalog does not report constraint definitions: whether CHECK " + k.Name + " proves the column not null is unknown"
			continue
		}
		if def, ok := dc.ConstraintDef(k.Table, k.Name); ok && constraintDefProvesNotNull(def, column) {
			return true, ""
		}
	}
	return false, note
}

// usingIndexHint is the online form of adding UNIQUE or PRIMARY KEY
// constraint k, named name, over cols to table tbl: k.safeSQL
// (usingIndexSQL), or when the statement could not be deparsed, its index
// and the constraint over it written out.
func usingIndexHint(tbl, name string, k *conFact, cols []string) string {
	if k.safeSQL != "" {
		return k.safeSQL
	}
	word := "UNIQUE"
	if k.kind == ConstraintPrimaryKey {
		word = "PRIMARY KEY"
	}
	return lines("CREATE UNIQUE INDEX CONCURRENTLY "+qi(name)+" ON "+tbl+" ("+colList(cols)+");",
		"ALTER TABLE "+tbl+" ADD CONSTRAINT "+qi(name)+" "+word+" USING INDEX "+qi(name)+";")
}

// ADD CONSTRAINT.
func (e *evaluator) checkAddConstraint(rel RelName, isNew bool, c *cmdFact) {
	k := c.con
	if isNew {
		return
	}
	tbl := rel.String()
	name := k.nameOn(rel)
	qname := qi(name)
	validate := lines("-- then, in its own transaction (SHARE UPDATE EXCLUSIVE: reads and writes continue):",
		"ALTER TABLE "+tbl+" VALIDATE CONSTRAINT "+qname+";")
	switch k.kind {
	case ConstraintCheck:
		if k.notValid {
			return
		}
		e.fire(rAddCheckValidated, hit{
			rel: rel, lock: AccessExclusive,
			msg:    "CHECK constraint " + qname + " added to " + tbl + " without NOT VALID: the table is scanned under ACCESS EXCLUSIVE",
			detail: lockDetail(AccessExclusive, one(rel), " while every row is checked"),
			hint:   lines(semi(c.safeSQL), validate),
		})
	case ConstraintForeignKey:
		if k.notValid {
			return
		}
		ref := k.ref
		if refs := e.others(rel, ShareRowExclusive, RoleReferenced); len(refs) > 0 {
			ref = refs[0]
		}
		rels := one(rel)
		if ref.Name != "" && !ref.Matches(rel) {
			rels = append(rels, ref)
		}
		hint := lines(semi(c.safeSQL), validate)
		if cat := e.c.Catalog; cat != nil {
			if info, ok := cat.Relation(rel); ok && info.Kind == KindPartitionedTable && e.version() < 180000 {
				hint = lines(hint, "-- before PostgreSQL 18 a partitioned table cannot take a NOT VALID foreign key: add it to each partition that way, then to the parent")
			}
		}
		e.fire(rAddFKValidated, hit{
			rel: rel, lock: ShareRowExclusive,
			msg:    "foreign key " + qname + " from " + tbl + " to " + ref.String() + " added without NOT VALID: writes to both tables are blocked while " + tbl + " is scanned",
			detail: lockDetail(ShareRowExclusive, rels, " while "+tbl+" is scanned to validate the key"),
			hint:   lines("-- index the referencing columns first (CREATE INDEX CONCURRENTLY), then:", hint),
		})
	case ConstraintUnique:
		if k.usingIndex != "" {
			return
		}
		e.fire(rAddUniqueConstraint, hit{
			rel: rel, lock: AccessExclusive,
			msg:    "UNIQUE constraint " + qname + " added to " + tbl + ": its index is built under ACCESS EXCLUSIVE",
			detail: lockDetail(AccessExclusive, one(rel), " for the whole index build"),
			hint:   usingIndexHint(tbl, name, k, k.columns),
		})
	case ConstraintPrimaryKey:
		if k.usingIndex != "" {
			e.checkPrimaryKeyUsingIndex(rel, k)
			return
		}
		e.fire(rAddPrimaryKey, hit{
			rel: rel, lock: AccessExclusive,
			msg:    "PRIMARY KEY " + qname + " added to " + tbl + ": its index is built (and its columns checked for NULL) under ACCESS EXCLUSIVE",
			detail: lockDetail(AccessExclusive, one(rel), " for the index build and the NOT NULL scan"),
			hint: lines("-- make the columns NOT NULL first without a long lock (rule set-not-null), then:",
				usingIndexHint(tbl, name, k, k.columns)),
		})
	case ConstraintExclusion:
		e.fire(rAddExclusionConstraint, hit{
			rel: rel, lock: AccessExclusive,
			msg:    "EXCLUDE constraint " + qname + " added to " + tbl + ": its index is built under ACCESS EXCLUSIVE, and it cannot be NOT VALID",
			detail: lockDetail(AccessExclusive, one(rel), " for the whole index build"),
			hint:   "only on a small table or in a maintenance window; otherwise create a new table with the constraint and copy the rows over",
		})
	}
}

// checkPrimaryKeyUsingIndex: ADD PRIMARY KEY USING INDEX scans for NULLs
// unless the index's columns are already NOT NULL.
func (e *evaluator) checkPrimaryKeyUsingIndex(rel RelName, k *conFact) {
	var cols []string
	for _, ix := range e.idxs {
		if ix.name == k.usingIndex {
			cols = ix.columns
		}
	}
	var nullable []string
	for _, col := range cols {
		if m := e.colMem(rel, col); m != nil && !m.notNull {
			nullable = append(nullable, col)
		} else if m == nil {
			if cc, ok := e.c.Catalog.(ColumnCatalog); ok {
				if _, nn, ok := cc.ColumnType(rel, col); ok && !nn {
					nullable = append(nullable, col)
				}
			}
		}
	}
	if len(nullable) == 0 {
		return
	}
	tbl := rel.String()
	e.fire(rAddPrimaryKey, hit{
		rel: rel, lock: AccessExclusive,
		msg:    "PRIMARY KEY USING INDEX " + qi(k.usingIndex) + " on " + tbl + " over nullable " + colList(nullable) + ": the table is scanned for NULLs under ACCESS EXCLUSIVE",
		detail: lockDetail(AccessExclusive, one(rel), " while every row is checked for NULL"),
		hint:   "make " + colList(nullable) + " NOT NULL first through a validated CHECK (rule set-not-null), then add the primary key USING INDEX",
	})
}

// VALIDATE CONSTRAINT in the transaction that holds a strong lock.
func (e *evaluator) checkValidate(rel RelName, c *cmdFact) {
	if !e.inTx {
		return
	}
	addedHere := slices.ContainsFunc(e.tx.NotValid, rel.Matches)
	var held []RelationLock
	for _, l := range e.tx.StrongLocks {
		if !e.isNew(l.Rel) {
			held = append(held, l)
		}
	}
	if !addedHere && len(held) == 0 {
		return
	}
	tbl := rel.String()
	mode := AccessExclusive
	rels := one(rel)
	if l, ok := e.tx.strongOn(rel); ok {
		mode = l.Mode
	} else if len(held) > 0 {
		mode, rels = held[0].Mode, one(held[0].Rel)
	}
	for _, l := range held {
		if !slices.ContainsFunc(rels, l.Rel.Matches) && l.Mode >= mode {
			rels = append(rels, l.Rel)
		}
	}
	msg := "VALIDATE CONSTRAINT " + qi(c.name) + " on " + tbl + " in the transaction that added it NOT VALID: the lock ADD CONSTRAINT took is held for the whole scan"
	if !addedHere {
		msg = "VALIDATE CONSTRAINT " + qi(c.name) + " on " + tbl + " while the transaction holds " + mode.String() + " on " + relsText(rels) + ": held for the whole scan"
	}
	e.fire(rValidateSameTxn, hit{
		rel: rel, lock: mode, msg: msg,
		detail: lockDetail(mode, rels, " for the whole validation scan"),
		hint: lines("COMMIT;  -- right after ADD CONSTRAINT … NOT VALID",
			"-- then, in a transaction of its own:",
			"ALTER TABLE "+tbl+" VALIDATE CONSTRAINT "+qi(c.name)+";"),
	})
}

// looksLikeFK guesses from a constraint's name whether it is a foreign
// key: PostgreSQL's default names end in _fkey, and conventions add _fk
// and fk_.
func looksLikeFK(name string) bool {
	n := strings.ToLower(name)
	return strings.HasSuffix(n, "_fkey") || strings.HasSuffix(n, "_fk") || strings.HasPrefix(n, "fk_") || strings.Contains(n, "_fk_")
}

// DROP CONSTRAINT of a foreign key.
func (e *evaluator) checkDropConstraint(rel RelName, isNew bool, c *cmdFact) {
	var refs []RelName
	note := ""
	switch {
	case slices.Contains(e.st.Subcommands, "DROP CONSTRAINT FOREIGN KEY"):
		refs = e.others(rel, AccessExclusive, RoleReferenced)
	case e.fkInFile(rel, c.name, &refs):
	default:
		if cat := e.c.Catalog; cat != nil {
			if cons, ok := cat.Constraints(rel); ok {
				for _, k := range cons {
					if k.Name == c.name && k.Table.Matches(rel) {
						return // known, and not a foreign key
					}
				}
			}
		}
		if !looksLikeFK(c.name) {
			return
		}
		if e.c.Catalog == nil {
			note = noCatalog + ": guessed from its name that " + c.name + " is a foreign key; the table it references is locked too"
		} else {
			note = "constraint " + c.name + " is not in the catalog: guessed from its name that it is a foreign key"
		}
	}
	if isNew && !slices.ContainsFunc(refs, func(r RelName) bool { return !e.isNew(r) }) {
		return
	}
	tbl := rel.String()
	rels := append(one(rel), refs...)
	target := "ACCESS EXCLUSIVE on " + relsText(rels)
	if len(refs) == 0 {
		target = "ACCESS EXCLUSIVE on " + tbl + " and on the table it references"
	}
	e.fire(rDropForeignKey, hit{
		rel: rel, lock: AccessExclusive,
		msg:    "foreign key " + qi(c.name) + " dropped from " + tbl + ": " + target,
		detail: lockDetail(AccessExclusive, rels, "") + "; while it waits behind any open transaction on either table, every later query on both queues behind it",
		hint: lines("-- alone in its own transaction, with a short lock_timeout and retries (lockguard injects both at runtime), at a quiet time:",
			"SET lock_timeout = '2s';",
			"ALTER TABLE "+tbl+" DROP CONSTRAINT "+qi(c.name)+";"),
		note: note,
	})
}

// fkInFile reports whether an earlier statement added foreign key name to
// rel, and which table it references.
func (e *evaluator) fkInFile(rel RelName, name string, refs *[]RelName) bool {
	for _, m := range e.cons {
		if m.kind == ConstraintForeignKey && m.name == name && m.rel.Matches(rel) {
			if m.ref.Name != "" && !m.ref.Matches(rel) {
				*refs = append(*refs, m.ref)
			}
			return true
		}
	}
	return false
}

// attachProved reports whether PostgreSQL skips the scan of part in
// ATTACH PARTITION part to parent: the catalog shows a range or list key of
// one column, and the validated CHECK constraints of part prove the column
// not null and inside the bound with the bound's own constants
// (checkProvesBound), as the hint's recipe writes them; a NOT NULL column
// proves it not null.
func (e *evaluator) attachProved(parent, part RelName, c *cmdFact) bool {
	cat := e.c.Catalog
	if c.bound.kind == 0 || cat == nil {
		return false
	}
	pk, ok1 := cat.(PartitionKeyCatalog)
	dc, ok2 := cat.(ConstraintDefCatalog)
	if !ok1 || !ok2 {
		return false
	}
	strategy, cols, ok := pk.PartitionKey(parent)
	if !ok || strategy != c.bound.kind || len(cols) != 1 {
		return false
	}
	cons, ok := cat.Constraints(part)
	if !ok {
		return false
	}
	col := cols[0]
	lower, upper, notNull := c.bound.kind == 'r' && c.bound.lower == "", c.bound.kind == 'r' && c.bound.upper == "", false
	if cc, ok := cat.(ColumnCatalog); ok {
		_, nn, ok := cc.ColumnType(part, col)
		notNull = ok && nn
	}
	for _, k := range cons {
		if k.Type != ConstraintCheck || !k.Validated || !k.Table.Matches(part) {
			continue
		}
		if def, ok := dc.ConstraintDef(k.Table, k.Name); ok {
			l, u, nn := checkProvesBound(def, col, c.bound)
			lower, upper, notNull = lower || l, upper || u, notNull || nn
		}
	}
	return lower && upper && notNull
}

// ATTACH PARTITION.
func (e *evaluator) checkAttach(rel RelName, c *cmdFact) {
	part := c.part
	if l, ok := e.findLock(part); ok {
		part = l.Rel
	}
	if part.Name == "" || e.isNew(part) {
		return
	}
	if e.attachProved(rel, part, c) {
		// The default partition (which the analysis locks, from the
		// same catalog facts) is scanned for rows that now belong to
		// part, unless its own CHECK rules them out.
		parts, _ := e.c.Catalog.Partitions(rel)
		if def, ok := defaultPartitionIn(parts, rel); ok {
			e.fire(rAttachPartitionScan, hit{
				rel: def, lock: AccessExclusive,
				msg:    "ATTACH PARTITION " + part.String() + " to " + rel.String() + ": the default partition " + def.String() + " is scanned under ACCESS EXCLUSIVE for rows of the new bound (" + part.String() + "'s CHECK proves its own)",
				detail: lockDetail(AccessExclusive, one(def), " while it is scanned") + "; SHARE UPDATE EXCLUSIVE on " + rel.String() + " (reads and writes continue)",
				hint:   "add to " + def.String() + " a CHECK that rules out the new bound (NOT VALID, then VALIDATE CONSTRAINT in its own transaction) before the ATTACH, or move its rows of that range out first",
			})
		}
		return
	}
	rels := append(one(part), e.others(part, AccessExclusive, RolePartition)...)
	bound := qi(objectName(part.Name, "", "partition_bound"))
	e.fire(rAttachPartitionScan, hit{
		rel: part, lock: AccessExclusive,
		msg:    "ATTACH PARTITION " + part.String() + " to " + rel.String() + ": " + part.String() + " is scanned under ACCESS EXCLUSIVE unless a valid CHECK proves the bound",
		detail: lockDetail(AccessExclusive, rels, " while it is scanned") + "; SHARE UPDATE EXCLUSIVE on " + rel.String() + " (reads and writes continue)",
		hint: lines("ALTER TABLE "+part.String()+" ADD CONSTRAINT "+bound+" CHECK (<the partition bound as a condition>) NOT VALID;",
			"ALTER TABLE "+part.String()+" VALIDATE CONSTRAINT "+bound+";  -- own transaction",
			semi(e.a.Text(e.st))+"  -- now without a scan",
			"ALTER TABLE "+part.String()+" DROP CONSTRAINT "+bound+";"),
	})
}
