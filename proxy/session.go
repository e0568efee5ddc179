package proxy

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Session is one client connection and its upstream connection.
type Session struct {
	srv *Server
	cfg *Config
	log *slog.Logger

	client    net.Conn
	clientTLS bool
	upstream  net.Conn
	upTLS     bool

	// Set during startup, read-only afterwards.
	params       map[string]string
	protoVersion uint32
	backendPID   uint32
	cancelPacket []byte // CancelRequest for our backend, from BackendKeyData

	reportedMu sync.Mutex
	reported   map[string]string // ParameterStatus after startup (Reported)

	// state holds the number of sync points (Query, Sync, FunctionCall) sent
	// upstream whose ReadyForQuery has not arrived, and closingBit once the
	// session is being closed; no sync point is forwarded after that.
	state atomic.Uint64
	// txStatus: the last ReadyForQuery's status ('I', 'T' or 'E') in its
	// low byte, the one before it in the next.
	txStatus atomic.Uint32
	draining atomic.Bool
	upDone   atomic.Bool // upstream connection is gone
	// terminated is set when the client's Terminate is forwarded, or when
	// lockguard ends the upstream because the client side ended: the
	// server's close that follows is the client's doing, not news for it.
	terminated atomic.Bool
	// relaying is set once startup has ended and the fields it sets
	// (upstream, backendPID, cancelPacket, log) stay as they are: only then
	// may another goroutine (Shutdown) kill the session.
	relaying atomic.Bool

	wmu        sync.Mutex // serialises writes to the client
	atBoundary bool       // under wmu: client stream is at a message boundary
	fatalSent  bool       // under wmu: lockguard sent a FATAL; nothing follows
	upFatal    bool       // upstream side: the last ErrorResponse was FATAL

	closeOnce sync.Once

	// Owned by the client→upstream goroutine.
	cf        framer
	batchOpen bool // an extended-protocol batch is open (no Sync yet)
	// batchAnswers counts the Executes and Describes of the open batch.
	batchAnswers int
	// Owned by the upstream→client goroutine.
	uf framer

	ext extTracker

	// State is what Hooks.Open returned for this session.
	State any

	plans    plans
	zSeq     uint64        // upstream side: ReadyForQuery messages seen
	zPub     atomic.Uint64 // zSeq, for other goroutines (runsInjected)
	syncDone int           // upstream side: statements completed in the current sync point
	descDone int           // upstream side: Describes answered in the current sync point
	// Upstream side: the first ErrorResponse of sync point errSeq, its
	// SQLSTATE (errCode[:errLen]) and the statements completed before it;
	// every plan of that sync point reports it, however many parts its
	// batch came in and whichever of them had a plan.
	errSeq      uint64
	errCode     [5]byte
	errLen      int
	errAt       int
	parts       []*plan  // upstream side scratch for plans.laterParts
	syncSeq     uint64   // client side: sync points sent
	obs         observer // timings for Hooks.Complete and Hooks.Forwarded
	upOut       []byte   // upstream side scratch for planned output
	cOut        []byte   // client side scratch for injected output
	idleWaiters atomic.Int32
	zNotify     chan struct{}
	ctx         context.Context
	cancelCtx   context.CancelFunc
	// stopWait, under waitMu, is set while a batch waits in lockguard
	// (startWait): a CancelRequest with the session's key ends the wait.
	waitMu   sync.Mutex
	stopWait context.CancelCauseFunc

	// Client side state of the extended batch being held for a decision.
	batch    Batch
	refs     []stmtRef
	batchOps []extOp
	midBatch bool // part of the current batch was forwarded (Flush)
	// unsent holds, while Hooks.Batch decides a Query, the messages
	// before it that are forwarded undecided but not yet written
	// (sendUnsent).
	unsent []byte
	// flushedPure is set while midBatch when the parts forwarded only
	// parsed, described and closed (Batch.FlushedPure).
	flushedPure bool
	batchSeq    uint64
	// heldExecs counts the Executes of the held batch; sentExecs those of
	// the parts of the current batch forwarded before it (Flush).
	heldExecs, sentExecs int
	// heldDescribes counts the Describes of the held batch; sentAnswers
	// the Executes and Describes PostgreSQL answers in the parts
	// forwarded before it (extOp.answers).
	heldDescribes, sentAnswers int
	// unnamedSQL is the text of the last unnamed statement parsed, for
	// an Execute in a later batch.
	unnamedSQL []byte

	// Event loop (loop_linux.go). inLoop is set while the loop relays the
	// session; runner while a loop's goroutine pumps it, and pumping is
	// the direction it pumps.
	lp      *loop
	slot    int32
	socks   [2][2]*rawSock // by socket (dirClient, dirUpstream): reader, writer; set under sockMu and wmu
	sockMu  sync.Mutex     // socks and the loop's setup of them, against kill
	inLoop  atomic.Bool
	runner  atomic.Pointer[runner]
	pumping int
	leave   chan leaveMsg
	sides   chan sideEnd
	// Going back to the loop (Session.park), under parkMu: parked by
	// direction, stopping once both are, never after parkNever.
	parkMu    sync.Mutex
	parked    [2]bool
	stopping  bool
	parkNever bool
}

const closingBit = 1 << 32

func newSession(srv *Server, cfg *Config, conn net.Conn) *Session {
	s := &Session{srv: srv, cfg: cfg, client: conn, atBoundary: true, zNotify: make(chan struct{}, 1)}
	s.ctx, s.cancelCtx = context.WithCancel(context.Background())
	s.log = cfg.logger().With("client", conn.RemoteAddr().String())
	s.obs.init(cfg.Hooks)
	return s
}

// TxStatus returns the transaction status from the last ReadyForQuery:
// 'I' idle, 'T' in a transaction block, 'E' in a failed transaction block.
func (s *Session) TxStatus() byte { return byte(s.txStatus.Load()) }

// TxStatusBefore returns the status of the ReadyForQuery before the last
// one: the status the last completed sync point started in (0 before the
// second ReadyForQuery). Hooks.Batch's Verdict.Result runs at that sync
// point's ReadyForQuery, so there it is the status the batch started in
// (or its last injected statement did).
func (s *Session) TxStatusBefore() byte { return byte(s.txStatus.Load() >> 8) }

// InFlight returns the number of sync points awaiting ReadyForQuery.
func (s *Session) InFlight() int { return int(uint32(s.state.Load())) }

// Param returns a startup parameter sent by the client, such as "user".
func (s *Session) Param(name string) string { return s.params[name] }

// Reported returns the value the server last reported for parameter name
// with a ParameterStatus after the session started, and whether it did: a
// SET of application_name (or TimeZone, …) makes PostgreSQL report the new
// value, which the startup parameters no longer tell. Followed while hooks
// watch the session.
func (s *Session) Reported(name string) (string, bool) {
	s.reportedMu.Lock()
	defer s.reportedMu.Unlock()
	v, ok := s.reported[name]
	return v, ok
}

// noteParameter records a ParameterStatus message (header included).
func (s *Session) noteParameter(msg []byte) {
	if len(msg) < 5 {
		return
	}
	name, rest, ok := cstring(msg[5:])
	if !ok {
		return
	}
	value, _, ok := cstring(rest)
	if !ok {
		return
	}
	s.reportedMu.Lock()
	defer s.reportedMu.Unlock()
	if s.reported == nil {
		s.reported = make(map[string]string)
	}
	s.reported[string(name)] = string(value) // a fixed few names: those PostgreSQL reports
}

// BackendPID returns the upstream backend's process id.
func (s *Session) BackendPID() uint32 { return s.backendPID }

// serve runs the session to its end.
func (s *Session) serve() {
	defer s.close()
	if tc, ok := s.client.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		_ = tc.SetKeepAlive(true)
	}
	startup, err := s.negotiate()
	if err == errCancelRelayed {
		s.log.Debug("cancel request relayed")
		return
	}
	if err != nil {
		s.logEnd("startup failed", err)
		return
	}
	if s.srv.draining.Load() {
		s.refuse(drainingError)
		return
	}
	n := s.srv.active.Add(1)
	defer s.srv.active.Add(-1)
	if max := s.cfg.MaxConnections; max > 0 && n > int64(max) {
		s.refuse(&Error{Code: CodeTooManyConnections, Message: "lockguard: too many client connections",
			Detail: fmt.Sprintf("lockguard already serves %d sessions, its max-connections.", max),
			Hint:   "Retry later, close idle connections in the application's pool, or raise max-connections."})
		return
	}
	s.log = s.log.With("user", s.params["user"], "database", s.params["database"])
	up, upTLS, err := s.cfg.Upstream.dial(context.Background())
	if err != nil {
		s.refuse(&Error{Code: CodeConnectionFailure,
			Message: fmt.Sprintf("lockguard: could not connect to upstream PostgreSQL at %s", s.cfg.Upstream.Address),
			Detail:  err.Error(),
			Hint:    "Check that PostgreSQL is running and that lockguard's --upstream and --upstream-sslmode are right."})
		s.logEnd("upstream connect failed", err)
		return
	}
	s.upstream, s.upTLS = up, upTLS
	if err := s.authenticate(startup); err != nil {
		s.logEnd("authentication relay ended", err)
		return
	}
	_ = s.client.SetDeadline(time.Time{})
	_ = s.upstream.SetDeadline(time.Time{})
	s.srv.addKey(s)
	defer s.srv.dropKey(s)
	s.log = s.log.With("backend_pid", s.backendPID)
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("session started", "tls", s.clientTLS, "upstream_tls", s.upTLS)
	}
	s.relaying.Store(true)
	if s.srv.draining.Load() {
		// Shutdown began during startup and left the session alone: it
		// ends here, at a message boundary (drain may have beaten it to
		// this, then tryClose fails and drain kills it).
		s.draining.Store(true)
		if s.tryClose() {
			s.kill(shutdownError)
			return
		}
	}
	s.relay()
}

func (s *Session) logEnd(msg string, err error) {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		s.log.Debug(msg)
		return
	}
	s.log.Info(msg, "err", err)
}

// errCancelRelayed ends a connection that brought a CancelRequest (negotiate):
// it is done, not failed.
var errCancelRelayed = errors.New("cancel request relayed")

// negotiate reads startup packets until a StartupMessage, answering SSLRequest
// and GSSENCRequest and forwarding a CancelRequest. It returns the
// StartupMessage, length included, or errCancelRelayed after a CancelRequest.
func (s *Session) negotiate() ([]byte, error) {
	_ = s.client.SetDeadline(time.Now().Add(s.cfg.startupTimeout()))
	sslDone, gssDone := false, false
	for {
		pkt, err := readStartupPacket(s.client)
		if err != nil {
			var pe *Error
			if errors.As(err, &pe) {
				s.refuse(pe)
			}
			return nil, err
		}
		code := be32(pkt[4:8])
		switch {
		case code == codeSSL && !sslDone:
			sslDone = true
			if s.cfg.TLS == nil || s.clientTLS {
				if _, err := s.client.Write([]byte{'N'}); err != nil {
					return nil, err
				}
				continue
			}
			if _, err := s.client.Write([]byte{'S'}); err != nil {
				return nil, err
			}
			tconn := tls.Server(s.client, s.cfg.TLS)
			if err := tconn.Handshake(); err != nil {
				return nil, fmt.Errorf("client TLS handshake: %w", err)
			}
			s.client, s.clientTLS = tconn, true
		case code == codeGSSENC && !gssDone && !s.clientTLS:
			gssDone = true
			if _, err := s.client.Write([]byte{'N'}); err != nil {
				return nil, err
			}
		case code == codeCancel:
			if len(pkt) < 16 || len(pkt) > 12+256 {
				return nil, fmt.Errorf("%w: CancelRequest of %d bytes", ErrProtocol, len(pkt))
			}
			// What the session waits for in lockguard (a hold, a retry's
			// backoff) ends too; PostgreSQL cancels what it runs: the
			// client's statement, not one lockguard sent before or after
			// it (awaitOwnStatements).
			var target *Session
			if s.srv != nil {
				target = s.srv.byBackendKey(pkt[8:])
			}
			if target != nil {
				target.cancelWait()
				target.awaitOwnStatements(ownStatementsWait)
			}
			err := s.cfg.Upstream.forwardCancel(context.Background(), pkt)
			if err != nil {
				s.log.Warn("forwarding cancel request failed", "err", err)
			}
			if target == nil && s.cfg.ForeignCancel != nil {
				s.cfg.ForeignCancel(pkt[8:])
			}
			return nil, errCancelRelayed
		case code>>16 == protoMajor3:
			params, err := startupParams(pkt[8:])
			if err != nil {
				s.refuse(&Error{Code: CodeProtocolViolation, Message: "lockguard: invalid startup packet",
					Detail: err.Error(), Hint: "The client sent a malformed StartupMessage; check the driver."})
				return nil, err
			}
			if params["user"] == "" {
				s.refuse(&Error{Code: CodeInvalidAuthSpec, Message: "lockguard: no PostgreSQL user name specified in startup packet",
					Detail: "The StartupMessage has no \"user\" parameter.", Hint: "Set the user in the connection string."})
				return nil, errors.New("no user in startup packet")
			}
			if !s.clientTLS && s.cfg.requireTLS() {
				s.log = s.log.With("user", params["user"], "database", params["database"])
				s.refuse(tlsRequiredError(s.cfg))
				return nil, errTLSRequired
			}
			s.params, s.protoVersion = params, code
			return pkt, nil
		default:
			e := &Error{Code: CodeFeatureNotSupp,
				Message: fmt.Sprintf("lockguard: unsupported frontend protocol %d.%d", code>>16, code&0xffff),
				Detail:  "lockguard and PostgreSQL speak protocol 3.x (3.0 to 3.2).",
				Hint:    "Use a current PostgreSQL driver."}
			if code == codeSSL || code == codeGSSENC {
				e = &Error{Code: CodeProtocolViolation, Message: "lockguard: encryption was requested twice",
					Detail: "The client sent a second SSLRequest or GSSENCRequest.", Hint: "This is a client bug."}
			}
			s.refuse(e)
			return nil, errors.New(e.Message)
		}
	}
}

// errTLSRequired ends the startup of a client that did not use TLS where
// Config.RequireTLS (or a required client certificate) demands it.
var errTLSRequired = errors.New("client did not use TLS, which is required")

// readStartupPacket reads one length-prefixed startup packet without reading
// past it (so nothing is buffered across a TLS handshake).
func readStartupPacket(r io.Reader) ([]byte, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return nil, err
	}
	n := int(be32(hdr[:4]))
	if n < 8 || n > maxStartupLen {
		return nil, &Error{Code: CodeProtocolViolation, Message: "lockguard: invalid length of startup packet",
			Detail: fmt.Sprintf("The startup packet claims %d bytes; a valid one has 8 to %d.", n, maxStartupLen),
			Hint:   "Is the client speaking the PostgreSQL protocol to the right port?"}
	}
	pkt := make([]byte, n)
	copy(pkt, hdr[:4])
	if _, err := io.ReadFull(r, pkt[4:]); err != nil {
		return nil, fmt.Errorf("reading startup packet: %w", err)
	}
	return pkt, nil
}

// refuse answers the client with e, during startup, and ends the session.
func (s *Session) refuse(e *Error) {
	_ = s.client.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = s.client.Write(appendErrorResponse(nil, e))
	s.client.Close()
}

// authenticate sends the StartupMessage upstream and relays authentication
// until the first ReadyForQuery.
func (s *Session) authenticate(startup []byte) error {
	_ = s.upstream.SetDeadline(time.Now().Add(s.cfg.startupTimeout()))
	if _, err := s.upstream.Write(startup); err != nil {
		return s.upstreamFailed("sending startup message", err)
	}
	s.uf.init(64<<10, 64<<10)
	f := &s.uf
	for {
		if err := f.fill(s.upstream); err != nil {
			return s.upstreamFailed("reading authentication", err)
		}
		fwd := f.start
		for {
			fr, ok, err := f.next(&allWhole)
			if err != nil {
				return s.upstreamFailed("reading authentication", err)
			}
			if !ok {
				break
			}
			msg := fr.msg
			switch fr.typ {
			case 'R':
				if len(msg) < 9 {
					return s.upstreamFailed("reading authentication", fmt.Errorf("%w: short authentication request", ErrProtocol))
				}
				switch code := be32(msg[5:9]); code {
				case 0, 12: // AuthenticationOk, SASLFinal: nothing to answer
				case 3, 5, 10, 11: // cleartext, md5, SASL, SASLContinue
					if code == 10 {
						if err := s.writeClient(f.buf[fwd : f.start-len(msg)]); err != nil {
							return err
						}
						if err := s.writeClient(stripChannelBinding(msg)); err != nil {
							return err
						}
					} else if err := s.writeClient(f.buf[fwd:f.start]); err != nil {
						return err
					}
					fwd = f.start
					if err := s.relayAuthResponse(code); err != nil {
						return err
					}
				default:
					s.refuseAfterUpstream(&Error{Code: CodeFeatureNotSupp,
						Message: fmt.Sprintf("lockguard: authentication method %d cannot be relayed", code),
						Detail:  "lockguard relays trust, password, md5 and SCRAM-SHA-256 authentication end to end; GSSAPI and SSPI are not supported.",
						Hint:    "Configure pg_hba.conf for scram-sha-256 for connections from lockguard."})
					return fmt.Errorf("unsupported authentication method %d", code)
				}
			case 'K':
				body := msg[5:]
				if len(body) < 8 || len(body) > 4+256 {
					return s.upstreamFailed("reading BackendKeyData", fmt.Errorf("%w: BackendKeyData of %d bytes", ErrProtocol, len(body)))
				}
				s.backendPID = be32(body[:4])
				pkt := make([]byte, 8+len(body))
				binary.BigEndian.PutUint32(pkt[0:], uint32(len(pkt)))
				binary.BigEndian.PutUint32(pkt[4:], codeCancel)
				copy(pkt[8:], body)
				s.cancelPacket = pkt
			case 'Z':
				if len(msg) == 6 {
					s.txStatus.Store(uint32(msg[5]))
				}
				if err := s.writeClient(f.buf[fwd:f.start]); err != nil {
					return err
				}
				if f.start != f.end {
					return s.upstreamFailed("finishing startup", fmt.Errorf("%w: data after the first ReadyForQuery", ErrProtocol))
				}
				return nil
			case 'E':
				_ = s.writeClient(f.buf[fwd:f.start])
				return errors.New("upstream refused the session")
			case 'S', 'N', 'v':
			default:
				return s.upstreamFailed("reading authentication", fmt.Errorf("%w: unexpected message %q during startup", ErrProtocol, fr.typ))
			}
		}
		if err := s.writeClient(f.buf[fwd:f.start]); err != nil {
			return err
		}
	}
}

// relayAuthResponse reads the client's answer to an authentication request and
// forwards it.
func (s *Session) relayAuthResponse(code uint32) error {
	var hdr [5]byte
	if _, err := io.ReadFull(s.client, hdr[:]); err != nil {
		return fmt.Errorf("reading authentication response: %w", err)
	}
	n := int(be32(hdr[1:]))
	if hdr[0] != 'p' || n < 4 || n > 65535+4 {
		s.refuseAfterUpstream(&Error{Code: CodeProtocolViolation, Message: "lockguard: invalid authentication response",
			Detail: fmt.Sprintf("Expected a password message, got type %q with length %d.", hdr[0], n),
			Hint:   "This is a client bug."})
		return fmt.Errorf("%w: bad authentication response", ErrProtocol)
	}
	msg := make([]byte, 1+n)
	copy(msg, hdr[:])
	if _, err := io.ReadFull(s.client, msg[5:]); err != nil {
		return fmt.Errorf("reading authentication response: %w", err)
	}
	if code == 10 && s.upTLS && clientWantsBinding(msg[5:]) {
		s.refuseAfterUpstream(&Error{Code: CodeInvalidAuthSpec,
			Message: "lockguard: SCRAM channel binding cannot pass through a proxy that terminates TLS",
			Detail:  "The client supports channel binding and says so in its SCRAM exchange; PostgreSQL, reached over TLS, would reject that as a downgrade, and the binding to lockguard's certificate cannot be proven to PostgreSQL.",
			Hint:    "Connect with channel_binding=disable, or run lockguard with --upstream-sslmode=disable on a trusted network."})
		return errors.New("client requested SCRAM channel binding through a TLS-terminating proxy")
	}
	if _, err := s.upstream.Write(msg); err != nil {
		return s.upstreamFailed("relaying authentication response", err)
	}
	return nil
}

// stripChannelBinding returns an AuthenticationSASL message without the
// SCRAM-SHA-256-PLUS mechanism: channel binding ties the SCRAM proof to one
// TLS connection, and lockguard terminates the client's TLS itself.
func stripChannelBinding(msg []byte) []byte {
	out := make([]byte, 9, len(msg))
	copy(out, msg[:9])
	rest := msg[9:]
	for len(rest) > 0 && rest[0] != 0 {
		mech, r, ok := cstring(rest)
		if !ok {
			return msg
		}
		if string(mech) != "SCRAM-SHA-256-PLUS" {
			out = append(out, mech...)
			out = append(out, 0)
		}
		rest = r
	}
	out = append(out, 0)
	binary.BigEndian.PutUint32(out[1:], uint32(len(out)-1))
	return out
}

// clientWantsBinding reports whether a SASLInitialResponse body uses plain
// SCRAM-SHA-256 with the gs2 flag 'y' (client supports channel binding but
// believes the server does not).
func clientWantsBinding(body []byte) bool {
	mech, rest, ok := cstring(body)
	if !ok || string(mech) != "SCRAM-SHA-256" || len(rest) < 5 {
		return false
	}
	return rest[4] == 'y'
}

// upstreamFailed answers the client when the upstream connection broke during
// startup.
func (s *Session) upstreamFailed(op string, err error) error {
	s.refuseAfterUpstream(&Error{Code: CodeConnectionFailure,
		Message: "lockguard: lost the connection to upstream PostgreSQL during startup",
		Detail:  fmt.Sprintf("%s: %v", op, err),
		Hint:    "Check the PostgreSQL server log; the server may have restarted."})
	return fmt.Errorf("%s: %w", op, err)
}

func (s *Session) refuseAfterUpstream(e *Error) {
	s.refuse(e)
	if s.upstream != nil {
		s.upstream.Close()
	}
}

// writeClient writes b to the client unless it is empty.
func (s *Session) writeClient(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	s.wmu.Lock()
	_, err := s.client.Write(b)
	s.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("writing to client: %w", err)
	}
	return nil
}

// close releases both connections; it is idempotent.
func (s *Session) close() {
	s.closeOnce.Do(func() {
		s.cancelCtx()
		s.client.Close()
		if s.upstream != nil {
			s.upstream.Close()
		}
		// epoll does not report a socket closed by this process.
		if s.inLoop.Load() {
			s.lp.requestLeave(s)
		}
	})
}

// allWhole wants every message whole (startup messages are small).
var allWhole = func() (t [256]bool) {
	for i := range t {
		t[i] = true
	}
	return t
}()
