package proxy

import (
	"net"
	"sync/atomic"
	"time"
)

// obsSlots is how many sync points in flight are timed at once; a deeper
// pipeline leaves the excess untimed (never mistimed).
const obsSlots = 64

// observer times sync points for Hooks.Complete and client bytes for
// Hooks.Forwarded. The client goroutine writes a slot per timed sync point
// and the upstream goroutine reads it at the matching ReadyForQuery, so the
// slots are atomics; everything else belongs to one goroutine.
type observer struct {
	on     bool
	base   time.Time // monotonic origin of the stored offsets
	readAt int64     // client goroutine: when the bytes being handled were read
	slots  [obsSlots]obsSlot

	// upstream goroutine: the first error of the sync point in progress
	code    [5]byte
	hasCode bool
}

type obsSlot struct {
	seq   atomic.Uint64
	start atomic.Int64
}

func (o *observer) init(h *Hooks) {
	o.on = h != nil && (h.Complete != nil || h.Forwarded != nil)
	if o.on {
		o.base = time.Now()
	}
}

// read notes that client bytes were just read.
func (s *Session) obsRead() {
	if s.obs.on {
		s.obs.readAt = int64(time.Since(s.obs.base))
	}
}

// obsSync times sync point seq from the last read.
func (s *Session) obsSync(seq uint64) {
	if !s.obs.on || s.cfg.Hooks.Complete == nil {
		return
	}
	sl := &s.obs.slots[seq%obsSlots]
	sl.start.Store(s.obs.readAt)
	sl.seq.Store(seq)
}

// obsForwarded reports the time the bytes just written upstream spent here.
func (s *Session) obsForwarded() {
	if s.obs.on && s.cfg.Hooks.Forwarded != nil {
		s.cfg.Hooks.Forwarded(s, time.Since(s.obs.base)-time.Duration(s.obs.readAt))
	}
}

// obsServer notes a backend message: the first ErrorResponse's code, and at
// ReadyForQuery (after zSeq counted it) the completion of a timed sync point.
func (s *Session) obsServer(typ byte, msg []byte) {
	switch typ {
	case 'E':
		if !s.obs.hasCode {
			if c := errorCodeBytes(msg); len(c) == 5 {
				copy(s.obs.code[:], c)
				s.obs.hasCode = true
			}
		}
	case 'Z':
		sl := &s.obs.slots[s.zSeq%obsSlots]
		if sl.seq.Load() == s.zSeq && s.cfg.Hooks.Complete != nil {
			d := time.Since(s.obs.base) - time.Duration(sl.start.Load())
			var code []byte
			if s.obs.hasCode {
				code = s.obs.code[:]
			}
			s.cfg.Hooks.Complete(s, d, code)
		}
		s.obs.hasCode = false
	}
}

// errorCodeBytes returns the SQLSTATE field of an ErrorResponse message,
// header included, without copying.
func errorCodeBytes(msg []byte) []byte { return errorField(msg, 'C', 'C') }

// ClientAddr returns the client's address.
func (s *Session) ClientAddr() net.Addr {
	if s.client == nil {
		return nil
	}
	return s.client.RemoteAddr()
}
