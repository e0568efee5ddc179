package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lockguard/lockguard/internal/pgserver"
)

// cell is one combination of workload, protocol mode and client count.
type cell struct {
	workload string // pgbench builtin script: "select-only" or "tpcb-like"
	mode     string // pgbench -M: "simple", "extended" or "prepared"
	clients  int
}

func (c cell) String() string {
	return fmt.Sprintf("%s -M %s -c %d", c.workload, c.mode, c.clients)
}

// threads is pgbench's -j: one thread per client up to the number of cores,
// so that pgbench itself is never the single-threaded bottleneck at 16 and
// 64 clients, and the same for every target.
func (c cell) threads(cores int) int {
	return max(1, min(c.clients, cores))
}

// runResult is one pgbench run against one target.
type runResult struct {
	pgbench summary       // as pgbench printed it
	steady  steady        // the same figures from the per-transaction log, warm-up left out
	cpu     time.Duration // CPU time of the proxy in the steady window; 0 for direct
	cpuAll  time.Duration // CPU time of the proxy over the whole invocation, connecting included
	other   float64       // cores busy with work of others during the run (see cpuMeter)
	elapsed time.Duration // wall time of the whole pgbench invocation
	err     error         // pgbench failed or reported failed transactions
	stderr  string        // pgbench's stderr, kept when err is set
}

// steady is a run measured from its per-transaction log over the steady
// window: from warm-up after every client had started its first transaction
// to the end of the first client's last one, while every client runs. Every
// fresh backend is slow on its first transactions (catalog caches, page
// faults on shared memory), and pgbench spends a varying part of -T
// connecting its clients, so the first part of a run says little about the
// relay; after -T the clients stop one by one, and the run drains.
type steady struct {
	window time.Duration // length of the steady window
	tx     int           // transactions that ended in it
	tps    float64
	avg    time.Duration // mean latency of those transactions
	p99    time.Duration // their 99th percentile latency
	// late is the tps of the window's second half over that of its first:
	// about 1 when the run was steady, above when it was still warming up.
	// 0 when a half has no transaction.
	late float64
}

// cpuPerTx returns the proxy's CPU time per transaction in the steady window.
func (r *runResult) cpuPerTx() time.Duration {
	if r.steady.tx == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.steady.tx)
}

// summary is what pgbench prints at the end of a run.
type summary struct {
	processed int64         // "number of transactions actually processed"
	failed    int64         // "number of failed transactions" (PostgreSQL 15+)
	avg       time.Duration // "latency average"
	connTime  time.Duration // "initial connection time"
	tps       float64       // "tps = … (without initial connection time)"
}

// runPgbench runs one cell against t for d, with per-transaction logs in
// logDir (emptied afterwards), and reads the proxy's CPU time around it.
func runPgbench(ctx context.Context, t *target, c cell, d, warmup time.Duration, cores int, logDir string, meter cpuMeter) runResult {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return runResult{err: err}
	}
	defer clearDir(logDir)
	args := []string{
		"-n", // no vacuum through the target: prepareRun does it directly
		"-b", c.workload,
		"-M", c.mode,
		"-c", strconv.Itoa(c.clients),
		"-j", strconv.Itoa(c.threads(cores)),
		"-T", strconv.Itoa(int(d / time.Second)),
		"--log", "--log-prefix", filepath.Join(logDir, "tx"),
		"-h", "127.0.0.1", "-p", strconv.Itoa(t.port), "-U", pgserver.Superuser,
		benchDB,
	}
	ctx, cancel := context.WithTimeout(ctx, d+90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "pgbench", args...)
	cmd.Env = pgbenchEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr

	var res runResult
	var sampler *cpuSampler
	if t.proc != nil {
		sampler = startSampler(t.proc.pid())
	}
	before := meter.sample()
	runErr := cmd.Run()
	after := meter.sample()
	res.elapsed = after.at.Sub(before.at)
	var samples []cpuPoint
	if sampler != nil {
		samples = sampler.finish()
		if _, err := cpuTime(t.proc.pid()); err != nil {
			runErr = errors.Join(runErr, fmt.Errorf("%s is gone: %w", t.name, err))
		}
		res.cpuAll = samples[len(samples)-1].cpu - samples[0].cpu
	}
	var pgbenchCPU time.Duration
	if ps := cmd.ProcessState; ps != nil {
		pgbenchCPU = ps.UserTime() + ps.SystemTime()
	}
	others := (after.busy - before.busy) - (after.postgres - before.postgres) - res.cpuAll - pgbenchCPU
	res.other = max(0, others.Seconds()/res.elapsed.Seconds())

	sum, parseErr := parseSummary(stdout.String())
	res.pgbench = sum
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded) && runErr != nil:
		res.err = fmt.Errorf("pgbench did not finish within %s and was killed", d+90*time.Second)
	case ctx.Err() != nil && runErr != nil:
		res.err = fmt.Errorf("pgbench interrupted: %w", ctx.Err())
	case runErr != nil:
		res.err = fmt.Errorf("pgbench: %w", runErr)
	case parseErr != nil:
		res.err = parseErr
	case sum.failed > 0:
		res.err = fmt.Errorf("pgbench: %d failed transactions", sum.failed)
	case sum.processed == 0:
		// pgbench's -T window starts before it connects its clients.
		res.err = fmt.Errorf("pgbench processed no transaction: the %s window apparently ran out while it was still connecting its %d clients (the invocation took %s)",
			d, c.clients, res.elapsed.Round(100*time.Millisecond))
	}
	if res.err != nil {
		res.stderr = lastLines(stderr.String(), 15)
		return res
	}
	files, _ := filepath.Glob(filepath.Join(logDir, "tx.*"))
	log, err := readTxLogs(files)
	if err != nil {
		res.err = err
		return res
	}
	// Every client runs from allIn to allOut: before, pgbench was still
	// connecting some (one fresh backend each, directly and through
	// lockguard; PgBouncer's were opened before the run); after, clients
	// stop one by one. Either way the run was not the cell it is named for.
	from, to := log.allIn.Add(warmup), log.allOut
	res.steady = log.steady(from, to)
	if res.steady.window < 500*time.Millisecond || res.steady.tx == 0 {
		res.err = fmt.Errorf("only %s of transactions with all clients running, before a warm-up of %s: pgbench spent the rest of -T %s connecting its %d clients (connection time %s)",
			log.allOut.Sub(log.allIn).Round(10*time.Millisecond), warmup, d, c.clients, sum.connTime.Round(10*time.Millisecond))
		return res
	}
	// The proxy's CPU time over the same window: connecting the clients
	// (seconds for 64 fresh backends, milliseconds through PgBouncer's
	// pre-opened server connections) and warming up are left out.
	if samples != nil {
		res.cpu = cpuAt(samples, to) - cpuAt(samples, from)
	}
	return res
}

// cpuPoint is a process's CPU time at an instant.
type cpuPoint struct {
	at  time.Time
	cpu time.Duration
}

// cpuSampler reads a process's CPU time every 50 ms until finish.
type cpuSampler struct {
	pid     int
	samples []cpuPoint
	stop    chan struct{}
	done    chan struct{}
}

func startSampler(pid int) *cpuSampler {
	s := &cpuSampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	s.take()
	go s.sampleUntilStopped()
	return s
}

func (s *cpuSampler) take() {
	if cpu, err := cpuTime(s.pid); err == nil {
		s.samples = append(s.samples, cpuPoint{time.Now(), cpu})
	}
}

func (s *cpuSampler) sampleUntilStopped() {
	defer close(s.done)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			s.take()
		}
	}
}

// finish stops sampling and returns the samples, at least two.
func (s *cpuSampler) finish() []cpuPoint {
	close(s.stop)
	<-s.done
	s.take()
	for len(s.samples) < 2 {
		s.samples = append(s.samples, cpuPoint{time.Now(), 0})
	}
	return s.samples
}

// cpuAt interpolates the CPU time at t between the samples around it.
func cpuAt(samples []cpuPoint, t time.Time) time.Duration {
	if !t.After(samples[0].at) {
		return samples[0].cpu
	}
	for i := 1; i < len(samples); i++ {
		a, b := samples[i-1], samples[i]
		if t.After(b.at) {
			continue
		}
		span := b.at.Sub(a.at)
		if span <= 0 {
			return b.cpu
		}
		f := float64(t.Sub(a.at)) / float64(span)
		return a.cpu + time.Duration(f*float64(b.cpu-a.cpu))
	}
	return samples[len(samples)-1].cpu
}

// parseSummary reads the summary pgbench prints on stdout, e.g.
//
//	number of transactions actually processed: 81234
//	number of failed transactions: 0 (0.000%)
//	latency average = 0.394 ms
//	initial connection time = 6.123 ms
//	tps = 16245.8 (without initial connection time)
func parseSummary(out string) (summary, error) {
	var s summary
	var haveTx, haveTPS, haveAvg bool
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		var err error
		switch {
		case strings.HasPrefix(line, "number of transactions actually processed:"):
			// "N" or, with -t, "N/M".
			v, _, _ := strings.Cut(afterSep(line, ":"), "/")
			s.processed, err = strconv.ParseInt(v, 10, 64)
			haveTx = err == nil
		case strings.HasPrefix(line, "number of failed transactions:"):
			v, _, _ := strings.Cut(afterSep(line, ":"), " ")
			s.failed, err = strconv.ParseInt(v, 10, 64)
		case strings.HasPrefix(line, "latency average"):
			s.avg, err = parseMillis(afterSep(line, "="))
			haveAvg = err == nil
		case strings.HasPrefix(line, "initial connection time"):
			s.connTime, err = parseMillis(afterSep(line, "="))
		case strings.HasPrefix(line, "tps =") && !haveTPS:
			// PostgreSQL 14+ prints one tps line; older versions print
			// "including" first and "excluding connections establishing"
			// second, so prefer the latter.
			v, _, _ := strings.Cut(afterSep(line, "="), " ")
			s.tps, err = strconv.ParseFloat(v, 64)
			haveTPS = err == nil && !strings.Contains(line, "including")
		}
		if err != nil {
			return s, fmt.Errorf("parsing pgbench output line %q: %w", line, err)
		}
	}
	switch {
	case !haveTx:
		return s, fmt.Errorf("pgbench printed no summary: %q", lastLines(out, 5))
	case s.processed > 0 && (!haveTPS || !haveAvg):
		return s, fmt.Errorf("pgbench printed no tps or latency average: %q", lastLines(out, 5))
	}
	return s, nil
}

func afterSep(line, sep string) string {
	_, v, _ := strings.Cut(line, sep)
	return strings.TrimSpace(v)
}

// parseMillis parses "0.394 ms".
func parseMillis(s string) (time.Duration, error) {
	v, unit, _ := strings.Cut(s, " ")
	if unit != "ms" {
		return 0, fmt.Errorf("want a value in ms, got %q", s)
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(f * float64(time.Millisecond)), nil
}

// txLog is what pgbench's per-transaction logs of one run hold.
type txLog struct {
	lat []time.Duration // latency of every successful transaction
	end []time.Time     // the instant each one ended
	// allIn is when the last client to start started its first
	// transaction: from then on every client runs. allOut is when the
	// first client to stop ended its last one: from then on the run drains,
	// as -T has passed and clients stop one by one (those waiting on a lock
	// last).
	allIn, allOut time.Time
	started       map[string]time.Time // each client's first transaction start
	ended         map[string]time.Time // each client's last transaction end
}

// steady measures the transactions that ended after from and by to.
func (l *txLog) steady(from, to time.Time) steady {
	var lat []time.Duration
	var sum time.Duration
	mid := from.Add(to.Sub(from) / 2)
	early := 0
	for i, e := range l.end {
		if e.After(from) && !e.After(to) {
			lat = append(lat, l.lat[i])
			sum += l.lat[i]
			if !e.After(mid) {
				early++
			}
		}
	}
	s := steady{window: to.Sub(from), tx: len(lat)}
	if s.tx == 0 || s.window <= 0 {
		return s
	}
	s.tps = float64(s.tx) / s.window.Seconds()
	s.avg = sum / time.Duration(s.tx)
	s.p99 = percentile(lat, 0.99)
	if early > 0 && s.tx > early {
		s.late = float64(s.tx-early) / float64(early)
	}
	return s
}

// readTxLogs reads the per-transaction logs pgbench --log writes, one file
// per thread.
func readTxLogs(files []string) (*txLog, error) {
	if len(files) == 0 {
		return nil, errors.New("pgbench wrote no per-transaction log")
	}
	log := &txLog{}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		err = log.read(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", filepath.Base(name), err)
		}
	}
	return log, nil
}

// read adds the lines of one log. Each line is
//
//	client_id transaction_no time script_no time_epoch time_us [schedule_lag]
//
// where time is the transaction's latency in µs, or "failed" or "skipped",
// and time_epoch and time_us give the instant it ended.
func (l *txLog) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		lat, end, ok, err := parseLogLine(sc.Text())
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		l.lat = append(l.lat, lat)
		l.end = append(l.end, end)
		start := end.Add(-lat)
		if l.started == nil {
			l.started = map[string]time.Time{}
		}
		client, _, _ := strings.Cut(sc.Text(), " ")
		if s, ok := l.started[client]; !ok || start.Before(s) {
			l.started[client] = start
		}
		if l.ended == nil {
			l.ended = map[string]time.Time{}
		}
		if e, ok := l.ended[client]; !ok || end.After(e) {
			l.ended[client] = end
		}
	}
	l.allIn = time.Time{}
	for _, s := range l.started {
		if s.After(l.allIn) {
			l.allIn = s
		}
	}
	l.allOut = time.Time{}
	for _, e := range l.ended {
		if l.allOut.IsZero() || e.Before(l.allOut) {
			l.allOut = e
		}
	}
	return sc.Err()
}

// parseLogLine reads one log line. ok is false for a failed or skipped
// transaction.
func parseLogLine(line string) (lat time.Duration, end time.Time, ok bool, err error) {
	f := strings.Fields(line)
	if len(f) < 6 {
		return 0, end, false, fmt.Errorf("short log line %q", line)
	}
	if f[2] == "failed" || f[2] == "skipped" {
		return 0, end, false, nil
	}
	us, err1 := strconv.ParseInt(f[2], 10, 64)
	sec, err2 := strconv.ParseInt(f[4], 10, 64)
	usec, err3 := strconv.ParseInt(f[5], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return 0, end, false, fmt.Errorf("log line %q: %w", line, err)
	}
	return time.Duration(us) * time.Microsecond, time.Unix(sec, usec*1000), true, nil
}

// percentile returns the nearest-rank p-quantile of lat (0 if empty). It
// sorts lat.
func percentile(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	i := int(math.Ceil(p*float64(len(lat)))) - 1
	return lat[max(0, min(i, len(lat)-1))]
}

func clearDir(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}
