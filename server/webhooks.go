package server

// Webhooks: the operator-wide audit stream delivered to the configured
// endpoints (package webhook does the delivery; docs/webhooks.md). This
// file ties it to the server: the payload's data is the event as GET
// /v1/events shows it, an endpoint keygate gives up on becomes an audit
// event, and the audit trail's retention keeps every event an endpoint has
// not acknowledged yet.

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/webhook"
)

// webhookCallTimeout bounds the store calls of the give-up callback.
const webhookCallTimeout = 10 * time.Second

// startWebhooks starts one dispatcher per configured endpoint. Nothing an
// API handler does waits on them: handlers only write events to the store,
// and the dispatchers read the stream in goroutines of their own.
func (s *Server) startWebhooks() error {
	opts := s.cfg.Webhook
	if opts.Now == nil {
		opts.Now = s.cfg.Now
	}
	if opts.Logger == nil {
		opts.Logger = s.log
	}
	if opts.Observer == nil && s.cfg.Metrics != nil {
		opts.Observer = s.cfg.Metrics // not a typed nil in an interface
	}
	if opts.OnDisabled == nil {
		opts.OnDisabled = s.webhookDisabled
	}
	s.events = webhook.AuditSource{Store: s.store, Render: renderEvent}
	svc, err := webhook.Start(s.cfg.Webhooks, s.events, s.store, opts)
	if err != nil {
		return fmt.Errorf("start webhooks: %w", err)
	}
	s.webhooks = svc
	return nil
}

// renderEvent is a webhook payload's data: the event in GET /v1/events's
// shape, so a receiver and an API reader parse one format.
func renderEvent(ev store.AuditEvent) (json.RawMessage, error) {
	return json.Marshal(viewEvent(ev))
}

// webhookDisabled records that an endpoint was given up on.
func (s *Server) webhookDisabled(ep webhook.Endpoint, st webhook.State) {
	ctx, cancel := context.WithTimeout(context.Background(), webhookCallTimeout)
	defer cancel()
	reason := fmt.Sprintf("webhook %d (%s) disabled: %s", ep.Index, ep.ID, st.DisabledReason)
	if err := s.keys.WebhookDisabled(ctx, reason); err != nil {
		s.log.Error("webhook: could not record the endpoint's disabling in the audit trail", "webhook", ep.Index, "endpoint_id", ep.ID, "err", err)
	}
}

// undelivered is the audit retention's hold (apikey.AuditOptions.Hold):
// the time of the oldest event some endpoint, disabled ones included, has
// not acknowledged; zero when every endpoint is up to date.
func (s *Server) undelivered(ctx context.Context) (time.Time, error) {
	low, any, err := s.webhooks.Delivered(ctx)
	if err != nil || !any {
		return time.Time{}, err
	}
	next, err := s.events.EventsAfter(ctx, low, 1)
	if err != nil || len(next) == 0 {
		return time.Time{}, err
	}
	return next[0].Time, nil
}
