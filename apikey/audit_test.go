package apikey

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/store"
)

// failingAppends refuses AppendAudit while armed.
type failingAppends struct {
	store.Store
	fail atomic.Bool
}

func (f *failingAppends) AppendAudit(ctx context.Context, ev store.AuditEvent) error {
	if f.fail.Load() {
		return store.ErrUnavailable
	}
	return f.Store.AppendAudit(ctx, ev)
}

func refusals(t *testing.T, st store.Store) map[string]store.AuditEvent {
	t.Helper()
	page, err := st.AuditEvents(context.Background(), "", store.AuditQuery{Actions: []store.AuditAction{store.AuditAuthFailed}})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.AuditEvent{}
	for _, ev := range page.Events {
		out[ev.SourceAddr+"|"+ev.Actor.ID] = ev
	}
	return out
}

// Refused calls fold per source address and client ID until their minute
// is over; past the table's bound they fold into one event without an
// address; a fold the store refused is kept, count and all, for the next
// round.
func TestAuthFailuresFold(t *testing.T) {
	ctx := context.Background()
	st, mk := FreshStore(t)
	fa := &failingAppends{Store: st}
	clk := &clock{}
	clk.t.Store(time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC).UnixNano())
	svc, err := Open(ctx, Config{Store: fa, MasterKey: mk, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	svc.failures.max = 3
	anon := func(src string) Request {
		return Request{Actor: store.AuditActor{Type: store.ActorAnonymous}, SourceAddr: src, UserAgent: "ua"}
	}
	for range 4 {
		svc.AuthFailed(anon("192.0.2.1"), DeniedBadToken)
	}
	svc.AuthFailed(Request{Actor: store.AuditActor{Type: store.ActorTeamKey, ID: "kgc_x"}, SourceAddr: "192.0.2.1"}, DeniedScope)
	svc.AuthFailed(anon("192.0.2.2"), DeniedNoToken)
	svc.AuthFailed(anon("192.0.2.3"), DeniedNoToken) // over the bound: folded without address
	svc.AuthFailed(anon("192.0.2.4"), DeniedNoToken) // likewise

	clk.advance(FoldWindow - time.Second)
	if err := svc.flushFailures(ctx, clk.now(), false); err != nil {
		t.Fatal(err)
	}
	if got := refusals(t, st); len(got) != 0 {
		t.Fatalf("stored before the minute was over: %v", got)
	}
	clk.advance(time.Second)
	fa.fail.Store(true)
	if err := svc.flushFailures(ctx, clk.now(), false); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("flush into a failing store: %v", err)
	}
	svc.AuthFailed(anon("192.0.2.1"), DeniedBadToken) // meanwhile, one more
	fa.fail.Store(false)
	if err := svc.flushFailures(ctx, clk.now(), false); err != nil {
		t.Fatal(err)
	}
	got := refusals(t, st)
	want := map[string]int{"192.0.2.1|": 5, "192.0.2.1|kgc_x": 1, "192.0.2.2|": 1, "|": 2}
	if len(got) != len(want) {
		t.Fatalf("stored refusals %v, want %v", got, want)
	}
	for k, n := range want {
		ev, ok := got[k]
		if !ok || ev.Count != n || ev.Outcome != store.OutcomeDenied || ev.TeamID != "" {
			t.Errorf("refusals of %q: %+v, want count %d", k, ev, n)
		}
	}
	if ev := got["|"]; ev.UserAgent != "" || ev.Reason != DeniedNoToken {
		t.Errorf("overflow fold keeps details of one caller: %+v", ev)
	}
	if ev := got["192.0.2.1|kgc_x"]; ev.Actor.Type != store.ActorTeamKey || ev.Reason != DeniedScope {
		t.Errorf("team key's refusal: %+v", ev)
	}
	// Nothing is left to store.
	if err := svc.flushFailures(ctx, clk.now().Add(time.Hour), true); err != nil {
		t.Fatal(err)
	}
	if again := refusals(t, st); len(again) != len(got) {
		t.Fatalf("a second flush stored more: %d events, then %d", len(got), len(again))
	}
}

// TestAdminKeyChangesAreAudited: the admin key a start creates, and a
// changed configured secret, are audit events of the system; a start with
// the secret already stored writes nothing.
func TestAdminKeyChangesAreAudited(t *testing.T) {
	ctx := context.Background()
	st, mk := FreshStore(t)
	first, err := credential.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	second, err := credential.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	open := func(secret string) *Service {
		t.Helper()
		svc, err := Open(ctx, Config{Store: st, MasterKey: mk, AdminClientID: "ops-admin", AdminClientSecret: secret})
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	adminEvents := func() []store.AuditEvent {
		t.Helper()
		p, err := st.AuditEvents(ctx, "", store.AuditQuery{Limit: store.MaxAuditLimit})
		if err != nil {
			t.Fatal(err)
		}
		return p.Events // newest first
	}
	open(first)
	evs := adminEvents()
	if len(evs) != 1 || evs[0].Action != store.AuditKeyCreated || evs[0].ClientID != "ops-admin" ||
		evs[0].Actor.Type != store.ActorSystem || evs[0].Actor.Via != "bootstrap" {
		t.Fatalf("after the first start: %+v", evs)
	}
	open(first) // the same secret: no change, no event
	if n := len(adminEvents()); n != 1 {
		t.Fatalf("a restart with the stored secret wrote %d events, want none", n-1)
	}
	svc := open(second)
	evs = adminEvents()
	if len(evs) != 2 || evs[0].Action != store.AuditKeyRotated || evs[0].ClientID != "ops-admin" || evs[0].Actor.Via != "bootstrap" {
		t.Fatalf("after a start with a new secret: %+v", evs)
	}
	if _, _, err := svc.Authenticate(ctx, "ops-admin", first); !errors.Is(err, ErrInvalidClient) {
		t.Fatalf("the replaced admin secret still authenticates: %v", err)
	}
	if _, _, err := svc.Authenticate(ctx, "ops-admin", second); err != nil {
		t.Fatalf("the new admin secret: %v", err)
	}

	// A generated admin key (no admin configured, an empty store).
	st2, mk2 := FreshStore(t)
	if _, err := Open(ctx, Config{Store: st2, MasterKey: mk2}); err != nil {
		t.Fatal(err)
	}
	p, err := st2.AuditEvents(ctx, "", store.AuditQuery{Limit: 10})
	if err != nil || len(p.Events) != 1 || p.Events[0].Action != store.AuditKeyCreated || p.Events[0].Actor.Via != "bootstrap" {
		t.Fatalf("generated admin key: %+v, %v", p.Events, err)
	}
}

// teamRegistry is a store.TeamRegistry that counts repair walks.
type teamRegistry struct {
	store.Store
	complete atomic.Bool
	repairs  atomic.Int64
}

func (r *teamRegistry) RepairTeams(context.Context) (store.TeamRepair, error) {
	r.repairs.Add(1)
	r.complete.Store(true)
	return store.TeamRepair{Walked: true, RegistryComplete: true}, nil
}

func (r *teamRegistry) TeamsComplete(context.Context) (bool, error) { return r.complete.Load(), nil }

// TestTeamsRepairCadence: the audit worker repairs a team registry that is
// not complete at its first round, and one that is complete first
// DefaultTeamsRepairEvery after it, not at start.
func TestTeamsRepairCadence(t *testing.T) {
	for _, complete := range []bool{false, true} {
		svc, reg, clk := openWrapped(t, func(st store.Store) *teamRegistry { return &teamRegistry{Store: st} })
		reg.complete.Store(complete)
		tick := startWorker(t, svc)
		t0 := clk.now()
		want := int64(1)
		if complete {
			want = 0
		}
		tick(t0)
		if n := reg.repairs.Load(); n != want {
			t.Fatalf("complete %v: %d repairs at the first round, want %d", complete, n, want)
		}
		tick(t0.Add(DefaultTeamsRepairEvery - time.Minute))
		if n := reg.repairs.Load(); n != want {
			t.Fatalf("complete %v: %d repairs before the period ended, want %d", complete, n, want)
		}
		tick(t0.Add(DefaultTeamsRepairEvery))
		if n := reg.repairs.Load(); n != want+1 {
			t.Fatalf("complete %v: %d repairs after the period, want %d", complete, n, want+1)
		}
	}
}
