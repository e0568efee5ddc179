package test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lockguard/lockguard/internal/pgserver"
)

// TestLocksAndCatalogStayInTheirDatabase: a relation name means something
// only within its database. lockguard's side connection (monitor-dsn) is
// in one database, and a lockguard serves sessions of several: a lock held
// in one database on a table, read by the monitor or taken by a DDL
// lockguard forwarded, once shed every statement on a table of the same
// name in every other database, and a constraint the catalog knew as a
// foreign key in the monitor's database was taken for one elsewhere (a
// drop-foreign-key warning and the referenced table's lock, for a CHECK
// constraint of a database without that table). Found with
// golang-migrate, goose, knex and node-pg-migrate, each in a database of
// its own behind one lockguard.
func TestLocksAndCatalogStayInTheirDatabase(t *testing.T) {
	ctx := ctxT(t, 90*time.Second)
	direct := connect(t, directDSN())
	other := uniqueName(t, "otherdb")
	if _, err := direct.Exec(ctx, "CREATE DATABASE "+other); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { connect(t, directDSN()).Exec(context.Background(), "DROP DATABASE "+other+" WITH (FORCE)") })
	otherDirect := pg.DSN(pgserver.Superuser, "", other)

	// The same table in both; in the monitor's database its constraint is
	// a foreign key to users, in the other a CHECK, and no users table.
	users := createTable(t, ctx, "dbs_users", "id int PRIMARY KEY")
	orders := createTable(t, ctx, "dbs_orders", "id int PRIMARY KEY, user_id int")
	key := orders + "_owner" // not named like a foreign key: only the catalog can say
	if _, err := direct.Exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s FOREIGN KEY (user_id) REFERENCES %s(id)", orders, key, users)); err != nil {
		t.Fatal(err)
	}
	if _, err := connect(t, otherDirect).Exec(ctx, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, user_id int);
		ALTER TABLE %[1]s ADD CONSTRAINT %s CHECK (user_id > 0)`, orders, key)); err != nil {
		t.Fatal(err)
	}

	p := startBinary(t, "--upstream", pg.Addr(), "--upstream-sslmode", "disable", "--monitor-dsn", directDSN(),
		"--hold-budget", "100ms", "--monitor-interval", "100ms", "--monitor-busy-interval", "50ms", "--lock-timeout", "10s")
	here := connect(t, p.dsn())
	var notices []string
	ocfg, err := pgx.ParseConfig(fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", pgserver.Superuser, p.listen, other))
	if err != nil {
		t.Fatal(err)
	}
	ocfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
	there, err := pgx.ConnectConfig(ctx, ocfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { there.Close(context.Background()) })
	read := "SELECT count(*) FROM " + orders
	readThere := func(what string) {
		t.Helper()
		start := time.Now()
		if _, err := there.Exec(ctx, read); err != nil {
			t.Fatalf("%s: the same read in database %s through lockguard: %v, want it to run", what, other, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("%s: the read in database %s took %v", what, other, d)
		}
	}

	t.Run("monitored lock", func(t *testing.T) {
		// LOCK TABLE straight to PostgreSQL, in the monitor's database.
		defer lockDirect(t, ctx, orders, "ACCESS EXCLUSIVE")()
		time.Sleep(300 * time.Millisecond) // a few monitor polls
		if shed, last := shedWithin(ctx, here, read, 10*time.Second); !shed {
			t.Fatalf("read behind a LOCK TABLE in the monitor's database: %v, want shed", last)
		}
		readThere("behind the LOCK TABLE")
	})

	t.Run("forwarded DDL", func(t *testing.T) {
		// A DDL through lockguard in the monitor's database waits behind
		// a reader there: lockguard's own hazard, and the monitor's.
		_, release := holdLock(t, orders)
		ddl := startExec(ctx, connect(t, p.dsn()), "ALTER TABLE "+orders+" ADD COLUMN note text")
		time.Sleep(300 * time.Millisecond) // the DDL forwarded and waiting
		if shed, last := shedWithin(ctx, here, read, 10*time.Second); !shed {
			release()
			t.Fatalf("read behind a waiting DDL in the monitor's database: %v, want shed", last)
		}
		readThere("behind the waiting DDL")
		release()
		if err := <-ddl; err != nil {
			t.Fatalf("the DDL after the reader ended: %v", err)
		}
	})

	t.Run("catalog", func(t *testing.T) {
		if _, err := there.Exec(ctx, "ALTER TABLE "+orders+" DROP CONSTRAINT "+key); err != nil {
			t.Fatalf("DROP CONSTRAINT of a CHECK in database %s: %v", other, err)
		}
		for _, n := range notices {
			if strings.Contains(n, "foreign") || strings.Contains(n, users) {
				t.Errorf("DROP CONSTRAINT of a CHECK in database %s drew %q: the monitor's database's foreign key of the same name", other, n)
			}
		}
		if !strings.Contains(p.out.String(), "a session of another database than monitor-dsn's") {
			t.Errorf("lockguard did not log that database %s has no monitor or catalog:\n%s", other, p.out)
		}
	})
}
