package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/telemetry"
)

// The dashboard and the alert rules reference lockguard's metrics by their
// Prometheus names. A renamed metric or label leaves a panel empty and an
// alert silent without any error anywhere, so these tests scrape a real
// telemetry.Provider and check every name the PromQL uses against it.

const (
	dashboardFile = "grafana/lockguard.json"
	alertsFile    = "prometheus/alerts.yaml"
)

// notLockguard are the only series the dashboard and rules may reference
// that lockguard does not export, with the labels they may use. `up` is
// written by Prometheus for every scrape target (LockguardDown needs it).
var notLockguard = map[string][]string{
	"up": nil,
}

// targetLabels are attached by Prometheus to every scraped series.
var targetLabels = []string{"job", "instance"}

// exported is what lockguard serves at /metrics: each series name (histogram
// _bucket, _sum and _count included) with the label names seen on it.
type exported struct {
	series map[string]map[string]bool
	// families are the "# TYPE" names.
	families map[string]string // name → type
}

func (e *exported) has(name string) bool { _, ok := e.series[name]; return ok }

// allLabels is every label name on any series.
func (e *exported) allLabels() map[string]bool {
	all := map[string]bool{}
	for _, ls := range e.series {
		for l := range ls {
			all[l] = true
		}
	}
	return all
}

// scrapeLockguard starts a Provider, makes every instrument record once so
// that each has a series, and parses what MetricsHandler serves.
func scrapeLockguard(t *testing.T) *exported {
	t.Helper()
	ctx := context.Background()
	p, err := telemetry.Setup(ctx, telemetry.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	m := p.Metrics
	m.Statement(ctx, "ddl", "pass", 1)
	m.DDL(ctx, "gave_up")
	m.LockWaited(ctx, 0.2, "timeout")
	m.Held(ctx, 0.05, "shed")
	m.Shedded(ctx, "lock_awaited")
	m.Retry(ctx)
	m.Violation(ctx, "adding-column-with-volatile-default", "block")
	m.ParseFailed(ctx, "relayed")
	m.Watchdog(ctx, "cancel")
	up := telemetry.Upstream{Host: "127.0.0.1", Port: 5432, Namespace: "app"}
	m.OperationSeries(up, "").Record(3 * time.Millisecond)
	m.OperationSeries(up, "57014").Record(500 * time.Millisecond)
	pool, clients := m.ConnectionOpts(up)
	m.ConnectionCount.Add(ctx, 1, pool...)
	m.ClientConns.Add(ctx, 1, clients...)
	m.AddedLatency.Record(40 * time.Microsecond)

	// Every instrument in Metrics must have produced a family: a new one
	// that this test does not exercise would go unchecked.
	before := parseExposition(t, scrape(t, p))
	var instruments []string
	mt := reflect.TypeOf(m).Elem()
	for i := range mt.NumField() {
		f := mt.Field(i)
		if f.IsExported() && (f.Type.PkgPath() == "go.opentelemetry.io/otel/metric" || f.Type == reflect.TypeFor[*telemetry.Histogram]()) {
			instruments = append(instruments, f.Name)
		}
	}
	lockguardFamilies := 0
	for name := range before.families {
		if name != "target_info" {
			lockguardFamilies++
		}
	}
	if lockguardFamilies != len(instruments) {
		t.Fatalf("telemetry.Metrics has %d instruments (%v) but the scrape shows %d families (%v): exercise the new instrument in scrapeLockguard",
			len(instruments), instruments, lockguardFamilies, keys(before.families))
	}

	// The lock gauges: a granted ACCESS EXCLUSIVE lock held by an old
	// transaction, a DDL waiting for it, and statements lockguard holds.
	var board guard.Board
	now := time.Now()
	rel := guard.RelName{Schema: "public", Name: "orders"}
	board.SetMonitored([]guard.Hazard{
		{Rel: rel, Mode: guard.AccessExclusive, Granted: true, PID: 101, Source: "monitor", XactStart: now.Add(-90 * time.Second)},
		{Rel: rel, Mode: guard.AccessExclusive, PID: 102, Source: "monitor", WaitStart: now.Add(-10 * time.Second), BlockedBy: []int{101}},
	})
	err = p.ObserveLocks(telemetry.LockSources{
		Hazards: board.Snapshot,
		Held:    func() map[string]int { return map[string]int{"public.orders": 3} },
		Now:     func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	e := parseExposition(t, scrape(t, p))
	for _, want := range []string{"lockguard_queue_depth", "lockguard_blocker_xact_age_seconds", "lockguard_hazards"} {
		if !e.has(want) {
			t.Fatalf("ObserveLocks with a synthetic board exported no %s; the scrape has %v", want, keys(e.series))
		}
	}
	return e
}

func scrape(t *testing.T, p *telemetry.Provider) []byte {
	t.Helper()
	rec := httptest.NewRecorder()
	p.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.Bytes()
}

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+\S+`)
var labelInSample = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"`)

// parseExposition reads the Prometheus text format.
func parseExposition(t *testing.T, body []byte) *exported {
	t.Helper()
	e := &exported{series: map[string]map[string]bool{}, families: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "# TYPE ") {
			f := strings.Fields(line)
			if len(f) != 4 {
				t.Fatalf("bad TYPE line %q", line)
			}
			e.families[f[2]] = f[3]
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("cannot read sample line %q", line)
		}
		ls := e.series[m[1]]
		if ls == nil {
			ls = map[string]bool{}
			e.series[m[1]] = ls
		}
		for _, l := range labelInSample.FindAllStringSubmatch(m[3], -1) {
			ls[l[1]] = true
		}
	}
	if len(e.series) == 0 {
		t.Fatalf("the scrape has no series:\n%s", body)
	}
	return e
}

// ---------------------------------------------------------------------------
// A PromQL tokenizer, just enough to find the metric and label names an
// expression references. It knows strings, label matchers, label lists,
// range and subquery brackets, numbers, durations, keywords, function and
// aggregation names, and Grafana's $variables; anything it does not know is
// an error rather than a guess.

type tokKind int

const (
	tIdent tokKind = iota
	tString
	tNumber
	tVar
	tPunct
)

type token struct {
	kind tokKind
	text string // for tString, the unquoted value
	pos  int
}

var (
	reDuration = regexp.MustCompile(`^([0-9]+(ms|[smhdwy]))+`)
	reNumber   = regexp.MustCompile(`^(0[xX][0-9a-fA-F]+|([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?)`)
	reIdent    = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_:]*`)
	reWordChar = regexp.MustCompile(`^[a-zA-Z0-9_]`)
	reVar      = regexp.MustCompile(`^\$(\{[^}]+\}|[a-zA-Z0-9_]+)`)
	punct2     = []string{"!=", "=~", "!~", "==", ">=", "<="}
)

func lexPromQL(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			var b strings.Builder
			for ; j < len(s) && s[j] != c; j++ {
				if s[j] == '\\' && c != '`' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			toks = append(toks, token{tString, b.String(), i})
			i = j + 1
		case c == '$':
			m := reVar.FindString(s[i:])
			if m == "" {
				return nil, fmt.Errorf("stray $ at %d", i)
			}
			toks = append(toks, token{tVar, m, i})
			i += len(m)
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			m := reDuration.FindString(s[i:])
			if m == "" {
				m = reNumber.FindString(s[i:])
			}
			if reWordChar.MatchString(s[i+len(m):]) {
				return nil, fmt.Errorf("bad number or duration %q at %d", reIdent.FindString(s[i:])+"…", i)
			}
			toks = append(toks, token{tNumber, m, i})
			i += len(m)
		case reIdent.MatchString(s[i : i+1]):
			m := reIdent.FindString(s[i:])
			toks = append(toks, token{tIdent, m, i})
			i += len(m)
		default:
			n := 1
			for _, p := range punct2 {
				if strings.HasPrefix(s[i:], p) {
					n = 2
				}
			}
			if n == 1 && !strings.ContainsRune("(){}[],=+-*/%^<>@:", rune(c)) {
				return nil, fmt.Errorf("unexpected %q at %d", c, i)
			}
			toks = append(toks, token{tPunct, s[i : i+n], i})
			i += n
		}
	}
	return toks, nil
}

// promFunctions are PromQL's functions (Prometheus 3), aggregation
// operators and the @ modifiers start() and end(); promAggregations are the
// operators that may take by/without between their name and "(".
var promFunctions, promAggregations = map[string]bool{}, map[string]bool{}

func init() {
	for _, f := range strings.Fields(`abs absent absent_over_time acos acosh asin asinh atan atanh
		avg_over_time ceil changes clamp clamp_max clamp_min cos cosh count_over_time days_in_month
		day_of_month day_of_week day_of_year deg delta deriv double_exponential_smoothing exp floor
		histogram_avg histogram_count histogram_fraction histogram_quantile histogram_stddev
		histogram_stdvar histogram_sum holt_winters hour idelta increase info irate label_join
		label_replace last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute
		month pi predict_linear present_over_time quantile_over_time rad rate resets round scalar sgn
		sin sinh sort sort_by_label sort_by_label_desc sort_desc sqrt stddev_over_time
		stdvar_over_time sum_over_time tan tanh time timestamp vector year start end`) {
		promFunctions[f] = true
	}
	for _, f := range strings.Fields(`sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio`) {
		promFunctions[f] = true
		promAggregations[f] = true
	}
}

// selectorRef is one vector selector: a metric name and the labels its
// matchers use.
type selectorRef struct {
	name   string
	labels []string
}

// promRefs is what an expression references.
type promRefs struct {
	selectors []selectorRef
	// labels named in by/without/on/ignoring/group_left/group_right lists
	// and as label_replace/label_join sources.
	labels []string
	// created are labels label_replace or label_join make.
	created []string
}

// call is an open parenthesis: the function it belongs to ("" for
// grouping) and which argument is being read.
type call struct {
	fn  string
	arg int
}

func parsePromQL(expr string) (*promRefs, error) {
	toks, err := lexPromQL(expr)
	if err != nil {
		return nil, err
	}
	r := &promRefs{}
	var stack []call
	pending := "" // the function whose "(" comes next
	peek := func(i int, text string) bool {
		return i < len(toks) && toks[i].kind == tPunct && toks[i].text == text
	}
	peekIdent := func(i int, words ...string) bool {
		return i < len(toks) && toks[i].kind == tIdent && slices.Contains(words, strings.ToLower(toks[i].text))
	}
	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		switch tk.kind {
		case tString:
			// A function argument: label_replace(v, dst, repl, src, regex),
			// label_join(v, dst, sep, src...), count_values(dst, v) and
			// sort_by_label(v, label...) name labels.
			if n := len(stack); n > 0 {
				switch c := stack[n-1]; {
				case (c.fn == "label_replace" || c.fn == "label_join") && c.arg == 1, c.fn == "count_values" && c.arg == 0:
					r.created = append(r.created, tk.text)
				case c.fn == "label_replace" && c.arg == 3, c.fn == "label_join" && c.arg >= 3,
					strings.HasPrefix(c.fn, "sort_by_label") && c.arg >= 1:
					r.labels = append(r.labels, tk.text)
				}
			}
		case tNumber, tVar:
		case tPunct:
			switch tk.text {
			case "(":
				stack = append(stack, call{fn: pending})
				pending = ""
			case ")":
				if len(stack) == 0 {
					return nil, fmt.Errorf("unbalanced ) at %d", tk.pos)
				}
				stack = stack[:len(stack)-1]
			case ",":
				if len(stack) == 0 {
					return nil, fmt.Errorf("stray , at %d", tk.pos)
				}
				stack[len(stack)-1].arg++
			case "{":
				// A selector without a name outside the braces.
				sel, next, err := parseMatchers(toks, i, "")
				if err != nil {
					return nil, err
				}
				if sel.name == "" {
					return nil, fmt.Errorf("selector at %d has no metric name", tk.pos)
				}
				r.selectors = append(r.selectors, sel)
				i = next
			case "}":
				return nil, fmt.Errorf("unbalanced } at %d", tk.pos)
			case "[":
				j := i + 1
				for ; j < len(toks) && !peek(j, "]"); j++ {
					if k := toks[j]; k.kind != tNumber && k.kind != tVar && !(k.kind == tPunct && k.text == ":") {
						return nil, fmt.Errorf("unexpected %q in [...] at %d", k.text, k.pos)
					}
				}
				if j == len(toks) {
					return nil, fmt.Errorf("unterminated [ at %d", tk.pos)
				}
				i = j
			case "]":
				return nil, fmt.Errorf("unbalanced ] at %d", tk.pos)
			}
		case tIdent:
			switch kw := strings.ToLower(tk.text); {
			case kw == "by" || kw == "without" || kw == "on" || kw == "ignoring" || kw == "group_left" || kw == "group_right":
				if !peek(i+1, "(") {
					if kw == "group_left" || kw == "group_right" {
						continue
					}
					return nil, fmt.Errorf("%s without a label list at %d", tk.text, tk.pos)
				}
				j := i + 2
				for ; j < len(toks) && !peek(j, ")"); j++ {
					switch k := toks[j]; {
					case k.kind == tIdent || k.kind == tString:
						r.labels = append(r.labels, k.text)
					case k.kind == tPunct && k.text == ",":
					default:
						return nil, fmt.Errorf("unexpected %q in the label list of %s at %d", k.text, tk.text, k.pos)
					}
				}
				if j == len(toks) {
					return nil, fmt.Errorf("unterminated label list at %d", tk.pos)
				}
				i = j
			case kw == "offset":
				if peek(i+1, "-") {
					i++
				}
				if i+1 >= len(toks) || (toks[i+1].kind != tNumber && toks[i+1].kind != tVar) {
					return nil, fmt.Errorf("offset without a duration at %d", tk.pos)
				}
				i++
			case kw == "and" || kw == "or" || kw == "unless" || kw == "bool" || kw == "atan2" || kw == "inf" || kw == "nan":
			case promAggregations[tk.text] && peekIdent(i+1, "by", "without"):
				pending = tk.text
			case peek(i+1, "("):
				if !promFunctions[tk.text] {
					return nil, fmt.Errorf("unknown function %s at %d", tk.text, tk.pos)
				}
				pending = tk.text
			default:
				sel := selectorRef{name: tk.text}
				if peek(i+1, "{") {
					var err error
					if sel, i, err = parseMatchers(toks, i+1, tk.text); err != nil {
						return nil, err
					}
				}
				r.selectors = append(r.selectors, sel)
			}
		}
	}
	if len(stack) != 0 {
		return nil, fmt.Errorf("unclosed (")
	}
	return r, nil
}

// parseMatchers reads {label op "value", ...} starting at the "{" at
// toks[i]; it returns the selector and the index of the closing "}".
func parseMatchers(toks []token, i int, name string) (selectorRef, int, error) {
	sel := selectorRef{name: name}
	j := i + 1
	for j < len(toks) {
		k := toks[j]
		if k.kind == tPunct && k.text == "}" {
			return sel, j, nil
		}
		if k.kind == tPunct && k.text == "," {
			j++
			continue
		}
		if k.kind != tIdent && k.kind != tString {
			return sel, 0, fmt.Errorf("unexpected %q in a label matcher at %d", k.text, k.pos)
		}
		// A quoted name alone is the metric name (Prometheus 3).
		if k.kind == tString && j+1 < len(toks) && toks[j+1].kind == tPunct && (toks[j+1].text == "," || toks[j+1].text == "}") {
			if sel.name != "" {
				return sel, 0, fmt.Errorf("two metric names at %d", k.pos)
			}
			sel.name = k.text
			j++
			continue
		}
		if j+2 >= len(toks) || toks[j+1].kind != tPunct || !slices.Contains([]string{"=", "!=", "=~", "!~"}, toks[j+1].text) || toks[j+2].kind != tString {
			return sel, 0, fmt.Errorf("bad label matcher at %d", k.pos)
		}
		if k.text == "__name__" {
			if toks[j+1].text != "=" || sel.name != "" {
				return sel, 0, fmt.Errorf("cannot check a __name__ %s matcher at %d", toks[j+1].text, k.pos)
			}
			sel.name = toks[j+2].text
		} else {
			sel.labels = append(sel.labels, k.text)
		}
		j += 3
	}
	return sel, 0, fmt.Errorf("unterminated { at %d", toks[i].pos)
}

// checkRefs returns a problem for every name r references that lockguard
// does not export.
func checkRefs(e *exported, r *promRefs) []string {
	var bad []string
	known := e.allLabels()
	for _, l := range targetLabels {
		known[l] = true
	}
	known["le"] = true
	for _, c := range r.created {
		known[c] = true
	}
	for _, s := range r.selectors {
		labels, ok := e.series[s.name]
		allowed, exception := notLockguard[s.name]
		switch {
		case ok:
		case exception:
			labels = map[string]bool{}
			for _, l := range allowed {
				labels[l] = true
			}
		default:
			bad = append(bad, fmt.Sprintf("metric %s is not exported by lockguard%s", s.name, suggest(e, s.name)))
			continue
		}
		for _, l := range s.labels {
			if !labels[l] && !slices.Contains(targetLabels, l) {
				bad = append(bad, fmt.Sprintf("metric %s has no label %s", s.name, l))
			}
		}
	}
	for _, l := range r.labels {
		if !known[l] {
			bad = append(bad, fmt.Sprintf("no lockguard metric has a label %s", l))
		}
	}
	return bad
}

// suggest names the exported series closest to a missing name.
func suggest(e *exported, name string) string {
	var near []string
	for s := range e.series {
		if d := editDistance(s, name); d <= 3 || strings.HasPrefix(s, name) || strings.HasPrefix(name, s) {
			near = append(near, s)
		}
	}
	if len(near) == 0 {
		return ""
	}
	sort.Strings(near)
	return " (did you mean " + strings.Join(near, " or ") + "?)"
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ---------------------------------------------------------------------------
// The dashboard.

type gPanel struct {
	ID          int                       `json:"id"`
	Type        string                    `json:"type"`
	Title       string                    `json:"title"`
	Description string                    `json:"description"`
	Datasource  *gDatasource              `json:"datasource"`
	GridPos     *struct{ H, W, X, Y int } `json:"gridPos"`
	Targets     []gTarget                 `json:"targets"`
	Panels      []gPanel                  `json:"panels"`
	FieldConfig json.RawMessage           `json:"fieldConfig"`
}

type gDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type gTarget struct {
	Expr       string       `json:"expr"`
	RefID      string       `json:"refId"`
	Datasource *gDatasource `json:"datasource"`
}

type gVariable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
	Datasource *gDatasource    `json:"datasource"`
}

type gDashboard struct {
	SchemaVersion int      `json:"schemaVersion"`
	UID           string   `json:"uid"`
	Title         string   `json:"title"`
	Panels        []gPanel `json:"panels"`
	Templating    struct {
		List []gVariable `json:"list"`
	} `json:"templating"`
}

func loadDashboard(t *testing.T) (raw any, d *gDashboard) {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(b) {
		t.Fatalf("%s is not valid JSON", dashboardFile)
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	d = &gDashboard{}
	if err := json.Unmarshal(b, d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return raw, d
}

// exprFields returns every "expr" string anywhere in v, with its JSON path.
func exprFields(v any, path string, out map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, c := range v {
			p := path + "." + k
			if s, ok := c.(string); ok && k == "expr" {
				out[p] = s
				continue
			}
			exprFields(c, p, out)
		}
	case []any:
		for i, c := range v {
			exprFields(c, fmt.Sprintf("%s[%d]", path, i), out)
		}
	}
}

var labelValues = regexp.MustCompile(`^\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)

// variableQueries returns the PromQL inside the dashboard's query
// variables, label_values(selector, label) or query_result(expr), and the
// labels label_values asks for.
func variableQueries(t *testing.T, d *gDashboard) (exprs map[string]string, labels map[string]string) {
	exprs, labels = map[string]string{}, map[string]string{}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q := v.Definition
		var obj struct {
			Query string `json:"query"`
		}
		var s string
		if json.Unmarshal(v.Query, &obj) == nil && obj.Query != "" {
			q = obj.Query
		} else if json.Unmarshal(v.Query, &s) == nil && s != "" {
			q = s
		}
		if v.Definition != "" && v.Definition != q {
			t.Errorf("variable %s: definition %q differs from query %q", v.Name, v.Definition, q)
		}
		switch m := labelValues.FindStringSubmatch(q); {
		case m != nil:
			exprs["variable "+v.Name] = m[1]
			labels["variable "+v.Name] = m[2]
		case strings.HasPrefix(q, "query_result(") && strings.HasSuffix(q, ")"):
			exprs["variable "+v.Name] = strings.TrimSuffix(strings.TrimPrefix(q, "query_result("), ")")
		default:
			t.Errorf("variable %s: cannot read its query %q", v.Name, q)
		}
	}
	return exprs, labels
}

// flatPanels lists the panels, rows' nested panels included.
func flatPanels(ps []gPanel) []gPanel {
	var out []gPanel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, flatPanels(p.Panels)...)
	}
	return out
}

func TestDashboardStructure(t *testing.T) {
	_, d := loadDashboard(t)
	if d.SchemaVersion < 39 {
		t.Errorf("schemaVersion %d, want at least 39", d.SchemaVersion)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("the dashboard needs a uid and a title")
	}
	vars := map[string]gVariable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if v, ok := vars["datasource"]; !ok || v.Type != "datasource" || string(v.Query) != `"prometheus"` {
		t.Errorf("want a Prometheus datasource variable named datasource, have %+v", v)
	}
	for _, name := range []string{"job", "instance"} {
		v, ok := vars[name]
		if !ok || v.Type != "query" {
			t.Errorf("want a query variable %s", name)
			continue
		}
		if v.Datasource == nil || v.Datasource.UID != "${datasource}" {
			t.Errorf("variable %s must query ${datasource}, has %+v", name, v.Datasource)
		}
	}
	ids := map[int]string{}
	panels := flatPanels(d.Panels)
	if len(panels) < 10 {
		t.Fatalf("only %d panels", len(panels))
	}
	for _, p := range panels {
		name := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if p.ID == 0 {
			t.Errorf("%s has no id", name)
		} else if other, dup := ids[p.ID]; dup {
			t.Errorf("%s has the same id as %q", name, other)
		}
		ids[p.ID] = p.Title
		if p.Title == "" || p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("%s needs a title and a gridPos within 24 columns", name)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("%s: datasource must be {prometheus, ${datasource}}, is %+v", name, p.Datasource)
		}
		if len(strings.TrimSpace(p.Description)) < 40 {
			t.Errorf("%s needs a description that says what to do when it is red", name)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s has no target", name)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("%s: every target needs an expr and a distinct refId: %+v", name, tg)
			}
			refs[tg.RefID] = true
			if tg.Datasource != nil && tg.Datasource.UID != "${datasource}" {
				t.Errorf("%s: target %s queries datasource %q", name, tg.RefID, tg.Datasource.UID)
			}
		}
	}
}

// TestDashboardMetricsExist is the point of this file: every metric and
// label the dashboard's queries name is one lockguard exports, every
// selector follows the job and instance variables, and every lockguard
// metric is on the dashboard.
func TestDashboardMetricsExist(t *testing.T) {
	e := scrapeLockguard(t)
	raw, d := loadDashboard(t)
	exprs := map[string]string{}
	exprFields(raw, "", exprs)
	if len(exprs) == 0 {
		t.Fatal("no expr in the dashboard")
	}
	vexprs, vlabels := variableQueries(t, d)
	for where, l := range vlabels {
		if !e.allLabels()[l] && !slices.Contains(targetLabels, l) {
			t.Errorf("%s: label_values of a label %s no lockguard metric has", where, l)
		}
	}
	used := map[string]bool{}
	check := func(where, expr string, wantFilters bool) {
		r, err := parsePromQL(expr)
		if err != nil {
			t.Errorf("%s: %v in %q", where, err, expr)
			return
		}
		if len(r.selectors) == 0 {
			t.Errorf("%s: %q references no metric", where, expr)
		}
		for _, bad := range checkRefs(e, r) {
			t.Errorf("%s: %s, in %q", where, bad, expr)
		}
		for _, s := range r.selectors {
			used[s.name] = true
			if wantFilters && (!slices.Contains(s.labels, "job") || !slices.Contains(s.labels, "instance")) {
				t.Errorf("%s: %s must be filtered by job=~\"$job\" and instance=~\"$instance\"", where, s.name)
			}
		}
	}
	for where, expr := range exprs {
		check(where, expr, true)
	}
	for where, expr := range vexprs {
		check(where, expr, false)
	}
	// Every lockguard family on the dashboard (a histogram through any of
	// its series).
	for fam, typ := range e.families {
		if fam == "target_info" {
			continue
		}
		names := []string{fam}
		if typ == "histogram" {
			names = []string{fam + "_bucket", fam + "_sum", fam + "_count"}
		}
		if !slices.ContainsFunc(names, func(n string) bool { return used[n] }) {
			t.Errorf("no dashboard panel shows %s", fam)
		}
	}
}

// ---------------------------------------------------------------------------
// The alert rules, in Prometheus's rule file format; the same groups are
// the spec of a PrometheusRule.

type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name     string            `yaml:"name"`
	Interval string            `yaml:"interval"`
	Limit    int               `yaml:"limit"`
	Labels   map[string]string `yaml:"labels"`
	Rules    []rule            `yaml:"rules"`
}

type rule struct {
	Record        string            `yaml:"record"`
	Alert         string            `yaml:"alert"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for"`
	KeepFiringFor string            `yaml:"keep_firing_for"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

var promDuration = regexp.MustCompile(`^([0-9]+(ms|[smhdwy]))+$`)
var alertName = regexp.MustCompile(`^Lockguard[A-Z][A-Za-z0-9]+$`)

func loadRules(t *testing.T) *ruleFile {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f ruleFile
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	return &f
}

func TestAlertRulesStructure(t *testing.T) {
	f := loadRules(t)
	if len(f.Groups) == 0 {
		t.Fatal("no rule groups")
	}
	groups, alerts := map[string]bool{}, map[string]bool{}
	for _, g := range f.Groups {
		if g.Name == "" || groups[g.Name] {
			t.Errorf("group names must be set and distinct: %q", g.Name)
		}
		groups[g.Name] = true
		if len(g.Rules) == 0 {
			t.Errorf("group %s has no rules", g.Name)
		}
		for _, r := range g.Rules {
			name := g.Name + "/" + r.Alert
			if r.Alert == "" || r.Record != "" {
				t.Errorf("%s: only alerting rules belong here (alert set, record unset)", name)
				continue
			}
			if !alertName.MatchString(r.Alert) || alerts[r.Alert] {
				t.Errorf("%s: alert names are distinct and read LockguardSomething", name)
			}
			alerts[r.Alert] = true
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s has no expr", name)
			}
			if r.For == "" {
				t.Errorf("%s: say how long the condition must hold (for:, 0m for at once)", name)
			}
			for _, d := range []string{r.For, r.KeepFiringFor, g.Interval} {
				if d != "" && !promDuration.MatchString(d) {
					t.Errorf("%s: %q is not a Prometheus duration", name, d)
				}
			}
			if !slices.Contains([]string{"critical", "warning", "info"}, r.Labels["severity"]) {
				t.Errorf("%s: severity label must be critical, warning or info, is %q", name, r.Labels["severity"])
			}
			for _, a := range []string{"summary", "description", "runbook"} {
				if len(strings.TrimSpace(r.Annotations[a])) < 10 {
					t.Errorf("%s needs a %s annotation", name, a)
				}
			}
			for k, v := range r.Annotations {
				if strings.Count(v, "{{") != strings.Count(v, "}}") {
					t.Errorf("%s: annotation %s has unbalanced {{ }}", name, k)
				}
			}
		}
	}
	for _, want := range []string{"LockguardBlockerTransactionOld", "LockguardSheddingSustained", "LockguardDDLGaveUp",
		"LockguardLockQueueDeep", "LockguardAddedLatencyHigh", "LockguardDown"} {
		if !alerts[want] {
			t.Errorf("missing alert %s", want)
		}
	}
}

func TestAlertRulesMetricsExist(t *testing.T) {
	e := scrapeLockguard(t)
	f := loadRules(t)
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			ref, err := parsePromQL(r.Expr)
			if err != nil {
				t.Errorf("%s: %v in %q", r.Alert, err, r.Expr)
				continue
			}
			if len(ref.selectors) == 0 {
				t.Errorf("%s: %q references no metric", r.Alert, r.Expr)
			}
			for _, bad := range checkRefs(e, ref) {
				t.Errorf("%s: %s", r.Alert, bad)
			}
			// Templates may only use labels the result can have: with a
			// by/on list, those it names; otherwise the labels of the
			// series it selects. (An approximation: it catches typos and
			// labels an aggregation dropped.)
			keep := map[string]bool{}
			for _, l := range targetLabels {
				keep[l] = true
			}
			for _, l := range ref.created {
				keep[l] = true
			}
			if len(ref.labels) > 0 {
				for _, l := range ref.labels {
					keep[l] = true
				}
			} else {
				for _, s := range ref.selectors {
					for l := range e.series[s.name] {
						keep[l] = true
					}
				}
			}
			for k, v := range r.Annotations {
				for _, m := range templateLabel.FindAllStringSubmatch(v, -1) {
					if !keep[m[1]] {
						t.Errorf("%s: annotation %s uses $labels.%s, which the expression's result does not have", r.Alert, k, m[1])
					}
				}
			}
		}
	}
}

var templateLabel = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)

// ---------------------------------------------------------------------------
// The checks must be able to fail.

func TestPromQLReferencesCatchMistakes(t *testing.T) {
	e := scrapeLockguard(t)
	cases := []struct {
		expr string
		want string // in a problem or parse error; "" means no problem
	}{
		{`sum by (lockguard_reason) (rate(lockguard_shed_total{job=~"$job"}[$__rate_interval]))`, ""},
		{`sum by (lockguard_reason) (rate(lockguard_sheds_total{job=~"$job"}[5m]))`, "metric lockguard_sheds_total is not exported"},
		{`rate(lockguard_shed_total[5m]) / rate(bogus_metric_total[5m]) > 0`, "metric bogus_metric_total"},
		{`histogram_quantile(0.99, sum by (le) (rate(lockguard_proxy_added_latency_seconds[5m])))`, "lockguard_proxy_added_latency_seconds is not exported"},
		{`sum by (lockguard_reasons) (rate(lockguard_shed_total[5m]))`, "no lockguard metric has a label lockguard_reasons"},
		{`lockguard_shed_total{reason="lock_held"}`, "has no label reason"},
		{`lockguard_queue_depth{lockguard_relation="public.orders"} offset 5m > 3`, ""},
		{`{__name__="lockguard_nope"}`, "metric lockguard_nope"},
		{`{"lockguard.queue.depth"}`, "metric lockguard.queue.depth"},
		{`rate(lockguard_shed_total[5m:1m]) and on (instance) up == 1`, ""},
		{`up{job="lockguard", team="x"} == 0`, "metric up has no label team"},
		{`sum by (sqlstate_class) (label_replace(rate(db_client_operation_duration_seconds_count[5m]), "sqlstate_class", "$1", "db_response_status_code", "(..).*"))`, ""},
		{`sum by (sqlstate_class) (rate(db_client_operation_duration_seconds_count[5m]))`, "label sqlstate_class"},
		{`label_replace(lockguard_hazards, "x", "$1", "lockguard_state", "(.*)")`, "label lockguard_state"},
		{`sort_by_label(lockguard_queue_depth, "lockguard_relation")`, ""},
		{`sort_by_label(lockguard_queue_depth, "relation")`, "label relation"},
		{`count_values by (v) ("v", lockguard_hazards)`, ""},
		{`frobnicate(lockguard_shed_total)`, "unknown function frobnicate"},
		{`sum(rate(lockguard_shed_total[5m])`, "unclosed"},
		{`lockguard_shed_total{lockguard_reason="x"`, "unterminated"},
		{`rate(lockguard_shed_total[5min])`, "bad number or duration"},
		{`"unterminated`, "unterminated string"},
		{`lockguard_shed_total # lockguard_bogus in a comment`, ""},
	}
	for _, c := range cases {
		var problems []string
		r, err := parsePromQL(c.expr)
		if err != nil {
			problems = []string{err.Error()}
		} else {
			problems = checkRefs(e, r)
		}
		got := strings.Join(problems, "; ")
		switch {
		case c.want == "" && got != "":
			t.Errorf("%q: unexpected problems: %s", c.expr, got)
		case c.want != "" && !strings.Contains(got, c.want):
			t.Errorf("%q: want a problem mentioning %q, got %q", c.expr, c.want, got)
		}
	}
}

func TestPromQLTokenizer(t *testing.T) {
	r, err := parsePromQL(`histogram_quantile(0.99, sum without (instance) (rate(db_client_operation_duration_seconds_bucket{db_namespace!="", job=~"a|b"}[$__rate_interval] offset -1h30m))) * on (job) group_left (db_namespace) max by (job) (lockguard_blocker_xact_age_seconds @ end()) > bool 1e-3 or vector(0) unless {__name__="lockguard_hazards", lockguard_lock_state='held'}`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range r.selectors {
		names = append(names, s.name+"{"+strings.Join(s.labels, ",")+"}")
	}
	want := []string{"db_client_operation_duration_seconds_bucket{db_namespace,job}", "lockguard_blocker_xact_age_seconds{}", "lockguard_hazards{lockguard_lock_state}"}
	if !slices.Equal(names, want) {
		t.Errorf("selectors %v, want %v", names, want)
	}
	if wantLabels := []string{"instance", "job", "db_namespace", "job"}; !slices.Equal(r.labels, wantLabels) {
		t.Errorf("labels %v, want %v", r.labels, wantLabels)
	}
}
