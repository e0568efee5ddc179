package enforce

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/proxy"
	"github.com/lockguard/lockguard/telemetry"
)

// tracedGuard is newTestGuard with tracing to memory and metrics on.
func tracedGuard(t testing.TB) (*Guard, *proxy.Session, *tracetest.InMemoryExporter) {
	exp := tracetest.NewInMemoryExporter()
	p, err := telemetry.Setup(context.Background(), telemetry.Options{SpanExporter: exp, Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	g, _ := newTestGuard()
	g.Telemetry = &Telemetry{Provider: p, Host: "db", Port: 5432}
	ps := &proxy.Session{}
	ps.State = g.Hooks().Open(ps)
	return g, ps, exp
}

// TestUnsampledStatementsCostNothing: with tracing and metrics on, an
// unsampled plain statement creates no span and allocates nothing (it is
// counted), nor does recording its duration; a sampled one is traced.
func TestUnsampledStatementsCostNothing(t *testing.T) {
	g, ps, exp := tracedGuard(t)
	h := g.Hooks()
	for _, sql := range []string{"SELECT abalance FROM pgbench_accounts WHERE aid = $1",
		"UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2 /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00'*/"} {
		b := plainBatch(sql)
		if v := g.batch(context.Background(), ps, b); v != nil {
			t.Fatalf("%s: verdict %+v, want none", sql, v)
		}
		if n := testing.AllocsPerRun(1000, func() {
			g.batch(context.Background(), ps, b)
			h.Complete(ps, time.Millisecond, nil)
			h.Forwarded(ps, time.Microsecond)
		}); n != 0 {
			t.Fatalf("%s: %v allocations per statement, want 0", sql, n)
		}
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Fatalf("%d spans for unsampled statements", n)
	}
	// A sampled traceparent: traced, as the application's child.
	v := g.batch(context.Background(), ps, plainBatch("SELECT 1 FROM pgbench_accounts /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/"))
	if v == nil || v.Result == nil {
		t.Fatalf("sampled statement: verdict %+v, want one reporting its result", v)
	}
	v.Result("", 0)
	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Parent.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("spans %+v, want one child of the application's trace", spans)
	}
}

func BenchmarkBatchTelemetry(b *testing.B) {
	g, ps, _ := tracedGuard(b)
	batch := plainBatch("SELECT abalance FROM pgbench_accounts WHERE aid = $1")
	h := g.Hooks()
	b.ReportAllocs()
	for b.Loop() {
		g.batch(context.Background(), ps, batch)
		h.Complete(ps, time.Millisecond, nil)
	}
}

// BenchmarkBatchTransactionControl is tpcb-like's BEGIN … END around its
// plain statements: both take the decided path (the guard follows the
// transaction).
func BenchmarkBatchTransactionControl(b *testing.B) {
	g, ps, exp := tracedGuard(b)
	g.Policy = guard.DefaultPolicy()
	begin, end := plainBatch("BEGIN"), plainBatch("END")
	b.ReportAllocs()
	for b.Loop() {
		for _, batch := range []*proxy.Batch{begin, end} {
			if v := g.batch(context.Background(), ps, batch); v != nil && v.Result != nil {
				v.Result("", 0)
			}
		}
	}
	b.StopTimer()
	if n := len(exp.GetSpans()); n != 0 {
		b.Fatalf("%d spans for BEGIN/END", n)
	}
}

// TestStatementsCountedOnce: a plain read in the same batch as a DDL is
// counted once, with the batch's decision, not also as passed.
func TestStatementsCountedOnce(t *testing.T) {
	g, ps, _ := tracedGuard(t)
	b := &proxy.Batch{Complete: true, TxStatus: 'I', Stmts: []proxy.BatchStmt{
		{SQL: []byte("SELECT 1 FROM users"), Executed: true},
		{SQL: []byte("ALTER TABLE users ADD COLUMN c int"), Executed: true}}}
	v := g.batch(context.Background(), ps, b)
	if v == nil || v.Result == nil {
		t.Fatalf("verdict %+v", v)
	}
	v.Result("", 0)
	rec := httptest.NewRecorder()
	g.Telemetry.Provider.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	reads := map[string]string{} // decision → count
	for _, l := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(l, "lockguard_statements_total{") && strings.Contains(l, `lockguard_statement_class="read"`) {
			d := l[strings.Index(l, `lockguard_decision="`)+len(`lockguard_decision="`):]
			reads[d[:strings.IndexByte(d, '"')]] = l[strings.LastIndexByte(l, ' ')+1:]
		}
	}
	if reads["protected"] != "1" || (reads["pass"] != "" && reads["pass"] != "0") {
		t.Fatalf("read statements counted as %v, want once, as protected", reads)
	}
}
