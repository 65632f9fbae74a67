package metrics_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/metrics"
	"github.com/keygate/keygate/metrics/metricstest"
)

func scrape(t *testing.T, m *metrics.Metrics) metricstest.Scrape {
	t.Helper()
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return metricstest.Parse(t, bytes.NewReader(w.Body.Bytes()))
}

// A nil *Metrics records nothing and never panics: code that records need
// not check whether metrics are on.
func TestNilMetricsRecordNothing(t *testing.T) {
	var m *metrics.Metrics
	m.TokenOutcome("issued")
	m.LastUsedFlushed(3, time.Second)
	m.StatusListBuilt(8, time.Now())
	m.WebhookBacklog(0, 3)
	m.Throttled("introspect")
	m.Route("/x").Observe("GET", 200, time.Millisecond)
}

func TestRouteLabels(t *testing.T) {
	m := metrics.New(metrics.BuildInfo{})
	r := m.Route("/r")
	r.Observe("GET", 200, time.Millisecond)     // resolved in advance
	r.Observe("BREW", 418, time.Millisecond)    // odd method, uncommon code
	r.Observe("DELETE", 1234, time.Millisecond) // not a status code
	s := scrape(t, m)
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"route": "/r", "method": "GET", "code": "200"}, 1},
		{map[string]string{"route": "/r", "method": "other", "code": "418"}, 1},
		{map[string]string{"route": "/r", "method": "DELETE", "code": "0"}, 1},
		{map[string]string{"route": "/r"}, 3},
	} {
		if got := s.Value("keygate_http_requests_total", c.labels); got != c.want {
			t.Errorf("keygate_http_requests_total%v = %v, want %v", c.labels, got, c.want)
		}
	}
	if got := s.Value("keygate_http_request_duration_seconds", map[string]string{"route": "/r", "method": "other"}); got != 1 {
		t.Errorf("duration count of method other = %v, want 1", got)
	}
}

func TestTokenOutcomeClosedSet(t *testing.T) {
	m := metrics.New(metrics.BuildInfo{})
	m.TokenOutcome("issued")
	m.TokenOutcome("kgc_not_an_outcome")
	s := scrape(t, m)
	if got := s.Value("keygate_token_requests_total", map[string]string{"outcome": "other"}); got != 1 {
		t.Errorf("an unknown outcome counted %v times as other, want 1", got)
	}
	if got := len(s["keygate_token_requests_total"].GetMetric()); got != len(metrics.TokenOutcomes) {
		t.Errorf("%d outcome series, want exactly the %d of TokenOutcomes", got, len(metrics.TokenOutcomes))
	}
}

// Series appear on first use: a route no one called adds nothing to the
// scrape, and concurrent first uses of one series count every request.
func TestRouteSeriesOnFirstUse(t *testing.T) {
	m := metrics.New(metrics.BuildInfo{})
	m.Route("/unused")
	r := m.Route("/busy")
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.Observe("POST", 200, time.Millisecond)
		}()
	}
	wg.Wait()
	s := scrape(t, m)
	if got := s.Value("keygate_http_requests_total", map[string]string{"route": "/busy", "method": "POST", "code": "200"}); got != 8 {
		t.Errorf("8 concurrent first uses counted %v", got)
	}
	s.LabelValues(func(metric, label, value string) {
		if label == "route" && value == "/unused" {
			t.Errorf("%s has a series for a route never called", metric)
		}
	})
	if n := len(s["keygate_http_requests_total"].GetMetric()); n != 1 {
		t.Errorf("%d request series after one kind of request, want 1", n)
	}
}

// The webhook backlog is one series per endpoint index, set to the latest
// report.
func TestWebhookBacklog(t *testing.T) {
	m := metrics.New(metrics.BuildInfo{})
	m.WebhookBacklog(0, 7)
	m.WebhookBacklog(1, 2)
	m.WebhookBacklog(0, 3)
	s := scrape(t, m)
	for endpoint, want := range map[string]float64{"0": 3, "1": 2} {
		if got := s.Value("keygate_webhook_backlog_events", map[string]string{"endpoint": endpoint}); got != want {
			t.Errorf("keygate_webhook_backlog_events{endpoint=%q} = %v, want %v", endpoint, got, want)
		}
	}
	if n := len(s["keygate_webhook_backlog_events"].GetMetric()); n != 2 {
		t.Errorf("%d backlog series for two endpoints", n)
	}
}

func TestThrottledClosedSet(t *testing.T) {
	m := metrics.New(metrics.BuildInfo{})
	if got := scrape(t, m).Value("keygate_throttled_requests_total", map[string]string{"endpoint": "introspect"}); got != 0 {
		t.Fatalf("introspect throttled before any request: %v", got)
	}
	m.Throttled("introspect")
	m.Throttled("kgc_not_an_endpoint")
	s := scrape(t, m)
	if got := s.Value("keygate_throttled_requests_total", map[string]string{"endpoint": "introspect"}); got != 1 {
		t.Errorf("introspect throttled = %v, want 1", got)
	}
	if got := s.Value("keygate_throttled_requests_total", nil); got != 1 {
		t.Errorf("all throttled = %v, want 1 (an unknown endpoint is not a label value)", got)
	}
}
