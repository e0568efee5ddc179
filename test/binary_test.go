package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/lockguard/lockguard/internal/pgserver"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// lockguardBinary builds cmd/lockguard once per test run.
func lockguardBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "lockguard-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "lockguard")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/lockguard").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// freeAddr is a loopback address whose port was free a moment ago.
func freeAddr(t testing.TB) string {
	port, err := pgserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// process is a running lockguard binary.
type process struct {
	cmd    *exec.Cmd
	listen string
	admin  string
	out    *lockedBuffer
	exited chan error
}

func startBinary(t *testing.T, args ...string) *process {
	t.Helper()
	for attempt := 1; ; attempt++ {
		p := &process{listen: freeAddr(t), admin: freeAddr(t), out: &lockedBuffer{}, exited: make(chan error, 1)}
		p.cmd = exec.Command(lockguardBinary(t), append([]string{"serve", "--listen", p.listen, "--admin", p.admin}, args...)...)
		p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.exited <- p.cmd.Wait() }()
		t.Cleanup(func() {
			p.cmd.Process.Kill()
			<-p.exited
			if t.Failed() {
				t.Logf("lockguard output:\n%s", p.out)
			}
		})
		ready := waitUntil(60*time.Second, func() bool { return p.hasExited() || p.readyz() == http.StatusOK })
		exited := p.hasExited()
		switch {
		case ready && !exited:
			return p
		case !exited:
			t.Fatal("lockguard was not ready within 60s")
		case attempt < 3 && strings.Contains(p.out.String(), "address already in use"):
			// freeAddr's port was free when it looked; something (often an
			// outgoing connection's ephemeral port) took it since.
			t.Logf("attempt %d: a port was taken before lockguard could bind it; trying others", attempt)
		default:
			t.Fatalf("lockguard exited before it was ready:\n%s", p.out)
		}
	}
}

// sighup sends SIGHUP and waits for lockguard to log the reload it makes.
func (p *process) sighup(t *testing.T) {
	t.Helper()
	before := strings.Count(p.out.String(), "configuration reloaded")
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, func() bool { return strings.Count(p.out.String(), "configuration reloaded") > before })
}

// hasExited reports whether the process has ended; p.exited keeps the
// result for whoever waits on it next.
func (p *process) hasExited() bool {
	select {
	case err := <-p.exited:
		p.exited <- err
		return true
	default:
		return false
	}
}

func (p *process) readyz() int {
	resp, err := http.Get("http://" + p.admin + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (p *process) dsn() string {
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", pgserver.Superuser, p.listen, pgserver.TestDB)
}

// TestReloadAppliesToWhatRuns: the on-call engineer turns the watchdog from
// warn to terminate (or back) with a reload during an incident. The
// watchdog took its action and budgets at start, and ran only with shed
// on: the reload was logged as done while the running watchdog went on as
// before; log-level and drain-timeout were fixed at start too. Now a reload
// applies them at once, and says which changed settings only a restart
// applies.
func TestReloadAppliesToWhatRuns(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "lockguard.yaml")
	write := func(extra string) {
		if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf(`upstream: %s
upstream-sslmode: disable
monitor-dsn: %q
shed: false
monitor-interval: 100ms
monitor-busy-interval: 50ms
watchdog-idle: 300ms
%s`, pg.Addr(), directDSN(), extra)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("watchdog: warn\ndrain-timeout: 30s\n")
	p := startBinary(t, "--config", cfgFile)
	ctx := ctxT(t, time.Minute)
	tbl := createTable(t, ctx, "reload_watchdog", "id int")
	pid, release := holdLock(t, tbl)
	defer release()
	ddl := startExec(ctx, connect(t, directDSN()), "ALTER TABLE "+tbl+" ADD COLUMN c int")
	holder := fmt.Sprintf("pid=%d", pid)
	waitFor(t, 10*time.Second, func() bool {
		return strings.Contains(p.out.String(), "lock holder blocks others") && strings.Contains(p.out.String(), holder)
	})
	direct := connect(t, directDSN())
	alive := func() bool {
		var n int
		if err := direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	time.Sleep(time.Second)
	if !alive() {
		t.Fatal("the watchdog set to warn ended the lock holder")
	}
	if strings.Contains(p.out.String(), "level=DEBUG") {
		t.Fatal("debug lines at log-level info")
	}
	write("watchdog: terminate\nevent-loops: 2\nlog-level: debug\ndrain-timeout: 30s\n")
	p.sighup(t)
	waitFor(t, 10*time.Second, func() bool { return !alive() })
	if st := p.policySettings(t); st["watchdog"] != "terminate" || st["monitor"] != true {
		t.Errorf("/api/policy settings watchdog=%v monitor=%v after the reload, want terminate and true", st["watchdog"], st["monitor"])
	}
	select {
	case err := <-ddl:
		if err != nil {
			t.Fatalf("the DDL after the watchdog ended its blocker: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the DDL did not land after the watchdog ended its blocker")
	}
	if !strings.Contains(p.out.String(), "action=terminate") {
		t.Errorf("the watchdog did not log its action:\n%s", p.out)
	}
	// log-level changes at once: a new session's start is a debug line.
	connect(t, p.dsn())
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(p.out.String(), "level=DEBUG") })
	if !strings.Contains(p.out.String(), `level=WARN msg="these settings changed but apply only on restart; the running values stay" settings=event-loops`) {
		t.Errorf("the reload did not say that event-loops changes only on restart:\n%s", p.out)
	}
	// drain-timeout too: started with 30 s, reloaded to 1 s, a SIGTERM
	// with a transaction open ends lockguard within about a second.
	write("watchdog: terminate\ndrain-timeout: 1s\n")
	p.sighup(t)
	open := connect(t, p.dsn())
	if _, err := open.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("lockguard took %v to stop with drain-timeout reloaded to 1s", took)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("lockguard did not stop within 20 s of SIGTERM with drain-timeout reloaded to 1s (started with 30s)")
	}
}

// TestReloadTurningTheGuardOnSaysWhatIsMissing: lockguard started with the
// guard off opens no side connection; a reload that turns the guard on gets
// a guard from the SQL text alone, and says so instead of reporting a
// plain success.
func TestReloadTurningTheGuardOnSaysWhatIsMissing(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "lockguard.yaml")
	write := func(guard bool) {
		if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf("upstream: %s\nupstream-sslmode: disable\nmonitor-dsn: %q\nguard: %v\n",
			pg.Addr(), directDSN(), guard)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(false)
	p := startBinary(t, "--config", cfgFile)
	write(true)
	p.sighup(t)
	if !strings.Contains(p.out.String(), `level=WARN msg="the guard is on, from the SQL text alone`) {
		t.Errorf("turning the guard on by reload drew no warning about the side connection:\n%s", p.out)
	}
	// The status page shows what runs: no monitor connection.
	if st := p.policySettings(t); st["guard"] != true || st["monitor"] != false {
		t.Errorf("/api/policy settings guard=%v monitor=%v, want true and false (the guard runs without its side connection)", st["guard"], st["monitor"])
	}
}

// policySettings returns the settings the status page's /api/policy shows.
func (p *process) policySettings(t *testing.T) map[string]any {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/api/policy")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var pol struct {
		Settings map[string]any `json:"settings"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&pol); err != nil {
		t.Fatal(err)
	}
	return pol.Settings
}

// TestBinarySighupReload: SIGHUP re-reads the config file; new sessions use
// it, open ones keep going, and a broken file keeps the old settings.
func TestBinarySighupReload(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "lockguard.yaml")
	write := func(s string) {
		if err := os.WriteFile(cfgFile, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf("upstream: %s\nupstream-sslmode: disable\n", pg.Addr()))
	p := startBinary(t, "--config", cfgFile)
	ctx := ctxT(t, 30*time.Second)
	before := connect(t, p.dsn())

	write(fmt.Sprintf("upstream: %s\nupstream-sslmode: disable\nmax-connections: 1\n", pg.Addr()))
	p.sighup(t)
	if _, err := pgx.Connect(ctx, p.dsn()); pgCode(err) != "53300" {
		t.Fatalf("after reload to max-connections 1: got %v, want 53300", err)
	}
	var n int
	if err := before.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
		t.Fatalf("session opened before the reload: %v", err)
	}
	write("upstream: [broken\n")
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(p.out.String(), "reload failed") })
	if _, err := pgx.Connect(ctx, p.dsn()); pgCode(err) != "53300" {
		t.Fatalf("a broken file changed the settings: %v", err)
	}
	// The admin endpoint reloads too, and says when it could not.
	post := func() int {
		resp, err := http.Post("http://"+p.admin+"/reload", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(); code != http.StatusBadRequest {
		t.Fatalf("POST /reload with a broken file: %d", code)
	}
	write(fmt.Sprintf("upstream: %s\nupstream-sslmode: disable\nmax-connections: 100\n", pg.Addr()))
	if code := post(); code != http.StatusOK {
		t.Fatalf("POST /reload: %d", code)
	}
	if _, err := pgx.Connect(ctx, p.dsn()); err != nil {
		t.Fatalf("after POST /reload to max-connections 100: %v", err)
	}
}

// TestBinarySigtermDrain: SIGTERM stops accepting, reports not ready, lets
// an open transaction commit, then exits 0.
func TestBinarySigtermDrain(t *testing.T) {
	p := startBinary(t, "--upstream", pg.Addr(), "--upstream-sslmode", "disable", "--drain-timeout", "20s")
	ctx := ctxT(t, 30*time.Second)
	idle := connect(t, p.dsn())
	busy := connect(t, p.dsn())
	tx, err := busy.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	waitFor(t, 5*time.Second, func() bool { return p.readyz() != http.StatusOK })
	if _, err := idle.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("idle session still served after SIGTERM")
	}
	if _, err := pgx.Connect(ctx, p.dsn()); err == nil {
		t.Fatal("new session accepted after SIGTERM")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit during drain: %v", err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
		p.exited <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("lockguard did not exit after its last session ended")
	}
}

// TestBinaryThrowawayPostgres runs what `make run` runs: lockguard starts its
// own PostgreSQL, prints how to connect, and psql works through it.
func TestBinaryThrowawayPostgres(t *testing.T) {
	listen := freeAddr(t)
	cmd := exec.Command(lockguardBinary(t), "serve", "--throwaway-postgres", "--listen", listen, "--admin", freeAddr(t))
	stdout, _ := cmd.StdoutPipe()
	if testing.Verbose() {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
	}()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var conninfo string
	timeout := time.After(90 * time.Second)
	for conninfo == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("lockguard exited before printing how to connect")
			}
			if s := strings.TrimSpace(l); strings.HasPrefix(s, "psql ") {
				conninfo = strings.Trim(strings.TrimPrefix(s, "psql "), `"`)
			}
		case <-timeout:
			t.Fatal("no connect hint within 90s")
		}
	}
	out, err := exec.Command("psql", conninfo, "-X", "-A", "-t", "-c", "SELECT 'through lockguard'").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "through lockguard" {
		t.Fatalf("psql %q: %v\n%s", conninfo, err, out)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("lockguard with a throwaway PostgreSQL did not stop on SIGTERM")
	}
}

// scrape returns the binary's /metrics.
func (p *process) scrape(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBinaryEventLoopMetrics: /metrics shows how many sessions the event
// loop relays, how many times one left it and how many times one came back:
// a client that stops reading a large result makes its session leave the
// loop, and once it has read it all the session goes back.
func TestBinaryEventLoopMetrics(t *testing.T) {
	p := startBinary(t, "--upstream", pg.Addr(), "--upstream-sslmode", "disable")
	sessions := func() float64 { return metricValue(p.scrape(t), "lockguard_event_loop_sessions") }
	departures := func() float64 { return metricValue(p.scrape(t), "lockguard_event_loop_departures_total") }
	if n := departures(); n != 0 {
		t.Fatalf("departures before any session: %v", n)
	}
	ctx := ctxT(t, 30*time.Second)
	reader := connect(t, p.dsn())
	var n int
	if err := reader.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return sessions() == 1 })

	// A second session asks for 64 MB and does not read it: lockguard's
	// write to it fills the socket, and the session leaves the loop.
	slow, _, err := relSession(p.listen, "lg_slow_reader", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	waitFor(t, 5*time.Second, func() bool { return sessions() == 2 })
	q, _ := (&pgproto3.Query{String: "SELECT repeat('x', 1 << 26)"}).Encode(nil)
	if _, err := slow.Write(q); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return departures() == 1 })
	if n := sessions(); n != 1 {
		t.Fatalf("sessions in the loop with one departed: %v, want 1", n)
	}
	// The session that stayed is still relayed by the loop.
	if err := reader.QueryRow(ctx, "SELECT 2").Scan(&n); err != nil || n != 2 {
		t.Fatalf("the other session: %d, %v", n, err)
	}
	returns := func() float64 { return metricValue(p.scrape(t), "lockguard_event_loop_returns_total") }
	if n := returns(); n != 0 {
		t.Fatalf("returns while the slow reader has not read: %v", n)
	}
	// It reads its result to the end: the loop takes it back.
	msgs, _, err := relReadUntilClosed(slow, 20*time.Second, 1)
	if err != nil || len(msgs) == 0 || msgs[len(msgs)-1].typ != 'Z' {
		t.Fatalf("the slow reader's result: %d messages, %v", len(msgs), err)
	}
	waitFor(t, 5*time.Second, func() bool { return returns() == 1 && sessions() == 2 })
	// The io_uring counters are exported (one session at a time makes
	// one operation per round, which uses plain system calls, so they may
	// be 0 here; TestEventLoopBatchesIO checks the counting).
	m := p.scrape(t)
	for _, name := range []string{"lockguard_event_loop_io_uring_enters_total", "lockguard_event_loop_io_uring_ops_total"} {
		if !strings.Contains(m, "\n"+name) {
			t.Fatalf("/metrics has no %s", name)
		}
	}
	enters := metricValue(m, "lockguard_event_loop_io_uring_enters_total")
	ops := metricValue(m, "lockguard_event_loop_io_uring_ops_total")
	if ops < enters {
		t.Fatalf("%v io_uring_enter calls carried %v operations", enters, ops)
	}
}
