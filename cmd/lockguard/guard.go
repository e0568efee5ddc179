package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/guard/pgcatalog"
	"github.com/lockguard/lockguard/guard/pgmonitor"
	"github.com/lockguard/lockguard/internal/config"
	"github.com/lockguard/lockguard/internal/enforce"
	"github.com/lockguard/lockguard/proxy"
	"github.com/lockguard/lockguard/telemetry"
)

// sideConn is lockguard's own connection to PostgreSQL (monitor-dsn): the
// catalog for analysis and the blocker lookups. Everything works without it,
// with less knowledge.
type sideConn struct {
	catalog *pgcatalog.Catalog // owns the catalog's connection
	pool    *pgxpool.Pool
	// database is the side connection's database: the one whose catalog
	// and locks lockguard reads.
	database string
	board    guard.Board
	stop     context.CancelFunc
	// monitor fills board from pg_locks; watchdog acts on who others wait
	// behind. Both run while the side connection is open; a reload tunes
	// them (tune).
	monitor  *pgmonitor.Monitor
	watchdog *pgmonitor.Watchdog

	obs    *telemetry.Provider // traces and metrics; survives reloads
	events *telemetry.Events   // guard actions for the status page
	mu     sync.Mutex          // guards the connection fields above, opened late when PostgreSQL was down at start
	closed bool

	admission atomic.Pointer[enforce.Admission]
	guard     atomic.Pointer[enforce.Guard] // the guard installed last; nil with guard off
	active    atomic.Pointer[config.Config] // the configuration last installed
	// bus passes cancel requests between replicas (replica-secret); srv
	// is the proxy whose waits it ends, set once it exists.
	bus atomic.Pointer[pgmonitor.CancelBus]
	srv atomic.Pointer[proxy.Server]
}

func openSide(cfg *config.Config, logger *slog.Logger, obs *telemetry.Provider, events *telemetry.Events) (*sideConn, error) {
	s := &sideConn{obs: obs, events: events}
	if obs != nil {
		err := obs.ObserveLocks(telemetry.LockSources{Hazards: s.board.Snapshot, Held: func() map[string]int {
			if a := s.admission.Load(); a != nil {
				return a.HeldCounts()
			}
			return nil
		}})
		if err != nil {
			return nil, fmt.Errorf("telemetry: %w", err)
		}
	}
	if cfg.MonitorDSN == "" || !cfg.Guard {
		return s, nil
	}
	return s, s.connect(cfg, logger)
}

// connect opens the side connection and starts the monitor and the
// watchdog.
func (s *sideConn) connect(cfg *config.Config, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ConnectTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, cfg.MonitorDSN)
	if err != nil {
		return fmt.Errorf("monitor-dsn: %w", err)
	}
	var database string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&database); err != nil {
		conn.Close(ctx)
		return fmt.Errorf("monitor-dsn: %w", err)
	}
	cat, err := pgcatalog.New(ctx, conn)
	if err != nil {
		conn.Close(ctx)
		return fmt.Errorf("monitor-dsn: %w", err)
	}
	// A restart of PostgreSQL breaks the connection; the catalog opens
	// another, so that the guard does not go on with every fact unknown.
	cat.Reconnect = func(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, cfg.MonitorDSN) }
	// Analyses cached from the facts of before are out of date as the
	// facts are; the version is the new server's (rules with versions).
	cat.Reconnected = func() {
		logger.Info("catalog connection reopened; catalog facts and cached analyses forgotten", "server_version", cat.ServerVersion())
		if g := s.guard.Load(); g != nil {
			g.ForgetSchema()
		}
	}
	pcfg, err := pgxpool.ParseConfig(cfg.MonitorDSN)
	if err != nil {
		conn.Close(ctx)
		return fmt.Errorf("monitor-dsn: %w", err)
	}
	pcfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		conn.Close(ctx)
		return fmt.Errorf("monitor-dsn: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		pool.Close()
		conn.Close(ctx)
		return errors.New("monitor-dsn: lockguard is shutting down")
	}
	s.catalog, s.pool, s.database = cat, pool, database
	logger.Info("monitor connection open", "server_version", cat.ServerVersion(), "database", database)
	mctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	if cfg.ReplicaSecret != "" {
		bus := &pgmonitor.CancelBus{Pool: pool, Secret: []byte(cfg.ReplicaSecret), Cancel: s.cancelWaits, Logger: logger,
			Connect: func(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, cfg.MonitorDSN) }}
		go bus.Run(mctx)
		s.bus.Store(bus)
	}
	go s.forgetSchemaEvery(mctx)
	// Whatever shed and watchdog say now: a reload may turn them on. The
	// settings come from install.
	s.monitor = &pgmonitor.Monitor{Pool: pool, Board: &s.board, ServerVersion: cat.ServerVersion(), Logger: logger}
	s.watchdog = &pgmonitor.Watchdog{Pool: pool, Board: &s.board, Logger: logger, OnAction: s.watchdogAction}
	s.tuneLocked(cfg)
	go s.monitor.Run(mctx)
	go s.watchdog.Run(mctx)
	return nil
}

// tune gives the monitor and the watchdog the settings of cfg (a reload).
func (s *sideConn) tune(cfg *config.Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tuneLocked(cfg)
}

// tuneLocked is tune with s.mu held. With the guard off the watchdog rests.
func (s *sideConn) tuneLocked(cfg *config.Config) {
	if s.monitor == nil {
		return
	}
	s.monitor.SetIntervals(cfg.MonitorInterval, cfg.MonitorBusyInterval)
	action := cfg.Watchdog
	if !cfg.Guard {
		action = pgmonitor.WatchOff
	}
	s.watchdog.Set(action, cfg.WatchdogIdle, cfg.WatchdogRun)
}

// forgetSchemaEvery makes the installed guard forget its catalog facts
// every catalog-max-age, until ctx ends: schema changes made by sessions
// that bypass lockguard, or through another replica, then count within that
// time (a DDL through this lockguard reads the catalog anew anyway). A new
// value from a reload applies from the next expiry.
func (s *sideConn) forgetSchemaEvery(ctx context.Context) {
	maxAge := func() time.Duration {
		if cfg := s.active.Load(); cfg != nil {
			return cfg.CatalogMaxAge
		}
		return 0
	}
	for {
		d := maxAge()
		if d <= 0 {
			d = time.Second // while off: look at the setting again
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if g := s.guard.Load(); g != nil && maxAge() > 0 {
			g.ForgetSchema()
		}
	}
}

// cancelWaits ends the waits of the proxy's sessions whose backend key
// match accepts (the cancel bus's Cancel).
func (s *sideConn) cancelWaits(match func(key []byte) bool) int {
	if srv := s.srv.Load(); srv != nil {
		return srv.CancelWaits(match)
	}
	return 0
}

// foreignCancel tells the other replicas about a CancelRequest that
// matched no session here (proxy.Config.ForeignCancel).
func (s *sideConn) foreignCancel(key []byte) {
	if b := s.bus.Load(); b != nil {
		b.Publish(key)
	}
}

// connectLater keeps trying to open the side connection that could not be
// opened at start (PostgreSQL down, say), with backoff up to 30 s, and calls
// reinstall once it is open so that new sessions get the full guard.
// Meanwhile lockguard relays and guards from the SQL text alone.
func (s *sideConn) connectLater(cfg *config.Config, logger *slog.Logger, reinstall func()) {
	go func() {
		delay := time.Second
		for {
			time.Sleep(delay)
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return
			}
			err := s.connect(cfg, logger)
			if err == nil {
				reinstall()
				return
			}
			logger.Warn("monitor connection still unavailable; guarding from the SQL text alone", "err", err, "retry_in", min(2*delay, 30*time.Second))
			delay = min(2*delay, 30*time.Second)
		}
	}()
}

// connected reports whether the side connection is open (it may open after
// start, when PostgreSQL was down then).
func (s *sideConn) connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.catalog != nil
}

// sessions looks up sessions in pg_stat_activity for the status page, once
// the side connection is open.
func (s *sideConn) sessions(ctx context.Context, pids []int) ([]telemetry.Session, error) {
	s.mu.Lock()
	pool := s.pool
	s.mu.Unlock()
	if pool == nil {
		return nil, nil
	}
	return telemetry.PGSessions(pool)(ctx, pids)
}

// watchdogAction records a watchdog action as an event and a metric.
func (s *sideConn) watchdogAction(b pgmonitor.Blocker, action, why string, done bool) {
	if s.obs != nil {
		s.obs.Metrics.Watchdog(context.Background(), action)
	}
	msg := why
	if !done {
		msg += " (not done: the backend was gone or the call failed)"
	}
	s.events.Add(telemetry.Event{Kind: "watchdog_" + action, PID: b.PID, Client: b.Client, User: b.User,
		Application: b.Application, Statement: b.Query, Wait: b.XactAge, Message: msg})
}

func (s *sideConn) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.stop != nil {
		s.stop()
	}
	if s.pool != nil {
		s.pool.Close()
	}
	if s.catalog != nil {
		s.catalog.Close() // it owns its connection (Reconnect)
	}
}

// install puts the guard described by cfg into pcfg.Hooks.
func (s *sideConn) install(cfg *config.Config, pcfg *proxy.Config, logger *slog.Logger) error {
	if !cfg.Guard {
		s.tune(cfg)
		s.active.Store(cfg)
		s.admission.Store(nil)
		s.guard.Store(nil)
		return nil
	}
	s.mu.Lock()
	catalog, pool, database := s.catalog, s.pool, s.database
	s.mu.Unlock()
	var cat guard.Catalog
	if catalog != nil {
		cat = catalog
	}
	pol, err := guard.NewPolicy(cfg.Policy)
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	g := &enforce.Guard{
		Policy:                     pol,
		Analyzer:                   guard.NewAnalyzer(cat, cfg.AnalysisCacheSize),
		CatalogDatabase:            database,
		LockTimeout:                cfg.LockTimeout,
		StatementTimeout:           cfg.DDLStatementTimeout,
		ConcurrentStatementTimeout: cfg.ConcurrentStatementTimeout,
		Backoff: guard.Backoff{Attempts: cfg.RetryAttempts, Base: cfg.RetryBaseDelay,
			Cap: cfg.RetryMaxDelay, Deadline: cfg.RetryDeadline},
		UnparsedDDL: cfg.UnparsedDDL,
		Logger:      logger,
		Now:         time.Now,
	}
	if s.obs != nil {
		host, port := upstreamHostPort(cfg.Upstream)
		g.Telemetry = &enforce.Telemetry{Provider: s.obs, Events: s.events, Host: host, Port: port}
	}
	if pool != nil {
		g.Blockers = &enforce.PGBlockers{Pool: pool}
		g.OtherDatabases = guard.NewAnalyzer(nil, cfg.AnalysisCacheSize)
	}
	if cfg.Shed {
		g.Admission = &enforce.Admission{Board: &s.board, HoldBudget: cfg.HoldBudget,
			MaxHeldPerRelation: cfg.MaxHeldPerRelation}
		g.Yield = enforce.Yield{Waiters: cfg.YieldWaiters, Wait: cfg.YieldWait}
		if pool != nil {
			g.Admission.HeldBy = func(ctx context.Context, pid int, db string, rel guard.RelName) (bool, error) {
				return pgmonitor.HeldBy(ctx, pool, pid, db, rel)
			}
		}
	}
	s.tune(cfg)
	s.admission.Store(g.Admission)
	s.guard.Store(g)
	s.active.Store(cfg)
	pcfg.Hooks = g.Hooks()
	pcfg.ForeignCancel = s.foreignCancel
	return nil
}

// upstreamHostPort splits the upstream address for server.address and
// server.port (5432 when it names no port; 0 for a Unix socket).
func upstreamHostPort(addr string) (string, int) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 5432
	}
	p, _ := strconv.Atoi(port)
	return host, p
}
