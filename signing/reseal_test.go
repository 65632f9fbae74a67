package signing_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/signing"
	"github.com/keygate/keygate/store"
)

// twoKeySet stores a set sealed under oldKey: an ES256 key that signs and
// a retired EdDSA one still published.
func twoKeySet(t *testing.T, st *storeWithHook, oldKey *masterkey.Key, now time.Time) store.SigningKeys {
	return keySet(t, st, oldKey, now, false)
}

// keySet is twoKeySet, with a next key too when withNext.
func keySet(t *testing.T, st *storeWithHook, oldKey *masterkey.Key, now time.Time, withNext bool) store.SigningKeys {
	t.Helper()
	active, err := signing.NewStoredKey(oldKey, signing.ES256, now)
	if err != nil {
		t.Fatal(err)
	}
	retired, err := signing.NewStoredKey(oldKey, signing.EdDSA, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	next, err := signing.NewStoredKey(oldKey, signing.ES256, now)
	if err != nil {
		t.Fatal(err)
	}
	next.SignsFrom = now.Add(time.Hour)
	set, err := st.UpdateSigningKeys(context.Background(), func(store.SigningKeys) (store.SigningKeys, error) {
		var n *store.SigningKey
		if withNext {
			n = &next
		}
		return store.SigningKeys{
			Active:      &active,
			Next:        n,
			Retired:     []store.RetiredSigningKey{{SigningKey: retired, PublishUntil: now.Add(time.Hour)}},
			MasterKeyID: oldKey.ID(),
		}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// storeWithHook is a bolt store whose next UpdateSigningKeys first runs
// before (an operator's rotation landing between Ensure's read and its
// update).
type storeWithHook struct {
	signing.KeyStore
	before func()
}

func (s *storeWithHook) UpdateSigningKeys(ctx context.Context, update func(store.SigningKeys) (store.SigningKeys, error)) (store.SigningKeys, error) {
	if f := s.before; f != nil {
		s.before = nil
		f()
	}
	return s.KeyStore.UpdateSigningKeys(ctx, update)
}

func TestResealEveryKey(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	oldKey, newKey := newMasterKey(t), newMasterKey(t)
	st := &storeWithHook{KeyStore: openStore(t)}
	before := keySet(t, st, oldKey, now, true)
	ksBefore, err := signing.Load(before, oldKey, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	// Without the old key nothing can be re-sealed, and nothing is.
	_, err = st.UpdateSigningKeys(ctx, func(s store.SigningKeys) (store.SigningKeys, error) { return signing.Reseal(s, newKey) })
	var unknown *masterkey.UnknownKeyError
	if !errors.As(err, &unknown) || unknown.SealedBy != oldKey.ID() {
		t.Fatalf("Reseal without the previous key: %v; want an UnknownKeyError naming %s", err, oldKey.ID())
	}
	if unchanged, _ := st.SigningKeys(ctx); !bytes.Equal(unchanged.Active.PrivateKeySealed, before.Active.PrivateKeySealed) || unchanged.MasterKeyID != oldKey.ID() {
		t.Fatal("a failed re-seal changed the stored set")
	}

	rotating := newKey.WithPrevious(oldKey)
	after, err := st.UpdateSigningKeys(ctx, func(s store.SigningKeys) (store.SigningKeys, error) { return signing.Reseal(s, rotating) })
	if err != nil {
		t.Fatalf("Reseal: %v", err)
	}
	if after.MasterKeyID != newKey.ID() {
		t.Fatalf("MasterKeyID after the re-seal = %q, want %q", after.MasterKeyID, newKey.ID())
	}
	all := []store.SigningKey{*after.Active, *after.Next, after.Retired[0].SigningKey}
	for _, k := range all {
		if id, _ := masterkey.SealedBy(k.PrivateKeySealed); id != newKey.ID() {
			t.Fatalf("key %s sealed under %s after the re-seal, want %s", k.KID, id, newKey.ID())
		}
	}
	if after.Active.KID != before.Active.KID || after.Retired[0].KID != before.Retired[0].KID || after.Next.KID != before.Next.KID ||
		!after.Next.SignsFrom.Equal(before.Next.SignsFrom) ||
		!after.Retired[0].PublishUntil.Equal(before.Retired[0].PublishUntil) || !after.Active.CreatedAt.Equal(before.Active.CreatedAt) {
		t.Fatalf("the re-seal changed more than the sealed bytes: %+v -> %+v", before, after)
	}
	// The new key alone opens every key, and they are the same key pairs:
	// the same JWKS.
	ksAfter, err := signing.Load(after, newKey, now, time.Hour)
	if err != nil {
		t.Fatalf("Load under the new key alone: %v", err)
	}
	if !bytes.Equal(ksAfter.JWKS(), ksBefore.JWKS()) {
		t.Fatal("the JWKS changed: the re-seal replaced a key pair")
	}
	if _, err := signing.Load(after, oldKey, now, time.Hour); !errors.As(err, &unknown) || unknown.SealedBy != newKey.ID() {
		t.Fatalf("Load under the old key alone after the re-seal: %v; want an UnknownKeyError naming %s", err, newKey.ID())
	}
}

// After the re-seal, an instance holding only the old master key cannot add
// a key (a changed signing_alg), and one whose key was made before the
// re-seal is refused in the update: nothing is written either way.
func TestEnsureChecksStoreMasterKey(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	oldKey, newKey := newMasterKey(t), newMasterKey(t)
	rotating := newKey.WithPrevious(oldKey)

	t.Run("old key only, after the re-seal", func(t *testing.T) {
		st := &storeWithHook{KeyStore: openStore(t)}
		twoKeySet(t, st, oldKey, now)
		resealed, err := st.UpdateSigningKeys(ctx, func(s store.SigningKeys) (store.SigningKeys, error) { return signing.Reseal(s, rotating) })
		if err != nil {
			t.Fatal(err)
		}
		_, err = signing.Ensure(ctx, st, oldKey, signing.RS256, testSchedule, now)
		if !errors.Is(err, signing.ErrMasterKeyChanged) {
			t.Fatalf("Ensure with the old key only: %v; want ErrMasterKeyChanged", err)
		}
		got, _ := st.SigningKeys(ctx)
		if got.Active.KID != resealed.Active.KID || len(got.Retired) != len(resealed.Retired) {
			t.Fatal("a refused Ensure changed the set")
		}
	})

	t.Run("re-seal between read and update", func(t *testing.T) {
		st := &storeWithHook{KeyStore: openStore(t)}
		twoKeySet(t, st, oldKey, now)
		st.before = func() {
			if _, err := st.KeyStore.UpdateSigningKeys(ctx, func(s store.SigningKeys) (store.SigningKeys, error) { return signing.Reseal(s, rotating) }); err != nil {
				t.Error(err)
			}
		}
		// This instance holds both keys but made its key under the old
		// one, the store's when it read the set.
		_, err := signing.Ensure(ctx, st, rotating, signing.RS256, testSchedule, now)
		if !errors.Is(err, signing.ErrMasterKeyChanged) {
			t.Fatalf("Ensure across a re-seal: %v; want ErrMasterKeyChanged", err)
		}
		got, _ := st.SigningKeys(ctx)
		if got.Active.Alg != signing.ES256 || got.MasterKeyID != newKey.ID() {
			t.Fatalf("a refused Ensure changed the set: %+v", got)
		}
		// Started again, it seals under the store's key, now the new one.
		got, err = signing.Ensure(ctx, st, rotating, signing.RS256, testSchedule, now)
		if err != nil {
			t.Fatal(err)
		}
		// A changed signing_alg publishes the new key as the next key.
		if id, _ := masterkey.SealedBy(got.Next.PrivateKeySealed); id != newKey.ID() || got.Next.Alg != signing.RS256 {
			t.Fatalf("new key sealed under %s (alg %s), want %s", id, got.Next.Alg, newKey.ID())
		}
	})

	t.Run("during the rotation, before the re-seal", func(t *testing.T) {
		st := &storeWithHook{KeyStore: openStore(t)}
		twoKeySet(t, st, oldKey, now)
		got, err := signing.Ensure(ctx, st, rotating, signing.RS256, testSchedule, now)
		if err != nil {
			t.Fatal(err)
		}
		// Sealed under the store's (old) key, so instances not yet given
		// the new key still read it.
		if id, _ := masterkey.SealedBy(got.Next.PrivateKeySealed); id != oldKey.ID() || got.MasterKeyID != oldKey.ID() {
			t.Fatalf("key added during the rotation sealed under %s (set: %s), want the old key %s", id, got.MasterKeyID, oldKey.ID())
		}
		if _, err := signing.Load(got, oldKey, now, time.Hour); err != nil {
			t.Fatalf("an instance with the old key only cannot load the set: %v", err)
		}
	})
}

func TestCheckMasterKey(t *testing.T) {
	a, b := newMasterKey(t), newMasterKey(t)
	if err := signing.CheckMasterKey(store.SigningKeys{}, a); err != nil {
		t.Fatalf("empty set: %v", err)
	}
	if err := signing.CheckMasterKey(store.SigningKeys{MasterKeyID: a.ID()}, a); err != nil {
		t.Fatalf("same key: %v", err)
	}
	if err := signing.CheckMasterKey(store.SigningKeys{MasterKeyID: a.ID()}, b); !errors.Is(err, signing.ErrMasterKeyChanged) {
		t.Fatalf("another key: %v", err)
	}
	// A set written before sets recorded their master key: the active key
	// decides.
	sk, err := signing.NewStoredKey(a, signing.ES256, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	legacy := store.SigningKeys{Active: &sk}
	if err := signing.CheckMasterKey(legacy, a); err != nil {
		t.Fatalf("unrecorded set, its key: %v", err)
	}
	if err := signing.CheckMasterKey(legacy, b); !errors.Is(err, signing.ErrMasterKeyChanged) {
		t.Fatalf("unrecorded set, another key: %v", err)
	}
	if k, err := signing.SealingKey(legacy, b.WithPrevious(a)); err != nil || k.ID() != a.ID() {
		t.Fatalf("SealingKey of an unrecorded set sealed under the previous key: %v, %v", k, err)
	}
}
