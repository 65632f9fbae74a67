package bolt

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

// bucketWebhooks holds one record per webhook endpoint (endpoint ID → JSON
// webhookRecord). It is created by the first save rather than by Open, so a
// file written before webhooks existed needs no migration: a missing bucket
// reads as "nothing delivered yet".
var bucketWebhooks = []byte("webhooks")

// webhookRecord is store.WebhookState on disk (see records.go for why the
// records are types of their own).
type webhookRecord struct {
	Delivered      uint64    `json:"delivered,omitempty"`
	Attempts       int       `json:"attempts,omitempty"`
	NextAttempt    time.Time `json:"next_attempt,omitzero"`
	FailingSince   time.Time `json:"failing_since,omitzero"`
	Disabled       bool      `json:"disabled,omitempty"`
	DisabledAt     time.Time `json:"disabled_at,omitzero"`
	DisabledReason string    `json:"disabled_reason,omitempty"`
}

// WebhookState implements store.Store.
func (s *Store) WebhookState(ctx context.Context, endpoint string) (store.WebhookState, error) {
	var out store.WebhookState
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketWebhooks)
		if b == nil {
			return nil
		}
		v := b.Get([]byte(endpoint))
		if v == nil {
			return nil
		}
		var r webhookRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		out = store.WebhookState{
			Delivered: r.Delivered, Attempts: r.Attempts,
			NextAttempt: utc(r.NextAttempt), FailingSince: utc(r.FailingSince),
			Disabled: r.Disabled, DisabledAt: utc(r.DisabledAt), DisabledReason: r.DisabledReason,
		}
		return nil
	})
	if err != nil {
		return store.WebhookState{}, fmt.Errorf("webhook state %s: %w", endpoint, err)
	}
	return out, nil
}

// SaveWebhookState implements store.Store: one write transaction, fsynced
// on commit like every other write here.
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
	err = s.update(ctx, func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketWebhooks)
		if err != nil {
			return err
		}
		return b.Put([]byte(endpoint), val)
	})
	if err != nil {
		return fmt.Errorf("save webhook state %s: %w", endpoint, err)
	}
	return nil
}
