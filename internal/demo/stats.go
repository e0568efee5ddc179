package demo

import (
	"math"
	"slices"
	"time"
)

// Tables are the tables the workload uses, in report order. products is the
// one the migration never touches.
var Tables = []string{"users", "orders", "products"}

const (
	tUsers = iota
	tOrders
	tProducts
	numTables
)

// outcome of one request.
type outcome uint8

const (
	outOK   outcome = iota
	outShed         // 55P03 answered by lockguard: the application would retry
	outErr
	numOutcomes
)

// sample is one finished request, times relative to the run's start.
type sample struct {
	table   uint8
	outcome outcome
	start   time.Duration
	end     time.Duration
	errKind string // for outErr: "timeout", a SQLSTATE, or "other"
}

// Stall is the longest stretch of a run in which a table saw no successful
// request.
type Stall struct {
	Seconds float64 `json:"seconds"`
	From    float64 `json:"from_s"` // seconds since the run started
	To      float64 `json:"to_s"`
}

// longestGap returns the longest interval within [from, to] that contains no
// time of ends, which must be sorted. Times outside [from, to] are ignored;
// with no time inside, the whole window is the gap.
func longestGap(ends []time.Duration, from, to time.Duration) (gap, start, stop time.Duration) {
	if to < from {
		return 0, from, from
	}
	prev := from
	gap, start, stop = 0, from, from
	for _, e := range ends {
		if e < from {
			continue
		}
		if e > to {
			break
		}
		if d := e - prev; d > gap {
			gap, start, stop = d, prev, e
		}
		prev = e
	}
	if d := to - prev; d > gap {
		gap, start, stop = d, prev, to
	}
	return gap, start, stop
}

// percentile returns the p-th percentile (0 < p ≤ 100) of ds by the
// nearest-rank method, or 0 for no values. ds is sorted in place.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	// nearest rank: the smallest value with at least p% of values ≤ it.
	rank := int(math.Ceil(p * float64(len(ds)) / 100))
	rank = max(1, min(rank, len(ds)))
	return ds[rank-1]
}

// bucketCounts counts times in [0, total) per bucket of width; a time equal
// to total falls into the last bucket, later ones are dropped.
func bucketCounts(ts []time.Duration, width, total time.Duration) []int {
	if width <= 0 || total <= 0 {
		return nil
	}
	n := int((total + width - 1) / width)
	out := make([]int, n)
	for _, t := range ts {
		if t < 0 || t > total {
			continue
		}
		i := int(t / width)
		if i >= n {
			i = n - 1
		}
		out[i]++
	}
	return out
}

// TableStats is what one table saw in one run.
type TableStats struct {
	Table  string `json:"table"`
	OK     int    `json:"ok"`
	Shed   int    `json:"shed"`
	Errors int    `json:"errors"`
	// ErrorKinds counts errors by kind: "timeout" (the request's 5 s
	// context, including waiting for a pool connection), a SQLSTATE, or
	// "other".
	ErrorKinds map[string]int `json:"error_kinds,omitempty"`
	// P50 and P99 are the latencies of successful requests, including the
	// wait for a pool connection, in milliseconds.
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
	// Stall is the longest stretch without a successful request.
	Stall Stall `json:"longest_stall"`
}

// tableStats computes a table's figures from its samples over a run of
// length total.
func tableStats(name string, samples []sample, total time.Duration) TableStats {
	ts := TableStats{Table: name}
	var lat, ends []time.Duration
	for _, s := range samples {
		switch s.outcome {
		case outOK:
			ts.OK++
			lat = append(lat, s.end-s.start)
			ends = append(ends, s.end)
		case outShed:
			ts.Shed++
		default:
			ts.Errors++
			if ts.ErrorKinds == nil {
				ts.ErrorKinds = map[string]int{}
			}
			ts.ErrorKinds[s.errKind]++
		}
	}
	slices.Sort(ends)
	gap, from, to := longestGap(ends, 0, total)
	ts.Stall = Stall{Seconds: round(gap.Seconds(), 3), From: round(from.Seconds(), 3), To: round(to.Seconds(), 3)}
	ts.P99 = round(ms(percentile(lat, 99)), 2)
	ts.P50 = round(ms(percentile(lat, 50)), 2)
	return ts
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
