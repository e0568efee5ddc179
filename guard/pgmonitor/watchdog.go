package pgmonitor

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lockguard/lockguard/guard"
)

// Watchdog actions, in increasing force.
const (
	WatchOff       = "off"
	WatchWarn      = "warn"      // log who blocks and why
	WatchCancel    = "cancel"    // also cancel a statement running past RunBudget
	WatchTerminate = "terminate" // also end a session idle in its transaction past IdleBudget
)

// Watchdog does what the on-call engineer did by hand in the incident
// lockguard exists for: it finds the sessions that others wait behind — idle
// in a transaction longer than IdleBudget, or running one statement longer
// than RunBudget — and warns, cancels or terminates them as Action says.
// Cancelling does nothing to an idle session, so only "terminate" ends one.
type Watchdog struct {
	Pool  *pgxpool.Pool
	Board *guard.Board
	// Action is one of WatchOff, WatchWarn, WatchCancel, WatchTerminate;
	// Set changes it and the budgets while Run runs.
	Action     string
	IdleBudget time.Duration
	RunBudget  time.Duration
	Logger     *slog.Logger
	// OnAction, when set, is told of each warning or action (warn, cancel,
	// terminate) and whether it was done, after it is logged.
	OnAction func(b Blocker, action, why string, done bool)

	acted map[actedOn]time.Time
	mu    sync.Mutex // Action, IdleBudget and RunBudget once Run runs
}

// watchSettings are what a Watchdog does and when.
type watchSettings struct {
	action    string
	idle, run time.Duration
}

// Set changes the action and budgets (a reload); the next check uses them.
// A watchdog turned off keeps running, idle, so that it can be turned on.
func (w *Watchdog) Set(action string, idleBudget, runBudget time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.Action, w.IdleBudget, w.RunBudget = action, idleBudget, runBudget
}

func (w *Watchdog) settings() watchSettings {
	w.mu.Lock()
	defer w.mu.Unlock()
	return watchSettings{w.Action, w.IdleBudget, w.RunBudget}
}

// actedOn is a session and what was done to it ("" for a warning).
type actedOn struct {
	pid int
	act string
}

func (ws watchSettings) off() bool { return ws.action == "" || ws.action == WatchOff }

// Blocker is a session that requests wait behind.
type Blocker struct {
	PID         int
	State       string
	User        string
	Application string
	Client      string
	Query       string // sanitized
	XactAge     time.Duration
	StateAge    time.Duration // how long it has been in State
	Waiters     int           // pending requests that wait for it
}

// Run checks on every board change (the monitor polls quickly while
// something waits) until ctx is done.
func (w *Watchdog) Run(ctx context.Context) {
	for {
		changed := w.Board.Changed()
		if err := w.Check(ctx); err != nil && ctx.Err() == nil {
			w.log().Warn("lock-holder watchdog failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(time.Second):
		}
	}
}

func (w *Watchdog) log() *slog.Logger {
	if w.Logger != nil {
		return w.Logger
	}
	return slog.Default()
}

// Check looks at the current hazards once and acts.
func (w *Watchdog) Check(ctx context.Context) error {
	ws := w.settings()
	if ws.off() {
		return nil
	}
	waiters := map[int]int{}
	waiting := map[int]bool{}
	for _, h := range w.Board.Snapshot().All() {
		if h.Granted {
			continue
		}
		waiting[h.PID] = true
		for _, b := range h.BlockedBy {
			waiters[b]++
		}
	}
	var pids []int32
	for pid := range waiters {
		if !waiting[pid] && pid != 0 { // a request queued ahead is not a holder; 0 is a prepared transaction
			pids = append(pids, int32(pid))
		}
	}
	if len(pids) == 0 {
		return nil
	}
	blockers, err := w.blockers(ctx, pids)
	if err != nil {
		return err
	}
	for _, b := range blockers {
		b.Waiters = waiters[b.PID]
		w.judge(ctx, ws, b)
	}
	return nil
}

func (w *Watchdog) blockers(ctx context.Context, pids []int32) ([]Blocker, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	rows, err := w.Pool.Query(ctx, `
SELECT pid, coalesce(state, ''), coalesce(usename::text, ''), coalesce(application_name, ''),
       coalesce(host(client_addr), ''), coalesce(query, ''),
       coalesce(extract(epoch FROM now() - xact_start), 0)::float8,
       coalesce(extract(epoch FROM now() - CASE WHEN state = 'active' THEN query_start ELSE state_change END), 0)::float8
FROM pg_stat_activity WHERE pid = ANY($1)`, pids)
	if err != nil {
		return nil, fmt.Errorf("reading blockers: %w", err)
	}
	defer rows.Close()
	var out []Blocker
	for rows.Next() {
		var b Blocker
		var xact, st float64
		if err := rows.Scan(&b.PID, &b.State, &b.User, &b.Application, &b.Client, &b.Query, &xact, &st); err != nil {
			return nil, err
		}
		b.Query = guard.Sanitize(b.Query)
		b.XactAge = time.Duration(xact * float64(time.Second))
		b.StateAge = time.Duration(st * float64(time.Second))
		out = append(out, b)
	}
	return out, rows.Err()
}

// judge decides about one blocker.
func (w *Watchdog) judge(ctx context.Context, ws watchSettings, b Blocker) {
	idle := b.State == "idle in transaction" || b.State == "idle in transaction (aborted)"
	var why, act string
	switch {
	case idle && ws.idle > 0 && b.StateAge >= ws.idle:
		why = fmt.Sprintf("idle in its transaction for %v (budget %v)", b.StateAge.Round(time.Millisecond), ws.idle)
		if ws.action == WatchTerminate {
			act = "terminate"
		}
	case b.State == "active" && ws.run > 0 && b.StateAge >= ws.run:
		why = fmt.Sprintf("running one statement for %v (budget %v)", b.StateAge.Round(time.Millisecond), ws.run)
		if ws.action == WatchCancel || ws.action == WatchTerminate {
			act = "cancel"
		}
	default:
		return
	}
	if w.acted == nil {
		w.acted = map[actedOn]time.Time{}
	}
	// A warning does not hold back an action a reload has since allowed.
	key := actedOn{b.PID, act}
	if t, ok := w.acted[key]; ok && time.Since(t) < 5*time.Second {
		return // said or done already
	}
	if len(w.acted) >= 1000 { // forget what is past its 5 s
		for k, t := range w.acted {
			if time.Since(t) >= 5*time.Second {
				delete(w.acted, k)
			}
		}
	}
	w.acted[key] = time.Now()
	attrs := []any{"pid", b.PID, "state", b.State, "user", b.User, "application", b.Application, "client", b.Client,
		"transaction_age", b.XactAge.Round(time.Millisecond), "waiters", b.Waiters, "why", why, "query", b.Query}
	if act == "" {
		w.log().Warn("lock holder blocks others", attrs...)
		if w.OnAction != nil {
			w.OnAction(b, "warn", why, true)
		}
		return
	}
	fn := "pg_cancel_backend"
	if act == "terminate" {
		fn = "pg_terminate_backend"
	}
	var ok bool
	err := w.Pool.QueryRow(ctx, "SELECT "+fn+"($1)", b.PID).Scan(&ok)
	attrs = append(attrs, "action", act, "done", ok && err == nil)
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	w.log().Warn("lock-holder watchdog acted", attrs...)
	if w.OnAction != nil {
		w.OnAction(b, act, why, ok && err == nil)
	}
}
