package telemetry

import (
	"context"
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
	// Logger receives server errors; nil means slog.Default().
	Logger *slog.Logger

	srv *http.Server
}

// Handler returns the admin routes:
//
//	/healthz  200 while the process serves HTTP (liveness)
//	/readyz   200 while lockguard accepts sessions, 503 while draining (readiness)
func (a *Admin) Handler() http.Handler {
	mux := http.NewServeMux()
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
