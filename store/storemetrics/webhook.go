package storemetrics

import (
	"context"
	"time"

	"github.com/keygate/keygate/metrics"
	"github.com/keygate/keygate/store"
)

// The operation label's values of the webhook delivery state.
const (
	OpWebhookState       = "webhook_state"
	OpUpdateWebhookState = "update_webhook_state"
)

// webhookOps are the measured webhook-state calls, kept apart from ops so
// that the webhook block of the store contract stays one block here too.
type webhookOps struct{ get, update *metrics.StoreOp }

func newWebhookOps(op func(string) *metrics.StoreOp) webhookOps {
	return webhookOps{get: op(OpWebhookState), update: op(OpUpdateWebhookState)}
}

func (s *Store) WebhookState(ctx context.Context, endpoint string) (store.WebhookState, error) {
	start := time.Now()
	st, err := s.st.WebhookState(ctx, endpoint)
	s.webhook.get.Since(start, err)
	return st, err
}

func (s *Store) UpdateWebhookState(ctx context.Context, endpoint string, update func(store.WebhookState) (store.WebhookState, error)) (store.WebhookState, error) {
	start := time.Now()
	st, err := s.st.UpdateWebhookState(ctx, endpoint, update)
	s.webhook.update.Since(start, err)
	return st, err
}
