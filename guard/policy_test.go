package guard

import (
	"reflect"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// raceEnabled reports whether the test binary was built with -race, under
// which timings mean nothing.
var raceEnabled = func() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}()

func TestParsePolicyConfig(t *testing.T) {
	yml := `
preset: strict
freeze: false
windows: ["Mon-Fri 02:00-05:00 UTC", "Sat,Sun 00:00-24:00 Europe/Berlin"]
overrides: true
require-reason: true
rules:
  add-fk-validated:
    action: block
    tables: ["public.*", "!public.tmp_*"]
    min-rows: 1M
    otherwise: warn
    overridable: false
  drop-table:
    action: warn
    users: [migrator]
    databases: ["prod*"]
    applications: ["rails*"]
    min-bytes: 10GB
    versions: ">= 12, < 18"
  prefer-bigint:
    action: "off"
  create-index-blocking:
    min-rows: 50000
`
	cfg, err := ParsePolicyConfig([]byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Preset != "strict" || len(cfg.Windows) != 2 || !cfg.RequireReason || cfg.Overrides == nil || !*cfg.Overrides {
		t.Errorf("cfg = %+v", cfg)
	}
	fk := cfg.Rules["add-fk-validated"]
	if fk.Action != "block" || fk.MinRows != 1_000_000 || fk.Otherwise != "warn" || fk.Overridable == nil || *fk.Overridable {
		t.Errorf("add-fk-validated = %+v", fk)
	}
	if dt := cfg.Rules["drop-table"]; dt.MinBytes != 10<<30 || dt.Versions != ">= 12, < 18" || dt.Users[0] != "migrator" {
		t.Errorf("drop-table = %+v", dt)
	}
	if n := cfg.Rules["create-index-blocking"].MinRows; n != 50000 {
		t.Errorf("min-rows: 50000 = %d", n)
	}
	p, err := NewPolicy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, on := p.Action("prefer-bigint"); on {
		t.Error("prefer-bigint: off is on")
	}
	if a, _ := p.Action("add-fk-validated"); a != ActionBlock {
		t.Errorf("add-fk-validated = %v", a)
	}
	if a, _ := p.Action("create-index-blocking"); a != ActionBlock {
		t.Errorf("strict create-index-blocking = %v", a)
	}
	if _, err := ParsePolicyConfig(nil); err != nil {
		t.Errorf("empty config: %v", err)
	}
	// YAML 1.1 booleans stay words in string fields.
	cfg, err = ParsePolicyConfig([]byte("preset: off\nrules: {drop-table: {action: off}}\n"))
	if err != nil || cfg.Preset != "off" || cfg.Rules["drop-table"].Action != "off" {
		t.Errorf("unquoted off: %+v, %v", cfg, err)
	}
}

func TestPolicyConfigErrors(t *testing.T) {
	tests := []struct{ yml, want string }{
		{"preset: lax", `unknown preset "lax"`},
		{"rules: {add-fk: {action: block}}", `unknown rule "add-fk" (did you mean add-fk-validated`},
		{"rules: {no-such-thing-at-all: {}}", `unknown rule "no-such-thing-at-all" (lockguard check --list-rules`},
		{"rules: {drop-table: {action: deny}}", `rules.drop-table.action: unknown action "deny"`},
		{"rules: {drop-table: {otherwise: warn}}", "otherwise: needs a scope"},
		{"rules: {drop-table: {users: [a], otherwise: nope}}", `otherwise: unknown action "nope"`},
		{"rules: {drop-table: {tables: ['[a-']}}", `rules.drop-table.tables: bad pattern "[a-"`},
		{"rules: {drop-table: {users: ['!']}}", "empty pattern"},
		{"rules: {drop-table: {versions: '>= x'}}", `bad version "x"`},
		{"rules: {drop-table: {min-rows: lots}}", `row count "lots"`},
		{"rules: {drop-table: {min-bytes: 10XB}}", `unknown unit "XB"`},
		{"rules: {drop-table: {colour: red}}", "field colour not found"},
		{"windows: ['Mon-Fri 25:00-26:00']", `bad time "25:00"`},
		{"windows: ['Funday 02:00-03:00']", `unknown day "Funday"`},
		{"windows: ['02:00-03:00 Mars/Olympus']", `unknown time zone "Mars/Olympus"`},
		{"windows: ['02:00-02:00']", "empty time range"},
		{"windows: ['Mon-Fri']", "no HH:MM-HH:MM"},
		{"windows: ['02:00-03:00 Local']", "name a time zone"},
		{"freze: true", "field freze not found"},
	}
	for _, tt := range tests {
		_, err := ParsePolicyConfig([]byte(tt.yml))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.yml, err, tt.want)
		}
	}
	// Every problem is reported, not just the first.
	_, err := NewPolicy(PolicyConfig{Preset: "x", Windows: []string{"nope"}, Rules: map[string]RuleConfig{"bogus": {}}})
	if err == nil || strings.Count(err.Error(), "policy:") != 3 {
		t.Errorf("joined errors = %v", err)
	}
}

func TestScopes(t *testing.T) {
	on := func(rc RuleConfig) *PolicyConfig {
		return &PolicyConfig{Rules: map[string]RuleConfig{"drop-table": rc}}
	}
	tests := []struct {
		name string
		cfg  *PolicyConfig
		ctx  Context
		sql  string
		cat  bool
		want string // action, or "" when the rule must not fire
	}{
		{"no scope", on(RuleConfig{Action: "block"}), Context{}, "DROP TABLE orders", false, "block"},
		{"table match", on(RuleConfig{Action: "block", Tables: []string{"public.orders"}}), Context{}, "DROP TABLE orders", false, "block"},
		{"table name only", on(RuleConfig{Action: "block", Tables: []string{"ord*"}}), Context{}, "DROP TABLE shop.orders", false, "block"},
		{"table other schema", on(RuleConfig{Action: "block", Tables: []string{"public.*"}}), Context{}, "DROP TABLE shop.orders", false, ""},
		{"table negated", on(RuleConfig{Action: "block", Tables: []string{"public.*", "!public.tmp_*"}}), Context{}, "DROP TABLE tmp_x", false, ""},
		{"table otherwise", on(RuleConfig{Action: "block", Tables: []string{"public.orders"}, Otherwise: "allow"}), Context{}, "DROP TABLE users", false, "allow"},
		{"user match", on(RuleConfig{Users: []string{"migrator"}}), Context{User: "migrator"}, "DROP TABLE orders", false, "warn"},
		{"user mismatch", on(RuleConfig{Users: []string{"migrator"}}), Context{User: "app"}, "DROP TABLE orders", false, ""},
		{"user excluded", on(RuleConfig{Users: []string{"!dba"}, Otherwise: "allow"}), Context{User: "dba"}, "DROP TABLE orders", false, "allow"},
		{"database glob", on(RuleConfig{Action: "block", Databases: []string{"prod*"}}), Context{Database: "prod_eu"}, "DROP TABLE orders", false, "block"},
		{"database glob miss", on(RuleConfig{Action: "block", Databases: []string{"prod*"}}), Context{Database: "staging"}, "DROP TABLE orders", false, ""},
		{"application", on(RuleConfig{Applications: []string{"rails*"}}), Context{Application: "rails_migrate"}, "DROP TABLE orders", false, "warn"},
		{"min-rows large", on(RuleConfig{MinRows: 1_000_000}), Context{}, "DROP TABLE orders", true, "warn"},
		{"min-rows small", on(RuleConfig{MinRows: 1_000_000}), Context{}, "DROP TABLE users", true, ""},
		{"min-rows unknown size", on(RuleConfig{MinRows: 1_000_000}), Context{}, "DROP TABLE tags", true, "warn"},
		{"min-rows no catalog", on(RuleConfig{MinRows: 1_000_000}), Context{}, "DROP TABLE users", false, "warn"},
		{"min-bytes large", on(RuleConfig{MinBytes: 1 << 30}), Context{}, "DROP TABLE orders", true, "warn"},
		{"min-bytes small", on(RuleConfig{MinBytes: 1 << 30}), Context{}, "DROP TABLE users", true, ""},
		{"min-rows or min-bytes", on(RuleConfig{MinRows: 1 << 40, MinBytes: 1 << 30}), Context{}, "DROP TABLE orders", true, "warn"},
		{"sizes from Context", on(RuleConfig{MinRows: 10}), Context{Sizes: sizeMap{"orders": 5}}, "DROP TABLE orders", false, ""},
		{"versions in", on(RuleConfig{Versions: ">= 12, < 18"}), Context{ServerVersion: 150004}, "DROP TABLE orders", false, "warn"},
		{"versions out", on(RuleConfig{Versions: ">= 12, < 18"}), Context{ServerVersion: 110000}, "DROP TABLE orders", false, ""},
		{"versions unknown", on(RuleConfig{Versions: ">= 12, < 18"}), Context{}, "DROP TABLE orders", false, "warn"},
		{"versions major", on(RuleConfig{Versions: "= 14"}), Context{ServerVersion: 140011}, "DROP TABLE orders", false, "warn"},
		{"versions major miss", on(RuleConfig{Versions: "= 14"}), Context{ServerVersion: 150000}, "DROP TABLE orders", false, ""},
		{"versions minor", on(RuleConfig{Versions: "< 14.4"}), Context{ServerVersion: 140003}, "DROP TABLE orders", false, "warn"},
		{"versions from catalog", on(RuleConfig{Versions: "<= 14"}), Context{}, "DROP TABLE orders", true, ""},
		{"off", on(RuleConfig{Action: "off"}), Context{}, "DROP TABLE orders", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPolicy(*tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx := tt.ctx
			an := NewAnalyzer(nil, 0)
			if tt.cat {
				cat := testCatalog()
				ctx.Catalog, an = cat, NewAnalyzer(cat, 0)
			}
			got := ""
			for _, f := range p.Evaluate(an.Analyze(tt.sql), &ctx) {
				if f.Rule == "drop-table" {
					got = f.Action.String()
				}
			}
			if got != tt.want {
				t.Errorf("action = %q, want %q", got, tt.want)
			}
		})
	}
	// A table created in the same transaction counts as empty.
	p := mustPolicy(PolicyConfig{Rules: map[string]RuleConfig{"create-index-blocking": {MinRows: 1}}})
	if fs := p.Evaluate(Analyze("CREATE INDEX ON orders (a)"), &Context{Sizes: sizeMap{}}); len(fs) != 0 {
		t.Errorf("size 0 table: %s", dumpFindings(fs))
	}
}

// sizeMap is a SizeCatalog by table name; unlisted tables are unknown.
type sizeMap map[string]int64

func (m sizeMap) TableSize(rel RelName) (int64, int64, bool) {
	n, ok := m[rel.Name]
	if !ok {
		return 0, 0, true
	}
	return n, n * 100, ok
}

func TestVersionsAndWindows(t *testing.T) {
	for _, tt := range []struct {
		s    string
		v    int
		want bool
	}{
		{">= 12", 120000, true}, {">= 12", 110022, false}, {"> 12", 129999, false}, {"> 12", 130000, true},
		{"<= 12", 120099, true}, {"<= 12", 130000, false}, {"< 14.4", 140004, false}, {"9.6", 90624, true},
		{">= 9.6.3", 90603, true}, {"150004", 150004, true}, {"= 150004", 150005, false},
	} {
		b, err := parseVersions(tt.s)
		if err != nil {
			t.Fatalf("%s: %v", tt.s, err)
		}
		if got := matchVersions(b, tt.v); got != tt.want {
			t.Errorf("%q matches %d = %v, want %v", tt.s, tt.v, got, tt.want)
		}
	}
	at := func(day time.Weekday, hhmm string) time.Time {
		h, m, _ := strings.Cut(hhmm, ":")
		hh, mm := atoiTest(h), atoiTest(m)
		// 2025-03-02 is a Sunday.
		return time.Date(2025, 3, 2+int(day), hh, mm, 0, 0, time.UTC)
	}
	for _, tt := range []struct {
		w    string
		t    time.Time
		want bool
	}{
		{"Mon-Fri 02:00-05:00 UTC", at(time.Monday, "02:00"), true},
		{"Mon-Fri 02:00-05:00 UTC", at(time.Monday, "05:00"), false},
		{"Mon-Fri 02:00-05:00", at(time.Saturday, "03:00"), false},
		{"Fri-Mon 02:00-05:00", at(time.Sunday, "03:00"), true},
		{"weekends 00:00-24:00", at(time.Saturday, "23:59"), true},
		{"weekdays 00:00-24:00", at(time.Saturday, "12:00"), false},
		{"Sat 22:00-02:00", at(time.Sunday, "01:59"), true},
		{"Sat 22:00-02:00", at(time.Saturday, "01:00"), false},
		{"daily 22:00-02:00", at(time.Wednesday, "23:00"), true},
		{"01:00-02:00 Asia/Tokyo", at(time.Sunday, "16:30"), true}, // 01:30 Monday in Tokyo
		{"Mon 01:00-02:00 Asia/Tokyo", at(time.Sunday, "16:30"), true},
		{"Sun 01:00-02:00 Asia/Tokyo", at(time.Sunday, "16:30"), false},
	} {
		w, err := parseWindow(tt.w)
		if err != nil {
			t.Fatalf("%s: %v", tt.w, err)
		}
		if got := w.contains(tt.t); got != tt.want {
			t.Errorf("%q contains %s = %v, want %v", tt.w, tt.t.Format(time.RFC1123), got, tt.want)
		}
	}
}

func atoiTest(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func TestOverrides(t *testing.T) {
	yes, no := true, false
	strict := PolicyConfig{Preset: "strict"}
	tests := []struct {
		name       string
		cfg        PolicyConfig
		sql        string
		offline    bool
		rule       string
		overridden []bool // per finding of rule, in statement order
		action     Action // of the first finding of rule
		reason     string
		note       string
	}{
		{name: "block comment", cfg: strict, sql: `/* lockguard:allow drop-table reason="table unused since v2" */ DROP TABLE orders`,
			rule: "drop-table", overridden: []bool{true}, action: ActionAllow, reason: "table unused since v2"},
		{name: "line comment, several rules, several statements", sql: "-- lockguard:allow drop-table,truncate reason='one-off'\nDROP TABLE a; TRUNCATE b",
			rule: "drop-table", overridden: []bool{true}, action: ActionAllow, reason: "one-off"},
		{name: "trailing sqlcommenter style", sql: "DROP TABLE a /* lockguard:allow drop-table */",
			rule: "drop-table", overridden: []bool{true}, action: ActionAllow},
		{name: "other rule", sql: "/* lockguard:allow truncate */ DROP TABLE a",
			rule: "drop-table", overridden: []bool{false}, action: ActionWarn},
		{name: "string literal does not count", sql: "SELECT 'lockguard:allow drop-table'; DROP TABLE a",
			rule: "drop-table", overridden: []bool{false}, action: ActionWarn},
		{name: "dollar string does not count", sql: "DO $$ BEGIN PERFORM '/* lockguard:allow drop-table */'; END $$; DROP TABLE a",
			rule: "drop-table", overridden: []bool{false}, action: ActionWarn},
		{name: "not overridable", cfg: PolicyConfig{Preset: "strict", Rules: map[string]RuleConfig{"drop-table": {Overridable: &no}}},
			sql: "/* lockguard:allow drop-table */ DROP TABLE a", rule: "drop-table", overridden: []bool{false}, action: ActionBlock, note: "not overridable"},
		{name: "a warning can always be lowered", cfg: PolicyConfig{Rules: map[string]RuleConfig{"drop-table": {Overridable: &no}}},
			sql: "/* lockguard:allow drop-table */ DROP TABLE a", rule: "drop-table", overridden: []bool{true}, action: ActionAllow},
		{name: "freeze is not overridable by default", cfg: PolicyConfig{Freeze: true},
			sql: "/* lockguard:allow ddl-freeze */ DROP TABLE a", rule: "ddl-freeze", overridden: []bool{false}, action: ActionBlock, note: "not overridable"},
		{name: "freeze made overridable", cfg: PolicyConfig{Freeze: true, Rules: map[string]RuleConfig{"ddl-freeze": {Overridable: &yes}}},
			sql: "/* lockguard:allow ddl-freeze reason=hotfix */ DROP TABLE a", rule: "ddl-freeze", overridden: []bool{true}, action: ActionAllow, reason: "hotfix"},
		{name: "reason required", cfg: PolicyConfig{RequireReason: true},
			sql: "/* lockguard:allow drop-table */ DROP TABLE a", rule: "drop-table", overridden: []bool{false}, action: ActionWarn, note: "requires reason"},
		{name: "reason given", cfg: PolicyConfig{RequireReason: true},
			sql: "/* lockguard:allow drop-table reason=ok */ DROP TABLE a", rule: "drop-table", overridden: []bool{true}, action: ActionAllow, reason: "ok"},
		{name: "overrides off", cfg: PolicyConfig{Overrides: &no},
			sql: "/* lockguard:allow drop-table */ DROP TABLE a", rule: "drop-table", overridden: []bool{false}, action: ActionWarn},
		{name: "not the marker", sql: "/* lockguard:allowed drop-table */ DROP TABLE a", rule: "drop-table", overridden: []bool{false}, action: ActionWarn},
		{name: "offline: per statement", offline: true,
			sql:  "DROP TABLE a;\n-- lockguard:allow drop-table\nDROP TABLE b;\nDROP TABLE c; -- lockguard:allow drop-table\nDROP TABLE d;\n/* lockguard:allow drop-table */ DROP TABLE e; DROP TABLE f;",
			rule: "drop-table", overridden: []bool{false, true, true, false, true, false}, action: ActionWarn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPolicy(tt.cfg)
			fs := p.Evaluate(Analyze(tt.sql), &Context{RawSQL: tt.sql, Offline: tt.offline})
			var got []bool
			var first *Finding
			for i := range fs {
				if fs[i].Rule == tt.rule {
					got = append(got, fs[i].Overridden)
					if first == nil {
						first = &fs[i]
					}
				}
			}
			if !reflect.DeepEqual(got, tt.overridden) {
				t.Fatalf("overridden = %v, want %v\n%s", got, tt.overridden, dumpFindings(fs))
			}
			if first.Action != tt.action || first.Reason != tt.reason || !strings.Contains(first.Note, tt.note) {
				t.Errorf("finding = %+v", *first)
			}
		})
	}
	if o := parseOverrides("/* lockguard:allow a,b reason=\"x y\" lockguard:allow c */"); len(o) != 2 || o[0].reason != "x y" || !reflect.DeepEqual(o[0].rules, []string{"a", "b"}) || o[1].rules[0] != "c" {
		t.Errorf("parseOverrides = %+v", o)
	}
}

// TestTxState follows one session's transaction the way the runtime does:
// Evaluate, then Record each statement that succeeded.
func TestTxState(t *testing.T) {
	p := DefaultPolicy()
	an := NewAnalyzer(nil, 16)
	tx := &TxState{}
	step := func(sql string) []Finding {
		a := an.Analyze(sql)
		before := tx.Clone()
		fs := p.Evaluate(a, &Context{InTransaction: true, Tx: tx, RawSQL: sql})
		if !reflect.DeepEqual(before, tx.Clone()) {
			t.Fatalf("Evaluate(%q) changed the TxState", sql)
		}
		for i := range a.Statements {
			tx.Record(&a.Statements[i])
		}
		return fs
	}
	if fs := step("CREATE TABLE t (a int, user_id bigint)"); len(fs) != 0 {
		t.Errorf("CREATE TABLE: %s", dumpFindings(fs))
	}
	if len(tx.Created) != 1 || tx.Created[0].Name != "t" || tx.AccessExclusive {
		t.Fatalf("after CREATE TABLE: %+v", tx)
	}
	// A new table: no index, FK or default hazard.
	for _, sql := range []string{
		"CREATE INDEX ON t (a)",
		"ALTER TABLE t ADD CONSTRAINT t_fk FOREIGN KEY (user_id) REFERENCES users (id)",
		"ALTER TABLE t ADD COLUMN u uuid NOT NULL DEFAULT gen_random_uuid()",
		"ALTER TABLE t ALTER COLUMN a SET NOT NULL",
	} {
		for _, f := range step(sql) {
			if f.Rule != "create-table-fk-to-hot-table" {
				t.Errorf("%s on a new table: %s", sql, f.Message)
			}
		}
	}
	if tx.AccessExclusive {
		t.Errorf("AEL on a new table counted: %+v", tx)
	}
	if len(tx.StrongLocks) != 1 || tx.StrongLocks[0].Rel.Name != "users" || tx.StrongLocks[0].Mode != ShareRowExclusive {
		t.Errorf("strong locks = %+v", tx.StrongLocks)
	}
	step("ALTER TABLE orders ADD CONSTRAINT c CHECK (total > 0) NOT VALID")
	if !tx.AccessExclusive || tx.AccessExclusiveOn.Name != "orders" || len(tx.NotValid) != 1 {
		t.Errorf("after NOT VALID: %+v", tx)
	}
	fs := step("ALTER TABLE orders VALIDATE CONSTRAINT c")
	if !hasRule(fs, "validate-same-txn") {
		t.Errorf("VALIDATE in the same transaction: %s", dumpFindings(fs))
	}
	fs = step("UPDATE orders SET total = 0 WHERE total IS NULL")
	if !hasRule(fs, "work-after-access-exclusive") {
		t.Errorf("UPDATE after AEL: %s", dumpFindings(fs))
	}
	if tx.Statements != 8 {
		t.Errorf("Statements = %d", tx.Statements)
	}
	created := cap(tx.Created)
	tx.Reset()
	if len(tx.Created) != 0 || len(tx.StrongLocks) != 0 || len(tx.NotValid) != 0 || tx.AccessExclusive || tx.Statements != 0 || cap(tx.Created) != created {
		t.Errorf("after Reset: %+v", tx)
	}
	// Without Evaluate, Record cannot know the name a CREATE TABLE creates:
	// the table is then treated as existing (the safe direction).
	var fresh TxState
	a := Analyze("CREATE TABLE never_evaluated (a int)")
	fresh.Record(&a.Statements[0])
	if len(fresh.Created) != 0 || fresh.Statements != 1 {
		t.Errorf("Record without Evaluate: %+v", fresh)
	}
}

func hasRule(fs []Finding, rule string) bool {
	for _, f := range fs {
		if f.Rule == rule {
			return true
		}
	}
	return false
}

func TestEvaluateNilArguments(t *testing.T) {
	var p *Policy
	if fs := p.Evaluate(Analyze("DROP TABLE a"), nil); !hasRule(fs, "drop-table") {
		t.Errorf("nil policy: %s", dumpFindings(fs))
	}
	if fs := DefaultPolicy().Evaluate(nil, nil); fs != nil {
		t.Errorf("nil analysis: %v", fs)
	}
	if fs := DefaultPolicy().Evaluate(Analyze("ALTER TABLE ("), nil); fs != nil {
		t.Errorf("parse error: %v", fs)
	}
}

// The path of ordinary traffic: no allocation, a few nanoseconds.
var dmlCases = []string{
	"SELECT * FROM users WHERE id = $1",
	"INSERT INTO orders (id, user_id) VALUES ($1, $2)",
	"UPDATE orders SET total = $1 WHERE id = $2",
	"BEGIN",
	"COMMIT",
	"SET lock_timeout = '1s'",
}

func TestEvaluateDMLDoesNotAllocate(t *testing.T) {
	p := DefaultPolicy()
	an := NewAnalyzer(nil, 64)
	tx := &TxState{StrongLocks: []RelationLock{{Rel: RelName{Name: "x"}, Mode: ShareRowExclusive}}}
	for _, sql := range dmlCases {
		a := an.Analyze(sql)
		for _, c := range []*Context{nil, {}, {InTransaction: sql != "BEGIN", Tx: tx, RawSQL: sql}} {
			if n := testing.AllocsPerRun(100, func() {
				if p.Evaluate(a, c) != nil {
					t.Fatal("findings")
				}
			}); n != 0 {
				t.Errorf("Evaluate(%q) allocates %v times", sql, n)
			}
		}
	}
	if testing.Short() || raceEnabled {
		return
	}
	// The best of many short samples, so that other processes on a busy
	// machine do not decide the result.
	a := an.Analyze(dmlCases[1])
	c := &Context{User: "app", RawSQL: dmlCases[1]}
	const n = 2000
	best := time.Hour
	for range 200 {
		start := time.Now()
		for range n {
			p.Evaluate(a, c)
		}
		best = min(best, time.Since(start)/n)
	}
	if best >= 100*time.Nanosecond {
		t.Errorf("Evaluate on DML takes %v, want < 100ns", best)
	}
	t.Logf("Evaluate on DML: %v", best)
}

func BenchmarkEvaluateDML(b *testing.B) {
	p := DefaultPolicy()
	an := NewAnalyzer(nil, 64)
	a := an.Analyze(dmlCases[1])
	c := &Context{User: "app", Database: "shop", RawSQL: dmlCases[1]}
	b.ReportAllocs()
	for b.Loop() {
		if p.Evaluate(a, c) != nil {
			b.Fatal("findings")
		}
	}
}

func BenchmarkEvaluateDDL(b *testing.B) {
	p := DefaultPolicy()
	an := NewAnalyzer(nil, 64)
	sql := "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id)"
	a := an.Analyze(sql)
	c := &Context{RawSQL: sql}
	b.ReportAllocs()
	for b.Loop() {
		if len(p.Evaluate(a, c)) != 1 {
			b.Fatal("no finding")
		}
	}
}

// FuzzPolicyConfig: no configuration text makes parsing, building or using
// a policy panic. Seeds in testdata/fuzz/FuzzPolicyConfig.
func FuzzPolicyConfig(f *testing.F) {
	f.Add([]byte("preset: strict\nrules:\n  drop-table: {action: block, tables: ['public.*']}\n"))
	f.Add([]byte("windows: ['Sat 22:00-02:00 Europe/Berlin']\nfreeze: true\n"))
	analyses := []*Analysis{
		Analyze("DROP TABLE orders; CREATE INDEX ON users (a)"),
		Analyze("BEGIN; ALTER TABLE orders ADD COLUMN x int; UPDATE orders SET x = 1; COMMIT"),
		Analyze("SELECT 1"),
	}
	now := time.Date(2025, 3, 3, 3, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParsePolicyConfig(data)
		if err != nil {
			return
		}
		p, err := NewPolicy(cfg)
		if err != nil {
			t.Fatalf("ParsePolicyConfig accepted what NewPolicy rejects: %v", err)
		}
		for _, a := range analyses {
			for _, c := range []*Context{
				{Now: now, User: "migrator", Database: "prod", ServerVersion: 150004, RawSQL: "/* lockguard:allow drop-table */"},
				{Now: now, Offline: true, Sizes: sizeMap{"orders": 1 << 40}},
			} {
				for _, fd := range p.Evaluate(a, c) {
					if _, ok := LookupRule(fd.Rule); !ok || fd.Action > ActionBlock {
						t.Fatalf("bad finding %+v", fd)
					}
				}
			}
		}
	})
}

// TestEvaluateConcurrent shares one policy, one analyzer and the facts
// cache between goroutines, as the proxy does (run with -race).
func TestEvaluateConcurrent(t *testing.T) {
	p := mustPolicy(PolicyConfig{Preset: "strict"})
	an := NewAnalyzer(testCatalog(), 256)
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for _, c := range ruleCases {
				if c.prior != "" {
					continue
				}
				p.Evaluate(an.Analyze(c.sql), &Context{Offline: c.offline, RawSQL: c.sql, Catalog: an.Catalog})
			}
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
}
