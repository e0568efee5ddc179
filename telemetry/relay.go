package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/metric"
)

// ObserveRelay registers the event loop's instruments, read from stats at
// each scrape: lockguard.event_loop.sessions (sessions an event loop relays
// now) and lockguard.event_loop.departures (sessions that have left one to
// wait, since start; they go on relayed by goroutines, which costs more per
// message).
func (p *Provider) ObserveRelay(stats func() (inLoop, departed int64)) error {
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
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		in, departed := stats()
		o.ObserveInt64(sessions, in)
		o.ObserveInt64(departures, departed)
		return nil
	}, sessions, departures)
	return err
}
