package enforce

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/proxy"
	"github.com/lockguard/lockguard/telemetry"
)

// Telemetry connects the guard to spans, metrics, the status page's events
// and log lines carrying trace ids.
type Telemetry struct {
	// Provider supplies the tracer, the sampler and the metrics; required.
	Provider *telemetry.Provider
	// Events receives one event per guard action; nil drops them.
	Events *telemetry.Events
	// Host and Port name the upstream PostgreSQL (server.address,
	// server.port of every span and operation metric).
	Host string
	Port int
}

// Guard decisions, as the lockguard.decision attribute and metric label.
const (
	decisionPass      = "pass"      // forwarded unchanged
	decisionWarned    = "warned"    // forwarded with a policy warning
	decisionBlocked   = "blocked"   // refused by the policy
	decisionProtected = "protected" // forwarded with a lock timeout (and retries)
	decisionHeld      = "held"      // held in lockguard until the lock cleared, then forwarded
	decisionShed      = "shed"      // refused with 55P03 instead of queueing
	decisionUnparsed  = "refused_unparsed"
)

// sessTel is a session's telemetry state, built once at Open.
type sessTel struct {
	up            telemetry.Upstream
	opOK          *telemetry.HistSeries // db.client.operation.duration, success
	pool, clients []metric.AddOption
	client        string
	// passed holds the lockguard.statements counters of passed statements
	// by class, looked up once per session (reads and writes at Open, the
	// rest when first counted, from either relay goroutine).
	passed [guard.ClassSession + 1]atomic.Pointer[telemetry.StatementCounter]
}

// passCounter returns the counter of passed statements of class c.
func (t *sessTel) passCounter(m *telemetry.Metrics, c guard.Class) *telemetry.StatementCounter {
	if int(c) >= len(t.passed) {
		return m.StatementCounter(c.String(), decisionPass)
	}
	sc := t.passed[c].Load()
	if sc == nil {
		sc = m.StatementCounter(c.String(), decisionPass) // the same counter whoever looks first
		t.passed[c].Store(sc)
	}
	return sc
}

func (g *Guard) tel() *Telemetry {
	if g.Telemetry == nil || g.Telemetry.Provider == nil {
		return nil
	}
	return g.Telemetry
}

// openTel counts the session and prepares its attribute sets.
func (g *Guard) openTel(s *session) {
	t := g.tel()
	if t == nil {
		return
	}
	m := t.Provider.Metrics
	st := &sessTel{up: telemetry.Upstream{Host: t.Host, Port: t.Port, Namespace: s.db}}
	if a := s.ps.ClientAddr(); a != nil {
		st.client = a.String()
	}
	st.opOK = m.OperationSeries(st.up, "")
	st.pool, st.clients = m.ConnectionOpts(st.up)
	st.passCounter(m, guard.ClassRead)
	st.passCounter(m, guard.ClassWrite)
	s.t = st
	ctx := context.Background()
	m.ClientConns.Add(ctx, 1, st.clients...)
	m.ConnectionCount.Add(ctx, 1, st.pool...)
}

// closeTel uncounts the session.
func (g *Guard) closeTel(ps *proxy.Session) {
	s, _ := ps.State.(*session)
	if s == nil || s.t == nil {
		return
	}
	g.spans.Delete(int(ps.BackendPID()))
	m := g.Telemetry.Provider.Metrics
	ctx := context.Background()
	m.ClientConns.Add(ctx, -1, s.t.clients...)
	m.ConnectionCount.Add(ctx, -1, s.t.pool...)
}

// complete records a sync point the proxy forwarded unchanged.
func (g *Guard) complete(ps *proxy.Session, d time.Duration, code []byte) {
	s, _ := ps.State.(*session)
	if s == nil || s.t == nil {
		return
	}
	m := g.Telemetry.Provider.Metrics
	series := s.t.opOK
	if code != nil {
		series = m.OperationSeries(s.t.up, string(code))
	}
	series.Record(d)
}

// forwarded records lockguard's own time on client bytes.
func (g *Guard) forwarded(_ *proxy.Session, d time.Duration) {
	g.Telemetry.Provider.Metrics.AddedLatency.Record(d)
}

// countPassed counts the executed statements of a batch forwarded
// unchanged, by class (without a map lookup), and those the parser
// rejected.
func (s *session) countPassed(passed *[guard.ClassSession + 1]int, unparsed int) {
	m := s.g.Telemetry.Provider.Metrics
	for c, n := range passed {
		if n > 0 {
			s.t.passCounter(m, guard.Class(c)).Add(int64(n))
		}
	}
	if unparsed > 0 {
		m.StatementCounter("unparsed", decisionPass).Add(int64(unparsed))
		m.ParseFailures.Add(context.Background(), int64(unparsed), m.ParseFailedOpts("relayed")...)
	}
}

// sampled reports whether a statement is to be traced although the guard may
// not act on it, and the application's trace context it carries. It
// allocates nothing unless the comment has a tracestate to parse.
func (g *Guard) sampled(sql []byte) (bool, trace.SpanContext) {
	t := g.tel()
	if t == nil || !t.Provider.Tracing {
		return false, trace.SpanContext{}
	}
	var parent trace.SpanContext
	if c, ok := telemetry.FindComment(sql); ok {
		parent = c.SpanContext()
	}
	return t.Provider.Sampler.Sample(parent), parent
}

// batchObs follows one decided batch from the guard's decision to its
// result: its span (when traced), its metrics and its events.
type batchObs struct {
	g     *Guard
	s     *session
	start time.Time
	span  trace.Span // nil when not traced
	log   *slog.Logger

	stmts    []*guard.Statement // executed statements
	protect  bool               // a lock timeout was injected
	sqlText  string             // the executed statements, sanitized (batchText)
	relation string             // the relation and mode shown on events
	mode     string

	mu       sync.Mutex
	decision string
	refused  *proxy.Error
	attempts int
	attempt  time.Time // when the current attempt was sent
	held     time.Duration
	yielded  bool

	// reusable says that once finished nothing refers to the observation
	// any more (no span, no hold or retry function of its own), so the
	// session's next decided batch may reuse it.
	reusable bool
}

// observe starts following a decided batch. It runs on the client goroutine
// before the verdict is carried out; traced says whether to start a span
// (the application sampled it, or the guard acts on it).
func (g *Guard) observe(s *session, b *proxy.Batch, v *proxy.Verdict, stmts []*guard.Statement,
	findings []guard.Finding, protect bool, sampled bool, parent trace.SpanContext, start time.Time) *batchObs {
	t := g.tel()
	if t == nil {
		return nil
	}
	o := s.spareObs.Swap(nil)
	if o == nil {
		o = new(batchObs)
	}
	*o = batchObs{g: g, s: s, start: start, stmts: stmts, protect: protect, decision: decisionPass, attempt: start}
	switch {
	case v.Refuse != nil:
		o.decision, o.refused = decisionBlocked, v.Refuse
		if v.Refuse.Code == CodeUnparsed {
			o.decision = decisionUnparsed
		}
	case v.Hold != nil:
		o.decision = decisionHeld
	case protect:
		o.decision = decisionProtected
	case len(v.Notices) > 0:
		o.decision = decisionWarned
	}
	o.relation, o.mode = strongestLock(stmts)
	// DDL whose lock blocks traffic is always traced: others may queue
	// behind it, and their spans link to its span.
	acted := o.decision != decisionPass || len(findings) > 0
	for _, st := range stmts {
		acted = acted || blocksTraffic(st)
	}
	if acted || sampled {
		o.sqlText = batchText(b) // for events and the span; b is gone later
	}
	if !t.Provider.Tracing || !(sampled || acted) {
		return o
	}
	ctx := context.Background()
	if parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	summary := querySummary(stmts)
	attrs := []attribute.KeyValue{
		semconv.DBSystemNamePostgreSQL,
		semconv.DBNamespace(s.t.up.Namespace),
		semconv.ServerAddress(s.t.up.Host),
		semconv.ServerPort(s.t.up.Port),
		semconv.DBQuerySummary(summary),
		semconv.DBQueryText(o.sqlText),
		telemetry.AttrPID.Int(int(s.ps.BackendPID())),
	}
	if len(stmts) > 1 {
		attrs = append(attrs, semconv.DBOperationBatchSize(len(stmts)))
	}
	if len(stmts) > 0 {
		attrs = append(attrs, telemetry.AttrClass.String(stmts[0].Class.String()))
	}
	if o.relation != "" {
		attrs = append(attrs, telemetry.AttrRelation.String(o.relation), telemetry.AttrLockMode.String(o.mode))
	}
	if c, ok := telemetry.FindComment(firstExecuted(b)); ok {
		for _, k := range [...]string{"route", "controller", "action", "application", "framework"} {
			if v, ok := c.Lookup(k); ok {
				attrs = append(attrs, attribute.String("lockguard.client."+k, v))
			}
		}
	}
	_, o.span = t.Provider.Tracer.Start(ctx, summary, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	sc := o.span.SpanContext()
	o.log = s.log.With("trace_id", sc.TraceID().String(), "span_id", sc.SpanID().String())
	g.spans.Store(int(s.ps.BackendPID()), spanRef{sc.TraceID(), sc.SpanID()})
	s.cur.Store(o)
	for _, f := range findings {
		if f.Action == guard.ActionBlock || f.Action == guard.ActionWarn {
			o.span.AddEvent("lockguard.policy.finding", trace.WithAttributes(
				telemetry.AttrRule.String(f.Rule), telemetry.AttrAction.String(f.Action.String()),
				telemetry.AttrRelation.String(f.Relation.String())))
		}
	}
	return o
}

// traceIDs returns the batch's trace and span ids, "" when not traced.
func (o *batchObs) traceIDs() (string, string) {
	if o == nil || o.span == nil {
		return "", ""
	}
	sc := o.span.SpanContext()
	return sc.TraceID().String(), sc.SpanID().String()
}

// event adds an event about this batch's session to the status page ring.
func (o *batchObs) event(kind string, ev telemetry.Event) {
	t := o.g.tel()
	if t == nil || t.Events == nil {
		return
	}
	s := o.s
	ev.Kind = kind
	ev.PID = int(s.ps.BackendPID())
	ev.User, ev.Database, ev.Application = s.ps.Param("user"), s.db, s.application()
	if s.t != nil {
		ev.Client = s.t.client
	}
	if ev.Relation == "" {
		ev.Relation, ev.LockMode = o.relation, o.mode
	}
	if ev.Statement == "" {
		ev.Statement = o.sqlText
	}
	ev.TraceID, ev.SpanID = o.traceIDs()
	t.Events.Add(ev)
}

// wrap instruments the verdict: its hold and its retries. The result
// reaches finish through the session's pending batch (onResult).
func (o *batchObs) wrap(v *proxy.Verdict, hr *holdRecord, timeout time.Duration) {
	if o == nil {
		return
	}
	o.reusable = o.span == nil && v.Hold == nil && v.Retry == nil
	m := o.g.Telemetry.Provider.Metrics
	ctx := context.Background()
	if v.Refuse != nil {
		o.event(telemetry.KindBlocked, telemetry.Event{Message: v.Refuse.Message, Rule: ruleOf(v.Refuse)})
	} else if len(v.Notices) > 0 {
		for _, n := range v.Notices {
			o.event(telemetry.KindWarned, telemetry.Event{Message: n.Message, Rule: ruleOf(n)})
		}
	}
	if timeout > 0 {
		o.event(telemetry.KindTimeoutInjected, telemetry.Event{Message: "lock_timeout " + timeout.String()})
		if o.span != nil {
			o.span.AddEvent("lockguard.lock_timeout.injected", trace.WithAttributes(telemetry.AttrTimeout.Float64(timeout.Seconds())))
			o.span.SetAttributes(telemetry.AttrTimeout.Float64(timeout.Seconds()))
		}
	}
	if hold := v.Hold; hold != nil {
		v.Hold = func(hctx context.Context) *proxy.Error {
			t0 := time.Now()
			e := hold(hctx)
			waited := time.Since(t0)
			o.mu.Lock()
			o.held = waited
			if e != nil {
				o.decision, o.refused = decisionShed, e
			}
			o.mu.Unlock()
			outcome := "admitted"
			if e != nil {
				outcome = "shed"
			}
			m.Held(ctx, waited.Seconds(), outcome)
			ev := telemetry.Event{Wait: waited}
			var attrs []attribute.KeyValue
			if hr != nil && hr.set {
				hz := hr.c.hz
				ev.Relation, ev.LockMode, ev.BlockerPID = hz.Rel.String(), hr.c.lock.Mode.String(), hz.PID
				attrs = append(attrs, telemetry.AttrRelation.String(ev.Relation), telemetry.AttrLockMode.String(ev.LockMode),
					telemetry.AttrBlocker.Int(hz.PID), attribute.Bool("lockguard.blocker.granted", hz.Granted),
					attribute.String("lockguard.blocker.mode", hz.Mode.String()))
				if o.span != nil {
					if l, ok := o.g.hazardLink(hz); ok {
						o.span.AddLink(l)
					}
					for _, pid := range hz.BlockedBy {
						if l, ok := o.g.sessionLink(pid); ok {
							o.span.AddLink(l)
						}
					}
				}
			}
			if e != nil {
				reason := "lock_awaited"
				if hr != nil && hr.set && hr.c.hz.Granted {
					reason = "lock_held"
				}
				if hr != nil && hr.reason != "" {
					reason = hr.reason
				}
				m.Shedded(ctx, reason)
				ev.Message = e.Message
				o.event(telemetry.KindShed, ev)
				attrs = append(attrs, telemetry.AttrReason.String(reason))
			} else if waited > time.Millisecond && hr != nil && hr.set {
				o.event(telemetry.KindHeld, ev)
			}
			if o.span != nil {
				attrs = append(attrs, telemetry.AttrOutcome.String(outcome), telemetry.AttrQueueWait.Float64(waited.Seconds()))
				o.span.AddEvent("lockguard.hold", trace.WithAttributes(attrs...))
				o.span.SetAttributes(telemetry.AttrQueueWait.Float64(waited.Seconds()))
			}
			o.mu.Lock()
			o.attempt = time.Now()
			o.mu.Unlock()
			return e
		}
	}
	if retry := v.Retry; retry != nil {
		v.Retry = func(attempt int, code string) (bool, time.Duration, *proxy.Error) {
			yielded := code == codeQueryCanceled && o.s.peekYielded()
			again, d, final := retry(attempt, code)
			o.mu.Lock()
			o.attempts = attempt
			waited := time.Since(o.attempt)
			o.attempt = time.Now().Add(d)
			o.yielded = o.yielded || yielded
			o.mu.Unlock()
			outcome := "got"
			if code == guard.CodeLockNotAvailable || yielded {
				outcome = "timeout"
			}
			if o.protect {
				m.LockWaited(ctx, waited.Seconds(), outcome)
			}
			if yielded {
				o.event(telemetry.KindYielded, telemetry.Event{Attempts: attempt, Wait: waited})
				m.DDL(ctx, "yielded")
			}
			if again {
				m.Retry(ctx)
				o.event(telemetry.KindRetried, telemetry.Event{Attempts: attempt, Wait: waited,
					Message: "retrying in " + d.Round(time.Millisecond).String() + " after " + code})
				if o.span != nil {
					o.span.AddEvent("lockguard.retry", trace.WithAttributes(
						attribute.Int("lockguard.attempt", attempt), attribute.String("db.response.status_code", code),
						attribute.Float64("lockguard.retry.delay", d.Seconds())))
				}
			} else if final != nil {
				o.mu.Lock()
				o.refused = final
				o.mu.Unlock()
				o.event(telemetry.KindGaveUp, telemetry.Event{Attempts: attempt, Message: final.Message})
				if o.span != nil {
					o.span.AddEvent("lockguard.gave_up", trace.WithAttributes(attribute.Int("lockguard.attempt", attempt),
						attribute.String("lockguard.detail", final.Detail)))
				}
			}
			return again, d, final
		}
	}
}

// finish records the batch's result; it runs once, and o is not used
// after it.
func (o *batchObs) finish(code string) {
	defer o.recycle()
	m := o.g.Telemetry.Provider.Metrics
	ctx := context.Background()
	o.mu.Lock()
	decision, refused, attempts, attemptStart := o.decision, o.refused, o.attempts, o.attempt
	o.mu.Unlock()
	if refused != nil && code != "" {
		code = refused.Code // the client saw lockguard's error, not the substitute's
	}
	retried := attempts > 0 // Retry ran: it recorded each attempt's wait
	if !retried {
		attempts = 1
	}
	series := o.s.t.opOK
	if code != "" {
		series = m.OperationSeries(o.s.t.up, code)
	}
	series.Record(time.Since(o.start))
	for _, st := range o.stmts {
		if decision == decisionPass {
			o.s.t.passCounter(m, st.Class).Add(1)
		} else {
			m.Statement(ctx, st.Class.String(), decision, 1)
		}
	}
	if len(o.stmts) == 0 && decision != decisionPass {
		m.Statement(ctx, guard.ClassOther.String(), decision, 1)
	}
	if o.protect && decision != decisionShed && decision != decisionBlocked {
		switch {
		case code == "":
			if !retried {
				m.LockWaited(ctx, time.Since(attemptStart).Seconds(), "got")
			}
			if attempts > 1 {
				m.DDL(ctx, "landed_after_retry")
			} else {
				m.DDL(ctx, "landed")
			}
			o.event(telemetry.KindLanded, telemetry.Event{Attempts: attempts, Wait: time.Since(o.start)})
		case code == guard.CodeLockNotAvailable:
			if !retried {
				m.LockWaited(ctx, time.Since(attemptStart).Seconds(), "timeout")
				o.event(telemetry.KindGaveUp, telemetry.Event{Attempts: attempts})
			}
			m.DDL(ctx, "gave_up")
		case code == codeQueryCanceled:
			m.DDL(ctx, "canceled") // by its client, or its statement_timeout
		default:
			m.DDL(ctx, "failed")
		}
	}
	if o.span == nil {
		return
	}
	o.span.SetAttributes(telemetry.AttrDecision.String(decision), telemetry.AttrAttempts.Int(attempts))
	if code != "" {
		o.span.SetAttributes(semconv.DBResponseStatusCode(code), semconv.ErrorTypeKey.String(code))
		msg := ""
		if refused != nil {
			msg = refused.Message
		}
		o.span.SetStatus(codes.Error, msg)
	}
	o.span.End()
	o.s.cur.CompareAndSwap(o, nil)
	if o.s.ps.TxStatus() == 'I' {
		// Out of a transaction, the session holds no lock this span took.
		sc := o.span.SpanContext()
		o.g.spans.CompareAndDelete(int(o.s.ps.BackendPID()), spanRef{sc.TraceID(), sc.SpanID()})
	}
}

// recycle keeps a finished observation for the session's next decided
// batch when nothing else refers to it.
func (o *batchObs) recycle() {
	if !o.reusable {
		return
	}
	s := o.s
	*o = batchObs{}
	s.spareObs.Store(o)
}

// spanRef names a span (comparable, unlike trace.SpanContext).
type spanRef struct {
	tid trace.TraceID
	sid trace.SpanID
}

// sessionLink links to the last traced span of the session on backend pid
// while it is in a transaction: the statement that took the lock others wait
// behind, when the application traced it.
func (g *Guard) sessionLink(pid int) (trace.Link, bool) {
	v, ok := g.spans.Load(pid)
	if !ok {
		return trace.Link{}, false
	}
	r := v.(spanRef)
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: r.tid, SpanID: r.sid, TraceFlags: trace.FlagsSampled})
	return trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{
		telemetry.AttrBlocker.Int(pid), attribute.String("lockguard.link", "blocker")}}, true
}

// hazardLink links to the span of the DDL that caused a hazard: the span
// lockguard started when it forwarded that DDL (the monitor's view of the
// same lock carries no trace, so the board's own entry for the pid is used).
func (g *Guard) hazardLink(hz guard.Hazard) (trace.Link, bool) {
	if hz.TraceID == "" && g.Admission != nil {
		for _, h := range g.Admission.Board.Snapshot().All() {
			if h.PID == hz.PID && h.TraceID != "" {
				hz.TraceID, hz.SpanID = h.TraceID, h.SpanID
				break
			}
		}
	}
	if hz.TraceID == "" || hz.SpanID == "" {
		return trace.Link{}, false
	}
	tid, err1 := trace.TraceIDFromHex(hz.TraceID)
	sid, err2 := trace.SpanIDFromHex(hz.SpanID)
	if err1 != nil || err2 != nil {
		return trace.Link{}, false
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	return trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{
		telemetry.AttrBlocker.Int(hz.PID), telemetry.AttrRelation.String(hz.Rel.String()), attribute.String("lockguard.link", "hazard")}}, true
}

// ruleOf reads the rule id back from a policy error's DETAIL ("Rule X: …").
func ruleOf(e *proxy.Error) string {
	if r, ok := strings.CutPrefix(e.Detail, "Rule "); ok {
		if i := strings.IndexByte(r, ':'); i > 0 {
			return r[:i]
		}
	}
	return ""
}

// strongestLock names the strongest lock of the statements.
func strongestLock(stmts []*guard.Statement) (string, string) {
	var best guard.RelationLock
	for _, st := range stmts {
		for _, l := range st.Locks {
			if l.Rel.Name != "" && (best.Rel.Name == "" || l.Mode > best.Mode) {
				best = l
			}
		}
	}
	if best.Rel.Name == "" {
		return "", ""
	}
	return best.Rel.String(), best.Mode.String()
}

// querySummary builds db.query.summary: each statement's command tag and
// the relations it targets, low in cardinality (no literals, no values),
// at most 255 bytes; "BATCH " prefixes several statements.
func querySummary(stmts []*guard.Statement) string {
	var b strings.Builder
	if len(stmts) > 1 {
		b.WriteString("BATCH ")
	}
	for i, st := range stmts {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(st.Tag)
		n := 0
		for _, l := range st.Locks {
			if l.Rel.Name == "" || (l.Role != guard.RoleTarget && l.Role != guard.RoleRead) || n == 3 {
				continue
			}
			b.WriteByte(' ')
			b.WriteString(l.Rel.String())
			n++
		}
		if b.Len() > 255 {
			break
		}
	}
	s := b.String()
	if len(s) > 255 {
		s = s[:strings.LastIndexByte(s[:255], ' ')]
	}
	if s == "" {
		return "postgresql"
	}
	return s
}

// firstExecuted returns the text of the batch's first executed statement.
func firstExecuted(b *proxy.Batch) []byte {
	for i := range b.Stmts {
		if b.Stmts[i].Executed {
			return b.Stmts[i].SQL
		}
	}
	if len(b.Stmts) > 0 {
		return b.Stmts[0].SQL
	}
	return nil
}

// batchText is db.query.text: the executed statements without their
// comments and with every literal replaced by a placeholder. Parameterized
// (extended-protocol) text keeps its $n as semconv wants, but literals
// written into it are replaced too: DDL has no parameters, and a DEFAULT,
// a CHECK or a password must not reach a trace. A pipeline of several
// statements is, as semconv asks of batches, their texts joined with "; ";
// each distinct text once, in the order first executed (a pipeline that
// executes one statement many times is that statement's text). A batch
// that executes nothing (Parse and Describe only) has its first text.
func batchText(b *proxy.Batch) string {
	var texts []string
	var seen map[string]bool
	for i := range b.Stmts {
		bs := &b.Stmts[i]
		if !bs.Executed || seen[string(bs.SQL)] {
			continue
		}
		if seen == nil {
			seen = make(map[string]bool)
		}
		seen[string(bs.SQL)] = true
		texts = append(texts, guard.Sanitize(string(bs.SQL)))
	}
	switch {
	case len(texts) > 0:
		return strings.Join(texts, "; ")
	case len(b.Stmts) > 0:
		return guard.Sanitize(string(b.Stmts[0].SQL))
	}
	return ""
}

// lg returns the logger for a guard action: with the trace and span ids of
// the batch being decided, when it is traced.
func (s *session) lg() *slog.Logger {
	if o := s.cur.Load(); o != nil && o.log != nil {
		return o.log
	}
	return s.log
}

// peekYielded reports whether the guard cancelled the statement to yield,
// without clearing it.
func (s *session) peekYielded() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.yielded
}
