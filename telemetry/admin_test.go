package telemetry

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestAdminRoutes(t *testing.T) {
	ready, reloads := true, 0
	var reloadErr error
	a := &Admin{Ready: func() bool { return ready }, Token: "s3cret",
		Reload: func() error { reloads++; return reloadErr }}
	h := a.Handler()
	do := func(method, path, token string) int {
		r := httptest.NewRequest(method, path, nil)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	for _, tc := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 200},
		{"POST", "/reload", "", 401},
		{"POST", "/reload", "wrong", 401},
		{"POST", "/reload", "s3cret", 200},
		{"GET", "/reload", "s3cret", 405},
	} {
		if got := do(tc.method, tc.path, tc.token); got != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, got, tc.want)
		}
	}
	if reloads != 1 {
		t.Fatalf("reloads = %d", reloads)
	}
	reloadErr = errors.New("bad yaml")
	if got := do("POST", "/reload", "s3cret"); got != http.StatusBadRequest {
		t.Fatalf("failed reload: %d", got)
	}
	ready = false
	if got := do("GET", "/readyz", ""); got != http.StatusServiceUnavailable {
		t.Fatalf("draining readyz: %d", got)
	}
}
