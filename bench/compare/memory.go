package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// memResult is the resident memory a proxy needs for idle client connections.
type memResult struct {
	proxy     string
	want      int   // connections asked for
	opened    int   // connections that were open when RSS was read
	before    int64 // VmRSS in KiB with no client connected
	after     int64 // VmRSS in KiB with the connections open and idle
	upstream  int   // PostgreSQL sessions the proxy opened for them
	openTime  time.Duration
	firstFail error // first connection that could not be opened
}

// perConn returns the added resident memory per open connection in KiB.
func (m *memResult) perConn() float64 {
	if m.opened == 0 {
		return 0
	}
	return float64(m.after-m.before) / float64(m.opened)
}

// measureIdle opens n connections through t's proxy, leaves them idle, and
// reads the proxy's VmRSS before and after. The connections only
// authenticate: a session-mode PgBouncer then holds no server connection for
// them, while lockguard holds one upstream session per client by design;
// upstream reports how many PostgreSQL sessions were open.
func measureIdle(ctx context.Context, t *target, n int, admin *pgx.Conn) memResult {
	m := memResult{proxy: t.name, want: n}
	pid := t.proc.pid()
	time.Sleep(500 * time.Millisecond) // let the proxy settle after earlier connections
	m.before, _ = statusKiB(pid, "VmRSS")
	base, _ := backends(ctx, admin)

	conns := make([]*pgconn.PgConn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	next := make(chan int)
	begin := time.Now()
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				conns[i], errs[i] = pgconn.Connect(ctx, t.dsn())
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	m.openTime = time.Since(begin)
	for i, c := range conns {
		if c != nil {
			m.opened++
		} else if m.firstFail == nil && errs[i] != nil {
			m.firstFail = errs[i]
		}
	}

	time.Sleep(time.Second) // idle: whatever a proxy does per idle connection, it has done it
	m.after, _ = statusKiB(pid, "VmRSS")
	if during, err := backends(ctx, admin); err == nil {
		m.upstream = during - base
	}

	closeAll(conns)
	waitBackends(ctx, admin, base, 30*time.Second)
	return m
}

func closeAll(conns []*pgconn.PgConn) {
	var wg sync.WaitGroup
	for _, c := range conns {
		if c == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c.Close(ctx)
		}()
	}
	wg.Wait()
}

// backends counts the client sessions in the bench database other than admin.
func backends(ctx context.Context, admin *pgx.Conn) (int, error) {
	var n int
	err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND datname = $1 AND pid <> pg_backend_pid()`, benchDB).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting sessions: %w", err)
	}
	return n, nil
}

// waitBackends waits until at most n client sessions remain in the bench
// database (for example after closing the idle connections, whose backends
// exit a little later), or until timeout.
func waitBackends(ctx context.Context, admin *pgx.Conn, n int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if got, err := backends(ctx, admin); err != nil || got <= n {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}
