package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// fakeServer is a scripted PostgreSQL for protocol cases a real server does
// not produce on demand. Each accepted connection runs the next script.
type fakeServer struct {
	ln      net.Listener
	scripts chan func(net.Conn)
}

func newFakeServer(t *testing.T) *fakeServer {
	fs := &fakeServer{scripts: make(chan func(net.Conn), 8)}
	fs.ln = serveLoopback(t, func(c net.Conn) {
		select {
		case script := <-fs.scripts:
			c.SetDeadline(time.Now().Add(10 * time.Second))
			script(c)
		default:
			// Not part of the test's script (for example a cancel the
			// proxy forwards while a session ends): refuse it.
		}
	})
	return fs
}

// serveLoopback listens on a free loopback port and runs handle on each
// connection, in a goroutine of its own, closing the connection after it.
// It stops accepting when the test ends.
func serveLoopback(t testing.TB, handle func(net.Conn)) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); handle(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln
}

func startProxy(t *testing.T, upstream string) string {
	_, addr := startServer(t, upstream)
	return addr
}

// startServer starts a proxy to upstream and returns it and its address; it
// is shut down when the test ends, if the test did not shut it down.
func startServer(t *testing.T, upstream string) (*Server, string) {
	return startServerWith(t, upstream, nil)
}

// startServerWith is startServer with a configuration that set changes.
func startServerWith(t testing.TB, upstream string, set func(*Config)) (*Server, string) {
	cfg := &Config{Upstream: Upstream{Address: upstream, SSLMode: SSLDisable},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if set != nil {
		set(cfg)
	}
	srv := New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv, ln.Addr().String()
}

// untilReady receives messages until a ReadyForQuery.
func untilReady(t testing.TB, fe *pgproto3.Frontend) {
	t.Helper()
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return
		}
	}
}

// acceptStartup reads the proxy's StartupMessage on c and answers
// AuthenticationOk, then msgs (a BackendKeyData, say), then ReadyForQuery.
// It returns the backend to go on with, or nil when the startup could not
// be read (the error is reported).
func acceptStartup(t *testing.T, c net.Conn, msgs ...interface{ Encode([]byte) ([]byte, error) }) *pgproto3.Backend {
	be := pgproto3.NewBackend(c, c)
	if _, err := be.ReceiveStartupMessage(); err != nil {
		t.Error(err)
		return nil
	}
	msgs = append(append([]interface{ Encode([]byte) ([]byte, error) }{&pgproto3.AuthenticationOk{}}, msgs...), &pgproto3.ReadyForQuery{TxStatus: 'I'})
	sendAll(t, c, msgs...)
	return be
}

func sendAll(t *testing.T, w io.Writer, msgs ...interface{ Encode([]byte) ([]byte, error) }) {
	if _, err := w.Write(encode(t, msgs...)); err != nil {
		t.Error(err)
	}
}

// TestCancelKeyOfAnyLength: protocol 3.2 allows secret keys up to 256 bytes;
// the CancelRequest must reach the server byte for byte.
func TestCancelKeyOfAnyLength(t *testing.T) {
	fs := newFakeServer(t)
	key := bytes.Repeat([]byte{0xab, 0x01}, 16) // 32 bytes
	gotCancel := make(chan []byte, 1)
	fs.scripts <- func(c net.Conn) {
		if acceptStartup(t, c, &pgproto3.BackendKeyData{ProcessID: 77, SecretKey: key}) != nil {
			io.Copy(io.Discard, c)
		}
	}
	fs.scripts <- func(c net.Conn) {
		b, _ := io.ReadAll(io.LimitReader(c, int64(12+len(key))))
		gotCancel <- b
	}
	addr := startProxy(t, fs.ln.Addr().String())

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion32, Parameters: map[string]string{"user": "u"}})
	fe.Flush()
	var kd *pgproto3.BackendKeyData
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if m, ok := msg.(*pgproto3.BackendKeyData); ok {
			kd = &pgproto3.BackendKeyData{ProcessID: m.ProcessID, SecretKey: append([]byte(nil), m.SecretKey...)}
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	if kd == nil || kd.ProcessID != 77 || !bytes.Equal(kd.SecretKey, key) {
		t.Fatalf("BackendKeyData relayed as %+v", kd)
	}
	cc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	want := encode(t, &pgproto3.CancelRequest{ProcessID: 77, SecretKey: key})
	cc.Write(want)
	select {
	case got := <-gotCancel:
		if !bytes.Equal(got, want) {
			t.Fatalf("server got cancel %x, want %x", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancel not forwarded")
	}
	// The proxy closes the cancel connection without answering.
	cc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := cc.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("cancel connection: read %d bytes, err %v", n, err)
	}
}

// TestSASLPlusRemoved: SCRAM-SHA-256-PLUS is not offered to clients, and an
// unsupported authentication method gets a clear error.
func TestSASLPlusRemoved(t *testing.T) {
	fs := newFakeServer(t)
	fs.scripts <- func(c net.Conn) {
		be := pgproto3.NewBackend(c, c)
		be.ReceiveStartupMessage()
		sendAll(t, c, &pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}})
		io.Copy(io.Discard, c)
	}
	fs.scripts <- func(c net.Conn) {
		be := pgproto3.NewBackend(c, c)
		be.ReceiveStartupMessage()
		sendAll(t, c, &pgproto3.AuthenticationGSS{})
		io.Copy(io.Discard, c)
	}
	addr := startProxy(t, fs.ln.Addr().String())
	for i, check := range []func(msg pgproto3.BackendMessage) bool{
		func(msg pgproto3.BackendMessage) bool {
			m, ok := msg.(*pgproto3.AuthenticationSASL)
			if !ok || len(m.AuthMechanisms) != 1 || m.AuthMechanisms[0] != "SCRAM-SHA-256" {
				t.Fatalf("mechanisms relayed as %#v", msg)
			}
			return true
		},
		func(msg pgproto3.BackendMessage) bool {
			m, ok := msg.(*pgproto3.ErrorResponse)
			if !ok || m.Code != CodeFeatureNotSupp || m.Hint == "" {
				t.Fatalf("GSS: got %#v, want 0A000 from lockguard", msg)
			}
			return true
		},
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fe := pgproto3.NewFrontend(c, c)
		fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "u"}})
		fe.Flush()
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		check(msg)
		c.Close()
	}
}

// TestUpstreamDiesMidSession: when PostgreSQL vanishes at a message boundary
// the client is told the outcome is unknown (08006), not left with a bare EOF.
func TestUpstreamDiesMidSession(t *testing.T) {
	fs := newFakeServer(t)
	fs.scripts <- func(c net.Conn) {
		be := pgproto3.NewBackend(c, c)
		be.ReceiveStartupMessage()
		sendAll(t, c, &pgproto3.AuthenticationOk{}, &pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}},
			&pgproto3.ReadyForQuery{TxStatus: 'I'})
		be.Receive() // the COMMIT; then die without answering
	}
	addr := startProxy(t, fs.ln.Addr().String())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "u"}})
	fe.Flush()
	untilReady(t, fe)
	fe.Send(&pgproto3.Query{String: "COMMIT"})
	fe.Flush()
	msg, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	e, ok := msg.(*pgproto3.ErrorResponse)
	if !ok || e.Code != CodeConnectionFailure || e.Severity != "FATAL" {
		t.Fatalf("got %#v, want FATAL 08006", msg)
	}
}

// TestTerminateAfterHeldBatch: a Terminate that follows an extended batch
// the guard holds until its Sync, which never came. lockguard sent neither
// the batch nor the Terminate, yet waited for PostgreSQL to close after
// the Terminate: the session and its backend stayed 5 s. The batch goes
// undecided (without a Sync PostgreSQL would roll it back) and the
// Terminate alone. Found by FuzzEventLoop.
func TestTerminateAfterHeldBatch(t *testing.T) {
	fs := newAnsweringServer(t)
	var decided atomic.Int32
	_, addr := startServerWith(t, fs.addr(), func(c *Config) {
		c.Hooks = &Hooks{Batch: func(context.Context, *Session, *Batch) *Verdict { decided.Add(1); return nil }}
	})
	c := startedClient(t, addr, "terminate")
	defer c.Close()
	start := time.Now()
	sendAll(t, c, &pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Terminate{})
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(c); err != nil || len(b) > 0 {
		t.Fatalf("the client read %q, %v; want the end of the stream", b, err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("the session ended %v after the Terminate", took)
	}
	got, ok := fs.received("terminate", 5*time.Second)
	if !ok {
		t.Fatal("the server connection stayed open")
	}
	if want := encode(t, &pgproto3.Terminate{}); !bytes.Equal(got, want) {
		t.Fatalf("the server received %q after startup, want only the Terminate %q", got, want)
	}
	if n := decided.Load(); n != 0 {
		t.Fatalf("the guard decided %d batches, want none", n)
	}
}

// TestShutdownAsRelayStarts: a shutdown that catches sessions in startup or
// as their relay sets up answers every client that got a connection with
// FATAL 57P01 (after its ReadyForQuery, or instead of it), at once rather
// than at the drain deadline, and under -race shows no unsynchronized access
// to what startup sets.
func TestShutdownAsRelayStarts(t *testing.T) {
	for range 20 {
		fs := newFakeServer(t)
		const clients = 4
		for range clients {
			fs.scripts <- func(c net.Conn) {
				be := pgproto3.NewBackend(c, c)
				be.ReceiveStartupMessage()
				sendAll(t, c, &pgproto3.AuthenticationOk{}, &pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}},
					&pgproto3.ReadyForQuery{TxStatus: 'I'})
				io.Copy(io.Discard, c) // until the proxy closes the connection
			}
		}
		srv, addr := startServer(t, fs.ln.Addr().String())
		firstReady := make(chan struct{}, clients)
		outcome := make(chan string, clients)
		for range clients {
			go func() { outcome <- shutdownClient(addr, firstReady) }()
		}
		// Shut down as soon as one session is ready: the others are in
		// startup or just starting their relays.
		<-firstReady
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := srv.Shutdown(ctx)
		cancel()
		if err != nil {
			t.Fatalf("Shutdown: %v (a session was left to the drain deadline)", err)
		}
		for range clients {
			if o := <-outcome; o != "" {
				t.Fatal(o)
			}
		}
	}
}

// shutdownClient connects and starts a session, signals ready at its
// ReadyForQuery, and reads until the proxy ends the session; it returns
// what was wrong with how it ended, or "".
func shutdownClient(addr string, ready chan<- struct{}) string {
	signalled := false
	signal := func() {
		if !signalled {
			signalled = true
			ready <- struct{}{}
		}
	}
	defer signal()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "" // the listener closed first
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "u"}})
	if err := fe.Flush(); err != nil {
		return "" // accepted by the kernel, then the listener closed
	}
	got := 0
	for {
		msg, err := fe.Receive()
		switch {
		case err != nil && got == 0 && errors.Is(err, syscall.ECONNRESET):
			return "" // accepted by the kernel, then the listener closed
		case err != nil:
			return fmt.Sprintf("after %d messages: %v, want FATAL %s", got, err, CodeAdminShutdown)
		}
		got++
		switch m := msg.(type) {
		case *pgproto3.ReadyForQuery:
			signal()
		case *pgproto3.ErrorResponse:
			if m.Code != CodeAdminShutdown || m.Severity != "FATAL" {
				return fmt.Sprintf("got %#v, want FATAL %s", m, CodeAdminShutdown)
			}
			return ""
		}
	}
}

// answeringServer is a scripted server for FuzzEventLoop: it authenticates
// every session, answers each Query with CommandComplete and ReadyForQuery
// and each Sync with ReadyForQuery, closes the connection at a Terminate as
// PostgreSQL does, and when the connection ends reports every byte it
// received after startup, under the session's application_name (received).
// CancelRequests are accepted and closed.
type answeringServer struct {
	ln      net.Listener
	reports chan sessionReport
}

type sessionReport struct {
	app string
	got []byte
}

// received returns what the server received in the session whose
// application_name is app, once it ended; ok is false when it did not end
// within timeout. Reports of other sessions (one a failed test left
// behind) are dropped.
func (as *answeringServer) received(app string, timeout time.Duration) (got []byte, ok bool) {
	end := time.After(timeout)
	for {
		select {
		case r := <-as.reports:
			if r.app == app {
				return r.got, true
			}
		case <-end:
			return nil, false
		}
	}
}

func newAnsweringServer(t testing.TB) *answeringServer {
	as := &answeringServer{reports: make(chan sessionReport, 64)}
	as.ln = serveLoopback(t, as.serve)
	return as
}

func (as *answeringServer) addr() string { return as.ln.Addr().String() }

func (as *answeringServer) serve(c net.Conn) {
	c.SetDeadline(time.Now().Add(time.Minute))
	be := pgproto3.NewBackend(c, c)
	msg, err := be.ReceiveStartupMessage()
	if err != nil {
		return
	}
	sm, ok := msg.(*pgproto3.StartupMessage)
	if !ok {
		return // a CancelRequest
	}
	hello := []byte{}
	for _, m := range []pgproto3.BackendMessage{&pgproto3.AuthenticationOk{},
		&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}}, &pgproto3.ReadyForQuery{TxStatus: 'I'}} {
		hello, _ = m.Encode(hello)
	}
	if _, err := c.Write(hello); err != nil {
		return
	}
	var all []byte
	buf := make([]byte, 64<<10)
	framed := 0 // all[:framed] is whole messages, answered
	for {
		n, err := c.Read(buf)
		all = append(all, buf[:n]...)
		var answer []byte
		for len(all)-framed >= 5 {
			size := int(binary.BigEndian.Uint32(all[framed+1 : framed+5]))
			if size < 4 || len(all)-framed < 1+size {
				break
			}
			switch all[framed] {
			case 'Q':
				answer = append(answer, 'C', 0, 0, 0, 13)
				answer = append(answer, "SELECT 0\x00"...)
				answer = append(answer, 'Z', 0, 0, 0, 5, 'I')
			case 'S':
				answer = append(answer, 'Z', 0, 0, 0, 5, 'I')
			case 'X':
				err = io.EOF // PostgreSQL closes the connection
			}
			framed += 1 + size
			if err != nil {
				break
			}
		}
		if len(answer) > 0 {
			if _, werr := c.Write(answer); werr != nil && err == nil {
				err = werr
			}
		}
		if err != nil { // the end of the session, or a reset
			select {
			case as.reports <- sessionReport{app: sm.Parameters["application_name"], got: all}:
			case <-time.After(10 * time.Second): // no one asks
			}
			return
		}
	}
}

// startedClient connects to a proxy and completes its startup, with
// application_name app.
func startedClient(t testing.TB, addr, app string) net.Conn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "u", "application_name": app}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	untilReady(t, fe)
	return c
}

// TestCanceledHoldWhoseSubstituteIsCanceled: a CancelRequest ends a hold in
// lockguard and is forwarded to PostgreSQL as well, where it may land while
// the backend runs the statement that stands in for the refused batch. The
// client then got PostgreSQL's own 57014 instead of lockguard's, which says
// the statement never reached PostgreSQL (TestCancelEndsAHold failed so in
// CI). Here the server answers the stand-in with that 57014.
func TestCanceledHoldWhoseSubstituteIsCanceled(t *testing.T) {
	fs := newFakeServer(t)
	fs.scripts <- func(c net.Conn) {
		be := acceptStartup(t, c, &pgproto3.BackendKeyData{ProcessID: 78, SecretKey: []byte{1, 2, 3, 4}})
		if be == nil {
			return
		}
		for {
			msg, err := be.Receive()
			if err != nil {
				return
			}
			if _, ok := msg.(*pgproto3.Query); ok {
				sendAll(t, c, &pgproto3.ErrorResponse{Severity: "ERROR", Code: CodeQueryCanceled,
					Message: "canceling statement due to user request"}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
			}
		}
	}
	held := make(chan struct{}, 1)
	_, addr := startServerWith(t, fs.ln.Addr().String(), func(c *Config) {
		c.Hooks = &Hooks{Batch: func(context.Context, *Session, *Batch) *Verdict {
			return &Verdict{Hold: func(ctx context.Context) *Error {
				held <- struct{}{}
				<-ctx.Done()
				return nil
			}}
		}}
	})
	c := startedClient(t, addr, "canceledhold")
	defer c.Close()
	sendAll(t, c, &pgproto3.Query{String: "SELECT 1"})
	select {
	case <-held:
	case <-time.After(5 * time.Second):
		t.Fatal("the batch was not held")
	}
	cc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sendAll(t, cc, &pgproto3.CancelRequest{ProcessID: 78, SecretKey: []byte{1, 2, 3, 4}})
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	fe := pgproto3.NewFrontend(c, c)
	var e *pgproto3.ErrorResponse
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		if m, ok := msg.(*pgproto3.ErrorResponse); ok {
			e = &pgproto3.ErrorResponse{Code: m.Code, Message: m.Message, Detail: m.Detail}
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	if e == nil || e.Code != CodeQueryCanceled || e.Message != canceledMessage || e.Detail != CanceledHeld.Detail {
		t.Fatalf("the cancelled hold was answered %+v, want lockguard's %+v", e, CanceledHeld)
	}
}
