package telemetry

import (
	"context"
	"sort"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/lockguard/lockguard/guard"
)

// LockSources feed the observable lock gauges, read at each scrape.
type LockSources struct {
	// Hazards returns the live lock state (the board's snapshot).
	Hazards func() *guard.Hazards
	// Held returns how many statements lockguard holds now, per relation.
	Held func() map[string]int
	// Now returns the time; nil means time.Now.
	Now func() time.Time
}

// ObserveLocks registers the gauges computed from the lock state:
// lockguard.queue.depth per relation (requests waiting in PostgreSQL plus
// statements held in lockguard), lockguard.blocker.xact.age (the oldest
// transaction among sessions others wait for) and lockguard.hazards (locks
// on the board, by state).
func (p *Provider) ObserveLocks(src LockSources) error {
	meter := p.Meter()
	depth, err := meter.Int64ObservableGauge(MetricQueueDepth, metric.WithUnit("{request}"),
		metric.WithDescription("Requests queued for a relation's lock: waiting in PostgreSQL, plus statements lockguard holds back. At most 50 relations are named; the rest are summed as _other."))
	if err != nil {
		return err
	}
	age, err := meter.Float64ObservableGauge(MetricBlockerXactAge, metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest transaction of a session that others wait for; 0 when nobody waits."))
	if err != nil {
		return err
	}
	hz, err := meter.Int64ObservableGauge(MetricHazards, metric.WithUnit("{lock}"),
		metric.WithDescription("Strong locks held or awaited that lockguard guards against, by state (held, awaited)."))
	if err != nil {
		return err
	}
	now := src.Now
	if now == nil {
		now = time.Now
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		var h *guard.Hazards
		if src.Hazards != nil {
			h = src.Hazards()
		}
		var held map[string]int
		if src.Held != nil {
			held = src.Held()
		}
		st := Summarize(h, held, now())
		for _, q := range st.Queues {
			o.ObserveInt64(depth, int64(q.Depth), metric.WithAttributes(AttrRelation.String(q.Relation)))
		}
		o.ObserveFloat64(age, st.OldestBlocker.Seconds())
		o.ObserveInt64(hz, int64(st.Held), metric.WithAttributes(AttrState.String("held")))
		o.ObserveInt64(hz, int64(st.Awaited), metric.WithAttributes(AttrState.String("awaited")))
		return nil
	}, depth, age, hz)
	return err
}

// LockSummary is what the lock gauges report.
type LockSummary struct {
	Queues        []Queue // by depth, largest first; at most MaxRelations plus _other
	OldestBlocker time.Duration
	Held, Awaited int
}

// Queue is the queue depth of one relation.
type Queue struct {
	Relation string
	Depth    int
}

// Summarize computes the gauges from a lock snapshot and the statements held
// per relation.
func Summarize(h *guard.Hazards, held map[string]int, now time.Time) LockSummary {
	var s LockSummary
	depth := map[string]int{}
	blocking := map[int]bool{}
	all := h.All()
	for _, hz := range all {
		if hz.Granted {
			s.Held++
			continue
		}
		s.Awaited++
		depth[hz.Rel.String()]++
		for _, b := range hz.BlockedBy {
			blocking[b] = true
		}
	}
	for _, hz := range all {
		if hz.Granted && blocking[hz.PID] && !hz.XactStart.IsZero() {
			s.OldestBlocker = max(s.OldestBlocker, now.Sub(hz.XactStart))
		}
	}
	for rel, n := range held {
		if n > 0 {
			depth[rel] += n
		}
	}
	for rel, n := range depth {
		s.Queues = append(s.Queues, Queue{rel, n})
	}
	sort.Slice(s.Queues, func(i, j int) bool {
		if s.Queues[i].Depth != s.Queues[j].Depth {
			return s.Queues[i].Depth > s.Queues[j].Depth
		}
		return s.Queues[i].Relation < s.Queues[j].Relation
	})
	if len(s.Queues) > MaxRelations {
		other := Queue{Relation: "_other"}
		for _, q := range s.Queues[MaxRelations:] {
			other.Depth += q.Depth
		}
		s.Queues = append(s.Queues[:MaxRelations], other)
	}
	return s
}
