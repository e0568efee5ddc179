package guard

import (
	"strings"
	"testing"
	"time"
)

func TestSettingsRestore(t *testing.T) {
	a := NewAnalyzer(nil, 0)
	type step struct {
		sql  string
		inTx bool
	}
	for _, tc := range []struct {
		name    string
		steps   []step
		inTx    bool
		restore string
		start   map[string]string // startup parameters
		own     string            // the client's value (Effective), "" = the server's default
	}{
		{"never set", nil, false, "RESET lock_timeout", nil, ""},
		{"never set, in tx", nil, true, "SET LOCAL lock_timeout TO DEFAULT", nil, ""},
		{"session set", []step{{"SET lock_timeout = '5s'", false}}, false, "SET lock_timeout = '5s'", nil, ""},
		{"session set then reset", []step{{"SET lock_timeout = '5s'", false}, {"RESET lock_timeout", false}}, false, "RESET lock_timeout", nil, ""},
		{"set local outside tx is void", []step{{"SET LOCAL lock_timeout = '5s'", false}}, false, "RESET lock_timeout", nil, ""},
		{"session value seen in tx", []step{{"SET lock_timeout = '5s'", false}, {"BEGIN", false}}, true, "SET LOCAL lock_timeout = '5s'", nil, ""},
		{"set local in tx", []step{{"BEGIN", false}, {"SET LOCAL lock_timeout = '1s'", true}}, true, "SET LOCAL lock_timeout = '1s'", nil, ""},
		{"rolled back set", []step{{"BEGIN", false}, {"SET lock_timeout = '7s'", true}, {"ROLLBACK", true}}, false, "RESET lock_timeout", nil, ""},
		{"committed set", []step{{"BEGIN", false}, {"SET lock_timeout = '7s'", true}, {"COMMIT", true}}, false, "SET lock_timeout = '7s'", nil, ""},
		{"committed local", []step{{"BEGIN", false}, {"SET LOCAL lock_timeout = '7s'", true}, {"COMMIT", true}}, false, "RESET lock_timeout", nil, ""},
		{"reset all", []step{{"SET lock_timeout = '5s'", false}, {"RESET ALL", false}}, false, "RESET lock_timeout", nil, ""},
		// ROLLBACK TO undoes the SETs made since the savepoint; RELEASE keeps them.
		{"rollback to savepoint", []step{{"BEGIN", false}, {"SET lock_timeout = '5s'", true}, {"SAVEPOINT a", true},
			{"SET lock_timeout = '4s'", true}, {"ROLLBACK TO a", true}}, true, "SET LOCAL lock_timeout = '5s'", nil, ""},
		{"release savepoint", []step{{"BEGIN", false}, {"SAVEPOINT a", true}, {"SET lock_timeout = '4s'", true},
			{"RELEASE a", true}}, true, "SET LOCAL lock_timeout = '4s'", nil, ""},
		{"rollback to outer savepoint", []step{{"BEGIN", false}, {"SAVEPOINT a", true}, {"SET LOCAL lock_timeout = '4s'", true},
			{"SAVEPOINT b", true}, {"SET lock_timeout = '3s'", true}, {"ROLLBACK TO SAVEPOINT a", true}}, true, "SET LOCAL lock_timeout TO DEFAULT", nil, ""},
		{"savepoint kept after rollback to", []step{{"BEGIN", false}, {"SAVEPOINT a", true}, {"SET lock_timeout = '4s'", true},
			{"ROLLBACK TO a", true}, {"SET lock_timeout = '3s'", true}, {"ROLLBACK TO a", true}}, true, "SET LOCAL lock_timeout TO DEFAULT", nil, ""},
		{"released savepoints are gone", []step{{"BEGIN", false}, {"SAVEPOINT a", true}, {"SAVEPOINT b", true},
			{"RELEASE a", true}, {"SET lock_timeout = '3s'", true}, {"ROLLBACK TO b", true}}, true, "SET LOCAL lock_timeout = '3s'", nil, ""},
		{"reused savepoint name", []step{{"BEGIN", false}, {"SAVEPOINT a", true}, {"SET lock_timeout = '4s'", true},
			{"SAVEPOINT a", true}, {"SET lock_timeout = '3s'", true}, {"ROLLBACK TO a", true}}, true, "SET LOCAL lock_timeout = '4s'", nil, ""},
		{"savepoint set committed", []step{{"BEGIN", false}, {"SAVEPOINT a", true}, {"SET lock_timeout = '4s'", true},
			{"RELEASE a", true}, {"COMMIT", true}}, false, "SET lock_timeout = '4s'", nil, ""},
		// Values from the startup packet are the baseline RESET returns to.
		{"startup", nil, false, "RESET lock_timeout", map[string]string{"lock_timeout": "100ms"}, "100ms"},
		{"startup, in tx", []step{{"BEGIN", false}}, true, "SET LOCAL lock_timeout TO DEFAULT", map[string]string{"lock_timeout": "100ms"}, "100ms"},
		{"startup options", nil, false, "RESET lock_timeout", map[string]string{"options": "-c lock_timeout=150ms"}, "150ms"},
		{"startup options, long form", nil, false, "RESET lock_timeout", map[string]string{"options": `--search_path=a --lock-timeout=3s`}, "3s"},
		{"startup parameter overrides options", nil, false, "RESET lock_timeout",
			map[string]string{"options": "-clock_timeout=150ms", "lock_timeout": "250ms"}, "250ms"},
		{"set over startup", []step{{"SET lock_timeout = '5s'", false}}, false, "SET lock_timeout = '5s'", map[string]string{"lock_timeout": "100ms"}, "5s"},
		{"reset to startup", []step{{"SET lock_timeout = '5s'", false}, {"RESET lock_timeout", false}}, false, "RESET lock_timeout",
			map[string]string{"lock_timeout": "100ms"}, "100ms"},
		{"default in tx is startup", []step{{"BEGIN", false}, {"SET lock_timeout TO DEFAULT", true}}, true, "SET LOCAL lock_timeout TO DEFAULT",
			map[string]string{"lock_timeout": "100ms"}, "100ms"},
		{"discard all", []step{{"SET lock_timeout = '5s'", false}, {"DISCARD ALL", false}}, false, "RESET lock_timeout",
			map[string]string{"lock_timeout": "100ms"}, "100ms"},
		// A failed block ("" marks the failure) is rolled back at COMMIT.
		{"commit of a failed block", []step{{"BEGIN", false}, {"SET lock_timeout = '7s'", true}, {"", true},
			{"COMMIT", true}}, false, "RESET lock_timeout", nil, ""},
		{"prepare of a failed block", []step{{"BEGIN", false}, {"SET lock_timeout = '7s'", true}, {"", true},
			{"PREPARE TRANSACTION 'x'", true}}, false, "RESET lock_timeout", nil, ""},
		{"rollback to recovers a failed block", []step{{"BEGIN", false}, {"SET lock_timeout = '7s'", true}, {"SAVEPOINT a", true},
			{"", true}, {"ROLLBACK TO a", true}, {"COMMIT", true}}, false, "SET lock_timeout = '7s'", nil, ""},
		{"failure ends with the block", []step{{"BEGIN", false}, {"", true}, {"ROLLBACK", true}, {"BEGIN", false},
			{"SET lock_timeout = '7s'", true}, {"COMMIT", true}}, false, "SET lock_timeout = '7s'", nil, ""},
		// AND CHAIN ends the block and opens the next.
		{"commit and chain", []step{{"BEGIN", false}, {"SET lock_timeout = '7s'", true}, {"COMMIT AND CHAIN", true},
			{"SET LOCAL lock_timeout = '1s'", true}}, true, "SET LOCAL lock_timeout = '1s'", nil, ""},
		{"commit and chain keeps the commit", []step{{"BEGIN", false}, {"SET lock_timeout = '7s'", true}, {"COMMIT AND CHAIN", true},
			{"ROLLBACK", true}}, false, "SET lock_timeout = '7s'", nil, ""},
		{"savepoint after commit and chain", []step{{"BEGIN", false}, {"COMMIT AND CHAIN", true}, {"SAVEPOINT a", true},
			{"SET lock_timeout = '4s'", true}, {"ROLLBACK TO a", true}}, true, "SET LOCAL lock_timeout TO DEFAULT", nil, ""},
		// Restored at session level in a block the string left open: the
		// session's value, then the block's own.
		{"set local in a block left open", []step{{"BEGIN", false}, {"SET lock_timeout = '7s'", true}, {"COMMIT AND CHAIN", true},
			{"SET LOCAL lock_timeout = '1s'", true}}, false, "SET lock_timeout = '7s'; SET LOCAL lock_timeout = '1s'", nil, ""},
		{"set local to default in a block left open", []step{{"BEGIN", false}, {"SET LOCAL lock_timeout TO DEFAULT", true}},
			false, "RESET lock_timeout; SET LOCAL lock_timeout TO DEFAULT", nil, ""},
		{"set in a block left open", []step{{"BEGIN", false}, {"SET lock_timeout = '2s'", true}}, false, "SET lock_timeout = '2s'", nil, ""},
		// A SET LOCAL after a session-level SET in the same block lasts
		// until the block ends; COMMIT keeps the SET's value, as PostgreSQL
		// does.
		{"set local after set, committed", []step{{"BEGIN", false}, {"SET lock_timeout = '7s'", true},
			{"SET LOCAL lock_timeout = '1s'", true}, {"COMMIT", true}}, false, "SET lock_timeout = '7s'", nil, ""},
		{"set local after set, in the block", []step{{"BEGIN", false}, {"SET lock_timeout = '7s'", true},
			{"SET LOCAL lock_timeout = '1s'", true}}, true, "SET LOCAL lock_timeout = '1s'", nil, ""},
		{"set local after set in a block left open", []step{{"BEGIN", false}, {"SET lock_timeout = '7s'", true},
			{"SET LOCAL lock_timeout = '1s'", true}}, false, "SET lock_timeout = '7s'; SET LOCAL lock_timeout = '1s'", nil, ""},
		{"set local after reset, committed", []step{{"SET lock_timeout = '5s'", false}, {"BEGIN", false}, {"RESET lock_timeout", true},
			{"SET LOCAL lock_timeout = '1s'", true}, {"COMMIT", true}}, false, "RESET lock_timeout", nil, ""},
		{"set after set local, committed", []step{{"BEGIN", false}, {"SET LOCAL lock_timeout = '1s'", true},
			{"SET lock_timeout = '7s'", true}, {"COMMIT", true}}, false, "SET lock_timeout = '7s'", nil, ""},
		{"set local in a released savepoint after set", []step{{"BEGIN", false}, {"SET lock_timeout = '7s'", true},
			{"SAVEPOINT a", true}, {"SET LOCAL lock_timeout = '1s'", true}, {"RELEASE a", true}, {"COMMIT", true}},
			false, "SET lock_timeout = '7s'", nil, ""},
		{"set in a released savepoint after set local", []step{{"BEGIN", false}, {"SET LOCAL lock_timeout = '1s'", true},
			{"SAVEPOINT a", true}, {"SET lock_timeout = '3s'", true}, {"RELEASE a", true}, {"COMMIT", true}},
			false, "SET lock_timeout = '3s'", nil, ""},
		{"set local after set, rolled back to", []step{{"BEGIN", false}, {"SET lock_timeout = '7s'", true},
			{"SAVEPOINT a", true}, {"SET LOCAL lock_timeout = '1s'", true}, {"ROLLBACK TO a", true}},
			true, "SET LOCAL lock_timeout = '7s'", nil, ""},
		{"set local after set, rolled back", []step{{"SET lock_timeout = '5s'", false}, {"BEGIN", false}, {"SET lock_timeout = '7s'", true},
			{"SET LOCAL lock_timeout = '1s'", true}, {"ROLLBACK", true}}, false, "SET lock_timeout = '5s'", nil, ""},
		// BEGIN inside a block changes nothing (PostgreSQL's WARNING).
		{"begin inside a block", []step{{"BEGIN", false}, {"SET LOCAL lock_timeout = '1s'", true}, {"BEGIN", true}},
			true, "SET LOCAL lock_timeout = '1s'", nil, ""},
		{"begin inside a block, committed", []step{{"BEGIN", false}, {"SET lock_timeout = '7s'", true}, {"BEGIN", true},
			{"COMMIT", true}}, false, "SET lock_timeout = '7s'", nil, ""},
		{"reset all after set local to default", []step{{"SET lock_timeout = '1s'", false}, {"BEGIN", false},
			{"SET LOCAL lock_timeout TO DEFAULT", true}, {"RESET ALL", true}, {"COMMIT", true}}, false, "SET lock_timeout = '1s'", nil, ""},
		{"commit and chain of a failed block", []step{{"BEGIN", false}, {"SET lock_timeout = '7s'", true}, {"", true},
			{"COMMIT AND CHAIN", true}}, true, "SET LOCAL lock_timeout TO DEFAULT", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s Settings
			s.Start(func(n string) string { return tc.start[n] })
			for _, st := range tc.steps {
				if st.sql == "" {
					s.Failed()
					continue
				}
				an := a.Analyze(st.sql)
				if an.Err != nil {
					t.Fatal(an.Err)
				}
				for i := range an.Statements {
					s.Apply(&an.Statements[i], st.inTx)
				}
			}
			if got := strings.Join(s.AppendRestore(nil, "lock_timeout", tc.inTx), "; "); got != tc.restore {
				t.Fatalf("AppendRestore = %q, want %q", got, tc.restore)
			}
			if own, _ := s.Effective("lock_timeout"); tc.start != nil && own != tc.own {
				t.Fatalf("Effective = %q, want %q", own, tc.own)
			}
		})
	}
}

// TestSettingsCloneAndAfter: a clone takes changes (savepoints included)
// without passing them back; After is the value a change leaves for the
// statements after it, a reset's being the startup baseline.
func TestSettingsCloneAndAfter(t *testing.T) {
	a := NewAnalyzer(nil, 0)
	apply := func(s *Settings, sql string, inTx bool) *Statement {
		an := a.Analyze(sql)
		if an.Err != nil {
			t.Fatal(an.Err)
		}
		s.Apply(&an.Statements[0], inTx)
		return &an.Statements[0]
	}
	restore := func(s *Settings, inTx bool) string {
		return strings.Join(s.AppendRestore(nil, "lock_timeout", inTx), "; ")
	}
	var s Settings
	s.Start(func(n string) string { return map[string]string{"lock_timeout": "100ms"}[n] })
	apply(&s, "BEGIN", false)
	apply(&s, "SET lock_timeout = '5s'", true)
	apply(&s, "SAVEPOINT a", true)
	c := s.Clone()
	apply(&c, "SET lock_timeout = '4s'", true)
	apply(&c, "RELEASE a", true)
	apply(&c, "COMMIT", true)
	if got := restore(&c, false); got != "SET lock_timeout = '4s'" {
		t.Fatalf("clone: AppendRestore = %q", got)
	}
	if got := restore(&s, true); got != "SET LOCAL lock_timeout = '5s'" {
		t.Fatalf("original after the clone changed: AppendRestore = %q", got)
	}
	apply(&s, "SET lock_timeout = '3s'", true)
	apply(&s, "ROLLBACK TO a", true)
	if got := restore(&s, true); got != "SET LOCAL lock_timeout = '5s'" {
		t.Fatalf("original after the clone changed: AppendRestore = %q", got)
	}
	for _, tc := range []struct {
		sql, want string
		ok        bool
	}{
		{"SET lock_timeout = '1s'", "1s", true},
		{"SET LOCAL lock_timeout = '2s'", "2s", true},
		{"RESET lock_timeout", "100ms", true},
		{"SET lock_timeout TO DEFAULT", "100ms", true},
		{"RESET ALL", "100ms", true},
	} {
		an := a.Analyze(tc.sql)
		ch := an.Statements[0].Settings[0]
		if v, ok := s.After("lock_timeout", ch); v != tc.want || ok != tc.ok {
			t.Fatalf("%s: After = %q, %v; want %q, %v", tc.sql, v, ok, tc.want, tc.ok)
		}
	}
	var none Settings
	if v, ok := none.After("lock_timeout", SettingChange{Name: "lock_timeout", Reset: true}); ok || v != "" {
		t.Fatalf("reset without a baseline: After = %q, %v; want the server's default", v, ok)
	}
}

// TestStatementBound: a bind-parameter setting takes its value per
// execution; one without a value is left out, and Settings ignores one not
// bound.
func TestStatementBound(t *testing.T) {
	st := Analyze("SELECT set_config('search_path', $1, false), set_config('lock_timeout', $2, false), set_config('statement_timeout', '5s', false)").Statements[0]
	b := st.Bound(func(n int) (string, bool) { return "tenant_a", n == 1 })
	want := []SettingChange{{Name: "search_path", Value: "tenant_a"}, {Name: "statement_timeout", Value: "5s"}}
	if len(b.Settings) != len(want) || b.Settings[0] != want[0] || b.Settings[1] != want[1] {
		t.Fatalf("Bound: %+v, want %+v", b.Settings, want)
	}
	if st.Settings[0].Param != 1 || st.Settings[0].Value != "" {
		t.Fatalf("Bound changed the analysis: %+v", st.Settings[0])
	}
	// The name and is_local as parameters: is_local in binary (one byte)
	// or in any of boolin's text forms; a value that is not a boolean
	// leaves the change out, as PostgreSQL fails the call.
	st3 := Analyze("SELECT set_config($1, $2, $3)").Statements[0]
	for _, tc := range []struct {
		local string
		want  []SettingChange
	}{
		{"\x01", []SettingChange{{Name: "lock_timeout", Value: "1s", Local: true}}},
		{"\x00", []SettingChange{{Name: "lock_timeout", Value: "1s"}}},
		{"TRUE", []SettingChange{{Name: "lock_timeout", Value: "1s", Local: true}}},
		{" t ", []SettingChange{{Name: "lock_timeout", Value: "1s", Local: true}}},
		{"on", []SettingChange{{Name: "lock_timeout", Value: "1s", Local: true}}},
		{"of", []SettingChange{{Name: "lock_timeout", Value: "1s"}}},
		{"n", []SettingChange{{Name: "lock_timeout", Value: "1s"}}},
		{"0", []SettingChange{{Name: "lock_timeout", Value: "1s"}}},
		{"o", nil},
		{"maybe", nil},
	} {
		args := map[int]string{1: "Lock_Timeout", 2: "1s", 3: tc.local}
		b3 := st3.Bound(func(n int) (string, bool) { v, ok := args[n]; return v, ok })
		if len(b3.Settings) != len(tc.want) || len(tc.want) > 0 && b3.Settings[0] != tc.want[0] {
			t.Errorf("is_local %q: Bound = %+v, want %+v", tc.local, b3.Settings, tc.want)
		}
	}
	var s3 Settings
	s3.Apply(&st3, false)
	if v, set := s3.explicit("lock_timeout"); set {
		t.Fatalf("Settings followed an unbound set_config($1, $2, $3): %q", v)
	}
	plain := Analyze("SELECT 1").Statements[0]
	if plain.Bound(func(int) (string, bool) { return "", false }) != &plain {
		t.Fatal("Bound copied a statement without bind-parameter settings")
	}
	var s Settings
	s.Apply(&st, false)
	if v, ok := s.Effective("search_path"); ok {
		t.Fatalf("an unbound change was applied: search_path %q", v)
	}
	s.Apply(b, false)
	if v, _ := s.Effective("search_path"); v != "tenant_a" {
		t.Fatalf("search_path = %q after the bound change", v)
	}
}

// TestSearchPathFollowsRole: "$user" is the current user, which SET ROLE
// and SET SESSION AUTHORIZATION change; RESET ALL leaves them, DISCARD ALL
// resets them.
func TestSearchPathFollowsRole(t *testing.T) {
	a := NewAnalyzer(nil, 0)
	for _, tc := range []struct {
		steps []string
		want  string
	}{
		{nil, "login|public"},
		{[]string{"SET ROLE tenant_a"}, "tenant_a|public"},
		{[]string{"SET ROLE tenant_a", "SET search_path = '$user', app"}, "tenant_a|app"},
		// Names read as PostgreSQL reads the list: unquoted ones in lower
		// case, quoted ones as they are (checked against PostgreSQL 15 by
		// TestSearchPathFollowsPostgres).
		{[]string{`SET search_path = "Tenant_B", Tenant_C, 'a,b'`}, `Tenant_B|tenant_c|a,b`},
		{[]string{`SELECT set_config('search_path', ' Tenant_B ,"X""y", "$user"', false)`}, `tenant_b|X"y|login`},
		{[]string{"SET ROLE tenant_a", "RESET ROLE"}, "login|public"},
		{[]string{"SET ROLE tenant_a", "SET ROLE NONE"}, "login|public"},
		{[]string{"SET ROLE tenant_a", "RESET ALL"}, "tenant_a|public"},
		{[]string{"SET ROLE tenant_a", "DISCARD ALL"}, "login|public"},
		{[]string{"SELECT set_config('role', 'tenant_b', false)"}, "tenant_b|public"},
		{[]string{"BEGIN", "SET LOCAL ROLE tenant_c"}, "tenant_c|public"},
		{[]string{"BEGIN", "SET LOCAL ROLE tenant_c", "COMMIT"}, "login|public"},
		// SET SESSION AUTHORIZATION makes the current user too, and ends
		// a SET ROLE; RESET ALL leaves it, DISCARD ALL resets it
		// (checked against PostgreSQL 15).
		{[]string{"SET SESSION AUTHORIZATION tenant_d"}, "tenant_d|public"},
		{[]string{"SET ROLE tenant_a", "SET SESSION AUTHORIZATION 'tenant_d'"}, "tenant_d|public"},
		{[]string{"SET SESSION AUTHORIZATION tenant_d", "SET ROLE tenant_a"}, "tenant_a|public"},
		{[]string{"SET SESSION AUTHORIZATION tenant_d", "RESET ALL"}, "tenant_d|public"},
		{[]string{"SET SESSION AUTHORIZATION tenant_d", "DISCARD ALL"}, "login|public"},
		{[]string{"SET SESSION AUTHORIZATION tenant_d", "SET SESSION AUTHORIZATION DEFAULT"}, "login|public"},
		{[]string{"SET SESSION AUTHORIZATION tenant_d", "RESET SESSION AUTHORIZATION"}, "login|public"},
	} {
		var s Settings
		inTx := false
		for _, sql := range tc.steps {
			an := a.Analyze(sql)
			if an.Err != nil {
				t.Fatal(an.Err)
			}
			s.Apply(&an.Statements[0], inTx)
			switch an.Statements[0].TxKind {
			case TxBegin:
				inTx = true
			case TxCommit:
				inTx = false
			}
		}
		if got := strings.Join(s.SearchPath("login"), "|"); got != tc.want {
			t.Errorf("%v: SearchPath = %s, want %s", tc.steps, got, tc.want)
		}
	}
}

func TestStartupOptions(t *testing.T) {
	for opts, want := range map[string][][2]string{
		"":                                   nil,
		"-c lock_timeout=1s":                 {{"lock_timeout", "1s"}},
		"  -clock_timeout=1s\t-c x=y ":       {{"lock_timeout", "1s"}, {"x", "y"}},
		"--Statement-Timeout=5s -c":          {{"statement_timeout", "5s"}},
		`-c search_path=a,\ b -c noequals`:   {{"search_path", "a, b"}},
		`-c search_path=a\\b\c --geqo=off \`: {{"search_path", `a\bc`}, {"geqo", "off"}},
		"-B 8 -c lock_timeout=2s stray --x=": {{"lock_timeout", "2s"}, {"x", ""}},
	} {
		got := startupOptions(opts)
		if len(got) != len(want) {
			t.Errorf("startupOptions(%q) = %q, want %q", opts, got, want)
			continue
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("startupOptions(%q) = %q, want %q", opts, got, want)
				break
			}
		}
	}
}

func TestParseTimeout(t *testing.T) {
	for in, want := range map[string]time.Duration{"0": 0, "2s": 2 * time.Second, "'500ms'": 500 * time.Millisecond,
		"1500": 1500 * time.Millisecond, "1min": time.Minute, "1.5s": 1500 * time.Millisecond} {
		if got, ok := ParseTimeout(in); !ok || got != want {
			t.Errorf("ParseTimeout(%q) = %v, %v; want %v", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "soon", "5 fortnights", "-1s"} {
		if _, ok := ParseTimeout(bad); ok {
			t.Errorf("ParseTimeout(%q) accepted", bad)
		}
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Attempts: 4, Base: 100 * time.Millisecond, Cap: 300 * time.Millisecond, Deadline: time.Second}
	for i := 0; i < 200; i++ {
		for attempt, ceiling := range map[int]time.Duration{2: 100 * time.Millisecond, 3: 200 * time.Millisecond, 4: 300 * time.Millisecond} {
			d, ok := b.Delay(attempt, 0)
			if !ok || d < 0 || d > ceiling {
				t.Fatalf("attempt %d: delay %v ok %v, want ≤ %v", attempt, d, ok, ceiling)
			}
		}
	}
	if _, ok := b.Delay(5, 0); ok {
		t.Fatal("attempt beyond Attempts allowed")
	}
	if _, ok := b.Delay(2, time.Second); ok {
		t.Fatal("attempt past the deadline allowed")
	}
}

// TestOutlasting: of a failed string's completed statements, those whose
// effects PostgreSQL keeps.
func TestOutlasting(t *testing.T) {
	for _, tc := range []struct {
		done string // the statements that completed before the error
		inTx bool
		want int
	}{
		{"SET lock_timeout = '1s'", false, 0},
		{"COMMIT", true, 1},
		{"SET lock_timeout = '1s'; COMMIT; SET lock_timeout = '2s'", true, 2},
		{"SET lock_timeout = '1s'; COMMIT; SET lock_timeout = '2s'", false, 2},
		{"SET lock_timeout = '1s'; ROLLBACK; SET lock_timeout = '2s'", false, 2},
		{"SET lock_timeout = '1s'; BEGIN", false, 2},
		{"COMMIT AND CHAIN; SET lock_timeout = '1s'", true, 2},
		{"SET lock_timeout = '1s'", true, 1},
		{"", false, 0},
	} {
		var done []*Statement
		if tc.done != "" {
			an := Analyze(tc.done)
			if an.Err != nil {
				t.Fatal(an.Err)
			}
			done = an.StatementPtrs()
		}
		if got := len(Outlasting(done, tc.inTx)); got != tc.want {
			t.Errorf("%q (in a block: %v): %d statements outlast the error, want %d", tc.done, tc.inTx, got, tc.want)
		}
	}
}
