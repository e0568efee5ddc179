package test

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/internal/enforce"
	"github.com/lockguard/lockguard/internal/pgserver"
)

func startWithPolicy(t *testing.T, cfg guard.PolicyConfig) *lockguard {
	t.Helper()
	pol, err := guard.NewPolicy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return startGuarded(t, func(g *enforce.Guard) { g.Policy = pol })
}

// psqlRun runs sql through lockguard with psql and returns its combined
// output and exit error.
func psqlRun(t *testing.T, lg *lockguard, sql string) (string, error) {
	t.Helper()
	host, port, _ := net.SplitHostPort(lg.addr)
	out, err := exec.Command("psql", fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=disable", host, port, pgserver.Superuser, pgserver.TestDB),
		"-X", "-v", "ON_ERROR_STOP=1", "-c", sql).CombinedOutput()
	return string(out), err
}

// TestPolicyWarnAndBlock: the default policy warns (NoticeResponse, which
// psql prints and pgx hands to OnNotice); the strict policy blocks with
// SQLSTATE LG001, a DETAIL naming the rule and a HINT; the safe alternative
// passes silently; an inline override lowers a block.
func TestPolicyWarnAndBlock(t *testing.T) {
	ctx := ctxT(t, 60*time.Second)
	tbl := uniqueName(t, "pol")
	direct := connect(t, directDSN())
	if _, err := direct.Exec(ctx, fmt.Sprintf(`CREATE TABLE %[1]s_users (id int PRIMARY KEY);
		CREATE TABLE %[1]s (id int PRIMARY KEY, email text, user_id int CONSTRAINT %[1]s_fk REFERENCES %[1]s_users(id))`, tbl)); err != nil {
		t.Fatal(err)
	}
	dropAtEnd(t, tbl, tbl+"_users")

	t.Run("default warns", func(t *testing.T) {
		lg := startWithPolicy(t, guard.PolicyConfig{})
		conn, notices := connectNotices(t, lg.superDSN())
		if _, err := conn.Exec(ctx, "CREATE INDEX "+tbl+"_email ON "+tbl+" (email)"); err != nil {
			t.Fatalf("default policy must not block: %v", err)
		}
		var found *pgconn.Notice
		got := notices.take()
		for _, n := range got {
			if strings.Contains(n.Detail, "create-index-blocking") {
				found = n
			}
		}
		if found == nil || found.Code != guard.CodeWarning || !strings.HasPrefix(found.Message, "lockguard: ") || found.Hint == "" {
			t.Fatalf("notices = %+v, want the create-index-blocking warning", got)
		}
		// The safe alternative: no warning.
		if _, err := conn.Exec(ctx, "CREATE INDEX CONCURRENTLY "+tbl+"_email2 ON "+tbl+" (email)"); err != nil {
			t.Fatal(err)
		}
		for _, n := range notices.take() {
			if strings.Contains(n.Detail, "create-index-blocking") {
				t.Fatalf("CONCURRENTLY warned: %+v", n)
			}
		}
		// The same in a PL/pgSQL block warns the same way.
		if _, err := conn.Exec(ctx, "DO $$ BEGIN CREATE INDEX "+tbl+"_email4 ON "+tbl+" (email); END $$"); err != nil {
			t.Fatal(err)
		}
		if got := notices.take(); !slices.ContainsFunc(got, func(n *pgconn.Notice) bool { return strings.Contains(n.Detail, "create-index-blocking") }) {
			t.Fatalf("notices = %+v, want the create-index-blocking warning for the index built in a DO block", got)
		}
		// psql prints the warning.
		out, err := psqlRun(t, lg, "CREATE INDEX "+tbl+"_email3 ON "+tbl+" (email)")
		if err != nil || !strings.Contains(out, "WARNING:  lockguard: ") {
			t.Fatalf("psql: %v\n%s", err, out)
		}
	})

	t.Run("strict blocks", func(t *testing.T) {
		lg := startWithPolicy(t, guard.PolicyConfig{Preset: "strict"})
		conn := connect(t, lg.superDSN())
		_, err := conn.Exec(ctx, "ALTER TABLE "+tbl+" DROP CONSTRAINT "+tbl+"_fk")
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != guard.CodePolicyBlock || !strings.Contains(pe.Detail, "drop-foreign-key") ||
			!strings.HasPrefix(pe.Message, "lockguard: ") || pe.Hint == "" {
			t.Fatalf("got %v, want LG001 naming drop-foreign-key", err)
		}
		// Wrapped in a PL/pgSQL block it is the same DDL, blocked the same way.
		_, err = conn.Exec(ctx, "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_constraint WHERE conname = '"+tbl+"_fk') THEN ALTER TABLE "+tbl+" DROP CONSTRAINT "+tbl+"_fk; END IF; END $$")
		if !errors.As(err, &pe) || pe.Code != guard.CodePolicyBlock || !strings.Contains(pe.Detail, "drop-foreign-key") {
			t.Fatalf("the DDL in a DO block: %v, want LG001 naming drop-foreign-key", err)
		}
		var n int
		direct.QueryRow(ctx, "SELECT count(*) FROM pg_constraint WHERE conname = $1", tbl+"_fk").Scan(&n)
		if n != 1 {
			t.Fatal("the blocked DDL ran")
		}
		out, err := psqlRun(t, lg, "ALTER TABLE "+tbl+" DROP CONSTRAINT "+tbl+"_fk")
		if err == nil || !strings.Contains(out, "ERROR:  lockguard: ") {
			t.Fatalf("psql: %v\n%s", err, out)
		}
		// An inline override with a reason lowers the block.
		if _, err := conn.Exec(ctx, `/* lockguard:allow drop-foreign-key reason="test window" */ ALTER TABLE `+tbl+" DROP CONSTRAINT "+tbl+"_fk"); err != nil {
			t.Fatalf("overridden DDL: %v", err)
		}
	})
}

// TestPolicyFollowsSavepoints: PostgreSQL releases the locks a transaction
// took after a savepoint when it rolls back to it (checked in pg_locks), so
// the rules about work after ACCESS EXCLUSIVE must not count them. lockguard
// once did, and the strict policy refused an UPDATE in a transaction that
// held no strong lock any more.
func TestPolicyFollowsSavepoints(t *testing.T) {
	ctx := ctxT(t, 60*time.Second)
	direct := connect(t, directDSN())
	tbl := createTable(t, ctx, "polsp", "id int")
	lg := startWithPolicy(t, guard.PolicyConfig{Preset: "strict"})
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		conn := connect(t, lg.superDSN())
		var pid int
		if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		holdsAccessExclusive := func() bool {
			var n int
			if err := direct.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE pid = $1 AND relation = $2::regclass
				AND mode = 'AccessExclusiveLock' AND granted`, pid, tbl).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n > 0
		}
		for _, q := range []string{"BEGIN", "SAVEPOINT a", "ALTER TABLE " + tbl + " ADD COLUMN x int", "ROLLBACK TO SAVEPOINT a"} {
			if _, err := conn.Exec(ctx, q, mode); err != nil {
				t.Fatalf("mode %v: %s: %v", mode, q, err)
			}
		}
		if holdsAccessExclusive() {
			t.Fatalf("mode %v: PostgreSQL still holds ACCESS EXCLUSIVE after ROLLBACK TO SAVEPOINT", mode)
		}
		if _, err := conn.Exec(ctx, "UPDATE "+tbl+" SET id = id", mode); err != nil {
			t.Fatalf("mode %v: UPDATE after the rolled-back ALTER: %v, want it to pass", mode, err)
		}
		// Released, not rolled back: the lock stays, and strict refuses.
		for _, q := range []string{"SAVEPOINT b", "ALTER TABLE " + tbl + " ADD COLUMN y int", "RELEASE SAVEPOINT b"} {
			if _, err := conn.Exec(ctx, q, mode); err != nil {
				t.Fatalf("mode %v: %s: %v", mode, q, err)
			}
		}
		if !holdsAccessExclusive() {
			t.Fatalf("mode %v: no ACCESS EXCLUSIVE after RELEASE SAVEPOINT", mode)
		}
		_, err := conn.Exec(ctx, "UPDATE "+tbl+" SET id = id", mode)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != guard.CodePolicyBlock || !strings.Contains(pe.Detail, "work-after-access-exclusive") {
			t.Fatalf("mode %v: UPDATE while ACCESS EXCLUSIVE is held: %v, want the strict policy's refusal", mode, err)
		}
		if _, err := conn.Exec(ctx, "ROLLBACK", mode); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStrictPolicyLetsThePartitionedIndexRecipeThrough: CREATE INDEX
// CONCURRENTLY does not work on a partitioned table, so lockguard's hint
// for an index on one is CREATE INDEX ON ONLY the parent (which builds
// nothing and locks only the parent, briefly), CONCURRENTLY on each
// partition, then ATTACH PARTITION. Under the strict policy every step of
// that recipe must go through (the catalog says the table is partitioned),
// while a plain CREATE INDEX on the parent is still blocked.
func TestStrictPolicyLetsThePartitionedIndexRecipeThrough(t *testing.T) {
	ctx := ctxT(t, 60*time.Second)
	tbl := uniqueName(t, "parted")
	if _, err := connect(t, directDSN()).Exec(ctx, fmt.Sprintf(`CREATE TABLE %[1]s (id int, at date) PARTITION BY RANGE (at);
		CREATE TABLE %[1]s_2026 PARTITION OF %[1]s FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')`, tbl)); err != nil {
		t.Fatal(err)
	}
	dropAtEnd(t, tbl)
	lg := startWithPolicy(t, guard.PolicyConfig{Preset: "strict"})
	conn := connect(t, lg.superDSN())
	if _, err := conn.Exec(ctx, "CREATE INDEX "+tbl+"_at_all ON "+tbl+" (at)"); pgCode(err) != guard.CodePolicyBlock {
		t.Fatalf("CREATE INDEX on the partitioned table under strict: %v, want blocked", err)
	}
	for _, sql := range []string{
		"CREATE INDEX " + tbl + "_at ON ONLY " + tbl + " (at)",
		"CREATE INDEX CONCURRENTLY " + tbl + "_2026_at ON " + tbl + "_2026 (at)",
		"ALTER INDEX " + tbl + "_at ATTACH PARTITION " + tbl + "_2026_at",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	var valid bool
	if err := conn.QueryRow(ctx, "SELECT indisvalid FROM pg_index WHERE indexrelid = $1::regclass", tbl+"_at").Scan(&valid); err != nil || !valid {
		t.Fatalf("the parent's index after the recipe: valid=%v (%v)", valid, err)
	}
}

// TestStrictPolicyLetsAMigrationToolRecordItsMigration: a migration tool
// runs the DDL, reads the catalog and writes its history row in one
// transaction (Django, Rails, Alembic, knex, goose, Flyway). The strict
// preset blocked the tool's own statements as work-after-access-exclusive,
// so no transactional migration of these tools could run under it. Work of
// the migration's own after the DDL is still blocked.
func TestStrictPolicyLetsAMigrationToolRecordItsMigration(t *testing.T) {
	ctx := ctxT(t, 60*time.Second)
	tbl := createTable(t, ctx, "strictmig", "id int")
	history := createTable(t, ctx, "migrations_hist", "id int")
	direct := connect(t, directDSN())
	if _, err := direct.Exec(ctx, "CREATE TABLE IF NOT EXISTS alembic_version (version_num varchar(32) PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	dropAtEnd(t, "alembic_version")
	lg := startWithPolicy(t, guard.PolicyConfig{Preset: "strict"})
	conn := connect(t, lg.superDSN())
	// golang-migrate records a migration in a transaction of its own, the
	// way it does with schema_migrations.
	if _, err := conn.Exec(ctx, "BEGIN READ WRITE; TRUNCATE alembic_version; INSERT INTO alembic_version VALUES ('x'); COMMIT", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("TRUNCATE of a history table under strict: %v, want it to run", err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	for _, sql := range []string{
		"ALTER TABLE " + tbl + " ADD COLUMN note text",
		"SELECT c.relname, a.attname FROM pg_catalog.pg_class c JOIN pg_attribute a ON a.attrelid = c.oid WHERE c.relname = '" + tbl + "'",
		"SELECT column_name FROM information_schema.columns WHERE table_name = '" + tbl + "'",
		"INSERT INTO alembic_version VALUES ('" + tbl + "')",
	} {
		if _, err := tx.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v, want it to run under strict", sql, err)
		}
	}
	_, err = tx.Exec(ctx, "INSERT INTO "+history+" VALUES (1)")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != guard.CodePolicyBlock || !strings.Contains(pe.Detail, "work-after-access-exclusive") {
		t.Fatalf("a write to a table of the migration's own after the DDL: %v, want LG001 work-after-access-exclusive", err)
	}
}

// TestPolicyFollowsApplicationNameSetLater: a rule scoped to applications
// matches the application_name in force, not only the startup packet's.
// pgjdbc (without assumeMinServerVersion) connects without one and SETs
// ApplicationName afterwards: a block rule for that application did not
// apply, and the DDL only warned.
func TestPolicyFollowsApplicationNameSetLater(t *testing.T) {
	ctx := ctxT(t, 30*time.Second)
	tbl := createTable(t, ctx, "appname", "a int, b int")
	lg := startWithPolicy(t, guard.PolicyConfig{Rules: map[string]guard.RuleConfig{
		"rename-column": {Action: "block", Applications: []string{"deploy-*"}},
	}})
	conn := connect(t, lg.superDSN())
	if _, err := conn.Exec(ctx, "SET application_name = 'deploy-tool'"); err != nil {
		t.Fatal(err)
	}
	_, err := conn.Exec(ctx, "ALTER TABLE "+tbl+" RENAME COLUMN a TO a2")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != guard.CodePolicyBlock || !strings.Contains(pe.Detail, "rename-column") {
		t.Fatalf("RENAME COLUMN after SET application_name = 'deploy-tool': %v, want LG001 rename-column", err)
	}
	if _, err := conn.Exec(ctx, "SET application_name = 'web'"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "ALTER TABLE "+tbl+" RENAME COLUMN b TO b2"); err != nil {
		t.Fatalf("RENAME COLUMN after SET application_name = 'web': %v, want it to run", err)
	}
}

// TestPolicyWarningsFollowClientMinMessages: a session at
// client_min_messages = error gets no WARNING from PostgreSQL, and now none
// from lockguard either (it got lockguard's all the same); RESET brings them
// back.
func TestPolicyWarningsFollowClientMinMessages(t *testing.T) {
	ctx := ctxT(t, 30*time.Second)
	tbl := createTable(t, ctx, "quietpol", "id int")
	lg := startWithPolicy(t, guard.PolicyConfig{})
	conn, notices := connectNotices(t, lg.superDSN())
	warned := func() bool {
		for _, n := range notices.take() {
			if strings.HasPrefix(n.Message, "lockguard: ") {
				return true
			}
		}
		return false
	}
	for i, c := range []struct {
		set  string
		want bool
	}{
		{"SET client_min_messages = error", false},
		{"SET client_min_messages TO 'ERROR'", false},
		{"RESET client_min_messages", true},
	} {
		if _, err := conn.Exec(ctx, c.set); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE INDEX %s_%d ON %s (id)", tbl, i, tbl)); err != nil {
			t.Fatal(err)
		}
		if got := warned(); got != c.want {
			t.Errorf("after %s: lockguard warned %v, want %v", c.set, got, c.want)
		}
	}
}
