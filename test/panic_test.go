package test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lockguard/lockguard/proxy"
)

// TestSessionPanicIsContained: a bug that panics while relaying one session
// (here a guard hook that panics, on the client side and on the upstream
// side) ends that session with FATAL XX000 and leaves lockguard and every
// other session running.
func TestSessionPanicIsContained(t *testing.T) {
	lg := startLockguard(t, func(c *proxy.Config) {
		c.Hooks = &proxy.Hooks{Batch: func(_ context.Context, _ *proxy.Session, b *proxy.Batch) *proxy.Verdict {
			sql := string(b.Stmts[0].SQL)
			switch {
			case strings.Contains(sql, "panic_in_batch"):
				panic("test: a bug in the guard")
			case strings.Contains(sql, "panic_in_result"):
				return &proxy.Verdict{Result: func(string, int) { panic("test: a bug on the upstream side") }}
			}
			return nil
		}}
	})
	ctx := ctxT(t, 20*time.Second)
	bystander := connect(t, lg.superDSN())
	for _, q := range []string{"SELECT 'panic_in_batch'", "SELECT 'panic_in_result'"} {
		victim := connect(t, lg.superDSN())
		_, err := victim.Exec(ctx, q)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "XX000" || !strings.HasPrefix(pe.Message, "lockguard:") || pe.Hint == "" {
			t.Fatalf("%s: got %v, want lockguard's FATAL XX000", q, err)
		}
		var n int
		if err := bystander.QueryRow(ctx, "SELECT 41 + 1").Scan(&n); err != nil || n != 42 {
			t.Fatalf("other session after %s: %v", q, err)
		}
		fresh := connect(t, lg.superDSN())
		if _, err := fresh.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatalf("new session after %s: %v", q, err)
		}
	}
}
