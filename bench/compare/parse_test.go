package main

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// pgbench 15's summary for a run with -T, as printed on stdout.
const pgbench15 = `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 10
query mode: prepared
number of clients: 16
number of threads: 2
maximum number of tries: 1
duration: 5 s
number of transactions actually processed: 81234
number of failed transactions: 0 (0.000%)
latency average = 0.985 ms
initial connection time = 12.345 ms
tps = 16245.812345 (without initial connection time)
`

// pgbench 13 printed two tps lines; the second excludes connecting.
const pgbench13 = `transaction type: <builtin: TPC-B (sort of)>
number of transactions actually processed: 5000
latency average = 3.200 ms
tps = 4900.5 (including connections establishing)
tps = 5000.25 (excluding connections establishing)
`

func TestParseSummary(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    summary
		wantErr bool
	}{
		{"pgbench 15", pgbench15, summary{processed: 81234, avg: 985 * time.Microsecond, connTime: 12345 * time.Microsecond, tps: 16245.812345}, false},
		{"pgbench 13", pgbench13, summary{processed: 5000, avg: 3200 * time.Microsecond, tps: 5000.25}, false},
		{"failures", strings.Replace(pgbench15, "failed transactions: 0 (0.000%)", "failed transactions: 7 (0.009%)", 1),
			summary{processed: 81234, failed: 7, avg: 985 * time.Microsecond, connTime: 12345 * time.Microsecond, tps: 16245.812345}, false},
		{"aborted run", "pgbench: error: connection to server failed\n", summary{}, true},
		{"no transaction", "number of transactions actually processed: 0\nnumber of failed transactions: 0 (NaN%)\ninitial connection time = 2500.000 ms\n",
			summary{connTime: 2500 * time.Millisecond}, false},
		{"garbled number", strings.Replace(pgbench15, "= 0.985 ms", "= x ms", 1), summary{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSummary(tt.out)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseSummary error = %v, want error %t", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("parseSummary = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestTxLog(t *testing.T) {
	// client_id transaction_no time script_no time_epoch time_us
	lines := `0 0 412 0 1767000000 123456
1 0 1500 0 1767000000 123999
0 1 failed 0 1767000000 124000
0 2 388 0 1767000001 500
`
	var l txLog
	if err := l.read(strings.NewReader(lines)); err != nil {
		t.Fatal(err)
	}
	if len(l.lat) != 3 {
		t.Fatalf("got %d latencies, want 3 (the failed one left out)", len(l.lat))
	}
	if want := time.Unix(1767000000, 122499*1000); !l.started["1"].Equal(want) {
		t.Errorf("client 1 started at %v, want %v (end of its transaction less its 1500 µs)", l.started["1"], want)
	}
	if want := time.Unix(1767000001, 500*1000); !l.ended["0"].Equal(want) {
		t.Errorf("client 0 ended at %v, want %v", l.ended["0"], want)
	}
	if want := time.Unix(1767000000, 123999*1000); !l.allOut.Equal(want) {
		t.Errorf("allOut = %v, want %v (client 1 stopped first: its only transaction ended at 123999 µs)", l.allOut, want)
	}
	// The steady window ends when the first client stops: client 0's last
	// transaction, after client 1 had stopped, is left out.
	if s := l.steady(l.started["1"], l.allOut); s.tx != 2 {
		t.Errorf("steady from the first start to allOut: %d transactions, want 2", s.tx)
	}
	if want := time.Unix(1767000000, 123044*1000); !l.allIn.Equal(want) {
		t.Errorf("allIn = %v, want %v (client 0 started last: its first transaction ended at 123456 µs after 412)", l.allIn, want)
	}
	if got := percentile(l.lat, 0.99); got != 1500*time.Microsecond {
		t.Errorf("p99 = %v, want 1.5ms", got)
	}
	if got := percentile(l.lat, 0.5); got != 412*time.Microsecond {
		t.Errorf("p50 = %v, want 412µs", got)
	}
	if err := new(txLog).read(strings.NewReader("0 0 12\n")); err == nil {
		t.Error("short line: want an error")
	}
}

// TestSteadyLate checks the ratio of the steady window's halves: a run whose
// second half ends twice as many transactions as its first reads 2.
func TestSteadyLate(t *testing.T) {
	var lines strings.Builder
	// From second 10 to 12 of the epoch below: one transaction every 100 ms
	// in the first second, one every 50 ms in the next.
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&lines, "0 %d 100 0 1767000010 %d\n", i, i*100000-1)
	}
	for i := 1; i <= 20; i++ {
		fmt.Fprintf(&lines, "0 %d 100 0 %d %d\n", 10+i, 1767000011+(i*50000)/1000000, (i*50000)%1000000)
	}
	var l txLog
	if err := l.read(strings.NewReader(lines.String())); err != nil {
		t.Fatal(err)
	}
	s := l.steady(time.Unix(1767000010, 0), l.allOut)
	if s.tx != 30 || math.Abs(s.late-2) > 1e-9 {
		t.Errorf("tx %d, late %v; want 30 and 2", s.tx, s.late)
	}
	// From second 11 on the rate is even: 10 and 10.
	if s := l.steady(time.Unix(1767000011, 0), l.allOut); s.tx != 20 || math.Abs(s.late-1) > 1e-9 {
		t.Errorf("from second 11: tx %d, late %v; want 20 and 1", s.tx, s.late)
	}
	// A window with no transaction in its first half has no ratio.
	if s := l.steady(time.Unix(1767000011, 960000*1000), l.allOut); s.late != 0 {
		t.Errorf("from 11.96 s: late %v, want 0", s.late)
	}
}

func TestCPUAt(t *testing.T) {
	t0 := time.Unix(1000, 0)
	samples := []cpuPoint{{t0, 0}, {t0.Add(100 * time.Millisecond), 40 * time.Millisecond}, {t0.Add(200 * time.Millisecond), 60 * time.Millisecond}}
	tests := []struct {
		at   time.Duration
		want time.Duration
	}{
		{-time.Second, 0},
		{50 * time.Millisecond, 20 * time.Millisecond},
		{150 * time.Millisecond, 50 * time.Millisecond},
		{time.Second, 60 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := cpuAt(samples, t0.Add(tt.at)); got != tt.want {
			t.Errorf("cpuAt(%v) = %v, want %v", tt.at, got, tt.want)
		}
	}
}

func TestParseGoBench(t *testing.T) {
	out := "goos: linux\nBenchmarkRelaySmall-2   \t 1000000\t      95.30 ns/op\t       0 B/op\t       0 allocs/op\nPASS\n"
	got := parseGoBench(out)
	if len(got) != 1 || got[0].name != "BenchmarkRelaySmall-2" || got[0].nsPerOp != 95.3 || !got[0].hasAllocs || got[0].allocs != 0 {
		t.Fatalf("parseGoBench = %+v", got)
	}
}

// TestWriteWarming checks that the report names the cells a target was still
// speeding up in, and only those.
func TestWriteWarming(t *testing.T) {
	o := &options{rounds: 1, workloads: []string{"tpcb-like"}, modes: []string{"simple"}, clients: []int{16, 64}}
	res := newResults(o)
	for _, c := range res.cells {
		for _, name := range targetNames {
			l := 1.02
			if c.clients == 64 && name == direct {
				l = 1.4
			}
			res.add(c, name, 0, runResult{steady: steady{tps: 100, tx: 500, late: l}})
		}
	}
	rep := &report{opts: o, results: res}
	var out strings.Builder
	w := func(f string, a ...any) { fmt.Fprintf(&out, f, a...) }
	rep.writeWarming(w)
	got := out.String()
	if !strings.Contains(got, "- tpcb-like -M simple -c 64: direct 1.40, lockguard 1.02, pgbouncer 1.02") {
		t.Errorf("the 64-client cell is not named as warming up:\n%s", got)
	}
	if strings.Contains(got, "-c 16") {
		t.Errorf("the steady 16-client cell is named:\n%s", got)
	}

	for _, name := range targetNames {
		res.runs[res.cells[1]][name][0].steady.late = 1.0
	}
	out.Reset()
	rep.writeWarming(w)
	if !strings.HasPrefix(out.String(), "Every cell ran steady") {
		t.Errorf("all steady, got:\n%s", out.String())
	}
}

// TestWriteRatiosRoundsAhead checks the count of rounds in which lockguard's
// tps was at least PgBouncer's, over the rounds both succeeded in.
func TestWriteRatiosRoundsAhead(t *testing.T) {
	o := &options{rounds: 5, workloads: []string{"select-only"}, modes: []string{"simple"}, clients: []int{16}}
	res := newResults(o)
	c := res.cells[0]
	lg := []float64{90, 100, 110, 120, 130}
	for round := range o.rounds {
		res.add(c, direct, round, runResult{steady: steady{tps: 200, tx: 500}})
		res.add(c, pgbouncer, round, runResult{steady: steady{tps: 100, tx: 500}})
		res.add(c, lockguard, round, runResult{steady: steady{tps: lg[round], tx: 500}})
	}
	// A failed round counts for neither side.
	res.runs[c][pgbouncer][4].err = fmt.Errorf("pgbench failed")
	rep := &report{opts: o, results: res}
	var out strings.Builder
	rep.writeRatios(func(f string, a ...any) { fmt.Fprintf(&out, f, a...) })
	got := out.String()
	if !strings.Contains(got, "| select-only | simple | 16 | 0.55 (0.45–0.65) | 0.50 (0.50–0.50) | 1.05 (0.90–1.20) | PASS | 3 of 4 |") {
		t.Errorf("the row does not give 3 of 4 rounds ahead:\n%s", got)
	}
}
