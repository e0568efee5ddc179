package proxy

import (
	"io"
	"net"
	"os"
	"syscall"
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
	r.p, r.n, r.errno = p, 0, 0
	err := r.rc.Read(r.fn)
	n, errno := r.n, r.errno
	r.p = nil
	switch {
	case err != nil:
		return n, r.opError("read", err)
	case errno != 0:
		return n, r.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of p, like net.Conn.Write.
func (r *rawSock) Write(p []byte) (int, error) {
	r.p, r.n, r.errno = p, 0, 0
	err := r.rc.Write(r.fn)
	n, errno := r.n, r.errno
	r.p = nil
	switch {
	case err != nil:
		return n, r.opError("write", err)
	case errno != 0:
		return n, r.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// opError wraps err as net.Conn does, so that messages and errors.Is/As
// checks (net.ErrClosed, os.ErrDeadlineExceeded, timeouts) stay the same.
func (r *rawSock) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: r.conn.LocalAddr().Network(), Source: r.conn.LocalAddr(), Addr: r.conn.RemoteAddr(), Err: err}
}
