package telemetry

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Admin serves lockguard's admin HTTP endpoints.
type Admin struct {
	// Ready reports whether lockguard accepts sessions; nil means always.
	// It is called on every /readyz request and must be cheap.
	Ready func() bool
	// Reload re-reads the configuration (as SIGHUP does) for POST
	// /reload; nil disables the route.
	Reload func() error
	// Token, when set, must be presented as "Authorization: Bearer TOKEN"
	// on every route but /healthz and /readyz.
	Token string
	// Logger receives server errors; nil means slog.Default().
	Logger *slog.Logger
	// Status, when set, serves the status page at / and its JSON under
	// /api/ (locks, events, incidents, policy).
	Status *Status
	// Metrics, when set, is mounted at GET /metrics (e.g. the Prometheus
	// handler).
	Metrics http.Handler

	srv *http.Server
}

// Handler returns the admin routes:
//
//	/healthz  200 while the process serves HTTP (liveness)
//	/readyz   200 while lockguard accepts sessions, 503 while draining (readiness)
//	/reload   POST: re-read the configuration file and environment, like SIGHUP
//	/metrics  metrics, when Metrics is set
//
// and, when Status is set:
//
//	/                the status page (static; it fetches the JSON below)
//	/api/locks       the live lock tree
//	/api/events      recent guard events, newest first (?limit=N, default 100)
//	/api/incidents   recent incidents and their blast radius (?limit=N, default 20)
//	/api/policy      the active policy
//
// With a Token every route but /healthz, /readyz and the page itself needs
// it; the page reads it from its URL fragment (#token=…) and sends it.
func (a *Admin) Handler() http.Handler {
	mux := http.NewServeMux()
	if a.Metrics != nil {
		m := a.Metrics
		mux.HandleFunc("GET /metrics", a.authorized(m.ServeHTTP))
	}
	if s := a.Status; s != nil {
		mux.HandleFunc("GET /{$}", s.servePage)
		mux.HandleFunc("GET /api/locks", a.authorized(s.serveLocks))
		mux.HandleFunc("GET /api/events", a.authorized(s.serveEvents))
		mux.HandleFunc("GET /api/incidents", a.authorized(s.serveIncidents))
		mux.HandleFunc("GET /api/policy", a.authorized(s.servePolicy))
	}
	mux.HandleFunc("POST /reload", a.authorized(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if a.Reload == nil {
			http.Error(w, "reload is not available", http.StatusNotImplemented)
			return
		}
		if err := a.Reload(); err != nil {
			http.Error(w, "reload failed; the running configuration is unchanged: "+err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = w.Write([]byte("reloaded\n"))
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if a.Ready != nil && !a.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("draining\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}

// authorized wraps h with the bearer-token check.
func (a *Admin) authorized(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.Token != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+a.Token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="lockguard"`)
			http.Error(w, "lockguard admin: missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

// Serve serves the admin endpoints on ln until Shutdown.
func (a *Admin) Serve(ln net.Listener) error {
	a.srv = &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
	err := a.srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops the admin server.
func (a *Admin) Shutdown(ctx context.Context) error {
	if a.srv == nil {
		return nil
	}
	return a.srv.Shutdown(ctx)
}
