package pgserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Roles and passwords that every server has. See the package documentation for
// the authentication method each one is subject to.
const (
	// Superuser is the bootstrap superuser; it has no password and is trusted.
	Superuser = "postgres"

	// ScramUser must authenticate with SCRAM-SHA-256.
	ScramUser     = "lg_scram"
	ScramPassword = "scram-pw-1"

	// MD5User must authenticate with MD5; its password is stored as an MD5 hash.
	MD5User     = "lg_md5"
	MD5Password = "md5-pw-1"

	// PasswordUser must authenticate with a cleartext password.
	PasswordUser     = "lg_plain"
	PasswordPassword = "plain-pw-1"

	// TestDB is a database owned by Superuser in which ScramUser, MD5User and
	// PasswordUser may create tables.
	TestDB = "lockguard_test"
)

// Options configures Start. The zero value starts a plain-TCP server on a free
// loopback port using the first PostgreSQL installation found.
type Options struct {
	// BinDir is the directory holding initdb, pg_ctl and postgres. If empty,
	// Start looks them up on PATH, then takes the highest-numbered
	// /usr/lib/postgresql/*/bin.
	BinDir string

	// TLS generates a test CA (ECDSA P-256) and a server certificate for
	// 127.0.0.1, ::1 and localhost, and turns ssl on. The PEM files are
	// reported in Server.CAFile, CAKeyFile, CertFile and KeyFile.
	TLS bool

	// Port is the TCP port to listen on; 0 picks a free loopback port.
	Port int

	// Settings are extra postgresql.conf settings. They are applied after
	// Start's own settings and so override them. Values are quoted by Start.
	Settings map[string]string

	// Logf receives one line per step of Start and Stop. nil means silent.
	Logf func(format string, args ...any)
}

// Server is a running (or stopped) throwaway PostgreSQL cluster. Its fields are
// set by Start and must not be modified. Methods are safe for concurrent use.
type Server struct {
	Host      string // address the server listens on: "127.0.0.1"
	Port      int    // TCP port; StartServer reuses it
	SocketDir string // unix_socket_directories, kept short for the ~107-byte socket path limit
	Dir       string // temporary root holding everything below; removed by Stop
	DataDir   string // the cluster's data directory
	LogFile   string // the server's log (stderr of the postmaster)

	// PEM files, set only when Options.TLS. CAKeyFile lets tests sign more
	// certificates with IssueCert, e.g. for the proxy's client-facing TLS.
	CAFile, CAKeyFile, CertFile, KeyFile string

	Version int    // server major version, e.g. 15
	BinDir  string // directory of initdb, pg_ctl and postgres

	logf   func(format string, args ...any)
	runAs  *osUser // nil: run as the current user
	reaper *exec.Cmd

	mu      sync.Mutex
	running bool
	removed bool
}

// Start creates a new cluster in a temporary directory, starts it, and creates
// the roles and the TestDB database. It returns once the server accepts
// connections. If any step fails, Start stops the server and removes the
// directory before returning the error. The caller must call Stop.
func Start(ctx context.Context, opts Options) (s *Server, err error) {
	begin := time.Now()
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	binDir, err := findBinDir(opts.BinDir)
	if err != nil {
		return nil, err
	}
	runAs, err := serverUser()
	if err != nil {
		return nil, err
	}

	dir, err := os.MkdirTemp(tempBase(), "lgpg-")
	if err != nil {
		return nil, fmt.Errorf("creating temp dir: %w", err)
	}
	s = &Server{
		Host:      "127.0.0.1",
		Port:      opts.Port,
		SocketDir: filepath.Join(dir, "sock"),
		Dir:       dir,
		DataDir:   filepath.Join(dir, "data"),
		LogFile:   filepath.Join(dir, "server.log"),
		BinDir:    binDir,
		logf:      logf,
		runAs:     runAs,
	}
	defer func() {
		if err != nil {
			s.abort()
			s = nil
		}
	}()
	if n := len(s.SocketDir) + len("/.s.PGSQL.65535"); n > 107 {
		return s, fmt.Errorf("socket path would be %d bytes, over the limit of 107: set TMPDIR to a shorter directory", n)
	}
	if err := runAs.chown(dir); err != nil {
		return s, err
	}
	if err := s.mkdir(s.SocketDir); err != nil {
		return s, err
	}
	who := "current user"
	if runAs != nil {
		who = "user " + runAs.name
	}
	logf("pgserver: initdb in %s as %s, binaries from %s", s.DataDir, who, binDir)

	if err := s.initdb(ctx); err != nil {
		return s, err
	}
	if s.Version, err = s.readVersion(); err != nil {
		return s, err
	}
	if opts.TLS {
		if err := s.writeTLSFiles(); err != nil {
			return s, err
		}
	}
	if err := s.writeHBA(opts.TLS); err != nil {
		return s, err
	}

	// A port that was free may be taken by someone else before
	// the server binds it; pick another one a few times.
	for attempt := 1; ; attempt++ {
		if opts.Port == 0 {
			if s.Port, err = FreePort(); err != nil {
				return s, err
			}
		}
		if err := s.writeConf(opts); err != nil {
			return s, err
		}
		err = s.StartServer(ctx)
		if err == nil {
			break
		}
		if opts.Port != 0 || attempt == 5 || !s.bindFailed() {
			return s, err
		}
		logf("pgserver: port %d was taken, retrying", s.Port)
	}
	if err := s.startReaper(); err != nil {
		return s, err
	}
	if err := s.createRoles(ctx); err != nil {
		return s, err
	}
	logf("pgserver: PostgreSQL %d ready on %s (tls=%t) in %s", s.Version, s.Addr(), opts.TLS, time.Since(begin).Round(time.Millisecond))
	return s, nil
}

// Addr returns the server's TCP address, "127.0.0.1:PORT".
func (s *Server) Addr() string {
	return net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
}

// DSN returns a postgres:// URL for user on database db over plain TCP
// (sslmode=disable). An empty password is left out; an empty db means the
// server's default (the user's name).
func (s *Server) DSN(user, password, db string) string {
	return s.dsn(user, password, db, url.Values{"sslmode": {"disable"}})
}

// TLSDSN is like DSN but requires TLS and verifies the server certificate
// against CAFile (sslmode=verify-full). It is only useful when the server was
// started with Options.TLS.
func (s *Server) TLSDSN(user, password, db string) string {
	return s.dsn(user, password, db, url.Values{"sslmode": {"verify-full"}, "sslrootcert": {s.CAFile}})
}

func (s *Server) dsn(user, password, db string, q url.Values) string {
	u := url.URL{Scheme: "postgres", Host: s.Addr(), Path: "/" + db, RawQuery: q.Encode()}
	if password != "" {
		u.User = url.UserPassword(user, password)
	} else {
		u.User = url.User(user)
	}
	return u.String()
}

// Exec runs sql, which may hold several statements, as Superuser in the
// "postgres" database using the simple query protocol.
func (s *Server) Exec(ctx context.Context, sql string) error {
	return s.ExecDB(ctx, "postgres", sql)
}

// ExecDB is like Exec but runs sql in database db.
func (s *Server) ExecDB(ctx context.Context, db, sql string) error {
	conn, err := pgx.Connect(ctx, s.DSN(Superuser, "", db))
	if err != nil {
		return fmt.Errorf("exec: connecting: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	return nil
}

// StartServer starts the server again after StopServer, on the same port and
// with the same data. It returns once the server accepts connections.
func (s *Server) StartServer(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed {
		return errors.New("pg_ctl start: server was removed by Stop")
	}
	if s.running {
		return errors.New("pg_ctl start: server is already running")
	}
	begin := time.Now()
	out, err := s.command(ctx, "pg_ctl", "start", "-w", "-t", "60", "-D", s.DataDir, "-l", s.LogFile).CombinedOutput()
	if err != nil {
		// pg_ctl may have given up while the postmaster lives on.
		s.pgctlStop(context.WithoutCancel(ctx), "immediate")
		return fmt.Errorf("pg_ctl start: %w: %s\nserver log:\n%s", err, bytes.TrimSpace(out), s.logTail())
	}
	s.running = true
	if err := s.waitReady(ctx); err != nil {
		return err
	}
	s.logf("pgserver: server on %s accepting connections after %s", s.Addr(), time.Since(begin).Round(time.Millisecond))
	return nil
}

// StopServer stops the server but keeps its data, so that StartServer can start
// it again. mode is "fast" (disconnect clients, shut down cleanly) or
// "immediate" (as if the server crashed; the next start runs recovery); ""
// means "fast". Stopping a stopped server is a no-op.
func (s *Server) StopServer(mode string) error {
	switch mode {
	case "":
		mode = "fast"
	case "fast", "immediate":
	default:
		return fmt.Errorf("pg_ctl stop: unknown mode %q, want fast or immediate", mode)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if out, err := s.pgctlStop(ctx, mode); err != nil {
		return fmt.Errorf("pg_ctl stop -m %s: %w: %s", mode, err, bytes.TrimSpace(out))
	}
	s.running = false
	s.logf("pgserver: server on %s stopped (%s)", s.Addr(), mode)
	return nil
}

// Restart stops the server with StopServer(mode) and starts it again on the
// same port.
func (s *Server) Restart(ctx context.Context, mode string) error {
	if err := s.StopServer(mode); err != nil {
		return err
	}
	return s.StartServer(ctx)
}

// Stop shuts the server down (fast) and removes Dir. It is idempotent: later
// calls return nil. Dir is removed even if the shutdown fails.
func (s *Server) Stop() error {
	stopErr := s.StopServer("fast")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed {
		return nil
	}
	if stopErr != nil {
		// Make sure nothing keeps running on a directory we are about to delete.
		s.pgctlStop(context.Background(), "immediate")
		s.running = false
	}
	s.stopReaper()
	s.removed = true
	if err := os.RemoveAll(s.Dir); err != nil {
		return errors.Join(stopErr, fmt.Errorf("removing %s: %w", s.Dir, err))
	}
	s.logf("pgserver: removed %s", s.Dir)
	return stopErr
}

// abort tears down a half-started server, ignoring errors.
func (s *Server) abort() {
	s.mu.Lock()
	s.pgctlStop(context.Background(), "immediate")
	s.running = false
	s.stopReaper()
	s.removed = true
	s.mu.Unlock()
	os.RemoveAll(s.Dir)
}

// pgctlStop runs pg_ctl stop. The caller holds s.mu.
func (s *Server) pgctlStop(ctx context.Context, mode string) ([]byte, error) {
	return s.command(ctx, "pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", s.DataDir).CombinedOutput()
}

func (s *Server) initdb(ctx context.Context) error {
	out, err := s.command(ctx, "initdb", "-D", s.DataDir, "-U", Superuser, "--auth=trust",
		"-E", "UTF8", "--locale=C", "--no-sync").CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

func (s *Server) readVersion() (int, error) {
	b, err := os.ReadFile(filepath.Join(s.DataDir, "PG_VERSION"))
	if err != nil {
		return 0, fmt.Errorf("reading server version: %w", err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("parsing server version %q: %w", b, err)
	}
	return v, nil
}

// waitReady connects until the server answers a query. pg_ctl -w has already
// waited for the postmaster, so the first attempt normally succeeds.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, s.DSN(Superuser, "", "postgres"))
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for server on %s: %w\nserver log:\n%s", s.Addr(), err, s.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Server) createRoles(ctx context.Context) error {
	roles := []string{ScramUser, MD5User, PasswordUser}
	for i, r := range roles {
		roles[i] = pgx.Identifier{r}.Sanitize()
	}
	all := strings.Join(roles, ", ")
	steps := []struct{ db, sql string }{
		{"postgres", fmt.Sprintf(`SET password_encryption = 'scram-sha-256';
CREATE ROLE %s LOGIN CREATEDB PASSWORD %s;
CREATE ROLE %s LOGIN CREATEDB PASSWORD %s;
SET password_encryption = 'md5';
CREATE ROLE %s LOGIN CREATEDB PASSWORD %s;`,
			roles[0], quoteLiteral(ScramPassword),
			roles[2], quoteLiteral(PasswordPassword),
			roles[1], quoteLiteral(MD5Password))},
		// CREATE DATABASE cannot run in the implicit transaction of a
		// multi-statement query.
		{"postgres", fmt.Sprintf("CREATE DATABASE %s OWNER %s", pgx.Identifier{TestDB}.Sanitize(), pgx.Identifier{Superuser}.Sanitize())},
		{TestDB, fmt.Sprintf("GRANT ALL ON DATABASE %s TO %s; GRANT ALL ON SCHEMA public TO %s;",
			pgx.Identifier{TestDB}.Sanitize(), all, all)},
	}
	for _, st := range steps {
		if err := s.ExecDB(ctx, st.db, st.sql); err != nil {
			return fmt.Errorf("creating roles: %w", err)
		}
	}
	return nil
}

// bindFailed reports whether the server log says the TCP port was taken.
func (s *Server) bindFailed() bool {
	b, _ := os.ReadFile(s.LogFile)
	return bytes.Contains(b, []byte("could not bind")) || bytes.Contains(b, []byte("Address already in use"))
}

// logTail returns the last lines of the server log, for error messages.
func (s *Server) logTail() string {
	b, err := os.ReadFile(s.LogFile)
	if err != nil {
		return fmt.Sprintf("(no server log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// command prepares one of the PostgreSQL programs, running as the server user
// with a clean PG* environment.
func (s *Server) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(s.BinDir, name), args...)
	cmd.Dir = s.Dir
	env := []string{"HOME=" + s.Dir, "LC_ALL=C"}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG") {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = env
	s.runAs.apply(cmd)
	return cmd
}

// findBinDir returns the directory holding initdb, pg_ctl and postgres.
func findBinDir(dir string) (string, error) {
	if dir != "" {
		if err := checkBinDir(dir); err != nil {
			return "", err
		}
		return dir, nil
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		// Debian links a few programs into /usr/local/bin or similar; the
		// real directory is the one with all of them.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		if d := filepath.Dir(p); checkBinDir(d) == nil {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestVersion := "", -1
	for _, d := range dirs {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if err != nil || v <= bestVersion || checkBinDir(d) != nil {
			continue
		}
		best, bestVersion = d, v
	}
	if best == "" {
		return "", errors.New("finding PostgreSQL: no initdb/pg_ctl/postgres on PATH or in /usr/lib/postgresql/*/bin; set Options.BinDir")
	}
	return best, nil
}

func checkBinDir(dir string) error {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("finding PostgreSQL: %w", err)
		}
	}
	return nil
}

// FreePort returns a loopback TCP port that was free a moment ago. It comes
// from outside the kernel's ephemeral port range when there is room there: a
// port inside it may, while a server is stopped for a restart, become the
// local port of any outgoing connection on the machine (other tests connect
// all the time), and the server could not bind it again.
func FreePort() (int, error) {
	spans := portSpans(ephemeralRange())
	for range 100 {
		if len(spans) == 0 {
			break
		}
		sp := spans[rand.IntN(len(spans))]
		port := sp[0] + rand.IntN(sp[1]-sp[0]+1)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			l.Close()
			return port, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("picking a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// portSpans are the ranges (inclusive) FreePort picks from, given the
// ephemeral range lo-hi: from 16384 up, clear of the ports services are
// known by, and only where at least 1000 ports are left.
func portSpans(lo, hi int) [][2]int {
	var spans [][2]int
	if lo-1 >= 16384+1000 {
		spans = append(spans, [2]int{16384, lo - 1})
	}
	if hi+1 <= 65535-1000 {
		spans = append(spans, [2]int{hi + 1, 65535})
	}
	return spans
}

// ephemeralRange is the kernel's range of local ports for outgoing
// connections (net.ipv4.ip_local_port_range), or Linux's default when it
// cannot be read.
func ephemeralRange() (lo, hi int) {
	lo, hi = 32768, 60999
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return lo, hi
	}
	l, err1 := strconv.Atoi(f[0])
	h, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || l < 1 || h < l || h > 65535 {
		return lo, hi
	}
	return l, h
}
