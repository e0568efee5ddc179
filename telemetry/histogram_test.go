package telemetry

import (
	"context"
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

func setupForTest(t testing.TB) *Provider {
	t.Helper()
	p, err := Setup(context.Background(), Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p
}

// sample returns the value of the exposition line that starts with prefix
// (name and labels, up to the value), or -1.
func sample(t *testing.T, p *Provider, name string, labels ...string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	p.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if ok {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			return v
		}
	}
	return -1
}

// A value on a bucket's upper bound counts in that bucket, one nanosecond
// more in the next; the sum is exact; the series has its attributes.
func TestHistogramBucketsAndExport(t *testing.T) {
	p := setupForTest(t)
	m := p.Metrics
	up := Upstream{Host: "db.internal", Port: 5433, Namespace: "app"}
	s := m.OperationSeries(up, "")
	if m.OperationSeries(up, "") != s {
		t.Fatal("OperationSeries returned a new series for the same upstream")
	}
	const name = "db_client_operation_duration_seconds"
	attrs := []string{`db_namespace="app"`, `server_address="db.internal"`, `server_port="5433"`, `db_system_name="postgresql"`}
	s.Record(time.Millisecond)                             // le=0.001
	s.Record(time.Millisecond + 1)                         // le=0.005
	s.Record(5 * time.Millisecond)                         // le=0.005
	s.Record(11 * time.Second)                             // +Inf only
	s.Record(-time.Second)                                 // a clock step: counted as 0
	m.OperationSeries(up, "57014").Record(2 * time.Second) // its own series
	for le, want := range map[string]float64{"0.001": 2, "0.005": 4, "10": 4, "+Inf": 5} {
		if got := sample(t, p, name+"_bucket", append(attrs, `le="`+le+`"`)...); got != want {
			t.Errorf("bucket le=%s = %v, want %v", le, got, want)
		}
	}
	if got := sample(t, p, name+"_count", attrs...); got != 5 {
		t.Errorf("count = %v, want 5 (the success series only)", got)
	}
	if got, want := sample(t, p, name+"_sum", attrs...), 11.007000001; got < want-1e-9 || got > want+1e-9 {
		t.Errorf("sum = %v, want %v", got, want)
	}
	if got := sample(t, p, name+"_count", `db_response_status_code="57014"`, `error_type="57014"`); got != 1 {
		t.Errorf("count of the 57014 series = %v, want 1", got)
	}
	m.AddedLatency.Record(40 * time.Microsecond)
	if got := sample(t, p, "lockguard_proxy_added_latency_seconds_bucket", `le="5e-05"`); got != 1 {
		t.Errorf("added latency le=5e-05 = %v, want 1", got)
	}
	if got := sample(t, p, "lockguard_proxy_added_latency_seconds_bucket", `le="2.5e-05"`); got != 0 {
		t.Errorf("added latency le=2.5e-05 = %v, want 0", got)
	}
}

// Status codes beyond the cap share one series, "_OTHER".
func TestHistogramStatusCodesCapped(t *testing.T) {
	p := setupForTest(t)
	m := p.Metrics
	up := Upstream{Host: "h", Port: 1, Namespace: "d"}
	for i := range maxCachedSets + 10 {
		m.OperationSeries(up, strconv.Itoa(10000+i)).Record(time.Millisecond)
	}
	if n := m.OperationDuration.len(); n > maxCachedSets+1 {
		t.Fatalf("%d series, want at most %d", n, maxCachedSets+1)
	}
	if got := sample(t, p, "db_client_operation_duration_seconds_count", `db_response_status_code="_OTHER"`); got < 10 {
		t.Errorf("_OTHER count = %v, want at least 10", got)
	}
}

// Concurrent records all count (run with -race).
func TestHistogramConcurrentRecords(t *testing.T) {
	p := setupForTest(t)
	s := p.Metrics.OperationSeries(Upstream{Host: "h", Port: 1, Namespace: "d"}, "")
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				s.Record(2 * time.Millisecond)
			}
		}()
	}
	for range 5 {
		sample(t, p, "db_client_operation_duration_seconds_count") // collections meanwhile
	}
	wg.Wait()
	if got := sample(t, p, "db_client_operation_duration_seconds_count"); got != 4000 {
		t.Errorf("count = %v, want 4000", got)
	}
	if got := sample(t, p, "db_client_operation_duration_seconds_sum"); got < 7.999 || got > 8.001 {
		t.Errorf("sum = %v, want 8", got)
	}
}

func TestHistogramRecordAllocations(t *testing.T) {
	p := setupForTest(t)
	s := p.Metrics.OperationSeries(Upstream{Host: "h", Port: 1, Namespace: "d"}, "")
	if n := testing.AllocsPerRun(1000, func() {
		s.Record(time.Millisecond)
		p.Metrics.AddedLatency.Record(time.Microsecond)
	}); n != 0 {
		t.Fatalf("Record allocates %v times", n)
	}
}

// BenchmarkHistogramRecord compares a Record on lockguard's histogram with
// the OpenTelemetry SDK's, each with the attributes of a session's
// operation-duration series.
func BenchmarkHistogramRecord(b *testing.B) {
	up := Upstream{Host: "127.0.0.1", Port: 5432, Namespace: "app"}
	b.Run("lockguard", func(b *testing.B) {
		p := setupForTest(b)
		s := p.Metrics.OperationSeries(up, "")
		b.ReportAllocs()
		for b.Loop() {
			s.Record(300 * time.Microsecond)
		}
	})
	b.Run("otel-sdk", func(b *testing.B) {
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		h, err := mp.Meter("bench").Float64Histogram(MetricOperationDuration, metric.WithExplicitBucketBoundaries(OperationBuckets...))
		if err != nil {
			b.Fatal(err)
		}
		opt := []metric.RecordOption{metric.WithAttributeSet(attrSet(operationAttrs(up, "")...))}
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			h.Record(ctx, 0.0003, opt...)
		}
	})
}
