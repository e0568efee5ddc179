package enforce

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lockguard/lockguard/guard"
)

// BackendChecker is an optional extension of BlockerSource: whether pid
// is a backend of the server the source queries.
type BackendChecker interface {
	IsBackend(ctx context.Context, pid uint32) (bool, error)
}

// PGBlockers finds blockers with pg_blocking_pids on a side connection. It
// is called only for a backend already waiting for a lock, as the
// PostgreSQL documentation advises (the function briefly locks the lock
// manager's shared state).
type PGBlockers struct {
	Pool *pgxpool.Pool
}

// Blockers implements BlockerSource.
func (p *PGBlockers) Blockers(ctx context.Context, pid uint32) ([]Blocker, error) {
	rows, err := p.Pool.Query(ctx, `
SELECT a.pid, coalesce(a.state, ''), coalesce(a.query, ''),
       coalesce(extract(epoch FROM now() - a.xact_start), 0)::float8,
       coalesce(a.application_name, ''), coalesce(a.usename::text, '')
FROM pg_stat_activity a
WHERE a.pid = ANY (pg_blocking_pids($1))
ORDER BY a.xact_start NULLS LAST`, int32(pid))
	if err != nil {
		return nil, fmt.Errorf("querying blockers of pid %d: %w", pid, err)
	}
	defer rows.Close()
	var out []Blocker
	for rows.Next() {
		var b Blocker
		var age float64
		if err := rows.Scan(&b.PID, &b.State, &b.Query, &age, &b.Application, &b.User); err != nil {
			return nil, err
		}
		b.XactAge = time.Duration(age * float64(time.Second))
		b.Query = guard.Sanitize(b.Query)
		out = append(out, b)
	}
	return out, rows.Err()
}

// IsBackend implements BackendChecker.
func (p *PGBlockers) IsBackend(ctx context.Context, pid uint32) (bool, error) {
	var ok bool
	err := p.Pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid::int8 = $1::int8)", int64(pid)).Scan(&ok)
	return ok, err
}
