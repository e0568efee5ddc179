// Command departure measures what a session that once left lockguard's
// event loop costs afterwards: it makes one session leave the loop (it asks
// for a large result and reads it only after a pause, so lockguard's write
// to it finds the socket full), then times many small queries on it.
// Run it against lockguard, with and without -leave, and against builds
// to compare (bench/compare/README.md, session 15):
//
//	go run ./bench/departure -dsn 'postgres://postgres@127.0.0.1:6432/postgres?sslmode=disable' -leave
//
// lockguard's /metrics shows the departure and, when the session went back
// to the loop, the return (lockguard_event_loop_departures_total,
// lockguard_event_loop_returns_total).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
)

func main() {
	dsn := flag.String("dsn", "", "connection string of lockguard (required)")
	leave := flag.Bool("leave", false, "make the session leave the event loop first")
	n := flag.Int("n", 20000, "queries to time")
	flag.Parse()
	if *dsn == "" {
		fmt.Fprintln(os.Stderr, "departure: -dsn is required")
		os.Exit(2)
	}
	if err := run(*dsn, *leave, *n); err != nil {
		fmt.Fprintln(os.Stderr, "departure:", err)
		os.Exit(1)
	}
}

func run(dsn string, leave bool, n int) error {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	if leave {
		// 64 MiB in one row, far more than the sockets buffer.
		rows, err := c.Query(ctx, "SELECT repeat('x', 1 << 26)", pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			return err
		}
		time.Sleep(300 * time.Millisecond)
		for rows.Next() {
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	start := time.Now()
	for range n {
		if _, err := c.Exec(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol); err != nil {
			return err
		}
	}
	fmt.Printf("%.1f µs per SELECT 1 over %d queries (leave=%v)\n", float64(time.Since(start).Microseconds())/float64(n), n, leave)
	return nil
}
