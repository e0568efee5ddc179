package enforce

import (
	"context"
	"strings"

	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/proxy"
	"github.com/lockguard/lockguard/telemetry"
)

// Values of Guard.UnparsedDDL.
const (
	UnparsedRelay  = "relay"
	UnparsedRefuse = "refuse"
)

// CodeUnparsed is the SQLSTATE of a DDL-looking statement refused because
// lockguard could not parse it (unparsed-ddl: refuse).
const CodeUnparsed = "LG002"

// looksDDL reports, from the first keyword, whether sql would take locks
// that block traffic if it is what it looks like.
func looksDDL(sql []byte) bool {
	c, ok := guard.QuickClass(view(sql))
	return ok && (c == guard.ClassDDL || c == guard.ClassMaintenance || c == guard.ClassOther)
}

// unparsed counts a statement the parser rejected and, when the guard fails
// closed and it looks like DDL, returns the refusal.
func (g *Guard) unparsed(s *session, raw string, err error) *proxy.Error {
	refuse := g.UnparsedDDL == UnparsedRefuse && looksDDL([]byte(raw))
	outcome := "relayed"
	if refuse {
		outcome = "refused"
	}
	if t := g.tel(); t != nil {
		t.Provider.Metrics.ParseFailed(context.Background(), outcome)
		if refuse && t.Events != nil {
			t.Events.Add(telemetry.Event{Kind: telemetry.KindParseFailed, PID: int(s.ps.BackendPID()),
				User: s.ps.Param("user"), Database: s.db, Application: s.application(),
				Statement: guard.FirstKeyword(raw) + " …", Message: "refused: " + parseErrorShown(err)})
		}
	}
	if !refuse {
		return nil
	}
	s.log.Warn("refused a DDL-looking statement that lockguard could not parse", "err", parseErrorShown(err),
		"keyword", guard.FirstKeyword(raw))
	return &proxy.Error{Code: CodeUnparsed,
		Message: "lockguard: refused a statement that looks like DDL but that lockguard could not parse",
		Detail:  "lockguard's parser (the PostgreSQL 17 grammar) rejected it: " + truncate(err.Error(), 300) + ". Without a parse, lockguard cannot tell which locks it takes.",
		Hint:    "Fix the statement, or set unparsed-ddl: relay to let PostgreSQL decide about statements lockguard cannot parse."}
}

// parseErrorShown is the parser's error for logs and events, which other
// people read: without the token it quotes ("syntax error at or near
// "'secret'""), which may be a literal. The client's own error keeps it.
func parseErrorShown(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, " at or near "); i >= 0 {
		msg = msg[:i]
	}
	if i := strings.IndexAny(msg, "\"'"); i >= 0 {
		msg = strings.TrimSpace(msg[:i]) + " …"
	}
	return truncate(msg, 200)
}
