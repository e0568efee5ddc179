// Package pgmonitor reads the live lock state of PostgreSQL on a side
// connection and publishes it as guard hazards, so that locks taken by
// sessions that do not go through lockguard count too.
//
// It polls pg_locks joined with pg_stat_activity: slowly (Idle, default 1 s)
// while no strong lock is held or awaited, and quickly (Busy, default 100 ms)
// while one is. Only pending requests and granted locks that block writes (SHARE and
// stronger) are reported, and only those in the side connection's database:
// relation OIDs name tables only within their database's catalog.
package pgmonitor

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lockguard/lockguard/guard"
)

// Monitor polls PostgreSQL's lock table.
type Monitor struct {
	Pool  *pgxpool.Pool
	Board *guard.Board
	// Idle and Busy are the poll intervals without and with waiters;
	// SetIntervals changes them while Run runs.
	Idle, Busy time.Duration
	// ServerVersion is server_version_num; pg_locks.waitstart exists from
	// 140000 on. 0 assumes it does.
	ServerVersion int
	Logger        *slog.Logger

	mu sync.Mutex // Idle and Busy once Run runs
}

// SetIntervals changes the poll intervals (a reload); the next wait uses
// them.
func (m *Monitor) SetIntervals(idle, busy time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Idle, m.Busy = idle, busy
}

// intervals returns the poll intervals, with defaults for unset ones.
func (m *Monitor) intervals() (idle, busy time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	idle, busy = m.Idle, m.Busy
	if idle <= 0 {
		idle = time.Second
	}
	if busy <= 0 {
		busy = 100 * time.Millisecond
	}
	return idle, busy
}

const locksQuery = `
SELECT l.pid, l.mode, l.granted, n.nspname, c.relname,
       coalesce(a.state, ''), coalesce(a.query, ''), coalesce(a.application_name, ''),
       coalesce(a.usename::text, ''), coalesce(host(a.client_addr), ''),
       a.xact_start, l.waitstart,
       CASE WHEN l.granted THEN NULL ELSE pg_blocking_pids(l.pid) END,
       clock_timestamp(), current_database()
FROM pg_locks l
JOIN pg_class c ON c.oid = l.relation
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation'
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND c.relkind IN ('r', 'p', 'm', 'f')
  AND l.pid IS NOT NULL AND l.pid <> pg_backend_pid()
  AND (NOT l.granted OR l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock'))`

// Run polls until ctx is done.
func (m *Monitor) Run(ctx context.Context) {
	log := m.Logger
	if log == nil {
		log = slog.Default()
	}
	var lastErr string
	fresh := m.Board.FreshRequests()
	for {
		began := time.Now()
		hs, err := m.Poll(ctx)
		idle, busy := m.intervals()
		wait := idle
		if err != nil {
			if ctx.Err() != nil {
				m.Board.SetMonitored(nil)
				return
			}
			if err.Error() != lastErr {
				log.Warn("lock monitor query failed", "err", err)
				lastErr = err.Error()
			}
		} else {
			lastErr = ""
			m.Board.SetMonitoredAt(hs, began)
			if len(hs) > 0 {
				// Something is held or awaited: look again soon, both to
				// see waiters quickly and so that a lock released in the
				// meantime does not shed statements for a whole idle
				// interval.
				wait = busy
			}
		}
		if sleep(ctx, wait, fresh) {
			// A statement waits in lockguard on what this reading
			// found, and a lock released since would shed it for
			// nothing: read again, FreshGap after this reading began.
			sleep(ctx, FreshGap-time.Since(began), nil)
		}
		if ctx.Err() != nil {
			m.Board.SetMonitored(nil)
			return
		}
	}
}

// sleep waits for d, or until wake signals (it then reports true), or
// until ctx is done.
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) (woken bool) {
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-wake:
		return true
	}
	return false
}

// FreshGap is the least time between the starts of two readings of
// pg_locks that statements held in lockguard ask for (Board.RequestFresh):
// while a lock is held or awaited and statements wait on it, the monitor
// reads pg_locks at most 50 times a second.
const FreshGap = 20 * time.Millisecond

// Poll reads the hazards once.
func (m *Monitor) Poll(ctx context.Context) ([]guard.Hazard, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	q := locksQuery
	if m.ServerVersion != 0 && m.ServerVersion < 140000 {
		q = strings.Replace(q, "l.waitstart", "NULL::timestamptz", 1)
	}
	rows, err := m.Pool.Query(ctx, q, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, fmt.Errorf("reading pg_locks: %w", err)
	}
	defer rows.Close()
	var out []guard.Hazard
	for rows.Next() {
		var h guard.Hazard
		var mode string
		var xact, wait *time.Time
		var blockedBy []int32
		var serverNow time.Time
		if err := rows.Scan(&h.PID, &mode, &h.Granted, &h.Rel.Schema, &h.Rel.Name, &h.State, &h.Query,
			&h.Application, &h.User, &h.Client, &xact, &wait, &blockedBy, &serverNow, &h.Database); err != nil {
			return nil, err
		}
		// The server's timestamps on lockguard's clock: the two hosts'
		// clocks may differ, and waits are measured against time.Now.
		skew := time.Since(serverNow)
		for _, b := range blockedBy {
			h.BlockedBy = append(h.BlockedBy, int(b))
		}
		lm, err := guard.ParseLockMode(mode)
		if err != nil {
			continue
		}
		h.Mode = lm
		h.Source = "monitor"
		h.Query = guard.Sanitize(h.Query)
		if xact != nil {
			h.XactStart = xact.Add(skew)
		}
		if wait != nil {
			h.WaitStart = wait.Add(skew)
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// HeldBy reports whether backend pid holds any lock on rel (granted), for the
// exception PostgreSQL makes: a backend that already holds a lock on a table
// is not queued behind waiters on it. rel is looked up in the pool's
// database; for a backend in another database (db) it reports false.
func HeldBy(ctx context.Context, pool *pgxpool.Pool, pid int, db string, rel guard.RelName) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	name := pgx.Identifier{rel.Name}.Sanitize()
	if rel.Schema != "" {
		name = pgx.Identifier{rel.Schema, rel.Name}.Sanitize()
	}
	var held bool
	err := pool.QueryRow(ctx, `SELECT current_database() = $3 AND EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND granted
		AND locktype = 'relation' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND relation = to_regclass($2))`, pid, name, db).Scan(&held)
	return held, err
}
