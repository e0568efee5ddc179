package enforce

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/proxy"
)

// Admission keeps statements out of PostgreSQL's lock queue: a statement
// whose lock conflicts with a lock another session holds or waits for is
// held in lockguard up to HoldBudget and then shed with 55P03, instead of
// queueing (and pinning a backend) behind it.
type Admission struct {
	// Board is where the hazards are published (monitor and own DDL).
	Board *guard.Board
	// HoldBudget is how long a statement may wait in lockguard for the
	// hazard to clear; 0 sheds at once.
	HoldBudget time.Duration
	// MaxHeldPerRelation bounds the statements held at once per relation;
	// further ones are shed at once. 0 means 64.
	MaxHeldPerRelation int
	// HeldBy reports whether backend pid, whose session is in database db,
	// already holds a lock on rel; such a backend is not queued behind
	// waiters (PostgreSQL lets it pass). nil assumes it does not.
	HeldBy func(ctx context.Context, pid int, db string, rel guard.RelName) (bool, error)

	mu   sync.Mutex
	held map[string]int
	// sheds counts sheds per relation since the last log line about them:
	// at most one line per relation per second.
	sheds map[string]*shedCount
}

type shedCount struct {
	n    int
	last time.Time
}

// logShed counts a shed and reports whether to log now, with the count.
func (a *Admission) logShed(rel string) (int, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sheds == nil {
		a.sheds = make(map[string]*shedCount)
	}
	c := a.sheds[rel]
	if c == nil {
		c = &shedCount{}
		a.sheds[rel] = c
	}
	c.n++
	if time.Since(c.last) < time.Second {
		return 0, false
	}
	n := c.n
	c.n, c.last = 0, time.Now()
	return n, true
}

// HeldCounts returns how many statements are held now, per relation.
func (a *Admission) HeldCounts() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]int, len(a.held))
	for k, n := range a.held {
		if n > 0 {
			out[k] = n
		}
	}
	return out
}

// conflict is one lock of a statement that would queue behind a hazard.
type conflict struct {
	lock guard.RelationLock
	hz   guard.Hazard
}

// check returns the first lock of the statements that conflicts with a
// hazard in database db, or ok = false.
func (a *Admission) check(h *guard.Hazards, stmts []*guard.Statement, pid int, db string, path []string) (conflict, bool) {
	for _, st := range stmts {
		for _, l := range st.Locks {
			if hz, ok := h.Conflict(l.Rel, l.Mode, pid, db, path); ok {
				return conflict{lock: l, hz: hz}, true
			}
		}
	}
	return conflict{}, false
}

// hold returns the Verdict.Hold function for a batch that conflicts now.
// holdRecord tells the telemetry what a hold ran into.
type holdRecord struct {
	set    bool
	c      conflict
	reason string // a shed's reason when not the lock itself
}

func (a *Admission) hold(s *session, stmts []*guard.Statement, inTx bool, path []string, rec *holdRecord) func(ctx context.Context) *proxy.Error {
	pid := int(s.ps.BackendPID())
	return func(ctx context.Context) *proxy.Error {
		start := time.Now()
		var counted string
		defer func() {
			if counted != "" {
				a.mu.Lock()
				a.held[counted]--
				a.mu.Unlock()
			}
		}()
		for {
			changed := a.Board.Changed()
			snap := a.Board.Snapshot()
			c, ok := a.check(snap, stmts, pid, s.db, path)
			if ok && c.hz.Source == "monitor" && snap.Polled().Before(start) {
				// What the monitor read may have cleared since: ask for
				// a new reading rather than wait for its next poll.
				a.Board.RequestFresh()
			}
			if !ok {
				if counted != "" && s.log.Enabled(ctx, slog.LevelDebug) {
					s.lg().Debug("held statement admitted", "relation", counted, "held", time.Since(start).Round(time.Millisecond))
				}
				return nil
			}
			if inTx && a.HeldBy != nil {
				if held, err := a.HeldBy(ctx, pid, s.db, c.hz.Rel); err == nil && held {
					return nil
				}
			}
			if rec != nil {
				rec.set, rec.c = true, c
			}
			key := c.hz.Rel.String()
			if counted == "" {
				a.mu.Lock()
				if a.held == nil {
					a.held = make(map[string]int)
				}
				max := a.MaxHeldPerRelation
				if max <= 0 {
					max = 64
				}
				full := a.held[key] >= max
				if !full {
					a.held[key]++
					counted = key
				}
				a.mu.Unlock()
				if full {
					if rec != nil {
						rec.reason = "hold_limit"
					}
					return a.shed(s, c, time.Since(start), "too many statements are already held for this relation")
				}
			}
			left := a.HoldBudget - time.Since(start)
			if left <= 0 {
				return a.shed(s, c, time.Since(start), "")
			}
			t := time.NewTimer(left)
			select {
			case <-changed:
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				if proxy.CanceledByClient(ctx) {
					if rec != nil {
						rec.reason = "canceled"
					}
					return proxy.CanceledHeld
				}
				if rec != nil {
					rec.reason = "session_ended"
				}
				return a.shed(s, c, time.Since(start), "the session ended")
			}
			t.Stop()
		}
	}
}

// shed builds the refusal for a statement that would have queued.
func (a *Admission) shed(s *session, c conflict, held time.Duration, why string) *proxy.Error {
	hz := c.hz
	state := "waits for"
	if hz.Granted {
		state = "holds"
	}
	var d strings.Builder
	fmt.Fprintf(&d, "It needs %s on %s; pid %d %s %s on it", c.lock.Mode, hz.Rel, hz.PID, state, hz.Mode)
	if hz.Query != "" {
		fmt.Fprintf(&d, " (%s)", truncate(hz.Query, 160))
	}
	if !hz.WaitStart.IsZero() {
		fmt.Fprintf(&d, ", waiting for %v", time.Since(hz.WaitStart).Round(time.Millisecond))
	}
	if !hz.Granted && len(hz.BlockedBy) > 0 {
		// The session to look at: what the waiting DDL itself waits for.
		fmt.Fprintf(&d, " behind pid %s", pidList(hz.BlockedBy))
	}
	if !hz.XactStart.IsZero() {
		fmt.Fprintf(&d, ", its transaction open for %v", time.Since(hz.XactStart).Round(time.Millisecond))
	}
	fmt.Fprintf(&d, ". Held in lockguard for %v", held.Round(time.Millisecond))
	if why != "" {
		d.WriteString("; " + why)
	}
	d.WriteString(".")
	if n, ok := a.logShed(hz.Rel.String()); ok {
		attrs := []any{"relation", hz.Rel.String(), "count", n, "mode", c.lock.Mode.String(), "blocking_pid", hz.PID,
			"blocking_mode", hz.Mode.String(), "blocking_granted", hz.Granted, "held", held.Round(time.Millisecond)}
		if !hz.Granted && len(hz.BlockedBy) > 0 {
			attrs = append(attrs, "blocking_pid_waits_for", pidList(hz.BlockedBy))
		}
		s.lg().Info("statements shed", attrs...)
	}
	return &proxy.Error{Code: guard.CodeLockNotAvailable,
		Message: fmt.Sprintf("lockguard: shed a statement that would wait behind a lock on %s", hz.Rel),
		Detail:  d.String(),
		Hint:    "Retry shortly. lockguard refused to join PostgreSQL's lock queue so that this connection stays free while the lock is held or awaited; inside a transaction block this error aborts the transaction like any other."}
}

// pidList renders pids as "12, 34".
func pidList(pids []int) string {
	var b strings.Builder
	for i, p := range pids {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, p)
	}
	return b.String()
}

// ownHazards are the hazards a DDL lockguard forwards creates until it
// completes: its strong locks, as pending requests of its backend, whose
// session is in database db.
func ownHazards(stmts []*guard.Statement, pid int, db, query string) []guard.Hazard {
	var hs []guard.Hazard
	for _, st := range stmts {
		if !blocksTraffic(st) {
			continue
		}
		for _, l := range st.Locks {
			if l.Mode >= guard.Share && l.Rel.Name != "" {
				hs = append(hs, guard.Hazard{Rel: l.Rel, Database: db, Mode: l.Mode, PID: pid, Source: "proxy",
					Query: query}) // waiting from when ownHazard.add puts it on the board
			}
		}
	}
	return hs
}

// Yield makes a waiting DDL give way: when requests queue behind it in
// PostgreSQL (seen by the monitor: sessions that bypass lockguard, or that
// were already waiting), past either threshold, the DDL is cancelled and
// retried with backoff like a DDL that hit its lock timeout.
type Yield struct {
	// Waiters is the queue length that makes a DDL yield; 0 means never
	// by count.
	Waiters int
	// Wait is the longest wait of a request queued behind the DDL that
	// makes it yield; 0 means never by time.
	Wait time.Duration
}

// watchYield cancels the statement of session s when too much queues
// behind it, until ctx is done. It reports through s.yielded.
func (g *Guard) watchYield(ctx context.Context, s *session, rels []guard.RelName) {
	a, y := g.Admission, g.Yield
	if a == nil || (y.Waiters <= 0 && y.Wait <= 0) {
		return
	}
	pid := int(s.ps.BackendPID())
	// The attempt the watch is for is sent about now: requests that
	// queued behind an earlier attempt (cancelled to yield, they ran at
	// once) do not count, though the monitor may still show them.
	armed := time.Now()
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-a.Board.Changed():
			case <-tick.C:
			}
			if ctx.Err() != nil {
				// The DDL is done (select picks any ready case):
				// a cancel now would hit the client's next statement.
				return
			}
			// Only requests queued in PostgreSQL count: statements lockguard
			// holds wait at most the hold budget and are shed, so they never
			// pile up behind the DDL.
			n, oldest := a.Board.Snapshot().QueuedBehind(pid, armed)
			if (y.Waiters > 0 && n >= y.Waiters) || (y.Wait > 0 && oldest >= y.Wait) {
				s.mu.Lock()
				s.yielded = true
				s.mu.Unlock()
				s.lg().Warn("DDL yields: cancelling it so the queue behind it can drain", "queued", n, "oldest_wait", oldest.Round(time.Millisecond))
				if err := s.ps.Cancel(); err != nil {
					s.lg().Warn("cancelling a DDL to yield failed", "err", err)
				}
				return
			}
		}
	}()
}
