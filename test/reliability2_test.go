package test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lockguard/lockguard/internal/pgserver"
)

// TestReliabilityBinaryPostgresDownAtStart starts the binary (guard on, as
// deployed) while its PostgreSQL is down: it starts and reports ready, a
// session gets 08006 naming the upstream at once, and sessions work as soon
// as PostgreSQL is up — no restart of lockguard. With monitor-dsn (the side
// connection) lockguard cannot start without PostgreSQL: it exits with an
// error naming monitor-dsn, within connect-timeout, rather than hanging.
func TestReliabilityBinaryPostgresDownAtStart(t *testing.T) {
	own := relOwnPG(t, nil)
	if err := own.StopServer("fast"); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 2*time.Minute)

	t.Run("relay and guard without monitor-dsn", func(t *testing.T) {
		p := startBinary(t, "--upstream", own.Addr(), "--upstream-sslmode", "disable", "--connect-timeout", "2s")
		for i := 0; i < 3; i++ {
			start := time.Now()
			_, err := pgx.Connect(ctxT(t, 10*time.Second), p.dsn())
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "08006" || !strings.Contains(pe.Message, own.Addr()) || pe.Hint == "" {
				t.Fatalf("PostgreSQL down: got %v, want 08006 naming %s", err, own.Addr())
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("refusal took %v", d)
			}
		}
		if code := p.readyz(); code != 200 {
			t.Errorf("/readyz %d while PostgreSQL is down, want 200 (lockguard itself can accept sessions)", code)
		}
		if err := own.StartServer(ctx); err != nil {
			t.Fatal(err)
		}
		defer own.StopServer("fast")
		conn := connect(t, p.dsn())
		var n int
		if err := conn.QueryRow(ctx, "SELECT 12").Scan(&n); err != nil || n != 12 {
			t.Fatalf("after PostgreSQL came up: %v", err)
		}
	})

	t.Run("monitor-dsn", func(t *testing.T) {
		// lockguard starts without its side connection, serves (sessions
		// get 08006 while PostgreSQL is down) and opens the side
		// connection, with the full guard, once PostgreSQL is up: a
		// restart loop under Kubernetes could outlast PostgreSQL's own
		// recovery.
		p := startBinary(t, "--upstream", own.Addr(), "--upstream-sslmode", "disable", "--connect-timeout", "2s",
			"--monitor-dsn", own.DSN(pgserver.Superuser, "", "postgres"))
		if !strings.Contains(p.out.String(), "monitor connection unavailable at start") {
			t.Errorf("no warning about the side connection:\n%s", p.out)
		}
		_, err := pgx.Connect(ctxT(t, 10*time.Second), p.dsn())
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "08006" {
			t.Fatalf("PostgreSQL down: got %v, want 08006", err)
		}
		if err := own.StartServer(ctx); err != nil {
			t.Fatal(err)
		}
		defer own.StopServer("fast")
		waitFor(t, 45*time.Second, func() bool { return strings.Contains(p.out.String(), "guard re-installed with the monitor connection") })
		conn := connect(t, p.dsn())
		var n int
		if err := conn.QueryRow(ctx, "SELECT 13").Scan(&n); err != nil || n != 13 {
			t.Fatalf("after PostgreSQL came up: %v", err)
		}
	})
}
