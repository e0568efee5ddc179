package test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/internal/enforce"
	"github.com/lockguard/lockguard/proxy"
)

// The event loop relays every session on one goroutine (proxy/loop_linux.go).
// A session that must wait leaves it; these tests check that the sessions
// left in it keep moving meanwhile, that the one that left goes on
// correctly, and that it goes back to the loop once it is idle again.
// Without the hand-off, the loop would wait with the session: every other
// session would stall, and a retried DDL would never see its own result
// (which the loop must read), so it would hang.

func requireEventLoop(t *testing.T) {
	t.Helper()
	if testEventLoops == 0 {
		t.Skip("event loops are off (LOCKGUARD_TEST_EVENT_LOOPS=0)")
	}
}

// assertQuick runs SELECT 1 on conn n times and fails if one takes longer
// than limit.
func assertQuick(t *testing.T, conn *pgx.Conn, n int, limit time.Duration) {
	t.Helper()
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		_, err := conn.Exec(ctx, "SELECT 1")
		cancel()
		if err != nil {
			t.Fatalf("bystander query %d: %v", i, err)
		}
		if d := time.Since(start); d > limit {
			t.Fatalf("bystander query %d took %v (limit %v): the event loop stalled", i, d, limit)
		}
	}
}

func TestEventLoopRetriedDDLLeavesLoop(t *testing.T) {
	requireEventLoop(t)
	// With a catalog the guard hands the session off before it evaluates
	// the DDL (the policy may query the catalog); without one, the proxy
	// does before it retries.
	for _, withCatalog := range []bool{true, false} {
		t.Run(fmt.Sprintf("catalog=%v", withCatalog), func(t *testing.T) {
			testRetriedDDLLeavesLoop(t, withCatalog)
		})
	}
}

func testRetriedDDLLeavesLoop(t *testing.T, withCatalog bool) {
	lg := startGuarded(t, func(g *enforce.Guard) {
		g.Backoff = guard.Backoff{Attempts: 50, Base: 50 * time.Millisecond, Cap: 100 * time.Millisecond, Deadline: 30 * time.Second}
		if !withCatalog {
			g.Analyzer = guard.NewAnalyzer(nil, 1000)
		}
	})
	ctx := ctxT(t, 60*time.Second)
	tbl := createTable(t, ctx, "looped", "id int")

	migrator := connect(t, lg.superDSN())
	bystander := connect(t, lg.superDSN())
	waitFor(t, 5*time.Second, func() bool { return lg.srv.Stats().InLoop == 2 })
	before, backBefore := lg.srv.Stats().LeftLoop, lg.srv.Stats().BackInLoop

	_, release := holdLock(t, tbl)
	done := make(chan error, 1)
	go func() {
		_, err := migrator.Exec(ctx, "ALTER TABLE "+tbl+" ADD COLUMN note text")
		done <- err
	}()
	// The DDL is retried (lock_timeout 300 ms per attempt): its session
	// leaves the loop before the first attempt.
	waitFor(t, 5*time.Second, func() bool { return lg.srv.Stats().LeftLoop == before+1 })
	if st := lg.srv.Stats(); st.InLoop != 1 {
		t.Fatalf("sessions in the loop while the DDL waits: %d, want 1 (the bystander)", st.InLoop)
	}
	// Several attempts run meanwhile; the bystander is never held up.
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		assertQuick(t, bystander, 5, 250*time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("the DDL ended while the lock was held: %v", err)
	default:
	}
	release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the DDL failed after the blocker ended: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the retried DDL did not finish after the blocker ended")
	}
	// With nothing to read, the session goes back to the loop, and goes
	// on there.
	waitFor(t, 5*time.Second, func() bool {
		st := lg.srv.Stats()
		return st.InLoop == 2 && st.BackInLoop == backBefore+1
	})
	var n int
	if err := migrator.QueryRow(ctx, "SELECT count(*) FROM information_schema.columns WHERE table_name = $1 AND column_name = 'note'", tbl).Scan(&n); err != nil || n != 1 {
		t.Fatalf("after the DDL: column count %d, err %v", n, err)
	}
	assertQuick(t, bystander, 5, 250*time.Millisecond)
	// A second DDL, with nothing in its way. The session leaves the loop
	// again (before a DDL it may retry, the guard waits for the session's
	// statements in flight; with a catalog, it leaves even before the
	// guard evaluates the DDL), and the direction that leaves goes on at
	// once on the loop's goroutine: it must not take the stop of the first
	// return for its own, or the other direction waits alone for good.
	wantLeft, wantBack := before+2, backBefore+2
	if _, err := migrator.Exec(ctx, "ALTER TABLE "+tbl+" ADD COLUMN note2 text"); err != nil {
		t.Fatalf("the second DDL: %v", err)
	}
	for range 3 {
		if _, err := migrator.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatalf("after the second DDL: %v", err)
		}
	}
	waitFor(t, 5*time.Second, func() bool {
		st := lg.srv.Stats()
		return st.InLoop == 2 && st.BackInLoop == wantBack
	})
	// The DDL emptied the analysis cache; transaction control is analysed
	// again without the catalog, so the bystander stays in the loop.
	tx, err := bystander.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT count(*) FROM "+tbl); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if st := lg.srv.Stats(); st.InLoop != 2 || st.LeftLoop != wantLeft || st.BackInLoop != wantBack {
		t.Fatalf("stats after: %+v, want InLoop 2, LeftLoop %d and BackInLoop %d", st, wantLeft, wantBack)
	}
}

func TestEventLoopSlowClientLeavesLoop(t *testing.T) {
	requireEventLoop(t)
	lg := startLockguard(t, nil)
	ctx := ctxT(t, 60*time.Second)
	reader := connect(t, lg.superDSN())
	bystander := connect(t, lg.superDSN())
	waitFor(t, 5*time.Second, func() bool { return lg.srv.Stats().InLoop == 2 })
	before, backBefore := lg.srv.Stats().LeftLoop, lg.srv.Stats().BackInLoop

	// Twice: a session that went back to the loop can leave it again.
	for round := uint64(1); round <= 2; round++ {
		// 40 MB of rows, far more than the sockets buffer: while the
		// client does not read, lockguard's write to it finds the socket
		// full.
		const rows, width = 40000, 1000
		rs, err := reader.Query(ctx, fmt.Sprintf("SELECT i, repeat('x', %d) FROM generate_series(1, %d) i", width, rows))
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, func() bool { return lg.srv.Stats().LeftLoop == before+round })
		assertQuick(t, bystander, 20, 250*time.Millisecond)

		// Every row arrives, whole and in order.
		n := 0
		for rs.Next() {
			var i int
			var s string
			if err := rs.Scan(&i, &s); err != nil {
				t.Fatal(err)
			}
			n++
			if i != n || len(s) != width || strings.Trim(s, "x") != "" {
				t.Fatalf("round %d, row %d: got i=%d and %d bytes", round, n, i, len(s))
			}
		}
		if err := rs.Err(); err != nil {
			t.Fatal(err)
		}
		if n != rows {
			t.Fatalf("round %d: got %d rows, want %d", round, n, rows)
		}
		// Read to the end, the session goes back to the loop (once: not
		// in the middle of the result), and goes on there.
		waitFor(t, 5*time.Second, func() bool {
			st := lg.srv.Stats()
			return st.InLoop == 2 && st.BackInLoop == backBefore+round
		})
		assertQuick(t, reader, 3, time.Second)
		if st := lg.srv.Stats(); st.InLoop != 2 || st.LeftLoop != before+round || st.BackInLoop != backBefore+round {
			t.Fatalf("round %d, stats after: %+v, want InLoop 2, LeftLoop %d and BackInLoop %d", round, st, before+round, backBefore+round)
		}
	}
}

func TestEventLoopClosedFromOutside(t *testing.T) {
	requireEventLoop(t)
	// Shutdown closes idle sessions from another goroutine, which epoll
	// does not report: the loop must still let them end, with 57P01.
	lg := startLockguard(t, nil)
	conns := make([]*pgx.Conn, 0, 3)
	for range 3 {
		conns = append(conns, connect(t, lg.superDSN()))
	}
	waitFor(t, 5*time.Second, func() bool { return lg.srv.Stats().InLoop == 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := lg.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with idle looped sessions: %v", err)
	}
	if st := lg.srv.Stats(); st.Active != 0 || st.InLoop != 0 {
		t.Fatalf("after shutdown: %+v", st)
	}
	for i, c := range conns {
		_, err := c.Exec(ctx, "SELECT 1")
		var pe *pgconn.PgError
		if err == nil || (errors.As(err, &pe) && pe.Code != "57P01") {
			t.Errorf("session %d after shutdown: %v, want 57P01 or a closed connection", i, err)
		}
	}
}

func TestEventLoopBatchesIO(t *testing.T) {
	requireEventLoop(t)
	// Sessions that are busy at once: the loop reads what a round of events
	// reports with one io_uring_enter, and sends what the round produced
	// with another. With NoIOUring, or where io_uring is not available, it
	// reads and writes each socket itself.
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprintf("plain=%v", plain), func(t *testing.T) {
			lg := startLockguard(t, func(c *proxy.Config) { c.NoIOUring = plain })
			ctx := ctxT(t, 60*time.Second)
			const sessions, queries = 8, 300
			conns := make([]*pgx.Conn, sessions)
			for i := range conns {
				conns[i] = connect(t, lg.superDSN())
			}
			waitFor(t, 5*time.Second, func() bool { return lg.srv.Stats().InLoop == sessions })
			errs := make(chan error, sessions)
			for i, c := range conns {
				go func() {
					for q := range queries {
						var got int
						if err := c.QueryRow(ctx, "SELECT $1::int + 1", q).Scan(&got); err != nil || got != q+1 {
							errs <- fmt.Errorf("session %d, query %d: got %d, %v", i, q, got, err)
							return
						}
					}
					errs <- nil
				}()
			}
			for range sessions {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			st := lg.srv.Stats()
			t.Logf("%d io_uring_enter calls carried %d sends and %d receives", st.RingEnters, st.RingSends, st.RingRecvs)
			if plain {
				if st.RingEnters != 0 {
					t.Fatalf("NoIOUring, yet %d io_uring_enter calls", st.RingEnters)
				}
				return
			}
			if st.RingEnters == 0 {
				if !ioUringAvailable() {
					t.Skip("io_uring is not available here")
				}
				t.Fatal("io_uring is available, yet the loop wrote every message with write(2)")
			}
			// Every query is a write each way and a read each way. A round
			// with a single one makes a plain system call instead; with 8
			// busy sessions on a few cores most rounds have more.
			if want := uint64(2 * sessions * queries / 4); st.RingSends < want || st.RingRecvs < want {
				t.Fatalf("%d sends and %d receives went through io_uring, want at least %d of each", st.RingSends, st.RingRecvs, want)
			}
			if st.RingSends+st.RingRecvs <= st.RingEnters {
				t.Fatalf("no io_uring_enter carried more than one operation: %+v", st)
			}
			if st.LeftLoop != 0 {
				t.Fatalf("sessions left the loop: %+v", st)
			}
		})
	}
}

// ioUringAvailable reports whether this process may set up an io_uring
// (kernels before 5.1, kernel.io_uring_disabled and seccomp profiles refuse).
func ioUringAvailable() bool {
	var params [120]byte                                                        // struct io_uring_params
	fd, _, e := syscall.Syscall(425, 1, uintptr(unsafe.Pointer(&params[0])), 0) // io_uring_setup
	if e != 0 {
		return false
	}
	syscall.Close(int(fd))
	return true
}

// While every session is in the loop, the loop waits for events without
// giving up its P (proxy runner.wait), which cuts the latency it adds at one
// client (bench/compare/README.md). A session that goroutines
// relay (here a TLS one) may need that P, so the loop then waits in the
// runtime's system call state again.
func TestEventLoopHoldsItsPOnlyWhenAllSessionsAreIn(t *testing.T) {
	requireEventLoop(t)
	if runtime.GOMAXPROCS(0) <= testEventLoops {
		t.Skipf("GOMAXPROCS %d leaves no P besides the event loops' %d", runtime.GOMAXPROCS(0), testEventLoops)
	}
	lg := startLockguard(t, withClientTLS(t))
	ctx := ctxT(t, 30*time.Second)
	plain := connect(t, lg.superDSN())
	roundTrips := func() uint64 {
		t.Helper()
		// A wait the loop began before the session count changed lasts
		// until the next event and is counted when it ends: one round
		// trip first ends it, outside the count.
		if _, err := plain.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		before := lg.srv.Stats().HeldWaits
		for range 200 {
			if _, err := plain.Exec(ctx, "SELECT 1"); err != nil {
				t.Fatal(err)
			}
		}
		return lg.srv.Stats().HeldWaits - before
	}
	waitFor(t, 5*time.Second, func() bool { st := lg.srv.Stats(); return st.InLoop == 1 && st.Active == 1 })
	// Each round trip waits for the server's answer holding the P, except
	// the wait after the runtime interrupted one (a preemption every 10 ms
	// of running, a garbage collection).
	if held := roundTrips(); held < 20 {
		t.Fatalf("held waits over 200 round trips with every session in the loop: %d, want at least 20", held)
	}

	tlsConn := connect(t, lg.superDSN("sslmode", "verify-full", "sslrootcert", pg.CAFile))
	if _, isTLS := tlsConn.PgConn().Conn().(*tls.Conn); !isTLS {
		t.Fatal("the second session is not TLS")
	}
	waitFor(t, 5*time.Second, func() bool { st := lg.srv.Stats(); return st.InLoop == 1 && st.Active == 2 })
	if held := roundTrips(); held != 0 {
		t.Fatalf("held waits while a TLS session relays with goroutines: %d, want 0", held)
	}

	if err := tlsConn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return lg.srv.Stats().Active == 1 })
	if held := roundTrips(); held < 20 {
		t.Fatalf("held waits after the TLS session ended: %d, want at least 20", held)
	}
}

// TestEventLoopStopsHoldingWhenGOMAXPROCSDrops: GOMAXPROCS can change while
// lockguard runs (the runtime follows a container's CPU limit). A loop that
// held the only P would stall every round trip until the runtime's monitor
// interrupted it (about 40 ms each, measured before the fix); the loop reads
// GOMAXPROCS again, stops holding while no P is left for the rest, and holds
// again when there is.
func TestEventLoopStopsHoldingWhenGOMAXPROCSDrops(t *testing.T) {
	requireEventLoop(t)
	procs := runtime.GOMAXPROCS(0)
	if procs <= testEventLoops {
		t.Skipf("GOMAXPROCS %d leaves no P besides the event loops' %d", procs, testEventLoops)
	}
	lg := startLockguard(t, nil)
	ctx := ctxT(t, 60*time.Second)
	conn := connect(t, lg.superDSN())
	roundTrips := func(n int) (uint64, time.Duration) {
		t.Helper()
		before, start := lg.srv.Stats().HeldWaits, time.Now()
		for range n {
			if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
				t.Fatal(err)
			}
		}
		return lg.srv.Stats().HeldWaits - before, time.Since(start)
	}
	waitFor(t, 5*time.Second, func() bool { st := lg.srv.Stats(); return st.InLoop == 1 && st.Active == 1 })
	if held, _ := roundTrips(200); held < 20 {
		t.Fatalf("held waits over 200 round trips: %d, want at least 20", held)
	}

	runtime.GOMAXPROCS(testEventLoops)
	defer runtime.GOMAXPROCS(procs)
	held, took := roundTrips(200)
	t.Logf("200 round trips at GOMAXPROCS %d: %v, %d held waits", testEventLoops, took, held)
	if held > 2 {
		t.Fatalf("the loop went on holding its P after GOMAXPROCS fell to %d: %d held waits over 200 round trips (%v), want at most 2 "+
			"(the one the runtime interrupts before the loop reads GOMAXPROCS again)", testEventLoops, held, took)
	}

	runtime.GOMAXPROCS(procs)
	// GOMAXPROCS is read every holdCheckEvery (1024) waits: two per round trip.
	if held, _ := roundTrips(1500); held < 20 {
		t.Fatalf("held waits after GOMAXPROCS rose back to %d: %d over 1500 round trips, want at least 20", procs, held)
	}
}
