package demo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultDDL is the deploy's migration unless Options.DDL says otherwise.
const DefaultDDL = "ALTER TABLE orders DROP CONSTRAINT orders_user_fk"

// schemaSQL (re)creates the demo's tables so that every run starts equal.
const schemaSQL = `
DROP TABLE IF EXISTS orders, users, products CASCADE;
CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE orders (
  id bigserial PRIMARY KEY,
  user_id bigint NOT NULL,
  amount numeric(12,2) NOT NULL,
  CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
);
CREATE TABLE products (id bigint PRIMARY KEY, name text NOT NULL, price numeric(10,2) NOT NULL);
INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 10000) g;
INSERT INTO orders (user_id, amount) SELECT 1 + g % 10000, (g % 1000) / 10.0 FROM generate_series(1, 50000) g;
INSERT INTO products SELECT g, 'product ' || g, g % 500 + 0.99 FROM generate_series(1, 5000) g;
ANALYZE users, orders, products;
`

// waitersSQL counts the backends of the demo's database that wait for a
// lock, and whether the deploy ($1) is one of them.
const waitersSQL = `
SELECT count(DISTINCT l.pid)::int, coalesce(bool_or(l.pid = $1), false)
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE NOT l.granted AND a.datname = current_database()`

// prepare waits for the demo's sessions left over from an earlier run to go
// (and terminates the stragglers), then recreates the schema.
func (e *env) prepare(ctx context.Context) error {
	conn, err := connect(ctx, e.direct, "lockguard-demo-setup")
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// Only the demo's own sessions: lockguard's side connection may be
	// connected to this database too.
	const mine = `datname = current_database() AND pid <> pg_backend_pid() AND application_name LIKE 'lockguard-demo-%'`
	const others = `SELECT count(*) FROM pg_stat_activity WHERE ` + mine
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		var n int
		if err := conn.QueryRow(ctx, others).Scan(&n); err != nil {
			return fmt.Errorf("preparing: %w", err)
		}
		if n == 0 {
			break
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
	_, _ = conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE `+mine)
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if _, err := conn.Exec(sctx, "SET lock_timeout = '10s'", pgx.QueryExecModeSimpleProtocol); err != nil {
		return fmt.Errorf("preparing: %w", err)
	}
	if _, err := conn.Exec(sctx, schemaSQL, pgx.QueryExecModeSimpleProtocol); err != nil {
		return fmt.Errorf("creating the schema: %w", err)
	}
	_, _ = conn.Exec(sctx, "CHECKPOINT") // start both runs with clean buffers; needs pg_checkpoint, optional
	return nil
}

// run is the state of one run while it goes.
type run struct {
	e      *env
	name   string
	t0     time.Time
	counts [numTables][numOutcomes]atomic.Int64

	waiters   atomic.Int32 // latest sample
	deployPID atomic.Uint32

	mu       sync.Mutex
	reportTx Span
	ddl      DDLOutcome
	ddlPhase int // 0 pending, 1 running, 2 done
	ddlWait  bool
	locks    []lockSample
}

// lockSample is one look at pg_locks.
type lockSample struct {
	at         time.Duration
	waiters    int
	ddlWaiting bool
}

func (r *run) since() time.Duration { return time.Since(r.t0) }

// runOnce runs the incident once with every session connecting through cfg
// (the monitor always connects directly).
func (e *env) runOnce(ctx context.Context, name, title string, cfg *pgx.ConnConfig) (*RunReport, error) {
	o := e.o
	fmt.Fprintf(o.Progress, "\n== run %s: %s — recreating the schema…\n", name, title)
	if err := e.prepare(ctx); err != nil {
		return nil, err
	}

	pcfg, err := pgxpool.ParseConfig("")
	if err != nil {
		return nil, err
	}
	pcfg.ConnConfig = cfg.Copy()
	pcfg.ConnConfig.RuntimeParams["application_name"] = "lockguard-demo-app"
	pcfg.MaxConns = int32(o.Pool)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("application pool: %w", err)
	}
	defer pool.Close()
	if err := warm(ctx, pool, o.Pool); err != nil {
		return nil, fmt.Errorf("application pool: %w", err)
	}
	report, err := connect(ctx, cfg, "lockguard-demo-report")
	if err != nil {
		return nil, err
	}
	defer report.Close(context.WithoutCancel(ctx))
	deploy, err := connect(ctx, cfg, "lockguard-demo-deploy")
	if err != nil {
		return nil, err
	}
	defer deploy.Close(context.WithoutCancel(ctx))
	monitor, err := connect(ctx, e.direct, "lockguard-demo-monitor")
	if err != nil {
		return nil, err
	}
	defer monitor.Close(context.WithoutCancel(ctx))

	r := &run{e: e, name: name, t0: time.Now()}
	end := r.t0.Add(o.Duration)
	fmt.Fprintf(o.Progress, "per second: ok/shed/err per table; lock waiters from pg_locks\n")

	// The workload.
	var workers sync.WaitGroup
	perWorker := make([][]sample, o.Workers)
	for i := range o.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			perWorker[i] = r.worker(ctx, pool, uint64(i), end)
		}()
	}

	// The incident.
	var incident sync.WaitGroup
	var reportErr, deployErr error
	incident.Add(2)
	go func() {
		defer incident.Done()
		reportErr = r.runReport(ctx, report)
	}()
	go func() {
		defer incident.Done()
		deployErr = r.deploy(ctx, deploy, name == "direct", end.Add(o.DDLGrace))
	}()

	// Watching it.
	watchCtx, stopWatching := context.WithCancel(ctx)
	var watchers sync.WaitGroup
	watchers.Add(2)
	go func() { defer watchers.Done(); r.sampleLocks(watchCtx, monitor) }()
	go func() { defer watchers.Done(); r.progress(watchCtx) }()

	workers.Wait()
	incident.Wait()
	stopWatching()
	watchers.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if reportErr != nil {
		return nil, fmt.Errorf("report transaction: %w", reportErr)
	}
	if deployErr != nil {
		return nil, fmt.Errorf("deploy: %w", deployErr)
	}

	var all []sample
	for _, s := range perWorker {
		all = append(all, s...)
	}
	rr := r.summarize(title, all)
	fmt.Fprintf(o.Progress, "run %s done: %s\n", name, rr.DDL.describe())
	return rr, nil
}

// warm opens every pooled connection and prepares the workload's statements
// on it before the clock starts, so that a run's first second measures the
// workload, not connection setup.
func warm(ctx context.Context, pool *pgxpool.Pool, n int) error {
	conns := make([]*pgxpool.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for range n {
		c, err := pool.Acquire(ctx)
		if err != nil {
			return err
		}
		conns = append(conns, c)
	}
	// lockguard may still shed for a moment after the schema was recreated
	// (its view of the locks is refreshed by polling); retry as an app would.
	deadline := time.Now().Add(5 * time.Second)
	retry := func(f func() error) error {
		for {
			err := f()
			if oc, _ := classify(err); oc != outShed || time.Now().After(deadline) {
				return err
			}
			if !sleep(ctx, 50*time.Millisecond) {
				return ctx.Err()
			}
		}
	}
	for _, c := range conns {
		var s string
		var f float64
		steps := []func() error{
			func() error { return c.QueryRow(ctx, sqlReadUser, 1).Scan(&s) },
			func() error { return c.QueryRow(ctx, sqlReadProduct, 1).Scan(&f) },
			func() error { _, err := c.Exec(ctx, sqlUpdateOrder, 0); return err }, // no such order
			func() error {
				tx, err := c.Begin(ctx)
				if err != nil {
					return err
				}
				_, err = tx.Exec(ctx, sqlInsertOrder, 1, 0.0)
				if rerr := tx.Rollback(ctx); err == nil {
					err = rerr
				}
				return err
			},
		}
		for _, step := range steps {
			if err := retry(step); err != nil {
				return err
			}
		}
	}
	return nil
}

// The workload's statements.
const (
	sqlReadUser    = "SELECT name FROM users WHERE id = $1"
	sqlInsertOrder = "INSERT INTO orders (user_id, amount) VALUES ($1, $2)"
	sqlUpdateOrder = "UPDATE orders SET amount = amount + 1 WHERE id = $1"
	sqlReadProduct = "SELECT price::float8 FROM products WHERE id = $1"
)

// worker issues requests until end and returns what it saw. Each request
// has its own timeout and is never cut short by the end of the run.
func (r *run) worker(ctx context.Context, pool *pgxpool.Pool, id uint64, end time.Time) []sample {
	o := r.e.o
	rng := rand.New(rand.NewPCG(id, 0x6c6f636b)) // the same requests in both runs
	out := make([]sample, 0, 1024)
	for ctx.Err() == nil && time.Now().Before(end) {
		op := rng.IntN(100)
		uid := 1 + rng.Int64N(10000)
		oid := 1 + rng.Int64N(50000)
		pid := 1 + rng.Int64N(5000)
		amount := float64(rng.IntN(10000)) / 100

		rctx, cancel := context.WithTimeout(ctx, o.RequestTimeout)
		start := r.since()
		var table uint8
		var err error
		switch {
		case op < 40:
			table = tUsers
			var name string
			err = pool.QueryRow(rctx, sqlReadUser, uid).Scan(&name)
		case op < 55:
			table = tOrders
			_, err = pool.Exec(rctx, sqlInsertOrder, uid, amount)
		case op < 70:
			table = tOrders
			_, err = pool.Exec(rctx, sqlUpdateOrder, oid)
		default:
			table = tProducts
			var price float64
			err = pool.QueryRow(rctx, sqlReadProduct, pid).Scan(&price)
		}
		done := r.since()
		cancel()
		if ctx.Err() != nil {
			break // interrupted: not the workload's outcome
		}
		oc, kind := classify(err)
		r.counts[table][oc].Add(1)
		out = append(out, sample{table: table, outcome: oc, start: start, end: done, errKind: kind})
		think := o.Think/2 + time.Duration(rng.Int64N(int64(o.Think)+1))
		if !sleep(ctx, think) {
			break
		}
	}
	return out
}

// classify tells a success, a shed (lockguard's retryable 55P03) and an
// error apart, and names the error's kind.
func classify(err error) (outcome, string) {
	if err == nil {
		return outOK, ""
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		if pe.Code == "55P03" && strings.HasPrefix(pe.Message, "lockguard") {
			return outShed, ""
		}
		return outErr, pe.Code
	}
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return outErr, "timeout"
	}
	return outErr, "other"
}

// runReport is the long transaction: it reads users and stays open.
func (r *run) runReport(ctx context.Context, conn *pgx.Conn) error {
	o := r.e.o
	if !sleep(ctx, o.ReportAt-r.since()) {
		return nil
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	var n int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	r.mu.Lock()
	r.reportTx.From = round(r.since().Seconds(), 3)
	r.mu.Unlock()
	if !sleep(ctx, o.ReportAt+o.ReportHold-r.since()) {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = tx.Commit(cctx)
	r.mu.Lock()
	r.reportTx.To = round(r.since().Seconds(), 3)
	r.mu.Unlock()
	return err
}

// deploy runs the migration once the report transaction is open. Straight
// to PostgreSQL it runs without lock_timeout, as the incident's deploy did;
// through lockguard it runs the same and lockguard adds its own. It gives up
// at deadline. Only failures to run it at all are errors; how it ended is
// recorded.
func (r *run) deploy(ctx context.Context, conn *pgx.Conn, direct bool, deadline time.Time) error {
	o := r.e.o
	if !sleep(ctx, o.ReportAt+o.DeployAfter-r.since()) {
		return nil
	}
	if direct {
		if _, err := conn.Exec(ctx, "SET lock_timeout = 0"); err != nil {
			return err
		}
	}
	r.deployPID.Store(conn.PgConn().PID())
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	r.mu.Lock()
	r.ddl.StartedAt = round(r.since().Seconds(), 3)
	r.ddlPhase = 1
	r.mu.Unlock()
	_, err := conn.Exec(dctx, o.DDL)
	at := round(r.since().Seconds(), 3)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ddlPhase = 2
	r.ddl.EndedAt = at
	var pe *pgconn.PgError
	switch {
	case err == nil:
		r.ddl.Landed = true
	case errors.As(err, &pe):
		r.ddl.Error = pe.Code + ": " + pe.Message
	case dctx.Err() != nil && ctx.Err() == nil:
		r.ddl.Error = fmt.Sprintf("still waiting %v after the workload ended; cancelled by the demo", o.DDLGrace)
	default:
		r.ddl.Error = err.Error()
	}
	return nil
}

// sampleLocks looks at pg_locks every 100 ms.
func (r *run) sampleLocks(ctx context.Context, conn *pgx.Conn) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var n int
		var ddl bool
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		err := conn.QueryRow(qctx, waitersSQL, r.deployPID.Load()).Scan(&n, &ddl)
		cancel()
		if err == nil {
			at := r.since()
			r.waiters.Store(int32(n))
			r.mu.Lock()
			r.locks = append(r.locks, lockSample{at: at, waiters: n, ddlWaiting: ddl})
			r.ddlWait = ddl
			r.mu.Unlock()
		} else if ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// progress prints one line per second.
func (r *run) progress(ctx context.Context) {
	w := r.e.o.Progress
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last [numTables][numOutcomes]int64
	for sec := 1; ; sec++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%-9s %3ds", r.name, sec)
		for t := range numTables {
			var d [numOutcomes]int64
			for oc := range numOutcomes {
				n := r.counts[t][oc].Load()
				d[oc] = n - last[t][oc]
				last[t][oc] = n
			}
			fmt.Fprintf(&b, "  %s %4d/%d/%d", Tables[t], d[outOK], d[outShed], d[outErr])
		}
		fmt.Fprintf(&b, "  waiters %3d  %s\n", r.waiters.Load(), r.state())
		_, _ = w.Write([]byte(b.String()))
	}
}

// state describes the report transaction and the DDL for a progress line.
func (r *run) state() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.since().Seconds()
	rep := "report -"
	if r.reportTx.From > 0 && r.reportTx.To == 0 {
		rep = "report open"
	} else if r.reportTx.To > 0 {
		rep = "report done"
	}
	var ddl string
	switch r.ddlPhase {
	case 0:
		ddl = "DDL not started"
	case 1:
		if r.ddlWait {
			ddl = fmt.Sprintf("DDL waiting for its lock (started %.1fs ago)", now-r.ddl.StartedAt)
		} else {
			ddl = fmt.Sprintf("DDL running, not in the lock queue (started %.1fs ago)", now-r.ddl.StartedAt)
		}
	default:
		ddl = r.ddl.describe()
	}
	return rep + "  " + ddl
}

// summarize turns what the run saw into its report.
func (r *run) summarize(title string, all []sample) *RunReport {
	o := r.e.o
	total := o.Duration
	rr := &RunReport{Name: r.name, Title: title, Seconds: total.Seconds(), BucketMS: int(bucketWidth / time.Millisecond)}
	byTable := make([][]sample, numTables)
	for _, s := range all {
		byTable[s.table] = append(byTable[s.table], s)
	}
	rr.OKPerBucket = map[string][]int{}
	for t := range numTables {
		rr.Tables = append(rr.Tables, tableStats(Tables[t], byTable[t], total))
		var ends []time.Duration
		for _, s := range byTable[t] {
			if s.outcome == outOK {
				ends = append(ends, s.end)
			}
		}
		rr.OKPerBucket[Tables[t]] = bucketCounts(ends, bucketWidth, total)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	rr.ReportTx = r.reportTx
	rr.DDL = r.ddl
	rr.Waiters = make([]int, len(rr.OKPerBucket[Tables[0]]))
	for i := range rr.Waiters {
		rr.Waiters[i] = -1 // not sampled (yet)
	}
	lastWaiting := false
	var prev time.Duration
	for _, l := range r.locks {
		rr.MaxLockWaiters = max(rr.MaxLockWaiters, l.waiters)
		if i := int(l.at / bucketWidth); i < len(rr.Waiters) {
			rr.Waiters[i] = max(rr.Waiters[i], l.waiters)
		}
		if l.ddlWaiting {
			rr.DDL.InLockQueue += (l.at - prev).Seconds()
			if !lastWaiting {
				rr.DDL.QueueEpisodes++
			}
		}
		lastWaiting = l.ddlWaiting
		prev = l.at
	}
	// A bucket without a sample (the monitor's query took longer than
	// 100 ms) shows the last value seen.
	last := 0
	for i, v := range rr.Waiters {
		if v < 0 {
			rr.Waiters[i] = last
		}
		last = rr.Waiters[i]
	}
	rr.DDL.InLockQueue = round(rr.DDL.InLockQueue, 1)
	slices.SortFunc(rr.Tables, func(a, b TableStats) int { return tableIndex(a.Table) - tableIndex(b.Table) })
	return rr
}

const bucketWidth = 100 * time.Millisecond

func tableIndex(name string) int { return slices.Index(Tables, name) }

// sleep waits d or until ctx is done, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
