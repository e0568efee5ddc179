package test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockguard/lockguard/internal/enforce"
	"github.com/lockguard/lockguard/internal/pgserver"
	"github.com/lockguard/lockguard/proxy"
)

// lockguard is an in-process proxy in front of the shared server.
type lockguard struct {
	srv  *proxy.Server
	addr string
	cfg  *proxy.Config
	// guard is the enforcing guard, when the test installed one.
	guard *enforce.Guard
}

// startLockguard starts a proxy on 127.0.0.1:0 relaying to pg over plain TCP;
// mutate may change the configuration first. It shuts down when the test ends.
func startLockguard(t testing.TB, mutate func(*proxy.Config)) *lockguard {
	t.Helper()
	cfg := &proxy.Config{
		Upstream:   proxy.Upstream{Address: pg.Addr(), SSLMode: proxy.SSLDisable},
		Logger:     testLogger(),
		EventLoops: testEventLoops,
	}
	lg := &lockguard{cfg: cfg}
	if mutate != nil {
		mutate(cfg)
	}
	lg.srv = proxy.New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lg.addr = ln.Addr().String()
	go lg.srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		lg.srv.Shutdown(ctx)
	})
	return lg
}

// withClientTLS gives the proxy a certificate signed by the test CA.
func withClientTLS(t testing.TB) func(*proxy.Config) {
	dir := t.TempDir()
	certFile, keyFile, err := pgserver.IssueCert(pg.CAFile, pg.CAKeyFile, []string{"127.0.0.1", "localhost"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return func(c *proxy.Config) { c.TLS = proxy.ServerTLSConfig(cert) }
}

// dsn returns a URL that connects through the proxy; extra adds parameters.
func (lg *lockguard) dsn(user, password string, extra ...string) string {
	u := url.URL{Scheme: "postgres", Host: lg.addr, Path: "/" + pgserver.TestDB}
	if password != "" {
		u.User = url.UserPassword(user, password)
	} else {
		u.User = url.User(user)
	}
	q := url.Values{"sslmode": {"disable"}}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// superDSN connects through the proxy as the superuser.
func (lg *lockguard) superDSN(extra ...string) string {
	return lg.dsn(pgserver.Superuser, "", extra...)
}

// directDSN connects to PostgreSQL without the proxy.
func directDSN() string { return pg.DSN(pgserver.Superuser, "", pgserver.TestDB) }

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// dropAtEnd drops the tables over a direct connection when the test ends.
func dropAtEnd(t testing.TB, tables ...string) {
	t.Cleanup(func() {
		connect(t, directDSN()).Exec(context.Background(), "DROP TABLE IF EXISTS "+strings.Join(tables, ", "))
	})
}

// createTable creates a table named after prefix with columns, directly
// in PostgreSQL, dropped when the test ends, and returns its name.
func createTable(t testing.TB, ctx context.Context, prefix, columns string) string {
	t.Helper()
	tbl := uniqueName(t, prefix)
	if _, err := connect(t, directDSN()).Exec(ctx, "CREATE TABLE "+tbl+" ("+columns+")"); err != nil {
		t.Fatal(err)
	}
	dropAtEnd(t, tbl)
	return tbl
}

// uniqueName returns an identifier unique to this test.
func uniqueName(t testing.TB, prefix string) string {
	return fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano()%1e12)
}

// testLogger discards logs unless the tests run with -v.
func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testEventLoops is the proxy.Config.EventLoops of in-process proxies: 1, the
// binary's default, unless LOCKGUARD_TEST_EVENT_LOOPS says otherwise (0 runs
// the tests on the goroutine relay).
var testEventLoops = func() int {
	if v := os.Getenv("LOCKGUARD_TEST_EVENT_LOOPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			panic("LOCKGUARD_TEST_EVENT_LOOPS: " + err.Error())
		}
		return n
	}
	return 1
}()
