package proxy

import (
	"bytes"
	"sync"
	"sync/atomic"
)

// A plan tells the upstream side what to do with the responses of one sync
// point (the messages up to and including its ReadyForQuery). Sync points
// without a plan are relayed unchanged.
type plan struct {
	seq     uint64 // the sync point, counted from 1 in the order sent
	swallow bool   // drop the responses (an injected statement)
	// protects is the sync point of the client's statement that an
	// injected statement sent ahead of it is for (0 for none); sql is the
	// text of one sent after it.
	protects uint64
	sql      string
	// hideReady drops the ReadyForQuery (a Sync of lockguard's own ended
	// the flushed parts of a batch: Session.EndFlushed); dropErrors drops
	// ErrorResponses (the failure that makes PostgreSQL skip again).
	hideReady, dropErrors bool
	notices               []byte // NoticeResponses to send before the first response
	// replaceNonce marks the ErrorResponse that a refusal planted; it is
	// replaced by replacement. A refusal that answers the client's cancel
	// (canceled) also replaces a 57014: the CancelRequest that ended the
	// wait in lockguard went on to PostgreSQL, and may cancel the statement
	// that stands in for the refused batch before it fails by itself.
	replaceNonce []byte
	replacement  []byte
	canceled     bool
	capture      *capture
	result       func(sqlstate string, completed int)
	// base is how many Executes of the sync point earlier parts of its
	// batch sent (the client continued it after a Flush): the statements
	// completed before an error count from there for this part.
	base int
	// later is set for the plan of such a later part, queued after the
	// plan of an earlier part of the same sync point.
	later bool

	started bool // a response of this sync point was seen
}

// light reports whether the plan only reports the sync point's result: its
// responses are then relayed as they come, without reading each whole.
func (pl *plan) light() bool {
	return !pl.swallow && pl.notices == nil && pl.replaceNonce == nil && pl.capture == nil && !pl.hideReady && !pl.dropErrors
}

// capture holds the responses of a sync point for a retry decision.
type capture struct {
	buf       []byte // nil once the answer outgrew captureLimit
	sqlstate  string
	completed int
	delivered bool          // the answer was too large and went to the client
	lost      bool          // the upstream connection ended first
	done      chan struct{} // closed at ReadyForQuery or when lost
}

// captureLimit bounds the responses held for a retry decision; DDL answers
// are tiny. A larger answer is delivered as it comes and is not retried.
const captureLimit = 1 << 20

// plans is the queue of plans in sync-point order, shared by the two relay
// goroutines.
type plans struct {
	mu    sync.Mutex
	q     []*plan
	count atomic.Int32 // len(q), for the upstream side's fast check
	heavy atomic.Int32 // plans in q that are not light
	parts atomic.Int32 // plans in q that are later (plan.later)
	// free holds plans that done removed, for add to reuse: only the
	// upstream side uses a queued plan (forSeq), and not after done.
	free []*plan
}

// maxFreePlans bounds the plans kept for reuse; a session rarely has more
// than one or two decided sync points in flight.
const maxFreePlans = 4

// add queues a copy of pv.
func (p *plans) add(pv *plan) {
	p.mu.Lock()
	var pl *plan
	if n := len(p.free); n > 0 {
		pl = p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
	} else {
		pl = new(plan)
	}
	*pl = *pv
	if n := len(p.q); n > 0 && p.q[n-1].seq == pl.seq {
		// Sync points are numbered in the order sent, so a plan of the
		// same sync point can only be that of an earlier part.
		pl.later = true
		p.parts.Add(1)
	}
	p.q = append(p.q, pl)
	p.count.Store(int32(len(p.q)))
	if !pl.light() {
		p.heavy.Add(1)
	}
	p.mu.Unlock()
}

// active reports whether any plan is pending. The upstream side checks it
// after each read: a plan is added before its sync point is written, so the
// responses of a planned sync point are never read before its plan exists.
func (p *plans) active() bool { return p.count.Load() > 0 }

// whole reports whether a pending plan needs every response read whole
// (to hold, drop, replace or precede it); light plans need only the
// ErrorResponses and ReadyForQuery that the relay reads whole anyway.
func (p *plans) whole() bool { return p.heavy.Load() > 0 }

// hideReady makes the ReadyForQuery of sync point seq, the last one sent,
// invisible to the client: it marks the sync point's plan, or adds one.
func (p *plans) hideReady(seq uint64) {
	p.mu.Lock()
	for _, pl := range p.q {
		if pl.seq == seq {
			if pl.light() {
				p.heavy.Add(1)
			}
			pl.hideReady = true
			p.mu.Unlock()
			return
		}
	}
	p.mu.Unlock()
	p.add(&plan{seq: seq, hideReady: true})
}

// forSeq returns the (first) plan of sync point seq, or nil.
func (p *plans) forSeq(seq uint64) *plan {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pl := range p.q {
		if pl.seq == seq {
			return pl
		}
		if pl.seq > seq {
			break
		}
	}
	return nil
}

// swallows reports whether sync point seq is one whose responses are
// swallowed: a statement lockguard injected.
func (p *plans) swallows(seq uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pl := range p.q {
		if pl.seq >= seq {
			return pl.seq == seq && pl.swallow
		}
	}
	return false
}

// laterParts appends to buf the plans of later parts of head's sync point
// (plan.later), in order.
func (p *plans) laterParts(head *plan, buf []*plan) []*plan {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, pl := range p.q {
		if pl == head {
			for _, l := range p.q[i+1:] {
				if l.seq != head.seq {
					break
				}
				buf = append(buf, l)
			}
			break
		}
	}
	return buf
}

// done removes the plans of sync points up to seq.
func (p *plans) done(seq uint64) {
	p.mu.Lock()
	i := 0
	for i < len(p.q) && p.q[i].seq <= seq {
		pl := p.q[i]
		if !pl.light() {
			p.heavy.Add(-1)
		}
		if pl.later {
			p.parts.Add(-1)
		}
		if len(p.free) < maxFreePlans {
			*pl = plan{}
			p.free = append(p.free, pl)
		}
		i++
	}
	// Shift down rather than reslice, so that the array is reused: a
	// queue resliced from the front loses its capacity, and the next add
	// would allocate.
	n := copy(p.q, p.q[i:])
	clear(p.q[n:])
	p.q = p.q[:n]
	p.count.Store(int32(len(p.q)))
	p.mu.Unlock()
}

// abandon releases every waiting capture when the upstream connection ends.
func (p *plans) abandon() {
	p.mu.Lock()
	for _, pl := range p.q {
		if pl.capture != nil {
			pl.capture.lost = true
			close(pl.capture.done)
		}
	}
	p.q = nil
	p.count.Store(0)
	p.heavy.Store(0)
	p.parts.Store(0)
	p.mu.Unlock()
}

// completePlan ends plan pl of sync point seq, and those of the later parts
// of its batch, at its ReadyForQuery: it reports the result, hands a
// capture its outcome, and drops the plans.
func (s *Session) completePlan(pl *plan, seq uint64) {
	code, completed := "", 0
	if s.errSeq == seq {
		code, completed = string(s.errCode[:s.errLen]), s.errAt
	}
	pl.finish(code, completed)
	if s.plans.parts.Load() > 0 {
		s.parts = s.plans.laterParts(pl, s.parts[:0])
		for _, l := range s.parts {
			l.finish(code, completed)
		}
		clear(s.parts)
	}
	s.plans.done(seq)
}

// finish reports the outcome of the plan's sync point: its first error's
// SQLSTATE ("" for none) and the statements of the sync point completed
// before it, of which this part's own count.
func (pl *plan) finish(code string, completed int) {
	completed = max(0, completed-pl.base)
	if pl.result != nil {
		pl.result(code, completed)
	}
	if c := pl.capture; c != nil {
		c.sqlstate, c.completed = code, completed
		c.delivered = c.buf == nil
		close(c.done)
	}
}

// noteError records the first ErrorResponse msg of the current sync point.
func (s *Session) noteError(msg []byte) {
	if seq := s.zSeq + 1; s.errSeq != seq {
		s.errSeq, s.errAt = seq, s.syncDone
		s.errLen = copy(s.errCode[:], errorCodeBytes(msg))
	}
}

// errorCode returns the SQLSTATE of an ErrorResponse message (header
// included), or "".
func errorCode(msg []byte) string { return string(errorCodeBytes(msg)) }

// refused returns msg, a backend message of type typ, or the plan's
// refusal in its place when msg is the ErrorResponse the refusal planted —
// or, when own (msg is of the plan's own part of its sync point, which
// starts with the stand-in) and the refusal answers a cancel, the cancel's
// own error.
func (pl *plan) refused(typ byte, msg []byte, own bool) []byte {
	if typ != 'E' || pl.replaceNonce == nil {
		return msg
	}
	if bytes.Contains(msg, pl.replaceNonce) || own && pl.canceled && string(errorCodeBytes(msg)) == CodeQueryCanceled {
		return pl.replacement
	}
	return msg
}

// handleWithPlan processes one whole backend message of sync point seq under
// plan pl. It returns the bytes to send to the client now (nil for none).
func (s *Session) handleWithPlan(pl *plan, typ byte, msg []byte, out []byte) []byte {
	if !pl.started {
		pl.started = true
		if len(pl.notices) > 0 && !pl.swallow {
			out = s.emit(pl, out, pl.notices)
		}
	}
	msg = pl.refused(typ, msg, true)
	if s.plans.parts.Load() > 0 {
		// The later parts of a batch continued after a Flush: their
		// notices go out at the first response after their plan came,
		// perhaps among an earlier part's responses, and a refusal
		// of theirs is replaced. None of them injects or retries.
		s.parts = s.plans.laterParts(pl, s.parts[:0])
		for _, l := range s.parts {
			if !l.started {
				l.started = true
				out = append(out, l.notices...)
			}
			msg = l.refused(typ, msg, false)
		}
		clear(s.parts)
	}
	switch {
	case typ == 'A' || typ == 'S':
		// Notifications and parameter changes are never swallowed or held.
		return append(out, msg...)
	case pl.swallow:
		if typ == 'E' {
			if code := errorCode(msg); code == "25P02" {
				// The client's transaction block had failed (a DDL in it
				// gave up): nothing ran, and the block's rollback undoes
				// what lockguard set in it.
				s.log.Debug("an injected statement was skipped in a failed transaction block", "sqlstate", code)
			} else if code == CodeQueryCanceled && pl.protects != 0 {
				go s.passCancelOn(pl.protects)
			} else {
				s.log.Warn("an injected statement failed", "sqlstate", code)
				if h := s.cfg.Hooks; pl.protects == 0 && h != nil && h.AfterFailed != nil {
					h.AfterFailed(s, pl.sql, code)
				}
			}
		}
		return out
	case typ == 'Z' && pl.hideReady, typ == 'E' && pl.dropErrors:
		return out
	default:
		return s.emit(pl, out, msg)
	}
}

// emit appends msg to out, or to the plan's capture while it has room.
func (s *Session) emit(pl *plan, out, msg []byte) []byte {
	if c := pl.capture; c != nil && c.buf != nil {
		if len(c.buf)+len(msg) <= captureLimit {
			c.buf = append(c.buf, msg...)
			return out
		}
		// Too large to hold: deliver what was held and stop holding.
		out = append(out, c.buf...)
		c.buf = nil
	}
	return append(out, msg...)
}
