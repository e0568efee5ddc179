package guard

import (
	"testing"
	"time"
)

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

// TestConflictIsPerDatabase: a hazard on a table of one database does not
// hold back a statement on the table of the same name in another; one whose
// database the reporter did not know holds back every database's.
func TestConflictIsPerDatabase(t *testing.T) {
	rel := RelName{Schema: "public", Name: "orders"}
	var b Board
	b.SetMonitored([]Hazard{{Rel: rel, Database: "app", Mode: AccessExclusive, PID: 7}})
	if _, ok := b.Snapshot().Conflict(rel, AccessShare, 9, "app", nil); !ok {
		t.Error("no conflict in the hazard's own database")
	}
	if hz, ok := b.Snapshot().Conflict(rel, AccessShare, 9, "other", nil); ok {
		t.Errorf("conflict with %+v in another database", hz)
	}
	b.Add([]Hazard{{Rel: rel, Mode: AccessExclusive, PID: 8}})
	if hz, ok := b.Snapshot().Conflict(rel, AccessShare, 9, "other", nil); !ok || hz.PID != 8 {
		t.Errorf("hazard of no known database: %+v, %v; want a conflict with pid 8", hz, ok)
	}
}

// TestQueuedBehindSince: requests that began waiting for backend 7 before
// since (behind an earlier statement of it, granted once that one was
// cancelled, but still in the monitor's last snapshot) do not count; those
// after it, and those whose start is unknown, do.
func TestQueuedBehindSince(t *testing.T) {
	rel := RelName{Schema: "public", Name: "users"}
	now := time.Now()
	since := now.Add(-time.Second)
	var b Board
	b.SetMonitored([]Hazard{
		{Rel: rel, Mode: AccessExclusive, PID: 7, WaitStart: now.Add(-3 * time.Second)},
		{Rel: rel, Mode: AccessShare, PID: 8, BlockedBy: []int{7}, WaitStart: now.Add(-2 * time.Second)},
		{Rel: rel, Mode: AccessShare, PID: 9, BlockedBy: []int{7}, WaitStart: now.Add(-500 * time.Millisecond)},
		{Rel: rel, Mode: AccessShare, PID: 10, BlockedBy: []int{7}},
		{Rel: rel, Mode: AccessShare, PID: 11, BlockedBy: []int{8}, WaitStart: now},
		{Rel: rel, Mode: AccessShare, PID: 12, Granted: true},
	})
	n, oldest := b.Snapshot().QueuedBehind(7, since)
	if n != 2 || oldest < 400*time.Millisecond || oldest > time.Second {
		t.Fatalf("QueuedBehind(7, 1s ago) = %d, %v; want 2 (pids 9 and 10) and about 500ms", n, oldest)
	}
	if n, _ := b.Snapshot().QueuedBehind(7, time.Time{}); n != 3 {
		t.Fatalf("QueuedBehind(7, zero) = %d, want 3", n)
	}
}

// TestBoardFreshRequests: requests for a new reading coalesce until the
// monitor takes one, and a snapshot says when its reading began, also one
// republished for lockguard's own hazards.
func TestBoardFreshRequests(t *testing.T) {
	var b Board
	b.RequestFresh()
	b.RequestFresh()
	select {
	case <-b.FreshRequests():
	default:
		t.Fatal("no request pending")
	}
	select {
	case <-b.FreshRequests():
		t.Fatal("two requests pending; want them counted as one")
	default:
	}
	at := time.Now().Add(-time.Second)
	rel := RelName{Schema: "public", Name: "users"}
	b.SetMonitoredAt([]Hazard{{Rel: rel, Mode: AccessExclusive, PID: 7, Source: "monitor"}}, at)
	if p := b.Snapshot().Polled(); !p.Equal(at) {
		t.Fatalf("Polled = %v, want %v", p, at)
	}
	b.Add([]Hazard{{Rel: rel, Mode: Share, PID: 8, Source: "proxy"}})
	if p := b.Snapshot().Polled(); !p.Equal(at) {
		t.Fatalf("after Add, Polled = %v, want the monitor's %v", p, at)
	}
}
