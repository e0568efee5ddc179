package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lockguard/lockguard/internal/pgserver"
)

// Options configure Run. Zero values take the defaults shown.
type Options struct {
	// Duration is the length of each run's workload (20 s). It must leave
	// room for the timeline: at least ReportAt + ReportHold + 1 s.
	Duration time.Duration
	// Workers is the number of goroutines issuing requests (32).
	Workers int
	// Pool is the size of the application's connection pool (16).
	Pool int
	// OutDir receives demo.html, report.txt and report.json; empty writes
	// no files (the command's default is ./lockguard-demo).
	OutDir string
	// UpstreamDSN is a PostgreSQL to run against. The demo creates its own
	// database there (the role needs CREATEDB) and drops it afterwards.
	// Empty means: start a throwaway PostgreSQL from the local installation.
	UpstreamDSN string

	// DDL is the deploy's statement; empty means DefaultDDL. It must
	// drop the foreign key orders_user_fk (the demo's schema has it once).
	DDL string

	// StartProxy starts lockguard in front of up, listening on a loopback
	// address, and returns that address and a function that stops it. It
	// is called once, after the direct run; stop is called before Run
	// returns. Required.
	StartProxy func(ctx context.Context, up Upstream) (addr string, stop func(), err error)
	// Lockguard describes the settings StartProxy uses, for the report
	// ("lock-timeout 2s, …"). Optional.
	Lockguard string

	// Progress receives the demo's steps and one line per second while a
	// run is going; nil discards them.
	Progress io.Writer

	// The incident's timeline within each run: the report transaction opens
	// at ReportAt (3 s) and stays open ReportHold (8 s); the deploy starts
	// DeployAfter (1 s) after the report opened.
	ReportAt, ReportHold, DeployAfter time.Duration
	// RequestTimeout bounds each application request, including the wait
	// for a pool connection (5 s).
	RequestTimeout time.Duration
	// Think is each worker's mean pause between requests (10 ms), so that
	// the workload does not saturate a small machine.
	Think time.Duration
	// DDLGrace is how long after the workload ends the deploy may still
	// finish before it is cancelled (15 s).
	DDLGrace time.Duration
}

// Upstream is what StartProxy needs to reach PostgreSQL.
type Upstream struct {
	// Address is HOST:PORT, or a unix socket directory with an optional
	// :PORT, as `lockguard serve --upstream` takes it.
	Address string
	// SSLMode is "disable", "prefer" or "require", from the DSN.
	SSLMode string
	// DSN connects to the demo's database with the caller's credentials,
	// for lockguard's side connection (monitor-dsn).
	DSN string
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.Duration, 20*time.Second)
	def(&o.ReportAt, 3*time.Second)
	def(&o.ReportHold, 8*time.Second)
	def(&o.DeployAfter, time.Second)
	def(&o.RequestTimeout, 5*time.Second)
	def(&o.Think, 10*time.Millisecond)
	def(&o.DDLGrace, 15*time.Second)
	if o.Workers == 0 {
		o.Workers = 32
	}
	if o.Pool == 0 {
		o.Pool = 16
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.DDL == "" {
		o.DDL = DefaultDDL
	}
}

// MinDuration is the shortest Duration the default timeline allows.
const MinDuration = 12 * time.Second

func (o *Options) validate() error {
	if o.StartProxy == nil {
		return errors.New("demo: Options.StartProxy is required")
	}
	if o.Workers < 1 || o.Pool < 1 {
		return fmt.Errorf("workers (%d) and pool (%d) must be at least 1", o.Workers, o.Pool)
	}
	if need := o.ReportAt + o.ReportHold + time.Second; o.Duration < need {
		return fmt.Errorf("duration %v is too short: the report transaction alone runs until %v; use at least %v", o.Duration, o.ReportAt+o.ReportHold, need)
	}
	if o.DeployAfter >= o.ReportHold {
		return fmt.Errorf("the deploy (%v after the report opens) must start while the report transaction (%v) is open", o.DeployAfter, o.ReportHold)
	}
	return nil
}

// Run sets up PostgreSQL and the schema, runs the incident straight to
// PostgreSQL and then through lockguard, writes the files into OutDir and
// returns the report. Everything it started is stopped before it returns,
// also when ctx is cancelled.
func Run(ctx context.Context, o Options) (rep *Report, err error) {
	o.setDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	p := o.Progress

	baseDSN := o.UpstreamDSN
	throwaway := baseDSN == ""
	if throwaway {
		fmt.Fprintln(p, "starting a throwaway PostgreSQL from the local installation…")
		srv, err := pgserver.Start(ctx, pgserver.Options{Settings: map[string]string{"max_connections": "200"}})
		if err != nil {
			return nil, fmt.Errorf("starting PostgreSQL: %w", err)
		}
		defer srv.Stop()
		baseDSN = srv.DSN(pgserver.Superuser, "", "postgres")
	}
	baseCfg, err := pgx.ParseConfig(baseDSN)
	if err != nil {
		return nil, fmt.Errorf("upstream-dsn: %w", err)
	}

	db, drop, err := createDatabase(ctx, baseCfg, !throwaway)
	if err != nil {
		return nil, err
	}
	defer drop()
	direct := baseCfg.Copy()
	direct.Database = db

	e := &env{o: o, direct: direct}
	rep = &Report{Workers: o.Workers, Pool: o.Pool, RunSeconds: o.Duration.Seconds(),
		Lockguard: o.Lockguard, Timeline: Timeline{ReportOpen: o.ReportAt.Seconds(),
			ReportClose: (o.ReportAt + o.ReportHold).Seconds(), Deploy: (o.ReportAt + o.DeployAfter).Seconds()},
		DDL: o.DDL, RequestTimeoutSeconds: o.RequestTimeout.Seconds()}
	if rep.PostgreSQL, err = e.serverVersion(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(p, "PostgreSQL %s at %s, database %s; %d workers on a pool of %d; %v per run\n",
		rep.PostgreSQL, hostPort(direct), db, o.Workers, o.Pool, o.Duration)

	// Run 1: straight to PostgreSQL.
	r1, err := e.runOnce(ctx, "direct", "direct to PostgreSQL", direct)
	if err != nil {
		return nil, fmt.Errorf("direct run: %w", err)
	}
	rep.Runs = append(rep.Runs, *r1)

	// Run 2: through lockguard.
	up := Upstream{Address: upstreamAddress(direct), SSLMode: sslMode(direct), DSN: withDatabase(baseDSN, db)}
	fmt.Fprintln(p, "starting lockguard in front of PostgreSQL…")
	addr, stop, err := o.StartProxy(ctx, up)
	if err != nil {
		return nil, fmt.Errorf("starting lockguard: %w", err)
	}
	defer stop()
	via, err := throughProxy(direct, addr)
	if err != nil {
		return nil, err
	}
	r2, err := e.runOnce(ctx, "lockguard", "through lockguard", via)
	if err != nil {
		return nil, fmt.Errorf("run through lockguard: %w", err)
	}
	rep.Runs = append(rep.Runs, *r2)
	rep.finish()

	if o.OutDir != "" {
		if err := rep.WriteFiles(o.OutDir); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// env is what both runs share.
type env struct {
	o      Options
	direct *pgx.ConnConfig // the demo database, straight to PostgreSQL
}

func (e *env) serverVersion(ctx context.Context) (string, error) {
	conn, err := connect(ctx, e.direct, "lockguard-demo-setup")
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var v string
	err = conn.QueryRow(ctx, "SHOW server_version").Scan(&v)
	return v, err
}

// createDatabase creates a database of the demo's own on the server cfg
// points to and returns its name and a function that drops it (a no-op
// unless dropAfter: a throwaway server is deleted whole).
func createDatabase(ctx context.Context, cfg *pgx.ConnConfig, dropAfter bool) (string, func(), error) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "lockguard_demo_" + hex.EncodeToString(b[:])
	conn, err := connect(ctx, cfg, "lockguard-demo-setup")
	if err != nil {
		return "", nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("creating database %s (the demo needs a role that may CREATE DATABASE): %w", name, err)
	}
	drop := func() {
		if !dropAfter {
			return
		}
		dctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		c, err := connect(dctx, cfg, "lockguard-demo-setup")
		if err != nil {
			return
		}
		defer c.Close(dctx)
		if _, err := c.Exec(dctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			_, _ = c.Exec(dctx, "DROP DATABASE IF EXISTS "+name) // before PostgreSQL 13
		}
	}
	return name, drop, nil
}

// connect opens one connection with application_name set.
func connect(ctx context.Context, cfg *pgx.ConnConfig, app string) (*pgx.Conn, error) {
	c := cfg.Copy()
	c.RuntimeParams["application_name"] = app
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, c)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s as %s: %w", hostPort(cfg), app, err)
	}
	return conn, nil
}

func hostPort(cfg *pgx.ConnConfig) string {
	if strings.HasPrefix(cfg.Host, "/") {
		return cfg.Host + ":" + strconv.Itoa(int(cfg.Port))
	}
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
}

// upstreamAddress is cfg's server in the form `lockguard serve --upstream`
// takes.
func upstreamAddress(cfg *pgx.ConnConfig) string {
	if strings.HasPrefix(cfg.Host, "/") && cfg.Port == 5432 {
		return cfg.Host
	}
	return hostPort(cfg)
}

// sslMode approximates the DSN's sslmode from what pgx made of it.
func sslMode(cfg *pgx.ConnConfig) string {
	switch {
	case cfg.TLSConfig == nil:
		return "disable"
	case len(cfg.Fallbacks) > 0:
		return "prefer"
	default:
		return "require"
	}
}

// throughProxy returns cfg pointed at lockguard on addr, without TLS (the
// demo's lockguard has no certificate; it is on loopback).
func throughProxy(cfg *pgx.ConnConfig, addr string) (*pgx.ConnConfig, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("lockguard address %q: %w", addr, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("lockguard address %q: %w", addr, err)
	}
	c := cfg.Copy()
	c.Host, c.Port, c.TLSConfig, c.Fallbacks = host, uint16(n), nil, nil
	return c, nil
}

// withDatabase returns dsn (a URL or key=value string) naming database db.
func withDatabase(dsn, db string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			u.Path = "/" + db
			u.RawPath = ""
			return u.String()
		}
	}
	return strings.TrimSpace(dsn) + " dbname=" + db // later keys win
}

// WriteFiles writes demo.html, report.txt and report.json into dir.
func (r *Report) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	js, err := r.JSON()
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
	}{
		{"report.txt", []byte(r.Text())},
		{"report.json", js},
		{"demo.html", []byte(r.HTML())},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", f.name, err)
		}
	}
	return nil
}
