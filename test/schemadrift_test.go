package test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/internal/pgserver"
)

// driftTables creates two tables without a foreign key between them, and
// returns their names and the name the test gives the key it adds later: one
// that does not look like a foreign key's, so that only the catalog can say
// what it is.
func driftTables(t *testing.T, direct *pgx.Conn) (users, orders, key string) {
	t.Helper()
	users, orders = uniqueName(t, "users"), uniqueName(t, "orders")
	if _, err := direct.Exec(ctxT(t, 10*time.Second), fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY);
		CREATE TABLE %s (id int PRIMARY KEY, user_id int)`, users, orders)); err != nil {
		t.Fatal(err)
	}
	dropAtEnd(t, orders, users)
	return users, orders, orders + "_owner"
}

// TestDDLSeesTheSchemaChangedElsewhere: a DDL is analysed on the catalog as
// it is when the DDL runs, not as lockguard last read it. Here lockguard
// reads the table's constraints for a DROP CONSTRAINT that fails (the
// constraint does not exist yet, so nothing is forgotten after it), then a
// connection that bypasses lockguard (a migration run directly, or through
// another lockguard replica) adds the foreign key, and the same statement
// comes again: it locks the referenced table too, and the strict policy
// knows it drops a foreign key.
func TestDDLSeesTheSchemaChangedElsewhere(t *testing.T) {
	ctx := ctxT(t, 120*time.Second)
	direct := connect(t, directDSN())
	addKey := func(users, orders, key string) {
		t.Helper()
		if _, err := direct.Exec(ctx, "ALTER TABLE "+orders+" ADD CONSTRAINT "+key+" FOREIGN KEY (user_id) REFERENCES "+users+"(id)"); err != nil {
			t.Fatal(err)
		}
	}
	mustNotExist := func(conn *pgx.Conn, sql string) {
		t.Helper()
		var pe *pgconn.PgError
		if _, err := conn.Exec(ctx, sql); !errors.As(err, &pe) || pe.Code != "42704" {
			t.Fatalf("%s before the key exists: %v, want PostgreSQL's 42704", sql, err)
		}
	}

	t.Run("locks", func(t *testing.T) {
		lg := startGuarded(t, nil)
		users, orders, key := driftTables(t, direct)
		drop := "ALTER TABLE " + orders + " DROP CONSTRAINT " + key
		conn := connect(t, lg.superDSN())
		mustNotExist(conn, drop)
		addKey(users, orders, key)
		// A long transaction reads the referenced table: the DROP needs
		// ACCESS EXCLUSIVE on it too, and gives up after its retries
		// naming both tables.
		pid, release := holdLock(t, users)
		_, err := conn.Exec(ctxT(t, 15*time.Second), drop)
		release()
		pe, ok := gaveUp(err)
		if !ok {
			t.Fatalf("DROP CONSTRAINT behind a long transaction on the referenced table: %v, want lockguard's 55P03", err)
		}
		if !strings.Contains(pe.Message, orders) || !strings.Contains(pe.Message, users) {
			t.Errorf("message does not name both tables: %q", pe.Message)
		}
		if !strings.Contains(pe.Detail, fmt.Sprintf("pid %d", pid)) {
			t.Errorf("detail = %q, want blocker pid %d", pe.Detail, pid)
		}
	})

	t.Run("policy", func(t *testing.T) {
		lg := startWithPolicy(t, guard.PolicyConfig{Preset: "strict"})
		users, orders, key := driftTables(t, direct)
		drop := "ALTER TABLE " + orders + " DROP CONSTRAINT " + key
		conn := connect(t, lg.superDSN())
		mustNotExist(conn, drop)
		addKey(users, orders, key)
		_, err := conn.Exec(ctx, drop)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != guard.CodePolicyBlock || !strings.Contains(pe.Detail, "drop-foreign-key") {
			t.Fatalf("DROP CONSTRAINT of a foreign key added elsewhere, strict policy: %v, want LG001 naming drop-foreign-key", err)
		}
		var n int
		if err := direct.QueryRow(ctx, "SELECT count(*) FROM pg_constraint WHERE conname = $1", key).Scan(&n); err != nil || n != 1 {
			t.Fatalf("the foreign key is gone (%d, %v): the blocked DDL ran", n, err)
		}
	})
}

// pendingDDL makes a reader hold tbl and sends a DDL on it straight to
// PostgreSQL: a pending ACCESS EXCLUSIVE that lockguards' monitors see.
// stop ends both.
func pendingDDL(t *testing.T, ctx context.Context, direct *pgx.Conn, tbl string) (stop func()) {
	t.Helper()
	_, release := holdLock(t, tbl)
	ddlCtx, stopDDL := context.WithCancel(ctx)
	ddl := startExec(ddlCtx, connect(t, directDSN()), "ALTER TABLE "+tbl+" ADD COLUMN x int")
	waitFor(t, 10*time.Second, func() bool {
		var n int
		if err := direct.QueryRow(ctx, "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = $1 AND NOT l.granted", tbl).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	})
	time.Sleep(300 * time.Millisecond) // a few monitor polls
	return func() { stopDDL(); <-ddl; release() }
}

// shedWithin runs sql on conn until lockguard sheds it (55P03) or d
// passes, and returns whether it did and the last outcome.
func shedWithin(ctx context.Context, conn *pgx.Conn, sql string, d time.Duration) (bool, error) {
	var last error
	shed := waitUntil(d, func() bool {
		_, last = conn.Exec(ctx, sql)
		var pe *pgconn.PgError
		return errors.As(last, &pe) && pe.Code == "55P03" && strings.HasPrefix(pe.Message, "lockguard: shed")
	})
	return shed, last
}

// TestCatalogMaxAgeAcrossReplicas: replica B analyses an INSERT into a
// table without a foreign key; a migration through replica A then adds one,
// which B does not hear of. Within catalog-max-age B reads the catalog
// again: the INSERT would take KEY SHARE row locks in the referenced table,
// so B holds it back behind a DDL pending there and sheds it, instead of
// letting it join PostgreSQL's lock queue.
func TestCatalogMaxAgeAcrossReplicas(t *testing.T) {
	a, b := twoReplicas(t, "--catalog-max-age", "1s", "--hold-budget", "200ms",
		"--monitor-interval", "100ms", "--monitor-busy-interval", "50ms")
	ctx := ctxT(t, time.Minute)
	direct := connect(t, directDSN())
	users := createTable(t, ctx, "drift_users", "id int PRIMARY KEY")
	items := createTable(t, ctx, "drift_items", "id int PRIMARY KEY, user_id int")
	other := createTable(t, ctx, "drift_other", "id int")
	if _, err := direct.Exec(ctx, "INSERT INTO "+users+" VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	pending := func(tbl string) (stop func()) { return pendingDDL(t, ctx, direct, tbl) }
	// The same text each time, which inserts one row once: later it
	// inserts nothing, so PostgreSQL itself would not wait for users.
	insert := "INSERT INTO " + items + " VALUES (1, 1) ON CONFLICT DO NOTHING"
	// With nothing pending B forwards the INSERT unanalysed; while a DDL
	// waits on another table it analyses it, from the catalog of before
	// the foreign key.
	stop := pending(other)
	bconn := connect(t, b.dsn())
	if _, err := bconn.Exec(ctx, insert); err != nil {
		t.Fatal(err)
	}
	stop()
	if _, err := connect(t, a.dsn()).Exec(ctx, "ALTER TABLE "+items+" ADD CONSTRAINT "+items+"_owner FOREIGN KEY (user_id) REFERENCES "+users+"(id)"); err != nil {
		t.Fatal(err)
	}
	stop = pending(users)
	defer stop()
	if shed, last := shedWithin(ctx, bconn, insert, 10*time.Second); !shed {
		t.Fatalf("INSERT into the referencing table on replica B behind a DDL pending on the referenced one: %v, want shed within catalog-max-age", last)
	}
}

// TestCatalogSurvivesAPostgresRestart: a restart of PostgreSQL breaks
// lockguard's catalog connection. lockguard opens another, so that after
// the restart a DROP CONSTRAINT of a foreign key is still known to lock the
// referenced table (before, every catalog fact stayed unknown until
// lockguard itself restarted).
func TestCatalogSurvivesAPostgresRestart(t *testing.T) {
	own := relOwnPG(t, nil)
	ownDSN := own.DSN(pgserver.Superuser, "", pgserver.TestDB)
	p := startBinary(t, "--upstream", own.Addr(), "--upstream-sslmode", "disable", "--monitor-dsn", ownDSN,
		"--lock-timeout", "300ms", "--retry-attempts", "2")
	ctx := ctxT(t, 2*time.Minute)
	if _, err := connect(t, ownDSN).Exec(ctx, `CREATE TABLE users_r (id int PRIMARY KEY);
		CREATE TABLE orders_r (id int PRIMARY KEY, user_id int CONSTRAINT orders_r_owner REFERENCES users_r(id))`); err != nil {
		t.Fatal(err)
	}
	// A DDL through lockguard before the restart: its catalog connection
	// is in use.
	if _, err := connect(t, p.dsn()).Exec(ctx, "ALTER TABLE orders_r ADD COLUMN note text"); err != nil {
		t.Fatal(err)
	}
	if err := own.Restart(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	var conn *pgx.Conn
	waitFor(t, 30*time.Second, func() bool {
		c, err := pgx.Connect(ctx, p.dsn())
		if err != nil {
			return false
		}
		conn = c
		return true
	})
	t.Cleanup(func() { conn.Close(context.Background()) })
	_, release := holdLockOn(t, ownDSN, "users_r")
	defer release()
	_, err := conn.Exec(ctx, "ALTER TABLE orders_r DROP CONSTRAINT orders_r_owner")
	pe, ok := gaveUp(err)
	if !ok {
		t.Fatalf("DROP CONSTRAINT behind a reader of the referenced table after the restart: %v, want lockguard's 55P03", err)
	}
	if !strings.Contains(pe.Message, "users_r") || !strings.Contains(pe.Message, "orders_r") {
		t.Errorf("message does not name both tables: %q (the catalog connection was not reopened)", pe.Message)
	}
}

// TestCatalogReadsTheServerVersionAgain: PostgreSQL upgraded in place
// (pg_upgrade, same address) behind a running lockguard. lockguard's
// catalog connection breaks and is reopened; it read server_version_num
// only at start, so rules scoped by server version went on judging by the
// old one. The test's side connection sees a current_setting of the test's
// own (search_path puts it before pg_catalog), which reports the version
// a table holds: a real server that reports another version after the
// reconnect, as no single PostgreSQL can.
func TestCatalogReadsTheServerVersionAgain(t *testing.T) {
	ctx := ctxT(t, time.Minute)
	direct := connect(t, directDSN())
	schema := fmt.Sprintf("lg_fakever_%d", time.Now().UnixNano())
	if _, err := direct.Exec(ctx, fmt.Sprintf(`CREATE SCHEMA %[1]s;
		CREATE TABLE %[1]s.v AS SELECT pg_catalog.current_setting('server_version_num') AS n;
		CREATE FUNCTION %[1]s.current_setting(name text) RETURNS text LANGUAGE sql STABLE AS
		  $$ SELECT CASE WHEN name = 'server_version_num' THEN (SELECT n FROM %[1]s.v) ELSE pg_catalog.current_setting(name) END $$`, schema)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
	monitor := directDSN() + "&application_name=" + schema + "&options=" + strings.ReplaceAll(url.QueryEscape("-c search_path="+schema+",public,pg_catalog"), "+", "%20")
	cfgFile := filepath.Join(t.TempDir(), "lockguard.yaml")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf(`upstream: %s
upstream-sslmode: disable
monitor-dsn: %q
policy:
  rules:
    drop-table:
      action: block
      versions: ">= 18"
`, pg.Addr(), monitor)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, "--config", cfgFile)
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(p.out.String(), `msg="monitor connection open"`) })
	first := createTable(t, ctx, "fakever_first", "id int")
	second := createTable(t, ctx, "fakever_second", "id int")
	conn := connect(t, p.dsn())
	// PostgreSQL 15 as lockguard started: the rule does not apply.
	if _, err := conn.Exec(ctx, "DROP TABLE "+first); err != nil {
		t.Fatalf("DROP TABLE on the server as it started (a rule for >= 18 only): %v", err)
	}
	// The upgrade: another version, and every side connection broken.
	if _, err := direct.Exec(ctx, "UPDATE "+schema+".v SET n = '180001'"); err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", schema); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the catalog checks a connection idle for a second
	_, err := conn.Exec(ctx, "DROP TABLE "+second)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != guard.CodePolicyBlock || !strings.Contains(pe.Detail, "drop-table") {
		t.Fatalf("DROP TABLE after the catalog reconnected to a server reporting 18.1: %v, want the drop-table rule's block", err)
	}
	if !strings.Contains(p.out.String(), "server_version=180001") {
		t.Errorf("lockguard did not log the version it read on reconnecting:\n%s", p.out)
	}
}

// TestCatalogReconnectForgetsCachedAnalyses: with catalog-max-age 0,
// analyses are kept until a DDL through lockguard. PostgreSQL comes back
// with another schema (a restore, a failover to a replica that was behind;
// here: a foreign key added directly, and the side connections
// terminated). The reopened catalog forgot its facts, but the analyses
// cached from them stayed: an INSERT into the referencing table went on
// being judged as if it had no foreign key. Now the reconnect forgets
// them too, and the INSERT is held back behind a DDL pending on the
// referenced table, and shed.
func TestCatalogReconnectForgetsCachedAnalyses(t *testing.T) {
	ctx := ctxT(t, time.Minute)
	app := fmt.Sprintf("lg_reconnect_%d", time.Now().UnixNano())
	p := startBinary(t, "--upstream", pg.Addr(), "--upstream-sslmode", "disable",
		"--monitor-dsn", directDSN()+"&application_name="+app, "--catalog-max-age", "0",
		"--hold-budget", "200ms", "--monitor-interval", "100ms", "--monitor-busy-interval", "50ms")
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(p.out.String(), `msg="monitor connection open"`) })
	direct := connect(t, directDSN())
	users := createTable(t, ctx, "reconn_users", "id int PRIMARY KEY")
	items := createTable(t, ctx, "reconn_items", "id int PRIMARY KEY, user_id int")
	other := createTable(t, ctx, "reconn_other", "id int")
	probe := createTable(t, ctx, "reconn_probe", "id int")
	if _, err := direct.Exec(ctx, "INSERT INTO "+users+" VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, p.dsn())
	// Analysed (something is pending) while items has no foreign key; the
	// same text later inserts nothing.
	insert := "INSERT INTO " + items + " VALUES (1, 1) ON CONFLICT DO NOTHING"
	stop := pendingDDL(t, ctx, direct, other)
	if _, err := conn.Exec(ctx, insert); err != nil {
		t.Fatal(err)
	}
	stop()
	if _, err := direct.Exec(ctx, "ALTER TABLE "+items+" ADD CONSTRAINT "+items+"_owner FOREIGN KEY (user_id) REFERENCES "+users+"(id)"); err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", app); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the catalog checks a connection idle for a second
	stop = pendingDDL(t, ctx, direct, users)
	defer stop()
	// Another statement's analysis uses the catalog: it reconnects.
	if _, err := conn.Exec(ctx, "INSERT INTO "+probe+" VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(p.out.String(), "catalog connection reopened") })
	if shed, last := shedWithin(ctx, conn, insert, 5*time.Second); !shed {
		t.Fatalf("INSERT into the referencing table behind a DDL pending on the referenced one, after the catalog reconnected: %v, want shed", last)
	}
}
