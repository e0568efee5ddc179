package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStatusPageInBrowser stages the incident against the lockguard binary
// — a report holds users in an open transaction, an ALTER TABLE … DROP
// CONSTRAINT of orders' foreign key (sent through lockguard) waits for
// ACCESS EXCLUSIVE on users, reads of users through lockguard are shed —
// and loads the status page in headless Chromium, with the admin token
// in the URL fragment. The rendered DOM must show the lock tree: the
// report as root blocker (described from pg_stat_activity), the DDL
// waiting under it with its relation and lock mode. A screenshot is left
// in $LOCKGUARD_ARTIFACTS (default test/artifacts/status-page.png).
func TestStatusPageInBrowser(t *testing.T) {
	chromium := findChromium(t)
	ctx := ctxT(t, 2*time.Minute)
	users, orders := uniqueName(t, "users"), uniqueName(t, "orders")
	direct := connect(t, directDSN())
	if _, err := direct.Exec(ctx, fmt.Sprintf(`
		CREATE TABLE %[1]s (id int PRIMARY KEY, name text);
		INSERT INTO %[1]s SELECT g, 'u' || g FROM generate_series(1, 100) g;
		CREATE TABLE %[2]s (id int PRIMARY KEY, user_id int CONSTRAINT %[2]s_user_fk REFERENCES %[1]s(id));`, users, orders)); err != nil {
		t.Fatal(err)
	}
	dropAtEnd(t, orders, users)

	const token = "status-page-test-token"
	// Spans to stderr, so the tree shows the DDL's trace id.
	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	p := startBinary(t, "--upstream", pg.Addr(), "--upstream-sslmode", "disable", "--monitor-dsn", directDSN(),
		"--admin-token", token, "--monitor-interval", "200ms", "--monitor-busy-interval", "50ms",
		// No lock timeout and no yielding: the DDL keeps waiting, so the
		// tree holds still while the browser looks at it.
		"--lock-timeout", "0", "--yield-waiters", "0", "--yield-wait", "0")

	// The report: ACCESS SHARE on users, idle in its transaction.
	report := connect(t, directDSN()+"&application_name=nightly-report")
	tx, err := report.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	var reportPID int
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&reportPID); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT count(*) FROM "+users+" WHERE name <> 'x'"); err != nil {
		t.Fatal(err)
	}

	// The migration, through lockguard.
	ddl := connect(t, p.dsn()+"&application_name=migrate")
	var ddlPID int
	if err := ddl.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&ddlPID); err != nil {
		t.Fatal(err)
	}
	ddlDone := make(chan error, 1)
	go func() {
		_, err := ddl.Exec(context.Background(), "ALTER TABLE "+orders+" DROP CONSTRAINT "+orders+"_user_fk")
		ddlDone <- err
	}()
	defer func() {
		tx.Rollback(context.Background())
		select {
		case err := <-ddlDone:
			if err != nil {
				t.Errorf("DDL after the report ended: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("DDL did not land after the report ended")
		}
	}()

	// The admin API shows the tree once the monitor has seen the wait.
	var tree struct {
		Roots []struct {
			PID      int `json:"pid"`
			Children []struct {
				PID      int    `json:"pid"`
				Relation string `json:"relation"`
				LockMode string `json:"lock_mode"`
			} `json:"children"`
		} `json:"roots"`
	}
	waitFor(t, 15*time.Second, func() bool {
		if err := adminGet(p.admin+"/api/locks", token, &tree); err != nil {
			t.Fatal(err)
		}
		for _, r := range tree.Roots {
			for _, c := range r.Children {
				if r.PID == reportPID && c.PID == ddlPID {
					return true
				}
			}
		}
		return false
	})

	// Reads of users through lockguard are shed instead of queueing.
	web := connect(t, p.dsn()+"&application_name=web-checkout")
	for i := 0; i < 3; i++ {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := web.Exec(qctx, "SELECT count(*) FROM "+users+" WHERE id = 42")
		cancel()
		if pgCode(err) != "55P03" {
			t.Fatalf("read of users behind the waiting DDL: %v, want 55P03 (shed)", err)
		}
	}
	var evs struct {
		Events []struct {
			Kind       string `json:"kind"`
			BlockerPID int    `json:"blocker_pid"`
		} `json:"events"`
	}
	if err := adminGet(p.admin+"/api/events", token, &evs); err != nil {
		t.Fatal(err)
	}
	shedEvents := 0
	for _, e := range evs.Events {
		if e.Kind == "shed" {
			shedEvents++
		}
	}

	url := "http://" + p.admin + "/#token=" + token
	dom := runChromium(t, chromium, "--virtual-time-budget=5000", "--dump-dom", url)
	nodes := domNodes(dom)
	root, waiter := nodes[reportPID], nodes[ddlPID]
	if root == nil || root["data-role"] != "root" {
		t.Errorf("the page does not show the report (pid %d) as root blocker: %v", reportPID, root)
	}
	wantRel := "public." + users
	if waiter == nil || waiter["data-role"] != "waiter" || waiter["data-waiting"] != "true" ||
		waiter["data-relation"] != wantRel || waiter["data-lock-mode"] != "ACCESS EXCLUSIVE" || waiter["data-source"] != "proxy" {
		t.Errorf("the page does not show the DDL (pid %d) waiting for ACCESS EXCLUSIVE on %s: %v", ddlPID, wantRel, waiter)
	}
	// The DDL's span is still open; the shed reads' spans, exported, link
	// to it.
	if tid := waiter["data-trace-id"]; len(tid) != 32 {
		t.Errorf("the DDL's node shows trace id %q, want its span's", tid)
	} else if !waitUntil(10*time.Second, func() bool { return strings.Contains(p.out.String(), tid) }) {
		t.Errorf("trace id %q of the DDL's node is in no exported span (a shed read's link)", tid)
	}
	for _, want := range []string{
		`id="conn-status" data-state="ok"`, // the token in the fragment reached the API
		"nightly-report",                   // the root blocker described from pg_stat_activity
		"idle in transaction",
		"DROP CONSTRAINT " + orders + "_user_fk",
		"WHERE name &lt;&gt; $1", // the report's statement, its literal replaced
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	// The token never stays in the page's address.
	if strings.Contains(dom, token) {
		t.Error("the token appears in the page")
	}
	// The shed reads hang under the DDL they would have queued behind,
	// with the session they came from.
	if shedEvents < 3 {
		t.Errorf("/api/events has %d shed events, want the 3 reads", shedEvents)
	}
	shed := regexp.MustCompile(`<ul class="affected" data-blocker-pid="` + fmt.Sprint(ddlPID) + `">.*?</ul>`).FindString(dom)
	if !strings.Contains(shed, `data-kind="shed"`) || !strings.Contains(shed, "×3") || !strings.Contains(shed, "web-checkout") ||
		!strings.Contains(shed, "WHERE id = $1") {
		t.Errorf("the page does not show the 3 shed reads (literals replaced) under the DDL (pid %d): %q", ddlPID, shed)
	}
	if !regexp.MustCompile(`<tr class="incident" data-id="[^"]*" data-root-pid="` + fmt.Sprint(reportPID) + `" data-ongoing="true">`).MatchString(dom) {
		t.Errorf("the page does not show an ongoing incident rooted at the report (pid %d)", reportPID)
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}

	// Without the token the page asks for one.
	if dom := runChromium(t, chromium, "--virtual-time-budget=3000", "--dump-dom", "http://"+p.admin+"/"); !strings.Contains(dom, `data-state="unauthorized"`) ||
		!strings.Contains(dom, `id="token-form" class="shown"`) {
		t.Errorf("without the token the page does not ask for it:\n%s", dom)
	}

	shot := artifactPath(t, "status-page.png")
	runChromium(t, chromium, "--virtual-time-budget=5000", "--window-size=1280,1000", "--screenshot="+shot, url)
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 10000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	t.Logf("screenshot of the status page: %s", shot)
}

// findChromium returns Chromium's path. Without one the test is skipped,
// except in CI (env CI set), where it fails: scripts/deps.sh installs it.
func findChromium(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("LOCKGUARD_CHROMIUM"), "/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium found (CI is set, so this fails instead of skipping): run scripts/deps.sh or apt-get install chromium, or set LOCKGUARD_CHROMIUM")
	}
	t.Skip("no chromium found: apt-get install chromium (or set LOCKGUARD_CHROMIUM) to run the status page in a real browser")
	return ""
}

// runChromium runs headless Chromium once with args and returns its
// stdout. It touches nothing but the URL given (loopback).
func runChromium(t *testing.T, chromium string, args ...string) string {
	t.Helper()
	profile, err := os.MkdirTemp("", "lockguard-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(profile)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, append([]string{"--headless", "--no-sandbox", "--disable-gpu",
		"--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--disable-extensions", "--disable-default-apps", "--disable-crash-reporter",
		"--no-default-browser-check", "--hide-scrollbars", "--user-data-dir=" + profile}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // helpers it left behind
	}
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, tail(stderr.String(), 30))
	}
	return stdout.String()
}

var (
	nodeTag = regexp.MustCompile(`<li class="node"[^>]*>`)
	attr    = regexp.MustCompile(`([a-z-]+)="([^"]*)"`)
)

// domNodes returns the attributes of each lock-tree node by pid.
func domNodes(dom string) map[int]map[string]string {
	out := map[int]map[string]string{}
	for _, tag := range nodeTag.FindAllString(dom, -1) {
		a := map[string]string{}
		for _, m := range attr.FindAllStringSubmatch(tag, -1) {
			a[m[1]] = m[2]
		}
		var pid int
		fmt.Sscan(a["data-pid"], &pid)
		out[pid] = a
	}
	return out
}

func adminGet(url, token string, v any) error {
	req, err := http.NewRequest("GET", "http://"+url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// artifactPath is where a test leaves a file for people to look at:
// $LOCKGUARD_ARTIFACTS, or test/artifacts (ignored by git).
func artifactPath(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv("LOCKGUARD_ARTIFACTS")
	if dir == "" {
		dir = "artifacts"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return abs
}
