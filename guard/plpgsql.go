package guard

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// doStmt analyses an anonymous code block (DO). For PL/pgSQL, the default
// language, the block's body is parsed with PostgreSQL's own PL/pgSQL
// parser and every SQL statement and expression in it is analysed as if it
// ran on its own: the block runs them in one transaction, so it takes the
// union of their locks, each in its strongest mode. A statement that runs
// only on some paths (in an IF, a loop, CASE or an exception handler) has
// its locks marked Conditional. EXECUTE of a string literal is analysed as
// that statement; EXECUTE of a computed string is not known until it runs
// and is listed in Unknown.
func (b *builder) doStmt(d *pg.DoStmt) {
	st := &b.st
	st.Tag, st.Class = "DO", ClassOther
	body, lang := "", "plpgsql"
	for _, a := range d.Args {
		de := a.GetDefElem()
		if de == nil || de.Arg == nil {
			continue
		}
		switch de.Defname {
		case "as":
			body = de.Arg.GetString_().GetSval()
		case "language":
			lang = strings.ToLower(de.Arg.GetString_().GetSval())
		}
	}
	if lang != "plpgsql" {
		b.unknown("DO: the locks a " + lang + " code block takes depend on what its code runs")
		return
	}
	b.plpgsql("CREATE FUNCTION lockguard_do() RETURNS void", body, "DO", "the block")
}

// callStmt analyses CALL: with a catalog that knows procedures, a
// PL/pgSQL procedure's body is read as a DO block's is, its parameters
// declared; otherwise its locks are unknown.
func (b *builder) callStmt(c *pg.CallStmt) {
	st := &b.st
	st.Tag, st.Class = "CALL", ClassOther
	fc := c.Funccall
	if fc == nil {
		b.unknown("CALL: the locks a procedure takes depend on its body")
		return
	}
	b.walkNodes(fc.Args)
	name := strings.Join(strs(fc.Funcname), ".")
	pc, ok := b.cat.(ProcedureCatalog)
	if !ok {
		b.unknown("CALL " + name + ": the locks a procedure takes depend on its body, which only the catalog has")
		return
	}
	lang, args, body, found := pc.Procedure(name, len(fc.Args))
	switch {
	case !found:
		b.unknown("CALL " + name + ": no single procedure of that name takes " + strconv.Itoa(len(fc.Args)) + " arguments, so its body is unknown")
	case lang != "plpgsql":
		b.unknown("CALL " + name + ": the locks a " + lang + " procedure takes depend on what its code runs")
	default:
		head := "CREATE PROCEDURE lockguard_call(" + args + ")"
		key := head + "\x00" + body
		in, ok := b.codes.get(key)
		if !ok {
			// Read into a statement of its own, kept for the CALLs of
			// the procedure with other arguments: their texts differ,
			// its body's analysis does not.
			cb := b.child()
			cb.st.Class = ClassOther
			cb.plpgsql(head, body, "CALL "+name, "the procedure")
			in = &cb.st
			b.codes.put(key, in)
		}
		b.absorb(in, false)
		st.block = append(st.block, in.block...)
	}
}

// codeCache keeps the analyses of procedures' bodies (callStmt), by
// parameters and source: a body can be megabytes, so the bound is the
// facts cache's, in bytes too. Analyzer.Purge empties it, as the analyses
// it keeps used catalog facts.
type codeCache = textMap[*Statement]

// newCodeCache returns an empty codeCache.
func newCodeCache() *codeCache {
	return &codeCache{maxLen: maxCodes, maxBytes: factsCacheBytes}
}

// maxCodes bounds the procedure bodies a codeCache keeps.
const maxCodes = 256

// plpgsql adds what a PL/pgSQL body runs to the statement: head is the
// CREATE FUNCTION or PROCEDURE that declares its parameters, what names
// the statement in Unknown and Notes ("DO", "CALL p") and whose the body
// ("the block", "the procedure").
func (b *builder) plpgsql(head, body, what, whose string) {
	st := &b.st
	w, err := plpgsqlBody(head, body)
	if err != nil {
		b.unknown(what + ": " + whose + "'s body does not parse as PL/pgSQL (" + err.Error() + "); PostgreSQL will refuse it")
		return
	}
	if w.dynamic {
		b.unknown(what + ": " + whose + " runs EXECUTE of a computed string, whose locks are known only when it runs")
	}
	if w.txControl {
		// COMMIT or ROLLBACK in the body: it cannot run inside a
		// transaction block, and what it committed stays if it fails later.
		st.NoTxBlock = true
	}
	var runs []string
	for _, s := range w.stmts {
		tree, err := pg.Parse(s.sql)
		if err != nil {
			b.unknown(what + ": a statement in " + whose + " does not parse: " + err.Error())
			continue
		}
		for _, raw := range tree.Stmts {
			if b.inner == nil {
				b.inner = new(int)
			}
			if *b.inner++; *b.inner > maxInner {
				b.unknown(what + ": more than " + strconv.Itoa(maxInner) + " statements in nested code; the rest were not read")
				return
			}
			if !b.enter() {
				b.unknown(what + ": code nested too deeply (procedures that call each other?); the rest was not read")
				return
			}
			ib := b.child()
			ib.stmt(raw.Stmt)
			ib.markLasting(raw.Stmt, s.sql)
			b.leave()
			b.absorb(&ib.st, s.cond)
			if s.stmt {
				st.block = append(st.block, s.sql[raw.StmtLocation:][:stmtLen(s.sql, raw)])
				tag := ib.st.Tag
				if len(ib.st.Subcommands) > 0 {
					tag += " (" + strings.Join(ib.st.Subcommands, ", ") + ")"
				}
				if !slices.Contains(runs, tag) {
					runs = append(runs, tag)
				}
			}
		}
	}
	if len(runs) > 0 {
		b.note(what + ": " + whose + " runs " + strings.Join(runs, "; "))
	}
}

// child returns a builder for a statement of the code b reads, sharing
// b's depth, its budget of inner statements and its procedure bodies.
func (b *builder) child() *builder {
	c := newBuilder(b.cat)
	c.depth, c.inner, c.codes = b.depth, b.inner, b.codes
	return c
}

// maxBlockDepth bounds how deep the rules follow procedures that code
// calls (a procedure may call itself).
const maxBlockDepth = 8

// maxInner bounds the statements of code blocks and procedures one
// statement's analysis reads, procedures that call others included.
const maxInner = 1000

// stmtLen is the length of raw's text in sql.
func stmtLen(sql string, raw *pg.RawStmt) int {
	if raw.StmtLen > 0 {
		return int(raw.StmtLen)
	}
	return len(sql) - int(raw.StmtLocation)
}

// checkBlock runs the rules over the statements a code block (DO) or a
// called procedure runs, as if the client had sent them in one
// transaction: their findings are the block's. What they set and create
// counts for the statements after the block; what they lock, until the
// block's transaction ends. The statements of procedures they call are
// judged too, maxBlockDepth deep.
func (e *evaluator) checkBlock() {
	outer, st := e.a, e.st
	inTx := e.inTx
	e.inTx = true
	for _, sql := range st.block {
		an := analyze(sql, e.c.Catalog)
		if an.Err != nil {
			continue
		}
		e.a = an
		for j := range an.Statements {
			e.st = &an.Statements[j]
			e.judge()
		}
	}
	e.a, e.st, e.f, e.inTx = outer, st, nil, inTx
	if !inTx {
		// The block was its own transaction (not part of a block, nor of
		// the implicit transaction of a multi-statement string).
		e.tx.Reset()
		e.lockTimeout.masked, e.stmtTimeout.masked = false, false
	}
}

// absorb adds what a statement inside a code block does to the block's
// statement; cond says the statement runs only on some paths.
func (b *builder) absorb(in *Statement, cond bool) {
	st := &b.st
	for _, l := range in.Locks {
		b.lock(l.Rel, l.Mode, l.Role, l.Index, l.Conditional || cond)
	}
	if in.Class == ClassDDL || in.Class == ClassMaintenance {
		// The schema changes: analyses made before are stale after it, and
		// the policy looks at it as DDL.
		st.Class = ClassDDL
	}
	st.Rewrite = st.Rewrite || in.Rewrite
	st.Scan = st.Scan || in.Scan
	st.NoTxBlock = st.NoTxBlock || in.NoTxBlock // a CALL inside that commits
	st.Lasting = st.Lasting || in.Lasting
	st.Settings = append(st.Settings, in.Settings...)
	for _, u := range in.Unknown {
		b.unknown(u)
	}
	for _, n := range in.Notes {
		b.note(n)
	}
}

// plSQL is a statement of a PL/pgSQL body: stmt for a statement the block
// runs (and not an expression it evaluates), cond when it runs only on some
// paths.
type plSQL struct {
	sql        string
	stmt, cond bool
}

// plWalk collects the SQL of a PL/pgSQL function tree, as
// pg.ParsePlPgSqlToJSON gives it.
type plWalk struct {
	stmts     []plSQL
	dynamic   bool // EXECUTE of a computed string
	txControl bool // COMMIT or ROLLBACK
}

// plpgsqlBody parses a PL/pgSQL body, declared by head (a CREATE FUNCTION
// or PROCEDURE without its body), and collects its SQL.
func plpgsqlBody(head, body string) (*plWalk, error) {
	// A dollar quote of lockguard's own that the body does not contain
	// keeps the body as it is.
	tag := "$lockguard$"
	for strings.Contains(body, tag) {
		tag = "$lockguard" + tag[1:]
	}
	js, err := pg.ParsePlPgSqlToJSON(head + " LANGUAGE plpgsql AS " + tag + body + tag)
	if err != nil {
		return nil, err
	}
	var tree any
	if err := json.Unmarshal([]byte(js), &tree); err != nil {
		return nil, err
	}
	w := &plWalk{}
	w.walk(tree, false, "")
	return w, nil
}

// Parse modes of PLpgSQL_expr (PostgreSQL's RawParseMode).
const (
	plParseDefault = 0 // a whole statement
	plParseExpr    = 2 // an expression, evaluated as SELECT expr
	plParseAssign1 = 3 // "target := expr", up to three name parts
	plParseAssign3 = 5
)

// walk visits v, a part of the tree under a node of type typ ("PLpgSQL_…");
// cond says it runs only on some paths.
func (w *plWalk) walk(v any, cond bool, typ string) {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			w.walk(e, cond, typ)
		}
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		// The order of the source, as far as it matters: what a node
		// evaluates first (declarations, conditions, a loop's query), then
		// the statements it runs; the same order every time.
		slices.SortFunc(keys, func(a, b string) int {
			if ra, rb := plRuns[a], plRuns[b]; ra != rb {
				if ra {
					return 1
				}
				return -1
			}
			return strings.Compare(a, b)
		})
		for _, k := range keys {
			val := x[k]
			c := cond
			switch k {
			case "PLpgSQL_expr":
				w.expr(val, cond)
				continue
			case "PLpgSQL_stmt_commit", "PLpgSQL_stmt_rollback":
				w.txControl = true
			case "query", "dynquery":
				if typ == "PLpgSQL_stmt_dynexecute" || typ == "PLpgSQL_stmt_dynfors" || k == "dynquery" {
					w.dynamicSQL(val, cond)
					continue
				}
			case "then_body", "elsif_list", "else_body", "case_when_list", "else_stmts", "exceptions":
				c = true
			case "body":
				c = c || typ != "PLpgSQL_stmt_block"
			}
			t := typ
			if strings.HasPrefix(k, "PLpgSQL_") {
				t = k
			}
			w.walk(val, c, t)
		}
	}
}

// plRuns names the keys of tree nodes that hold the statements a node runs.
var plRuns = map[string]bool{"action": true, "body": true, "then_body": true, "elsif_list": true,
	"else_body": true, "case_when_list": true, "else_stmts": true, "exceptions": true}

// expr records the SQL of a PLpgSQL_expr node.
func (w *plWalk) expr(v any, cond bool) {
	m, _ := v.(map[string]any)
	q, _ := m["query"].(string)
	mode, _ := m["parseMode"].(float64)
	switch {
	case q == "":
	case mode == plParseDefault:
		w.stmts = append(w.stmts, plSQL{sql: q, stmt: true, cond: cond})
	case mode == plParseExpr:
		w.stmts = append(w.stmts, plSQL{sql: "SELECT " + q, cond: cond})
	case mode >= plParseAssign1 && mode <= plParseAssign3:
		if i := strings.Index(q, ":="); i >= 0 {
			w.stmts = append(w.stmts, plSQL{sql: "SELECT " + q[i+2:], cond: cond})
		}
	}
}

// dynamicSQL records the query of EXECUTE (or FOR … IN EXECUTE, OPEN … FOR
// EXECUTE, RETURN QUERY EXECUTE): a string literal is the statement it
// runs; anything else is computed when it runs.
func (w *plWalk) dynamicSQL(v any, cond bool) {
	m, _ := v.(map[string]any)
	e, _ := m["PLpgSQL_expr"].(map[string]any)
	q, _ := e["query"].(string)
	if s, ok := stringLiteral(q); ok {
		w.stmts = append(w.stmts, plSQL{sql: s, stmt: true, cond: cond})
		return
	}
	w.dynamic = true
	w.expr(e, cond) // what computes the string runs too
}

// stringLiteral returns the value of expr when it is one string constant.
func stringLiteral(expr string) (string, bool) {
	tree, err := pg.Parse("SELECT " + expr)
	if err != nil || len(tree.Stmts) != 1 {
		return "", false
	}
	sel := tree.Stmts[0].Stmt.GetSelectStmt()
	if sel == nil || len(sel.TargetList) != 1 || sel.FromClause != nil {
		return "", false
	}
	rt := sel.TargetList[0].GetResTarget()
	if rt == nil || rt.Val == nil {
		return "", false
	}
	c := rt.Val.GetAConst()
	if c == nil || c.GetSval() == nil {
		return "", false
	}
	return c.GetSval().Sval, true
}
