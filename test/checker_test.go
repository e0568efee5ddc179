package test

// The checker (issue 8): workers write numbered rows through lockguard while
// faults are injected — PostgreSQL immediate and fast restarts, lockguard
// drains (Shutdown, the code path of SIGTERM) followed by a new lockguard on
// the same address, and client connections killed with an RST. Each write
// records what its client was told:
//
//	acked    the autocommit statement or the COMMIT succeeded
//	failed   a definite SQL error (a CHECK violation, an exception raised at
//	         COMMIT by a deferred trigger, COMMIT answered ROLLBACK)
//	aborted  the transaction never reached COMMIT (any error before it)
//	unknown  a connection error during the autocommit statement or COMMIT:
//	         an I/O error, or SQLSTATE class 08 or 57P from PostgreSQL or
//	         lockguard
//
// Afterwards every row in PostgreSQL is compared with the records: no acked
// write may be missing, no failed or aborted write may be present, a
// transaction's rows are all there or none are, and nothing appears that was
// never written. Unknown writes may go either way; both counts are printed.
//
// go test ./test -run TestChecker -soak runs fault cycles for 3 minutes.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lockguard/lockguard/proxy"
)

type relOutcome int

const (
	relAcked relOutcome = iota
	relFailed
	relAborted
	relUnknown
)

func (o relOutcome) String() string {
	return [...]string{"acked", "failed", "aborted", "unknown"}[o]
}

type relWrite struct {
	ids     []int64
	outcome relOutcome
	why     string
	steps   []string // what the client did and saw, kept unless acked
	// safeToRetry: the driver claimed the deciding statement was not sent.
	safeToRetry bool
}

// relSwappable is an in-process lockguard on a fixed address that can be
// drained and replaced by a new one, as a restarted process would be.
type relSwappable struct {
	addr string
	cfg  *proxy.Config

	mu  sync.Mutex
	srv *proxy.Server
}

func (s *relSwappable) start(t testing.TB) {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listening again on %s: %v", s.addr, err)
	}
	srv := proxy.New(s.cfg)
	go srv.Serve(ln)
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
}

// drain shuts the current lockguard down with a drain deadline and starts a
// new one on the same address.
func (s *relSwappable) drain(t testing.TB, d time.Duration) {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	srv.Shutdown(ctx)
	cancel()
	s.start(t)
}

func (s *relSwappable) stop() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
}

// relChecker holds the workers' records.
type relChecker struct {
	table string
	dsn   string
	stop  chan struct{}
	wg    sync.WaitGroup
	conns []atomic.Value // net.Conn of each worker's current connection

	mu     sync.Mutex
	writes []relWrite
	hangs  []string
	errs   map[string]int
}

func (c *relChecker) record(w relWrite) {
	if w.outcome == relAcked && w.why == "" {
		w.steps = nil
	}
	c.mu.Lock()
	c.writes = append(c.writes, w)
	c.mu.Unlock()
}

// relStep describes one statement of a write for the violation report.
func relStep(conn *pgx.Conn, sql string, tag pgconn.CommandTag, err error) string {
	e := "ok"
	if err != nil {
		e = fmt.Sprintf("error %q (SafeToRetry=%t)", err, pgconn.SafeToRetry(err))
	}
	return fmt.Sprintf("%s %s: %s %s; tx status now %q", time.Now().Format("15:04:05.000"), sql, tag, e, conn.PgConn().TxStatus())
}

// relClassify turns the error of the step that decides a write's fate
// (autocommit statement or COMMIT) into an outcome. Every connection error is
// unknown, even when the driver says nothing was sent: pgx v5.12.0 reports
// "conn closed" with SafeToRetry() true when a simple-protocol statement was
// written and the connection then died before its answer
// (MultiResultReader.NextResult drops peekMessage's error), and such writes do
// commit. safe records what the driver claimed, for the report.
func relClassify(err error) (out relOutcome, why string, safe bool) {
	switch {
	case err == nil:
		return relAcked, "", false
	case relIsConnError(err):
		return relUnknown, relErrClass(err), pgconn.SafeToRetry(err)
	default:
		return relFailed, relErrClass(err), false
	}
}

func (c *relChecker) worker(w int) {
	defer c.wg.Done()
	rng := rand.New(rand.NewSource(int64(w)))
	var seq int64
	nextID := func() int64 { seq++; return int64(w+1)<<32 | seq }
	simple := w%2 == 1 // half the workers use the simple protocol
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		if conn == nil {
			cfg, err := pgx.ParseConfig(c.dsn)
			if err != nil {
				panic(err)
			}
			if simple {
				cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
			}
			var d net.Dialer
			cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
				nc, err := d.DialContext(ctx, network, addr)
				if err == nil {
					c.conns[w].Store(nc)
				}
				return nc, err
			}
			ctx, cancel := context.WithTimeout(context.Background(), relOpTimeout)
			conn, err = pgx.ConnectConfig(ctx, cfg)
			if ctx.Err() != nil {
				c.mu.Lock()
				c.hangs = append(c.hangs, fmt.Sprintf("worker %d: connect: %v", w, err))
				c.mu.Unlock()
			}
			cancel()
			if err != nil {
				conn = nil
				time.Sleep(20 * time.Millisecond)
				continue
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), relOpTimeout)
		var err error
		if rng.Intn(2) == 0 {
			err = c.autocommit(ctx, conn, nextID(), rng)
		} else {
			err = c.transaction(ctx, conn, []int64{nextID(), nextID()}, rng)
		}
		if ctx.Err() != nil {
			c.mu.Lock()
			c.hangs = append(c.hangs, fmt.Sprintf("worker %d: %v", w, err))
			c.mu.Unlock()
		}
		cancel()
		if err != nil {
			c.mu.Lock()
			c.errs[relErrClass(err)]++
			c.mu.Unlock()
			if relIsConnError(err) || conn.IsClosed() {
				conn.Close(context.Background())
				conn = nil
			}
		}
	}
}

// autocommit writes one row; 1 in 20 violates a CHECK constraint and 1 in 20
// is refused by a deferred trigger at the statement's implicit COMMIT.
func (c *relChecker) autocommit(ctx context.Context, conn *pgx.Conn, id int64, rng *rand.Rand) error {
	checkPoison, commitPoison := rng.Intn(20) == 0, rng.Intn(20) == 0
	tag, err := conn.Exec(ctx, "INSERT INTO "+c.table+" (id, check_poison, commit_poison) VALUES ($1, $2, $3)", id, checkPoison, commitPoison)
	out, why, safe := relClassify(err)
	if err == nil && (checkPoison || commitPoison) {
		why = "poisoned write succeeded"
	}
	c.record(relWrite{ids: []int64{id}, outcome: out, why: why, safeToRetry: safe, steps: []string{relStep(conn, "INSERT", tag, err)}})
	return err
}

// transaction writes rows in BEGIN … COMMIT; 1 in 10 is refused at COMMIT.
func (c *relChecker) transaction(ctx context.Context, conn *pgx.Conn, ids []int64, rng *rand.Rand) error {
	commitPoison := rng.Intn(10) == 0
	var steps []string
	abort := func(err error) error {
		c.record(relWrite{ids: ids, outcome: relAborted, why: relErrClass(err), steps: steps})
		if !relIsConnError(err) && !conn.IsClosed() {
			conn.Exec(ctx, "ROLLBACK") // leave the failed transaction
		}
		return err
	}
	tag, err := conn.Exec(ctx, "BEGIN")
	steps = append(steps, relStep(conn, "BEGIN", tag, err))
	if err != nil {
		return abort(err)
	}
	for i, id := range ids {
		tag, err := conn.Exec(ctx, "INSERT INTO "+c.table+" (id, commit_poison) VALUES ($1, $2)", id, commitPoison && i == len(ids)-1)
		steps = append(steps, relStep(conn, fmt.Sprintf("INSERT %d", id), tag, err))
		if err != nil {
			return abort(err)
		}
	}
	tag, err = conn.Exec(ctx, "COMMIT")
	steps = append(steps, relStep(conn, "COMMIT", tag, err))
	out, why, safe := relClassify(err)
	if err == nil && tag.String() != "COMMIT" {
		out, why = relFailed, "COMMIT answered "+tag.String()
	}
	if err == nil && commitPoison && out == relAcked {
		why = "poisoned transaction committed"
	}
	c.record(relWrite{ids: ids, outcome: out, why: why, safeToRetry: safe, steps: steps})
	if err == nil && out == relFailed {
		return errors.New(why)
	}
	return err
}

// kill resets worker w's client connection and says when.
func (c *relChecker) kill(w int) string {
	if nc, ok := c.conns[w].Load().(net.Conn); ok {
		at := time.Now().Format("15:04:05.000")
		relResetClose(nc)
		return fmt.Sprintf("%s worker %d", at, w)
	}
	return ""
}

func TestCheckerNoLostWrites(t *testing.T) {
	own := relOwnPG(t, nil) // synchronous_commit = on
	direct := relDirect(t, own)
	ctx := ctxT(t, 10*time.Minute)
	const table = "checker"
	for _, sql := range []string{
		"CREATE TABLE " + table + " (id bigint PRIMARY KEY, check_poison bool NOT NULL DEFAULT false CHECK (NOT check_poison), commit_poison bool NOT NULL DEFAULT false)",
		"CREATE FUNCTION checker_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.commit_poison THEN RAISE EXCEPTION 'poisoned at commit'; END IF; RETURN NULL; END $$",
		"CREATE CONSTRAINT TRIGGER poison AFTER INSERT ON " + table + " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION checker_poison()",
	} {
		if _, err := direct.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	lgcfg := &proxy.Config{Upstream: proxy.Upstream{Address: own.Addr(), SSLMode: proxy.SSLDisable, ConnectTimeout: 3 * time.Second}}
	lgcfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		lgcfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	lg := &relSwappable{addr: freeAddr(t), cfg: lgcfg}
	lg.start(t)
	t.Cleanup(lg.stop)

	const workers = 8
	chk := &relChecker{table: table, stop: make(chan struct{}), conns: make([]atomic.Value, workers), errs: map[string]int{},
		dsn: fmt.Sprintf("postgres://postgres@%s/lockguard_test?sslmode=disable&connect_timeout=10", lg.addr)}
	for w := 0; w < workers; w++ {
		chk.wg.Add(1)
		go chk.worker(w)
	}
	stopWorkers := func() {
		select {
		case <-chk.stop:
		default:
			close(chk.stop)
		}
		chk.wg.Wait()
	}
	defer stopWorkers()

	var faults, kills []string
	faultCount := map[string]int{}
	fault := func(name string, f func()) {
		time.Sleep(1500 * time.Millisecond)
		start := time.Now()
		f()
		faultCount[name]++
		if faultCount[name] == 1 { // the first cycle in detail
			faults = append(faults, fmt.Sprintf("%s %s (%v)", start.Format("15:04:05.000"), name, time.Since(start).Round(time.Millisecond)))
		}
	}
	end := time.Now().Add(relSoakOr(0, 3*time.Minute))
	for cycle := 0; cycle == 0 || time.Now().Before(end); cycle++ {
		fault("PostgreSQL immediate restart", func() {
			if err := own.Restart(ctx, "immediate"); err != nil {
				t.Fatal(err)
			}
		})
		fault("lockguard drain (500ms deadline) and restart", func() { lg.drain(t, 500*time.Millisecond) })
		fault("5 client connections reset", func() {
			// Workers 0, 2 and 4 use the extended protocol, 1 and 5 the simple one.
			for _, w := range []int{0, 1, 2, 4, 5} {
				kills = append(kills, chk.kill(w))
				time.Sleep(100 * time.Millisecond)
			}
		})
		fault("PostgreSQL fast restart", func() {
			if err := own.Restart(ctx, "fast"); err != nil {
				t.Fatal(err)
			}
		})
		fault("lockguard drain (3s deadline) and restart", func() { lg.drain(t, 3*time.Second) })
	}
	time.Sleep(1500 * time.Millisecond) // a calm spell at the end
	stopWorkers()

	direct = relDirectReconnect(t, own)
	present := map[int64]bool{}
	rows, err := direct.Query(ctx, "SELECT id FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		present[id] = true
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}

	chk.mu.Lock()
	defer chk.mu.Unlock()
	counts := map[relOutcome]int{}
	var unknownCommitted, unknownAbsent, safeClaims, safeButCommitted int
	var safeExample string
	var lost, falseFailure, partial, oddSuccess []string
	attempted := map[int64]bool{}
	for _, w := range chk.writes {
		counts[w.outcome]++
		n := 0
		for _, id := range w.ids {
			attempted[id] = true
			if present[id] {
				n++
			}
		}
		if n != 0 && n != len(w.ids) {
			partial = append(partial, fmt.Sprintf("%v: %d of %d rows (%s)", w.ids, n, len(w.ids), w.outcome))
		}
		switch w.outcome {
		case relAcked:
			if n == 0 {
				lost = append(lost, fmt.Sprintf("%v", w.ids))
			}
			if w.why != "" {
				oddSuccess = append(oddSuccess, fmt.Sprintf("%v: %s", w.ids, w.why))
			}
		case relFailed, relAborted:
			if n > 0 {
				falseFailure = append(falseFailure, fmt.Sprintf("%v %s (%s):\n\t%s", w.ids, w.outcome, w.why, strings.Join(w.steps, "\n\t")))
			}
		case relUnknown:
			if n > 0 {
				unknownCommitted++
			} else {
				unknownAbsent++
			}
			if w.safeToRetry {
				safeClaims++
				if n > 0 {
					safeButCommitted++
					if safeExample == "" {
						safeExample = strings.Join(w.steps, "\n\t")
					}
				}
			}
		}
	}
	var phantoms []int64
	for id := range present {
		if !attempted[id] {
			phantoms = append(phantoms, id)
		}
	}
	t.Logf("faults (first cycle): %s; connections reset: %s", strings.Join(faults, "; "), strings.Join(relFirst(kills, 5), ", "))
	t.Logf("faults in all: %s", relTally(faultCount))
	t.Logf("checker: %d writes: %d acked, %d failed (definite SQL error), %d aborted before COMMIT, %d unknown (%d committed, %d not); rows in PostgreSQL: %d",
		len(chk.writes), counts[relAcked], counts[relFailed], counts[relAborted], counts[relUnknown], unknownCommitted, unknownAbsent, len(present))
	t.Logf("checker: of the unknown writes, pgx claimed %d were never sent (SafeToRetry); %d of those committed", safeClaims, safeButCommitted)
	if safeExample != "" {
		t.Logf("checker: a write pgx called SafeToRetry that committed:\n\t%s", safeExample)
	}
	t.Logf("checker: acknowledged-but-lost %d, reported-failed-but-committed %d, partial transactions %d, phantom rows %d, hangs %d; errors seen: %s",
		len(lost), len(falseFailure), len(partial), len(phantoms), len(chk.hangs), relTally(chk.errs))
	for _, h := range chk.hangs {
		t.Errorf("HANG: %s", h)
	}
	if len(lost) > 0 {
		t.Errorf("LOST: %d acknowledged writes are not in PostgreSQL: %v", len(lost), relFirst(lost, 10))
	}
	if len(falseFailure) > 0 {
		t.Errorf("FALSE FAILURE: %d writes reported as failed are in PostgreSQL: %v", len(falseFailure), relFirst(falseFailure, 10))
	}
	if len(partial) > 0 {
		t.Errorf("PARTIAL: %v", relFirst(partial, 10))
	}
	if len(phantoms) > 0 {
		t.Errorf("PHANTOM rows never written: %v", phantoms[:min(10, len(phantoms))])
	}
	if len(oddSuccess) > 0 {
		t.Errorf("poisoned writes reported as successful: %v", relFirst(oddSuccess, 10))
	}
	if counts[relAcked] < 100 {
		t.Errorf("only %d acknowledged writes: the checker did too little to mean anything", counts[relAcked])
	}
	if counts[relFailed] == 0 {
		t.Errorf("no definite failures: the poisoned writes did not exercise the failed outcome")
	}
	if counts[relUnknown]+counts[relAborted] == 0 {
		t.Errorf("no write was disturbed: the faults were not felt")
	}
}

func relFirst(s []string, n int) []string { return s[:min(n, len(s))] }
