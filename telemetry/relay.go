package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/metric"
)

// RelayStats are the event loops' figures that ObserveRelay reports.
type RelayStats struct {
	InLoop, Departed            int64 // sessions relayed by a loop now; sessions that left one
	WriteBatches, BatchedWrites int64 // io_uring submissions of the loops' writes; the writes they carried
}

// ObserveRelay registers the event loop's instruments, read from stats at
// each scrape: lockguard.event_loop.sessions (sessions an event loop relays
// now), lockguard.event_loop.departures (sessions that have left one to
// wait, since start; they go on relayed by goroutines, which costs more per
// message), and lockguard.event_loop.write_batches and .batched_writes (the
// loops' io_uring submissions and the writes they carried; both stay 0 where
// the loops write with write(2)).
func (p *Provider) ObserveRelay(stats func() RelayStats) error {
	meter := p.Meter()
	sessions, err := meter.Int64ObservableGauge(MetricLoopSessions, metric.WithUnit("{session}"),
		metric.WithDescription("Client sessions an event loop relays now; the others are relayed by goroutines (TLS, --event-loops 0, or sessions that left a loop)."))
	if err != nil {
		return err
	}
	departures, err := meter.Int64ObservableCounter(MetricLoopDepartures, metric.WithUnit("{session}"),
		metric.WithDescription("Sessions that left an event loop because they had to wait (a held or retried statement, a slow client, a catalog lookup), for good."))
	if err != nil {
		return err
	}
	batches, err := meter.Int64ObservableCounter(MetricLoopWriteBatches, metric.WithUnit("{submission}"),
		metric.WithDescription("io_uring submissions that sent event loops' writes, one per round of events; 0 where the loops write with write(2)."))
	if err != nil {
		return err
	}
	writes, err := meter.Int64ObservableCounter(MetricLoopBatchedWrites, metric.WithUnit("{write}"),
		metric.WithDescription("Writes that event loops sent through io_uring; divided by the submissions, the writes each system call carried."))
	if err != nil {
		return err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := stats()
		o.ObserveInt64(sessions, st.InLoop)
		o.ObserveInt64(departures, st.Departed)
		o.ObserveInt64(batches, st.WriteBatches)
		o.ObserveInt64(writes, st.BatchedWrites)
		return nil
	}, sessions, departures, batches, writes)
	return err
}
