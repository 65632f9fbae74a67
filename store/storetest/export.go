package storetest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

// ExportStore is a backend that also offers store.Exporter.
type ExportStore interface {
	store.Store
	store.Exporter
}

// RunExport runs the conformance tests of store.Exporter, with the same
// rules for newStore as Run.
func RunExport(t *testing.T, newStore func(t *testing.T) ExportStore) {
	t.Helper()
	t.Run("Export/Singletons", func(t *testing.T) { testExportSingletons(t, newStore(t)) })
	t.Run("Export/DenyList", func(t *testing.T) { testExportDenyList(t, newStore(t)) })
	t.Run("Export/AuditEvents", func(t *testing.T) { testExportAudit(t, newStore(t)) })
	t.Run("Export/WebhookStates", func(t *testing.T) { testExportWebhookStates(t, newStore(t)) })
}

func testExportSingletons(t *testing.T, s ExportStore) {
	ctx := context.Background()
	got, err := s.Singletons(ctx)
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("empty store: Singletons = %v, %v; want an empty, non-nil map", got, err)
	}
	want := map[string][]byte{"pepper": randomBytes(t, 60), "other": randomBytes(t, 10)}
	for name, v := range want {
		if _, err := s.CreateSingleton(ctx, name, v); err != nil {
			t.Fatal(err)
		}
	}
	got, err = s.Singletons(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Singletons returned %d values, want %d", len(got), len(want))
	}
	for name, v := range want {
		if !bytes.Equal(got[name], v) {
			t.Errorf("singleton %s: got %x, want %x", name, got[name], v)
		}
	}
	got["pepper"][0] ^= 0xff
	again, err := s.Singletons(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again["pepper"], want["pepper"]) {
		t.Error("changing a returned singleton changed the stored one")
	}
}

func testExportDenyList(t *testing.T, s ExportStore) {
	ctx := context.Background()
	now := time.Now().UTC()
	want := map[string]time.Time{
		"jti-a": now.Add(time.Hour).Truncate(time.Millisecond),
		"jti-b": now.Add(2 * time.Hour).Truncate(time.Millisecond),
	}
	for jti, until := range want {
		if err := s.DenyToken(ctx, jti, until); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]time.Time{}
	err := s.ForEachDenied(ctx, now, func(jti string, until time.Time) error {
		if _, dup := got[jti]; dup {
			t.Errorf("jti %s visited twice", jti)
		}
		got[jti] = until
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("ForEachDenied visited %v, want %v", got, want)
	}
	for jti, until := range want {
		// A backend that keeps a time to live (Redis) reads the expiry
		// back from it: off by a round trip at most.
		if d := got[jti].Sub(until); d < -time.Second || d > time.Second {
			t.Errorf("jti %s: until %v, want %v", jti, got[jti], until)
		}
		if got[jti].Location() != time.UTC {
			t.Errorf("jti %s: until not in UTC", jti)
		}
	}
	// Entries expired at now are not visited.
	n := 0
	if err := s.ForEachDenied(ctx, now.Add(90*time.Minute), func(string, time.Time) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("at now+90m: visited %d entries, want 1 (jti-b)", n)
	}
	stop := errors.New("stop")
	n = 0
	err = s.ForEachDenied(ctx, now, func(string, time.Time) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("fn's error: got %v after %d calls, want it after 1", err, n)
	}
}

func testExportAudit(t *testing.T, s ExportStore) {
	ctx := context.Background()
	base := time.Now().UTC().Truncate(time.Millisecond)
	var want []store.AuditEvent
	k := newKey(t, "exp1", "team-a", base)
	created := newEvent(store.AuditKeyCreated, "team-a", k.ClientID, base)
	created.Fields = nil
	if err := s.CreateKey(ctx, k, 0, created); err != nil {
		t.Fatal(err)
	}
	want = append(want, created)
	for i, team := range []string{"team-a", "team-b", "", "team-b"} {
		ev := newEvent(store.AuditTokenRevoked, team, "", base.Add(time.Duration(i+1)*time.Second))
		if err := s.AppendAudit(ctx, ev); err != nil {
			t.Fatal(err)
		}
		want = append(want, ev)
	}
	var got []store.AuditEvent
	if err := s.ForEachAuditEvent(ctx, func(ev store.AuditEvent) error { got = append(got, ev); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("visited %d events %v, want %d %v", len(got), eventIDs(got), len(want), eventIDs(want))
	}
	byID := map[string]store.AuditEvent{}
	for _, ev := range got {
		byID[ev.ID] = ev
	}
	for _, w := range want {
		g, ok := byID[w.ID]
		if !ok {
			t.Errorf("event %s not visited", w.ID)
			continue
		}
		assertEvent(t, "event "+w.ID, w, g)
	}
	// Each team's events come oldest first.
	for _, team := range []string{"team-a", "team-b", ""} {
		var wantIDs, gotIDs []string
		for _, ev := range want {
			if ev.TeamID == team {
				wantIDs = append(wantIDs, ev.ID)
			}
		}
		for _, ev := range got {
			if ev.TeamID == team {
				gotIDs = append(gotIDs, ev.ID)
			}
		}
		if !slices.Equal(gotIDs, wantIDs) {
			t.Errorf("team %q: events in order %v, want %v", team, gotIDs, wantIDs)
		}
	}
}

func testExportWebhookStates(t *testing.T, s ExportStore) {
	ctx := context.Background()
	visit := func() map[string]store.WebhookState {
		got := map[string]store.WebhookState{}
		err := s.ForEachWebhookState(ctx, func(ep string, st store.WebhookState) error {
			if _, dup := got[ep]; dup {
				t.Errorf("endpoint %s visited twice", ep)
			}
			got[ep] = st
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := visit(); len(got) != 0 {
		t.Fatalf("empty store: visited %v", got)
	}
	at := time.Now().UTC().Truncate(time.Millisecond)
	want := map[string]store.WebhookState{
		"ep-one": {Delivered: 42, Attempts: 3, NextAttempt: at.Add(time.Minute), FailingSince: at, Owner: "inst-1", LeaseUntil: at.Add(time.Second)},
		"ep-two": {Delivered: 7, Disabled: true, DisabledAt: at, DisabledReason: "gave up"},
	}
	for ep, st := range want {
		if _, err := s.UpdateWebhookState(ctx, ep, func(store.WebhookState) (store.WebhookState, error) { return st, nil }); err != nil {
			t.Fatal(err)
		}
	}
	got := visit()
	if len(got) != len(want) {
		t.Fatalf("visited %v, want %v", got, want)
	}
	for ep, st := range want {
		if g := got[ep]; !g.NextAttempt.Equal(st.NextAttempt) || !g.FailingSince.Equal(st.FailingSince) || !g.DisabledAt.Equal(st.DisabledAt) || !g.LeaseUntil.Equal(st.LeaseUntil) ||
			g.Delivered != st.Delivered || g.Attempts != st.Attempts || g.Disabled != st.Disabled || g.DisabledReason != st.DisabledReason || g.Owner != st.Owner {
			t.Errorf("endpoint %s: got %+v, want %+v", ep, g, st)
		}
	}
}
