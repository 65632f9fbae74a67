package apikey

// Leaked secrets (#14): ReportLeaked cuts off the reported generation, and
// only it; everything else is left as it was.

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/credential"
	"github.com/keygate/keygate/store"
)

var reporter = Request{Actor: store.AuditActor{Type: store.ActorAnonymous}, SourceAddr: "198.51.100.7", UserAgent: "scanner"}

// leakedEvents returns the team's key.secret_leaked events, newest first.
func leakedEvents(t *testing.T, svc *Service, team string) []store.AuditEvent {
	t.Helper()
	p, err := svc.TeamEvents(context.Background(), team, store.AuditQuery{Actions: []store.AuditAction{store.AuditSecretLeaked}})
	if err != nil {
		t.Fatal(err)
	}
	return p.Events
}

func TestReportLeakedCurrentSecret(t *testing.T) {
	ctx := context.Background()
	svc, st, clk := openGenService(t)
	k, s0, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "a", Permissions: []string{"accounting_api"}})
	if err != nil {
		t.Fatal(err)
	}
	other, otherSecret, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "b", Permissions: []string{"accounting_api"}})
	if err != nil {
		t.Fatal(err)
	}
	unknown, _ := credential.NewSecret()

	h := &countingHasher{secretHasher: svc.hasher}
	svc.hasher = h
	n, err := svc.ReportLeaked(ctx, reporter, []string{unknown, s0, "kgs_not-even-a-secret"})
	if err != nil || n != 1 {
		t.Fatalf("ReportLeaked = %d, %v; want 1 generation cut off", n, err)
	}
	if got := h.n.Load(); got != 3 {
		t.Errorf("%d HMACs for 3 reported strings, want exactly one each", got)
	}
	svc.hasher = h.secretHasher

	// The secret no longer authenticates; its tokens are inactive and its
	// bit is set; the key shows the suspension.
	if _, _, err := svc.Authenticate(ctx, k.ClientID, s0); !errors.Is(err, ErrInvalidClient) {
		t.Fatalf("the leaked secret still authenticates: %v", err)
	}
	got, err := svc.Get(ctx, "acme", k.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	if !SecretSuspended(got) || !got.SecretSuspendedAt.Equal(clk.now()) {
		t.Fatalf("SecretSuspendedAt = %v, want %v", got.SecretSuspendedAt, clk.now())
	}
	if !revoked(t, st, k.StatusIndex) || GenerationLive(got, k.StatusIndex, clk.now()) {
		t.Fatal("the leaked generation's bit is not set, or its tokens are still live")
	}
	if _, err := st.KeyBySecretHash(ctx, svc.hasher.Hash(s0)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the leaked secret is still in the secret index: %v", err)
	}
	// The other key of the team is untouched.
	if _, _, err := svc.Authenticate(ctx, other.ClientID, otherSecret); err != nil || revoked(t, st, other.StatusIndex) {
		t.Fatalf("another key was affected: %v", err)
	}
	evs := leakedEvents(t, svc, "acme")
	if len(evs) != 1 || evs[0].ClientID != k.ClientID || !slices.Equal(evs[0].Fields, []string{"secret"}) ||
		evs[0].Actor.Type != store.ActorAnonymous || evs[0].SourceAddr != "198.51.100.7" {
		t.Fatalf("key.secret_leaked events: %+v", evs)
	}

	// Reporting it again finds nothing and writes nothing.
	if n, err := svc.ReportLeaked(ctx, reporter, []string{s0}); err != nil || n != 0 {
		t.Fatalf("second report = %d, %v; want 0", n, err)
	}
	if evs := leakedEvents(t, svc, "acme"); len(evs) != 1 {
		t.Fatalf("a second report wrote %d events", len(evs)-1)
	}

	// Only a rotation brings the key back: a new secret and index, no
	// grace for the leaked one whatever was asked.
	clk.advance(time.Minute)
	k2, s2, err := svc.Rotate(ctx, testReq, "acme", k.ClientID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if SecretSuspended(k2) || len(k2.PreviousSecretHash) != 0 || k2.StatusIndex == k.StatusIndex {
		t.Fatalf("after rotating a suspended key: suspended %v, previous hash kept %v, index %d (was %d)",
			SecretSuspended(k2), len(k2.PreviousSecretHash) != 0, k2.StatusIndex, k.StatusIndex)
	}
	if _, _, err := svc.Authenticate(ctx, k.ClientID, s2); err != nil {
		t.Fatalf("the new secret: %v", err)
	}
	if _, _, err := svc.Authenticate(ctx, k.ClientID, s0); !errors.Is(err, ErrInvalidClient) {
		t.Fatalf("the leaked secret works again after the rotation: %v", err)
	}
	if GenerationLive(k2, k.StatusIndex, clk.now()) {
		t.Fatal("the leaked generation is live again after the rotation")
	}
}

func TestReportLeakedPreviousSecretEndsGrace(t *testing.T) {
	ctx := context.Background()
	svc, st, clk := openGenService(t)
	k0, s0, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "a", Permissions: []string{"accounting_api"}})
	if err != nil {
		t.Fatal(err)
	}
	k1, s1, err := svc.Rotate(ctx, testReq, "acme", k0.ClientID, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := svc.ReportLeaked(ctx, reporter, []string{s0}); err != nil || n != 1 {
		t.Fatalf("ReportLeaked = %d, %v", n, err)
	}
	if _, _, err := svc.Authenticate(ctx, k0.ClientID, s0); !errors.Is(err, ErrInvalidClient) {
		t.Fatalf("the leaked previous secret still authenticates: %v", err)
	}
	if _, _, err := svc.Authenticate(ctx, k0.ClientID, s1); err != nil {
		t.Fatalf("the current secret stopped working: %v", err)
	}
	got, _ := svc.Get(ctx, "acme", k0.ClientID)
	if !revoked(t, st, k0.StatusIndex) || revoked(t, st, k1.StatusIndex) || SecretSuspended(got) ||
		GenerationLive(got, k0.StatusIndex, clk.now()) || !GenerationLive(got, k1.StatusIndex, clk.now()) {
		t.Fatal("want only the previous generation cut off")
	}
	if evs := leakedEvents(t, svc, "acme"); len(evs) != 1 || !slices.Equal(evs[0].Fields, []string{"previous_secret"}) {
		t.Fatalf("events: %+v", evs)
	}
	// The background round forgets the ended generation, hash included.
	if _, err := svc.RevokeEndedGenerations(ctx, clk.now()); err != nil {
		t.Fatal(err)
	}
	got, _ = svc.Get(ctx, "acme", k0.ClientID)
	if got.PreviousStatusIndex != 0 || len(got.PreviousSecretHash) != 0 {
		t.Fatalf("after the round: previous index %d, hash kept %v", got.PreviousStatusIndex, len(got.PreviousSecretHash) != 0)
	}
}

// If the bit cannot be set, the report fails but the key stays
// suspended, and the background round sets the bit.
func TestReportLeakedBitSetLater(t *testing.T) {
	ctx := context.Background()
	svc, st, clk := openGenService(t)
	k, s0, err := svc.Create(ctx, testReq, NewKey{Team: "acme", Name: "a", Permissions: []string{"accounting_api"}})
	if err != nil {
		t.Fatal(err)
	}
	st.fail.Store(true)
	if _, err := svc.ReportLeaked(ctx, reporter, []string{s0}); !errors.Is(err, errRevokeDown) {
		t.Fatalf("ReportLeaked with the status list down: %v", err)
	}
	if _, _, err := svc.Authenticate(ctx, k.ClientID, s0); !errors.Is(err, ErrInvalidClient) {
		t.Fatal("the secret works after a report whose bit failed")
	}
	st.fail.Store(false)
	if revoked(t, st, k.StatusIndex) {
		t.Fatal("bit set although RevokeStatus failed")
	}
	n, err := svc.RevokeEndedGenerations(ctx, clk.now())
	if err != nil || n != 1 || !revoked(t, st, k.StatusIndex) {
		t.Fatalf("RevokeEndedGenerations = %d, %v; bit set %v", n, err, revoked(t, st, k.StatusIndex))
	}
	calls := st.calls.Load()
	if _, err := svc.RevokeEndedGenerations(ctx, clk.now()); err != nil || st.calls.Load() != calls {
		t.Fatalf("a second round set a bit already set again (%v)", err)
	}
}

// A leaked admin secret: its tokens stop opening the management API, and
// a restart with the same KEYGATE_ADMIN_CLIENT_SECRET is refused; a new
// one is accepted, with a new status index.
func TestReportLeakedAdminSecret(t *testing.T) {
	ctx := context.Background()
	st, mk := FreshStore(t)
	secret, _ := credential.NewSecret()
	cfg := Config{Store: st, MasterKey: mk, AdminClientID: "ops-admin", AdminClientSecret: secret}
	svc, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	admin, _ := st.GetKey(ctx, "ops-admin")
	tok := Token{ID: "jti-1", ClientID: "ops-admin", StatusIndex: admin.StatusIndex, ExpiresAt: time.Now().Add(time.Hour)}
	if err := svc.CheckAdminToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if n, err := svc.ReportLeaked(ctx, reporter, []string{secret}); err != nil || n != 1 {
		t.Fatalf("ReportLeaked = %d, %v", n, err)
	}
	if err := svc.CheckAdminToken(ctx, tok); !errors.Is(err, ErrRevoked) {
		t.Fatalf("an admin token of the leaked secret: %v, want ErrRevoked", err)
	}
	if _, err := Open(ctx, cfg); err == nil {
		t.Fatal("a restart brought the leaked admin secret back")
	}
	fresh, _ := credential.NewSecret()
	cfg.AdminClientSecret = fresh
	svc, err = Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := st.GetKey(ctx, "ops-admin")
	if SecretSuspended(after) || after.StatusIndex == admin.StatusIndex {
		t.Fatalf("after a new admin secret: suspended %v, index %d (was %d)", SecretSuspended(after), after.StatusIndex, admin.StatusIndex)
	}
	if _, _, err := svc.Authenticate(ctx, "ops-admin", fresh); err != nil {
		t.Fatal(err)
	}
}

func TestReportLeakedTooMany(t *testing.T) {
	svc, _, _ := openGenService(t)
	_, err := svc.ReportLeaked(context.Background(), reporter, make([]string, MaxLeakedSecrets+1))
	var inv *InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("%d strings: %v, want *InvalidError", MaxLeakedSecrets+1, err)
	}
}
