package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// SSL modes for the upstream connection, with libpq's meanings.
const (
	SSLDisable    = "disable"
	SSLPrefer     = "prefer"
	SSLRequire    = "require"
	SSLVerifyCA   = "verify-ca"
	SSLVerifyFull = "verify-full"
)

// Upstream says how to reach PostgreSQL.
type Upstream struct {
	// Address is HOST:PORT, a unix socket directory (port 5432), a directory
	// followed by ":PORT", or the path of a socket file (".s.PGSQL.NNNN").
	Address string
	// SSLMode is one of disable, prefer, require, verify-ca, verify-full.
	// Unix sockets never use TLS. "" means prefer, as in libpq.
	SSLMode string
	// RootCAs verifies the server certificate; nil means the system pool.
	// With require and a non-nil RootCAs the chain is verified (libpq does
	// the same when a root certificate file is present).
	RootCAs *x509.CertPool
	// ConnectTimeout bounds dialing and TLS negotiation; 0 means 10s.
	ConnectTimeout time.Duration
}

// network returns the dial network and address.
func (u *Upstream) network() (string, string) { return SplitAddress(u.Address) }

// SplitAddress turns a lockguard address into a network and address for
// net.Dial or net.Listen. HOST:PORT is TCP. A path is a unix socket in
// PostgreSQL's layout: a directory means its ".s.PGSQL.5432", "DIR:PORT" its
// ".s.PGSQL.PORT", and a path whose last element starts with ".s.PGSQL." is
// the socket itself.
func SplitAddress(a string) (network, address string) {
	if !strings.HasPrefix(a, "/") {
		return "tcp", a
	}
	if strings.HasPrefix(filepath.Base(a), ".s.PGSQL.") {
		return "unix", a
	}
	port := "5432"
	if i := strings.LastIndexByte(a, ':'); i > 0 {
		if _, err := strconv.Atoi(a[i+1:]); err == nil {
			a, port = a[:i], a[i+1:]
		}
	}
	return "unix", filepath.Join(a, ".s.PGSQL."+port)
}

// host returns the host name used for certificate verification.
func (u *Upstream) host() string {
	h, _, err := net.SplitHostPort(u.Address)
	if err != nil {
		return u.Address
	}
	return h
}

// Validate checks the settings without dialing.
func (u *Upstream) Validate() error {
	if u.Address == "" {
		return errors.New("no upstream address")
	}
	switch u.SSLMode {
	case "", SSLDisable, SSLPrefer, SSLRequire, SSLVerifyCA, SSLVerifyFull:
	default:
		return fmt.Errorf("unknown upstream sslmode %q (want disable, prefer, require, verify-ca or verify-full)", u.SSLMode)
	}
	if n, a := u.network(); n == "tcp" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("upstream address %q: %w", a, err)
		}
	}
	return nil
}

// dial connects to PostgreSQL and negotiates TLS as SSLMode says. It reports
// whether the connection uses TLS.
func (u *Upstream) dial(ctx context.Context) (net.Conn, bool, error) {
	timeout := u.ConnectTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	network, addr := u.network()
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, false, err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		_ = tc.SetKeepAlive(true)
	}
	mode := u.SSLMode
	if mode == "" {
		mode = SSLPrefer
	}
	if network == "unix" || mode == SSLDisable {
		return conn, false, nil
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	var req [8]byte
	binary.BigEndian.PutUint32(req[0:], 8)
	binary.BigEndian.PutUint32(req[4:], codeSSL)
	if _, err := conn.Write(req[:]); err != nil {
		conn.Close()
		return nil, false, fmt.Errorf("sending SSLRequest: %w", err)
	}
	var resp [1]byte
	if _, err := io.ReadFull(conn, resp[:]); err != nil {
		conn.Close()
		return nil, false, fmt.Errorf("reading SSLRequest answer: %w", err)
	}
	switch resp[0] {
	case 'N':
		if mode == SSLPrefer {
			_ = conn.SetDeadline(time.Time{})
			return conn, false, nil
		}
		conn.Close()
		return nil, false, fmt.Errorf("server does not support SSL, but sslmode is %s", mode)
	case 'S':
	default:
		conn.Close()
		return nil, false, fmt.Errorf("%w: unexpected answer %q to SSLRequest", ErrProtocol, resp[0])
	}
	tconn := tls.Client(conn, u.tlsConfig(mode))
	if err := tconn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, false, fmt.Errorf("TLS handshake: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	return tconn, true, nil
}

func (u *Upstream) tlsConfig(mode string) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.host()}
	switch {
	case mode == SSLVerifyFull:
		cfg.RootCAs = u.RootCAs
	case mode == SSLVerifyCA || (mode == SSLRequire && u.RootCAs != nil):
		// Verify the chain but not the host name, as libpq's verify-ca does.
		cfg.InsecureSkipVerify = true
		roots := u.RootCAs
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(opts)
			return err
		}
	default: // prefer, require: encryption without verification, as in libpq
		cfg.InsecureSkipVerify = true
	}
	return cfg
}

// forwardCancel sends a CancelRequest packet, unchanged, to PostgreSQL on a
// new connection and waits for the server to close it, as libpq does.
func (u *Upstream) forwardCancel(ctx context.Context, packet []byte) error {
	conn, _, err := u.dial(ctx)
	if err != nil {
		return fmt.Errorf("dialing upstream for cancel: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(packet); err != nil {
		return fmt.Errorf("sending cancel: %w", err)
	}
	var b [1]byte
	_, err = conn.Read(b[:]) // the server closes the connection when done
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) {
		return nil // reset or closed: the request was delivered
	}
	return nil
}
