package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const examples = "../../examples/migrations"

func runCheck(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cmdCheck(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func decode(t *testing.T, s string) []checkFinding {
	t.Helper()
	var fs []checkFinding
	if err := json.Unmarshal([]byte(s), &fs); err != nil {
		t.Fatalf("json: %v\n%s", err, s)
	}
	return fs
}

// summary renders findings as "file rule action" lines.
func summary(fs []checkFinding) []string {
	var out []string
	for _, f := range fs {
		s := fmt.Sprintf("%s:%d %s %s", filepath.Base(f.File), f.Line, f.Rule, f.Action)
		if f.Overridden {
			s += " overridden"
		}
		out = append(out, s)
	}
	return out
}

// What the default policy reports on the example migrations: what the
// proxy would warn about at runtime, plus the check-only timeout and
// transaction rules.
var wantDefault = []string{
	"002_create_orders.sql:8 create-table-fk-to-hot-table warn",
	"003_orders_status_index.sql:4 create-index-blocking warn",
	"003_orders_status_index.sql:4 missing-lock-timeout warn",
	"005_orders_public_id.sql:4 add-column-volatile-default warn",
	"005_orders_public_id.sql:4 missing-lock-timeout warn",
	"008_payments_order_fk.sql:5 add-fk-validated warn",
	"008_payments_order_fk.sql:5 missing-lock-timeout warn",
	"010_users_name_not_null.sql:5 set-not-null warn",
	"010_users_name_not_null.sql:5 missing-lock-timeout warn",
	"012_orders_drop_user_fk.sql:5 drop-foreign-key warn",
	"013_orders_discount_backfill.sql:8 work-after-access-exclusive warn",
	"013_orders_discount_backfill.sql:9 multi-lock-txn warn",
	"014_payments_index_in_txn.sql:4 concurrently-in-txn warn",
	"015_rename_user_name.sql:4 rename-column warn",
	"016_widen_columns.sql:7 change-column-type warn",
	"018_forgot_commit.sql:5 uncommitted-txn warn",
}

func TestCheckExamples(t *testing.T) {
	code, out, errs := runCheck(t, "", "--format", "json", examples)
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	fs := decode(t, out)
	if got := summary(fs); !slices.Equal(got, wantDefault) {
		t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantDefault, "\n"))
	}
	for _, f := range fs {
		if !strings.HasPrefix(f.Message, f.Rule+": ") || f.Detail == "" || f.Hint == "" || f.Statement == "" || f.Column != 1 {
			t.Errorf("incomplete finding %+v", f)
		}
	}
	// The history across files: 012 knows orders_user_id_fkey from 002's
	// REFERENCES and names users without guessing; 016 knows payments.id
	// is an integer from 007.
	for _, f := range fs {
		switch f.Rule {
		case "drop-foreign-key":
			if f.Note != "" || !strings.Contains(f.Detail, "orders and users") {
				t.Errorf("drop-foreign-key: %+v", f)
			}
		case "change-column-type":
			if !strings.Contains(f.Message, "from integer to bigint") {
				t.Errorf("change-column-type: %s", f.Message)
			}
		}
	}
	// Files that show the safe way produce nothing above allow.
	for _, good := range []string{"001", "004", "006", "007", "009", "011", "017"} {
		for _, f := range fs {
			if strings.HasPrefix(filepath.Base(f.File), good) {
				t.Errorf("good example %s: %s", good, f.Message)
			}
		}
	}

	// --all adds the recorded ones, among them the override in 017.
	_, out, _ = runCheck(t, "", "--format", "json", "--all", examples)
	all := summary(decode(t, out))
	for _, want := range []string{
		"017_drop_sessions.sql:7 drop-table allow overridden",
		"006_users_last_login.sql:6 access-exclusive-lock allow",
		"007_create_payments.sql:9 prefer-bigint allow",
	} {
		if !slices.Contains(all, want) {
			t.Errorf("--all lacks %q:\n%s", want, strings.Join(all, "\n"))
		}
	}
}

func TestCheckStrictPolicy(t *testing.T) {
	code, out, errs := runCheck(t, "", "--policy", "../../guard/testdata/policy/strict.yaml", "--format", "json", "--all", examples)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (block findings); stderr %q", code, errs)
	}
	fs := decode(t, out)
	got := summary(fs)
	for _, want := range []string{
		"003_orders_status_index.sql:4 create-index-blocking block",
		"008_payments_order_fk.sql:5 add-fk-validated block",
		"002_create_orders.sql:8 create-table-fk-to-hot-table allow",
		"017_drop_sessions.sql:7 drop-table allow overridden", // it gives a reason, as the policy requires
		"007_create_payments.sql:9 prefer-bigint warn",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("strict lacks %q:\n%s", want, strings.Join(got, "\n"))
		}
	}
	// --preset overrides the file's preset.
	code, _, _ = runCheck(t, "", "--policy", "../../guard/testdata/policy/strict.yaml", "--preset", "default", examples)
	if code != 0 {
		t.Errorf("--preset default: exit %d", code)
	}
}

var ghLine = regexp.MustCompile(`^::(error|warning|notice) file=([^,]+),line=(\d+),col=(\d+),endLine=(\d+),title=lockguard ([a-z0-9-]+)::(.+)$`)

func TestCheckGitHubFormat(t *testing.T) {
	code, out, _ := runCheck(t, "", "--format", "github", "--preset", "strict", examples+"/003_orders_status_index.sql", examples+"/012_orders_drop_user_fk.sql")
	if code != 1 {
		t.Errorf("exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("lines:\n%s", out)
	}
	for _, l := range lines {
		m := ghLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("not a workflow command: %q", l)
		}
		// Strict blocks the hazards and warns about the missing statement_timeout.
		if want := map[bool]string{true: "warning", false: "error"}[m[6] == "missing-statement-timeout"]; m[1] != want {
			t.Errorf("strict %s is %s, want %s", m[6], m[1], want)
		}
		if strings.Contains(m[7], "\n") || !strings.Contains(m[7], "%0A") {
			t.Errorf("message not escaped: %q", m[7])
		}
	}
	if !strings.HasPrefix(lines[0], "::error file=../../examples/migrations/003_orders_status_index.sql,line=4,col=1,endLine=4,title=lockguard create-index-blocking::create-index-blocking: CREATE INDEX on orders") {
		t.Errorf("first line = %q", lines[0])
	}
	// Default policy: warnings.
	_, out, _ = runCheck(t, "", "--format", "github", examples+"/003_orders_status_index.sql")
	if !strings.HasPrefix(out, "::warning file=") {
		t.Errorf("default: %q", out)
	}
	if got := ghProperty("a,b:c%"); got != "a%2Cb%3Ac%25" {
		t.Errorf("ghProperty = %q", got)
	}
}

func TestCheckText(t *testing.T) {
	code, out, _ := runCheck(t, "", examples+"/008_payments_order_fk.sql")
	if code != 0 {
		t.Errorf("exit %d", code)
	}
	for _, want := range []string{
		"008_payments_order_fk.sql:5:1: warn: add-fk-validated: foreign key payments_order_id_fkey from payments to orders added without NOT VALID",
		"    lock: SHARE ROW EXCLUSIVE on payments and orders while payments is scanned",
		"    hint: -- index the referencing columns first",
		"          ALTER TABLE payments ADD CONSTRAINT payments_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id) NOT VALID;",
		"lockguard check: 1 file: 0 block/error, 2 warn",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
}

func TestCheckStdinAndPositions(t *testing.T) {
	sql := "-- a migration\nSET lock_timeout = '1s';\n\n  ALTER TABLE orders\n    ADD CONSTRAINT c CHECK (total > 0);\nSELECT 'é';  ALTER TABLE orders ALTER COLUMN x SET NOT NULL;\n"
	code, out, _ := runCheck(t, sql, "--format", "json", "-")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	fs := decode(t, out)
	got := make([]string, 0, len(fs))
	for _, f := range fs {
		got = append(got, fmt.Sprintf("%s %d:%d-%d %s", f.File, f.Line, f.Column, f.EndLine, f.Rule))
	}
	want := []string{"<stdin> 4:3-5 add-check-validated", "<stdin> 6:14-6 set-not-null"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if fs[0].Statement != "ALTER TABLE orders\n    ADD CONSTRAINT c CHECK (total > 0)" {
		t.Errorf("statement = %q", fs[0].Statement)
	}
}

func TestCheckParseErrors(t *testing.T) {
	// A statement the parser does not know hides none of the others.
	sql := "CREATE INDEX i ON orders (a);\nALTER TABLE orders ADD CONSTRAINT n NOT NULL c NOT VALID;\nDROP TABLE legacy;\n"
	code, out, _ := runCheck(t, sql, "--format", "json", "-")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	got := summary(decode(t, out))
	want := []string{
		"<stdin>:1 create-index-blocking warn", "<stdin>:1 missing-lock-timeout warn",
		"<stdin>:2 parse-error error", "<stdin>:3 drop-table warn",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestCheckScopesAndVersion(t *testing.T) {
	policy := "../../guard/testdata/policy/large-tables.yaml"
	file := examples + "/003_orders_status_index.sql"
	// Without sizes every table may be large: the in-scope action applies.
	if code, _, _ := runCheck(t, "", "--policy", policy, file); code != 1 {
		t.Errorf("unknown size: exit %d, want 1", code)
	}
	if code, _, _ := runCheck(t, "", "--policy", policy, "--large-table", "public.users", file); code != 0 {
		t.Errorf("orders small: exit %d, want 0", code)
	}
	if code, _, _ := runCheck(t, "", "--policy", policy, file, "--large-table", "public.orders"); code != 1 {
		t.Errorf("orders large (flag after the file): exit %d, want 1", code)
	}
	_, out, _ := runCheck(t, "", "--format", "json", "--pg-version", "14.2", examples+"/004_orders_created_at_index.sql")
	if got := summary(decode(t, out)); !slices.Equal(got, []string{"004_orders_created_at_index.sql:3 cic-pg14-corruption warn"}) {
		t.Errorf("14.2: %v", got)
	}
	for v, want := range map[string]int{"15": 150000, "14.2": 140002, "150004": 150004, "9.6": 90600, "9.6.3": 90603} {
		if got, ok := parsePGVersion(v); !ok || got != want {
			t.Errorf("parsePGVersion(%q) = %d, %v", v, got, ok)
		}
	}
}

func TestCheckUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "no files given"},
		{[]string{"--format", "xml", examples}, `unknown --format "xml"`},
		{[]string{"no/such/file.sql"}, "no such file"},
		{[]string{"--pg-version", "fifteen", examples}, "bad --pg-version"},
		{[]string{"--policy", "../../guard/testdata/policy/unknown-key.yaml", examples}, "field acton not found"},
		{[]string{"--policy", "../../guard/testdata/policy/unknown-rule.yaml", examples}, `unknown rule "add-foreign-key"`},
		{[]string{"--preset", "lenient", examples}, `unknown preset "lenient"`},
		{[]string{"--bogus"}, "flag provided but not defined"},
		{[]string{"../../guard/testdata/policy"}, "no .sql files"},
	} {
		code, _, errs := runCheck(t, "", tt.args...)
		if code != 2 || !strings.Contains(errs, tt.want) {
			t.Errorf("%v: exit %d, stderr %q, want 2 and %q", tt.args, code, errs, tt.want)
		}
	}
}

func TestCheckListRules(t *testing.T) {
	code, out, _ := runCheck(t, "", "--list-rules")
	if code != 0 || !strings.Contains(out, "drop-foreign-key") || !strings.Contains(out, "[check only]") {
		t.Errorf("exit %d:\n%s", code, out)
	}
	_, out, _ = runCheck(t, "", "--list-rules", "--format", "json")
	var rules []map[string]any
	if err := json.Unmarshal([]byte(out), &rules); err != nil || len(rules) < 36 {
		t.Fatalf("%d rules, %v", len(rules), err)
	}
	if rules[0]["id"] == "" || rules[0]["default"] == "" {
		t.Errorf("rule = %v", rules[0])
	}
}

func TestRunCheckCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"check", "--list-rules"}, strings.NewReader(""), &out, &errb); code != 0 {
		t.Errorf("run check: %d %s", code, errb.String())
	}
}
