package bench

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/lockguard/lockguard/internal/pgserver"
)

// A real PostgreSQL for the session benchmarks, started on first use and
// stopped by TestMain.
var (
	pgOnce sync.Once
	pgSrv  *pgserver.Server
	pgErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if pgSrv != nil {
		_ = pgSrv.Stop()
	}
	os.Exit(code)
}

// postgres returns the shared throwaway PostgreSQL, or skips under -short.
func postgres(tb testing.TB) *pgserver.Server {
	if testing.Short() {
		tb.Skip("needs PostgreSQL; skipped with -short")
	}
	pgOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		pgSrv, pgErr = pgserver.Start(ctx, pgserver.Options{})
	})
	if pgErr != nil {
		tb.Fatalf("starting PostgreSQL: %v", pgErr)
	}
	return pgSrv
}

// BenchmarkSession is a query round trip through an in-process lockguard
// (guard on) to a real PostgreSQL, next to the same round trip straight to
// PostgreSQL: the difference is what lockguard adds to one round trip,
// syscalls and wake-ups included.
func BenchmarkSession(b *testing.B) {
	pg := postgres(b)
	targets := []struct{ name, addr string }{
		{"direct", pg.Addr()},
		{"lockguard", startProxy(b, pg.Addr(), true)},
	}
	simple := encode(b, &pgproto3.Query{String: "SELECT 1"})
	prepare := encode(b, &pgproto3.Parse{Name: "s1", Query: "SELECT $1::int"}, &pgproto3.Sync{})
	execute := encode(b, &pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte("42")}},
		&pgproto3.Execute{}, &pgproto3.Sync{})
	for _, tg := range targets {
		b.Run(tg.name+"/simple", func(b *testing.B) {
			wc := dialWire(b, tg.addr, pgserver.Superuser, "postgres")
			b.ReportAllocs()
			for b.Loop() {
				if err := wc.roundTrip(simple, 1); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tg.name+"/prepared", func(b *testing.B) {
			wc := dialWire(b, tg.addr, pgserver.Superuser, "postgres")
			if err := wc.roundTrip(prepare, 1); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := wc.roundTrip(execute, 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSessionConnect is a whole connection: startup, authentication
// (trust) and Terminate, straight to PostgreSQL and through lockguard.
func BenchmarkSessionConnect(b *testing.B) {
	pg := postgres(b)
	for _, tg := range []struct{ name, addr string }{
		{"direct", pg.Addr()},
		{"lockguard", startProxy(b, pg.Addr(), true)},
	} {
		b.Run(tg.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				wc, err := connectWire(tg.addr, pgserver.Superuser, "postgres")
				if err != nil {
					b.Fatal(err)
				}
				wc.close()
			}
		})
	}
}
