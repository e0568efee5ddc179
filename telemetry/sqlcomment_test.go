package telemetry

import (
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestFindCommentAndSpanContext(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		sql   string
		valid bool
	}{
		{"SELECT 1 /*traceparent='" + tp + "'*/", true},
		{"SELECT 1 /*action='a%2Fb',traceparent='" + tp + "',tracestate='congo%3Dt61rcWkgMzE'*/;", true},
		{"/*traceparent='" + tp + "'*/ SELECT 1", true},
		{"\f/*traceparent='" + tp + "'*/\vSELECT 1", true},   // white space to PostgreSQL
		{"SELECT 1 /*traceparent='" + tp + "'*/\v;\f", true}, // likewise
		{"SELECT '/*traceparent=x*/' FROM t", false},
		{"SELECT 1 /*traceparent='00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01'*/", false}, // upper case
		{"SELECT 1 /*traceparent='01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/", false}, // version
		{"SELECT 1 /*traceparent='00-00000000000000000000000000000000-00f067aa0ba902b7-01'*/", false}, // zero id
		{"SELECT 1 /* a plain comment */", false},
		{"SELECT 1", false},
	} {
		c, _ := FindComment([]byte(tc.sql))
		sc := c.SpanContext()
		if sc.IsValid() != tc.valid {
			t.Errorf("%q: valid = %v, want %v", tc.sql, sc.IsValid(), tc.valid)
		}
		if tc.valid && (!sc.IsRemote() || !sc.IsSampled() || sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736") {
			t.Errorf("%q: span context %v", tc.sql, sc)
		}
	}
	c, _ := FindComment([]byte("SELECT 1 /*action='a%2Fb',traceparent='" + tp + "',tracestate='congo%3Dt61rcWkgMzE'*/"))
	if v, _ := c.Lookup("action"); v != "a/b" {
		t.Errorf("action = %q", v)
	}
	if ts := c.SpanContext().TraceState().Get("congo"); ts != "t61rcWkgMzE" {
		t.Errorf("tracestate congo = %q", ts)
	}
	sql := []byte("SELECT 1 /*traceparent='" + tp + "'*/")
	if n := testing.AllocsPerRun(100, func() {
		c, _ := FindComment(sql)
		_ = c.SpanContext()
	}); n != 0 {
		t.Errorf("%v allocations to read a traceparent, want 0", n)
	}
}

func TestSampler(t *testing.T) {
	for _, bad := range [][2]string{{"bogus", ""}, {"traceidratio", "2"}, {"traceidratio", "x"}} {
		if _, err := ParseSampler(bad[0], bad[1]); err == nil {
			t.Errorf("ParseSampler(%q, %q) accepted", bad[0], bad[1])
		}
	}
	c, _ := FindComment([]byte("SELECT 1 /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/"))
	sampledParent := c.SpanContext()
	def, _ := ParseSampler("", "")
	if def.String() != DefaultSampler || def.Sample(noParent) || !def.Sample(sampledParent) {
		t.Errorf("default sampler: %v", def)
	}
	on, _ := ParseSampler("always_on", "")
	if !on.Sample(noParent) {
		t.Error("always_on did not sample")
	}
	half, _ := ParseSampler("traceidratio", "0.5")
	n := 0
	for i := 0; i < 10000; i++ {
		if half.Sample(noParent) {
			n++
		}
	}
	if n < 4000 || n > 6000 {
		t.Errorf("traceidratio 0.5 sampled %d of 10000", n)
	}
	if n := testing.AllocsPerRun(100, func() { half.Sample(noParent) }); n != 0 {
		t.Errorf("Sample allocates %v", n)
	}
}

var noParent trace.SpanContext
