package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

// webhookCases are Run's cases for the webhook delivery state
// (store.WebhookStates).
var webhookCases = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"WebhookState/UnknownEndpointIsZero", testWebhookStateUnknown},
	{"WebhookState/RoundTrip", testWebhookStateRoundTrip},
	{"WebhookState/OverwriteReplacesWhole", testWebhookStateOverwrite},
	{"WebhookState/FuncErrorChangesNothing", testWebhookStateFuncError},
	{"WebhookState/ConcurrentNoLostUpdates", testWebhookStateConcurrent},
	{"WebhookState/CancelledContextChangesNothing", testWebhookStateCancelled},
}

// fullWebhookState sets every field, times with nanoseconds in a non-UTC
// zone, so a backend that drops a field or keeps the zone fails.
func fullWebhookState(n int) store.WebhookState {
	return store.WebhookState{
		Delivered:      1<<40 + uint64(n), // beyond 32 bits
		Attempts:       3 + n,
		NextAttempt:    at(60 + n),
		FailingSince:   at(n),
		Disabled:       true,
		DisabledAt:     at(120 + n),
		DisabledReason: fmt.Sprintf("failing for 3 days (%d)", n),
		Owner:          fmt.Sprintf("instance-%d", n),
		LeaseUntil:     at(30 + n),
	}
}

func webhookStateDiff(want, got store.WebhookState) []string {
	var d []string
	if want.Delivered != got.Delivered {
		d = append(d, fmt.Sprintf("Delivered: got %d, want %d", got.Delivered, want.Delivered))
	}
	if want.Attempts != got.Attempts {
		d = append(d, fmt.Sprintf("Attempts: got %d, want %d", got.Attempts, want.Attempts))
	}
	if s := timeDiff(want.NextAttempt, got.NextAttempt); s != "" {
		d = append(d, "NextAttempt: "+s)
	}
	if s := timeDiff(want.FailingSince, got.FailingSince); s != "" {
		d = append(d, "FailingSince: "+s)
	}
	if want.Disabled != got.Disabled {
		d = append(d, fmt.Sprintf("Disabled: got %v, want %v", got.Disabled, want.Disabled))
	}
	if s := timeDiff(want.DisabledAt, got.DisabledAt); s != "" {
		d = append(d, "DisabledAt: "+s)
	}
	if want.DisabledReason != got.DisabledReason {
		d = append(d, fmt.Sprintf("DisabledReason: got %q, want %q", got.DisabledReason, want.DisabledReason))
	}
	if want.Owner != got.Owner {
		d = append(d, fmt.Sprintf("Owner: got %q, want %q", got.Owner, want.Owner))
	}
	if s := timeDiff(want.LeaseUntil, got.LeaseUntil); s != "" {
		d = append(d, "LeaseUntil: "+s)
	}
	return d
}

func mustWebhookState(t testing.TB, s store.Store, endpoint string) store.WebhookState {
	t.Helper()
	st, err := s.WebhookState(context.Background(), endpoint)
	if err != nil {
		t.Fatalf("WebhookState(%s): %v", endpoint, err)
	}
	return st
}

// saveWebhookState replaces the state with st and checks what the update
// returned.
func saveWebhookState(t testing.TB, s store.Store, endpoint string, st store.WebhookState) {
	t.Helper()
	got, err := s.UpdateWebhookState(context.Background(), endpoint, func(store.WebhookState) (store.WebhookState, error) { return st, nil })
	if err != nil {
		t.Fatalf("UpdateWebhookState(%s): %v", endpoint, err)
	}
	assertWebhookState(t, "state UpdateWebhookState returned", st, got)
}

func assertWebhookState(t testing.TB, what string, want, got store.WebhookState) {
	t.Helper()
	if d := webhookStateDiff(want, got); len(d) > 0 {
		t.Errorf("%s differs:\n%s", what, joinLines(d))
	}
}

func testWebhookStateUnknown(t *testing.T, s store.Store) {
	assertWebhookState(t, "state of an endpoint never saved", store.WebhookState{}, mustWebhookState(t, s, "ep_never_saved"))
	var seen store.WebhookState
	seen.Attempts = -1
	if _, err := s.UpdateWebhookState(context.Background(), "ep_new", func(cur store.WebhookState) (store.WebhookState, error) {
		seen = cur
		cur.Delivered = 7
		return cur, nil
	}); err != nil {
		t.Fatal(err)
	}
	assertWebhookState(t, "current state given to the first update", store.WebhookState{}, seen)
	assertWebhookState(t, "state after the first update", store.WebhookState{Delivered: 7}, mustWebhookState(t, s, "ep_new"))
}

func testWebhookStateRoundTrip(t *testing.T, s store.Store) {
	a, b := fullWebhookState(1), fullWebhookState(2)
	b.Disabled, b.DisabledAt, b.DisabledReason = false, time.Time{}, "" // a failing, still enabled endpoint
	saveWebhookState(t, s, "ep_a", a)
	saveWebhookState(t, s, "ep_b", b)
	assertWebhookState(t, "ep_a", a, mustWebhookState(t, s, "ep_a"))
	assertWebhookState(t, "ep_b (saved after ep_a: endpoints are separate)", b, mustWebhookState(t, s, "ep_b"))
	assertWebhookState(t, "an endpoint never saved, beside saved ones", store.WebhookState{}, mustWebhookState(t, s, "ep_c"))
	// The update function sees what is stored.
	var seen store.WebhookState
	if _, err := s.UpdateWebhookState(context.Background(), "ep_a", func(cur store.WebhookState) (store.WebhookState, error) {
		seen = cur
		return cur, nil
	}); err != nil {
		t.Fatal(err)
	}
	assertWebhookState(t, "current state given to update", a, seen)
}

func testWebhookStateOverwrite(t *testing.T, s store.Store) {
	saveWebhookState(t, s, "ep_a", fullWebhookState(1))
	// A healthy state after a failing one: every failure field must go,
	// not only the ones the new state sets.
	healthy := store.WebhookState{Delivered: 1<<40 + 2}
	saveWebhookState(t, s, "ep_a", healthy)
	assertWebhookState(t, "ep_a after the overwrite", healthy, mustWebhookState(t, s, "ep_a"))
}

func testWebhookStateFuncError(t *testing.T, s store.Store) {
	saved := fullWebhookState(1)
	saveWebhookState(t, s, "ep_a", saved)
	got, err := s.UpdateWebhookState(context.Background(), "ep_a", func(cur store.WebhookState) (store.WebhookState, error) {
		cur.Delivered, cur.Owner = 1, "intruder"
		return cur, errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("UpdateWebhookState with a refusing function: error %v, want the function's", err)
	}
	assertWebhookState(t, "state returned by a refused update", store.WebhookState{}, got)
	assertWebhookState(t, "ep_a after a refused update", saved, mustWebhookState(t, s, "ep_a"))
	if _, err := s.UpdateWebhookState(context.Background(), "ep_b", func(store.WebhookState) (store.WebhookState, error) {
		return fullWebhookState(2), errBoom
	}); !errors.Is(err, errBoom) {
		t.Fatalf("refused first update: %v", err)
	}
	assertWebhookState(t, "an endpoint whose first update was refused", store.WebhookState{}, mustWebhookState(t, s, "ep_b"))
}

// Several instances compete for an endpoint's lease through updates: none
// may be lost.
func testWebhookStateConcurrent(t *testing.T, s store.Store) {
	const n = 10
	errs := make([]error, n)
	concurrently(n, func(i int) {
		_, errs[i] = s.UpdateWebhookState(context.Background(), "ep_a", func(cur store.WebhookState) (store.WebhookState, error) {
			cur.Attempts++
			cur.Owner = fmt.Sprintf("instance-%d", i)
			return cur, nil
		})
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent update %d: %v", i, err)
		}
	}
	if got := mustWebhookState(t, s, "ep_a"); got.Attempts != n {
		t.Fatalf("after %d concurrent increments Attempts = %d (lost updates)", n, got.Attempts)
	}
}

func testWebhookStateCancelled(t *testing.T, s store.Store) {
	saved := fullWebhookState(1)
	saveWebhookState(t, s, "ep_a", saved)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.UpdateWebhookState(ctx, "ep_a", func(store.WebhookState) (store.WebhookState, error) {
		return store.WebhookState{Delivered: 1}, nil
	}); err == nil {
		t.Error("UpdateWebhookState with a cancelled context: got nil error")
	}
	if _, err := s.WebhookState(ctx, "ep_a"); err == nil {
		t.Error("WebhookState with a cancelled context: got nil error")
	}
	assertWebhookState(t, "ep_a after a cancelled update", saved, mustWebhookState(t, s, "ep_a"))
}
