// Package demo runs the incident lockguard exists for, twice, and measures
// it: once with the application talking straight to PostgreSQL and once
// through lockguard.
//
// Each run starts from the same schema — users (10k rows), orders (50k rows,
// with the foreign key orders_user_fk to users) and an unrelated products
// table (5k rows) — and the same workload: worker goroutines sharing a pgx
// connection pool, each request bounded by a 5 s timeout. A few seconds in, a
// report transaction reads users and stays open; a second later a deploy runs
//
//	ALTER TABLE orders DROP CONSTRAINT orders_user_fk
//
// which needs ACCESS EXCLUSIVE on orders and on users. Straight to
// PostgreSQL, the waiting ALTER makes every later request on users (and
// orders) queue behind it; the pooled connections fill with queued requests
// and requests for products, which the migration never touches, wait for a
// connection. Through lockguard the same deploy gets lockguard's lock timeout,
// retries and (when enabled) lock-queue shedding.
//
// The package records every request's completion time and outcome, samples
// pg_locks for waiting lock requests every 100 ms on a side connection, and
// turns both into a side-by-side report (requests, sheds, errors, p99, the
// longest stretch without a successful request per table, lock waiters, when
// the DDL landed) and an HTML page with an inline SVG chart. lockguard itself
// is started by the caller through Options.StartProxy, so that the demo runs
// exactly the stack `lockguard serve` builds.
package demo
