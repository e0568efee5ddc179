package test

import (
	"context"
	"errors"
	"os/exec"
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
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(cctx, lockguardBinary(t), "serve", "--listen", freeAddr(t), "--admin", freeAddr(t),
			"--upstream", own.Addr(), "--upstream-sslmode", "disable", "--connect-timeout", "2s",
			"--monitor-dsn", own.DSN(pgserver.Superuser, "", "postgres"))
		out, err := cmd.CombinedOutput()
		took := time.Since(start)
		t.Logf("lockguard with monitor-dsn and PostgreSQL down: %v after %v\n%s", err, took.Round(time.Millisecond), out)
		if cctx.Err() != nil {
			t.Fatalf("still running after %v", took)
		}
		if err == nil || !strings.Contains(string(out), "monitor-dsn") {
			t.Fatalf("exit %v, want an error naming monitor-dsn", err)
		}
		if took > 10*time.Second {
			t.Fatalf("took %v to give up, want about connect-timeout (2s)", took)
		}
	})
}
