package test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// collector is an OTLP trace receiver: what a real collector gets from
// lockguard.
type collector struct {
	coltrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
	svc   []string // service.name of each resource
}

func (c *collector) Export(_ context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				c.svc = append(c.svc, kv.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.ScopeSpans {
			c.spans = append(c.spans, ss.Spans...)
		}
	}
	return &coltrace.ExportTraceServiceResponse{}, nil
}

// find returns a span whose attribute key has value want.
func (c *collector) find(key, want string) (*tracepb.Span, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.spans {
		for _, kv := range s.Attributes {
			if kv.Key == key && kv.GetValue().GetStringValue() == want {
				return s, c.svc
			}
		}
	}
	return nil, c.svc
}

// TestOTLPExport runs the lockguard binary with nothing but the standard
// OTEL_* variables pointing at an OTLP receiver, over HTTP and over gRPC, and
// checks that a statement's span arrives with the database conventions and
// the service name.
func TestOTLPExport(t *testing.T) {
	for _, protocol := range []string{"http/protobuf", "grpc"} {
		t.Run(protocol, func(t *testing.T) {
			c := &collector{}
			var endpoint string
			if protocol == "grpc" {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				srv := grpc.NewServer()
				coltrace.RegisterTraceServiceServer(srv, c)
				go srv.Serve(ln)
				t.Cleanup(srv.Stop)
				endpoint = "http://" + ln.Addr().String()
			} else {
				hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					body, _ := io.ReadAll(r.Body)
					req := &coltrace.ExportTraceServiceRequest{}
					if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, req) != nil {
						http.Error(w, "bad request", http.StatusBadRequest)
						return
					}
					resp, _ := c.Export(r.Context(), req)
					b, _ := proto.Marshal(resp)
					w.Header().Set("Content-Type", "application/x-protobuf")
					w.Write(b)
				}))
				t.Cleanup(hs.Close)
				endpoint = hs.URL
			}
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
			t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
			t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
			t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
			t.Setenv("OTEL_SERVICE_NAME", "lockguard-otlp-test")
			p := startBinary(t, "--upstream", pg.Addr(), "--upstream-sslmode", "disable")
			conn := connect(t, p.dsn())
			if _, err := conn.Exec(ctxT(t, 10*time.Second), "SELECT count(*) FROM pg_class WHERE relname = 'x'"); err != nil {
				t.Fatal(err)
			}
			var span *tracepb.Span
			var svc []string
			waitFor(t, 15*time.Second, func() bool {
				span, svc = c.find("db.query.summary", "SELECT pg_class")
				return span != nil
			})
			if span.Kind != tracepb.Span_SPAN_KIND_CLIENT {
				t.Errorf("span kind %v", span.Kind)
			}
			attrs := map[string]string{}
			for _, kv := range span.Attributes {
				attrs[kv.Key] = kv.GetValue().GetStringValue()
			}
			if attrs["db.system.name"] != "postgresql" || attrs["db.namespace"] == "" || attrs["server.address"] == "" {
				t.Errorf("span attributes %v", attrs)
			}
			if len(svc) == 0 || svc[0] != "lockguard-otlp-test" {
				t.Errorf("service.name %v, want OTEL_SERVICE_NAME's", svc)
			}
		})
	}
}
