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
}

// WebhookState implements store.Store: one GET of the endpoint's own name,
// so on Cluster it is a single-slot read.
func (s *Store) WebhookState(ctx context.Context, endpoint string) (store.WebhookState, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	b, err := s.rdb.Get(ctx, s.webhookKey(endpoint)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return store.WebhookState{}, nil
	}
	if err != nil {
		return store.WebhookState{}, fail(ctx, "webhook state "+endpoint, err)
	}
	var r webhookRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return store.WebhookState{}, fmt.Errorf("webhook state %s: %w", endpoint, err)
	}
	return store.WebhookState{
		Delivered: r.Delivered, Attempts: r.Attempts,
		NextAttempt: utc(r.NextAttempt), FailingSince: utc(r.FailingSince),
		Disabled: r.Disabled, DisabledAt: utc(r.DisabledAt), DisabledReason: r.DisabledReason,
	}, nil
}

// SaveWebhookState implements store.Store: one SET, a blind overwrite (the
// state of an endpoint has one writer, its dispatcher).
func (s *Store) SaveWebhookState(ctx context.Context, endpoint string, st store.WebhookState) error {
	if endpoint == "" {
		return fmt.Errorf("save webhook state: %w: empty endpoint ID", store.ErrInvalid)
	}
	val, err := json.Marshal(webhookRecord{
		Delivered: st.Delivered, Attempts: st.Attempts,
		NextAttempt: utc(st.NextAttempt), FailingSince: utc(st.FailingSince),
		Disabled: st.Disabled, DisabledAt: utc(st.DisabledAt), DisabledReason: st.DisabledReason,
	})
	if err != nil {
		return fmt.Errorf("save webhook state %s: %w", endpoint, err)
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	if err := s.rdb.Set(ctx, s.webhookKey(endpoint), val, 0).Err(); err != nil {
		return fail(ctx, "save webhook state "+endpoint, err)
	}
	return nil
}
