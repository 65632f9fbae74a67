package apikey

import (
	"context"
	"errors"
	"testing"

	"github.com/keygate/keygate/store"
)

// TestKeepNewAdmin: a generated first admin's credentials reach
// KeepNewAdmin before the key is stored; a failure there stores no key,
// and a key another instance stored first takes back what was kept.
func TestKeepNewAdmin(t *testing.T) {
	ctx := context.Background()
	admins := func(t *testing.T, st store.Store) []store.Key {
		t.Helper()
		keys, err := st.ListKeys(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}

	t.Run("kept before stored", func(t *testing.T) {
		st, mk := FreshStore(t)
		var kept []AdminCredentials
		undone := 0
		svc, err := Open(ctx, Config{Store: st, MasterKey: mk, KeepNewAdmin: func(c AdminCredentials) (func() error, error) {
			if n := len(admins(t, st)); n != 0 {
				t.Errorf("%d admin keys stored before the credentials were kept", n)
			}
			kept = append(kept, c)
			return func() error { undone++; return nil }, nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		got, ok := svc.GeneratedAdmin()
		if !ok || len(kept) != 1 || kept[0] != got || undone != 0 {
			t.Fatalf("generated %+v (%v), kept %+v, undone %d; want the generated admin kept once", got, ok, kept, undone)
		}
		if a := admins(t, st); len(a) != 1 || a[0].ClientID != got.ClientID {
			t.Fatalf("admin keys %+v, want %s", a, got.ClientID)
		}
	})

	t.Run("keeping fails", func(t *testing.T) {
		st, mk := FreshStore(t)
		_, err := Open(ctx, Config{Store: st, MasterKey: mk, KeepNewAdmin: func(AdminCredentials) (func() error, error) {
			return nil, errors.New("disk full")
		}})
		if err == nil || err.Error() != "first admin key not created: disk full" {
			t.Fatalf("Open = %v, want %q", err, "first admin key not created: disk full")
		}
		if a := admins(t, st); len(a) != 0 {
			t.Fatalf("admin keys %+v stored although their secret was not kept", a)
		}
		n := 0
		if err := st.ForEachKey(ctx, func(store.Key) error { n++; return nil }); err != nil || n != 0 {
			t.Fatalf("%d keys stored (%v), want none", n, err)
		}
	})

	t.Run("another instance wins", func(t *testing.T) {
		st, mk := FreshStore(t)
		undone := 0
		svc, err := Open(ctx, Config{Store: st, MasterKey: mk, KeepNewAdmin: func(AdminCredentials) (func() error, error) {
			// The other instance stores its first admin between this
			// one's check and its create.
			if err := st.CreateKey(ctx, store.Key{ClientID: "kgc_other", Name: "admin", SecretHash: []byte("h")}, 1); err != nil {
				t.Fatal(err)
			}
			return func() error { undone++; return nil }, nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := svc.GeneratedAdmin(); ok || undone != 1 {
			t.Fatalf("GeneratedAdmin ok=%v, undone %d; want no admin of this start and its credentials taken back once", ok, undone)
		}
		if a := admins(t, st); len(a) != 1 || a[0].ClientID != "kgc_other" {
			t.Fatalf("admin keys %+v, want only the other instance's", a)
		}
	})
}
