package proxy

import (
	"fmt"
	"sync"
)

// extOp is a frontend message of the extended protocol whose effect on session
// state is only certain once the server acknowledges it.
type extOp struct {
	kind byte   // 'P' Parse, 'B' Bind, 'c' Close statement, 'p' Close portal, 'S' Sync, 'Q' Query or FunctionCall, 'd' CopyDone or CopyFail
	name string // statement (P, c) or portal (B, p) name
	stmt string // B: statement name
	sql  string // P with a name: the statement text (kept when guarded)
	// B in a held batch: where its body is in the batch (Session.collect).
	bindAt, bindLen int32
	// Q: it ended a batch the client flushed and did not sync, whose
	// Executes and Describes PostgreSQL answers answers times when none
	// fails. PostgreSQL answers the batch and the Query with one
	// ReadyForQuery, or skips the Query when the batch failed.
	flushed bool
	answers int32
}

// extTracker knows the named prepared statements and portals of a session.
// The client side records what it forwards; the server side confirms it with
// ParseComplete, BindComplete and CloseComplete, and drops what the server
// skipped after an error up to the next Sync.
type extTracker struct {
	mu      sync.Mutex
	pending []extOp
	head    int
	// skipping is set when an error's skip ran past the last operation
	// sent: PostgreSQL skips what follows up to the next Sync. skipped
	// counts the Queries and FunctionCalls it skipped so, each counted as
	// a sync point, which the next ReadyForQuery ends with its own.
	skipping bool
	skipped  int
	// copyIn is set while PostgreSQL is in copy-in mode and the client
	// has not ended the copy yet: PostgreSQL ignores the Syncs it
	// receives then. voided counts those Syncs, each counted as a sync
	// point, which the next ReadyForQuery ends with its own.
	copyIn  bool
	voided  int
	stmts   map[string]string // name → the same string, interned
	sqls    map[string]string // name → statement text, when known
	portals map[string]string // portal → statement
}

func (t *extTracker) push(op extOp) {
	t.mu.Lock()
	if t.copyIn && (op.kind == 'S' || op.kind == 'd') {
		if op.kind == 'S' {
			t.voided++
		} else {
			t.copyIn = false
		}
		t.mu.Unlock()
		return
	}
	if t.skipping && op.kind != 'S' {
		if op.kind == 'Q' {
			t.skipped++
		}
		t.mu.Unlock()
		return
	}
	t.skipping = false
	if t.head > 0 && t.head == len(t.pending) {
		t.pending, t.head = t.pending[:0], 0
	}
	t.pending = append(t.pending, op)
	t.mu.Unlock()
}

// noteClient records a Parse, Bind or Close. body is the message without its
// header.
func (t *extTracker) noteClient(typ byte, body []byte) error {
	op, _, err := t.decode(typ, body)
	if err == nil && op.kind != 0 {
		t.push(op)
	}
	return err
}

// decode reads the operation a Parse, Bind or Close performs; other types
// give the zero extOp. For a Parse it also returns the statement text, nil
// when the text is not NUL-terminated (the caller decides whether that is
// an error). body is the message without its header.
func (t *extTracker) decode(typ byte, body []byte) (op extOp, query []byte, err error) {
	switch typ {
	case 'P':
		name, rest, ok := cstring(body)
		if !ok {
			return extOp{}, nil, fmt.Errorf("%w: malformed Parse", ErrProtocol)
		}
		query, _, _ = cstring(rest)
		return extOp{kind: 'P', name: t.intern(name)}, query, nil
	case 'B':
		portal, rest, ok := cstring(body)
		if !ok {
			return extOp{}, nil, fmt.Errorf("%w: malformed Bind", ErrProtocol)
		}
		stmt, _, ok := cstring(rest)
		if !ok {
			return extOp{}, nil, fmt.Errorf("%w: malformed Bind", ErrProtocol)
		}
		return extOp{kind: 'B', name: t.intern(portal), stmt: t.intern(stmt)}, nil, nil
	case 'C':
		if len(body) < 2 {
			return extOp{}, nil, fmt.Errorf("%w: malformed Close", ErrProtocol)
		}
		name, _, ok := cstring(body[1:])
		if !ok {
			return extOp{}, nil, fmt.Errorf("%w: malformed Close", ErrProtocol)
		}
		kind := byte('c')
		if body[0] == 'P' {
			kind = 'p'
		}
		return extOp{kind: kind, name: t.intern(name)}, nil, nil
	}
	return extOp{}, nil, nil
}

// intern returns name as a string, reusing a known statement's string so that
// steady-state Bind messages allocate nothing.
func (t *extTracker) intern(name []byte) string {
	if len(name) == 0 {
		return ""
	}
	t.mu.Lock()
	k, ok := t.stmts[string(name)]
	t.mu.Unlock()
	if ok {
		return k
	}
	return string(name)
}

// onAck handles ParseComplete ('1'), BindComplete ('2') or CloseComplete ('3').
func (t *extTracker) onAck(typ byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.head < len(t.pending) {
		op := t.pending[t.head]
		t.head++
		if !acks(typ, op.kind) {
			continue // Describe/Execute produce no ack of their own
		}
		switch op.kind {
		case 'P':
			if op.name != "" {
				if t.stmts == nil {
					t.stmts = make(map[string]string)
				}
				t.stmts[op.name] = op.name
				if op.sql != "" {
					if t.sqls == nil {
						t.sqls = make(map[string]string)
					}
					t.sqls[op.name] = op.sql
				}
			}
		case 'B':
			if op.name != "" {
				if t.portals == nil {
					t.portals = make(map[string]string)
				}
				t.portals[op.name] = op.stmt
			}
		case 'c':
			delete(t.stmts, op.name)
			delete(t.sqls, op.name)
		case 'p':
			delete(t.portals, op.name)
		}
		return
	}
}

// acks reports whether the server message typ acknowledges an op of kind.
func acks(typ, kind byte) bool {
	switch typ {
	case '1':
		return kind == 'P'
	case '2':
		return kind == 'B'
	case '3':
		return kind == 'c' || kind == 'p'
	}
	return false
}

// onError drops the operations the server skips after an error in an
// extended-protocol batch: everything up to the next Sync, Queries and
// FunctionCalls included. An error answering a simple Query or
// FunctionCall skips nothing. answered is how many Executes and Describes
// PostgreSQL answered since the last ReadyForQuery: it tells an error of
// a Query that ended a flushed batch from one of the batch. It reports
// whether PostgreSQL now skips what is sent until the client's next Sync.
func (t *extTracker) onError(answered int) (skipping bool) {
	t.mu.Lock()
	t.copyIn = false // an error ends copy-in mode
	t.dropCopyEnds()
	if t.head < len(t.pending) {
		if op := &t.pending[t.head]; op.kind == 'Q' && (!op.flushed || answered >= int(op.answers)) {
			t.mu.Unlock()
			return false
		}
	}
	for t.head < len(t.pending) && t.pending[t.head].kind != 'S' {
		if t.pending[t.head].kind == 'Q' {
			t.skipped++
		}
		t.head++
	}
	t.skipping = t.head == len(t.pending)
	skipping = t.skipping
	t.mu.Unlock()
	return skipping
}

// skippingNow reports whether PostgreSQL skips everything sent until the
// client's next Sync: an extended batch failed, and the client has not
// sent its Sync yet.
func (t *extTracker) skippingNow() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.skipping
}

// onCopyIn handles a CopyInResponse: PostgreSQL ignores the Syncs it
// receives until the client's CopyDone or CopyFail (or an error), such as
// the Sync tokio-postgres sends right behind the Execute of its COPY. Those
// sent already are taken out of the queue and counted in voided; those
// still to come are when pushed (copyIn).
func (t *extTracker) onCopyIn() {
	t.mu.Lock()
	defer t.mu.Unlock()
	// A CopyDone ahead of the Query whose COPY this is ended an earlier
	// COPY (one that failed, whose data PostgreSQL ignored).
	if head := t.head; !t.dropCopyEnds() {
		t.head = head // none, or this COPY's own end after its Execute
	}
	kept := t.head
	for i := t.head; i < len(t.pending); i++ {
		switch op := t.pending[i]; op.kind {
		case 'S':
			t.voided++
		case 'd': // the client ended the copy: what follows counts
			kept += copy(t.pending[kept:], t.pending[i+1:])
			clear(t.pending[kept:])
			t.pending = t.pending[:kept]
			return
		default:
			t.pending[kept] = op
			kept++
		}
	}
	clear(t.pending[kept:])
	t.pending = t.pending[:kept]
	t.copyIn = true
}

// dropCopyEnds consumes the ends of COPYs at the head of the queue: when
// an error comes, the client ended no COPY PostgreSQL is in (an error ends
// copy-in mode), so they ended COPYs that failed or never started. It
// reports whether a Query or FunctionCall follows them. t.mu is held.
func (t *extTracker) dropCopyEnds() (beforeQuery bool) {
	for t.head < len(t.pending) && t.pending[t.head].kind == 'd' {
		t.head++
	}
	return t.head < len(t.pending) && t.pending[t.head].kind == 'Q'
}

// onReady consumes the sync point (Sync, Query or FunctionCall) that a
// ReadyForQuery answers, and returns how many Syncs PostgreSQL ignored in
// copy-in mode before it (voided) and how many Queries and FunctionCalls
// it skipped (skipped): their sync points end with it, in that order.
// Protocol-level portals live until the end of their transaction, so they
// are forgotten once the session is idle.
func (t *extTracker) onReady(status byte) (voided, skipped int) {
	t.mu.Lock()
	for t.head < len(t.pending) {
		k := t.pending[t.head].kind
		t.head++
		if k == 'S' || k == 'Q' {
			break
		}
	}
	voided, t.voided, t.copyIn = t.voided, 0, false
	skipped, t.skipped, t.skipping = t.skipped, 0, false
	if status == 'I' && len(t.portals) > 0 {
		clear(t.portals)
	}
	t.mu.Unlock()
	return voided, skipped
}

// Prepared reports whether a named prepared statement exists.
func (t *extTracker) Prepared(name string) bool {
	t.mu.Lock()
	_, ok := t.stmts[name]
	t.mu.Unlock()
	return ok
}

// PortalStatement returns the statement a named or unnamed portal was bound
// from, if known.
func (t *extTracker) PortalStatement(portal string) (string, bool) {
	t.mu.Lock()
	st, ok := t.portals[portal]
	// As for statementSQL: what a pipelining client sent counts. A Bind
	// to a named portal that exists fails; the unnamed one is replaced.
	for _, op := range t.pending[t.head:] {
		switch {
		case op.name != portal:
		case op.kind == 'B' && (!ok || portal == ""):
			st, ok = op.stmt, true
		case op.kind == 'p':
			st, ok = "", false
		}
	}
	t.mu.Unlock()
	return st, ok
}

// statementSQL returns the text of a named prepared statement, if known.
func (t *extTracker) statementSQL(name string) (string, bool) {
	t.mu.Lock()
	sql, ok := t.sqls[name]
	// A pipelining client may execute a statement it parsed (or closed)
	// in a batch PostgreSQL has not answered yet: what it sent counts.
	// A Parse of a name that exists fails.
	for _, op := range t.pending[t.head:] {
		switch {
		case op.name != name:
		case op.kind == 'P' && !ok && op.sql != "":
			sql, ok = op.sql, true
		case op.kind == 'c':
			sql, ok = "", false
		}
	}
	t.mu.Unlock()
	return sql, ok
}
