package proxy

import (
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"
)

// An event loop relays the sessions assigned to it on one goroutine, the way
// PgBouncer does: one epoll_wait reports every socket with new bytes, and
// each is read once and its messages written on at once. A relay goroutine
// per direction instead pays, for every message, a read that fails with
// EAGAIN before it may wait, a wake-up of the goroutine and often of an OS
// thread: measured on pgbench, 7.5 system calls and 1 context switch per
// round trip against PgBouncer's 4.3 and 0.45 (bench/RESULTS.md).
//
// The loop only relays: when a session would wait for anything (a held
// batch, a retried DDL, waiting for its own statements to finish, a client
// or server that does not read fast enough) or ends, it leaves the loop and
// goes on in the goroutine relay, which is the same code with blocking
// reads. So the loop never waits for one session while others have bytes
// ready, and every rare path keeps its tested implementation. Once the
// session is idle again (both directions find nothing to read, every
// statement is answered), the loop takes it back (Session.park): a
// long-lived pooled connection that once received a large result or waited
// for a lock is not left on the costlier relay for the rest of its life.
//
// Sockets are registered edge-triggered, so a socket is reported again only
// when new bytes arrive: after a read that filled the buffer the loop reads
// again, and a shorter read means the socket was drained (epoll(7)).
type loop struct {
	epfd   int
	wakefd int // eventfd: requests and stop
	log    *slog.Logger

	mu      sync.Mutex
	slots   []*Session // by slot; nil when free
	gens    []uint32   // generation of each slot, against stale events
	free    []int32
	evict   []*Session // sessions to take out of the loop (under mu)
	back    []*Session // sessions to take back (under mu)
	stopped bool
	closed  bool // epfd and wakefd are closed
	// ring batches the loop's reads and writes (uring_linux.go); with nil
	// each is a read(2) or write(2).
	ring *wring
	srv  *Server
	// holdP lets the loop wait without giving up its P (runner.wait) while
	// the loops, nloops of them, leave at least one P to the rest of the
	// program.
	holdP  bool
	nloops int
}

const wakeSlot = -1 // the eventfd's Fd in events

func newLoop(log *slog.Logger, useRing bool, srv *Server, nloops int) (*loop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wfd, _, e := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if e != 0 {
		syscall.Close(epfd)
		return nil, e
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: wakeSlot}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, int(wfd), &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(int(wfd))
		return nil, err
	}
	l := &loop{epfd: epfd, wakefd: int(wfd), log: log, srv: srv, holdP: asyncPreemption(os.Getenv("GODEBUG")), nloops: nloops}
	if useRing {
		r, err := newWring(&srv.loopIO)
		if err != nil {
			log.Info("io_uring is not available: the event loop uses read(2) and write(2)", "err", err)
		} else {
			l.ring = r
		}
	}
	go l.run(nil)
	return l, nil
}

// add puts a session whose both sockets are plain into the loop. It reports
// false when that failed; the session then relays with goroutines.
func (l *loop) add(s *Session) bool {
	// Everything the runner reads is set before the session is published
	// in a slot.
	s.lp, s.leave = l, make(chan leaveMsg, 1)
	all := [...]*rawSock{s.cf.src, s.cf.dst, s.uf.src, s.uf.dst}
	s.sockMu.Lock() // kickSockets reads ready
	for _, r := range all {
		r.ready, r.done, r.own = make(chan struct{}, 1), s.ctx.Done(), true
	}
	s.sockMu.Unlock()
	s.cf.src.nowait, s.uf.src.nowait = true, true
	s.cf.src.park = func(arrive bool) bool { return s.park(dirClient, arrive) }
	s.uf.src.park = func(arrive bool) bool { return s.park(dirUpstream, arrive) }
	if l.ring != nil {
		l.attachRing(s)
	}
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		s.lp = nil
		for _, r := range all {
			r.own, r.nowait = false, false
		}
		detachRing(s)
		return false
	}
	var slot int32
	if n := len(l.free); n > 0 {
		slot = l.free[n-1]
		l.free = l.free[:n-1]
	} else {
		slot = int32(len(l.slots))
		l.slots = append(l.slots, nil)
		l.gens = append(l.gens, 0)
	}
	l.gens[slot]++
	gen := l.gens[slot]
	s.slot = slot
	l.slots[slot] = s
	s.inLoop.Store(true) // Session.close asks the loop to let it go from now on
	l.mu.Unlock()
	// From here on the loop alone reports the sockets' readiness: the
	// runtime's poller would otherwise wake an idle thread for every
	// message, for no goroutine.
	if !s.cf.src.adopt(l.epfd, slot, gen<<1|dirClient) {
		// The client's socket was closed meanwhile: relay with
		// goroutines, whose reads find it closed.
		s.inLoop.Store(false)
		for _, r := range all {
			r.own, r.nowait = false, false
		}
		detachRing(s)
		return false
	}
	// A server socket closed meanwhile was closed by Session.close, which
	// takes the session out of the loop.
	s.uf.src.adopt(l.epfd, slot, gen<<1|dirUpstream)
	s.srv.inLoop.Add(1)
	return true
}

// attachRing makes the session's writers queue on the loop's ring, each
// through a duplicate of its descriptor; it leaves them alone when a
// descriptor cannot be duplicated.
func (l *loop) attachRing(s *Session) {
	ws := [...]*rawSock{s.writer(dirClient), s.writer(dirUpstream)}
	for i, w := range ws {
		w.ufd = -1
		_ = w.rc.Control(func(fd uintptr) {
			nfd, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
			if e == 0 {
				w.ufd = int(nfd)
			}
		})
		if w.ufd < 0 {
			for _, v := range ws[:i] {
				syscall.Close(v.ufd)
				v.ufd = -1
			}
			return
		}
	}
	for _, w := range ws {
		w.ring, w.sess = l.ring, s
	}
}

// detachRing closes the descriptors attachRing made; the session's writes
// no longer queue on the ring (leave saw to that).
func detachRing(s *Session) {
	// By the socket: the framers drop theirs when the session ends.
	for _, w := range [...]*rawSock{s.writer(dirClient), s.writer(dirUpstream)} {
		if w != nil && w.sess != nil {
			w.ring = nil
			syscall.Close(w.ufd)
			w.ufd, w.sess = -1, nil
		}
	}
}

// release frees the session's slot once its sockets are closed.
func (l *loop) release(s *Session) {
	detachRing(s)
	l.mu.Lock()
	if l.slots[s.slot] == s {
		l.slots[s.slot] = nil
		l.free = append(l.free, s.slot)
	}
	last := l.stopped && len(l.free) == len(l.slots)
	l.mu.Unlock()
	if last {
		l.wake() // the runner stops
	}
}

// rejoin asks the loop to relay s again: its goroutines have stopped, each
// at a read that found no bytes (Session.park). It reports false when the
// session is closing: its goroutines go on, and find it closed.
func (l *loop) rejoin(s *Session) bool {
	if s.ctx.Err() != nil {
		return false
	}
	l.ask(&l.back, s)
	return true
}

// park is called by a direction's read, on the session's goroutines after it
// left the loop, when it finds no bytes (arrive) and again when its wait for
// bytes ends; it reports whether the direction stops there, for the loop to
// take the session back (rawSock.park, relayLooped).
//
// A direction stops only when the other one is parked too and the session
// is idle: every sync point answered, no part of a batch held or sent
// without its Sync. Both are then at the start of a pump with nothing read,
// in the state a session enters the loop in after authentication. A
// direction busy anywhere else (writing to a client that does not read, a
// held or retried statement) keeps the other one reading: a client that
// sends while it should read cannot stall against a stopped direction. And
// a session in the middle of a result goes on with goroutines to its end,
// rather than back and forth between them and the loop.
func (s *Session) park(d int, arrive bool) bool {
	s.parkMu.Lock()
	defer s.parkMu.Unlock()
	switch {
	case s.parkNever:
		return false
	case s.stopping:
		return true
	case !arrive:
		s.parked[d] = false
		return false
	case d == dirClient && (s.cf.keep >= 0 || s.midBatch):
		return false // the client direction's state: read on its goroutine
	}
	s.parked[d] = true
	if !s.parked[1-d] || s.InFlight() != 0 {
		return false
	}
	s.stopping = true
	s.reader(1 - d).kick() // it waits for bytes: it stops too
	return true
}

// unpark makes the session's directions read on until both park again, as
// the loop lets the session go (leave).
func (s *Session) unpark() {
	s.parkMu.Lock()
	s.parked, s.stopping = [2]bool{}, false
	s.parkMu.Unlock()
}

// parkOff keeps the session's directions on goroutines until it ends.
func (s *Session) parkOff() {
	s.parkMu.Lock()
	s.parkNever = true
	s.parkMu.Unlock()
}

// requestLeave asks the loop to let s go on with goroutines (it was closed
// from outside the loop, which epoll does not report).
func (l *loop) requestLeave(s *Session) {
	l.ask(&l.evict, s)
}

// ask adds sessions to one of the loop's lists of requests (l.evict,
// l.back) and wakes the loop, which handles them in requests.
func (l *loop) ask(list *[]*Session, ss ...*Session) {
	l.mu.Lock()
	*list = append(*list, ss...)
	l.mu.Unlock()
	l.wake()
}

func (l *loop) wake() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return // the number may belong to another file by now
	}
	one := uint64(1)
	_, _ = syscall.Write(l.wakefd, (*[8]byte)(unsafe.Pointer(&one))[:])
}

// stop ends the loop once its sessions are gone.
func (l *loop) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
	l.wake()
}

// runner is the goroutine that runs a loop. When a session it relays must
// wait, the runner hands the loop to a new runner and goes on as that
// session's goroutine (handOff).
type runner struct {
	l       *loop
	events  []syscall.EpollEvent
	sess    []*Session
	n, i    int
	retired bool
	// back is the sessions still to take back after the one being taken
	// back (requests).
	back []*Session
	// interrupted says the last held wait ended with EINTR (wait).
	interrupted bool
	// mayHold says the loops leave a P to the rest of the program, as
	// GOMAXPROCS was nextCheck waits ago (mayHoldP).
	mayHold   bool
	nextCheck int
}

// holdCheckEvery is how many waits a runner goes between readings of
// GOMAXPROCS.
const holdCheckEvery = 1024

const loopBatch = 128

func (l *loop) run(pending []syscall.EpollEvent) {
	r := &runner{l: l, events: make([]syscall.EpollEvent, loopBatch), sess: make([]*Session, loopBatch)}
	// The loop keeps one thread, as PgBouncer's one process does: the
	// kernel's wake-up placement learns it, and the goroutine does not move
	// between threads each time the scheduler takes it off (measured in
	// bench/compare/README.md, "Holding the loop's thread and P").
	runtime.LockOSThread()
	r.n = copy(r.events, pending)
	for {
		if r.n > 0 && r.dispatch() {
			return
		}
		r.flushWrites()
		n, err := r.wait()
		if err != nil {
			if err == syscall.EINTR {
				r.n = 0
				continue
			}
			l.log.Error("lockguard bug: the event loop stopped", "err", err)
			return
		}
		r.n = n
	}
}

// wait waits for the loop's sockets to have events.
//
// A wait in syscall.EpollWait enters the runtime's system call state, from
// which the scheduler's monitor thread takes the P (the right to run Go
// code) when the wait lasts and other goroutines are runnable; the loop then
// needs a P back when it wakes, and the monitor polls every 20 µs for a
// while after each take. So while every session is in a loop (no goroutine
// relays one), the loop waits with a raw system call and keeps its P: the
// other goroutines (accepting, monitoring, telemetry) have the rest.
//
// Such a wait ends with events or when the runtime interrupts it with a
// signal (EINTR): the monitor preempts a goroutine that has run for 10 ms
// without a break, and a garbage collection stops every goroutine that way
// (holdP is false where those signals are off). The wait after an
// interruption is an ordinary one, so a loop that has fallen quiet makes no
// wake-ups; the one after the next events holds the P again. A timeout
// would end held waits as well, but arming a timer for every wait cost more
// than holding the P saved (bench/compare/README.md).
func (r *runner) wait() (int, error) {
	l := r.l
	if !r.interrupted && r.mayHoldP() && l.srv.inLoop.Load() == l.srv.active.Load() {
		n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(l.epfd), uintptr(unsafe.Pointer(&r.events[0])), uintptr(len(r.events)), ^uintptr(0), 0, 0)
		if e != 0 {
			if e == syscall.EINTR {
				// Perhaps others needed the P: read GOMAXPROCS again
				// before holding it next.
				r.interrupted, r.nextCheck = true, 0
			}
			return 0, e
		}
		l.srv.loopIO.held.Add(1)
		return int(n), nil
	}
	n, err := syscall.EpollWait(l.epfd, r.events, -1)
	if n > 0 {
		r.interrupted = false
	}
	return n, err
}

// mayHoldP reports whether the loop may keep its P while it waits: the
// loops must leave at least one P to the rest of the program. GOMAXPROCS can
// change while lockguard runs (the runtime follows a container's CPU limit),
// so it is read again every holdCheckEvery waits and after each interrupted
// held wait: a loop that held the only P is interrupted by the runtime's
// monitor within about 10 ms, and then stops holding it.
func (r *runner) mayHoldP() bool {
	if !r.l.holdP {
		return false
	}
	if r.nextCheck <= 0 {
		r.mayHold = r.l.nloops < runtime.GOMAXPROCS(0)
		r.nextCheck = holdCheckEvery
	}
	r.nextCheck--
	return r.mayHold
}

// asyncPreemption reports whether the runtime stops goroutines with a
// signal, which a loop that waits holding its P depends on; GODEBUG can turn
// it off.
func asyncPreemption(godebug string) bool {
	for _, kv := range strings.Split(godebug, ",") {
		switch strings.TrimSpace(kv) {
		case "asyncpreemptoff=1", "gccheckmark=1":
			return false
		}
	}
	return true
}

// dispatch handles the events in r.events[:r.n]. It reports whether this
// goroutine no longer runs the loop.
func (r *runner) dispatch() bool {
	l := r.l
	l.mu.Lock()
	for i := 0; i < r.n; i++ {
		ev := &r.events[i]
		r.sess[i] = nil
		if slot := ev.Fd; slot >= 0 && int(slot) < len(l.slots) && l.gens[slot] == uint32(ev.Pad)>>1 {
			r.sess[i] = l.slots[slot]
		}
	}
	l.mu.Unlock()
	if l.ring != nil {
		r.prefetch()
	}
	for i := 0; i < r.n; i++ {
		r.i = i
		ev := &r.events[i]
		if ev.Fd == wakeSlot {
			if r.requests() {
				return true
			}
			continue
		}
		s := r.sess[i]
		if s == nil {
			continue
		}
		k := int(ev.Pad & 1) // which socket: the client's or the server's
		hup := ev.Events&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0
		if ev.Events&syscall.EPOLLOUT != 0 || hup {
			s.writer(k).signal()
		}
		if ev.Events&syscall.EPOLLIN == 0 && !hup {
			continue
		}
		if !s.inLoop.Load() {
			s.reader(k).signal()
			continue
		}
		if r.relay(s, k, hup) {
			return true
		}
	}
	return false
}

// prefetch reads every socket of this round's events that has bytes, with
// one io_uring_enter, into the framer that reads it: each pump then finds
// its bytes there (framer.pre) instead of making a read(2) of its own.
// A round with a single socket to read makes that read with recvfrom(2)
// instead, which costs less than both (flush).
func (r *runner) prefetch() {
	g := r.l.ring
	for i := 0; i < r.n; i++ {
		s := r.sess[i]
		ev := &r.events[i]
		if s == nil || ev.Events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) == 0 || !s.inLoop.Load() {
			continue
		}
		k := int(ev.Pad & 1)
		f := &s.cf
		if k == dirUpstream {
			f = &s.uf
		}
		if w := s.writer(k); w.ring != nil && !f.pre && f.buf != nil {
			g.queueRecv(s, w, f)
		}
	}
	g.flush()
}

// requests handles what other goroutines asked for; it reports a stop.
func (r *runner) requests() bool {
	var buf [8]byte
	_, _ = syscall.Read(r.l.wakefd, buf[:])
	l := r.l
	l.mu.Lock()
	evict, back := l.evict, l.back
	l.evict, l.back = nil, nil
	stop := l.stopped && len(l.slots) == len(l.free)
	l.mu.Unlock()
	for _, s := range evict {
		if s.inLoop.Load() {
			r.leave(s, leaveMsg{owner: -1, ended: -1})
		}
	}
	for i, s := range back {
		// Should this goroutine hand the loop off while it takes s back,
		// the next runner takes the others (handOff).
		r.back = back[i+1:]
		if r.takeBack(s) {
			return true
		}
	}
	r.back = nil
	if stop {
		if l.ring != nil {
			l.ring.close()
		}
		l.mu.Lock()
		l.closed = true
		syscall.Close(l.epfd)
		syscall.Close(l.wakefd)
		l.mu.Unlock()
		return true
	}
	return false
}

// relay pumps direction d of s until its socket is drained. hup says the
// peer closed its side (or the socket failed), or may have with no event
// left to say so (takeBack): the end of the stream may follow bytes that a
// short read left, with no further event, so it reads until the read
// fails. It reports whether the runner handed the loop off while doing so.
func (r *runner) relay(s *Session, d int, hup bool) bool {
	s.runner.Store(r)
	var err error
	for {
		err = s.pumpDir(d)
		if err != nil || r.retired || (!hup && !s.lastFull(d)) {
			break
		}
	}
	s.runner.Store(nil)
	if r.retired {
		// This goroutine is now the session's: it finishes direction d.
		s.continueSide(d, err)
		return true
	}
	switch {
	case err == nil, err == errWouldBlock:
	default:
		r.leave(s, leaveMsg{owner: -1, ended: d, err: err})
	}
	return false
}

// takeBack relays s in the loop again, after its goroutines stopped
// (loop.rejoin). It reports whether the runner handed the loop off while
// doing so.
func (r *runner) takeBack(s *Session) bool {
	l := r.l
	s.cf.src.nowait, s.uf.src.nowait = true, true
	if l.ring != nil {
		for _, w := range [...]*rawSock{s.writer(dirClient), s.writer(dirUpstream)} {
			if w.sess != nil { // attachRing gave it a descriptor
				w.ring = l.ring
			}
		}
	}
	s.inLoop.Store(true) // Session.close asks the loop to let it go from now on
	s.srv.inLoop.Add(1)
	s.srv.backInLoop.Add(1)
	s.log.Debug("session goes back to the event loop")
	// Bytes that arrived after a direction's last read and before now
	// raised an event that woke no one: read both sockets now, until they
	// are empty. A read that returns less than asked for is not enough: the
	// peer's end of stream may have come with those bytes, and its event,
	// the only one it raises, went by. A session closed meanwhile finds its
	// sockets closed here, and leaves.
	for d := range 2 {
		if !s.inLoop.Load() {
			break
		}
		if r.relay(s, d, true) {
			return true
		}
	}
	return false
}

// flushWrites sends the writes queued on the ring. Sessions with a send that
// came back short leave the loop: their rest may have to wait for a peer
// that does not read.
func (r *runner) flushWrites() {
	g := r.l.ring
	if g == nil {
		return
	}
	g.flush()
	for n := len(g.short); n > 0; n = len(g.short) {
		s := g.short[n-1]
		g.short[n-1] = nil
		g.short = g.short[:n-1]
		if s.inLoop.Load() {
			r.leave(s, leaveMsg{owner: -1, ended: -1})
			s.srv.leftLoop.Add(1)
			s.log.Debug("session leaves the event loop to wait", "for", "a peer that does not read")
		}
	}
}

// handOff is called on the runner, inside s's pump, when it must wait: s
// leaves the loop, a new runner takes the events not yet handled, and this
// goroutine goes on as s's goroutine for the direction it was pumping
// (s.pumping, set by pumpDir).
func (r *runner) handOff(s *Session) {
	r.leave(s, leaveMsg{owner: s.pumping, ended: -1})
	r.flushWrites()
	r.retired = true
	runtime.UnlockOSThread() // this goroutine is the session's now
	if len(r.back) > 0 {
		r.l.ask(&r.l.back, r.back...)
		r.back = nil
	}
	rest := append([]syscall.EpollEvent(nil), r.events[r.i+1:r.n]...)
	go r.l.run(rest)
}

// leave takes s out of the loop and tells its relay goroutine which
// directions it must run. Its sockets stay registered: the loop goes on
// reporting their readiness to the goroutines that wait on them.
func (r *runner) leave(s *Session, m leaveMsg) {
	if g := r.l.ring; g != nil {
		// What the session's pumps queued leaves before its goroutines
		// write: from now on they write themselves.
		g.flush()
		s.writer(dirClient).ring, s.writer(dirUpstream).ring = nil, nil
	}
	s.inLoop.Store(false)
	s.cf.src.nowait, s.uf.src.nowait = false, false
	s.srv.inLoop.Add(-1)
	if m.owner >= 0 {
		s.srv.leftLoop.Add(1)
		s.log.Debug("session leaves the event loop to wait", "direction", dirName[m.owner])
	}
	// Before either direction runs on a goroutine: with handOff, one goes
	// on at once, and must not find the stop of its last time out.
	s.unpark()
	s.leave <- m
}

// adopt moves the socket from the runtime's poller to the loop's epfd. The
// socket's descriptor is held meanwhile, so that a concurrent Close cannot
// make the number refer to another file. Both rawSocks of the socket (its
// reader r and its writer) wait on the loop from then on.
func (r *rawSock) adopt(epfd int, slot int32, tag uint32) bool {
	ok := false
	err := r.rc.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | epollET, Fd: slot, Pad: int32(tag)}
		if syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev) != nil {
			return
		}
		if rt := runtimePoller(); rt >= 0 {
			_ = syscall.EpollCtl(rt, syscall.EPOLL_CTL_DEL, int(fd), &ev)
		}
		ok = true
	})
	return ok && err == nil
}

const epollET = 1 << 31 // syscall.EPOLLET is negative in this package

var (
	rtPollOnce sync.Once
	rtPollFD   = -1
)

// runtimePoller returns the Go runtime's own epoll descriptor, or -1 when it
// cannot be told apart. It is the epoll instance that has a socket the
// runtime just registered: a probe listener is removed from each candidate
// until one accepts the removal.
func runtimePoller() int {
	rtPollOnce.Do(func() {
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return
		}
		defer ln.Close()
		rc, err := ln.SyscallConn()
		if err != nil {
			return
		}
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			return
		}
		_ = rc.Control(func(probe uintptr) {
			for _, e := range ents {
				fd, err := strconv.Atoi(e.Name())
				if err != nil || uintptr(fd) == probe {
					continue
				}
				if t, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || t != "anon_inode:[eventpoll]" {
					continue
				}
				var ev syscall.EpollEvent
				if syscall.EpollCtl(fd, syscall.EPOLL_CTL_DEL, int(probe), &ev) == nil {
					rtPollFD = fd
					return
				}
			}
		})
	})
	return rtPollFD
}

// reader and writer return the rawSocks that read and write socket k
// (dirClient: the client's, dirUpstream: the server's).
// They are fixed when the session enters the loop (the framers drop theirs
// when the session ends, while events may still arrive).
func (s *Session) reader(k int) *rawSock { return s.socks[k][0] }

func (s *Session) writer(k int) *rawSock { return s.socks[k][1] }

var dirName = [2]string{dirClient: "from client", dirUpstream: "from server"}
