package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/bolt"
	"github.com/keygate/keygate/store/storetest"
	"github.com/keygate/keygate/webhook"
)

type auditStore interface {
	webhook.AuditReader
	AppendAudit(ctx context.Context, ev store.AuditEvent) error
	PruneAudit(ctx context.Context, before time.Time) (int, error)
}

var auditBase = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func appendAudit(t *testing.T, st auditStore, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		ev := store.AuditEvent{
			ID: fmt.Sprintf("01AUDIT%05d", i), Time: auditBase.Add(time.Duration(i) * time.Minute),
			Action: store.AuditTokenRevoked, Actor: store.AuditActor{Type: store.ActorAdminKey, ID: "admin"},
			TeamID: "acme", Outcome: store.OutcomeSuccess, Count: 1,
		}
		if err := st.AppendAudit(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

func render(ev store.AuditEvent) (json.RawMessage, error) {
	return json.Marshal(map[string]any{"id": ev.ID, "action": ev.Action, "team_id": ev.TeamID})
}

// AuditSource reads the newest-first audit stream oldest first, a batch
// at a time, every event once, across gaps left by pruning.
func TestAuditSource(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) auditStore{
		"memory": func(t *testing.T) auditStore { return storetest.NewMemStore() },
		"bolt": func(t *testing.T) auditStore {
			b, err := bolt.Open(filepath.Join(t.TempDir(), "keygate.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			return b
		},
	} {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			src := webhook.AuditSource{Store: st, Render: render}
			ctx := context.Background()
			if evs, err := src.EventsAfter(ctx, 0, 100); err != nil || len(evs) != 0 {
				t.Fatalf("empty stream: %v, %v", evs, err)
			}
			appendAudit(t, st, 0, 250)
			head, err := src.Head(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var got []webhook.Event
			var cursor uint64
			for round := 0; round < 10; round++ {
				evs, err := src.EventsAfter(ctx, cursor, 100)
				if err != nil {
					t.Fatal(err)
				}
				if len(evs) > 100 {
					t.Fatalf("a batch of %d events, want at most 100", len(evs))
				}
				if len(evs) == 0 {
					break
				}
				got = append(got, evs...)
				cursor = evs[len(evs)-1].Seq
			}
			if len(got) != 250 || cursor != head {
				t.Fatalf("read %d events up to %d, want 250 up to the head %d", len(got), cursor, head)
			}
			for i, ev := range got {
				want := fmt.Sprintf("01AUDIT%05d", i)
				if ev.ID != want || ev.Type != "token.revoked" || !ev.Time.Equal(auditBase.Add(time.Duration(i)*time.Minute)) ||
					(i > 0 && ev.Seq <= got[i-1].Seq) {
					t.Fatalf("event %d = %+v, want %s in stream order", i, ev, want)
				}
				var data struct{ ID, Action string }
				if err := json.Unmarshal(ev.Data, &data); err != nil || data.ID != want {
					t.Fatalf("event %d data %s, want the rendered event", i, ev.Data)
				}
			}

			// Pruned events leave a gap after a cursor that never reached
			// them (an endpoint that was behind): reading resumes after it.
			if _, err := st.PruneAudit(ctx, auditBase.Add(200*time.Minute)); err != nil {
				t.Fatal(err)
			}
			evs, err := src.EventsAfter(ctx, 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, ev := range evs {
				ids = append(ids, ev.ID)
			}
			want := []string{}
			for i := 200; i < 210; i++ {
				want = append(want, fmt.Sprintf("01AUDIT%05d", i))
			}
			if !slices.Equal(ids, want) {
				t.Errorf("after pruning the first 200, EventsAfter(0, 10) = %v, want %v", ids, want)
			}
		})
	}
}

// A dispatcher fed by the audit stream of a real store, keeping its state
// in the same store, delivers the stream's events.
func TestDispatcherOnAuditStore(t *testing.T) {
	st := storetest.NewMemStore()
	h := newHarness(t, st)
	rcv := newReceiver(t)
	ep := h.endpoint(0, rcv.URL)
	appendAudit(t, st, 0, 3)
	ticks := make(chan time.Time)
	opts := h.options()
	opts.Ticks = func(webhook.Endpoint) <-chan time.Time { return ticks }
	h.rounds[0] = make(chan uint64, 10)
	d, err := webhook.New(ep, webhook.AuditSource{Store: st, Render: render}, st, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	ticks <- h.clock.Now()
	if backlog := h.wait(0); backlog != 0 {
		t.Errorf("backlog %d after a round", backlog)
	}
	if got := rcv.ids(); !slices.Equal(got, []string{"01AUDIT00000", "01AUDIT00001", "01AUDIT00002"}) {
		t.Errorf("receiver got %v", got)
	}
	whsec, _ := secret(0)
	for _, q := range rcv.requests() {
		verify(t, whsec, q)
	}
}
