package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/lockguard/lockguard/internal/config"
	"github.com/lockguard/lockguard/internal/pgserver"
	"github.com/lockguard/lockguard/proxy"
	"github.com/lockguard/lockguard/telemetry"
)

func cmdServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var loader config.Loader
	loader.RegisterFlags(fs)
	throwaway := fs.Bool("throwaway-postgres", false, "start a temporary PostgreSQL from the local installation and relay to it (for trying lockguard out; its data is deleted on exit)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lockguard serve: unexpected arguments %q\n", fs.Args())
		return 2
	}
	cfg, err := loader.Load()
	if err != nil {
		fmt.Fprintf(stderr, "lockguard serve: %v\n", err)
		return 2
	}
	logger, level := newLogger(cfg, stderr)

	var pg *pgserver.Server
	if *throwaway {
		if cfg.Upstream != "" {
			fmt.Fprintln(stderr, "lockguard serve: --throwaway-postgres and --upstream exclude each other")
			return 2
		}
		logger.Info("starting a throwaway PostgreSQL")
		pg, err = pgserver.Start(context.Background(), pgserver.Options{})
		if err != nil {
			fmt.Fprintf(stderr, "lockguard serve: starting throwaway PostgreSQL: %v\n", err)
			return 1
		}
		defer pg.Stop()
		cfg.Upstream = pg.Addr()
		cfg.UpstreamSSLMode = "disable"
	}
	if cfg.Upstream == "" {
		fmt.Fprintln(stderr, "lockguard serve: no upstream: give --upstream HOST:PORT (or LOCKGUARD_UPSTREAM, or upstream: in --config)")
		return 2
	}
	pcfg, err := proxyConfig(cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "lockguard serve: %v\n", err)
		return 2
	}
	obs, err := telemetry.Setup(context.Background(), telemetry.Options{Version: version})
	if err != nil {
		fmt.Fprintf(stderr, "lockguard serve: %v\n", err)
		return 2
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := obs.Shutdown(ctx); err != nil {
			logger.Warn("flushing telemetry failed", "err", err)
		}
	}()
	logger.Info("telemetry", "traces", obs.Exporter, "sampler", obs.Sampler.String(), "metrics", "/metrics on the admin endpoint")
	events := telemetry.NewEvents(telemetry.DefaultEvents)
	side, sideErr := openSide(cfg, logger, obs, events)
	if side == nil {
		fmt.Fprintf(stderr, "lockguard serve: %v\n", sideErr)
		return 1
	}
	defer side.Close()
	if sideErr != nil {
		// PostgreSQL may be down or restarting: serve anyway (sessions get
		// 08006 until it is up) and open the side connection when it can.
		logger.Warn("monitor connection unavailable at start; guarding from the SQL text alone and retrying", "err", sideErr)
	}
	if err := side.install(cfg, pcfg, logger); err != nil {
		fmt.Fprintf(stderr, "lockguard serve: %v\n", err)
		return 2
	}
	srv := proxy.New(pcfg)
	side.srv.Store(srv)
	reloads := &reloader{loader: &loader, start: cfg, level: level, srv: srv, pg: pg, side: side, logger: logger}
	if cfg.ReplicaSecret != "" && (cfg.MonitorDSN == "" || !cfg.Guard) {
		logger.Warn("replica-secret is set but unused: it needs monitor-dsn and the guard; a cancel request that lands on another replica reaches only PostgreSQL")
	}
	if err := obs.ObserveRelay(func() telemetry.RelayStats {
		st := srv.Stats()
		return telemetry.RelayStats{InLoop: st.InLoop, Departed: int64(st.LeftLoop), Returned: int64(st.BackInLoop),
			Enters: int64(st.RingEnters), Sends: int64(st.RingSends), Recvs: int64(st.RingRecvs)}
	}); err != nil {
		fmt.Fprintf(stderr, "lockguard serve: %v\n", err)
		return 2
	}
	if sideErr != nil {
		side.connectLater(cfg, logger, func() {
			if err := reloads.reload(); err == nil {
				logger.Info("guard re-installed with the monitor connection")
			}
		})
	}

	var listeners []net.Listener
	for _, addr := range cfg.Listen {
		ln, err := listen(addr)
		if err != nil {
			fmt.Fprintf(stderr, "lockguard serve: %v\n", err)
			return 1
		}
		listeners = append(listeners, ln)
	}
	var admin *telemetry.Admin
	if cfg.Admin != "" {
		aln, err := net.Listen("tcp", cfg.Admin)
		if err != nil {
			fmt.Fprintf(stderr, "lockguard serve: admin endpoint: %v\n", err)
			return 1
		}
		// The status page, fed by the same event ring as the guard and the
		// watchdog.
		status := &telemetry.Status{Hazards: side.board.Snapshot, Events: events,
			Policy: func() any {
				cfg := side.active.Load() // the configuration of the last (re)load
				if cfg == nil {
					return nil
				}
				v, _ := telemetry.PolicyView(cfg.Policy, map[string]any{
					"guard": cfg.Guard, "lock-timeout": cfg.LockTimeout.String(), "shed": cfg.Shed,
					"hold-budget": cfg.HoldBudget.String(), "max-held-per-relation": cfg.MaxHeldPerRelation,
					"retry-attempts": cfg.RetryAttempts, "retry-deadline": cfg.RetryDeadline.String(),
					"yield-waiters": cfg.YieldWaiters, "yield-wait": cfg.YieldWait.String(),
					"watchdog": cfg.Watchdog, "watchdog-idle": cfg.WatchdogIdle.String(), "watchdog-run": cfg.WatchdogRun.String(),
					// What runs, not what the file says: both open only at start.
					"monitor": side.connected(), "replica-secret": side.bus.Load() != nil, "unparsed-ddl": cfg.UnparsedDDL,
				})
				return v
			}}
		status.Sessions = side.sessions
		admin = &telemetry.Admin{Ready: srv.Ready, Logger: logger, Token: cfg.AdminToken, Status: status, Metrics: obs.MetricsHandler(),
			Reload: func() error { return reloads.reload() }}
		go func() {
			if err := admin.Serve(aln); err != nil {
				logger.Error("admin endpoint failed", "err", err)
			}
		}()
	}
	serveErr := make(chan error, len(listeners))
	for _, ln := range listeners {
		go func() { serveErr <- srv.Serve(ln) }()
		logger.Info("listening", "addr", ln.Addr().String(), "upstream", cfg.Upstream)
	}
	if pg != nil {
		fmt.Fprintf(stdout, "lockguard is relaying %s → throwaway PostgreSQL %d at %s\nConnect with:\n  psql \"%s\"\nStop with Ctrl-C.\n",
			listeners[0].Addr(), pg.Version, pg.Addr(), connectHint(listeners[0].Addr()))
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	code := 0
loop:
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				_ = reloads.reload()
				continue
			}
			logger.Info("draining", "signal", sig.String(), "drain_timeout", side.active.Load().DrainTimeout)
			break loop
		case err := <-serveErr:
			if !errors.Is(err, proxy.ErrServerClosed) {
				logger.Error("listener failed", "err", err)
				code = 1
			}
			break loop
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), side.active.Load().DrainTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Warn("drain timeout reached; closed the remaining sessions", "err", err)
	}
	if admin != nil {
		_ = admin.Shutdown(context.Background())
	}
	logger.Info("stopped")
	return code
}

func connectHint(a net.Addr) string {
	host, port, _ := net.SplitHostPort(a.String())
	return fmt.Sprintf("host=%s port=%s user=%s dbname=postgres", host, port, pgserver.Superuser)
}

// reloader applies a re-read configuration (SIGHUP, POST /reload, the side
// connection opened late).
type reloader struct {
	loader *config.Loader
	start  *config.Config // what lockguard started with: the restart-only settings' values
	level  *slog.LevelVar
	srv    *proxy.Server
	pg     *pgserver.Server
	side   *sideConn
	logger *slog.Logger
}

// reload re-reads the file and environment with the same flags and hands the
// result to the proxy; sessions opened afterwards use it. It says which
// changed settings only a restart applies.
func (r *reloader) reload() error {
	cfg, err := r.loader.Load()
	if err == nil && r.pg != nil {
		cfg.Upstream, cfg.UpstreamSSLMode = r.pg.Addr(), "disable"
	}
	var pcfg *proxy.Config
	if err == nil {
		pcfg, err = proxyConfig(cfg, r.logger)
	}
	if err == nil {
		err = r.side.install(cfg, pcfg, r.logger)
	}
	if err != nil {
		r.logger.Error("reload failed; keeping the current configuration", "err", err)
		return err
	}
	r.srv.Reload(pcfg)
	r.level.Set(logLevel(cfg))
	r.logger.Info("configuration reloaded", "upstream", cfg.Upstream)
	if keys := config.RestartOnlyChanges(r.start, cfg); len(keys) > 0 {
		r.logger.Warn("these settings changed but apply only on restart; the running values stay", "settings", strings.Join(keys, ","))
	}
	if cfg.Guard && !r.start.Guard && cfg.MonitorDSN != "" {
		r.logger.Warn("the guard is on, from the SQL text alone: lockguard started with it off, and its side connection (monitor-dsn) opens only at start; restart for catalog facts, shedding and the watchdog")
	}
	return nil
}

func proxyConfig(cfg *config.Config, logger *slog.Logger) (*proxy.Config, error) {
	pc := &proxy.Config{
		Upstream: proxy.Upstream{
			Address:        cfg.Upstream,
			SSLMode:        cfg.UpstreamSSLMode,
			ConnectTimeout: cfg.ConnectTimeout,
		},
		MaxConnections: cfg.MaxConnections,
		MaxMessageSize: cfg.MaxMessageSize,
		StartupTimeout: cfg.StartupTimeout,
		Logger:         logger,
		EventLoops:     cfg.EventLoops,
		NoIOUring:      !cfg.IOUring,
	}
	if cfg.UpstreamCA != "" {
		pool, err := loadPool(cfg.UpstreamCA)
		if err != nil {
			return nil, fmt.Errorf("upstream-ca: %w", err)
		}
		pc.Upstream.RootCAs = pool
	}
	if err := pc.Upstream.Validate(); err != nil {
		return nil, err
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("tls-cert/tls-key: %w", err)
		}
		pc.TLS = proxy.ServerTLSConfig(cert)
		if cfg.TLSClientCA != "" {
			pool, err := loadPool(cfg.TLSClientCA)
			if err != nil {
				return nil, fmt.Errorf("tls-client-ca: %w", err)
			}
			pc.TLS.ClientCAs = pool
			pc.TLS.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	// A client CA is access control only if no client can skip TLS.
	pc.RequireTLS = cfg.ClientTLS == "require" || cfg.TLSClientCA != ""
	return pc, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

func listen(addr string) (net.Listener, error) {
	network, a := proxy.SplitAddress(addr)
	if network == "unix" {
		if fi, err := os.Lstat(a); err == nil && fi.Mode()&os.ModeSocket != 0 {
			// A stale socket from a previous run: remove it only if nobody answers.
			if c, err := net.DialTimeout("unix", a, time.Second); err == nil {
				c.Close()
				return nil, fmt.Errorf("listen %s: another process is serving this socket", a)
			}
			_ = os.Remove(a)
		}
	}
	ln, err := net.Listen(network, a)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if network == "unix" {
		_ = os.Chmod(a, 0o777) // like PostgreSQL's default unix_socket_permissions
	}
	return ln, nil
}

// newLogger returns the logger cfg describes, and its level, which a reload
// sets.
func newLogger(cfg *config.Config, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	level.Set(logLevel(cfg))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), level
	}
	return slog.New(slog.NewTextHandler(w, opts)), level
}

func logLevel(cfg *config.Config) slog.Level {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToUpper(cfg.LogLevel)))
	return level
}
