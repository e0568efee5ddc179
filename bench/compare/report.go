package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// results holds every run, by cell, target and round.
type results struct {
	cells  []cell
	rounds int
	runs   map[cell]map[string][]*runResult // nil entry: not run (interrupted)
}

func newResults(o *options) *results {
	r := &results{rounds: o.rounds, runs: map[cell]map[string][]*runResult{}}
	for _, w := range o.workloads {
		for _, m := range o.modes {
			for _, c := range o.clients {
				k := cell{workload: w, mode: m, clients: c}
				r.cells = append(r.cells, k)
				r.runs[k] = map[string][]*runResult{}
				for _, t := range targetNames {
					r.runs[k][t] = make([]*runResult, o.rounds)
				}
			}
		}
	}
	return r
}

func (r *results) add(c cell, target string, round int, rr runResult) {
	r.runs[c][target][round] = &rr
}

// good returns the run of target in round if it succeeded.
func (r *results) good(c cell, target string, round int) *runResult {
	rr := r.runs[c][target][round]
	if rr == nil || rr.err != nil {
		return nil
	}
	return rr
}

// spread is the median and range of some figure over the rounds.
type spread struct {
	med, lo, hi float64
	n           int // rounds that contributed
}

func newSpread(v []float64) spread {
	if len(v) == 0 {
		return spread{med: math.NaN(), lo: math.NaN(), hi: math.NaN()}
	}
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return spread{med: med, lo: v[0], hi: v[len(v)-1], n: len(v)}
}

// of returns the spread of f over target's successful runs.
func (r *results) of(c cell, target string, f func(*runResult) float64) spread {
	var v []float64
	for round := range r.rounds {
		if rr := r.good(c, target, round); rr != nil {
			v = append(v, f(rr))
		}
	}
	return newSpread(v)
}

// ratio returns the spread of f(a)/f(b) over the rounds in which both
// succeeded: each ratio compares runs made seconds apart.
func (r *results) ratio(c cell, a, b string, f func(*runResult) float64) spread {
	return r.perRound(c, a, b, func(x, y float64) float64 { return x / y }, f)
}

// diff is like ratio for f(a)-f(b).
func (r *results) diff(c cell, a, b string, f func(*runResult) float64) spread {
	return r.perRound(c, a, b, func(x, y float64) float64 { return x - y }, f)
}

func (r *results) perRound(c cell, a, b string, op func(x, y float64) float64, f func(*runResult) float64) spread {
	return newSpread(r.paired(c, a, b, op, f))
}

// paired returns op(f(a), f(b)) for each round in which both succeeded.
func (r *results) paired(c cell, a, b string, op func(x, y float64) float64, f func(*runResult) float64) []float64 {
	var v []float64
	for round := range r.rounds {
		ra, rb := r.good(c, a, round), r.good(c, b, round)
		if ra != nil && rb != nil {
			v = append(v, op(f(ra), f(rb)))
		}
	}
	return v
}

// ahead counts the rounds in which f(a) ≥ f(b), of the n in which both
// succeeded.
func (r *results) ahead(c cell, a, b string, f func(*runResult) float64) (k, n int) {
	v := r.paired(c, a, b, func(x, y float64) float64 {
		if x >= y {
			return 1
		}
		return 0
	}, f)
	for _, x := range v {
		k += int(x)
	}
	return k, len(v)
}

func tps(r *runResult) float64        { return r.steady.tps }
func avgUs(r *runResult) float64      { return float64(r.steady.avg) / float64(time.Microsecond) }
func p99Us(r *runResult) float64      { return float64(r.steady.p99) / float64(time.Microsecond) }
func cpuUsPerTx(r *runResult) float64 { return float64(r.cpuPerTx()) / float64(time.Microsecond) }
func otherCores(r *runResult) float64 { return r.other }
func windowS(r *runResult) float64    { return r.steady.window.Seconds() }
func connUs(r *runResult) float64     { return float64(r.pgbench.connTime) / float64(time.Microsecond) }
func late(r *runResult) float64       { return r.steady.late }

func (r *runResult) oneLine() string {
	if r.err != nil {
		return "ERROR: " + r.err.Error()
	}
	s := fmt.Sprintf("%8.0f tps  avg %s  p99 %s  over %.1fs (2nd/1st half %.2f)", tps(r), ms(avgUs(r)), ms(p99Us(r)), r.steady.window.Seconds(), late(r))
	if r.cpu > 0 {
		s += fmt.Sprintf("  cpu %.1f µs/tx", cpuUsPerTx(r))
	}
	return s + fmt.Sprintf("  others %.2f cores", r.other)
}

// report is everything RESULTS.md shows.
type report struct {
	opts              *options
	command           string
	started, finished time.Time
	lockguard         string // binary
	pgbouncer         string // binary
	machine           machine
	guard             string
	background        float64
	memory            []memResult
	results           *results
	goBench           goBenchResult
	lockguardLog      string
	pgbouncerLog      string
}

// othersDuring summarises the CPU that processes outside the benchmark used
// during the runs.
func (rep *report) othersDuring() string {
	var v []float64
	for _, c := range rep.results.cells {
		for _, t := range targetNames {
			for _, rr := range rep.results.runs[c][t] {
				if rr != nil {
					v = append(v, rr.other)
				}
			}
		}
	}
	if len(v) == 0 {
		return "—"
	}
	s := newSpread(v)
	busy := 0
	for _, x := range v {
		if x > 0.25 {
			busy++
		}
	}
	return fmt.Sprintf("%.2f cores in the median run, %.2f at most; %d of %d runs shared the machine with more than a quarter of a core of other work", s.med, s.hi, busy, len(v))
}

// partialVerdict is FAIL if a judged cell failed, PASS if all passed and all
// were judged, and says so when the run left cells out.
func partialVerdict(allPassed, complete bool) string {
	switch {
	case !allPassed:
		return verdict(false)
	case !complete:
		return "PASS in the cells run (not all were)"
	default:
		return verdict(true)
	}
}

// verdict is PASS, FAIL or a reason why a target was not judged.
func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "**FAIL**"
}

func (rep *report) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := rep.machine

	w("# lockguard vs PgBouncer vs direct PostgreSQL\n\n")
	w("Written by `bench/compare` on %s; the run took %s. Only ratios within this run mean anything: absolute figures move with the load of the machine.\n\n",
		rep.started.UTC().Format("2006-01-02 15:04 MST"), rep.finished.Sub(rep.started).Round(time.Second))
	w("```\n%s\n```\n\n", rep.command)

	w("## Machine\n\n| | |\n|---|---|\n")
	w("| CPU | %s, %d cores (nproc) |\n", m.cpu, m.cores)
	w("| memory | %s |\n", m.memory)
	w("| kernel | Linux %s |\n", m.kernel)
	w("| PostgreSQL | %s |\n", m.postgres)
	w("| PgBouncer | %s |\n", m.pgbouncer)
	w("| pgbench | %s |\n", m.pgbench)
	w("| Go | %s |\n", m.goVersion)
	if rep.opts.lockguard != "" {
		w("| lockguard | the binary %s given with -lockguard (%s); the checkout is at commit %s |\n",
			rep.lockguard, firstLine(output(context.Background(), rep.lockguard, "version")), m.commit)
	} else {
		w("| lockguard | built by this run from the checkout at commit %s |\n", m.commit)
	}
	w("| lockguard's guard | %s |\n", rep.guard)
	w("| other load | load average %s at the start; %.0f%% of all cores busy with other work in the 3 s before the runs; during the runs other work used %s |\n\n",
		m.loadBefore, rep.background*100, rep.othersDuring())

	rep.writeSetup(w)
	rep.writeTargets(w)
	rep.writeRatios(w)
	rep.writeLatency(w)
	rep.writeMemory(w)
	rep.writeDetail(w)
	rep.writeGoBench(w)
	rep.writeProblems(w)
	return b.String()
}

func (rep *report) writeSetup(w func(string, ...any)) {
	o := rep.opts
	w("## How it ran\n\n")
	w("- One throwaway PostgreSQL (`internal/pgserver`: fsync, synchronous_commit and full_page_writes off) with max_connections=%s, shared_buffers=%s, max_wal_size=%s; `pgbench -i -s %d`.\n",
		pgSettings(o)["max_connections"], pgSettings(o)["shared_buffers"], pgSettings(o)["max_wal_size"], o.scale)
	w("- lockguard built from the checkout: `lockguard serve --listen 127.0.0.1:PORT --upstream 127.0.0.1:PGPORT --upstream-sslmode disable --admin \"\" --log-level warn --drain-timeout 2s` (default policy).\n")
	w("- PgBouncer in session mode as the postgres OS user: auth_type=trust, default_pool_size=100, max_client_conn=2000, connection logging off.\n")
	if rep.opts.warmPgBouncer {
		w("- PgBouncer kept its server connections from run to run (-pgbouncer-warm): it alone ran on warm backends.\n")
	} else {
		w("- Every target starts each run on fresh PostgreSQL backends: pgbench opens new ones directly and through lockguard, and before each run PgBouncer's server connections are closed (admin console KILL/RESUME) and exactly CLIENTS fresh ones opened. Otherwise PgBouncer alone would run on backends warmed by earlier runs.\n")
	}
	w("- Every target is reached over TCP on 127.0.0.1, and both proxies reach PostgreSQL over TCP on 127.0.0.1.\n")
	w("- Each run: `pgbench -n -b WORKLOAD -M MODE -c CLIENTS -j min(CLIENTS, %d) -T %d --log`, persistent connections. -j is one thread per client up to the number of cores, so pgbench is never single-threaded at 16 and 64 clients and loads every target alike. Before each run the sessions of the previous one have ended; before each tpcb-like run, what pgbench would do without -n (VACUUM pgbench_branches and pgbench_tellers, TRUNCATE pgbench_history) plus a CHECKPOINT is done over a direct connection, so the proxies' CPU counts only the run.\n",
		rep.machine.cores, int(o.duration/time.Second))
	w("- %d round(s); in each round every cell runs once against each target, one after another, in an order that rotates from cell to cell and round to round. Figures are medians over the rounds with the range (min–max); ratios are medians of per-round ratios, each between runs made seconds apart.\n", o.rounds)
	w("- tps, average and p99 latency come from pgbench's per-transaction log, over each run's steady window: from %s after every client had started its first transaction to the end of the first client's last transaction (after -T the clients stop one by one, those waiting on a lock last, and the run drains). Fresh backends are slow on their first transactions, and pgbench spends a varying part of -T connecting its clients (seconds for 64 fresh backends, milliseconds through PgBouncer's pre-opened server connections); until the last one runs, the run is not yet the cell it is named for. A run with less than 0.5 s of steady window counts as failed.\n", rep.opts.warmup)
	w("- CPU per transaction: user+system time of the proxy process (/proc/PID/stat, %d ticks/s, sampled every 50 ms) over the same steady window, divided by the transactions that ended in it.\n", clockTicks)
	if o.idleConns > 0 {
		w("- Memory: with no client connected, read the proxy's VmRSS; open %d connections through it (pgx, authenticate only, then idle); after 1 s read VmRSS again. Done on freshly started proxies, before any pgbench run.\n", o.idleConns)
	}
	w("\n")
}

// throughputCells are the cells the throughput target applies to.
func (rep *report) throughputCells() []cell {
	var out []cell
	for _, c := range rep.results.cells {
		if c.clients >= 16 {
			out = append(out, c)
		}
	}
	return out
}

func (rep *report) oneClientCells() []cell {
	var out []cell
	for _, c := range rep.results.cells {
		if c.clients == 1 {
			out = append(out, c)
		}
	}
	return out
}

func (rep *report) writeTargets(w func(string, ...any)) {
	res := rep.results
	w("## Targets (issue 7)\n\n| target | measured | result |\n|---|---|---|\n")

	// Throughput at 16 and 64 clients.
	cells := rep.throughputCells()
	pass, judged := 0, 0
	worst, worstCell := math.Inf(1), cell{}
	for _, c := range cells {
		s := res.ratio(c, lockguard, pgbouncer, tps)
		if s.n == 0 {
			continue
		}
		judged++
		if s.med >= 1.0 {
			pass++
		}
		if s.med < worst {
			worst, worstCell = s.med, c
		}
	}
	if judged == 0 {
		w("| 16 and 64 clients: lockguard tps ≥ PgBouncer's (median ratio ≥ 1.0) in every mode and workload | no cell measured | not measured |\n")
	} else {
		note := ""
		if judged < len(cells) {
			note = fmt.Sprintf("; %d cells without a successful pair of runs", len(cells)-judged)
		}
		if !rep.fullGrid() {
			note += "; not every mode and client count was run"
		}
		w("| 16 and 64 clients: lockguard tps ≥ PgBouncer's (median ratio ≥ 1.0) in every mode and workload | %d of %d cells pass; lowest %.2f (%s)%s | %s |\n",
			pass, judged, worst, worstCell, note, partialVerdict(pass == judged, judged == len(cells) && rep.fullGrid()))
	}

	// Added latency at 1 client.
	cells = rep.oneClientCells()
	pass, judged = 0, 0
	var parts []string
	for _, c := range cells {
		lg := res.diff(c, lockguard, direct, avgUs)
		pb := res.diff(c, pgbouncer, direct, avgUs)
		if lg.n == 0 || pb.n == 0 {
			continue
		}
		judged++
		if lg.med <= pb.med {
			pass++
		}
		parts = append(parts, fmt.Sprintf("%s %s: +%.0f vs +%.0f µs", c.workload, c.mode, lg.med, pb.med))
	}
	if judged == 0 {
		w("| 1 client: added latency over direct ≤ PgBouncer's | no cell measured | not measured |\n")
	} else {
		w("| 1 client: added average latency over direct ≤ PgBouncer's | %d of %d cells pass (lockguard vs PgBouncer: %s) | %s |\n",
			pass, judged, strings.Join(parts, "; "), partialVerdict(pass == judged, judged == len(cells) && len(rep.opts.modes) == 3 && len(rep.opts.workloads) == 2))
	}

	// Go-level targets.
	g := &rep.goBench
	switch {
	case !rep.opts.goBench:
		w("| 0 allocations per relayed message | not run (-gobench=false) | not measured |\n")
		w("| cached analysis ≤ 100 ns | not run (-gobench=false) | not measured |\n")
	case !g.ran:
		why := g.note
		if g.err != "" {
			why = "go test failed (see below)"
		}
		w("| 0 allocations per relayed message | %s | not measured |\n", why)
		w("| cached analysis ≤ 100 ns | %s | not measured |\n", why)
	default:
		relay := g.matching(relayBench)
		if len(relay) == 0 {
			w("| 0 allocations per relayed message | no benchmark named Relay/Forward in ./bench | not measured |\n")
		} else {
			ok := true
			var names []string
			for _, bm := range relay {
				ok = ok && bm.hasAllocs && bm.allocs == 0
				names = append(names, fmt.Sprintf("%s %.0f allocs/op", bm.name, bm.allocs))
			}
			w("| 0 allocations per relayed message | %s | %s |\n", strings.Join(names, ", "), verdict(ok))
		}
		cached := g.matching(cachedBench)
		if len(cached) == 0 {
			w("| cached analysis ≤ 100 ns | no benchmark named Cached/CacheHit in ./bench | not measured |\n")
		} else {
			ok := true
			var names []string
			for _, bm := range cached {
				ok = ok && bm.nsPerOp <= 100
				names = append(names, fmt.Sprintf("%s %.1f ns/op", bm.name, bm.nsPerOp))
			}
			w("| cached analysis ≤ 100 ns | %s | %s |\n", strings.Join(names, ", "), verdict(ok))
		}
	}

	// Memory.
	var lg *memResult
	for i := range rep.memory {
		if rep.memory[i].proxy == lockguard {
			lg = &rep.memory[i]
		}
	}
	if lg == nil || lg.opened == 0 {
		w("| ≤ 32 KiB resident memory per idle client connection | not measured | not measured |\n")
	} else {
		note := ""
		if lg.opened < 1000 {
			note = fmt.Sprintf(" (only %d connections, not 1,000)", lg.opened)
		}
		w("| ≤ 32 KiB resident memory per idle client connection | %.1f KiB with %d idle connections%s | %s |\n",
			lg.perConn(), lg.opened, note, verdict(lg.perConn() <= 32))
	}
	w("\n")
}

// fullGrid reports whether the run covered every mode at 16 and 64 clients.
func (rep *report) fullGrid() bool {
	o := rep.opts
	return len(o.modes) == 3 && slices.Contains(o.clients, 16) && slices.Contains(o.clients, 64) &&
		slices.Contains(o.workloads, "select-only") && slices.Contains(o.workloads, "tpcb-like")
}

func (rep *report) writeRatios(w func(string, ...any)) {
	res := rep.results
	w("## Throughput ratios and proxy CPU per transaction\n\n")
	w("Median of the per-round ratios of tps, with their range. Rounds ahead: in how many rounds lockguard's tps was at least PgBouncer's; were the two equal, each round would be a coin toss, and a median either side of 1.0 with about half the rounds ahead would say the same. The CPU figures are the median over the rounds of the proxy's CPU time per transaction.\n\n")
	w("| workload | mode | clients | lockguard / direct | PgBouncer / direct | lockguard / PgBouncer | ≥ PgBouncer | rounds ahead | lockguard CPU/tx | PgBouncer CPU/tx |\n")
	w("|---|---|--:|--:|--:|--:|:-:|--:|--:|--:|\n")
	for _, c := range res.cells {
		lgPb := res.ratio(c, lockguard, pgbouncer, tps)
		ok := "—"
		if c.clients >= 16 && lgPb.n > 0 {
			ok = verdict(lgPb.med >= 1.0)
		}
		rounds := "—"
		if k, n := res.ahead(c, lockguard, pgbouncer, tps); n > 0 {
			rounds = fmt.Sprintf("%d of %d", k, n)
		}
		w("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", c.workload, c.mode, c.clients,
			fmtRatio(res.ratio(c, lockguard, direct, tps)),
			fmtRatio(res.ratio(c, pgbouncer, direct, tps)),
			fmtRatio(lgPb), ok, rounds,
			us(res.of(c, lockguard, cpuUsPerTx).med),
			us(res.of(c, pgbouncer, cpuUsPerTx).med))
	}
	w("\n")
	rep.writeWarming(w)
}

// warmingUp is how much faster the second half of the steady window must
// run than the first, for some target (median over the rounds), before the
// report calls a cell still warming up.
const warmingUp = 1.15

// writeWarming names the cells whose runs were still speeding up at their
// end: their ratios compare targets in the middle of a warm-up, where a
// longer -T (and -warmup) would measure them steady.
func (rep *report) writeWarming(w func(string, ...any)) {
	res := rep.results
	var lines []string
	for _, c := range res.cells {
		var parts []string
		warm := false
		for _, t := range targetNames {
			l := res.of(c, t, late)
			if l.n == 0 {
				continue
			}
			parts = append(parts, fmt.Sprintf("%s %.2f", t, l.med))
			warm = warm || l.med >= warmingUp
		}
		if warm {
			lines = append(lines, fmt.Sprintf("- %s -M %s -c %d: %s", c.workload, c.mode, c.clients, strings.Join(parts, ", ")))
		}
	}
	if len(lines) == 0 {
		w("Every cell ran steady: no target's second half of the steady window was %.0f%% faster than its first (median over the rounds).\n\n", (warmingUp-1)*100)
		return
	}
	w("Still warming up: in these cells the second half of some target's steady window ran at least %.0f%% faster than its first (tps of the second half over the first, median over the rounds). Their ratios compare targets part-way through a warm-up; a longer `-T` with a longer `-warmup` measures them steady (bench/compare/README.md).\n\n", (warmingUp-1)*100)
	for _, l := range lines {
		w("%s\n", l)
	}
	w("\n")
}

func (rep *report) writeLatency(w func(string, ...any)) {
	res := rep.results
	cells := rep.oneClientCells()
	if len(cells) == 0 {
		return
	}
	w("## Latency at 1 client\n\n")
	w("Added latency is the median over the rounds of (proxy − direct) in the same round.\n\n")
	w("| workload | mode | direct avg | lockguard added avg | PgBouncer added avg | direct p99 | lockguard added p99 | PgBouncer added p99 | lockguard ≤ PgBouncer |\n")
	w("|---|---|--:|--:|--:|--:|--:|--:|:-:|\n")
	for _, c := range cells {
		lg := res.diff(c, lockguard, direct, avgUs)
		pb := res.diff(c, pgbouncer, direct, avgUs)
		ok := "—"
		if lg.n > 0 && pb.n > 0 {
			ok = verdict(lg.med <= pb.med)
		}
		w("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", c.workload, c.mode,
			us0(res.of(c, direct, avgUs).med), plusUs(lg.med), plusUs(pb.med),
			us0(res.of(c, direct, p99Us).med),
			plusUs(res.diff(c, lockguard, direct, p99Us).med),
			plusUs(res.diff(c, pgbouncer, direct, p99Us).med), ok)
	}
	w("\n")
}

func (rep *report) writeMemory(w func(string, ...any)) {
	if len(rep.memory) == 0 {
		return
	}
	w("## Memory per idle client connection\n\n")
	w("| proxy | idle connections open | VmRSS before | VmRSS after | per connection | PostgreSQL sessions it opened for them | time to open them |\n")
	w("|---|--:|--:|--:|--:|--:|--:|\n")
	for _, m := range rep.memory {
		w("| %s | %d of %d | %d KiB | %d KiB | %.1f KiB | %d | %s |\n", m.proxy, m.opened, m.want,
			m.before, m.after, m.perConn(), m.upstream, m.openTime.Round(time.Millisecond))
	}
	w("\nlockguard relays authentication end to end, so in session mode it opens one PostgreSQL session per client at connect time; PgBouncer authenticates clients itself and assigns a server connection only at a client's first query, so idle clients cost it no PostgreSQL session. The figures compare what each proxy keeps per idle client, not the kernel's socket buffers.\n")
	for _, m := range rep.memory {
		if m.firstFail != nil {
			w("\n%s: %d connections could not be opened; the first error: `%v`\n", m.proxy, m.want-m.opened, m.firstFail)
		}
	}
	w("\n")
}

func (rep *report) writeDetail(w func(string, ...any)) {
	res := rep.results
	w("## Per-target figures\n\n")
	w("Median over the rounds; tps with its range. CPU/tx is the proxy's CPU time per transaction. Connecting is pgbench's \"initial connection time\"; the steady window is the part of the run the figures come from, and 2nd/1st half the tps of its second half over that of its first (above 1: the run was still speeding up). Others' load is the most CPU that processes outside this benchmark used during one of the runs, in cores (all cores' busy time less that of our PostgreSQL, pgbench and the proxy).\n\n")
	for i, c := range res.cells {
		if i == 0 || res.cells[i-1].workload != c.workload || res.cells[i-1].mode != c.mode {
			w("### %s, -M %s\n\n", c.workload, c.mode)
			w("| clients | target | tps | tps range | avg latency | p99 latency | CPU/tx | connecting | steady window | 2nd/1st half | others' load | good runs |\n")
			w("|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		}
		for _, t := range targetNames {
			s := res.of(c, t, tps)
			cpu := "—"
			if t != direct {
				cpu = us(res.of(c, t, cpuUsPerTx).med)
			}
			w("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d of %d |\n", c.clients, t,
				num(s.med), fmt.Sprintf("%s–%s", num(s.lo), num(s.hi)),
				ms(res.of(c, t, avgUs).med), ms(res.of(c, t, p99Us).med), cpu,
				ms(res.of(c, t, connUs).med), secs(res.of(c, t, windowS).med), orDash("%.2f", res.of(c, t, late).med),
				cores(res.of(c, t, otherCores).hi), s.n, res.rounds)
		}
		if i+1 == len(res.cells) || res.cells[i+1].workload != c.workload || res.cells[i+1].mode != c.mode {
			w("\n")
		}
	}
}

func (rep *report) writeGoBench(w func(string, ...any)) {
	g := &rep.goBench
	if !rep.opts.goBench {
		return
	}
	w("## Go benchmarks (`go test -run '^$' -bench . -benchmem ./bench/`)\n\n")
	switch {
	case g.err != "":
		w("go test failed:\n\n```\n%s\n```\n\n", g.err)
	case !g.ran:
		w("%s.\n\n", g.note)
	default:
		w("```\n")
		for _, bm := range g.results {
			w("%s\n", bm.line)
		}
		w("```\n\n")
	}
}

func (rep *report) writeProblems(w func(string, ...any)) {
	res := rep.results
	w("## Errors and warnings\n\n")
	failed := false
	for _, c := range res.cells {
		for _, t := range targetNames {
			for round, rr := range res.runs[c][t] {
				if rr == nil || rr.err == nil {
					continue
				}
				failed = true
				w("- round %d, %s, %s: %v\n", round+1, c, t, rr.err)
				if rr.stderr != "" {
					w("\n  ```\n  %s\n  ```\n", strings.ReplaceAll(rr.stderr, "\n", "\n  "))
				}
			}
		}
	}
	if !failed {
		w("- No pgbench run failed.\n")
	}
	if s := strings.TrimSpace(rep.lockguardLog); s != "" {
		w("- lockguard logged (level warn and above; last lines):\n\n  ```\n  %s\n  ```\n", strings.ReplaceAll(s, "\n", "\n  "))
	} else {
		w("- lockguard logged nothing at level warn or above.\n")
	}
	var pb []string
	for _, line := range strings.Split(rep.pgbouncerLog, "\n") {
		if strings.Contains(line, "WARNING") || strings.Contains(line, "ERROR") || strings.Contains(line, "FATAL") {
			pb = append(pb, line)
		}
	}
	if len(pb) > 0 {
		w("- PgBouncer logged warnings or errors (last lines):\n\n  ```\n  %s\n  ```\n", strings.Join(pb, "\n  "))
	}
	w("\n")
}

func fmtRatio(s spread) string {
	if s.n == 0 {
		return "—"
	}
	if s.n == 1 {
		return fmt.Sprintf("%.2f", s.med)
	}
	return fmt.Sprintf("%.2f (%.2f–%.2f)", s.med, s.lo, s.hi)
}

// orDash formats v, or gives "—" when it is NaN (nothing was measured).
func orDash(format string, v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	return fmt.Sprintf(format, v)
}

func secs(v float64) string   { return orDash("%.1f s", v) }
func cores(v float64) string  { return orDash("%.2f cores", v) }
func num(v float64) string    { return orDash("%.0f", v) }
func us(v float64) string     { return orDash("%.1f µs", v) }
func us0(v float64) string    { return orDash("%.0f µs", v) }
func plusUs(v float64) string { return orDash("%+.0f µs", v) }

func ms(microseconds float64) string { return orDash("%.3f ms", microseconds/1000) }
