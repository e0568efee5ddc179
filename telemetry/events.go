package telemetry

import (
	"encoding/json"
	"sort"
	"sync/atomic"
	"time"
)

// Event kinds. Each is one thing the guard did, or saw, about one session.
const (
	KindShed              = "shed"               // a statement answered 55P03 instead of queueing
	KindHeld              = "held"               // a statement held in lockguard until a lock cleared
	KindBlocked           = "blocked"            // a statement refused by the policy
	KindWarned            = "warned"             // a statement let through with a policy warning
	KindTimeoutInjected   = "timeout_injected"   // lock_timeout put around a DDL
	KindRetried           = "retried"            // a DDL retried after the injected timeout
	KindGaveUp            = "gave_up"            // a DDL that ran out of retries
	KindLanded            = "landed"             // a protected DDL that completed
	KindYielded           = "yielded"            // a waiting DDL cancelled to let the queue behind it drain
	KindWatchdogWarn      = "watchdog_warn"      // a blocking session reported
	KindWatchdogCancel    = "watchdog_cancel"    // a blocking session's statement cancelled
	KindWatchdogTerminate = "watchdog_terminate" // a blocking session terminated
	KindParseFailed       = "parse_failed"       // a statement the analyser could not parse
)

// Event is one guard action, as shown on the status page and /api/events.
// Statement must already have its literals replaced (guard.Sanitize);
// nothing here may carry query literals or secrets.
type Event struct {
	Time        time.Time     `json:"time"`
	Kind        string        `json:"kind"` // shed, held, blocked, warned, timeout_injected, retried, gave_up, landed, yielded, watchdog_warn, watchdog_cancel, watchdog_terminate, parse_failed
	Relation    string        `json:"relation,omitempty"`
	LockMode    string        `json:"lock_mode,omitempty"`
	PID         int           `json:"pid,omitempty"`    // backend of the session the event is about
	Client      string        `json:"client,omitempty"` // client address
	User        string        `json:"user,omitempty"`
	Database    string        `json:"database,omitempty"`
	Application string        `json:"application,omitempty"`
	Statement   string        `json:"statement,omitempty"` // literals replaced
	Rule        string        `json:"rule,omitempty"`
	BlockerPID  int           `json:"blocker_pid,omitempty"` // the backend whose lock caused it
	Wait        time.Duration `json:"-"`                     // also exported as wait_ms
	Attempts    int           `json:"attempts,omitempty"`
	Message     string        `json:"message,omitempty"`
	TraceID     string        `json:"trace_id,omitempty"`
	SpanID      string        `json:"span_id,omitempty"`
}

// MarshalJSON adds wait_ms (Wait in milliseconds) when Wait is set.
func (ev Event) MarshalJSON() ([]byte, error) {
	type plain Event // without this method
	return json.Marshal(struct {
		plain
		WaitMS float64 `json:"wait_ms,omitempty"`
	}{plain(ev), ms(ev.Wait)})
}

// ms is d in milliseconds, to a tenth.
func ms(d time.Duration) float64 {
	return float64(d/(100*time.Microsecond)) / 10
}

// Events is a bounded ring of recent events, safe for concurrent use. Add
// takes no lock: it claims a slot with one atomic increment and publishes a
// copy of the event with one atomic store, so the guard's hot path never
// waits for a reader. The oldest events are overwritten.
type Events struct {
	slots []atomic.Pointer[seqEvent]
	next  atomic.Uint64 // sequence number of the next Add
}

type seqEvent struct {
	seq uint64
	ev  Event
}

// DefaultEvents is the ring size NewEvents uses for n <= 0.
const DefaultEvents = 1024

// NewEvents returns a ring that keeps the last n events (DefaultEvents when
// n <= 0).
func NewEvents(n int) *Events {
	if n <= 0 {
		n = DefaultEvents
	}
	return &Events{slots: make([]atomic.Pointer[seqEvent], n)}
}

// Add records ev; a zero Time is set to now. It never blocks. A nil *Events
// drops the event, so callers need not check.
func (e *Events) Add(ev Event) {
	if e == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	seq := e.next.Add(1) - 1
	p := &seqEvent{seq: seq, ev: ev}
	slot := &e.slots[seq%uint64(len(e.slots))]
	// Adds a lap apart share the slot and may store in either order: the
	// newer event must win, or the ring would keep one a lap too old, which
	// Recent leaves out.
	for {
		old := slot.Load()
		if old != nil && old.seq > seq {
			return
		}
		if slot.CompareAndSwap(old, p) {
			return
		}
	}
}

// Recent returns up to n events, newest first (all that the ring holds when
// n <= 0). An Add that races with Recent may or may not be included.
func (e *Events) Recent(n int) []Event {
	if e == nil {
		return nil
	}
	end := e.next.Load()
	size := uint64(len(e.slots))
	if n <= 0 || uint64(n) > size {
		n = int(size)
	}
	if uint64(n) > end {
		n = int(end)
	}
	start := end - uint64(n)
	got := make([]*seqEvent, 0, n)
	for s := start; s < end; s++ {
		// A slot may still hold the previous lap's event (its Add has
		// claimed the number but not stored yet) or already a newer one:
		// keep only what belongs to [start, end).
		if p := e.slots[s%size].Load(); p != nil && p.seq >= start && p.seq < end {
			got = append(got, p)
		}
	}
	sort.Slice(got, func(i, j int) bool { return got[i].seq > got[j].seq })
	out := make([]Event, len(got))
	for i, p := range got {
		out[i] = p.ev
	}
	return out
}

// Len returns how many events the ring holds.
func (e *Events) Len() int {
	if e == nil {
		return 0
	}
	if n := e.next.Load(); n < uint64(len(e.slots)) {
		return int(n)
	}
	return len(e.slots)
}
