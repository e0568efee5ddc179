package guard

import (
	"slices"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// sessionAdvisory are the advisory lock functions that lock or unlock at
// session level: the rollback of the transaction that called them does not
// undo what they did (the _xact_ forms are the transaction's).
var sessionAdvisory = []string{
	"pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared",
	"pg_advisory_unlock", "pg_advisory_unlock_shared", "pg_advisory_unlock_all",
}

// markLasting sets Lasting when n, the parse tree of the statement text sql,
// calls a session-level advisory lock function. Only a text that names an
// advisory function is walked; a function, view or rule it defines is not
// run by defining it.
func (b *builder) markLasting(n *pg.Node, sql string) {
	if b.st.Lasting || n == nil || !ContainsFold(sql, "advisory") {
		return
	}
	switch n.GetNode().(type) {
	case *pg.Node_CreateFunctionStmt, *pg.Node_ViewStmt, *pg.Node_RuleStmt:
		return
	}
	walkMessages(n.ProtoReflect(), func(m protoreflect.Message) {
		if fc, ok := m.Interface().(*pg.FuncCall); ok {
			if name := strs(fc.Funcname); len(name) > 0 && slices.Contains(sessionAdvisory, name[len(name)-1]) {
				b.st.Lasting = true
			}
		}
	})
}
