package guard

import "testing"

// TestBoardKeepsTraceOfDuplicate: the monitor and lockguard report the same
// pending lock; the board keeps one entry, with the monitor's session facts
// and lockguard's trace.
func TestBoardKeepsTraceOfDuplicate(t *testing.T) {
	var b Board
	rel := RelName{Schema: "public", Name: "users"}
	b.SetMonitored([]Hazard{{Rel: rel, Mode: AccessExclusive, PID: 7, Source: "monitor", State: "active"}})
	b.Add([]Hazard{{Rel: rel, Mode: AccessExclusive, PID: 7, Source: "proxy", TraceID: "t", SpanID: "s"}})
	all := b.Snapshot().All()
	if len(all) != 1 {
		t.Fatalf("%d hazards, want 1: %+v", len(all), all)
	}
	if h := all[0]; h.TraceID != "t" || h.SpanID != "s" || h.State != "active" || h.Source != "proxy" {
		t.Fatalf("merged hazard %+v", h)
	}
}
