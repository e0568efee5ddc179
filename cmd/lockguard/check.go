// lockguard check: run lockguard's policy over migration files offline.
//
//	lockguard check [--format text|json|github] [--pg-version N] [--policy FILE]
//	                [--preset default|strict|off] [--large-table SCHEMA.TABLE]…
//	                [--all] [--list-rules] FILE…|DIR|-
//
// Each argument is a .sql file, a directory (every *.sql file below it, in
// lexical order of their paths) or "-" for standard input. Each file is one
// migration: its statements run one after another, in autocommit mode
// unless the file itself says BEGIN … COMMIT — which is how psql, Flyway,
// golang-migrate with multi-statement mode off, and most tools that wrap a
// migration in a transaction behave (the tool's own BEGIN is not in the
// file: write it there, or expect transaction rules to treat the
// statements as autocommit). The files of one run are read in order as one
// history: the column types, constraints and indexes an earlier file
// defines inform the checks of later ones (a table created in an earlier
// file is still treated as an existing, live table).
//
// It runs the same rules as the proxy, with these differences: there is no
// catalog, so rules that need one use what the files themselves define and
// say what they could not know ("note:"); the OfflineOnly rules
// (missing-lock-timeout, missing-statement-timeout, uncommitted-txn) run and
// the runtime-only ones (ddl-freeze, ddl-outside-window) do not.
// --pg-version gives the server version the migrations will run on
// (e.g. 15, 14.2 or 150004); --large-table names a table as large for rules
// scoped with min-rows/min-bytes (once any is given, unnamed tables count as
// small). --policy reads the `policy:` section of a lockguard YAML config.
//
// By default findings of action allow (hygiene, recorded only) are not
// printed; --all prints them too.
//
// Exit status: 0 no block-level finding; 1 a block-level finding, or a
// statement that does not parse; 2 usage, policy or I/O error.
//
// # Output
//
// text: one finding per paragraph,
//
//	migrations/003.sql:4:1: warn: create-index-blocking: CREATE INDEX on orders …
//	    lock: SHARE on orders for the whole index build: …
//	    hint: CREATE INDEX CONCURRENTLY …
//	    note: …
//
// github: GitHub Actions workflow commands, one line per finding:
//
//	::warning file=migrations/003.sql,line=4,col=1,endLine=4,title=lockguard create-index-blocking::CREATE INDEX on orders …
//
// (::error for block, ::notice for allow with --all).
//
// json: one array; fields are never renamed or removed, new fields may be
// added:
//
//	[{
//	  "file": "migrations/003.sql",
//	  "line": 4, "column": 1,          // where the statement starts (1-based; column in characters)
//	  "end_line": 4,                   // line of its last character
//	  "statement": "CREATE INDEX …",   // the statement's text
//	  "rule": "create-index-blocking", // rule id; "parse-error" for text that does not parse
//	  "action": "warn",                // allow|warn|block; "error" for parse-error
//	  "relation": "orders",            // "" when the finding names none
//	  "lock": "SHARE",                 // "" when none
//	  "message": "create-index-blocking: CREATE INDEX on orders …",
//	  "detail": "…", "hint": "…", "note": "…",
//	  "overridden": false,             // an inline lockguard:allow lowered it
//	  "reason": ""                     // the reason it gave
//	}]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"

	pg "github.com/pganalyze/pg_query_go/v6"
	"go.yaml.in/yaml/v3"

	"github.com/lockguard/lockguard/guard"
)

// checkFinding is one line of check's report.
type checkFinding struct {
	File       string `json:"file"`
	Line       int    `json:"line"`
	Column     int    `json:"column"`
	EndLine    int    `json:"end_line"`
	Statement  string `json:"statement"`
	Rule       string `json:"rule"`
	Action     string `json:"action"`
	Relation   string `json:"relation"`
	Lock       string `json:"lock"`
	Message    string `json:"message"`
	Detail     string `json:"detail"`
	Hint       string `json:"hint"`
	Note       string `json:"note"`
	Overridden bool   `json:"overridden"`
	Reason     string `json:"reason"`
}

// relList collects --large-table values.
type relList []guard.RelName

func (l *relList) String() string { return fmt.Sprint(*l) }

func (l *relList) Set(s string) error {
	s = strings.TrimSpace(s)
	if s == "" {
		return errors.New("empty table name")
	}
	schema, name, ok := strings.Cut(s, ".")
	if !ok {
		schema, name = "", s
	}
	*l = append(*l, guard.RelName{Schema: schema, Name: name})
	return nil
}

// largeTables is the SizeCatalog of --large-table: the named tables are
// larger than any threshold, every other one is empty.
type largeTables []guard.RelName

func (l largeTables) TableSize(rel guard.RelName) (rows, bytes int64, ok bool) {
	for _, r := range l {
		if r.Matches(rel) {
			return 1 << 62, 1 << 62, true
		}
	}
	return 0, 0, true
}

func cmdCheck(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("lockguard check", flag.ContinueOnError)
	flags.SetOutput(stderr)
	format := flags.String("format", "text", "output format: text, json or github")
	pgVersion := flags.String("pg-version", "", "PostgreSQL version the migrations run on: 15, 14.2 or 150004 (default: unknown)")
	policyFile := flags.String("policy", "", "lockguard YAML config whose policy: section to use (default: the default policy)")
	preset := flags.String("preset", "", "policy preset: default, strict or off (overrides the file's)")
	all := flags.Bool("all", false, "also print findings whose action is allow")
	listRules := flags.Bool("list-rules", false, "list the rules and exit")
	var large relList
	flags.Var(&large, "large-table", "treat `SCHEMA.TABLE` as large for min-rows/min-bytes scopes (repeatable; unnamed tables then count as small)")
	flags.Usage = func() {
		fmt.Fprintln(stderr, "usage: lockguard check [flags] FILE…|DIR|-")
		flags.PrintDefaults()
	}
	// Flags may come after the files too: lockguard check migrations/ --format github.
	var paths []string
	for rest := args; ; {
		if err := flags.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		rest = flags.Args()
		if len(rest) == 0 {
			break
		}
		paths, rest = append(paths, rest[0]), rest[1:]
	}
	switch *format {
	case "text", "json", "github":
	default:
		fmt.Fprintf(stderr, "lockguard check: unknown --format %q (want text, json or github)\n", *format)
		return 2
	}
	if *listRules {
		return printRules(stdout, *format)
	}
	if len(paths) == 0 {
		fmt.Fprintln(stderr, "lockguard check: no files given (a .sql file, a directory or - for standard input)")
		flags.Usage()
		return 2
	}
	version := 0
	if *pgVersion != "" {
		v, ok := parsePGVersion(*pgVersion)
		if !ok {
			fmt.Fprintf(stderr, "lockguard check: bad --pg-version %q (want e.g. 15, 14.2 or 150004)\n", *pgVersion)
			return 2
		}
		version = v
	}
	var cfg guard.PolicyConfig
	if *policyFile != "" {
		var err error
		if cfg, err = loadPolicyFile(*policyFile); err != nil {
			fmt.Fprintf(stderr, "lockguard check: %v\n", err)
			return 2
		}
	}
	if *preset != "" {
		cfg.Preset = *preset
	}
	policy, err := guard.NewPolicy(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "lockguard check: %v\n", err)
		return 2
	}
	files, err := collectFiles(paths)
	if err != nil {
		fmt.Fprintf(stderr, "lockguard check: %v\n", err)
		return 2
	}

	history := &guard.History{}
	var out []checkFinding
	for _, name := range files {
		if err := ctx.Err(); err != nil {
			fmt.Fprintf(stderr, "lockguard check: %v\n", err)
			return 2
		}
		var text []byte
		if name == "-" {
			text, err = io.ReadAll(stdin)
			name = "<stdin>"
		} else {
			text, err = os.ReadFile(name)
		}
		if err != nil {
			fmt.Fprintf(stderr, "lockguard check: %v\n", err)
			return 2
		}
		c := &guard.Context{Offline: true, RawSQL: string(text), ServerVersion: version, History: history}
		if len(large) > 0 {
			c.Sizes = largeTables(large)
		}
		out = append(out, checkFile(policy, name, string(text), c)...)
	}

	status := 0
	shown := out[:0:0]
	for _, f := range out {
		if f.Action == "block" || f.Action == "error" {
			status = 1
		}
		if f.Action != "allow" || *all {
			shown = append(shown, f)
		}
	}
	switch *format {
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if shown == nil {
			shown = []checkFinding{}
		}
		if err := enc.Encode(shown); err != nil {
			fmt.Fprintf(stderr, "lockguard check: %v\n", err)
			return 2
		}
	case "github":
		for _, f := range shown {
			fmt.Fprintln(stdout, githubLine(f))
		}
	default:
		printText(stdout, shown, len(files))
	}
	return status
}

// checkFile analyses and judges one migration file.
func checkFile(policy *guard.Policy, name, text string, c *guard.Context) []checkFinding {
	an, parseErrs := analyzeFile(text)
	var out []checkFinding
	for _, pe := range parseErrs {
		line, col := position(text, pe.offset)
		out = append(out, checkFinding{
			File: name, Line: line, Column: col, EndLine: line, Statement: pe.text,
			Rule: "parse-error", Action: "error",
			Message: "parse-error: " + pe.err.Error(),
			Detail:  "lockguard could not parse this statement (its parser follows PostgreSQL 17), so it was not checked",
		})
	}
	for _, f := range policy.Evaluate(an, c) {
		st := &an.Statements[f.Statement]
		line, col := position(text, st.Start)
		endLine, _ := position(text, max(st.End-1, st.Start))
		cf := checkFinding{
			File: name, Line: line, Column: col, EndLine: endLine, Statement: an.Text(st),
			Rule: f.Rule, Action: f.Action.String(),
			Message: f.Message, Detail: f.Detail, Hint: f.Hint, Note: f.Note,
			Overridden: f.Overridden, Reason: f.Reason,
		}
		if f.Relation.Name != "" {
			cf.Relation = f.Relation.String()
		}
		if f.Lock != guard.NoLock {
			cf.Lock = f.Lock.String()
		}
		out = append(out, cf)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}

type parseError struct {
	offset int
	text   string
	err    error
}

// analyzeFile analyses text as one Analysis whose SQL is the whole file, so
// that statement offsets are file offsets. When the file does not parse as
// a whole, it is split into statements and each is analysed alone, so that
// one statement the parser does not know hides none of the others.
func analyzeFile(text string) (*guard.Analysis, []parseError) {
	out := &guard.Analysis{SQL: text}
	add := func(base int, part string) error {
		an := guard.Analyze(part)
		if an.Err != nil {
			return an.Err
		}
		off := base + strings.Index(part, an.SQL)
		for _, st := range an.Statements {
			st.Start += off
			st.End += off
			out.Statements = append(out.Statements, st)
		}
		return nil
	}
	if err := add(0, text); err == nil {
		return out, nil
	}
	out.Statements = out.Statements[:0]
	parts, err := pg.SplitWithScanner(text, false)
	if err != nil {
		return out, []parseError{{offset: 0, text: firstLine(text), err: err}}
	}
	var errs []parseError
	cursor := 0
	for _, p := range parts {
		i := strings.Index(text[cursor:], p)
		if i < 0 {
			continue
		}
		base := cursor + i
		cursor = base + len(p)
		if strings.TrimSpace(p) == "" {
			continue
		}
		if err := add(base, p); err != nil {
			trimmed := strings.TrimLeft(p, " \t\r\n")
			errs = append(errs, parseError{offset: base + len(p) - len(trimmed), text: strings.TrimSpace(p), err: err})
		}
	}
	return out, errs
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// position returns the 1-based line and column (in characters) of offset.
func position(text string, offset int) (line, col int) {
	if offset > len(text) {
		offset = len(text)
	}
	if offset < 0 {
		offset = 0
	}
	before := text[:offset]
	line = 1 + strings.Count(before, "\n")
	start := strings.LastIndexByte(before, '\n') + 1
	return line, 1 + utf8.RuneCountInString(before[start:])
}

// collectFiles expands the arguments: directories to their *.sql files.
func collectFiles(args []string) ([]string, error) {
	var files []string
	for _, a := range args {
		if a == "-" {
			files = append(files, a)
			continue
		}
		info, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			files = append(files, a)
			continue
		}
		var found []string
		err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && strings.EqualFold(filepath.Ext(p), ".sql") {
				found = append(found, p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("%s: no .sql files", a)
		}
		sort.Strings(found)
		files = append(files, found...)
	}
	return files, nil
}

// loadPolicyFile reads the policy: section of a lockguard YAML config.
// Other top-level keys belong to `lockguard serve` and are ignored here;
// unknown keys inside policy: are errors.
func loadPolicyFile(path string) (guard.PolicyConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return guard.PolicyConfig{}, err
	}
	var doc struct {
		Policy guard.PolicyConfig `yaml:"policy"`
		Rest   map[string]any     `yaml:",inline"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return guard.PolicyConfig{}, fmt.Errorf("%s: %w", path, err)
	}
	return doc.Policy, nil
}

// parsePGVersion reads 15, 14.2, 9.6 or 150004 as server_version_num.
func parsePGVersion(s string) (int, bool) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	nums := make([]int, 0, len(parts))
	for _, p := range parts {
		n := 0
		if p == "" || len(p) > 6 {
			return 0, false
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		nums = append(nums, n)
	}
	switch {
	case len(nums) == 1 && nums[0] >= 90000:
		return nums[0], true
	case len(nums) == 1 && nums[0] >= 10 && nums[0] < 100:
		return nums[0] * 10000, true
	case len(nums) == 2 && nums[0] >= 10 && nums[0] < 100:
		return nums[0]*10000 + nums[1], true
	case len(nums) == 2 && nums[0] == 9:
		return 90000 + nums[1]*100, true
	case len(nums) == 3 && nums[0] == 9:
		return 90000 + nums[1]*100 + nums[2], true
	}
	return 0, false
}

func printText(w io.Writer, findings []checkFinding, files int) {
	var blocks, warns, allows int
	for _, f := range findings {
		action := f.Action
		if f.Overridden {
			action += " (overridden"
			if f.Reason != "" {
				action += ": " + f.Reason
			}
			action += ")"
		}
		fmt.Fprintf(w, "%s:%d:%d: %s: %s\n", f.File, f.Line, f.Column, action, f.Message)
		for _, kv := range [][2]string{{"statement", firstLine(f.Statement)}, {"lock", f.Detail}, {"hint", f.Hint}, {"note", f.Note}} {
			if kv[1] == "" || kv[0] == "statement" && f.Rule != "parse-error" {
				continue
			}
			fmt.Fprintf(w, "    %s: %s\n", kv[0], strings.ReplaceAll(kv[1], "\n", "\n          "))
		}
		switch f.Action {
		case "block", "error":
			blocks++
		case "warn":
			warns++
		default:
			allows++
		}
	}
	plural := func(n int, s string) string {
		if n == 1 {
			return fmt.Sprintf("%d %s", n, s)
		}
		return fmt.Sprintf("%d %ss", n, s)
	}
	if len(findings) == 0 {
		fmt.Fprintf(w, "lockguard check: %s, no findings\n", plural(files, "file"))
		return
	}
	fmt.Fprintf(w, "lockguard check: %s: %d block/error, %d warn", plural(files, "file"), blocks, warns)
	if allows > 0 {
		fmt.Fprintf(w, ", %d allow", allows)
	}
	fmt.Fprintln(w)
}

// githubLine formats a finding as a GitHub Actions workflow command.
func githubLine(f checkFinding) string {
	cmd := "warning"
	switch f.Action {
	case "block", "error":
		cmd = "error"
	case "allow":
		cmd = "notice"
	}
	body := f.Message
	for _, s := range []string{f.Detail, f.Hint, f.Note} {
		if s != "" {
			body += "\n" + s
		}
	}
	return fmt.Sprintf("::%s file=%s,line=%d,col=%d,endLine=%d,title=%s::%s", cmd,
		ghProperty(f.File), f.Line, f.Column, f.EndLine, ghProperty("lockguard "+f.Rule), ghData(body))
}

func ghData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

func ghProperty(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}

// printRules lists the rule catalog.
func printRules(w io.Writer, format string) int {
	rules := guard.Rules()
	if format == "json" {
		type jsonRule struct {
			ID           string `json:"id"`
			Category     string `json:"category"`
			Summary      string `json:"summary"`
			Detects      string `json:"detects"`
			Lock         string `json:"lock"`
			Alternative  string `json:"alternative"`
			Default      string `json:"default"`
			Strict       string `json:"strict"`
			NeedsCatalog bool   `json:"needs_catalog"`
			Catalog      string `json:"catalog"`
			OfflineOnly  bool   `json:"offline_only"`
			RuntimeOnly  bool   `json:"runtime_only"`
			Overridable  bool   `json:"overridable"`
		}
		out := make([]jsonRule, 0, len(rules))
		for _, r := range rules {
			out = append(out, jsonRule{r.ID, r.Category, r.Summary, r.Detects, r.Lock, r.Alternative, r.Default.String(),
				r.Strict.String(), r.NeedsCatalog, r.Catalog, r.OfflineOnly, r.RuntimeOnly, r.Overridable})
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(out); err != nil {
			return 2
		}
		return 0
	}
	width := 0
	for _, r := range rules {
		width = max(width, len(r.ID))
	}
	fmt.Fprintf(w, "%-*s  %-7s %-7s %-11s %s\n", width, "RULE", "DEFAULT", "STRICT", "CATEGORY", "SUMMARY")
	for _, r := range rules {
		flags := ""
		if r.NeedsCatalog {
			flags += " [catalog]"
		}
		if r.OfflineOnly {
			flags += " [check only]"
		}
		if r.RuntimeOnly {
			flags += " [proxy only]"
		}
		fmt.Fprintf(w, "%-*s  %-7s %-7s %-11s %s%s\n", width, r.ID, r.Default, r.Strict, r.Category, r.Summary, flags)
	}
	fmt.Fprintf(w, "\n%d rules; docs/rules.md describes each.\n", len(rules))
	return 0
}
