package signing_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/signing"
	"github.com/keygate/keygate/store"
)

var testSchedule = signing.Schedule{Rotation: 90 * 24 * time.Hour, Prepublish: time.Hour, Retain: signing.RetainFor(15 * time.Minute)}

func jwksKIDs(t *testing.T, ks *signing.KeySet) []string {
	t.Helper()
	var kids []string
	for _, k := range parseJWKS(t, ks.JWKS()).Keys {
		kids = append(kids, k.KeyID)
	}
	return kids
}

func mustEnsure(t *testing.T, st signing.KeyStore, alg string, sched signing.Schedule, now time.Time) store.SigningKeys {
	t.Helper()
	set, err := signing.Ensure(context.Background(), st, newMasterKeyFor(t), alg, sched, now)
	if err != nil {
		t.Fatalf("Ensure at %v: %v", now, err)
	}
	return set
}

// One master key per test binary is enough for Ensure; the tests that open
// keys use the same one.
var (
	mkOnce sync.Once
	mkTest any
)

func newMasterKeyFor(t *testing.T) *masterkey.Key {
	mkOnce.Do(func() { mkTest = newMasterKey(t) })
	return mkTest.(*masterkey.Key)
}

// TestScheduledCycle walks one key through next → current → retired →
// removed on the schedule, with Ensure as every tick would call it: the
// next key appears Prepublish before it signs, every instance's snapshot
// switches by the clock even before the promotion is written, the JWKS
// bytes do not change at the promotion, and the old key leaves Retain
// after it stopped signing.
func TestScheduledCycle(t *testing.T) {
	st := openStore(t)
	mk := newMasterKeyFor(t)
	sched := testSchedule
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

	first := mustEnsure(t, st, signing.ES256, sched, t0)
	if first.Active == nil || first.Next != nil || !first.Active.SignsFrom.Equal(t0) {
		t.Fatalf("first start: %+v", first)
	}
	oldKID := first.Active.KID

	// Just before the next key is due: nothing changes, nothing is written.
	before := t0.Add(sched.Rotation - sched.Prepublish - time.Second)
	if got := mustEnsure(t, st, signing.ES256, sched, before); got.Next != nil {
		t.Fatalf("next key published %v early", time.Second)
	}
	// Due: a next key, signing exactly at the rotation time.
	due := before.Add(time.Second)
	set := mustEnsure(t, st, signing.ES256, sched, due)
	if set.Next == nil || set.Active.KID != oldKID {
		t.Fatalf("at %v: %+v, want the old key current and a next key", due, set)
	}
	switchAt := t0.Add(sched.Rotation)
	if !set.Next.SignsFrom.Equal(switchAt) {
		t.Fatalf("next key signs from %v, want %v", set.Next.SignsFrom, switchAt)
	}
	newKID := set.Next.KID
	// Ensure again: the same next key, no second one.
	if again := mustEnsure(t, st, signing.ES256, sched, due.Add(time.Minute)); again.Next == nil || again.Next.KID != newKID {
		t.Fatalf("second Ensure replaced the next key: %+v", again.Next)
	}

	ksBefore, err := signing.Load(set, mk, switchAt.Add(-time.Nanosecond), sched.Retain)
	if err != nil {
		t.Fatal(err)
	}
	if ksBefore.Signer().KID() != oldKID {
		t.Fatalf("before its time the next key signs")
	}
	if kids := jwksKIDs(t, ksBefore); len(kids) != 2 || !slices.Contains(kids, newKID) {
		t.Fatalf("JWKS before the switch: %v, want both keys", kids)
	}
	if !ksBefore.ChangesAt().Equal(switchAt) {
		t.Fatalf("ChangesAt = %v, want the switch %v", ksBefore.ChangesAt(), switchAt)
	}
	// At the switch, from the unchanged record (no instance wrote anything).
	ksAt, err := ksBefore.Reload(set, mk, switchAt, sched.Retain)
	if err != nil {
		t.Fatal(err)
	}
	if ksAt.Signer().KID() != newKID {
		t.Fatalf("at the switch the old key still signs")
	}
	if !bytes.Equal(ksAt.JWKS(), ksBefore.JWKS()) {
		t.Fatalf("the promotion changed the JWKS bytes:\n%s\n%s", ksBefore.JWKS(), ksAt.JWKS())
	}
	retireEnd := switchAt.Add(sched.Retain)
	if !ksAt.ChangesAt().Equal(retireEnd) {
		t.Fatalf("ChangesAt after the switch = %v, want %v", ksAt.ChangesAt(), retireEnd)
	}
	// Recording the promotion gives the same snapshot.
	rec := mustEnsure(t, st, signing.ES256, sched, switchAt.Add(time.Second))
	if rec.Active.KID != newKID || rec.Next != nil || len(rec.Retired) != 1 || rec.Retired[0].KID != oldKID ||
		!rec.Retired[0].RetiredAt.Equal(switchAt) || !rec.Retired[0].PublishUntil.Equal(retireEnd) {
		t.Fatalf("recorded promotion: %+v", rec)
	}
	ksRec, err := signing.Load(rec, mk, switchAt.Add(time.Second), sched.Retain)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ksRec.JWKS(), ksAt.JWKS()) {
		t.Fatal("the recorded promotion serves another JWKS than the clock-resolved one")
	}
	// Retired until Retain after the switch, then gone (and pruned).
	if ks, _ := signing.Load(rec, mk, retireEnd.Add(-time.Second), sched.Retain); len(jwksKIDs(t, ks)) != 2 {
		t.Fatal("retired key dropped early")
	}
	ksEnd, err := signing.Load(rec, mk, retireEnd, sched.Retain)
	if err != nil {
		t.Fatal(err)
	}
	if kids := jwksKIDs(t, ksEnd); !slices.Equal(kids, []string{newKID}) {
		t.Fatalf("JWKS after Retain: %v, want only %s", kids, newKID)
	}
	if _, ok := ksEnd.PublicKey(oldKID); ok {
		t.Fatal("removed key still verifies")
	}
	if pruned := mustEnsure(t, st, signing.ES256, sched, retireEnd); len(pruned.Retired) != 0 {
		t.Fatalf("Ensure kept %d retired keys past their time", len(pruned.Retired))
	}
}

// TestAlgChangeRotates: a new signing_alg publishes a key of it as next;
// the old key signs on until the switch and stays published after it.
func TestAlgChangeRotates(t *testing.T) {
	st := openStore(t)
	mk := newMasterKeyFor(t)
	sched := signing.Schedule{Prepublish: time.Hour, Retain: signing.RetainFor(15 * time.Minute)} // manual rotation only
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	es := mustEnsure(t, st, signing.ES256, sched, t0)
	t1 := t0.Add(24 * time.Hour)
	set := mustEnsure(t, st, signing.EdDSA, sched, t1)
	if set.Active.KID != es.Active.KID || set.Next == nil || set.Next.Alg != signing.EdDSA || !set.Next.SignsFrom.Equal(t1.Add(time.Hour)) {
		t.Fatalf("after the alg change: %+v", set)
	}
	ks, err := signing.Load(set, mk, t1, sched.Retain)
	if err != nil {
		t.Fatal(err)
	}
	if ks.Signer().Alg() != signing.ES256 || !slices.Equal(ks.Algs(), []string{signing.ES256, signing.EdDSA}) {
		t.Fatalf("signer %s, algs %v", ks.Signer().Alg(), ks.Algs())
	}
	ks, err = ks.Reload(set, mk, t1.Add(time.Hour), sched.Retain)
	if err != nil {
		t.Fatal(err)
	}
	if ks.Signer().Alg() != signing.EdDSA || !slices.Equal(ks.Algs(), []string{signing.EdDSA, signing.ES256}) {
		t.Fatalf("after the switch: signer %s, algs %v", ks.Signer().Alg(), ks.Algs())
	}
	if _, ok := ks.PublicKey(es.Active.KID); !ok {
		t.Fatal("the ES256 key left the JWKS at the switch")
	}
}

// TestOldRecordResolves: a record written before key states (no signs_from,
// no next key) signs with its active key and keeps its retired keys.
func TestOldRecordResolves(t *testing.T) {
	mk := newMasterKeyFor(t)
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	a, err := signing.NewStoredKey(mk, signing.ES256, t0)
	if err != nil {
		t.Fatal(err)
	}
	r, err := signing.NewStoredKey(mk, signing.RS256, t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	old := store.SigningKeys{Active: &a, Retired: []store.RetiredSigningKey{{SigningKey: r, PublishUntil: t0.Add(20 * time.Minute)}}}
	ks, err := signing.Load(old, mk, t0.Add(time.Minute), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if ks.Signer().KID() != a.KID || len(jwksKIDs(t, ks)) != 2 {
		t.Fatalf("old record: signer %s, JWKS %v", ks.Signer().KID(), jwksKIDs(t, ks))
	}
	res := signing.Resolve(old, t0.Add(time.Minute), time.Hour)
	if !res.Active.SignsFrom.Equal(t0) {
		t.Fatalf("old active key signs from %v, want its creation %v", res.Active.SignsFrom, t0)
	}
}

// TestManualRotations: safe (pre-published), now, and revoke, on the pure
// update functions; what they refuse changes nothing.
func TestManualRotations(t *testing.T) {
	mk := newMasterKeyFor(t)
	sched := testSchedule
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	newKey := func() store.SigningKey {
		k, err := signing.NewStoredKey(mk, signing.ES256, t0)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	cur := newKey()
	cur.SignsFrom = t0
	base := store.SigningKeys{Active: &cur}
	now := t0.Add(time.Hour)

	c1 := newKey()
	safe, err := signing.RotateSafe(base, now, sched, c1)
	if err != nil || safe.Next == nil || safe.Next.KID != c1.KID || !safe.Next.SignsFrom.Equal(now.Add(sched.Prepublish)) || safe.Active.KID != cur.KID {
		t.Fatalf("RotateSafe: %+v, %v", safe, err)
	}
	again, err := signing.RotateSafe(safe, now, sched, newKey())
	if !errors.Is(err, signing.ErrNextScheduled) || again.Next.KID != c1.KID {
		t.Fatalf("second RotateSafe: %v (next %s)", err, again.Next.KID)
	}

	// Now with a next key: that key signs at once, the old one is retired.
	fast, err := signing.RotateNow(safe, now, sched, newKey())
	if err != nil || fast.Active.KID != c1.KID || fast.Next != nil || len(fast.Retired) != 1 || fast.Retired[0].KID != cur.KID ||
		!fast.Retired[0].PublishUntil.Equal(now.Add(sched.Retain)) {
		t.Fatalf("RotateNow with a next key: %+v, %v", fast, err)
	}
	// Now without one: the candidate signs at once.
	c2 := newKey()
	fast2, err := signing.RotateNow(base, now, sched, c2)
	if err != nil || fast2.Active.KID != c2.KID || len(fast2.Retired) != 1 {
		t.Fatalf("RotateNow without a next key: %+v, %v", fast2, err)
	}

	// Revoking the current key promotes the next one, with no retirement.
	rev, err := signing.Revoke(safe, now, sched, cur.KID, newKey())
	if err != nil || rev.Active.KID != c1.KID || rev.Next != nil || len(rev.Retired) != 0 || !rev.Active.SignsFrom.Equal(now) {
		t.Fatalf("Revoke current with a next key: %+v, %v", rev, err)
	}
	// … or the candidate when there is no next key.
	c3 := newKey()
	rev2, err := signing.Revoke(base, now, sched, cur.KID, c3)
	if err != nil || rev2.Active.KID != c3.KID || len(rev2.Retired) != 0 {
		t.Fatalf("Revoke current without a next key: %+v, %v", rev2, err)
	}
	// A retired key is simply gone.
	rev3, err := signing.Revoke(fast, now, sched, cur.KID, newKey())
	if err != nil || rev3.Active.KID != c1.KID || len(rev3.Retired) != 0 {
		t.Fatalf("Revoke retired: %+v, %v", rev3, err)
	}
	// Unknown kid: an error and the record unchanged.
	rev4, err := signing.Revoke(fast, now, sched, "nope", newKey())
	if !errors.Is(err, signing.ErrUnknownKID) || rev4.Active.KID != fast.Active.KID || len(rev4.Retired) != 1 {
		t.Fatalf("Revoke unknown: %+v, %v", rev4, err)
	}
}

// TestEnsureConcurrentRotation: instances ticking at once when a rotation
// is due store exactly one next key between them.
func TestEnsureConcurrentRotation(t *testing.T) {
	st := openStore(t)
	sched := testSchedule
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	first := mustEnsure(t, st, signing.ES256, sched, t0)
	due := t0.Add(sched.Rotation - sched.Prepublish)
	const n = 8
	sets := make([]store.SigningKeys, n)
	errs := make([]error, n)
	mk := newMasterKeyFor(t)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { sets[i], errs[i] = signing.Ensure(context.Background(), st, mk, signing.ES256, sched, due) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	stored, err := st.SigningKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if stored.Next == nil || stored.Active.KID != first.Active.KID {
		t.Fatalf("stored: %+v", stored)
	}
	for i, s := range sets {
		if s.Next == nil || s.Next.KID != stored.Next.KID {
			t.Fatalf("instance %d got next %+v, the store holds %s", i, s.Next, stored.Next.KID)
		}
	}
}
