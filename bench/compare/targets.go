package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lockguard/lockguard/internal/pgserver"
)

// benchDB is the database pgbench runs in.
const benchDB = "bench"

// Target names, in the order the report lists them.
const (
	direct    = "direct"
	lockguard = "lockguard"
	pgbouncer = "pgbouncer"
)

var targetNames = []string{direct, lockguard, pgbouncer}

// target is an address pgbench can connect to. proc is the proxy process whose
// CPU time and memory are measured; it is nil for direct.
type target struct {
	name string
	port int
	proc *proc
}

// dsn returns a libpq keyword/value connection string for the bench database.
func (t *target) dsn() string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable connect_timeout=10",
		t.port, pgserver.Superuser, benchDB)
}

// proc is a child process: lockguard or PgBouncer.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string        // file holding its stdout and stderr
	done chan struct{} // closed when it has exited
	err  error         // its exit status, valid once done is closed
}

// startProc starts cmd in its own process group, so that Ctrl-C in the
// terminal reaches only this program, which then stops the child itself.
func startProc(name string, cmd *exec.Cmd, logFile string) (*proc, error) {
	f, err := os.Create(logFile)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logFile, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig, waits up to grace, then kills. It is safe to call twice.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// logTail returns the last lines of the process's log, for error messages.
func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// waitAccepting waits until a PostgreSQL session can be opened through t.
func waitAccepting(ctx context.Context, t *target) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		if t.proc != nil && t.proc.exited() {
			return fmt.Errorf("%s exited: %v\n%s", t.name, t.proc.err, t.proc.logTail())
		}
		conn, err := pgconn.Connect(ctx, t.dsn())
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s on port %d: %w", t.name, t.port, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// startPostgres starts a throwaway PostgreSQL sized for 1,000 idle sessions
// plus the benchmark's and fills the bench database with pgbench -i.
func startPostgres(ctx context.Context, o *options, logf func(string, ...any)) (*pgserver.Server, error) {
	pg, err := pgserver.Start(ctx, pgserver.Options{
		Settings: pgSettings(o),
		Logf:     logf,
	})
	if err != nil {
		return nil, err
	}
	if err := pg.Exec(ctx, "CREATE DATABASE "+benchDB); err != nil {
		pg.Stop()
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "pgbench", "-i", "-q", "-s", strconv.Itoa(o.scale),
		"-h", pg.Host, "-p", strconv.Itoa(pg.Port), "-U", pgserver.Superuser, benchDB)
	cmd.Env = pgbenchEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		pg.Stop()
		return nil, fmt.Errorf("pgbench -i: %w: %s", err, bytes.TrimSpace(out))
	}
	return pg, nil
}

// pgSettings are the PostgreSQL settings of the run, on top of pgserver's own
// (fsync, synchronous_commit and full_page_writes off).
func pgSettings(o *options) map[string]string {
	return map[string]string{
		// 1,000 idle sessions through lockguard (one backend each), the
		// benchmark's 64 clients and a few admin connections.
		"max_connections": "1100",
		"shared_buffers":  o.sharedBuffers,
		"max_wal_size":    "2GB",
	}
}

// startLockguard builds (unless bin is set) and starts lockguard in front of
// PostgreSQL on a free loopback port.
func startLockguard(ctx context.Context, bin, dir string, pgAddr string) (*target, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := pgserver.FreePort()
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(bin, "serve",
			"--listen", "127.0.0.1:"+strconv.Itoa(port),
			"--upstream", pgAddr,
			"--upstream-sslmode", "disable",
			"--admin", "",
			"--log-level", "warn",
			"--drain-timeout", "2s")
		p, err := startProc(lockguard, cmd, filepath.Join(dir, "lockguard.log"))
		if err != nil {
			return nil, err
		}
		t := &target{name: lockguard, port: port, proc: p}
		if lastErr = waitAccepting(ctx, t); lastErr == nil {
			return t, nil
		}
		p.stop(syscall.SIGKILL, time.Second)
	}
	return nil, lastErr
}

// buildLockguard compiles ./cmd/lockguard of the module at root into dir.
func buildLockguard(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "lockguard")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/lockguard")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/lockguard: %w\n%s", err, bytes.TrimSpace(out))
	}
	return bin, nil
}

// findPgBouncer returns the pgbouncer binary, installing Debian's package
// when it is missing and we are root.
func findPgBouncer(ctx context.Context, bin string, logf func(string, ...any)) (string, error) {
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	const install = "apt-get install -y pgbouncer"
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("pgbouncer not found at %s: install it with `sudo %s`", bin, install)
	}
	logf("pgbouncer is missing; running %s", install)
	cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "pgbouncer")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s: %w\n%s", install, err, lastLines(string(out), 10))
	}
	// Debian's package enables a system-wide service; we start our own.
	return exec.LookPath("pgbouncer")
}

// startPgBouncer starts PgBouncer in session mode in front of PostgreSQL.
// PgBouncer refuses to run as root, so when we are root it runs as the
// postgres OS user and its files go to a directory that user owns.
func startPgBouncer(ctx context.Context, bin, dir string, pgPort int) (*target, error) {
	dir = filepath.Join(dir, "pgbouncer")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("starting pgbouncer: %w", err)
	}
	cred, err := unprivileged()
	if err != nil {
		return nil, err
	}
	userlist := filepath.Join(dir, "userlist.txt")
	if err := os.WriteFile(userlist, []byte(`"`+pgserver.Superuser+`" ""`+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("starting pgbouncer: %w", err)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := pgserver.FreePort()
		if err != nil {
			return nil, err
		}
		ini := filepath.Join(dir, "pgbouncer.ini")
		if err := os.WriteFile(ini, []byte(pgbouncerIni(dir, port, pgPort)), 0o644); err != nil {
			return nil, fmt.Errorf("starting pgbouncer: %w", err)
		}
		if cred != nil {
			for _, f := range []string{dir, ini, userlist} {
				if err := os.Chown(f, int(cred.Uid), int(cred.Gid)); err != nil {
					return nil, fmt.Errorf("starting pgbouncer: %w", err)
				}
			}
		}
		cmd := exec.Command(bin, ini)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		p, err := startProc(pgbouncer, cmd, filepath.Join(dir, "stderr.log"))
		if err != nil {
			return nil, err
		}
		t := &target{name: pgbouncer, port: port, proc: p}
		if lastErr = waitAccepting(ctx, t); lastErr == nil {
			return t, nil
		}
		p.stop(syscall.SIGKILL, time.Second)
	}
	return nil, lastErr
}

// dropServerConns makes PgBouncer close all its connections to the bench
// database, through its admin console (KILL, then RESUME to accept again).
func dropServerConns(ctx context.Context, t *target) error {
	dsn := strings.Replace(t.dsn(), "dbname="+benchDB, "dbname=pgbouncer", 1)
	conn, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("pgbouncer admin console: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, cmd := range []string{"KILL " + benchDB, "RESUME " + benchDB} {
		if _, err := conn.Exec(ctx, cmd).ReadAll(); err != nil {
			return fmt.Errorf("pgbouncer admin console: %s: %w", cmd, err)
		}
	}
	return nil
}

// openServerConns makes PgBouncer open n server connections: n clients each
// run a query at once (in session mode each gets its own server connection)
// and leave, and their server connections stay in the pool.
func openServerConns(ctx context.Context, t *target, n int) error {
	conns := make([]*pgconn.PgConn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if conns[i], errs[i] = pgconn.Connect(ctx, t.dsn()); errs[i] == nil {
				_, errs[i] = conns[i].Exec(ctx, "SELECT 1").ReadAll()
			}
		}()
	}
	wg.Wait()
	closeAll(conns)
	return errors.Join(errs...)
}

// pgbouncerIni is the configuration of the run: session mode, trust, room for
// the 1,000 idle clients, no per-connection logging (lockguard runs at
// log level warn, which logs nothing per connection either).
func pgbouncerIni(dir string, port, pgPort int) string {
	return fmt.Sprintf(`[databases]
* = host=127.0.0.1 port=%d

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
admin_users = %s
pool_mode = session
max_client_conn = 2000
default_pool_size = 100
ignore_startup_parameters = extra_float_digits
logfile = %s
log_connections = 0
log_disconnections = 0
`, pgPort, port, filepath.Join(dir, "userlist.txt"), pgserver.Superuser, filepath.Join(dir, "pgbouncer.log"))
}

// unprivileged returns the credential of the postgres OS user when we are
// root (nil otherwise: run as ourselves).
func unprivileged() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(pgserver.Superuser)
	if err != nil {
		return nil, fmt.Errorf("pgbouncer refuses to run as root and there is no postgres user: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("looking up user postgres: bad uid %q or gid %q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// clockTicks is the unit of utime and stime in /proc/PID/stat.
var clockTicks = func() int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return 100
}()

// procStat is the part of /proc/PID/stat this program reads.
type procStat struct {
	ppid                         int
	utime, stime, cutime, cstime time.Duration
}

// readStat reads /proc/PID/stat; its times cover all threads of the process.
func readStat(pid int) (procStat, error) {
	var st procStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, err
	}
	// The command name (field 2) may hold spaces; the fields after it do not.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return st, errors.New("unexpected /proc/PID/stat format")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return st, errors.New("unexpected /proc/PID/stat format")
	}
	// f[0] is field 3 (state): ppid is field 4, utime, stime, cutime and
	// cstime are fields 14 to 17, in clock ticks.
	st.ppid, _ = strconv.Atoi(f[1])
	var ticks [4]int64
	for k := range ticks {
		if ticks[k], err = strconv.ParseInt(f[11+k], 10, 64); err != nil {
			return st, errors.New("unexpected /proc/PID/stat format")
		}
	}
	toDur := func(t int64) time.Duration { return time.Duration(t) * time.Second / time.Duration(clockTicks) }
	st.utime, st.stime, st.cutime, st.cstime = toDur(ticks[0]), toDur(ticks[1]), toDur(ticks[2]), toDur(ticks[3])
	return st, nil
}

// cpuTime returns the user+system CPU time process pid has used.
func cpuTime(pid int) (time.Duration, error) {
	st, err := readStat(pid)
	return st.utime + st.stime, err
}

// statusKiB returns a "kB" field of /proc/PID/status, such as VmRSS.
func statusKiB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || name != field {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// pgbenchEnv is the environment of pgbench: no TLS or GSS negotiation at
// connect, which would add round trips that only some targets answer.
func pgbenchEnv() []string {
	return append(os.Environ(), "PGSSLMODE=disable", "PGGSSENCMODE=disable")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
