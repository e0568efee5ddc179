package telemetry

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// Histogram is a histogram of durations that records with two atomic adds
// and no lock, for the two recorded on every sync point a session relays
// (db.client.operation.duration and lockguard.proxy.added_latency). The
// OpenTelemetry SDK's Record costs about 1 µs per call with attributes
// (option handling, attribute-set lookup, a lock per series): on the relay's
// hot path that was a visible share of lockguard's CPU per round trip. The
// histograms reach the same readers through histProducer, as cumulative
// explicit-bucket histograms with the same names, units, buckets and
// attributes.
type Histogram struct {
	name, unit, desc string
	bounds           []float64       // upper bounds, seconds
	limits           []time.Duration // the same bounds as durations
	start            time.Time

	mu     sync.RWMutex
	series map[setKey]*HistSeries
	none   *HistSeries // the attribute-less series
}

// HistSeries is one series of a Histogram: one attribute set.
type HistSeries struct {
	h      *Histogram
	set    attribute.Set
	counts []atomic.Uint64 // per bucket, the last one for values above every bound
	sum    atomic.Int64    // nanoseconds
}

func newHistogram(name, unit, desc string, bounds []float64) *Histogram {
	h := &Histogram{name: name, unit: unit, desc: desc, bounds: bounds, start: time.Now(),
		series: map[setKey]*HistSeries{}}
	for _, b := range bounds {
		h.limits = append(h.limits, time.Duration(math.Round(b*float64(time.Second))))
	}
	h.none = h.Series(setKey{})
	return h
}

// Record adds d to the attribute-less series.
func (h *Histogram) Record(d time.Duration) { h.none.Record(d) }

// Series returns the series named k with the attributes kv, creating it the
// first time. Callers keep the series they record into often.
func (h *Histogram) Series(k setKey, kv ...attribute.KeyValue) *HistSeries {
	return loadOrCreate(&h.mu, h.series, k, func() *HistSeries {
		return &HistSeries{h: h, set: attrSet(kv...), counts: make([]atomic.Uint64, len(h.limits)+1)}
	})
}

// len returns the number of series.
func (h *Histogram) len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.series)
}

// Record adds d to the series: to the first bucket whose upper bound is at
// least d, as OpenTelemetry's explicit buckets (lower bound exclusive).
func (s *HistSeries) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	i, lim := 0, s.h.limits
	for i < len(lim) && d > lim[i] {
		i++
	}
	s.counts[i].Add(1)
	s.sum.Add(int64(d))
}

// dataPoints returns the histogram's series as cumulative data points at now.
// A series read while it records may count a value in its bucket and not yet
// in its sum: the next collection has both.
func (h *Histogram) dataPoints(now time.Time) []metricdata.HistogramDataPoint[float64] {
	h.mu.RLock()
	defer h.mu.RUnlock() // records take no lock: only new series wait
	var dps []metricdata.HistogramDataPoint[float64]
	for _, s := range h.series {
		counts := make([]uint64, len(s.counts))
		var n uint64
		for i := range s.counts {
			counts[i] = s.counts[i].Load()
			n += counts[i]
		}
		if n == 0 {
			continue // never recorded: no series, as the SDK does
		}
		dps = append(dps, metricdata.HistogramDataPoint[float64]{
			Attributes: s.set, StartTime: h.start, Time: now,
			Count: n, Bounds: h.bounds, BucketCounts: counts,
			Sum: time.Duration(s.sum.Load()).Seconds(),
		})
	}
	return dps
}

// histProducer hands lockguard's Histograms to the meter provider's
// readers at each collection.
type histProducer struct {
	m atomic.Pointer[Metrics]
}

// Produce implements go.opentelemetry.io/otel/sdk/metric.Producer.
func (p *histProducer) Produce(context.Context) ([]metricdata.ScopeMetrics, error) {
	m := p.m.Load()
	if m == nil {
		return nil, nil
	}
	now := time.Now()
	var out []metricdata.Metrics
	for _, h := range m.histograms() {
		dps := h.dataPoints(now)
		if len(dps) == 0 {
			continue
		}
		out = append(out, metricdata.Metrics{Name: h.name, Description: h.desc, Unit: h.unit,
			Data: metricdata.Histogram[float64]{DataPoints: dps, Temporality: metricdata.CumulativeTemporality}})
	}
	if len(out) == 0 {
		return nil, nil
	}
	return []metricdata.ScopeMetrics{{Scope: instrumentation.Scope{Name: ScopeName}, Metrics: out}}, nil
}
