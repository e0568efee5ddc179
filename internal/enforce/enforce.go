package enforce

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/trace"

	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/proxy"
)

// Evaluator applies a DDL policy; *guard.Policy implements it.
type Evaluator interface {
	Evaluate(a *guard.Analysis, c *guard.Context) []guard.Finding
}

// Blocker is a session that holds or waits for a lock another one needs.
type Blocker struct {
	PID         int
	State       string
	Query       string // normalized: literals replaced by $n
	XactAge     time.Duration
	Application string
	User        string
	// Seen is when XactAge was read (zero: just now); the final error adds
	// the time since, so the age is the transaction's at the error.
	Seen time.Time
}

// BlockerSource tells which sessions block a backend. Implementations query
// pg_blocking_pids on a side connection; they must honour ctx.
type BlockerSource interface {
	Blockers(ctx context.Context, pid uint32) ([]Blocker, error)
}

// Defaults for Config fields left zero.
const (
	DefaultLockTimeout = 2 * time.Second
)

// codeQueryCanceled is the SQLSTATE of a cancelled statement.
const codeQueryCanceled = proxy.CodeQueryCanceled

// Guard turns guard's analysis and policy into proxy verdicts.
type Guard struct {
	// Analyzer analyses statements; required.
	Analyzer *guard.Analyzer
	// CatalogDatabase is the database whose catalog Analyzer.Catalog reads.
	// Sessions of other databases are analysed by OtherDatabases, from
	// the text alone: a table of the same name there is another table.
	// "" (or OtherDatabases nil) uses Analyzer for every session.
	CatalogDatabase string
	OtherDatabases  *guard.Analyzer
	// Policy decides warn and block; nil means no policy findings.
	Policy Evaluator
	// LockTimeout is injected before DDL whose lock would block reads or
	// writes; 0 turns injection (and so retries) off. A client's own lower
	// lock_timeout is kept.
	LockTimeout time.Duration
	// StatementTimeout, when positive, is injected with the lock timeout.
	StatementTimeout time.Duration
	// ConcurrentStatementTimeout, when positive, is injected for
	// CONCURRENTLY builds, which never get a lock timeout (a cancelled
	// build leaves an INVALID index behind).
	ConcurrentStatementTimeout time.Duration
	// Backoff schedules retries of an autocommit DDL that hit the injected
	// lock timeout.
	Backoff guard.Backoff
	// Blockers, when set, names who blocked a DDL in its final error.
	Blockers BlockerSource
	// Admission, when set, keeps statements out of PostgreSQL's lock queue.
	Admission *Admission
	// Yield makes a waiting DDL give way to the queue behind it (needs
	// Admission).
	Yield Yield
	// ServerVersion is server_version_num of the upstream; 0 if unknown.
	ServerVersion int
	// UnparsedDDL says what to do with a statement lockguard's parser
	// rejects that looks like DDL by its first keyword: "relay" (the
	// default: PostgreSQL decides) or "refuse" (fail closed, SQLSTATE
	// LG002). Either way it is counted.
	UnparsedDDL string
	// Telemetry, when set, traces, measures and reports guard actions.
	Telemetry *Telemetry
	// Logger receives one line per guard action; nil means slog.Default().
	Logger *slog.Logger

	// noted holds the databases noteOtherDatabase has logged.
	notedMu sync.Mutex
	noted   map[string]bool
	// backendChecked: a session's backend pid has been (or is being)
	// checked against the monitor's server (checkBackend).
	backendChecked atomic.Bool

	// spans maps a backend pid to the span of its session's last traced
	// batch, while that session is in a transaction (for links from the
	// statements that wait behind it).
	spans sync.Map
	// Now returns the time; nil means time.Now.
	Now func() time.Time
}

// session is the per-session state the guard keeps.
type session struct {
	g   *Guard
	ps  *proxy.Session
	log *slog.Logger
	db  string          // the session's database
	an  *guard.Analyzer // Analyzer, or OtherDatabases for a database without its catalog

	mu       sync.Mutex
	settings guard.Settings
	// pathAn is the analyzer for search_path pathVal with "$user" standing
	// for pathUser (analyzer).
	pathVal  string
	pathUser string
	pathAn   *guard.Analyzer
	tx       guard.TxState
	inTx     bool
	pending  []pendingBatch    // batches forwarded whose results are due, in order
	result   func(string, int) // s.onResult, bound once
	blockers []Blocker         // last capture while a protected DDL waited
	ddlGen   uint64            // counts protected DDL, so captures do not cross over
	yielded  bool              // the guard cancelled the DDL in flight to yield
	// reassert names the parameters whose session-level restore ran
	// inside a transaction block the batch left open: a ROLLBACK undoes
	// that restore and leaves lockguard's value in force, so the next
	// batch that starts outside a transaction restores them again.
	reassert []string
	// unseenBegin: a BEGIN went by undecided (plainTxControl) and no
	// decided batch has learnt the transaction status since.
	unseenBegin bool
	// ran: the statements the earlier parts of a batch that a Flush split
	// ran, held until its last part's result (partOpen): the parts run in
	// one implicit transaction, which a BEGIN in any of them makes the
	// block.
	ran []*guard.Statement

	t   *sessTel                 // telemetry; nil when off
	cur atomic.Pointer[batchObs] // the traced batch being decided, for log lines

	// verdict is reused by every decided batch: the proxy does not keep
	// a Verdict once it has carried it out (proxy.Hooks.Batch).
	verdict proxy.Verdict
	// spareObs is an observation whose batch has finished, for the next
	// decided batch (observe, finish).
	spareObs atomic.Pointer[batchObs]
}

// redoDue reports whether a batch that starts in transaction status status
// carries the restores in s.reassert: it is the next batch that starts
// outside a transaction block, or may be (status 0: an earlier sync point,
// perhaps the restore after a failed batch, is in flight, and decide waits
// to know, learnTx). s.mu is held.
func (s *session) redoDue(b *proxy.Batch, status byte) bool {
	return len(s.reassert) > 0 && (status == 'I' || status == 0) && !b.MidBatch
}

// partOpen reports whether the last batch decided is a part of a batch
// that a Flush split, which awaits the rest: its last part is then decided
// too, so that its result comes and the parts' statements take effect
// (session.ran). The part's result comes only with the last part's. s.mu
// is held.
func (s *session) partOpen() bool {
	return len(s.pending) > 0 && s.pending[len(s.pending)-1].part
}

// takeYielded reports and clears whether the guard cancelled the statement.
func (s *session) takeYielded() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	y := s.yielded
	s.yielded = false
	return y
}

// pendingBatch is what the result of a forwarded batch must update.
type pendingBatch struct {
	stmts  []*guard.Statement
	track  bool
	hazard *ownHazard         // the hazards this DDL put on the board, nil for none
	done   context.CancelFunc // ends the DDL's yield watch
	obs    *batchObs          // finished with the result; nil without telemetry
	// restored names the parameters restored at session level after the
	// batch (injected outside a transaction block); reasserted those whose
	// restore the batch redid first (session.reassert).
	restored, reasserted []string
	// restoreLater: the batch went on after a Flush, so the restores of
	// restored were not sent after it; a later batch sends them.
	restoreLater bool
	// changes: the batch's own statements change followed parameters, so
	// its restores put back what it leaves when it succeeds.
	changes bool
	// part: the batch goes on after a Flush; its statements take effect
	// with its last part's (session.ran).
	part bool
}

// searchPath returns the schemas unqualified names resolve in.
func (s *session) searchPath() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.settings.SearchPath(s.ps.Param("user"))
}

// Hooks returns the proxy hooks that enforce g.
func (g *Guard) Hooks() *proxy.Hooks {
	h := &proxy.Hooks{
		Open: func(ps *proxy.Session) any {
			db := ps.Param("database")
			if db == "" {
				db = ps.Param("user") // PostgreSQL's default
			}
			s := &session{g: g, ps: ps, db: db, an: g.Analyzer, log: g.logger().With("user", ps.Param("user"),
				"database", db, "application", ps.Param("application_name"), "backend_pid", ps.BackendPID())}
			if g.OtherDatabases != nil && g.CatalogDatabase != "" && s.db != g.CatalogDatabase {
				s.an = g.OtherDatabases
				g.noteOtherDatabase(s.db)
			}
			g.checkBackend(ps.BackendPID())
			s.result = s.onResult
			s.settings.Start(ps.Param)
			g.openTel(s)
			return s
		},
		Batch:       g.batch,
		AfterFailed: g.afterFailed,
		AwaitsClient: func(ps *proxy.Session, sql []byte) bool {
			s, _ := ps.State.(*session)
			if s == nil {
				return false
			}
			an := s.analyze(view(sql))
			return an.Err == nil && slices.ContainsFunc(an.Statements, func(st guard.Statement) bool { return st.CopyIn })
		},
	}
	if g.tel() != nil {
		h.Close = g.closeTel
		h.Complete = g.complete
		h.Forwarded = g.forwarded
	}
	return h
}

// checkBackend makes sure, once per Guard, that the backend pid the
// upstream sent (BackendKeyData) is a backend of the server the side
// connection reaches. A pooler between lockguard and PostgreSQL sends pids
// of its own (PgBouncer does, in every pool mode): lockguard then cannot
// tell a session's own locks in pg_locks from others', and sheds its
// statements behind its own transaction's locks. It says so, loudly.
func (g *Guard) checkBackend(pid uint32) {
	bc, ok := g.Blockers.(BackendChecker)
	if !ok || pid == 0 || !g.backendChecked.CompareAndSwap(false, true) {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		is, err := bc.IsBackend(ctx, pid)
		switch {
		case err != nil:
			g.backendChecked.Store(false) // the next session tries again
		case !is:
			g.logger().Error("the upstream's backend pid is no backend of the server monitor-dsn reaches: a connection pooler between lockguard and PostgreSQL (PgBouncer sends pids of its own), or monitor-dsn names another server. lockguard cannot tell a session's own locks from others' and sheds statements behind their own transaction's locks: put the pooler in front of lockguard, or point monitor-dsn at the upstream's server",
				"backend_pid", pid)
		}
	}()
}

// noteOtherDatabase logs, once per database, that sessions of db get
// neither catalog facts nor the monitor's locks.
func (g *Guard) noteOtherDatabase(db string) {
	g.notedMu.Lock()
	first := !g.noted[db] && len(g.noted) < 1000
	if first {
		if g.noted == nil {
			g.noted = make(map[string]bool)
		}
		g.noted[db] = true
	}
	g.notedMu.Unlock()
	if first {
		g.logger().Info("a session of another database than monitor-dsn's: its statements are analysed from their text alone, and only locks of DDL forwarded by lockguard hold them back",
			"database", db, "monitor_database", g.CatalogDatabase)
	}
}

// afterFailed learns that a restore lockguard sent after a batch failed:
// mostly a cancel meant for the batch that came just as the batch ended.
// lockguard's value (its lock timeout, say) is then still in force for the
// session, so the next batch that starts outside a transaction block
// restores it again first (session.reassert). A restore inside a block
// (SET LOCAL) needs none: the cancel aborted the block, whose end undoes
// lockguard's value too.
func (g *Guard) afterFailed(ps *proxy.Session, sql, code string) {
	s, _ := ps.State.(*session)
	if s == nil {
		return
	}
	an := g.Analyzer.Analyze(sql) // lockguard's own SET or RESET: no catalog
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range an.Statements {
		for _, c := range st.Settings {
			if !c.Local && !slices.Contains(s.reassert, c.Name) {
				s.reassert = append(s.reassert, c.Name)
				s.lg().Info("a restore lockguard sent after a batch failed; the next batch restores it again", "parameter", c.Name, "sqlstate", code)
			}
		}
	}
}

func (g *Guard) logger() *slog.Logger {
	if g.Logger != nil {
		return g.Logger
	}
	return slog.Default()
}

func (g *Guard) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

// view returns b as a string without copying; valid while b is.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// plainTxControl reports whether sql is a bare BEGIN, START TRANSACTION,
// COMMIT, END or ROLLBACK (any case, an optional semicolon), and whether it
// begins a transaction. Anything more (isolation levels, AND CHAIN,
// savepoints, several statements) is analysed.
func plainTxControl(sql []byte) (begin, ok bool) {
	q := view(sql)
	i, j := 0, len(q)
	for i < j && guard.IsSpace(q[i]) {
		i++
	}
	for j > i && (guard.IsSpace(q[j-1]) || q[j-1] == ';') {
		j--
	}
	q = q[i:j]
	if len(q) > len("start transaction") {
		return false, false // every statement with more to it, at once
	}
	for _, w := range [...]string{"begin", "start transaction", "commit", "end", "rollback"} {
		if len(q) == len(w) && guard.EqualFoldLower(q, w) {
			return w == "begin" || w == "start transaction", true
		}
	}
	return false, false
}

// plainDML reports, from the first keyword alone, that sql is one plain
// read or write whose analysis could change nothing when no lock hazard
// exists: not several statements, not SELECT … INTO (creates a table), not a
// set_config call (changes settings). Anything else is analysed, so that a
// statement whose every text is new (literals in the simple protocol) does
// not cost a parse when nothing needs its relations.
func plainDML(sql []byte) (guard.Class, bool) {
	q := view(sql)
	c, ok := guard.QuickClass(q)
	if !ok || (c != guard.ClassRead && c != guard.ClassWrite) {
		return 0, false
	}
	if i := strings.IndexByte(q, ';'); i >= 0 && strings.TrimRight(q[i:], "; \t\r\n") != "" {
		return 0, false
	}
	if guard.ContainsFold(q, "set_config") || (c == guard.ClassRead && guard.ContainsFold(q, "into")) {
		return 0, false
	}
	return c, true
}

// batch decides what to do with one batch.
func (g *Guard) batch(ctx context.Context, ps *proxy.Session, b *proxy.Batch) *proxy.Verdict {
	s, _ := ps.State.(*session)
	if s == nil {
		return nil
	}
	// The common case: plain reads and writes outside any tracked state,
	// and no lock hazard anywhere (one atomic load).
	var hz *guard.Hazards
	if g.Admission != nil {
		if h := g.Admission.Board.Snapshot(); !h.Empty() {
			hz = h
		}
	}
	s.mu.Lock()
	inTxTracked := s.inTx && s.tx.AccessExclusive
	inTx := s.inTx
	// A decided batch whose result is not in may have begun a block.
	unsure := len(s.pending) > 0
	needs := s.redoDue(b, b.TxStatus) || b.MidBatch && b.Complete && s.partOpen()
	s.mu.Unlock()
	// The parts of a batch a Flush split must be seen whole to follow the
	// transaction they run in: a BEGIN there is decided.
	ownBatch := b.Complete && !b.MidBatch
	skippedBegin := false
	var path []string
	sampled, parent := false, trace.SpanContext{}
	// Executed statements by class, counted only if the batch is forwarded
	// unchanged (a decided batch is counted with its decision).
	var passed [guard.ClassSession + 1]int
	unparsed := 0
	// The analyses made here, by statement, for decide (it analyzes those
	// skipped here or beyond the array itself).
	var ans [8]*guard.Analysis
	for i := range b.Stmts {
		st := &b.Stmts[i]
		if !st.Executed && hz == nil {
			continue
		}
		if st.Executed && !sampled && s.t != nil {
			if sampled, parent = g.sampled(st.SQL); sampled {
				needs = true
			}
		}
		if hz == nil && !inTx && !unsure && st.Executed && ownBatch {
			// A transaction the guard has seen nothing of: its BEGIN and
			// its end change nothing the guard follows, and deciding them
			// cost about 20 µs each at one client (bench/compare/README.md).
			if begin, ok := plainTxControl(st.SQL); ok {
				skippedBegin = skippedBegin || begin
				passed[guard.ClassTransaction]++
				continue
			}
		}
		if hz == nil && !inTxTracked {
			if c, ok := plainDML(st.SQL); ok {
				if st.Executed {
					passed[c]++
				}
				continue // nothing to decide: skip even the cache lookup
			}
		}
		an := s.analyze(view(st.SQL))
		if i < len(ans) {
			ans[i] = an
		}
		if an.Err != nil {
			if st.Executed {
				unparsed++
				if g.UnparsedDDL == UnparsedRefuse && looksDDL(st.SQL) {
					needs = true // decide refuses it
				}
			}
			continue // PostgreSQL will answer the syntax error
		}
		for j := range an.Statements {
			switch an.Statements[j].Class {
			case guard.ClassRead, guard.ClassWrite:
				// A SELECT set_config(…) changes a setting the guard
				// follows: its result must reach the session's Settings,
				// or an injected lock_timeout is later "restored" over
				// the client's value.
				needs = needs || st.Executed && changesTracked(&an.Statements[j])
			default:
				needs = needs || st.Executed
			}
			if st.Executed && int(an.Statements[j].Class) < len(passed) {
				passed[an.Statements[j].Class]++
			}
			if hz != nil && !needs {
				if path == nil {
					path = s.searchPath()
				}
				for _, l := range an.Statements[j].Locks {
					if _, ok := hz.Conflict(l.Rel, l.Mode, int(ps.BackendPID()), s.db, path); ok {
						needs = true
						break
					}
				}
			}
		}
	}
	if !needs && !inTxTracked {
		if skippedBegin {
			s.mu.Lock()
			s.unseenBegin = true
			s.mu.Unlock()
		}
		if s.t != nil {
			s.countPassed(&passed, unparsed)
		}
		return nil
	}
	return g.decide(ctx, s, b, &ans, sampled, parent)
}

// bound returns stmts with the values of set_config(name, $n, …) taken from
// the batch's Bind message (bind, nil when it has none), or stmts itself
// when none has such a value.
func bound(stmts []*guard.Statement, bind []byte) []*guard.Statement {
	var out []*guard.Statement
	for i, st := range stmts {
		b := st.Bound(func(n int) (string, bool) {
			// set_config's value is text, whose binary format is its
			// text: either format code reads the same.
			v, _, ok := proxy.BindParam(bind, n)
			return string(v), ok
		})
		if b != st && out == nil {
			out = slices.Clone(stmts)
		}
		if out != nil {
			out[i] = b
		}
	}
	if out == nil {
		return stmts
	}
	return out
}

// changesTracked reports whether st changes a setting that Settings
// follows (set_config in a SELECT; SET and RESET are decided anyway).
func changesTracked(st *guard.Statement) bool {
	for i := range st.Settings {
		if c := &st.Settings[i]; c.NameParam > 0 || guard.Tracked(c.Name) {
			return true // a name bound per execution may be one
		}
	}
	return false
}

// analyze returns sql's analysis. A cache miss may query the catalog on the
// side connection, so the session leaves its event loop first (MayBlock).
func (s *session) analyze(sql string) *guard.Analysis {
	a := s.analyzer()
	if an := a.Cached(sql); an != nil {
		return an
	}
	if a.Catalog != nil && !catalogFree(sql) {
		s.ps.MayBlock()
	}
	return a.Analyze(sql)
}

// application returns the session's application_name: as the server last
// reported it (a driver may SET it after connecting: pgjdbc does), else as
// the startup packet gave it.
func (s *session) application() string {
	if v, ok := s.ps.Reported("application_name"); ok {
		return v
	}
	return s.ps.Param("application_name")
}

// analyzer returns the analyzer for the session's search_path as the
// client set it so far: s.an while the client keeps the server's default
// ("$user", public, which the catalog's connection resolves alike), else
// one whose catalog resolves unqualified names in the session's schemas.
func (s *session) analyzer() *guard.Analyzer {
	if s.an.Catalog == nil {
		return s.an // names stay as written
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, set := s.settings.Effective("search_path")
	if !set {
		return s.an
	}
	user := s.settings.CurrentUser(s.ps.Param("user")) // what "$user" in v means
	if s.pathAn != nil && v == s.pathVal && user == s.pathUser {
		return s.pathAn
	}
	an := s.an
	if !slices.Equal(guard.SplitIdentifiers(v), []string{"$user", "public"}) {
		an = s.an.ForPath(s.settings.SearchPath(s.ps.Param("user")))
	}
	s.pathVal, s.pathUser, s.pathAn = v, user, an
	return an
}

// changesSchema reports statements after which the analyses and catalog
// facts lockguard remembers may be stale.
func changesSchema(st *guard.Statement) bool {
	return st.Class == guard.ClassDDL || st.Class == guard.ClassMaintenance
}

// ForgetSchema drops the cached analyses and the catalog's remembered
// facts, which a change of the schema may have made stale: lockguard calls
// it around every DDL that runs through it, and every catalog-max-age for
// the changes that do not.
func (g *Guard) ForgetSchema() {
	if g.Analyzer.Catalog == nil {
		return // analyses from the text alone never go stale
	}
	g.Analyzer.Purge()
	if r, ok := g.Analyzer.Catalog.(interface{ Reset() }); ok {
		r.Reset()
	}
}

// catalogFree reports statements whose analysis never consults the catalog:
// transaction control and settings, the statements every transaction sends,
// which must not make a session leave its event loop after a DDL emptied the
// analysis cache.
func catalogFree(sql string) bool {
	if c, ok := guard.QuickClass(sql); ok {
		return c == guard.ClassTransaction || c == guard.ClassSession
	}
	switch guard.FirstKeyword(sql) {
	case "DEALLOCATE", "LISTEN", "UNLISTEN", "NOTIFY":
		return true
	}
	return false
}

// mayConsultCatalog reports whether the policy's rules may look up catalog
// facts for an: they do for everything but reads, writes, transaction
// control and settings.
func mayConsultCatalog(an *guard.Analysis) bool {
	for i := range an.Statements {
		switch an.Statements[i].Class {
		case guard.ClassRead, guard.ClassWrite, guard.ClassTransaction, guard.ClassSession:
		default:
			return true
		}
	}
	return false
}

// executesAny reports whether the batch executes a statement for which the
// predicate is holds (changesSchema, blocksTraffic), analysing those the
// batch hook did not.
func (s *session) executesAny(b *proxy.Batch, ans *[8]*guard.Analysis, is func(*guard.Statement) bool) bool {
	for i := range b.Stmts {
		if !b.Stmts[i].Executed {
			continue
		}
		var an *guard.Analysis
		if i < len(ans) {
			an = ans[i]
		}
		if an == nil {
			an = s.analyze(view(b.Stmts[i].SQL))
		}
		for j := range an.Statements {
			if is(&an.Statements[j]) {
				return true
			}
		}
	}
	return false
}

// decide is the slow path: the batch has DDL, maintenance, transaction
// control or settings, or the transaction holds ACCESS EXCLUSIVE.
func (g *Guard) decide(ctx context.Context, s *session, b *proxy.Batch, ans *[8]*guard.Analysis, sampled bool, parent trace.SpanContext) *proxy.Verdict {
	start := g.now()
	ps := s.ps
	if s.an.Catalog != nil && s.executesAny(b, ans, changesSchema) {
		// The schema may have changed since lockguard last read the
		// catalog, through a connection that bypasses it or through
		// another lockguard: a foreign key added there would be missing
		// from the tables this DDL locks and from the policy's findings.
		// So a DDL is analysed on the catalog as it is now, at the cost
		// of the forgetting that follows it anyway.
		ps.MayBlock()
		g.ForgetSchema()
		*ans = [8]*guard.Analysis{}
	}
	if b.FlushedPure && g.LockTimeout > 0 && s.executesAny(b, ans, blocksTraffic) {
		// asyncpg's way: Parse, Describe, Flush, then Bind, Execute,
		// Sync. Nothing has run yet, so lockguard ends the flushed part
		// with a Sync of its own and protects the DDL as in a batch of
		// its own.
		st, failed, err := ps.EndFlushed()
		switch {
		case err != nil:
			s.lg().Warn("could not end the flushed part of a batch", "err", err)
		case failed:
			// PostgreSQL skips the batch up to its Sync: nothing to decide.
			return &proxy.Verdict{}
		default:
			b.MidBatch, b.FlushedPure, b.TxStatus = false, false, st
		}
	}
	status := g.learnTx(s, b)
	var unparsed *proxy.Error
	var stmts []*guard.Statement
	var protect []*guard.Statement // executed statements whose locks block reads or writes
	var protectText string         // the first of them, sanitized: what others would wait behind
	var concurrent []*guard.Statement
	oneImplicitTx := b.Complete && !b.MidBatch
	// endsTxFirst: the first COMMIT, ROLLBACK or PREPARE TRANSACTION
	// before the batch's first protected statement, which then runs
	// outside the transaction block the batch starts in (0: none);
	// chainFirst: it was AND CHAIN, which opens another block; atStart:
	// it was the batch's first statement.
	var endsTxFirst guard.TxKind
	chainFirst, atStart := false, false
	var own ownSets
	var findings []guard.Finding
	var admit []*guard.Statement // statements subject to admission
	for i := range b.Stmts {
		bs := &b.Stmts[i]
		raw := view(bs.SQL)
		var an *guard.Analysis
		if i < len(ans) {
			an = ans[i]
		}
		if an == nil {
			an = s.analyze(raw)
		}
		if !bs.Executed {
			// Parsing a statement locks its tables too.
			for j := range an.Statements {
				if st := &an.Statements[j]; len(st.Locks) > 0 && !blocksTraffic(st) {
					admit = append(admit, st)
				}
			}
			continue
		}
		if an.Err != nil {
			oneImplicitTx = false
			if unparsed == nil {
				unparsed = g.unparsed(s, raw, an.Err)
			}
			continue
		}
		ptrs := bound(an.StatementPtrs(), bs.Bind)
		if stmts == nil {
			stmts = ptrs // no copy for the usual one statement string; appending copies
		} else {
			stmts = append(stmts, ptrs...)
		}
		for _, st := range ptrs {
			own.see(st, len(protect) == 0)
			// SET CONSTRAINTS and SET TRANSACTION (TxNone) act on the
			// transaction they run in, which a retry runs anew.
			if st.Class == guard.ClassTransaction && st.TxKind != guard.TxNone || st.NoTxBlock {
				oneImplicitTx = false
			}
			if len(protect) == 0 && len(concurrent) == 0 && endsTxFirst == 0 {
				switch st.TxKind {
				case guard.TxCommit, guard.TxRollback, guard.TxPrepare:
					endsTxFirst, chainFirst = st.TxKind, st.Chain
					atStart = len(stmts) == len(ptrs) && st == ptrs[0]
				}
			}
			switch {
			case st.Concurrently:
				concurrent = append(concurrent, st)
				admit = append(admit, st)
			case blocksTraffic(st):
				if len(protect) == 0 {
					// Cloned: an uncached analysis's text is the client's
					// buffer, and the hazard outlives the hook.
					protectText = guard.Sanitize(strings.Clone(an.Text(st)))
				}
				protect = append(protect, st)
				own.protected()
			case len(st.Locks) > 0: // BEGIN, COMMIT, SET lock nothing to admit
				admit = append(admit, st)
			}
		}
		if s.an.Catalog != nil && mayConsultCatalog(an) {
			// The policy's rules may query the catalog, and when the
			// statement succeeds its result resets the catalog, which
			// waits for a lookup in progress.
			ps.MayBlock()
		}
		if g.Policy != nil {
			pathCat := s.analyzer().Catalog // the rules look names up as the analysis did
			s.mu.Lock()
			inTx := s.inTx || status == 'T'
			var gctx *guard.Context
			// Most decided statements (BEGIN, COMMIT, SET) cannot fire a
			// rule: they skip the Context and the copy of the transaction.
			if guard.MayFire(an, inTx, inTx && s.tx.AccessExclusive) {
				gctx = &guard.Context{User: ps.Param("user"), Database: s.db,
					Application: s.application(), InTransaction: inTx,
					RawSQL: raw, ServerVersion: g.ServerVersion, Catalog: pathCat, Now: g.now()}
				if inTx {
					// A clone: the upstream side records results into s.tx
					// while the policy reads this copy.
					tx := s.tx.Clone()
					gctx.Tx = &tx
				}
			}
			s.mu.Unlock()
			if gctx != nil {
				findings = append(findings, g.Policy.Evaluate(an, gctx)...)
			}
		}
	}

	v := &s.verdict
	*v = proxy.Verdict{Result: s.result}
	for _, f := range findings {
		switch f.Action {
		case guard.ActionBlock:
			if v.Refuse == nil {
				v.Refuse = &proxy.Error{Code: guard.CodePolicyBlock, Message: "lockguard: " + f.Message,
					Detail: "Rule " + f.Rule + ": " + f.Detail, Hint: f.Hint}
			}
		case guard.ActionWarn:
			v.Notices = append(v.Notices, &proxy.Error{Severity: "WARNING", Code: guard.CodeWarning,
				Message: "lockguard: " + f.Message, Detail: "Rule " + f.Rule + ": " + f.Detail, Hint: f.Hint})
		}
	}
	if v.Refuse == nil && unparsed != nil {
		v.Refuse = unparsed
	}
	if v.Refuse != nil {
		ob := g.observe(s, b, v, stmts, findings, false, sampled, parent, start)
		g.logFindings(s, findings)
		ob.wrap(v, nil, 0)
		s.quiet(v)
		s.enqueue(pendingBatch{obs: ob, part: !b.Complete}) // a refused batch changes nothing else
		return v
	}

	var hr *holdRecord
	if a := g.Admission; a != nil && len(admit) > 0 {
		path := own.searchPath(s, stmts)
		if _, conflict := a.check(a.Board.Snapshot(), admit, int(ps.BackendPID()), s.db, path); conflict {
			// The rest of a batch continued after a Flush runs in the
			// transaction its first part opened, which holds that part's
			// locks: as in a block, a lock the backend holds already
			// admits it.
			s.mu.Lock()
			inTx := s.inTx || status == 'T' || b.MidBatch
			s.mu.Unlock()
			hr = &holdRecord{}
			v.Hold = a.hold(s, admit, inTx, path, hr)
		}
	}
	var reasserted []string
	s.mu.Lock()
	if status == 'I' && s.redoDue(b, status) {
		for _, n := range s.reassert {
			v.Before = s.settings.AppendRestore(v.Before, n, false)
		}
		reasserted, s.reassert = s.reassert, nil
	}
	s.mu.Unlock()
	injected := false
	var restored []string
	if len(protect) > 0 || len(concurrent) > 0 {
		if status == 0 && !b.MidBatch {
			if err := ps.WaitIdle(); err == nil {
				status = ps.TxStatus()
				s.mu.Lock()
				s.sawStatus(status)
				s.mu.Unlock()
			}
		}
		at := status
		rollbackFirst := false
		switch {
		case atStart && (endsTxFirst == guard.TxRollback && (at == 'T' || at == 'E') || endsTxFirst == guard.TxCommit && at == 'E'):
			// "ROLLBACK; ALTER …" in a transaction block, or "COMMIT;
			// ALTER …" in a failed one (which rolls it back): the
			// rollback would undo what lockguard sets in the block, and
			// a failed block runs nothing. lockguard rolls the block
			// back itself first, as the client is about to. Only when
			// the client's string starts with it: a statement before it
			// ("ROLLBACK TO a; COMMIT; …", or any in a failed block,
			// which fails and ends the string there) decides how the
			// block ends.
			rollbackFirst, at = !b.MidBatch, 'I'
		case at == 'T' && endsTxFirst != 0:
			// "COMMIT; ALTER …": a SET LOCAL would end with the COMMIT
			// and leave the ALTER unprotected; a session-level SET made
			// in the transaction commits with it.
			at = 'I'
		}
		var undone *guard.Statement
		if len(protect) > 0 && (status == 'T' || status == 'E') && !b.MidBatch {
			undone = undoneBefore(stmts, protect[0], rollbackFirst)
		}
		switch {
		case undone != nil:
			// Nothing lockguard sends ahead of the string would be in
			// force when the DDL runs: it says so instead of claiming a
			// timeout (its admission still holds back and sheds what
			// would queue behind the DDL).
			if g.LockTimeout > 0 {
				locks := describeLocks(protect)
				v.Notices = append(v.Notices, rollbackNotice(undone, status, locks))
				s.lg().Warn("DDL runs without lockguard's lock timeout", "undone_by", rollbackLabel(undone), "locks", locks)
			}
		case b.MidBatch:
			if len(protect) > 0 && g.LockTimeout > 0 {
				g.warnMidBatch(s, v, protect, &own)
			}
		default:
			injected = g.protect(s, v, b, at, stmts, protect, concurrent, oneImplicitTx, &own, &restored)
		}
		switch {
		case rollbackFirst && len(v.Before) > 0 && chainFirst:
			// "ROLLBACK AND CHAIN; ALTER …": the DDL runs in the block
			// the client's AND CHAIN opens, and AND CHAIN fails outside
			// a block. lockguard rolls back and chains itself, sets in
			// that block and commits it with AND CHAIN, so the SET
			// stays and the client's AND CHAIN finds a block to end.
			// PostgreSQL gives each chained block what the client's
			// would have had (a healthy block's isolation level and
			// access mode; a failed block's are reset).
			v.Before = append(append([]string{"ROLLBACK AND CHAIN"}, v.Before...), "COMMIT AND CHAIN")
		case rollbackFirst && len(v.Before) > 0:
			// First of all: reasserted restores would fail in a failed
			// block. The client's own ROLLBACK then finds no block
			// (PostgreSQL's WARNING 25P01).
			v.Before = append([]string{"ROLLBACK"}, v.Before...)
		}
	}
	ob := g.observe(s, b, v, stmts, findings, injected, sampled, parent, start)
	g.logFindings(s, findings)
	if injected {
		s.lg().Info("lock timeout injected", "lock_timeout", g.LockTimeout, "locks", describeLocks(protect), "in_transaction", status == 'T')
	}
	p := pendingBatch{stmts: stmts, track: true, obs: ob, restored: restored, reasserted: reasserted, changes: own.tracked, part: !b.Complete}
	copyIn := (v.Retry != nil || len(v.After) > 0) && slices.ContainsFunc(stmts, func(st *guard.Statement) bool { return st.CopyIn })
	if copyIn {
		// COPY … FROM STDIN: PostgreSQL waits for the client's data
		// before the batch can end, and a client may wait for the
		// CopyInResponse before it sends it. Holding the answers for a
		// retry would hang both, and a statement sent after the batch
		// would reach PostgreSQL in copy-in mode, which ends the session
		// (08P01 "protocol synchronization was lost").
		v.Retry = nil
	}
	if (!b.Complete || copyIn) && len(v.After) > 0 {
		// The first part of a batch the client flushed: the proxy sends
		// Before ahead of it but nothing inside the batch. lockguard's
		// values stay in force for the rest of the batch, and the next
		// batch that starts outside a transaction block once this one's
		// result is in restores what the client has then (s.reassert,
		// onResult): the rest of the batch may set them too. The same
		// after a COPY … FROM STDIN.
		v.After, p.restoreLater = v.After[:0], true
	}
	if g.Admission != nil && len(protect) > 0 {
		hs := ownHazards(protect, int(ps.BackendPID()), s.db, protectText)
		if tid, sid := ob.traceIDs(); tid != "" {
			for i := range hs {
				hs[i].TraceID, hs[i].SpanID = tid, sid
			}
		}
		p.hazard = &ownHazard{board: g.Admission.Board, hs: hs}
		p.hazard.add()
		if v.Retry != nil {
			var wctx context.Context
			wctx, p.done = context.WithCancel(context.Background())
			rels := lockedRels(protect)
			g.watchYield(wctx, s, rels)
			retry := v.Retry
			hz := p.hazard
			v.Retry = func(attempt int, code string) (bool, time.Duration, *proxy.Error) {
				again, d, final := retry(attempt, code)
				if again {
					// Between attempts the DDL waits in lockguard, not in
					// PostgreSQL's queue: statements on its tables run.
					// Its hazard is back a little before the next attempt
					// goes out, so none slips in behind it.
					hz.remove()
					time.AfterFunc(d-min(d/4, 50*time.Millisecond), hz.add)
					time.AfterFunc(d, func() { g.watchYield(wctx, s, rels) })
				}
				return again, d, final
			}
		}
	}
	s.enqueue(p)
	timeout := time.Duration(0)
	if injected {
		timeout = g.LockTimeout
	}
	ob.wrap(v, hr, timeout)
	s.quiet(v)
	return v
}

// ownHazard is what a DDL lockguard forwards puts on the board: there while
// an attempt may be in PostgreSQL, off between attempts, gone at its end.
type ownHazard struct {
	board *guard.Board
	hs    []guard.Hazard

	mu    sync.Mutex
	key   uint64 // on the board under key; 0 when off
	ended bool
}

// add puts the hazards on the board (again), waiting from now.
func (o *ownHazard) add() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ended || o.key != 0 {
		return
	}
	now := time.Now()
	for i := range o.hs {
		o.hs[i].WaitStart = now
	}
	o.key = o.board.Add(slices.Clone(o.hs))
}

// remove takes them off until the next add.
func (o *ownHazard) remove() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.key != 0 {
		o.board.Remove(o.key)
		o.key = 0
	}
}

// end takes them off for good.
func (o *ownHazard) end() {
	o.mu.Lock()
	o.ended = true
	o.mu.Unlock()
	o.remove()
}

// quiet drops the verdict's WARNINGs (all lockguard sends) when the client
// set client_min_messages above warning, as PostgreSQL would; they are
// logged and counted all the same.
func (s *session) quiet(v *proxy.Verdict) {
	if len(v.Notices) == 0 {
		return
	}
	s.mu.Lock()
	level, set := s.settings.Effective("client_min_messages")
	s.mu.Unlock()
	if !set {
		return
	}
	switch strings.ToLower(strings.Trim(level, "' ")) {
	case "error", "fatal", "panic":
		v.Notices = nil
	}
}

// learnTx brings the session's transaction state up to date before a
// decision and returns the transaction status the batch starts in (0 when
// unknown). A BEGIN may have gone by undecided (plainTxControl), so the
// session may be in a transaction the guard has not seen start. The server's
// status before the batch says; when an earlier batch is still in flight
// after such a BEGIN, or restores wait to be redone outside a block
// (redoDue), the guard waits for it.
func (g *Guard) learnTx(s *session, b *proxy.Batch) byte {
	status := b.TxStatus
	if b.MidBatch {
		return status
	}
	s.mu.Lock()
	wait := status == 0 && (s.unseenBegin && !s.inTx || len(s.reassert) > 0)
	s.mu.Unlock()
	if wait {
		if err := s.ps.WaitIdle(); err != nil {
			return status
		}
		status = s.ps.TxStatus()
	}
	if status == 0 {
		return status
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unseenBegin = false
	s.sawStatus(status)
	return status
}

// sawStatus records a transaction status the server reported before or
// after a batch. s.mu is held.
func (s *session) sawStatus(status byte) {
	if status == 'T' || status == 'E' {
		s.enteredTx()
	}
	if status == 'E' {
		// PostgreSQL rolls a failed block back even at COMMIT.
		s.settings.Failed()
	}
}

// enteredTx records that the session is in a transaction block, when it
// did not know: one it saw no BEGIN of. s.mu is held.
func (s *session) enteredTx() {
	if !s.inTx {
		s.inTx = true
		s.tx.Reset()
		s.settings.Began()
	}
}

// logFindings logs the policy's findings about a batch.
func (g *Guard) logFindings(s *session, findings []guard.Finding) {
	for _, f := range findings {
		attrs := []any{"rule", f.Rule, "action", f.Action.String(), "relation", f.Relation.String(), "lock", f.Lock.String()}
		if f.Overridden {
			attrs = append(attrs, "overridden", true, "reason", f.Reason)
		}
		switch f.Action {
		case guard.ActionBlock:
			s.lg().Warn("policy blocked a statement", attrs...)
		case guard.ActionWarn:
			s.lg().Info("policy warned about a statement", attrs...)
		default:
			s.lg().Debug("policy finding", attrs...)
		}
		if t := g.tel(); t != nil && (f.Action == guard.ActionBlock || f.Action == guard.ActionWarn) {
			t.Provider.Metrics.Violation(context.Background(), f.Rule, f.Action.String())
		}
	}
}

// lockedRels lists the relations protected statements lock SHARE or more.
func lockedRels(stmts []*guard.Statement) []guard.RelName {
	var out []guard.RelName
	for _, st := range stmts {
		for _, l := range st.Locks {
			if l.Mode >= guard.Share && l.Rel.Name != "" {
				out = append(out, l.Rel)
			}
		}
	}
	return out
}

// blocksTraffic reports whether st takes a lock that blocks ordinary reads or
// writes (SHARE or stronger) on an existing relation.
func blocksTraffic(st *guard.Statement) bool {
	if st.Class == guard.ClassRead || st.Class == guard.ClassWrite {
		return false
	}
	for i := range st.Locks {
		if st.Locks[i].Mode >= guard.Share && st.Locks[i].Rel.Name != "" {
			return true
		}
	}
	return false
}

// ownSets is what a batch's own statements do to the parameters lockguard
// injects. lockguard's SETs go before the batch and its restores after it,
// so a SET in the batch overrides the injected value for the statements
// after it, and the restore must put back what the batch leaves.
type ownSets struct {
	// ltFirst is the last change of lock_timeout before the batch's first
	// protected statement, which then runs with that value.
	ltFirst *guard.SettingChange
	// ltLast is the batch's last change of lock_timeout so far, and
	// ltMid the last one before a protected statement (nil: none): with
	// ltFirst nil, the value a later protected statement runs with instead
	// of lockguard's.
	ltLast, ltMid *guard.SettingChange
	// tracked: some statement changes a parameter Settings follows, or
	// ends a block, so restores must put back what the batch leaves.
	tracked bool
	// paths: some statement changes what unqualified names resolve to
	// (search_path, or the role or session user that "$user" names).
	paths bool
	// resetAll: a RESET ALL, which PostgreSQL applies to a parameter set
	// by a SET (lockguard's SET LOCAL too) as a session-level RESET.
	resetAll bool
}

// see notes st's changes; first says no protected statement came yet.
func (o *ownSets) see(st *guard.Statement, first bool) {
	switch st.TxKind {
	case guard.TxCommit, guard.TxRollback, guard.TxRollbackTo, guard.TxPrepare:
		// Ending a block, or rolling back part of one, changes the
		// values in force as well: "ALTER …; COMMIT AND CHAIN" leaves
		// the session's value, not a SET LOCAL's.
		o.tracked = true
	}
	for i := range st.Settings {
		c := &st.Settings[i]
		if !guard.Tracked(c.Name) {
			continue
		}
		o.tracked = true
		if c.Name == "search_path" || c.Name == "role" || c.Name == "session_authorization" || c.Name == "all" {
			o.paths = true
		}
		o.resetAll = o.resetAll || c.Name == "all"
		if c.Name == "lock_timeout" || c.Name == "all" {
			o.ltLast = c
			if first {
				o.ltFirst = c
			}
		}
	}
}

// protected notes that a protected statement comes next in the batch.
func (o *ownSets) protected() { o.ltMid = o.ltLast }

// after returns the settings as the batch, of statements stmts, leaves them
// when it succeeds: what the restores after it must put back. s.mu is held.
func (o *ownSets) after(s *session, stmts []*guard.Statement) *guard.Settings {
	if !o.tracked {
		return &s.settings
	}
	c := s.settings.Clone()
	replay(&c, s.inTx, stmts, nil)
	return &c
}

// replay applies stmts to c as their success would, the first starting
// inside a transaction block when inTx is set; each, when set, runs after
// every statement.
func replay(c *guard.Settings, inTx bool, stmts []*guard.Statement, each func()) {
	if len(stmts) > 1 {
		c.StartBatch()
		defer c.EndBatch()
	}
	for _, st := range stmts {
		c.Apply(st, inTx)
		switch st.TxKind {
		case guard.TxBegin:
			inTx = true
		case guard.TxCommit, guard.TxRollback, guard.TxPrepare:
			inTx = st.Chain // AND CHAIN opens the next block
		}
		if each != nil {
			each()
		}
	}
}

// searchPath returns the schemas the batch's unqualified names may resolve
// in: the session's, and when the batch changes them on the way
// ("SET search_path = tenant_a; SELECT … FROM items" in one string), those
// its later statements see as well. Admission matches a name in any schema
// of the path, so the union errs on the side of holding.
func (o *ownSets) searchPath(s *session, stmts []*guard.Statement) []string {
	if !o.paths {
		return s.searchPath()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	user := s.ps.Param("user")
	path := s.settings.SearchPath(user)
	c := s.settings.Clone()
	replay(&c, s.inTx, stmts, func() {
		for _, p := range c.SearchPath(user) {
			if !slices.Contains(path, p) {
				path = append(path, p)
			}
		}
	})
	return path
}

// protect adds the lock timeout, its restoration and the retry policy to
// the batch of executed statements stmts. The parameters it restores at
// session level (outside a transaction block) are added to *restored.
func (g *Guard) protect(s *session, v *proxy.Verdict, b *proxy.Batch, status byte,
	stmts, protect, concurrent []*guard.Statement, oneImplicitTx bool, own *ownSets, restored *[]string) (injected bool) {
	if status == 'E' {
		return false // a failed transaction runs nothing
	}
	inTx := status == 'T'
	s.mu.Lock()
	defer s.mu.Unlock()
	after := own.after(s, stmts)
	if len(protect) > 0 && g.LockTimeout > 0 {
		if c := own.ltFirst; c != nil {
			// "SET lock_timeout = …; ALTER TABLE …" in one string: the
			// client's SET runs after anything sent before the string,
			// so the DDL has the client's timeout and lockguard injects
			// nothing, as for a lower timeout set on its own. It says so
			// when that timeout is longer than lockguard's.
			g.warnOverridden(s, v, c)
		} else {
			injected = s.limit(v, "lock_timeout", g.LockTimeout, inTx, own.resetAll, after, restored)
			if c := own.ltMid; injected && c != nil {
				// "ALTER …; SET lock_timeout = …; ALTER …": lockguard's
				// timeout governs the first DDL, the client's the later.
				g.warnOverridden(s, v, c)
			}
		}
	}
	st := g.StatementTimeout
	if len(protect) == 0 && len(concurrent) > 0 {
		st = g.ConcurrentStatementTimeout
	}
	if st > 0 {
		s.limit(v, "statement_timeout", st, inTx, own.resetAll, after, restored)
	}
	if !injected {
		return false
	}
	rels := describeLocks(protect)
	s.ddlGen++
	s.blockers = nil
	gen := s.ddlGen
	ltBetween := own.ltMid != nil
	why := hintGaveUp
	switch {
	case inTx || opensBlockBefore(stmts, protect[0]): // injected: protect is not empty
		why = hintInTx
	case slices.ContainsFunc(stmts, func(st *guard.Statement) bool { return st.Lasting }):
		why = hintLasting
	case !oneImplicitTx:
		why = hintSeveralTx
	}
	if why != hintGaveUp || ltBetween { // !oneImplicitTx is hintSeveralTx or before
		// Never retry inside a transaction block: its earlier locks would
		// stay held while it sleeps. Nor a batch that also does what its
		// failure leaves in place (a PREPARE, an advisory lock of the
		// session's): its retry would do it again. Nor when the batch sets
		// lock_timeout before a later protected statement: a 55P03 may
		// then come from the client's own timeout.
		v.Retry = func(attempt int, code string) (bool, time.Duration, *proxy.Error) {
			yielded := code == codeQueryCanceled && s.takeYielded()
			if !yielded && (code != guard.CodeLockNotAvailable || ltBetween) {
				// With the client's lock_timeout in force for a later
				// statement, a 55P03 may be its own: PostgreSQL's error
				// goes to the client as it is.
				return false, 0, nil
			}
			return false, 0, g.giveUp(s, rels, attempt, time.Duration(0), why, yielded)
		}
		g.watchBlockers(s, gen)
		return true
	}
	first := g.now()
	g.watchBlockers(s, gen)
	yields := 0 // attempts lockguard cancelled to yield
	v.Retry = func(attempt int, code string) (bool, time.Duration, *proxy.Error) {
		if code == codeQueryCanceled && s.takeYielded() {
			code = guard.CodeLockNotAvailable // we cancelled it to yield
			yields++
		}
		if code != guard.CodeLockNotAvailable {
			switch {
			case attempt == 1:
			case code == "":
				s.lg().Info("DDL landed after retries", "attempts", attempt, "locks", rels)
			default:
				s.lg().Info("DDL failed after retries, not for its lock", "attempts", attempt, "locks", rels, "sqlstate", code)
			}
			return false, 0, nil
		}
		if d, ok := g.Backoff.Delay(attempt+1, g.now().Sub(first)); ok {
			s.lg().Info("DDL hit the lock timeout; retrying", "attempt", attempt, "delay", d, "locks", rels)
			time.AfterFunc(d, func() { g.watchBlockers(s, gen) })
			return true, d, nil
		}
		return false, 0, g.giveUp(s, rels, attempt, g.now().Sub(first), hintGaveUp, yields > 0)
	}
	return true
}

// opensBlockBefore reports whether the statements before first in stmts
// leave a transaction block open: a BEGIN in the same batch (pgjdbc with
// autocommit off sends it with the first statement; a migration file of
// `BEGIN; …; COMMIT;` is one string).
func opensBlockBefore(stmts []*guard.Statement, first *guard.Statement) bool {
	open := false
	for _, st := range stmts {
		if st == first {
			break
		}
		switch st.TxKind {
		case guard.TxBegin:
			open = true
		case guard.TxCommit, guard.TxRollback, guard.TxPrepare:
			open = st.Chain
		}
	}
	return open
}

// limit sets timeout parameter name to d for the batch and restores it after
// (from after, the settings the batch leaves), unless the client's own value
// is shorter: lockguard never lengthens a timeout. It reports whether it
// injected; the parameters restored at session level are added to
// *restored. In a block whose batch has a RESET ALL (resetAll), the client's
// RESET ALL may have reset lockguard's SET LOCAL at session level where it
// would have left the client's own value (PostgreSQL skips a parameter not
// SET): the restore then sets the value COMMIT leaves as well, at session
// level, and the block's with SET LOCAL (Settings.AppendRestore). s.mu is
// held.
func (s *session) limit(v *proxy.Verdict, name string, d time.Duration, inTx, resetAll bool, after *guard.Settings, restored *[]string) bool {
	if s.ownCovers(name, d) {
		return false
	}
	_, set := s.settings.Effective(name)
	inject := guard.Inject(name, d, inTx)
	if !set {
		// The value in force is the server's: perhaps a shorter one from
		// ALTER ROLE, ALTER DATABASE or postgresql.conf.
		inject = guard.InjectAtMost(name, d, inTx)
	}
	v.Before = append(v.Before, inject)
	v.After = after.AppendRestore(v.After, name, inTx && !resetAll)
	if !inTx {
		*restored = append(*restored, name)
	}
	return true
}

// ownCovers reports whether the client has set timeout parameter name
// itself to a value in (0, d]: lockguard then leaves it alone. s.mu is
// held.
func (s *session) ownCovers(name string, d time.Duration) bool {
	cur, set := s.settings.Effective(name)
	own, ok := guard.ParseTimeout(cur)
	return set && ok && own > 0 && own <= d
}

// warnOverridden adds the warning of overridden when change c, a SET of
// lock_timeout in the batch before a protected statement, leaves a value
// longer than lockguard's (or none). s.mu is held.
func (g *Guard) warnOverridden(s *session, v *proxy.Verdict, c *guard.SettingChange) {
	val, set := s.settings.After("lock_timeout", *c)
	if d, ok := guard.ParseTimeout(val); !set || !ok || d == 0 || d > g.LockTimeout {
		v.Notices = append(v.Notices, g.overridden(val, set))
		// Drivers often drop notices (lib/pq, psycopg2 keeps them unread):
		// the log is where an operator learns the DDL ran unprotected.
		s.lg().Warn("DDL runs under a lock_timeout its query sets, not lockguard's; not retried", "client_lock_timeout", val, "lock_timeout", g.LockTimeout)
	}
}

// overridden is the warning for a DDL whose batch sets a lock_timeout
// longer than lockguard's (or none) before it.
func (g *Guard) overridden(val string, set bool) *proxy.Error {
	if !set || val == "" {
		val = "the server's default"
	} else {
		val = "'" + val + "'"
	}
	return &proxy.Error{Severity: "WARNING", Code: guard.CodeWarning,
		Message: fmt.Sprintf("lockguard: lock_timeout %s set in the same query runs the DDL after it instead of lockguard's %v", val, g.LockTimeout),
		Detail:  "lockguard sets its lock timeout before a query and restores it after; a SET inside the query overrides it for the statements that follow, so lockguard cannot shorten this DDL's wait for its locks and does not retry it.",
		Hint:    fmt.Sprintf("Send SET lock_timeout as a statement of its own, or set it to %v or less.", g.LockTimeout)}
}

// watchBlockers records who blocks the session's backend shortly before the
// injected lock timeout fires. The lookup may take longer than the wait
// itself on a busy server; a late answer still counts for this DDL, never
// for a later one.
func (g *Guard) watchBlockers(s *session, gen uint64) {
	if g.Blockers == nil || g.LockTimeout <= 0 {
		return
	}
	pid := s.ps.BackendPID()
	time.AfterFunc(g.LockTimeout/2, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		bl, err := g.Blockers.Blockers(ctx, pid)
		if err != nil {
			s.log.Debug("looking up blockers failed", "err", err)
			return
		}
		s.mu.Lock()
		if len(bl) > 0 && gen == s.ddlGen {
			for i := range bl {
				if bl[i].Seen.IsZero() {
					bl[i].Seen = time.Now()
				}
			}
			s.blockers = bl
		}
		s.mu.Unlock()
	})
}

// giveUpHint chooses the HINT of a DDL that did not get its lock: why
// lockguard gave it no (further) attempt.
type giveUpHint int

const (
	hintGaveUp    giveUpHint = iota // the attempts ran out, or a reason the general hint covers
	hintInTx                        // the DDL ran in a transaction block
	hintLasting                     // its batch does what a failure leaves in place
	hintSeveralTx                   // its batch runs as more than one transaction
)

// giveUp builds the final error of a DDL that did not get its lock.
// yielded says lockguard cancelled an attempt itself because requests
// queued behind it (Yield).
func (g *Guard) giveUp(s *session, rels string, attempts int, elapsed time.Duration, why giveUpHint, yielded bool) *proxy.Error {
	e := &proxy.Error{Code: guard.CodeLockNotAvailable,
		Message: fmt.Sprintf("lockguard: gave up waiting for %s", rels)}
	var d strings.Builder
	fmt.Fprintf(&d, "lock_timeout %v per attempt; %d attempt", g.LockTimeout, attempts)
	if attempts != 1 {
		d.WriteString("s")
	}
	if elapsed > 0 {
		fmt.Fprintf(&d, " over %v", elapsed.Round(time.Millisecond))
	}
	d.WriteString(".")
	if yielded {
		d.WriteString(" lockguard cancelled it while it waited because requests queued behind it in PostgreSQL (yield-waiters, yield-wait).")
	}
	if bl := s.blockersSnapshot(); len(bl) > 0 {
		for _, b := range bl {
			age := b.XactAge
			if !b.Seen.IsZero() {
				age += time.Since(b.Seen) // read half a lock timeout before
			}
			fmt.Fprintf(&d, " Blocked by pid %d (%s, user %s, application %q, transaction open %v): %s.",
				b.PID, b.State, b.User, b.Application, age.Round(100*time.Millisecond), truncate(b.Query, 200))
		}
	} else if g.Blockers == nil {
		d.WriteString(" The blocking session is unknown: lockguard has no monitor connection (monitor-dsn).")
	}
	e.Detail = d.String()
	switch why {
	case hintInTx:
		e.Hint = "lockguard retries a DDL only outside a transaction block: inside one, the transaction's earlier locks would stay held while it waited. Roll back and retry the whole transaction (or ROLLBACK TO a savepoint taken before the DDL and retry from there), or run the DDL outside a transaction block to have it retried (migration tools: Django atomic = False, Alembic autocommit_block(), Rails disable_ddl_transaction!, knex config.transaction = false, goose NO TRANSACTION, node-pg-migrate pgm.noTransaction(), Flyway executeInTransaction=false)."
	case hintSeveralTx:
		e.Hint = "lockguard does not retry a string or batch that runs as more than one transaction (its own COMMIT, or a statement such as VACUUM or CREATE INDEX CONCURRENTLY that runs outside one): what committed before the failure would run again. Send the DDL in a batch of its own to have it retried, or retry when the blocking transaction is done."
	case hintLasting:
		e.Hint = "lockguard does not retry a batch that also runs PREPARE, DEALLOCATE or a session-level advisory lock function (pg_advisory_lock, pg_advisory_unlock, …): PostgreSQL keeps what they did when the batch fails, so running it again would do it twice. Send the DDL in a batch of its own to have it retried, or retry when the blocking transaction is done."
	default:
		e.Hint = "lockguard gave up its place in the lock queue so that other queries could proceed. End the blocking transaction (for example SELECT pg_terminate_backend(pid)) or retry when it is done."
	}
	attrs := []any{"attempts", attempts, "locks", rels, "in_transaction", why == hintInTx}
	switch why {
	case hintLasting:
		attrs = append(attrs, "not_retried", "the batch also runs PREPARE, DEALLOCATE or a session-level advisory lock function")
	case hintSeveralTx:
		attrs = append(attrs, "not_retried", "the batch runs as more than one transaction")
	}
	if yielded {
		attrs = append(attrs, "yielded", true)
	}
	s.lg().Warn("DDL gave up waiting for its lock", attrs...)
	return e
}

// blockersSnapshot returns the blockers captured for the current DDL,
// waiting briefly for a lookup still under way.
func (s *session) blockersSnapshot() []Blocker {
	for i := 0; i < 20; i++ {
		s.mu.Lock()
		bl := s.blockers
		s.mu.Unlock()
		if len(bl) > 0 || s.g.Blockers == nil {
			return bl
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// undoneBefore returns the statement of a string that starts in a
// transaction block which undoes, before the protected statement first,
// what lockguard sets ahead of the string: a ROLLBACK
// (lockguard rolls back one the string starts with itself, rollbackFirst,
// and sets after it), or a ROLLBACK TO a savepoint the string did not make
// itself. In a failed block, where lockguard sets nothing, that is the
// ROLLBACK TO that lets the string run on. A COMMIT (or PREPARE
// TRANSACTION) before it keeps what lockguard set, as lockguard then sets
// at session level: nil.
func undoneBefore(stmts []*guard.Statement, first *guard.Statement, rollbackFirst bool) *guard.Statement {
	var saved []string
	for i, st := range stmts {
		if st == first {
			return nil
		}
		switch st.TxKind {
		case guard.TxCommit, guard.TxPrepare:
			return nil
		case guard.TxRollback:
			if i == 0 && rollbackFirst {
				return nil
			}
			return st
		case guard.TxSavepoint:
			saved = append(saved, st.Savepoint)
		case guard.TxRollbackTo:
			if !slices.Contains(saved, st.Savepoint) {
				return st
			}
		}
	}
	return nil
}

func rollbackLabel(st *guard.Statement) string {
	if st.TxKind == guard.TxRollbackTo {
		return "ROLLBACK TO " + st.Savepoint
	}
	return "ROLLBACK"
}

// unprotectedNotice is the WARNING for a DDL, taking locks (describeLocks),
// that runs without lockguard's lock_timeout for the reason why gives.
func unprotectedNotice(locks, why, hint string) *proxy.Error {
	return &proxy.Error{Severity: "WARNING", Code: guard.CodeWarning,
		Message: "lockguard: the statement that takes " + locks + " runs without lockguard's lock_timeout",
		Detail: why + ", so the statement can wait in PostgreSQL's lock queue for as long as a conflicting lock is held. " +
			"Statements sent through lockguard that would queue behind it are still held back and shed.",
		Hint: hint,
	}
}

// rollbackNotice is unprotectedNotice for a DDL that undone
// (undoneBefore) comes before.
func rollbackNotice(undone *guard.Statement, status byte, locks string) *proxy.Error {
	label := rollbackLabel(undone)
	why := "The " + label + " before it in this query string undoes the lock_timeout lockguard sets ahead of the string"
	if status == 'E' {
		why = "This query string starts in a failed transaction block, where lockguard can set nothing, and its " + label + " lets it run on"
	}
	return unprotectedNotice(locks, why,
		"Send "+label+" as a query of its own before the DDL (lockguard then sets its lock_timeout after it), or set lock_timeout yourself after it in this string.")
}

// warnMidBatch adds the WARNING that the protected statements of a batch
// that continues an extended-protocol batch after a Flush run without
// lockguard's lock_timeout: what came before the Flush has gone to
// PostgreSQL, and a SET sent now would run inside the client's implicit
// transaction, between its statements, with answers the client does not
// expect. A lock_timeout of the client's own that is at most lockguard's,
// in force for the session or set by the batch before the DDL, protects
// them instead.
func (g *Guard) warnMidBatch(s *session, v *proxy.Verdict, protect []*guard.Statement, own *ownSets) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := own.ltFirst; c != nil {
		g.warnOverridden(s, v, c)
		return
	}
	if s.ownCovers("lock_timeout", g.LockTimeout) {
		return
	}
	locks := describeLocks(protect)
	v.Notices = append(v.Notices, unprotectedNotice(locks,
		"It continues an extended-protocol batch after a Flush: the statements before the Flush have gone to PostgreSQL, and lockguard cannot set lock_timeout between them and this one without running a statement of its own inside the client's transaction",
		"End the batch with a Sync before the DDL's Parse (lockguard then sets its lock_timeout ahead of it), or SET lock_timeout yourself before the batch."))
	s.lg().Warn("DDL runs without lockguard's lock timeout", "after", "Flush", "locks", locks)
}

// describeLocks names the strongest lock of each protected statement.
func describeLocks(stmts []*guard.Statement) string {
	var parts []string
	for _, st := range stmts {
		for _, l := range st.Locks {
			if l.Mode >= guard.Share && l.Rel.Name != "" {
				if p := l.Mode.String() + " on " + l.Rel.String(); !slices.Contains(parts, p) {
					parts = append(parts, p) // each once, however many statements take it
				}
			}
		}
	}
	if len(parts) == 0 {
		return "a lock"
	}
	return strings.Join(parts, ", ")
}

func (s *session) enqueue(p pendingBatch) {
	s.mu.Lock()
	s.pending = append(s.pending, p)
	s.mu.Unlock()
}

// onResult runs on the upstream goroutine when a batch the guard looked at
// completes: it applies settings changes, follows the transaction and then
// records the batch's observation.
func (s *session) onResult(code string, completed int) {
	if o := s.applyResult(code, completed); o != nil {
		o.finish(code)
	}
}

// applyResult updates the session for the result of its oldest pending
// batch and returns that batch's observation. A failed batch ran its first
// completed statements.
func (s *session) applyResult(code string, completed int) *batchObs {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return nil
	}
	// Shift down rather than reslice: the queue holds one or two batches,
	// and its array is then reused instead of reallocated as it creeps.
	p := s.pending[0]
	n := copy(s.pending, s.pending[1:])
	s.pending[n] = pendingBatch{}
	s.pending = s.pending[:n]
	if p.hazard != nil {
		p.hazard.end()
	}
	if p.done != nil {
		p.done()
	}
	ran := p.stmts // none when refused
	if code != "" {
		ran = ran[:min(completed, len(ran))]
	}
	switch {
	case p.part:
		s.ran = append(s.ran, ran...)
		ran = nil
	case len(s.ran) > 0:
		ran = append(s.ran, ran...)
		defer func() { clear(s.ran); s.ran = s.ran[:0] }()
	}
	if !p.track && len(ran) == 0 {
		return p.obs
	}
	if code != "" {
		ran = guard.Outlasting(ran, s.inTx)
	}
	if code == "" || len(ran) > 0 {
		if code == "" && s.ps.TxStatusBefore() == 'E' {
			// The batch started in a failed block, which lockguard did
			// not know when it decided (a COMMIT pipelined behind the
			// failing statement): its COMMIT rolled back. (A batch that
			// succeeded does not leave a failed block, so a later status
			// read here cannot be 'E'.)
			s.sawStatus('E')
		}
		if len(ran) > 1 {
			s.settings.StartBatch()
		}
		for _, st := range ran {
			s.settings.Apply(st, s.inTx)
			if s.inTx && st.Class != guard.ClassTransaction {
				s.tx.Record(st)
			}
			if st.Class == guard.ClassTransaction {
				switch st.TxKind {
				case guard.TxBegin:
					s.enteredTx() // in a block already, BEGIN only warns
				case guard.TxCommit, guard.TxRollback, guard.TxPrepare:
					s.inTx = st.Chain // AND CHAIN opens the next block
					s.tx.Reset()
				case guard.TxSavepoint:
					s.tx.Savepoint(st.Savepoint)
				case guard.TxRelease:
					s.tx.Release(st.Savepoint)
				case guard.TxRollbackTo:
					s.tx.RollbackTo(st.Savepoint)
				}
			}
		}
		s.settings.EndBatch()
		if s.an.Catalog != nil && slices.ContainsFunc(ran, changesSchema) {
			// The schema may have changed: analyses and catalog facts
			// remembered from before are stale.
			s.g.ForgetSchema()
		}
	}
	var redo []string
	if code != "" {
		// The batch failed, perhaps before its Before ran (a shed batch
		// sends nothing): its restores go with the next batch again.
		redo = p.reasserted
		if p.changes {
			// Its restores put back what its SETs would have left,
			// and PostgreSQL rolled those SETs back.
			redo = append(redo, p.restored...)
		}
	}
	status := s.ps.TxStatus()
	if status == 'T' || status == 'E' || p.restoreLater {
		// The batch opened a transaction block (BEGIN; ALTER … in one
		// string) and the restore ran inside it, or it was not sent.
		redo = append(redo, p.restored...)
	}
	for _, n := range redo {
		if !slices.Contains(s.reassert, n) {
			s.reassert = append(s.reassert, n)
		}
	}
	// The server's status is the truth about the transaction.
	switch status {
	case 'I':
		if s.inTx {
			s.settings.TxEnded(false)
			s.inTx = false
			s.tx.Reset()
		}
	case 'T', 'E':
		s.sawStatus(status)
	}
	return p.obs
}
