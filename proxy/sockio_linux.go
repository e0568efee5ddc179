package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// rawSock reads from or writes to a plain TCP or Unix socket with raw system
// calls: read(2) and write(2) on the non-blocking descriptor through
// syscall.RawConn, waiting in the runtime's poller only on EAGAIN, exactly
// as net.Conn does, but without telling the scheduler that the goroutine is
// in a system call.
//
// Why: a loopback write runs the receiver's TCP input path inline and takes
// 10–30 µs on a busy virtual machine. A net.Conn write in that time lets the
// runtime's monitor hand the goroutine's P to another thread whenever other
// goroutines are runnable — a futex wake-up, a context switch and a thread
// that must find a P again afterwards, several times per transaction with
// many sessions. A socket read or write on a non-blocking descriptor never
// blocks, so keeping the P across it costs other goroutines at most those
// microseconds.
//
// One rawSock serves one direction of one socket, from one goroutine at a
// time (the caller serialises writes to the client under Session.wmu).
type rawSock struct {
	conn  net.Conn
	rc    syscall.RawConn
	fn    func(fd uintptr) bool // bound once: no allocation per call
	p     []byte
	n     int
	errno syscall.Errno
	// nowait makes Read return errWouldBlock instead of waiting: set while
	// the session is relayed by an event loop, which reads only sockets
	// that have bytes.
	nowait bool
	// onWait, when set, runs before a Write on an own socket waits for it
	// to drain (only a socket the loop reports can be in a loop's pump).
	onWait func()
	// own is set when an event loop, not the runtime's poller, reports the
	// socket's readiness (loop_linux.go): waits are on ready, which the
	// loop signals while waiting is set, until done is closed or deadline
	// (Unix nanoseconds, 0 for none) passes.
	own      bool
	ready    chan struct{}
	waiting  atomic.Bool
	done     <-chan struct{}
	deadline atomic.Int64
	// park, set on an own socket's reader, is asked before and after each
	// wait for bytes whether the session's goroutines stop here so that
	// its event loop relays it again (Session.park); Read then returns
	// errRejoin.
	park func(arrive bool) bool
	// ring, when set, queues Write's bytes on the event loop's io_uring
	// (uring_linux.go): set while the loop relays the session, when only the
	// loop's pumps call Write. ufd is the loop's duplicate of the
	// descriptor, for the ring; sess the session.
	ring *wring
	ufd  int
	sess *Session
	// owed says whether bytes of earlier writes are still on their way:
	// queued on the ring, or left in rest (or failed with restErr) by a
	// send that came back short. Every later write sends them first.
	owed    atomic.Int32
	rest    []byte
	restErr error
}

// The states of rawSock.owed.
const (
	owedNone   = iota
	owedQueued // on the loop's ring, until the loop sends its queue
	owedRest   // in rest or restErr
)

// wait blocks until the loop reports the socket ready (or may have), the
// session closes or the deadline passes.
func (r *rawSock) wait() error {
	var timeout <-chan time.Time
	if d := r.deadline.Load(); d != 0 {
		left := time.Until(time.Unix(0, d))
		if left <= 0 {
			return os.ErrDeadlineExceeded
		}
		t := time.NewTimer(left)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-r.ready:
		return nil
	case <-r.done:
		return net.ErrClosed // the session was closed
	case <-timeout:
		return os.ErrDeadlineExceeded
	}
}

// signal wakes a goroutine waiting on the socket, if any.
func (r *rawSock) signal() {
	if r.waiting.Load() {
		select {
		case r.ready <- struct{}{}:
		default:
		}
	}
}

// kick wakes a waiting goroutine whatever it waits for, so that it finds the
// socket closed.
func (r *rawSock) kick() {
	select {
	case r.ready <- struct{}{}:
	default:
	}
}

// newRawSock returns a rawSock for c, or nil when c is not a plain socket
// (TLS, or a test's fake connection).
func newRawSock(c net.Conn, write bool) *rawSock {
	var sc syscall.Conn
	switch c := c.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &rawSock{conn: c, rc: rc}
	if write {
		r.fn = r.writeFD
	} else {
		r.fn = r.readFD
	}
	return r
}

func (r *rawSock) readFD(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(r.p))), uintptr(len(r.p)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if r.nowait || r.own {
				r.errno = e
				return true
			}
			return false // wait for readiness, then try again
		case 0:
			r.n = int(n)
		}
		r.errno = e
		return true
	}
}

func (r *rawSock) writeFD(fd uintptr) bool {
	for r.n < len(r.p) {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&r.p[r.n])), uintptr(len(r.p)-r.n))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if r.own {
				r.errno = e
				return true
			}
			return false // wait until the socket is writable
		case 0:
			r.n += int(n)
			continue
		}
		r.errno = e
		return true
	}
	return true
}

// Read reads once, like net.Conn.Read: io.EOF at the end of the stream.
func (r *rawSock) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		r.p, r.n, r.errno = p, 0, 0
		err := r.rc.Read(r.fn)
		n, errno := r.n, r.errno
		r.p = nil
		switch {
		case err != nil:
			return n, r.opError("read", err)
		case errno == syscall.EAGAIN && r.nowait:
			return 0, errWouldBlock
		case errno == syscall.EAGAIN:
			// Only with own: wait for the loop's report, then read again.
			// waiting is set before the read that follows, so a report
			// that comes in between is not lost.
			if !r.waiting.Load() {
				r.waiting.Store(true)
				continue
			}
			if r.park != nil && r.park(true) {
				r.waiting.Store(false)
				return 0, errRejoin
			}
			err := r.wait()
			if r.park != nil && r.park(false) {
				// The other direction stopped too, counting on this
				// one: bytes that woke it are the loop's to read.
				r.waiting.Store(false)
				return 0, errRejoin
			}
			if err != nil {
				r.waiting.Store(false)
				return 0, r.opError("read", err)
			}
			continue
		case errno != 0:
			r.waiting.Store(false)
			return n, r.opError("read", os.NewSyscallError("read", errno))
		case n == 0:
			r.waiting.Store(false)
			return 0, io.EOF
		}
		if r.own {
			r.waiting.Store(false)
		}
		return n, nil
	}
}

// Write writes all of p, like net.Conn.Write. While an event loop with a
// ring relays the session, p is queued and leaves with the loop's other
// writes at the end of its round (uring_linux.go).
func (r *rawSock) Write(p []byte) (int, error) {
	if r.ring != nil {
		if r.owed.Load() != owedRest && r.ring.queue(r.sess, r, p) {
			return len(p), nil
		}
		if r.owed.Load() == owedRest && r.onWait != nil {
			// A send came back short: the session leaves the loop
			// before it waits for the socket to drain.
			r.onWait()
		}
	}
	return r.writeNow(p)
}

// writeNow writes p after whatever the socket still owes, without queuing
// it: on any goroutine that may write to the socket (the caller serialises
// writes, as for Write).
func (r *rawSock) writeNow(p []byte) (int, error) {
	if r.owed.Load() != owedNone {
		if err := r.settle(); err != nil {
			return 0, err
		}
	}
	if len(p) == 0 {
		return 0, nil
	}
	return r.write(p)
}

// settle sends what the socket owes from earlier writes. Bytes still queued
// on the loop's ring leave when the loop's round ends: settle waits for that
// until the socket's deadline (at most 2 s without one).
func (r *rawSock) settle() error {
	if r.owed.Load() == owedQueued {
		end := time.Now().Add(2 * time.Second)
		if d := r.deadline.Load(); d != 0 {
			end = time.Unix(0, d)
		}
		for r.owed.Load() == owedQueued {
			if time.Now().After(end) {
				return r.opError("write", os.ErrDeadlineExceeded)
			}
			time.Sleep(20 * time.Microsecond)
		}
	}
	if r.owed.Load() != owedRest {
		return nil
	}
	if r.restErr != nil {
		return r.restErr // and so does every later write
	}
	if n, err := r.write(r.rest); err != nil {
		r.rest = r.rest[n:]
		return err
	}
	r.rest = nil
	r.owed.Store(owedNone)
	return nil
}

// owes reports whether a short send left bytes (or an error) for the
// socket's next write.
func (r *rawSock) owes() bool { return r.owed.Load() == owedRest }

// settleRest sends what a short send left, at the start of a pump: nothing
// else may write to the socket first, and a pump that has nothing new to
// write would otherwise leave it there. On an event loop the session leaves
// the loop first, since sending may wait.
func (r *rawSock) settleRest() error {
	if r.ring != nil && r.onWait != nil {
		r.onWait()
	}
	_, err := r.writeNow(nil)
	return err
}

// sendQueued sends the event loop's queued writes, on a pump the loop runs,
// before the pump ends the session with a FATAL that must follow them.
func (s *Session) sendQueued() {
	if w := s.uf.dst; w != nil && w.ring != nil {
		w.ring.flush()
	}
}

// write writes all of p.
func (r *rawSock) write(p []byte) (int, error) {
	r.p, r.n, r.errno = p, 0, 0
	for {
		err := r.rc.Write(r.fn)
		n, errno := r.n, r.errno
		if err == nil && errno == syscall.EAGAIN {
			// Only with own: the socket's buffer is full.
			if !r.waiting.Load() {
				if r.onWait != nil {
					r.onWait()
				}
				r.waiting.Store(true)
				r.errno = 0
				continue
			}
			if err = r.wait(); err == nil {
				r.errno = 0
				continue
			}
		}
		r.p = nil
		r.waiting.Store(false)
		switch {
		case err != nil:
			return n, r.opError("write", err)
		case errno != 0:
			return n, r.opError("write", os.NewSyscallError("write", errno))
		}
		return n, nil
	}
}

// opError wraps err as net.Conn does, so that messages and errors.Is/As
// checks (net.ErrClosed, os.ErrDeadlineExceeded, timeouts) stay the same.
func (r *rawSock) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: r.conn.LocalAddr().Network(), Source: r.conn.LocalAddr(), Addr: r.conn.RemoteAddr(), Err: err}
}

// kickSockets wakes every goroutine waiting on one of the session's sockets
// in the loop, after one of them was closed.
func (s *Session) kickSockets() {
	// Under sockMu: kick reads ready, which the loop sets up under it.
	s.sockMu.Lock()
	defer s.sockMu.Unlock()
	for _, rw := range s.socks {
		for _, r := range rw {
			if r != nil {
				r.kick()
			}
		}
	}
}

// setDeadline makes a wait on the socket through the loop end at t, as
// net.Conn's deadlines end the runtime poller's waits. A goroutine already
// waiting is woken to read the new deadline (it finds no bytes and waits
// again, until t).
func (r *rawSock) setDeadline(t time.Time) {
	if r != nil {
		r.deadline.Store(t.UnixNano())
		if r.ready != nil {
			r.kick()
		}
	}
}

// clientGone reports whether the client closed its end of the connection,
// or the connection broke: poll(2) for POLLRDHUP without waiting, as
// PostgreSQL's client_connection_check_interval does. Bytes the client sent
// and lockguard has not read yet do not hide the hang-up. A connection
// whose descriptor lockguard cannot reach (a wrapped net.Conn) is taken
// as still there.
func (s *Session) clientGone() bool {
	c := s.client
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	err = rc.Control(func(fd uintptr) {
		const pollRDHUP, pollERR, pollHUP = 0x2000, 0x8, 0x10
		pfd := struct {
			fd             int32
			events, revent int16
		}{fd: int32(fd), events: pollRDHUP}
		var zero syscall.Timespec
		n, _, e := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1,
			uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
		gone = e == 0 && n == 1 && pfd.revent&(pollRDHUP|pollERR|pollHUP) != 0
	})
	return err == nil && gone
}
