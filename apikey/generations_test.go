package apikey

// Secret generations and their status indices (#14 item 6): Rotate gives
// each secret its own index and sets the bits of those it ends, Delete sets
// both live ones, RevokeEndedGenerations sets those whose grace ran out,
// and a failed bit is never lost.

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/store"
)

// revokeFails makes RevokeStatus fail while fail is set, and counts calls.
type revokeFails struct {
	store.Store
	fail  atomic.Bool
	calls atomic.Int64
}

var errRevokeDown = errors.New("status list down")

func (r *revokeFails) RevokeStatus(ctx context.Context, idx int64) error {
	r.calls.Add(1)
	if r.fail.Load() {
		return errRevokeDown
	}
	return r.Store.RevokeStatus(ctx, idx)
}

func openGenService(t *testing.T) (*Service, *revokeFails, *clock) {
	return openWrapped(t, func(st store.Store) *revokeFails { return &revokeFails{Store: st} })
}

// openWrapped opens a Service on a fresh store wrapped by wrap, with a
// clock of its own that starts at a fixed time.
func openWrapped[W store.Store](t *testing.T, wrap func(store.Store) W) (*Service, W, *clock) {
	t.Helper()
	st, mk := FreshStore(t)
	clk := &clock{}
	clk.t.Store(time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC).UnixNano())
	w := wrap(st)
	svc, err := Open(context.Background(), Config{Store: w, MasterKey: mk, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	return svc, w, clk
}

// revoked reports whether idx's bit is set in the stored list.
func revoked(t *testing.T, st store.Store, idx int64) bool {
	t.Helper()
	l, err := st.StatusList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return l.Entry(idx) == store.StatusInvalid
}

func TestRotateGenerations(t *testing.T) {
	ctx := context.Background()
	svc, st, clk := openGenService(t)
	k0, s0, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "a", Permissions: []string{"accounting_api"}})
	if err != nil {
		t.Fatal(err)
	}
	gen0 := k0.StatusIndex

	// Rotation 1, grace 1h: a new index; the old one is the previous, live.
	k1, s1, err := svc.Rotate(ctx, testReq, "acme", k0.ClientID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	gen1 := k1.StatusIndex
	if gen1 == gen0 || gen1 == 0 || k1.PreviousStatusIndex != gen0 {
		t.Fatalf("after rotating with grace: index %d, previous %d; want a new index and previous %d", gen1, k1.PreviousStatusIndex, gen0)
	}
	if revoked(t, st, gen0) || revoked(t, st, gen1) {
		t.Fatal("a bit was set by a rotation with a grace period")
	}
	_, a0, err := svc.Authenticate(ctx, k0.ClientID, s0)
	if err != nil || a0.StatusIndex != gen0 || !a0.NotAfter.Equal(clk.now().Add(time.Hour)) {
		t.Fatalf("previous secret during grace: %+v, %v; want index %d, not after the grace end", a0, err, gen0)
	}
	if got := a0.TokenExpiry(2 * time.Hour); !got.Equal(a0.NotAfter) {
		t.Fatalf("token expiry for a previous secret: %v, want the grace end %v", got, a0.NotAfter)
	}
	_, a1, err := svc.Authenticate(ctx, k0.ClientID, s1)
	if err != nil || a1.StatusIndex != gen1 || !a1.NotAfter.IsZero() || !a1.TokenExpiry(time.Hour).Equal(clk.now().Add(time.Hour)) {
		t.Fatalf("current secret: %+v, %v; want index %d and no end", a1, err, gen1)
	}
	for _, c := range []struct {
		idx  int64
		want bool
	}{{gen0, true}, {gen1, true}, {0, true}, {gen1 + 100, false}} {
		if got := GenerationLive(k1, c.idx, clk.now()); got != c.want {
			t.Errorf("GenerationLive(%d) during grace = %v, want %v", c.idx, got, c.want)
		}
	}

	// Rotation 2 during the grace period, grace 1h again: the oldest
	// generation ends at once, its bit set before Rotate returns.
	clk.advance(time.Minute)
	k2, _, err := svc.Rotate(ctx, testReq, "acme", k0.ClientID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !revoked(t, st, gen0) || revoked(t, st, gen1) || revoked(t, st, k2.StatusIndex) {
		t.Fatalf("after rotating during a grace period: bits %v/%v/%v; want only the oldest generation's set",
			revoked(t, st, gen0), revoked(t, st, gen1), revoked(t, st, k2.StatusIndex))
	}
	if GenerationLive(k2, gen0, clk.now()) || !GenerationLive(k2, gen1, clk.now()) {
		t.Fatal("GenerationLive after the second rotation: the oldest must be dead, the previous live")
	}

	// Rotation 3, grace 0: the replaced generation's bit is set at once;
	// the record keeps its index (a failed bit would not be lost) until a
	// round clears it.
	k3, _, err := svc.Rotate(ctx, testReq, "acme", k0.ClientID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !revoked(t, st, gen1) || !revoked(t, st, k2.StatusIndex) || revoked(t, st, k3.StatusIndex) {
		t.Fatal("a grace-0 rotation must set the bits of both ended generations and not the new one's")
	}
	if GenerationLive(k3, k2.StatusIndex, clk.now()) || k3.PreviousStatusIndex != k2.StatusIndex {
		t.Fatalf("after grace 0: previous index %d (want %d recorded) must not be live", k3.PreviousStatusIndex, k2.StatusIndex)
	}
	if n, err := svc.RevokeEndedGenerations(ctx, clk.now()); err != nil || n != 1 {
		t.Fatalf("RevokeEndedGenerations after grace 0: %d, %v; want 1 (the recorded index), nil", n, err)
	}
	if k, _ := svc.Get(ctx, "acme", k0.ClientID); k.PreviousStatusIndex != 0 || k.StatusIndex != k3.StatusIndex {
		t.Fatalf("after the round: indices %d/%d, want %d/0", k.StatusIndex, k.PreviousStatusIndex, k3.StatusIndex)
	}
	if n, err := svc.RevokeEndedGenerations(ctx, clk.now()); err != nil || n != 0 {
		t.Fatalf("a second round: %d, %v; want nothing to do", n, err)
	}
}

// TestGraceEndSetByRound: the bit of a generation whose grace ran out is
// set by RevokeEndedGenerations, not before.
func TestGraceEndSetByRound(t *testing.T) {
	ctx := context.Background()
	svc, st, clk := openGenService(t)
	k0, _, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "a", Permissions: []string{"accounting_api"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Rotate(ctx, testReq, "acme", k0.ClientID, time.Minute); err != nil {
		t.Fatal(err)
	}
	clk.advance(59 * time.Second)
	if n, err := svc.RevokeEndedGenerations(ctx, clk.now()); err != nil || n != 0 || revoked(t, st, k0.StatusIndex) {
		t.Fatalf("round inside the grace period: %d, %v; want nothing set", n, err)
	}
	clk.advance(time.Second)
	if n, err := svc.RevokeEndedGenerations(ctx, clk.now()); err != nil || n != 1 || !revoked(t, st, k0.StatusIndex) {
		t.Fatalf("round at the grace end: %d, %v; want the old generation's bit set", n, err)
	}
}

// TestRotateRevokeFailure: a grace-0 rotation whose bit cannot be set
// answers an error; the secret is rotated anyway (introspection already
// calls the old tokens inactive), and the index stays on record until a
// round sets it.
func TestRotateRevokeFailure(t *testing.T) {
	ctx := context.Background()
	svc, st, clk := openGenService(t)
	k0, s0, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "a", Permissions: []string{"accounting_api"}})
	if err != nil {
		t.Fatal(err)
	}
	st.fail.Store(true)
	if _, secret, err := svc.Rotate(ctx, testReq, "acme", k0.ClientID, 0); !errors.Is(err, errRevokeDown) || secret != "" {
		t.Fatalf("rotate with the status list down: secret shown %v, err %v; want errRevokeDown and no secret", secret != "", err)
	}
	if _, _, err := svc.Authenticate(ctx, k0.ClientID, s0); !errors.Is(err, ErrInvalidClient) {
		t.Fatalf("old secret after the failed rotate: %v, want ErrInvalidClient", err)
	}
	k, _ := svc.Get(ctx, "acme", k0.ClientID)
	if k.PreviousStatusIndex != k0.StatusIndex || GenerationLive(k, k0.StatusIndex, clk.now()) {
		t.Fatalf("after the failed rotate: previous index %d, want %d recorded and dead", k.PreviousStatusIndex, k0.StatusIndex)
	}
	if n, err := svc.RevokeEndedGenerations(ctx, clk.now()); !errors.Is(err, errRevokeDown) || n != 0 {
		t.Fatalf("round with the status list down: %d, %v", n, err)
	}
	if k, _ := svc.Get(ctx, "acme", k0.ClientID); k.PreviousStatusIndex != k0.StatusIndex {
		t.Fatal("a round that could not set the bit forgot the index")
	}
	st.fail.Store(false)
	if revoked(t, st, k0.StatusIndex) {
		t.Fatal("bit set although RevokeStatus failed")
	}
	if n, err := svc.RevokeEndedGenerations(ctx, clk.now()); err != nil || n != 1 || !revoked(t, st, k0.StatusIndex) {
		t.Fatalf("round with the status list back: %d, %v; want the bit set", n, err)
	}
}

// TestDeleteRevokesBothGenerations: Delete during a grace period sets the
// current and the previous generation's bits.
func TestDeleteRevokesBothGenerations(t *testing.T) {
	ctx := context.Background()
	svc, st, _ := openGenService(t)
	k0, _, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "a", Permissions: []string{"accounting_api"}})
	if err != nil {
		t.Fatal(err)
	}
	k1, _, err := svc.Rotate(ctx, testReq, "acme", k0.ClientID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Delete(ctx, testReq, "acme", k0.ClientID); err != nil {
		t.Fatal(err)
	}
	if !revoked(t, st, k0.StatusIndex) || !revoked(t, st, k1.StatusIndex) {
		t.Fatalf("after delete in the grace period: bits %v/%v, want both set", revoked(t, st, k0.StatusIndex), revoked(t, st, k1.StatusIndex))
	}
}

// rotatedWithAudit is a store with one key rotated with a minute of grace
// and an audit worker on injected ticks: tick runs one round at a time
// (the unbuffered second send returns once the first round is done), and
// ended reports whether the rotated secret's status bit is set. since,
// when not nil, replaces the clock that times the worker's walks; it is
// set before the first tick, which the loop receives after it.
func rotatedWithAudit(t *testing.T, every time.Duration, since func(time.Time) time.Duration) (t0 time.Time, tick func(time.Time), ended func() bool) {
	t.Helper()
	ctx := context.Background()
	svc, st, clk := openGenService(t)
	k0, _, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "a", Permissions: []string{"accounting_api"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Rotate(ctx, testReq, "acme", k0.ClientID, time.Minute); err != nil {
		t.Fatal(err)
	}
	ticks := make(chan time.Time)
	w := svc.StartAudit(AuditOptions{Ticks: ticks, GenerationsEvery: every})
	t.Cleanup(w.Close)
	if since != nil {
		w.since = since
	}
	tick = func(at time.Time) {
		ticks <- at
		ticks <- at
	}
	return clk.now(), tick, func() bool { return revoked(t, st, k0.StatusIndex) }
}

// TestAuditWorkerWalkCadence: the audit worker's round runs
// RevokeEndedGenerations on its injected ticks, at most every
// GenerationsEvery; after a walk that took longer, the next waits as long
// as that walk took, counted from its end, so a store whose walks take
// minutes is walked half the time, not without a pause. Each case: the
// first round walks (the grace has not ended at its start), a round at
// quiet does not walk, one at due does and sets the ended secret's bit.
func TestAuditWorkerWalkCadence(t *testing.T) {
	tenMinutes := func(time.Time) time.Duration { return 10 * time.Minute } // every walk "takes" 10 min
	for _, c := range []struct {
		name       string
		every      time.Duration
		since      func(time.Time) time.Duration
		quiet, due time.Duration
	}{
		{"walks every GenerationsEvery", 10 * time.Minute, nil, 2 * time.Minute, 10 * time.Minute},
		{"rests after a long walk as long as it took", time.Minute, tenMinutes, 11 * time.Minute, 20 * time.Minute},
	} {
		t.Run(c.name, func(t *testing.T) {
			t0, tick, ended := rotatedWithAudit(t, c.every, c.since)
			tick(t0)
			tick(t0.Add(c.quiet))
			if ended() {
				t.Fatalf("a walk ran at +%v", c.quiet)
			}
			tick(t0.Add(c.due))
			if !ended() {
				t.Fatalf("no walk by +%v", c.due)
			}
		})
	}
}

// TestConfiguredAdminSecretIsANewGeneration: a start with a different
// configured admin secret gives the admin key a new status index and sets
// the replaced one's bit, as a grace-0 rotation does, so tokens minted with
// the old secret are cut off; a start with the same secret changes nothing.
func TestConfiguredAdminSecretIsANewGeneration(t *testing.T) {
	ctx := context.Background()
	st, mk := FreshStore(t)
	first, second := mustSecret(t), mustSecret(t)
	open := func(secret string) *Service {
		t.Helper()
		svc, err := Open(ctx, Config{Store: st, MasterKey: mk, AdminClientID: "ops-admin", AdminClientSecret: secret})
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	index := func() int64 {
		t.Helper()
		k, err := st.GetKey(ctx, "ops-admin")
		if err != nil {
			t.Fatal(err)
		}
		return k.StatusIndex
	}
	open(first)
	i1 := index()
	if i1 == 0 || revoked(t, st, i1) {
		t.Fatalf("first start: index %d (revoked %v)", i1, revoked(t, st, i1))
	}
	open(first)
	if got := index(); got != i1 {
		t.Fatalf("a restart with the same secret moved the index %d → %d", i1, got)
	}
	svc := open(second)
	i2 := index()
	if i2 == i1 || i2 == 0 {
		t.Fatalf("a new configured secret kept index %d (now %d)", i1, i2)
	}
	if !revoked(t, st, i1) {
		t.Fatalf("the replaced secret's index %d is not revoked", i1)
	}
	if revoked(t, st, i2) {
		t.Fatalf("the new secret's index %d is revoked", i2)
	}
	_, auth, err := svc.Authenticate(ctx, "ops-admin", second)
	if err != nil || auth.StatusIndex != i2 {
		t.Fatalf("the new secret authenticates with index %d (%v), want %d", auth.StatusIndex, err, i2)
	}
	open(second)
	if got := index(); got != i2 {
		t.Fatalf("a restart with the new secret moved the index %d → %d", i2, got)
	}
}

func mustSecret(t *testing.T) string {
	t.Helper()
	s, err := credential.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAuditWorkerPrunesSessions: an ended console session (and its code)
// leaves the store on the audit worker's next round after its end, driven
// by injected ticks; a live one stays.
func TestAuditWorkerPrunesSessions(t *testing.T) {
	ctx := context.Background()
	st, mk := FreshStore(t)
	clk := &clock{}
	clk.t.Store(time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC).UnixNano())
	svc, err := Open(ctx, Config{Store: st, MasterKey: mk, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	short, _, err := svc.CreateConsoleSession(ctx, testReq, "acme", "alice@example.com", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	long, _, err := svc.CreateConsoleSession(ctx, testReq, "acme", "bob@example.com", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ss, _ := store.Feature[store.Sessions](st)
	ticks := make(chan time.Time)
	w := svc.StartAudit(AuditOptions{Ticks: ticks})
	defer w.Close()
	t0 := clk.now()
	ticks <- t0.Add(30 * time.Second)
	ticks <- t0.Add(30 * time.Second) // returns once the first round is done
	if _, err := ss.GetSession(ctx, short.ID); err != nil {
		t.Fatalf("a live session pruned: %v", err)
	}
	ticks <- t0.Add(2 * time.Minute)
	ticks <- t0.Add(2 * time.Minute)
	if _, err := ss.GetSession(ctx, short.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an ended session after the round: %v, want not found", err)
	}
	if _, err := ss.GetSession(ctx, long.ID); err != nil {
		t.Fatalf("a live session pruned with the ended one: %v", err)
	}
}
