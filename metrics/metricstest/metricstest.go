// Package metricstest reads a Prometheus scrape the way Prometheus does
// (prometheus/common's text parser), for tests that check keygate's
// metrics from the outside.
package metricstest

import (
	"io"
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scrape is one parsed scrape: metric families by name.
type Scrape map[string]*dto.MetricFamily

// Get scrapes url (a /metrics address), asking for the text format, and
// parses the answer; any failure fails the test.
func Get(t testing.TB, url string) Scrape {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape %s: %d %s", url, resp.StatusCode, b)
	}
	return Parse(t, resp.Body)
}

// Parse parses the text exposition format.
func Parse(t testing.TB, r io.Reader) Scrape {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	return fams
}

// Value is the value of the sample of metric name whose labels include
// every pair in labels, summed over all such samples (counters, gauges and
// untyped: their value; histograms and summaries: their sample count). 0
// when there is none.
func (s Scrape) Value(name string, labels map[string]string) float64 {
	var sum float64
	f := s[name]
	if f == nil {
		return 0
	}
	for _, m := range f.GetMetric() {
		if !matches(m, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.Summary != nil:
			sum += float64(m.GetSummary().GetSampleCount())
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum
}

func matches(m *dto.Metric, want map[string]string) bool {
	found := 0
	for _, lp := range m.GetLabel() {
		if v, ok := want[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			found++
		}
	}
	return found == len(want)
}

// LabelValues calls fn with every label name and value of every sample.
func (s Scrape) LabelValues(fn func(metric, label, value string)) {
	for name, f := range s {
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				fn(name, lp.GetName(), lp.GetValue())
			}
		}
	}
}
