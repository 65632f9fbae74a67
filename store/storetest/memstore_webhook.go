package storetest

import (
	"context"

	"github.com/keygate/keygate/store"
)

func cloneWebhookState(s store.WebhookState) store.WebhookState {
	s.NextAttempt, s.FailingSince, s.DisabledAt = utc(s.NextAttempt), utc(s.FailingSince), utc(s.DisabledAt)
	s.LeaseUntil = utc(s.LeaseUntil)
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

func (m *MemStore) UpdateWebhookState(ctx context.Context, endpoint string, update func(store.WebhookState) (store.WebhookState, error)) (store.WebhookState, error) {
	unlock, err := m.lock(ctx)
	if err != nil {
		return store.WebhookState{}, err
	}
	defer unlock()
	next, err := update(cloneWebhookState(m.webhooks[endpoint]))
	if err != nil {
		return store.WebhookState{}, err
	}
	if m.webhooks == nil {
		m.webhooks = map[string]store.WebhookState{}
	}
	m.webhooks[endpoint] = cloneWebhookState(next)
	return cloneWebhookState(next), nil
}
