package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"time"
)

// clientWhole lists the frontend messages read whole: the ones that carry SQL
// or change session state. Everything else (CopyData above all) is streamed.
var clientWhole = func() (t [256]bool) {
	for _, c := range []byte("QPBCDESHXF") {
		t[c] = true
	}
	return t
}()

// serverWhole lists the backend messages read whole: ReadyForQuery,
// ErrorResponse, ParseComplete, BindComplete, CloseComplete, BackendKeyData,
// ParameterStatus, and the small messages that end a statement or a
// Describe and are counted (CommandComplete, EmptyQueryResponse,
// PortalSuspended, NoData). DataRow, CopyData and the rest are streamed.
var serverWhole = func() (t [256]bool) {
	for _, c := range []byte("ZE123KSCIsn") {
		t[c] = true
	}
	return t
}()

// errClientTerminated means the client sent Terminate.
var errClientTerminated = errors.New("client sent Terminate")

// errClosing means the session was closed while a message waited.
var errClosing = errors.New("session is closing")

// errClientGoneInRetry ends a session whose client closed its connection
// while lockguard waited to retry its statement: the client vanished, as
// at an EOF (logged where it is found, so the session's end is not).
var errClientGoneInRetry = fmt.Errorf("the client closed its connection while lockguard waited to retry: %w", io.EOF)

// relay runs both directions until the session ends.
func (s *Session) relay() {
	s.cf.init(s.cfg.maxMessageSize(), pgMaxMessage)
	defer s.cf.release()
	// The upstream framer was set up by authenticate with a small limit.
	s.uf.limit, s.uf.streamLimit = 1<<30, 1<<30
	// Plain sockets are read and written with raw system calls from here on
	// (sockio_linux.go): the relay's reads and writes never block.
	// Published under both locks: kill, on another goroutine, may read
	// them at any time (clientWriteDeadline, answerFatal, kickSockets).
	s.wmu.Lock()
	s.sockMu.Lock()
	s.cf.src, s.cf.dst = newRawSock(s.client, false), newRawSock(s.upstream, true)
	s.uf.src, s.uf.dst = newRawSock(s.upstream, false), newRawSock(s.client, true)
	s.socks = [2][2]*rawSock{dirClient: {s.cf.src, s.uf.dst}, dirUpstream: {s.uf.src, s.cf.dst}}
	s.sockMu.Unlock()
	s.wmu.Unlock()
	if h := s.cfg.Hooks; h != nil {
		if h.Open != nil {
			s.State = h.Open(s)
		}
		if h.Close != nil {
			defer h.Close(s)
		}
	}
	s.sides = make(chan sideEnd, 2)
	if w := s.cf.dst; w != nil {
		w.onWait = s.MayBlock
	}
	if w := s.uf.dst; w != nil {
		w.onWait = s.MayBlock
	}
	var cerr, uerr error
	if lp := s.loopFor(); lp != nil && lp.add(s) {
		cerr, uerr = s.relayLooped(lp)
	} else {
		go s.upstreamSide(true, nil)
		s.clientSide(true, nil)
		s.sideEnds(2, &cerr, &uerr)
	}
	s.uf.release()
	s.close()
	if s.lp != nil {
		s.lp.release(s)
	}
	if !errors.Is(cerr, errClientTerminated) && !s.upDone.Load() {
		s.logEnd("session ended", cerr)
	} else {
		s.logEnd("session ended", uerr)
	}
}

// relayLooped relays a session the loop lp took, until it ends. The loop
// relays it until it must wait; then the directions the loop does not hand
// to another goroutine run here, until the session is idle again
// (Session.park) and the loop takes it back.
func (s *Session) relayLooped(lp *loop) (cerr, uerr error) {
	for {
		m := <-s.leave
		switch m.owner {
		case dirClient:
			s.upstreamSide(m.ended != dirUpstream, m.err)
		case dirUpstream:
			s.clientSide(m.ended != dirClient, m.err)
		default:
			go s.upstreamSide(m.ended != dirUpstream, m.err)
			s.clientSide(m.ended != dirClient, m.err)
		}
		s.sideEnds(2, &cerr, &uerr)
		cpark, upark := errors.Is(cerr, errRejoin), errors.Is(uerr, errRejoin)
		if !cpark && !upark {
			return cerr, uerr
		}
		if cpark && upark && lp.rejoin(s) {
			continue
		}
		// The loop refused the session, which is closing (both
		// directions stop together, so one that stopped while the other
		// ended is not expected): the directions that stopped go on
		// here, and find it closed.
		s.parkOff()
		n := 0
		if cpark {
			go s.clientSide(true, nil)
			n++
		}
		if upark {
			go s.upstreamSide(true, nil)
			n++
		}
		s.sideEnds(n, &cerr, &uerr)
		return cerr, uerr
	}
}

// sideEnds waits for n directions to end and records how they did in cerr
// and uerr.
func (s *Session) sideEnds(n int, cerr, uerr *error) {
	for range n {
		if e := <-s.sides; e.dir == dirClient {
			*cerr = e.err
		} else {
			*uerr = e.err
		}
	}
}

// errRejoin ends a direction's goroutine when the session goes back to its
// event loop (Session.park).
var errRejoin = errors.New("session goes back to its event loop")

// The two directions of a session.
const (
	dirClient   = 0 // client → PostgreSQL
	dirUpstream = 1 // PostgreSQL → client
)

// sideEnd is how one direction of a session ended.
type sideEnd struct {
	dir int
	err error
}

// leaveMsg tells a session's relay goroutine that the session left the event
// loop: owner is the direction the goroutine that left goes on relaying (-1
// for none); ended, when not -1, the direction that ended in the loop, with
// err.
type leaveMsg struct {
	owner, ended int
	err          error
}

// errWouldBlock is returned by a read in the event loop when the socket has
// no bytes after all.
var errWouldBlock = errors.New("no bytes ready")

// errUpstreamEOF is how the loop reports that PostgreSQL closed the
// connection cleanly.
var errUpstreamEOF = errors.New("upstream closed")

// clientSide relays client messages (when start is set; else the direction
// already ended with err) and then ends the session's client side.
func (s *Session) clientSide(start bool, err error) {
	if start {
		err = s.safely("relaying from the client", s.relayClientToUpstream)
	}
	if errors.Is(err, errRejoin) {
		s.sides <- sideEnd{dirClient, err}
		return
	}
	s.endClientSide(err)
	s.sides <- sideEnd{dirClient, err}
}

// upstreamSide relays server messages (when start is set; else the
// direction already ended with err) and then closes the client connection.
func (s *Session) upstreamSide(start bool, err error) {
	if start {
		err = s.safely("relaying from PostgreSQL", s.relayUpstreamToClient)
	}
	if errors.Is(err, errRejoin) {
		s.sides <- sideEnd{dirUpstream, err}
		return
	}
	if err == errUpstreamEOF {
		err = nil
	}
	if errors.As(err, new(*panicError)) {
		s.answerFatal(internalError) // gives up if the panic left the client's lock held
	}
	s.plans.abandon()
	s.upDone.Store(true)
	s.client.Close() // unblocks relayClientToUpstream
	s.kickSockets()
	s.sides <- sideEnd{dirUpstream, err}
}

// continueSide goes on relaying direction d on the calling goroutine, which
// was running the event loop when d's pump had to wait; err is that pump's
// result.
func (s *Session) continueSide(d int, err error) {
	if err == errWouldBlock {
		err = nil
	}
	if d == dirClient {
		s.clientSide(err == nil, err)
	} else {
		s.upstreamSide(err == nil, err)
	}
}

// pumpDir runs one pump of direction d for the event loop.
func (s *Session) pumpDir(d int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = s.recovered("relaying in the event loop", r)
		}
	}()
	s.pumping = d
	if d == dirClient {
		return s.pumpClient()
	}
	done, err := s.pumpUpstream()
	if done && err == nil {
		return errUpstreamEOF
	}
	return err
}

// lastFull reports whether direction d's last read filled its buffer, so
// that more bytes may be waiting.
func (s *Session) lastFull(d int) bool {
	if d == dirClient {
		return s.cf.full
	}
	return s.uf.full
}

// MayBlock must be called before the session waits for anything (a query on
// another connection, a timer, another session), by the relay and by a hook
// running for this session: while the session is relayed by an event loop,
// that would stall every session of the loop, so it leaves the loop first
// (see loop). It is cheap when there is nothing to do.
func (s *Session) MayBlock() {
	if r := s.runner.Load(); r != nil && !r.retired {
		s.runner.Store(nil)
		r.handOff(s)
	}
}

// panicError is a panic in a session's relay, recovered: a bug in one session
// must not take the others down.
type panicError struct{ v any }

func (e *panicError) Error() string { return fmt.Sprintf("internal error: %v", e.v) }

// internalError is what the client of a session that hit a lockguard bug is
// told.
var internalError = &Error{Severity: "FATAL", Code: "XX000", Message: "lockguard: internal error; this session was closed",
	Detail: "lockguard hit a bug while relaying this session; its log has the details. Other sessions are not affected. A statement in progress may or may not have completed.",
	Hint:   "Reconnect, and check whether the last transaction committed. Please report the log line \"lockguard bug\"."}

// safely runs one direction of the relay, turning a panic into an error after
// logging it with its stack.
func (s *Session) safely(where string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = s.recovered(where, r)
		}
	}()
	return f()
}

// recovered logs a recovered panic with its stack and returns it as an error.
func (s *Session) recovered(where string, r any) error {
	s.log.Error("lockguard bug: a session panicked; it is closed and other sessions go on",
		"where", where, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	return &panicError{r}
}

// endClientSide closes the upstream connection after the client side ended: it
// cancels a statement still running for a client that vanished, answers a
// protocol error, and lets PostgreSQL roll back an open transaction.
func (s *Session) endClientSide(err error) {
	if s.upDone.Load() {
		return
	}
	if errors.Is(err, errClientTerminated) {
		// Terminate was forwarded; the server closes its side.
		t := time.Now().Add(5 * time.Second)
		_ = s.upstream.SetReadDeadline(t)
		s.sockets()[dirUpstream][0].setDeadline(t)
		return
	}
	var tl *tooLarge
	switch {
	case errors.As(err, &tl):
		s.answerFatal(&Error{Code: CodeProtocolViolation,
			Message: "lockguard: message too large",
			Detail:  tl.Error() + ".",
			Hint:    "Raise lockguard's max-message-size, or send large data with COPY."})
	case errors.Is(err, ErrProtocol):
		s.answerFatal(&Error{Code: CodeProtocolViolation, Message: "lockguard: invalid frontend message",
			Detail: err.Error() + ".", Hint: "This is a client bug; the session was closed."})
	case errors.As(err, new(*panicError)):
		s.answerFatal(internalError)
	}
	if s.busy() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.cfg.Upstream.forwardCancel(ctx, s.cancelPacket); err != nil {
			s.log.Warn("cancelling the statement of a vanished client failed", "err", err)
		}
		cancel()
	}
	// The server closes after this Terminate; its EOF may reach the
	// upstream reader before the Close below does, and must not be
	// reported to the client as a lost connection.
	s.terminated.Store(true)
	_ = s.upstream.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = s.upstream.Write(terminateMsg[:])
	s.upstream.Close()
	s.kickSockets()
}

var terminateMsg = [5]byte{'X', 0, 0, 0, 4}

// busy reports whether a statement may be running upstream.
func (s *Session) busy() bool { return uint32(s.state.Load()) > 0 }

// beginSync counts a sync point about to be sent upstream. It fails once the
// session is closing, so nothing new starts after a drain decision.
func (s *Session) beginSync() bool {
	for {
		old := s.state.Load()
		if old&closingBit != 0 {
			return false
		}
		if s.state.CompareAndSwap(old, old+1) {
			return true
		}
	}
}

// endSync counts the ReadyForQuery that ends a sync point.
func (s *Session) endSync() {
	for {
		old := s.state.Load()
		if uint32(old) == 0 || s.state.CompareAndSwap(old, old-1) {
			return
		}
	}
}

// tryClose marks an idle session (no sync point in flight, outside a
// transaction) as closing. It reports whether it did.
func (s *Session) tryClose() bool {
	if s.TxStatus() != 'I' {
		return false
	}
	return s.state.CompareAndSwap(0, closingBit)
}

// drain closes the session now if it is idle, else when it next becomes idle.
func (s *Session) drain() {
	s.draining.Store(true)
	// A session still starting up checks for the shutdown itself when its
	// startup ends (serve).
	if s.relaying.Load() && s.tryClose() {
		s.kill(shutdownError)
	}
}

// abort ends the session from another goroutine: kill once it relays; a
// session still in startup has its client connection closed, which ends the
// startup, and its own goroutine closes the rest.
func (s *Session) abort(e *Error) {
	if s.relaying.Load() {
		s.kill(e)
		return
	}
	s.client.Close()
}

// kill ends the session from outside its goroutines: it answers e when the
// client stream is at a message boundary, cancels a running statement and
// closes both connections.
func (s *Session) kill(e *Error) {
	s.state.Or(closingBit)
	busy := s.upstream != nil && s.busy()
	if busy && e == shutdownError {
		e = shutdownInFlightError // a COMMIT in flight may have committed
	}
	// A write to a client that does not read must not hold up the kill.
	s.clientWriteDeadline(time.Now().Add(time.Second))
	s.answerFatal(e)
	if busy && s.cancelPacket != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = s.cfg.Upstream.forwardCancel(ctx, s.cancelPacket)
		cancel()
	}
	s.close()
}

// answerFatal sends e to the client if that keeps the stream well formed.
// Nothing is relayed to the client after it.
func (s *Session) answerFatal(e *Error) {
	if !s.wmu.TryLock() {
		// A relay write is blocked on a client that does not read; the
		// write deadline set by the caller ends it. Give it a moment.
		deadline := time.Now().Add(1500 * time.Millisecond)
		for !s.wmu.TryLock() {
			if time.Now().After(deadline) {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	defer s.wmu.Unlock()
	if !s.atBoundary || s.fatalSent {
		return
	}
	s.clientWriteDeadline(time.Now().Add(time.Second)) // nothing is relayed after it
	_ = s.writeClientNow(appendErrorResponse(nil, e))
	s.atBoundary = false
	s.fatalSent = true
}

// relayClientToUpstream forwards client messages until the client ends.
func (s *Session) relayClientToUpstream() error {
	for {
		if err := s.pumpClient(); err != nil {
			return err
		}
	}
}

// pumpClient reads what the client sent with one Read, notes the messages that
// became complete and forwards them with one Write.
func (s *Session) pumpClient() error {
	if w := s.cf.dst; w != nil && w.owes() {
		if err := w.settleRest(); err != nil {
			return &upstreamWriteError{err}
		}
	}
	if s.cfg.Hooks != nil && s.cfg.Hooks.Batch != nil {
		return s.pumpClientGuarded()
	}
	f := &s.cf
	if err := f.fill(s.client); err != nil {
		if err == errWouldBlock || err == errRejoin {
			return err
		}
		return fmt.Errorf("reading from client: %w", err)
	}
	fwd := f.start
	for {
		fr, ok, err := f.next(&clientWhole)
		if err != nil {
			if werr := s.writeUpstream(f.buf[fwd:f.start]); werr != nil {
				return werr
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
		if err := s.noteClient(fr.typ, fr.msg); err != nil {
			if errors.Is(err, errClientTerminated) {
				if werr := s.writeUpstream(f.buf[fwd:f.start]); werr != nil {
					return werr
				}
			}
			return err
		}
	}
	if err := s.writeUpstream(f.buf[fwd:f.start]); err != nil {
		return err
	}
	if need := f.pendingWhole(&clientWhole); need > 0 {
		f.makeRoom(need)
	}
	return nil
}

func (s *Session) writeUpstream(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	var err error
	if d := s.cf.dst; d != nil {
		_, err = d.Write(b)
	} else {
		_, err = s.upstream.Write(b)
	}
	if err != nil {
		return &upstreamWriteError{err}
	}
	return nil
}

type upstreamWriteError struct{ err error }

func (e *upstreamWriteError) Error() string { return "writing upstream: " + e.err.Error() }
func (e *upstreamWriteError) Unwrap() error { return e.err }

// noteClient tracks the session state a frontend message changes.
func (s *Session) noteClient(typ byte, msg []byte) error {
	switch typ {
	case 'Q', 'F':
		// After extended messages with no Sync (Parse, Describe, Flush,
		// then a Query, as asyncpg sends its COPY), PostgreSQL answers the
		// open batch and the Query with one ReadyForQuery: the Query ends
		// the batch's sync point rather than starting one.
		op := extOp{kind: 'Q'}
		if s.batchOpen {
			s.batchOpen = false
			op.flushed, op.answers = true, int32(s.batchAnswers)
		} else if !s.beginSync() {
			return errClosing
		}
		s.ext.push(op)
	case 'S':
		if !s.batchOpen && !s.beginSync() {
			return errClosing
		}
		s.batchOpen = false
		s.ext.push(extOp{kind: 'S'})
	case 'P', 'B', 'C', 'D', 'E':
		if !s.batchOpen {
			if !s.beginSync() {
				return errClosing
			}
			s.batchOpen, s.batchAnswers = true, 0
		}
		if typ == 'D' || typ == 'E' {
			s.batchAnswers++
		}
		return s.ext.noteClient(typ, msg[5:])
	case 'X':
		return s.clientTerminates()
	}
	return nil
}

// noteStreamed tracks a streamed client message (CopyData and the like,
// relayed in order): the end of a COPY (CopyDone, CopyFail) goes with the
// batch held for the guard, if one is held, or else straight to the
// tracker.
func (s *Session) noteStreamed(typ byte) {
	if typ != 'c' && typ != 'f' {
		return
	}
	if s.cf.keep >= 0 {
		s.batchOps = append(s.batchOps, extOp{kind: 'd'})
	} else {
		s.ext.push(extOp{kind: 'd'})
	}
}

// clientTerminates sets terminated, before the client's Terminate is
// forwarded, and returns errClientTerminated.
func (s *Session) clientTerminates() error {
	s.terminated.Store(true)
	return errClientTerminated
}

// relayUpstreamToClient forwards server messages until the upstream ends.
func (s *Session) relayUpstreamToClient() error {
	for {
		done, err := s.pumpUpstream()
		if done || err != nil {
			return err
		}
	}
}

// pumpUpstream reads what the server sent with one Read, notes the messages
// that change session state and forwards them with one Write. done reports
// that the session ended without an error.
func (s *Session) pumpUpstream() (done bool, err error) {
	f := &s.uf
	if w := s.uf.dst; w != nil && w.owes() {
		s.wmu.Lock()
		err := w.settleRest()
		if err != nil {
			s.atBoundary = false
		}
		s.wmu.Unlock()
		if err != nil {
			return true, fmt.Errorf("writing to client: %w", err)
		}
	}
	if err := f.fill(s.upstream); err != nil {
		if err == errWouldBlock || err == errRejoin {
			return false, err
		}
		// Mark the upstream gone before telling the client, so that the
		// client side, which may see the client close first, does not try
		// to cancel a statement on a server that is not there.
		s.upDone.Store(true)
		if !errors.Is(err, net.ErrClosed) && !s.upFatal && !s.terminated.Load() {
			s.sendQueued()
			s.answerFatal(&Error{Code: CodeConnectionFailure,
				Message: "lockguard: lost the connection to upstream PostgreSQL",
				Detail:  fmt.Sprintf("Reading from %s: %v. A statement in progress may or may not have completed.", s.cfg.Upstream.Address, err),
				Hint:    "Reconnect; check whether the last transaction committed before retrying it."})
		}
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		return true, fmt.Errorf("reading upstream: %w", err)
	}
	if s.plans.whole() {
		return s.pumpUpstreamPlanned()
	}
	fwd := f.start
	ready := false
	for {
		fr, ok, err := f.next(&serverWhole)
		if err != nil {
			_ = s.writeClientChunk(f.buf[fwd:f.start], f.skip == 0)
			return true, fmt.Errorf("reading upstream: %w", err)
		}
		if !ok {
			break
		}
		if fr.whole {
			isReady := s.noteServer(fr.typ, fr.msg)
			ready = isReady || ready
			if isReady && s.plans.active() {
				s.reportLight(s.zSeq)
			}
		} else if fr.typ == 'T' {
			s.descDone++ // streamed: see noteServer
		} else if fr.typ == 'G' {
			s.ext.onCopyIn()
		}
	}
	if err := s.writeClientChunk(f.buf[fwd:f.start], f.skip == 0); err != nil {
		return true, err
	}
	return s.afterUpstreamChunk(ready, &serverWhole)
}

// noteServer tracks the session state a backend message changes and reports
// whether it was a ReadyForQuery.
func (s *Session) noteServer(typ byte, msg []byte) bool {
	switch typ {
	case 'Z':
		status := byte('I')
		if len(msg) == 6 {
			status = msg[5]
		}
		voided, skipped := s.ext.onReady(status)
		for range voided {
			s.skippedReady(msg, false)
		}
		for range skipped {
			s.skippedReady(msg, true)
		}
		s.txStatus.Store(s.txStatus.Load()<<8&0xff00 | uint32(status))
		s.countReady()
		if skipped > 0 {
			s.failedBySkip() // skipped too, up to the Sync
		}
		s.syncDone, s.descDone = 0, 0
		s.endSync()
		if s.obs.on {
			s.obsServer(typ, msg)
		}
		return true
	case 'E':
		if s.ext.onError(s.syncDone + s.descDone) {
			// A wait for the session to be idle would wait for the
			// client's Sync: waitIdle gives up.
			s.wakeIdleWaiter()
		}
		s.noteError(msg)
		s.upFatal = isFatal(msg)
		if s.obs.on {
			s.obsServer(typ, msg)
		}
	case '1', '2', '3':
		s.ext.onAck(typ)
	case 'C', 'I', 's':
		// An Execute stopped at its row limit (PortalSuspended) ran too.
		s.syncDone++
	case 'T', 'n':
		s.descDone++ // a Describe's answer, or a Query's RowDescription
	case 'G':
		s.ext.onCopyIn() // streamed but for planned sync points
	case 'S':
		s.noteParameter(msg)
	}
	return false
}

// skippedReady ends a sync point whose ReadyForQuery never comes, and
// that the ReadyForQuery msg of a later Sync ends with its own: after an
// error in an extended batch PostgreSQL skipped its Query or FunctionCall
// (or the one that ended a flushed batch), which failed with that error
// (failed); or PostgreSQL ignored its Sync in copy-in mode (its COPY
// ends with msg).
func (s *Session) skippedReady(msg []byte, failed bool) {
	s.countReady()
	if failed {
		s.failedBySkip()
	}
	s.endSync()
	if s.obs.on {
		code, has := s.obs.code, s.obs.hasCode
		s.obsServer('Z', msg)
		s.obs.code, s.obs.hasCode = code, has
	}
	if s.plans.active() {
		if pl := s.plans.forSeq(s.zSeq); pl != nil {
			s.completePlan(pl, s.zSeq)
		}
	}
}

// countReady counts the end of a sync point: its ReadyForQuery, or that of
// a later one (skippedReady).
func (s *Session) countReady() {
	s.zSeq++
	s.zPub.Store(s.zSeq)
}

// wakeIdleWaiter wakes a waitIdle, if one waits, to look again.
func (s *Session) wakeIdleWaiter() {
	if s.idleWaiters.Load() > 0 {
		select {
		case s.zNotify <- struct{}{}:
		default:
		}
	}
}

// failedBySkip records that sync point zSeq, which PostgreSQL skipped
// after an error, failed with that error; the sync point the error came in
// keeps the statements it completed before it (noteError).
func (s *Session) failedBySkip() {
	if s.errSeq != s.zSeq {
		s.errSeq, s.errAt = s.zSeq, 0
	}
}

func (s *Session) afterUpstreamChunk(ready bool, whole *[256]bool) (bool, error) {
	if ready {
		s.wakeIdleWaiter()
		if s.draining.Load() && s.tryClose() {
			s.sendQueued()
			s.kill(shutdownError)
			return true, nil
		}
	}
	if need := s.uf.pendingWhole(whole); need > 0 {
		s.uf.makeRoom(need)
	}
	return false, nil
}

// pumpUpstreamPlanned is pumpUpstream while some sync point has a plan: every
// message is read whole so that it can be held, dropped or replaced.
func (s *Session) pumpUpstreamPlanned() (bool, error) {
	f := &s.uf
	out := s.upOut[:0]
	// The rest of a message that was being streamed belongs to an earlier,
	// unplanned sync point: pass it on.
	from := f.start
	f.passRest()
	out = append(out, f.buf[from:f.start]...)
	ready := false
	for f.skip == 0 {
		fr, ok, err := f.next(&allWhole)
		if err != nil {
			_ = s.writeClientChunk(out, true)
			return true, fmt.Errorf("reading upstream: %w", err)
		}
		if !ok {
			break
		}
		isReady := s.noteServer(fr.typ, fr.msg)
		ready = ready || isReady
		seq := s.zSeq + 1
		if isReady {
			seq = s.zSeq // noteServer counted it
		}
		pl := s.plans.forSeq(seq)
		if pl == nil {
			out = append(out, fr.msg...)
			continue
		}
		out = s.handleWithPlan(pl, fr.typ, fr.msg, out)
		if isReady {
			s.completePlan(pl, seq)
		}
	}
	s.upOut = out[:0]
	if err := s.writeClientChunk(out, f.skip == 0); err != nil {
		return true, err
	}
	return s.afterUpstreamChunk(ready, &allWhole)
}

// reportLight completes the light plan (one that only reports its sync
// point's result) of sync point seq, whose ReadyForQuery came while
// responses are relayed as they come. It runs before the responses are
// written, as the planned path does.
func (s *Session) reportLight(seq uint64) {
	if pl := s.plans.forSeq(seq); pl != nil {
		s.completePlan(pl, seq)
	}
}

// writeClientChunk writes relayed bytes; boundary says whether they end at a
// message boundary.
func (s *Session) writeClientChunk(b []byte, boundary bool) error {
	if len(b) == 0 {
		return nil
	}
	s.wmu.Lock()
	if s.fatalSent {
		s.wmu.Unlock()
		return errClosing // nothing may follow a FATAL
	}
	err := s.writeClientLocked(b)
	s.atBoundary = boundary && err == nil
	s.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("writing to client: %w", err)
	}
	return nil
}

// clientWriteDeadline bounds writes to the client, by the runtime's poller
// and by an event loop alike.
func (s *Session) clientWriteDeadline(t time.Time) {
	_ = s.client.SetWriteDeadline(t)
	s.sockets()[dirClient][1].setDeadline(t)
}

// sockets returns the session's raw sockets (nil before the relay starts
// and for TLS), for goroutines other than the relay's.
func (s *Session) sockets() [2][2]*rawSock {
	s.sockMu.Lock()
	defer s.sockMu.Unlock()
	return s.socks
}

// writeClientLocked writes b to the client; the caller holds wmu. Once the
// relay runs, writes go through the relay's socket writer: with an event
// loop, it alone learns when a full socket drains.
func (s *Session) writeClientLocked(b []byte) error {
	return s.writeClientWith((*rawSock).Write, b)
}

// writeClientNow is writeClientLocked for writers other than the relay's
// pumps: it never queues on an event loop's ring, and sends first what the
// pumps' writes still owe.
func (s *Session) writeClientNow(b []byte) error {
	return s.writeClientWith((*rawSock).writeNow, b)
}

// writeClientWith writes b with write on the relay's writer of the client
// socket, or on the connection itself before the relay starts and for TLS.
func (s *Session) writeClientWith(write func(*rawSock, []byte) (int, error), b []byte) error {
	if w := s.socks[dirClient][1]; w != nil {
		_, err := write(w, b)
		return err
	}
	_, err := s.client.Write(b)
	return err
}

// isFatal reports whether an ErrorResponse has severity FATAL or PANIC: the
// server closes the connection after it.
func isFatal(msg []byte) bool {
	v := errorField(msg, 'V', 'S')
	return string(v) == "FATAL" || string(v) == "PANIC"
}

// errorField returns the first field of an ErrorResponse (header included)
// whose type is a or b, without copying; nil when there is none.
func errorField(msg []byte, a, b byte) []byte {
	if len(msg) < 5 {
		return nil
	}
	rest := msg[5:]
	for len(rest) > 0 && rest[0] != 0 {
		field := rest[0]
		v, r, ok := cstring(rest[1:])
		if !ok {
			return nil
		}
		if field == a || field == b {
			return v
		}
		rest = r
	}
	return nil
}
