package storetest

import (
	"bytes"
	"context"
	"time"

	"github.com/keygate/keygate/store"
)

var _ store.Exporter = (*MemStore)(nil)

// Singletons implements store.Exporter.
func (m *MemStore) Singletons(ctx context.Context) (map[string][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string][]byte, len(m.singletons))
	for name, v := range m.singletons {
		out[name] = bytes.Clone(v)
	}
	return out, nil
}

// ForEachDenied implements store.Exporter: fn runs on a copy, outside the
// lock.
func (m *MemStore) ForEachDenied(ctx context.Context, now time.Time, fn func(string, time.Time) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	deny := make(map[string]time.Time, len(m.deny))
	for jti, until := range m.deny {
		if until.After(now) {
			deny[jti] = until
		}
	}
	m.mu.Unlock()
	for jti, until := range deny {
		if err := fn(jti, utc(until).Truncate(time.Millisecond)); err != nil {
			return err
		}
	}
	return nil
}

// ForEachAuditEvent implements store.Exporter.
func (m *MemStore) ForEachAuditEvent(ctx context.Context, fn func(store.AuditEvent) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	events := make([]store.AuditEvent, len(m.audit))
	for i, ev := range m.audit {
		events[i] = cloneEvent(ev)
	}
	m.mu.Unlock()
	for _, ev := range events {
		if err := fn(ev); err != nil {
			return err
		}
	}
	return nil
}

// ForEachWebhookState implements store.Exporter.
func (m *MemStore) ForEachWebhookState(ctx context.Context, fn func(string, store.WebhookState) error) error {
	unlock, err := m.lock(ctx)
	if err != nil {
		return err
	}
	states := make(map[string]store.WebhookState, len(m.webhooks))
	for ep, st := range m.webhooks {
		states[ep] = cloneWebhookState(st)
	}
	unlock()
	for ep, st := range states {
		if err := fn(ep, st); err != nil {
			return err
		}
	}
	return nil
}
