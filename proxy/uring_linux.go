package proxy

import (
	"io"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// wring batches an event loop's socket reads and writes: the sockets a
// round of epoll events reports are read with one io_uring_enter (prefetch,
// into each framer's room), and the messages the round produces for all its
// sessions leave with another, instead of a read(2) and a write(2) each. On
// this kind of machine a system call's entry and exit cost microseconds, and
// a loaded loop handles a dozen messages or more per round
// (bench/compare/README.md).
//
// Queued bytes are copied into the ring's staging buffer, so the caller's
// buffer is free again at once, exactly as after write(2). Each socket is
// written through a descriptor the loop duplicated for it (rawSock.ufd), so
// that another goroutine closing the session's connection cannot make a
// queued number name another file. Sends are MSG_DONTWAIT: one that finds
// the socket full completes short at once instead of waiting in the kernel,
// and flush hands what is left to the socket (rawSock.rest), whose session
// then leaves the loop as it would after a short write(2).
//
// Only the goroutine that runs the loop uses a wring.
type wring struct {
	fd      int
	sqHead  *uint32
	sqTail  *uint32
	sqMask  uint32
	sqArray []uint32
	sqes    []uringSQE
	cqHead  *uint32
	cqTail  *uint32
	cqMask  uint32
	cqes    []uringCQE
	maps    [][]byte

	stage []byte      // copies of the queued bytes
	used  int         // bytes of stage in use
	q     []ringWrite // queued sends, in submission order
	short []*Session  // sessions with a send that came back short, until the runner lets them go
	// broken is set when io_uring_enter failed: nothing is queued after.
	broken bool
	minOps int // ringMinOps when the ring was made

	count *loopCounters
}

// ringWrite is one queued send: n bytes at off in stage (at p), for w; or,
// when f is set, a receive of up to n bytes into f's room at p (prefetch).
type ringWrite struct {
	w      *rawSock
	s      *Session
	off, n int
	f      *framer
	p      *byte
}

// uringSQE, uringCQE and uringParams are the kernel's io_uring_sqe,
// io_uring_cqe and io_uring_params (include/uapi/linux/io_uring.h).
type uringSQE struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	_           [2]uint64
}

type uringCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

type uringSQOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type uringCQOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  uringSQOffsets
	cqOff                                                                  uringCQOffsets
}

const (
	sysIOUringSetup   = 425
	sysIOUringEnter   = 426
	uringOpSend       = 26     // IORING_OP_SEND
	uringOpRecv       = 27     // IORING_OP_RECV
	uringSetupSubmAll = 1 << 7 // IORING_SETUP_SUBMIT_ALL: one failed SQE does not stop the rest
	uringEnterGetEv   = 1 << 0 // IORING_ENTER_GETEVENTS
	uringOffSQRing    = 0      // IORING_OFF_SQ_RING
	uringOffCQRing    = 0x8000000
	uringOffSQEs      = 0x10000000
	msgDontWait       = 0x40   // MSG_DONTWAIT
	msgNoSignal       = 0x4000 // MSG_NOSIGNAL
	ringEntries       = 256
	ringStage         = 256 << 10
	// ringMaxWrite is the largest write that is queued; a larger one (a
	// bulk read of a COPY or a large result) is written at once after the
	// queue is sent: its system call is a small part of its cost.
	ringMaxWrite = 16 << 10
)

// ringMinOps is the fewest operations worth an io_uring_enter: a round with
// a single read or a single send (one client, or a quiet moment) makes a
// plain system call, which costs less than the ring's one
// (TestRingShortSendKeepsOrder lowers it to test the ring's own path; a
// ring keeps the value it was made with).
var ringMinOps = 2

// newWring sets up a ring, or fails where io_uring is not available (old
// kernels, seccomp profiles that forbid it, kernel.io_uring_disabled).
func newWring(c *loopCounters) (*wring, error) {
	var p uringParams
	p.flags = uringSetupSubmAll
	fd, _, e := syscall.Syscall(sysIOUringSetup, ringEntries, uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, os.NewSyscallError("io_uring_setup", e)
	}
	r := &wring{count: c, minOps: ringMinOps, fd: int(fd), stage: make([]byte, ringStage), q: make([]ringWrite, 0, p.sqEntries)}
	mmap := func(off int64, size int) []byte {
		b, err := syscall.Mmap(r.fd, off, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE)
		if err != nil {
			return nil
		}
		r.maps = append(r.maps, b)
		return b
	}
	sq := mmap(uringOffSQRing, int(p.sqOff.array+p.sqEntries*4))
	cq := mmap(uringOffCQRing, int(p.cqOff.cqes)+int(p.cqEntries)*int(unsafe.Sizeof(uringCQE{})))
	sqes := mmap(uringOffSQEs, int(p.sqEntries)*int(unsafe.Sizeof(uringSQE{})))
	if sq == nil || cq == nil || sqes == nil {
		r.close()
		return nil, os.NewSyscallError("mmap", syscall.ENOMEM)
	}
	u32 := func(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }
	r.sqHead, r.sqTail, r.sqMask = u32(sq, p.sqOff.head), u32(sq, p.sqOff.tail), *u32(sq, p.sqOff.ringMask)
	r.sqArray = unsafe.Slice(u32(sq, p.sqOff.array), p.sqEntries)
	r.sqes = unsafe.Slice((*uringSQE)(unsafe.Pointer(&sqes[0])), p.sqEntries)
	r.cqHead, r.cqTail, r.cqMask = u32(cq, p.cqOff.head), u32(cq, p.cqOff.tail), *u32(cq, p.cqOff.ringMask)
	r.cqes = unsafe.Slice((*uringCQE)(unsafe.Pointer(&cq[p.cqOff.cqes])), p.cqEntries)
	return r, nil
}

func (r *wring) close() {
	for _, b := range r.maps {
		_ = syscall.Munmap(b)
	}
	r.maps = nil
	syscall.Close(r.fd)
}

// queue adds a send of p to w, for session s. It reports false when p is
// too large to queue; the queue was then sent, and the caller writes p
// itself.
func (r *wring) queue(s *Session, w *rawSock, p []byte) bool {
	if len(p) > ringMaxWrite || r.broken {
		r.flush()
		return false
	}
	if n := len(r.q); n > 0 && r.q[n-1].w == w && r.q[n-1].off+r.q[n-1].n == r.used && r.used+len(p) <= len(r.stage) {
		// The same socket again: one longer send.
		copy(r.stage[r.used:], p)
		r.used += len(p)
		r.q[n-1].n += len(p)
		r.sqes[(atomic.LoadUint32(r.sqTail)-1)&r.sqMask].len += uint32(len(p))
		return true
	}
	// A socket has at most one send in a submission, so that a short one
	// cannot be followed by a later one that finds room.
	if w.owed.Load() == owedQueued || len(r.q) == cap(r.q) || r.used+len(p) > len(r.stage) {
		r.flush()
		if w.owed.Load() != owedNone {
			return false // it came back short: the caller must wait
		}
	}
	off := r.used
	copy(r.stage[off:], p)
	r.used += len(p)
	t := atomic.LoadUint32(r.sqTail)
	i := t & r.sqMask
	r.sqes[i] = uringSQE{opcode: uringOpSend, fd: int32(w.ufd), addr: uint64(uintptr(unsafe.Pointer(&r.stage[off]))),
		len: uint32(len(p)), opFlags: msgDontWait | msgNoSignal, userData: uint64(len(r.q))}
	r.sqArray[i] = i
	atomic.StoreUint32(r.sqTail, t+1)
	r.q = append(r.q, ringWrite{w: w, s: s, off: off, n: len(p), p: &r.stage[off]})
	w.owed.Store(owedQueued)
	return true
}

// flush submits the queued sends and collects their results. A send that
// came back short or failed leaves its rest or error with the socket and
// its session in r.short. It never waits: every send is MSG_DONTWAIT.
func (r *wring) flush() {
	n := len(r.q)
	if n == 0 {
		return
	}
	if n < r.minOps {
		// Take the operations back out of the ring (the kernel reads the
		// SQ only in io_uring_enter) and make each with its own system
		// call, as io_uring would, on the loop's duplicate descriptor.
		atomic.StoreUint32(r.sqTail, atomic.LoadUint32(r.sqTail)-uint32(n))
		for i := range r.q {
			r.settle(&r.q[i], r.now(&r.q[i]))
		}
		clear(r.q)
		r.q = r.q[:0]
		r.used = 0
		return
	}
	r.count.batches.Add(1)
	for i := range r.q {
		if r.q[i].f == nil {
			r.count.writes.Add(1)
		} else {
			r.count.reads.Add(1)
		}
	}
	submitted, done := 0, 0
	for done < n {
		ret, _, e := syscall.RawSyscall6(sysIOUringEnter, uintptr(r.fd), uintptr(n-submitted), uintptr(n-done), uringEnterGetEv, 0, 0)
		switch {
		case e == syscall.EINTR, e == syscall.EAGAIN, e == syscall.EBUSY:
			continue
		case e != 0:
			// The ring failed (it cannot, short of a kernel bug): what
			// was not submitted is handed to the sockets, as if each
			// send had found its socket full.
			for i := submitted; i < n; i++ {
				r.settle(&r.q[i], notSent)
			}
			n = submitted
			r.broken = true
		default:
			submitted += int(ret)
		}
		for h := atomic.LoadUint32(r.cqHead); h != atomic.LoadUint32(r.cqTail); h++ {
			c := r.cqes[h&r.cqMask]
			atomic.StoreUint32(r.cqHead, h+1)
			r.settle(&r.q[c.userData], c.res)
			done++
		}
	}
	clear(r.q)
	r.q = r.q[:0]
	r.used = 0
}

// queueRecv adds a receive into f's room, from the socket that w writes
// (rawSock.ufd is the writer's). It does nothing when the queue is full:
// the pump then reads itself.
func (r *wring) queueRecv(s *Session, w *rawSock, f *framer) {
	if r.broken || len(r.q) == cap(r.q) {
		return
	}
	p := f.room()
	if len(p) == 0 {
		return
	}
	t := atomic.LoadUint32(r.sqTail)
	i := t & r.sqMask
	r.sqes[i] = uringSQE{opcode: uringOpRecv, fd: int32(w.ufd), addr: uint64(uintptr(unsafe.Pointer(&p[0]))),
		len: uint32(len(p)), opFlags: msgDontWait, userData: uint64(len(r.q))}
	r.sqArray[i] = i
	atomic.StoreUint32(r.sqTail, t+1)
	r.q = append(r.q, ringWrite{w: w, s: s, n: len(p), f: f, p: &p[0]})
}

// now makes q with its own system call, sendto(2) or recvfrom(2), and
// returns the result as io_uring would. A receive made so costs less than
// the pump's own read through syscall.RawConn, which takes the
// descriptor's lock and resets its poll state on every call
// (bench/compare/README.md).
func (r *wring) now(q *ringWrite) int32 {
	nr, flags := uintptr(syscall.SYS_SENDTO), uintptr(msgDontWait|msgNoSignal)
	if q.f != nil {
		nr, flags = syscall.SYS_RECVFROM, msgDontWait
	}
	for {
		n, _, e := syscall.RawSyscall6(nr, uintptr(q.w.ufd), uintptr(unsafe.Pointer(q.p)), uintptr(q.n), flags, 0, 0)
		switch e {
		case 0:
			return int32(n)
		case syscall.EINTR:
			continue
		}
		return -int32(e)
	}
}

// notSent is the result of a send that was never submitted.
const notSent = -1 << 31

// settle records the result res of queued send q: bytes sent or -errno.
func (r *wring) settle(q *ringWrite, res int32) {
	w := q.w
	if f := q.f; f != nil {
		switch e := syscall.Errno(-res); {
		case res > 0:
			f.prefetched(int(res), nil)
		case res == 0:
			f.prefetched(0, io.EOF)
		case e == syscall.EAGAIN:
			f.prefetched(0, errWouldBlock)
		case res == notSent, e == syscall.EINTR:
			// No prefetch: the pump reads itself.
		default:
			f.prefetched(0, w.opError("read", os.NewSyscallError("read", e)))
		}
		return
	}
	if int(res) == q.n {
		w.owed.Store(owedNone)
		return
	}
	sent := 0
	switch e := syscall.Errno(-res); {
	case res >= 0:
		sent = int(res)
	case res == notSent, e == syscall.EAGAIN, e == syscall.EINTR:
	default:
		w.restErr = w.opError("write", os.NewSyscallError("write", e))
	}
	if w.restErr == nil {
		w.rest = append([]byte(nil), r.stage[q.off+sent:q.off+q.n]...)
	}
	w.owed.Store(owedRest)
	r.short = append(r.short, q.s)
	r.count.short.Add(1)
}
