package telemetry

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// Sampler decides whether a statement is traced before any span exists, so
// that an unsampled statement allocates nothing. It understands the values of
// OTEL_TRACES_SAMPLER. The parent is the trace context the application put in
// a sqlcommenter comment, if any.
type Sampler struct {
	name        string
	parentBased bool
	always      bool   // root decision: always (ratio 1)
	threshold   uint64 // root decision: sample when a random 63-bit number is below it
}

// DefaultSampler is used when OTEL_TRACES_SAMPLER is unset. The
// specification's default is parentbased_always_on; lockguard's is
// parentbased_always_off: a statement is traced when the application traced
// it (a sampled traceparent in a sqlcommenter comment) or when the guard
// acted on it, so that a busy database does not produce one span per
// statement unless asked to.
const DefaultSampler = "parentbased_always_off"

// ParseSampler reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG:
// always_on, always_off, traceidratio, parentbased_always_on,
// parentbased_always_off, parentbased_traceidratio. The ratio argument
// defaults to 1, as the specification says.
func ParseSampler(name, arg string) (Sampler, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" {
		name = DefaultSampler
	}
	s := Sampler{name: name}
	root := name
	if r, ok := strings.CutPrefix(name, "parentbased_"); ok {
		s.parentBased, root = true, r
	}
	switch root {
	case "always_on":
		s.always = true
	case "always_off":
	case "traceidratio":
		ratio := 1.0
		if arg = strings.TrimSpace(arg); arg != "" {
			r, err := strconv.ParseFloat(arg, 64)
			if err != nil || r < 0 || r > 1 || math.IsNaN(r) {
				return Sampler{}, fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER_ARG=%q is not a ratio between 0 and 1", arg)
			}
			ratio = r
		}
		s.name = fmt.Sprintf("%s(%g)", name, ratio)
		if ratio >= 1 {
			s.always = true
		} else {
			s.threshold = uint64(ratio * (1 << 63))
		}
	default:
		return Sampler{}, fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER=%q is not supported (use always_on, always_off, traceidratio or their parentbased_ forms)", name)
	}
	return s, nil
}

// Sample reports whether to trace a statement whose application context is
// parent (the zero SpanContext when it carried none). It never allocates.
func (s Sampler) Sample(parent trace.SpanContext) bool {
	if s.parentBased && parent.IsValid() {
		return parent.IsSampled()
	}
	if s.always {
		return true
	}
	return s.threshold > 0 && rand.Uint64()>>1 < s.threshold
}

// String names the sampler as configured.
func (s Sampler) String() string {
	if s.name == "" {
		return DefaultSampler
	}
	return s.name
}
