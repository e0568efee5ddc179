package test

// Helpers for the reliability, fault, checker, security and scale-out tests
// (issue 8): a private PostgreSQL for tests that restart or overload it, a
// resource relSnapshot for leak checks, raw protocol reading, and a TCP relay that
// can black-hole or reset the traffic between lockguard and PostgreSQL.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/lockguard/lockguard/internal/pgserver"
	"github.com/lockguard/lockguard/proxy"
)

// relOwnPG starts a private PostgreSQL (plain TCP) for a test that restarts
// it, partitions it or needs more connections than the shared one allows. It
// is stopped and removed when the test ends. synchronous_commit is on: an
// immediate shutdown is a crash, and the checker must not lose acknowledged
// commits to the harness's speed settings.
func relOwnPG(t testing.TB, settings map[string]string) *pgserver.Server {
	t.Helper()
	opts := pgserver.Options{Settings: map[string]string{"synchronous_commit": "on"}}
	for k, v := range settings {
		opts.Settings[k] = v
	}
	if testing.Verbose() {
		opts.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := pgserver.Start(ctx, opts)
	if err != nil {
		t.Fatalf("starting a private PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stopping the private PostgreSQL: %v", err)
		}
	})
	return s
}

// relLockguard starts an in-process lockguard in front of upstream (an
// address such as a private server's or a fault relay's).
func relLockguard(t testing.TB, upstream string, mutate func(*proxy.Config)) *lockguard {
	t.Helper()
	return startLockguard(t, func(c *proxy.Config) {
		c.Upstream.Address = upstream
		if mutate != nil {
			mutate(c)
		}
	})
}

// relDirect connects to s as the superuser without lockguard.
func relDirect(t testing.TB, s *pgserver.Server) *pgx.Conn {
	t.Helper()
	return connect(t, s.DSN(pgserver.Superuser, "", pgserver.TestDB))
}

// relResources is what a leak check compares.
type relResources struct {
	goroutines int
	fds        int
	heapInuse  uint64
}

func (r relResources) String() string {
	return fmt.Sprintf("%d goroutines, %d fds, %.1f MiB heap in use", r.goroutines, r.fds, float64(r.heapInuse)/(1<<20))
}

// relSnapshot measures the test process (which holds both the clients and the
// in-process lockguard) after a garbage collection.
func relSnapshot(t testing.TB) relResources {
	t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting file descriptors: %v", err)
	}
	return relResources{goroutines: runtime.NumGoroutine(), fds: len(fds), heapInuse: ms.HeapInuse}
}

// relWaitSettled polls until goroutines and fds are back within slack of base
// and the heap within heapSlack, or fails with what is still there.
func relWaitSettled(t testing.TB, base relResources, slack int, heapSlack uint64, d time.Duration) relResources {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		now := relSnapshot(t)
		if now.goroutines <= base.goroutines+slack && now.fds <= base.fds+slack && now.heapInuse <= base.heapInuse+heapSlack {
			return now
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("relResources did not settle within %v: before %v, after %v (slack %d, heap slack %d MiB)\ngoroutines:\n%s",
				d, base, now, slack, heapSlack>>20, relStacks(buf))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// relStacks counts goroutines by their top lockguard or test frame.
func relStacks(dump []byte) string {
	counts := map[string]int{}
	for _, g := range bytes.Split(dump, []byte("\n\n")) {
		lines := strings.Split(string(g), "\n")
		key := ""
		for _, l := range lines[1:] {
			if strings.Contains(l, "lockguard/") && !strings.HasPrefix(l, "\t") {
				key = l
				break
			}
		}
		if key == "" && len(lines) > 1 {
			key = lines[1]
		}
		counts[key]++
	}
	var b strings.Builder
	for k, n := range counts {
		fmt.Fprintf(&b, "%6d  %s\n", n, k)
	}
	return b.String()
}

// relRaiseFDLimit sets the soft RLIMIT_NOFILE to the hard limit and fails if
// that is below need.
func relRaiseFDLimit(t testing.TB, need uint64) {
	t.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			t.Fatalf("raising RLIMIT_NOFILE: %v", err)
		}
	}
	if rl.Cur < need {
		t.Fatalf("RLIMIT_NOFILE hard limit is %d; this test needs %d file descriptors (ulimit -Hn)", rl.Max, need)
	}
}

// relMsg is one message read off a raw connection.
type relMsg struct {
	typ  byte
	body []byte
}

// errorResponse decodes m, which must be an ErrorResponse.
func (m relMsg) errorResponse() *pgproto3.ErrorResponse {
	var e pgproto3.ErrorResponse
	if err := e.Decode(m.body); err != nil {
		return &pgproto3.ErrorResponse{Message: "undecodable ErrorResponse: " + err.Error()}
	}
	return &e
}

// relReadUntilClosed reads backend messages until the server closes the
// connection, the deadline passes or a ReadyForQuery arrives (stopAtReady).
// It returns the messages, and closed=true when the peer closed the
// connection (EOF or reset) rather than the deadline passing.
func relReadUntilClosed(c net.Conn, d time.Duration, readyCount int) (msgs []relMsg, closed bool, err error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	var buf []byte
	tmp := make([]byte, 32<<10)
	for {
		// Split complete messages off buf.
		for len(buf) >= 5 {
			n := int(binary.BigEndian.Uint32(buf[1:5]))
			if n < 4 || len(buf) < 1+n {
				break
			}
			m := relMsg{typ: buf[0], body: append([]byte(nil), buf[5:1+n]...)}
			msgs = append(msgs, m)
			buf = buf[1+n:]
			if m.typ == 'Z' {
				if readyCount--; readyCount == 0 {
					return msgs, false, nil
				}
			}
		}
		n, rerr := c.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if rerr != nil {
			if errors.Is(rerr, os.ErrDeadlineExceeded) {
				return msgs, false, rerr
			}
			if len(buf) > 0 && len(buf) < 5 {
				// A lone byte such as an SSLRequest answer.
				msgs = append(msgs, relMsg{typ: buf[0]})
			}
			return msgs, true, nil // EOF, reset: closed by the peer
		}
	}
}

// relStartupPacket encodes a protocol 3.0 StartupMessage.
func relStartupPacket(params map[string]string) []byte {
	b, err := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: params}).Encode(nil)
	if err != nil {
		panic(err)
	}
	return b
}

// relSuperStartup is a StartupMessage for the superuser in TestDB.
func relSuperStartup(appName string) []byte {
	return relStartupPacket(map[string]string{"user": pgserver.Superuser, "database": pgserver.TestDB, "application_name": appName})
}

// relSession dials addr, completes startup as the superuser and returns the
// connection and the BackendKeyData.
func relSession(addr, appName string, d time.Duration) (net.Conn, *pgproto3.BackendKeyData, error) {
	c, err := net.DialTimeout("tcp", addr, d)
	if err != nil {
		return nil, nil, err
	}
	if _, err := c.Write(relSuperStartup(appName)); err != nil {
		c.Close()
		return nil, nil, err
	}
	msgs, _, err := relReadUntilClosed(c, d, 1)
	var key *pgproto3.BackendKeyData
	for _, m := range msgs {
		switch m.typ {
		case 'K':
			key = &pgproto3.BackendKeyData{}
			if err := key.Decode(m.body); err != nil {
				c.Close()
				return nil, nil, err
			}
		case 'E':
			c.Close()
			e := m.errorResponse()
			return nil, nil, fmt.Errorf("startup refused: %s %s (%s)", e.Code, e.Message, e.Detail)
		case 'Z':
			return c, key, nil
		}
	}
	c.Close()
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return nil, nil, fmt.Errorf("startup: no ReadyForQuery: %w", err)
}

// relQuery sends a simple Query and reads to its ReadyForQuery. It returns
// the first DataRow's first column and the first ErrorResponse.
func relQuery(c net.Conn, sql string, d time.Duration) (string, *pgproto3.ErrorResponse, error) {
	q, _ := (&pgproto3.Query{String: sql}).Encode(nil)
	_ = c.SetWriteDeadline(time.Now().Add(d))
	if _, err := c.Write(q); err != nil {
		return "", nil, err
	}
	msgs, _, err := relReadUntilClosed(c, d, 1)
	var val string
	var perr *pgproto3.ErrorResponse
	gotVal, ready := false, false
	for _, m := range msgs {
		switch m.typ {
		case 'D':
			if !gotVal {
				var dr pgproto3.DataRow
				if dr.Decode(m.body) == nil && len(dr.Values) > 0 {
					val, gotVal = string(dr.Values[0]), true
				}
			}
		case 'E':
			if perr == nil {
				perr = m.errorResponse()
			}
		case 'Z':
			ready = true
		}
	}
	if !ready && err == nil {
		err = fmt.Errorf("connection closed before ReadyForQuery")
	}
	return val, perr, err
}

// relResetClose closes c with an RST, as the kernel does for a killed process
// that had unread data: no orderly FIN.
func relResetClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// relIsConnError reports whether err means the connection is gone or its fate is
// unknown (as opposed to a definite SQL error): an I/O error, or a
// PostgreSQL/lockguard error of class 08 (connection exception) or 57P
// (operator intervention: shutdown, crash, cannot connect now).
func relIsConnError(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "57P")
	}
	return true
}

// relFaultRelay is a TCP relay between lockguard and PostgreSQL that can black-
// hole traffic (a partition: bytes and FINs are held, not delivered, until
// Heal) or reset every connection (the connection dies). Unlike a real
// partition it cannot stop the kernel from acknowledging what lockguard sends,
// so TCP keepalive never fires through it; see docs in faults_test.go.
type relFaultRelay struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	open   chan struct{} // closed while traffic flows
	pairs  map[*relPair]struct{}
	closed bool
	wg     sync.WaitGroup
}

type relPair struct {
	a    net.Conn
	dead chan struct{}

	mu     sync.Mutex
	b      net.Conn // the PostgreSQL side, once dialed
	killed bool
}

// setUpstream records the PostgreSQL side; false means the pair was killed
// meanwhile (and up is closed).
func (p *relPair) setUpstream(up net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.killed {
		up.Close()
		return false
	}
	p.b = up
	return true
}

func (p *relPair) kill(rst bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.killed {
		p.killed = true
		close(p.dead)
		for _, c := range []net.Conn{p.a, p.b} {
			if c == nil {
				continue
			}
			if rst {
				relResetClose(c)
			} else {
				c.Close()
			}
		}
	}
}

func relStartFaultRelay(t testing.TB, target string) *relFaultRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relFaultRelay{ln: ln, target: target, open: make(chan struct{}), pairs: map[*relPair]struct{}{}}
	close(r.open)
	r.wg.Add(1)
	go r.acceptLoop()
	t.Cleanup(r.Close)
	return r
}

func (r *relFaultRelay) Addr() string { return r.ln.Addr().String() }

// Partition holds all traffic, including new connections, until Heal.
func (r *relFaultRelay) Partition() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.open:
		r.open = make(chan struct{})
	default:
	}
}

// Heal delivers what was held and lets traffic flow again.
func (r *relFaultRelay) Heal() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.open:
	default:
		close(r.open)
	}
}

// ResetAll kills every relayed connection with an RST on both sides.
func (r *relFaultRelay) ResetAll() {
	r.mu.Lock()
	pairs := make([]*relPair, 0, len(r.pairs))
	for p := range r.pairs {
		pairs = append(pairs, p)
	}
	r.mu.Unlock()
	for _, p := range pairs {
		p.kill(true)
	}
}

// Close stops the relay and closes every connection.
func (r *relFaultRelay) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.mu.Unlock()
	r.ln.Close()
	r.Heal()
	r.ResetAll()
	r.wg.Wait()
}

// waitOpen blocks while partitioned; false means the pair died meanwhile.
func (r *relFaultRelay) waitOpen(p *relPair) bool {
	r.mu.Lock()
	open := r.open
	r.mu.Unlock()
	select {
	case <-open:
		select {
		case <-p.dead:
			return false
		default:
			return true
		}
	case <-p.dead:
		return false
	}
}

func (r *relFaultRelay) acceptLoop() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		p := &relPair{a: c, dead: make(chan struct{})}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			c.Close()
			return
		}
		r.pairs[p] = struct{}{}
		r.mu.Unlock()
		r.wg.Add(1)
		go r.serve(p)
	}
}

func (r *relFaultRelay) serve(p *relPair) {
	defer r.wg.Done()
	defer func() {
		p.kill(false)
		r.mu.Lock()
		delete(r.pairs, p)
		r.mu.Unlock()
	}()
	// A connection opened during a partition gets no answer: the SYN was
	// acknowledged by our listener, but nothing reaches PostgreSQL.
	if !r.waitOpen(p) {
		return
	}
	up, err := net.DialTimeout("tcp", r.target, 5*time.Second)
	if err != nil {
		return
	}
	if !p.setUpstream(up) {
		return
	}
	done := make(chan struct{}, 2)
	go func() { r.pipe(p, up, p.a); done <- struct{}{} }()
	go func() { r.pipe(p, p.a, up); done <- struct{}{} }()
	<-done
	// One side ended: deliver the close to the other (when not partitioned).
	if r.waitOpen(p) {
		p.kill(false)
	}
	<-done
}

// pipe copies src to dst, holding each chunk while partitioned.
func (r *relFaultRelay) pipe(p *relPair, dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !r.waitOpen(p) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// relFakePG is a minimal PostgreSQL stand-in for scale tests: it accepts any
// StartupMessage without authentication, sends BackendKeyData and
// ReadyForQuery, and answers every Query with one row holding its session
// id. It costs a goroutine per connection where a real backend costs a
// process (about 50 ms of CPU to start and stop on the 2-core test machine).
type relFakePG struct {
	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	nextID uint32
}

func relStartFakePG(t testing.TB) *relFakePG {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &relFakePG{ln: ln, conns: map[net.Conn]struct{}{}, nextID: 1 << 30}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns[c] = struct{}{}
			f.nextID++
			id := f.nextID
			f.mu.Unlock()
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				f.serve(c, id)
				f.mu.Lock()
				delete(f.conns, c)
				f.mu.Unlock()
				c.Close()
			}()
		}
	}()
	t.Cleanup(f.Close)
	return f
}

func (f *relFakePG) Addr() string { return f.ln.Addr().String() }

// Active returns the number of open connections.
func (f *relFakePG) Active() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.conns) }

func (f *relFakePG) Close() {
	f.ln.Close()
	f.mu.Lock()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *relFakePG) serve(c net.Conn, id uint32) {
	var hdr [5]byte
	if _, err := io.ReadFull(c, hdr[:4]); err != nil {
		return
	}
	n := int(binary.BigEndian.Uint32(hdr[:4]))
	if n < 8 || n > 10000 {
		return
	}
	if _, err := io.ReadFull(c, make([]byte, n-4)); err != nil {
		return
	}
	var out []byte
	out, _ = (&pgproto3.AuthenticationOk{}).Encode(out)
	out, _ = (&pgproto3.BackendKeyData{ProcessID: id, SecretKey: []byte{1, 2, 3, 4}}).Encode(out)
	out, _ = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(out)
	if _, err := c.Write(out); err != nil {
		return
	}
	val := []byte(fmt.Sprint(id))
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(hdr[1:]))
		if n < 4 || n > 1<<20 {
			return
		}
		if _, err := io.ReadFull(c, make([]byte, n-4)); err != nil {
			return
		}
		switch hdr[0] {
		case 'X':
			return
		case 'Q':
			out = out[:0]
			out, _ = (&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("id"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}}).Encode(out)
			out, _ = (&pgproto3.DataRow{Values: [][]byte{val}}).Encode(out)
			out, _ = (&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}).Encode(out)
			out, _ = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(out)
			if _, err := c.Write(out); err != nil {
				return
			}
		}
	}
}
