package demo

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
)

// Report is the outcome of both runs.
type Report struct {
	PostgreSQL            string   `json:"postgresql"`
	Workers               int      `json:"workers"`
	Pool                  int      `json:"pool"`
	RunSeconds            float64  `json:"run_seconds"`
	RequestTimeoutSeconds float64  `json:"request_timeout_seconds"`
	Lockguard             string   `json:"lockguard_settings,omitempty"`
	DDL                   string   `json:"ddl"`
	Timeline              Timeline `json:"timeline"`
	// Runs are the direct run and the run through lockguard, in that order.
	Runs []RunReport `json:"runs"`
	// Headline states the measured stalls of products and users.
	Headline string `json:"headline"`
}

// Timeline is the planned incident, in seconds since a run started.
type Timeline struct {
	ReportOpen  float64 `json:"report_open_s"`
	ReportClose float64 `json:"report_close_s"`
	Deploy      float64 `json:"deploy_s"`
}

// Span is an interval in seconds since the run started.
type Span struct {
	From float64 `json:"from_s"`
	To   float64 `json:"to_s"`
}

// RunReport is one run.
type RunReport struct {
	Name    string       `json:"name"` // "direct" or "lockguard"
	Title   string       `json:"title"`
	Seconds float64      `json:"seconds"`
	Tables  []TableStats `json:"tables"`
	// MaxLockWaiters is the most backends of the demo's database seen
	// waiting for a lock at once (pg_locks WHERE NOT granted, every 100 ms).
	MaxLockWaiters int        `json:"max_lock_waiters"`
	ReportTx       Span       `json:"report_transaction"`
	DDL            DDLOutcome `json:"ddl"`
	// BucketMS is the width of the buckets below.
	BucketMS int `json:"bucket_ms"`
	// OKPerBucket counts successful requests per table per bucket, by
	// completion time.
	OKPerBucket map[string][]int `json:"ok_per_bucket"`
	// Waiters is the most lock waiters sampled in each bucket.
	Waiters []int `json:"lock_waiters_per_bucket"`
}

// DDLOutcome is what happened to the deploy's migration.
type DDLOutcome struct {
	StartedAt float64 `json:"started_at_s"`
	EndedAt   float64 `json:"ended_at_s"`
	Landed    bool    `json:"landed"`
	Error     string  `json:"error,omitempty"`
	// InLockQueue is how long the deploy's backend was seen waiting in
	// pg_locks; QueueEpisodes counts separate waits (lockguard's retries
	// show as several).
	InLockQueue   float64 `json:"in_lock_queue_s"`
	QueueEpisodes int     `json:"lock_queue_episodes"`
}

func (d DDLOutcome) describe() string {
	switch {
	case d.Landed:
		return fmt.Sprintf("DDL landed at %.1fs", d.EndedAt)
	case d.EndedAt > 0:
		return fmt.Sprintf("DDL failed at %.1fs (%s)", d.EndedAt, truncate(d.Error, 120))
	case d.StartedAt > 0:
		return "DDL did not finish"
	default:
		return "DDL never started"
	}
}

// Table returns the run's figures for a table, or nil.
func (r *RunReport) Table(name string) *TableStats {
	for i := range r.Tables {
		if r.Tables[i].Table == name {
			return &r.Tables[i]
		}
	}
	return nil
}

// Run returns the run called name ("direct", "lockguard"), or nil.
func (r *Report) Run(name string) *RunReport {
	for i := range r.Runs {
		if r.Runs[i].Name == name {
			return &r.Runs[i]
		}
	}
	return nil
}

// finish writes the headline from the figures.
func (r *Report) finish() {
	d, l := r.Run("direct"), r.Run("lockguard")
	if d == nil || l == nil {
		return
	}
	var b strings.Builder
	for _, t := range []struct{ name, what string }{
		{"products", "products (never touched by the migration)"},
		{"users", "users"},
	} {
		dt, lt := d.Table(t.name), l.Table(t.name)
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: longest stall %s direct, %s through lockguard", t.what,
			secs(dt.Stall.Seconds), secs(lt.Stall.Seconds))
		if lt.Shed > 0 {
			fmt.Fprintf(&b, " (which shed %d of its requests with 55P03)", lt.Shed)
		}
	}
	fmt.Fprintf(&b, ". The DDL: %s direct, %s through lockguard.", ddlShort(d.DDL), ddlShort(l.DDL))
	r.Headline = b.String()
}

func ddlShort(d DDLOutcome) string {
	switch {
	case d.Landed:
		return fmt.Sprintf("landed at %.1fs", d.EndedAt)
	case d.EndedAt > 0:
		code, _, _ := strings.Cut(d.Error, ":")
		return fmt.Sprintf("failed at %.1fs (%s)", d.EndedAt, code)
	default:
		return "did not run"
	}
}

// secs formats seconds for the report: milliseconds below one second.
func secs(s float64) string {
	if s < 1 {
		return fmt.Sprintf("%.0f ms", s*1000)
	}
	return fmt.Sprintf("%.2f s", s)
}

// round rounds v to digits decimal places.
func round(v float64, digits int) float64 {
	p := math.Pow10(digits)
	return math.Round(v*p) / p
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// JSON renders the report as indented JSON.
func (r *Report) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding report: %w", err)
	}
	return append(b, '\n'), nil
}

// Text renders the side-by-side report.
func (r *Report) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "lockguard demo — PostgreSQL %s, %d workers on a pool of %d, %.0f s per run\n",
		r.PostgreSQL, r.Workers, r.Pool, r.RunSeconds)
	fmt.Fprintf(&b, "incident: a report transaction reads users from %.0f s to %.0f s; at %.0f s a deploy runs\n  %s\n",
		r.Timeline.ReportOpen, r.Timeline.ReportClose, r.Timeline.Deploy, r.DDL)
	fmt.Fprintf(&b, "  straight to PostgreSQL without lock_timeout, then through lockguard")
	if r.Lockguard != "" {
		fmt.Fprintf(&b, " (%s)", r.Lockguard)
	}
	fmt.Fprintf(&b, ".\nEach request has a %.0f s timeout, pool wait included; a shed is lockguard's 55P03 (the app would retry).\n\n", r.RequestTimeoutSeconds)

	cols := make([]string, len(r.Runs))
	for i, run := range r.Runs {
		cols[i] = run.Title
	}
	row := func(label string, vals []string) {
		fmt.Fprintf(&b, "  %-24s", label)
		for _, v := range vals {
			fmt.Fprintf(&b, "  %-28s", v)
		}
		b.WriteString("\n")
	}
	row("", cols)
	for _, t := range Tables {
		row(t, nil)
		get := func(f func(*TableStats) string) []string {
			out := make([]string, len(r.Runs))
			for i := range r.Runs {
				if ts := r.Runs[i].Table(t); ts != nil {
					out[i] = f(ts)
				}
			}
			return out
		}
		row("  requests ok", get(func(ts *TableStats) string { return fmt.Sprint(ts.OK) }))
		row("  shed (55P03)", get(func(ts *TableStats) string { return fmt.Sprint(ts.Shed) }))
		row("  errors", get(func(ts *TableStats) string { return errorsCell(ts) }))
		row("  p99 of ok", get(func(ts *TableStats) string { return latency(ts.P99) }))
		row("  longest stall", get(func(ts *TableStats) string {
			return fmt.Sprintf("%s (%.1f–%.1f s)", secs(ts.Stall.Seconds), ts.Stall.From, ts.Stall.To)
		}))
	}
	vals := func(f func(*RunReport) string) []string {
		out := make([]string, len(r.Runs))
		for i := range r.Runs {
			out[i] = f(&r.Runs[i])
		}
		return out
	}
	row("lock waiters (max)", vals(func(rr *RunReport) string { return fmt.Sprint(rr.MaxLockWaiters) }))
	row("DDL", vals(func(rr *RunReport) string { return ddlShort(rr.DDL) }))
	row("  DDL in lock queue", vals(func(rr *RunReport) string {
		return fmt.Sprintf("%.1f s in %d wait(s)", rr.DDL.InLockQueue, rr.DDL.QueueEpisodes)
	}))
	for _, rr := range r.Runs {
		if rr.DDL.Error != "" {
			fmt.Fprintf(&b, "\n  DDL error %s: %s", rr.Name, truncate(rr.DDL.Error, 300))
		}
	}
	fmt.Fprintf(&b, "\nMeasured: %s\n", r.Headline)
	return b.String()
}

func latency(ms float64) string {
	if ms >= 1000 {
		return fmt.Sprintf("%.2f s", ms/1000)
	}
	return fmt.Sprintf("%.1f ms", ms)
}

// errorsCell is the error count with its kinds, most frequent first.
func errorsCell(ts *TableStats) string {
	if ts.Errors == 0 {
		return "0"
	}
	kinds := make([]string, 0, len(ts.ErrorKinds))
	for k := range ts.ErrorKinds {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool {
		a, b := ts.ErrorKinds[kinds[i]], ts.ErrorKinds[kinds[j]]
		if a != b {
			return a > b
		}
		return kinds[i] < kinds[j]
	})
	parts := make([]string, 0, 2)
	for i, k := range kinds {
		if i == 2 {
			parts = append(parts, "…")
			break
		}
		parts = append(parts, fmt.Sprintf("%d %s", ts.ErrorKinds[k], k))
	}
	return fmt.Sprintf("%d (%s)", ts.Errors, strings.Join(parts, ", "))
}
