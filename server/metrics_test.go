package server_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/metrics"
	"github.com/keygate/keygate/metrics/metricstest"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store/storemetrics"
	"github.com/keygate/keygate/store/storetest"
)

// metricsEnv starts keygate with a Metrics value and serves that value's
// registry on a loopback listener of its own, as `keygate serve` does with
// metrics_listen; it returns the keygate and the scrape URL.
func metricsEnv(t *testing.T, opts server.Options) (*testEnv, *metrics.Metrics, string) {
	t.Helper()
	met := metrics.New(metrics.BuildInfo{Version: "v0.0.0-test", Revision: "abc123"})
	opts.Metrics = met
	// The store measured as `keygate serve` measures it (storemetrics).
	st := storemetrics.Wrap(storetest.NewMemStore(), "memory", met)
	e := startEnv(t, servertest.Config{Options: opts, Backend: servertest.Existing(st)})
	ms := httptest.NewServer(met.Handler())
	t.Cleanup(ms.Close)
	return e, met, ms.URL + "/metrics"
}

type delta struct {
	name   string
	labels map[string]string
	want   float64
}

func checkDeltas(t *testing.T, before, after metricstest.Scrape, ds []delta) {
	t.Helper()
	for _, d := range ds {
		if got := after.Value(d.name, d.labels) - before.Value(d.name, d.labels); got != d.want {
			t.Errorf("%s%v moved by %v, want %v", d.name, d.labels, got, d.want)
		}
	}
}

func TestMetricsMoveWithRequests(t *testing.T) {
	e, _, scrapeURL := metricsEnv(t, server.Options{})
	k := e.CreateKey(t, "team-metrics", "metered", permAccounting)
	tok := e.AdminToken(t)
	before := metricstest.Get(t, scrapeURL)

	if b := before.Value("keygate_build_info", map[string]string{"version": "v0.0.0-test", "revision": "abc123"}); b != 1 {
		t.Errorf("keygate_build_info = %v, want 1 with the build's labels", b)
	}
	for _, name := range []string{"go_goroutines", "process_start_time_seconds"} {
		if before[name] == nil {
			t.Errorf("no %s: the Go runtime and process collectors are missing", name)
		}
	}

	e.Token(t, k.ClientID, k.ClientSecret, "")
	servertest.CheckOAuthError(t, e.TokenRequest(t, k.ClientID, "kgs_wrong", url.Values{"grant_type": {"client_credentials"}}), http.StatusUnauthorized, "invalid_client")
	servertest.CheckOAuthError(t, e.TokenRequest(t, k.ClientID, k.ClientSecret, url.Values{"grant_type": {"client_credentials"}, "scope": {"no:such"}}), http.StatusBadRequest, "invalid_scope")
	if r := e.Do(t, e.NewRequest(t, http.MethodGet, "/no/such/"+k.ClientID, nil)); r.Status != http.StatusNotFound {
		t.Fatalf("unknown path: %s", r)
	}
	if r := e.Do(t, e.NewRequest(t, "PROPFIND", "/healthz", nil)); r.Status != http.StatusMethodNotAllowed {
		t.Fatalf("PROPFIND: %s", r)
	}
	if r := e.Do(t, e.NewRequest(t, http.MethodGet, "/oauth/token", nil)); r.Status != http.StatusMethodNotAllowed {
		t.Fatalf("GET on the token endpoint: %s", r)
	}
	e.ListKeys(t, tok, "team-metrics")
	if r := e.Do(t, e.NewRequest(t, http.MethodGet, "/statuslists/1", nil)); r.Status != http.StatusOK {
		t.Fatalf("status list: %s", r)
	}
	e.FlushLastUsed(t)

	after := metricstest.Get(t, scrapeURL)
	checkDeltas(t, before, after, []delta{
		{"keygate_token_requests_total", map[string]string{"outcome": "issued"}, 1},
		{"keygate_token_requests_total", map[string]string{"outcome": "invalid_client"}, 1},
		{"keygate_token_requests_total", map[string]string{"outcome": "invalid_scope"}, 1},
		// GET /oauth/token is the token endpoint's own 405 (gin's Any
		// routes it there), an invalid_request.
		{"keygate_token_requests_total", map[string]string{"outcome": "invalid_request"}, 1},
		{"keygate_http_requests_total", map[string]string{"route": "/oauth/token", "method": "POST", "code": "200"}, 1},
		{"keygate_http_requests_total", map[string]string{"route": "/oauth/token", "method": "POST", "code": "401"}, 1},
		{"keygate_http_requests_total", map[string]string{"route": "/oauth/token", "method": "GET", "code": "405"}, 1},
		{"keygate_http_requests_total", map[string]string{"route": metrics.Unmatched, "method": "GET", "code": "404"}, 1},
		// A method no route takes: gin's 405, under the unmatched route.
		{"keygate_http_requests_total", map[string]string{"route": metrics.Unmatched, "method": "other", "code": "405"}, 1},
		{"keygate_http_requests_total", map[string]string{"route": "/v1/teams/:team_id/keys", "method": "GET", "code": "200"}, 1},
		{"keygate_http_request_duration_seconds", map[string]string{"route": "/oauth/token", "method": "POST"}, 3},
		{"keygate_http_request_duration_seconds", map[string]string{"route": "/v1/teams/:team_id/keys", "method": "GET"}, 1},
	})
	// Store calls: three token requests read their key (the wrong secret
	// and the bad scope too), the key list one list, the flush one write.
	for _, c := range []struct {
		op   string
		want float64
	}{{"get_key", 3}, {"list_keys", 1}, {"touch_keys", 1}, {"status_list", 1}} {
		l := map[string]string{"operation": c.op, "backend": "memory", "result": "ok"}
		if d := after.Value("keygate_store_operation_duration_seconds", l) - before.Value("keygate_store_operation_duration_seconds", l); d < c.want {
			t.Errorf("store %s calls observed: %v, want ≥ %v", c.op, d, c.want)
		}
	}
	// The flush wrote the issued token's last use.
	if n := after.Value("keygate_last_used_flush_duration_seconds", nil) - before.Value("keygate_last_used_flush_duration_seconds", nil); n < 1 {
		t.Errorf("last-used flushes observed: %v, want ≥ 1 after FlushLastUsed", n)
	}
	if p := after.Value("keygate_last_used_pending", nil); p != 0 {
		t.Errorf("keygate_last_used_pending = %v after a flush, want 0", p)
	}
	if n := after.Value("keygate_status_list_indices", nil); n < 1<<20 {
		t.Errorf("keygate_status_list_indices = %v, want at least one block", n)
	}
	if at := after.Value("keygate_status_list_built_timestamp_seconds", nil); at <= 0 {
		t.Errorf("keygate_status_list_built_timestamp_seconds = %v", at)
	}
	checkClosedLabels(t, after, "team-metrics")
}

// checkClosedLabels holds every label value of a scrape to the closed sets
// of docs/metrics.md: no client ID (kgc_…), no team ID of the test, no
// path that is not a route pattern, no method outside the known set.
func checkClosedLabels(t *testing.T, s metricstest.Scrape, teams ...string) {
	t.Helper()
	methods := map[string]bool{metrics.OtherMethod: true}
	for _, m := range metrics.Methods {
		methods[m] = true
	}
	outcomes := map[string]bool{}
	for _, o := range metrics.TokenOutcomes {
		outcomes[o] = true
	}
	s.LabelValues(func(metric, label, value string) {
		if strings.Contains(value, "kgc_") || strings.Contains(value, "kgs_") {
			t.Errorf("%s{%s=%q}: a client ID or secret in a label", metric, label, value)
		}
		for _, team := range teams {
			if strings.Contains(value, team) {
				t.Errorf("%s{%s=%q}: a team ID in a label", metric, label, value)
			}
		}
		switch label {
		case "route":
			if value != metrics.Unmatched && !strings.HasPrefix(value, "/") {
				t.Errorf("%s: route %q is neither a pattern nor %q", metric, value, metrics.Unmatched)
			}
			if strings.HasPrefix(value, "/no/such") {
				t.Errorf("%s: route %q is a raw path", metric, value)
			}
		case "method":
			if !methods[value] {
				t.Errorf("%s: method %q outside the closed set", metric, value)
			}
		case "outcome":
			if !outcomes[value] {
				t.Errorf("%s: outcome %q outside the closed set", metric, value)
			}
		}
	})
}

// TestMetricsThrottled: an introspection refused over introspection_rate
// counts under keygate_throttled_requests_total{endpoint="introspect"}.
func TestMetricsThrottled(t *testing.T) {
	met := metrics.New(metrics.BuildInfo{})
	clk := servertest.NewClock(time.Now().UTC().Truncate(time.Second)) // stopped: the bucket does not refill
	e := &testEnv{servertest.StartWith(t, servertest.Config{Clock: clk, Options: server.Options{Metrics: met, IntrospectionRate: 1}})}
	ms := httptest.NewServer(met.Handler())
	t.Cleanup(ms.Close)
	k := e.CreateKey(t, "acme", "rs", permAccounting)
	tok := e.Token(t, k.ClientID, k.ClientSecret, "").AccessToken
	before := metricstest.Get(t, ms.URL+"/metrics")
	if r := e.introspect(t, k.ClientID, k.ClientSecret, tok); r.Status != http.StatusOK {
		t.Fatalf("first introspection: %s", r)
	}
	if r := e.introspect(t, k.ClientID, k.ClientSecret, tok); r.Status != http.StatusTooManyRequests {
		t.Fatalf("second introspection in the same instant at 1/s: %s", r)
	}
	after := metricstest.Get(t, ms.URL+"/metrics")
	checkDeltas(t, before, after, []delta{{"keygate_throttled_requests_total", map[string]string{"endpoint": "introspect"}, 1}})
	checkClosedLabels(t, after, "acme")
}
