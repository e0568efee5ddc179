package test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lockguard/lockguard/proxy"
)

// TestEventLoopChurn runs clients that do, in random order, everything that
// makes a session leave the event loop (a result read slower than it
// arrives, a DDL the guard waits for, a DDL held or retried behind a
// lock, a cancelled statement) between everything that keeps it there
// (round trips in both protocols, pipelines, transactions, COPY, errors,
// idle pauses). Sessions leave and come back while others do the same, on
// the loop's goroutine and their own. Every answer is checked, every row a
// client was told committed must be in PostgreSQL and no other, and at the
// end every session is back in the loop.
//
// One client uses TLS, so its session is relayed by goroutines all along and
// the loop does not keep its P while it waits (TestEventLoopHoldsItsPOnly-
// WhenAllSessionsAreIn). The loop reads and writes through io_uring, and
// then with read(2) and write(2) (--io-uring=false).
//
// go test ./test -run TestEventLoopChurn -soak runs each for 2 minutes.
func TestEventLoopChurn(t *testing.T) {
	requireEventLoop(t)
	for _, ring := range []bool{true, false} {
		t.Run(fmt.Sprintf("io-uring=%v", ring), func(t *testing.T) {
			tlsOpt := withClientTLS(t)
			testChurn(t, func(c *proxy.Config) {
				tlsOpt(c)
				c.NoIOUring = !ring
			})
		})
	}
}

func testChurn(t *testing.T, mutateProxy func(*proxy.Config)) {
	lg := startGuardedWith(t, nil, mutateProxy)
	ctx := ctxT(t, 5*time.Minute)
	shared := createTable(t, ctx, "churn_shared", "id int")
	const workers = 8
	tables := make([]string, workers)
	for i := range tables {
		tables[i] = createTable(t, ctx, fmt.Sprintf("churn_w%d", i), "id bigint PRIMARY KEY, note text")
	}
	conns := make([]*pgx.Conn, workers)
	conns[0] = connect(t, lg.superDSN("sslmode", "verify-full", "sslrootcert", pg.CAFile))
	for i := 1; i < workers; i++ {
		conns[i] = connect(t, lg.superDSN())
	}
	// The direct reader's own DDL on the shared table, through lockguard.
	probe := connect(t, lg.superDSN())
	const looped = workers // the workers but the TLS one, and probe
	waitFor(t, 5*time.Second, func() bool { return lg.srv.Stats().InLoop == looped })
	before := lg.srv.Stats()

	run := relSoakOr(6*time.Second, 2*time.Minute)
	stop := time.Now().Add(run)

	// A reader of the shared table, directly in PostgreSQL, in the way of
	// the workers' DDL on it now and then: mostly for less than the lock
	// timeout, so that the DDL waits or is retried and lands, and every
	// tenth time, the first about a second into the run, for longer than
	// all of the guard's attempts, so that it gives up (55P03).
	blockerDone := make(chan error, 1)
	var probeErr error // read after blockerDone
	c := connect(t, directDSN())
	go func() {
		rng := rand.New(rand.NewSource(1))
		for i := 0; time.Now().Before(stop); i++ {
			hold := time.Duration(50+rng.Intn(150)) * time.Millisecond
			if i%10 == 3 {
				hold = churnLongHold
			}
			tx, err := c.Begin(ctx)
			if err == nil {
				_, err = tx.Exec(ctx, "SELECT count(*) FROM "+shared)
				if err == nil && hold == churnLongHold {
					// A DDL on the table meets the long hold for sure,
					// whatever the workers happen to do meanwhile.
					start := time.Now()
					_, probeErr = probe.Exec(ctx, "ALTER TABLE "+shared+" ADD COLUMN IF NOT EXISTS probe int")
					hold -= time.Since(start)
				}
				time.Sleep(hold)
				tx.Rollback(ctx)
			}
			if err != nil {
				blockerDone <- err
				return
			}
			time.Sleep(time.Duration(100+rng.Intn(300)) * time.Millisecond)
		}
		blockerDone <- nil
	}()

	var wg sync.WaitGroup
	results := make([]churnWorker, workers)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &results[i]
			*w = churnWorker{id: i, conn: conns[i], table: tables[i], shared: shared,
				rng: rand.New(rand.NewSource(int64(i) + time.Now().UnixNano())), committed: map[int64]bool{}}
			w.run(ctx, stop)
		}()
	}
	wg.Wait()
	if err := <-blockerDone; err != nil {
		t.Errorf("the direct reader of the shared table: %v", err)
	}

	counts := map[string]int{}
	for i := range results {
		w := &results[i]
		for k, n := range w.ops {
			counts[k] += n
		}
		if w.err != nil {
			t.Errorf("worker %d: %v\n  its last operations: %s", i, w.err, strings.Join(w.trail, " "))
			continue
		}
		// What the client was told committed, and nothing else, read on
		// the direct reader's connection, free now.
		rows, err := c.Query(ctx, "SELECT id FROM "+w.table+" ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			t.Fatal(err)
		}
		want := make([]int64, 0, len(w.committed))
		for id := range w.committed {
			want = append(want, id)
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("worker %d: table %s has %d rows, %d were committed; first difference: %s", i, w.table, len(got), len(want), firstDiff(got, want))
		}
	}
	t.Logf("operations: %v", counts)
	if t.Failed() {
		return
	}
	// The long hold came while workers altered the shared table now and
	// then, and while probe did: lockguard gave up on probe's DDL, or shed
	// it because a worker's DDL was waiting already, which then gave up.
	var pe *pgconn.PgError
	if !errors.As(probeErr, &pe) || pe.Code != "55P03" || !strings.HasPrefix(pe.Message, "lockguard: ") {
		t.Errorf("the DDL on the shared table during the direct reader's %v hold: %v, want lockguard's 55P03", churnLongHold, probeErr)
	} else if counts["shared-ddl-55P03"] == 0 && !strings.HasPrefix(pe.Message, "lockguard: gave up waiting for ") {
		t.Errorf("no DDL on the shared table gave up during the direct reader's %v hold (%d done; probe's: %v)", churnLongHold, counts["shared-ddl"], probeErr)
	}
	// Idle now, every session goes back to the loop.
	if !waitUntil(10*time.Second, func() bool { return lg.srv.Stats().InLoop == looped }) {
		t.Fatalf("sessions in the loop 10 s after the clients went idle: %+v, want InLoop %d", lg.srv.Stats(), looped)
	}
	after := lg.srv.Stats()
	left, back := after.LeftLoop-before.LeftLoop, after.BackInLoop-before.BackInLoop
	t.Logf("sessions left the loop %d times and came back %d times", left, back)
	// The run must have done what it is for: sessions left and came back,
	// many times.
	if left < looped || back < looped {
		t.Fatalf("sessions left the loop %d times and came back %d: the run did not exercise leaving and returning", left, back)
	}
	for _, c := range conns {
		assertQuick(t, c, 3, 2*time.Second)
	}
}

// firstDiff describes the first id in which got and want differ.
func firstDiff(got, want []int64) string {
	for i := 0; i < len(got) || i < len(want); i++ {
		switch {
		case i >= len(got):
			return fmt.Sprintf("%d committed, missing", want[i])
		case i >= len(want):
			return fmt.Sprintf("%d present, never committed", got[i])
		case got[i] < want[i]:
			return fmt.Sprintf("%d present, never committed", got[i])
		case got[i] > want[i]:
			return fmt.Sprintf("%d committed, missing", want[i])
		}
	}
	return "none"
}

type churnWorker struct {
	id            int
	conn          *pgx.Conn
	table, shared string
	rng           *rand.Rand
	next          int64
	committed     map[int64]bool
	ops           map[string]int
	trail         []string
	err           error
}

// churnOps are the operations with their weights.
var churnOps = []struct {
	name   string
	weight int
	do     func(w *churnWorker, ctx context.Context) error
}{
	{"echo", 30, (*churnWorker).echo},
	{"simple-multi", 10, (*churnWorker).simpleMulti},
	{"pipeline", 8, (*churnWorker).pipeline},
	{"tx", 14, (*churnWorker).tx},
	{"slow-read", 4, (*churnWorker).slowRead},
	{"own-ddl", 4, (*churnWorker).ownDDL},
	{"shared-ddl", 3, (*churnWorker).sharedDDL},
	{"copy", 5, (*churnWorker).copyIn},
	{"error", 5, (*churnWorker).sqlError},
	{"cancel", 2, (*churnWorker).cancel},
	{"idle", 10, (*churnWorker).idle},
}

func (w *churnWorker) run(ctx context.Context, stop time.Time) {
	total := 0
	for _, op := range churnOps {
		total += op.weight
	}
	w.ops = map[string]int{}
	for time.Now().Before(stop) {
		k := w.rng.Intn(total)
		for _, op := range churnOps {
			if k -= op.weight; k < 0 {
				w.trail = append(w.trail, op.name)
				if len(w.trail) > 12 {
					w.trail = w.trail[1:]
				}
				// No operation takes seconds: one that does hangs.
				octx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err := op.do(w, octx)
				cancel()
				if err != nil {
					w.err = fmt.Errorf("%s: %w", op.name, err)
					return
				}
				w.ops[op.name]++
				break
			}
		}
	}
}

func (w *churnWorker) ids(n int) []int64 {
	ids := make([]int64, n)
	for i := range ids {
		w.next++
		ids[i] = int64(w.id)<<32 | w.next
	}
	return ids
}

func (w *churnWorker) echo(ctx context.Context) error {
	a, s := w.rng.Int63(), strings.Repeat("e", w.rng.Intn(3000))
	var ga int64
	var gs string
	if err := w.conn.QueryRow(ctx, "SELECT $1::int8, $2::text", a, s).Scan(&ga, &gs); err != nil {
		return err
	}
	if ga != a || gs != s {
		return fmt.Errorf("sent %d and %d bytes, got %d and %d bytes", a, len(s), ga, len(gs))
	}
	return nil
}

func (w *churnWorker) simpleMulti(ctx context.Context) error {
	a := w.rng.Intn(1 << 30)
	res, err := w.conn.PgConn().Exec(ctx, fmt.Sprintf("SELECT %d; SELECT %d, 'b'; SELECT count(*) FROM %s WHERE id < 0", a, a+1, w.table)).ReadAll()
	if err != nil {
		return err
	}
	if len(res) != 3 || len(res[0].Rows) != 1 || string(res[0].Rows[0][0]) != fmt.Sprint(a) ||
		len(res[1].Rows) != 1 || string(res[1].Rows[0][0]) != fmt.Sprint(a+1) || string(res[1].Rows[0][1]) != "b" ||
		len(res[2].Rows) != 1 || string(res[2].Rows[0][0]) != "0" {
		return fmt.Errorf("unexpected results for %d: %d result sets", a, len(res))
	}
	return nil
}

func (w *churnWorker) pipeline(ctx context.Context) error {
	ids := w.ids(3)
	b := &pgx.Batch{}
	b.Queue("SELECT $1::int8", ids[0])
	for _, id := range ids {
		b.Queue("INSERT INTO "+w.table+" (id, note) VALUES ($1, 'pipeline')", id)
	}
	b.Queue("SELECT count(*) FROM " + w.table + " WHERE note = 'pipeline'")
	br := w.conn.SendBatch(ctx, b)
	var echo int64
	if err := br.QueryRow().Scan(&echo); err != nil {
		br.Close()
		return err
	}
	var errs []error
	for range ids {
		_, err := br.Exec()
		errs = append(errs, err)
	}
	var n int64
	errs = append(errs, br.QueryRow().Scan(&n), br.Close())
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, id := range ids {
		w.committed[id] = true // each an implicit transaction, all succeeded
	}
	if echo != ids[0] {
		return fmt.Errorf("echo %d, want %d", echo, ids[0])
	}
	// The count covers every pipeline row committed so far.
	var want int64
	if err := w.conn.QueryRow(ctx, "SELECT count(*) FROM "+w.table+" WHERE note = 'pipeline'").Scan(&want); err != nil {
		return err
	}
	if n != want {
		return fmt.Errorf("the pipeline's count %d, a later one %d", n, want)
	}
	return nil
}

func (w *churnWorker) tx(ctx context.Context) error {
	ids := w.ids(1 + w.rng.Intn(4))
	tx, err := w.conn.Begin(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if _, err := tx.Exec(ctx, "INSERT INTO "+w.table+" (id, note) VALUES ($1, 'tx')", id); err != nil {
			tx.Rollback(ctx)
			return err
		}
	}
	if w.rng.Intn(4) == 0 {
		return tx.Rollback(ctx)
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	for _, id := range ids {
		w.committed[id] = true
	}
	return nil
}

// slowRead reads a result of megabytes with pauses, so that lockguard finds
// the client's socket full and the session leaves the loop.
func (w *churnWorker) slowRead(ctx context.Context) error {
	n, width := 4000+w.rng.Intn(8000), 1000
	rows, err := w.conn.Query(ctx, fmt.Sprintf("SELECT i, repeat(chr(65 + i %% 26), %d) FROM generate_series(1, %d) i", width, n))
	if err != nil {
		return err
	}
	defer rows.Close()
	got := 0
	for rows.Next() {
		got++
		var i int
		var s string
		if err := rows.Scan(&i, &s); err != nil {
			return err
		}
		if i != got || len(s) != width || s[0] != byte(65+i%26) || s[width-1] != s[0] {
			return fmt.Errorf("row %d: got i=%d, %d bytes", got, i, len(s))
		}
		if got == 1 || got%1500 == 0 {
			time.Sleep(time.Duration(20+w.rng.Intn(30)) * time.Millisecond)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if got != n {
		return fmt.Errorf("got %d rows, want %d", got, n)
	}
	return nil
}

// ownDDL alters the worker's own table: the guard waits for the session's
// statements in flight before it, so the session leaves the loop.
func (w *churnWorker) ownDDL(ctx context.Context) error {
	col := fmt.Sprintf("c%d", w.rng.Intn(1000))
	if _, err := w.conn.Exec(ctx, "ALTER TABLE "+w.table+" ADD COLUMN "+col+" int"); err != nil {
		return err
	}
	var n int
	if err := w.conn.QueryRow(ctx, "SELECT count(*) FROM information_schema.columns WHERE table_name = $1 AND column_name = $2", w.table, col).Scan(&n); err != nil {
		return err
	}
	if n != 1 {
		return fmt.Errorf("column %s: %d after ADD COLUMN", col, n)
	}
	_, err := w.conn.Exec(ctx, "ALTER TABLE "+w.table+" DROP COLUMN "+col)
	return err
}

// churnLongHold is how long the direct reader sometimes holds its lock on
// the shared table: longer than the attempts of startGuardedWith's guard
// (4 of 300 ms, 100–200 ms apart) take.
const churnLongHold = 3 * time.Second

// sharedDDL alters the table that the direct reader and the other workers
// use: it may be held or retried. lockguard may also give up (55P03, with
// a message that names lockguard); the session goes on.
func (w *churnWorker) sharedDDL(ctx context.Context) error {
	col := fmt.Sprintf("w%d", w.id)
	for _, sql := range []string{
		"ALTER TABLE " + w.shared + " ADD COLUMN IF NOT EXISTS " + col + " int",
		"ALTER TABLE " + w.shared + " DROP COLUMN IF EXISTS " + col,
	} {
		if _, err := w.conn.Exec(ctx, sql); err != nil {
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "55P03" {
				return err
			}
			if !strings.HasPrefix(pe.Message, "lockguard: gave up waiting for ") || pe.Detail == "" || pe.Hint == "" {
				return fmt.Errorf("55P03 that is not lockguard's giving up: %q (detail %q, hint %q)", pe.Message, pe.Detail, pe.Hint)
			}
			w.ops["shared-ddl-55P03"]++
		}
	}
	return w.echo(ctx)
}

func (w *churnWorker) copyIn(ctx context.Context) error {
	ids := w.ids(1 + w.rng.Intn(200))
	src := make([][]any, len(ids))
	for i, id := range ids {
		src[i] = []any{id, strings.Repeat("c", w.rng.Intn(200))}
	}
	n, err := w.conn.CopyFrom(ctx, pgx.Identifier{w.table}, []string{"id", "note"}, pgx.CopyFromRows(src))
	if err != nil {
		return err
	}
	if int(n) != len(ids) {
		return fmt.Errorf("COPY reported %d rows, sent %d", n, len(ids))
	}
	for _, id := range ids {
		w.committed[id] = true
	}
	return nil
}

func (w *churnWorker) sqlError(ctx context.Context) error {
	_, err := w.conn.Exec(ctx, "SELECT 1 / (random() * 0)::int")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "22012" {
		return fmt.Errorf("want division_by_zero, got %v", err)
	}
	return w.echo(ctx)
}

// cancel cancels a running statement through lockguard (a CancelRequest on
// a new connection, which lockguard relays to the session's backend).
func (w *churnWorker) cancel(ctx context.Context) error {
	// Cancels until the statement ends: on a loaded machine the first one
	// may come before the statement reached PostgreSQL. A cancel that
	// finds the backend idle does nothing, and each has been delivered
	// when CancelRequest returns, so none reaches the next statement.
	done, sent := make(chan struct{}), make(chan error, 1)
	first := time.Duration(30+w.rng.Intn(50)) * time.Millisecond
	go func() {
		for wait := first; ; wait = 100 * time.Millisecond {
			select {
			case <-done:
				sent <- nil
				return
			case <-time.After(wait):
			}
			if err := w.conn.PgConn().CancelRequest(ctx); err != nil {
				sent <- err
				return
			}
		}
	}()
	_, err := w.conn.Exec(ctx, "SELECT pg_sleep(10)")
	close(done)
	if cerr := <-sent; cerr != nil {
		return fmt.Errorf("CancelRequest: %w", cerr)
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" {
		return fmt.Errorf("want query_canceled, got %v", err)
	}
	return w.echo(ctx)
}

func (w *churnWorker) idle(ctx context.Context) error {
	time.Sleep(time.Duration(w.rng.Intn(25)) * time.Millisecond)
	return nil
}
