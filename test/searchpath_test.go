package test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestSearchPathResolvesPerSession: an unqualified table name is the table
// of the session's search_path. lockguard resolved it with the catalog
// connection's (public), and shared that analysis between sessions: with
// both public.orders and tenant.orders, a session on the tenant's schema
// was shed behind a lock on public.orders, queued in PostgreSQL behind one
// on tenant.orders, and a DDL of its gave up naming public.orders. Found
// with pgjdbc's currentSchema; schema-per-tenant applications set
// search_path the same way, at connection start or with SET.
func TestSearchPathResolvesPerSession(t *testing.T) {
	ctx := ctxT(t, 90*time.Second)
	direct := connect(t, directDSN())
	schema := uniqueName(t, "tenant")
	tbl := uniqueName(t, "sp_orders")
	if _, err := direct.Exec(ctx, "CREATE SCHEMA "+schema+"; CREATE TABLE "+schema+"."+tbl+" (id int); CREATE TABLE public."+tbl+" (id int)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		connect(t, directDSN()).Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE; DROP TABLE public."+tbl)
	})
	p := startBinary(t, "--upstream", pg.Addr(), "--upstream-sslmode", "disable", "--monitor-dsn", directDSN(),
		"--hold-budget", "100ms", "--monitor-interval", "100ms", "--monitor-busy-interval", "50ms",
		"--lock-timeout", "200ms", "--retry-attempts", "1")

	// One session names the schema at start (pgjdbc's currentSchema), one
	// with SET; the same text was analysed first in public's session.
	publicConn := connect(t, p.dsn())
	cfg, err := pgx.ParseConfig(p.dsn())
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["search_path"] = schema
	cfg.RuntimeParams["statement_timeout"] = "3s" // a read queued in PostgreSQL fails instead of waiting
	atStart, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { atStart.Close(context.Background()) })
	withSet := connect(t, p.dsn())
	if _, err := withSet.Exec(ctx, "SET statement_timeout = '3s'; SET search_path = "+schema); err != nil {
		t.Fatal(err)
	}
	read := "SELECT count(*) FROM " + tbl
	if _, err := publicConn.Exec(ctx, read); err != nil {
		t.Fatal(err)
	}

	lock := func(qualified string) (release func()) {
		t.Helper()
		release = lockDirect(t, ctx, qualified, "ACCESS EXCLUSIVE")
		time.Sleep(300 * time.Millisecond) // a few monitor polls
		return release
	}

	t.Run("lock on the tenant's table", func(t *testing.T) {
		release := lock(schema + "." + tbl)
		defer release()
		for name, conn := range map[string]*pgx.Conn{"search_path at start": atStart, "SET search_path": withSet} {
			if shed, last := shedWithin(ctx, conn, read, 5*time.Second); !shed {
				t.Fatalf("%s: read behind a LOCK TABLE on %s.%s: %v, want shed", name, schema, tbl, last)
			}
		}
		if _, err := publicConn.Exec(ctx, read); err != nil {
			t.Fatalf("the same read in public's session: %v, want it to run", err)
		}
	})

	t.Run("lock on public's table", func(t *testing.T) {
		release := lock("public." + tbl)
		defer release()
		for name, conn := range map[string]*pgx.Conn{"search_path at start": atStart, "SET search_path": withSet} {
			if _, err := conn.Exec(ctx, read); err != nil {
				t.Fatalf("%s: read of %s.%s behind a LOCK TABLE on public.%s: %v, want it to run", name, schema, tbl, tbl, err)
			}
		}
	})

	t.Run("DDL names the tenant's table", func(t *testing.T) {
		_, release := holdLockOn(t, directDSN(), schema+"."+tbl)
		defer release()
		_, err := withSet.Exec(ctx, "ALTER TABLE "+tbl+" ADD COLUMN note text")
		pe, ok := gaveUp(err)
		if !ok {
			t.Fatalf("ALTER TABLE behind a reader: %v, want lockguard's 55P03", err)
		}
		if !strings.Contains(pe.Message, schema+"."+tbl) {
			t.Errorf("message %q does not name %s.%s", pe.Message, schema, tbl)
		}
	})
}

// TestSearchPathFollowsSetRoleThroughUser: with "$user" in the session's
// search_path, SET ROLE changes which schema an unqualified name is in.
// lockguard keeps one analyzer per path and role; a session that first
// reads as the superuser (public's table) and then as the tenant's role
// reads the tenant's table, and is shed behind a lock on it.
func TestSearchPathFollowsSetRoleThroughUser(t *testing.T) {
	ctx := ctxT(t, 60*time.Second)
	direct := connect(t, directDSN())
	tenant, tbl := uniqueName(t, "tenantrole"), uniqueName(t, "sp_items")
	if _, err := direct.Exec(ctx, fmt.Sprintf(`CREATE ROLE %[1]s NOLOGIN; CREATE SCHEMA %[1]s AUTHORIZATION %[1]s;
		CREATE TABLE %[1]s.%[2]s (id int); ALTER TABLE %[1]s.%[2]s OWNER TO %[1]s; CREATE TABLE public.%[2]s (id int)`, tenant, tbl)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c := connect(t, directDSN())
		c.Exec(context.Background(), "DROP SCHEMA "+tenant+" CASCADE; DROP TABLE public."+tbl)
		c.Exec(context.Background(), "DROP ROLE "+tenant)
	})
	p := startBinary(t, "--upstream", pg.Addr(), "--upstream-sslmode", "disable", "--monitor-dsn", directDSN(),
		"--hold-budget", "100ms", "--monitor-interval", "100ms", "--monitor-busy-interval", "50ms")
	conn := connect(t, p.dsn())
	// Not the server's default path, so lockguard resolves names in it.
	if _, err := conn.Exec(ctx, `SET statement_timeout = '3s'; SET search_path = "$user", public, pg_temp`); err != nil {
		t.Fatal(err)
	}
	read := "SELECT count(*) FROM " + tbl
	release := lockDirect(t, ctx, tenant+"."+tbl, "ACCESS EXCLUSIVE")
	defer release()
	time.Sleep(300 * time.Millisecond) // a few monitor polls
	if _, err := conn.Exec(ctx, read); err != nil {
		t.Fatalf("as the superuser, %s reads public.%s: %v, want it to run", read, tbl, err)
	}
	if _, err := conn.Exec(ctx, "SET ROLE "+tenant); err != nil {
		t.Fatal(err)
	}
	if shed, last := shedWithin(ctx, conn, read, 5*time.Second); !shed {
		t.Fatalf("as %s, the read of %s.%s behind a LOCK TABLE: %v, want shed", tenant, tenant, tbl, last)
	}
}
