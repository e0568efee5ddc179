package test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/lockguard/lockguard/internal/lockedbuf"
	"github.com/lockguard/lockguard/internal/pgserver"
)

// pg is the one PostgreSQL server shared by every end-to-end test in this
// package, started by TestMain with TLS on.
var pg *pgserver.Server

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	opts := pgserver.Options{TLS: true}
	if testing.Verbose() {
		opts.Logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	s, err := pgserver.Start(ctx, opts)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "test: starting PostgreSQL: %v\n", err)
		return 1
	}
	pg = s
	code := m.Run()
	if err := pg.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "test: stopping PostgreSQL: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// startExec runs sql on conn in the background; the channel gets its error.
func startExec(ctx context.Context, conn *pgx.Conn, sql string) <-chan error {
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, sql)
		errc <- err
	}()
	return errc
}

// connect opens a connection to dsn, failing the test if it cannot, and closes
// it when the test ends.
func connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("connecting to %s: %v", dsn, err)
	}
	return connectConfig(t, cfg)
}

// connectConfig is connect with a parsed configuration.
func connectConfig(t testing.TB, cfg *pgx.ConnConfig) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connecting to %s: %v", cfg.ConnString(), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(ctx)
	})
	return conn
}

// noticeLog collects the NoticeResponses a connection receives.
type noticeLog struct {
	mu   sync.Mutex
	list []*pgconn.Notice
}

// take returns the notices received since the last take.
func (l *noticeLog) take() []*pgconn.Notice {
	l.mu.Lock()
	defer l.mu.Unlock()
	got := l.list
	l.list = nil
	return got
}

// connectNotices opens a connection to dsn, as connect does, whose notices
// are collected.
func connectNotices(t testing.TB, dsn string) (*pgx.Conn, *noticeLog) {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	l := &noticeLog{}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { l.mu.Lock(); l.list = append(l.list, n); l.mu.Unlock() }
	return connectConfig(t, cfg), l
}

// TestHarnessAuthMethods checks the shared server directly, without the proxy:
// each role authenticates with the method pgserver promises, over plain TCP
// and over verified TLS.
func TestHarnessAuthMethods(t *testing.T) {
	users := []struct {
		user, password string
		authMsg        string // authentication request the server must send; "" = trust
	}{
		{pgserver.Superuser, "", ""},
		{pgserver.ScramUser, pgserver.ScramPassword, "AuthenticationSASL"},
		{pgserver.MD5User, pgserver.MD5Password, "AuthenticationMD5Password"},
		{pgserver.PasswordUser, pgserver.PasswordPassword, "AuthenticationCleartextPassword"},
	}
	transports := []struct {
		name string
		tls  bool
		dsn  func(user, password, db string) string
	}{
		{"plain", false, pg.DSN},
		{"tls", true, pg.TLSDSN},
	}
	for _, tr := range transports {
		for _, u := range users {
			t.Run(tr.name+"/"+u.user, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()

				conn, trace := connectTraced(t, tr.dsn(u.user, u.password, pgserver.TestDB))
				for _, msg := range []string{"AuthenticationSASL", "AuthenticationMD5Password", "AuthenticationCleartextPassword"} {
					if got, want := strings.Contains(trace, "\t"+msg+"\t"), msg == u.authMsg; got != want {
						t.Errorf("server sent %s: %t, want %t", msg, got, want)
					}
				}

				var user string
				var versionNum string
				var ssl bool
				if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil {
					t.Fatal(err)
				}
				if err := conn.QueryRow(ctx, "SHOW server_version_num").Scan(&versionNum); err != nil {
					t.Fatal(err)
				}
				if err := conn.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil {
					t.Fatal(err)
				}
				if user != u.user {
					t.Errorf("current_user = %q, want %q", user, u.user)
				}
				if n, err := strconv.Atoi(versionNum); err != nil || n/10000 != pg.Version {
					t.Errorf("server_version_num = %q, want major version %d", versionNum, pg.Version)
				}
				if ssl != tr.tls {
					t.Errorf("pg_stat_ssl.ssl = %t, want %t", ssl, tr.tls)
				}
				if u.password == "" {
					return
				}

				// Non-trusted users can create tables in TestDB.
				table := pgx.Identifier{"public", "harness_" + tr.name + "_" + u.user}.Sanitize()
				if _, err := conn.Exec(ctx, "CREATE TABLE "+table+" (n int); DROP TABLE "+table); err != nil {
					t.Errorf("creating tables: %v", err)
				}

				_, err := pgx.Connect(ctx, tr.dsn(u.user, u.password+"-wrong", pgserver.TestDB))
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
					t.Errorf("wrong password: got %v, want SQLSTATE 28P01 (invalid_password)", err)
				}
			})
		}
	}

	t.Run("md5 stored as md5", func(t *testing.T) {
		conn := connect(t, pg.DSN(pgserver.Superuser, "", "postgres"))
		var stored string
		if err := conn.QueryRow(context.Background(), "SELECT rolpassword FROM pg_authid WHERE rolname = $1", pgserver.MD5User).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(stored, "md5") {
			t.Errorf("%s's password is stored as %.14q..., want an md5 hash", pgserver.MD5User, stored)
		}
	})
}

// connectTraced is like connect but also returns the protocol trace of the
// startup, so a test can see which authentication method the server asked for.
func connectTraced(t testing.TB, dsn string) (*pgx.Conn, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	var trace lockedBuffer
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		f := pgproto3.NewFrontend(r, w)
		f.Trace(&trace, pgproto3.TracerOptions{SuppressTimestamps: true})
		return f
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connecting to %s: %v", dsn, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(ctx)
	})
	return conn, trace.String()
}

// lockedBuffer is a buffer a writer and a reader may use at once.
type lockedBuffer = lockedbuf.Buffer
