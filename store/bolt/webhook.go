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
// webhookRecord). It is created by the first update rather than by Open,
// so a file written before webhooks existed needs no migration: a missing
// bucket reads as "nothing delivered yet".
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

func decodeWebhookState(v []byte) (store.WebhookState, error) {
	var r webhookRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return store.WebhookState{}, err
	}
	return store.WebhookState{
		Delivered: r.Delivered, Attempts: r.Attempts,
		NextAttempt: utc(r.NextAttempt), FailingSince: utc(r.FailingSince),
		Disabled: r.Disabled, DisabledAt: utc(r.DisabledAt), DisabledReason: r.DisabledReason,
		Owner: r.Owner, LeaseUntil: utc(r.LeaseUntil),
	}, nil
}

// getWebhookState reads a state; the zero state when there is none.
func getWebhookState(tx *bbolt.Tx, endpoint string) (store.WebhookState, error) {
	b := tx.Bucket(bucketWebhooks)
	if b == nil {
		return store.WebhookState{}, nil
	}
	v := b.Get([]byte(endpoint))
	if v == nil {
		return store.WebhookState{}, nil
	}
	return decodeWebhookState(v)
}

// WebhookState implements store.Store.
func (s *Store) WebhookState(ctx context.Context, endpoint string) (store.WebhookState, error) {
	var out store.WebhookState
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		var err error
		out, err = getWebhookState(tx, endpoint)
		return err
	})
	if err != nil {
		return store.WebhookState{}, fmt.Errorf("webhook state %s: %w", endpoint, err)
	}
	return out, nil
}

// UpdateWebhookState implements store.Store: read, update and write in one
// write transaction, fsynced on commit like every other write here.
func (s *Store) UpdateWebhookState(ctx context.Context, endpoint string, update func(store.WebhookState) (store.WebhookState, error)) (store.WebhookState, error) {
	if endpoint == "" {
		return store.WebhookState{}, fmt.Errorf("update webhook state: %w: empty endpoint ID", store.ErrInvalid)
	}
	var val []byte
	var updateErr error
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		cur, err := getWebhookState(tx, endpoint)
		if err != nil {
			return err
		}
		next, err := update(cur)
		if err != nil {
			updateErr = err
			return err
		}
		if val, err = encodeWebhookState(next); err != nil {
			return err
		}
		b, err := tx.CreateBucketIfNotExists(bucketWebhooks)
		if err != nil {
			return err
		}
		return b.Put([]byte(endpoint), val)
	})
	if updateErr != nil {
		return store.WebhookState{}, updateErr
	}
	if err != nil {
		return store.WebhookState{}, fmt.Errorf("update webhook state %s: %w", endpoint, err)
	}
	// Decoded from what was written, so the caller sees the stored
	// precision and shares no memory with update's result.
	return decodeWebhookState(val)
}
