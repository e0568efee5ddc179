package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/metric"
)

// RelayStats are the event loops' figures that ObserveRelay reports.
type RelayStats struct {
	InLoop, Departed     int64 // sessions relayed by a loop now; times a session left one
	Returned             int64 // times a session that had left a loop went back to it
	Enters, Sends, Recvs int64 // io_uring_enter calls of the loops; the sends and receives they carried
}

// ObserveRelay registers the event loop's instruments, read from stats at
// each scrape: lockguard.event_loop.sessions (sessions an event loop relays
// now), lockguard.event_loop.departures (times a session left one to wait,
// since start; it goes on relayed by goroutines, which costs more per
// message), lockguard.event_loop.returns (times such a session went back
// to its loop once idle), and
// lockguard.event_loop.io_uring_enters and .io_uring_ops (the
// loops' io_uring_enter calls, and the sends and receives they carried by
// lockguard.io_op; all stay 0 where the loops use read(2) and write(2)).
// Attributes are not cached: a scrape is rare.
func (p *Provider) ObserveRelay(stats func() RelayStats) error {
	meter := p.Meter()
	sessions, err := meter.Int64ObservableGauge(MetricLoopSessions, metric.WithUnit("{session}"),
		metric.WithDescription("Client sessions an event loop relays now; the others are relayed by goroutines (TLS, --event-loops 0, or sessions that left a loop)."))
	if err != nil {
		return err
	}
	departures, err := meter.Int64ObservableCounter(MetricLoopDepartures, metric.WithUnit("{session}"),
		metric.WithDescription("Times a session left an event loop because it had to wait (a held or retried statement, a slow client, a catalog lookup); it is relayed by goroutines until it is idle again."))
	if err != nil {
		return err
	}
	returns, err := meter.Int64ObservableCounter(MetricLoopReturns, metric.WithUnit("{session}"),
		metric.WithDescription("Times a session that had left an event loop went back to it, once idle: nothing to read from its client or its server, and every statement answered."))
	if err != nil {
		return err
	}
	enters, err := meter.Int64ObservableCounter(MetricLoopEnters, metric.WithUnit("{call}"),
		metric.WithDescription("io_uring_enter calls of the event loops: up to two per round of events, one for its reads and one for its writes; 0 where the loops use read(2) and write(2)."))
	if err != nil {
		return err
	}
	ops, err := meter.Int64ObservableCounter(MetricLoopRingOps, metric.WithUnit("{operation}"),
		metric.WithDescription("Socket sends and receives that event loops made through io_uring, by lockguard.io_op; divided by the enters, the system calls each one saved."))
	if err != nil {
		return err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := stats()
		o.ObserveInt64(sessions, st.InLoop)
		o.ObserveInt64(departures, st.Departed)
		o.ObserveInt64(returns, st.Returned)
		o.ObserveInt64(enters, st.Enters)
		o.ObserveInt64(ops, st.Sends, metric.WithAttributes(AttrIOOp.String("send")))
		o.ObserveInt64(ops, st.Recvs, metric.WithAttributes(AttrIOOp.String("recv")))
		return nil
	}, sessions, departures, returns, enters, ops)
	return err
}
