package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/lockguard/lockguard/internal/config"
	"github.com/lockguard/lockguard/internal/demo"
	"github.com/lockguard/lockguard/proxy"
)

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: lockguard demo [flags]

Runs the incident lockguard exists for twice — straight to PostgreSQL, then
through lockguard — and reports what each table's requests saw: an app on a
connection pool, a long transaction reading users, and a deploy running
ALTER TABLE orders DROP CONSTRAINT orders_user_fk. Without --upstream-dsn it
starts a throwaway PostgreSQL from the local installation.

Flags:
`)
		fs.PrintDefaults()
	}
	duration := fs.Duration("duration", 20*time.Second, fmt.Sprintf("length of each run's workload (at least %v)", demo.MinDuration))
	workers := fs.Int("workers", 32, "application goroutines issuing requests")
	pool := fs.Int("pool", 16, "connections in the application's pool")
	out := fs.String("out", "lockguard-demo", "directory for demo.html, report.txt and report.json")
	upstream := fs.String("upstream-dsn", "", "PostgreSQL to use instead of a throwaway one; the demo creates and drops its own database there (needs CREATEDB)")
	logLevel := fs.String("log-level", "error", "lockguard's log level; its log goes to stderr (warn logs every shed statement)")
	ddl := fs.String("ddl", demo.DefaultDDL, "the deploy's statement; it must drop orders_user_fk (e.g. the same inside a DO block: \"DO $$ BEGIN IF EXISTS (SELECT FROM pg_constraint WHERE conname = 'orders_user_fk') THEN ALTER TABLE orders DROP CONSTRAINT orders_user_fk; END IF; END $$\")")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lockguard demo: unexpected arguments %q\n", fs.Args())
		return 2
	}

	cfg := config.Default()
	cfg.LogLevel = *logLevel
	logger, _ := newLogger(cfg, stderr)
	opts := demo.Options{
		Duration:    *duration,
		Workers:     *workers,
		Pool:        *pool,
		OutDir:      *out,
		UpstreamDSN: *upstream,
		DDL:         *ddl,
		Progress:    stdout,
		Lockguard: fmt.Sprintf("serve's defaults: lock-timeout %v, %d attempts, shed %t, hold-budget %v",
			cfg.LockTimeout, cfg.RetryAttempts, cfg.Shed, cfg.HoldBudget),
		StartProxy: func(ctx context.Context, up demo.Upstream) (string, func(), error) {
			c := *cfg
			c.Upstream, c.UpstreamSSLMode, c.MonitorDSN = up.Address, up.SSLMode, up.DSN
			c.Admin = ""
			return startDemoProxy(&c, logger)
		},
	}
	rep, err := demo.Run(ctx, opts)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "lockguard demo: interrupted; everything it started is stopped")
			return 130
		}
		fmt.Fprintf(stderr, "lockguard demo: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "\n%s\n", rep.Text())
	abs, _ := filepath.Abs(*out)
	fmt.Fprintf(stdout, "Wrote %s (chart), report.txt and report.json in %s\n", filepath.Join(abs, "demo.html"), abs)
	return 0
}

// startDemoProxy starts lockguard as `lockguard serve` builds it (the same
// proxy configuration, side connection and guard) on a free loopback port.
func startDemoProxy(cfg *config.Config, logger *slog.Logger) (string, func(), error) {
	pcfg, err := proxyConfig(cfg, logger)
	if err != nil {
		return "", nil, err
	}
	side, err := openSide(cfg, logger, nil, nil)
	if err != nil {
		return "", nil, err
	}
	if err := side.install(cfg, pcfg, logger); err != nil {
		side.Close()
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		side.Close()
		return "", nil, fmt.Errorf("listen: %w", err)
	}
	srv := proxy.New(pcfg)
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, proxy.ErrServerClosed) {
			logger.Error("demo listener failed", "err", err)
		}
	}()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-served
		side.Close()
	}
	return ln.Addr().String(), stop, nil
}
