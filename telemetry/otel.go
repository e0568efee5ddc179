package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope of every span and metric.
const ScopeName = "github.com/lockguard/lockguard"

// Options configures Setup. Everything else comes from the standard OTEL_*
// environment variables.
type Options struct {
	// Version is lockguard's version, recorded as service.version.
	Version string
	// SpanExporter, when set, replaces the exporter the environment asks
	// for (tests use an in-memory one). Spans are then exported
	// synchronously, as they end.
	SpanExporter sdktrace.SpanExporter
	// Getenv reads the environment; nil means os.Getenv.
	Getenv func(string) string
}

// Provider holds lockguard's tracer, sampler and metrics.
type Provider struct {
	// Tracer starts spans; a no-op tracer when tracing is off.
	Tracer trace.Tracer
	// Sampler decides, before a span is started, whether a statement is
	// traced. Statements the guard acted on are traced whatever it says,
	// as long as tracing is on.
	Sampler Sampler
	// Tracing reports whether spans are exported anywhere.
	Tracing bool
	// Metrics are lockguard's instruments.
	Metrics *Metrics
	// Exporter describes where spans go, for the startup log line.
	Exporter string

	tp       *sdktrace.TracerProvider
	mp       *sdkmetric.MeterProvider
	registry *prometheus.Registry
}

// Setup builds the tracer and meter providers from the OTEL_* environment:
//
//   - OTEL_SDK_DISABLED=true turns tracing off (metrics at /metrics stay).
//   - OTEL_TRACES_EXPORTER: otlp, console or none. Unset means otlp when an
//     OTLP endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT or
//     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), none otherwise: a proxy should not
//     send spans to a collector nobody configured.
//   - OTEL_EXPORTER_OTLP_TRACES_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL: grpc,
//     http/protobuf (default). The OTLP exporters read the endpoint,
//     headers, TLS, compression and timeout variables themselves.
//   - OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG: see ParseSampler; the
//     default is parentbased_always_off.
//   - OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name the service
//     (default service.name lockguard); OTEL_BSP_* tune the batch processor.
func Setup(ctx context.Context, o Options) (*Provider, error) {
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("lockguard"), semconv.ServiceVersion(o.Version)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil && res == nil {
		return nil, fmt.Errorf("telemetry: building the resource: %w", err)
	}
	p := &Provider{registry: prometheus.NewRegistry()}

	// Metrics: pulled at /metrics in Prometheus format from a registry of
	// lockguard's own (no Go runtime or process collectors mixed in unasked).
	// The histograms recorded per sync point bypass the SDK's instruments
	// (histogram.go) and reach the exporter through hp.
	hp := &histProducer{}
	pe, err := otelprom.New(otelprom.WithRegisterer(p.registry),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
		otelprom.WithoutScopeInfo(), otelprom.WithProducer(hp))
	if err != nil {
		return nil, fmt.Errorf("telemetry: Prometheus exporter: %w", err)
	}
	p.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(pe), sdkmetric.WithResource(res))
	if p.Metrics, err = NewMetrics(p.mp.Meter(ScopeName)); err != nil {
		return nil, err
	}
	hp.m.Store(p.Metrics)

	sampler, err := ParseSampler(getenv("OTEL_TRACES_SAMPLER"), getenv("OTEL_TRACES_SAMPLER_ARG"))
	if err != nil {
		return nil, err
	}
	p.Sampler = sampler
	exp, desc, err := spanExporter(ctx, o, getenv)
	if err != nil {
		return nil, err
	}
	p.Exporter = desc
	if exp == nil {
		p.Tracer = noop.NewTracerProvider().Tracer(ScopeName)
		return p, nil
	}
	// lockguard decides sampling itself before starting a span (so that an
	// unsampled statement costs nothing); every span it starts is recorded.
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sdktrace.AlwaysSample())}
	if o.SpanExporter != nil {
		opts = append(opts, sdktrace.WithSyncer(exp))
	} else {
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	p.tp = sdktrace.NewTracerProvider(opts...)
	p.Tracer = p.tp.Tracer(ScopeName)
	p.Tracing = true
	return p, nil
}

// spanExporter builds the exporter the environment asks for; nil means
// tracing is off.
func spanExporter(ctx context.Context, o Options, getenv func(string) string) (sdktrace.SpanExporter, string, error) {
	if o.SpanExporter != nil {
		return o.SpanExporter, "in-process exporter", nil
	}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return nil, "none (OTEL_SDK_DISABLED)", nil
	}
	kind := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")))
	if kind == "" {
		if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
			return nil, "none (no OTLP endpoint configured)", nil
		}
		kind = "otlp"
	}
	switch kind {
	case "none":
		return nil, "none", nil
	case "console":
		e, err := stdouttrace.New(stdouttrace.WithWriter(os.Stderr))
		return e, "console (stderr)", err
	case "otlp":
		proto := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
		if proto == "" {
			proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
		}
		switch strings.ToLower(strings.TrimSpace(proto)) {
		case "", "http/protobuf":
			e, err := otlptracehttp.New(ctx)
			return e, "otlp http/protobuf", err
		case "grpc":
			e, err := otlptracegrpc.New(ctx)
			return e, "otlp grpc", err
		default:
			return nil, "", fmt.Errorf("telemetry: OTEL_EXPORTER_OTLP_PROTOCOL=%q is not supported (use grpc or http/protobuf)", proto)
		}
	default:
		return nil, "", fmt.Errorf("telemetry: OTEL_TRACES_EXPORTER=%q is not supported (use otlp, console or none)", kind)
	}
}

// MetricsHandler serves the metrics in the Prometheus text format.
func (p *Provider) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(p.registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// ForceFlush exports the spans that ended so far.
func (p *Provider) ForceFlush(ctx context.Context) error {
	if p.tp == nil {
		return nil
	}
	return p.tp.ForceFlush(ctx)
}

// Shutdown flushes and stops the exporters.
func (p *Provider) Shutdown(ctx context.Context) error {
	var errs []error
	if p.tp != nil {
		errs = append(errs, p.tp.Shutdown(ctx))
	}
	if p.mp != nil {
		errs = append(errs, p.mp.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// Meter returns the meter of lockguard's scope, for observable instruments
// registered elsewhere.
func (p *Provider) Meter() metric.Meter { return p.mp.Meter(ScopeName) }

// attrSet is attribute.NewSet for a few key values.
func attrSet(kv ...attribute.KeyValue) attribute.Set { return attribute.NewSet(kv...) }
