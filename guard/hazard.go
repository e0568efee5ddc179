package guard

import (
	"sync"
	"sync/atomic"
	"time"
)

// Hazard is a table lock, held or awaited by some session, that a new
// request could queue behind. PostgreSQL checks a new request against the
// locks others are waiting for before the granted ones, so a pending ACCESS
// EXCLUSIVE makes every later read of the table wait.
type Hazard struct {
	Rel RelName // schema-qualified
	// Database is the database Rel is in (a relation name means nothing
	// outside it); "" when the reporter does not know, which matches
	// every database.
	Database string
	Mode     LockMode
	Granted  bool // held; false means waiting for it
	PID      int  // the backend that holds or awaits the lock
	// Source says who reported it: "proxy" for a DDL lockguard itself
	// forwarded and has not seen complete, "monitor" for pg_locks.
	Source      string
	State       string // pg_stat_activity.state
	Query       string // sanitized: literals replaced by $n
	Application string
	User        string
	Client      string
	XactStart   time.Time // zero when unknown
	WaitStart   time.Time // zero when granted or unknown
	// BlockedBy lists, for a pending request, the backends it waits for:
	// holders of conflicting locks and requests ahead of it in the queue
	// (pg_blocking_pids). Set by the monitor only.
	BlockedBy []int
	TraceID   string // trace id of the span that forwarded the DDL, "" when unknown
	SpanID    string // span id of that span, for links from the statements it held up
}

// QueuedBehind returns the pending requests in h that wait for backend pid
// and began waiting after since (or whose start is unknown), and the longest
// such wait. since keeps out a snapshot older than what the caller asks
// about: requests that waited for an earlier statement of pid and were
// granted once it ended, which the monitor has not seen yet.
func (h *Hazards) QueuedBehind(pid int, since time.Time) (n int, oldest time.Duration) {
	if h.Empty() {
		return 0, 0
	}
	now := time.Now()
	for _, l := range h.byName {
		for _, hz := range l {
			if hz.Granted || hz.PID == pid || !hz.WaitStart.IsZero() && hz.WaitStart.Before(since) {
				continue
			}
			for _, b := range hz.BlockedBy {
				if b == pid {
					n++
					if !hz.WaitStart.IsZero() && now.Sub(hz.WaitStart) > oldest {
						oldest = now.Sub(hz.WaitStart)
					}
					break
				}
			}
		}
	}
	return n, oldest
}

// Hazards is an immutable snapshot of hazards by table name. A nil or empty
// Hazards has none; checking it costs one pointer load and a length test.
type Hazards struct {
	byName map[string][]Hazard
	taken  time.Time
	polled time.Time // when the monitor began the reading in it
}

// Empty reports whether the snapshot holds no hazard.
func (h *Hazards) Empty() bool { return h == nil || len(h.byName) == 0 }

// Taken returns when the snapshot was made.
func (h *Hazards) Taken() time.Time {
	if h == nil {
		return time.Time{}
	}
	return h.taken
}

// Polled returns when the monitor began the reading of pg_locks this
// snapshot holds (zero without one).
func (h *Hazards) Polled() time.Time {
	if h == nil {
		return time.Time{}
	}
	return h.polled
}

// All returns every hazard, for status pages.
func (h *Hazards) All() []Hazard {
	if h.Empty() {
		return nil
	}
	var out []Hazard
	for _, l := range h.byName {
		out = append(out, l...)
	}
	return out
}

// Conflict returns a hazard that a request for mode on rel by backend pid,
// whose session is in database db, would queue behind: a lock of another
// backend on that relation of that database whose mode conflicts. An
// unqualified rel matches tables in the schemas of searchPath (nil means
// "public").
func (h *Hazards) Conflict(rel RelName, mode LockMode, pid int, db string, searchPath []string) (Hazard, bool) {
	if h.Empty() || rel.Name == "" || mode == NoLock {
		return Hazard{}, false
	}
	for _, hz := range h.byName[rel.Name] {
		if hz.PID == pid || !mode.Conflicts(hz.Mode) {
			continue
		}
		if hz.Database != "" && hz.Database != db {
			continue
		}
		if rel.Schema != "" {
			if rel.Schema != hz.Rel.Schema {
				continue
			}
		} else if !inPath(hz.Rel.Schema, searchPath) {
			continue
		}
		return hz, true
	}
	return Hazard{}, false
}

func inPath(schema string, path []string) bool {
	if schema == "" {
		return true // the reporter did not know the schema either
	}
	if len(path) == 0 {
		return schema == "public" || schema == ""
	}
	for _, p := range path {
		if p == schema {
			return true
		}
	}
	return false
}

// Board publishes the current hazards: those a monitor reads from pg_locks
// and those the proxy knows from DDL it forwarded. Readers load an immutable
// snapshot with one atomic pointer load; writers rebuild it. Safe for
// concurrent use.
type Board struct {
	snap atomic.Pointer[Hazards]

	mu        sync.Mutex
	monitored []Hazard
	polled    time.Time // when the reading in monitored began
	own       map[uint64][]Hazard
	nextKey   uint64
	changed   chan struct{} // closed and replaced on every change
	fresh     chan struct{} // RequestFresh's signal to the monitor
}

// Snapshot returns the current hazards; never nil.
func (b *Board) Snapshot() *Hazards {
	if h := b.snap.Load(); h != nil {
		return h
	}
	return &Hazards{}
}

// Changed returns a channel that is closed at the next change.
func (b *Board) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed == nil {
		b.changed = make(chan struct{})
	}
	return b.changed
}

// SetMonitored replaces the hazards read from pg_locks.
func (b *Board) SetMonitored(hs []Hazard) { b.SetMonitoredAt(hs, time.Now()) }

// SetMonitoredAt replaces the hazards read from pg_locks by a reading that
// began at at.
func (b *Board) SetMonitoredAt(hs []Hazard, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.polled = at
	if len(hs) == 0 && len(b.monitored) == 0 {
		return
	}
	b.monitored = hs
	b.publish()
}

// RequestFresh asks the monitor for a new reading of pg_locks now: a
// statement waits in lockguard on a hazard only the monitor reported, which
// may have cleared since. Requests made before the monitor gets to them
// count as one.
func (b *Board) RequestFresh() {
	select {
	case b.freshRequests() <- struct{}{}:
	default:
	}
}

// FreshRequests returns the channel on which RequestFresh signals.
func (b *Board) FreshRequests() <-chan struct{} { return b.freshRequests() }

func (b *Board) freshRequests() chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fresh == nil {
		b.fresh = make(chan struct{}, 1)
	}
	return b.fresh
}

// Add records hazards the proxy knows of (a DDL it forwarded) and returns a
// key for Remove.
func (b *Board) Add(hs []Hazard) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.own == nil {
		b.own = make(map[uint64][]Hazard)
	}
	b.nextKey++
	b.own[b.nextKey] = hs
	b.publish()
	return b.nextKey
}

// Remove forgets hazards added with Add.
func (b *Board) Remove(key uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.own[key]; !ok {
		return
	}
	delete(b.own, key)
	b.publish()
}

// publish rebuilds the snapshot; b.mu must be held.
func (b *Board) publish() {
	h := &Hazards{byName: make(map[string][]Hazard), taken: time.Now(), polled: b.polled}
	add := func(hz Hazard) {
		l := h.byName[hz.Rel.Name]
		for i, e := range l {
			if e.PID == hz.PID && e.Mode == hz.Mode && e.Rel == hz.Rel && e.Granted == hz.Granted && e.Database == hz.Database {
				// The monitor's copy has the richer session facts; keep
				// what only lockguard knows: that it forwarded the DDL,
				// and the DDL's span.
				if e.TraceID == "" && hz.TraceID != "" {
					l[i].TraceID, l[i].SpanID, l[i].Source = hz.TraceID, hz.SpanID, hz.Source
				}
				return
			}
		}
		h.byName[hz.Rel.Name] = append(l, hz)
	}
	for _, hz := range b.monitored {
		add(hz)
	}
	for _, l := range b.own {
		for _, hz := range l {
			add(hz)
		}
	}
	if len(h.byName) == 0 {
		h = nil
	}
	b.snap.Store(h)
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
}
