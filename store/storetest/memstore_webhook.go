package storetest

import (
	"context"

	"github.com/keygate/keygate/store"
)

func cloneWebhookState(s store.WebhookState) store.WebhookState {
	s.NextAttempt, s.FailingSince, s.DisabledAt = utc(s.NextAttempt), utc(s.FailingSince), utc(s.DisabledAt)
	return s
}

func (m *MemStore) WebhookState(ctx context.Context, endpoint string) (store.WebhookState, error) {
	unlock, err := m.lock(ctx)
	if err != nil {
		return store.WebhookState{}, err
	}
	defer unlock()
	return cloneWebhookState(m.webhooks[endpoint]), nil
}

func (m *MemStore) SaveWebhookState(ctx context.Context, endpoint string, s store.WebhookState) error {
	unlock, err := m.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if m.webhooks == nil {
		m.webhooks = map[string]store.WebhookState{}
	}
	m.webhooks[endpoint] = cloneWebhookState(s)
	return nil
}
