package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxMessageSize = 64 << 20
	DefaultStartupTimeout = 30 * time.Second
)

// Config is what a Server needs to run. A Config must not be changed once it
// is passed to New or Reload: build a new one and call Reload.
type Config struct {
	// Upstream is the PostgreSQL server every session connects to.
	Upstream Upstream
	// TLS terminates TLS for clients that send SSLRequest. nil answers 'N'.
	TLS *tls.Config
	// RequireTLS refuses a client whose StartupMessage does not come over
	// TLS: it gets FATAL 28000 instead of a session, and nothing is sent
	// upstream. A CancelRequest is still accepted without TLS, as PostgreSQL
	// does. TLS is also required, whatever RequireTLS says, when
	// TLS.ClientAuth demands a client certificate, so that a client cannot
	// skip the certificate check by skipping TLS. RequireTLS with a nil TLS
	// refuses every client.
	RequireTLS bool
	// MaxConnections caps concurrent client sessions; 0 means no cap. A
	// client over the cap gets FATAL 53300 after its startup packet.
	MaxConnections int
	// MaxMessageSize is the largest client message lockguard reads whole
	// (Query, Parse, Bind, Close, Describe, Execute, FunctionCall). A larger
	// one is answered with 08P01 and the session is closed. COPY data and
	// other streamed messages are limited only by PostgreSQL's own 1 GiB.
	// 0 means DefaultMaxMessageSize.
	MaxMessageSize int
	// StartupTimeout bounds the time from accept to the end of
	// authentication. 0 means DefaultStartupTimeout.
	StartupTimeout time.Duration
	// Logger receives connection-level logs; nil means slog.Default().
	Logger *slog.Logger
	// Hooks let a guard act on statements; nil relays everything.
	Hooks *Hooks
	// ForeignCancel, when set, is called with the backend key of a
	// CancelRequest that matches no session of this server, once it has
	// been forwarded to PostgreSQL. The session may be another replica's,
	// waiting in that lockguard (a hold, a retry's backoff) where its
	// backend is idle and ignores the cancel: ForeignCancel lets the
	// replicas tell each other (Server.CancelWaits on the one that has
	// it). It runs on the connection's goroutine and must not block or
	// keep key.
	ForeignCancel func(key []byte)
	// EventLoops is the number of event loops that relay sessions whose
	// client and server connections are both plain (not TLS) sockets, on
	// Linux; 0 relays every session with two goroutines. The count of the
	// first session that uses a loop holds until the Server is shut down;
	// a Reload to 0 makes new sessions use goroutines.
	EventLoops int
	// NoIOUring makes event loops read and write each socket with its own
	// read(2) and write(2) instead of one io_uring_enter per round for the
	// reads and one for the writes. Loops fall back to that by themselves
	// where io_uring is not available.
	NoIOUring bool
}

func (c *Config) maxMessageSize() int {
	if c.MaxMessageSize > 0 {
		return c.MaxMessageSize
	}
	return DefaultMaxMessageSize
}

func (c *Config) startupTimeout() time.Duration {
	if c.StartupTimeout > 0 {
		return c.StartupTimeout
	}
	return DefaultStartupTimeout
}

func (c *Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

// Server accepts client connections and relays each to its own upstream
// connection (session mode).
type Server struct {
	cfg      atomic.Pointer[Config]
	draining atomic.Bool

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*Session]struct{}
	byKey     map[string]*Session // by backend key (cancel packet body)
	wg        sync.WaitGroup      // sessions
	accepting sync.WaitGroup      // Serve loops

	active atomic.Int64 // client sessions past startup or in it
	total  atomic.Uint64

	loopOnce sync.Once
	loops    []*loop
	nextLoop atomic.Uint32
	inLoop   atomic.Int64
	leftLoop atomic.Uint64
	// backInLoop counts the times an event loop took a session back.
	backInLoop atomic.Uint64
	loopIO     loopCounters
}

// loopCounters count the event loops' batched writes.
type loopCounters struct {
	batches, writes atomic.Uint64
	reads           atomic.Uint64 // prefetching receives
	short           atomic.Uint64 // sends that came back short
	held            atomic.Uint64 // waits that kept the P (runner.wait)
}

// loopFor returns the event loop that is to relay a new session, or nil.
func (s *Session) loopFor() *loop {
	srv := s.srv
	// The reader and the writer of one connection are plain or not together:
	// cf.src and uf.dst are the client's, uf.src and cf.dst the server's.
	if srv == nil || s.cfg.EventLoops <= 0 || s.cf.src == nil || s.uf.src == nil {
		return nil
	}
	srv.loopOnce.Do(func() {
		for range s.cfg.EventLoops {
			l, err := newLoop(s.cfg.logger(), !s.cfg.NoIOUring, srv, s.cfg.EventLoops)
			if err != nil {
				s.cfg.logger().Warn("cannot start an event loop; sessions use goroutines", "err", err)
				break
			}
			srv.loops = append(srv.loops, l)
		}
	})
	if len(srv.loops) == 0 {
		return nil
	}
	return srv.loops[int(srv.nextLoop.Add(1))%len(srv.loops)]
}

// stopLoops ends the event loops once their sessions are gone.
func (s *Server) stopLoops() {
	s.loopOnce.Do(func() {}) // no loop may start after this
	for _, l := range s.loops {
		l.stop()
	}
}

// New returns a Server that uses cfg until the next Reload.
func New(cfg *Config) *Server {
	s := &Server{
		listeners: make(map[net.Listener]struct{}),
		sessions:  make(map[*Session]struct{}),
	}
	s.cfg.Store(cfg)
	return s
}

// Reload makes new sessions use cfg; sessions already open keep theirs.
func (s *Server) Reload(cfg *Config) { s.cfg.Store(cfg) }

// Config returns the configuration new sessions use.
func (s *Server) Config() *Config { return s.cfg.Load() }

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("lockguard: server closed")

// Serve accepts connections on ln until Shutdown or an accept error.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.accepting.Add(1)
	s.mu.Unlock()
	defer s.accepting.Done()
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if s.draining.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.cfg.Load().logger().Warn("accept failed; retrying", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.startSession(conn)
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

func (s *Server) startSession(conn net.Conn) {
	cfg := s.cfg.Load()
	sess := newSession(s, cfg, conn)
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		sess.refuse(drainingError)
		return
	}
	s.sessions[sess] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.total.Add(1)
	go func() {
		defer s.wg.Done()
		sess.serve()
		s.mu.Lock()
		delete(s.sessions, sess)
		s.mu.Unlock()
	}()
}

// addKey makes sess reachable by the CancelRequests that carry its backend
// key, once it has one.
func (s *Server) addKey(sess *Session) {
	if sess.cancelPacket == nil {
		return
	}
	s.mu.Lock()
	if s.byKey == nil {
		s.byKey = make(map[string]*Session)
	}
	s.byKey[string(sess.cancelPacket[8:])] = sess
	s.mu.Unlock()
}

// dropKey undoes addKey when sess ends.
func (s *Server) dropKey(sess *Session) {
	if sess.cancelPacket == nil {
		return
	}
	s.mu.Lock()
	if k := string(sess.cancelPacket[8:]); s.byKey[k] == sess {
		delete(s.byKey, k)
	}
	s.mu.Unlock()
}

// byBackendKey returns this server's session with backend key key, or nil.
func (s *Server) byBackendKey(key []byte) *Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byKey[string(key)]
}

// CancelWaits ends what this server's sessions whose backend key match
// accepts wait for in lockguard, as a CancelRequest with that key coming
// here would: a statement held back, a DDL between its retries. Only
// sessions that wait are asked; it returns how many match accepted.
func (s *Server) CancelWaits(match func(key []byte) bool) int {
	var waiting []*Session
	s.mu.Lock()
	for _, sess := range s.byKey {
		if sess.waits() {
			waiting = append(waiting, sess)
		}
	}
	s.mu.Unlock()
	n := 0
	for _, sess := range waiting {
		if match(sess.cancelPacket[8:]) {
			sess.cancelWait()
			n++
		}
	}
	return n
}

// Stats are counters for health endpoints and metrics.
type Stats struct {
	Active int64  // open client sessions
	Total  uint64 // sessions accepted since start
	// InLoop is the number of sessions an event loop relays now, and
	// LeftLoop the number of times a session left one to wait for
	// something (a held or retried statement, a client that does not
	// read) and went on with goroutines; sessions that ended in a loop are
	// not counted there.
	InLoop   int64
	LeftLoop uint64
	// BackInLoop is the number of times a session that had left a loop
	// went back to it, once idle: nothing to read from either side and
	// every statement answered.
	BackInLoop uint64
	// RingEnters is the number of io_uring_enter calls event loops made,
	// and RingSends and RingRecvs the socket operations they carried.
	RingEnters, RingSends, RingRecvs uint64
	// HeldWaits is the number of times an event loop waited for events
	// without giving up its P, and got them (see proxy/loop_linux.go).
	HeldWaits uint64
}

// Stats returns current counters.
func (s *Server) Stats() Stats {
	return Stats{Active: s.active.Load(), Total: s.total.Load(), InLoop: s.inLoop.Load(), LeftLoop: s.leftLoop.Load(), BackInLoop: s.backInLoop.Load(),
		RingEnters: s.loopIO.batches.Load(), RingSends: s.loopIO.writes.Load(), RingRecvs: s.loopIO.reads.Load(),
		HeldWaits: s.loopIO.held.Load()}
}

// Ready reports whether the server accepts sessions: at least one listener is
// open and Shutdown has not begun.
func (s *Server) Ready() bool {
	if s.draining.Load() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.listeners) > 0
}

// Shutdown stops accepting connections, closes sessions as soon as they are
// idle outside a transaction, and waits for the rest to finish until ctx is
// done; then it closes what remains and returns ctx's error. Every client whose
// session is closed this way gets FATAL 57P01 when it is at a message boundary.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	clear(s.listeners)
	sessions := make([]*Session, 0, len(s.sessions))
	for sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	s.accepting.Wait()
	for _, sess := range sessions {
		sess.drain()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	defer s.stopLoops()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	rest := make([]*Session, 0, len(s.sessions))
	for sess := range s.sessions {
		rest = append(rest, sess)
	}
	s.mu.Unlock()
	// Kill in parallel: each may wait a moment for a stuck client write or
	// a cancel to an unreachable server.
	for _, sess := range rest {
		go sess.abort(shutdownError)
	}
	<-done
	return ctx.Err()
}

// drainingError answers a connection that arrives while the proxy drains.
var drainingError = &Error{Code: CodeAdminShutdown, Message: "lockguard: the proxy is shutting down",
	Detail: "lockguard received a shutdown signal and accepts no new sessions.",
	Hint:   "Connect again; another lockguard replica or the restarted one will take the session."}

// shutdownInFlightError replaces shutdownError when a statement was in
// flight: it may have completed (a COMMIT may have committed).
var shutdownInFlightError = &Error{Code: CodeAdminShutdown,
	Message: "lockguard: terminating connection because the proxy is shutting down",
	Detail:  "lockguard received a shutdown signal while a statement was in progress on this connection; it may or may not have completed (a COMMIT in flight may have committed).",
	Hint:    "Reconnect and check whether the last transaction committed before retrying it."}

var shutdownError = &Error{Code: CodeAdminShutdown,
	Message: "lockguard: terminating connection because the proxy is shutting down",
	Detail:  "lockguard received a shutdown signal; an open transaction on this connection was rolled back by PostgreSQL.",
	Hint:    "Reconnect and retry the transaction."}
