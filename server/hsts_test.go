package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/keygate/keygate/server"
)

// With Options.HSTS every answer carries Strict-Transport-Security,
// refusals and unknown routes included; without it none does.
func TestHSTSOnEveryAnswer(t *testing.T) {
	const value = "max-age=31536000"
	on := newTestEnv(t, server.Options{HSTS: value})
	off := newTestEnv(t, server.Options{})
	requests := []struct {
		method, path, body string
		status             int
	}{
		{http.MethodGet, "/healthz", "", http.StatusOK},
		{http.MethodGet, "/.well-known/jwks.json", "", http.StatusOK},
		{http.MethodPost, "/oauth/token", "grant_type=client_credentials", http.StatusUnauthorized},
		{http.MethodGet, "/v1/teams", "", http.StatusUnauthorized},
		{http.MethodGet, "/no/such/path", "", http.StatusNotFound},
		{http.MethodDelete, "/healthz", "", http.StatusMethodNotAllowed},
		{http.MethodGet, "/console/", "", http.StatusOK},
	}
	for _, r := range requests {
		for _, e := range []struct {
			env  *testEnv
			want string
		}{{on, value}, {off, ""}} {
			req := e.env.NewRequest(t, r.method, r.path, strings.NewReader(r.body))
			if r.body != "" {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			resp := e.env.Do(t, req)
			if resp.Status != r.status {
				t.Errorf("%s %s: %d, want %d", r.method, r.path, resp.Status, r.status)
			}
			if got := resp.Header.Values("Strict-Transport-Security"); strings.Join(got, ",") != e.want {
				t.Errorf("%s %s with HSTS %q: Strict-Transport-Security %q", r.method, r.path, e.want, got)
			}
		}
	}
}
