package guard

import (
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
	}{
		{"never set", nil, false, "RESET lock_timeout"},
		{"never set, in tx", nil, true, "SET LOCAL lock_timeout TO DEFAULT"},
		{"session set", []step{{"SET lock_timeout = '5s'", false}}, false, "SET lock_timeout = '5s'"},
		{"session set then reset", []step{{"SET lock_timeout = '5s'", false}, {"RESET lock_timeout", false}}, false, "RESET lock_timeout"},
		{"set local outside tx is void", []step{{"SET LOCAL lock_timeout = '5s'", false}}, false, "RESET lock_timeout"},
		{"session value seen in tx", []step{{"SET lock_timeout = '5s'", false}, {"BEGIN", false}}, true, "SET LOCAL lock_timeout = '5s'"},
		{"set local in tx", []step{{"BEGIN", false}, {"SET LOCAL lock_timeout = '1s'", true}}, true, "SET LOCAL lock_timeout = '1s'"},
		{"rolled back set", []step{{"BEGIN", false}, {"SET lock_timeout = '7s'", true}, {"ROLLBACK", true}}, false, "RESET lock_timeout"},
		{"committed set", []step{{"BEGIN", false}, {"SET lock_timeout = '7s'", true}, {"COMMIT", true}}, false, "SET lock_timeout = '7s'"},
		{"committed local", []step{{"BEGIN", false}, {"SET LOCAL lock_timeout = '7s'", true}, {"COMMIT", true}}, false, "RESET lock_timeout"},
		{"reset all", []step{{"SET lock_timeout = '5s'", false}, {"RESET ALL", false}}, false, "RESET lock_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s Settings
			for _, st := range tc.steps {
				an := a.Analyze(st.sql)
				if an.Err != nil {
					t.Fatal(an.Err)
				}
				for i := range an.Statements {
					s.Apply(&an.Statements[i], st.inTx)
				}
			}
			if got := s.Restore("lock_timeout", tc.inTx); got != tc.restore {
				t.Fatalf("Restore = %q, want %q", got, tc.restore)
			}
		})
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
