package storetest

import (
	"context"
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

func assertWebhookState(t testing.TB, what string, want, got store.WebhookState) {
	t.Helper()
	if d := webhookStateDiff(want, got); len(d) > 0 {
		t.Errorf("%s differs:\n%s", what, joinLines(d))
	}
}

func testWebhookStateUnknown(t *testing.T, s store.Store) {
	got := mustWebhookState(t, s, "ep_never_saved")
	assertWebhookState(t, "state of an endpoint never saved", store.WebhookState{}, got)
}

func testWebhookStateRoundTrip(t *testing.T, s store.Store) {
	ctx := context.Background()
	a, b := fullWebhookState(1), fullWebhookState(2)
	b.Disabled, b.DisabledAt, b.DisabledReason = false, time.Time{}, "" // a failing, still enabled endpoint
	if err := s.SaveWebhookState(ctx, "ep_a", a); err != nil {
		t.Fatalf("SaveWebhookState(ep_a): %v", err)
	}
	if err := s.SaveWebhookState(ctx, "ep_b", b); err != nil {
		t.Fatalf("SaveWebhookState(ep_b): %v", err)
	}
	assertWebhookState(t, "ep_a", a, mustWebhookState(t, s, "ep_a"))
	assertWebhookState(t, "ep_b (saved after ep_a: endpoints are separate)", b, mustWebhookState(t, s, "ep_b"))
	assertWebhookState(t, "an endpoint never saved, beside saved ones", store.WebhookState{}, mustWebhookState(t, s, "ep_c"))
}

func testWebhookStateOverwrite(t *testing.T, s store.Store) {
	ctx := context.Background()
	if err := s.SaveWebhookState(ctx, "ep_a", fullWebhookState(1)); err != nil {
		t.Fatal(err)
	}
	// A healthy state after a failing one: every failure field must go,
	// not only the ones the new state sets.
	healthy := store.WebhookState{Delivered: 1<<40 + 2}
	if err := s.SaveWebhookState(ctx, "ep_a", healthy); err != nil {
		t.Fatalf("SaveWebhookState(ep_a) again: %v", err)
	}
	assertWebhookState(t, "ep_a after the overwrite", healthy, mustWebhookState(t, s, "ep_a"))
}

func testWebhookStateCancelled(t *testing.T, s store.Store) {
	saved := fullWebhookState(1)
	if err := s.SaveWebhookState(context.Background(), "ep_a", saved); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.SaveWebhookState(ctx, "ep_a", store.WebhookState{Delivered: 1}); err == nil {
		t.Error("SaveWebhookState with a cancelled context: got nil error")
	}
	if _, err := s.WebhookState(ctx, "ep_a"); err == nil {
		t.Error("WebhookState with a cancelled context: got nil error")
	}
	assertWebhookState(t, "ep_a after a cancelled save", saved, mustWebhookState(t, s, "ep_a"))
}
