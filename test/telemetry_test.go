package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/internal/enforce"
	"github.com/lockguard/lockguard/internal/pgserver"
	"github.com/lockguard/lockguard/telemetry"
)

// traced is a telemetry provider whose spans land in memory.
type traced struct {
	exp    *tracetest.InMemoryExporter
	prov   *telemetry.Provider
	events *telemetry.Events
}

func newTraced(t *testing.T, env map[string]string) *traced {
	t.Helper()
	tr := &traced{exp: tracetest.NewInMemoryExporter(), events: telemetry.NewEvents(0)}
	p, err := telemetry.Setup(context.Background(), telemetry.Options{Version: "test", SpanExporter: tr.exp,
		Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(context.Background()) })
	tr.prov = p
	return tr
}

// install puts the provider on a guard.
func (tr *traced) install(g *enforce.Guard) {
	host, port, _ := strings.Cut(pg.Addr(), ":")
	p, _ := strconv.Atoi(port)
	g.Telemetry = &enforce.Telemetry{Provider: tr.prov, Events: tr.events, Host: host, Port: p}
}

// spans returns the ended spans whose attribute key has value want ("" for
// any value).
func (tr *traced) spans(key attribute.Key, want string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range tr.exp.GetSpans() {
		if v, ok := spanAttr(s.Attributes, key); ok && (want == "" || v == want) {
			out = append(out, s)
		}
	}
	return out
}

func spanAttr(kvs []attribute.KeyValue, key attribute.Key) (string, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value.String(), true
		}
	}
	return "", false
}

func hasEvent(s tracetest.SpanStub, name string) bool {
	for _, e := range s.Events {
		if e.Name == name {
			return true
		}
	}
	return false
}

// scrape returns the Prometheus text of the provider's metrics.
func (tr *traced) scrape(t *testing.T) string {
	t.Helper()
	rec := httptest.NewRecorder()
	tr.prov.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// metricValue sums the samples of a metric whose labels contain every one of
// labels (`name="value"` strings).
func metricValue(text, name string, labels ...string) float64 {
	sum := 0.0
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// TestTelemetryIncident stages the incident through a traced lockguard: a
// reader holds users, a DROP CONSTRAINT of the FK waits through lockguard
// (lock timeout, retries), reads of users are shed. The shed statement's span
// has the database conventions, the shed decision and a link to the DDL's
// span; the retried DDL's span has its retries; /metrics moves; the status
// page's events name the blocker.
func TestTelemetryIncident(t *testing.T) {
	tr := newTraced(t, nil)
	s := startShedding(t, 300*time.Millisecond, tr.install)
	if err := tr.prov.ObserveLocks(telemetry.LockSources{Hazards: s.board.Snapshot,
		Held: s.lg.guard.Admission.HeldCounts}); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 60*time.Second)
	before := tr.scrape(t)

	// Plain statements, unsampled: counted, timed, never traced.
	conn := connect(t, s.lg.superDSN())
	for i := 0; i < 5; i++ {
		if _, err := conn.Exec(ctx, "SELECT count(*) FROM "+s.products); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(tr.exp.GetSpans()); n != 0 {
		t.Fatalf("%d spans for unsampled plain statements, want 0", n)
	}

	_, release := holdLock(t, s.users)
	ddl := connect(t, s.lg.superDSN())
	ddlDone := make(chan error, 1)
	go func() {
		_, err := ddl.Exec(ctx, "ALTER TABLE "+s.orders+" DROP CONSTRAINT "+s.fk)
		ddlDone <- err
	}()
	waitHazard(t, s.board, s.users)
	code, _ := s.probe(t, "SELECT count(*) FROM "+s.users+" WHERE id = 42")
	if code != "55P03" {
		t.Fatalf("read of users during the incident: %s, want shed", code)
	}
	during := tr.scrape(t)
	if v := metricValue(during, "lockguard_queue_depth", `lockguard_relation="`); v < 1 {
		t.Errorf("lockguard_queue_depth during the incident = %v, want ≥ 1:\n%s", v, grepLines(during, "queue_depth"))
	}
	if v := metricValue(during, "lockguard_hazards", `lockguard_lock_state="awaited"`); v < 1 {
		t.Errorf("lockguard_hazards{awaited} = %v during the incident", v)
	}
	time.Sleep(400 * time.Millisecond) // at least one lock timeout and retry
	release()
	if err := <-ddlDone; err != nil {
		t.Fatalf("DDL after the reader ended: %v", err)
	}
	if err := tr.prov.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}

	// The DDL's span: protected, retried, landed.
	ddls := tr.spans("db.query.summary", "ALTER TABLE public."+s.orders)
	if len(ddls) != 1 {
		t.Fatalf("%d DDL spans, want 1; all: %v", len(ddls), spanNames(tr.exp.GetSpans()))
	}
	d := ddls[0]
	for key, want := range map[attribute.Key]string{
		"db.system.name": "postgresql", "db.namespace": pgserver.TestDB, "lockguard.decision": "protected",
		"server.address": strings.Split(pg.Addr(), ":")[0], "lockguard.lock.mode": "ACCESS EXCLUSIVE",
	} {
		if v, _ := spanAttr(d.Attributes, key); v != want {
			t.Errorf("DDL span %s = %q, want %q", key, v, want)
		}
	}
	if a, _ := spanAttr(d.Attributes, "lockguard.attempts"); a == "" || a == "1" {
		t.Errorf("DDL span attempts = %q, want more than 1", a)
	}
	if !hasEvent(d, "lockguard.lock_timeout.injected") || !hasEvent(d, "lockguard.retry") {
		t.Errorf("DDL span events = %v, want the injected timeout and retries", d.Events)
	}
	if d.SpanKind.String() != "client" {
		t.Errorf("DDL span kind %v", d.SpanKind)
	}
	if v, ok := spanAttr(d.Attributes, "db.response.status_code"); ok {
		t.Errorf("landed DDL has status code %q", v)
	}

	// The shed read's span: the conventions, the decision, the wait, a link
	// to the DDL's span.
	sheds := tr.spans("lockguard.decision", "shed")
	if len(sheds) == 0 {
		t.Fatalf("no span with decision shed; spans: %v", spanNames(tr.exp.GetSpans()))
	}
	sh := sheds[0]
	for key, want := range map[attribute.Key]string{
		"db.response.status_code": "55P03", "error.type": "55P03", "db.system.name": "postgresql",
		"db.query.summary": "SELECT public." + s.users, "lockguard.relation": "public." + s.users,
	} {
		if v, _ := spanAttr(sh.Attributes, key); v != want {
			t.Errorf("shed span %s = %q, want %q", key, v, want)
		}
	}
	// The table's name is random digits and may itself contain "42": compare
	// the whole text.
	wantText := "SELECT count(*) FROM " + s.users + " WHERE id = $1"
	if q, _ := spanAttr(sh.Attributes, "db.query.text"); q != wantText {
		t.Errorf("shed span db.query.text = %q, want %q (the literal replaced)", q, wantText)
	}
	if sh.Status.Code.String() != "Error" {
		t.Errorf("shed span status %v", sh.Status)
	}
	if !hasEvent(sh, "lockguard.hold") {
		t.Errorf("shed span events %v, want lockguard.hold", sh.Events)
	}
	linked := false
	for _, l := range sh.Links {
		linked = linked || l.SpanContext.SpanID() == d.SpanContext.SpanID()
	}
	if !linked {
		t.Errorf("shed span links %v do not reach the DDL span %v", sh.Links, d.SpanContext.SpanID())
	}

	// Metrics moved.
	after := tr.scrape(t)
	for _, c := range []struct {
		name   string
		labels []string
	}{
		{"lockguard_shed_total", nil},
		{"lockguard_statements_total", []string{`lockguard_decision="shed"`}},
		{"lockguard_statements_total", []string{`lockguard_decision="pass"`, `lockguard_statement_class="read"`}},
		{"lockguard_retries_total", nil},
		{"lockguard_ddl_outcomes_total", []string{`lockguard_outcome="landed_after_retry"`}},
		{"lockguard_lock_wait_duration_seconds_count", []string{`lockguard_outcome="timeout"`}},
		{"lockguard_hold_duration_seconds_count", []string{`lockguard_outcome="shed"`}},
		{"db_client_operation_duration_seconds_count", []string{`db_response_status_code="55P03"`}},
		{"db_client_operation_duration_seconds_count", []string{`db_system_name="postgresql"`}},
		{"lockguard_proxy_added_latency_seconds_count", nil},
	} {
		b, a := metricValue(before, c.name, c.labels...), metricValue(after, c.name, c.labels...)
		if a <= b {
			t.Errorf("%s%v did not move: %v → %v", c.name, c.labels, b, a)
		}
	}
	if v := metricValue(after, "lockguard_client_connections"); v < 1 {
		t.Errorf("lockguard_client_connections = %v with sessions open", v)
	}

	// The status page's events: the shed names the DDL's backend as blocker.
	var ddlPID int
	ddl.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&ddlPID)
	found := false
	for _, ev := range tr.events.Recent(0) {
		if ev.Kind == telemetry.KindShed && ev.Relation == "public."+s.users {
			found = true
			if ev.TraceID == "" || ev.Statement != wantText {
				t.Errorf("shed event %+v: want a trace id and the statement without literals", ev)
			}
		}
	}
	if !found {
		t.Errorf("no shed event; events: %+v", tr.events.Recent(20))
	}
	_ = ddlPID
}

// TestTelemetryBlockAndSqlcommenter: a policy block is traced with its rule;
// a statement carrying a sampled sqlcommenter traceparent continues the
// application's trace; an unsampled one and a plain one create no span.
func TestTelemetryBlockAndSqlcommenter(t *testing.T) {
	tr := newTraced(t, nil)
	pol, err := guard.NewPolicy(guard.PolicyConfig{Preset: "strict"})
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	lg := startGuarded(t, func(g *enforce.Guard) {
		g.Policy = pol
		g.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
		tr.install(g)
	})
	ctx := ctxT(t, 30*time.Second)
	tbl := createTable(t, ctx, "tele", "id int PRIMARY KEY, v text")
	conn := connect(t, lg.superDSN())

	// Blocked by the strict policy (adding a NOT NULL column with a
	// volatile default rewrites the table).
	_, err = conn.Exec(ctx, "ALTER TABLE "+tbl+" ALTER COLUMN v TYPE int USING v::int")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != guard.CodePolicyBlock {
		t.Fatalf("strict policy: %v, want a block", err)
	}
	const tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		// A form feed after the comment is white space to PostgreSQL, so
		// the comment still ends the statement.
		sampled := fmt.Sprintf("SELECT v FROM %s WHERE id = 7 /*action='checkout',traceparent='00-%s-%s-01'*/\f", tbl, tid, sid)
		unsampled := fmt.Sprintf("SELECT v FROM %s WHERE id = 8 /*traceparent='00-%s-%s-00'*/", tbl, tid, sid)
		for _, q := range []string{sampled, unsampled, "SELECT v FROM " + tbl + " WHERE id = 9"} {
			if _, err := conn.Exec(ctx, q, mode); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	tr.prov.ForceFlush(ctx)

	blocked := tr.spans("lockguard.decision", "blocked")
	if len(blocked) != 1 {
		t.Fatalf("%d blocked spans, want 1: %v", len(blocked), spanNames(tr.exp.GetSpans()))
	}
	b := blocked[0]
	if v, _ := spanAttr(b.Attributes, "db.response.status_code"); v != guard.CodePolicyBlock {
		t.Errorf("blocked span status code %q", v)
	}
	if !hasEvent(b, "lockguard.policy.finding") {
		t.Errorf("blocked span events %v", b.Events)
	}
	if v, _ := spanAttr(b.Attributes, "db.query.text"); !strings.Contains(v, "int USING") {
		t.Errorf("blocked span text %q", v)
	}
	// The guard's log line about the block carries the span's ids.
	line := ""
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "policy blocked a statement") {
			line = l
		}
	}
	var rec struct{ TraceID, SpanID string }
	json.Unmarshal([]byte(strings.NewReplacer(`"trace_id"`, `"TraceID"`, `"span_id"`, `"SpanID"`).Replace(line)), &rec)
	if rec.TraceID != b.SpanContext.TraceID().String() || rec.SpanID != b.SpanContext.SpanID().String() {
		t.Errorf("log line %q does not carry the blocked span's ids %v", line, b.SpanContext)
	}

	reads := tr.spans("db.query.summary", "SELECT public."+tbl)
	if len(reads) != 2 {
		t.Fatalf("%d spans for the reads, want 2 (the sampled one, per protocol): %v", len(reads), spanNames(tr.exp.GetSpans()))
	}
	for _, r := range reads {
		if r.Parent.TraceID().String() != tid || r.Parent.SpanID().String() != sid || !r.Parent.IsRemote() {
			t.Errorf("read span parent = %v, want the application's %s/%s", r.Parent, tid, sid)
		}
		if r.SpanContext.TraceID().String() != tid {
			t.Errorf("read span trace %v, want %s", r.SpanContext.TraceID(), tid)
		}
		if v, _ := spanAttr(r.Attributes, "lockguard.client.action"); v != "checkout" {
			t.Errorf("lockguard.client.action = %q", v)
		}
		if v, _ := spanAttr(r.Attributes, "db.query.text"); strings.Contains(v, "traceparent") {
			t.Errorf("db.query.text keeps the comment: %q", v)
		}
		if v, _ := spanAttr(r.Attributes, "lockguard.decision"); v != "pass" {
			t.Errorf("sampled read decision %q", v)
		}
	}
}

// TestTelemetryOperationDurationBuckets: db.client.operation.duration and
// lockguard's added latency count every sync point in the right bucket, with
// its duration in the sum, including a statement the guard decides (BEGIN)
// and one that fails (with its SQLSTATE).
func TestTelemetryOperationDurationBuckets(t *testing.T) {
	tr := newTraced(t, nil)
	lg := startGuarded(t, tr.install)
	ctx := ctxT(t, 30*time.Second)
	conn := connect(t, lg.superDSN())
	// Simple-protocol queries: one sync point each.
	run := func(q string) error { _, err := conn.PgConn().Exec(ctx, q).ReadAll(); return err }
	if err := run("SELECT 1"); err != nil { // the session's first sync point
		t.Fatal(err)
	}
	const op = "db_client_operation_duration_seconds"
	ok := `db_system_name="postgresql"`
	before := tr.scrape(t)
	// Two sync points of at least 20 ms (above the 0.01 bound), BEGIN and
	// COMMIT, and a division by zero: five in all.
	for _, q := range []string{"SELECT pg_sleep(0.02)", "BEGIN", "SELECT pg_sleep(0.02)", "COMMIT"} {
		if err := run(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := run("SELECT 1/0"); err == nil {
		t.Fatal("division by zero succeeded")
	}
	after := tr.scrape(t)
	delta := func(name string, labels ...string) float64 {
		return metricValue(after, name, labels...) - metricValue(before, name, labels...)
	}
	if n := delta(op+"_count", ok); n != 5 {
		t.Errorf("%s_count moved by %v over 5 sync points", op, n)
	}
	if n := delta(op+"_count", ok, `db_response_status_code="22012"`, `error_type="22012"`); n != 1 {
		t.Errorf("%s_count{22012} moved by %v, want 1", op, n)
	}
	if n := delta(op+"_bucket", ok, `le="0.01"`); n > 3 {
		t.Errorf("%s_bucket{le=0.01} moved by %v: a 20 ms sleep counted at or below 10 ms", op, n)
	}
	if n := delta(op+"_bucket", ok, `le="0.5"`); n != 5 {
		t.Errorf("%s_bucket{le=0.5} moved by %v, want 5", op, n)
	}
	if n := delta(op+"_bucket", ok, `le="+Inf"`); n != 5 {
		t.Errorf("%s_bucket{le=+Inf} moved by %v, want 5", op, n)
	}
	if sum := delta(op+"_sum", ok); sum < 0.04 || sum > 2.5 {
		t.Errorf("%s_sum moved by %vs for two 20 ms sleeps", op, sum)
	}
	if n := delta("lockguard_proxy_added_latency_seconds_count"); n < 5 {
		t.Errorf("lockguard_proxy_added_latency_seconds_count moved by %v over 5 sync points", n)
	}
	if sum := delta("lockguard_proxy_added_latency_seconds_sum"); sum <= 0 || sum > 0.5 {
		t.Errorf("lockguard_proxy_added_latency_seconds_sum moved by %vs", sum)
	}
}

// TestTelemetryPipelinedDecidedBatches: a client pipelines decided sync
// points (BEGIN, SET LOCAL, COMMIT) without waiting for their results, so
// several are in flight at once while the guard reuses its per-session
// Verdict and observations and the proxy reuses its plans. Every sync point
// is still counted exactly once, under its own class and decision.
func TestTelemetryPipelinedDecidedBatches(t *testing.T) {
	tr := newTraced(t, nil)
	lg := startGuarded(t, tr.install)
	ctx := ctxT(t, 30*time.Second)
	conn := connect(t, lg.superDSN())
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	// 60 sync points: a sync point forwarded unchanged is timed while at
	// most 64 are in flight (proxy obsSlots; docs/telemetry.md).
	const rounds = 15
	before := tr.scrape(t)
	p := conn.PgConn().StartPipeline(ctx)
	for range rounds {
		for _, q := range []string{"BEGIN", "SET LOCAL lock_timeout = '1s'", "SELECT 1", "COMMIT"} {
			p.SendQueryParams(q, nil, nil, nil, nil)
			p.SendPipelineSync()
		}
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	syncs := 0
	for syncs < 4*rounds {
		res, err := p.GetResults()
		if err != nil {
			t.Fatalf("after %d sync points: %v", syncs, err)
		}
		switch r := res.(type) {
		case *pgconn.ResultReader:
			if _, err := r.Close(); err != nil {
				t.Fatalf("after %d sync points: %v", syncs, err)
			}
		case *pgconn.PipelineSync:
			syncs++
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	after := tr.scrape(t)
	delta := func(name string, labels ...string) float64 {
		return metricValue(after, name, labels...) - metricValue(before, name, labels...)
	}
	for class, want := range map[string]float64{"transaction": 2 * rounds, "session": rounds, "read": rounds} {
		if n := delta("lockguard_statements_total", `lockguard_statement_class="`+class+`"`, `lockguard_decision="pass"`); n != want {
			t.Errorf("lockguard_statements_total{class=%s,decision=pass} moved by %v, want %v", class, n, want)
		}
	}
	if n := delta("db_client_operation_duration_seconds_count", `db_system_name="postgresql"`); n != 4*rounds {
		t.Errorf("db_client_operation_duration_seconds_count moved by %v over %d sync points", n, 4*rounds)
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if st := conn.PgConn().TxStatus(); st != 'I' {
		t.Fatalf("transaction status %c after the pipeline, want I", st)
	}
}

// TestTelemetryParentbasedRatio: OTEL_TRACES_SAMPLER=always_on traces every
// statement; the policy's default (parentbased_always_off) none.
func TestTelemetrySamplerFromEnv(t *testing.T) {
	tr := newTraced(t, map[string]string{"OTEL_TRACES_SAMPLER": "always_on"})
	lg := startGuarded(t, tr.install)
	conn := connect(t, lg.superDSN())
	ctx := ctxT(t, 10*time.Second)
	for i := 0; i < 3; i++ {
		if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	tr.prov.ForceFlush(ctx)
	if n := len(tr.spans("db.system.name", "postgresql")); n < 3 {
		t.Fatalf("always_on: %d spans for 3 statements", n)
	}
}

func spanNames(ss []tracetest.SpanStub) []string {
	var out []string
	for _, s := range ss {
		d, _ := spanAttr(s.Attributes, "lockguard.decision")
		out = append(out, s.Name+"["+d+"]")
	}
	return out
}

func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

var _ sdktrace.SpanExporter = (*tracetest.InMemoryExporter)(nil)

// TestUnparsedDDL: a DDL-looking statement lockguard cannot parse is relayed
// (PostgreSQL answers) by default and refused with LG002 under
// unparsed-ddl: refuse; both are counted.
func TestUnparsedDDL(t *testing.T) {
	const bad = "ALTER TABLE lockguard_no_such_table FROBNICATE COLUMN x"
	for _, mode := range []string{enforce.UnparsedRelay, enforce.UnparsedRefuse} {
		t.Run(mode, func(t *testing.T) {
			tr := newTraced(t, nil)
			lg := startGuarded(t, func(g *enforce.Guard) { g.UnparsedDDL = mode; tr.install(g) })
			conn := connect(t, lg.superDSN())
			_, err := conn.Exec(ctxT(t, 10*time.Second), bad)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) {
				t.Fatalf("%s: %v, want an error", bad, err)
			}
			want, outcome := "42601", "relayed" // PostgreSQL's syntax error
			if mode == enforce.UnparsedRefuse {
				want, outcome = enforce.CodeUnparsed, "refused"
				if !strings.HasPrefix(pe.Message, "lockguard:") || pe.Detail == "" || pe.Hint == "" {
					t.Errorf("refusal %+v: want lockguard's message, a DETAIL and a HINT", pe)
				}
			}
			if pe.Code != want {
				t.Fatalf("%s: %s %s, want %s", mode, pe.Code, pe.Message, want)
			}
			if v := metricValue(tr.scrape(t), "lockguard_parse_failures_total", `lockguard_outcome="`+outcome+`"`); v != 1 {
				t.Errorf("lockguard_parse_failures_total{%s} = %v, want 1", outcome, v)
			}
			// The session goes on.
			if _, err := conn.Exec(ctxT(t, 5*time.Second), "SELECT 1"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTelemetryLinkToTracedBlocker: the application traced the statement with
// which its transaction took the lock (a sampled sqlcommenter traceparent,
// through lockguard); a DDL waits behind that transaction and a read is shed
// behind the DDL. The shed read's span links to the DDL's span and to the
// blocker's span, in the application's trace.
func TestTelemetryLinkToTracedBlocker(t *testing.T) {
	tr := newTraced(t, nil)
	s := startShedding(t, 5*time.Second, tr.install)
	ctx := ctxT(t, 30*time.Second)
	const appTrace = "0af7651916cd43dd8448eb211c80319c"
	blocker := connect(t, s.lg.superDSN())
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SELECT count(*) FROM "+s.users+" /*traceparent='00-"+appTrace+"-b7ad6b7169203331-01'*/"); err != nil {
		t.Fatal(err)
	}
	ddl := connect(t, s.lg.superDSN())
	ddlDone := make(chan error, 1)
	go func() {
		_, err := ddl.Exec(ctx, "ALTER TABLE "+s.orders+" DROP CONSTRAINT "+s.fk)
		ddlDone <- err
	}()
	waitHazard(t, s.board, s.users)
	// The monitor must have seen whom the DDL waits for.
	waitFor(t, 10*time.Second, func() bool {
		for _, h := range s.board.Snapshot().All() {
			if !h.Granted && len(h.BlockedBy) > 0 {
				return true
			}
		}
		return false
	})
	if code, _ := s.probe(t, "SELECT count(*) FROM "+s.users); code != "55P03" {
		t.Fatalf("read behind the DDL: %s, want shed", code)
	}
	tx.Rollback(ctx)
	if err := <-ddlDone; err != nil {
		t.Fatal(err)
	}
	tr.prov.ForceFlush(ctx)
	sheds := tr.spans("lockguard.decision", "shed")
	if len(sheds) == 0 {
		t.Fatal("no shed span")
	}
	roles := map[string]string{}
	for _, l := range sheds[0].Links {
		role, _ := spanAttr(l.Attributes, "lockguard.link")
		roles[role] = l.SpanContext.TraceID().String()
	}
	if roles["blocker"] != appTrace || roles["hazard"] == "" {
		t.Fatalf("shed span links %v: want the DDL's span (hazard) and the blocker's, in trace %s", roles, appTrace)
	}
}

// TestPipelinedDDLIsNamed sends a DDL as the second statement of an
// extended-protocol pipeline (pgx's batch: one Sync), with no lock monitor,
// as lockguard runs without monitor-dsn. A read shed behind the DDL's
// pending lock names the DDL in its DETAIL (not the pipeline's first
// statement), and the pipeline's span and status-page event carry both
// statements' texts, joined as semconv asks of batches.
func TestPipelinedDDLIsNamed(t *testing.T) {
	tr := newTraced(t, nil)
	board := &guard.Board{}
	lg := startGuarded(t, func(g *enforce.Guard) {
		g.LockTimeout = 5 * time.Second
		g.Admission = &enforce.Admission{Board: board, HoldBudget: 50 * time.Millisecond}
		tr.install(g)
	})
	ctx := ctxT(t, 30*time.Second)
	tbl := createTable(t, ctx, "piped", "id int")
	_, release := holdLock(t, tbl)
	defer release()

	ddl := connect(t, lg.superDSN())
	done := make(chan error, 1)
	go func() {
		b := &pgx.Batch{}
		b.Queue("SELECT 1")
		b.Queue("ALTER TABLE " + tbl + " ADD COLUMN z int DEFAULT 7")
		done <- ddl.SendBatch(ctx, b).Close()
	}()
	waitHazard(t, board, tbl)

	_, err := connect(t, lg.superDSN()).Exec(ctx, "SELECT count(*) FROM "+tbl)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "55P03" {
		t.Fatalf("read behind the pipelined DDL: %v, want shed", err)
	}
	wantDDL := "(ALTER TABLE " + tbl + " ADD COLUMN z int DEFAULT $1)"
	if !strings.Contains(pe.Detail, wantDDL) {
		t.Errorf("shed DETAIL %q does not name the waiting DDL %s", pe.Detail, wantDDL)
	}
	release()
	if err := <-done; err != nil {
		t.Fatalf("pipeline after the reader ended: %v", err)
	}
	if err := tr.prov.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	wantText := "SELECT $1; ALTER TABLE " + tbl + " ADD COLUMN z int DEFAULT $1"
	ddls := tr.spans("lockguard.decision", "protected")
	if len(ddls) != 1 {
		t.Fatalf("%d protected spans, want 1; all: %v", len(ddls), spanNames(tr.exp.GetSpans()))
	}
	if q, _ := spanAttr(ddls[0].Attributes, "db.query.text"); q != wantText {
		t.Errorf("pipeline span db.query.text = %q, want %q", q, wantText)
	}
	if n, _ := spanAttr(ddls[0].Attributes, "db.operation.batch.size"); n != "2" {
		t.Errorf("pipeline span db.operation.batch.size = %q, want 2", n)
	}
	found := false
	for _, ev := range tr.events.Recent(0) {
		found = found || ev.Statement == wantText
	}
	if !found {
		t.Errorf("no status-page event with statement %q; events: %+v", wantText, tr.events.Recent(20))
	}
}
