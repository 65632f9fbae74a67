package servertest

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/keygate/keygate/store"
)

// Snapshot renders everything in the store a request could change: every
// key with all its fields (last-used time and secret hashes included), the
// signing key set and the audit events. Equal snapshots mean an unchanged store.
func (e *Env) Snapshot(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	var keys []store.Key
	if err := e.Store.ForEachKey(ctx, func(k store.Key) error {
		keys = append(keys, k)
		return nil
	}); err != nil {
		t.Fatalf("snapshot keys: %v", err)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].ClientID < keys[j].ClientID })
	sk, err := e.Store.SigningKeys(ctx)
	if err != nil {
		t.Fatalf("snapshot signing keys: %v", err)
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	for _, k := range keys {
		// Times in UTC with full precision, so any move shows.
		k.CreatedAt, k.LastUsedAt = k.CreatedAt.UTC(), k.LastUsedAt.UTC()
		k.PreviousSecretExpiresAt, k.SecretRotatedAt = k.PreviousSecretExpiresAt.UTC(), k.SecretRotatedAt.UTC()
		// store.Key hides the hashes from JSON; put them back, so a change
		// to a secret hash shows up as a change.
		if err := enc.Encode(struct {
			store.Key
			SecretHash         []byte `json:"secret_hash"`
			PreviousSecretHash []byte `json:"previous_secret_hash"`
		}{k, k.SecretHash, k.PreviousSecretHash}); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Encode(sk); err != nil {
		t.Fatal(err)
	}
	// The audit trail: the operator-wide stream holds every team's events
	// once fed, so a refused request that recorded an event shows too.
	if _, err := e.Store.MoveAudit(ctx); err != nil {
		t.Fatalf("snapshot audit events: %v", err)
	}
	q := store.AuditQuery{Limit: store.MaxAuditLimit}
	for {
		page, err := e.Store.AllAuditEvents(ctx, q)
		if err != nil {
			t.Fatalf("snapshot audit events: %v", err)
		}
		for _, ev := range page.Events {
			if err := enc.Encode(ev); err != nil {
				t.Fatal(err)
			}
		}
		if page.Next == 0 {
			break
		}
		q.After = page.Next
	}
	return b.String()
}

// AssertUnchanged compares the store with the snapshot before, right away
// and again after a last-used flush, so a use wrongly recorded by a refused
// request shows up too.
func (e *Env) AssertUnchanged(t testing.TB, before string) {
	t.Helper()
	if after := e.Snapshot(t); after != before {
		t.Errorf("the store changed:\nbefore:\n%s\nafter:\n%s", before, after)
		return
	}
	e.FlushLastUsed(t)
	if after := e.Snapshot(t); after != before {
		t.Errorf("the store changed after a last-used flush:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// StoredKey reads one key straight from the store, or fails the test.
func (e *Env) StoredKey(t testing.TB, id string) store.Key {
	t.Helper()
	k, err := e.Store.GetKey(context.Background(), id)
	if err != nil {
		t.Fatalf("get key %s: %v", id, err)
	}
	return k
}

// AssertLastUsedStored runs a last-used flush and fails the test unless
// the key's last-used time is stored by then: a key used for the first
// time is written at the next flush.
func (e *Env) AssertLastUsedStored(t testing.TB, id string) {
	t.Helper()
	e.FlushLastUsed(t)
	if e.StoredKey(t, id).LastUsedAt.IsZero() {
		t.Fatalf("last_used_at of %s not stored by the flush after its first use", id)
	}
}
