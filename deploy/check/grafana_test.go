package check

import (
	"encoding/json"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/keygate/keygate/metrics"
	"github.com/keygate/keygate/metrics/metricstest"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/server/servertest"
	"github.com/keygate/keygate/store/storemetrics"
	"github.com/keygate/keygate/store/storetest"
)

var grafanaPath = deployPath("grafana", "keygate.json")

// metricName is how a metric name is found in a panel's PromQL: an
// identifier that starts with the prefix of keygate's own metrics
// (keygate_) or of the Go runtime and process collectors (go_, process_).
// Every metric keygate exports has one of these prefixes (docs/metrics.md),
// so a name the regex misses cannot be one of them; the check also refuses
// a panel in which it finds none.
var metricName = regexp.MustCompile(`\b(?:keygate|go|process)_[A-Za-z0-9_:]*`)

// dashboard is the part of a Grafana dashboard the check reads.
type dashboard struct {
	Panels []panel `json:"panels"`
}

type panel struct {
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"` // inside a row
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// dashboardMetrics maps each metric name a dashboard's queries use to the
// panels using it, and lists panels whose queries name no metric.
func dashboardMetrics(raw []byte) (names map[string][]string, empty []string, err error) {
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, nil, err
	}
	names = map[string][]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if len(p.Panels) > 0 {
				walk(p.Panels)
			}
			if p.Panels != nil && p.Targets == nil {
				continue // a row
			}
			found := 0
			for _, t := range p.Targets {
				for _, n := range metricName.FindAllString(t.Expr, -1) {
					names[n] = append(names[n], p.Title)
					found++
				}
			}
			if found == 0 {
				empty = append(empty, p.Title)
			}
		}
	}
	walk(d.Panels)
	return names, empty, nil
}

// exported reports whether a query's name is in the scrape: a family, or a
// histogram's or summary's _bucket, _sum or _count series.
func exported(s metricstest.Scrape, name string) bool {
	if _, ok := s[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		if f, ok := s[base]; ok && (f.GetType() == dto.MetricType_HISTOGRAM || suffix != "_bucket" && f.GetType() == dto.MetricType_SUMMARY) {
			return true
		}
	}
	return false
}

// liveScrape starts keygate as serve runs it with metrics_listen (metrics
// in the server, the store measured), makes a token request and scrapes it.
func liveScrape(t *testing.T) metricstest.Scrape {
	t.Helper()
	met := metrics.New(metrics.BuildInfo{Version: "check"})
	st := storemetrics.Wrap(storetest.NewMemStore(), "memory", met)
	kg := servertest.StartWith(t, servertest.Config{Options: server.Options{Metrics: met}, Backend: servertest.Existing(st)})
	k := kg.CreateKey(t, "grafana", "check", "accounting_api")
	kg.Token(t, k.ClientID, k.ClientSecret, "")
	kg.FlushLastUsed(t)
	if status, _ := get(t, kg, "/statuslists/1"); status != 200 {
		t.Fatalf("status list: %d", status)
	}
	ms := httptest.NewServer(met.Handler())
	t.Cleanup(ms.Close)
	return metricstest.Get(t, ms.URL+"/metrics")
}

func grafanaProblems(raw []byte, s metricstest.Scrape) []string {
	names, empty, err := dashboardMetrics(raw)
	if err != nil {
		return []string{"not a dashboard: " + err.Error()}
	}
	var problems []string
	for _, title := range empty {
		problems = append(problems, sprintf("panel %q: no query names a keygate metric", title))
	}
	for _, n := range slices.Sorted(func(yield func(string) bool) {
		for n := range names {
			if !yield(n) {
				return
			}
		}
	}) {
		if !exported(s, n) {
			problems = append(problems, sprintf("panel %q: metric %s is not in keygate's scrape", names[n][0], n))
		}
	}
	return problems
}

func TestGrafanaDashboardMetricsExist(t *testing.T) {
	raw := readFile(t, grafanaPath)
	s := liveScrape(t)
	for _, p := range grafanaProblems(raw, s) {
		t.Error(p)
	}
	names, _, _ := dashboardMetrics(raw)
	// The panels #13 asks for are there.
	for _, want := range []string{"keygate_token_requests_total", "keygate_http_request_duration_seconds_bucket",
		"keygate_store_operation_duration_seconds_bucket", "keygate_redis_key_cache_requests_total", "keygate_last_used_pending"} {
		if _, ok := names[want]; !ok {
			t.Errorf("the dashboard does not chart %s", want)
		}
	}
}

// A misspelt metric, a counter queried as a histogram and a panel without
// a keygate metric are each caught.
func TestGrafanaCheckCatchesMistakes(t *testing.T) {
	good := string(readFile(t, grafanaPath))
	s := liveScrape(t)
	for _, tt := range []struct{ old, new, want string }{
		{"keygate_token_requests_total", "keygate_token_request_total", "keygate_token_request_total is not in keygate's scrape"},
		{"keygate_http_request_duration_seconds_bucket", "keygate_http_requests_total_bucket", "keygate_http_requests_total_bucket is not in keygate's scrape"},
		{"sum by (code) (rate(keygate_http_requests_total", "sum by (code) (rate(kegate_http_requests_total", `panel "HTTP requests by status": no query names a keygate metric`},
	} {
		if !strings.Contains(good, tt.old) {
			t.Fatalf("%q is not in %s: the mistake was not made", tt.old, grafanaPath)
		}
		got := grafanaProblems([]byte(strings.Replace(good, tt.old, tt.new, 1)), s)
		if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, tt.want) }) {
			t.Errorf("with %s for %s the check says %q, want %q", tt.new, tt.old, got, tt.want)
		}
	}
}
