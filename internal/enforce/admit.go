package enforce

import (
	"context"
	"fmt"
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
	// HeldBy reports whether backend pid already holds a lock on rel; such a
	// backend is not queued behind waiters (PostgreSQL lets it pass). nil
	// assumes it does not.
	HeldBy func(ctx context.Context, pid int, rel guard.RelName) (bool, error)

	mu   sync.Mutex
	held map[string]int
}

// conflict is one lock of a statement that would queue behind a hazard.
type conflict struct {
	lock guard.RelationLock
	hz   guard.Hazard
}

// check returns the first lock of the statements that conflicts with a
// hazard, or ok = false.
func (a *Admission) check(h *guard.Hazards, stmts []*guard.Statement, pid int, path []string) (conflict, bool) {
	for _, st := range stmts {
		for _, l := range st.Locks {
			if hz, ok := h.Conflict(l.Rel, l.Mode, pid, path); ok {
				return conflict{lock: l, hz: hz}, true
			}
		}
	}
	return conflict{}, false
}

// hold returns the Verdict.Hold function for a batch that conflicts now.
func (a *Admission) hold(s *session, stmts []*guard.Statement, inTx bool) func(ctx context.Context) *proxy.Error {
	pid := int(s.ps.BackendPID())
	path := s.searchPath()
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
			c, ok := a.check(a.Board.Snapshot(), stmts, pid, path)
			if !ok {
				if counted != "" {
					s.log.Info("held statement admitted", "relation", c.lock.Rel.String(), "held", time.Since(start).Round(time.Millisecond))
				}
				return nil
			}
			if inTx && a.HeldBy != nil {
				if held, err := a.HeldBy(ctx, pid, c.hz.Rel); err == nil && held {
					return nil
				}
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
	if !hz.XactStart.IsZero() {
		fmt.Fprintf(&d, ", its transaction open for %v", time.Since(hz.XactStart).Round(time.Millisecond))
	}
	fmt.Fprintf(&d, ". Held in lockguard for %v", held.Round(time.Millisecond))
	if why != "" {
		d.WriteString("; " + why)
	}
	d.WriteString(".")
	s.log.Warn("statement shed", "relation", hz.Rel.String(), "mode", c.lock.Mode.String(), "blocking_pid", hz.PID,
		"blocking_mode", hz.Mode.String(), "blocking_granted", hz.Granted, "held", held.Round(time.Millisecond))
	return &proxy.Error{Code: guard.CodeLockNotAvailable,
		Message: fmt.Sprintf("lockguard: shed a statement that would wait behind a lock on %s", hz.Rel),
		Detail:  d.String(),
		Hint:    "Retry shortly. lockguard refused to join PostgreSQL's lock queue so that this connection stays free while the lock is held or awaited; inside a transaction block this error aborts the transaction like any other."}
}

// ownHazards are the hazards a DDL lockguard forwards creates until it
// completes: its strong locks, as pending requests of its backend.
func ownHazards(stmts []*guard.Statement, pid int, query string) []guard.Hazard {
	var hs []guard.Hazard
	for _, st := range stmts {
		if !blocksTraffic(st) {
			continue
		}
		for _, l := range st.Locks {
			if l.Mode >= guard.Share && l.Rel.Name != "" {
				hs = append(hs, guard.Hazard{Rel: l.Rel, Mode: l.Mode, PID: pid, Source: "proxy",
					Query: query, WaitStart: time.Now()})
			}
		}
	}
	return hs
}
