package guard

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // windows name IANA zones; containers often lack a zoneinfo

	"go.yaml.in/yaml/v3"
)

// PolicyConfig is the `policy:` section of lockguard's YAML configuration.
// The zero value is the default policy. docs/rules.md documents every key;
// in short:
//
//	policy:
//	  preset: default            # default | strict | off
//	  freeze: false              # true: block all DDL (rule ddl-freeze)
//	  windows:                   # DDL only inside these (rule ddl-outside-window)
//	    - "Mon-Fri 02:00-05:00 UTC"
//	  overrides: true            # honour inline `lockguard:allow` comments
//	  require-reason: false      # …only when they give reason="…"
//	  rules:
//	    add-fk-validated:
//	      action: block          # allow | warn | block | off
//	      tables: ["public.*", "!public.tmp_*"]
//	      min-rows: 1M           # only tables with ≥ 1M rows (or ≥ min-bytes)
//	      otherwise: warn        # action outside the scope (default: not applied)
//	      overridable: false     # inline comments may not lower a block
//
// Presets: "default" protects without breaking anything — nothing blocks,
// lock and availability hazards warn, hygiene rules only record (allow).
// "strict" blocks the lock and availability hazards. "off" disables every
// rule that the config does not give an action; freeze and windows still
// apply when set.
type PolicyConfig struct {
	Preset string                `yaml:"preset"`
	Rules  map[string]RuleConfig `yaml:"rules"`
	// Freeze blocks every DDL statement (rule ddl-freeze; temporary objects
	// excepted). Scope the ddl-freeze rule to exempt users or databases,
	// e.g. users: ["!dba"]. It is not overridable inline unless the rule's
	// config says overridable: true.
	Freeze bool `yaml:"freeze"`
	// Windows are the times DDL may run: "[DAYS] HH:MM-HH:MM [ZONE]", DAYS
	// a comma list of days or day ranges (Mon-Fri, Sat,Sun; default every
	// day), ZONE an IANA name (default UTC). An end before the start runs
	// past midnight. Outside every window DDL is blocked (rule
	// ddl-outside-window). Empty: DDL may run at any time.
	Windows []string `yaml:"windows"`
	// Overrides, when false, ignores inline `lockguard:allow` comments.
	// Default true.
	Overrides *bool `yaml:"overrides"`
	// RequireReason ignores inline overrides that give no reason="…".
	RequireReason bool `yaml:"require-reason"`
}

// RuleConfig changes one rule. Every field is optional.
//
// Scope fields restrict where the rule applies; all given ones must match.
// Pattern lists are shell globs (path.Match: *, ?, [a-z]); a pattern that
// starts with "!" excludes. A value matches a list when it matches at least
// one positive pattern (or the list has none) and no negative one.
type RuleConfig struct {
	// Action is allow, warn, block or off (not evaluated at all); empty
	// keeps the preset's action.
	Action string `yaml:"action"`
	// Otherwise is the action where the scope does not match; empty means
	// the rule does not apply there.
	Otherwise string `yaml:"otherwise"`
	// Overridable says whether an inline `lockguard:allow` comment may lower
	// a block to allow (warnings can always be lowered). Default true,
	// except for ddl-freeze and ddl-outside-window.
	Overridable *bool `yaml:"overridable"`
	// Databases, Users and Applications match the session's database,
	// user and application_name.
	Databases    []string `yaml:"databases"`
	Users        []string `yaml:"users"`
	Applications []string `yaml:"applications"`
	// Tables match the relation a finding is about, as schema.name; an
	// unqualified name the catalog could not resolve counts as
	// public.name. A pattern without a dot matches the name in any schema.
	// A finding that names no relation does not match a tables scope.
	Tables []string `yaml:"tables"`
	// MinRows and MinBytes apply the rule only to tables with at least this
	// many rows or bytes (either suffices). A table whose size is unknown
	// counts as large enough; a table created in the same transaction as
	// empty.
	MinRows  RowCount `yaml:"min-rows"`
	MinBytes ByteSize `yaml:"min-bytes"`
	// Versions restricts the rule to server versions, e.g. ">= 12, < 18"
	// or "= 14" (any 14.x) or "< 14.4". An unknown server version matches.
	Versions string `yaml:"versions"`
}

func (r *RuleConfig) hasScope() bool {
	return len(r.Databases) > 0 || len(r.Users) > 0 || len(r.Applications) > 0 || len(r.Tables) > 0 ||
		r.MinRows > 0 || r.MinBytes > 0 || r.Versions != ""
}

// RowCount is a number of rows; in YAML a plain number or one with a k, M
// or G suffix (powers of 1000): 500k, 10M.
type RowCount int64

// UnmarshalText implements encoding.TextUnmarshaler.
func (n *RowCount) UnmarshalText(b []byte) error {
	v, err := parseCount(string(b), map[string]int64{"": 1, "k": 1e3, "m": 1e6, "g": 1e9})
	if err != nil {
		return fmt.Errorf("row count %q: %w", b, err)
	}
	*n = RowCount(v)
	return nil
}

// ByteSize is a size in bytes; in YAML a plain number or one with a unit as
// PostgreSQL writes them (powers of 1024): 512MB, 10GB, 1TB; kB, KiB, MiB
// and the like are accepted too.
type ByteSize int64

// UnmarshalText implements encoding.TextUnmarshaler.
func (n *ByteSize) UnmarshalText(b []byte) error {
	v, err := parseCount(string(b), map[string]int64{
		"": 1, "b": 1, "kb": 1 << 10, "kib": 1 << 10, "k": 1 << 10, "mb": 1 << 20, "mib": 1 << 20, "m": 1 << 20,
		"gb": 1 << 30, "gib": 1 << 30, "g": 1 << 30, "tb": 1 << 40, "tib": 1 << 40, "t": 1 << 40,
	})
	if err != nil {
		return fmt.Errorf("byte size %q: %w", b, err)
	}
	*n = ByteSize(v)
	return nil
}

func parseCount(s string, units map[string]int64) (int64, error) {
	s = strings.TrimSpace(strings.ReplaceAll(s, "_", ""))
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	if i == 0 {
		return 0, errors.New("not a number")
	}
	num, err := strconv.ParseFloat(s[:i], 64)
	if err != nil || num < 0 {
		return 0, errors.New("not a number")
	}
	mult, ok := units[strings.ToLower(strings.TrimSpace(s[i:]))]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q", strings.TrimSpace(s[i:]))
	}
	v := num * float64(mult)
	if v > 1<<62 {
		return 0, errors.New("too large")
	}
	return int64(v), nil
}

// ParsePolicyConfig reads the body of a `policy:` section (YAML) and
// validates it as NewPolicy does. Unknown keys are errors.
func ParsePolicyConfig(data []byte) (PolicyConfig, error) {
	var cfg PolicyConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return PolicyConfig{}, fmt.Errorf("policy: %w", err)
	}
	if _, err := NewPolicy(cfg); err != nil {
		return PolicyConfig{}, err
	}
	return cfg, nil
}

// parsePatterns validates a pattern list.
func parsePatterns(field string, pats []string) ([]pattern, error) {
	out := make([]pattern, 0, len(pats))
	for _, p := range pats {
		neg := strings.HasPrefix(p, "!")
		body := strings.TrimPrefix(p, "!")
		if body == "" {
			return nil, fmt.Errorf("%s: empty pattern", field)
		}
		if _, err := path.Match(body, ""); err != nil {
			return nil, fmt.Errorf("%s: bad pattern %q: %w", field, p, err)
		}
		out = append(out, pattern{glob: body, neg: neg, dotted: strings.Contains(body, ".")})
	}
	return out, nil
}

type pattern struct {
	glob   string
	neg    bool
	dotted bool
}

// matchList reports whether v matches the list (see RuleConfig).
func matchList(pats []pattern, v string) bool {
	pos, hit := false, false
	for _, p := range pats {
		ok, _ := path.Match(p.glob, v)
		if p.neg {
			if ok {
				return false
			}
			continue
		}
		pos = true
		hit = hit || ok
	}
	return !pos || hit
}

// matchTables matches a relation against table patterns.
func matchTables(pats []pattern, rel RelName) bool {
	if rel.Name == "" {
		return false
	}
	schema := rel.Schema
	if schema == "" {
		schema = "public"
	}
	full := schema + "." + rel.Name
	pos, hit := false, false
	for _, p := range pats {
		v := rel.Name
		if p.dotted {
			v = full
		}
		ok, _ := path.Match(p.glob, v)
		if p.neg {
			if ok {
				return false
			}
			continue
		}
		pos = true
		hit = hit || ok
	}
	return !pos || hit
}

// versionBound is one comparison of a versions constraint.
type versionBound struct {
	op    string
	lo    int // server_version_num the comparison is made against
	major bool
}

// parseVersions reads ">= 12, < 18".
func parseVersions(s string) ([]versionBound, error) {
	var out []versionBound
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' })
	if len(fields) == 0 {
		return nil, fmt.Errorf("versions %q: empty", s)
	}
	for _, f := range fields {
		f = strings.TrimSpace(f)
		op := ""
		for _, o := range []string{">=", "<=", "==", "=", ">", "<"} {
			if strings.HasPrefix(f, o) {
				op = o
				break
			}
		}
		if op == "" {
			op = "="
		}
		if op == "==" {
			op = "="
		}
		v := strings.TrimSpace(strings.TrimLeft(f, "<>="))
		num, major, ok := parseVersionNum(v)
		if !ok {
			return nil, fmt.Errorf("versions %q: bad version %q (want e.g. 12, 14.4 or 150004)", s, v)
		}
		out = append(out, versionBound{op: op, lo: num, major: major})
	}
	return out, nil
}

// parseVersionNum reads "14" (major), "14.4", "9.6.3" or "140004".
func parseVersionNum(v string) (num int, major, ok bool) {
	if v == "" {
		return 0, false, false
	}
	parts := strings.Split(v, ".")
	nums := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 1_000_000 {
			return 0, false, false
		}
		nums[i] = n
	}
	switch {
	case len(nums) == 1 && nums[0] >= 10000:
		return nums[0], false, true
	case len(nums) == 1:
		return nums[0] * 10000, true, true
	case len(nums) == 2 && nums[0] >= 10:
		return nums[0]*10000 + nums[1], false, true
	case len(nums) == 2: // 9.6 is a major version
		return nums[0]*10000 + nums[1]*100, true, true
	case len(nums) == 3 && nums[0] < 10:
		return nums[0]*10000 + nums[1]*100 + nums[2], false, true
	}
	return 0, false, false
}

func matchVersions(bounds []versionBound, v int) bool {
	if v <= 0 {
		return true
	}
	for _, b := range bounds {
		// A major version stands for [lo, next major).
		hi := b.lo + 1
		if b.major {
			if b.lo >= 100000 {
				hi = b.lo + 10000
			} else {
				hi = b.lo + 100
			}
		}
		var ok bool
		switch b.op {
		case ">=":
			ok = v >= b.lo
		case ">":
			ok = v >= hi
		case "<=":
			ok = v < hi
		case "<":
			ok = v < b.lo
		case "=":
			ok = v >= b.lo && v < hi
		}
		if !ok {
			return false
		}
	}
	return true
}

// window is one allowed DDL time window.
type window struct {
	days       uint8 // bit per time.Weekday
	start, end int   // minutes since midnight; end ≤ start wraps
	loc        *time.Location
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
	"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday, "wednesday": time.Wednesday,
	"thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday,
}

// parseWindow reads "Mon-Fri 02:00-05:00 UTC".
func parseWindow(s string) (window, error) {
	w := window{days: 0x7f, loc: time.UTC}
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return w, fmt.Errorf("window %q: empty", s)
	}
	ti := -1
	for i, f := range fields {
		if strings.Contains(f, ":") {
			ti = i
			break
		}
	}
	if ti < 0 {
		return w, fmt.Errorf("window %q: no HH:MM-HH:MM time range", s)
	}
	if ti > 1 {
		return w, fmt.Errorf("window %q: want [DAYS] HH:MM-HH:MM [ZONE]", s)
	}
	if ti == 1 {
		d, err := parseDays(fields[0])
		if err != nil {
			return w, fmt.Errorf("window %q: %w", s, err)
		}
		w.days = d
	}
	a, b, ok := strings.Cut(fields[ti], "-")
	if !ok {
		return w, fmt.Errorf("window %q: time range %q is not HH:MM-HH:MM", s, fields[ti])
	}
	var err error
	if w.start, err = parseClock(a, false); err != nil {
		return w, fmt.Errorf("window %q: %w", s, err)
	}
	if w.end, err = parseClock(b, true); err != nil {
		return w, fmt.Errorf("window %q: %w", s, err)
	}
	if w.start == w.end {
		return w, fmt.Errorf("window %q: empty time range", s)
	}
	switch rest := fields[ti+1:]; len(rest) {
	case 0:
	case 1:
		if strings.EqualFold(rest[0], "utc") || rest[0] == "Z" {
			break
		}
		if strings.EqualFold(rest[0], "local") {
			return w, fmt.Errorf("window %q: name a time zone (Local depends on the host)", s)
		}
		loc, err := time.LoadLocation(rest[0])
		if err != nil {
			return w, fmt.Errorf("window %q: unknown time zone %q", s, rest[0])
		}
		w.loc = loc
	default:
		return w, fmt.Errorf("window %q: want [DAYS] HH:MM-HH:MM [ZONE]", s)
	}
	return w, nil
}

func parseDays(s string) (uint8, error) {
	switch strings.ToLower(s) {
	case "daily", "*", "every-day", "everyday":
		return 0x7f, nil
	case "weekdays":
		return 0x3e, nil
	case "weekends":
		return 0x41, nil
	}
	var mask uint8
	for _, part := range strings.Split(s, ",") {
		a, b, isRange := strings.Cut(part, "-")
		from, ok := dayNames[strings.ToLower(a)]
		if !ok {
			return 0, fmt.Errorf("unknown day %q", a)
		}
		to := from
		if isRange {
			if to, ok = dayNames[strings.ToLower(b)]; !ok {
				return 0, fmt.Errorf("unknown day %q", b)
			}
		}
		for d := from; ; d = (d + 1) % 7 {
			mask |= 1 << d
			if d == to {
				break
			}
		}
	}
	return mask, nil
}

func parseClock(s string, end bool) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(m) != 2 || hh < 0 || mm < 0 || mm > 59 || hh > 24 || hh == 24 && (mm != 0 || !end) {
		return 0, fmt.Errorf("bad time %q (want HH:MM)", s)
	}
	return hh*60 + mm, nil
}

// contains reports whether t falls inside the window.
func (w window) contains(t time.Time) bool {
	t = t.In(w.loc)
	m := t.Hour()*60 + t.Minute()
	d := t.Weekday()
	if w.start < w.end {
		return w.days&(1<<d) != 0 && m >= w.start && m < w.end
	}
	prev := (d + 6) % 7
	return w.days&(1<<d) != 0 && m >= w.start || w.days&(1<<prev) != 0 && m < w.end
}

// suggestRules returns rule ids that resemble id, for error messages.
func suggestRules(id string) []string {
	var out []string
	for _, r := range ruleCatalog {
		if strings.Contains(r.ID, id) || strings.Contains(id, r.ID) || editDistance(r.ID, id) <= 3 {
			out = append(out, r.ID)
		}
	}
	sort.Strings(out)
	if len(out) > 5 {
		out = out[:5]
	}
	return out
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
