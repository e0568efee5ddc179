package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func sec(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

func TestLongestGap(t *testing.T) {
	tests := []struct {
		name            string
		ends            []float64
		from, to        float64
		gap, start, end float64
	}{
		{"no success at all", nil, 0, 10, 10, 0, 10},
		{"gap in the middle", []float64{0.1, 0.2, 4.2, 4.3, 6, 8, 9.9}, 0, 10, 4.0, 0.2, 4.2},
		{"gap at the start", []float64{3, 3.5, 4}, 0, 5, 3, 0, 3},
		{"gap at the end", []float64{0.5, 1, 1.5}, 0, 10, 8.5, 1.5, 10},
		{"first of equal gaps wins", []float64{1, 2, 3}, 0, 4, 1, 0, 1},
		{"times outside the window are ignored", []float64{-1, 1, 2, 12}, 0, 10, 8, 2, 10},
		{"duplicates", []float64{2, 2, 2, 8}, 0, 10, 6, 2, 8},
		{"empty window", []float64{1}, 5, 5, 0, 5, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ends []time.Duration
			for _, e := range tt.ends {
				ends = append(ends, sec(e))
			}
			gap, start, end := longestGap(ends, sec(tt.from), sec(tt.to))
			if gap != sec(tt.gap) || start != sec(tt.start) || end != sec(tt.end) {
				t.Errorf("longestGap = %v (%v–%v), want %v (%v–%v)", gap, start, end, sec(tt.gap), sec(tt.start), sec(tt.end))
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		var out []time.Duration
		for _, v := range vs {
			out = append(out, time.Duration(v)*time.Millisecond)
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(100-i) * time.Millisecond // 100 … 1 ms, unsorted
	}
	tests := []struct {
		name string
		ds   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 99, 0},
		{"one value", ms(7), 99, 7 * time.Millisecond},
		{"p99 of 1..100 is 99", hundred, 99, 99 * time.Millisecond},
		{"p50 of 1..100 is 50", hundred, 50, 50 * time.Millisecond},
		{"p100 is the max", hundred, 100, 100 * time.Millisecond},
		{"p99 of ten values is the max", ms(5, 1, 9, 3, 2, 8, 4, 7, 6, 5000), 99, 5000 * time.Millisecond},
		{"p50 of ten values", ms(5, 1, 9, 3, 2, 8, 4, 7, 6, 10), 50, 5 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(slices.Clone(tt.ds), tt.p); got != tt.want {
				t.Errorf("percentile(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func TestBucketCounts(t *testing.T) {
	w := 100 * time.Millisecond
	tests := []struct {
		name  string
		ts    []float64
		total float64
		want  []int
	}{
		{"empty", nil, 0.3, []int{0, 0, 0}},
		{"edges go to the later bucket", []float64{0, 0.099, 0.1, 0.25}, 0.3, []int{2, 1, 1}},
		{"the end falls into the last bucket", []float64{0.3}, 0.3, []int{0, 0, 1}},
		{"out of range dropped", []float64{-0.1, 0.31, 5}, 0.3, []int{0, 0, 0}},
		{"partial last bucket", []float64{0.34}, 0.35, []int{0, 0, 0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ts []time.Duration
			for _, v := range tt.ts {
				ts = append(ts, sec(v))
			}
			if got := bucketCounts(ts, w, sec(tt.total)); !slices.Equal(got, tt.want) {
				t.Errorf("bucketCounts = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTableStats(t *testing.T) {
	ok := func(start, end float64) sample {
		return sample{table: tProducts, outcome: outOK, start: sec(start), end: sec(end)}
	}
	samples := []sample{
		ok(0, 0.01), ok(0.5, 0.52), ok(1.0, 1.1),
		{table: tProducts, outcome: outErr, start: sec(1.2), end: sec(6.2), errKind: "timeout"},
		{table: tProducts, outcome: outErr, start: sec(1.3), end: sec(6.3), errKind: "timeout"},
		{table: tProducts, outcome: outErr, start: sec(1.4), end: sec(1.5), errKind: "57014"},
		{table: tProducts, outcome: outShed, start: sec(2), end: sec(2.05)},
		ok(6.4, 7.0), // 600 ms: the p99
		ok(7.1, 7.11),
	}
	ts := tableStats("products", samples, sec(8))
	if ts.OK != 5 || ts.Errors != 3 || ts.Shed != 1 {
		t.Errorf("ok/err/shed = %d/%d/%d, want 5/3/1", ts.OK, ts.Errors, ts.Shed)
	}
	if ts.ErrorKinds["timeout"] != 2 || ts.ErrorKinds["57014"] != 1 {
		t.Errorf("error kinds = %v", ts.ErrorKinds)
	}
	if want := (Stall{Seconds: 5.9, From: 1.1, To: 7.0}); ts.Stall != want {
		t.Errorf("stall = %+v, want %+v", ts.Stall, want)
	}
	if ts.P99 != 600 {
		t.Errorf("p99 = %v ms, want 600", ts.P99)
	}
	if ts.P50 != 20 {
		t.Errorf("p50 = %v ms, want 20", ts.P50)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want outcome
		kind string
	}{
		{"ok", nil, outOK, ""},
		{"lockguard shed", fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: "55P03", Message: "lockguard: shed a statement that would wait behind a lock on public.users"}), outShed, ""},
		{"postgres lock timeout is an error", &pgconn.PgError{Code: "55P03", Message: "canceling statement due to lock timeout"}, outErr, "55P03"},
		{"other sqlstate", &pgconn.PgError{Code: "57014", Message: "canceling statement due to user request"}, outErr, "57014"},
		{"timeout", fmt.Errorf("acquiring: %w", context.DeadlineExceeded), outErr, "timeout"},
		{"other", errors.New("connection reset"), outErr, "other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, kind := classify(tt.err)
			if got != tt.want || kind != tt.kind {
				t.Errorf("classify = %v %q, want %v %q", got, kind, tt.want, tt.kind)
			}
		})
	}
}

// TestSummarize checks a run's report from hand-made samples and lock
// samples: per-table figures, buckets, waiters carried into unsampled
// buckets, and the DDL's time in the lock queue.
func TestSummarize(t *testing.T) {
	r := &run{e: &env{o: Options{Duration: sec(1)}}, name: "direct"}
	r.ddl = DDLOutcome{StartedAt: 0.2, EndedAt: 0.8, Landed: true}
	r.locks = []lockSample{
		{at: sec(0.05), waiters: 0},
		{at: sec(0.25), waiters: 3, ddlWaiting: true},
		{at: sec(0.35), waiters: 5, ddlWaiting: true},
		// no sample in 0.4–0.5
		{at: sec(0.55), waiters: 2, ddlWaiting: false},
		{at: sec(0.65), waiters: 4, ddlWaiting: true},
		{at: sec(0.75), waiters: 0, ddlWaiting: false},
	}
	samples := []sample{
		{table: tUsers, outcome: outOK, start: sec(0.01), end: sec(0.02)},
		{table: tUsers, outcome: outOK, start: sec(0.1), end: sec(0.85)},
		{table: tOrders, outcome: outShed, start: sec(0.3), end: sec(0.31)},
		{table: tProducts, outcome: outOK, start: sec(0.5), end: sec(0.51)},
	}
	rr := r.summarize("direct to PostgreSQL", samples)
	if got := []string{rr.Tables[0].Table, rr.Tables[1].Table, rr.Tables[2].Table}; !slices.Equal(got, Tables) {
		t.Errorf("tables = %v, want %v", got, Tables)
	}
	if u := rr.Table("users"); u.OK != 2 || u.Stall.Seconds != 0.83 || u.P99 != 750 {
		t.Errorf("users = %+v", u)
	}
	if o := rr.Table("orders"); o.Shed != 1 || o.Stall.Seconds != 1 {
		t.Errorf("orders = %+v", o)
	}
	if got, want := rr.OKPerBucket["users"], []int{1, 0, 0, 0, 0, 0, 0, 0, 1, 0}; !slices.Equal(got, want) {
		t.Errorf("users buckets = %v, want %v", got, want)
	}
	if got, want := rr.Waiters, []int{0, 0, 3, 5, 5, 2, 4, 0, 0, 0}; !slices.Equal(got, want) {
		t.Errorf("waiters = %v, want %v", got, want)
	}
	if rr.MaxLockWaiters != 5 {
		t.Errorf("max waiters = %d, want 5", rr.MaxLockWaiters)
	}
	if rr.DDL.QueueEpisodes != 2 || rr.DDL.InLockQueue != 0.4 {
		t.Errorf("DDL in queue %.2f s in %d episodes, want 0.4 s in 2", rr.DDL.InLockQueue, rr.DDL.QueueEpisodes)
	}
}

func sampleReport() *Report {
	mk := func(name, title string, stall float64, landed bool) RunReport {
		rr := RunReport{Name: name, Title: title, Seconds: 2, BucketMS: 100, MaxLockWaiters: 17,
			ReportTx: Span{From: 0.3, To: 1.1}, DDL: DDLOutcome{StartedAt: 0.4, EndedAt: 1.1, Landed: landed},
			OKPerBucket: map[string][]int{}, Waiters: make([]int, 20)}
		if !landed {
			rr.DDL.Error = "55P03: lockguard: gave up waiting for ACCESS EXCLUSIVE on public.orders"
		}
		for _, tb := range Tables {
			rr.Tables = append(rr.Tables, TableStats{Table: tb, OK: 100, P99: 12.5, Stall: Stall{Seconds: stall, From: 0.4, To: 0.4 + stall}})
			rr.OKPerBucket[tb] = []int{5, 9, 7, 0, 0, 0, 3, 8, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9}
		}
		return rr
	}
	r := &Report{PostgreSQL: "15.4", Workers: 32, Pool: 16, RunSeconds: 2, RequestTimeoutSeconds: 5, DDL: DefaultDDL,
		Timeline: Timeline{ReportOpen: 0.3, ReportClose: 1.1, Deploy: 0.4},
		Runs:     []RunReport{mk("direct", "direct to PostgreSQL", 0.7, true), mk("lockguard", "through lockguard", 0.05, false)}}
	r.finish()
	return r
}

func TestReportRendering(t *testing.T) {
	r := sampleReport()
	if want := "products (never touched by the migration): longest stall 700 ms direct, 50 ms through lockguard"; !strings.Contains(r.Headline, want) {
		t.Errorf("headline %q lacks %q", r.Headline, want)
	}
	if !strings.Contains(r.Headline, "landed at 1.1s direct, failed at 1.1s (55P03) through lockguard") {
		t.Errorf("headline %q lacks the DDL outcomes", r.Headline)
	}
	text := r.Text()
	for _, want := range []string{"direct to PostgreSQL", "through lockguard", "users", "orders", "products",
		"longest stall", "p99 of ok", "lock waiters (max)", "landed at 1.1s", "gave up waiting", "Measured: "} {
		if !strings.Contains(text, want) {
			t.Errorf("text report lacks %q:\n%s", want, text)
		}
	}
	page := r.HTML()
	if n := strings.Count(page, "<svg"); n != 2 {
		t.Errorf("page has %d <svg>, want 2 (one per run)", n)
	}
	for _, bad := range []string{"<script", "http://", "https://"} {
		if strings.Contains(strings.ReplaceAll(page, `xmlns="http://www.w3.org/2000/svg"`, ""), bad) {
			t.Errorf("page is not self-contained: it contains %q", bad)
		}
	}
	if !strings.Contains(page, "<polyline") {
		t.Error("page draws no series")
	}
	js, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Runs) != 2 || back.Run("lockguard").Table("products").Stall.Seconds != 0.05 {
		t.Errorf("JSON round trip lost data: %s", js)
	}
}

func TestNiceStep(t *testing.T) {
	for _, tt := range []struct {
		max  float64
		n    int
		want float64
	}{{150, 5, 50}, {20, 12, 2}, {12, 12, 1}, {17, 4, 5}, {0, 5, 1}, {1, 5, 0.2}} {
		if got := niceStep(tt.max, tt.n); got != tt.want {
			t.Errorf("niceStep(%v, %d) = %v, want %v", tt.max, tt.n, got, tt.want)
		}
	}
}

func TestWithDatabase(t *testing.T) {
	tests := []struct{ dsn, want string }{
		{"postgres://u:p@127.0.0.1:5432/app?sslmode=disable", "postgres://u:p@127.0.0.1:5432/lockguard_demo_x?sslmode=disable"},
		{"postgresql://127.0.0.1/", "postgresql://127.0.0.1/lockguard_demo_x"},
		{"host=127.0.0.1 dbname=app user=u", "host=127.0.0.1 dbname=app user=u dbname=lockguard_demo_x"},
	}
	for _, tt := range tests {
		if got := withDatabase(tt.dsn, "lockguard_demo_x"); got != tt.want {
			t.Errorf("withDatabase(%q) = %q, want %q", tt.dsn, got, tt.want)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	o := Options{Duration: 5 * time.Second, StartProxy: func(context.Context, Upstream) (string, func(), error) { return "", nil, nil }}
	o.setDefaults()
	if err := o.validate(); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Errorf("validate(5s) = %v, want too short", err)
	}
	o.Duration = MinDuration
	if err := o.validate(); err != nil {
		t.Errorf("validate(%v) = %v", MinDuration, err)
	}
}
