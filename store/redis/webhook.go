package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

// webhookRecord is store.WebhookState as stored (JSON), a private type for
// the same reason as record.
type webhookRecord struct {
	Delivered      uint64    `json:"delivered,omitempty"`
	Attempts       int       `json:"attempts,omitempty"`
	NextAttempt    time.Time `json:"next_attempt,omitzero"`
	FailingSince   time.Time `json:"failing_since,omitzero"`
	Disabled       bool      `json:"disabled,omitempty"`
	DisabledAt     time.Time `json:"disabled_at,omitzero"`
	DisabledReason string    `json:"disabled_reason,omitempty"`
	Owner          string    `json:"owner,omitempty"`
	LeaseUntil     time.Time `json:"lease_until,omitzero"`
}

func encodeWebhookState(s store.WebhookState) ([]byte, error) {
	return json.Marshal(webhookRecord{
		Delivered: s.Delivered, Attempts: s.Attempts,
		NextAttempt: utc(s.NextAttempt), FailingSince: utc(s.FailingSince),
		Disabled: s.Disabled, DisabledAt: utc(s.DisabledAt), DisabledReason: s.DisabledReason,
		Owner: s.Owner, LeaseUntil: utc(s.LeaseUntil),
	})
}

func decodeWebhookState(b []byte) (store.WebhookState, error) {
	var r webhookRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return store.WebhookState{}, err
	}
	return store.WebhookState{
		Delivered: r.Delivered, Attempts: r.Attempts,
		NextAttempt: utc(r.NextAttempt), FailingSince: utc(r.FailingSince),
		Disabled: r.Disabled, DisabledAt: utc(r.DisabledAt), DisabledReason: r.DisabledReason,
		Owner: r.Owner, LeaseUntil: utc(r.LeaseUntil),
	}, nil
}

func (s *Store) readWebhookState(ctx context.Context, c goredis.Cmdable, endpoint string) (store.WebhookState, error) {
	b, err := c.Get(ctx, s.webhookKey(endpoint)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return store.WebhookState{}, nil
	}
	if err != nil {
		return store.WebhookState{}, fail(ctx, "webhook state "+endpoint, err)
	}
	st, err := decodeWebhookState(b)
	if err != nil {
		return store.WebhookState{}, fmt.Errorf("webhook state %s: %w", endpoint, err)
	}
	return st, nil
}

// WebhookState implements store.Store: one GET of the endpoint's own name.
func (s *Store) WebhookState(ctx context.Context, endpoint string) (store.WebhookState, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	return s.readWebhookState(ctx, s.rdb, endpoint)
}

// UpdateWebhookState implements store.Store with WATCH/MULTI on the
// endpoint's one name, so on Cluster it is a single-slot transaction;
// concurrent updates (several instances competing for the lease) retry.
func (s *Store) UpdateWebhookState(ctx context.Context, endpoint string, update func(store.WebhookState) (store.WebhookState, error)) (store.WebhookState, error) {
	if endpoint == "" {
		return store.WebhookState{}, fmt.Errorf("update webhook state: %w: empty endpoint ID", store.ErrInvalid)
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	out, err := s.updateValue(ctx, s.webhookKey(endpoint), "webhook state "+endpoint, func(tx *goredis.Tx) ([]byte, error, error) {
		cur, err := s.readWebhookState(ctx, tx, endpoint)
		if err != nil {
			return nil, nil, err
		}
		next, err := update(cur)
		if err != nil {
			return nil, err, nil
		}
		b, err := encodeWebhookState(next)
		return b, nil, err
	})
	if err != nil {
		return store.WebhookState{}, err
	}
	return decodeWebhookState(out)
}
