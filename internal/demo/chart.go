package demo

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// Chart colours per table, and for lock waiters.
var tableColor = map[string]string{"users": "#1f77b4", "orders": "#ff7f0e", "products": "#2ca02c"}

const waitersColor = "#7f7f7f"

// HTML renders a self-contained page: the headline, one chart of successful
// requests per 100 ms bucket per table for each run (same scales, so they
// compare), and the text report. No scripts, no external resources.
func (r *Report) HTML() string {
	var b strings.Builder
	b.WriteString(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>lockguard demo</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1000px}
h1{font-size:22px;margin:0 0 6px} h2{font-size:17px;margin:22px 0 4px}
p{margin:6px 0;line-height:1.4} .headline{font-size:15px;background:#f6f6f0;border-left:4px solid #2ca02c;padding:8px 12px}
pre{background:#f7f7f7;padding:12px;overflow-x:auto;font-size:12px;line-height:1.35}
svg text{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif}
.legend span{display:inline-block;margin-right:18px} .sw{display:inline-block;width:14px;height:4px;vertical-align:middle;margin-right:6px}
</style></head><body>
`)
	fmt.Fprintf(&b, "<h1>lockguard demo: one foreign-key migration behind a long transaction</h1>\n")
	fmt.Fprintf(&b, "<p>PostgreSQL %s · %d workers on a pool of %d · %.0f s per run · report transaction on <code>users</code> %.0f–%.0f s · at %.0f s: <code>%s</code></p>\n",
		esc(r.PostgreSQL), r.Workers, r.Pool, r.RunSeconds, r.Timeline.ReportOpen, r.Timeline.ReportClose, r.Timeline.Deploy, esc(r.DDL))
	fmt.Fprintf(&b, "<p class=\"headline\">Measured: %s</p>\n", esc(r.Headline))
	b.WriteString(`<p class="legend">`)
	for _, t := range Tables {
		fmt.Fprintf(&b, `<span><i class="sw" style="background:%s"></i>%s ok / 100 ms</span>`, tableColor[t], t)
	}
	fmt.Fprintf(&b, `<span><i class="sw" style="background:%s;height:2px"></i>lock waiters (right axis)</span>`, waitersColor)
	b.WriteString(`<span><i class="sw" style="background:#c8d6e5;height:10px"></i>report transaction open</span>`)
	b.WriteString(`<span><i class="sw" style="background:#f4c7c3;height:10px"></i>DDL running or waiting</span></p>` + "\n")

	maxOK, maxW := 1, 1
	for _, run := range r.Runs {
		for _, s := range run.OKPerBucket {
			for _, v := range s {
				maxOK = max(maxOK, v)
			}
		}
		for _, v := range run.Waiters {
			maxW = max(maxW, v)
		}
	}
	for i := range r.Runs {
		run := &r.Runs[i]
		fmt.Fprintf(&b, "<h2>Run %d: %s</h2>\n", i+1, esc(run.Title))
		var parts []string
		for _, t := range Tables {
			if ts := run.Table(t); ts != nil {
				parts = append(parts, fmt.Sprintf("%s longest stall %s", t, secs(ts.Stall.Seconds)))
			}
		}
		fmt.Fprintf(&b, "<p>%s · most lock waiters %d · DDL %s</p>\n", esc(strings.Join(parts, " · ")), run.MaxLockWaiters, esc(ddlShort(run.DDL)))
		b.WriteString(run.svg(maxOK, maxW))
	}
	fmt.Fprintf(&b, "<h2>Report</h2>\n<pre>%s</pre>\n</body></html>\n", esc(r.Text()))
	return b.String()
}

func esc(s string) string { return html.EscapeString(s) }

// svg draws one run.
func (run *RunReport) svg(maxOK, maxW int) string {
	const (
		width, height          = 960, 300
		left, right, top, bott = 56, 56, 24, 40
		plotW, plotH           = width - left - right, height - top - bott
	)
	total := run.Seconds
	if total <= 0 {
		total = 1
	}
	yStep := math.Max(1, niceStep(float64(maxOK), 5))
	yMax := math.Ceil(float64(maxOK)/yStep) * yStep
	wStep := math.Max(1, niceStep(float64(maxW), 4))
	wMax := math.Ceil(float64(maxW)/wStep) * wStep
	x := func(s float64) float64 { return left + s/total*plotW }
	y := func(v float64) float64 { return top + plotH - v/yMax*plotH }
	yw := func(v float64) float64 { return top + plotH - v/wMax*plotH }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`+"\n",
		width, height, width, height, esc("successful requests per 100 ms, "+run.Title))
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="#fff" stroke="#ccc"/>`+"\n", left, top, plotW, plotH)

	// Spans: the report transaction, the DDL.
	if run.ReportTx.From > 0 {
		to := run.ReportTx.To
		if to == 0 {
			to = total
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#c8d6e5" opacity="0.45"/>`+"\n",
			x(run.ReportTx.From), top, x(math.Min(to, total))-x(run.ReportTx.From), plotH/2)
	}
	if run.DDL.StartedAt > 0 {
		to := run.DDL.EndedAt
		if to == 0 || to > total {
			to = total
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#f4c7c3" opacity="0.5"/>`+"\n",
			x(run.DDL.StartedAt), top+plotH/2, math.Max(1, x(to)-x(run.DDL.StartedAt)), plotH/2)
	}

	// Grid and axes.
	for v := 0.0; v <= yMax+1e-9; v += yStep {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" font-size="11" text-anchor="end" fill="#555">%g</text>`+"\n",
			left, left+plotW, y(v), y(v), left-6, y(v)+4, v)
	}
	for v := 0.0; v <= wMax+1e-9; v += wStep {
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="11" fill="%s">%g</text>`+"\n", left+plotW+6, yw(v)+4, waitersColor, v)
	}
	xStep := niceStep(total, 12)
	for s := 0.0; s <= total+1e-9; s += xStep {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#999"/><text x="%.1f" y="%d" font-size="11" text-anchor="middle" fill="#555">%gs</text>`+"\n",
			x(s), x(s), top+plotH, top+plotH+4, x(s), top+plotH+16, s)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" fill="#555">ok / 100 ms</text>`+"\n", 4, top-8)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" fill="%s" text-anchor="end">lock waiters</text>`+"\n", width-4, top-8, waitersColor)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="11" text-anchor="middle" fill="#555">seconds since the run started</text>`+"\n", left+plotW/2.0, height-6)

	// Lock waiters, as steps.
	bw := float64(run.BucketMS) / 1000
	if len(run.Waiters) > 0 {
		var pts []string
		for i, v := range run.Waiters {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f %.1f,%.1f", x(float64(i)*bw), yw(float64(v)), x(math.Min(float64(i+1)*bw, total)), yw(float64(v))))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.2" stroke-dasharray="4 2" points="%s"/>`+"\n", waitersColor, strings.Join(pts, " "))
	}
	// Successful requests per table.
	for _, t := range Tables {
		s := run.OKPerBucket[t]
		if len(s) == 0 {
			continue
		}
		pts := make([]string, len(s))
		for i, v := range s {
			pts[i] = fmt.Sprintf("%.1f,%.1f", x((float64(i)+0.5)*bw), y(float64(v)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"><title>%s</title></polyline>`+"\n", tableColor[t], strings.Join(pts, " "), t)
	}
	// Markers: the DDL's end, the longest stall of each table.
	if run.DDL.EndedAt > 0 && run.DDL.EndedAt <= total {
		label := "DDL failed"
		if run.DDL.Landed {
			label = "DDL landed"
		}
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#333" stroke-dasharray="5 3"/><text x="%.1f" y="%d" font-size="11" fill="#333">%s %.1fs</text>`+"\n",
			x(run.DDL.EndedAt), x(run.DDL.EndedAt), top, top+plotH, x(run.DDL.EndedAt)+4, top+plotH-6, label, run.DDL.EndedAt)
	}
	for i, t := range Tables {
		ts := run.Table(t)
		if ts == nil || ts.Stall.Seconds < 0.2 {
			continue
		}
		yy := float64(top + 12 + 12*i)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="3" opacity="0.8"/><text x="%.1f" y="%.1f" font-size="10" fill="%s">%s stall %s</text>`+"\n",
			x(ts.Stall.From), x(ts.Stall.To), yy, yy, tableColor[t], x(ts.Stall.To)+4, yy+3, tableColor[t], t, esc(secs(ts.Stall.Seconds)))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// niceStep returns a step of 1, 2 or 5 × 10^k that divides [0, max] into
// about n intervals.
func niceStep(max float64, n int) float64 {
	if max <= 0 || n <= 0 {
		return 1
	}
	raw := max / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}
