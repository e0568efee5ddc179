package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/guard/pgcatalog"
	"github.com/lockguard/lockguard/guard/pgmonitor"
	"github.com/lockguard/lockguard/internal/config"
	"github.com/lockguard/lockguard/internal/enforce"
	"github.com/lockguard/lockguard/proxy"
)

// sideConn is lockguard's own connection to PostgreSQL (monitor-dsn): the
// catalog for analysis and the blocker lookups. Everything works without it,
// with less knowledge.
type sideConn struct {
	catConn *pgx.Conn
	catalog *pgcatalog.Catalog
	pool    *pgxpool.Pool
	version int
	board   guard.Board
	stop    context.CancelFunc
}

func openSide(cfg *config.Config, logger *slog.Logger) (*sideConn, error) {
	s := &sideConn{}
	if cfg.MonitorDSN == "" || !cfg.Guard {
		return s, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ConnectTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, cfg.MonitorDSN)
	if err != nil {
		return nil, fmt.Errorf("monitor-dsn: %w", err)
	}
	cat, err := pgcatalog.New(ctx, conn)
	if err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("monitor-dsn: %w", err)
	}
	pcfg, err := pgxpool.ParseConfig(cfg.MonitorDSN)
	if err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("monitor-dsn: %w", err)
	}
	pcfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("monitor-dsn: %w", err)
	}
	s.catConn, s.catalog, s.pool, s.version = conn, cat, pool, cat.ServerVersion()
	logger.Info("monitor connection open", "server_version", s.version)
	if cfg.Shed {
		mctx, stop := context.WithCancel(context.Background())
		s.stop = stop
		m := &pgmonitor.Monitor{Pool: pool, Board: &s.board, Idle: cfg.MonitorInterval,
			Busy: cfg.MonitorBusyInterval, ServerVersion: s.version, Logger: logger}
		go m.Run(mctx)
		wd := &pgmonitor.Watchdog{Pool: pool, Board: &s.board, Action: cfg.Watchdog,
			IdleBudget: cfg.WatchdogIdle, RunBudget: cfg.WatchdogRun, Logger: logger}
		go wd.Run(mctx)
	}
	return s, nil
}

func (s *sideConn) Close() {
	if s.stop != nil {
		s.stop()
	}
	if s.pool != nil {
		s.pool.Close()
	}
	if s.catConn != nil {
		s.catConn.Close(context.Background())
	}
}

// install puts the guard described by cfg into pcfg.Hooks.
func (s *sideConn) install(cfg *config.Config, pcfg *proxy.Config, logger *slog.Logger) error {
	if !cfg.Guard {
		return nil
	}
	var cat guard.Catalog
	if s.catalog != nil {
		cat = s.catalog
	}
	pol, err := guard.NewPolicy(cfg.Policy)
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	g := &enforce.Guard{
		Policy:                     pol,
		Analyzer:                   guard.NewAnalyzer(cat, cfg.AnalysisCacheSize),
		LockTimeout:                cfg.LockTimeout,
		StatementTimeout:           cfg.DDLStatementTimeout,
		ConcurrentStatementTimeout: cfg.ConcurrentStatementTimeout,
		Backoff: guard.Backoff{Attempts: cfg.RetryAttempts, Base: cfg.RetryBaseDelay,
			Cap: cfg.RetryMaxDelay, Deadline: cfg.RetryDeadline},
		ServerVersion: s.version,
		Logger:        logger,
		Now:           time.Now,
	}
	if s.pool != nil {
		g.Blockers = &enforce.PGBlockers{Pool: s.pool}
	}
	if cfg.Shed {
		g.Admission = &enforce.Admission{Board: &s.board, HoldBudget: cfg.HoldBudget,
			MaxHeldPerRelation: cfg.MaxHeldPerRelation}
		g.Yield = enforce.Yield{Waiters: cfg.YieldWaiters, Wait: cfg.YieldWait}
		if pool := s.pool; pool != nil {
			g.Admission.HeldBy = func(ctx context.Context, pid int, rel guard.RelName) (bool, error) {
				return pgmonitor.HeldBy(ctx, pool, pid, rel)
			}
		}
	}
	pcfg.Hooks = g.Hooks()
	return nil
}
