// Command compare measures lockguard against PgBouncer and against PostgreSQL
// itself, side by side in one run on one machine, and writes bench/RESULTS.md.
//
// It starts a throwaway PostgreSQL, fills it with pgbench -i, starts lockguard
// (built from this checkout) and PgBouncer (session mode) in front of it, then:
//
//  1. opens 1,000 idle connections through each proxy and reads its resident
//     memory before and after;
//  2. runs pgbench select-only and tpcb-like in -M simple, extended and
//     prepared at 1, 16 and 64 clients against all three targets, interleaved
//     over several rounds, recording tps, average and p99 latency and the
//     proxies' CPU time per transaction;
//  3. runs the Go benchmarks of ./bench, if there are any;
//  4. prints a report and writes it to bench/RESULTS.md.
//
// Every process and directory it creates is removed at the end, also on
// Ctrl-C. Run `go run ./bench/compare -h` for the flags; README.md beside this
// file explains the choices.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lockguard/lockguard/internal/pgserver"
)

type options struct {
	rounds        int
	duration      time.Duration
	warmup        time.Duration
	scale         int
	clients       []int
	modes         []string
	workloads     []string
	idleConns     int
	out           string
	lockguard     string
	pgbouncer     string
	goBench       bool
	sharedBuffers string
	warmPgBouncer bool
	quick         bool
	verbose       bool
}

const usageText = `compare runs pgbench against PostgreSQL directly, through lockguard and
through PgBouncer (session mode), interleaved over several rounds, measures
the proxies' memory per idle connection and CPU per transaction, and writes
bench/RESULTS.md. Run it from the repository as root or as a user that can run
PostgreSQL; it needs pgbench and PostgreSQL's server binaries, and installs
Debian's pgbouncer when it is missing and it runs as root.

  go run ./bench/compare           full report (3 rounds × 54 runs × 5 s, ~16 min)
  go run ./bench/compare -quick    smoke run (1 round × 3 s, fewer cells, ~1 min);
                                   prints the report, writes it only with -out

Flags:
`

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	o := &options{}
	fs.IntVar(&o.rounds, "rounds", 3, "interleaved rounds; each runs every cell against every target once")
	seconds := fs.Int("T", 5, "seconds per pgbench run (pgbench -T)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "left out of every run's figures, from when its last client started its first transaction")
	fs.IntVar(&o.scale, "scale", 10, "pgbench -i scale factor")
	fs.StringVar(&o.sharedBuffers, "shared-buffers", "32MB", "PostgreSQL shared_buffers (a larger value lengthens every fresh backend's warm-up; see README)")
	clients := fs.String("clients", "1,16,64", "comma-separated client counts (pgbench -c)")
	modes := fs.String("modes", "simple,extended,prepared", "comma-separated protocol modes (pgbench -M)")
	workloads := fs.String("workloads", "select-only,tpcb-like", "comma-separated pgbench builtin scripts (pgbench -b)")
	fs.IntVar(&o.idleConns, "idle-conns", 1000, "idle connections opened through each proxy to measure memory; 0 skips the measurement")
	fs.StringVar(&o.out, "out", "", "report file (default bench/RESULTS.md of this checkout; -quick writes none unless given)")
	fs.StringVar(&o.lockguard, "lockguard", "", "lockguard binary to use (default: go build ./cmd/lockguard of this checkout)")
	fs.StringVar(&o.pgbouncer, "pgbouncer", "/usr/sbin/pgbouncer", "pgbouncer binary")
	fs.BoolVar(&o.goBench, "gobench", true, "also run the Go benchmarks of ./bench (go test -bench . -benchmem) and judge the allocation and cache targets")
	fs.BoolVar(&o.quick, "quick", false, "smoke run: 1 round of 3 s, clients 1 and 16, modes simple and prepared, 200 idle connections, scale 1, no Go benchmarks (flags given explicitly still win)")
	fs.BoolVar(&o.warmPgBouncer, "pgbouncer-warm", false, "let PgBouncer keep its server connections from run to run (by default they are replaced by fresh ones before each run, as direct and lockguard get fresh backends)")
	fs.BoolVar(&o.verbose, "v", false, "log every step")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		quick := map[string]func(){
			"rounds":     func() { o.rounds = 1 },
			"T":          func() { *seconds = 3 },
			"clients":    func() { *clients = "1,16" },
			"modes":      func() { *modes = "simple,prepared" },
			"idle-conns": func() { o.idleConns = 200 },
			"scale":      func() { o.scale = 1 },
			"gobench":    func() { o.goBench = false },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	o.duration = time.Duration(*seconds) * time.Second
	var err error
	if o.clients, err = parseInts(*clients); err != nil {
		return nil, fmt.Errorf("-clients: %w", err)
	}
	o.modes = splitList(*modes)
	for _, m := range o.modes {
		if m != "simple" && m != "extended" && m != "prepared" {
			return nil, fmt.Errorf("-modes: unknown protocol mode %q", m)
		}
	}
	o.workloads = splitList(*workloads)
	switch {
	case o.rounds < 1:
		return nil, errors.New("-rounds must be at least 1")
	case *seconds < 1:
		return nil, errors.New("-T must be at least 1")
	case len(o.clients) == 0 || len(o.modes) == 0 || len(o.workloads) == 0:
		return nil, errors.New("-clients, -modes and -workloads must not be empty")
	}
	return o, nil
}

func main() {
	opts, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(2)
	}
	// The first Ctrl-C cancels ctx; later ones are swallowed until cleanup
	// has stopped everything this program started.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, opts)
	interrupted := ctx.Err() != nil
	stop()
	if err != nil {
		if interrupted {
			fmt.Fprintf(os.Stderr, "compare: interrupted (%v); everything it started is stopped and removed\n", err)
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

// env is everything a run starts. cleanup stops and removes all of it.
type env struct {
	tmp     string
	pg      *pgserver.Server
	admin   *pgx.Conn // direct connection to the bench database
	targets []*target // direct, lockguard, pgbouncer
}

func (e *env) cleanup() {
	if e.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		e.admin.Close(ctx)
		cancel()
	}
	for _, t := range e.targets {
		// lockguard drains on SIGTERM (with --drain-timeout 2s); PgBouncer
		// shuts down at once on SIGTERM.
		t.proc.stop(syscall.SIGTERM, 5*time.Second)
	}
	if e.pg != nil {
		if err := e.pg.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "compare: stopping PostgreSQL:", err)
		}
	}
	if e.tmp != "" {
		os.RemoveAll(e.tmp)
	}
}

func (e *env) target(name string) *target {
	for _, t := range e.targets {
		if t.name == name {
			return t
		}
	}
	return nil
}

func run(ctx context.Context, o *options) error {
	begin := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	vlogf := func(string, ...any) {}
	if o.verbose {
		vlogf = logf
	}
	root, err := moduleRoot()
	if err != nil && (o.lockguard == "" || (o.out == "" && !o.quick)) {
		return err
	}
	if o.out == "" && !o.quick {
		o.out = filepath.Join(root, "bench", "RESULTS.md")
	}
	raiseFileLimit(o.idleConns*3 + 1000)

	e := &env{}
	defer e.cleanup()
	if e.tmp, err = os.MkdirTemp("", "lgcompare-"); err != nil {
		return err
	}
	// PgBouncer runs as the postgres OS user and keeps its files below.
	if err := os.Chmod(e.tmp, 0o755); err != nil {
		return err
	}

	pgbouncerBin, err := findPgBouncer(ctx, o.pgbouncer, logf)
	if err != nil {
		return err
	}
	lockguardBin := o.lockguard
	if lockguardBin == "" {
		logf("building lockguard from %s", root)
		if lockguardBin, err = buildLockguard(ctx, root, e.tmp); err != nil {
			return err
		}
	}

	logf("starting PostgreSQL and running pgbench -i -s %d", o.scale)
	if e.pg, err = startPostgres(ctx, o, vlogf); err != nil {
		return err
	}
	e.targets = append(e.targets, &target{name: direct, port: e.pg.Port})
	if e.admin, err = connectAdmin(ctx, e.pg); err != nil {
		return err
	}
	lg, err := startLockguard(ctx, lockguardBin, e.tmp, e.pg.Addr())
	if err != nil {
		return err
	}
	e.targets = append(e.targets, lg)
	pgb, err := startPgBouncer(ctx, pgbouncerBin, e.tmp, e.pg.Port)
	if err != nil {
		return err
	}
	e.targets = append(e.targets, pgb)
	logf("PostgreSQL on %d, lockguard on %d, PgBouncer on %d", e.pg.Port, lg.port, pgb.port)

	rep := &report{
		opts:      o,
		command:   commandLine(),
		started:   begin,
		lockguard: lockguardBin,
		pgbouncer: pgbouncerBin,
	}
	rep.machine = describeMachine(ctx, root, e, pgbouncerBin)
	rep.guard = probeGuard(ctx, e, lg)
	logf("guard: %s", rep.guard)

	if o.idleConns > 0 {
		for _, t := range []*target{lg, pgb} {
			logf("memory: opening %d idle connections through %s", o.idleConns, t.name)
			m := measureIdle(ctx, t, o.idleConns, e.admin)
			logf("memory: %s %d → %d KiB with %d connections open: %.1f KiB per connection",
				t.name, m.before, m.after, m.opened, m.perConn())
			rep.memory = append(rep.memory, m)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	rep.background = backgroundLoad(ctx, 3*time.Second)
	logf("machine busy before the runs (other users of the cores): %.0f%% of %d cores", rep.background*100, runtime.NumCPU())
	rep.results = runCells(ctx, o, e, logf)
	if err := ctx.Err(); err != nil {
		return err
	}

	if o.goBench {
		logf("running the Go benchmarks of ./bench")
		rep.goBench = runGoBenchmarks(ctx, root)
	}
	rep.finished = time.Now()
	rep.lockguardLog = lastLines(readFile(lg.proc.log), 30)
	rep.pgbouncerLog = lastLines(readFile(filepath.Join(e.tmp, "pgbouncer", "pgbouncer.log")), 30)

	text := rep.markdown()
	fmt.Print(text)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(text), 0o644); err != nil {
			return fmt.Errorf("writing the report: %w", err)
		}
		logf("wrote %s", o.out)
	}
	logf("done in %s", time.Since(begin).Round(time.Second))
	return nil
}

// runCells runs every cell against every target, round after round. Within a
// round the targets take turns in an order that rotates from cell to cell and
// round to round, so none is always first after a tpcb-like reset.
func runCells(ctx context.Context, o *options, e *env, logf func(string, ...any)) *results {
	res := newResults(o)
	total := o.rounds * len(res.cells) * len(e.targets)
	done := 0
	start := time.Now()
	logDir := filepath.Join(e.tmp, "pgbench-log")
	meter := cpuMeter{postmaster: postmasterPID(e.pg.DataDir)}
	for r := 0; r < o.rounds; r++ {
		for i, c := range res.cells {
			for k := range e.targets {
				t := e.targets[(r+i+k)%len(e.targets)]
				if ctx.Err() != nil {
					return res
				}
				if err := prepareRun(ctx, e, t, c, o.warmPgBouncer); err != nil {
					logf("preparing %s: %v", c, err)
				}
				out := runPgbench(ctx, t, c, o.duration, o.warmup, runtime.NumCPU(), logDir, meter)
				res.add(c, t.name, r, out)
				done++
				eta := time.Duration(float64(time.Since(start)) / float64(done) * float64(total-done))
				logf("[%d/%d, ~%s left] round %d %-30s %-9s %s", done, total, eta.Round(time.Second), r+1, c, t.name, out.oneLine())
			}
		}
	}
	return res
}

// prepareRun readies the database and target t for a run of cell c, so that
// every target starts alike:
//
//   - the sessions of the previous run have ended (their backends exit a
//     little after pgbench does);
//   - PgBouncer holds exactly c.clients fresh server connections, like the
//     fresh backends pgbench opens through lockguard or directly: without
//     this, PgBouncer alone would reuse warm backends from earlier runs,
//     which makes it look faster than PostgreSQL itself on short runs;
//   - for tpcb-like, what pgbench does before a run unless given -n (VACUUM
//     pgbench_branches and pgbench_tellers, TRUNCATE pgbench_history) plus a
//     CHECKPOINT, over a direct connection so that the proxies' CPU time
//     counts only the run.
func prepareRun(ctx context.Context, e *env, t *target, c cell, warmPgBouncer bool) error {
	if !warmPgBouncer {
		if err := dropServerConns(ctx, e.target(pgbouncer)); err != nil {
			return err
		}
		waitBackends(ctx, e.admin, 0, 30*time.Second)
		if t.name == pgbouncer {
			if err := openServerConns(ctx, t, c.clients); err != nil {
				return err
			}
		}
	}
	if c.workload != "tpcb-like" {
		return nil
	}
	for _, sql := range []string{
		"VACUUM pgbench_branches", "VACUUM pgbench_tellers", "TRUNCATE pgbench_history", "CHECKPOINT",
	} {
		if _, err := e.admin.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
	}
	return nil
}

func connectAdmin(ctx context.Context, pg *pgserver.Server) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(pg.DSN(pgserver.Superuser, "", benchDB))
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["application_name"] = "bench-compare"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	return conn, nil
}

// probeGuard tells whether lockguard's guard is active: it sends a table
// rewrite under ACCESS EXCLUSIVE through lockguard, which the default policy
// warns about (or a strict one blocks), and reports what came back.
func probeGuard(ctx context.Context, e *env, lg *target) string {
	const table = "compare_guard_probe"
	const ddl = "ALTER TABLE " + table + " ALTER COLUMN id TYPE bigint"
	if _, err := e.admin.Exec(ctx, "CREATE TABLE "+table+" (id int)"); err != nil {
		return "unknown: " + err.Error()
	}
	defer e.admin.Exec(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+table)

	cfg, err := pgx.ParseConfig(lg.dsn())
	if err != nil {
		return "unknown: " + err.Error()
	}
	var notices []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		notices = append(notices, fmt.Sprintf("%s %s: %s", n.Severity, n.Code, n.Message))
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "unknown: " + err.Error()
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, execErr := conn.Exec(ctx, ddl, pgx.QueryExecModeSimpleProtocol)
	switch {
	case execErr != nil && strings.Contains(strings.ToLower(execErr.Error()), "lockguard"):
		return fmt.Sprintf("on: `%s` was refused: %v", ddl, execErr)
	case len(notices) > 0:
		return fmt.Sprintf("on: `%s` drew %s", ddl, strings.Join(notices, "; "))
	case execErr != nil:
		return fmt.Sprintf("unknown: `%s` failed: %v", ddl, execErr)
	default:
		return fmt.Sprintf("no sign of it: `%s` (a table rewrite under ACCESS EXCLUSIVE) ran through lockguard without a notice or error, so these figures are for the relay alone", ddl)
	}
}

// moduleRoot returns the directory of the go.mod of the current directory.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run from the lockguard checkout (no go.mod here), or give -lockguard and -out")
	}
	return filepath.Dir(mod), nil
}

// raiseFileLimit lifts the soft limit on open files towards want: 1,000 idle
// connections need 1,000 descriptors here and twice that in lockguard, which
// inherits the limit.
func raiseFileLimit(want int) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur >= uint64(want) {
		return
	}
	lim.Cur = min(max(uint64(want), lim.Cur), lim.Max)
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

// commandLine returns how this program was started, as a user would type it.
func commandLine() string {
	name := os.Args[0]
	if strings.Contains(name, "go-build") {
		name = "go run ./bench/compare"
	}
	parts := []string{name}
	for _, a := range os.Args[1:] {
		if a == "" || strings.ContainsAny(a, " \t'\"$") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad number %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func readFile(name string) string {
	b, _ := os.ReadFile(name)
	return string(b)
}
