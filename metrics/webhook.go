package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// newWebhookBacklog makes keygate_webhook_backlog_events. Its one label is
// the endpoint's index in the webhooks setting, never its URL: as many
// series as configured endpoints.
func newWebhookBacklog(register func(prometheus.Collector)) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "webhook", Name: "backlog_events",
		Help: "Events of the stream a webhook endpoint has not acknowledged yet, after its dispatcher's latest round; endpoint is its index in the webhooks setting.",
	}, []string{"endpoint"})
	register(g)
	return g
}

// WebhookBacklog records an endpoint's backlog (package webhook's
// Observer).
func (m *Metrics) WebhookBacklog(endpoint int, events uint64) {
	if m == nil {
		return
	}
	m.webhookBacklog.WithLabelValues(strconv.Itoa(endpoint)).Set(float64(events))
}
