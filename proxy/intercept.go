package proxy

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5/pgproto3"
)

// stmtRef locates a statement text inside the held batch, relative to the
// batch's first byte, or carries the text of a statement prepared earlier.
type stmtRef struct {
	off, n   int
	earlier  []byte // text of a statement prepared in an earlier batch
	name     string
	executed bool
	asked    bool // shown to Hooks.AwaitsClient
	// bindAt and bindLen locate the body of the Bind behind its Execute in
	// the batch; bindLen is 0 when it was bound in an earlier batch.
	bindAt, bindLen int32
}

// keepUnnamed is the largest buffer a session keeps for the text of its
// unnamed statement when the text is smaller (decideHeld).
const keepUnnamed = 64 << 10

// maxHeldBatch bounds an extended batch held for a decision; a larger one is
// decided as far as it has arrived and the rest follows mid-batch.
const maxHeldBatch = 1 << 20

// pumpClientGuarded is pumpClient when a guard is installed: every Query, and
// every extended batch at its Sync or Flush, is shown to Hooks.Batch before
// it is forwarded.
func (s *Session) pumpClientGuarded() error {
	f := &s.cf
	if err := f.fill(s.client); err != nil {
		if err == errWouldBlock || err == errRejoin {
			return err
		}
		return fmt.Errorf("reading from client: %w", err)
	}
	s.obsRead()
	fwd := f.start
	if f.keep >= 0 {
		fwd = f.keep
	}
	// The rest of a message streamed before this read goes with what was
	// forwarded before, not with the first message framed now: lockguard
	// may send statements of its own ahead of that one.
	f.passRest()
	for {
		msgStart := f.start
		fr, ok, err := f.next(&clientWhole)
		if err != nil {
			if f.keep < 0 {
				_ = s.writeUpstream(f.buf[fwd:msgStart])
			}
			return err
		}
		if !ok {
			break
		}
		if !fr.whole {
			s.noteStreamed(fr.typ)
			continue
		}
		switch fr.typ {
		case 'Q', 'F':
			if fr.typ == 'Q' && (len(fr.msg) < 6 || fr.msg[len(fr.msg)-1] != 0) {
				if f.keep < 0 {
					_ = s.writeUpstream(f.buf[fwd:msgStart])
				}
				return fmt.Errorf("%w: malformed Query", ErrProtocol)
			}
			if f.keep >= 0 {
				// Extended messages with no Sync or Flush yet: PostgreSQL
				// runs them and then the Query, which ends their batch.
				// They go first, as the part of a batch a Flush ends.
				if err := s.decideHeld('H', msgStart); err != nil {
					return err
				}
				fwd = msgStart
			}
			s.batch = Batch{Simple: true, Complete: true, MidBatch: s.midBatch, FlushedPure: s.midBatch && s.flushedPure,
				TxStatus: s.idleStatus(), Stmts: s.batch.Stmts[:0]}
			if fr.typ == 'Q' {
				s.batch.Stmts = append(s.batch.Stmts, BatchStmt{SQL: fr.msg[5 : len(fr.msg)-1], Executed: true})
			} else if !s.midBatch {
				// A FunctionCall has no statement: shown only when it
				// ends a batch the client flushed.
				if !s.openSyncPoint('Q') {
					return errClosing
				}
				continue
			}
			if f.keep < 0 {
				s.unsent = f.buf[fwd:msgStart]
			}
			v := s.cfg.Hooks.Batch(s.ctx, s, &s.batch)
			if f.keep < 0 && s.unsent == nil {
				fwd = msgStart // sendUnsent wrote them
			}
			s.unsent = nil
			if v == nil {
				if !s.openSyncPoint('Q') {
					return errClosing
				}
				continue
			}
			if err := s.writeUpstream(f.buf[fwd:msgStart]); err != nil {
				return err
			}
			if err := s.carryOut(v, f.buf[msgStart:f.start], nil, 'Q'); err != nil {
				return err
			}
			fwd = f.start
		case 'P', 'B', 'D', 'E', 'C':
			if f.keep < 0 {
				if err := s.hold(fwd, msgStart); err != nil {
					return err
				}
				fwd = msgStart
			}
			if err := s.collect(fr.typ, msgStart-f.keep, fr.msg); err != nil {
				return err
			}
		case 'S', 'H':
			if f.keep < 0 && (fr.typ == 'H' || !s.midBatch) {
				if fr.typ == 'S' && !s.openSyncPoint('S') {
					return errClosing
				}
				continue
			}
			if f.keep < 0 {
				// A lone Sync that ends a batch the client flushed: its
				// last part, without statements.
				if err := s.hold(fwd, msgStart); err != nil {
					return err
				}
				fwd = msgStart
			}
			if err := s.decideHeld(fr.typ, f.start); err != nil {
				return err
			}
			fwd = f.start
		case 'X':
			err := s.clientTerminates()
			if f.keep >= 0 {
				// A batch held for the guard had no Sync: PostgreSQL
				// would roll back whatever it did. It goes undecided,
				// and the Terminate alone, so that PostgreSQL ends the
				// session at once.
				fwd = msgStart
			}
			_ = s.writeUpstream(f.buf[fwd:f.start])
			return err
		}
	}
	if f.keep >= 0 {
		if f.end-f.keep > maxHeldBatch || s.awaitsClient() {
			if err := s.decideHeld('H', f.start); err != nil {
				return err
			}
			fwd = f.start
		} else {
			fwd = f.start // held bytes stay in the buffer
		}
	}
	if f.keep < 0 && fwd < f.start {
		if err := s.writeUpstream(f.buf[fwd:f.start]); err != nil {
			return err
		}
		s.obsForwarded()
	}
	if need := f.pendingWhole(&clientWhole); need > 0 {
		f.makeRoom(need)
	}
	return nil
}

// openSyncPoint counts and tracks the sync point of a Sync ('S'), or of a
// Query or FunctionCall ('Q'), forwarded undecided. After a batch the
// client flushed and did not sync, it ends that batch's sync point instead:
// PostgreSQL answers the batch and the Sync, or the Query (asyncpg sends
// Parse, Describe, Flush, then its COPY as a Query), with one
// ReadyForQuery. It reports false when the session is closing.
func (s *Session) openSyncPoint(kind byte) bool {
	op := extOp{kind: kind}
	if kind == 'Q' {
		op = s.queryOp()
	}
	if s.midBatch {
		s.endBatch()
	} else {
		if !s.beginSync() {
			return false
		}
		s.syncSeq++
		s.obsSync(s.syncSeq)
	}
	s.ext.push(op)
	return true
}

// endBatch forgets the parts of a batch forwarded before a Flush, at the
// end of their sync point.
func (s *Session) endBatch() {
	s.midBatch, s.flushedPure, s.sentExecs, s.sentAnswers = false, false, 0, 0
}

// queryOp is the operation of a Query or FunctionCall about to be sent:
// after a flushed batch it ends that batch (extOp.flushed).
func (s *Session) queryOp() extOp {
	if !s.midBatch {
		return extOp{kind: 'Q'}
	}
	return extOp{kind: 'Q', flushed: true, answers: int32(s.sentAnswers)}
}

// idleStatus returns the transaction status a new sync point starts in, or 0
// when an earlier one is still in flight.
func (s *Session) idleStatus() byte {
	if s.InFlight() > 0 || s.midBatch {
		return 0
	}
	return s.TxStatus()
}

// hold starts holding a batch at the message at offset at of the client
// framer's buffer, once what came before it (from fwd) is written.
func (s *Session) hold(fwd, at int) error {
	if err := s.writeUpstream(s.cf.buf[fwd:at]); err != nil {
		return err
	}
	s.cf.keep = at
	s.refs, s.batchOps, s.heldExecs, s.heldDescribes = s.refs[:0], s.batchOps[:0], 0, 0
	return nil
}

// awaitsClient reports, when a read has left a batch held for the guard,
// whether the batch executes a statement that makes PostgreSQL wait for the
// client's data (Hooks.AwaitsClient): PostgreSQL answers such an Execute at
// once, and the client may wait for that answer before it sends more, so
// the batch cannot wait for its Sync. Each statement is asked about once.
func (s *Session) awaitsClient() bool {
	h := s.cfg.Hooks
	if h == nil || h.AwaitsClient == nil {
		return false
	}
	held := s.cf.buf[s.cf.keep:s.cf.start]
	for i := range s.refs {
		r := &s.refs[i]
		if !r.executed || r.asked {
			continue
		}
		r.asked = true
		sql := r.earlier
		if sql == nil {
			sql = held[r.off : r.off+r.n]
		}
		if h.AwaitsClient(s, sql) {
			return true
		}
	}
	return false
}

// collect records what an extended-protocol message of the held batch does.
// off is the message's offset from the start of the batch.
func (s *Session) collect(typ byte, off int, msg []byte) error {
	body := msg[5:]
	if typ == 'E' {
		portal, _, ok := cstring(body)
		if !ok {
			return fmt.Errorf("%w: malformed Execute", ErrProtocol)
		}
		s.heldExecs++
		s.markExecuted(string(portal))
		return nil
	}
	if typ == 'D' {
		s.heldDescribes++
	}
	op, query, err := s.ext.decode(typ, body)
	if err != nil || op.kind == 0 {
		return err
	}
	if op.kind == 'B' {
		op.bindAt, op.bindLen = int32(off+5), int32(len(body))
	}
	if op.kind == 'P' {
		if query == nil {
			return fmt.Errorf("%w: malformed Parse", ErrProtocol)
		}
		qoff := off + 5 + len(op.name) + 1 // the text follows the name and its NUL
		s.refs = append(s.refs, stmtRef{off: qoff, n: len(query), name: op.name})
		if op.name != "" {
			op.sql = string(query) // kept for Executes in later batches
		}
	}
	s.batchOps = append(s.batchOps, op)
	return nil
}

// markExecuted finds the statement behind a portal: bound in this batch from
// a statement parsed in it, or prepared earlier.
func (s *Session) markExecuted(portal string) {
	stmt, found := "", false
	var at, n int32
	for i := len(s.batchOps) - 1; i >= 0; i-- {
		if op := s.batchOps[i]; op.kind == 'B' && op.name == portal {
			stmt, found, at, n = op.stmt, true, op.bindAt, op.bindLen
			break
		}
	}
	if !found {
		stmt, found = s.ext.PortalStatement(portal)
	}
	if !found {
		return
	}
	for i := len(s.refs) - 1; i >= 0; i-- {
		if r := &s.refs[i]; r.name == stmt && r.earlier == nil {
			r.executed, r.bindAt, r.bindLen = true, at, n
			return
		}
	}
	if stmt == "" {
		if s.unnamedSQL != nil {
			s.refs = append(s.refs, stmtRef{earlier: s.unnamedSQL, executed: true, bindAt: at, bindLen: n})
		}
		return
	}
	if sql, ok := s.ext.statementSQL(stmt); ok {
		// A view of the string, not a copy: the guard only reads it.
		s.refs = append(s.refs, stmtRef{earlier: unsafe.Slice(unsafe.StringData(sql), len(sql)), name: stmt, executed: true,
			bindAt: at, bindLen: n})
	}
}

// decideHeld shows the held batch, which ends at upTo in the framer's
// buffer (after the Sync or Flush just framed, or before a Query), to the
// guard and carries out its verdict: a batch that ends with a Sync as end
// says, or else goes on as after a Flush.
func (s *Session) decideHeld(end byte, upTo int) error {
	f := &s.cf
	held := f.buf[f.keep:upTo]
	s.batch = Batch{Complete: end == 'S', MidBatch: s.midBatch, FlushedPure: s.midBatch && s.flushedPure,
		TxStatus: s.idleStatus(), Stmts: s.batch.Stmts[:0]}
	lastUnnamed := -1
	for i, r := range s.refs {
		sql := r.earlier
		if sql == nil {
			sql = held[r.off : r.off+r.n]
			if r.name == "" {
				lastUnnamed = i
			}
		}
		var bind []byte
		if r.bindLen > 0 {
			bind = held[r.bindAt : r.bindAt+r.bindLen]
		}
		s.batch.Stmts = append(s.batch.Stmts, BatchStmt{SQL: sql, Name: r.name, Executed: r.executed, Bind: bind})
	}
	v := s.cfg.Hooks.Batch(s.ctx, s, &s.batch)
	if lastUnnamed >= 0 {
		// The unnamed statement may be executed by a later batch. A buffer
		// grown for a large text is not kept for the small ones after it:
		// a pooled session would hold its largest ever until it closed.
		sql := s.batch.Stmts[lastUnnamed].SQL
		if cap(s.unnamedSQL) > keepUnnamed && len(sql) <= keepUnnamed {
			s.unnamedSQL = make([]byte, 0, len(sql))
		}
		s.unnamedSQL = append(s.unnamedSQL[:0], sql...)
	}
	f.keep = -1
	return s.carryOut(v, held, s.batchOps, end)
}

// carryOut forwards payload (a Query message, or an extended batch ending with
// Sync or Flush as end says) as the verdict v says. ops are the extended
// operations the batch performs.
func (s *Session) carryOut(v *Verdict, payload []byte, ops []extOp, end byte) error {
	timed := v == nil // a Verdict reports through its Result
	if v == nil {
		v = &Verdict{}
	}
	wctx := s.ctx
	if v.Hold != nil || v.Retry != nil {
		s.MayBlock() // holds and retries wait
		wctx = s.startWait()
		defer s.endWait()
	}
	if v.Hold != nil {
		e := v.Hold(wctx)
		if CanceledByClient(wctx) {
			e = CanceledHeld // also when admitted as the cancel came
		}
		if e != nil {
			v = &Verdict{Refuse: e, Result: v.Result}
		}
	}
	var nonce []byte
	if v.Refuse != nil {
		nonce = newNonce()
		payload, ops = s.substitute(payload, end, nonce)
	}
	complete := end == 'Q' || end == 'S'
	// While PostgreSQL skips up to the client's Sync, it would skip
	// lockguard's statements too, and their Sync would end the skip: the
	// payload goes alone, to be skipped as it would be without lockguard.
	inject := !s.midBatch && !s.ext.skippingNow()
	retry := v.Retry != nil && v.Refuse == nil && complete && inject
	if retry {
		if err := s.waitIdle(); errors.Is(err, errSkipping) {
			inject, retry = false, false
		} else if err != nil {
			return err
		}
	}
	// The named statements the batch creates: an attempt that fails after
	// their Parse leaves them behind (a prepared statement is not undone
	// with its transaction), and the next attempt's Parse would fail with
	// 42P05. Those that exist before the batch are the client's.
	var fresh []string
	if retry {
		for _, op := range ops {
			if op.kind == 'P' && op.name != "" && !s.ext.Prepared(op.name) && !slices.Contains(fresh, op.name) {
				fresh = append(fresh, op.name)
			}
		}
	}
	for attempt := 1; ; attempt++ {
		out := s.cOut[:0]
		if inject {
			var leftover []string
			if attempt > 1 {
				for _, name := range fresh {
					if s.ext.Prepared(name) {
						leftover = append(leftover, name)
					}
				}
			}
			// The batch's own sync point follows its Before statements
			// and the Close of what the last attempt left.
			protects := s.syncSeq + uint64(len(v.Before)) + 1
			if len(leftover) > 0 {
				protects++
				var err error
				if out, err = s.injectClose(out, leftover, protects); err != nil {
					return err
				}
			}
			for _, q := range v.Before {
				var err error
				if out, err = s.injectQuery(out, q, protects); err != nil {
					return err
				}
			}
		}
		// The batch's own sync point.
		if !s.midBatch {
			if !s.beginSync() {
				return errClosing
			}
			s.syncSeq++
			s.batchSeq = s.syncSeq
			if timed {
				s.obsSync(s.syncSeq)
			}
		}
		// Built on the stack and copied to the heap only when kept: most
		// forwarded batches need no plan.
		pv := plan{seq: s.batchSeq, result: v.Result, base: s.sentExecs}
		if retry {
			pv.result = nil // reported once, for the final attempt, below
		}
		for _, n := range v.Notices {
			pv.notices = appendNotice(pv.notices, n)
		}
		if nonce != nil {
			pv.replaceNonce = nonce
			pv.canceled = v.Refuse.Code == CodeQueryCanceled
			pv.replacement = appendErrorResponse(nil, withSeverity(v.Refuse, "ERROR"))
		}
		if retry {
			pv.capture = &capture{buf: make([]byte, 0, 256), done: make(chan struct{})}
		}
		if pv.result != nil || pv.notices != nil || pv.replaceNonce != nil || pv.capture != nil {
			s.plans.add(&pv)
		}
		out = append(out, payload...)
		if end == 'Q' {
			s.ext.push(s.queryOp())
		} else {
			for _, op := range ops {
				s.ext.push(op)
			}
			if end == 'S' {
				s.ext.push(extOp{kind: 'S'})
			}
		}
		if end == 'H' {
			s.flushedPure = (!s.midBatch || s.flushedPure) && s.heldExecs == 0 && v.Refuse == nil &&
				!slices.ContainsFunc(ops, func(op extOp) bool { return op.kind == 'B' })
			s.midBatch = true
			s.sentExecs += s.heldExecs
			if v.Refuse == nil { // else its stand-in Parse fails
				s.sentAnswers += s.heldExecs + s.heldDescribes
			}
		} else {
			s.endBatch()
		}
		if inject && end != 'H' {
			for _, q := range v.After {
				var err error
				if out, err = s.injectQuery(out, q, 0); err != nil {
					return err
				}
			}
		}
		s.cOut = out[:0]
		if err := s.writeUpstream(out); err != nil {
			return err
		}
		if attempt == 1 {
			s.obsForwarded()
		}
		if !retry {
			return nil
		}
		c := pv.capture
		select {
		case <-c.done:
		case <-s.ctx.Done():
			return errClosing
		}
		if c.lost {
			return errClosing
		}
		if c.delivered {
			if v.Result != nil {
				v.Result(c.sqlstate, c.completed)
			}
			return nil
		}
		again, delay, final := v.Retry(attempt, c.sqlstate)
		if !again && v.Result != nil {
			v.Result(c.sqlstate, c.completed)
		}
		if again {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-wctx.Done():
				t.Stop()
			}
			// A cancel wins over a delay that ended at the same time.
			if wctx.Err() == nil {
				if !s.clientGone() {
					continue
				}
				// PostgreSQL answered the attempt before with 55P03; a
				// retry is lockguard's own, and must not run a DDL for a
				// client that has given up on it (a killed deploy).
				s.log.Info("the client closed its connection while lockguard waited to retry its statement; not retried", "attempts", attempt)
				if v.Result != nil {
					v.Result(CodeConnectionFailure, c.completed)
				}
				return errClientGoneInRetry
			}
			if !CanceledByClient(wctx) {
				return errClosing
			}
			// The client cancelled while lockguard waited to retry: this
			// attempt's answer is the last, with the cancel's error, which
			// is also the result reported.
			s.log.Info("the client cancelled a statement lockguard was to retry", "attempts", attempt)
			if v.Result != nil {
				v.Result(CodeQueryCanceled, c.completed)
			}
			final = canceledRetry(attempt)
		}
		answer := c.buf
		if final != nil && c.sqlstate != "" {
			answer = replaceError(answer, appendErrorResponse(nil, withSeverity(final, "ERROR")))
		}
		s.wmu.Lock()
		err := s.writeClientLocked(answer)
		s.atBoundary = err == nil
		s.wmu.Unlock()
		if err != nil {
			return fmt.Errorf("writing to client: %w", err)
		}
		return nil
	}
}

// ErrCancelRequest is the cause (context.Cause) of the end of the context
// that Verdict.Hold gets when the client cancelled: a CancelRequest with the
// session's backend key came to this lockguard while the batch was held.
var ErrCancelRequest = errors.New("lockguard: the client sent a CancelRequest")

// startWait returns the context of a wait in lockguard for the batch being
// carried out, which a CancelRequest ends (cancelWait) until endWait.
func (s *Session) startWait() context.Context {
	ctx, stop := context.WithCancelCause(s.ctx)
	s.waitMu.Lock()
	s.stopWait = stop
	s.waitMu.Unlock()
	return ctx
}

// endWait ends the wait startWait began.
func (s *Session) endWait() {
	s.waitMu.Lock()
	stop := s.stopWait
	s.stopWait = nil
	s.waitMu.Unlock()
	stop(nil)
}

// cancelWait ends the session's wait in lockguard, if it waits: as
// PostgreSQL ignores a cancel that finds its backend idle, a CancelRequest
// that comes while nothing waits changes nothing.
func (s *Session) cancelWait() {
	s.waitMu.Lock()
	stop := s.stopWait
	s.waitMu.Unlock()
	if stop != nil {
		stop(ErrCancelRequest)
	}
}

// waits reports whether the session waits in lockguard (startWait).
func (s *Session) waits() bool {
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	return s.stopWait != nil
}

// CanceledByClient reports whether a context from startWait, such as the
// one Verdict.Hold gets, ended because the client cancelled (and not
// because the session ends).
func CanceledByClient(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), ErrCancelRequest)
}

// canceledMessage is the message of lockguard's answers to a cancel,
// PostgreSQL's own with lockguard's name.
const canceledMessage = "lockguard: canceling statement due to user request"

// CanceledHeld answers a batch held in lockguard (Verdict.Hold) when its
// client cancels.
var CanceledHeld = &Error{Code: CodeQueryCanceled, Message: canceledMessage,
	Detail: "The cancel request came while lockguard held the statement back, because it would have waited behind a lock; it never reached PostgreSQL.",
	Hint:   "Nothing of it ran. Inside a transaction block this error aborts the transaction, as a cancel does."}

// canceledRetry answers a DDL whose client cancelled while lockguard waited
// to retry it.
func canceledRetry(attempt int) *Error {
	tries := "its first attempt"
	if attempt > 1 {
		tries = fmt.Sprintf("%d attempts", attempt)
	}
	return &Error{Code: CodeQueryCanceled, Message: canceledMessage,
		Detail: fmt.Sprintf("The cancel request came while lockguard waited to retry the statement, after %s gave up on its lock_timeout; it was not retried.", tries),
		Hint:   "Nothing of it ran. Run it again when the lock it needs is free; lockguard's log names the session that held it (with monitor-dsn)."}
}

// ownStatementsWait bounds how long a client's CancelRequest waits for a
// statement lockguard injected to end (awaitOwnStatements): they are SETs
// and RESETs, over in microseconds.
const ownStatementsWait = 5 * time.Second

// awaitOwnStatements waits, up to limit, while PostgreSQL runs a statement
// that lockguard injected before or after the client's (injectQuery), so
// that a CancelRequest forwarded after it reaches the client's statement.
// Forwarded at once, it would cancel lockguard's statement instead: the SET
// lock_timeout ahead of a DDL, which would then run without it and with
// the client's cancel spent; or the restore after it, which would leave
// lockguard's value in force for the rest of the session. A cancel that
// came during the restore then finds the backend idle, or the client's next
// statement, as it would have without lockguard.
func (s *Session) awaitOwnStatements(limit time.Duration) {
	if s.runsInjected() {
		s.log.Debug("a cancel request waits for a statement lockguard injected to end")
		s.pollUntil(func() bool { return !s.runsInjected() }, limit)
	}
}

// passCancelOn cancels the client's statement, sync point protects, that
// a statement lockguard sent ahead of it was for, once that statement has
// ended and the client's runs: a cancel hit lockguard's statement instead
// (one forwarded by another replica, pg_cancel_backend from a console, or
// one that came here as a statement before it ended), and the client's
// would otherwise run without what lockguard set for it — a DDL without
// its lock timeout — although someone meant to stop it. It runs on a
// goroutine of its own: it waits for the upstream side, which calls it.
func (s *Session) passCancelOn(protects uint64) {
	if !s.pollUntil(func() bool { return s.zPub.Load()+1 >= protects }, ownStatementsWait) || s.zPub.Load()+1 != protects {
		return // the client's statement ended already, or the session did
	}
	s.log.Warn("a cancel request hit a statement lockguard sent ahead of the client's; lockguard cancels the client's statement, as was meant")
	if err := s.Cancel(); err != nil {
		s.log.Warn("cancelling the client's statement failed", "err", err)
	}
}

// pollUntil looks at cond every 200 µs until it holds, and reports whether
// it did before limit passed and the session ended. It is for the rare
// waits on the upstream side's progress that a cancel makes.
func (s *Session) pollUntil(cond func() bool, limit time.Duration) bool {
	t := time.NewTicker(200 * time.Microsecond)
	defer t.Stop()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-t.C:
		case <-s.ctx.Done():
			return false
		}
	}
	return true
}

// runsInjected reports whether the sync point PostgreSQL works on now, the
// first one not answered, is a statement lockguard injected.
func (s *Session) runsInjected() bool {
	return s.plans.active() && s.plans.swallows(s.zPub.Load()+1)
}

// injectQuery appends a statement whose responses are swallowed. It goes
// through the extended protocol with a named statement and portal of its
// own, so that it neither destroys the client's unnamed prepared statement
// (a Query message would) or unnamed portal (which lives until the end of a
// transaction block) nor runs in one implicit transaction with anything
// else. protects is the sync point of the client's statement that a
// statement sent ahead of it is for (0 for one sent after it).
func (s *Session) injectQuery(out []byte, sql string, protects uint64) ([]byte, error) {
	if !s.beginSync() {
		return out, errClosing
	}
	s.syncSeq++
	pl := plan{seq: s.syncSeq, swallow: true, protects: protects}
	if protects == 0 {
		pl.sql = sql
	}
	s.plans.add(&pl)
	name := "lockguard_" + string(newNonce())
	var err error
	for _, m := range []interface{ Encode([]byte) ([]byte, error) }{
		&pgproto3.Parse{Name: name, Query: sql},
		&pgproto3.Bind{DestinationPortal: name, PreparedStatement: name},
		&pgproto3.Execute{Portal: name},
		&pgproto3.Close{ObjectType: 'P', Name: name},
		&pgproto3.Close{ObjectType: 'S', Name: name},
		&pgproto3.Sync{},
	} {
		if out, err = m.Encode(out); err != nil {
			return out, fmt.Errorf("encoding injected statement: %w", err)
		}
	}
	s.ext.push(extOp{kind: 'P', name: name})
	s.ext.push(extOp{kind: 'B', name: name, stmt: name})
	s.ext.push(extOp{kind: 'p', name: name})
	s.ext.push(extOp{kind: 'c', name: name})
	s.ext.push(extOp{kind: 'S'})
	return out, nil
}

// injectClose appends a Close of each prepared statement in names and a
// Sync to out: a sync point of lockguard's own whose answers the client
// never sees, for the client's sync point protects.
func (s *Session) injectClose(out []byte, names []string, protects uint64) ([]byte, error) {
	if !s.beginSync() {
		return out, errClosing
	}
	s.syncSeq++
	s.plans.add(&plan{seq: s.syncSeq, swallow: true, protects: protects})
	var err error
	for _, name := range names {
		if out, err = (&pgproto3.Close{ObjectType: 'S', Name: name}).Encode(out); err != nil {
			return out, fmt.Errorf("encoding injected Close: %w", err)
		}
		s.ext.push(extOp{kind: 'c', name: name})
	}
	out, _ = (&pgproto3.Sync{}).Encode(out)
	s.ext.push(extOp{kind: 'S'})
	return out, nil
}

// substitute replaces a refused payload with one that makes PostgreSQL fail
// at the same point with an error that carries nonce, so that an open
// transaction is aborted exactly as by any error; the plan then replaces
// that error with the refusal.
func (s *Session) substitute(payload []byte, end byte, nonce []byte) ([]byte, []extOp) {
	sql := `SELECT "lockguard.refused.` + string(nonce) + `"()`
	var out []byte
	if end == 'Q' {
		out, _ = (&pgproto3.Query{String: sql}).Encode(nil)
		return out, nil
	}
	out, _ = (&pgproto3.Parse{Query: sql}).Encode(nil)
	switch end {
	case 'S':
		out, _ = (&pgproto3.Sync{}).Encode(out)
	case 'H':
		out, _ = (&pgproto3.Flush{}).Encode(out)
	}
	return out, []extOp{{kind: 'P'}}
}

// syncMsg is a Sync message.
var syncMsg = [5]byte{'S', 0, 0, 0, 4}

// errNotFlushed is EndFlushed's answer for a batch it cannot end.
var errNotFlushed = errors.New("lockguard: the batch does not continue a part that only parsed")

// EndFlushed ends the parts of the current extended batch that the client
// flushed (Batch.FlushedPure) with a Sync of lockguard's own, whose
// ReadyForQuery the client does not see, and waits for it. Parsing and
// describing leave nothing in the implicit transaction that Sync commits,
// and prepared statements, the unnamed one included, outlive it. The held
// batch then starts a sync point of its own: Verdict.Before, After and
// Retry apply to it. It returns the transaction status the held batch
// starts in.
//
// When a flushed part failed (its Parse had an error), PostgreSQL would
// skip everything up to the client's Sync, and lockguard's Sync ended that;
// it makes PostgreSQL skip again with a Parse of its own that fails, whose
// error the client does not see. failed is then true and the held batch
// stays a later part of that sync point: nothing of it runs.
//
// Only Hooks.Batch may call it.
func (s *Session) EndFlushed() (status byte, failed bool, err error) {
	if !s.midBatch || !s.flushedPure {
		return 0, false, errNotFlushed
	}
	s.MayBlock()
	if err := s.sendUnsent(); err != nil {
		return 0, false, err
	}
	seq := s.batchSeq
	s.plans.hideReady(seq)
	s.ext.push(extOp{kind: 'S'})
	if err := s.writeUpstream(syncMsg[:]); err != nil {
		return 0, false, err
	}
	if err := s.waitIdle(); err != nil {
		return 0, false, err
	}
	// The upstream side wrote errSeq before its ReadyForQuery ended the
	// sync point (an atomic, which waitIdle read).
	failed = s.errSeq == seq
	s.endBatch()
	status = s.TxStatus()
	if !failed {
		return status, false, nil
	}
	if !s.beginSync() {
		return 0, false, errClosing
	}
	s.syncSeq++
	s.batchSeq = s.syncSeq
	s.plans.add(&plan{seq: s.syncSeq, dropErrors: true})
	name := "lockguard_" + string(newNonce())
	out, err := (&pgproto3.Parse{Name: name, Query: `SELECT "lockguard.skip"()`}).Encode(s.cOut[:0])
	if err != nil {
		return 0, false, fmt.Errorf("encoding the skip: %w", err)
	}
	s.ext.push(extOp{kind: 'P', name: name})
	s.midBatch = true
	s.cOut = out[:0]
	if err := s.writeUpstream(out); err != nil {
		return 0, false, err
	}
	return status, true, nil
}

// sendUnsent writes the messages before the Query that Hooks.Batch is
// deciding: pumpClientGuarded forwards undecided messages in one write with
// what follows them, and a hook that waits for this session's sync points
// must not wait for ones still in lockguard's buffer.
func (s *Session) sendUnsent() error {
	b := s.unsent
	if b == nil {
		return nil
	}
	s.unsent = nil
	return s.writeUpstream(b)
}

// WaitIdle waits until no sync point of this session is in flight, so that
// TxStatus is the status the next batch starts in. Only Hooks.Batch may call
// it (it runs on the client goroutine). It fails when the session closes,
// and when an extended batch failed and PostgreSQL skips everything until
// the client's Sync, which has not come: the batch being decided is then
// skipped too, whatever the verdict.
func (s *Session) WaitIdle() error { return s.waitIdle() }

// errSkipping is waitIdle's answer while PostgreSQL skips up to a Sync the
// client has not sent.
var errSkipping = errors.New("lockguard: PostgreSQL skips the session's messages until the client's Sync")

// waitIdle waits until no sync point is in flight.
func (s *Session) waitIdle() error {
	s.MayBlock()
	if err := s.sendUnsent(); err != nil {
		return err
	}
	s.idleWaiters.Add(1)
	defer s.idleWaiters.Add(-1)
	for s.InFlight() > 0 {
		if s.ext.skippingNow() {
			return errSkipping
		}
		select {
		case <-s.zNotify:
		case <-time.After(100 * time.Millisecond):
		case <-s.ctx.Done():
			return errClosing
		}
	}
	return nil
}

// Cancel asks PostgreSQL to cancel the statement this session's backend is
// running, with a CancelRequest on a new connection.
func (s *Session) Cancel() error {
	if s.cancelPacket == nil {
		return fmt.Errorf("lockguard: session has no backend key")
	}
	return s.cfg.Upstream.forwardCancel(s.ctx, s.cancelPacket)
}

var nonceSeq atomic.Uint64
var nonceBase = func() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

func newNonce() []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], nonceSeq.Add(1))
	return []byte(nonceBase + hex.EncodeToString(b[4:]))
}

func withSeverity(e *Error, sev string) *Error {
	if e.Severity != "" {
		return e
	}
	c := *e
	c.Severity = sev
	return &c
}

// appendNotice appends e as a NoticeResponse.
func appendNotice(dst []byte, e *Error) []byte {
	sev := e.Severity
	if sev == "" {
		sev = "WARNING"
	}
	msg := pgproto3.NoticeResponse{Severity: sev, SeverityUnlocalized: sev, Code: e.Code,
		Message: e.Message, Detail: e.Detail, Hint: e.Hint}
	out, err := msg.Encode(dst)
	if err != nil {
		panic("BUG: encoding NoticeResponse: " + err.Error())
	}
	return out
}

// replaceError returns msgs with its first ErrorResponse replaced by repl.
func replaceError(msgs, repl []byte) []byte {
	for i := 0; i+5 <= len(msgs); {
		n := 1 + int(be32(msgs[i+1:]))
		if i+n > len(msgs) {
			break
		}
		if msgs[i] == 'E' {
			out := make([]byte, 0, len(msgs)-n+len(repl))
			out = append(out, msgs[:i]...)
			out = append(out, repl...)
			return append(out, msgs[i+n:]...)
		}
		i += n
	}
	return msgs
}
