package test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockguard/lockguard/internal/demo"
	"github.com/lockguard/lockguard/internal/pgserver"
)

// TestDemo runs `lockguard demo` end to end against the shared server with a
// short duration and a small workload, and checks what it reports and
// writes. It does not assert lockguard's figures (the guard's behaviour is
// what the demo measures), only that the direct run reproduces the incident.
// The deploy runs its DDL from a DO block (--ddl), as migrations that check
// first do: the same incident.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two 12 s workloads")
	}
	bin := lockguardBinary(t)
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ddl := "DO $$ BEGIN IF EXISTS (SELECT FROM pg_constraint WHERE conname = 'orders_user_fk') THEN " + demo.DefaultDDL + "; END IF; END $$"
	cmd := exec.CommandContext(ctx, bin, "demo", "--duration", "12s", "--workers", "16", "--pool", "8",
		"--out", out, "--upstream-dsn", pg.DSN(pgserver.Superuser, "", "postgres"), "--ddl", ddl)
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("lockguard demo: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	t.Logf("lockguard demo took %v:\n%s", time.Since(start).Round(time.Second), tail(stdout.String(), 40))

	for _, want := range []string{"direct   ", "lockguard", "Measured: ", "demo.html"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}

	js, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep demo.Report
	if err := json.Unmarshal(js, &rep); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	if rep.DDL != ddl {
		t.Errorf("report.json: DDL %q, want --ddl's %q", rep.DDL, ddl)
	}
	if len(rep.Runs) != 2 || rep.Run("direct") == nil || rep.Run("lockguard") == nil {
		t.Fatalf("report.json has runs %v, want direct and lockguard", runNames(rep.Runs))
	}
	for _, run := range rep.Runs {
		for _, tbl := range demo.Tables {
			ts := run.Table(tbl)
			if ts == nil {
				t.Errorf("run %s: no figures for %s", run.Name, tbl)
				continue
			}
			if ts.OK == 0 {
				t.Errorf("run %s: no successful request on %s", run.Name, tbl)
			}
			if len(run.OKPerBucket[tbl]) != 120 {
				t.Errorf("run %s: %d buckets for %s, want 120 (12 s / 100 ms)", run.Name, len(run.OKPerBucket[tbl]), tbl)
			}
		}
		if run.DDL.StartedAt == 0 || (!run.DDL.Landed && run.DDL.Error == "") {
			t.Errorf("run %s: no DDL outcome: %+v", run.Name, run.DDL)
		}
	}
	direct := rep.Run("direct")
	if !direct.DDL.Landed {
		t.Errorf("direct run: the DDL did not land: %+v", direct.DDL)
	}
	// The incident: readers of users queue behind the waiting ALTER for
	// most of the report transaction's 8 s.
	if s := direct.Table("users").Stall.Seconds; s < 3 {
		t.Errorf("direct run: users' longest stall is %.2f s; the incident should stall it for seconds", s)
	}
	if direct.MaxLockWaiters < 2 {
		t.Errorf("direct run: at most %d lock waiters seen; want the queue behind the ALTER", direct.MaxLockWaiters)
	}
	if rep.Headline == "" || !strings.Contains(rep.Headline, "products") {
		t.Errorf("headline %q", rep.Headline)
	}

	txt, err := os.ReadFile(filepath.Join(out, "report.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"users", "orders", "products", "longest stall", "DDL"} {
		if !strings.Contains(string(txt), want) {
			t.Errorf("report.txt lacks %q", want)
		}
	}
	page, err := os.ReadFile(filepath.Join(out, "demo.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), "<svg") || strings.Contains(string(page), "<script") {
		t.Errorf("demo.html should hold inline SVG and no script")
	}

	// The demo dropped its database.
	conn := connect(t, pg.DSN(pgserver.Superuser, "", "postgres"))
	var left int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname LIKE 'lockguard_demo_%'").Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d demo database(s) left behind", left)
	}
}

func runNames(runs []demo.RunReport) []string {
	var out []string
	for _, r := range runs {
		out = append(out, r.Name)
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
