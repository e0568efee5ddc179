package test

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestEnforcePortalSuspendedCounts: an Execute with a row limit ends with
// PortalSuspended instead of CommandComplete (JDBC's fetch size does
// this). When a later statement of the same sync point fails, lockguard
// counts how many statements ran before the error; a suspended Execute
// ran too. Here the COMMIT after it committed the block's SET, and the
// DDL's restore must keep the client's 7s.
func TestEnforcePortalSuspendedCounts(t *testing.T) {
	lg, ctx, tbl := guardedTable(t, "suspended")
	conn := connect(t, lg.superDSN())
	for _, q := range []string{"SET lock_timeout = '5s'", "BEGIN"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	hc, err := conn.PgConn().Hijack()
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Conn.Close()
	fe := hc.Frontend
	// roundTrip sends msgs and reads up to ReadyForQuery; it returns the
	// backend messages' types, the first error's SQLSTATE, the first
	// DataRow's first value and the transaction status.
	roundTrip := func(msgs ...pgproto3.FrontendMessage) (types, code, value string, status byte) {
		t.Helper()
		for _, m := range msgs {
			fe.Send(m)
		}
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := fe.Receive()
			if err != nil {
				t.Fatalf("after %q: %v", types, err)
			}
			switch m := m.(type) {
			case *pgproto3.PortalSuspended:
				types += "s"
			case *pgproto3.CommandComplete:
				types += "C"
			case *pgproto3.ErrorResponse:
				types += "E"
				if code == "" {
					code = m.Code
				}
			case *pgproto3.DataRow:
				types += "D"
				if value == "" && len(m.Values) > 0 {
					value = string(m.Values[0])
				}
			case *pgproto3.ReadyForQuery:
				return types, code, value, m.TxStatus
			}
		}
	}
	batch := []pgproto3.FrontendMessage{
		&pgproto3.Parse{Query: "SELECT generate_series(1, 3)"},
		&pgproto3.Bind{DestinationPortal: "rows"},
		&pgproto3.Execute{Portal: "rows", MaxRows: 1},
	}
	batch = append(batch, unnamedExec("SET lock_timeout = '7s'")...)
	batch = append(batch, unnamedExec("COMMIT")...)
	batch = append(batch, unnamedExec("SELECT 1/0")...)
	batch = append(batch, &pgproto3.Sync{})
	types, code, _, status := roundTrip(batch...)
	if types != "DsCCE" || code != "22012" || status != 'I' {
		t.Fatalf("the batch answered %q, SQLSTATE %s, status %c; want DsCCE, 22012 and I", types, code, status)
	}
	if _, code, _, _ := roundTrip(&pgproto3.Query{String: fmt.Sprintf("ALTER TABLE %s ADD COLUMN c int", tbl)}); code != "" {
		t.Fatalf("the DDL failed with %s", code)
	}
	if _, _, v, _ := roundTrip(&pgproto3.Query{String: "SHOW lock_timeout"}); v != "7s" {
		t.Fatalf("lock_timeout after the DDL = %q, want the 7s the COMMIT committed", v)
	}
}
