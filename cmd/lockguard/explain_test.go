package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lockguard/lockguard/internal/pgserver"
)

func runExplain(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = cmdExplain(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestExplainText(t *testing.T) {
	code, out, errOut := runExplain(t, "", "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id); CREATE INDEX CONCURRENTLY i ON orders (note)")
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	for _, want := range []string{
		"1. ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id)",
		"ALTER TABLE (ddl): ADD CONSTRAINT FOREIGN KEY",
		"SHARE ROW EXCLUSIVE  orders  target",
		"blocks writes and other SHARE ROW EXCLUSIVE locks of users until commit",
		"scans table: yes",
		"2. CREATE INDEX CONCURRENTLY i ON orders (note)",
		"transaction block: NOT allowed",
		"(pass --dsn to consult the live catalog)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// set_config's arguments as bind parameters are named as such.
	code, out, errOut = runExplain(t, "", "SELECT set_config($1, $2, $3); SELECT set_config('search_path', $1, true)")
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	for _, want := range []string{
		"setting: $1 = $2 (transaction (LOCAL) when $3 is true, else session)",
		"setting: search_path = $1 (transaction (LOCAL))",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestExplainStdinAndJSON(t *testing.T) {
	code, out, errOut := runExplain(t, "BEGIN; SET LOCAL lock_timeout = '2s'; DROP TABLE scratch; COMMIT;", "--json", "-")
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	var got struct {
		Catalog    bool `json:"catalog"`
		Statements []struct {
			SQL      string `json:"sql"`
			Tag      string `json:"tag"`
			Class    string `json:"class"`
			TxKind   string `json:"tx_kind"`
			NoTx     bool   `json:"no_tx_block"`
			Strong   string `json:"strongest"`
			Settings []struct {
				Name, Value string
				Local       bool
			} `json:"settings"`
			Locks []struct {
				Relation, Mode, PgMode, Role, Blocks string
				PgModeTag                            string `json:"pg_mode"`
			} `json:"locks"`
			Unknown []string `json:"unknown"`
		} `json:"statements"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("bad JSON: %v\n%s", err, out)
	}
	if got.Catalog || len(got.Statements) != 4 {
		t.Fatalf("catalog %v, %d statements:\n%s", got.Catalog, len(got.Statements), out)
	}
	s := got.Statements
	if s[0].Tag != "BEGIN" || s[0].TxKind != "begin" || s[0].Class != "transaction" {
		t.Errorf("statement 1: %+v", s[0])
	}
	if len(s[1].Settings) != 1 || s[1].Settings[0].Name != "lock_timeout" || s[1].Settings[0].Value != "2s" || !s[1].Settings[0].Local {
		t.Errorf("statement 2 settings: %+v", s[1].Settings)
	}
	if s[2].SQL != "DROP TABLE scratch" || s[2].Strong != "ACCESS EXCLUSIVE" || len(s[2].Locks) != 1 ||
		s[2].Locks[0].Relation != "scratch" || s[2].Locks[0].PgModeTag != "AccessExclusiveLock" || s[2].Locks[0].Role != "target" ||
		s[2].Locks[0].Blocks != "blocks reads and writes" || len(s[2].Unknown) == 0 {
		t.Errorf("statement 3: %+v", s[2])
	}
	// Empty lists are [] rather than null, so consumers need no nil checks.
	if !strings.Contains(out, `"subcommands": []`) || strings.Contains(out, "null") {
		t.Errorf("JSON has null lists:\n%s", out)
	}
}

func TestExplainErrors(t *testing.T) {
	if code, _, errOut := runExplain(t, "", "SELEC 1"); code != 1 || !strings.Contains(errOut, "syntax error") {
		t.Errorf("parse error: exit %d, stderr %q", code, errOut)
	}
	if code, _, _ := runExplain(t, "", "--no-such-flag", "SELECT 1"); code != 2 {
		t.Errorf("bad flag: exit %d, want 2", code)
	}
	if code, _, _ := runExplain(t, "", "-h"); code != 0 {
		t.Errorf("-h: exit %d, want 0", code)
	}
	if code, _, errOut := runExplain(t, "", "--dsn", "postgres://nobody@127.0.0.1:1/x?connect_timeout=2", "--timeout", "3s", "SELECT 1"); code != 1 || !strings.Contains(errOut, "connecting") {
		t.Errorf("unreachable server: exit %d, stderr %q", code, errOut)
	}
}

// TestExplainDSN runs explain against a real server: with the live catalog,
// dropping a foreign key names both tables with ACCESS EXCLUSIVE.
func TestExplainDSN(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := pgserver.Start(ctx, pgserver.Options{})
	if err != nil {
		t.Skipf("cannot start PostgreSQL: %v", err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	if err := srv.ExecDB(ctx, pgserver.TestDB, `
		CREATE TABLE users (id bigint PRIMARY KEY);
		CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint,
			CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id));`); err != nil {
		t.Fatal(err)
	}
	dsn := srv.DSN(pgserver.Superuser, "", pgserver.TestDB)

	code, out, errOut := runExplain(t, "", "--dsn", dsn, "ALTER TABLE orders DROP CONSTRAINT orders_user_fk")
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	for _, want := range []string{
		"ACCESS EXCLUSIVE  public.orders  target      blocks reads and writes of public.orders until commit",
		"ACCESS EXCLUSIVE  public.users   referenced  blocks reads and writes of public.users until commit",
		"DROP CONSTRAINT FOREIGN KEY",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "unknown:") {
		t.Errorf("with a catalog nothing should be unknown:\n%s", out)
	}

	code, out, errOut = runExplain(t, "", "--json", "--dsn", dsn, "ALTER TABLE orders DROP CONSTRAINT orders_user_fk")
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	var got struct {
		Catalog       bool `json:"catalog"`
		ServerVersion int  `json:"server_version"`
		Statements    []struct {
			Locks []struct {
				Relation, Mode, Role string
			} `json:"locks"`
		} `json:"statements"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if !got.Catalog || got.ServerVersion/10000 != srv.Version || len(got.Statements) != 1 {
		t.Fatalf("unexpected JSON:\n%s", out)
	}
	want := []struct{ Relation, Mode, Role string }{
		{"public.orders", "ACCESS EXCLUSIVE", "target"},
		{"public.users", "ACCESS EXCLUSIVE", "referenced"},
	}
	locks := got.Statements[0].Locks
	if len(locks) != len(want) {
		t.Fatalf("locks = %+v, want %+v", locks, want)
	}
	for i := range want {
		if locks[i].Relation != want[i].Relation || locks[i].Mode != want[i].Mode || locks[i].Role != want[i].Role {
			t.Errorf("lock %d = %+v, want %+v", i, locks[i], want[i])
		}
	}
}
