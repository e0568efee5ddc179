package guard

import (
	"strings"
	"testing"
)

// conflictTable is the PostgreSQL documentation's "Conflicting Lock Modes"
// table: row = requested, column = held, X = conflict.
const conflictTable = `
AS   .......X
RS   ......XX
RE   ....XXXX
SUE  ...XXXXX
S    ..XX.XXX
SRE  ..XXXXXX
E    .XXXXXXX
AEL  XXXXXXXX
`

func TestConflictMatrix(t *testing.T) {
	rows := strings.Fields(strings.TrimSpace(conflictTable))
	for i := 0; i < len(rows); i += 2 {
		req, err := ParseLockMode(rows[i])
		if err != nil {
			t.Fatal(err)
		}
		for j, c := range rows[i+1] {
			held := LockMode(j + 1)
			want := c == 'X'
			if got := req.Conflicts(held); got != want {
				t.Errorf("%v.Conflicts(%v) = %v, want %v", req, held, got, want)
			}
			if got := held.Conflicts(req); got != want {
				t.Errorf("matrix not symmetric at %v/%v", held, req)
			}
			if WouldWait(req, held) != want {
				t.Errorf("WouldWait(%v, %v) != %v", req, held, want)
			}
		}
		if req.Conflicts(NoLock) || NoLock.Conflicts(req) {
			t.Errorf("NoLock must conflict with nothing (%v)", req)
		}
	}
	// The incident: a pending ACCESS EXCLUSIVE makes plain reads wait.
	if !WouldWait(AccessShare, AccessExclusive) {
		t.Error("SELECT must wait behind ACCESS EXCLUSIVE")
	}
	if LockMode(200).Conflicts(AccessShare) {
		t.Error("an invalid mode must not conflict")
	}
}

func TestParseLockMode(t *testing.T) {
	for m := NoLock; m <= AccessExclusive; m++ {
		for _, s := range []string{m.String(), m.PgName(), strings.ToLower(m.String()), m.String() + " MODE"} {
			got, err := ParseLockMode(s)
			if err != nil || got != m {
				t.Errorf("ParseLockMode(%q) = %v, %v; want %v", s, got, err, m)
			}
		}
		if m != NoLock && m.Blocks() == "blocks nothing" {
			t.Errorf("%v.Blocks() is empty", m)
		}
	}
	for s, want := range map[string]LockMode{"AccessExclusiveLock": AccessExclusive, "share  update   exclusive": ShareUpdateExclusive, "SRE": ShareRowExclusive, "ael": AccessExclusive} {
		if got, err := ParseLockMode(s); err != nil || got != want {
			t.Errorf("ParseLockMode(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseLockMode("SIReadLock"); err == nil {
		t.Error("SIReadLock is not a table lock mode")
	}
	if AccessExclusive.String() != "ACCESS EXCLUSIVE" || AccessExclusive.Blocks() != "blocks reads and writes" {
		t.Errorf("AEL renders as %q / %q", AccessExclusive, AccessExclusive.Blocks())
	}
	if Share.Blocks() != "blocks writes" {
		t.Errorf("SHARE blocks %q", Share.Blocks())
	}
}

func TestRelNameString(t *testing.T) {
	for _, tt := range []struct {
		r    RelName
		want string
	}{
		{RelName{"public", "users"}, "public.users"},
		{RelName{"", "users"}, "users"},
		{RelName{"App", "Order Items"}, `"App"."Order Items"`},
		{RelName{"s", `we"ird`}, `s."we""ird"`},
		{RelName{"s", "t1$"}, "s.t1$"},
	} {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("%#v.String() = %s, want %s", tt.r, got, tt.want)
		}
	}
}
