package test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestEnforceCodeBlocks: DDL inside a PL/pgSQL DO block — the
// "IF NOT EXISTS … THEN ALTER TABLE … END IF" of many migrations — is
// protected as the same DDL on its own: lockguard reads the block's body,
// injects its lock timeout ahead of the block, retries it while a long
// transaction holds the table, gives up with its own 55P03 naming both
// tables of the foreign key, and restores the client's lock_timeout. A
// block that commits inside is tried once: what it committed before it
// failed would stay.
func TestEnforceCodeBlocks(t *testing.T) {
	lg := startGuarded(t, nil)
	ctx := ctxT(t, 120*time.Second)
	direct := connect(t, directDSN())
	users, orders, fk := fkTables(t, ctx, direct)
	drop := "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_constraint WHERE conname = '" + fk + "') THEN ALTER TABLE " + orders + " DROP CONSTRAINT " + fk + "; END IF; END $$"

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		conn := connect(t, lg.superDSN())
		conn.Exec(ctx, "SET lock_timeout = '7s'", mode)
		// A long transaction reads the parent table, as in the incident:
		// without lockguard the block would wait for it, and every later
		// query on both tables behind the block.
		pid, release := holdLock(t, users)
		_, err := conn.Exec(ctxT(t, 15*time.Second), drop, mode)
		release()
		pe, ok := gaveUp(err)
		if !ok {
			t.Fatalf("mode %v: the DO block that drops a foreign key behind a long transaction: %v, want lockguard's 55P03 after its retries", mode, err)
		}
		if !strings.Contains(pe.Message, orders) || !strings.Contains(pe.Message, users) {
			t.Errorf("mode %v: message does not name both tables: %q", mode, pe.Message)
		}
		if !strings.Contains(pe.Detail, "4 attempts") || !strings.Contains(pe.Detail, fmt.Sprintf("pid %d", pid)) {
			t.Errorf("mode %v: detail = %q, want 4 attempts and blocker pid %d", mode, pe.Detail, pid)
		}
		if v := showLockTimeout(t, conn); v != "7s" {
			t.Fatalf("mode %v: client's lock_timeout after the block = %q, want 7s", mode, v)
		}
	}
	// The blocker ends during the retries: the block runs, the client sees
	// success.
	conn := connect(t, lg.superDSN())
	_, release := holdLock(t, users)
	released := make(chan struct{})
	go func() { time.Sleep(700 * time.Millisecond); release(); close(released) }()
	if _, err := conn.Exec(ctx, drop); err != nil {
		t.Fatalf("the block, with its blocker released during the retries: %v", err)
	}
	<-released
	var n int
	if err := direct.QueryRow(ctx, "SELECT count(*) FROM pg_constraint WHERE conname = $1", fk).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the foreign key is still there (%d, %v)", n, err)
	}
	// A procedure that does the same, through CALL: lockguard reads its
	// body from the catalog.
	proc := uniqueName(t, "drop_fk")
	if _, err := direct.Exec(ctx, "ALTER TABLE "+orders+" ADD CONSTRAINT "+fk+" FOREIGN KEY (user_id) REFERENCES "+users+"(id); "+
		"CREATE PROCEDURE "+proc+"(name text DEFAULT '"+fk+"') LANGUAGE plpgsql AS $$ BEGIN "+
		"EXECUTE 'ALTER TABLE "+orders+" DROP CONSTRAINT "+fk+"'; END $$"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { connect(t, directDSN()).Exec(context.Background(), "DROP PROCEDURE IF EXISTS "+proc) })
	pid, release := holdLock(t, users)
	_, err := conn.Exec(ctxT(t, 15*time.Second), "CALL "+proc+"()")
	release()
	pe, ok := gaveUp(err)
	if !ok ||
		!strings.Contains(pe.Detail, "4 attempts") || !strings.Contains(pe.Detail, fmt.Sprintf("pid %d", pid)) {
		t.Fatalf("CALL of a procedure that drops a foreign key behind a long transaction: %v, want lockguard's 55P03 after its retries", err)
	}
	// A block that commits inside is not retried.
	_, release = holdLock(t, orders)
	defer release()
	_, err = conn.Exec(ctx, "DO $$ BEGIN INSERT INTO "+users+" VALUES (1); COMMIT; ALTER TABLE "+orders+" ADD COLUMN c int; END $$")
	if !errors.As(err, &pe) || pe.Code != "55P03" || !strings.Contains(pe.Detail, "; 1 attempt") {
		t.Fatalf("a block that commits inside: %v, want 55P03 after one attempt", err)
	}
}
